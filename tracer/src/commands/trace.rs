//! `tracer live` and `tracer record`: load the probes, follow the ring buffer, feed the
//! timeline engine, hand events and verdicts to the sinks, stop cleanly.

use std::time::Duration;

use anyhow::{Context, Result};
use tokio::{
    signal::unix::{SignalKind, signal},
    time::{Instant, MissedTickBehavior, interval, sleep_until},
};

use crate::{
    cli::{FilterArgs, ThresholdArgs},
    event::KernelFacts,
    filter,
    kernel::{Probes, RingStats, host},
    output::{Sink, Status},
    record::{End, FORMAT, Header, Lost, RecordedThresholds, VERSION},
    timeline::{Engine, Thresholds},
};

/// What a tracing session needs, whichever command started it.
pub struct Session<'a> {
    pub filters: &'a FilterArgs,
    pub thresholds: &'a ThresholdArgs,
    pub ring_buffer: u32,
    pub duration: Option<Duration>,
}

pub fn engine_thresholds(args: &ThresholdArgs) -> Thresholds {
    Thresholds {
        warn_after_rtos: args.warn_after_rtos,
        dead_socket_after_ns: args.dead_socket_after().as_nanos() as u64,
        ..Thresholds::default()
    }
}

/// Counts for the exit summary.
#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    pub events: u64,
    pub verdicts: u64,
    pub ring: RingStats,
    pub engine: crate::timeline::EngineStats,
}

const TICK: Duration = Duration::from_millis(250);
const STATUS_EVERY_TICKS: u64 = 4;

pub async fn run(session: Session<'_>, sinks: &mut [&mut dyn Sink]) -> Result<Totals> {
    let options = filter::probe_options(session.filters, session.ring_buffer)?;
    let mut probes = Probes::load(&options)?;
    let facts = KernelFacts {
        hz: host::kernel_hz()?,
        reset_reasons: probes.reset_reasons.clone(),
    };
    let header = Header {
        format: FORMAT.into(),
        version: VERSION,
        tool_version: env!("CARGO_PKG_VERSION").into(),
        hostname: host::hostname(),
        kernel_release: host::kernel_release(),
        kernel: facts.clone(),
        boot_to_wall_offset_ns: host::boot_to_wall_offset_ns(),
        started_ns: host::boottime_ns(),
        hooks: probes.hooks.clone(),
        missing: probes
            .missing_members
            .iter()
            .map(|m| format!("{}: {}", m.member, m.cost))
            .collect(),
        command: std::env::args().collect(),
        thresholds: Some(RecordedThresholds {
            warn_after_rtos: session.thresholds.warn_after_rtos,
            dead_socket_after_ms: session.thresholds.dead_socket_after().as_millis() as u64,
        }),
    };
    report_degradations(&probes);
    for sink in sinks.iter_mut() {
        sink.header(&header)?;
    }
    let attached = probes.hooks.iter().filter(|h| h.attached).count();
    eprintln!("tracer: tracing TCP connections ({attached} kernel hooks attached); Ctrl-C to stop");

    let mut engine = Engine::new(engine_thresholds(session.thresholds));
    let mut sigint = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let deadline = session.duration.map(|d| Instant::now() + d);
    let mut ticker = interval(TICK);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut totals = Totals::default();
    let mut raw = Vec::with_capacity(1024);
    let mut verdicts = Vec::new();
    let mut ticks = 0u64;
    let mut events_at_last_status = 0;
    let reason;
    loop {
        tokio::select! {
            read = probes.read_batch(&mut raw) => read?,
            _ = ticker.tick() => {
                engine.tick(host::boottime_ns(), &mut verdicts);
                report_lost(&probes, &mut totals, sinks)?;
                ticks += 1;
                if ticks.is_multiple_of(STATUS_EVERY_TICKS) {
                    let status = Status {
                        events_per_sec: (totals.events - events_at_last_status) as f64
                            / (TICK.as_secs_f64() * STATUS_EVERY_TICKS as f64),
                        sockets: engine.stats().tracked,
                        verdicts: totals.verdicts,
                        lost: totals.ring.lost,
                    };
                    events_at_last_status = totals.events;
                    for sink in sinks.iter_mut() {
                        sink.status(&status)?;
                    }
                }
            }
            _ = sigint.recv() => { reason = "signal"; break; }
            _ = sigterm.recv() => { reason = "signal"; break; }
            _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                reason = "duration";
                break;
            }
        }
        deliver(
            &facts,
            &mut raw,
            &mut engine,
            &mut verdicts,
            &mut totals,
            sinks,
        )?;
    }
    // Whatever the kernel wrote before we stopped is still ours to deliver.
    probes.drain(&mut raw);
    deliver(
        &facts,
        &mut raw,
        &mut engine,
        &mut verdicts,
        &mut totals,
        sinks,
    )?;
    let now = host::boottime_ns();
    engine.finish(now, &mut verdicts);
    deliver(
        &facts,
        &mut raw,
        &mut engine,
        &mut verdicts,
        &mut totals,
        sinks,
    )?;
    report_lost(&probes, &mut totals, sinks)?;
    drop(probes); // detaches every program
    totals.engine = engine.stats();
    let end = End {
        ts_ns: now,
        events: totals.events,
        verdicts: totals.verdicts,
        lost: totals.ring.lost,
        reason: reason.into(),
    };
    for sink in sinks.iter_mut() {
        sink.end(&end)?;
    }
    Ok(totals)
}

fn deliver(
    facts: &KernelFacts,
    raw: &mut Vec<tracer_common::RawEvent>,
    engine: &mut Engine,
    verdicts: &mut Vec<crate::timeline::Verdict>,
    totals: &mut Totals,
    sinks: &mut [&mut dyn Sink],
) -> Result<()> {
    if raw.is_empty() && verdicts.is_empty() {
        return Ok(());
    }
    for r in raw.drain(..) {
        let Some(event) = facts.decode(&r) else {
            continue;
        };
        totals.events += 1;
        for sink in sinks.iter_mut() {
            sink.event(&event)?;
        }
        engine.push(event, verdicts);
    }
    for v in verdicts.drain(..) {
        totals.verdicts += 1;
        for sink in sinks.iter_mut() {
            sink.verdict(&v)?;
        }
    }
    for sink in sinks.iter_mut() {
        sink.flush()?;
    }
    Ok(())
}

/// Lost events are part of the output, never silent.
fn report_lost(probes: &Probes, totals: &mut Totals, sinks: &mut [&mut dyn Sink]) -> Result<()> {
    let now = probes.ring_stats()?;
    if now.lost > totals.ring.lost {
        let lost = Lost {
            ts_ns: host::boottime_ns(),
            lost: now.lost - totals.ring.lost,
            total: now.lost,
        };
        for sink in sinks.iter_mut() {
            sink.lost(&lost)?;
            sink.flush()?;
        }
    }
    totals.ring = now;
    Ok(())
}

/// One line per missing hook or struct member: what is missing and what it costs.
fn report_degradations(probes: &Probes) {
    for hook in probes.hooks.iter().filter(|h| !h.attached) {
        eprintln!(
            "tracer: no {} on this kernel ({}): without it, no {}",
            hook.tracepoint,
            hook.problem.as_deref().unwrap_or("not attached"),
            hook.provides
        );
    }
    for missing in &probes.missing_members {
        eprintln!(
            "tracer: kernel has no {}: without it, no {}",
            missing.member, missing.cost
        );
    }
}
