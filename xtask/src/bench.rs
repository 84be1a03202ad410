//! `cargo xtask bench`: overhead, throughput, loss and fidelity, measured side by side.

use std::path::Path;

use anyhow::{Result, bail};

pub fn run(_tracer: &Path, _args: &[String]) -> Result<()> {
    bail!("no benchmarks yet")
}
