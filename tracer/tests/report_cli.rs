//! `tracer report` through the real binary (no privileges needed): the three formats on a
//! trace recorded from the real kernel, and every kind of bad input.

use std::{path::PathBuf, process::Command};

use serde_json::Value;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/scenarios.jsonl");

fn tracer(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tracer"))
        .args(args)
        .output()
        .expect("run tracer");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A scratch file under the target directory, named for the test.
fn scratch(name: &str, contents: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report-cli");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

fn fixture_lines() -> Vec<String> {
    std::fs::read_to_string(FIXTURE)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn recorded_verdicts() -> usize {
    fixture_lines()
        .iter()
        .filter(|l| l.starts_with(r#"{"type":"verdict""#))
        .count()
}

#[test]
fn text_report_shows_the_verdicts_and_their_timelines() {
    let (ok, out, err) = tracer(&["report", FIXTURE]);
    assert!(ok, "{err}");
    assert!(out.starts_with("trace from "), "{out}");
    assert!(out.contains("verdicts: keepalive_exhausted 2"), "{out}");
    assert!(out.contains("VERDICT retries_exhausted: peer "), "{out}");
    assert!(
        !out.contains("note: the live tracer reached different verdicts"),
        "{out}"
    );
    // Only sockets with a verdict by default; --all shows the orderly ones too.
    let (_, all, _) = tracer(&["report", "--all", FIXTURE]);
    assert!(all.lines().count() > out.lines().count());
}

#[test]
fn json_report_has_the_same_verdicts_as_the_live_trace() {
    let (ok, out, err) = tracer(&["report", "--format", "json", FIXTURE]);
    assert!(ok, "{err}");
    let doc: Value = serde_json::from_str(&out).expect("valid JSON");
    assert_eq!(
        doc["verdicts"].as_array().unwrap().len(),
        recorded_verdicts()
    );
    let timelines = doc["timelines"].as_array().unwrap();
    assert!(
        timelines
            .iter()
            .any(|t| t["verdicts"][0] == "keepalive_exhausted")
    );
    assert!(
        timelines
            .iter()
            .all(|t| t["events"].as_array().is_some_and(|e| !e.is_empty()))
    );
}

#[test]
fn perfetto_export_has_tracks_spans_instants_and_verdicts() {
    let path = scratch("trace.perfetto.json", "");
    let (ok, _, err) = tracer(&[
        "report",
        "--format",
        "perfetto",
        "-o",
        path.to_str().unwrap(),
        FIXTURE,
    ]);
    assert!(ok, "{err}");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let events = doc["traceEvents"].as_array().unwrap();
    let count = |pred: &dyn Fn(&Value) -> bool| events.iter().filter(|e| pred(e)).count();
    let tracks = count(&|e| e["ph"] == "M" && e["name"] == "thread_name");
    let processes = count(&|e| e["ph"] == "M" && e["name"] == "process_name");
    let connections = count(&|e| e["ph"] == "X" && e["name"] == "connection");
    let states = count(&|e| e["ph"] == "X" && e["cat"] == "state");
    let retransmits = count(&|e| e["ph"] == "i" && e["cat"] == "retransmit");
    let probes = count(&|e| e["ph"] == "i" && e["cat"] == "keepalive_probe");
    let resets =
        count(&|e| e["ph"] == "i" && (e["cat"] == "reset_received" || e["cat"] == "reset_sent"));
    let verdicts = count(&|e| e["cat"] == "verdict");
    assert!(
        tracks > 10 && tracks == connections,
        "{tracks} tracks, {connections} connections"
    );
    assert!(processes >= 2);
    assert!(states > connections, "state spans");
    assert!(retransmits > 0 && probes > 0 && resets > 0);
    assert_eq!(verdicts, recorded_verdicts());
    assert!(
        events
            .iter()
            .all(|e| e["ph"] == "M" || e["ts"].as_f64().is_some_and(|t| t >= 0.0))
    );
}

#[test]
fn garbage_empty_and_foreign_files_are_refused_with_file_and_line() {
    for (name, contents, expected) in [
        (
            "garbage.jsonl",
            "\u{1}\u{2}binary garbage\n",
            ":1: not a tracer trace",
        ),
        ("empty.jsonl", "", ": empty file"),
        (
            "foreign.json",
            "{\"hello\": \"world\"}\n",
            ":1: not a tracer trace",
        ),
    ] {
        let path = scratch(name, contents);
        let (ok, _, err) = tracer(&["report", path.to_str().unwrap()]);
        assert!(!ok, "{name} must fail");
        assert!(err.contains(&format!("{name}{expected}")), "{name}: {err}");
        assert_eq!(
            err.trim().lines().count(),
            1,
            "one line, no backtrace: {err}"
        );
    }
}

#[test]
fn a_newer_schema_version_is_refused_naming_both_versions() {
    let mut lines = fixture_lines();
    lines[0] = lines[0].replace("\"version\":1", "\"version\":2");
    let path = scratch("newer.jsonl", &(lines.join("\n") + "\n"));
    let (ok, _, err) = tracer(&["report", path.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("newer.jsonl:1: trace format version 2"),
        "{err}"
    );
    assert!(err.contains("reads version 1"), "{err}");
}

#[test]
fn garbage_in_the_middle_names_the_line() {
    let mut lines = fixture_lines();
    lines.insert(10, "{\"type\":\"event\",\"kind\":\"nonsense\"}".into());
    let path = scratch("middle.jsonl", &(lines.join("\n") + "\n"));
    let (ok, _, err) = tracer(&["report", path.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("middle.jsonl:11: bad event record"), "{err}");
}

#[test]
fn a_trace_cut_by_a_crash_is_reported_and_the_rest_used() {
    let text = std::fs::read_to_string(FIXTURE).unwrap();
    let cut = &text[..text.len() - 40];
    let path = scratch("cut.jsonl", cut);
    let (ok, out, err) = tracer(&["report", path.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        err.contains("cut.jsonl:") && err.contains("last line is incomplete"),
        "{err}"
    );
    assert!(out.contains("verdicts: "), "{out}");
}

#[test]
fn unwritable_output_and_full_disk_give_one_clear_line() {
    let (ok, _, err) = tracer(&["report", "-o", "/nonexistent-dir/report.txt", FIXTURE]);
    assert!(!ok);
    assert!(
        err.contains("cannot write /nonexistent-dir/report.txt"),
        "{err}"
    );
    let (ok, _, err) = tracer(&["report", "-o", "/dev/full", FIXTURE]);
    assert!(!ok);
    assert!(
        err.contains("writing /dev/full") && err.contains("No space left"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn report_reads_stdin() {
    let out = Command::new(env!("CARGO_BIN_EXE_tracer"))
        .args(["report", "-"])
        .stdin(std::fs::File::open(FIXTURE).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("verdicts: "));
}

#[test]
fn help_version_completions_and_man_need_no_privileges() {
    for args in [
        vec!["--help"],
        vec!["--version"],
        vec!["completions", "bash"],
        vec!["man"],
    ] {
        let (ok, out, err) = tracer(&args);
        assert!(ok, "{args:?}: {err}");
        assert!(!out.is_empty(), "{args:?}");
    }
}
