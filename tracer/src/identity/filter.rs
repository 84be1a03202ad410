//! The owner filter: `--container ID-PREFIX`, `--pod NAMESPACE/NAME` and `--cgroup PATH`,
//! decided on an owner's [`Identity`] (pure: no filesystem).
//!
//! An owner passes when it matches any of the options given (they select owners; the other
//! filters, `--port`, `--netns`, ..., still apply on top):
//!
//! | option | matches an owner whose cgroup ... |
//! |---|---|
//! | `--container ID-PREFIX` | is a container (or a cgroup below one) whose id starts with the prefix (`docker ps` shows 12 digits; hex digits in either case), or whose name starts with it (systemd-nspawn, LXC) |
//! | `--pod NAMESPACE/NAME` | is in the pod of that namespace and name (named from the pod log directory) |
//! | `--pod UID-PREFIX` | is in the pod whose uid starts with the prefix (for nodes without pod log directories) |
//! | `--cgroup PATH` | is the cgroup PATH (as `/proc/PID/cgroup` spells it) or below it |
//!
//! A decision is final except for a pod the pod log directory does not name yet while a
//! `--pod NAMESPACE/NAME` is asked for: [`Decision::Undecided`] (the event is dropped, but
//! the cgroup is asked about again).

use super::Identity;

/// The owner filter; built only when at least one option is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerFilter {
    containers: Vec<String>,
    pods: Vec<PodSpec>,
    cgroups: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PodSpec {
    Named { namespace: String, name: String },
    Uid(String),
}

/// What the filter says about one owner's cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Wanted,
    NotWanted,
    /// Not wanted as far as is known now, but it may be later (its pod has no name yet).
    Undecided,
}

impl OwnerFilter {
    /// The filter for these option values; None when none is given. Errors name the
    /// option and say what is expected.
    pub fn new(
        containers: &[String],
        pods: &[String],
        cgroups: &[String],
    ) -> Result<Option<OwnerFilter>, String> {
        if containers.is_empty() && pods.is_empty() && cgroups.is_empty() {
            return Ok(None);
        }
        let containers = containers
            .iter()
            .map(|c| {
                let c = c.trim();
                if c.is_empty() || c.contains('/') {
                    Err(format!(
                        "--container {c:?}: expected a container id or its first digits \
                         (as `docker ps` or `crictl ps` show it), or a container name"
                    ))
                } else if c.bytes().all(|b| b.is_ascii_hexdigit()) {
                    Ok(c.to_ascii_lowercase())
                } else {
                    Ok(c.to_owned())
                }
            })
            .collect::<Result<_, _>>()?;
        let pods = pods
            .iter()
            .map(|p| parse_pod(p.trim()))
            .collect::<Result<_, _>>()?;
        let cgroups = cgroups
            .iter()
            .map(|c| {
                let c = c.trim();
                if !c.starts_with('/') {
                    return Err(format!(
                        "--cgroup {c:?}: expected a cgroup path as /proc/PID/cgroup shows it, \
                         starting with / (e.g. /system.slice/nginx.service)"
                    ));
                }
                let trimmed = c.trim_end_matches('/');
                Ok(if trimmed.is_empty() { "/" } else { trimmed }.to_owned())
            })
            .collect::<Result<_, _>>()?;
        Ok(Some(OwnerFilter {
            containers,
            pods,
            cgroups,
        }))
    }

    pub fn decide(&self, identity: &Identity) -> Decision {
        let container = identity.container.as_ref().is_some_and(|c| {
            self.containers
                .iter()
                .any(|prefix| c.id.starts_with(prefix.as_str()))
        });
        let cgroup = self.cgroups.iter().any(|root| {
            root == "/"
                || identity
                    .cgroup_path
                    .strip_prefix(root.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        });
        let mut unnamed = false;
        let pod = identity.pod.as_ref().is_some_and(|pod| {
            self.pods.iter().any(|spec| match spec {
                PodSpec::Uid(prefix) => pod.uid.starts_with(prefix.as_str()),
                PodSpec::Named { namespace, name } => match (&pod.namespace, &pod.name) {
                    (Some(ns), Some(n)) => ns == namespace && n == name,
                    _ => {
                        unnamed = true;
                        false
                    }
                },
            })
        });
        if container || cgroup || pod {
            Decision::Wanted
        } else if unnamed {
            Decision::Undecided
        } else {
            Decision::NotWanted
        }
    }

    /// The options as given (normalised), for messages.
    pub fn describe(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .containers
            .iter()
            .map(|c| format!("--container={c}"))
            .collect();
        out.extend(self.pods.iter().map(|p| match p {
            PodSpec::Named { namespace, name } => format!("--pod={namespace}/{name}"),
            PodSpec::Uid(uid) => format!("--pod={uid}"),
        }));
        out.extend(self.cgroups.iter().map(|c| format!("--cgroup={c}")));
        out
    }
}

fn parse_pod(spec: &str) -> Result<PodSpec, String> {
    match spec.split_once('/') {
        Some((namespace, name))
            if !namespace.is_empty() && !name.is_empty() && !name.contains('/') =>
        {
            Ok(PodSpec::Named {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            })
        }
        None if !spec.is_empty() => Ok(PodSpec::Uid(spec.to_ascii_lowercase())),
        _ => Err(format!(
            "--pod {spec:?}: expected NAMESPACE/NAME (as `kubectl get pod -n NAMESPACE NAME`), \
             or the pod's uid or its first characters"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Container, Pod, QosClass, Runtime};

    const ID: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
    const UID: &str = "0b8e5c2a-1f3d-4c6b-9a7e-2d4f6b8a0c1e";

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn filter(containers: &[&str], pods: &[&str], cgroups: &[&str]) -> OwnerFilter {
        OwnerFilter::new(&s(containers), &s(pods), &s(cgroups))
            .unwrap()
            .unwrap()
    }

    fn in_pod(named: bool) -> Identity {
        Identity {
            container: Some(Container {
                runtime: Runtime::CriO,
                id: ID.into(),
            }),
            pod: Some(Pod {
                namespace: named.then(|| "payments".into()),
                name: named.then(|| "api-7f9c".into()),
                uid: UID.into(),
                qos: QosClass::Guaranteed,
            }),
            ..Identity::bare(format!(
                "/kubepods.slice/kubepods-pod0b8e.slice/crio-{ID}.scope"
            ))
        }
    }

    #[test]
    fn parses_and_rejects_with_the_option_named() {
        assert_eq!(OwnerFilter::new(&[], &[], &[]), Ok(None));
        let f = filter(
            &["A1B2C3"],
            &["payments/api-7f9c", "0B8E"],
            &["/system.slice/"],
        );
        assert_eq!(
            f.describe(),
            [
                "--container=a1b2c3",
                "--pod=payments/api-7f9c",
                "--pod=0b8e",
                "--cgroup=/system.slice"
            ]
        );
        for (containers, pods, cgroups, option) in [
            (s(&[""]), s(&[]), s(&[]), "--container"),
            (s(&["a/b"]), s(&[]), s(&[]), "--container"),
            (s(&[]), s(&["/name"]), s(&[]), "--pod"),
            (s(&[]), s(&["ns/"]), s(&[]), "--pod"),
            (s(&[]), s(&["a/b/c"]), s(&[]), "--pod"),
            (s(&[]), s(&[""]), s(&[]), "--pod"),
            (s(&[]), s(&[]), s(&["system.slice"]), "--cgroup"),
        ] {
            let err = OwnerFilter::new(&containers, &pods, &cgroups).unwrap_err();
            assert!(err.starts_with(option), "{err}");
        }
    }

    #[test]
    fn containers_by_id_prefix_or_name() {
        let identity = in_pod(true);
        assert_eq!(
            filter(&["a1b2c3d4"], &[], &[]).decide(&identity),
            Decision::Wanted
        );
        assert_eq!(filter(&[ID], &[], &[]).decide(&identity), Decision::Wanted);
        assert_eq!(
            filter(&["b1"], &[], &[]).decide(&identity),
            Decision::NotWanted
        );
        let machine = Identity {
            container: Some(Container {
                runtime: Runtime::SystemdNspawn,
                id: "web".into(),
            }),
            ..Identity::bare("/machine.slice/machine-web.scope")
        };
        assert_eq!(
            filter(&["web"], &[], &[]).decide(&machine),
            Decision::Wanted
        );
        assert_eq!(
            filter(&["a1"], &[], &[]).decide(&Identity::bare("/")),
            Decision::NotWanted
        );
    }

    #[test]
    fn pods_by_name_or_uid_and_unnamed_pods_stay_undecided() {
        let pods = filter(&[], &["payments/api-7f9c"], &[]);
        assert_eq!(pods.decide(&in_pod(true)), Decision::Wanted);
        assert_eq!(pods.decide(&in_pod(false)), Decision::Undecided);
        assert_eq!(
            filter(&[], &["payments/other"], &[]).decide(&in_pod(true)),
            Decision::NotWanted
        );
        assert_eq!(
            filter(&[], &["shop/api-7f9c"], &[]).decide(&in_pod(true)),
            Decision::NotWanted
        );
        assert_eq!(pods.decide(&Identity::bare("/")), Decision::NotWanted);
        let by_uid = filter(&[], &["0b8e5c2a"], &[]);
        assert_eq!(by_uid.decide(&in_pod(false)), Decision::Wanted);
        assert_eq!(
            filter(&[], &["0b8f"], &[]).decide(&in_pod(false)),
            Decision::NotWanted
        );
        // Any option that matches wins over an undecided one.
        assert_eq!(
            filter(&["a1b2"], &["payments/api-7f9c"], &[]).decide(&in_pod(false)),
            Decision::Wanted
        );
    }

    #[test]
    fn cgroups_match_themselves_and_below_not_siblings_with_a_longer_name() {
        let f = filter(&[], &[], &["/system.slice/nginx.service"]);
        let at = |path: &str| f.decide(&Identity::bare(path));
        assert_eq!(at("/system.slice/nginx.service"), Decision::Wanted);
        assert_eq!(at("/system.slice/nginx.service/worker"), Decision::Wanted);
        assert_eq!(at("/system.slice/nginx.service2"), Decision::NotWanted);
        assert_eq!(at("/system.slice"), Decision::NotWanted);
        let root = filter(&[], &[], &["/"]);
        assert_eq!(root.decide(&Identity::bare("/x")), Decision::Wanted);
    }
}
