//! The trace reader's fast path for event lines (`event_read`) against serde, the
//! reference: the same records from the recorded real-kernel fixture and the synthetic
//! trace, and the same verdicts replaying them.

use tracer::{
    record::Record,
    timeline::{Engine, Verdict},
    trace_file::TraceReader,
};

const SCENARIOS: &[u8] = include_bytes!("data/scenarios.jsonl");
const SYNTHETIC: &[u8] = include_bytes!("data/synthetic.jsonl");

fn records(trace: &'static [u8], serde_only: bool) -> Vec<Record> {
    let (reader, header) = TraceReader::from_reader(trace, "fixture").unwrap();
    let mut reader = if serde_only {
        reader.serde_only()
    } else {
        reader
    };
    let mut records = vec![Record::Header(Box::new(header))];
    while let Some(record) = reader.next_record().unwrap() {
        records.push(record);
    }
    records
}

/// The verdicts `tracer report` reaches: the engine over the events, decided at the end.
fn verdicts(records: &[Record]) -> Vec<Verdict> {
    let Record::Header(header) = &records[0] else {
        panic!("a header first")
    };
    let thresholds = header.thresholds.expect("recorded thresholds").thresholds();
    let mut engine = Engine::new(thresholds);
    let mut verdicts = Vec::new();
    let mut end = 0;
    for record in records {
        end = end.max(record.ts_ns());
        if let Record::Event(e) = record {
            engine.push((**e).clone(), &mut verdicts);
        }
    }
    engine.finish(end, &mut verdicts);
    verdicts
}

#[test]
fn fast_and_serde_readers_give_the_same_records_and_verdicts() {
    for (name, trace) in [("scenarios", SCENARIOS), ("synthetic", SYNTHETIC)] {
        let fast = records(trace, false);
        let reference = records(trace, true);
        assert_eq!(fast.len(), reference.len(), "{name}");
        for (n, (a, b)) in fast.iter().zip(&reference).enumerate() {
            assert_eq!(a, b, "{name}: record {n}");
        }
        let events = fast
            .iter()
            .filter(|r| matches!(r, Record::Event(_)))
            .count();
        assert!(events > 50, "{name}: {events} events");
        let (fast, reference) = (verdicts(&fast), verdicts(&reference));
        assert!(!reference.is_empty(), "{name}: no verdicts to compare");
        assert_eq!(fast, reference, "{name}");
    }
}
