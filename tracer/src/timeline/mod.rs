//! Per-socket timelines and the verdict rules. Pure: events in, verdicts out; no kernel,
//! no I/O, so the same engine runs live, on recorded traces and in unit tests.

mod engine;
pub mod verdict;

pub use engine::{Engine, EngineStats, Thresholds, Timeline};
pub use verdict::{Evidence, Verdict, VerdictFacts, VerdictKind};
