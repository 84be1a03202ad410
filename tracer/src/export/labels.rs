//! Where a verdict or event happened, as the labels its metrics and the attributes its
//! log records carry. One function decides ([`labels`]): cardinality is decided here.

use std::{fmt, net::IpAddr};

use clap::ValueEnum;
use prometheus_client::encoding::{EncodeLabel, EncodeLabelSet, LabelSetEncoder};

use crate::event::{Connection, Owner};

/// Where something happened, at a cardinality a metrics server can hold: never an address
/// or a port (see [`Peer`] for those, opt-in).
///
/// The owner's container, pod, pod namespace and systemd unit belong here too once the
/// owner carries its identity (`crate::identity`): each is bounded by what runs on the
/// node, as the network namespace is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Labels {
    /// The network namespace (inode); on Kubernetes, one per pod.
    pub netns: u32,
}

/// The labels of a verdict or an event, from its connection and its owner (when known).
pub fn labels(conn: &Connection, _owner: Option<&Owner>) -> Labels {
    Labels { netns: conn.netns }
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
