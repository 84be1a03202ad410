//! What a person sees: `tracer live` as text lines, and full-screen `tracer top` in a real
//! terminal (tmux), read back with capture-pane.

use std::{
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::{
    tracer::{await_start, collect_output, tracer_bin},
    wait_until,
};

/// What the tracer says on stderr once its programs are attached.
const TRACING: &str = "tracer: tracing TCP connections";

/// `tracer live` printing text lines (no colour), its stdout collected line by line.
pub struct TextTracer {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl TextTracer {
    /// `tracer live --no-sweep --color never ARGS`, once its programs are attached.
    pub fn start(args: &[String]) -> TextTracer {
        let mut child = Command::new(tracer_bin())
            .args(["live", "--no-sweep", "--color", "never"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tracer");
        let (lines, stderr, readers) = collect_output(&mut child, |line| line);
        let mut tracer = TextTracer {
            child,
            lines,
            stderr,
            readers,
        };
        let said = tracer.stderr.clone();
        await_start(
            &mut tracer.child,
            &tracer.stderr,
            &mut tracer.readers,
            || said.lock().unwrap().contains(TRACING),
        );
        tracer
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits for a line matching `pred`; the panic on timeout shows every line so far.
    pub fn wait_line(&self, timeout: Duration, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.lines().into_iter().find(|l| pred(l)) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; lines so far:\n{}\nstderr:\n{}",
                self.lines().join("\n"),
                self.stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn join_readers(&mut self) {
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }

    /// Ctrl-C; returns every line printed (the summary included).
    pub fn stop(mut self) -> Vec<String> {
        // SAFETY: kill with a valid pid and signal.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let status = wait_until(Duration::from_secs(30), "tracer to exit", || {
            self.child.try_wait().unwrap()
        });
        self.join_readers();
        assert!(
            status.success(),
            "tracer exited with {status}: {}",
            self.stderr.lock().unwrap()
        );
        self.lines()
    }
}

impl Drop for TextTracer {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A program in a terminal of its own: a tmux server on a private socket (`-L`), so that
/// tests never meet each other's sessions or a person's. Killed on drop, also when a test
/// panics.
pub struct Tmux {
    socket: String,
    target: String,
    /// The server's socket file, removed on drop (tmux leaves it behind).
    socket_path: Option<String>,
}

impl Tmux {
    /// Runs `program ARGS` in a `width`×`height` terminal with the environment `env`. The
    /// pane stays after the program exits, so that a failure can still be read.
    pub fn start(
        width: u16,
        height: u16,
        env: &[(&str, &str)],
        program: &str,
        args: &[String],
    ) -> Tmux {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let socket = format!("trc-{}-{n}", std::process::id());
        let mut tmux = Tmux {
            target: "screen".into(),
            socket,
            socket_path: None,
        };
        let mut command = vec![
            "env".to_owned(),
            // Whatever the test runner's terminal is, the program sees tmux's.
            "TERM=tmux-256color".to_owned(),
        ];
        command.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
        command.push(program.to_owned());
        command.extend(args.iter().cloned());
        let width = width.to_string();
        let height = height.to_string();
        let mut new_session = vec![
            "new-session",
            "-d",
            "-s",
            "screen",
            "-x",
            &width,
            "-y",
            &height,
            "--",
        ];
        new_session.extend(command.iter().map(String::as_str));
        tmux.run(&["-f", "/dev/null"], &new_session);
        tmux.run(&[], &["set-option", "-t", "screen", "remain-on-exit", "on"]);
        let path = tmux.run(&[], &["display-message", "-p", "#{socket_path}"]);
        tmux.socket_path = Some(path.trim().to_owned()).filter(|p| !p.is_empty());
        tmux
    }

    fn run(&self, options: &[&str], args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(options)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("tmux (the tests install it: cargo xtask test)");
        assert!(
            out.status.success(),
            "tmux {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The screen as text, one line per row.
    pub fn screen(&self) -> String {
        self.run(&[], &["capture-pane", "-p", "-t", &self.target])
    }

    /// The screen with its escape sequences (colours and attributes).
    pub fn screen_with_escapes(&self) -> String {
        self.run(&[], &["capture-pane", "-p", "-e", "-t", &self.target])
    }

    /// Types keys (tmux key names: `q`, `Escape`, `Enter`, `C-c`).
    pub fn send_keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", &self.target];
        args.extend_from_slice(keys);
        self.run(&[], &args);
    }

    /// Resizes the terminal, as a person resizing their window.
    pub fn resize(&self, width: u16, height: u16) {
        let (w, h) = (width.to_string(), height.to_string());
        self.run(
            &[],
            &["resize-window", "-t", &self.target, "-x", &w, "-y", &h],
        );
    }

    /// Whether the program in the pane has exited.
    pub fn exited(&self) -> bool {
        self.run(
            &[],
            &["display-message", "-p", "-t", &self.target, "#{pane_dead}"],
        )
        .trim()
            == "1"
    }

    /// Polls the screen until `probe` finds what it looks for; the panic on timeout shows
    /// the last screen.
    pub fn wait_for<T>(
        &self,
        timeout: Duration,
        what: &str,
        probe: impl Fn(&str) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.screen();
            if let Some(found) = probe(&screen) {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(path) = &self.socket_path {
            let _ = std::fs::remove_file(path);
        }
    }
}
