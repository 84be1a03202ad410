//! Pod namespace and name without an API server: the kubelet keeps one log directory per
//! pod on the node, `<root>/<namespace>_<name>_<uid>/` (root `/var/log/pods` unless the
//! kubelet was configured otherwise). It creates it before the pod's sandbox, so before any
//! of the pod's containers runs, and removes it when the pod is garbage-collected.

use std::collections::HashMap;

use super::Pod;

pub const DEFAULT_POD_LOG_DIR: &str = "/var/log/pods";

/// `<namespace>_<name>_<uid>` → (namespace, name, uid). Namespaces (DNS labels), pod names
/// (DNS subdomains) and uids never contain `_`.
pub fn parse_log_dir_name(dir: &str) -> Option<(&str, &str, &str)> {
    let (namespace, rest) = dir.split_once('_')?;
    let (name, uid) = rest.split_once('_')?;
    let ok = |s: &str| !s.is_empty() && !s.contains('_');
    (ok(namespace) && ok(name) && ok(uid)).then_some((namespace, name, uid))
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PodName {
    namespace: String,
    name: String,
}

/// Pod uid → namespace and name, as last listed in the pod log directory; at most
/// `capacity` pods.
#[derive(Debug)]
pub(super) struct PodIndex {
    by_uid: HashMap<String, PodName>,
    capacity: usize,
}

impl PodIndex {
    pub fn new(capacity: usize) -> PodIndex {
        PodIndex {
            by_uid: HashMap::new(),
            capacity,
        }
    }

    /// Replaces the index with a listing of the pod log directory.
    pub fn rebuild(&mut self, dir_names: impl IntoIterator<Item = String>) {
        self.by_uid.clear();
        for dir in dir_names {
            if self.by_uid.len() >= self.capacity {
                break;
            }
            if let Some((namespace, name, uid)) = parse_log_dir_name(&dir) {
                self.by_uid.insert(
                    uid.to_owned(),
                    PodName {
                        namespace: namespace.to_owned(),
                        name: name.to_owned(),
                    },
                );
            }
        }
    }

    pub fn len(&self) -> usize {
        self.by_uid.len()
    }

    /// Fills in the pod's namespace and name if the index knows its uid; true when the pod
    /// has them afterwards.
    pub fn name(&self, pod: &mut Pod) -> bool {
        if pod.name.is_none()
            && let Some(found) = self.by_uid.get(&pod.uid)
        {
            pod.namespace = Some(found.namespace.clone());
            pod.name = Some(found.name.clone());
        }
        pod.name.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::QosClass;

    const UID: &str = "0b8e5c2a-1f3d-4c6b-9a7e-2d4f6b8a0c1e";

    #[test]
    fn log_dir_names() {
        assert_eq!(
            parse_log_dir_name(&format!("payments_api-7f9c-5d8b6_{UID}")),
            Some(("payments", "api-7f9c-5d8b6", UID))
        );
        assert_eq!(
            parse_log_dir_name("kube-system_etcd-node1_6f2c0e1d9b8a7c6d5e4f3a2b1c0d9e8f"),
            Some((
                "kube-system",
                "etcd-node1",
                "6f2c0e1d9b8a7c6d5e4f3a2b1c0d9e8f"
            ))
        );
        for bad in ["", "a_b", "_b_c", "a__c", "a_b_", "a_b_c_d", "lost+found"] {
            assert_eq!(parse_log_dir_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn names_pods_by_uid_and_stays_bounded() {
        let mut index = PodIndex::new(2);
        index.rebuild([
            format!("payments_api_{UID}"),
            "junk".to_owned(),
            "a_b_1".to_owned(),
            "c_d_2".to_owned(),
        ]);
        assert_eq!(index.len(), 2, "capacity");
        let mut pod = Pod {
            namespace: None,
            name: None,
            uid: UID.into(),
            qos: QosClass::Burstable,
        };
        assert!(index.name(&mut pod));
        assert_eq!(pod.namespace.as_deref(), Some("payments"));
        assert_eq!(pod.name.as_deref(), Some("api"));
        let mut unknown = Pod {
            uid: "2".into(),
            ..pod.clone()
        };
        unknown.name = None;
        unknown.namespace = None;
        assert!(!index.name(&mut unknown), "beyond capacity");
        // A rebuild without the pod: names already given stay.
        index.rebuild([]);
        assert!(index.name(&mut pod));
    }
}
