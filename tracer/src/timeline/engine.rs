//! The timeline engine: one timeline per socket, verdict rules applied as events arrive.
//!
//! (Skeleton: keeps timelines, emits no verdicts yet.)

use std::collections::HashMap;

use crate::event::{Event, SocketId};

use super::Verdict;

/// Configurable thresholds; the defaults follow the kernel's own judgement.
#[derive(Debug, Clone)]
pub struct Thresholds {
    /// Consecutive RTOs before `peer_unresponsive`. None: the socket namespace's
    /// tcp_retries1 (3 by default), the point where the kernel itself suspects the path.
    pub warn_after_rtos: Option<u8>,
    /// How long a process may hold a socket the kernel has ended before `dead_socket_held`.
    pub dead_socket_after_ns: u64,
    /// Events of one socket may arrive this much out of order (several CPUs write the ring).
    pub reorder_window_ns: u64,
    pub max_events_per_timeline: usize,
    pub max_timelines: usize,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            warn_after_rtos: None,
            dead_socket_after_ns: 30_000_000_000,
            reorder_window_ns: 100_000_000,
            max_events_per_timeline: 256,
            max_timelines: 65_536,
        }
    }
}

/// Counters about the engine itself (shown in summaries: nothing is dropped silently).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub tracked: usize,
    pub finished: u64,
    pub evicted: u64,
    pub truncated_events: u64,
}

/// Everything known about one socket.
#[derive(Debug, Clone)]
pub struct Timeline {
    pub socket: SocketId,
    pub events: Vec<Event>,
    /// Events beyond `max_events_per_timeline`, counted and dropped.
    pub truncated: u64,
    pub verdicts: Vec<Verdict>,
}

pub struct Engine {
    thresholds: Thresholds,
    timelines: HashMap<SocketId, Timeline>,
    stats: EngineStats,
}

impl Engine {
    pub fn new(thresholds: Thresholds) -> Self {
        Self {
            thresholds,
            timelines: HashMap::new(),
            stats: EngineStats::default(),
        }
    }

    pub fn thresholds(&self) -> &Thresholds {
        &self.thresholds
    }

    /// Feeds one event; verdicts reached are appended to `out`.
    pub fn push(&mut self, event: Event, _out: &mut Vec<Verdict>) {
        let Some(socket) = event.socket else { return };
        let timeline = self.timelines.entry(socket).or_insert_with(|| Timeline {
            socket,
            events: Vec::new(),
            truncated: 0,
            verdicts: Vec::new(),
        });
        timeline.events.push(event);
        self.stats.tracked = self.timelines.len();
    }

    /// Advances time to `now_ns` (CLOCK_BOOTTIME): releases reordered events and fires
    /// time-based verdicts (dead_socket_held).
    pub fn tick(&mut self, _now_ns: u64, _out: &mut Vec<Verdict>) {}

    /// End of input: everything pending is decided as of `now_ns`.
    pub fn finish(&mut self, _now_ns: u64, _out: &mut Vec<Verdict>) {}

    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// Timelines still held (live or finished-but-retained), in no particular order.
    pub fn timelines(&self) -> impl Iterator<Item = &Timeline> {
        self.timelines.values()
    }
}
