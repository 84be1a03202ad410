//! `tracer sockets`: every TCP socket right now, and the ones that deserve a look, with
//! each owner's container, pod or unit (from `/proc/PID/cgroup`).

use std::{collections::HashMap, io::Write};

use anyhow::{Context, Result};

use crate::{
    cli::SocketsArgs,
    event::Owner,
    filter::resolve_netns,
    identity::{ProcessCgroup, Resolver},
    sweep::{self, SweptSocket},
    words::duration_ms,
};

pub fn run(args: SocketsArgs) -> Result<()> {
    let only = args
        .netns
        .iter()
        .map(|n| resolve_netns(n))
        .collect::<Result<Vec<_>>>()?;
    let limits = sweep::FlagLimits {
        idle: args.idle_threshold,
        close_wait: args.close_wait_after,
    };
    let mut snapshot = sweep::snapshot(&only, limits)?;
    for problem in &snapshot.problems {
        eprintln!("tracer: not visible: {problem}");
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "tracer: not root: only this namespace, and owners only of this user's processes"
        );
    }
    if args.flagged {
        snapshot.sockets.retain(|s| !s.flags.is_empty());
    }
    match Resolver::new(args.identity.config()) {
        Ok(mut resolver) => {
            let mut by_pid: HashMap<u32, Option<ProcessCgroup>> = HashMap::new();
            for owner in snapshot
                .sockets
                .iter_mut()
                .filter_map(|s| s.process.as_mut())
            {
                let found = by_pid
                    .entry(owner.pid)
                    .or_insert_with(|| resolver.resolve_pid(owner.pid));
                if let Some(found) = found {
                    owner.cgroup_id = found.cgroup_id;
                    owner.container = Some(found.identity.clone());
                }
            }
        }
        Err(e) => eprintln!("tracer: no cgroup v2 hierarchy ({e}): no containers, pods or units"),
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &snapshot)?;
        writeln!(out)?;
    } else {
        write_table(&mut out, &snapshot.sockets)?;
    }
    out.flush().context("writing to stdout")
}

fn write_table(out: &mut dyn Write, sockets: &[SweptSocket]) -> Result<()> {
    writeln!(
        out,
        "{:<12} {:<18} {:<47} {:<11} {:>9} {:<14} {:<16} FLAGS",
        "STATE", "PROCESS", "LOCAL → REMOTE", "NETNS", "IDLE", "RETR/BO/PRB", "KEEPALIVE"
    )?;
    for s in sockets {
        let idle = s.idle_ms.map(duration_ms).unwrap_or_default();
        let counters = s
            .info
            .map(|i| format!("{}/{}/{}", i.retransmits, i.backoff, i.probes))
            .unwrap_or_default();
        let keepalive = match (s.keepalive, s.timer_expires_ms) {
            (true, Some(ms)) => format!("on, in {}", duration_ms(ms)),
            (true, None) => "on".to_owned(),
            (false, _) if s.timer.is_some() => "unknown".to_owned(),
            (false, _) => "off".to_owned(),
        };
        let flags: Vec<&str> = s.flags.iter().map(|f| f.name()).collect();
        writeln!(
            out,
            "{:<12} {:<18} {:<47} {:<11} {:>9} {:<14} {:<16} {}",
            s.state,
            Owner::label(s.process.as_ref()),
            s.conn,
            s.conn.netns,
            idle,
            counters,
            keepalive,
            flags.join(",")
        )?;
    }
    Ok(())
}
