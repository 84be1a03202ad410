//! Looking at every TCP socket instead of waiting for events: some dead connections never
//! produce one (an idle ESTABLISHED connection without keepalive toward a host that is gone
//! stays ESTABLISHED forever). Also gives `tracer live` the sockets opened before it started,
//! with their owners and cookies.

pub mod mib;
pub mod netns;
pub mod procfs;
pub mod sock_diag;
pub mod sysctl;

use std::{collections::BTreeMap, time::Duration};

use anyhow::Result;
use serde::Serialize;

use crate::event::{Connection, Event, EventKind, Owner, SocketCounters, SocketId, TcpState};
use sock_diag::{ArmedTimer, DiagSocket, TcpInfoSummary};

/// Why a socket deserves a look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Flag {
    /// ESTABLISHED, keepalive off, nothing sent or received for longer than the threshold:
    /// if the peer is gone, nothing will ever notice.
    HalfOpenRisk,
    /// The kernel is already retrying: RTO backoff, consecutive RTOs or unanswered probes.
    UnresponsiveNow,
}

impl Flag {
    /// As in JSON and in `sweep` events.
    pub fn name(self) -> &'static str {
        match self {
            Flag::HalfOpenRisk => "half_open_risk",
            Flag::UnresponsiveNow => "unresponsive_now",
        }
    }
}

/// The flag rules, as a table:
///
/// | flag | when |
/// |---|---|
/// | half_open_risk | state ESTABLISHED, no keepalive timer armed (SO_KEEPALIVE off), idle (no data sent or received, no ACK received) > threshold |
/// | unresponsive_now | tcpi_retransmits > 0, or tcpi_backoff > 0, or tcpi_probes > 0 |
pub fn flags(s: &SweptSocket, idle_threshold: Duration) -> Vec<Flag> {
    let mut out = Vec::new();
    if let Some(info) = &s.info {
        if s.state == TcpState::ESTABLISHED
            && !s.keepalive
            && u128::from(s.idle_ms.unwrap_or(0)) > idle_threshold.as_millis()
        {
            out.push(Flag::HalfOpenRisk);
        }
        if info.retransmits > 0 || info.backoff > 0 || info.probes > 0 {
            out.push(Flag::UnresponsiveNow);
        }
    }
    out
}

/// One socket found by the sweep.
#[derive(Debug, Clone, Serialize)]
pub struct SweptSocket {
    /// The socket cookie, as in the events of `live` and `record`.
    pub socket: SocketId,
    #[serde(flatten)]
    pub conn: Connection,
    pub state: TcpState,
    pub inode: u32,
    pub uid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<Owner>,
    /// SO_KEEPALIVE, inferred from the armed keepalive timer (how `ss -o` shows it): only
    /// knowable while no retransmit or probe timer is armed instead.
    pub keepalive: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timer: Option<ArmedTimer>,
    /// When the armed timer fires, in ms from the sweep.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timer_expires_ms: Option<u64>,
    /// Since the last data sent, data received or ACK received, whichever is latest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info: Option<TcpInfoSummary>,
    pub flags: Vec<Flag>,
}

impl SweptSocket {
    fn from_diag(d: DiagSocket, owner: Option<Owner>) -> SweptSocket {
        let idle_ms = d.info.map(|i| {
            u64::from(
                i.last_data_sent_ms
                    .min(i.last_data_recv_ms)
                    .min(i.last_ack_recv_ms),
            )
        });
        SweptSocket {
            socket: d.socket,
            conn: d.conn,
            state: d.state,
            inode: d.inode,
            uid: d.uid,
            process: owner,
            keepalive: matches!(d.timer, Some((ArmedTimer::Keepalive, _))),
            timer: d.timer.map(|(t, _)| t),
            timer_expires_ms: d.timer.map(|(_, ms)| ms),
            idle_ms,
            info: d.info,
            flags: Vec::new(),
        }
    }

    /// The socket as a `sweep` event, so that timelines start with what was already open.
    pub fn to_event(&self, ts_ns: u64) -> Event {
        Event {
            socket: Some(self.socket),
            conn: self.conn,
            process: self.process.clone(),
            // tcp_info has no keepalive or retry settings: those stay unknown (0).
            sock: self.info.map(|i| SocketCounters {
                retransmits: i.retransmits,
                probes_out: i.probes,
                backoff: i.backoff,
                rto_us: u64::from(i.rto_us),
                total_retrans: i.total_retrans,
                packets_out: i.unacked,
                keepalive: self.keepalive,
                idle_rx_ms: Some(u64::from(i.last_data_recv_ms.min(i.last_ack_recv_ms))),
                idle_tx_ms: Some(u64::from(i.last_data_sent_ms)),
                ..SocketCounters::default()
            }),
            flags: self.flags.iter().map(|f| f.name().to_owned()).collect(),
            ..Event::new(ts_ns, EventKind::Sweep, self.state)
        }
    }
}

/// What one sweep found, and what it could not see.
#[derive(Debug, Default, Serialize)]
pub struct Snapshot {
    pub sockets: Vec<SweptSocket>,
    pub namespaces: Vec<u32>,
    /// Namespaces that could not be entered or listed, with why.
    pub problems: Vec<String>,
}

impl Snapshot {
    /// Socket cookie → owner, for events whose owner the kernel did not learn.
    pub fn owners(&self) -> BTreeMap<SocketId, Owner> {
        self.sockets
            .iter()
            .filter_map(|s| Some((s.socket, s.process.clone()?)))
            .collect()
    }
}

/// Every TCP socket in every visible network namespace (or only in `only`, if not empty).
pub fn snapshot(only: &[u32], idle_threshold: Duration) -> Result<Snapshot> {
    let mut namespaces = netns::discover();
    if !only.is_empty() {
        namespaces.retain(|inode, _| only.contains(inode));
    }
    let owners = procfs::owners_by_inode();
    let mut snapshot = Snapshot {
        namespaces: namespaces.keys().copied().collect(),
        ..Snapshot::default()
    };
    for (inode, result) in netns::in_each(&namespaces, sock_diag::dump_all) {
        match result {
            Ok(sockets) => snapshot.sockets.extend(sockets.into_iter().map(|d| {
                let owner = owners.get(&d.inode).cloned();
                let mut s = SweptSocket::from_diag(d, owner);
                s.flags = flags(&s, idle_threshold);
                s
            })),
            Err(e) => snapshot.problems.push(format!("netns {inode}: {e:#}")),
        }
    }
    snapshot.sockets.sort_by(|a, b| {
        let key = |s: &SweptSocket| (s.conn.netns, s.state, s.conn.lport, s.conn.rport);
        key(a).cmp(&key(b))
    });
    Ok(snapshot)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn socket(state: TcpState, keepalive: bool, idle_ms: u64, info: TcpInfoSummary) -> SweptSocket {
        SweptSocket {
            socket: SocketId(9),
            conn: Connection {
                laddr: "10.0.0.1".parse().unwrap(),
                lport: 1,
                raddr: "10.0.0.2".parse().unwrap(),
                rport: 2,
                netns: 1,
                ..Connection::UNKNOWN
            },
            state,
            inode: 1,
            uid: 0,
            process: None,
            keepalive,
            timer: None,
            timer_expires_ms: None,
            idle_ms: Some(idle_ms),
            info: Some(info),
            flags: vec![],
        }
    }

    #[test]
    fn flag_rules() {
        let ten_min = Duration::from_secs(600);
        let idle = socket(
            TcpState::ESTABLISHED,
            false,
            700_000,
            TcpInfoSummary::default(),
        );
        assert_eq!(flags(&idle, ten_min), [Flag::HalfOpenRisk]);
        let kept_alive = socket(
            TcpState::ESTABLISHED,
            true,
            700_000,
            TcpInfoSummary::default(),
        );
        assert!(flags(&kept_alive, ten_min).is_empty());
        let busy = socket(
            TcpState::ESTABLISHED,
            false,
            5_000,
            TcpInfoSummary::default(),
        );
        assert!(flags(&busy, ten_min).is_empty());
        let retrying = socket(
            TcpState::ESTABLISHED,
            false,
            5_000,
            TcpInfoSummary {
                backoff: 2,
                ..Default::default()
            },
        );
        assert_eq!(flags(&retrying, ten_min), [Flag::UnresponsiveNow]);
        let closing = socket(
            TcpState::CLOSE_WAIT,
            false,
            700_000,
            TcpInfoSummary::default(),
        );
        assert!(flags(&closing, ten_min).is_empty());
    }
}
