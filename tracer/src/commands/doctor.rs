//! `tracer doctor`: how long each network namespace takes to notice a dead peer, and what
//! tracing can see on this kernel.

use std::{collections::BTreeMap, io::Write, path::Path};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::{
    cli::DoctorArgs,
    kernel::{DEGRADES_WITHOUT, HookStatus, btf::KernelBtf, hook_availability, host, privileges},
    sweep::{netns, sysctl::TcpSysctls},
    tcp_model::{self, RTO_MIN_MS},
    words::duration_ms,
};

/// Time until a dead peer is detected, by situation (ms; None: never).
#[derive(Debug, Serialize)]
pub struct Detection {
    /// Unacknowledged data in flight: tcp_retries2's time budget (+ up to one backoff).
    pub data_in_flight_ms: u64,
    /// Idle with SO_KEEPALIVE: keepalive time + probes × interval.
    pub idle_with_keepalive_ms: u64,
    /// Idle without keepalive: the kernel never notices.
    pub idle_without_keepalive_ms: Option<u64>,
    /// connect() to a host that never answers.
    pub connect_ms: u64,
    /// A closed socket with unacknowledged data (tcp_orphan_retries; 0 means 8).
    pub orphan_ms: u64,
}

#[derive(Debug, Serialize)]
pub struct Namespace {
    pub netns: u32,
    /// `ip netns` names of this namespace.
    pub names: Vec<String>,
    pub sysctls: TcpSysctls,
    pub detection: Detection,
}

#[derive(Debug, Serialize)]
pub struct Hook {
    #[serde(flatten)]
    pub status: HookStatus,
    pub without_it: String,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub kernel_release: String,
    pub hz: Option<u32>,
    pub btf: bool,
    /// What tracing lacks to run, if anything.
    pub tracing_blocked_by: Option<String>,
    pub hooks: Vec<Hook>,
    pub namespaces: Vec<Namespace>,
    pub problems: Vec<String>,
}

pub fn detection(s: &TcpSysctls) -> Detection {
    let orphan_retries = if s.tcp_orphan_retries == 0 {
        8
    } else {
        s.tcp_orphan_retries
    };
    Detection {
        data_in_flight_ms: tcp_model::retries_budget_ms(s.tcp_retries2, RTO_MIN_MS),
        idle_with_keepalive_ms: tcp_model::keepalive_detection_ms(
            u64::from(s.tcp_keepalive_time) * 1000,
            u64::from(s.tcp_keepalive_intvl) * 1000,
            s.tcp_keepalive_probes.min(255) as u8,
        ),
        idle_without_keepalive_ms: None,
        connect_ms: tcp_model::connect_timeout_ms(
            s.tcp_syn_retries.min(255) as u8,
            s.tcp_syn_linear_timeouts.unwrap_or(0).min(255) as u8,
        ),
        orphan_ms: tcp_model::retries_budget_ms(orphan_retries, RTO_MIN_MS),
    }
}

fn netns_names() -> BTreeMap<u32, Vec<String>> {
    use std::os::unix::fs::MetadataExt;
    let mut names: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for entry in std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
    {
        if let Ok(meta) = entry.metadata() {
            names
                .entry(meta.ino() as u32)
                .or_default()
                .push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names
}

pub fn examine() -> Report {
    let btf = KernelBtf::load();
    let symbols = host::kallsyms(&["tcp_write_timer", "tcp_keepalive_timer"]);
    let hooks = match &btf {
        Ok(btf) => hook_availability(btf, symbols.len() == 2),
        Err(_) => Vec::new(),
    };
    let hooks = hooks
        .into_iter()
        .map(|status| Hook {
            without_it: DEGRADES_WITHOUT
                .iter()
                .find(|(tp, _)| *tp == status.tracepoint)
                .map(|(_, cost)| (*cost).to_owned())
                .unwrap_or_default(),
            status,
        })
        .collect();
    let names = netns_names();
    let mut problems = Vec::new();
    let namespaces = netns::in_each(&netns::discover(), |_| crate::sweep::sysctl::read_current())
        .into_iter()
        .filter_map(|(inode, result)| match result {
            Ok(sysctls) => Some(Namespace {
                netns: inode,
                names: names.get(&inode).cloned().unwrap_or_default(),
                detection: detection(&sysctls),
                sysctls,
            }),
            Err(e) => {
                problems.push(format!("netns {inode}: {e:#}"));
                None
            }
        })
        .collect();
    Report {
        kernel_release: host::kernel_release(),
        hz: host::kernel_hz().ok(),
        btf: Path::new(crate::kernel::btf::VMLINUX).exists(),
        tracing_blocked_by: privileges::check_tracing().err().map(|e| e.to_string()),
        hooks,
        namespaces,
        problems,
    }
}

pub fn run(args: DoctorArgs) -> Result<()> {
    let report = examine();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        write_text(&mut out, &report)?;
    }
    out.flush().context("writing to stdout")
}

fn write_text(out: &mut dyn Write, r: &Report) -> Result<()> {
    writeln!(
        out,
        "kernel {} (HZ {}), BTF {}",
        r.kernel_release,
        r.hz.map_or("unknown".into(), |h| h.to_string()),
        if r.btf { "present" } else { "MISSING" }
    )?;
    match &r.tracing_blocked_by {
        None => writeln!(out, "tracing: can run here")?,
        Some(why) => writeln!(out, "tracing: cannot run: {why}")?,
    }
    writeln!(out, "\nkernel hooks:")?;
    for h in &r.hooks {
        match &h.status.problem {
            None => writeln!(
                out,
                "  ok       {:<22} {}",
                h.status.tracepoint, h.status.provides
            )?,
            Some(problem) => writeln!(
                out,
                "  MISSING  {:<22} {problem}; without it: {}",
                h.status.tracepoint, h.without_it
            )?,
        }
    }
    writeln!(
        out,
        "\ntime until a dead peer is noticed, per network namespace:"
    )?;
    for ns in &r.namespaces {
        let s = &ns.sysctls;
        let d = &ns.detection;
        let names = if ns.names.is_empty() {
            String::new()
        } else {
            format!(" ({})", ns.names.join(", "))
        };
        writeln!(out, "  netns {}{names}", ns.netns)?;
        writeln!(
            out,
            "    data in flight    {:>14}   tcp_retries2={} (retries1={})",
            duration_ms(d.data_in_flight_ms),
            s.tcp_retries2,
            s.tcp_retries1
        )?;
        writeln!(
            out,
            "    idle, keepalive   {:>14}   tcp_keepalive_time={}s intvl={}s probes={}",
            duration_ms(d.idle_with_keepalive_ms),
            s.tcp_keepalive_time,
            s.tcp_keepalive_intvl,
            s.tcp_keepalive_probes
        )?;
        writeln!(
            out,
            "    idle, no keepalive {:>13}   only `tracer sockets` can flag it",
            "never"
        )?;
        writeln!(
            out,
            "    connect           {:>14}   tcp_syn_retries={}{}",
            duration_ms(d.connect_ms),
            s.tcp_syn_retries,
            s.tcp_syn_linear_timeouts
                .map(|l| format!(" (linear timeouts {l})"))
                .unwrap_or_default()
        )?;
        writeln!(
            out,
            "    orphaned socket   {:>14}   tcp_orphan_retries={}",
            duration_ms(d.orphan_ms),
            s.tcp_orphan_retries
        )?;
    }
    for p in &r.problems {
        writeln!(out, "  not visible: {p}")?;
    }
    Ok(())
}
