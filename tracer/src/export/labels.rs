//! Where a verdict or event happened, as the labels its metrics and the attributes its
//! log records carry. One function decides ([`labels`]): cardinality is decided here.

use std::{fmt, net::IpAddr};

use clap::ValueEnum;
use prometheus_client::encoding::{EncodeLabel, EncodeLabelSet, LabelSetEncoder};

use crate::event::{Connection, Owner};

/// Where something happened, at a cardinality a metrics server can hold: never an address
/// or a port (see [`Peer`] for those, opt-in). The owner's container, pod and systemd unit
/// are bounded by what runs on the node, as the network namespace is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Labels {
    /// The network namespace (inode); on Kubernetes, one per pod.
    pub netns: u32,
    /// The owner's container id, short as `docker ps` shows it.
    pub container: Option<String>,
    /// The owner's pod, and its Kubernetes namespace, when the kubelet's pod log directory
    /// named them.
    pub pod: Option<String>,
    pub pod_namespace: Option<String>,
    /// The owner's systemd unit (host services).
    pub unit: Option<String>,
}

/// The labels of a verdict or an event, from its connection and its owner (when known).
pub fn labels(conn: &Connection, owner: Option<&Owner>) -> Labels {
    let identity = owner.and_then(|o| o.container.as_deref());
    let pod = identity.and_then(|i| i.pod.as_ref());
    Labels {
        netns: conn.netns,
        container: identity
            .and_then(|i| i.container.as_ref())
            .map(|c| c.short_id().to_owned()),
        pod: pod.and_then(|p| p.name.clone()),
        pod_namespace: pod.and_then(|p| p.namespace.clone()),
        unit: identity.and_then(|i| i.unit.clone()),
    }
}

/// Which peer labels metrics carry, opt-in (`--metrics-peer-labels`): a series per peer,
/// held under the series cap.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PeerLabels {
    /// None (the default).
    #[default]
    None,
    /// `peer_address`: the remote IP.
    Address,
    /// `peer_address` and `peer_port`. The remote port of an accepted connection is the
    /// client's ephemeral port: on servers, expect the overflow series.
    AddressPort,
}

/// The peer's labels, as [`PeerLabels`] asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Peer {
    pub address: Option<IpAddr>,
    pub port: Option<u16>,
}

impl Peer {
    pub fn of(conn: &Connection, which: PeerLabels) -> Peer {
        match which {
            PeerLabels::None => Peer::default(),
            PeerLabels::Address => Peer {
                address: Some(conn.raddr),
                port: None,
            },
            PeerLabels::AddressPort => Peer {
                address: Some(conn.raddr),
                port: Some(conn.rport),
            },
        }
    }
}

/// The label set every metric about connections carries: [`Labels`] and the opt-in
/// [`Peer`], or the overflow bucket once the series cap is reached.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    Known(Labels, Peer),
    /// Past the series cap: every label `overflow`.
    Overflow,
}

impl Subject {
    pub fn of(conn: &Connection, owner: Option<&Owner>, peer: PeerLabels) -> Subject {
        Subject::Known(labels(conn, owner), Peer::of(conn, peer))
    }
}

impl EncodeLabelSet for Subject {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), fmt::Error> {
        match self {
            Subject::Known(labels, peer) => {
                ("netns", labels.netns as u64).encode(encoder.encode_label())?;
                for (name, value) in [
                    ("container", &labels.container),
                    ("pod", &labels.pod),
                    ("pod_namespace", &labels.pod_namespace),
                    ("unit", &labels.unit),
                ] {
                    if let Some(value) = value {
                        (name, value.as_str()).encode(encoder.encode_label())?;
                    }
                }
                if let Some(address) = peer.address {
                    ("peer_address", address.to_string()).encode(encoder.encode_label())?;
                }
                if let Some(port) = peer.port {
                    ("peer_port", port as u64).encode(encoder.encode_label())?;
                }
                Ok(())
            }
            Subject::Overflow => ("netns", "overflow").encode(encoder.encode_label()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{
        event::{Connection, OwnerSource},
        identity::naming::parse_cgroup_path,
    };

    fn owner(cgroup_path: &str, pod_name: Option<(&str, &str)>) -> Owner {
        let mut identity = parse_cgroup_path(cgroup_path);
        if let (Some(pod), Some((namespace, name))) = (identity.pod.as_mut(), pod_name) {
            pod.namespace = Some(namespace.to_owned());
            pod.name = Some(name.to_owned());
        }
        Owner {
            pid: 7,
            comm: "app".into(),
            cgroup_id: 42,
            source: OwnerSource::Owner,
            container: Some(Arc::new(identity)),
        }
    }

    #[test]
    fn the_owner_identity_labels_its_series() {
        let conn = Connection {
            netns: 4026531840,
            ..Connection::UNKNOWN
        };
        let pod = owner(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1a2b3c4d_0000_1111_2222_333344445555.slice/cri-containerd-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope",
            Some(("payments", "api-7f9c")),
        );
        let labels = labels(&conn, Some(&pod));
        assert_eq!(labels.container.as_deref(), Some("0123456789ab"));
        assert_eq!(labels.pod.as_deref(), Some("api-7f9c"));
        assert_eq!(labels.pod_namespace.as_deref(), Some("payments"));
        let service = labels_of_unit();
        assert_eq!(service.unit.as_deref(), Some("nginx.service"));
        assert_eq!(service.container, None);
        // No owner, no identity: the namespace alone.
        assert_eq!(
            self::labels(&conn, None),
            Labels {
                netns: 4026531840,
                ..Labels::default()
            }
        );
    }

    fn labels_of_unit() -> Labels {
        labels(
            &Connection::UNKNOWN,
            Some(&owner("/system.slice/nginx.service", None)),
        )
    }
}
