//! `tracer agent`: a long-running tracing session for every node of a fleet. Nothing on
//! stdout: verdicts and counts go to Prometheus (`/metrics`) and, when asked, to an
//! OpenTelemetry collector; the agent's own state goes to stderr as logfmt lines
//! (`level=info msg="..." key=value`), one per line, which journald and `kubectl logs`
//! keep as they are.
//!
//! The same session as `live`, with other sinks: the same in-kernel filters and
//! thresholds, the same memory bounds. SIGTERM and SIGINT detach and exit 0; SIGHUP
//! reopens outputs (the collector's connection, its address resolved again).

use std::{
    fmt::Write as _,
    io::Write as _,
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use clap::Args;
use tokio::net::TcpListener;

use crate::{
    cli::SessionArgs,
    event::Event,
    export::{
        labels::PeerLabels,
        metrics::{self, Metrics, MetricsOptions},
        otlp::{Endpoint, OtlpOptions, OtlpSink},
    },
    output::{Sink, Status},
    record::{End, Header, Lost},
    session::{self, Hooks},
    timeline::Verdict,
};

#[derive(Args, Debug, Clone)]
pub struct AgentArgs {
    /// Serve Prometheus / OpenMetrics metrics at http://ADDR:PORT/metrics.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:9464")]
    pub metrics_listen: SocketAddr,
    /// Label connection metrics with the peer too (address, or address and port). Off by
    /// default: a series per peer.
    #[arg(long, value_enum, value_name = "LABELS", default_value_t = PeerLabels::None)]
    pub metrics_peer_labels: PeerLabels,
    /// At most this many series of connection metrics; beyond, they are counted under
    /// netns="overflow" (and in tracer_metrics_overflow_total).
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub metrics_max_series: usize,
    /// Send every verdict as an OpenTelemetry log record to this OTLP/HTTP collector
    /// (protobuf), e.g. http://127.0.0.1:4318 (/v1/logs is added to a base URL).
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// Send every event to the collector too, not only verdicts.
    #[arg(long, requires = "otlp_endpoint")]
    pub otlp_events: bool,
    /// Log records held while the collector is slow or unreachable; past it, the oldest
    /// are dropped (and counted in tracer_otlp_dropped_records_total).
    #[arg(long, value_name = "N", default_value_t = 8192)]
    pub otlp_queue: usize,
    /// Log the agent's state (events, verdicts, losses, queue) this often.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = crate::cli::parse_duration)]
    pub log_every: Duration,
    #[command(flatten)]
    pub session: SessionArgs,
}

pub async fn run(args: AgentArgs) -> Result<()> {
    let endpoint = args
        .otlp_endpoint
        .as_deref()
        .map(Endpoint::parse)
        .transpose()?;
    let metrics = Metrics::new(MetricsOptions {
        peer_labels: args.metrics_peer_labels,
        max_series: args.metrics_max_series,
        ring_buffer_bytes: args.session.kernel.ring_buffer,
    });
    let listener = TcpListener::bind(args.metrics_listen)
        .await
        .with_context(|| format!("cannot listen on {} for metrics", args.metrics_listen))?;
    let listening = listener.local_addr()?;
    tokio::spawn(metrics::serve(listener, metrics.clone()));
    log(
        log::Level::Info,
        "serving metrics",
        &[("url", &format!("http://{listening}/metrics"))],
    );
    let mut otlp = endpoint.map(|endpoint| {
        let url = args.otlp_endpoint.clone().unwrap_or_default();
        log(
            log::Level::Info,
            "exporting verdicts over OTLP",
            &[
                ("endpoint", &url),
                ("events", &args.otlp_events.to_string()),
                ("queue", &args.otlp_queue.to_string()),
            ],
        );
        OtlpSink::start(
            OtlpOptions {
                endpoint,
                events: args.otlp_events,
                max_queue: args.otlp_queue,
            },
            metrics.otlp_counters(),
        )
    });
    let mut metrics_sink = metrics.sink();
    let mut state = StateLog::new(args.log_every);
    let mut sinks: Vec<&mut dyn Sink> = vec![&mut metrics_sink, &mut state];
    if let Some(otlp) = otlp.as_mut() {
        sinks.push(otlp);
    }
    let hooks = Hooks {
        reopen_on_hangup: true,
        say: Some(|level, message| log(level, message, &[])),
    };
    let totals = session::run_with(&args.session, &mut sinks, &hooks).await?;
    drop(sinks);
    if let Some(otlp) = otlp {
        otlp.shutdown(Duration::from_secs(5)).await;
    }
    log(
        log::Level::Info,
        "stopped",
        &[
            ("events", &totals.events.to_string()),
            ("verdicts", &totals.verdicts.to_string()),
            ("lost", &totals.ring.lost.to_string()),
        ],
    );
    Ok(())
}

/// One logfmt line on stderr: `level=info msg="..." key=value ...`. Under systemd
/// (JOURNAL_STREAM set) the line starts with its syslog priority (`<6>`), which journald
/// reads as the entry's priority.
pub fn log(level: log::Level, message: &str, fields: &[(&str, &str)]) {
    let mut line = String::new();
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        let priority = match level {
            log::Level::Error => 3,
            log::Level::Warn => 4,
            log::Level::Info => 6,
            log::Level::Debug | log::Level::Trace => 7,
        };
        let _ = write!(line, "<{priority}>");
    }
    let _ = write!(
        line,
        "level={} msg={}",
        level.as_str().to_ascii_lowercase(),
        logfmt_value(message)
    );
    for (key, value) in fields {
        let _ = write!(line, " {key}={}", logfmt_value(value));
    }
    line.push('\n');
    // One write per line: lines from several threads never interleave.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// A logfmt value: bare when it needs no quotes, else quoted with `"` and `\` escaped.
fn logfmt_value(value: &str) -> String {
    if !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '=' && c != '\\')
    {
        return value.to_owned();
    }
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// Logs the agent's state every so often (and each loss as it happens).
struct StateLog {
    every: Duration,
    last: Instant,
    events: u64,
    verdicts: u64,
}

impl StateLog {
    fn new(every: Duration) -> Self {
        Self {
            every,
            last: Instant::now(),
            events: 0,
            verdicts: 0,
        }
    }
}

impl Sink for StateLog {
    fn header(&mut self, header: &Header) -> Result<()> {
        let attached = header.hooks.iter().filter(|h| h.attached).count();
        log(
            log::Level::Info,
            "attached",
            &[
                ("hooks", &attached.to_string()),
                ("hooks_total", &header.hooks.len().to_string()),
                ("kernel", &header.kernel_release),
                ("host", &header.hostname),
            ],
        );
        Ok(())
    }

    fn event(&mut self, _event: &Event) -> Result<()> {
        self.events += 1;
        Ok(())
    }

    fn verdict(&mut self, _verdict: &Verdict) -> Result<()> {
        self.verdicts += 1;
        Ok(())
    }

    fn lost(&mut self, lost: &Lost) -> Result<()> {
        log(
            log::Level::Warn,
            "events lost: the kernel ring buffer was full (--ring-buffer)",
            &[
                ("lost", &lost.lost.to_string()),
                ("total", &lost.total.to_string()),
            ],
        );
        Ok(())
    }

    fn end(&mut self, end: &End) -> Result<()> {
        log(
            log::Level::Info,
            "detached",
            &[("reason", &end.reason), ("events", &end.events.to_string())],
        );
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        Ok(())
    }

    fn status(&mut self, status: &Status) -> Result<()> {
        if self.last.elapsed() < self.every {
            return Ok(());
        }
        self.last = Instant::now();
        log(
            log::Level::Info,
            "state",
            &[
                ("events", &self.events.to_string()),
                ("events_per_sec", &format!("{:.0}", status.events_per_sec)),
                ("verdicts", &self.verdicts.to_string()),
                ("sockets", &status.sockets.to_string()),
                ("lost", &status.lost.to_string()),
            ],
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logfmt_values_are_quoted_only_when_needed() {
        assert_eq!(logfmt_value("attached"), "attached");
        assert_eq!(logfmt_value("a b"), "\"a b\"");
        assert_eq!(logfmt_value(""), "\"\"");
        assert_eq!(logfmt_value("say \"x\"\n"), "\"say \\\"x\\\"\\n\"");
    }
}
