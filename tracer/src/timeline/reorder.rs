//! Puts events back in time order. Several CPUs write the ring buffer, so events of one
//! socket can arrive slightly out of order; holding each event for a short window and
//! releasing in (timestamp, arrival) order makes every verdict independent of that.
//!
//! The queue is kept sorted as events arrive. Input is nearly sorted (disorder is bounded by
//! the ring buffer's cross-CPU skew), so almost every event is appended at the back and an
//! out-of-order one lands a few places from it: no per-event allocation and no sifting of
//! whole events through a heap. The rare event that belongs far from the back (a badly
//! disordered trace) goes to a heap instead, so that no input costs more than
//! O(NEAR + log n) per event. Events are held boxed: a report's reader hands them over
//! boxed, and inserting or sifting a pointer moves 8 bytes where an event moves hundreds.

use std::{cmp::Reverse, collections::BinaryHeap, collections::VecDeque};

use crate::event::Event;

/// How far from the back of the queue an event may be inserted.
const NEAR: usize = 32;

struct Pending {
    ts_ns: u64,
    arrival: u64,
    event: Box<Event>,
}

impl Pending {
    fn key(&self) -> (u64, u64) {
        (self.ts_ns, self.arrival)
    }
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
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
        self.key().cmp(&other.key())
    }
}

pub struct Reorder {
    window_ns: u64,
    /// Events held at most, however young: the oldest goes once more wait (see
    /// `Thresholds::reorder_max_events`).
    max_pending: usize,
    /// Sorted by (timestamp, arrival).
    queue: VecDeque<Pending>,
    /// Events that arrived too far out of order for the queue.
    stragglers: BinaryHeap<Reverse<Pending>>,
    arrivals: u64,
    newest_ns: u64,
}

impl Reorder {
    pub fn new(window_ns: u64, max_pending: usize) -> Self {
        Self {
            window_ns,
            max_pending: max_pending.max(1),
            queue: VecDeque::new(),
            stragglers: BinaryHeap::new(),
            arrivals: 0,
            newest_ns: 0,
        }
    }

    pub fn push(&mut self, event: Box<Event>) {
        self.newest_ns = self.newest_ns.max(event.ts_ns);
        self.arrivals += 1;
        let p = Pending {
            ts_ns: event.ts_ns,
            arrival: self.arrivals,
            event,
        };
        match self.queue.back() {
            Some(last) if last.ts_ns > p.ts_ns => {
                // After every event with the same or an earlier timestamp: arrival order
                // breaks ties.
                let at = self.queue.partition_point(|q| q.ts_ns <= p.ts_ns);
                if self.queue.len() - at <= NEAR {
                    self.queue.insert(at, p);
                } else {
                    self.stragglers.push(Reverse(p));
                }
            }
            _ => self.queue.push_back(p),
        }
    }

    /// The oldest event that can no longer be overtaken: older than the newest event seen
    /// (or `now_ns`, when given) minus the window, or the oldest of more than
    /// `max_pending` waiting.
    pub fn pop_ready(&mut self, now_ns: Option<u64>) -> Option<Box<Event>> {
        if self.len() > self.max_pending {
            return self.pop_any();
        }
        let horizon = now_ns
            .unwrap_or(0)
            .max(self.newest_ns)
            .checked_sub(self.window_ns)?;
        match self.oldest() {
            Some(key) if key.0 <= horizon => self.pop_any(),
            _ => None,
        }
    }

    /// Everything, oldest first (end of input).
    pub fn pop_any(&mut self) -> Option<Box<Event>> {
        let from_queue = match (self.queue.front(), self.stragglers.peek()) {
            (Some(q), Some(Reverse(s))) => q.key() < s.key(),
            (Some(_), None) => true,
            (None, _) => false,
        };
        if from_queue {
            self.queue.pop_front().map(|p| p.event)
        } else {
            self.stragglers.pop().map(|Reverse(p)| p.event)
        }
    }

    fn oldest(&self) -> Option<(u64, u64)> {
        let q = self.queue.front().map(Pending::key);
        let s = self.stragglers.peek().map(|Reverse(p)| p.key());
        match (q, s) {
            (Some(q), Some(s)) => Some(q.min(s)),
            (q, s) => q.or(s),
        }
    }

    /// Events waiting for their window to pass.
    pub fn len(&self) -> usize {
        self.queue.len() + self.stragglers.len()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::testing::Sock;

    fn at(ts_ns: u64, tag: u8) -> Box<Event> {
        let mut e = Sock::new(1).connect().events.remove(0);
        e.ts_ns = ts_ns;
        e.probe = Some(tag);
        Box::new(e)
    }

    #[test]
    fn releases_in_time_then_arrival_order_once_the_window_passed() {
        let mut r = Reorder::new(100, usize::MAX);
        for (ts, tag) in [(50, 1), (10, 2), (50, 3), (30, 4), (10, 5)] {
            r.push(at(ts, tag));
        }
        // Newest is 50: nothing is older than 50 − 100.
        assert!(r.pop_ready(None).is_none());
        let mut order = Vec::new();
        while let Some(e) = r.pop_ready(Some(160)) {
            order.push((e.ts_ns, e.probe.unwrap_or(0)));
        }
        assert_eq!(order, [(10, 2), (10, 5), (30, 4), (50, 1), (50, 3)]);
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn the_window_follows_the_newest_event() {
        let mut r = Reorder::new(100, usize::MAX);
        r.push(at(1_000, 1));
        r.push(at(1_050, 2));
        assert!(r.pop_ready(None).is_none());
        r.push(at(1_100, 3));
        assert_eq!(r.pop_ready(None).map(|e| e.ts_ns), Some(1_000));
        assert!(r.pop_ready(None).is_none());
        assert_eq!(r.pop_any().map(|e| e.ts_ns), Some(1_050));
    }

    #[test]
    fn no_more_than_max_pending_wait_however_young() {
        let mut r = Reorder::new(1_000_000, 2);
        for (ts, tag) in [(10, 1), (30, 2), (20, 3)] {
            r.push(at(ts, tag));
        }
        // Three wait, two may: the oldest goes, though the window has not passed.
        assert_eq!(r.pop_ready(None).map(|e| e.ts_ns), Some(10));
        assert!(r.pop_ready(None).is_none());
        // The two left still come out in time order.
        assert_eq!(r.pop_any().map(|e| e.ts_ns), Some(20));
        assert_eq!(r.pop_any().map(|e| e.ts_ns), Some(30));
    }

    /// Pushes events stamped `stamps` (tagged by arrival) through a window; returns what
    /// came out, in order, as (timestamp, tag).
    fn through(window_ns: u64, stamps: &[u64]) -> Result<Vec<(u64, u8)>, TestCaseError> {
        let mut r = Reorder::new(window_ns, usize::MAX);
        let mut released = Vec::new();
        let mut newest = 0;
        for (i, &ts) in stamps.iter().enumerate() {
            r.push(at(ts, (i % 251) as u8));
            newest = newest.max(ts);
            while let Some(e) = r.pop_ready(None) {
                prop_assert!(e.ts_ns + window_ns <= newest, "released too early");
                released.push(e);
            }
        }
        while let Some(e) = r.pop_any() {
            released.push(e);
        }
        Ok(released
            .iter()
            .map(|e| (e.ts_ns, e.probe.unwrap_or(0)))
            .collect())
    }

    proptest! {
        /// Whatever the disorder (near the back of the queue or far from it), events come
        /// out as a stable sort by timestamp when the window covers it, and never before
        /// the window has passed them.
        #[test]
        fn releases_a_stable_sort_of_any_input(
            stamps in proptest::collection::vec(0u64..5_000, 1..400),
        ) {
            let mut expected: Vec<(u64, u8)> = stamps
                .iter()
                .enumerate()
                .map(|(i, &ts)| (ts, (i % 251) as u8))
                .collect();
            expected.sort_by_key(|&(ts, _)| ts);
            prop_assert_eq!(through(5_000, &stamps)?, expected.clone());
            // A narrower window releases earlier, and loses nothing.
            let mut narrow = through(1_000, &stamps)?;
            narrow.sort();
            expected.sort();
            prop_assert_eq!(narrow, expected);
        }
    }
}
