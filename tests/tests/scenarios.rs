//! The abnormal disconnects users actually hit, end to end through the `tracer` binary:
//! each scenario provokes a death in network namespaces and asserts exactly which verdict
//! the user is told (and that orderly closes get none). IPv4 and IPv6.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::SocketAddr,
    process::Stdio,
    time::Duration,
};

use serde_json::Value;
use tracer_tests::{
    Hosts, Routed, Tracer, both_families, require_root,
    scenario::{ClientOptions, abort, connect, establish, establish_between},
    tracer::sockets_json,
    unanswered_probes, wait_until,
};

const VERDICT_TIMEOUT: Duration = Duration::from_secs(60);

fn verdicts_of(records: &[Value], lport: u16) -> Vec<String> {
    records
        .iter()
        .filter(|r| r["type"] == "verdict" && r["lport"] == lport)
        .map(|r| r["verdict"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The verdicts of one connection, by both ends: a local port alone can be reused by the
/// next connect once an aborted socket has let it go.
fn verdicts_between(records: &[Value], lport: u16, rport: u16) -> Vec<String> {
    records
        .iter()
        .filter(|r| r["type"] == "verdict" && r["lport"] == lport && r["rport"] == rport)
        .map(|r| r["verdict"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn wait_verdict(tracer: &Tracer, verdict: &str, lport: u16) -> Value {
    tracer.wait_for(
        VERDICT_TIMEOUT,
        &format!("{verdict} on port {lport}"),
        |r| r["type"] == "verdict" && r["verdict"] == verdict && r["lport"] == lport,
    )
}

fn wait_event(tracer: &Tracer, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    tracer.wait_for(VERDICT_TIMEOUT, what, |r| r["type"] == "event" && pred(r))
}

/// The peer process crashes: its kernel closes the connection with a FIN. Orderly: no
/// verdict on either side.
fn peer_process_crash(v6: bool) {
    require_root();
    let hosts = Hosts::new("crash");
    let tracer = Tracer::live(&hosts.netns_args(), &[]);
    let addr = SocketAddr::new(Hosts::server_addr(v6), 7100);
    let mut peer = hosts
        .server
        .command(env!("CARGO_BIN_EXE_tcp-peer"))
        .args(["serve", &addr.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn tcp-peer");
    let mut lines = BufReader::new(peer.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "listening");
    let mut client = connect(&hosts.client, "client", addr, ClientOptions::default()).unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "accepted");
    client.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    client.read_exact(&mut buf).unwrap();
    let port = client.local_addr().unwrap().port();
    peer.kill().unwrap();
    peer.wait().unwrap();
    // The crash reaches us as a FIN: read() returns 0, we close too.
    assert_eq!(client.read(&mut buf).unwrap(), 0);
    drop(client);
    wait_event(&tracer, "the client's release", |r| {
        r["kind"] == "destroy" && r["lport"] == port
    });
    let (records, _) = tracer.stop();
    assert!(
        records.iter().all(|r| r["type"] != "verdict"),
        "an orderly close has no verdict: {:?}",
        records
            .iter()
            .filter(|r| r["type"] == "verdict")
            .collect::<Vec<_>>()
    );
}
both_families!(peer_process_crash_is_orderly, peer_process_crash);

/// The peer host vanishes while we send: first the early warning, then the kernel gives up.
fn peer_host_vanishes(v6: bool) {
    require_root();
    let hosts = Hosts::new("vanish");
    let tracer = Tracer::live(&hosts.netns_args(), &[]);
    let options = ClientOptions {
        user_timeout: Some(Duration::from_secs(6)),
        ..Default::default()
    };
    let mut conn = establish(&hosts, v6, options);
    let port = conn.client_port;
    hosts.client.blackhole_from(Hosts::server_addr(v6));
    conn.client.write_all(&[1u8; 2000]).unwrap();
    let warning = wait_verdict(&tracer, "peer_unresponsive", port);
    let death = wait_verdict(&tracer, "retries_exhausted", port);
    let warned_at = warning["ts_ns"].as_u64().unwrap();
    let died_at = death["ts_ns"].as_u64().unwrap();
    assert!(warned_at < died_at, "the warning comes first");
    let predicted = warning["facts"]["predicted_give_up_ns"].as_u64().unwrap();
    assert!(
        predicted.abs_diff(died_at) < 1_500_000_000,
        "predicted give-up {predicted}, actual {died_at}"
    );
    assert_eq!(death["facts"]["error"], "ETIMEDOUT");
    assert_eq!(death["process"]["comm"], "client");
    let (records, _) = tracer.stop();
    assert_eq!(
        verdicts_of(&records, port),
        ["peer_unresponsive", "retries_exhausted"]
    );
}
both_families!(
    peer_host_vanishes_then_retries_exhausted,
    peer_host_vanishes
);

/// The peer host vanishes, then comes back without the connection (rebooted): our next
/// retransmit is answered by a reset.
fn peer_host_reboots(v6: bool) {
    require_root();
    let hosts = Hosts::new("reboot");
    let tracer = Tracer::live(&hosts.netns_args(), &[]);
    let mut conn = establish(&hosts, v6, ClientOptions::default());
    let port = conn.client_port;
    hosts.client.blackhole_from(Hosts::server_addr(v6));
    conn.client.write_all(&[1u8; 2000]).unwrap();
    wait_event(&tracer, "two RTO retransmits", |r| {
        r["kind"] == "retransmit" && r["lport"] == port && r["sock"]["retransmits"] == 2
    });
    // The peer loses the connection: its reset is lost in the blackhole.
    abort(conn.server);
    hosts.client.heal();
    let verdict = wait_verdict(&tracer, "peer_reset", port);
    assert_eq!(verdict["facts"]["peer_lost_state"], true);
    assert_eq!(verdict["facts"]["error"], "ECONNRESET");
    let (records, _) = tracer.stop();
    assert_eq!(verdicts_of(&records, port).last().unwrap(), "peer_reset");
    assert!(!verdicts_of(&records, port).contains(&"retries_exhausted".to_owned()));
}
both_families!(peer_host_reboots_then_peer_reset, peer_host_reboots);

/// Cable pulled on an idle connection with keepalive: probes 1..N, then the verdict.
fn cable_pulled_with_keepalive(v6: bool) {
    require_root();
    let hosts = Hosts::new("cable");
    let tracer = Tracer::live(&hosts.netns_args(), &[]);
    let options = ClientOptions {
        keepalive: Some((Duration::from_secs(1), Duration::from_secs(1), 3)),
        ..Default::default()
    };
    let conn = establish(&hosts, v6, options);
    let port = conn.client_port;
    hosts.client.blackhole_from(Hosts::server_addr(v6));
    let verdict = wait_verdict(&tracer, "keepalive_exhausted", port);
    assert_eq!(verdict["facts"]["probes"], 3);
    assert_eq!(verdict["facts"]["probe_interval_ms"], 1000);
    let (records, _) = tracer.stop();
    let probes: Vec<u64> = records
        .iter()
        .filter(|r| r["kind"] == "keepalive_probe" && r["lport"] == port)
        .map(|r| r["probe"].as_u64().unwrap())
        .collect();
    assert_eq!(unanswered_probes(&probes), [1, 2, 3], "{probes:?}");
    assert_eq!(verdicts_of(&records, port), ["keepalive_exhausted"]);
    drop(conn);
}
both_families!(
    cable_pulled_with_keepalive_then_keepalive_exhausted,
    cable_pulled_with_keepalive
);

/// Cable pulled on an idle connection without keepalive: the kernel never notices (no
/// event, no verdict); only the socket sweep can flag it.
fn cable_pulled_without_keepalive(v6: bool) {
    require_root();
    let hosts = Hosts::new("nokeep");
    let tracer = Tracer::live(&hosts.netns_args(), &[]);
    let conn = establish(&hosts, v6, ClientOptions::default());
    let port = conn.client_port;
    hosts.client.blackhole_from(Hosts::server_addr(v6));
    wait_until(VERDICT_TIMEOUT, "the sweep to flag half_open_risk", || {
        let snapshot = sockets_json(hosts.client.inode, "1s");
        snapshot["sockets"]
            .as_array()?
            .iter()
            .any(|s| s["lport"] == port && s["flags"][0] == "half_open_risk")
            .then_some(())
    });
    let (records, _) = tracer.stop();
    // The handshake may have its own events (an IPv6 SYN still waiting for neighbour
    // discovery makes the first SYN retransmit fail with EBUSY): only what follows counts.
    let established = records
        .iter()
        .find(|r| r["lport"] == port && r["kind"] == "state_change" && r["state"] == "ESTABLISHED")
        .and_then(|r| r["ts_ns"].as_u64())
        .expect("the handshake's ESTABLISHED");
    let after_handshake: Vec<&Value> = records
        .iter()
        .filter(|r| r["lport"] == port && r["kind"] != "state_change")
        .filter(|r| r["ts_ns"].as_u64().is_some_and(|ts| ts > established))
        .collect();
    assert!(
        after_handshake.is_empty(),
        "no event ever: {after_handshake:?}"
    );
    assert!(verdicts_of(&records, port).is_empty());
    drop(conn);
}
both_families!(
    cable_pulled_without_keepalive_only_the_sweep_sees_it,
    cable_pulled_without_keepalive
);

/// A middlebox between the hosts forgets an idle flow; our next send goes into the void.
fn middlebox_forgets_flow(v6: bool) {
    require_root();
    let net = Routed::new("mbox");
    let tracer = Tracer::live(&net.netns_args(), &[]);
    let options = ClientOptions {
        user_timeout: Some(Duration::from_secs(5)),
        ..Default::default()
    };
    let mut conn = establish_between(&net.client, &net.server, Routed::server_addr(v6), options);
    let port = conn.client_port;
    net.forget_flows();
    conn.client.write_all(b"are you there?").unwrap();
    let death = wait_verdict(&tracer, "retries_exhausted", port);
    assert_eq!(death["facts"]["error"], "ETIMEDOUT");
    let (records, _) = tracer.stop();
    assert!(
        records
            .iter()
            .any(|r| r["kind"] == "retransmit" && r["lport"] == port && r["class"] == "rto"),
        "retransmits into the blackhole"
    );
}
both_families!(
    middlebox_forgets_flow_then_retries_exhausted,
    middlebox_forgets_flow
);

/// Connecting to a closed port, and to an address that never answers.
fn connect_failures(v6: bool) {
    require_root();
    let hosts = Hosts::new("connect");
    let tracer = Tracer::live(&hosts.netns_args(), &[]);
    hosts.server.nft(
        "table inet t {\n chain in {\n type filter hook input priority 0;\n tcp dport 7202 drop\n }\n}\n",
    );
    let options = ClientOptions {
        syn_count: Some(1),
        ..Default::default()
    };
    let refused = SocketAddr::new(Hosts::server_addr(v6), 7201);
    let silent = SocketAddr::new(Hosts::server_addr(v6), 7202);
    assert!(connect(&hosts.client, "client", refused, options.clone()).is_err());
    assert!(connect(&hosts.client, "client", silent, options).is_err());
    let refused_verdict = tracer.wait_for(VERDICT_TIMEOUT, "connection_refused", |r| {
        r["type"] == "verdict" && r["verdict"] == "connection_refused" && r["rport"] == 7201
    });
    assert_eq!(refused_verdict["facts"]["error"], "ECONNREFUSED");
    let timeout_verdict = tracer.wait_for(VERDICT_TIMEOUT, "connect_timeout", |r| {
        r["type"] == "verdict" && r["verdict"] == "connect_timeout" && r["rport"] == 7202
    });
    assert_eq!(timeout_verdict["facts"]["error"], "ETIMEDOUT");
}
both_families!(connect_refused_and_timed_out, connect_failures);

/// SO_LINGER {1, 0}: this side aborts, the other side is reset.
fn linger_zero(v6: bool) {
    require_root();
    let hosts = Hosts::new("linger");
    let tracer = Tracer::live(&hosts.netns_args(), &[]);
    let conn = establish(&hosts, v6, ClientOptions::default());
    let (client_port, server_port) = (conn.client_port, conn.server_port);
    abort(conn.client);
    let local = wait_verdict(&tracer, "local_abort", client_port);
    assert!(local["facts"]["reset_reason"].is_string());
    let remote = wait_verdict(&tracer, "peer_reset", server_port);
    assert_eq!(remote["facts"]["peer_lost_state"], false);
    drop(conn.server);
    let (records, _) = tracer.stop();
    assert_eq!(verdicts_of(&records, client_port), ["local_abort"]);
    assert_eq!(verdicts_of(&records, server_port), ["peer_reset"]);
}
both_families!(linger_zero_is_local_abort_and_peer_reset, linger_zero);

/// The peer resets and our application never closes its socket.
fn dead_socket_held(v6: bool) {
    require_root();
    let hosts = Hosts::new("held");
    let tracer = Tracer::live(&hosts.netns_args(), &["--dead-socket-after", "2s"]);
    let conn = establish(&hosts, v6, ClientOptions::default());
    let port = conn.client_port;
    abort(conn.server);
    wait_verdict(&tracer, "peer_reset", port);
    let held = wait_verdict(&tracer, "dead_socket_held", port);
    assert!(held["facts"]["held_ms"].as_u64().unwrap() >= 2000);
    assert_eq!(held["process"]["pid"], std::process::id());
    drop(conn.client);
}
both_families!(dead_socket_held_after_reset, dead_socket_held);

/// The application closes with unacknowledged data while the peer is gone: the orphan
/// retransmits until tcp_orphan_retries, then dies.
fn orphan_timeout(v6: bool) {
    require_root();
    let hosts = Hosts::new("orphan");
    hosts.client.sysctl("net.ipv4.tcp_orphan_retries", "1");
    let tracer = Tracer::live(&hosts.netns_args(), &[]);
    let mut conn = establish(&hosts, v6, ClientOptions::default());
    let port = conn.client_port;
    hosts.client.blackhole_from(Hosts::server_addr(v6));
    conn.client.write_all(&[1u8; 2000]).unwrap();
    drop(conn.client);
    let verdict = wait_verdict(&tracer, "orphan_timeout", port);
    assert_eq!(verdict["facts"]["error"], "ETIMEDOUT");
    let (records, _) = tracer.stop();
    assert_eq!(verdicts_of(&records, port), ["orphan_timeout"]);
}
both_families!(orphan_dies_retransmitting, orphan_timeout);

/// Many connections at once, mixed scenarios, both families: every socket gets its own
/// verdict and none are crossed.
#[test]
fn mixed_scenarios_get_their_own_verdicts() {
    require_root();
    let hosts = Hosts::new("mixed");
    let tracer = Tracer::live(&hosts.netns_args(), &[]);
    // (local port, remote port, verdict): a connection by both ends.
    let mut expected: Vec<(u16, u16, &str)> = Vec::new();
    let mut keep = Vec::new();
    for v6 in [false, true] {
        // Aborted by us / reset by the peer.
        for _ in 0..3 {
            let conn = establish(&hosts, v6, ClientOptions::default());
            expected.push((conn.client_port, conn.server_port, "local_abort"));
            expected.push((conn.server_port, conn.client_port, "peer_reset"));
            keep.push(conn.server);
            abort(conn.client);
        }
        // Refused.
        for port in [7301, 7302] {
            let to = SocketAddr::new(Hosts::server_addr(v6), port);
            let _ = connect(&hosts.client, "client", to, ClientOptions::default());
        }
        // Orderly.
        for _ in 0..3 {
            let conn = establish(&hosts, v6, ClientOptions::default());
            expected.push((conn.client_port, conn.server_port, ""));
            drop(conn);
        }
    }
    for (port, _, verdict) in &expected {
        if !verdict.is_empty() {
            wait_verdict(&tracer, verdict, *port);
        }
    }
    wait_until(VERDICT_TIMEOUT, "four refused connects", || {
        let n = tracer
            .records()
            .iter()
            .filter(|r| r["type"] == "verdict" && r["verdict"] == "connection_refused")
            .count();
        (n == 4).then_some(())
    });
    drop(keep);
    let (records, _) = tracer.stop();
    for (port, peer, verdict) in expected {
        let got = verdicts_between(&records, port, peer);
        if verdict.is_empty() {
            assert!(got.is_empty(), "port {port}: orderly close got {got:?}");
        } else {
            assert_eq!(got, [verdict], "port {port} → {peer}");
        }
    }
}
