//! Cgroup path → [`Identity`]: which container, Kubernetes pod and systemd unit a cgroup v2
//! path names. Pure: no filesystem; pod names are attached later (see [`super::pods`]).
//!
//! Container runtimes, one row of `SCHEMES` each (a path component `<prefix><id><suffix>`,
//! possibly required to sit under a given parent component):
//!
//! | runtime | driver | component | example |
//! |---|---|---|---|
//! | docker | systemd | `docker-<id>.scope` | `/system.slice/docker-<id>.scope` |
//! | docker | cgroupfs | `<id>` under `docker` | `/docker/<id>` |
//! | containerd | systemd (CRI) | `cri-containerd-<id>.scope` | `/kubepods.slice/…/cri-containerd-<id>.scope` |
//! | containerd | systemd (nerdctl) | `nerdctl-<id>.scope` | `/system.slice/nerdctl-<id>.scope` |
//! | crio | systemd | `crio-<id>.scope` (not `crio-conmon-<id>.scope`: the monitor) | `/kubepods.slice/…/crio-<id>.scope` |
//! | crio | cgroupfs | `crio-<id>` | `/kubepods/besteffort/pod<uid>/crio-<id>` |
//! | podman | systemd | `libpod-<id>.scope` (not `libpod-conmon-<id>.scope`) | `/machine.slice/libpod-<id>.scope` |
//! | podman | cgroupfs | `libpod-<id>` | `/libpod_parent/libpod-<id>` |
//! | systemd_nspawn | `machinectl start` | `systemd-nspawn@<name>.service` | `/machine.slice/systemd-nspawn@web.service` |
//! | systemd_nspawn | `systemd-nspawn` run directly | `machine-<name>.scope` (not libvirt's `machine-qemu\x2d…`) | `/machine.slice/machine-web.scope` |
//! | lxc | LXC 4+, LXD | `lxc.payload.<name>` (not `lxc.monitor.<name>`) | `/lxc.payload.web` |
//! | lxc | older LXC | `<name>` under `lxc.payload` or `lxc` | `/lxc/web` |
//! | cri | kubelet cgroupfs driver | `<id>` under a pod directory | `/kubepods/burstable/pod<uid>/<id>` |
//!
//! Hex ids are exactly 64 lowercase hex digits (what docker, containerd, CRI-O and podman
//! generate). Components match anywhere in the path, so nested layouts (a kind node's
//! `/system.slice/docker-<id>.scope/kubelet.slice/…`, a kubelet `--cgroup-root`) resolve too;
//! the innermost container wins, and a pod's container must sit below the pod.
//!
//! Pods: the systemd driver names the pod slice `[<parent>-]kubepods[-burstable|-besteffort]
//! -pod<uid>.slice` (uid dashes spelled `_`); the cgroupfs driver uses directories
//! `kubepods[/burstable|/besteffort]/pod<uid>`. No QoS level means Guaranteed.
//!
//! Units: the innermost `.service` or `.scope` component below the pod or container (if
//! any): `/system.slice/nginx.service`, `/user.slice/user-1000.slice/session-3.scope`,
//! `/user.slice/user-1000.slice/user@1000.service/app.slice/app-firefox.scope`.

use super::{Container, Identity, Pod, QosClass, Runtime};

/// One runtime naming scheme: a path component `<prefix><id><suffix>`.
struct Scheme {
    runtime: Runtime,
    prefix: &'static str,
    suffix: &'static str,
    parent: Parent,
    id: IdForm,
}

/// What the component before the container's must be.
#[derive(Clone, Copy)]
enum Parent {
    Any,
    Named(&'static str),
    /// A kubepods pod directory (`pod<uid>`).
    Pod,
}

#[derive(Clone, Copy)]
enum IdForm {
    /// 64 lowercase hex digits.
    Hex64,
    /// A non-empty name.
    Name,
    /// A systemd machine name (`\x2d` escapes undone); libvirt's VM and container
    /// registrations (`qemu-1-vm`, `lxc-1-name`) are not systemd-nspawn.
    Machine,
}

const SCHEMES: &[Scheme] = &[
    Scheme {
        runtime: Runtime::Docker,
        prefix: "docker-",
        suffix: ".scope",
        parent: Parent::Any,
        id: IdForm::Hex64,
    },
    Scheme {
        runtime: Runtime::Docker,
        prefix: "",
        suffix: "",
        parent: Parent::Named("docker"),
        id: IdForm::Hex64,
    },
    Scheme {
        runtime: Runtime::Containerd,
        prefix: "cri-containerd-",
        suffix: ".scope",
        parent: Parent::Any,
        id: IdForm::Hex64,
    },
    Scheme {
        runtime: Runtime::Containerd,
        prefix: "nerdctl-",
        suffix: ".scope",
        parent: Parent::Any,
        id: IdForm::Hex64,
    },
    Scheme {
        runtime: Runtime::CriO,
        prefix: "crio-",
        suffix: ".scope",
        parent: Parent::Any,
        id: IdForm::Hex64,
    },
    Scheme {
        runtime: Runtime::CriO,
        prefix: "crio-",
        suffix: "",
        parent: Parent::Any,
        id: IdForm::Hex64,
    },
    Scheme {
        runtime: Runtime::Podman,
        prefix: "libpod-",
        suffix: ".scope",
        parent: Parent::Any,
        id: IdForm::Hex64,
    },
    Scheme {
        runtime: Runtime::Podman,
        prefix: "libpod-",
        suffix: "",
        parent: Parent::Any,
        id: IdForm::Hex64,
    },
    Scheme {
        runtime: Runtime::SystemdNspawn,
        prefix: "systemd-nspawn@",
        suffix: ".service",
        parent: Parent::Any,
        id: IdForm::Machine,
    },
    Scheme {
        runtime: Runtime::SystemdNspawn,
        prefix: "machine-",
        suffix: ".scope",
        parent: Parent::Any,
        id: IdForm::Machine,
    },
    Scheme {
        runtime: Runtime::Lxc,
        prefix: "lxc.payload.",
        suffix: "",
        parent: Parent::Any,
        id: IdForm::Name,
    },
    Scheme {
        runtime: Runtime::Lxc,
        prefix: "",
        suffix: "",
        parent: Parent::Named("lxc.payload"),
        id: IdForm::Name,
    },
    Scheme {
        runtime: Runtime::Lxc,
        prefix: "",
        suffix: "",
        parent: Parent::Named("lxc"),
        id: IdForm::Name,
    },
    Scheme {
        runtime: Runtime::Cri,
        prefix: "",
        suffix: "",
        parent: Parent::Pod,
        id: IdForm::Hex64,
    },
];

/// What a cgroup path names (pod namespace and name left out: they come from the pod log
/// directory).
pub fn parse_cgroup_path(path: &str) -> Identity {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let pod = (0..parts.len())
        .rev()
        .find_map(|i| pod_at(&parts, i).map(|pod| (i, pod)));
    let pod_index = pod.as_ref().map(|(i, _)| *i);
    let container = (0..parts.len())
        .rev()
        .take_while(|&i| pod_index.is_none_or(|p| i > p))
        .find_map(|i| container_at(&parts, i).map(|c| (i, c)));
    let floor = container.as_ref().map(|(i, _)| *i).or(pod_index);
    let unit = (0..parts.len())
        .rev()
        .take_while(|&i| floor.is_none_or(|f| i > f))
        .find(|&i| is_unit(parts[i]))
        .map(|i| parts[i].to_owned());
    Identity {
        cgroup_path: path.to_owned(),
        container: container.map(|(_, c)| c),
        pod: pod.map(|(_, p)| p),
        unit,
    }
}

fn container_at(parts: &[&str], i: usize) -> Option<Container> {
    SCHEMES.iter().find_map(|scheme| scheme.matches(parts, i))
}

impl Scheme {
    /// The container component `i` names under this scheme.
    fn matches(&self, parts: &[&str], i: usize) -> Option<Container> {
        let parent_ok = match self.parent {
            Parent::Any => true,
            Parent::Named(name) => i > 0 && parts[i - 1] == name,
            Parent::Pod => i > 0 && pod_at(parts, i - 1).is_some(),
        };
        if !parent_ok {
            return None;
        }
        let id = parts[i]
            .strip_prefix(self.prefix)?
            .strip_suffix(self.suffix)?;
        let id = match self.id {
            IdForm::Hex64 => is_hex64(id).then(|| id.to_owned())?,
            IdForm::Name => (!id.is_empty()).then(|| id.to_owned())?,
            IdForm::Machine => machine_name(id)?,
        };
        Some(Container {
            runtime: self.runtime,
            id,
        })
    }
}

fn is_hex64(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn machine_name(escaped: &str) -> Option<String> {
    let name = unescape_unit(escaped);
    let libvirt = ["qemu-", "lxc-"].iter().any(|driver| {
        name.strip_prefix(driver)
            .and_then(|rest| rest.split_once('-'))
            .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    });
    (!name.is_empty() && !libvirt).then_some(name)
}

/// Undoes systemd's unit-name escaping (`\x2d` → `-`).
fn unescape_unit(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && bytes.get(i + 1) == Some(&b'x')
            && let Some(b) = s
                .get(i + 2..i + 4)
                .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A pod named by component `i`: a systemd-driver pod slice, or a cgroupfs-driver
/// `pod<uid>` directory under `kubepods[/<qos>]`.
fn pod_at(parts: &[&str], i: usize) -> Option<Pod> {
    let component = parts[i];
    if let Some(stem) = component.strip_suffix(".slice") {
        let at = stem.rfind("kubepods")?;
        if !(at == 0 || stem[..at].ends_with('-')) {
            return None;
        }
        let rest = &stem[at + "kubepods".len()..];
        let (qos, uid) = if let Some(uid) = rest.strip_prefix("-burstable-pod") {
            (QosClass::Burstable, uid)
        } else if let Some(uid) = rest.strip_prefix("-besteffort-pod") {
            (QosClass::BestEffort, uid)
        } else {
            (QosClass::Guaranteed, rest.strip_prefix("-pod")?)
        };
        return valid_uid(uid).then(|| Pod {
            namespace: None,
            name: None,
            uid: uid.replace('_', "-"),
            qos,
        });
    }
    let uid = component.strip_prefix("pod")?;
    let qos = match (i.checked_sub(1).map(|p| parts[p]), i.checked_sub(2)) {
        (Some("kubepods"), _) => QosClass::Guaranteed,
        (Some("burstable"), Some(k)) if parts[k] == "kubepods" => QosClass::Burstable,
        (Some("besteffort"), Some(k)) if parts[k] == "kubepods" => QosClass::BestEffort,
        _ => return None,
    };
    valid_uid(uid).then(|| Pod {
        namespace: None,
        name: None,
        uid: uid.to_owned(),
        qos,
    })
}

/// A pod uid: a UUID (dashes, or `_` in slice names) or a static pod's config hash.
fn valid_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn is_unit(component: &str) -> bool {
    [".service", ".scope"].iter().any(|suffix| {
        component
            .strip_suffix(suffix)
            .is_some_and(|stem| !stem.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f4d5e6a7b8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f80";
    const ID2: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const UID: &str = "0b8e5c2a-1f3d-4c6b-9a7e-2d4f6b8a0c1e";
    const UID_: &str = "0b8e5c2a_1f3d_4c6b_9a7e_2d4f6b8a0c1e";

    fn container(path: &str) -> Option<(Runtime, String)> {
        parse_cgroup_path(path).container.map(|c| (c.runtime, c.id))
    }

    fn pod(path: &str) -> Option<(String, QosClass)> {
        parse_cgroup_path(path).pod.map(|p| (p.uid, p.qos))
    }

    fn unit(path: &str) -> Option<String> {
        parse_cgroup_path(path).unit
    }

    #[track_caller]
    fn assert_container(path: &str, runtime: Runtime, id: &str) {
        assert_eq!(
            container(path),
            Some((runtime, id.to_owned())),
            "container of {path}"
        );
    }

    #[test]
    fn docker_systemd_and_cgroupfs_drivers() {
        assert_container(
            &format!("/system.slice/docker-{ID}.scope"),
            Runtime::Docker,
            ID,
        );
        assert_container(&format!("/docker/{ID}"), Runtime::Docker, ID);
        // Rootless docker under the user's systemd instance.
        assert_container(
            &format!("/user.slice/user-1000.slice/user@1000.service/user.slice/docker-{ID}.scope"),
            Runtime::Docker,
            ID,
        );
        assert_eq!(unit(&format!("/system.slice/docker-{ID}.scope")), None);
        // The daemon itself is a host service, not a container.
        assert_eq!(container("/system.slice/docker.service"), None);
        assert_eq!(
            unit("/system.slice/docker.service").as_deref(),
            Some("docker.service")
        );
    }

    #[test]
    fn near_misses_are_not_containers() {
        for path in [
            "/",
            "/init.scope",
            "/system.slice",
            "/system.slice/docker.socket",
            "/system.slice/docker-compose@app.service",
            "/docker",
            "/docker/buildkit",
            &format!("/docker/{}", &ID[..12]),
            &format!("/docker/{}", ID.to_uppercase()),
            &format!("/system.slice/docker-{ID}0.scope"),
            &format!("/system.slice/crio-conmon-{ID}.scope"),
            &format!("/machine.slice/libpod-conmon-{ID}.scope"),
            &format!("/system.slice/containerd-{ID}.scope"),
            "/lxc.monitor.web",
            "/lxc.pivot",
            "/machine.slice/machine-qemu\\x2d1\\x2ddebian12.scope",
            "/machine.slice/machine-lxc\\x2d4242\\x2dweb.scope",
            "/machine.slice/machine-.scope",
            &format!(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice"
            ),
            &format!("/kubepods/burstable/pod{UID}"),
            &format!("/somewhere/pod{UID}/{ID}"),
        ] {
            assert_eq!(container(path), None, "{path}");
        }
        assert_eq!(
            unit(&format!("/system.slice/crio-conmon-{ID}.scope")),
            Some(format!("crio-conmon-{ID}.scope")),
            "a conmon scope is a unit"
        );
        assert_eq!(unit("/init.scope").as_deref(), Some("init.scope"));
        assert_eq!(unit("/system.slice"), None);
        assert_eq!(unit("/"), None);
    }

    #[test]
    fn containerd_cri_and_nerdctl() {
        assert_container(
            &format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope"
            ),
            Runtime::Containerd,
            ID,
        );
        assert_container(
            &format!("/system.slice/nerdctl-{ID}.scope"),
            Runtime::Containerd,
            ID,
        );
    }

    #[test]
    fn crio_systemd_and_cgroupfs_but_not_conmon() {
        let pod_slice = format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice"
        );
        assert_container(&format!("{pod_slice}/crio-{ID}.scope"), Runtime::CriO, ID);
        let conmon = format!("{pod_slice}/crio-conmon-{ID}.scope");
        assert_eq!(container(&conmon), None);
        assert_eq!(
            pod(&conmon),
            Some((UID.to_owned(), QosClass::BestEffort)),
            "conmon runs in the pod"
        );
        assert_container(
            &format!("/kubepods/besteffort/pod{UID}/crio-{ID}"),
            Runtime::CriO,
            ID,
        );
    }

    #[test]
    fn podman_rootful_rootless_cgroupfs_but_not_conmon() {
        assert_container(
            &format!("/machine.slice/libpod-{ID}.scope"),
            Runtime::Podman,
            ID,
        );
        // Podman's own sub-cgroup for the container payload.
        assert_container(
            &format!("/machine.slice/libpod-{ID}.scope/container"),
            Runtime::Podman,
            ID,
        );
        assert_container(
            &format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"),
            Runtime::Podman,
            ID,
        );
        assert_container(&format!("/libpod_parent/libpod-{ID}"), Runtime::Podman, ID);
        assert_eq!(
            container(&format!(
                "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-conmon-{ID}.scope"
            )),
            None
        );
    }

    #[test]
    fn systemd_nspawn_service_and_scope() {
        assert_container(
            "/machine.slice/systemd-nspawn@web.service",
            Runtime::SystemdNspawn,
            "web",
        );
        assert_container(
            "/machine.slice/systemd-nspawn@web\\x2d01.service/payload/system.slice/nginx.service",
            Runtime::SystemdNspawn,
            "web-01",
        );
        assert_eq!(
            unit("/machine.slice/systemd-nspawn@web.service/payload/system.slice/nginx.service")
                .as_deref(),
            Some("nginx.service"),
            "the unit inside the container"
        );
        assert_container(
            "/machine.slice/machine-debian\\x2dtesting.scope",
            Runtime::SystemdNspawn,
            "debian-testing",
        );
    }

    #[test]
    fn lxc_payload_and_legacy() {
        assert_container("/lxc.payload.web", Runtime::Lxc, "web");
        assert_container("/lxc.payload.web/init.scope", Runtime::Lxc, "web");
        assert_eq!(
            unit("/lxc.payload.web/init.scope").as_deref(),
            Some("init.scope")
        );
        assert_container("/lxc.payload/web", Runtime::Lxc, "web");
        assert_container("/lxc/web", Runtime::Lxc, "web");
        assert_container("/lxc/web/system.slice/sshd.service", Runtime::Lxc, "web");
        // Docker inside an LXC container: the innermost container wins.
        assert_container(
            &format!("/lxc.payload.web/system.slice/docker-{ID}.scope"),
            Runtime::Docker,
            ID,
        );
    }

    #[test]
    fn kubepods_systemd_driver_every_qos_and_normalised_uid() {
        for (level, qos) in [
            (
                "kubepods-burstable.slice/kubepods-burstable-pod",
                QosClass::Burstable,
            ),
            (
                "kubepods-besteffort.slice/kubepods-besteffort-pod",
                QosClass::BestEffort,
            ),
            ("kubepods-pod", QosClass::Guaranteed),
        ] {
            let path = format!("/kubepods.slice/{level}{UID_}.slice/cri-containerd-{ID}.scope");
            assert_eq!(pod(&path), Some((UID.to_owned(), qos)), "{path}");
            assert_container(&path, Runtime::Containerd, ID);
            assert_eq!(unit(&path), None, "{path}");
        }
        // The pod slice alone: a pod, no container.
        let slice = format!("/kubepods.slice/kubepods-pod{UID_}.slice");
        assert_eq!(pod(&slice), Some((UID.to_owned(), QosClass::Guaranteed)));
        assert_eq!(container(&slice), None);
        // QoS slices and the kubepods slice are not pods.
        for path in [
            "/kubepods.slice",
            "/kubepods.slice/kubepods-burstable.slice",
            "/kubepods.slice/kubepods-besteffort.slice",
            "/kubepods.slice/kubepods-pod.slice",
            "/system.slice/notkubepods-pod1234.slice",
        ] {
            assert_eq!(pod(path), None, "{path}");
        }
        // dockershim / cri-dockerd under the systemd driver.
        assert_container(
            &format!("/kubepods.slice/kubepods-pod{UID_}.slice/docker-{ID}.scope"),
            Runtime::Docker,
            ID,
        );
    }

    #[test]
    fn kubepods_cgroupfs_driver() {
        for (level, qos) in [
            ("burstable/", QosClass::Burstable),
            ("besteffort/", QosClass::BestEffort),
            ("", QosClass::Guaranteed),
        ] {
            let path = format!("/kubepods/{level}pod{UID}/{ID}");
            assert_eq!(pod(&path), Some((UID.to_owned(), qos)), "{path}");
            assert_container(&path, Runtime::Cri, ID);
        }
        // A static pod's uid is the kubelet's config hash.
        assert_eq!(
            pod("/kubepods/burstable/pod6f2c0e1d9b8a7c6d5e4f3a2b1c0d9e8f"),
            Some((
                "6f2c0e1d9b8a7c6d5e4f3a2b1c0d9e8f".to_owned(),
                QosClass::Burstable
            ))
        );
        for path in [
            "/kubepods",
            "/kubepods/burstable",
            "/kubepods/burstable/pod",
            "/kubepods/other/pod1234",
            "/burstable/pod1234",
        ] {
            assert_eq!(pod(path), None, "{path}");
        }
        assert_eq!(
            container(&format!("/kubepods/burstable/pod{UID}/not-a-container")),
            None
        );
    }

    #[test]
    fn kind_node_nested_in_docker_and_custom_cgroup_root() {
        // kind: the node is a docker container; the kubelet's cgroup root is kubelet.slice.
        let path = format!(
            "/system.slice/docker-{ID2}.scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{UID_}.slice/cri-containerd-{ID}.scope"
        );
        assert_eq!(pod(&path), Some((UID.to_owned(), QosClass::BestEffort)));
        assert_container(&path, Runtime::Containerd, ID);
        // A process in the pod slice itself: the node's container is above the pod, so it
        // is not the pod's container, and the node's scope is not the pod's unit.
        let slice = format!(
            "/system.slice/docker-{ID2}.scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-pod{UID_}.slice"
        );
        assert_eq!(pod(&slice), Some((UID.to_owned(), QosClass::Guaranteed)));
        assert_eq!(container(&slice), None);
        assert_eq!(unit(&slice), None);
        // A kubelet --cgroup-root under the cgroupfs driver.
        let path = format!("/custom-root/kubepods/burstable/pod{UID}/{ID}");
        assert_eq!(pod(&path), Some((UID.to_owned(), QosClass::Burstable)));
        assert_container(&path, Runtime::Cri, ID);
        // Docker in a pod's container (cgroupfs): the inner container, the same pod.
        let path = format!("/kubepods/pod{UID}/{ID2}/docker/{ID}");
        assert_container(&path, Runtime::Docker, ID);
        assert_eq!(pod(&path), Some((UID.to_owned(), QosClass::Guaranteed)));
    }

    #[test]
    fn systemd_units_and_user_sessions() {
        let cases = [
            ("/system.slice/nginx.service", Some("nginx.service")),
            (
                "/system.slice/system-getty.slice/getty@tty1.service",
                Some("getty@tty1.service"),
            ),
            (
                "/user.slice/user-1000.slice/session-3.scope",
                Some("session-3.scope"),
            ),
            (
                "/user.slice/user-1000.slice/user@1000.service/init.scope",
                Some("init.scope"),
            ),
            (
                "/user.slice/user-1000.slice/user@1000.service/app.slice/app-org.gnome.Terminal.slice/vte-spawn-1.scope",
                Some("vte-spawn-1.scope"),
            ),
            (
                "/user.slice/user-1000.slice/user@1000.service/app.slice/pipewire.service",
                Some("pipewire.service"),
            ),
            (
                "/system.slice/system-serial\\x2dgetty.slice/serial-getty@ttyS0.service",
                Some("serial-getty@ttyS0.service"),
            ),
            ("/user.slice/user-1000.slice", None),
            ("/.service", None),
        ];
        for (path, expected) in cases {
            let identity = parse_cgroup_path(path);
            assert_eq!(identity.unit.as_deref(), expected, "{path}");
            assert_eq!(identity.container, None, "{path}");
            assert_eq!(identity.pod, None, "{path}");
            assert_eq!(identity.cgroup_path, path);
        }
    }

    #[test]
    fn unescape_unit_names() {
        assert_eq!(unescape_unit("a\\x2db\\x2dc"), "a-b-c");
        assert_eq!(unescape_unit("trailing\\x2"), "trailing\\x2");
        assert_eq!(unescape_unit("not\\xzzhex"), "not\\xzzhex");
        assert_eq!(unescape_unit("sign\\x+f"), "sign\\x+f");
        assert_eq!(unescape_unit("plain"), "plain");
    }

    #[test]
    fn every_scheme_row_is_exercised() {
        // One realistic path per row, in table order: a new row needs a case here.
        let paths = [
            format!("/system.slice/docker-{ID}.scope"),
            format!("/docker/{ID}"),
            format!("/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{ID}.scope"),
            format!("/system.slice/nerdctl-{ID}.scope"),
            format!("/kubepods.slice/kubepods-pod{UID_}.slice/crio-{ID}.scope"),
            format!("/kubepods/pod{UID}/crio-{ID}"),
            format!("/machine.slice/libpod-{ID}.scope"),
            format!("/libpod_parent/libpod-{ID}"),
            "/machine.slice/systemd-nspawn@web.service".to_owned(),
            "/machine.slice/machine-web.scope".to_owned(),
            "/lxc.payload.web".to_owned(),
            "/lxc.payload/web".to_owned(),
            "/lxc/web".to_owned(),
            format!("/kubepods/pod{UID}/{ID}"),
        ];
        assert_eq!(paths.len(), SCHEMES.len());
        for (path, scheme) in paths.iter().zip(SCHEMES) {
            let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
            assert!(
                scheme.matches(&parts, parts.len() - 1).is_some(),
                "the row for {:?} {}…{} should match {path}",
                scheme.runtime,
                scheme.prefix,
                scheme.suffix
            );
            assert_eq!(
                container(path).map(|(r, _)| r),
                Some(scheme.runtime),
                "{path}"
            );
        }
    }
}
