//! Owner identity against real cgroups: trees named as the kubelet (systemd and cgroupfs
//! drivers), docker, containerd, CRI-O, podman and systemd name them, real processes
//! moved into them, a real pod log directory, and the kernel's own cgroup ids.

use std::{io::Write, net::TcpListener, sync::Arc, time::Duration};

use tracer::identity::{Config, Container, Identity, Pod, QosClass, Resolver, Runtime};
use tracer_tests::{
    Tracer,
    cgroup::{CgroupTree, TempDir},
    require_root,
};

/// A 64-hex container id, different per `n` and per test process.
fn ctr_id(n: u32) -> String {
    format!("{:08x}{n:08x}", std::process::id()).repeat(4)
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
