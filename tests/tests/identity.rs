//! Owner identity against real cgroups: trees named as the kubelet (systemd and cgroupfs
//! drivers), docker, containerd, CRI-O, podman and systemd name them, real processes
//! moved into them, a real pod log directory, and the kernel's own cgroup ids.

use std::{
    io::{BufRead, BufReader, Write},
    net::{IpAddr, SocketAddr, TcpListener},
    process::{ChildStdin, ChildStdout, Command},
    sync::Arc,
    time::Duration,
};

use serde_json::Value;
use tracer::identity::{Config, Container, Identity, Pod, QosClass, Resolver, Runtime};
use tracer_tests::{
    Hosts, Netns, Tracer, both_families,
    cgroup::{CgroupTree, Placed, TempDir},
    require_root,
    scenario::{ClientOptions, connect, listen},
    tracer::run_ok,
};

/// A 64-hex container id, different per `n` and per test process; its first 12 digits (the
/// short id) differ per `n`.
fn ctr_id(n: u32) -> String {
    format!("{n:08x}{:08x}", std::process::id()).repeat(4)
}

/// A pod uid, different per `n` and per test process.
fn pod_uid(n: u32) -> String {
    format!("{:08x}-{n:04x}-4c6b-9a7e-2d4f6b8a0c1e", std::process::id())
}

fn resolver(pod_log_dir: &TempDir, refresh_interval: Duration) -> Resolver {
    Resolver::new(Config {
        pod_log_dir: pod_log_dir.0.clone(),
        refresh_interval,
        ..Config::default()
    })
    .expect("cgroup2 mount")
}

/// What a cgroup should resolve to (its path is known once it is created).
struct Expected {
    container: Option<Container>,
    pod: Option<Pod>,
    unit: Option<String>,
}

fn ctr(runtime: Runtime, n: u32) -> Option<Container> {
    Some(Container {
        runtime,
        id: ctr_id(n),
    })
}

fn pod(uid: &str, qos: QosClass, namespace: &str, name: &str) -> Option<Pod> {
    Some(Pod {
        namespace: Some(namespace.to_owned()),
        name: Some(name.to_owned()),
        uid: uid.to_owned(),
        qos,
    })
}

#[track_caller]
fn check(identity: &Identity, path: &str, expected: &Expected) {
    let expected = Identity {
        cgroup_path: path.to_owned(),
        container: expected.container.clone(),
        pod: expected.pod.clone(),
        unit: expected.unit.clone(),
    };
    assert_eq!(*identity, expected);
}

#[test]
fn every_naming_scheme_resolves_from_real_cgroups_and_processes() {
    require_root();
    let mut tree = CgroupTree::new("ident");
    let pods = TempDir::new("pods");
    let (uid1, uid2, uid3) = (pod_uid(1), pod_uid(2), pod_uid(3));
    pods.mkdir(&format!("payments_api-7f9c_{uid1}"));
    pods.mkdir(&format!("kube-system_coredns-5d78c_{uid2}"));
    pods.mkdir(&format!("shop_cart-0_{uid3}"));
    pods.mkdir(&format!("shop_cart-0_{uid3}/cart"));
    let slice = |uid: &str| uid.replace('-', "_");
    let cases: Vec<(String, Expected)> = vec![
        (
            format!(
                "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{}.scope",
                slice(&uid1),
                ctr_id(1)
            ),
            Expected {
                container: ctr(Runtime::Containerd, 1),
                pod: pod(&uid1, QosClass::Burstable, "payments", "api-7f9c"),
                unit: None,
            },
        ),
        (
            format!(
                "kubepods.slice/kubepods-pod{}.slice/crio-{}.scope",
                slice(&uid2),
                ctr_id(2)
            ),
            Expected {
                container: ctr(Runtime::CriO, 2),
                pod: pod(&uid2, QosClass::Guaranteed, "kube-system", "coredns-5d78c"),
                unit: None,
            },
        ),
        (
            // CRI-O's monitor: in the pod, not a container.
            format!(
                "kubepods.slice/kubepods-pod{}.slice/crio-conmon-{}.scope",
                slice(&uid2),
                ctr_id(2)
            ),
            Expected {
                container: None,
                pod: pod(&uid2, QosClass::Guaranteed, "kube-system", "coredns-5d78c"),
                unit: Some(format!("crio-conmon-{}.scope", ctr_id(2))),
            },
        ),
        (
            format!("kubepods/besteffort/pod{uid3}/{}", ctr_id(3)),
            Expected {
                container: ctr(Runtime::Cri, 3),
                pod: pod(&uid3, QosClass::BestEffort, "shop", "cart-0"),
                unit: None,
            },
        ),
        (
            format!("system.slice/docker-{}.scope", ctr_id(4)),
            Expected {
                container: ctr(Runtime::Docker, 4),
                pod: None,
                unit: None,
            },
        ),
        (
            format!("docker/{}", ctr_id(5)),
            Expected {
                container: ctr(Runtime::Docker, 5),
                pod: None,
                unit: None,
            },
        ),
        (
            format!("machine.slice/libpod-{}.scope", ctr_id(6)),
            Expected {
                container: ctr(Runtime::Podman, 6),
                pod: None,
                unit: None,
            },
        ),
        (
            "system.slice/nginx.service".to_owned(),
            Expected {
                container: None,
                pod: None,
                unit: Some("nginx.service".to_owned()),
            },
        ),
    ];
    let placed: Vec<_> = cases.iter().map(|(rel, _)| tree.spawn_in(rel)).collect();
    // Built after the tree: its first walk finds every cgroup.
    let mut resolver = resolver(&pods, Duration::from_secs(3600));
    let walks = resolver.stats().walks;
    for ((_, expected), p) in cases.iter().zip(&placed) {
        let identity = resolver
            .resolve(p.cgroup_id)
            .unwrap_or_else(|| panic!("cgroup {} ({}) not resolved", p.cgroup_id, p.path));
        check(&identity, &p.path, expected);
        // The same through /proc/PID/cgroup, as `tracer sockets` will.
        let by_pid = resolver.resolve_pid(p.pid).expect("process cgroup");
        assert_eq!(by_pid.cgroup_id, p.cgroup_id);
        assert_eq!(by_pid.identity, identity);
    }
    assert_eq!(resolver.stats().walks, walks, "all found by the first walk");
    assert_eq!(
        resolver.resolve(placed[0].cgroup_id).unwrap().to_string(),
        format!("pod payments/api-7f9c ctr {}", &ctr_id(1)[..12])
    );
    assert_eq!(
        resolver.resolve(placed[7].cgroup_id).unwrap().to_string(),
        "unit nginx.service"
    );
    // Steady state: hits on the real host touch no file.
    let calls = resolver.stats().host_calls;
    for _ in 0..1000 {
        for p in &placed {
            assert!(resolver.resolve(p.cgroup_id).is_some());
        }
    }
    assert_eq!(resolver.stats().host_calls, calls);
}

#[test]
fn a_cgroup_created_after_the_resolver_resolves_on_a_miss() {
    require_root();
    let mut tree = CgroupTree::new("late");
    let pods = TempDir::new("pods");
    // No walk allowed for an hour: a new cgroup is looked up by its id alone.
    let mut resolver = resolver(&pods, Duration::from_secs(3600));
    let walks = resolver.stats().walks;
    // A pod started after the resolver: log directory first, as the kubelet does.
    let uid = pod_uid(7);
    pods.mkdir(&format!("late_web-1_{uid}"));
    let p = tree.spawn_in(&format!(
        "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/cri-containerd-{}.scope",
        uid.replace('-', "_"),
        ctr_id(7)
    ));
    let identity = resolver.resolve(p.cgroup_id).expect("resolved on the miss");
    check(
        &identity,
        &p.path,
        &Expected {
            container: ctr(Runtime::Containerd, 7),
            pod: pod(&uid, QosClass::BestEffort, "late", "web-1"),
            unit: None,
        },
    );
    let stats = resolver.stats();
    assert_eq!(stats.walks, walks, "no walk");
    assert_eq!(stats.lookups, 1, "one lookup by id for the miss");
}

#[test]
fn a_removed_cgroup_keeps_its_last_identity() {
    require_root();
    let mut tree = CgroupTree::new("gone");
    let pods = TempDir::new("pods");
    let p = tree.spawn_in(&format!("system.slice/docker-{}.scope", ctr_id(8)));
    let mut resolver = resolver(&pods, Duration::ZERO);
    let before: Arc<Identity> = resolver.resolve(p.cgroup_id).expect("resolved");
    tree.remove(p.pid, &p.path);
    assert_eq!(resolver.resolve(p.cgroup_id), Some(before));
    // A cgroup created and removed before its first lookup: no cgroup has its id any more.
    let q = tree.spawn_in("system.slice/after.service");
    tree.remove(q.pid, &q.path);
    let lookups = resolver.stats().lookups;
    assert_eq!(resolver.resolve(q.cgroup_id), None);
    assert_eq!(resolver.resolve(q.cgroup_id), None);
    assert_eq!(
        resolver.stats().lookups,
        lookups + 1,
        "remembered as unknown"
    );
}

/// The id the kernel programs report (`bpf_get_current_cgroup_id`) is the cgroup
/// directory's inode, which the resolver resolves.
#[test]
fn kernel_cgroup_id_is_the_directory_inode() {
    require_root();
    let mut tree = CgroupTree::new("kid");
    let pods = TempDir::new("pods");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let tracer = Tracer::live(&[], &["--port", &port.to_string()]);
    let (p, mut go) = tree.spawn_script_in(
        &format!("system.slice/docker-{}.scope", ctr_id(9)),
        &format!("read -r _; exec 3<>/dev/tcp/127.0.0.1/{port}; read -r _"),
    );
    writeln!(go, "connect").unwrap();
    let event = tracer.wait_for(
        Duration::from_secs(20),
        "the connect of the process in the cgroup",
        |r| r["type"] == "event" && r["process"]["pid"] == p.pid && r["rport"] == port,
    );
    assert_eq!(
        event["process"]["cgroup_id"], p.cgroup_id,
        "the kernel's cgroup id is the directory inode ({})",
        p.path
    );
    let mut resolver = resolver(&pods, Duration::ZERO);
    let identity = resolver
        .resolve(event["process"]["cgroup_id"].as_u64().unwrap())
        .expect("resolved");
    assert_eq!(identity.cgroup_path, p.path);
    assert_eq!(
        identity
            .container
            .as_ref()
            .map(|c| (c.runtime, c.id.clone())),
        Some((Runtime::Docker, ctr_id(9)))
    );
    drop(go);
    tracer.stop();
}

// ---------------------------------------------------------------------------------------
// The tracer itself: identities in verdicts, and the owner filter in the kernel.

const VERDICT_TIMEOUT: Duration = Duration::from_secs(60);

/// A `tcp-peer` process in a cgroup of its own, inside a network namespace.
struct Peer {
    placed: Placed,
    stdin: ChildStdin,
    out: BufReader<ChildStdout>,
}

impl Peer {
    fn spawn(tree: &mut CgroupTree, rel: &str, netns: &Netns, args: &[String]) -> Peer {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tcp-peer"));
        cmd.args(args);
        let (placed, stdin, out) = tree.spawn_command_in(rel, cmd, Some(netns));
        Peer { placed, stdin, out }
    }

    /// Its next line of output.
    fn line(&mut self) -> String {
        let mut line = String::new();
        self.out.read_line(&mut line).expect("tcp-peer output");
        assert!(!line.is_empty(), "tcp-peer {} exited", self.placed.pid);
        line.trim_end().to_owned()
    }

    /// Lets it exit (it waits for its standard input to close).
    fn finish(self) -> Placed {
        drop(self.stdin);
        self.placed
    }
}

fn connect_args(to: SocketAddr, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["connect".to_owned(), to.to_string()];
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

/// What a record's `process.container` must say.
struct Owned<'a> {
    runtime: Option<&'a str>,
    id: Option<String>,
    /// (namespace, name, uid)
    pod: Option<(&'a str, &'a str, String)>,
    unit: Option<&'a str>,
}

#[track_caller]
fn assert_owned_by(record: &Value, placed: &Placed, expected: &Owned) {
    let process = &record["process"];
    assert_eq!(process["pid"], placed.pid, "{record}");
    assert_eq!(process["cgroup_id"], placed.cgroup_id, "{record}");
    let container = &process["container"];
    assert_eq!(container["cgroup_path"], placed.path.as_str(), "{record}");
    assert_eq!(container["runtime"].as_str(), expected.runtime, "{record}");
    assert_eq!(container["id"].as_str(), expected.id.as_deref(), "{record}");
    match &expected.pod {
        Some((namespace, name, uid)) => {
            let pod = &container["pod"];
            assert_eq!(pod["namespace"], *namespace, "{record}");
            assert_eq!(pod["name"], *name, "{record}");
            assert_eq!(pod["uid"], uid.as_str(), "{record}");
        }
        None => assert!(container.get("pod").is_none(), "{record}"),
    }
    assert_eq!(container["unit"].as_str(), expected.unit, "{record}");
}

fn wait_verdict(
    tracer: &Tracer,
    verdict: &str,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    tracer.wait_for(VERDICT_TIMEOUT, what, |r| {
        r["type"] == "verdict" && r["verdict"] == verdict && pred(r)
    })
}

/// Every cgroup is created after the tracer started (so each is resolved when its first
/// event arrives), named as the kubelet (systemd and cgroupfs drivers), containerd, CRI-O,
/// docker and systemd name theirs, and holds a real process that owns the socket: four
/// refused connects, a keepalive death on an accepted socket and a retransmission give-up.
/// The two deaths happen in TCP timers (softirq), on whatever task was interrupted: they
/// are attributed through the socket's owner.
fn verdicts_name_their_owners(v6: bool) {
    require_root();
    let hosts = Hosts::new("idv");
    let pods = TempDir::new("pods");
    let (uid1, uid2, uid3) = (pod_uid(11), pod_uid(12), pod_uid(13));
    pods.mkdir(&format!("payments_api-7f9c_{uid1}"));
    pods.mkdir(&format!("kube-system_coredns-5d78c_{uid2}"));
    pods.mkdir(&format!("shop_cart-0_{uid3}"));
    let pod_log_dir = pods.0.to_str().unwrap().to_owned();
    let tracer = Tracer::live(&hosts.netns_args(), &["--pod-log-dir", &pod_log_dir]);
    let mut tree = CgroupTree::new("idv");
    let server = Hosts::server_addr(v6);
    let slice = |uid: &str| uid.replace('-', "_");

    // Refused connects, one owner each.
    let refused: Vec<(String, Owned)> = vec![
        (
            format!(
                "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{}.scope",
                slice(&uid1),
                ctr_id(11)
            ),
            Owned {
                runtime: Some("containerd"),
                id: Some(ctr_id(11)),
                pod: Some(("payments", "api-7f9c", uid1.clone())),
                unit: None,
            },
        ),
        (
            format!(
                "kubepods.slice/kubepods-pod{}.slice/crio-{}.scope",
                slice(&uid2),
                ctr_id(12)
            ),
            Owned {
                runtime: Some("crio"),
                id: Some(ctr_id(12)),
                pod: Some(("kube-system", "coredns-5d78c", uid2.clone())),
                unit: None,
            },
        ),
        (
            format!("system.slice/docker-{}.scope", ctr_id(14)),
            Owned {
                runtime: Some("docker"),
                id: Some(ctr_id(14)),
                pod: None,
                unit: None,
            },
        ),
        (
            "system.slice/nginx.service".to_owned(),
            Owned {
                runtime: None,
                id: None,
                pod: None,
                unit: Some("nginx.service"),
            },
        ),
    ];
    let closed = SocketAddr::new(server, 7301);
    let mut refused_by = Vec::new();
    for (rel, expected) in &refused {
        let mut peer = Peer::spawn(&mut tree, rel, &hosts.client, &connect_args(closed, &[]));
        assert_eq!(peer.line(), "refused");
        let pid = peer.placed.pid;
        let verdict = wait_verdict(&tracer, "connection_refused", rel, |r| {
            r["process"]["pid"] == pid
        });
        assert_owned_by(&verdict, &peer.placed, expected);
        refused_by.push(peer.finish());
    }

    // A server in a pod (kubelet cgroupfs driver) whose accepted socket has keepalive on.
    let keepalive_owner = Owned {
        runtime: Some("cri"),
        id: Some(ctr_id(13)),
        pod: Some(("shop", "cart-0", uid3.clone())),
        unit: None,
    };
    let mut server_peer = Peer::spawn(
        &mut tree,
        &format!("kubepods/besteffort/pod{uid3}/{}", ctr_id(13)),
        &hosts.server,
        &[
            "serve".to_owned(),
            SocketAddr::new(server, 0).to_string(),
            "--keepalive".to_owned(),
            "1000,1000,2".to_owned(),
        ],
    );
    let port: u16 = server_peer
        .line()
        .strip_prefix("listening ")
        .and_then(|p| p.parse().ok())
        .expect("listening PORT");
    let quiet_client = connect(
        &hosts.client,
        "client",
        SocketAddr::new(server, port),
        ClientOptions::default(),
    )
    .expect("connect to the pod's server");
    assert_eq!(server_peer.line(), "accepted");

    // A client in a container (docker, cgroupfs driver) sending into a dying connection.
    let rto_owner = Owned {
        runtime: Some("docker"),
        id: Some(ctr_id(15)),
        pod: None,
        unit: None,
    };
    let listener = listen(&hosts.server, server, 0);
    let to = SocketAddr::new(server, listener.local_addr().unwrap().port());
    let mut sender = Peer::spawn(
        &mut tree,
        &format!("docker/{}", ctr_id(15)),
        &hosts.client,
        &connect_args(to, &["--user-timeout", "3000", "--send-every", "100"]),
    );
    let sender_port: u16 = sender
        .line()
        .strip_prefix("connected ")
        .and_then(|p| p.parse().ok())
        .expect("connected PORT");
    let _accepted = listener.accept().expect("accept");

    // The client host stops hearing the server: the server's keepalive probes and its
    // ACKs of the sender's data go unanswered.
    hosts.client.blackhole_from(server);
    let keepalive = wait_verdict(
        &tracer,
        "keepalive_exhausted",
        "the pod server's keepalive death",
        |r| r["lport"] == port,
    );
    assert_owned_by(&keepalive, &server_peer.placed, &keepalive_owner);
    let rto = wait_verdict(
        &tracer,
        "retries_exhausted",
        "the container's give-up",
        |r| r["lport"] == sender_port,
    );
    assert_owned_by(&rto, &sender.placed, &rto_owner);
    assert!(
        sender.line().starts_with("closed "),
        "the sender saw its connection die"
    );
    drop(quiet_client);
    let server_placed = server_peer.finish();
    let sender_placed = sender.finish();
    let (records, stderr) = tracer.stop();

    // The deaths inside the timers: the events carry the owner, not the interrupted task.
    for (lport, placed, expected) in [
        (port, &server_placed, &keepalive_owner),
        (sender_port, &sender_placed, &rto_owner),
    ] {
        let death = records
            .iter()
            .find(|r| {
                r["type"] == "event"
                    && r["lport"] == lport
                    && r["kind"] == "state_change"
                    && r["state"] == "CLOSE"
                    && r["timer"].is_string()
            })
            .unwrap_or_else(|| panic!("the death in a timer on port {lport}"));
        assert_owned_by(death, placed, expected);
    }
    // Every event of those processes has the container object, from the first one on.
    for (placed, expected) in refused_by.iter().zip(refused.iter().map(|(_, e)| e)) {
        let events: Vec<&Value> = records
            .iter()
            .filter(|r| r["type"] == "event" && r["process"]["pid"] == placed.pid)
            .collect();
        assert!(events.len() >= 3, "{events:?}");
        for e in events {
            assert_owned_by(e, placed, expected);
        }
    }
    // The exit summary counts the verdicts by pod, container and unit.
    for label in [
        "pod payments/api-7f9c".to_owned(),
        "pod kube-system/coredns-5d78c".to_owned(),
        "pod shop/cart-0".to_owned(),
        format!("ctr {}", &ctr_id(14)[..12]),
        format!("ctr {}", &ctr_id(15)[..12]),
        "unit nginx.service".to_owned(),
    ] {
        assert!(
            stderr.lines().any(|l| l.trim_start().starts_with(&label)),
            "summary line for {label}:\n{stderr}"
        );
    }

    // The recorded trace reads back with the same identities in text and Perfetto reports.
    let trace = TempDir::new("trace");
    let path = trace.0.join("t.jsonl");
    let lines: Vec<String> = records
        .iter()
        .filter(|r| r["type"] != "status")
        .map(Value::to_string)
        .collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let text = String::from_utf8(run_ok(["report".as_ref(), path.as_os_str()]).stdout).unwrap();
    assert!(
        text.contains(&format!("tcp-peer/{} [pod shop/cart-0]", server_placed.pid)),
        "{text}"
    );
    let perfetto = trace.0.join("t.perfetto.json");
    run_ok([
        "report".as_ref(),
        "--format".as_ref(),
        "perfetto".as_ref(),
        "-o".as_ref(),
        perfetto.as_os_str(),
        path.as_os_str(),
    ]);
    let perfetto = std::fs::read_to_string(perfetto).unwrap();
    assert!(
        perfetto.contains(&format!(
            "tcp-peer ({}) [ctr {}]",
            sender_placed.pid,
            &ctr_id(15)[..12]
        )),
        "{perfetto}"
    );
}
both_families!(
    verdicts_name_containers_pods_and_units,
    verdicts_name_their_owners
);

/// `--pod` and `--container` select owners; other owners' events are dropped in the kernel:
/// at once for cgroups that existed when tracing started, after their first events for
/// cgroups created later. A container started later in the selected pod is traced.
#[test]
fn pod_and_container_filters_drop_other_owners_in_the_kernel() {
    require_root();
    let hosts = Hosts::new("idf");
    let pods = TempDir::new("pods");
    let (wanted_uid, other_uid) = (pod_uid(21), pod_uid(23));
    pods.mkdir(&format!("payments_api-7f9c_{wanted_uid}"));
    pods.mkdir(&format!("shop_cart-0_{other_uid}"));
    let pod_log_dir = pods.0.to_str().unwrap().to_owned();
    let mut tree = CgroupTree::new("idf");
    let wanted_pod = format!(
        "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice",
        wanted_uid.replace('-', "_")
    );
    let in_wanted_pod = format!("{wanted_pod}/cri-containerd-{}.scope", ctr_id(21));
    let wanted_container = format!("system.slice/docker-{}.scope", ctr_id(22));
    let other_pod = format!(
        "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/cri-containerd-{}.scope",
        other_uid.replace('-', "_"),
        ctr_id(23)
    );
    for rel in [&in_wanted_pod, &wanted_container, &other_pod] {
        tree.create(rel);
    }
    let mut args = hosts.netns_args();
    args.extend(
        [
            "--pod",
            "payments/api-7f9c",
            "--container",
            &ctr_id(22)[..12],
            "--pod-log-dir",
            &pod_log_dir,
        ]
        .map(String::from),
    );
    let tracer = Tracer::live(&args, &[]);
    let closed = SocketAddr::new(Hosts::server_addr(false), 7302);
    let refuse = |tree: &mut CgroupTree, rel: &str, times: u32| {
        let mut peer = Peer::spawn(
            tree,
            rel,
            &hosts.client,
            &connect_args(closed, &["--times", &times.to_string()]),
        );
        for _ in 0..times {
            assert_eq!(peer.line(), "refused");
        }
        peer.finish()
    };

    // An owner in another pod, whose cgroup existed when tracing started: dropped in the
    // kernel from its first event (each refused connect makes at least 4 events of its
    // owner: SYN_SENT, the reset, CLOSE, the error report, the release).
    let filtered_before = tracer.kernel_counter("filtered");
    let other = refuse(&mut tree, &other_pod, 5);
    let filtered = tracer.kernel_counter("filtered") - filtered_before;
    assert!(
        filtered >= 5 * 4,
        "the kernel filtered {filtered} events while 5 connects were refused"
    );

    // Wanted: the pod's container, and a container started in the pod after the tracer;
    // the container chosen by id.
    let late_in_pod = format!("{wanted_pod}/cri-containerd-{}.scope", ctr_id(24));
    let wanted = [
        refuse(&mut tree, &in_wanted_pod, 2),
        refuse(&mut tree, &late_in_pod, 2),
        refuse(&mut tree, &wanted_container, 2),
    ];
    // Another container started after the tracer: its first connect's events reach
    // userspace undecided; the decision goes to the kernel, which drops the rest.
    let late_other = format!("system.slice/docker-{}.scope", ctr_id(25));
    let first = refuse(&mut tree, &late_other, 1);
    std::thread::sleep(Duration::from_millis(500));
    let rest = refuse(&mut tree, &late_other, 5);
    for placed in &wanted {
        let pid = placed.pid;
        tracer.wait_for(VERDICT_TIMEOUT, &placed.path, |r| {
            r["type"] == "verdict"
                && r["process"]["pid"] == pid
                && r["verdict"] == "connection_refused"
        });
    }
    let (records, stderr) = tracer.stop();
    for placed in &wanted {
        let verdicts = records
            .iter()
            .filter(|r| r["type"] == "verdict" && r["process"]["pid"] == placed.pid)
            .count();
        assert_eq!(verdicts, 2, "{}", placed.path);
    }
    for placed in [&other, &first, &rest] {
        let leaked: Vec<&Value> = records
            .iter()
            .filter(|r| r["process"]["pid"] == placed.pid)
            .collect();
        assert!(leaked.is_empty(), "{}: {leaked:?}", placed.path);
    }
    // Userspace saw only the late container's first connect (6 events at most: SYN_SENT,
    // the reset, CLOSE, two error reports, the release): the other pod's 30-odd events and
    // the late container's later ones never left the kernel.
    let summary = stderr
        .lines()
        .find(|l| l.starts_with("── summary:"))
        .unwrap_or_else(|| panic!("no summary: {stderr}"));
    let by_owner_filter: u64 = summary
        .trim_end_matches(" ──")
        .split(", ")
        .find_map(|part| part.strip_suffix(" by the owner filter"))
        .map_or(0, |n| n.parse().unwrap());
    assert!(
        (1..=6).contains(&by_owner_filter),
        "dropped in userspace: {by_owner_filter} ({summary})"
    );
}

/// `tracer sockets` names the owner's container from /proc/PID/cgroup.
#[test]
fn sockets_names_the_owner_container() {
    require_root();
    let ns = Netns::new("ids");
    let pods = TempDir::new("pods");
    let mut tree = CgroupTree::new("ids");
    let mut server = Peer::spawn(
        &mut tree,
        &format!("system.slice/docker-{}.scope", ctr_id(31)),
        &ns,
        &[
            "serve".to_owned(),
            SocketAddr::new(IpAddr::from([127, 0, 0, 1]), 0).to_string(),
        ],
    );
    let port: u16 = server
        .line()
        .strip_prefix("listening ")
        .and_then(|p| p.parse().ok())
        .unwrap();
    let mut client = Peer::spawn(
        &mut tree,
        "system.slice/client.service",
        &ns,
        &connect_args(SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port), &[]),
    );
    assert!(client.line().starts_with("connected "));
    assert_eq!(server.line(), "accepted");
    let json: Value = serde_json::from_slice(
        &run_ok([
            "sockets",
            "--json",
            "--netns",
            &ns.inode.to_string(),
            "--pod-log-dir",
            pods.0.to_str().unwrap(),
        ])
        .stdout,
    )
    .unwrap();
    let sockets = json["sockets"].as_array().expect("sockets");
    let owned_by = |pid: u32| {
        sockets
            .iter()
            .find(|s| s["process"]["pid"] == pid && s["state"] == "ESTABLISHED")
            .unwrap_or_else(|| panic!("a socket of {pid}: {json}"))
    };
    let s = owned_by(server.placed.pid);
    assert_eq!(s["process"]["cgroup_id"], server.placed.cgroup_id);
    assert_eq!(s["process"]["container"]["runtime"], "docker");
    assert_eq!(s["process"]["container"]["id"], ctr_id(31));
    let c = owned_by(client.placed.pid);
    assert_eq!(c["process"]["container"]["unit"], "client.service");
    let table =
        String::from_utf8(run_ok(["sockets", "--netns", &ns.inode.to_string()]).stdout).unwrap();
    assert!(
        table.contains(&format!(
            "tcp-peer/{} [ctr {}]",
            server.placed.pid,
            &ctr_id(31)[..12]
        )),
        "{table}"
    );
    drop(server.finish());
    drop(client.finish());
}
