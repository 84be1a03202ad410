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
    identity::{CgroupDecisions, Host, OwnerIdentities, SessionStats, SystemHost},
    kernel::{DRAIN_INTERVAL, Probes, ProgramStats, RingStats, host},
    output::{Flow, Sink, Status},
    record::{End, FORMAT, Header, LossCause, Lost, Reconciled, RecordedThresholds, VERSION},
    sweep::{self, mib},
    timeline::{Engine, EngineStats, Verdict, VerdictKind},
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
    pub identity: SessionStats,
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

/// Decoded events on their way to the engine and the sinks: what a session does with every
/// ring-buffer record (public for the live-path bench, `benches/live.rs`).
pub struct Pipeline<H: Host = SystemHost> {
    facts: KernelFacts,
    /// Owners found by the sweep, for sockets the kernel programs never saw in their
    /// owner's context (opened before tracing started).
    owners: BTreeMap<SocketId, Owner>,
    engine: Engine,
    verdicts: Vec<Verdict>,
    totals: Totals,
    /// Deaths the kernel counts in TCPAbortOnTimeout, traced per namespace.
    timeout_deaths: BTreeMap<u32, u64>,
    /// Owners' containers, pods and units; the owner filter.
    identities: OwnerIdentities<H>,
    /// The most records one read found since the last snapshot.
    peak_batch: usize,
}

impl<H: Host> Pipeline<H> {
    pub fn new(facts: KernelFacts, engine: Engine, identities: OwnerIdentities<H>) -> Self {
        Pipeline {
            facts,
            owners: BTreeMap::new(),
            engine,
            verdicts: Vec::new(),
            totals: Totals::default(),
            timeout_deaths: BTreeMap::new(),
            identities,
            peak_batch: 0,
        }
    }

    /// Counts so far.
    pub fn totals(&self) -> Totals {
        Totals {
            engine: self.engine.stats(),
            identity: self.identities.stats(),
            ..self.totals
        }
    }

    fn event(&mut self, mut event: Box<Event>, sinks: &mut [&mut dyn Sink]) -> Result<()> {
        if event.process.is_none()
            && let Some(owner) = event.socket.and_then(|s| self.owners.get(&s))
        {
            event.process = Some(owner.clone());
        }
        // Named by the socket's best-known tuple and owner before anyone shows it.
        self.engine.name(&mut event);
        if !self.identities.event(&mut event) {
            return Ok(());
        }
        self.totals.events += 1;
        sinks.event(&event)?;
        self.engine.push_boxed(event, &mut self.verdicts);
        Ok(())
    }

    /// Decodes a batch of ring-buffer records (draining `raw`), hands them on, and flushes
    /// the sinks.
    pub fn raw(&mut self, raw: &mut Vec<RawEvent>, sinks: &mut [&mut dyn Sink]) -> Result<()> {
        self.peak_batch = self.peak_batch.max(raw.len());
        // Each record handed on as it is decoded, in the box it waits in for reordering: an
        // event is 376 bytes, every move counts.
        let mut burst = Vec::new();
        for r in raw.drain(..) {
            if r.probe_first == 0 {
                if let Some(event) = self.facts.decode_boxed(&r) {
                    self.event(event, sinks)?;
                }
            } else {
                // A run of probes in one record (see `KernelFacts::decode_into`).
                self.facts.decode_into(&r, &mut |e| burst.push(Box::new(e)));
                for event in burst.drain(..) {
                    self.event(event, sinks)?;
                }
            }
        }
        self.flush(sinks)
    }

    /// Hands reached verdicts to the sinks and flushes them.
    pub fn flush(&mut self, sinks: &mut [&mut dyn Sink]) -> Result<()> {
        for mut v in self.verdicts.drain(..) {
            self.identities.verdict(&mut v);
            self.totals.verdicts += 1;
            if gave_up_on_timeout(v.verdict) {
                *self.timeout_deaths.entry(v.conn.netns).or_default() += 1;
            }
            sinks.verdict(&v)?;
        }
        sinks.flush()
    }
}

/// The deaths tcp_write_err() counts in TCPAbortOnTimeout: the kernel gave up because
/// retransmits, SYNs or probes went unanswered (ICMP-refused connects do not go through it).
fn gave_up_on_timeout(kind: VerdictKind) -> bool {
    match kind {
        VerdictKind::KeepaliveExhausted
        | VerdictKind::RetriesExhausted
        | VerdictKind::ConnectTimeout
        | VerdictKind::OrphanTimeout => true,
        VerdictKind::ConnectionRefused
        | VerdictKind::PeerReset
        | VerdictKind::LocalAbort
        | VerdictKind::PeerUnresponsive
        | VerdictKind::DeadSocketHeld
        | VerdictKind::CloseWaitHeld
        | VerdictKind::ReceiverStalled
        | VerdictKind::RetryStorm => false,
    }
}

/// The kernel's count of timeout deaths per namespace at the start, to compare with the
/// trace's at the end. Only meaningful when every event of a namespace is traced: filters
/// other than --netns (ports, addresses, processes, containers) hide some of them.
struct Reconciliation {
    netns: Vec<u32>,
    baseline: BTreeMap<u32, u64>,
}

impl Reconciliation {
    fn start(options: &crate::kernel::ProbeOptions) -> Option<Reconciliation> {
        let partial = !options.ports.is_empty()
            || !options.addrs.is_empty()
            || !options.pids.is_empty()
            || options.comm.is_some()
            || options.cgroup_filter;
        (!partial).then(|| Reconciliation {
            netns: options.netns.clone(),
            baseline: mib::timeout_deaths(&options.netns),
        })
    }

    /// The kernel's counts now; compared with the trace's once the last events are in.
    fn measure(self) -> Measured {
        Measured {
            now: mib::timeout_deaths(&self.netns),
            baseline: self.baseline,
        }
    }
}

struct Measured {
    baseline: BTreeMap<u32, u64>,
    now: BTreeMap<u32, u64>,
}

impl Measured {
    /// Namespaces created after the start count from zero; those gone by the end cannot
    /// be read and are left out.
    fn against(&self, traced: &BTreeMap<u32, u64>) -> Vec<Reconciled> {
        self.now
            .iter()
            .filter_map(|(&netns, &now)| {
                let kernel = now.saturating_sub(self.baseline.get(&netns).copied().unwrap_or(0));
                let traced = traced.get(&netns).copied().unwrap_or(0);
                (kernel > 0 || traced > 0).then_some(Reconciled {
                    netns,
                    kernel_timeout_deaths: kernel,
                    traced_timeout_deaths: traced,
                })
            })
            .collect()
    }
}

/// Sockets already open: `sweep` events, and their owners for later events.
fn sweep_existing(
    pipeline: &mut Pipeline<SystemHost>,
    netns: &[u32],
    close_wait: Duration,
    filter: &EventFilter,
    sinks: &mut [&mut dyn Sink],
    hooks: &Hooks,
) -> Result<()> {
    let snapshot = match sweep::snapshot(
        netns,
        sweep::FlagLimits {
            idle: SWEEP_IDLE_THRESHOLD,
            close_wait,
        },
    ) {
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
            pipeline.event(Box::new(event), sinks)?;
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
    let owner_filter = filter::owner_filter(&session.filters)?;
    let mut thresholds = session.thresholds.thresholds(None);
    let close_wait = Duration::from_nanos(thresholds.close_wait_after_ns);
    let mut probes = Probes::load(&options)?;
    thresholds.releases_seen = probes
        .hooks
        .iter()
        .any(|h| h.tracepoint == "tcp_destroy_sock" && h.attached);
    // Before the header: the owner filter's decisions are in the kernel once tracing shows.
    let identities = OwnerIdentities::new(
        session.identity.config(),
        owner_filter,
        probes
            .cgroup_decisions()?
            .map(|m| Box::new(m) as Box<dyn CgroupDecisions>),
    )?;
    let facts = KernelFacts {
        hz: host::kernel_hz()?,
        reset_reasons: probes.reset_reasons.clone(),
        drop_reasons: probes.drop_reasons.clone(),
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
    let mut pipeline = Pipeline::new(facts, Engine::new(thresholds), identities);
    // The probes are attached first: nothing between the sweep and the first event is missed.
    if !session.no_sweep {
        let filter = EventFilter::new(&session.filters)?;
        sweep_existing(
            &mut pipeline,
            &options.netns,
            close_wait,
            &filter,
            sinks,
            hooks,
        )?;
    }
    let reconciliation = Reconciliation::start(&options);
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
                let now = host::boottime_ns();
                pipeline.engine.tick(now, &mut pipeline.verdicts);
                pipeline.identities.tick();
                report_lost(&probes, &mut pipeline.totals, sinks)?;
                ticks += 1;
                if ticks.is_multiple_of(STATUS_EVERY_TICKS) {
                    let t = &pipeline.totals;
                    let status = Status {
                        events_per_sec: (t.events - events_at_last_status) as f64
                            / (TICK.as_secs_f64() * STATUS_EVERY_TICKS as f64),
                        sockets: pipeline.engine.stats().tracked,
                        verdicts: t.verdicts,
                        lost: t.ring.lost + t.ring.unhandled(),
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
                if sinks.tick(&pipeline.engine, now)? == Flow::Stop {
                    reason = "quit";
                    break;
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
    // The kernel's count first: every death it counted is in the ring buffer by now.
    let measured = reconciliation.map(Reconciliation::measure);
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
    totals.identity = pipeline.identities.stats();
    if let Some(stats) = pipeline.identities.resolver_stats() {
        log::debug!("cgroup identity: {stats:?}");
    }
    let end = End {
        ts_ns: now,
        events: totals.events,
        verdicts: totals.verdicts,
        lost: totals.ring.lost,
        kernel_skipped: totals.ring.unhandled(),
        kernel_rescued: totals.ring.rescued,
        reconciled: measured
            .map(|m| m.against(&pipeline.timeout_deaths))
            .unwrap_or_default(),
        reason: reason.into(),
    };
    sinks.end(&end)?;
    Ok(totals)
}

/// Lost events are part of the output, never silent: to a full ring buffer, or to hits the
/// kernel skipped and no twin handled.
fn report_lost(probes: &Probes, totals: &mut Totals, sinks: &mut [&mut dyn Sink]) -> Result<()> {
    let now = probes.ring_stats()?;
    let before = totals.ring;
    for (cause, was, is) in [
        (LossCause::RingBufferFull, before.lost, now.lost),
        (
            LossCause::KernelSkipped,
            before.unhandled(),
            now.unhandled(),
        ),
    ] {
        if is > was {
            sinks.lost(&Lost {
                ts_ns: host::boottime_ns(),
                cause,
                lost: is - was,
                total: is,
            })?;
            sinks.flush()?;
        }
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

/// One line per missing hook, degraded hook or struct member: what is missing and what it
/// costs.
fn report_degradations(probes: &Probes, hooks: &Hooks) {
    for hook in &probes.hooks {
        if !hook.attached {
            hooks.say(
                log::Level::Warn,
                &format!(
                    "no {} on this kernel ({}): without it, no {}",
                    hook.tracepoint,
                    hook.problem.as_deref().unwrap_or("not attached"),
                    hook.provides
                ),
            );
        } else if let Some(lost) = &hook.degraded {
            hooks.say(
                log::Level::Warn,
                &format!("{} on this kernel gives no {lost}", hook.tracepoint),
            );
        }
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
