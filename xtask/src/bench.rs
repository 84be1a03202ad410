//! `cargo xtask bench`: overhead, throughput, loss and fidelity, measured side by side in
//! one run by `tracer-bench` (tests/src/bin/tracer-bench/), in network namespaces.
//! Not part of CI's pass/fail. Writes target/bench/report.md.

use std::{path::Path, process::Command};

use anyhow::Result;

use crate::run;

pub fn run_bench(tracer: &Path, args: &[String]) -> Result<()> {
    // bpftrace runs side by side as the alternative users would otherwise reach for.
    if !crate::has("bpftrace") {
        eprintln!("xtask: installing bpftrace for the side-by-side comparison");
        let _ = Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "bpftrace"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status();
    }
    run(Command::new("cargo").args([
        "build",
        "--release",
        "--package",
        "tracer-tests",
        "--bin",
        "tracer-bench",
    ]))?;
    let bench = tracer
        .parent()
        .expect("target/release")
        .join("tracer-bench");
    run(Command::new(bench).args(args).env("TRACER_BIN", tracer))
}
