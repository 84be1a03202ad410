//! How an owner's identity reads in text: one short label per owner, the same in live
//! lines, reports, Perfetto tracks, `tracer sockets` and the exit summary (and usable as a
//! metric label).
//!
//! | the cgroup names | label |
//! |---|---|
//! | a pod (with or without a container) | `pod NAMESPACE/NAME`, or `pod UID8` (the uid's first 8 characters) when the pod log directory does not name it |
//! | a container outside any pod | `ctr SHORTID` (12 hex digits, as `docker ps`; the name for systemd-nspawn and LXC) |
//! | a systemd unit, no container | `unit NAME` |
//! | nothing known | none: the owner reads as `comm/pid` alone |

use super::Identity;
use crate::event::Owner;

/// Characters of a pod uid shown when the pod has no name.
const POD_UID_SHOWN: usize = 8;

impl Identity {
    /// The owner's short label (see the module docs); None for a cgroup that names no pod,
    /// container or unit.
    pub fn short(&self) -> Option<String> {
        if let Some(pod) = &self.pod {
            return Some(match (&pod.namespace, &pod.name) {
                (Some(namespace), Some(name)) => format!("pod {namespace}/{name}"),
                _ => format!("pod {}", pod.uid.get(..POD_UID_SHOWN).unwrap_or(&pod.uid)),
            });
        }
        if let Some(container) = &self.container {
            return Some(container.to_string());
        }
        self.unit.as_ref().map(|unit| format!("unit {unit}"))
    }
}

/// The owner's short label, when its identity is resolved and names something.
pub fn owner_short(owner: &Owner) -> Option<String> {
    owner.container.as_deref().and_then(Identity::short)
}

/// `comm/pid`, then the short label in brackets: `curl/4242 [pod payments/api-7f9c]`.
pub fn owner_label(owner: &Owner) -> String {
    match owner_short(owner) {
        Some(short) => format!("{owner} [{short}]"),
        None => owner.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{
        event::OwnerSource,
        identity::{Container, Pod, QosClass, Runtime},
    };

    const ID: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

    fn container() -> Option<Container> {
        Some(Container {
            runtime: Runtime::Containerd,
            id: ID.into(),
        })
    }

    fn pod(named: bool) -> Option<Pod> {
        Some(Pod {
            namespace: named.then(|| "payments".into()),
            name: named.then(|| "api-7f9c".into()),
            uid: "0b8e5c2a-1f3d-4c6b-9a7e-2d4f6b8a0c1e".into(),
            qos: QosClass::Burstable,
        })
    }

    #[test]
    fn short_labels() {
        let in_pod = Identity {
            container: container(),
            pod: pod(true),
            ..Identity::bare("/kubepods/x")
        };
        assert_eq!(in_pod.short().as_deref(), Some("pod payments/api-7f9c"));
        let unnamed = Identity {
            pod: pod(false),
            ..in_pod.clone()
        };
        assert_eq!(unnamed.short().as_deref(), Some("pod 0b8e5c2a"));
        let bare_container = Identity {
            container: container(),
            unit: Some("docker-x.scope".into()),
            ..Identity::bare("/system.slice/x")
        };
        assert_eq!(bare_container.short().as_deref(), Some("ctr a1b2c3d4e5f6"));
        let unit = Identity {
            unit: Some("nginx.service".into()),
            ..Identity::bare("/system.slice/nginx.service")
        };
        assert_eq!(unit.short().as_deref(), Some("unit nginx.service"));
        assert_eq!(Identity::bare("/").short(), None);
        let short_uid = Identity {
            pod: Some(Pod {
                uid: "abc".into(),
                ..pod(false).unwrap()
            }),
            ..Identity::bare("/kubepods/podabc")
        };
        assert_eq!(short_uid.short().as_deref(), Some("pod abc"));
    }

    #[test]
    fn owner_labels() {
        let mut owner = Owner {
            pid: 4242,
            comm: "curl".into(),
            cgroup_id: 9,
            source: OwnerSource::Owner,
            container: None,
        };
        assert_eq!(owner_label(&owner), "curl/4242");
        owner.container = Some(Arc::new(Identity::bare("/user.slice")));
        assert_eq!(owner_label(&owner), "curl/4242", "nothing known: no label");
        owner.container = Some(Arc::new(Identity {
            container: container(),
            pod: pod(true),
            ..Identity::bare("/kubepods/x")
        }));
        assert_eq!(owner_label(&owner), "curl/4242 [pod payments/api-7f9c]");
        assert_eq!(
            Owner::label(Some(&owner)),
            "curl/4242 [pod payments/api-7f9c]"
        );
        assert_eq!(Owner::label(None), "-");
    }
}
