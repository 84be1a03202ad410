//! Exports for the systems a fleet already runs (`tracer agent`): Prometheus / OpenMetrics
//! metrics and OpenTelemetry (OTLP/HTTP) log records, both fed as [`crate::output::Sink`]s
//! of an ordinary tracing session.
//!
//! - `labels`: where a verdict or event happened, as labels: the one place that decides.
//! - `metrics`: counters and gauges, the series cap, the scrape endpoint.
//! - `otlp`: log records, a bounded queue, batching and retries.

pub mod labels;
pub mod metrics;
pub mod otlp;
