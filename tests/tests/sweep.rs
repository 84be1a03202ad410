//! The socket sweep and the host report against the real kernel: the dangers no event
//! will ever show.

use std::{process::Command, time::Duration};

use serde_json::Value;
use socket2::{SockRef, TcpKeepalive};
use tracer_tests::{
    Hosts, Netns, Tracer, require_root,
    scenario::{ClientOptions, establish},
    tracer::{run_json, run_ok, sockets_json, tracer_bin},
    wait_until,
};

fn socket_with_lport(snapshot: &Value, lport: u16) -> Option<Value> {
    snapshot["sockets"]
        .as_array()?
        .iter()
        .find(|s| s["lport"] == lport)
        .cloned()
}

fn half_open(v6: bool) {
    require_root();
    let hosts = Hosts::new("halfopen");
    let plain = establish(&hosts, v6, ClientOptions::default());
    // Keepalive on, but not due for ten minutes: no probe will fire during the test.
    let guarded = establish(
        &hosts,
        v6,
        ClientOptions {
            keepalive: Some((Duration::from_secs(600), Duration::from_secs(60), 5)),
            ..Default::default()
        },
    );
    hosts.client.blackhole_from(Hosts::server_addr(v6));
    let flagged = wait_until(
        Duration::from_secs(20),
        "the idle socket to be flagged",
        || {
            let snapshot = sockets_json(hosts.client.inode, "1s");
            let s = socket_with_lport(&snapshot, plain.client_port)?;
            (s["flags"].as_array()?.iter().any(|f| f == "half_open_risk")).then_some(snapshot)
        },
    );
    let plain_socket = socket_with_lport(&flagged, plain.client_port).unwrap();
    assert_eq!(plain_socket["state"], "ESTABLISHED");
    assert_eq!(plain_socket["keepalive"], false);
    assert_eq!(plain_socket["process"]["pid"], std::process::id());
    assert!(
        plain_socket["socket"].as_u64().unwrap() > 0,
        "the cookie joins events"
    );
    let guarded_socket = socket_with_lport(&flagged, guarded.client_port).unwrap();
    assert_eq!(guarded_socket["keepalive"], true);
    assert_eq!(guarded_socket["timer"], "keepalive");
    assert!(
        guarded_socket["flags"].as_array().unwrap().is_empty(),
        "keepalive protects it: {guarded_socket}"
    );
    // The text table says the same.
    let netns = hosts.client.inode.to_string();
    let out = Command::new(tracer_bin())
        .args([
            "sockets",
            "--flagged",
            "--netns",
            &netns,
            "--idle-threshold",
            "1s",
        ])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("half_open_risk"), "{table}");
    assert!(
        !table.contains(&format!(":{} ", guarded.client_port)),
        "{table}"
    );
}

mod half_open_risk_is_flagged_without_keepalive {
    #[test]
    fn ipv4() {
        super::half_open(false);
    }
    #[test]
    fn ipv6() {
        super::half_open(true);
    }
}

#[test]
fn doctor_computes_detection_times_from_the_namespace_sysctls() {
    require_root();
    let ns = Netns::new("doctor");
    ns.sysctl("net.ipv4.tcp_retries2", "5");
    ns.sysctl("net.ipv4.tcp_keepalive_time", "60");
    ns.sysctl("net.ipv4.tcp_keepalive_intvl", "10");
    ns.sysctl("net.ipv4.tcp_keepalive_probes", "3");
    ns.sysctl("net.ipv4.tcp_syn_retries", "2");
    let report = run_json(["doctor", "--json"]);
    let entry = report["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["netns"] == ns.inode)
        .cloned()
        .expect("the test namespace is listed");
    assert_eq!(entry["names"][0], ns.name);
    assert_eq!(entry["sysctls"]["tcp_retries2"], 5);
    // (2^6 − 1) × 200 ms.
    assert_eq!(entry["detection"]["data_in_flight_ms"], 12_600);
    // 60 s + 3 × 10 s.
    assert_eq!(entry["detection"]["idle_with_keepalive_ms"], 90_000);
    assert_eq!(entry["detection"]["idle_without_keepalive_ms"], Value::Null);
    // Five 1 s SYN timeouts, then the 7 s budget of syn_retries=2 (with or without the
    // 6.5+ linear timeouts the answer is 7 s).
    assert_eq!(entry["detection"]["connect_ms"], 7_000);
    // Root: every program was verified by this kernel (and none attached).
    assert_eq!(report["verified"], true);
    let hooks = report["hooks"].as_array().unwrap();
    assert!(
        hooks
            .iter()
            .any(|h| h["tracepoint"] == "tcp_retransmit_skb" && h["state"] == "ok")
    );
    assert!(hooks.iter().all(|h| h["attached"] == false));
    assert!(
        hooks
            .iter()
            .all(|h| h["without_it"].as_str().is_some_and(|s| !s.is_empty()))
    );
}

/// A connection opened before `tracer live` started gets its keepalive probes and its
/// verdict, attributed to the right socket and process (found by the start-up sweep).
fn opened_before_tracing(v6: bool) {
    require_root();
    let hosts = Hosts::new("before");
    let conn = establish(&hosts, v6, ClientOptions::default());
    let port = conn.client_port;
    let mut args = vec!["live".to_owned(), "--json".to_owned()];
    args.extend(hosts.netns_args());
    let tracer = Tracer::start(&args);
    let swept = tracer.wait_for(Duration::from_secs(10), "the sweep event", |r| {
        r["kind"] == "sweep" && r["lport"] == port
    });
    assert_eq!(swept["state"], "ESTABLISHED");
    assert_eq!(swept["process"]["pid"], std::process::id());
    assert_eq!(swept["process"]["owner"], "sweep");
    // Now the connection starts probing a peer that is gone.
    SockRef::from(&conn.client)
        .set_tcp_keepalive(
            &TcpKeepalive::new()
                .with_time(Duration::from_secs(1))
                .with_interval(Duration::from_secs(1))
                .with_retries(2),
        )
        .unwrap();
    SockRef::from(&conn.client).set_keepalive(true).unwrap();
    hosts.client.blackhole_from(Hosts::server_addr(v6));
    let verdict = tracer.wait_for(Duration::from_secs(30), "keepalive_exhausted", |r| {
        r["type"] == "verdict" && r["verdict"] == "keepalive_exhausted" && r["lport"] == port
    });
    assert_eq!(
        verdict["socket"], swept["socket"],
        "the same socket as the sweep found"
    );
    assert_eq!(verdict["process"]["pid"], std::process::id());
    assert_eq!(verdict["facts"]["probes"], 2);
    let (records, _) = tracer.stop();
    let probes: Vec<&Value> = records
        .iter()
        .filter(|r| r["kind"] == "keepalive_probe" && r["lport"] == port)
        .collect();
    // A probe may go out (and be answered) before the blackhole is in place; the
    // unanswered series is the last one.
    let numbers: Vec<u64> = probes
        .iter()
        .map(|p| p["probe"].as_u64().unwrap())
        .collect();
    assert!(numbers.ends_with(&[1, 2]), "{numbers:?}");
    assert!(probes.iter().all(|p| p["socket"] == swept["socket"]));
    drop(conn);
}

mod connection_opened_before_tracing_gets_its_verdict {
    #[test]
    fn ipv4() {
        super::opened_before_tracing(false);
    }
    #[test]
    fn ipv6() {
        super::opened_before_tracing(true);
    }
}

/// A host with many namespaces of identical settings (a Kubernetes node) gets one block for
/// them, and only the differences of the others.
#[test]
fn doctor_prints_one_block_for_namespaces_with_identical_settings() {
    require_root();
    // Settings no other namespace has, so that the group is exactly these: not even this
    // test's namespaces in another run of the suite at the same time (the probe count is
    // this process's own).
    let probes = (20 + std::process::id() % 100).to_string();
    let set = |ns: &Netns, retries2: &'static str| {
        let probes = probes.clone();
        ns.run_in("sysctl", move || {
            for (name, value) in [
                ("tcp_retries2", retries2),
                ("tcp_keepalive_probes", probes.as_str()),
                ("tcp_syn_retries", "4"),
            ] {
                std::fs::write(format!("/proc/sys/net/ipv4/{name}"), value).unwrap();
            }
        })
    };
    let same: Vec<Netns> = (0..50).map(|i| Netns::new(&format!("same{i}"))).collect();
    for ns in &same {
        set(ns, "11");
    }
    let odd = Netns::new("odd");
    set(&odd, "12");

    let report = run_json(["doctor", "--json"]);
    let groups = report["groups"].as_array().unwrap();
    let inodes = |group: &Value| -> Vec<u64> {
        let mut v: Vec<u64> = group["netns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_u64().unwrap())
            .collect();
        v.sort_unstable();
        v
    };
    let group_of = |inode: u32| {
        groups
            .iter()
            .find(|g| inodes(g).contains(&u64::from(inode)))
            .expect("every namespace is in a group")
    };
    let mut ours: Vec<u64> = same.iter().map(|ns| u64::from(ns.inode)).collect();
    ours.sort_unstable();
    let group = group_of(same[0].inode);
    assert_eq!(inodes(group), ours, "the 50 namespaces, and only them");
    let differs = group["differs_from_first"].to_string();
    assert!(differs.contains("tcp_retries2=11"), "{differs}");
    assert_eq!(inodes(group_of(odd.inode)), [u64::from(odd.inode)]);

    let text = String::from_utf8(run_ok(["doctor"]).stdout).unwrap();
    let headings: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.starts_with("  50 namespaces: ")
                && l.contains(&format!("trc-{}-", std::process::id()))
        })
        .collect();
    assert_eq!(headings.len(), 1, "{text}");
    assert!(headings[0].contains("and 42 more"), "{}", headings[0]);
    // Their settings are printed once, for all 50.
    assert_eq!(text.matches("tcp_retries2=11 (").count(), 1, "{text}");
    assert_eq!(text.matches("tcp_retries2=12 (").count(), 1, "{text}");
    let odd_heading = text
        .lines()
        .position(|l| l.starts_with("  1 namespace: ") && l.contains(&odd.name))
        .unwrap_or_else(|| panic!("{text}"));
    let differs = text.lines().nth(odd_heading + 1).unwrap();
    assert!(
        differs.contains("differs from the first group:") && differs.contains("tcp_retries2=12"),
        "{differs}"
    );
}
