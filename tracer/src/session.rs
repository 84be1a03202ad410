//! A tracing session, as `tracer live` and `tracer record` run it: load the probes, sweep
//! what is already open, follow the ring buffer, feed the timeline engine, hand events and
//! verdicts to the sinks, stop cleanly.

use std::{collections::BTreeMap, future::pending, time::Duration};

use anyhow::{Context, Result};
use tokio::{
    signal::unix::{SignalKind, signal},
    time::{Instant, MissedTickBehavior, interval, sleep_until},
};
use tracer_common::RawEvent;

use crate::{
    cli::SessionArgs,
    event::{Event, KernelFacts, Owner, SocketId, TcpState},
    filter::{self, EventFilter},
    kernel::{DRAIN_INTERVAL, Probes, ProgramStats, RingStats, host},
    output::{Sink, Status},
    record::{End, FORMAT, Header, Lost, RecordedThresholds, VERSION},
    sweep,
    timeline::{Engine, EngineStats, Verdict},
};

/// Idle time after which a swept connection without keepalive is flagged half_open_risk.
const SWEEP_IDLE_THRESHOLD: Duration = Duration::from_secs(600);
const TICK: Duration = Duration::from_millis(250);
const STATUS_EVERY_TICKS: u64 = 4;

/// Counts for the exit summary.
#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    pub events: u64,
    pub verdicts: u64,
    pub ring: RingStats,
    pub engine: EngineStats,
}

/// What a long-running session (`tracer agent`) changes in how a session behaves.
#[derive(Default)]
pub struct Hooks {
    /// SIGHUP asks the sinks to reopen their outputs ([`Sink::reopen`]) instead of ending
    /// the process.
    pub reopen_on_hangup: bool,
    /// Where the session's own messages go; default: `tracer: ...` lines on stderr.
    pub say: Option<fn(log::Level, &str)>,
}

impl Hooks {
    fn say(&self, level: log::Level, message: &str) {
        match self.say {
            Some(say) => say(level, message),
            None => eprintln!("tracer: {message}"),
        }
    }
}

/// The session's state, handed to the sinks with each status (about once a second): for
/// sinks that export gauges and self-metrics.
pub struct Snapshot<'a> {
    /// The timelines held now.
    pub engine: &'a Engine,
    /// The kernel side's counters, as of now.
    pub ring: RingStats,
    /// Each attached program's runs and CPU time (0 unless bpf_stats is on).
    pub programs: &'a [ProgramStats],
    /// The fullest the ring buffer was found at a read since the last snapshot (0..1).
    pub ring_fill: f64,
}

/// Decoded events on their way to the engine and the sinks.
struct Pipeline {
    facts: KernelFacts,
    /// Owners found by the sweep, for sockets the kernel programs never saw in their
    /// owner's context (opened before tracing started).
    owners: BTreeMap<SocketId, Owner>,
    engine: Engine,
    verdicts: Vec<Verdict>,
    totals: Totals,
    /// The most records one read found since the last snapshot.
    peak_batch: usize,
}

impl Pipeline {
    fn event(&mut self, mut event: Event, sinks: &mut [&mut dyn Sink]) -> Result<()> {
        if event.process.is_none()
            && let Some(owner) = event.socket.and_then(|s| self.owners.get(&s))
        {
            event.process = Some(owner.clone());
        }
        self.totals.events += 1;
        sinks.event(&event)?;
        self.engine.push(event, &mut self.verdicts);
        Ok(())
    }

    fn raw(&mut self, raw: &mut Vec<RawEvent>, sinks: &mut [&mut dyn Sink]) -> Result<()> {
        self.peak_batch = self.peak_batch.max(raw.len());
        let mut decoded = Vec::with_capacity(raw.len());
        for r in raw.drain(..) {
            self.facts.decode_into(&r, &mut |e| decoded.push(e));
        }
        for event in decoded {
            self.event(event, sinks)?;
        }
        self.flush(sinks)
    }

    /// Hands reached verdicts to the sinks and flushes them.
    fn flush(&mut self, sinks: &mut [&mut dyn Sink]) -> Result<()> {
        for v in self.verdicts.drain(..) {
            self.totals.verdicts += 1;
            sinks.verdict(&v)?;
        }
        sinks.flush()
    }
}

/// Sockets already open: `sweep` events, and their owners for later events.
fn sweep_existing(
    pipeline: &mut Pipeline,
    netns: &[u32],
    filter: &EventFilter,
    sinks: &mut [&mut dyn Sink],
    hooks: &Hooks,
) -> Result<()> {
    let snapshot = match sweep::snapshot(netns, SWEEP_IDLE_THRESHOLD) {
        Ok(s) => s,
        Err(e) => {
            hooks.say(
                log::Level::Warn,
                &format!(
                    "socket sweep failed ({e:#}): connections opened before tracing \
                     started will have no owner until they are used"
                ),
            );
            return Ok(());
        }
    };
    for problem in &snapshot.problems {
        hooks.say(log::Level::Warn, &format!("sweep: not visible: {problem}"));
    }
    pipeline.owners = snapshot.owners();
    let now = host::boottime_ns();
    for socket in &snapshot.sockets {
        if socket.state == TcpState::LISTEN || socket.state == TcpState::TIME_WAIT {
            continue;
        }
        let event = socket.to_event(now);
        if filter.matches(&event) {
            pipeline.event(event, sinks)?;
        }
    }
    pipeline.flush(sinks)
}

pub async fn run(session: &SessionArgs, sinks: &mut [&mut dyn Sink]) -> Result<Totals> {
    run_with(session, sinks, &Hooks::default()).await
}

/// [`run`], as `hooks` change it.
pub async fn run_with(
    session: &SessionArgs,
    sinks: &mut [&mut dyn Sink],
    hooks: &Hooks,
) -> Result<Totals> {
    // Before anything is printed: a signal that arrives once the header is out (or during
    // the sweep) must end the trace with its end record, not kill the process.
    let mut sigint = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut sighup = match hooks.reopen_on_hangup {
        true => Some(signal(SignalKind::hangup()).context("installing SIGHUP handler")?),
        false => None,
    };
    let options = filter::probe_options(&session.filters, session.kernel.ring_buffer)?;
    let thresholds = session.thresholds.thresholds(None);
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
        thresholds: Some(RecordedThresholds::of(&thresholds)),
    };
    report_degradations(&probes, hooks);
    sinks.header(&header)?;
    let mut pipeline = Pipeline {
        facts,
        owners: BTreeMap::new(),
        engine: Engine::new(thresholds),
        verdicts: Vec::new(),
        totals: Totals::default(),
        peak_batch: 0,
    };
    // The probes are attached first: nothing between the sweep and the first event is missed.
    if !session.no_sweep {
        let filter = EventFilter::new(&session.filters)?;
        sweep_existing(&mut pipeline, &options.netns, &filter, sinks, hooks)?;
    }
    let attached = probes.hooks.iter().filter(|h| h.attached).count();
    hooks.say(
        log::Level::Info,
        &format!("tracing TCP connections ({attached} kernel hooks attached); Ctrl-C to stop"),
    );
    let ring_records = ring_records(options.ring_buffer_bytes);

    let deadline = session.duration.map(|d| Instant::now() + d);
    let mut ticker = interval(TICK);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut drain = interval(DRAIN_INTERVAL);
    drain.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut raw = Vec::with_capacity(1024);
    let mut ticks = 0u64;
    let mut events_at_last_status = 0;
    let reason;
    loop {
        tokio::select! {
            read = probes.read_batch(&mut raw) => read?,
            _ = drain.tick() => probes.drain(&mut raw),
            _ = ticker.tick() => {
                pipeline.engine.tick(host::boottime_ns(), &mut pipeline.verdicts);
                report_lost(&probes, &mut pipeline.totals, sinks)?;
                ticks += 1;
                if ticks.is_multiple_of(STATUS_EVERY_TICKS) {
                    let t = &pipeline.totals;
                    let status = Status {
                        events_per_sec: (t.events - events_at_last_status) as f64
                            / (TICK.as_secs_f64() * STATUS_EVERY_TICKS as f64),
                        sockets: pipeline.engine.stats().tracked,
                        verdicts: t.verdicts,
                        lost: t.ring.lost,
                    };
                    events_at_last_status = t.events;
                    sinks.status(&status)?;
                    let programs = probes.program_stats();
                    sinks.snapshot(&Snapshot {
                        engine: &pipeline.engine,
                        ring: pipeline.totals.ring,
                        programs: &programs,
                        ring_fill: (pipeline.peak_batch as f64 / ring_records).min(1.0),
                    })?;
                    pipeline.peak_batch = 0;
                }
            }
            _ = async {
                match &mut sighup {
                    Some(hup) => hup.recv().await,
                    None => pending().await,
                }
            } => {
                sinks.reopen()?;
                hooks.say(log::Level::Info, "SIGHUP: outputs reopened");
            }
            _ = sigint.recv() => { reason = "signal"; break; }
            _ = sigterm.recv() => { reason = "signal"; break; }
            _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                reason = "duration";
                break;
            }
        }
        pipeline.raw(&mut raw, sinks)?;
    }
    // Whatever the kernel wrote before we stopped is still ours to deliver.
    probes.drain(&mut raw);
    pipeline.raw(&mut raw, sinks)?;
    let now = host::boottime_ns();
    pipeline.engine.finish(now, &mut pipeline.verdicts);
    pipeline.flush(sinks)?;
    report_lost(&probes, &mut pipeline.totals, sinks)?;
    drop(probes); // detaches every program
    let mut totals = pipeline.totals;
    totals.engine = pipeline.engine.stats();
    let end = End {
        ts_ns: now,
        events: totals.events,
        verdicts: totals.verdicts,
        lost: totals.ring.lost,
        reason: reason.into(),
    };
    sinks.end(&end)?;
    Ok(totals)
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
        sinks.lost(&lost)?;
        sinks.flush()?;
    }
    totals.ring = now;
    Ok(())
}

/// How many records the ring buffer holds when full (each is a RawEvent behind the
/// kernel's 8-byte header, 8-byte aligned).
fn ring_records(ring_buffer_bytes: u32) -> f64 {
    let bytes = match ring_buffer_bytes {
        0 => tracer_common::EVENTS_RING_BYTES,
        b => b,
    };
    let record = (size_of::<RawEvent>() + 8).next_multiple_of(8);
    f64::from(bytes) / record as f64
}

/// One line per missing hook or struct member: what is missing and what it costs.
fn report_degradations(probes: &Probes, hooks: &Hooks) {
    for hook in probes.hooks.iter().filter(|h| !h.attached) {
        hooks.say(
            log::Level::Warn,
            &format!(
                "no {} on this kernel ({}): without it, no {}",
                hook.tracepoint,
                hook.problem.as_deref().unwrap_or("not attached"),
                hook.provides
            ),
        );
    }
    for missing in &probes.missing_members {
        hooks.say(
            log::Level::Warn,
            &format!(
                "kernel has no {}: without it, no {}",
                missing.member, missing.cost
            ),
        );
    }
}
