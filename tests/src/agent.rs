//! Real components around `tracer agent`: the agent itself, a Prometheus server scraping
//! it, and an OTLP/HTTP receiver that decodes what it gets with the official protobuf
//! definitions. Every process started here is killed when its guard drops, also when a
//! test panics.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::{
    collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse},
    common::v1::{AnyValue, KeyValue, any_value::Value as Any},
    logs::v1::LogRecord,
};
use prost::Message;
use serde_json::Value;

use crate::{tracer::tracer_bin, wait_until};

/// A loopback port nothing listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` over HTTP/1.0 (no chunking): (status, body).
pub fn http_get(addr: SocketAddr, path: &str, accept: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: {accept}\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_owned()))
}

/// Percent-encodes a query parameter.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `tracer agent ARGS`, its stderr collected.
pub struct Agent {
    child: Child,
    pub metrics: SocketAddr,
    stderr: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
}

impl Agent {
    /// Starts the agent on a free metrics port and returns once it traces.
    pub fn start(args: &[String]) -> Agent {
        let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut child = Command::new(tracer_bin())
            .arg("agent")
            .args(["--metrics-listen", &metrics.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tracer agent");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let err = child.stderr.take().unwrap();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut text = sink.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
        let mut agent = Agent {
            child,
            metrics,
            stderr,
            reader: Some(reader),
        };
        let started = Instant::now();
        while !agent.stderr().contains("msg=\"tracing TCP connections") {
            if let Some(status) = agent.child.try_wait().unwrap() {
                panic!("agent exited ({status}): {}", agent.stderr());
            }
            assert!(
                started.elapsed() < crate::tracer::start_timeout(),
                "agent did not start: {}",
                agent.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        agent
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exposition, as a plain scraper (and promtool) reads it.
    pub fn scrape(&self) -> String {
        let (status, body) = http_get(self.metrics, "/metrics", "text/plain").expect("scrape");
        assert_eq!(status, 200, "{body}");
        body
    }

    /// The value of the sample `name{labels}` exactly as written (0 when absent).
    pub fn sample(&self, series: &str) -> f64 {
        sample(&self.scrape(), series)
    }

    /// Resident memory (VmRSS) in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill with a valid pid and signal.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Stops the agent with `signal`; asserts a clean exit and returns its stderr.
    pub fn stop_with(mut self, signal: i32) -> String {
        // SAFETY: kill with a valid pid and signal.
        unsafe { libc::kill(self.child.id() as i32, signal) };
        let status = wait_until(Duration::from_secs(30), "the agent to exit", || {
            self.child.try_wait().unwrap()
        });
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let stderr = self.stderr();
        assert!(status.success(), "agent exited with {status}: {stderr}");
        stderr
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The value of one sample line of an exposition (0 when absent).
pub fn sample(exposition: &str, series: &str) -> f64 {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A Prometheus server on loopback scraping one target every second, its storage in a
/// directory of its own; killed (and the directory removed) on drop.
pub struct Prometheus {
    child: Child,
    pub addr: SocketAddr,
    dir: PathBuf,
}

impl Prometheus {
    pub fn scraping(target: SocketAddr) -> Prometheus {
        let dir = std::env::temp_dir().join(format!(
            "tracer-prometheus-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: tracer\n    static_configs:\n      \
                 - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (cargo xtask test installs it)");
        let server = Prometheus { child, addr, dir };
        wait_until(Duration::from_secs(60), "prometheus to be ready", || {
            matches!(http_get(addr, "/-/ready", "*/*"), Ok((200, _))).then_some(())
        });
        server
    }

    /// An instant PromQL query: each result's labels and value.
    pub fn query(&self, promql: &str) -> Vec<(BTreeMap<String, String>, f64)> {
        let path = format!("/api/v1/query?query={}", encode(promql));
        let (status, body) = http_get(self.addr, &path, "application/json").expect("query");
        assert_eq!(status, 200, "{promql}: {body}");
        let json: Value = serde_json::from_str(&body).expect("JSON from Prometheus");
        json["data"]["result"]
            .as_array()
            .unwrap_or(&Vec::new())
            .iter()
            .map(|r| {
                let labels = r["metric"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                            .collect()
                    })
                    .unwrap_or_default();
                let value = r["value"][1].as_str().and_then(|v| v.parse().ok());
                (labels, value.unwrap_or(f64::NAN))
            })
            .collect()
    }

    /// `sum by (LABEL) (METRIC)` as label value → value.
    pub fn sum_by(&self, metric: &str, label: &str) -> BTreeMap<String, f64> {
        self.query(&format!("sum by ({label}) ({metric})"))
            .into_iter()
            .map(|(labels, v)| (labels.get(label).cloned().unwrap_or_default(), v))
            .collect()
    }

    /// A scalar-valued query (`sum(...)`): 0 when it has no result.
    pub fn value(&self, promql: &str) -> f64 {
        self.query(promql).first().map_or(0.0, |(_, v)| *v)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One decoded OTLP log record, with its resource's attributes.
#[derive(Debug, Clone)]
pub struct Received {
    pub resource: Vec<KeyValue>,
    pub record: LogRecord,
}

fn find<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Any> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

impl Received {
    /// A string attribute of the record (or, with `resource.`, of its resource).
    pub fn str(&self, key: &str) -> Option<String> {
        let value = match key.strip_prefix("resource.") {
            Some(key) => find(&self.resource, key),
            None => find(&self.record.attributes, key),
        };
        match value? {
            Any::StringValue(s) => Some(s.clone()),
            _ => None,
        }
    }

    pub fn int(&self, key: &str) -> Option<i64> {
        match find(&self.record.attributes, key)? {
            Any::IntValue(i) => Some(*i),
            _ => None,
        }
    }

    pub fn body(&self) -> String {
        match &self.record.body {
            Some(AnyValue {
                value: Some(Any::StringValue(s)),
            }) => s.clone(),
            _ => String::new(),
        }
    }
}

/// An OTLP/HTTP receiver on loopback: accepts `POST /v1/logs` (protobuf), decodes it with
/// the official definitions and keeps every record. Runs on a thread with its own runtime
/// until dropped.
pub struct OtlpReceiver {
    pub addr: SocketAddr,
    pub records: Arc<Mutex<Vec<Received>>>,
    /// Records received (kept or not).
    pub count: Arc<AtomicU64>,
    /// Requests that were not a decodable export request.
    pub bad_requests: Arc<Mutex<Vec<String>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl OtlpReceiver {
    /// A receiver that keeps every record.
    pub fn start(port: u16) -> OtlpReceiver {
        Self::with(port, true)
    }

    /// A receiver that only counts what it decodes (for long runs).
    pub fn counting(port: u16) -> OtlpReceiver {
        Self::with(port, false)
    }

    fn with(port: u16, keep_records: bool) -> OtlpReceiver {
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let listener = TcpListener::bind(addr).expect("bind the OTLP receiver");
        listener.set_nonblocking(true).unwrap();
        let records = Arc::new(Mutex::new(Vec::new()));
        let bad_requests = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicU64::new(0));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (keep, bad, counted) = (records.clone(), bad_requests.clone(), count.clone());
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let serve = async {
                    loop {
                        let Ok((stream, _)) = listener.accept().await else {
                            continue;
                        };
                        let (keep, bad, counted) = (keep.clone(), bad.clone(), counted.clone());
                        tokio::spawn(async move {
                            let service = service_fn(move |req: Request<Incoming>| {
                                let (keep, bad, counted) =
                                    (keep.clone(), bad.clone(), counted.clone());
                                async move {
                                    let sink = Sink {
                                        keep: keep_records.then_some(&*keep),
                                        count: &counted,
                                        bad: &bad,
                                    };
                                    Ok::<_, Infallible>(receive(req, sink).await)
                                }
                            });
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        });
                    }
                };
                tokio::select! {
                    _ = serve => {}
                    _ = stopped => {}
                }
            });
        });
        OtlpReceiver {
            addr,
            records,
            count,
            bad_requests,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn records(&self) -> Vec<Received> {
        self.records.lock().unwrap().clone()
    }
}

/// Where a receiver puts what it decodes.
struct Sink<'a> {
    keep: Option<&'a Mutex<Vec<Received>>>,
    count: &'a AtomicU64,
    bad: &'a Mutex<Vec<String>>,
}

async fn receive(req: Request<Incoming>, sink: Sink<'_>) -> Response<Full<Bytes>> {
    let bad = sink.bad;
    let path = req.uri().path().to_owned();
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            bad.lock().unwrap().push(format!("body: {e}"));
            return Response::builder()
                .status(400)
                .body(Full::default())
                .unwrap();
        }
    };
    if path != "/v1/logs" || content_type != "application/x-protobuf" {
        bad.lock()
            .unwrap()
            .push(format!("{path} with content-type {content_type:?}"));
        return Response::builder()
            .status(404)
            .body(Full::default())
            .unwrap();
    }
    match ExportLogsServiceRequest::decode(body) {
        Ok(request) => {
            for resource_logs in request.resource_logs {
                let resource = resource_logs.resource.unwrap_or_default().attributes;
                for scope in resource_logs.scope_logs {
                    let n = scope.log_records.len() as u64;
                    sink.count.fetch_add(n, Ordering::Relaxed);
                    let Some(keep) = sink.keep else { continue };
                    let mut keep = keep.lock().unwrap();
                    for record in scope.log_records {
                        keep.push(Received {
                            resource: resource.clone(),
                            record,
                        });
                    }
                }
            }
            let reply = ExportLogsServiceResponse::default().encode_to_vec();
            Response::builder()
                .header("content-type", "application/x-protobuf")
                .body(Full::new(Bytes::from(reply)))
                .unwrap()
        }
        Err(e) => {
            bad.lock().unwrap().push(format!("decode: {e}"));
            Response::builder()
                .status(400)
                .body(Full::default())
                .unwrap()
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
