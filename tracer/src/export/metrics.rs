//! Prometheus / OpenMetrics metrics of a tracing session: connection deaths by verdict and
//! cause, resets, retransmitted segments and keepalive probes, gauges of the sockets in
//! trouble now, and the tracer's own health. Served over HTTP at `/metrics` (OpenMetrics
//! to Prometheus, the classic text format to anything that does not ask for OpenMetrics).
//!
//! Memory is bounded whatever the traffic: the label sets are those of [`labels`], low
//! cardinality by design; every series beyond `max_series` is counted under the label set
//! `netns="overflow"` instead, and `tracer_metrics_overflow_total` counts what went there.

use std::{
    collections::{HashMap, HashSet},
    convert::Infallible,
    fmt::Debug,
    hash::Hash,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use anyhow::Result;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, body::Incoming, header, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::{Registry, Unit},
};
use tokio::net::TcpListener;

use super::labels::{PeerLabels, Subject};
use crate::{
    event::{Event, EventKind},
    kernel::RingStats,
    output::Sink,
    record::{End, Header, Lost},
    session::Snapshot,
    timeline::{Verdict, VerdictKind},
};

/// What the metrics carry and how many series they may hold.
#[derive(Debug, Clone, Copy)]
pub struct MetricsOptions {
    pub peer_labels: PeerLabels,
    /// Series of connection metrics (all families together) before new label sets go to
    /// the overflow series.
    pub max_series: usize,
    pub ring_buffer_bytes: u32,
}

impl Default for MetricsOptions {
    fn default() -> Self {
        Self {
            peer_labels: PeerLabels::None,
            max_series: 10_000,
            ring_buffer_bytes: tracer_common::EVENTS_RING_BYTES,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DeathLabels {
    verdict: &'static str,
    /// The socket error the application sees, or (local_abort) the kernel's reset reason.
    cause: String,
    #[prometheus(flatten)]
    subject: Subject,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct VerdictLabels {
    verdict: &'static str,
    #[prometheus(flatten)]
    subject: Subject,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ClassLabels {
    class: &'static str,
    #[prometheus(flatten)]
    subject: Subject,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResetLabels {
    direction: &'static str,
    /// The kernel's reason for a reset it sent (`enum sk_rst_reason`); empty for a reset
    /// received.
    reason: String,
    #[prometheus(flatten)]
    subject: Subject,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ProgramLabels {
    program: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

/// Label sets that carry a [`Subject`], which the series cap can replace by the overflow.
trait HasSubject: Clone + Hash + Eq + EncodeLabelSet + Debug + Send + Sync + 'static {
    fn overflow(&mut self);
}

macro_rules! has_subject {
    ($($t:ty),*) => {$(
        impl HasSubject for $t {
            fn overflow(&mut self) {
                self.subject = Subject::Overflow;
            }
        }
    )*};
}
has_subject!(DeathLabels, VerdictLabels, ClassLabels, ResetLabels);

impl HasSubject for Subject {
    fn overflow(&mut self) {
        *self = Subject::Overflow;
    }
}

/// The series budget shared by every connection counter.
struct Cap {
    limit: usize,
    used: usize,
    overflowed: Counter,
}

/// A family of counters whose new label sets are admitted while the budget lasts.
struct Capped<L> {
    family: Family<L, Counter>,
    admitted: HashSet<L>,
}

impl<L: HasSubject> Capped<L> {
    fn new(registry: &mut Registry, name: &str, help: &str) -> Self {
        let family = Family::default();
        registry.register(name, help, family.clone());
        Self {
            family,
            admitted: HashSet::new(),
        }
    }

    fn inc_by(&mut self, cap: &mut Cap, mut labels: L, by: u64) {
        if !self.admitted.contains(&labels) {
            if cap.used < cap.limit {
                cap.used += 1;
                self.admitted.insert(labels.clone());
            } else {
                labels.overflow();
                cap.overflowed.inc_by(by);
            }
        }
        self.family.get_or_create(&labels).inc_by(by);
    }
}

/// A gauge per subject, recomputed at each snapshot: subjects past the cap are summed into
/// the overflow series; subjects at zero are removed.
struct SubjectGauge {
    family: Family<Subject, Gauge>,
    present: HashSet<Subject>,
}

impl SubjectGauge {
    fn new(registry: &mut Registry, name: &str, help: &str) -> Self {
        let family = Family::default();
        registry.register(name, help, family.clone());
        Self {
            family,
            present: HashSet::new(),
        }
    }

    fn set(&mut self, counts: HashMap<Subject, i64>, limit: usize) {
        let mut capped: HashMap<Subject, i64> = HashMap::with_capacity(counts.len().min(limit));
        for (subject, n) in counts {
            let key = if capped.contains_key(&subject) || capped.len() < limit {
                subject
            } else {
                Subject::Overflow
            };
            *capped.entry(key).or_default() += n;
        }
        for gone in self.present.iter().filter(|s| !capped.contains_key(*s)) {
            self.family.remove(gone);
        }
        for (subject, n) in &capped {
            self.family.get_or_create(subject).set(*n);
        }
        self.present = capped.into_keys().collect();
    }
}

/// The OTLP exporter's own counters, exported with the rest.
#[derive(Clone, Default)]
pub struct OtlpCounters {
    /// Log records the collector accepted.
    pub exported: Counter,
    /// Log records dropped: the queue was full (oldest first).
    pub dropped_queue_full: Counter,
    /// Log records dropped: their batch failed every retry, or the collector refused it.
    pub dropped_export_failed: Counter,
    /// Export requests that failed (each is retried until its batch is dropped).
    pub failed_requests: Counter,
    /// Log records waiting in the queue.
    pub queued: Gauge,
}

struct State {
    registry: Registry,
    options: MetricsOptions,
    cap: Cap,
    deaths: Capped<DeathLabels>,
    verdicts: Capped<VerdictLabels>,
    connect_failures: Capped<VerdictLabels>,
    retransmitted: Capped<ClassLabels>,
    resets: Capped<ResetLabels>,
    keepalive_probes: Capped<Subject>,
    unresponsive: SubjectGauge,
    held: SubjectGauge,
    events: Vec<(EventKind, Counter)>,
    lost: Counter,
    filtered: Counter,
    skipped: Counter,
    rescued: Counter,
    ring_fill: Gauge<f64, std::sync::atomic::AtomicU64>,
    programs_attached: Gauge,
    program_seconds: Family<ProgramLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
    program_runs: Family<ProgramLabels, Counter>,
    timelines: Gauge,
    evicted: Counter,
    /// The last kernel-side figures, for counter increments.
    last_ring: RingStats,
    last_programs: HashMap<String, (u64, u64)>,
    last_evicted: u64,
}

/// The session's metrics, shared by the sink that updates them and the endpoint that
/// serves them.
#[derive(Clone)]
pub struct Metrics {
    state: Arc<Mutex<State>>,
}

impl Metrics {
    pub fn new(options: MetricsOptions) -> Metrics {
        let mut r = Registry::default();
        let overflowed = Counter::default();
        r.register(
            "tracer_metrics_overflow",
            "Observations counted under netns=\"overflow\" because the series cap \
             (--metrics-max-series) was reached",
            overflowed.clone(),
        );
        let deaths = Capped::new(
            &mut r,
            "tracer_connection_deaths",
            "Connections that died, by verdict and cause (the socket error the application \
             sees, or the kernel's reset reason for local_abort)",
        );
        let verdicts = Capped::new(
            &mut r,
            "tracer_verdicts",
            "Verdicts reached, deaths and warnings alike (peer_unresponsive, dead_socket_held)",
        );
        let connect_failures = Capped::new(
            &mut r,
            "tracer_connect_failures",
            "Connects that failed (connect_timeout, connection_refused)",
        );
        let retransmitted = Capped::new(
            &mut r,
            "tracer_retransmitted_segments",
            "Segments retransmitted, by why (rto, tlp, fast, syn, ...)",
        );
        let resets = Capped::new(
            &mut r,
            "tracer_resets",
            "Resets sent (with the kernel's reason) and received",
        );
        let keepalive_probes = Capped::new(
            &mut r,
            "tracer_keepalive_probes",
            "Keepalive probes sent without an answer yet",
        );
        let unresponsive = SubjectGauge::new(
            &mut r,
            "tracer_peer_unresponsive",
            "Sockets now in a retransmit streak past the peer_unresponsive warning",
        );
        let held = SubjectGauge::new(
            &mut r,
            "tracer_dead_sockets_held",
            "Sockets the kernel ended that their process still holds past the threshold",
        );
        let events_family = Family::<KindLabels, Counter>::default();
        r.register(
            "tracer_events",
            "Events received from the kernel, by kind",
            events_family.clone(),
        );
        let events = EventKind::ALL
            .iter()
            .map(|&kind| {
                let labels = KindLabels { kind: kind.name() };
                (kind, events_family.get_or_create_owned(&labels))
            })
            .collect();
        let mut counter = |name: &str, help: &str| {
            let c = Counter::default();
            r.register(name, help, c.clone());
            c
        };
        let lost = counter(
            "tracer_events_lost",
            "Events lost because the kernel ring buffer was full",
        );
        let filtered = counter(
            "tracer_events_filtered",
            "Events the kernel programs filtered out (--pid, --port, --netns, ...)",
        );
        let skipped = counter(
            "tracer_kernel_skips",
            "Program runs the kernel skipped because one was already running on that CPU \
             (recursion misses)",
        );
        let rescued = counter(
            "tracer_kernel_skips_rescued",
            "Of the kernel's skips, those a nested-context twin program handled",
        );
        let evicted = counter(
            "tracer_timelines_evicted",
            "Timelines of sockets never seen to end, dropped to bound memory",
        );
        let ring_fill = Gauge::<f64, _>::default();
        r.register_with_unit(
            "tracer_ring_buffer_fill",
            "The fullest the kernel ring buffer was found at a read over the last second",
            Unit::Other("ratio".into()),
            ring_fill.clone(),
        );
        let ring_size = Gauge::<i64>::default();
        ring_size.set(i64::from(options.ring_buffer_bytes));
        r.register_with_unit(
            "tracer_ring_buffer_size",
            "Size of the kernel ring buffer",
            Unit::Bytes,
            ring_size,
        );
        let programs_attached = Gauge::default();
        r.register(
            "tracer_programs_attached",
            "Kernel hooks with a program attached",
            programs_attached.clone(),
        );
        let program_seconds = Family::default();
        r.register_with_unit(
            "tracer_program_run",
            "Kernel CPU time spent in each program (counted while kernel.bpf_stats_enabled=1)",
            Unit::Seconds,
            program_seconds.clone(),
        );
        let program_runs = Family::default();
        r.register(
            "tracer_program_runs",
            "Runs of each program (counted while kernel.bpf_stats_enabled=1)",
            program_runs.clone(),
        );
        let timelines = Gauge::default();
        r.register(
            "tracer_timelines",
            "Sockets with a timeline held now",
            timelines.clone(),
        );
        let build = Family::<VersionLabels, Gauge>::default();
        build
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        r.register("tracer_build_info", "The tracer's version", build);
        let state = State {
            registry: r,
            options,
            cap: Cap {
                limit: options.max_series,
                used: 0,
                overflowed,
            },
            deaths,
            verdicts,
            connect_failures,
            retransmitted,
            resets,
            keepalive_probes,
            unresponsive,
            held,
            events,
            lost,
            filtered,
            skipped,
            rescued,
            ring_fill,
            programs_attached,
            program_seconds,
            program_runs,
            timelines,
            evicted,
            last_ring: RingStats::default(),
            last_programs: HashMap::new(),
            last_evicted: 0,
        };
        Metrics {
            state: Arc::new(Mutex::new(state)),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves counters that are still counters.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers the OTLP exporter's counters; it keeps the returned handles.
    pub fn otlp_counters(&self) -> OtlpCounters {
        let counters = OtlpCounters::default();
        let mut state = self.state();
        let r = &mut state.registry;
        r.register(
            "tracer_otlp_exported_records",
            "Log records the OTLP collector accepted",
            counters.exported.clone(),
        );
        let dropped = Family::<ReasonLabels, Counter>::default();
        r.register(
            "tracer_otlp_dropped_records",
            "Log records dropped: queue_full (the collector was slower than the records, \
             oldest dropped first) or export_failed (every retry failed, or refused)",
            dropped.clone(),
        );
        // The family's counters and these handles are the same counters (both reasons are
        // exported from the start, at 0).
        let queue_full = dropped.get_or_create_owned(&ReasonLabels {
            reason: "queue_full",
        });
        let export_failed = dropped.get_or_create_owned(&ReasonLabels {
            reason: "export_failed",
        });
        r.register(
            "tracer_otlp_failed_requests",
            "OTLP export requests that failed (their batch is retried, then dropped)",
            counters.failed_requests.clone(),
        );
        r.register(
            "tracer_otlp_queued_records",
            "Log records waiting for the OTLP collector",
            counters.queued.clone(),
        );
        OtlpCounters {
            dropped_queue_full: queue_full,
            dropped_export_failed: export_failed,
            ..counters
        }
    }

    /// The exposition: OpenMetrics, or the classic Prometheus text format (0.0.4).
    pub fn render(&self, openmetrics: bool) -> String {
        let mut text = String::new();
        encode(&mut text, &self.state().registry).expect("writing to a String cannot fail");
        if openmetrics {
            text
        } else {
            classic_text(&text)
        }
    }

    /// The sink that feeds these metrics from a session.
    pub fn sink(&self) -> MetricsSink {
        MetricsSink {
            metrics: self.clone(),
        }
    }
}

/// The classic Prometheus text format (0.0.4) of an OpenMetrics exposition: counters are
/// named with their `_total` in HELP and TYPE, and there are no UNIT lines or EOF marker.
/// What `promtool check metrics` and plain scrapers read.
pub fn classic_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let name = if kind == "counter" {
                format!("{name}_total")
            } else {
                name.to_owned()
            };
            if let Some(h) = help.take() {
                let text = h.split_once(' ').map_or("", |(_, text)| text);
                out += &format!("# HELP {name} {text}\n");
            }
            let kind = if kind == "unknown" { "untyped" } else { kind };
            out += &format!("# TYPE {name} {kind}\n");
            continue;
        }
        out += line;
        out.push('\n');
    }
    out
}

/// Feeds [`Metrics`] from a tracing session.
pub struct MetricsSink {
    metrics: Metrics,
}

impl Sink for MetricsSink {
    fn header(&mut self, header: &Header) -> Result<()> {
        let attached = header.hooks.iter().filter(|h| h.attached).count();
        self.metrics.state().programs_attached.set(attached as i64);
        Ok(())
    }

    fn event(&mut self, event: &Event) -> Result<()> {
        let mut guard = self.metrics.state();
        let s = &mut *guard;
        if let Some((_, c)) = s.events.iter().find(|(k, _)| *k == event.kind) {
            c.inc();
        }
        let subject = || Subject::of(&event.conn, event.process.as_ref(), s.options.peer_labels);
        match event.kind {
            EventKind::Retransmit => {
                let labels = ClassLabels {
                    class: event.class.map_or("unknown", |c| c.name()),
                    subject: subject(),
                };
                let segs = u64::from(event.segs.unwrap_or(1).max(1));
                s.retransmitted.inc_by(&mut s.cap, labels, segs);
            }
            EventKind::ResetSent | EventKind::ResetReceived => {
                let sent = event.kind == EventKind::ResetSent;
                let labels = ResetLabels {
                    direction: if sent { "sent" } else { "received" },
                    reason: event
                        .reason
                        .as_ref()
                        .map_or_else(String::new, |r| r.name().to_owned()),
                    subject: subject(),
                };
                s.resets.inc_by(&mut s.cap, labels, 1);
            }
            EventKind::KeepaliveProbe => {
                let labels = subject();
                s.keepalive_probes.inc_by(&mut s.cap, labels, 1);
            }
            _ => {}
        }
        Ok(())
    }

    fn verdict(&mut self, v: &Verdict) -> Result<()> {
        let mut guard = self.metrics.state();
        let s = &mut *guard;
        let subject = Subject::of(&v.conn, v.process.as_ref(), s.options.peer_labels);
        let verdict = v.verdict.name();
        let labels = VerdictLabels {
            verdict,
            subject: subject.clone(),
        };
        s.verdicts.inc_by(&mut s.cap, labels.clone(), 1);
        if matches!(
            v.verdict,
            VerdictKind::ConnectTimeout | VerdictKind::ConnectionRefused
        ) {
            s.connect_failures.inc_by(&mut s.cap, labels, 1);
        }
        if v.verdict.is_death() {
            let labels = DeathLabels {
                verdict,
                cause: cause(v),
                subject,
            };
            s.deaths.inc_by(&mut s.cap, labels, 1);
        }
        Ok(())
    }

    fn lost(&mut self, _lost: &Lost) -> Result<()> {
        Ok(())
    }

    fn end(&mut self, _end: &End) -> Result<()> {
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        Ok(())
    }

    fn snapshot(&mut self, snapshot: &Snapshot<'_>) -> Result<()> {
        let mut guard = self.metrics.state();
        let s = &mut *guard;
        let (now, last) = (snapshot.ring, s.last_ring);
        s.lost.inc_by(now.lost.saturating_sub(last.lost));
        s.filtered
            .inc_by(now.filtered.saturating_sub(last.filtered));
        s.skipped.inc_by(now.skipped.saturating_sub(last.skipped));
        s.rescued.inc_by(now.rescued.saturating_sub(last.rescued));
        s.last_ring = now;
        s.ring_fill.set(snapshot.ring_fill);
        for p in snapshot.programs {
            let (time, runs) = s.last_programs.get(&p.name).copied().unwrap_or((0, 0));
            if p.run_count == 0 && runs == 0 {
                continue; // bpf_stats never on: no series that would only say 0
            }
            let labels = ProgramLabels {
                program: p.name.clone(),
            };
            s.program_seconds
                .get_or_create(&labels)
                .inc_by(p.run_time_ns.saturating_sub(time) as f64 / 1e9);
            s.program_runs
                .get_or_create(&labels)
                .inc_by(p.run_count.saturating_sub(runs));
            s.last_programs
                .insert(p.name.clone(), (p.run_time_ns, p.run_count));
        }
        let stats = snapshot.engine.stats();
        s.timelines.set(stats.tracked as i64);
        s.evicted
            .inc_by(stats.evicted.saturating_sub(s.last_evicted));
        s.last_evicted = stats.evicted;
        let mut unresponsive: HashMap<Subject, i64> = HashMap::new();
        let mut held: HashMap<Subject, i64> = HashMap::new();
        for t in snapshot.engine.timelines() {
            let counts = if t.unresponsive_now() {
                &mut unresponsive
            } else if t.dead_socket_held_now() {
                &mut held
            } else {
                continue;
            };
            let subject = Subject::of(&t.conn, t.process.as_ref(), s.options.peer_labels);
            *counts.entry(subject).or_default() += 1;
        }
        let limit = s.options.max_series;
        s.unresponsive.set(unresponsive, limit);
        s.held.set(held, limit);
        Ok(())
    }
}

/// A death's cause label: the socket error the application sees (ETIMEDOUT, ECONNRESET,
/// ...), or for local_abort the kernel's reason for the reset it sent.
fn cause(v: &Verdict) -> String {
    if v.verdict == VerdictKind::LocalAbort {
        return v
            .facts
            .reset_reason
            .as_ref()
            .map_or_else(|| "unknown".to_owned(), |r| r.name().to_owned());
    }
    v.facts
        .error
        .map_or_else(|| "unknown".to_owned(), |e| e.to_string())
}

/// At most this many scrapes served at once; more connections wait in the kernel's queue.
const MAX_CONNECTIONS: usize = 16;

/// Serves `/metrics` on `listener` until the process ends.
pub async fn serve(listener: TcpListener, metrics: Metrics) {
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of descriptors, or a connection reset while queued: try again soon.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if open.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
            continue; // dropped: closes the connection
        }
        open.fetch_add(1, Ordering::Relaxed);
        let (metrics, open) = (metrics.clone(), open.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let response = respond(&metrics, &req);
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service)
                .await;
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

fn respond(metrics: &Metrics, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, kind: &'static str, body: String| {
        Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, kind)
            .body(Full::new(Bytes::from(body)))
            .expect("a valid response")
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET /metrics\n".into(),
        );
    }
    match req.uri().path() {
        "/metrics" => {
            let openmetrics = req
                .headers()
                .get(header::ACCEPT)
                .and_then(|a| a.to_str().ok())
                .is_some_and(|a| a.contains("application/openmetrics-text"));
            if openmetrics {
                reply(
                    StatusCode::OK,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    metrics.render(true),
                )
            } else {
                reply(
                    StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    metrics.render(false),
                )
            }
        }
        "/" => reply(
            StatusCode::OK,
            "text/plain",
            "tracer agent: metrics at /metrics\n".into(),
        ),
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        event::{Connection, Errno, TcpState},
        testing::Sock,
        timeline::{Engine, Thresholds, VerdictFacts},
    };

    fn verdict(kind: VerdictKind, netns: u32, raddr: &str) -> Verdict {
        Verdict {
            ts_ns: 1,
            verdict: kind,
            socket: crate::event::SocketId(7),
            conn: Connection {
                raddr: raddr.parse().unwrap(),
                rport: 80,
                netns,
                ..Connection::UNKNOWN
            },
            process: None,
            explanation: String::new(),
            facts: VerdictFacts {
                error: Some(Errno::ECONNREFUSED),
                ..VerdictFacts::default()
            },
            evidence: Vec::new(),
            inferred_from: None,
        }
    }

    fn sample(text: &str, prefix: &str) -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn deaths_are_counted_by_verdict_cause_and_netns() {
        let metrics = Metrics::new(MetricsOptions::default());
        let mut sink = metrics.sink();
        for _ in 0..2 {
            sink.verdict(&verdict(VerdictKind::ConnectionRefused, 11, "10.0.0.2"))
                .unwrap();
        }
        let text = metrics.render(true);
        assert_eq!(
            sample(&text, "tracer_connection_deaths_total"),
            [
                r#"tracer_connection_deaths_total{verdict="connection_refused",cause="ECONNREFUSED",netns="11"} 2"#
            ]
        );
        assert_eq!(
            sample(&text, "tracer_connect_failures_total"),
            [r#"tracer_connect_failures_total{verdict="connection_refused",netns="11"} 2"#]
        );
        assert!(!text.contains("10.0.0.2"), "no address by default");
    }

    #[test]
    fn peer_labels_past_the_cap_go_to_the_overflow_series_and_are_counted() {
        let metrics = Metrics::new(MetricsOptions {
            peer_labels: PeerLabels::Address,
            max_series: 3,
            ..MetricsOptions::default()
        });
        let mut sink = metrics.sink();
        // Each verdict is two series (verdicts, deaths): 3 fit the budget.
        for peer in 1..=10 {
            let v = verdict(VerdictKind::PeerReset, 11, &format!("10.0.0.{peer}"));
            sink.verdict(&v).unwrap();
        }
        let text = metrics.render(true);
        let verdicts = sample(&text, "tracer_verdicts_total");
        let deaths = sample(&text, "tracer_connection_deaths_total");
        assert_eq!(verdicts.len() + deaths.len(), 3 + 2, "{text}");
        assert!(verdicts.contains(
            &r#"tracer_verdicts_total{verdict="peer_reset",netns="overflow"} 8"#.to_owned()
        ));
        assert!(deaths.contains(
            &r#"tracer_connection_deaths_total{verdict="peer_reset",cause="ECONNREFUSED",netns="overflow"} 9"#
                .to_owned()
        ));
        assert!(text.contains("tracer_metrics_overflow_total 17"), "{text}");
        // Known series keep counting past the cap.
        sink.verdict(&verdict(VerdictKind::PeerReset, 11, "10.0.0.1"))
            .unwrap();
        let text = metrics.render(true);
        assert!(text.contains(
            r#"tracer_verdicts_total{verdict="peer_reset",netns="11",peer_address="10.0.0.1"} 2"#
        ));
        assert!(text.contains("tracer_metrics_overflow_total 17"), "{text}");
    }

    #[test]
    fn events_count_segments_resets_and_probes() {
        let metrics = Metrics::new(MetricsOptions::default());
        let mut sink = metrics.sink();
        let socket = Sock::new(5)
            .established()
            .rtos(1)
            .probe(1)
            .reset_received(TcpState::ESTABLISHED);
        for e in &socket.events {
            sink.event(e).unwrap();
        }
        let text = metrics.render(true);
        assert!(
            text.contains(r#"tracer_events_total{kind="retransmit"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"tracer_retransmitted_segments_total{class="rto",netns="4026531840"} 1"#
            )
        );
        assert!(text.contains(r#"tracer_keepalive_probes_total{netns="4026531840"} 1"#));
        assert!(text.contains(
            r#"tracer_resets_total{direction="received",reason="",netns="4026531840"} 1"#
        ));
    }

    fn snapshot(sink: &mut MetricsSink, engine: &Engine) {
        sink.snapshot(&Snapshot {
            engine,
            ring: RingStats {
                lost: 3,
                ..RingStats::default()
            },
            programs: &[],
            ring_fill: 0.5,
        })
        .unwrap();
    }

    #[test]
    fn the_unresponsive_gauge_rises_and_falls_with_the_streak() {
        let metrics = Metrics::new(MetricsOptions::default());
        let mut sink = metrics.sink();
        let mut engine = Engine::new(Thresholds::default());
        let mut verdicts = Vec::new();
        let warned = Sock::new(1).established().rtos(3);
        let now = warned.now + 1_000_000_000;
        for e in warned.events.clone() {
            engine.push(e, &mut verdicts);
        }
        engine.tick(now, &mut verdicts);
        assert_eq!(verdicts[0].verdict, VerdictKind::PeerUnresponsive);
        snapshot(&mut sink, &engine);
        let text = metrics.render(true);
        assert!(
            text.contains(r#"tracer_peer_unresponsive{netns="4026531840"} 1"#),
            "{text}"
        );
        assert!(text.contains("tracer_events_lost_total 3"));
        assert!(text.contains("tracer_ring_buffer_fill_ratio 0.5"));
        let mut answered = warned.clone();
        answered.events.clear();
        let answered = answered.progress();
        for e in answered.events {
            engine.push(e, &mut verdicts);
        }
        engine.tick(now + 1_000_000_000, &mut verdicts);
        snapshot(&mut sink, &engine);
        let text = metrics.render(true);
        assert!(!text.contains("tracer_peer_unresponsive{"), "{text}");
        assert!(text.contains("tracer_events_lost_total 3"), "counted once");
    }

    #[test]
    fn the_classic_text_names_counters_with_total() {
        let metrics = Metrics::new(MetricsOptions::default());
        let v = verdict(VerdictKind::ConnectionRefused, 11, "10.0.0.2");
        metrics.sink().verdict(&v).unwrap();
        let text = metrics.render(false);
        assert!(text.contains("# TYPE tracer_connection_deaths_total counter\n"));
        assert!(text.contains("# HELP tracer_connection_deaths_total Connections"));
        assert!(text.contains("# TYPE tracer_ring_buffer_size_bytes gauge\n"));
        assert!(!text.contains("# EOF") && !text.contains("# UNIT"));
    }
}
