//! OpenTelemetry export: every verdict (and with `--otlp-events`, every event) as an OTLP
//! log record, sent over OTLP/HTTP with protobuf (the official definitions, from the
//! `opentelemetry-proto` crate) to a collector.
//!
//! Tracing never waits for the collector: the sink only appends to a bounded queue; a task
//! sends batches of up to [`BATCH`] records, one request at a time, and retries a failed
//! batch with backoff for about [`RETRY_FOR`] before dropping it. A full queue drops its
//! oldest record. Memory is the queue's bound plus one batch, however long the collector
//! stays away, and every dropped record is counted (`tracer_otlp_dropped_records_total`).
//!
//! Attributes follow OpenTelemetry's semantic conventions where one exists
//! (`network.*`, `server.*`, `client.*`, `process.*`; `host.name` on the resource), and are
//! named `tracer.*` otherwise (the verdict, its facts, the network namespace).

use std::{
    collections::VecDeque,
    num::NonZeroUsize,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Request, StatusCode, client::conn::http1::SendRequest, header};
use hyper_util::rt::TokioIo;
use lru::LruCache;
use opentelemetry_proto::tonic::{
    collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse},
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value::Value},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber},
    resource::v1::Resource,
};
use prost::Message;
use serde_json::Value as Json;
use tokio::{net::TcpStream, sync::Notify, task::JoinHandle};

use super::{labels, metrics::OtlpCounters};
use crate::{
    event::{Connection, Event, Family, Owner, OwnerSource, SocketId, TcpState},
    kernel::host,
    output::Sink,
    record::{End, Header, Lost},
    timeline::{Verdict, VerdictKind},
};

/// Records per export request.
pub const BATCH: usize = 512;
/// How long a batch waits for more records before it is sent.
const LINGER: Duration = Duration::from_secs(1);
/// One request's deadline, from connecting to the response.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A failed batch is retried with backoff (0.5 s doubling up to 5 s) for about this long.
pub const RETRY_FOR: Duration = Duration::from_secs(30);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Sockets whose role (client or server) is remembered for `server.*` / `client.*`.
const ROLES: usize = 65_536;

/// Where the collector listens: `http://HOST:PORT[/PATH]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    /// The request path: PATH if it ends in `/v1/logs`, else PATH + `/v1/logs` (a base URL,
    /// as OTEL_EXPORTER_OTLP_ENDPOINT is).
    pub path: String,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Endpoint> {
        if url.starts_with("https://") {
            bail!(
                "{url}: OTLP over https is not supported; export to a collector on the node \
                 or in the cluster over http (it can forward with TLS)"
            );
        }
        let rest = url
            .strip_prefix("http://")
            .with_context(|| format!("{url}: the OTLP endpoint must be an http:// URL"))?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => (
                host,
                port.parse()
                    .with_context(|| format!("{url}: bad port {port:?}"))?,
            ),
            _ => (authority, 80),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            bail!("{url}: no host");
        }
        let path = path.trim_end_matches('/');
        let path = if path.ends_with("/v1/logs") {
            path.to_owned()
        } else {
            format!("{path}/v1/logs")
        };
        Ok(Endpoint {
            host: host.to_owned(),
            port,
            path,
        })
    }

    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[derive(Debug, Clone)]
pub struct OtlpOptions {
    pub endpoint: Endpoint,
    /// Events too, not only verdicts.
    pub events: bool,
    /// Records the queue holds while the collector is slow or away.
    pub max_queue: usize,
}

/// What the sink and the export task share.
struct Shared {
    queue: Mutex<VecDeque<LogRecord>>,
    max_queue: usize,
    wake: Notify,
    /// SIGHUP: the next request opens a new connection (and resolves the host again).
    reconnect: AtomicBool,
    closing: AtomicBool,
    counters: OtlpCounters,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, VecDeque<LogRecord>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, record: LogRecord) {
        let mut queue = self.queue();
        if queue.len() >= self.max_queue {
            queue.pop_front();
            self.counters.dropped_queue_full.inc();
        } else {
            self.counters.queued.inc();
        }
        queue.push_back(record);
        let full_batch = queue.len() >= BATCH;
        drop(queue);
        if full_batch {
            self.wake.notify_one();
        }
    }
}

/// Sends verdicts (and events) to an OTLP collector.
pub struct OtlpSink {
    shared: Arc<Shared>,
    events: bool,
    boot_to_wall_ns: i64,
    /// Client or server, learned from each socket's first state change.
    roles: LruCache<SocketId, Role>,
    task: Option<JoinHandle<()>>,
}

impl OtlpSink {
    /// Starts the export task (on the current tokio runtime).
    pub fn start(options: OtlpOptions, counters: OtlpCounters) -> OtlpSink {
        let shared = Arc::new(Shared {
            queue: Mutex::new(VecDeque::new()),
            max_queue: options.max_queue.max(1),
            wake: Notify::new(),
            reconnect: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            counters,
        });
        let resource = resource(&host::hostname());
        let task = tokio::spawn(export(shared.clone(), options.endpoint, resource));
        OtlpSink {
            shared,
            events: options.events,
            boot_to_wall_ns: host::boot_to_wall_offset_ns(),
            roles: LruCache::new(NonZeroUsize::new(ROLES).expect("non-zero")),
            task: Some(task),
        }
    }

    /// Sends what is queued, waiting at most `deadline`; what is left is counted as dropped.
    pub async fn shutdown(mut self, deadline: Duration) {
        self.shared.closing.store(true, Ordering::Relaxed);
        self.shared.wake.notify_one();
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(deadline, &mut task).await.is_err()
        {
            task.abort();
            let left = self.shared.queued_now();
            self.shared.counters.dropped_export_failed.inc_by(left);
        }
    }

    fn wall(&self, ts_ns: u64) -> u64 {
        (ts_ns as i64).saturating_add(self.boot_to_wall_ns).max(0) as u64
    }

    fn learn_role(&mut self, e: &Event) {
        // Kept past the socket's release (verdicts can follow it out of the reorder
        // window); the least recently used go first.
        let Some(socket) = e.socket else { return };
        if self.roles.contains(&socket) {
            return;
        }
        let role = match (e.old_state, e.state) {
            (_, TcpState::SYN_SENT) | (Some(TcpState::SYN_SENT), _) => Role::Client,
            (Some(TcpState::SYN_RECV | TcpState::NEW_SYN_RECV | TcpState::LISTEN), _) => {
                Role::Server
            }
            _ if e
                .process
                .as_ref()
                .is_some_and(|p| p.source == OwnerSource::Listener) =>
            {
                Role::Server
            }
            _ => return,
        };
        self.roles.put(socket, role);
    }

    fn role(&self, v: &Verdict) -> Option<Role> {
        match v.verdict {
            VerdictKind::ConnectTimeout | VerdictKind::ConnectionRefused => Some(Role::Client),
            _ => self.roles.peek(&v.socket).copied(),
        }
    }
}

impl Shared {
    fn queued_now(&self) -> u64 {
        self.counters.queued.get().max(0) as u64
    }
}

impl Drop for OtlpSink {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Sink for OtlpSink {
    fn header(&mut self, header: &Header) -> Result<()> {
        self.boot_to_wall_ns = header.boot_to_wall_offset_ns;
        Ok(())
    }

    fn event(&mut self, event: &Event) -> Result<()> {
        self.learn_role(event);
        if self.events {
            let role = event.socket.and_then(|s| self.roles.peek(&s).copied());
            let record = event_record(event, self.wall(event.ts_ns), role);
            self.shared.push(record);
        }
        Ok(())
    }

    fn verdict(&mut self, verdict: &Verdict) -> Result<()> {
        let record = verdict_record(verdict, self.wall(verdict.ts_ns), self.role(verdict));
        self.shared.push(record);
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

    fn reopen(&mut self) -> Result<()> {
        self.shared.reconnect.store(true, Ordering::Relaxed);
        Ok(())
    }
}

/// Which end of the connection this host is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Client,
    Server,
}

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

fn string(key: &str, value: impl Into<String>) -> KeyValue {
    kv(key, Value::StringValue(value.into()))
}

fn int(key: &str, value: impl Into<i64>) -> KeyValue {
    kv(key, Value::IntValue(value.into()))
}

fn resource(hostname: &str) -> Resource {
    Resource {
        attributes: vec![
            string("service.name", "tracer"),
            string("service.version", env!("CARGO_PKG_VERSION")),
            string("host.name", hostname),
        ],
        ..Resource::default()
    }
}

/// The attributes naming a connection, its owner and where it runs.
fn connection_attributes(
    conn: &Connection,
    owner: Option<&Owner>,
    role: Option<Role>,
) -> Vec<KeyValue> {
    let mut out = vec![
        string("network.transport", "tcp"),
        string(
            "network.type",
            match conn.family {
                Family::Ipv4 => "ipv4",
                Family::Ipv6 => "ipv6",
            },
        ),
        string("network.local.address", conn.laddr.to_string()),
        int("network.local.port", conn.lport),
        string("network.peer.address", conn.raddr.to_string()),
        int("network.peer.port", conn.rport),
    ];
    let (local, peer) = (conn.local(), conn.remote());
    let ends = match role {
        Some(Role::Client) => Some((peer, local)),
        Some(Role::Server) => Some((local, peer)),
        None => None,
    };
    if let Some((server, client)) = ends {
        out.push(string("server.address", server.addr.to_string()));
        out.push(int("server.port", server.port));
        out.push(string("client.address", client.addr.to_string()));
        out.push(int("client.port", client.port));
    }
    if let Some(owner) = owner {
        out.push(int("process.pid", owner.pid));
        out.push(string("process.executable.name", owner.comm.to_string()));
    }
    // Where it runs, as metrics label it, under the semantic conventions' names.
    let labels = labels::labels(conn, owner);
    out.push(int("tracer.netns", labels.netns));
    let identity = owner.and_then(|o| o.container.as_deref());
    if let Some(container) = identity.and_then(|i| i.container.as_ref()) {
        out.push(string("container.id", container.id.clone()));
        out.push(string("container.runtime", container.runtime.to_string()));
    }
    if let Some(pod) = identity.and_then(|i| i.pod.as_ref()) {
        out.push(string("k8s.pod.uid", pod.uid.clone()));
    }
    for (key, value) in [
        ("k8s.pod.name", labels.pod),
        ("k8s.namespace.name", labels.pod_namespace),
        ("tracer.systemd.unit", labels.unit),
    ] {
        if let Some(value) = value {
            out.push(string(key, value));
        }
    }
    out
}

/// A JSON object's fields as attributes `prefix.field` (nested objects: `prefix.a.b`).
fn json_attributes(prefix: &str, json: &Json, out: &mut Vec<KeyValue>) {
    match json {
        Json::Object(fields) => {
            for (name, value) in fields {
                json_attributes(&format!("{prefix}.{name}"), value, out);
            }
        }
        Json::String(s) => out.push(string(prefix, s.clone())),
        Json::Bool(b) => out.push(kv(prefix, Value::BoolValue(*b))),
        Json::Number(n) => out.push(match n.as_i64() {
            Some(i) => int(prefix, i),
            None => kv(prefix, Value::DoubleValue(n.as_f64().unwrap_or(f64::NAN))),
        }),
        Json::Array(items) => {
            let values = items
                .iter()
                .map(|i| AnyValue {
                    value: Some(Value::StringValue(match i {
                        Json::String(s) => s.clone(),
                        other => other.to_string(),
                    })),
                })
                .collect();
            out.push(kv(
                prefix,
                Value::ArrayValue(opentelemetry_proto::tonic::common::v1::ArrayValue { values }),
            ));
        }
        Json::Null => {}
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A verdict as a log record: the explanation as its body; the verdict's name, socket
/// and facts as `tracer.*` attributes beside the connection's.
pub fn verdict_record(v: &Verdict, time_unix_nano: u64, role: Option<Role>) -> LogRecord {
    let mut attributes = connection_attributes(&v.conn, v.process.as_ref(), role);
    attributes.push(string("tracer.verdict", v.verdict.name()));
    attributes.push(string("tracer.socket", v.socket.to_string()));
    let facts = serde_json::to_value(&v.facts).unwrap_or(Json::Null);
    json_attributes("tracer.facts", &facts, &mut attributes);
    LogRecord {
        time_unix_nano,
        observed_time_unix_nano: now_ns(),
        severity_number: SeverityNumber::Warn as i32,
        severity_text: "WARN".into(),
        body: Some(AnyValue {
            value: Some(Value::StringValue(v.explanation.clone())),
        }),
        attributes,
        event_name: "tracer.verdict".into(),
        ..LogRecord::default()
    }
}

/// An event as a log record: its kind as the body; its details as `tracer.event.*`.
pub fn event_record(e: &Event, time_unix_nano: u64, role: Option<Role>) -> LogRecord {
    let mut attributes = connection_attributes(&e.conn, e.process.as_ref(), role);
    if let Ok(Json::Object(mut fields)) = serde_json::to_value(e) {
        for named in [
            "family", "laddr", "lport", "raddr", "rport", "netns", "process",
        ] {
            fields.remove(named);
        }
        json_attributes("tracer.event", &Json::Object(fields), &mut attributes);
    }
    LogRecord {
        time_unix_nano,
        observed_time_unix_nano: now_ns(),
        severity_number: SeverityNumber::Info as i32,
        severity_text: "INFO".into(),
        body: Some(AnyValue {
            value: Some(Value::StringValue(e.kind.name().to_owned())),
        }),
        attributes,
        event_name: "tracer.event".into(),
        ..LogRecord::default()
    }
}

/// How one request ended.
enum Sent {
    /// Accepted, except this many records the collector rejected (partial success).
    Accepted { rejected: u64 },
    /// Refused for good (a 4xx other than 429): retrying would not help.
    Refused,
    /// Worth retrying: no connection, a timeout, 429 or 5xx.
    Failed,
}

/// The export task: batches from the queue, one request at a time, retried with backoff.
async fn export(shared: Arc<Shared>, endpoint: Endpoint, resource: Resource) {
    let scope = InstrumentationScope {
        name: "tracer".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..InstrumentationScope::default()
    };
    let mut connection: Option<SendRequest<Full<Bytes>>> = None;
    loop {
        let closing = shared.closing.load(Ordering::Relaxed);
        let waiting = shared.queue().len();
        if waiting == 0 {
            if closing {
                return;
            }
            let _ = tokio::time::timeout(LINGER, shared.wake.notified()).await;
            continue;
        }
        if waiting < BATCH && !closing {
            // Let the batch fill for a moment.
            let _ = tokio::time::timeout(LINGER, shared.wake.notified()).await;
        }
        let records: Vec<LogRecord> = {
            let mut queue = shared.queue();
            let n = queue.len().min(BATCH);
            queue.drain(..n).collect()
        };
        let count = records.len() as u64;
        let body = Bytes::from(
            ExportLogsServiceRequest {
                resource_logs: vec![ResourceLogs {
                    resource: Some(resource.clone()),
                    scope_logs: vec![ScopeLogs {
                        scope: Some(scope.clone()),
                        log_records: records,
                        ..ScopeLogs::default()
                    }],
                    ..ResourceLogs::default()
                }],
            }
            .encode_to_vec(),
        );
        let started = tokio::time::Instant::now();
        let mut backoff = Duration::from_millis(500);
        loop {
            if shared.reconnect.swap(false, Ordering::Relaxed) {
                connection = None;
            }
            let sent = send(&mut connection, &endpoint, body.clone()).await;
            match sent {
                Sent::Accepted { rejected } => {
                    let rejected = rejected.min(count);
                    shared.counters.exported.inc_by(count - rejected);
                    shared.counters.dropped_export_failed.inc_by(rejected);
                    break;
                }
                Sent::Refused => {
                    shared.counters.failed_requests.inc();
                    shared.counters.dropped_export_failed.inc_by(count);
                    break;
                }
                Sent::Failed => {
                    shared.counters.failed_requests.inc();
                    connection = None;
                    let closing = shared.closing.load(Ordering::Relaxed);
                    if closing || started.elapsed() + backoff > RETRY_FOR {
                        shared.counters.dropped_export_failed.inc_by(count);
                        break;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
        shared.counters.queued.dec_by(count as i64);
    }
}

/// One export request, on the kept-alive connection or a new one.
async fn send(
    connection: &mut Option<SendRequest<Full<Bytes>>>,
    endpoint: &Endpoint,
    body: Bytes,
) -> Sent {
    let attempt = async {
        if connection.as_ref().is_none_or(|c| c.is_closed()) {
            *connection = Some(connect(endpoint).await.ok()?);
        }
        let sender = connection.as_mut()?;
        sender.ready().await.ok()?;
        let request = Request::post(endpoint.path.as_str())
            .header(header::HOST, endpoint.authority())
            .header(header::CONTENT_TYPE, "application/x-protobuf")
            .body(Full::new(body))
            .ok()?;
        let response = sender.send_request(request).await.ok()?;
        let status = response.status();
        // A response is small; one that is not is not read past 1 MiB.
        let bytes = Limited::new(response.into_body(), 1 << 20)
            .collect()
            .await
            .ok()?
            .to_bytes();
        Some((status, bytes))
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, attempt).await {
        Ok(Some((status, bytes))) if status.is_success() => {
            let rejected = ExportLogsServiceResponse::decode(bytes)
                .ok()
                .and_then(|r| r.partial_success)
                .map_or(0, |p| p.rejected_log_records.max(0) as u64);
            Sent::Accepted { rejected }
        }
        Ok(Some((status, _)))
            if status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS =>
        {
            Sent::Refused
        }
        _ => {
            *connection = None;
            Sent::Failed
        }
    }
}

async fn connect(endpoint: &Endpoint) -> Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect((endpoint.host.as_str(), endpoint.port)).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        event::{Errno, ResetReason},
        testing::Sock,
        timeline::VerdictFacts,
    };

    #[test]
    fn endpoints_parse_as_base_urls_or_full_paths() {
        let e = Endpoint::parse("http://collector:4318").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.path.as_str()),
            ("collector", 4318, "/v1/logs")
        );
        let e = Endpoint::parse("http://127.0.0.1:4318/v1/logs").unwrap();
        assert_eq!(e.path, "/v1/logs");
        let e = Endpoint::parse("http://[::1]:9/otlp/").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.path.as_str()),
            ("::1", 9, "/otlp/v1/logs")
        );
        assert_eq!(e.authority(), "[::1]:9");
        assert_eq!(Endpoint::parse("http://c").unwrap().port, 80);
        assert!(Endpoint::parse("https://c:4318").is_err());
        assert!(Endpoint::parse("c:4318").is_err());
    }

    fn attribute<'a>(record: &'a LogRecord, key: &str) -> Option<&'a Value> {
        record
            .attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
    }

    #[test]
    fn a_verdict_carries_semantic_convention_attributes_and_its_facts() {
        let sock = Sock::new(3);
        let mut v = sock.verdict(5, VerdictKind::LocalAbort);
        v.explanation = "this host reset the connection".into();
        v.facts = VerdictFacts {
            error: Some(Errno::ECONNRESET),
            reset_reason: Some(ResetReason::TcpAbortOnLinger),
            ..VerdictFacts::default()
        };
        let r = verdict_record(&v, 99, Some(Role::Client));
        let s = |k| match attribute(&r, k) {
            Some(Value::StringValue(s)) => s.clone(),
            other => panic!("{k}: {other:?}"),
        };
        let i = |k| match attribute(&r, k) {
            Some(Value::IntValue(i)) => *i,
            other => panic!("{k}: {other:?}"),
        };
        assert_eq!(s("network.transport"), "tcp");
        assert_eq!(s("network.peer.address"), "10.0.0.2");
        assert_eq!(i("network.peer.port"), 80);
        assert_eq!(s("server.address"), "10.0.0.2");
        assert_eq!(i("client.port"), 40_003);
        assert_eq!(i("process.pid"), 4242);
        assert_eq!(s("process.executable.name"), "app");
        assert_eq!(s("tracer.verdict"), "local_abort");
        assert_eq!(s("tracer.facts.error"), "ECONNRESET");
        assert_eq!(s("tracer.facts.reset_reason"), "TCP_ABORT_ON_LINGER");
        assert_eq!(i("tracer.netns"), 4026531840);
        assert_eq!(r.time_unix_nano, 99);
        assert_eq!(r.event_name, "tracer.verdict");
        assert!(
            matches!(&r.body, Some(AnyValue { value: Some(Value::StringValue(b)) }) if b == &v.explanation)
        );
        // Without a known role, no server.* or client.*.
        let r = verdict_record(&v, 99, None);
        assert!(attribute(&r, "server.address").is_none());
    }

    #[test]
    fn an_event_carries_its_details_as_tracer_event_attributes() {
        let sock = Sock::new(4).established().rtos(2);
        let e = sock.events.last().unwrap();
        let r = event_record(e, 7, None);
        assert!(
            matches!(&r.body, Some(AnyValue { value: Some(Value::StringValue(b)) }) if b == "retransmit")
        );
        assert_eq!(r.event_name, "tracer.event");
        assert!(
            matches!(attribute(&r, "tracer.event.class"), Some(Value::StringValue(c)) if c == "rto")
        );
        assert!(matches!(
            attribute(&r, "tracer.event.sock.retransmits"),
            Some(Value::IntValue(2))
        ));
        assert!(matches!(
            attribute(&r, "network.peer.port"),
            Some(Value::IntValue(80))
        ));
        assert!(
            attribute(&r, "tracer.event.laddr").is_none(),
            "named by network.*"
        );
    }

    #[test]
    fn roles_come_from_the_first_state_change() {
        let counters = OtlpCounters::default();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = runtime.enter();
        let mut sink = OtlpSink::start(
            OtlpOptions {
                endpoint: Endpoint::parse("http://127.0.0.1:9").unwrap(),
                events: false,
                max_queue: 2,
            },
            counters.clone(),
        );
        let client = Sock::new(1).established();
        for e in &client.events {
            sink.event(e).unwrap();
        }
        assert_eq!(sink.roles.peek(&client.id()), Some(&Role::Client));
        // The queue holds 2: the third verdict drops the oldest, and says so.
        for _ in 0..3 {
            sink.verdict(&client.verdict(1, VerdictKind::PeerReset))
                .unwrap();
        }
        assert_eq!(counters.dropped_queue_full.get(), 1);
        assert_eq!(counters.queued.get(), 2);
        assert_eq!(sink.shared.queue().len(), 2);
    }
}
