//! Per-socket timelines and the verdict rules. Pure: events in, verdicts out; no kernel,
//! no I/O, so the same engine runs live, on recorded traces and in unit tests.
//!
//! - `engine`: the container (reordering, timelines, memory bounds, the clock).
//! - `analysis`: one socket's story and the verdict rules, as a table a reader can check
//!   against net/ipv4/tcp_timer.c.
//! - `verdict`: the verdict record (stable names).

mod analysis;
mod engine;
mod reorder;
pub mod verdict;
pub mod words;

#[cfg(test)]
mod tests;

pub use engine::{Engine, EngineStats, Retain, Thresholds, Timeline};
pub use verdict::{Evidence, Verdict, VerdictFacts, VerdictKind};
