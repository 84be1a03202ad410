//! The `tracer` binary under test: started with `live --json`, its records collected by a
//! reader thread, stopped with SIGINT like a user's Ctrl-C.

use std::{
    io::{BufRead, BufReader, Read},
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

/// Loading BTF and attaching programs takes a moment, longer in a debug build on a busy
/// machine.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Tracer {
    child: Child,
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
        let records = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let sink = records.clone();
        let stdout_reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("tracer printed a non-JSON line ({e}): {line}"));
                sink.lock().unwrap().push(value);
            }
        });
        let err_sink = stderr.clone();
        let stderr_reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = BufReader::new(err).read_to_string(&mut text);
            err_sink.lock().unwrap().push_str(&text);
        });
        let mut tracer = Tracer {
            child,
            records,
            stderr,
            readers: vec![stdout_reader, stderr_reader],
        };
        let started = std::time::Instant::now();
        loop {
            if tracer.records().iter().any(|r| r["type"] == "header") {
                break;
            }
            if let Some(status) = tracer.child.try_wait().unwrap() {
                tracer.join_readers();
                panic!(
                    "tracer exited ({status}) before tracing started: {}",
                    tracer.stderr.lock().unwrap()
                );
            }
            assert!(
                started.elapsed() < START_TIMEOUT,
                "tracer did not start within {START_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
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

    /// Waits for a record matching `pred`.
    pub fn wait_for(&self, timeout: Duration, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        wait_until(timeout, what, || {
            self.records
                .lock()
                .unwrap()
                .iter()
                .find(|r| pred(r))
                .cloned()
        })
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill with a valid pid and signal.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Kernel ids of the BPF programs this tracer process holds open.
    pub fn program_ids(&self) -> Vec<u32> {
        let dir = format!("/proc/{}/fdinfo", self.child.id());
        let mut ids = Vec::new();
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            ids.extend(
                text.lines()
                    .filter_map(|l| l.strip_prefix("prog_id:"))
                    .filter_map(|v| v.trim().parse::<u32>().ok()),
            );
        }
        ids.sort_unstable();
        ids.dedup();
        ids
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

/// True while a BPF program with this id is loaded anywhere on the machine.
pub fn program_loaded(id: u32) -> bool {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .any(|p| p.id() == id)
}
