//! Puts events back in time order. Several CPUs write the ring buffer, so events of one
//! socket can arrive slightly out of order; holding each event for a short window and
//! releasing in (timestamp, arrival) order makes every verdict independent of that.

use std::{cmp::Reverse, collections::BinaryHeap};

use crate::event::Event;

struct Pending {
    ts_ns: u64,
    arrival: u64,
    event: Event,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.ts_ns, self.arrival) == (other.ts_ns, other.arrival)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.ts_ns, self.arrival).cmp(&(other.ts_ns, other.arrival))
    }
}

pub struct Reorder {
    window_ns: u64,
    heap: BinaryHeap<Reverse<Pending>>,
    arrivals: u64,
    newest_ns: u64,
}

impl Reorder {
    pub fn new(window_ns: u64) -> Self {
        Self {
            window_ns,
            heap: BinaryHeap::new(),
            arrivals: 0,
            newest_ns: 0,
        }
    }

    pub fn push(&mut self, event: Event) {
        self.newest_ns = self.newest_ns.max(event.ts_ns);
        self.arrivals += 1;
        self.heap.push(Reverse(Pending {
            ts_ns: event.ts_ns,
            arrival: self.arrivals,
            event,
        }));
    }

    /// The oldest event that can no longer be overtaken: older than the newest event seen
    /// (or `now_ns`, when given) minus the window.
    pub fn pop_ready(&mut self, now_ns: Option<u64>) -> Option<Event> {
        let horizon = now_ns
            .unwrap_or(0)
            .max(self.newest_ns)
            .saturating_sub(self.window_ns);
        match self.heap.peek() {
            Some(Reverse(p)) if p.ts_ns <= horizon => self.heap.pop().map(|Reverse(p)| p.event),
            _ => None,
        }
    }

    /// Everything, oldest first (end of input).
    pub fn pop_any(&mut self) -> Option<Event> {
        self.heap.pop().map(|Reverse(p)| p.event)
    }

    /// Events waiting for their window to pass.
    pub fn len(&self) -> usize {
        self.heap.len()
    }
}
