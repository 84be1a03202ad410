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
use sock_diag::{ArmedTimer, DiagSocket, ReceiveMemory, TcpInfoSummary};

/// Why a socket deserves a look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Flag {
    /// ESTABLISHED, keepalive off, nothing sent or received for longer than the threshold:
    /// if the peer is gone, nothing will ever notice.
    HalfOpenRisk,
    /// The kernel is already retrying: RTO backoff, consecutive RTOs or unanswered probes.
    UnresponsiveNow,
    /// CLOSE_WAIT, idle longer than the threshold: the peer closed long ago and the owner
    /// has not closed the socket (a socket and file-descriptor leak).
    CloseWaitHeld,
    /// The receive queue holds half the receive buffer or more, unread, and nothing has
    /// arrived for a second: the application is not reading (the peer sees a closed window).
    NotReading,
}

impl Flag {
    /// As in JSON and in `sweep` events.
    pub fn name(self) -> &'static str {
        match self {
            Flag::HalfOpenRisk => "half_open_risk",
            Flag::UnresponsiveNow => "unresponsive_now",
            Flag::CloseWaitHeld => "close_wait_held",
            Flag::NotReading => "not_reading",
        }
    }
}

/// The flag rules, as a table:
///
/// | flag | when |
/// |---|---|
/// | half_open_risk | state ESTABLISHED, no keepalive timer armed (SO_KEEPALIVE off), idle (no data sent or received, no ACK received) > threshold |
/// | unresponsive_now | tcpi_retransmits > 0, or tcpi_backoff > 0, or tcpi_probes > 0 |
/// | close_wait_held | state CLOSE_WAIT, idle > the close-wait threshold (after the peer's FIN nothing arrives, so the idle time is at least the time since it) |
/// | not_reading | unread bytes (idiag_rqueue) > 0, receive memory ≥ half the receive buffer (SK_MEMINFO_RMEM_ALLOC vs RCVBUF: the advertised window is about closed), no data received for ≥ 1 s |
pub fn flags(s: &SweptSocket, limits: FlagLimits) -> Vec<Flag> {
    let mut out = Vec::new();
    let idle = u128::from(s.idle_ms.unwrap_or(0));
    if let Some(info) = &s.info {
        if s.state == TcpState::ESTABLISHED && !s.keepalive && idle > limits.idle.as_millis() {
            out.push(Flag::HalfOpenRisk);
        }
        if info.retransmits > 0 || info.backoff > 0 || info.probes > 0 {
            out.push(Flag::UnresponsiveNow);
        }
        if s.state == TcpState::CLOSE_WAIT && idle > limits.close_wait.as_millis() {
            out.push(Flag::CloseWaitHeld);
        }
        if let Some(memory) = s.receive_memory
            && s.unread > 0
            && memory.allocated.saturating_mul(2) >= memory.buffer
            && memory.buffer > 0
            && info.last_data_recv_ms >= 1_000
        {
            out.push(Flag::NotReading);
        }
    }
    out
}

/// When a swept socket deserves a flag.
#[derive(Debug, Clone, Copy)]
pub struct FlagLimits {
    /// half_open_risk: idle longer than this.
    pub idle: Duration,
    /// close_wait_held: in CLOSE_WAIT and idle longer than this.
    pub close_wait: Duration,
}

impl FlagLimits {
    /// `idle` for half_open_risk, the verdict's default for close_wait_held.
    pub fn idle(idle: Duration) -> FlagLimits {
        FlagLimits {
            idle,
            close_wait: Duration::from_nanos(
                crate::timeline::Thresholds::DEFAULT_CLOSE_WAIT_AFTER_NS,
            ),
        }
    }
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
    /// Bytes received and not yet read by the application (idiag_rqueue).
    pub unread: u32,
    /// Receive memory in use and the receive buffer (sock_diag's SK_MEMINFO).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receive_memory: Option<ReceiveMemory>,
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
            unread: if d.state == TcpState::LISTEN {
                0
            } else {
                d.unread
            },
            receive_memory: d.receive_memory,
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
pub fn snapshot(only: &[u32], limits: FlagLimits) -> Result<Snapshot> {
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
                s.flags = flags(&s, limits);
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
            unread: 0,
            receive_memory: None,
            flags: vec![],
        }
    }

    #[test]
    fn flag_rules() {
        let ten_min = FlagLimits::idle(Duration::from_secs(600));
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
        // CLOSE_WAIT past the threshold: the owner never closed it; not yet: nothing.
        let closing = socket(
            TcpState::CLOSE_WAIT,
            false,
            700_000,
            TcpInfoSummary::default(),
        );
        assert_eq!(flags(&closing, ten_min), [Flag::CloseWaitHeld]);
        let just_closed = socket(
            TcpState::CLOSE_WAIT,
            false,
            29_000,
            TcpInfoSummary::default(),
        );
        assert!(flags(&just_closed, ten_min).is_empty());
        // A full receive queue nobody reads; near misses: half empty, or data still coming.
        let stalled = |allocated, last_data_recv_ms| SweptSocket {
            unread: 60_000,
            receive_memory: Some(ReceiveMemory {
                allocated,
                buffer: 131_072,
            }),
            ..socket(
                TcpState::ESTABLISHED,
                true,
                0,
                TcpInfoSummary {
                    last_data_recv_ms,
                    ..Default::default()
                },
            )
        };
        assert_eq!(flags(&stalled(131_000, 5_000), ten_min), [Flag::NotReading]);
        assert!(flags(&stalled(30_000, 5_000), ten_min).is_empty());
        assert!(flags(&stalled(131_000, 200), ten_min).is_empty());
    }
}
