//! retry_storm: one process's connection attempts to one peer, across its sockets. The
//! per-socket rules cannot see it: each attempt is its own socket, and each may die an
//! ordinary death (connect_timeout, connection_refused) or be abandoned by the application.
//!
//! An attempt is a socket's move CLOSE → SYN_SENT (connect(), in the owner's context). It is
//! *unanswered* once its SYN went out again (a SYN retransmit, sent or failed: the peer did
//! not answer the first), and *failed* when it left SYN_SENT for CLOSE. A storm is the
//! threshold of unanswered or failed attempts by one process to one peer within the window,
//! with none answered since: an attempt reaching ESTABLISHED ends it. One verdict when the
//! storm starts, repeated once per window while attempts keep coming; a window without
//! attempts ends it too.
//!
//! Memory is bounded: attempts older than the window are forgotten once they are decided
//! (at most [`MAX_ATTEMPTS`] per peer in any case), and at most [`MAX_PEERS`] process–peer
//! pairs are followed (the least recently active goes first).

use std::collections::{BTreeMap, VecDeque};

use foldhash::{HashMap, HashMapExt};

use super::{
    rules::{Cited, Facts, Finding, Note, Storm},
    state::Mark,
    verdict::VerdictKind,
};
use crate::{
    event::{Comm, Endpoint, Errno, Event, EventKind, Owner, RetransmitClass, SocketId, TcpState},
    timeline::Timeline,
};

/// Attempts remembered per process and peer.
pub const MAX_ATTEMPTS: usize = 512;
/// Process–peer pairs followed at once.
pub const MAX_PEERS: usize = 4096;

/// How an attempt failed: its death verdict, or what ended it without one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Failure {
    ConnectTimeout,
    ConnectionRefused,
    /// A reset ended it in SYN_SENT without a refusal (tcp_abort(), `ss -K`).
    Reset,
    /// The application closed it before any answer (its own connect timeout).
    Abandoned,
    /// Another socket error.
    Error,
}

impl Failure {
    /// The name in `facts.failures`: the verdict's name, or what ended it.
    pub fn name(self) -> &'static str {
        match self {
            Failure::ConnectTimeout => VerdictKind::ConnectTimeout.name(),
            Failure::ConnectionRefused => VerdictKind::ConnectionRefused.name(),
            Failure::Reset => "reset",
            Failure::Abandoned => "abandoned",
            Failure::Error => "error",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Sent, no answer yet, no retransmit yet.
    Pending,
    /// Its SYN had to go again.
    Unanswered,
    Failed(Failure),
}

impl Outcome {
    fn in_flight(self) -> bool {
        matches!(self, Outcome::Pending | Outcome::Unanswered)
    }

    fn failing(self) -> bool {
        !matches!(self, Outcome::Pending)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    pid: u32,
    netns: u32,
    peer: Endpoint,
}

#[derive(Debug, Clone, Copy)]
struct Attempt {
    socket: SocketId,
    started: Mark,
    outcome: Outcome,
    /// Attempts in flight when this one started, itself included.
    in_flight: u32,
}

/// A storm in progress.
#[derive(Debug, Clone)]
struct Ongoing {
    first: Mark,
    last: Mark,
    attempts: u32,
    failures: BTreeMap<Failure, u32>,
    max_in_flight: u32,
    reported_ns: u64,
}

impl Ongoing {
    /// A storm of the attempts started since `since`.
    fn of(attempts: &VecDeque<Attempt>, since: u64, now: u64) -> Option<Ongoing> {
        let recent: Vec<&Attempt> = attempts
            .iter()
            .filter(|a| a.started.ts_ns >= since)
            .collect();
        let mut failures = BTreeMap::new();
        for a in &recent {
            if let Outcome::Failed(how) = a.outcome {
                *failures.entry(how).or_default() += 1;
            }
        }
        Some(Ongoing {
            first: recent.first()?.started,
            last: recent.last()?.started,
            attempts: recent.len() as u32,
            failures,
            max_in_flight: recent.iter().map(|a| a.in_flight).max().unwrap_or(0),
            reported_ns: now,
        })
    }
}

#[derive(Debug, Default)]
struct Peer {
    attempts: VecDeque<Attempt>,
    /// Attempts in flight among `attempts` (kept as they change: no scan per attempt).
    in_flight: u32,
    storm: Option<Ongoing>,
    last_ns: u64,
}

/// What one event did to an attempt.
#[derive(Debug, Clone, Copy)]
enum Step {
    Started,
    Unanswered,
    Answered,
    Failed(Failure),
}

pub struct Storms {
    threshold: u32,
    window_ns: u64,
    peers: HashMap<Key, Peer>,
    /// Sockets of attempts still remembered → their process and peer.
    sockets: HashMap<SocketId, Key>,
    /// Each process's name, and its `comm/pid` as the storm's verdict names it.
    comms: HashMap<u32, (Comm, String)>,
    /// Socket → how many remembered attempts (of any pair) it made. At 1, its attempt is
    /// the one found searching its pair's attempts from the newest.
    attempts_of: HashMap<SocketId, u32>,
}

impl Storms {
    pub fn new(threshold: u32, window_ns: u64) -> Storms {
        Storms {
            threshold: threshold.clamp(1, MAX_ATTEMPTS as u32),
            window_ns: window_ns.max(1),
            peers: HashMap::new(),
            sockets: HashMap::new(),
            comms: HashMap::new(),
            attempts_of: HashMap::new(),
        }
    }

    /// Process–peer pairs followed now, and the sockets of their attempts (the memory
    /// bound's tests).
    #[cfg(test)]
    pub fn followed(&self) -> (usize, usize) {
        (self.peers.len(), self.sockets.len())
    }

    /// Takes `e`, just applied to `timeline` (its story knows the death a CLOSE was);
    /// returns a retry_storm finding when it starts or repeats a storm.
    pub fn observe(&mut self, e: &Event, timeline: &Timeline) -> Option<Finding> {
        let socket = timeline.socket;
        let step = match (e.kind, e.old_state, e.state) {
            (EventKind::StateChange, Some(TcpState::CLOSE), TcpState::SYN_SENT) => Step::Started,
            (EventKind::Retransmit, _, _) if e.class == Some(RetransmitClass::Syn) => {
                Step::Unanswered
            }
            (EventKind::RetransmitFailed, _, TcpState::SYN_SENT) => Step::Unanswered,
            (EventKind::StateChange, Some(TcpState::SYN_SENT), TcpState::CLOSE) => {
                Step::Failed(failure(timeline, e))
            }
            (EventKind::StateChange, Some(TcpState::SYN_SENT), _) => Step::Answered,
            _ => return None,
        };
        let key = match step {
            Step::Started => {
                let owner: &Owner = timeline.process.as_ref()?;
                let peer = timeline.conn.remote();
                if peer.port == 0 {
                    return None;
                }
                // Spelt again only when the process's name changed (an exec): a connect
                // storm starts an attempt every few microseconds.
                if self
                    .comms
                    .get(&owner.pid)
                    .is_none_or(|(comm, _)| *comm != owner.comm)
                {
                    self.comms
                        .insert(owner.pid, (owner.comm.clone(), owner.to_string()));
                }
                Key {
                    pid: owner.pid,
                    netns: timeline.conn.netns,
                    peer,
                }
            }
            _ => *self.sockets.get(&socket)?,
        };
        self.make_room(key);
        let peer = self.peers.entry(key).or_default();
        peer.last_ns = peer.last_ns.max(e.ts_ns);
        let mark = Mark::of(e);
        match step {
            Step::Started => {
                peer.in_flight += 1;
                let in_flight = peer.in_flight;
                *self.attempts_of.entry(socket).or_default() += 1;
                peer.attempts.push_back(Attempt {
                    socket,
                    started: mark,
                    outcome: Outcome::Pending,
                    in_flight,
                });
                self.sockets.insert(socket, key);
                if let Some(storm) = &mut peer.storm {
                    storm.attempts += 1;
                    storm.last = mark;
                    storm.max_in_flight = storm.max_in_flight.max(in_flight);
                }
            }
            Step::Unanswered => {
                if let Some(a) = attempt_of(&mut peer.attempts, &self.attempts_of, socket)
                    && a.outcome == Outcome::Pending
                {
                    a.outcome = Outcome::Unanswered;
                }
            }
            Step::Failed(how) => {
                self.sockets.remove(&socket);
                if let Some(a) = attempt_of(&mut peer.attempts, &self.attempts_of, socket) {
                    if a.outcome.in_flight() {
                        peer.in_flight -= 1;
                    }
                    a.outcome = Outcome::Failed(how);
                    if let Some(storm) = &mut peer.storm
                        && a.started.ts_ns >= storm.first.ts_ns
                    {
                        *storm.failures.entry(how).or_default() += 1;
                    }
                }
            }
            Step::Answered => {
                // The peer answers: whatever was brewing is over.
                for a in peer.attempts.drain(..) {
                    self.sockets.remove(&a.socket);
                    forget(&mut self.attempts_of, a.socket);
                }
                self.peers.remove(&key);
                return None;
            }
        }
        self.decide(key, e.ts_ns)
    }

    /// Starts, repeats or ends the storm of `key` as of `now`.
    fn decide(&mut self, key: Key, now: u64) -> Option<Finding> {
        let window = self.window_ns;
        let threshold = self.threshold;
        let peer = self.peers.get_mut(&key)?;
        // Forget what is decided and older than the window, and the oldest beyond the cap.
        while let Some(front) = peer.attempts.front() {
            let stale =
                front.started.ts_ns.saturating_add(window) < now && !front.outcome.in_flight();
            if !stale && peer.attempts.len() <= MAX_ATTEMPTS {
                break;
            }
            if let Some(gone) = peer.attempts.pop_front() {
                if gone.outcome.in_flight() {
                    peer.in_flight -= 1;
                }
                forget(&mut self.attempts_of, gone.socket);
                if self.sockets.get(&gone.socket) == Some(&key) {
                    self.sockets.remove(&gone.socket);
                }
            }
        }
        debug_assert_eq!(
            peer.in_flight as usize,
            peer.attempts
                .iter()
                .filter(|a| a.outcome.in_flight())
                .count()
        );
        let since = now.saturating_sub(window);
        // Compared with the threshold only: counting stops there.
        let failing = peer
            .attempts
            .iter()
            .filter(|a| a.started.ts_ns >= since && a.outcome.failing())
            .take(threshold as usize)
            .count() as u32;
        // A window without a new attempt ends a storm.
        if peer
            .storm
            .as_ref()
            .is_some_and(|s| s.last.ts_ns.saturating_add(window) < now)
        {
            peer.storm = None;
        }
        let repeated = match &mut peer.storm {
            None if failing >= threshold => {
                peer.storm = Some(Ongoing::of(&peer.attempts, since, now)?);
                false
            }
            Some(storm) if failing >= threshold && now >= storm.reported_ns + window => {
                storm.reported_ns = now;
                true
            }
            _ => return None,
        };
        let storm = peer.storm.as_ref()?;
        let unanswered = peer
            .attempts
            .iter()
            .filter(|a| a.outcome == Outcome::Unanswered)
            .count() as u32;
        let facts = Storm {
            attempts: storm.attempts,
            failures: storm.failures.iter().map(|(f, n)| (f.name(), *n)).collect(),
            unanswered,
            max_in_flight: storm.max_in_flight,
            window_ms: window / 1_000_000,
            first_ns: storm.first.ts_ns,
            last_ns: storm.last.ts_ns,
            process: self
                .comms
                .get(&key.pid)
                .map(|(_, spelt)| spelt.clone())
                .unwrap_or_else(|| format!("process {}", key.pid)),
            repeated,
            threshold,
        };
        let mut cited = vec![Cited {
            mark: storm.first,
            note: Note::First,
        }];
        if storm.last.ts_ns != storm.first.ts_ns {
            cited.push(Cited {
                mark: storm.last,
                note: Note::Latest,
            });
        }
        Some(Finding {
            ts_ns: now,
            peer: key.peer,
            facts: Facts::RetryStorm(facts),
            cited,
            inferred_from: None,
        })
    }

    /// Keeps at most [`MAX_PEERS`] pairs: before a new one, the least recently active goes.
    fn make_room(&mut self, key: Key) {
        if self.peers.len() < MAX_PEERS || self.peers.contains_key(&key) {
            return;
        }
        let Some(oldest) = self
            .peers
            .iter()
            .min_by_key(|(_, p)| p.last_ns)
            .map(|(k, _)| *k)
        else {
            return;
        };
        if let Some(gone) = self.peers.remove(&oldest) {
            for a in gone.attempts {
                self.sockets.remove(&a.socket);
                forget(&mut self.attempts_of, a.socket);
            }
        }
        if !self.peers.keys().any(|k| k.pid == oldest.pid) {
            self.comms.remove(&oldest.pid);
        }
    }
}

/// The first remembered attempt of `socket` among `attempts`: searched from the newest
/// when the socket made only one (a connect storm's attempt is among the last few), from
/// the oldest otherwise.
fn attempt_of<'a>(
    attempts: &'a mut VecDeque<Attempt>,
    attempts_of: &HashMap<SocketId, u32>,
    socket: SocketId,
) -> Option<&'a mut Attempt> {
    if attempts_of.get(&socket).copied().unwrap_or(0) <= 1 {
        attempts.iter_mut().rev().find(|a| a.socket == socket)
    } else {
        attempts.iter_mut().find(|a| a.socket == socket)
    }
}

fn forget(attempts_of: &mut HashMap<SocketId, u32>, socket: SocketId) {
    if let Some(n) = attempts_of.get_mut(&socket) {
        *n -= 1;
        if *n == 0 {
            attempts_of.remove(&socket);
        }
    }
}

/// How an attempt that left SYN_SENT for CLOSE failed.
fn failure(timeline: &Timeline, e: &Event) -> Failure {
    match (timeline.story.death, e.errno()) {
        (Some(VerdictKind::ConnectTimeout), _) => Failure::ConnectTimeout,
        (Some(VerdictKind::ConnectionRefused), _) => Failure::ConnectionRefused,
        (_, None) => Failure::Abandoned,
        (_, Some(Errno::ECONNRESET | Errno::ECONNABORTED)) => Failure::Reset,
        (_, Some(_)) => Failure::Error,
    }
}
