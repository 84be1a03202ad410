//! Per-socket timelines and the verdict rules. Pure: events in, verdicts out; no kernel,
//! no I/O, so the same engine runs live, on recorded traces and in unit tests.
//!
//! - `engine`: the container (reordering, timelines, memory bounds, the clock).
//! - `state`: one socket's story so far, what the rules remember between events.
//! - `rules`: the verdict rules, as a table a reader can check against
//!   net/ipv4/tcp_timer.c; they produce typed findings, no words.
//! - `explain`: the words: a finding rendered as the verdict record.
//! - `verdict`: the verdict record (stable names).
//! - `now`: what a socket is going through right now (an RTO streak and when the kernel
//!   will give up, a dead socket still held), read-only, for live views.

mod engine;
mod explain;
mod now;
mod reorder;
mod rules;
mod state;
mod storms;
pub mod verdict;

#[cfg(test)]
mod tests;

pub use engine::{Engine, EngineStats, Retain, Thresholds, Timeline};
pub use now::{DeadHeld, RtoStreak};
pub use verdict::{Evidence, Verdict, VerdictFacts, VerdictKind};
