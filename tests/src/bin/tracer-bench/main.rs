//! `cargo xtask bench`: overhead, throughput, loss and fidelity of the tracer, measured
//! side by side in one run (these machines are shared and noisy: ratios, not absolutes).
//!
//! Everything runs in network namespaces created here: `measure.rs` runs the storms and
//! reads the kernel's counters and the traces (typed, through the tracer's own reader);
//! `report.rs` writes the Markdown report (printed, and saved as target/bench/report.md).
//! Arguments name the parts to run: storms (the side-by-side with bpftrace, `storms.rs`),
//! retransmit, keepalive, timers, reset, drops, throughput, report (default: all); `profile`
//! (`perf record` on the tracer during the connect storm, and over its start-up) and `soak`
//! (10 minutes of `tracer agent`) run only when named.

mod measure;
mod report;
mod soak;
mod storms;

use std::thread;

use tracer_tests::{Netns, tracer::tracer_bin};

fn main() {
    tracer_tests::require_root();
    let only: Vec<String> = std::env::args().skip(1).collect();
    if only.iter().any(|o| o == "soak") {
        let text = soak::soak();
        print!("{text}");
        std::fs::write(measure::out_dir().join("soak.md"), &text).unwrap();
        if only.len() == 1 {
            return;
        }
    }
    let wants = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    let _ = Netns::new("bench-warmup");
    let mut run = report::Run {
        setting: report::Setting {
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            cpus: thread::available_parallelism().map_or(0, |n| n.get()),
            tracer: tracer_bin().display().to_string(),
        },
        ..report::Run::default()
    };
    // Rates first, without bpf_stats (which adds to every program's cost, bpftrace's too).
    if wants("storms") {
        run.storms = Some(storms::storms());
    }
    // Profiles only when asked for (`profile`): perf record on the tracer during two storms.
    if only.iter().any(|o| o == "profile") {
        run.profiles = Some(storms::profiles());
    }
    // Then bpf_stats on for the rest of the run (released when this fd closes).
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).ok();
    if wants("retransmit") {
        run.retransmit = Some(measure::retransmit_storm());
    }
    if wants("keepalive") {
        run.keepalive = Some(measure::keepalive_storm(2000));
    }
    if wants("timers") {
        run.timers = Some(measure::timer_filter());
    }
    if wants("reset") {
        run.resets = Some(measure::reset_storms());
    }
    if wants("drops") {
        run.drops = Some(measure::drop_filter());
    }
    if wants("throughput") {
        run.throughput = Some(measure::throughput());
    }
    if wants("report") {
        let source = run.retransmit.as_ref().map_or_else(
            || measure::out_dir().join("retransmit-storm.jsonl"),
            |r| r.trace.clone(),
        );
        if source.exists() {
            run.report = Some(measure::report_speed(&source));
        }
    }
    let text = report::render(&run);
    print!("{text}");
    std::fs::write(measure::out_dir().join("report.md"), &text).unwrap();
}
