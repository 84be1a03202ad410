//! Verdicts: what the timeline engine concludes about a socket. Names are stable (they are
//! part of the trace format and of users' alerting rules): add, never rename.

use std::{collections::BTreeMap, fmt};

use serde::{Deserialize, Serialize};

use crate::event::{Connection, DropReason, Errno, EventKind, Owner, ResetReason, SocketId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictKind {
    /// Keepalive probes went unanswered until the kernel declared the peer dead.
    KeepaliveExhausted,
    /// Unacknowledged data retransmitted until tcp_retries2 / TCP_USER_TIMEOUT expired.
    RetriesExhausted,
    /// SYN retransmits exhausted without an answer.
    ConnectTimeout,
    /// Reset in answer to our SYN.
    ConnectionRefused,
    /// Reset received on a synchronized connection.
    PeerReset,
    /// This host reset the connection.
    LocalAbort,
    /// A socket the application had already closed died retransmitting.
    OrphanTimeout,
    /// Early warning: consecutive RTOs without progress; the kernel will give up later.
    PeerUnresponsive,
    /// The kernel ended the connection but the owning process still holds the socket.
    DeadSocketHeld,
    /// The peer closed its side (FIN received, CLOSE_WAIT) and the owning process has not
    /// closed the socket: a socket and file-descriptor leak.
    CloseWaitHeld,
    /// The peer keeps its receive window closed (its application stopped reading) and the
    /// kernel keeps probing it.
    ReceiverStalled,
    /// One process keeps opening connections to one peer while earlier attempts are
    /// unanswered or failing (one verdict per storm, repeated while it lasts).
    RetryStorm,
}

impl VerdictKind {
    pub const ALL: [VerdictKind; 12] = [
        Self::KeepaliveExhausted,
        Self::RetriesExhausted,
        Self::ConnectTimeout,
        Self::ConnectionRefused,
        Self::PeerReset,
        Self::LocalAbort,
        Self::OrphanTimeout,
        Self::PeerUnresponsive,
        Self::DeadSocketHeld,
        Self::CloseWaitHeld,
        Self::ReceiverStalled,
        Self::RetryStorm,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::KeepaliveExhausted => "keepalive_exhausted",
            Self::RetriesExhausted => "retries_exhausted",
            Self::ConnectTimeout => "connect_timeout",
            Self::ConnectionRefused => "connection_refused",
            Self::PeerReset => "peer_reset",
            Self::LocalAbort => "local_abort",
            Self::OrphanTimeout => "orphan_timeout",
            Self::PeerUnresponsive => "peer_unresponsive",
            Self::DeadSocketHeld => "dead_socket_held",
            Self::CloseWaitHeld => "close_wait_held",
            Self::ReceiverStalled => "receiver_stalled",
            Self::RetryStorm => "retry_storm",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Verdicts that end a connection (not the early warning, the held sockets, a stalled
    /// receiver or a storm of attempts).
    pub fn is_death(self) -> bool {
        match self {
            Self::KeepaliveExhausted
            | Self::RetriesExhausted
            | Self::ConnectTimeout
            | Self::ConnectionRefused
            | Self::PeerReset
            | Self::LocalAbort
            | Self::OrphanTimeout => true,
            Self::PeerUnresponsive
            | Self::DeadSocketHeld
            | Self::CloseWaitHeld
            | Self::ReceiverStalled
            | Self::RetryStorm => false,
        }
    }
}

impl fmt::Display for VerdictKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One timeline event that led to a verdict, summarised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub ts_ns: u64,
    pub kind: EventKind,
    /// e.g. "rto retransmit #3, rto 1600 ms" or "CLOSE, ETIMEDOUT".
    pub detail: String,
}

/// The numbers behind a verdict; which are present depends on the verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictFacts {
    /// Retransmits counted for this death (or up to the warning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retransmits: Option<u32>,
    /// Consecutive RTOs without progress (the kernel's icsk_retransmits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_rtos: Option<u32>,
    /// From the first unanswered retransmit (or probe) to the verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rto_ms: Option<u64>,
    /// Keepalive: probes sent, the interval between them, the idle time before the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_interval_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_before_probes_ms: Option<u64>,
    /// The socket error the application sees (ETIMEDOUT, ECONNRESET, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Errno>,
    /// The kernel's reason for a reset this host sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_reason: Option<ResetReason>,
    /// peer_reset: the reset answered our retransmits after the peer fell silent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_lost_state: Option<bool>,
    /// peer_unresponsive: when the kernel is predicted to give up (CLOCK_BOOTTIME ns) and
    /// the budget it will use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted_give_up_ns: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub give_up_budget: Option<String>,
    /// dead_socket_held, close_wait_held: how long the socket has been held so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_ms: Option<u64>,
    /// Segments of this socket that this host dropped itself, and the kernel's reason (the
    /// first one's; the explanation says when they differ).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_drops: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_reason: Option<DropReason>,
    /// retry_storm: connection attempts in the storm so far, those that failed by how they
    /// failed, the most in flight at once, the window, the first and latest attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failures: Option<BTreeMap<String, u32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_attempt_ns: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt_ns: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// When the verdict was reached (CLOCK_BOOTTIME ns).
    pub ts_ns: u64,
    pub verdict: VerdictKind,
    pub socket: SocketId,
    /// The socket's most complete tuple, as in events.
    #[serde(flatten)]
    pub conn: Connection,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<Owner>,
    /// One line, with the numbers.
    pub explanation: String,
    #[serde(default)]
    pub facts: VerdictFacts,
    pub evidence: Vec<Evidence>,
    /// The socket's move to CLOSE was not seen (the kernel skipped the program that reports
    /// it, or the trace was cut): the death was decided from this other event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inferred_from: Option<EventKind>,
}
