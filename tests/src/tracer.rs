//! The `tracer` binary under test: started with `live --json`, its records collected by a
//! reader thread, stopped with SIGINT like a user's Ctrl-C.

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    thread::JoinHandle,
    time::Duration,
};

use serde_json::Value;

use crate::wait_until;

/// The binary built by `cargo xtask test` (TRACER_BIN), else target/debug/tracer.
pub fn tracer_bin() -> PathBuf {
    let path = std::env::var_os("TRACER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/tracer")
        });
    assert!(
        path.exists(),
        "no tracer binary at {}: run the tests with `cargo xtask test`",
        path.display()
    );
    path
}

/// Runs `tracer ARGS` to completion and asserts it succeeded.
pub fn run_ok<I, S>(args: I) -> std::process::Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out = Command::new(tracer_bin()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `tracer ARGS`, which prints one JSON document, and parses it.
pub fn run_json<I, S>(args: I) -> Value
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    serde_json::from_slice(&run_ok(args).stdout).expect("tracer printed JSON")
}

/// `tracer sockets --json` of one namespace (by inode), flagging sockets idle longer than
/// `idle_threshold` (e.g. "1s").
pub fn sockets_json(netns_inode: u32, idle_threshold: &str) -> Value {
    let netns = netns_inode.to_string();
    run_json([
        "sockets",
        "--json",
        "--netns",
        &netns,
        "--idle-threshold",
        idle_threshold,
    ])
}

/// Loading BTF and attaching programs takes a moment, longer in a debug build on a busy
/// machine.
/// `TRACER_START_TIMEOUT_SECS` overrides it (kernel-check under emulation, where start-up
/// takes tens of seconds on a loaded host).
pub fn start_timeout() -> Duration {
    std::env::var("TRACER_START_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(Duration::from_secs(60), Duration::from_secs)
}

pub struct Tracer {
    child: Child,
    args: Vec<String>,
    records: Arc<Mutex<Vec<Value>>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl Tracer {
    /// `tracer <args...>` (e.g. `live --json --netns X`), returning once the header
    /// record shows the probes are attached.
    pub fn start(args: &[String]) -> Tracer {
        let mut child = Command::new(tracer_bin())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tracer");
        let (records, stderr, readers) = collect_output(&mut child, |line| {
            serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("tracer printed a non-JSON line ({e}): {line}"))
        });
        let header = records.clone();
        let mut tracer = Tracer {
            child,
            args: args.to_vec(),
            records,
            stderr,
            readers,
        };
        await_start(
            &mut tracer.child,
            &tracer.stderr,
            &mut tracer.readers,
            || {
                header
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|r: &Value| r["type"] == "header")
            },
        );
        tracer
    }

    /// `live --json` restricted to the given namespaces, plus `extra` arguments.
    pub fn live(netns_args: &[String], extra: &[&str]) -> Tracer {
        let mut args: Vec<String> = vec!["live".into(), "--json".into(), "--no-sweep".into()];
        args.extend(netns_args.iter().cloned());
        args.extend(extra.iter().map(|s| s.to_string()));
        Tracer::start(&args)
    }

    pub fn records(&self) -> Vec<Value> {
        self.records.lock().unwrap().clone()
    }

    pub fn events(&self) -> Vec<Value> {
        self.records()
            .into_iter()
            .filter(|r| r["type"] == "event")
            .collect()
    }

    /// Waits for a record matching `pred`. On timeout the panic shows the trace so far and
    /// whether the tracer is still running: a failure must be diagnosable from the log.
    pub fn wait_for(&self, timeout: Duration, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(found) = self.records.lock().unwrap().iter().find(|r| pred(r)) {
                return found.clone();
            }
            if std::time::Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}\n{}",
                    self.diagnosis()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last records (without the periodic status lines), the kernel's own counters and
    /// the tracer's stderr: what a failed assertion about the trace prints.
    pub fn diagnosis(&self) -> String {
        const LAST: usize = 40;
        let records = self.records();
        let shown: Vec<String> = records
            .iter()
            .filter(|r| r["type"] != "status")
            .map(Value::to_string)
            .collect();
        let skipped = shown.len().saturating_sub(LAST);
        let last_status = records.iter().rev().find(|r| r["type"] == "status");
        let alive = std::path::Path::new(&format!("/proc/{}", self.child.id())).exists();
        format!(
            "tracer process alive: {alive}; {} records, the last {} (status lines left out):\n{}\n\
             last status: {}\nprograms skipped by the kernel (recursion misses): {}\n\
             kernel-side counters: {}\n{}tracer stderr so far:\n{}",
            records.len(),
            shown.len() - skipped,
            shown[skipped..].join("\n"),
            last_status.map_or("none".into(), Value::to_string),
            self.recursion_misses(),
            self.kernel_counters(),
            self.namespaces(),
            self.stderr.lock().unwrap()
        )
    }

    /// Per program, how often the kernel skipped it because it was already running on that
    /// CPU (bpftool's `recursion_misses`); "unknown" without bpftool.
    fn recursion_misses(&self) -> String {
        let ids = self.object_ids("prog_id:");
        let mut misses = Vec::new();
        for id in &ids {
            let Some(info) = bpftool(&["prog", "show", "id", &id.to_string()]) else {
                return "unknown (no bpftool)".into();
            };
            if let Some(n) = info["recursion_misses"].as_u64() {
                misses.push(format!("{}={n}", info["name"].as_str().unwrap_or("?")));
            }
        }
        if misses.is_empty() {
            format!("none in {} programs", ids.len())
        } else {
            misses.join(" ")
        }
    }

    /// What the kernel itself says in the traced namespaces (`--netns`): its TCP counters
    /// and sockets, to tell a missed event from one that never happened.
    fn namespaces(&self) -> String {
        let wanted: Vec<u64> = self
            .args
            .windows(2)
            .filter(|w| w[0] == "--netns")
            .filter_map(|w| w[1].parse().ok())
            .collect();
        let mut out = String::new();
        for entry in std::fs::read_dir("/run/netns")
            .into_iter()
            .flatten()
            .flatten()
        {
            let Ok(meta) = entry.metadata() else { continue };
            if !wanted.contains(&std::os::unix::fs::MetadataExt::ino(&meta)) {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let exec = |cmd: &[&str]| {
                Command::new("ip")
                    .args(["netns", "exec", &name])
                    .args(cmd)
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default()
            };
            let counters = exec(&["nstat", "-asz"])
                .lines()
                .filter(|l| {
                    ["Abort", "Timeouts", "KeepAlive", "RetransSegs", "OutRsts"]
                        .iter()
                        .any(|k| l.contains(k))
                })
                .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join("="))
                .collect::<Vec<_>>()
                .join(" ");
            out += &format!("namespace {name}: {counters}\n{}", exec(&["ss", "-tinoea"]));
        }
        out
    }

    /// The kernel side's own counters (the `STATS` map: emitted, lost, filtered, ...), to
    /// tell an event the kernel never produced from one that was lost on the way.
    fn kernel_counters(&self) -> String {
        match self.kernel_counter_values() {
            Ok(counters) => counters
                .iter()
                .map(|(name, total)| format!("{name}={total}"))
                .collect::<Vec<_>>()
                .join(" "),
            Err(why) => why,
        }
    }

    /// One of the kernel side's counters (`emitted`, `lost`, `filtered`, ...), summed over
    /// CPUs; panics when it cannot be read (bpftool missing).
    pub fn kernel_counter(&self, name: &str) -> u64 {
        let counters = self
            .kernel_counter_values()
            .unwrap_or_else(|why| panic!("kernel counters: {why}"));
        counters
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("no kernel counter {name}: {counters:?}"))
            .1
    }

    fn kernel_counter_values(&self) -> Result<Vec<(&'static str, u64)>, String> {
        const NAMES: [&str; 7] = [
            "emitted",
            "lost",
            "filtered",
            "timer_brackets",
            "probes_seen",
            "probes_late",
            "rescued",
        ];
        for id in self.object_ids("map_id:") {
            let id = id.to_string();
            let Some(info) = bpftool(&["map", "show", "id", &id]) else {
                return Err("unknown (no bpftool)".into());
            };
            if info["name"] != "STATS" {
                continue;
            }
            let Some(Value::Array(slots)) = bpftool(&["map", "dump", "id", &id]) else {
                return Err("unreadable".into());
            };
            // Without BTF, bpftool prints keys and per-CPU values as little-endian hex bytes.
            let number = |bytes: &Value| {
                bytes.as_array().map_or(0, |b| {
                    b.iter().rev().fold(0u64, |n, byte| {
                        let hex = byte.as_str().unwrap_or("0").trim_start_matches("0x");
                        n << 8 | u64::from_str_radix(hex, 16).unwrap_or(0)
                    })
                })
            };
            return Ok(slots
                .iter()
                .map(|slot| {
                    let index = number(&slot["key"]) as usize;
                    let total: u64 = slot["values"]
                        .as_array()
                        .map_or(0, |cpus| cpus.iter().map(|c| number(&c["value"])).sum());
                    (*NAMES.get(index).unwrap_or(&"?"), total)
                })
                .collect());
        }
        Err("no STATS map found".into())
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill with a valid pid and signal.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Kernel ids of the BPF programs this tracer process holds open.
    pub fn program_ids(&self) -> Vec<u32> {
        program_ids_of(self.child.id())
    }

    fn object_ids(&self, field: &str) -> Vec<u32> {
        object_ids(self.child.id(), field)
    }

    fn join_readers(&mut self) {
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }

    /// Ctrl-C: the tracer drains, prints its end record and exits 0. Returns all records
    /// and stderr.
    pub fn stop(self) -> (Vec<Value>, String) {
        self.stop_with(libc::SIGINT)
    }

    /// Stops the tracer with `signal` (SIGINT or SIGTERM) and waits for a clean exit.
    pub fn stop_with(mut self, signal: i32) -> (Vec<Value>, String) {
        self.signal(signal);
        let status = wait_until(
            Duration::from_secs(30),
            "tracer to exit after SIGINT",
            || self.child.try_wait().unwrap(),
        );
        self.join_readers();
        let stderr = self.stderr.lock().unwrap().clone();
        assert!(status.success(), "tracer exited with {status}: {stderr}");
        (self.records(), stderr)
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Kernel ids of the BPF programs process `pid` holds open.
pub fn program_ids_of(pid: u32) -> Vec<u32> {
    object_ids(pid, "prog_id:")
}

/// Ids of the BPF objects (`prog_id:` or `map_id:`) behind the descriptors of process `pid`.
fn object_ids(pid: u32, field: &str) -> Vec<u32> {
    let dir = format!("/proc/{pid}/fdinfo");
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        ids.extend(
            text.lines()
                .filter_map(|l| l.strip_prefix(field))
                .filter_map(|v| v.trim().parse::<u32>().ok()),
        );
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// True while a BPF program with this id is loaded anywhere on the machine.
pub fn program_loaded(id: u32) -> bool {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .any(|p| p.id() == id)
}

/// `bpftool --json ARGS`, parsed; None when bpftool is missing or fails.
fn bpftool(args: &[&str]) -> Option<Value> {
    let out = Command::new("bpftool")
        .arg("--json")
        .args(args)
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

/// A spawned tracer's stdout, one `parse`d item per line, and its stderr, collected by two
/// threads (stderr line by line, so a timeout can show what the tracer said so far).
pub(crate) type Collected<T> = (Arc<Mutex<Vec<T>>>, Arc<Mutex<String>>, Vec<JoinHandle<()>>);

pub(crate) fn collect_output<T: Send + 'static>(
    child: &mut Child,
    parse: impl Fn(String) -> T + Send + 'static,
) -> Collected<T> {
    let items = Arc::new(Mutex::new(Vec::new()));
    let stderr = Arc::new(Mutex::new(String::new()));
    let (out, err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let sink = items.clone();
    let err_sink = stderr.clone();
    let readers = vec![
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let item = parse(line);
                sink.lock().unwrap().push(item);
            }
        }),
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut text = err_sink.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        }),
    ];
    (items, stderr, readers)
}

/// Waits until `started` says the tracer is tracing; panics, with what it said, if it exits
/// first or takes longer than [`start_timeout`].
pub(crate) fn await_start(
    child: &mut Child,
    stderr: &Mutex<String>,
    readers: &mut Vec<JoinHandle<()>>,
    started: impl Fn() -> bool,
) {
    let since = std::time::Instant::now();
    while !started() {
        if let Some(status) = child.try_wait().unwrap() {
            for reader in readers.drain(..) {
                let _ = reader.join();
            }
            panic!(
                "tracer exited ({status}) before tracing started: {}",
                stderr.lock().unwrap()
            );
        }
        assert!(
            since.elapsed() < start_timeout(),
            "tracer did not start within {:?}",
            start_timeout()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
