//! The CLI as users run it: `record` and `live --json --duration` capturing a provoked
//! scenario, `report` of that file reaching the same verdicts, bad destinations, and the
//! privilege check.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::Value;
use tracer_tests::{
    Hosts, require_root,
    scenario::{ClientOptions, abort, connect, establish},
    tracer::{run_json, run_ok, start_timeout, tracer_bin},
    wait_until,
};

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tracer-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn read_records(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect()
}

fn verdict_set(values: impl Iterator<Item = Value>) -> Vec<(u64, String)> {
    let mut v: Vec<(u64, String)> = values
        .map(|r| {
            (
                r["socket"].as_u64().unwrap(),
                r["verdict"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Waits for a recorder to have written its header (the probes are attached).
fn wait_for_header(path: &std::path::Path) {
    wait_until(start_timeout(), "the recorder's header", || {
        std::fs::read_to_string(path)
            .ok()
            .filter(|t| t.starts_with(r#"{"type":"header""#) && t.contains('\n'))
    });
}

#[test]
fn record_then_report_reaches_the_same_verdicts() {
    require_root();
    let hosts = Hosts::new("record");
    let path = scratch("record.jsonl");
    let mut recorder = Command::new(tracer_bin())
        .args(["record", "-o", path.to_str().unwrap(), "--no-sweep"])
        .args(hosts.netns_args())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_header(&path);
    let conn = establish(&hosts, false, ClientOptions::default());
    abort(conn.client);
    let refused = std::net::SocketAddr::new(Hosts::server_addr(true), 7401);
    assert!(connect(&hosts.client, "client", refused, ClientOptions::default()).is_err());
    wait_until(
        Duration::from_secs(30),
        "three verdicts in the file",
        || {
            let n = read_records(&path)
                .iter()
                .filter(|r| r["type"] == "verdict")
                .count();
            (n >= 3).then_some(())
        },
    );
    // SIGTERM, as a service manager would: the file ends cleanly.
    unsafe { libc::kill(recorder.id() as i32, libc::SIGTERM) };
    assert!(recorder.wait().unwrap().success());
    let records = read_records(&path);
    assert_eq!(records[0]["type"], "header");
    assert_eq!(records.last().unwrap()["type"], "end");
    let live = verdict_set(records.iter().filter(|r| r["type"] == "verdict").cloned());
    let kinds: Vec<&str> = live.iter().map(|(_, k)| k.as_str()).collect();
    assert!(
        kinds.contains(&"local_abort") && kinds.contains(&"peer_reset"),
        "{kinds:?}"
    );
    assert!(kinds.contains(&"connection_refused"), "{kinds:?}");

    let doc = run_json(["report", "--format", "json", path.to_str().unwrap()]);
    let replayed = verdict_set(doc["verdicts"].as_array().unwrap().iter().cloned());
    assert_eq!(live, replayed, "report reaches the live verdicts");
}

#[test]
fn live_json_stops_after_its_duration() {
    require_root();
    let hosts = Hosts::new("duration");
    let out = run_ok(
        ["live", "--json", "--no-sweep", "--duration", "2s"]
            .into_iter()
            .map(String::from)
            .chain(hosts.netns_args()),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["type"], "end");
    assert_eq!(last["reason"], "duration");
    // The summary goes to stderr when stdout carries JSON.
    assert!(String::from_utf8_lossy(&out.stderr).contains("── summary:"));
}

#[test]
fn record_to_stdout_feeds_a_pipe() {
    require_root();
    let hosts = Hosts::new("pipe");
    let out = Command::new(tracer_bin())
        .args(["record", "-o", "-", "--no-sweep", "--duration", "1s"])
        .args(hosts.netns_args())
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with(r#"{"type":"header""#));
    assert!(text.trim_end().ends_with('}'));
}

#[test]
fn unwritable_destinations_fail_with_one_line() {
    require_root();
    for (dest, expected) in [
        (
            "/nonexistent-dir/t.jsonl",
            "cannot write /nonexistent-dir/t.jsonl",
        ),
        ("/dev/full", "No space left on device"),
    ] {
        let out = Command::new(tracer_bin())
            .args([
                "record",
                "-o",
                dest,
                "--no-sweep",
                "--duration",
                "1s",
                "--port",
                "9",
            ])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{dest}");
        assert!(err.contains(expected), "{dest}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("backtrace"),
            "{err}"
        );
    }
}

#[test]
fn without_privileges_tracing_says_what_is_missing() {
    require_root();
    for command in [vec!["live"], vec!["record", "-o", "-"]] {
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(tracer_bin())
            .args(&command)
            .output()
            .expect("setpriv (util-linux)");
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(err.contains("root (or CAP_BPF and CAP_PERFMON)"), "{err}");
        assert!(err.contains("uid 65534"), "{err}");
    }
}

/// A kernel the tracer cannot serve (here: no BTF, as on kernels built without
/// CONFIG_DEBUG_INFO_BTF) gets one clear line, no backtrace, no hang; `doctor` says the
/// same and still reports what it can.
#[test]
fn without_kernel_btf_one_line_says_so() {
    require_root();
    // A private mount namespace where /sys/kernel/btf is an empty directory.
    let hide = "mount -t tmpfs none /sys/kernel/btf && exec \"$@\"";
    let run = |args: &[&str]| {
        Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                hide,
                "sh",
            ])
            .arg(tracer_bin())
            .args(args)
            .output()
            .expect("unshare (util-linux)")
    };
    let out = run(&["record", "-o", "-", "--duration", "5s"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("/sys/kernel/btf/vmlinux"), "{err}");
    assert!(err.contains("CONFIG_DEBUG_INFO_BTF"), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    let doctor = run(&["doctor"]);
    assert!(doctor.status.success(), "{doctor:?}");
    let text = String::from_utf8_lossy(&doctor.stdout);
    assert!(text.contains("BTF MISSING"), "{text}");
    assert!(text.contains("tracing: cannot run"), "{text}");
}
