//! Reading a trace as `tracer report` does, side by side on one trace: JSON Lines with the
//! event decoder for our own layout, JSON Lines with serde alone (the reference), and the
//! same records as a binary trace (`tracer record --format binary`, `tracer convert`).
//! `cargo bench -p tracer --bench read -- FILE [BINARY]` (`cargo xtask bench report` leaves
//! a million-event trace in target/bench/big-trace.jsonl and its binary copy beside it);
//! without BINARY, FILE is converted first (into the bench's scratch directory). Per reader:
//! reading alone, then reading, the summary and the timeline engine (as a report keeps
//! sockets with verdicts). CPU time of this thread, the best of three. A measurement, not a
//! check.

use std::{
    fs::File,
    io::BufWriter,
    path::{Path, PathBuf},
    time::Duration,
};

use tracer::{
    commands::convert,
    output::{BinaryTrace, Sink, Summary},
    record::Record,
    testing,
    timeline::{Engine, Retain},
    trace_file::TraceReader,
};

fn main() {
    let files: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let Some(json) = files.first().map(PathBuf::from) else {
        eprintln!("usage: cargo bench -p tracer --bench read -- FILE [BINARY]");
        return;
    };
    let binary = files.get(1).map_or_else(|| to_binary(&json), PathBuf::from);
    for (reader, path, serde_only) in [
        ("json fast", &json, false),
        ("json serde", &json, true),
        ("binary", &binary, false),
    ] {
        for engine in [false, true] {
            let (events, verdicts, spent) = (0..3)
                .map(|_| read(path, serde_only, engine))
                .min_by_key(|r| r.2)
                .unwrap();
            println!(
                "{reader:<10} reader{}: {events} events, {verdicts} verdicts in {:.3} s of \
                 CPU: {:.0} events/s",
                if engine { " + summary + engine" } else { "" },
                spent.as_secs_f64(),
                events as f64 / spent.as_secs_f64()
            );
        }
    }
}

/// The trace as a binary trace, in the bench's scratch directory.
fn to_binary(json: &Path) -> PathBuf {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("read-bench.bin");
    let (mut reader, header) = TraceReader::open(json).unwrap();
    let mut sink = BinaryTrace::new(BufWriter::new(File::create(&path).unwrap()), "bench");
    convert::copy(&mut reader, &header, &mut sink).unwrap();
    path
}

fn read(path: &Path, serde_only: bool, engine: bool) -> (u64, usize, Duration) {
    let started = testing::thread_cpu();
    let (reader, header) = TraceReader::open(path).unwrap();
    let mut reader = if serde_only {
        reader.serde_only()
    } else {
        reader
    };
    let mut replay = engine.then(|| {
        let mut e = Engine::new(
            header
                .thresholds
                .map(|t| t.thresholds())
                .unwrap_or_default(),
        );
        e.retain(Retain::WithVerdicts);
        (e, Summary::new())
    });
    let (mut events, mut verdicts, mut end) = (0, Vec::new(), 0);
    while let Some(record) = reader.next_record().unwrap() {
        end = end.max(record.ts_ns());
        if let Record::Event(e) = record {
            events += 1;
            if let Some((engine, summary)) = &mut replay {
                summary.event(&e).unwrap();
                engine.push_boxed(e, &mut verdicts);
            }
        }
    }
    if let Some((engine, _)) = &mut replay {
        engine.finish(end, &mut verdicts);
    }
    (events, verdicts.len(), testing::thread_cpu() - started)
}
