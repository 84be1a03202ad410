//! The Markdown report of one run (target/bench/report.md): the figures `measure.rs`
//! took, as the tables BENCHMARKS.md quotes.

use std::fmt::Write;

use super::{
    measure::{
        Cost, KeepaliveStorm, ReportSpeed, ResetStorm, RetransmitStorm, STORM_BYTES, Throughput,
    },
    storms::{Profile, Round, Storm, Tool},
};

/// Where a run measured.
#[derive(Default)]
pub(crate) struct Setting {
    pub(crate) kernel: String,
    pub(crate) cpus: usize,
    pub(crate) tracer: String,
}

/// Everything one run measured; parts not asked for stay empty.
#[derive(Default)]
pub(crate) struct Run {
    pub(crate) setting: Setting,
    pub(crate) storms: Option<Vec<Storm>>,
    pub(crate) profiles: Option<Vec<Profile>>,
    pub(crate) retransmit: Option<RetransmitStorm>,
    pub(crate) keepalive: Option<KeepaliveStorm>,
    pub(crate) timers: Option<Vec<Cost>>,
    pub(crate) resets: Option<Vec<ResetStorm>>,
    pub(crate) throughput: Option<Vec<Throughput>>,
    pub(crate) drops: Option<Vec<Cost>>,
    pub(crate) report: Option<ReportSpeed>,
}

pub(crate) fn render(run: &Run) -> String {
    let mut out = format!(
        "# Benchmark run\n\nkernel {}, {} CPUs, tracer {}\n",
        run.setting.kernel, run.setting.cpus, run.setting.tracer
    );
    if let Some(storms) = &run.storms {
        side_by_side(&mut out, storms);
    }
    for p in run.profiles.iter().flatten() {
        let _ = write!(
            out,
            "\n## Profile: {}, {}{}\n\n`perf report --no-children --sort dso,symbol`, top \
             items:\n\n```text\n{}\n```\n",
            p.tool,
            p.storm,
            match p.round.records {
                0 => String::new(),
                records => format!(
                    " ({records} records, {:.2} s of CPU during the storm: {:.2} µs per \
                     record; `perf record -F 1999 -p PID` from the storm's start to its end)",
                    p.round.storm_cpu.as_secs_f64(),
                    p.round.storm_cpu.as_secs_f64() * 1e6 / records as f64
                ),
            },
            p.top
        );
    }
    if let Some(r) = &run.retransmit {
        retransmit(&mut out, r);
    }
    if let Some(k) = &run.keepalive {
        keepalive(&mut out, k);
    }
    if let Some(costs) = &run.timers {
        out += "\n## Timer hook on timers that are not ours (200 connections' delayed-ACK \
                timers, 10 s)\n\n";
        out += &cost_table(costs);
    }
    if let Some(storms) = &run.resets {
        resets(&mut out, storms);
    }
    if let Some(costs) = &run.drops {
        out += "\n## Drop hook (skb:kfree_skb): 100 000 UDP datagrams and 2 000 TCP SYNs to \
                closed ports\n\n";
        out += &cost_table(costs);
    }
    if let Some(rows) = &run.throughput {
        throughput(&mut out, rows);
    }
    if let Some(speed) = &run.report {
        report_speed(&mut out, speed);
    }
    out
}

fn cost_table(costs: &[Cost]) -> String {
    let mut out = String::from("| program | calls | ns/call |\n|---|---:|---:|\n");
    for c in costs {
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} |",
            c.program, c.calls, c.ns_per_call
        );
    }
    out
}

fn secs(d: std::time::Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn retransmit(out: &mut String, r: &RetransmitStorm) {
    let seen = &r.seen;
    let kernel = seen.kernel_segments.max(1) as f64;
    let bpftrace = |f: &dyn Fn(&super::measure::Bpftrace) -> String| {
        r.bpftrace.as_ref().map_or("n/a".to_owned(), f)
    };
    let _ = write!(
        out,
        "\n## Retransmit storm: 4 bulk transfers of {} MiB through 2% random loss\n\n\
         {:.1} s; kernel RetransSegs delta {}; tracer: {} retransmit events covering {} \
         segments, {} lost.\n\n\
         | | tracer record | bpftrace (one printf per event) |\n|---|---:|---:|\n\
         | retransmit events seen | {} | {} |\n\
         | fidelity (segments or events ÷ RetransSegs) | {:.3} | {} |\n\
         | CPU during the storm | {} | {} |\n\
         | peak RSS | {} MiB | {} |\n\
         | start-up until attached | {} | {} |\n\n\
         Kernel cost per program during the storm (bpf_stats):\n\n{}",
        STORM_BYTES >> 20,
        r.storm.as_secs_f64(),
        seen.kernel_segments,
        seen.events,
        seen.traced_segments,
        seen.lost,
        seen.events,
        bpftrace(&|b| b.retransmit_lines.to_string()),
        seen.traced_segments as f64 / kernel,
        bpftrace(&|b| format!("{:.3}", b.retransmit_lines as f64 / kernel)),
        secs(r.tracer.usage.cpu),
        bpftrace(&|b| secs(b.cost.usage.cpu)),
        r.tracer.usage.max_rss_kib / 1024,
        bpftrace(&|b| format!("{} MiB", b.cost.usage.max_rss_kib / 1024)),
        secs(r.tracer.ready_after),
        bpftrace(&|b| secs(b.cost.ready_after)),
        cost_table(&r.costs)
    );
}

fn keepalive(out: &mut String, k: &KeepaliveStorm) {
    let _ = write!(
        out,
        "\n## Keepalive storm: {} idle connections probing a blackholed peer every second, \
         {} s\n\n\
         Probes the kernel counted as sent (Σ icsk_probes_out from sock_diag, after freezing): \
         {}; keepalive_probe events: {}; fidelity {:.3}; {} lost. Kernel TCPKeepAlive delta: {} \
         (it also counts attempts that never left the host: tcp_xmit_probe_skb counts before \
         transmitting, and {} packets were dropped by full backlogs on this host during the \
         run). Tracer CPU {}, peak RSS {} MiB.\n\n\
         Kernel cost per program (the timer hooks run for every kernel timer on the host):\n\n{}",
        k.connections,
        k.secs,
        k.probes_out,
        k.traced,
        k.traced as f64 / k.probes_out.max(1) as f64,
        k.lost,
        k.kernel_keepalive,
        k.backlog_drops,
        secs(k.usage.cpu),
        k.usage.max_rss_kib / 1024,
        cost_table(&k.costs)
    );
}

fn resets(out: &mut String, storms: &[ResetStorm]) {
    *out += "\n## Reset storm: connects to a closed port (each: SYN_SENT, RST out, RST in, \
             CLOSE, error reports, release)\n\n\
             | ring buffer | connects | threads | events delivered | events/s | lost | \
             OutRsts Δ | reset_sent events | connection_refused verdicts |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for s in storms {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.0} | {} | {} | {} | {} |",
            s.ring,
            s.connects,
            s.threads,
            s.events,
            s.events as f64 / s.took.as_secs_f64(),
            s.lost,
            s.out_rsts,
            s.reset_sent,
            s.refused
        );
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn throughput(out: &mut String, rows: &[Throughput]) {
    *out += "\n## Clean bulk transfer, with and without the tracer\n\n\
             Unfiltered `tracer live --json > /dev/null` (it sees every socket); rounds \
             alternate without/with; medians.\n\n\
             | writes | without (MB/s, median [min–max]) | with (MB/s, median [min–max]) | \
             ratio of medians | drop hook calls |\n|---|---:|---:|---:|---:|\n";
    let spread = |v: &[f64]| {
        let min = v.iter().copied().fold(f64::MAX, f64::min) / 1e6;
        let max = v.iter().copied().fold(0.0, f64::max) / 1e6;
        format!("{:.0} [{min:.0}–{max:.0}]", median(v.to_vec()) / 1e6)
    };
    for row in rows {
        let _ = writeln!(
            out,
            "| {} B | {} | {} | {:.3} | {} |",
            row.chunk,
            spread(&row.without),
            spread(&row.with),
            median(row.with.clone()) / median(row.without.clone()),
            row.drop_calls
        );
    }
}

fn report_speed(out: &mut String, speed: &ReportSpeed) {
    let _ = write!(
        out,
        "\n## `tracer report` on {} events (the retransmit storm repeated; JSON Lines {} MiB, \
         binary {} MiB)\n\n\
         | trace | format | wall | events/s | CPU | peak RSS |\n|---|---|---:|---:|---:|---:|\n",
        speed.events,
        speed.bytes >> 20,
        speed.binary_bytes >> 20
    );
    for r in &speed.runs {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {} | {} MiB |",
            r.trace,
            r.format,
            secs(r.wall),
            speed.events as f64 / r.wall.as_secs_f64(),
            secs(r.usage.cpu),
            r.usage.max_rss_kib / 1024
        );
    }
}

/// The median of what `f` says of each round.
fn median_of(rounds: &[Round], f: impl Fn(&Round) -> f64) -> f64 {
    median(rounds.iter().map(f).collect())
}

fn side_by_side(out: &mut String, storms: &[Storm]) {
    *out += "\n## Side by side: no tool, bpftrace (one printf per event), tracer record\n\n\
             Rounds alternate the tools; medians over the rounds, the rate's [min–max] after \
             it (fidelity: the worst round, lost: all rounds). CPU: the tool's user + system time over its whole run, \
             start-up (until attached) in brackets; per record: its CPU during the storm \
             ÷ the records it wrote (trace events, bpftrace's lines).\n\n\
             | storm | tool | rounds | rate | ratio | CPU (start-up) | µs per record | \
             peak RSS | records | fidelity | lost |\n\
             |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for storm in storms {
        let baseline = storm
            .rows
            .iter()
            .find(|(tool, _)| matches!(tool, Tool::None))
            .map(|(_, rounds)| median_of(rounds, |r| r.rate.unwrap_or(0.0)));
        for (tool, rounds) in &storm.rows {
            if rounds.is_empty() {
                continue;
            }
            let rate = rounds[0]
                .rate
                .map(|_| median_of(rounds, |r| r.rate.unwrap_or(0.0)));
            // The spread shows what this shared machine does to a rate with no tool at all:
            // a ratio inside the no-tool row's spread is not a measured cost.
            let rate_text = rate.map_or("—".to_owned(), |median| {
                let rates = rounds.iter().map(|round| round.rate.unwrap_or(0.0));
                let (low, high) = rates.fold((f64::MAX, 0.0f64), |(lo, hi), rate| {
                    (lo.min(rate), hi.max(rate))
                });
                format!(
                    "{} {} [{}–{}]",
                    thousands(median),
                    storm.rate_unit,
                    thousands(low),
                    thousands(high)
                )
            });
            let ratio = match (rate, baseline) {
                (Some(r), Some(b)) if b > 0.0 => format!("**{:.2}**", r / b),
                _ => "—".into(),
            };
            let (cpu, per_record) = match tool {
                Tool::None => ("—".to_owned(), "—".to_owned()),
                _ => {
                    let cpu = median_of(rounds, |r| r.usage.cpu.as_secs_f64());
                    let startup = median_of(rounds, |r| r.startup_cpu.as_secs_f64());
                    let per = median_of(rounds, |r| {
                        r.storm_cpu.as_secs_f64() * 1e6 / r.records.max(1) as f64
                    });
                    let records = median_of(rounds, |r| r.records as f64);
                    (
                        format!("{cpu:.2} s ({startup:.2} s)"),
                        if records >= 1000.0 {
                            format!("{per:.2}")
                        } else {
                            "—".to_owned()
                        },
                    )
                }
            };
            let rss = match tool {
                Tool::None => "—".to_owned(),
                _ => format!(
                    "{} MiB",
                    rounds
                        .iter()
                        .map(|r| r.usage.max_rss_kib)
                        .max()
                        .unwrap_or(0)
                        / 1024
                ),
            };
            let records = match tool {
                Tool::None => "—".to_owned(),
                _ => thousands(median_of(rounds, |r| r.records as f64)),
            };
            let fidelity = rounds
                .iter()
                .filter_map(|r| r.fidelity)
                .min_by(|a, b| {
                    let ratio = |(seen, kernel): (u64, u64)| seen as f64 / kernel.max(1) as f64;
                    ratio(*a).total_cmp(&ratio(*b))
                })
                .map_or("—".to_owned(), |(seen, kernel)| {
                    format!(
                        "{:.3} ({seen}/{kernel})",
                        seen as f64 / kernel.max(1) as f64
                    )
                });
            let lost = match tool {
                Tool::None => "—".to_owned(),
                _ => rounds.iter().map(|r| r.lost).sum::<u64>().to_string(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {rate_text} | {ratio} | {cpu} | {per_record} | {rss} | \
                 {records} | {fidelity} | {lost} |",
                storm.name,
                tool.label(),
                rounds.len(),
            );
        }
    }
    *out += "\nFidelity: ";
    let what: Vec<String> = storms
        .iter()
        .filter(|s| !s.fidelity.is_empty())
        .map(|s| format!("{}: {}", s.name.split(':').next().unwrap_or(""), s.fidelity))
        .collect();
    *out += &what.join("; ");
    *out += ".\n";
}

/// `1 234 567` (no decimals).
fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}
