//! The verdict rules on synthetic event sequences shaped like what the kernel produces
//! ([`crate::testing::Sock`]; tests/tests/probes.rs has the real sequences), including near
//! misses that must not fire. Rule tests assert the typed facts the rules find; `wording`
//! pins what the verdicts say; `engine` covers ordering, memory and identity; `properties`
//! checks that interleaving sockets never changes a verdict.

mod connect;
mod data;
mod drops;
mod engine;
mod held;
mod inference;
mod keepalive;
mod now;
mod properties;
mod resets;
mod stalls;
mod storms;
mod wording;

use super::{
    Engine, Thresholds, Verdict, VerdictKind,
    rules::{Facts, Finding},
    state::SocketState,
};
use crate::{
    event::Event,
    testing::{MS, Sock},
};

/// Feeds events in the given order; returns verdicts after `finish(end)`.
fn run(events: Vec<Event>, end_ns: u64) -> Vec<Verdict> {
    let mut engine = Engine::new(Thresholds::default());
    let mut out = Vec::new();
    for e in events {
        engine.push(e, &mut out);
    }
    engine.finish(end_ns, &mut out);
    out
}

fn kinds(verdicts: &[Verdict]) -> Vec<VerdictKind> {
    verdicts.iter().map(|v| v.verdict).collect()
}

fn end_of(sock: &Sock) -> u64 {
    sock.now + MS
}

fn verdicts_of(s: &Sock) -> Vec<Verdict> {
    run(s.events.clone(), end_of(s))
}

/// What the rules find in one socket's events, in order: no engine, so no reordering and
/// no clock (dead_socket_held is the engine's).
fn findings(s: &Sock) -> Vec<Finding> {
    let mut state = SocketState::default();
    let mut out = Vec::new();
    for e in &s.events {
        state.apply(e, None, &mut out);
    }
    out
}

fn facts(s: &Sock) -> Vec<Facts> {
    findings(s).into_iter().map(|f| f.facts).collect()
}
