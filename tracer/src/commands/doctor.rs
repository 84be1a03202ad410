//! `tracer doctor`: how long each network namespace takes to notice a dead peer, and what
//! tracing can see on this kernel.

use std::{collections::BTreeMap, io::Write, path::Path};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::{
    cli::DoctorArgs,
    kernel::{self, HookState, HookStatus, btf::KernelBtf, hooks, host, layout, privileges},
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

/// Namespaces with identical settings: shown as one block.
#[derive(Debug, Serialize)]
pub struct Group {
    /// Their inodes, in the order of `namespaces`.
    pub netns: Vec<u32>,
    /// Settings that differ from the first group's (empty for the first group).
    pub differs_from_first: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub kernel_release: String,
    pub hz: Option<u32>,
    pub btf: bool,
    /// What tracing lacks to run, if anything.
    pub tracing_blocked_by: Option<String>,
    /// Whether every program was verified by this kernel (needs the privileges tracing
    /// needs); otherwise hooks only say whether the tracepoint exists.
    pub verified: bool,
    pub hooks: Vec<Hook>,
    /// Kernel struct members this kernel lacks, with what that costs.
    pub missing: Vec<String>,
    pub namespaces: Vec<Namespace>,
    /// The namespaces grouped by identical settings: first the group of the tracer's own
    /// namespace (else the largest), then the others, largest first.
    pub groups: Vec<Group>,
    /// The tracer's own network namespace.
    pub own_netns: Option<u32>,
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
    let tracing_blocked_by = privileges::check_tracing()
        .and_then(|()| kernel::check_kernel_floor(&host::kernel_release()))
        .err()
        .map(|e| e.to_string());
    let mut problems = Vec::new();
    let (statuses, missing, verified) = if tracing_blocked_by.is_none() {
        match kernel::verify() {
            Ok(v) => (
                v.hooks,
                v.missing_members
                    .iter()
                    .map(|m| format!("{}: {}", m.member, m.cost))
                    .collect(),
                true,
            ),
            Err(e) => {
                problems.push(format!("verifying the kernel programs: {e:#}"));
                (present_hooks(), Vec::new(), false)
            }
        }
    } else {
        (present_hooks(), Vec::new(), false)
    };
    let hooks = statuses
        .into_iter()
        .map(|status| Hook {
            without_it: hooks::cost_without(&status.tracepoint).to_owned(),
            status,
        })
        .collect();
    let names = netns_names();
    let namespaces: Vec<Namespace> =
        netns::in_each(&netns::discover(), |_| crate::sweep::sysctl::read_current())
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
    let own_netns = std::fs::metadata("/proc/self/ns/net")
        .ok()
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m) as u32);
    let groups = group(&namespaces, own_netns);
    Report {
        kernel_release: host::kernel_release(),
        hz: host::kernel_hz().ok(),
        btf: Path::new(crate::kernel::btf::VMLINUX).exists(),
        tracing_blocked_by,
        verified,
        hooks,
        missing,
        namespaces,
        groups,
        own_netns,
        problems,
    }
}

/// The settings as `name=value`, in a fixed order.
fn settings(s: &TcpSysctls) -> Vec<String> {
    let value = serde_json::to_value(s).unwrap_or_default();
    let mut out = Vec::new();
    if let Some(map) = value.as_object() {
        for (name, v) in map {
            if !v.is_null() {
                out.push(format!("{name}={v}"));
            }
        }
    }
    out
}

/// Groups namespaces with identical settings (see [`Report::groups`]).
pub fn group(namespaces: &[Namespace], own: Option<u32>) -> Vec<Group> {
    let mut groups: Vec<(TcpSysctls, Vec<u32>)> = Vec::new();
    for ns in namespaces {
        match groups.iter_mut().find(|(s, _)| *s == ns.sysctls) {
            Some((_, members)) => members.push(ns.netns),
            None => groups.push((ns.sysctls, vec![ns.netns])),
        }
    }
    groups.sort_by_key(|(_, members)| {
        (
            !own.is_some_and(|o| members.contains(&o)),
            std::cmp::Reverse(members.len()),
        )
    });
    let Some(first) = groups.first().map(|(s, _)| settings(s)) else {
        return Vec::new();
    };
    groups
        .into_iter()
        .map(|(sysctls, netns)| Group {
            netns,
            differs_from_first: settings(&sysctls)
                .into_iter()
                .filter(|setting| !first.contains(setting))
                .collect(),
        })
        .collect()
}

/// Without the privileges to verify: which tracepoints this kernel has (from its BTF).
fn present_hooks() -> Vec<HookStatus> {
    let Ok(btf) = KernelBtf::load_finding(&layout::type_names()) else {
        return Vec::new();
    };
    hooks::tracepoints()
        .into_iter()
        .map(|tracepoint| {
            let hook = btf
                .tracepoint_arity(tracepoint)
                .and_then(|arity| hooks::choose_variant(tracepoint, arity));
            match hook {
                Some(hook) => HookStatus::new(hook),
                None => HookStatus::unavailable(
                    hooks::first_hook(tracepoint),
                    "this kernel has no such tracepoint",
                ),
            }
        })
        .collect()
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

/// Namespaces named at most, before "and N more".
const LISTED: usize = 8;

/// `4026531840 (this host), trc-1, trc-2, … and 40 more`: names where `ip netns` has them,
/// else inodes.
fn listing(members: &[&Namespace], own: Option<u32>) -> String {
    let mut items: Vec<String> = members
        .iter()
        .take(LISTED)
        .map(|ns| {
            let mut item = if ns.names.is_empty() {
                ns.netns.to_string()
            } else {
                ns.names.join("/")
            };
            if Some(ns.netns) == own {
                item += " (this host)";
            }
            item
        })
        .collect();
    if members.len() > LISTED {
        items.push(format!(
            "… and {} more (--json lists each)",
            members.len() - LISTED
        ));
    }
    items.join(", ")
}

/// How long a dead peer goes unnoticed in `ns`, line by line.
fn detection_lines(ns: &Namespace) -> Vec<String> {
    let s = &ns.sysctls;
    let d = &ns.detection;
    vec![
        format!(
            "data in flight    {:>14}   tcp_retries2={} (retries1={})",
            duration_ms(d.data_in_flight_ms),
            s.tcp_retries2,
            s.tcp_retries1
        ),
        format!(
            "idle, keepalive   {:>14}   tcp_keepalive_time={}s intvl={}s probes={}",
            duration_ms(d.idle_with_keepalive_ms),
            s.tcp_keepalive_time,
            s.tcp_keepalive_intvl,
            s.tcp_keepalive_probes
        ),
        format!(
            "idle, no keepalive {:>13}   only `tracer sockets` can flag it",
            "never"
        ),
        format!(
            "connect           {:>14}   tcp_syn_retries={}{}",
            duration_ms(d.connect_ms),
            s.tcp_syn_retries,
            s.tcp_syn_linear_timeouts
                .map(|l| format!(" (linear timeouts {l})"))
                .unwrap_or_default()
        ),
        format!(
            "orphaned socket   {:>14}   tcp_orphan_retries={}",
            duration_ms(d.orphan_ms),
            s.tcp_orphan_retries
        ),
    ]
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
    if r.verified {
        writeln!(
            out,
            "\nkernel hooks (every program verified by this kernel):"
        )?;
    } else {
        writeln!(
            out,
            "\nkernel hooks (tracepoints present; the programs were not verified: that needs \
             what tracing needs)"
        )?;
    }
    for h in &r.hooks {
        let s = &h.status;
        let (word, detail) = match (s.state, &s.problem, &s.degraded) {
            (Some(HookState::Failed), problem, _) => (
                "FAILED",
                format!(
                    "{}; without it: {}",
                    problem.as_deref().unwrap_or(""),
                    h.without_it
                ),
            ),
            (Some(HookState::Unavailable), problem, _) => (
                "missing",
                format!(
                    "{}; without it: {}",
                    problem.as_deref().unwrap_or(""),
                    h.without_it
                ),
            ),
            (Some(HookState::Degraded), _, Some(lost)) => {
                ("degraded", format!("{}; but no {lost}", s.provides))
            }
            (Some(_), _, _) => ("ok", s.provides.clone()),
            (None, _, _) => ("present", s.provides.clone()),
        };
        writeln!(out, "  {word:<9}{:<22} {detail}", s.tracepoint)?;
    }
    for missing in &r.missing {
        writeln!(out, "  member   {missing}")?;
    }
    if r.verified {
        let twins = r.hooks.iter().filter(|h| h.status.twin.is_some()).count();
        writeln!(
            out,
            "  {twins} hooks have a nested-context twin: hits the kernel skips while a program \
             already runs on that CPU are taken by it; what neither takes is reported as lost"
        )?;
    }
    writeln!(
        out,
        "\ntime until a dead peer is noticed, per network namespace (grouped by identical \
         settings):"
    )?;
    let by_inode: BTreeMap<u32, &Namespace> = r.namespaces.iter().map(|n| (n.netns, n)).collect();
    let mut first_lines: Vec<String> = Vec::new();
    for (i, group) in r.groups.iter().enumerate() {
        let members: Vec<&Namespace> = group
            .netns
            .iter()
            .filter_map(|inode| by_inode.get(inode).copied())
            .collect();
        let Some(ns) = members.first() else { continue };
        let lines = detection_lines(ns);
        let noun = if members.len() == 1 {
            "1 namespace"
        } else {
            &format!("{} namespaces", members.len())
        };
        writeln!(out, "  {noun}: {}", listing(&members, r.own_netns))?;
        if i == 0 {
            first_lines = lines.clone();
            for line in &lines {
                writeln!(out, "    {line}")?;
            }
            continue;
        }
        writeln!(
            out,
            "    differs from the first group: {}",
            group.differs_from_first.join(" ")
        )?;
        for line in lines.iter().filter(|l| !first_lines.contains(l)) {
            writeln!(out, "    {line}")?;
        }
    }
    for p in &r.problems {
        writeln!(out, "  not visible: {p}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(netns: u32, retries2: u32) -> Namespace {
        let sysctls = TcpSysctls {
            tcp_retries2: retries2,
            tcp_keepalive_probes: 9,
            ..TcpSysctls::default()
        };
        Namespace {
            netns,
            names: Vec::new(),
            detection: detection(&sysctls),
            sysctls,
        }
    }

    #[test]
    fn namespaces_group_by_settings_own_first_then_the_largest() {
        let list = [ns(1, 15), ns(2, 11), ns(3, 11), ns(4, 11), ns(5, 8)];
        let groups = group(&list, Some(1));
        let members: Vec<&[u32]> = groups.iter().map(|g| g.netns.as_slice()).collect();
        assert_eq!(members, [&[1][..], &[2, 3, 4], &[5]]);
        assert!(groups[0].differs_from_first.is_empty());
        assert_eq!(groups[1].differs_from_first, ["tcp_retries2=11"]);
        let groups = group(&list, None);
        assert_eq!(groups[0].netns, [2, 3, 4]);
        assert_eq!(groups[1].differs_from_first, ["tcp_retries2=15"]);
        assert!(group(&[], None).is_empty());
    }

    #[test]
    fn members_are_listed_compactly() {
        let list: Vec<Namespace> = (1..=10).map(|i| ns(i, 15)).collect();
        let refs: Vec<&Namespace> = list.iter().collect();
        assert_eq!(
            listing(&refs, Some(1)),
            "1 (this host), 2, 3, 4, 5, 6, 7, 8, … and 2 more (--json lists each)"
        );
    }
}
