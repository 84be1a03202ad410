//! The trace reader's fast path for event lines (`event_read`) and the binary trace
//! (`trace_bin`) against serde, the reference: the same records from the recorded
//! real-kernel fixture and the synthetic trace, and the same verdicts replaying them; and
//! binary traces cut short or corrupted.

use tracer::{
    commands::convert,
    output::{BinaryTrace, JsonLines},
    record::Record,
    timeline::{Engine, Verdict},
    trace_file::TraceReader,
};

const SCENARIOS: &[u8] = include_bytes!("data/scenarios.jsonl");
const SYNTHETIC: &[u8] = include_bytes!("data/synthetic.jsonl");

fn records(trace: &[u8], serde_only: bool) -> Vec<Record> {
    let (reader, header) =
        TraceReader::from_reader(std::io::Cursor::new(trace.to_vec()), "fixture").unwrap();
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

/// The trace copied as `tracer convert` copies it: JSON Lines to binary, or back.
fn converted(trace: &[u8], binary: bool) -> Vec<u8> {
    let (mut reader, header) =
        TraceReader::from_reader(std::io::Cursor::new(trace.to_vec()), "fixture").unwrap();
    let mut out = Vec::new();
    if binary {
        convert::copy(&mut reader, &header, &mut BinaryTrace::new(&mut out, "out")).unwrap();
    } else {
        convert::copy(&mut reader, &header, &mut JsonLines::new(&mut out, "out")).unwrap();
    }
    out
}

/// All records of a trace, and the warning for a cut last record.
fn read(trace: &[u8]) -> anyhow::Result<(Vec<Record>, Option<String>)> {
    let (mut reader, header) =
        TraceReader::from_reader(std::io::Cursor::new(trace.to_vec()), "t.bin")?;
    let mut records = vec![Record::Header(Box::new(header))];
    while let Some(record) = reader.next_record()? {
        records.push(record);
    }
    Ok((records, reader.truncated().map(str::to_owned)))
}

#[test]
fn binary_traces_give_the_same_records_and_verdicts() {
    for (name, trace) in [("scenarios", SCENARIOS), ("synthetic", SYNTHETIC)] {
        let binary = converted(trace, true);
        assert!(
            binary.len() * 2 < trace.len(),
            "{name}: {} bytes binary, {} as JSON Lines",
            binary.len(),
            trace.len()
        );
        let reference = records(trace, true);
        let read = records(&binary, false);
        assert_eq!(read.len(), reference.len(), "{name}");
        for (n, (a, b)) in read.iter().zip(&reference).enumerate() {
            assert_eq!(a, b, "{name}: record {n}");
        }
        assert_eq!(verdicts(&read), verdicts(&reference), "{name}");
        // And back: the JSON Lines of the binary trace are the same records.
        let back = converted(&binary, false);
        assert_eq!(records(&back, true), reference, "{name}");
    }
}

#[test]
fn a_binary_trace_cut_anywhere_in_its_last_record_keeps_the_rest_with_a_warning() {
    let binary = converted(SCENARIOS, true);
    let (all, truncated) = read(&binary).unwrap();
    assert!(truncated.is_none());
    // The last frame is the `end` record: every cut inside it leaves the records before.
    let end = all.last().unwrap().clone();
    assert!(matches!(end, Record::End(_)), "{end:?}");
    let end_len = Record::to_json(&end, None).len() + 5;
    let start = binary.len() - end_len;
    for cut in [start + 1, start + 4, start + 5, binary.len() - 1] {
        let (records, truncated) = read(&binary[..cut]).unwrap();
        assert_eq!(records, all[..all.len() - 1], "cut at {cut}");
        let warning = truncated.expect("a warning");
        assert!(
            warning.starts_with("t.bin: record ")
                && warning.contains(&format!(
                    "(byte {start}): last record is incomplete (the trace was cut off)"
                )),
            "{warning}"
        );
    }
    // Cut before the header is complete: nothing to report.
    let err = format!("{:#}", read(&binary[..20]).unwrap_err());
    assert_eq!(
        err,
        "t.bin: record 1 (byte 10): last record is incomplete (the trace was cut off): the header is incomplete"
    );
}

#[test]
fn a_corrupt_binary_trace_stops_with_file_and_record() {
    let binary = converted(SCENARIOS, true);
    // Walk the frames to find the middle one.
    let mut offsets = Vec::new();
    let mut at = 10;
    while at < binary.len() {
        offsets.push(at);
        at += 5 + u32::from_le_bytes(binary[at + 1..at + 5].try_into().unwrap()) as usize;
    }
    let (n, middle) = (offsets.len() / 2, offsets[offsets.len() / 2]);
    let record = n + 1;
    let mut bad_tag = binary.clone();
    bad_tag[middle] = b'?';
    assert_eq!(
        format!("{:#}", read(&bad_tag).unwrap_err()),
        format!("t.bin: record {record} (byte {middle}): unknown frame tag 0x3f")
    );
    // A length that would have the reader allocate gigabytes: refused as it is.
    let mut huge = binary.clone();
    huge[middle + 1..middle + 5].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(
        format!("{:#}", read(&huge).unwrap_err()),
        format!(
            "t.bin: record {record} (byte {middle}): frame of 4294967295 bytes, more than 1 MiB: \
             not a trace record (a corrupt file?)"
        )
    );
    // A hole in the middle (a frame's bytes gone) is an error, not a warning: the frame
    // then takes in bytes of the next ones, which do not decode.
    let next = offsets[n + 1];
    let mut hole = binary[..middle + 7].to_vec();
    hole.extend_from_slice(&binary[next..]);
    let err = format!("{:#}", read(&hole).unwrap_err());
    assert!(err.starts_with("t.bin: record "), "{err}");
    // Another layout version, and a file that only looks binary.
    let mut newer = binary.clone();
    newer[8] = 9;
    assert_eq!(
        format!("{:#}", read(&newer).unwrap_err()),
        format!(
            "t.bin: binary trace layout version 9 is not supported: this tracer ({}) reads version 1",
            env!("CARGO_PKG_VERSION")
        )
    );
    assert_eq!(
        format!("{:#}", read(b"\x89PNG\r\n\x1a\n....").unwrap_err()),
        "t.bin:1: not a tracer trace (binary data, not JSON Lines)"
    );
}
