//! The failures no death verdict names, end to end through the `tracer` binary: retry
//! storms, CLOSE_WAIT leaks, stalled receivers, and drops this host made itself. Each
//! scenario has its near miss, which must get no verdict. IPv4 and IPv6.

use std::{
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    time::{Duration, Instant},
};

use serde_json::Value;
use socket2::{Domain, Socket, Type};
use tracer_tests::{
    Hosts, Netns, Tracer, both_families, require_root,
    scenario::{ClientOptions, connect, establish},
    tracer::run_json,
    wait_until,
};

const VERDICT_TIMEOUT: Duration = Duration::from_secs(60);

fn verdicts<'a>(records: &'a [Value], kind: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| r["type"] == "verdict" && r["verdict"] == kind)
        .collect()
}

fn events<'a>(records: &'a [Value], kind: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| r["type"] == "event" && r["kind"] == kind)
        .collect()
}

fn ts(r: &Value) -> u64 {
    r["ts_ns"].as_u64().unwrap()
}

/// `tracer sockets --json` of one namespace, with more arguments; the sockets.
fn sockets(ns: &Netns, extra: &[&str]) -> Vec<Value> {
    let inode = ns.inode.to_string();
    let mut args = vec!["sockets", "--json", "--netns", &inode];
    args.extend(extra);
    run_json(args)["sockets"].as_array().unwrap().clone()
}

/// A process re-connects every 0.5 s to a peer that drops everything (TCP_SYNCNT 2: each
/// attempt times out after 7 s, so a dozen are in flight at once): exactly one retry_storm
/// for that process and peer, with the facts the trace shows, beside each attempt's
/// connect_timeout. The same process retrying another port with backoff, five times, gets
/// none.
fn retry_storm(v6: bool) {
    require_root();
    let hosts = Hosts::new("storm");
    // Blackholed: its host drops every segment to these ports (only TCP, so that IPv6
    // neighbour discovery still works and each attempt times out, as toward a dead host
    // whose address is still cached).
    hosts.server.nft(
        "table inet t {\n chain in {\n type filter hook input priority 0;\n tcp dport { 7301, 7302 } drop\n }\n}\n",
    );
    let tracer = Tracer::live(&hosts.netns_args(), &[]);
    let storm = SocketAddr::new(Hosts::server_addr(v6), 7301);
    let patient = SocketAddr::new(Hosts::server_addr(v6), 7302);
    let options = ClientOptions {
        syn_count: Some(2),
        ..Default::default()
    };
    const ATTEMPTS: usize = 14;
    let ns = &hosts.client;
    std::thread::scope(|scope| {
        // The patient client: 0.3 s connect timeouts of its own, 0.5, 1, 2, 4 s apart.
        scope.spawn(|| {
            let options = ClientOptions {
                connect_timeout: Some(Duration::from_millis(300)),
                ..Default::default()
            };
            let mut wait = Duration::from_millis(500);
            for _ in 0..5 {
                assert!(connect(ns, "patient", patient, options.clone()).is_err());
                std::thread::sleep(wait);
                wait *= 2;
            }
        });
        for _ in 0..ATTEMPTS {
            let options = options.clone();
            scope.spawn(move || {
                assert!(connect(ns, "stormer", storm, options).is_err());
            });
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    let verdict = tracer.wait_for(VERDICT_TIMEOUT, "retry_storm", |r| {
        r["type"] == "verdict" && r["verdict"] == "retry_storm" && r["rport"] == 7301
    });
    wait_until(VERDICT_TIMEOUT, "a connect_timeout per attempt", || {
        let records = tracer.records();
        let timeouts = verdicts(&records, "connect_timeout")
            .into_iter()
            .filter(|v| v["rport"] == 7301)
            .count();
        (timeouts == ATTEMPTS).then_some(())
    });
    let (records, _) = tracer.stop();
    let storms: Vec<&Value> = verdicts(&records, "retry_storm");
    assert_eq!(
        storms.len(),
        1,
        "one storm, none for the patient client: {storms:#?}"
    );
    assert_eq!(verdict["process"]["pid"], std::process::id());
    assert_eq!(verdict["process"]["comm"], "stormer");
    // The facts, as the trace shows them.
    let at = ts(&verdict);
    let starts: Vec<(u64, u64)> = events(&records, "state_change")
        .into_iter()
        .filter(|e| e["rport"] == 7301 && e["state"] == "SYN_SENT" && e["old_state"] == "CLOSE")
        .map(|e| (ts(e), e["socket"].as_u64().unwrap()))
        .collect();
    assert_eq!(starts.len(), ATTEMPTS);
    let ends: Vec<(u64, u64)> = events(&records, "state_change")
        .into_iter()
        .filter(|e| e["old_state"] == "SYN_SENT" && e["state"] == "CLOSE" && e["rport"] == 7301)
        .map(|e| (ts(e), e["socket"].as_u64().unwrap()))
        .collect();
    let f = &verdict["facts"];
    let (first, last) = (
        f["first_attempt_ns"].as_u64().unwrap(),
        f["last_attempt_ns"].as_u64().unwrap(),
    );
    let in_storm: Vec<&(u64, u64)> = starts
        .iter()
        .filter(|(t, _)| (first..=last).contains(t))
        .collect();
    assert_eq!(first, starts[0].0);
    assert_eq!(
        last,
        starts
            .iter()
            .map(|s| s.0)
            .filter(|&t| t <= at)
            .max()
            .unwrap()
    );
    assert_eq!(f["attempts"], in_storm.len());
    assert!(in_storm.len() >= 10, "{f}");
    let ended = |socket: u64| ends.iter().find(|(_, s)| *s == socket).map(|e| e.0);
    let in_flight_at = |t: u64| {
        starts
            .iter()
            .filter(|(start, s)| *start <= t && ended(*s).is_none_or(|end| end > t))
            .count()
    };
    let most = in_storm
        .iter()
        .map(|(t, _)| in_flight_at(*t))
        .max()
        .unwrap();
    assert_eq!(f["max_in_flight"], most);
    assert!(most >= 2, "several attempts in flight: {f}");
    let failed_before = verdicts(&records, "connect_timeout")
        .into_iter()
        .filter(|v| v["rport"] == 7301 && ts(v) <= at)
        .count();
    assert_eq!(
        f["failures"]["connect_timeout"].as_u64().unwrap_or(0),
        failed_before as u64
    );
    assert_eq!(f["window_ms"], 60_000);
    assert!(
        verdict["explanation"]
            .as_str()
            .unwrap()
            .contains("is retrying"),
        "{verdict}"
    );
}
both_families!(retry_storm_once_per_process_and_peer, retry_storm);

/// The peer closes and the application never does: close_wait_held after the threshold,
/// and `tracer sockets` flags the socket with its owner. One that closes in time: nothing.
fn close_wait(v6: bool) {
    require_root();
    let hosts = Hosts::new("clwait");
    let tracer = Tracer::live(&hosts.netns_args(), &["--close-wait-after", "2s"]);
    // Near miss first: closed as soon as the peer's FIN is seen.
    let prompt = establish(&hosts, v6, ClientOptions::default());
    let prompt_port = prompt.client_port;
    drop(prompt.server);
    tracer.wait_for(VERDICT_TIMEOUT, "CLOSE_WAIT of the prompt client", |r| {
        r["type"] == "event" && r["lport"] == prompt_port && r["state"] == "CLOSE_WAIT"
    });
    drop(prompt.client);
    let leak = establish(&hosts, v6, ClientOptions::default());
    let leak_port = leak.client_port;
    drop(leak.server);
    let verdict = tracer.wait_for(VERDICT_TIMEOUT, "close_wait_held", |r| {
        r["type"] == "verdict" && r["verdict"] == "close_wait_held" && r["lport"] == leak_port
    });
    assert!(verdict["facts"]["held_ms"].as_u64().unwrap() >= 2_000);
    assert_eq!(verdict["process"]["pid"], std::process::id());
    let swept = sockets(&hosts.client, &["--close-wait-after", "1s"]);
    let socket = swept
        .iter()
        .find(|s| s["lport"] == leak_port)
        .expect("the leaked socket in `tracer sockets`");
    assert_eq!(socket["state"], "CLOSE_WAIT");
    assert_eq!(socket["flags"], serde_json::json!(["close_wait_held"]));
    assert_eq!(socket["process"]["pid"], std::process::id());
    drop(leak.client);
    let (records, _) = tracer.stop();
    let held: Vec<&Value> = verdicts(&records, "close_wait_held");
    assert_eq!(held.len(), 1, "{held:#?}");
    assert_eq!(held[0]["lport"], leak_port);
}
both_families!(close_wait_held_until_the_application_closes, close_wait);

/// A server with a small receive buffer on `addr`, in `ns`.
fn small_window_listener(ns: &Netns, addr: SocketAddr) -> TcpListener {
    ns.run_in("server", move || {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).unwrap();
        socket.set_reuse_address(true).unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.bind(&addr.into()).unwrap();
        socket.listen(8).unwrap();
        socket.into()
    })
}

/// Writes until the send buffer is full: the peer's window has closed.
fn fill(stream: &mut TcpStream) {
    stream.set_nonblocking(true).unwrap();
    let chunk = [7u8; 16 * 1024];
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut full = 0;
    while full < 3 {
        assert!(Instant::now() < deadline, "the send buffer never filled");
        match stream.write(&chunk) {
            Ok(_) => full = 0,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                full += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("write: {e}"),
        }
    }
}

/// Reads what is there until nothing more comes for a moment.
fn drain(stream: &mut TcpStream) {
    stream.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64 * 1024];
    let mut quiet = Instant::now();
    while quiet.elapsed() < Duration::from_millis(300) {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => quiet = Instant::now(),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// The peer application stops reading: its window closes, we probe it, and past the
/// threshold receiver_stalled counts exactly the probes the kernel sent; `tracer sockets`
/// on the peer says its application is not reading. A stall of about a second: nothing.
fn receiver_stalled(v6: bool) {
    require_root();
    let hosts = Hosts::new("stall");
    let tracer = Tracer::live(&hosts.netns_args(), &["--receiver-stalled-after", "3s"]);
    let before = hosts.client.snmp();
    let addr = SocketAddr::new(Hosts::server_addr(v6), 7501);
    let listener = small_window_listener(&hosts.server, addr);
    let open = |comm: &str| {
        let client = connect(&hosts.client, comm, addr, ClientOptions::default()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let port = client.local_addr().unwrap().port();
        (client, server, port)
    };
    // Near miss: the reader resumes after the first probe.
    let (mut brief, mut brief_server, brief_port) = open("brief");
    fill(&mut brief);
    tracer.wait_for(VERDICT_TIMEOUT, "a zero-window probe", |r| {
        r["type"] == "event" && r["kind"] == "zero_window_probe" && r["lport"] == brief_port
    });
    drain(&mut brief_server);
    // The stall.
    let (mut stalled, mut stalled_server, port) = open("stalled");
    fill(&mut stalled);
    let verdict = tracer.wait_for(VERDICT_TIMEOUT, "receiver_stalled", |r| {
        r["type"] == "verdict" && r["verdict"] == "receiver_stalled" && r["lport"] == port
    });
    // The peer's side: a full receive queue nobody reads.
    let server_port = addr.port();
    let swept = sockets(&hosts.server, &[]);
    let peer = swept
        .iter()
        .find(|s| s["lport"] == server_port && s["rport"] == port)
        .expect("the stalled receiver in `tracer sockets`");
    assert!(
        peer["flags"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("not_reading")),
        "{peer:#}"
    );
    drain(&mut stalled_server);
    // No probe can follow once the sockets are gone: the kernel's count is final.
    drop((brief, stalled));
    let sent = hosts.client.snmp().delta(&before, "TcpExt.TCPWinProbe");
    let (records, _) = tracer.stop();
    let probes = events(&records, "zero_window_probe");
    assert_eq!(
        probes.len() as i64,
        sent,
        "every probe the kernel sent was traced"
    );
    let up_to_verdict = probes
        .iter()
        .filter(|e| e["lport"] == port && ts(e) <= ts(&verdict))
        .count();
    assert_eq!(verdict["facts"]["probes"], up_to_verdict);
    assert!(verdict["facts"]["duration_ms"].as_u64().unwrap() >= 3_000);
    let stalls: Vec<&Value> = verdicts(&records, "receiver_stalled");
    assert_eq!(stalls.len(), 1, "none for the brief stall: {stalls:#?}");
}
both_families!(receiver_stalled_counts_the_kernels_probes, receiver_stalled);

/// nftables on this host drops our SYNs: the timeline shows the drops with the kernel's
/// reason and the verdict blames this host. The same connect blackholed on the peer: no
/// local drop, and the verdict says the peer did not answer.
fn host_drops(v6: bool) {
    require_root();
    let hosts = Hosts::new("drops");
    let tracer = Tracer::live(&hosts.netns_args(), &[]);
    hosts.client.nft(
        "table inet t {\n chain out {\n type filter hook output priority 0;\n tcp dport 7401 drop\n }\n}\n",
    );
    hosts.server.nft(
        "table inet t {\n chain in {\n type filter hook input priority 0;\n tcp dport 7402 drop\n }\n}\n",
    );
    let options = ClientOptions {
        syn_count: Some(2),
        ..Default::default()
    };
    let here = SocketAddr::new(Hosts::server_addr(v6), 7401);
    let there = SocketAddr::new(Hosts::server_addr(v6), 7402);
    std::thread::scope(|scope| {
        let peer_side = scope.spawn(|| connect(&hosts.client, "client", there, options.clone()));
        assert!(connect(&hosts.client, "client", here, options.clone()).is_err());
        assert!(peer_side.join().unwrap().is_err());
    });
    let wait = |port: u16| {
        tracer.wait_for(
            VERDICT_TIMEOUT,
            &format!("connect_timeout to {port}"),
            |r| r["type"] == "verdict" && r["verdict"] == "connect_timeout" && r["rport"] == port,
        )
    };
    let local = wait(7401);
    let remote = wait(7402);
    let (records, _) = tracer.stop();
    let drops_of = |socket: &Value| -> Vec<Value> {
        events(&records, "drop")
            .into_iter()
            .filter(|e| e["socket"] == *socket)
            .cloned()
            .collect()
    };
    // Here: every SYN dropped on its way out by this host's netfilter.
    let dropped = drops_of(&local["socket"]);
    assert!(!dropped.is_empty(), "{local:#}");
    for d in &dropped {
        assert_eq!(d["drop"]["reason"], "NETFILTER_DROP", "{d}");
        assert_eq!(d["drop"]["direction"], "out", "{d}");
        assert_eq!(d["drop"]["tcp_flags"], "SYN", "{d}");
        assert_eq!(d["netns"], hosts.client.inode);
    }
    assert_eq!(local["facts"]["local_drops"], dropped.len());
    assert_eq!(local["facts"]["drop_reason"], "NETFILTER_DROP");
    let said = local["explanation"].as_str().unwrap();
    assert!(
        said.contains("every SYN")
            && said.contains("dropped by this host's netfilter (NETFILTER_DROP)"),
        "{said}"
    );
    // There: no drop of ours; the peer's own drops are its host's, matched to no socket.
    assert!(drops_of(&remote["socket"]).is_empty());
    assert!(remote["facts"]["local_drops"].is_null(), "{remote:#}");
    assert!(
        remote["explanation"]
            .as_str()
            .unwrap()
            .contains("went unanswered"),
        "{remote:#}"
    );
    let at_the_peer = events(&records, "drop")
        .into_iter()
        .filter(|e| e["netns"] == hosts.server.inode && e["socket"].is_null())
        .count();
    assert!(
        at_the_peer >= 1,
        "the peer host's drops are in the trace, socketless"
    );
}
both_families!(drops_by_this_host_are_named_in_the_verdict, host_drops);
