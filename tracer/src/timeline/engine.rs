//! The timeline engine: one timeline per socket, events in time order, verdict rules
//! (`rules.rs`, over each socket's `state.rs`) applied as they arrive and their findings
//! rendered (`explain.rs`), bounded memory.

use std::collections::VecDeque;

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use super::{
    Verdict, VerdictKind, explain, reorder::Reorder, rules::Finding, state::SocketState,
    storms::Storms,
};
use crate::event::{
    Connection, Direction, Errno, Event, EventKind, Owner, OwnerSource, SocketId, TcpState, Tuple,
};

/// How long after its evidence a socket's CLOSE must have been applied before the engine
/// decides the death without it: the CLOSE comes from the same kernel callback.
const UNSEEN_CLOSE_MARGIN_NS: u64 = 10_000_000;

/// Configurable thresholds; the defaults follow the kernel's own judgement.
#[derive(Debug, Clone)]
pub struct Thresholds {
    /// Consecutive RTOs before `peer_unresponsive`. None: the socket namespace's
    /// tcp_retries1 (3 by default), the point where the kernel itself suspects the path.
    pub warn_after_rtos: Option<u8>,
    /// How long a process may hold a socket the kernel has ended before `dead_socket_held`.
    pub dead_socket_after_ns: u64,
    /// Whether releases (tcp_destroy_sock) can be seen at all: without them every dead
    /// socket would look held, so `dead_socket_held` is not decided.
    pub releases_seen: bool,
    /// How long a socket may stay in CLOSE_WAIT (the peer closed, the application has not)
    /// before `close_wait_held`.
    pub close_wait_after_ns: u64,
    /// How long the peer's window may stay closed under zero-window probes before
    /// `receiver_stalled`.
    pub receiver_stalled_after_ns: u64,
    /// Unanswered or failed connection attempts by one process to one peer within
    /// `retry_storm_window_ns` that make a `retry_storm`.
    pub retry_storm_attempts: u32,
    pub retry_storm_window_ns: u64,
    /// Events of one socket may arrive this much out of order (several CPUs write the ring).
    pub reorder_window_ns: u64,
    /// ... or this many events at most, whichever is shorter. Disorder comes from a program
    /// interrupted between reserving its record and reading the clock: microseconds, a
    /// softirq's run at worst. A storm fills 100 ms with ~60 000 events (24 MB), which no
    /// cache holds: each event was read back from memory, which cost a third of the
    /// tracer's CPU in the connect storm. 8192 events are ~13 ms at 600 000 events/s;
    /// an event that comes later than that is applied late and counted (`out_of_window`).
    pub reorder_max_events: usize,
    pub max_events_per_timeline: usize,
    pub max_timelines: usize,
}

impl Thresholds {
    /// `dead_socket_after_ns` unless the user or a recorded trace says otherwise.
    pub const DEFAULT_DEAD_SOCKET_AFTER_NS: u64 = 30_000_000_000;
    pub const DEFAULT_CLOSE_WAIT_AFTER_NS: u64 = 30_000_000_000;
    pub const DEFAULT_RECEIVER_STALLED_AFTER_NS: u64 = 10_000_000_000;
    pub const DEFAULT_RETRY_STORM_ATTEMPTS: u32 = 10;
    pub const DEFAULT_RETRY_STORM_WINDOW_NS: u64 = 60_000_000_000;
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            warn_after_rtos: None,
            dead_socket_after_ns: Self::DEFAULT_DEAD_SOCKET_AFTER_NS,
            releases_seen: true,
            close_wait_after_ns: Self::DEFAULT_CLOSE_WAIT_AFTER_NS,
            receiver_stalled_after_ns: Self::DEFAULT_RECEIVER_STALLED_AFTER_NS,
            retry_storm_attempts: Self::DEFAULT_RETRY_STORM_ATTEMPTS,
            retry_storm_window_ns: Self::DEFAULT_RETRY_STORM_WINDOW_NS,
            reorder_window_ns: 100_000_000,
            reorder_max_events: 8192,
            max_events_per_timeline: 256,
            max_timelines: 65_536,
        }
    }
}

/// Counters about the engine itself (shown in summaries: nothing is dropped silently).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Timelines held now.
    pub tracked: usize,
    /// Events applied (after reordering).
    pub events: u64,
    /// Timelines released after the socket's end.
    pub finished: u64,
    /// Timelines of sockets never seen to end, dropped to bound memory (oldest first).
    pub evicted: u64,
    /// Events not kept in timelines beyond `max_events_per_timeline` (verdicts still saw
    /// them).
    pub truncated_events: u64,
    /// Events without a socket (resets for segments that matched none).
    pub socketless: u64,
    /// Events waiting in the reorder window.
    pub pending: usize,
    /// Events for a socket already released (arrived after its destroy).
    pub late: u64,
    /// Events that arrived later than the reorder window allows: applied out of time order.
    pub out_of_window: u64,
    /// Drops matched to no traced socket (counted among `socketless` as well).
    pub unmatched_drops: u64,
}

/// Everything known about one socket.
#[derive(Debug, Clone)]
pub struct Timeline {
    pub socket: SocketId,
    /// The most complete picture of the connection seen so far.
    pub conn: Connection,
    pub process: Option<Owner>,
    pub first_ns: u64,
    pub last_ns: u64,
    /// The latest TCP state seen, and since when.
    pub state: TcpState,
    pub state_since_ns: u64,
    /// Kept only when the engine retains finished timelines (reports): the first
    /// quarter of `max_events_per_timeline` events (how the connection started), then
    /// the most recent ones (how it ended), with `truncated` events between them dropped.
    /// Verdicts see every event either way: their evidence is kept apart.
    pub events: Vec<Event>,
    pub recent: VecDeque<Event>,
    pub truncated: u64,
    pub verdicts: Vec<Verdict>,
    /// When the kernel ended the connection with an error (CLOSE with sk_err set).
    pub died_ns: Option<u64>,
    /// When the socket was released (tcp_destroy_sock): for a socket its application
    /// holds, its close().
    pub released_ns: Option<u64>,
    pub(crate) story: SocketState,
}

impl Timeline {
    /// The timeline of `e`'s socket, as `known` (what its events said on arrival) names it,
    /// else as `e` does.
    fn new(e: &Event, socket: SocketId, known: Option<Arriving>) -> Timeline {
        let (conn, process) = match known {
            Some(known) => (known.conn, known.process),
            None => (e.conn, e.process.clone()),
        };
        Timeline {
            socket,
            conn,
            process,
            first_ns: e.ts_ns,
            last_ns: e.ts_ns,
            state: e.state,
            state_since_ns: e.ts_ns,
            events: Vec::new(),
            recent: VecDeque::new(),
            truncated: 0,
            verdicts: Vec::new(),
            died_ns: None,
            released_ns: None,
            story: SocketState::default(),
        }
    }

    /// Who the socket is: its most complete tuple and its best-known owner. Learned as
    /// events arrive (before reordering), so that every event can be named by them.
    fn learn_identity(&mut self, e: &Event) {
        self.conn.learn(&e.conn);
        learn_owner(&mut self.process, e.process.as_ref());
    }

    /// What the event, applied in time order, says about the socket's course.
    fn learn(&mut self, e: &Event) {
        self.learn_identity(e);
        self.first_ns = self.first_ns.min(e.ts_ns);
        self.last_ns = self.last_ns.max(e.ts_ns);
        if e.state != self.state {
            self.state_since_ns = e.ts_ns;
        }
        self.state = e.state;
    }

    /// Keeps `e` within `cap` events; true when an older one had to go.
    fn keep(&mut self, e: Event, cap: usize) -> bool {
        let head = cap / 4;
        if self.events.len() < head {
            self.events.push(e);
            return false;
        }
        self.recent.push_back(e);
        if self.recent.len() > cap - head {
            self.recent.pop_front();
            self.truncated += 1;
            return true;
        }
        false
    }

    /// All kept events in time order (the first ones, then the most recent).
    pub fn kept_events(&self) -> impl Iterator<Item = &Event> {
        self.events.iter().chain(self.recent.iter())
    }

    /// The socket error the kernel ended the connection with, if it did.
    pub fn death_error(&self) -> Option<Errno> {
        self.story.close.as_ref().and_then(|c| c.error)
    }

    pub fn retransmits(&self) -> u32 {
        self.story.retransmits
    }

    /// How long the application kept the socket after the kernel had ended the
    /// connection, when it has released it since.
    pub fn held_after_death_ns(&self) -> Option<u64> {
        Some(self.released_ns?.saturating_sub(self.died_ns?))
    }

    /// In a retransmit streak past its peer_unresponsive warning now: warned, no progress
    /// since (icsk_retransmits has not dropped below the warning's), the connection not
    /// ended.
    pub fn unresponsive_now(&self) -> bool {
        let Some(warned_at) = self
            .verdicts
            .iter()
            .find(|v| v.verdict == VerdictKind::PeerUnresponsive)
            .and_then(|v| v.facts.consecutive_rtos)
        else {
            return false;
        };
        self.story.close.is_none()
            && self.story.rto.count > 0
            && u32::from(self.story.consecutive_rtos) >= warned_at
    }

    /// Holding a dead socket now: dead_socket_held was reached and the socket is not
    /// released (released sockets leave the engine).
    pub fn dead_socket_held_now(&self) -> bool {
        self.story.has(VerdictKind::DeadSocketHeld)
    }

    fn verdict(&self, finding: Finding) -> Verdict {
        explain::verdict(finding, self.socket, self.conn, self.process.clone())
    }
}

/// Keeps the best owner seen: one seen in its own context beats one inferred from a
/// listener or a sweep.
fn learn_owner(known: &mut Option<Owner>, seen: Option<&Owner>) {
    let Some(p) = seen else { return };
    let better = match known {
        None => true,
        Some(known) => {
            known != p && (p.source == OwnerSource::Owner || known.source != OwnerSource::Owner)
        }
    };
    if better {
        *known = Some(p.clone());
    }
}

/// Indexes a socket by its namespace and tuple once both ends are complete.
fn index_tuple(index: &mut HashMap<(u32, Tuple), SocketId>, socket: SocketId, conn: &Connection) {
    let complete = conn.lport != 0
        && conn.rport != 0
        && !conn.laddr.is_unspecified()
        && !conn.raddr.is_unspecified();
    if complete {
        index.insert((conn.netns, Tuple::of(conn)), socket);
    }
}

fn unindex_tuple(index: &mut HashMap<(u32, Tuple), SocketId>, socket: SocketId, conn: &Connection) {
    let key = (conn.netns, Tuple::of(conn));
    if index.get(&key) == Some(&socket) {
        index.remove(&key);
    }
}

/// Who a socket is, learned from events still in the reorder window before its timeline
/// exists.
struct Arriving {
    conn: Connection,
    process: Option<Owner>,
}

/// Which finished timelines an engine keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retain {
    Nothing,
    /// Only sockets that got a verdict (what reports show by default).
    WithVerdicts,
    All,
}

impl Retain {
    fn keeps(self, t: &Timeline) -> bool {
        match self {
            Retain::Nothing => false,
            Retain::WithVerdicts => !t.verdicts.is_empty(),
            Retain::All => true,
        }
    }
}

pub struct Engine {
    thresholds: Thresholds,
    reorder: Reorder,
    /// The newest event applied: one older than this arrived beyond the window.
    applied_ns: u64,
    /// Boxed: a timeline is 1.4 KB, moved at every insertion, table growth and removal.
    timelines: HashMap<SocketId, Box<Timeline>>,
    /// Sockets whose first events wait in the reorder window: who they are, so far.
    arriving: HashMap<SocketId, Arriving>,
    /// Sockets whose death may turn into dead_socket_held: (due, socket), in due order.
    held_queue: VecDeque<(u64, SocketId)>,
    /// Sockets with evidence of a death whose CLOSE was not seen: (due, socket), decided
    /// once a CLOSE can no longer arrive in time order.
    unseen_queue: VecDeque<(u64, SocketId)>,
    /// Sockets that entered CLOSE_WAIT: (due, socket, entered), in due order.
    close_wait_queue: VecDeque<(u64, SocketId, u64)>,
    /// Connection attempts across sockets, per process and peer (retry_storm).
    storms: Storms,
    /// Sockets by namespace and complete tuple (local first), to name the socket of a
    /// dropped segment the kernel could not name.
    by_tuple: HashMap<(u32, Tuple), SocketId>,
    /// Recently released sockets: a straggler must not start a new timeline for them.
    released: VecDeque<SocketId>,
    released_set: HashSet<SocketId>,
    retain: Retain,
    finished: Vec<Timeline>,
    stats: EngineStats,
    findings: Vec<Finding>,
}

impl Engine {
    pub fn new(thresholds: Thresholds) -> Self {
        Self {
            reorder: Reorder::new(thresholds.reorder_window_ns, thresholds.reorder_max_events),
            storms: Storms::new(
                thresholds.retry_storm_attempts,
                thresholds.retry_storm_window_ns,
            ),
            thresholds,
            applied_ns: 0,
            timelines: HashMap::new(),
            arriving: HashMap::new(),
            held_queue: VecDeque::new(),
            unseen_queue: VecDeque::new(),
            close_wait_queue: VecDeque::new(),
            by_tuple: HashMap::new(),
            released: VecDeque::new(),
            released_set: HashSet::new(),
            retain: Retain::Nothing,
            finished: Vec::new(),
            stats: EngineStats::default(),
            findings: Vec::new(),
        }
    }

    /// Which finished timelines to keep for [`Engine::take_finished`] (reports). Live
    /// tracing keeps none, and then timelines keep no events either: verdicts do not need
    /// them.
    pub fn retain(&mut self, retain: Retain) {
        self.retain = retain;
    }

    /// Timelines finished (or evicted) since the last call, as `retain` chose them.
    pub fn take_finished(&mut self) -> Vec<Timeline> {
        std::mem::take(&mut self.finished)
    }

    /// Feeds one event; verdicts reached are appended to `out`.
    pub fn push(&mut self, event: Event, out: &mut Vec<Verdict>) {
        self.push_boxed(Box::new(event), out);
    }

    /// [`Engine::push`] for an event already boxed (as a trace reader returns them): it
    /// waits in the reorder window without being moved.
    pub fn push_boxed(&mut self, mut event: Box<Event>, out: &mut Vec<Verdict>) {
        if event.kind == EventKind::Drop {
            self.attach_drop(&mut event);
        }
        self.admit(&event);
        self.reorder.push(event);
        while let Some(e) = self.reorder.pop_ready(None) {
            self.apply(e, out);
        }
    }

    /// Advances time to `now_ns` (CLOCK_BOOTTIME): releases reordered events and fires
    /// time-based verdicts (dead_socket_held).
    pub fn tick(&mut self, now_ns: u64, out: &mut Vec<Verdict>) {
        while let Some(e) = self.reorder.pop_ready(Some(now_ns)) {
            self.apply(e, out);
        }
        // Events up to now minus the window are applied: an unseen CLOSE is decided.
        self.decide_unseen(
            now_ns.saturating_sub(self.thresholds.reorder_window_ns),
            out,
        );
        self.check_held(now_ns, out);
        self.check_close_wait(now_ns, out);
    }

    /// End of input: everything pending is decided as of `now_ns`.
    pub fn finish(&mut self, now_ns: u64, out: &mut Vec<Verdict>) {
        while let Some(e) = self.reorder.pop_any() {
            self.apply(e, out);
        }
        self.decide_unseen(u64::MAX, out);
        self.check_held(now_ns, out);
        self.check_close_wait(now_ns, out);
    }

    /// Names `e` as its socket is known: learns from it (at once, before reordering), then
    /// gives it the socket's most complete tuple and best-known owner. The kernel clears a
    /// socket's addresses and ports while it closes; its last events would otherwise name a
    /// tuple that never existed. The ends the kernel reported go to `e.raw` when they
    /// differ. Call before [`Engine::push`], for events shown to people as they arrive.
    pub fn name(&mut self, e: &mut Event) {
        if e.kind == EventKind::Drop {
            self.attach_drop(e);
        }
        let Some((conn, process)) = self.admit(e) else {
            return;
        };
        let reported = Tuple::of(&e.conn);
        if Tuple::of(conn) != reported {
            e.raw.get_or_insert(reported);
            e.conn.learn(conn);
        }
        if process.is_some() && *process != e.process {
            e.process.clone_from(process);
        }
    }

    /// What `e` says about who its socket is, learned at once; returns the socket's
    /// best-known tuple and owner. None for socketless events and stragglers of released
    /// sockets.
    fn admit(&mut self, e: &Event) -> Option<(&Connection, &Option<Owner>)> {
        let socket = e.socket?;
        if self.timelines.contains_key(&socket) {
            let t = self.timelines.get_mut(&socket)?;
            let before = t.conn;
            t.learn_identity(e);
            if t.conn != before {
                index_tuple(&mut self.by_tuple, socket, &t.conn);
            }
            return Some((&t.conn, &t.process));
        }
        if self.released_set.contains(&socket) {
            return None;
        }
        let a = self.arriving.entry(socket).or_insert_with(|| Arriving {
            conn: Connection::UNKNOWN,
            process: None,
        });
        let before = a.conn;
        if before == Connection::UNKNOWN {
            a.conn = e.conn;
        }
        a.conn.learn(&e.conn);
        if a.conn != before {
            index_tuple(&mut self.by_tuple, socket, &a.conn);
        }
        learn_owner(&mut a.process, e.process.as_ref());
        Some((&a.conn, &a.process))
    }

    /// Names the socket of a dropped segment the kernel could not name (dropped before
    /// any socket was looked up): the socket of the segment's tuple in its namespace, tried
    /// as addressed to us, then as sent by us. A segment of no traced socket stays
    /// socketless, counted. (A socket the kernel named is its own: its cookie exists only
    /// because the tracer or sock_diag asked for it.)
    fn attach_drop(&mut self, e: &mut Event) {
        if e.socket.is_some() {
            return;
        }
        let netns = e.conn.netns;
        let as_reported = self.by_tuple.get(&(netns, Tuple::of(&e.conn))).copied();
        let swapped = Connection {
            laddr: e.conn.raddr,
            lport: e.conn.rport,
            raddr: e.conn.laddr,
            rport: e.conn.lport,
            ..e.conn
        };
        let reversed = || self.by_tuple.get(&(netns, Tuple::of(&swapped))).copied();
        e.socket = match (as_reported, reversed()) {
            (Some(socket), _) => Some(socket),
            (None, Some(socket)) => {
                e.conn = swapped;
                if let Some(d) = e.drop.as_mut() {
                    d.direction = match d.direction {
                        Direction::In => Direction::Out,
                        Direction::Out => Direction::In,
                    };
                }
                Some(socket)
            }
            (None, None) => {
                self.stats.unmatched_drops += 1;
                None
            }
        };
    }

    pub fn stats(&self) -> EngineStats {
        EngineStats {
            tracked: self.timelines.len(),
            pending: self.reorder.len(),
            ..self.stats
        }
    }

    /// Process–peer pairs the retry-storm bookkeeping follows, and their sockets.
    #[cfg(test)]
    pub(crate) fn storm_pairs(&self) -> (usize, usize) {
        self.storms.followed()
    }

    /// Timelines still held (not yet finished), in no particular order.
    pub fn timelines(&self) -> impl Iterator<Item = &Timeline> {
        self.timelines.values().map(|t| &**t)
    }

    fn apply(&mut self, e: Box<Event>, out: &mut Vec<Verdict>) {
        self.stats.events += 1;
        if e.ts_ns < self.applied_ns {
            self.stats.out_of_window += 1;
        }
        self.applied_ns = self.applied_ns.max(e.ts_ns);
        // The event stream is a clock too: replays reach time-based verdicts without ticks.
        self.decide_unseen(e.ts_ns, out);
        self.check_held(e.ts_ns, out);
        self.check_close_wait(e.ts_ns, out);
        let Some(socket) = e.socket else {
            self.stats.socketless += 1;
            return;
        };
        if !self.timelines.contains_key(&socket) {
            if self.released_set.contains(&socket) {
                self.stats.late += 1;
                return;
            }
            if self.timelines.len() >= self.thresholds.max_timelines.max(1) {
                self.evict();
            }
            let known = self.arriving.remove(&socket);
            self.timelines
                .insert(socket, Box::new(Timeline::new(&e, socket, known)));
        }
        let Some(timeline) = self.timelines.get_mut(&socket) else {
            return;
        };
        timeline.learn(&e);
        let unseen_before = timeline.story.unseen_close.is_some();
        let close_wait_before = timeline.story.close_wait_since_ns;
        timeline
            .story
            .apply(&e, self.thresholds.warn_after_rtos, &mut self.findings);
        if e.kind == EventKind::ZeroWindowProbe {
            timeline.story.receiver_stalled(
                &e,
                self.thresholds.receiver_stalled_after_ns,
                &mut self.findings,
            );
        }
        if let Some(since) = timeline.story.close_wait_since_ns
            && close_wait_before.is_none()
        {
            let due = (since + self.thresholds.close_wait_after_ns, socket, since);
            let at = self
                .close_wait_queue
                .partition_point(|&queued| queued <= due);
            self.close_wait_queue.insert(at, due);
        }
        if let Some(storm) = self.storms.observe(&e, timeline) {
            self.findings.push(storm);
        }
        if !unseen_before && timeline.story.unseen_close.is_some() {
            // The CLOSE comes in the same kernel callback, microseconds from its evidence.
            self.unseen_queue
                .push_back((e.ts_ns + UNSEEN_CLOSE_MARGIN_NS, socket));
        }
        for f in self.findings.drain(..) {
            let v = timeline.verdict(f);
            timeline.verdicts.push(v.clone());
            out.push(v);
        }
        if timeline.died_ns.is_none()
            && e.kind == EventKind::StateChange
            && e.state == TcpState::CLOSE
            && e.errno().is_some()
        {
            timeline.died_ns = Some(e.ts_ns);
            if self.thresholds.releases_seen && timeline.story.held_since_ns == Some(e.ts_ns) {
                // Deaths come in time order, so this is nearly always the back.
                let due = (e.ts_ns + self.thresholds.dead_socket_after_ns, socket);
                let at = self.held_queue.partition_point(|&queued| queued <= due);
                self.held_queue.insert(at, due);
            }
        }
        let finished = timeline.story.destroyed_ns.is_some();
        if finished {
            timeline.released_ns = Some(e.ts_ns);
        }
        if self.retain != Retain::Nothing
            && timeline.keep(*e, self.thresholds.max_events_per_timeline.max(8))
        {
            self.stats.truncated_events += 1;
        }
        if finished && let Some(done) = self.timelines.remove(&socket) {
            unindex_tuple(&mut self.by_tuple, socket, &done.conn);
            self.stats.finished += 1;
            self.remember_released(socket);
            if self.retain.keeps(&done) {
                self.finished.push(*done);
            }
        }
    }

    fn remember_released(&mut self, socket: SocketId) {
        const REMEMBER: usize = 8192;
        if self.released.len() == REMEMBER
            && let Some(old) = self.released.pop_front()
        {
            self.released_set.remove(&old);
        }
        self.released.push_back(socket);
        self.released_set.insert(socket);
    }

    /// The deaths whose CLOSE went unseen, for every socket whose evidence is older than
    /// `applied_ns` by the margin.
    fn decide_unseen(&mut self, applied_ns: u64, out: &mut Vec<Verdict>) {
        while let Some(&(due, socket)) = self.unseen_queue.front() {
            if due > applied_ns {
                break;
            }
            self.unseen_queue.pop_front();
            let Some(timeline) = self.timelines.get_mut(&socket) else {
                continue;
            };
            timeline
                .story
                .decide_unseen_close(self.thresholds.warn_after_rtos, &mut self.findings);
            for f in self.findings.drain(..) {
                let v = timeline.verdict(f);
                timeline.verdicts.push(v.clone());
                out.push(v);
            }
        }
    }

    /// dead_socket_held for every death whose threshold passed before `now_ns`; the
    /// verdict is dated when the threshold passed, so it does not depend on when the
    /// engine was told the time.
    fn check_held(&mut self, now_ns: u64, out: &mut Vec<Verdict>) {
        while let Some(&(due, socket)) = self.held_queue.front() {
            if due >= now_ns {
                break;
            }
            self.held_queue.pop_front();
            let Some(timeline) = self.timelines.get_mut(&socket) else {
                continue;
            };
            if let Some(f) = timeline.story.held(due, timeline.conn.remote()) {
                let v = timeline.verdict(f);
                timeline.verdicts.push(v.clone());
                out.push(v);
            }
        }
    }

    /// close_wait_held for every socket still in CLOSE_WAIT the threshold after it entered
    /// it, before `now_ns`; dated when the threshold passed, like dead_socket_held.
    fn check_close_wait(&mut self, now_ns: u64, out: &mut Vec<Verdict>) {
        while let Some(&(due, socket, since)) = self.close_wait_queue.front() {
            if due >= now_ns {
                break;
            }
            self.close_wait_queue.pop_front();
            let Some(timeline) = self.timelines.get_mut(&socket) else {
                continue;
            };
            if let Some(f) = timeline
                .story
                .close_wait_held(since, due, timeline.conn.remote())
            {
                let v = timeline.verdict(f);
                timeline.verdicts.push(v.clone());
                out.push(v);
            }
        }
    }

    /// Drops the least recently active tenth of the timelines (sockets never seen to end):
    /// one pass over them per tenth, so eviction costs O(1) per new socket on average.
    fn evict(&mut self) {
        let mut ages: Vec<(u64, SocketId)> = self
            .timelines
            .values()
            .map(|t| (t.last_ns, t.socket))
            .collect();
        let n = (ages.len() / 10).max(1);
        ages.select_nth_unstable(n - 1);
        for (_, socket) in &ages[..n] {
            if let Some(t) = self.timelines.remove(socket) {
                unindex_tuple(&mut self.by_tuple, *socket, &t.conn);
                self.stats.evicted += 1;
                if self.retain.keeps(&t) {
                    self.finished.push(*t);
                }
            }
        }
    }
}
