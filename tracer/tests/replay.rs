//! Replays a trace recorded from the real kernel (the scenario suite, both families) and
//! checks that the engine reaches exactly the verdicts the live tracer reached.
//!
//! Re-record after a deliberate change in the rules: run `tracer record -o FILE --no-sweep
//! --dead-socket-after 2s` while `cargo nextest run -p tracer-tests -E 'binary(scenarios)'`
//! runs, and copy FILE to tracer/tests/data/scenarios.jsonl.

use std::collections::BTreeMap;

use tracer::{
    record::Record,
    timeline::{Engine, Thresholds, VerdictKind},
};

const TRACE: &str = include_str!("data/scenarios.jsonl");

type VerdictSet = BTreeMap<(u64, VerdictKind), usize>;

fn replay(trace: &str) -> (VerdictSet, VerdictSet) {
    let mut engine = None;
    let mut recorded = VerdictSet::new();
    let mut replayed = VerdictSet::new();
    let mut out = Vec::new();
    let mut end = 0;
    for (n, line) in trace.lines().enumerate() {
        let record = Record::parse(line).unwrap_or_else(|e| panic!("line {}: {e}", n + 1));
        end = end.max(record.ts_ns());
        match record {
            Record::Header(h) => {
                let t = h.thresholds.expect("the trace records its thresholds");
                engine = Some(Engine::new(Thresholds {
                    warn_after_rtos: t.warn_after_rtos,
                    dead_socket_after_ns: t.dead_socket_after_ms * 1_000_000,
                    ..Thresholds::default()
                }));
            }
            Record::Event(e) => engine.as_mut().expect("header first").push(*e, &mut out),
            Record::Verdict(v) => *recorded.entry((v.socket.0, v.verdict)).or_default() += 1,
            _ => {}
        }
    }
    engine.as_mut().unwrap().finish(end, &mut out);
    for v in out {
        *replayed.entry((v.socket.0, v.verdict)).or_default() += 1;
    }
    (recorded, replayed)
}

#[test]
fn replaying_a_recorded_trace_reaches_the_live_verdicts() {
    let (recorded, replayed) = replay(TRACE);
    assert!(
        recorded.len() >= 50,
        "the fixture holds the scenario suite's verdicts"
    );
    assert_eq!(recorded, replayed);
}

#[test]
fn the_fixture_covers_every_verdict_kind() {
    let (_, replayed) = replay(TRACE);
    for kind in VerdictKind::ALL {
        assert!(
            replayed.keys().any(|(_, k)| *k == kind),
            "no {kind} in the recorded scenarios"
        );
    }
}
