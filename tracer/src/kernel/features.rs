//! What this kernel lets tracing programs do, learned by loading tiny probe programs
//! (tracer-ebpf's `features.rs`) before the real ones are configured: kernels allow helpers
//! to tracing programs release by release, and distributions backport them, so the
//! kernel's version says less than asking it.

use anyhow::{Context, Result};
use aya::{Btf, EbpfLoader, programs::BtfTracePoint};
use tracer_common::feature;

static FEATURE_PROBES: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer-features"));

/// [`feature`] bits this kernel allows, and what each missing one costs.
#[derive(Debug, Clone, Default)]
pub struct Features {
    pub bits: u32,
    pub missing: Vec<(&'static str, &'static str)>,
}

/// (program, tracepoint it is verified against, feature bit, what the user loses without it)
const PROBES: &[(&str, &str, u32, &str)] = &[(
    "probe_socket_cookie",
    "inet_sock_set_state",
    feature::SOCKET_COOKIE,
    "kernel socket cookies (tracing programs may call bpf_get_socket_cookie from 5.12): \
     sockets opened after tracing started get ids of the tracer's own, which `ss -e` does \
     not show",
)];

/// Loads the probes with `loader` (whose settings for the real object are not set yet).
pub fn probe(loader: &mut EbpfLoader<'_>, btf: &Btf) -> Result<Features> {
    let mut ebpf = loader
        .load(FEATURE_PROBES)
        .context("loading the feature probes")?;
    let mut found = Features::default();
    for &(name, tracepoint, bit, cost) in PROBES {
        let program: &mut BtfTracePoint = ebpf
            .program_mut(name)
            .with_context(|| format!("feature probe {name} missing"))?
            .try_into()?;
        match program.load(tracepoint, btf) {
            Ok(()) => found.bits |= bit,
            Err(e) => {
                log::debug!("feature probe {name}: {e}");
                found.missing.push((name, cost));
            }
        }
    }
    Ok(found)
}
