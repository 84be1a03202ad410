//! `tracer agent` with the real components a fleet runs around it: a Prometheus server
//! scraping it (PromQL through Prometheus's HTTP API), `promtool` checking the exposition
//! and the alert rules we ship, and an OTLP/HTTP receiver decoding the log records with
//! the official protobuf definitions. The deaths are real, in network namespaces.

use std::{
    collections::BTreeMap,
    io::Write,
    net::{SocketAddr, TcpStream},
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use tracer_tests::{
    Hosts,
    agent::{Agent, OtlpReceiver, Prometheus, Received, free_port, http_get, sample},
    require_root,
    scenario::{ClientOptions, abort, connect, establish},
    wait_until,
};

const DEATH_TIMEOUT: Duration = Duration::from_secs(60);

fn promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (cargo xtask test installs it)");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn counts(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// Waits until `f` returns what is expected; on timeout, shows the last value and the
/// agent's log.
fn wait_for_value<T: PartialEq + std::fmt::Debug>(
    agent: &Agent,
    what: &str,
    expected: T,
    mut f: impl FnMut() -> T,
) {
    let deadline = std::time::Instant::now() + DEATH_TIMEOUT;
    loop {
        let got = f();
        if got == expected {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}: expected {expected:?}, got {got:?}\nagent log:\n{}\n\
             exposition:\n{}",
            agent.stderr(),
            agent.scrape()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every death users meet, once each, seen through Prometheus (exact counts by verdict,
/// gauges rising and falling) and through an OTLP receiver (each verdict once, with its
/// attributes).
#[test]
fn agent_exports_each_death_to_prometheus_and_otlp() {
    require_root();
    let hosts = Hosts::new("agent");
    let receiver = OtlpReceiver::start(free_port());
    let mut args = hosts.netns_args();
    args.extend(
        [
            "--no-sweep",
            "--dead-socket-after",
            "2s",
            "--otlp-endpoint",
            &format!("http://{}", receiver.addr),
        ]
        .map(String::from),
    );
    let agent = Agent::start(&args);
    let prometheus = Prometheus::scraping(agent.metrics);
    wait_until(DEATH_TIMEOUT, "Prometheus's first scrape", || {
        (prometheus.value("up{job=\"tracer\"}") == 1.0).then_some(())
    });

    // IPv4: the blackholed peer (both ways: neither side hears the other again).
    let keepalive = establish(
        &hosts,
        false,
        ClientOptions {
            keepalive: Some((Duration::from_secs(1), Duration::from_secs(1), 3)),
            ..Default::default()
        },
    );
    let mut rto = establish(
        &hosts,
        false,
        ClientOptions {
            user_timeout: Some(Duration::from_secs(8)),
            ..Default::default()
        },
    );
    // IPv6: refused, and reset by the peer while our application keeps its socket.
    let refused = SocketAddr::new(Hosts::server_addr(true), 7501);
    assert!(connect(&hosts.client, "client", refused, ClientOptions::default()).is_err());
    let reset = establish(&hosts, true, ClientOptions::default());
    let (reset_client, reset_server) = (reset.client_port, reset.server_port);
    // Every segment of the handshake and the hello exchange acknowledged (a delayed ACK
    // lost in the blackhole would start a retransmit streak of its own).
    for stream in [
        &keepalive.client,
        &keepalive.server,
        &rto.client,
        &rto.server,
    ] {
        wait_until(DEATH_TIMEOUT, "all data acknowledged", || {
            (unacked(stream) == 0).then_some(())
        });
    }
    hosts.client.blackhole_from(Hosts::server_addr(false));
    hosts.server.blackhole_from(Hosts::client_addr(false));
    rto.client.write_all(&[1u8; 2000]).unwrap();
    abort(reset.server);

    // The gauges rise: the peer stops answering our retransmits; then the three clients
    // whose connections died (reset, keepalive, retransmits) keep their sockets...
    wait_for_value(&agent, "an unresponsive peer", 1.0, || {
        prometheus.value("sum(tracer_peer_unresponsive)")
    });
    wait_for_value(&agent, "three sockets held dead", 3.0, || {
        prometheus.value("sum(tracer_dead_sockets_held)")
    });
    // ... and fall: the kernel gave up retransmitting; the application closes its sockets.
    wait_for_value(&agent, "no unresponsive peer", 0.0, || {
        prometheus.value("sum(tracer_peer_unresponsive)")
    });
    drop((reset.client, keepalive.client, rto.client));
    wait_for_value(&agent, "no socket held dead", 0.0, || {
        prometheus.value("sum(tracer_dead_sockets_held)")
    });

    let deaths = counts(&[
        ("connection_refused", 1.0),
        ("keepalive_exhausted", 1.0),
        ("local_abort", 1.0),
        ("peer_reset", 1.0),
        ("retries_exhausted", 1.0),
    ]);
    wait_for_value(&agent, "the deaths by verdict", deaths, || {
        prometheus.sum_by("tracer_connection_deaths_total", "verdict")
    });
    let mut verdicts = counts(&[("dead_socket_held", 3.0), ("peer_unresponsive", 1.0)]);
    verdicts.extend(prometheus.sum_by("tracer_connection_deaths_total", "verdict"));
    assert_eq!(
        prometheus.sum_by("tracer_verdicts_total", "verdict"),
        verdicts
    );
    assert_eq!(
        prometheus.sum_by("tracer_connect_failures_total", "verdict"),
        counts(&[("connection_refused", 1.0)])
    );
    let causes: BTreeMap<String, f64> = prometheus
        .query("tracer_connection_deaths_total")
        .into_iter()
        .map(|(labels, v)| (format!("{}/{}", labels["verdict"], labels["cause"]), v))
        .collect();
    assert_eq!(causes["connection_refused/ECONNREFUSED"], 1.0);
    assert_eq!(causes["keepalive_exhausted/ETIMEDOUT"], 1.0);
    assert_eq!(causes["retries_exhausted/ETIMEDOUT"], 1.0);
    assert_eq!(causes["peer_reset/ECONNRESET"], 1.0);
    assert!(
        causes
            .keys()
            .any(|c| c.starts_with("local_abort/") && c != "local_abort/unknown"),
        "local_abort's cause is the kernel's reset reason: {causes:?}"
    );
    let netns = prometheus.sum_by("tracer_verdicts_total", "netns");
    assert_eq!(
        netns.keys().cloned().collect::<Vec<_>>(),
        {
            let mut both = vec![
                hosts.client.inode.to_string(),
                hosts.server.inode.to_string(),
            ];
            both.sort();
            both
        },
        "labelled by network namespace"
    );
    assert!(prometheus.value("sum(tracer_keepalive_probes_total)") >= 3.0);
    assert!(prometheus.value("sum(tracer_retransmitted_segments_total{class=\"rto\"})") >= 3.0);
    assert_eq!(
        prometheus.value("sum(tracer_resets_total{direction=\"received\"})"),
        2.0,
        "the refused SYN's answer and the abort's reset"
    );
    assert_eq!(prometheus.value("tracer_events_lost_total"), 0.0);
    assert!(prometheus.value("tracer_programs_attached") >= 10.0);

    // What Prometheus stores is what the endpoint says; promtool accepts the exposition.
    let exposition = agent.scrape();
    let (ok, lint) = promtool(&["check", "metrics"], Some(&exposition));
    assert!(ok, "promtool check metrics: {lint}\n{exposition}");
    let (status, openmetrics) = http_get(
        agent.metrics,
        "/metrics",
        "application/openmetrics-text; version=1.0.0",
    )
    .unwrap();
    assert_eq!(status, 200);
    assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");
    assert!(
        !exposition.contains(&Hosts::server_addr(false).to_string()),
        "no addresses by default"
    );

    // OTLP: each verdict exactly once, with its attributes.
    let expected = [
        ("connection_refused", None, Some(7501)),
        ("keepalive_exhausted", Some(keepalive.client_port), None),
        ("peer_unresponsive", Some(rto.client_port), None),
        ("retries_exhausted", Some(rto.client_port), None),
        ("local_abort", Some(reset_server), None),
        ("peer_reset", Some(reset_client), None),
        ("dead_socket_held", Some(reset_client), None),
        ("dead_socket_held", Some(keepalive.client_port), None),
        ("dead_socket_held", Some(rto.client_port), None),
    ];
    wait_for_value(&agent, "9 OTLP records", expected.len(), || {
        receiver.records().len()
    });
    let records = receiver.records();
    assert!(receiver.bad_requests.lock().unwrap().is_empty());
    let hostname = tracer::kernel::host::hostname();
    for (verdict, lport, rport) in expected {
        let matching: Vec<&Received> = records
            .iter()
            .filter(|r| r.str("tracer.verdict").as_deref() == Some(verdict))
            .filter(|r| lport.is_none_or(|p| r.int("network.local.port") == Some(i64::from(p))))
            .filter(|r| rport.is_none_or(|p| r.int("network.peer.port") == Some(p)))
            .collect();
        assert_eq!(matching.len(), 1, "{verdict}: {records:#?}");
        let r = matching[0];
        assert_eq!(r.str("network.transport").as_deref(), Some("tcp"));
        assert!(r.str("network.peer.address").is_some());
        assert_eq!(r.str("resource.host.name"), Some(hostname.clone()));
        assert_eq!(r.str("resource.service.name").as_deref(), Some("tracer"));
        assert!(!r.body().is_empty(), "{verdict}: the explanation");
        assert!(r.record.time_unix_nano > 1_600_000_000_000_000_000);
        assert_eq!(r.record.event_name, "tracer.verdict");
        let netns = r.int("tracer.netns").unwrap() as u32;
        assert!(netns == hosts.client.inode || netns == hosts.server.inode);
        match verdict {
            "local_abort" => assert!(r.str("tracer.facts.reset_reason").is_some()),
            "peer_unresponsive" => assert!(r.int("tracer.facts.consecutive_rtos") >= Some(3)),
            _ => assert!(r.str("tracer.facts.error").is_some(), "{verdict}: {r:#?}"),
        }
    }
    let by = |verdict: &str| {
        records
            .iter()
            .find(|r| r.str("tracer.verdict").as_deref() == Some(verdict))
            .unwrap()
    };
    let refused = by("connection_refused");
    assert_eq!(
        refused.str("server.address"),
        Some(Hosts::server_addr(true).to_string())
    );
    assert_eq!(refused.int("server.port"), Some(7501));
    assert_eq!(
        refused.str("tracer.facts.error").as_deref(),
        Some("ECONNREFUSED")
    );
    assert_eq!(
        refused.str("process.executable.name").as_deref(),
        Some("client")
    );
    assert_eq!(
        refused.int("process.pid"),
        Some(i64::from(std::process::id()))
    );
    let keepalive_death = by("keepalive_exhausted");
    assert_eq!(keepalive_death.int("tracer.facts.probes"), Some(3));
    assert_eq!(
        keepalive_death.int("client.port"),
        Some(i64::from(keepalive.client_port)),
        "the role seen at connect"
    );
    let abort_record = by("local_abort");
    assert_eq!(
        abort_record.int("server.port"),
        Some(i64::from(reset_server)),
        "the accepted side is the server"
    );
    wait_for_value(
        &agent,
        "the exported records counted",
        expected.len() as f64,
        || prometheus.value("tracer_otlp_exported_records_total"),
    );

    let log = agent.stop_with(libc::SIGTERM);
    assert!(
        log.contains("level=info msg=detached reason=signal"),
        "{log}"
    );
    for line in log.lines() {
        assert!(line.starts_with("level="), "logfmt lines only: {line:?}");
    }
    drop((keepalive.server, rto.server));
}

/// Segments sent on `stream` and not yet acknowledged (TCP_INFO's tcpi_unacked).
fn unacked(stream: &TcpStream) -> u32 {
    use std::os::fd::AsRawFd;
    // SAFETY: tcp_info is plain integers; getsockopt writes at most `len` bytes into it.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::tcp_info>() as libc::socklen_t;
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
    info.tcpi_unacked
}

/// Every verdict of every kind and namespace: one OTLP record each.
fn verdicts_total(exposition: &str) -> f64 {
    exposition
        .lines()
        .filter(|l| l.starts_with("tracer_verdicts_total{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// The collector is down: records queue up to the bound, the oldest are dropped and
/// counted, memory stays flat, tracing goes on; once it is back, what is queued and what
/// comes next arrives.
#[test]
fn an_unreachable_collector_costs_bounded_memory_and_counted_drops() {
    require_root();
    let hosts = Hosts::new("otlpdown");
    let port = free_port();
    let mut args = hosts.netns_args();
    args.extend(
        [
            "--no-sweep",
            "--otlp-endpoint",
            &format!("http://127.0.0.1:{port}"),
            "--otlp-queue",
            "100",
        ]
        .map(String::from),
    );
    let agent = Agent::start(&args);
    let refuse = |n: u16, first_port: u16| {
        let to = Hosts::server_addr(false);
        hosts.client.run_in("client", move || {
            for i in 0..n {
                let port = first_port + i % 100;
                assert!(TcpStream::connect(SocketAddr::new(to, port)).is_err());
            }
        });
    };
    let netns = hosts.client.inode;
    let refused_series =
        format!("tracer_verdicts_total{{verdict=\"connection_refused\",netns=\"{netns}\"}}");
    // Storms of 5000, in bursts of 500 that the tracer (a debug build, on a shared machine)
    // reads without loss. Two reach the high-water mark (the reads' buffers, the
    // allocator's arenas)...
    let mut rss_before = 0;
    for round in 1..=6 {
        for burst in 1..=10 {
            refuse(500, 7600);
            let total = (round - 1) * 5000 + burst * 500;
            wait_for_value(&agent, "refused connects", total as f64, || {
                agent.sample(&refused_series)
            });
        }
        if round == 2 {
            rss_before = agent.rss_kib();
        }
    }
    // ... and four more keep none of their 20 000 records (a queue that kept them would
    // need about 40 MiB).
    wait_for_value(&agent, "a failed export", true, || {
        agent.sample("tracer_otlp_failed_requests_total") >= 1.0
    });
    let text = agent.scrape();
    let queued = sample(&text, "tracer_otlp_queued_records");
    let dropped = sample(
        &text,
        "tracer_otlp_dropped_records_total{reason=\"queue_full\"}",
    );
    let failed = sample(
        &text,
        "tracer_otlp_dropped_records_total{reason=\"export_failed\"}",
    );
    let exported = sample(&text, "tracer_otlp_exported_records_total");
    assert_eq!(exported, 0.0);
    assert!(queued <= 200.0, "the queue and one batch at most: {queued}");
    // One record per verdict: the 30 000 refusals, and the retry storms they make (one
    // process refused by the same peer again and again).
    let verdicts = verdicts_total(&text);
    assert!(verdicts > 30000.0, "refusals and retry storms\n{text}");
    assert_eq!(
        queued + dropped + failed,
        verdicts,
        "every record accounted for\n{text}"
    );
    let rss_after = agent.rss_kib();
    assert!(
        rss_after < rss_before + 16 * 1024,
        "memory stays bounded: VmRSS {rss_before} KiB, then {rss_after} KiB"
    );

    // The collector comes back: what is queued and what comes next arrives.
    let receiver = OtlpReceiver::start(port);
    refuse(10, 7800);
    wait_for_value(&agent, "30010 refused connects", 30010.0, || {
        agent.sample(&refused_series)
    });
    wait_for_value(&agent, "an empty queue", 0.0, || {
        agent.sample("tracer_otlp_queued_records")
    });
    let text = agent.scrape();
    let exported = sample(&text, "tracer_otlp_exported_records_total");
    let dropped = sample(
        &text,
        "tracer_otlp_dropped_records_total{reason=\"queue_full\"}",
    ) + sample(
        &text,
        "tracer_otlp_dropped_records_total{reason=\"export_failed\"}",
    );
    assert_eq!(exported + dropped, verdicts_total(&text), "{text}");
    let records = receiver.records();
    assert_eq!(records.len() as f64, exported);
    for port in 7800..7810 {
        let n = records
            .iter()
            .filter(|r| r.int("network.peer.port") == Some(port))
            .count();
        assert_eq!(n, 1, "the refused connect to port {port}, once");
    }
    // SIGHUP reopens the collector's connection; export goes on.
    agent.signal(libc::SIGHUP);
    wait_for_value(&agent, "outputs reopened", true, || {
        agent.stderr().contains("msg=\"SIGHUP: outputs reopened\"")
    });
    refuse(1, 7900);
    wait_for_value(&agent, "the record after SIGHUP", 1, || {
        receiver
            .records()
            .iter()
            .filter(|r| r.int("network.peer.port") == Some(7900))
            .count()
    });
    agent.stop_with(libc::SIGINT);
}

/// The alert rules we ship are valid Prometheus rules, and fire on the series tracer
/// exports (deploy/prometheus/alerts_test.yml).
#[test]
fn alert_rules_pass_promtool() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus");
    let rules = dir.join("alerts.yml");
    let (ok, out) = promtool(&["check", "rules", rules.to_str().unwrap()], None);
    assert!(ok && out.contains("SUCCESS"), "promtool check rules: {out}");
    let tests = dir.join("alerts_test.yml");
    let (ok, out) = promtool(&["test", "rules", tests.to_str().unwrap()], None);
    assert!(ok, "promtool test rules: {out}");
}
