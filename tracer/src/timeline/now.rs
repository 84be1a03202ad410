//! What a socket is going through right now, for live views (`tracer top`): read-only
//! answers from its timeline, as the rules themselves keep them (nothing re-derived).

use super::{Timeline, VerdictKind};
use crate::event::Errno;

/// A streak of retransmission timeouts in progress: the peer has acknowledged nothing since
/// its first RTO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtoStreak {
    /// RTOs in a row without progress (the kernel's icsk_retransmits).
    pub consecutive_rtos: u8,
    /// RTO retransmits seen in the streak.
    pub retransmits: u32,
    /// The streak's first and latest RTO retransmits (CLOCK_BOOTTIME ns).
    pub first_ns: u64,
    pub last_ns: u64,
    /// The retransmission timeout at the latest RTO.
    pub rto_ms: u64,
    /// When the kernel will give up if nothing changes (CLOCK_BOOTTIME ns): the prediction
    /// behind `peer_unresponsive`, renewed at every RTO. None for a connection the
    /// application has closed (its budget is tcp_orphan_retries) or one not yet established.
    pub give_up_ns: Option<u64>,
    /// The early warning (`peer_unresponsive`) was given during this streak.
    pub warned: bool,
}

/// A connection the kernel ended with an error while its application still holds the
/// socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadHeld {
    /// When the kernel ended it (CLOCK_BOOTTIME ns).
    pub since_ns: u64,
    /// The error the application sees when it next uses the socket.
    pub error: Errno,
    /// Held past the threshold: `dead_socket_held` was given.
    pub flagged: bool,
}

impl Timeline {
    /// The RTO streak in progress, if the peer is not acknowledging right now.
    pub fn rto_streak(&self) -> Option<RtoStreak> {
        let s = &self.story;
        if s.close.is_some() || s.consecutive_rtos == 0 {
            return None;
        }
        let (first, last) = (s.rto.first?, s.rto.last?);
        Some(RtoStreak {
            consecutive_rtos: s.consecutive_rtos,
            retransmits: s.rto.count,
            first_ns: first.ts_ns,
            last_ns: last.ts_ns,
            rto_ms: last.rto_us / 1000,
            give_up_ns: s.give_up_ms.map(|ms| ms * 1_000_000),
            warned: self
                .verdicts
                .iter()
                .any(|v| v.verdict == VerdictKind::PeerUnresponsive && v.ts_ns >= first.ts_ns),
        })
    }

    /// Dead and still held by its application: the kernel ended the connection with an
    /// error, and the socket has not been released since.
    pub fn dead_held(&self) -> Option<DeadHeld> {
        let since_ns = self.story.held_since_ns?;
        if self.released_ns.is_some() {
            return None;
        }
        Some(DeadHeld {
            since_ns,
            error: self.death_error()?,
            flagged: self.story.has(VerdictKind::DeadSocketHeld),
        })
    }
}
