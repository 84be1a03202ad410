//! Reading a trace as `tracer report` does, with the event decoder for our own layout and
//! with serde alone (the reference), side by side on one file:
//! `cargo bench -p tracer --bench read -- FILE` (`cargo xtask bench report` leaves a
//! million-event trace in target/bench/big-trace.jsonl). Per reader: reading alone, then
//! reading and the timeline engine (as a report keeps sockets with verdicts). CPU time of
//! this thread, the best of three. A measurement, not a check.

use std::{path::Path, time::Duration};

use tracer::{
    record::Record,
    testing,
    timeline::{Engine, Retain},
    trace_file::TraceReader,
};

fn main() {
    let Some(path) = std::env::args().skip(1).find(|a| !a.starts_with("--")) else {
        eprintln!("usage: cargo bench -p tracer --bench read -- FILE");
        return;
    };
    let path = Path::new(&path);
    for serde_only in [false, true] {
        for engine in [false, true] {
            let (events, verdicts, spent) = (0..3)
                .map(|_| read(path, serde_only, engine))
                .min_by_key(|r| r.2)
                .unwrap();
            println!(
                "{:<5} reader{}: {events} events, {verdicts} verdicts in {:.3} s of CPU: {:.0} \
                 events/s",
                if serde_only { "serde" } else { "fast" },
                if engine { " + engine" } else { "" },
                spent.as_secs_f64(),
                events as f64 / spent.as_secs_f64()
            );
        }
    }
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
        e
    });
    let (mut events, mut verdicts, mut end) = (0, Vec::new(), 0);
    while let Some(record) = reader.next_record().unwrap() {
        end = end.max(record.ts_ns());
        if let Record::Event(e) = record {
            events += 1;
            if let Some(engine) = &mut replay {
                engine.push(*e, &mut verdicts);
            }
        }
    }
    if let Some(engine) = &mut replay {
        engine.finish(end, &mut verdicts);
    }
    (events, verdicts.len(), testing::thread_cpu() - started)
}
