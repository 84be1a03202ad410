//! Replays recorded traces and checks the engine's verdicts:
//!
//! - `scenarios.jsonl`, recorded from the real kernel while the scenario suite ran (both
//!   families): the engine must reach exactly the verdicts the live tracer reached.
//!   Re-record after a deliberate change in the rules: run `tracer record -o FILE --no-sweep
//!   --dead-socket-after 2s --close-wait-after 2s --receiver-stalled-after 3s` while
//!   `cargo nextest run -p tracer-tests -E 'binary(scenarios) | binary(failures)'` runs, and
//!   copy FILE to tracer/tests/data/scenarios.jsonl.
//! - `synthetic.jsonl`, one socket per story written by the timeline's unit tests through
//!   `Record::to_json` (regenerate with `UPDATE_FIXTURES=1 cargo test -p tracer --lib
//!   synthetic_trace`): each socket must get the verdicts its story calls for.

use std::collections::BTreeMap;

use tracer::{
    record::Record,
    timeline::{Engine, Verdict, VerdictKind},
};

const SCENARIOS: &str = include_str!("data/scenarios.jsonl");
const SYNTHETIC: &str = include_str!("data/synthetic.jsonl");

type VerdictSet = BTreeMap<(u64, VerdictKind), usize>;

/// The verdicts recorded in the trace, and those the engine reaches replaying its events.
fn replay(trace: &str) -> (Vec<Verdict>, Vec<Verdict>) {
    let mut engine = None;
    let mut recorded = Vec::new();
    let mut replayed = Vec::new();
    let mut end = 0;
    for (n, line) in trace.lines().enumerate() {
        let record = Record::parse(line).unwrap_or_else(|e| panic!("line {}: {e}", n + 1));
        end = end.max(record.ts_ns());
        match record {
            Record::Header(h) => {
                let t = h.thresholds.expect("the trace records its thresholds");
                engine = Some(Engine::new(t.thresholds()));
            }
            Record::Event(e) => engine
                .as_mut()
                .expect("header first")
                .push(*e, &mut replayed),
            Record::Verdict(v) => recorded.push(*v),
            _ => {}
        }
    }
    engine
        .as_mut()
        .expect("a header")
        .finish(end, &mut replayed);
    (recorded, replayed)
}

fn counted(verdicts: &[Verdict]) -> VerdictSet {
    let mut set = VerdictSet::new();
    for v in verdicts {
        *set.entry((v.socket.0, v.verdict)).or_default() += 1;
    }
    set
}

#[test]
fn replaying_a_recorded_trace_reaches_the_live_verdicts() {
    let (recorded, replayed) = replay(SCENARIOS);
    let (recorded, replayed) = (counted(&recorded), counted(&replayed));
    assert!(
        recorded.len() >= 50,
        "the fixture holds the scenario suite's verdicts"
    );
    assert_eq!(recorded, replayed);
}

#[test]
fn the_real_fixture_covers_every_verdict_kind() {
    let (_, replayed) = replay(SCENARIOS);
    for kind in VerdictKind::ALL {
        assert!(
            replayed.iter().any(|v| v.verdict == kind),
            "no {kind} in the recorded scenarios"
        );
    }
}

#[test]
fn the_real_warnings_predict_the_give_up() {
    // With TCP_USER_TIMEOUT the kernel clamps its timer to the deadline; its timer wheel
    // may fire a long timer up to an eighth of it late (here under 0.5 s).
    let (_, replayed) = replay(SCENARIOS);
    let mut checked = 0;
    for warning in replayed
        .iter()
        .filter(|v| v.verdict == VerdictKind::PeerUnresponsive)
    {
        let Some(death) = replayed
            .iter()
            .find(|v| v.socket == warning.socket && v.verdict == VerdictKind::RetriesExhausted)
        else {
            continue;
        };
        let predicted = warning.facts.predicted_give_up_ns.expect("a prediction");
        assert!(
            predicted <= death.ts_ns + 10_000_000 && death.ts_ns - predicted < 500_000_000,
            "socket {}: predicted {predicted}, died {}",
            warning.socket,
            death.ts_ns
        );
        checked += 1;
    }
    assert!(checked >= 2, "the fixture has warnings followed by deaths");
}

#[test]
fn replaying_the_synthetic_trace_gives_each_story_its_verdicts() {
    use VerdictKind::*;
    let (recorded, replayed) = replay(SYNTHETIC);
    assert_eq!(
        recorded, replayed,
        "replay reaches the recorded verdicts exactly"
    );
    let mut by_socket: BTreeMap<u64, Vec<VerdictKind>> = BTreeMap::new();
    for v in &replayed {
        by_socket.entry(v.socket.0).or_default().push(v.verdict);
    }
    let expected: BTreeMap<u64, Vec<VerdictKind>> = [
        (1, vec![PeerUnresponsive, RetriesExhausted]),
        (2, vec![KeepaliveExhausted]),
        (3, vec![ConnectionRefused]),
        (4, vec![PeerReset, DeadSocketHeld]),
        (5, vec![LocalAbort]),
        // 6: two RTOs, then recovery and an orderly close: nothing.
        (7, vec![OrphanTimeout]),
        (8, vec![ConnectTimeout]),
        (9, vec![RetriesExhausted]),
    ]
    .into();
    assert_eq!(by_socket, expected);
    let keepalive = replayed.iter().find(|v| v.verdict == KeepaliveExhausted);
    let facts = &keepalive.expect("keepalive_exhausted").facts;
    assert_eq!(
        (
            facts.probes,
            facts.probe_interval_ms,
            facts.idle_before_probes_ms
        ),
        (Some(3), Some(1_000), Some(1_000))
    );
    let lost_state = replayed.iter().find(|v| v.verdict == PeerReset);
    assert_eq!(
        lost_state.expect("peer_reset").facts.peer_lost_state,
        Some(true)
    );
}
