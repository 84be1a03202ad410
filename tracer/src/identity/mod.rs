//! Who owns a socket beyond a pid: the cgroup, container, pod and systemd unit, resolved
//! from the owner's cgroup v2 id without a Kubernetes API server.
//!
//! | module | holds |
//! |---|---|
//! | [`naming`] | cgroup path → [`Identity`]: one table row per runtime's naming scheme (pure) |
//! | [`mount`] | finding the cgroup2 hierarchy in `/proc/self/mountinfo`; `/proc/PID/cgroup` |
//! | [`pods`] | pod namespace and name from the kubelet's pod log directories |
//! | [`resolver`] | cgroup id → [`Identity`]: a bounded cache over the cgroup tree, a lookup by id on a miss |
//! | [`host`] | what the resolver reads from the host, behind the [`Host`] trait |
//! | [`label`] | the short label of an owner for text and metric labels: `pod payments/api-7f9c`, `ctr a1b2c3d4e5f6`, `unit nginx.service` |
//! | [`filter`] | `--container`, `--pod`, `--cgroup`: the owner filter, decided on an [`Identity`] |
//! | [`owners`] | a tracing session's identities: events' owners resolved, the owner filter decided and handed to the kernel |
//!
//! # The data model
//!
//! [`Identity`] serializes as one JSON object: the `container` object under `process` in
//! the trace format (`docs/trace-format.md`), in events, verdicts, reports and `tracer
//! sockets --json`:
//!
//! | field | type | present | meaning |
//! |---|---|---|---|
//! | `cgroup_path` | string | always | the owner's cgroup v2 path, as `/proc/PID/cgroup` shows it |
//! | `runtime` | `docker`, `containerd`, `crio`, `podman`, `systemd_nspawn`, `lxc`, `cri` | in a container | who runs the container; `cri`: a Kubernetes container whose cgroupfs-driver path does not name its runtime |
//! | `id` | string | in a container | the full container id (64 hex digits), or the machine / container name for systemd-nspawn and LXC |
//! | `pod` | object | in a Kubernetes pod | `uid`, `qos` (`guaranteed`, `burstable`, `best_effort`), and `namespace`, `name` when the pod log directory names them |
//! | `unit` | string | in a systemd unit below the pod or container, if any | the innermost `.service` or `.scope` unit (`nginx.service`, `session-3.scope`; inside a container running systemd, the container's own unit) |
//!
//! ```json
//! {"cgroup_path":"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0b8e…_….slice/cri-containerd-a1b2….scope",
//!  "runtime":"containerd","id":"a1b2…","pod":{"namespace":"payments","name":"api-7f9c","uid":"0b8e…","qos":"burstable"}}
//! ```
//!
//! `Display` gives the full short form: `pod payments/api-7f9c ctr a1b2c3d4e5f6`,
//! `ctr a1b2c3d4e5f6`, `unit nginx.service`, or `cgroup /some/path` when nothing is
//! recognised; [`Identity::short`] the one label per owner that text output shows
//! (`pod payments/api-7f9c`: a pod's containers share it).
//!
//! # Using it
//!
//! One [`Resolver`] per tracer process, owned by the event loop ([`Resolver::new`] finds the
//! cgroup2 mount and walks the tree once); a session uses it through [`OwnerIdentities`]:
//! - per event or verdict: [`Resolver::resolve`]`(process.cgroup_id)`. A hit is a hash
//!   lookup and an `Arc` clone (about 30 ns, no system call); keep the returned
//!   `Arc<Identity>` with the socket's owner ([`crate::event::Owner::container`]), so a
//!   container that exits later keeps its identity. A miss is looked up by id (three system
//!   calls, once per new cgroup). None: owner unknown (id 0), an id no cgroup has (gone, or
//!   outside this cgroup namespace), or, on a host that cannot look ids up, a new cgroup met
//!   within `refresh_interval` of the last walk;
//! - on the loop's periodic tick: [`Resolver::poll`], which walks for those new cgroups as
//!   soon as the rate limit allows;
//! - per `tracer sockets` row: [`Resolver::resolve_pid`]`(pid)` (reads `/proc/PID/cgroup`,
//!   `stat`s the directory for the id), or [`parse_cgroup_path`] on a path already read.

pub mod filter;
pub mod host;
pub mod label;
pub mod mount;
pub mod naming;
pub mod owners;
pub mod pods;
pub mod resolver;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use filter::{Decision, OwnerFilter};
pub use host::{Host, SystemHost};
pub use label::{owner_label, owner_short};
pub use mount::{Cgroup2Mount, unified_path};
pub use naming::parse_cgroup_path;
pub use owners::{CgroupDecisions, OwnerIdentities, SessionStats};
pub use resolver::{Config, ProcessCgroup, Resolver, Stats};

/// Who a cgroup belongs to, as far as its path (and the pod log directory) tells.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Identity {
    /// The cgroup v2 path, relative to the hierarchy's root (`/` is the root cgroup).
    pub cgroup_path: String,
    /// The innermost container the cgroup is in (serialized inline: `runtime`, `id`).
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Container>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<Pod>,
    /// The innermost systemd unit (`.service` or `.scope`) at or below the container, if
    /// any: `nginx.service`, `session-3.scope`, `init.scope`. Escapes (`\x2d`) are kept, as
    /// `systemctl` expects them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

impl Identity {
    /// A cgroup whose path names nothing known.
    pub fn bare(cgroup_path: impl Into<String>) -> Identity {
        Identity {
            cgroup_path: cgroup_path.into(),
            container: None,
            pod: None,
            unit: None,
        }
    }
}

/// A container: who runs it and its id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Container {
    pub runtime: Runtime,
    /// The full id: 64 hex digits for docker, containerd, CRI-O and podman; the machine or
    /// container name for systemd-nspawn and LXC.
    pub id: String,
}

impl Container {
    /// The id as `docker ps` shows it: the first 12 hex digits of a hex id; a name is
    /// returned whole.
    pub fn short_id(&self) -> &str {
        if self.id.len() > 12 && self.id.bytes().all(|b| b.is_ascii_hexdigit()) {
            &self.id[..12]
        } else {
            &self.id
        }
    }
}

/// The container runtime, as recognised from its cgroup naming.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Runtime {
    Docker,
    /// containerd: Kubernetes CRI (`cri-containerd-<id>.scope`) or nerdctl.
    Containerd,
    #[serde(rename = "crio")]
    CriO,
    Podman,
    SystemdNspawn,
    /// LXC and LXD.
    Lxc,
    /// A Kubernetes container under the kubelet's cgroupfs driver, whose path
    /// (`/kubepods/burstable/pod<uid>/<id>`) does not say which CRI runtime runs it.
    Cri,
}

impl Runtime {
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Containerd => "containerd",
            Runtime::CriO => "crio",
            Runtime::Podman => "podman",
            Runtime::SystemdNspawn => "systemd_nspawn",
            Runtime::Lxc => "lxc",
            Runtime::Cri => "cri",
        }
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Kubernetes pod. The cgroup path gives the uid and QoS class; the namespace and name
/// come from the kubelet's pod log directory (`/var/log/pods/<namespace>_<name>_<uid>/`)
/// when it exists.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Pod {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The pod's uid with dashes (systemd slice names spell them `_`), as `kubectl get pod
    /// -o jsonpath={.metadata.uid}` shows it; for a static pod, the kubelet's config hash.
    pub uid: String,
    pub qos: QosClass,
}

/// The pod's QoS class, from the kubepods level it sits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QosClass {
    /// Directly under `kubepods` (no QoS level in the path).
    Guaranteed,
    Burstable,
    BestEffort,
}

impl fmt::Display for Pod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.namespace, &self.name) {
            (Some(namespace), Some(name)) => write!(f, "pod {namespace}/{name}"),
            _ => write!(f, "pod {}", self.uid),
        }
    }
}

impl fmt::Display for Container {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ctr {}", self.short_id())
    }
}

/// The short form for text output: `pod NS/NAME ctr SHORTID`, `ctr SHORTID`,
/// `unit NAME`, else `cgroup PATH`.
impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.pod, &self.container, &self.unit) {
            (Some(pod), Some(container), _) => write!(f, "{pod} {container}"),
            (Some(pod), None, _) => write!(f, "{pod}"),
            (None, Some(container), _) => write!(f, "{container}"),
            (None, None, Some(unit)) => write!(f, "unit {unit}"),
            (None, None, None) => write!(f, "cgroup {}", self.cgroup_path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

    fn pod(named: bool) -> Pod {
        Pod {
            namespace: named.then(|| "payments".into()),
            name: named.then(|| "api-7f9c".into()),
            uid: "0b8e5c2a-1f3d-4c6b-9a7e-2d4f6b8a0c1e".into(),
            qos: QosClass::BestEffort,
        }
    }

    #[test]
    fn display_short_forms() {
        let ctr = Container {
            runtime: Runtime::Containerd,
            id: ID.into(),
        };
        let mut identity = Identity {
            pod: Some(pod(true)),
            container: Some(ctr.clone()),
            ..Identity::bare("/x")
        };
        assert_eq!(
            identity.to_string(),
            "pod payments/api-7f9c ctr a1b2c3d4e5f6"
        );
        identity.pod = Some(pod(false));
        assert_eq!(
            identity.to_string(),
            "pod 0b8e5c2a-1f3d-4c6b-9a7e-2d4f6b8a0c1e ctr a1b2c3d4e5f6"
        );
        identity.pod = None;
        assert_eq!(identity.to_string(), "ctr a1b2c3d4e5f6");
        let unit = Identity {
            unit: Some("nginx.service".into()),
            ..Identity::bare("/system.slice/nginx.service")
        };
        assert_eq!(unit.to_string(), "unit nginx.service");
        assert_eq!(Identity::bare("/").to_string(), "cgroup /");
        let named = Container {
            runtime: Runtime::SystemdNspawn,
            id: "debian-testing-machine".into(),
        };
        assert_eq!(named.short_id(), "debian-testing-machine");
    }

    #[test]
    fn serializes_flat_snake_case_and_round_trips() {
        let identity = Identity {
            container: Some(Container {
                runtime: Runtime::CriO,
                id: ID.into(),
            }),
            pod: Some(pod(true)),
            ..Identity::bare("/kubepods/besteffort/pod0b8e/crio-x")
        };
        let json = serde_json::to_value(&identity).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "cgroup_path": "/kubepods/besteffort/pod0b8e/crio-x",
                "runtime": "crio",
                "id": ID,
                "pod": {
                    "namespace": "payments",
                    "name": "api-7f9c",
                    "uid": "0b8e5c2a-1f3d-4c6b-9a7e-2d4f6b8a0c1e",
                    "qos": "best_effort"
                }
            })
        );
        let back: Identity = serde_json::from_value(json).unwrap();
        assert_eq!(back, identity);

        let unit = Identity {
            unit: Some("nginx.service".into()),
            ..Identity::bare("/system.slice/nginx.service")
        };
        let json = serde_json::to_string(&unit).unwrap();
        assert_eq!(
            json,
            r#"{"cgroup_path":"/system.slice/nginx.service","unit":"nginx.service"}"#
        );
        let back: Identity = serde_json::from_str(&json).unwrap();
        assert_eq!(back, unit, "no container fields: container is None");
    }

    #[test]
    fn runtime_names_match_serde() {
        for runtime in [
            Runtime::Docker,
            Runtime::Containerd,
            Runtime::CriO,
            Runtime::Podman,
            Runtime::SystemdNspawn,
            Runtime::Lxc,
            Runtime::Cri,
        ] {
            assert_eq!(
                serde_json::to_value(runtime).unwrap(),
                runtime.as_str(),
                "{runtime:?}"
            );
        }
    }
}
