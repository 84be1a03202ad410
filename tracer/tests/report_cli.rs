//! `tracer report` through the real binary (no privileges needed).
//!
//! Two kinds of input: a synthetic trace written here with the trace's own writer
//! (`Record::to_json`) and verdicts from the real engine, so every expectation is exact;
//! and a trace recorded from the real kernel (tests/data/scenarios.jsonl). Then every kind
//! of bad input, and bad destinations.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use serde_json::Value;
use tracer::{
    event::Event,
    record::Header,
    testing::{self, MS, Sock, recorded_trace, socketless_reset},
    timeline::Verdict,
};

const SCENARIOS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/scenarios.jsonl");
const STARTED_NS: u64 = 1_000_000 * MS;

// ---------------------------------------------------------------------------------------
// Running the binary

struct Run {
    ok: bool,
    out: String,
    err: String,
}

fn tracer(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_tracer"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run tracer");
    Run {
        ok: out.status.success(),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn report(path: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["report"];
    args.extend_from_slice(extra);
    args.push(path.to_str().expect("utf-8 path"));
    tracer(&args)
}

fn json_report(path: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["--format", "json"];
    args.extend_from_slice(extra);
    let run = report(path, &args);
    assert!(run.ok, "{}", run.err);
    serde_json::from_str(&run.out).expect("the JSON report parses")
}

/// A scratch file under the target directory, named for the test.
fn scratch(name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report-cli");
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("scratch file");
    path
}

/// One line of error output: what failed and where, no backtrace.
fn assert_one_line(err: &str) {
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line expected: {err}"
    );
}

// ---------------------------------------------------------------------------------------
// A synthetic trace

/// A socket of the synthetic trace, owned by `comm/pid`, starting `start_ms` into the trace.
fn sock(id: u64, comm: &str, pid: u32, start_ms: u64) -> Sock {
    Sock::new(id)
        .owner(comm, pid)
        .ports(40_000 + id as u16, 443)
        .at_ms(STARTED_NS / MS + start_ms)
}

/// The sockets of the synthetic trace:
///
/// | socket | process | story | verdicts |
/// |---|---|---|---|
/// | 0x101 | curl/4242 | 6 RTOs, then ETIMEDOUT | peer_unresponsive, retries_exhausted |
/// | 0x102 | curl/4242 | reset by the peer | peer_reset |
/// | 0x103 | nginx/77 | orderly FIN close | none |
/// | 0x104 | nginx/77 | keepalive probes unanswered | keepalive_exhausted |
/// | none | - | a reset for a segment that matched no socket | none |
fn synthetic_events() -> Vec<Event> {
    let dead_peer = sock(0x101, "curl", 4242, 10)
        .retries_exhausted()
        .after_ms(5)
        .destroy();
    let reset = sock(0x102, "curl", 4242, 20).peer_reset().destroy();
    let orderly = sock(0x103, "nginx", 77, 30)
        .established()
        .after_ms(100)
        .fin_close();
    let keepalive = sock(0x104, "nginx", 77, 40).keepalive_exhausted().destroy();
    let stray = socketless_reset(STARTED_NS + 50 * MS + 1_000);
    let mut events: Vec<Event> = [dead_peer, reset, orderly, keepalive]
        .into_iter()
        .flat_map(|s| s.events)
        .chain([stray])
        .collect();
    events.sort_by_key(|e| e.ts_ns);
    events
}

fn header() -> Header {
    Header {
        tool_version: "test".into(),
        kernel_release: "6.18.0-test".into(),
        boot_to_wall_offset_ns: 1_795_000_000_000_000_000,
        command: vec!["tracer".into(), "record".into()],
        ..testing::header("testhost", STARTED_NS)
    }
}

/// The trace as `tracer record` writes it: header, events with the verdicts the engine
/// reaches as they arrive, the verdicts of the end, the end record.
fn synthetic_trace() -> (Vec<String>, Vec<Verdict>) {
    let events = synthetic_events();
    let end_ns = events.last().expect("events").ts_ns + 100 * MS;
    recorded_trace(header(), events, end_ns, "signal", true)
}

fn write_trace(name: &str, lines: &[String]) -> PathBuf {
    scratch(name, lines.join("\n") + "\n")
}

fn synthetic_file(name: &str) -> PathBuf {
    write_trace(name, &synthetic_trace().0)
}

// ---------------------------------------------------------------------------------------
// The synthetic trace, three formats

#[test]
fn the_synthetic_trace_has_the_verdicts_it_was_built_for() {
    let (_, verdicts) = synthetic_trace();
    let kinds: Vec<(u64, String)> = verdicts
        .iter()
        .map(|v| (v.socket.0, v.verdict.to_string()))
        .collect();
    assert_eq!(
        kinds,
        [
            (0x102, "peer_reset".to_owned()),
            (0x101, "peer_unresponsive".to_owned()),
            (0x104, "keepalive_exhausted".to_owned()),
            (0x101, "retries_exhausted".to_owned()),
        ]
    );
}

#[test]
fn text_report_summarises_then_shows_each_socket_with_a_verdict() {
    let path = synthetic_file("text.jsonl");
    let run = report(&path, &[]);
    assert!(run.ok, "{}", run.err);
    assert!(run.err.is_empty(), "{}", run.err);
    let out = &run.out;
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("trace from testhost (kernel 6.18.0-test, HZ 250), "),
        "{out}"
    );
    assert_eq!(lines[1], "recording ended: signal");
    assert!(lines[2].starts_with("── summary: 30 events over "), "{out}");
    assert_eq!(
        lines[3],
        "verdicts: keepalive_exhausted 1 · retries_exhausted 1 · peer_reset 1 · peer_unresponsive 1"
    );
    assert_eq!(
        lines[4],
        "events: state_change 14 · retransmit 6 · reset_sent 2 · reset_received 1 · \
         keepalive_probe 3 · destroy 4"
    );
    assert!(
        out.contains("\n1 resets sent for segments that matched no socket "),
        "{out}"
    );
    assert!(
        out.contains("the live tracer reached the same 4 verdicts"),
        "{out}"
    );
    // Three sockets have verdicts; the orderly one appears only with --all.
    let headings: Vec<&&str> = lines.iter().filter(|l| l.contains("   socket ")).collect();
    assert_eq!(headings.len(), 3, "{out}");
    assert!(
        headings[0].starts_with(
            "10.0.0.1:40257 → 10.0.0.2:443   curl/4242   netns 4026531840   socket 257 (sk:101)"
        ),
        "{out}"
    );
    assert!(!out.contains("(sk:103)"), "{out}");
    // Under a heading: events and verdicts in time order.
    let story: Vec<&str> = lines
        .iter()
        .skip_while(|l| !l.ends_with("(sk:101)"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| l.trim_start().split_once("  ").expect("time first").1)
        .collect();
    assert_eq!(story.len(), 12, "{story:#?}");
    assert_eq!(story[0], "state       CLOSE → SYN_SENT");
    assert_eq!(story[2], "retransmit  RTO #1, RTO 200 ms");
    assert!(
        story[5].starts_with("VERDICT peer_unresponsive: "),
        "{story:#?}"
    );
    assert_eq!(
        story[9],
        "state       ESTABLISHED → CLOSE  ETIMEDOUT (retransmit timer gave up)"
    );
    assert!(
        story[10].starts_with("VERDICT retries_exhausted: "),
        "{story:#?}"
    );
    assert_eq!(story[11], "released");

    let all = report(&path, &["--all"]);
    assert!(all.ok, "{}", all.err);
    assert!(all.out.contains("socket 259 (sk:103)"), "{}", all.out);
    assert_eq!(
        all.out.lines().filter(|l| l.contains("   socket ")).count(),
        4
    );
}

#[test]
fn json_report_has_verdicts_timelines_and_the_live_comparison() {
    let path = synthetic_file("json.jsonl");
    let doc = json_report(&path, &[]);
    assert_eq!(doc["trace"]["hostname"], "testhost");
    assert_eq!(doc["trace"]["events"], 30);
    assert_eq!(doc["trace"]["end"]["reason"], "signal");
    assert_eq!(doc["trace"]["events_by_kind"]["retransmit"], 6);
    assert_eq!(doc["verdict_counts"]["peer_reset"], 1);
    assert_eq!(doc["live_verdicts"]["same"], true);
    assert_eq!(doc["live_verdicts"]["in_trace"], 4);
    let verdicts = doc["verdicts"].as_array().expect("verdicts");
    assert_eq!(verdicts.len(), 4);
    assert!(
        verdicts
            .iter()
            .all(|v| v["explanation"].as_str().is_some_and(|e| !e.is_empty()))
    );
    let timelines = doc["timelines"].as_array().expect("timelines");
    let sockets: Vec<u64> = timelines
        .iter()
        .map(|t| t["socket"].as_u64().expect("socket"))
        .collect();
    assert_eq!(sockets, [0x101, 0x102, 0x104]);
    let dead = &timelines[0];
    assert_eq!(dead["error"], "ETIMEDOUT");
    assert_eq!(dead["retransmits"], 6);
    assert_eq!(
        dead["verdicts"],
        serde_json::json!(["peer_unresponsive", "retries_exhausted"])
    );
    assert_eq!(dead["events"].as_array().expect("events").len(), 10);
    assert_eq!(dead["process"]["comm"], "curl");

    let all = json_report(&path, &["--all"]);
    assert_eq!(all["timelines"].as_array().expect("timelines").len(), 4);
}

/// A Perfetto track: its events in file order.
fn tracks(doc: &Value) -> BTreeMap<u64, Vec<Value>> {
    let mut tracks: BTreeMap<u64, Vec<Value>> = BTreeMap::new();
    for e in doc["traceEvents"].as_array().expect("traceEvents") {
        if let Some(tid) = e["tid"].as_u64() {
            tracks.entry(tid).or_default().push(e.clone());
        }
    }
    tracks
}

fn perfetto(path: &Path, extra: &[&str]) -> Value {
    let out = scratch(
        &format!(
            "{}.perfetto.json",
            path.file_stem().unwrap().to_string_lossy()
        ),
        "",
    );
    let mut args = vec!["--format", "perfetto", "-o", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    let run = report(path, &args);
    assert!(run.ok, "{}", run.err);
    assert!(run.out.is_empty(), "-o writes to the file only");
    serde_json::from_str(&std::fs::read_to_string(&out).expect("written")).expect("valid JSON")
}

#[test]
fn perfetto_has_a_track_per_socket_under_its_process() {
    let path = synthetic_file("perfetto.jsonl");
    let doc = perfetto(&path, &["--all"]);
    let events = doc["traceEvents"].as_array().expect("traceEvents");
    let processes: BTreeMap<u64, &str> = events
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "process_name")
        .map(|e| {
            (
                e["pid"].as_u64().unwrap(),
                e["args"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        processes,
        BTreeMap::from([(77, "nginx (77)"), (4242, "curl (4242)")])
    );
    let tracks = tracks(&doc);
    assert_eq!(tracks.len(), 4, "one track per socket with events");
    let mut names = Vec::new();
    for (tid, track) in &tracks {
        assert!(
            !processes.contains_key(tid),
            "a socket's tid is never a process id"
        );
        // The track is named by its tuple, first; then one connection span enclosing the rest.
        assert_eq!(track[0]["ph"], "M");
        assert_eq!(track[0]["name"], "thread_name");
        let name = track[0]["args"]["name"].as_str().unwrap().to_owned();
        let connection = &track[1];
        assert_eq!(connection["name"], "connection");
        assert_eq!(connection["args"]["tuple"], name.as_str());
        let start = connection["ts"].as_f64().unwrap();
        let end = start + connection["dur"].as_f64().unwrap();
        let mut previous = start;
        for e in &track[2..] {
            let ts = e["ts"].as_f64().unwrap();
            assert!(ts >= previous, "parents first, in time order: {track:#?}");
            previous = ts;
            let until = ts + e["dur"].as_f64().unwrap_or(0.0);
            assert!(
                ts >= start && until <= end + 1e-6,
                "inside the connection: {e}"
            );
            assert_eq!(e["pid"], track[1]["pid"]);
        }
        names.push((track[1]["pid"].as_u64().unwrap(), name));
    }
    assert!(names.contains(&(4242, "10.0.0.1:40257 → 10.0.0.2:443".to_owned())));
    assert!(names.contains(&(77, "10.0.0.1:40259 → 10.0.0.2:443".to_owned())));

    let all: Vec<&Value> = tracks.values().flatten().collect();
    let count = |pred: &dyn Fn(&Value) -> bool| all.iter().filter(|e| pred(e)).count();
    assert_eq!(count(&|e| e["ph"] == "X" && e["name"] == "connection"), 4);
    assert_eq!(count(&|e| e["ph"] == "i" && e["cat"] == "retransmit"), 6);
    assert_eq!(
        count(&|e| e["ph"] == "i" && e["cat"] == "keepalive_probe"),
        3
    );
    assert_eq!(count(&|e| e["cat"] == "reset_received"), 1);
    assert_eq!(
        count(&|e| e["cat"] == "reset_sent"),
        1,
        "the socketless one has no track"
    );
    let states: Vec<&str> = all
        .iter()
        .filter(|e| e["cat"] == "state")
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(states.iter().filter(|s| **s == "SYN_SENT").count(), 4);
    assert_eq!(states.iter().filter(|s| **s == "ESTABLISHED").count(), 4);
    assert!(states.contains(&"FIN_WAIT1") && states.contains(&"FIN_WAIT2"));
    let verdicts: Vec<&&Value> = all.iter().filter(|e| e["cat"] == "verdict").collect();
    assert_eq!(verdicts.len(), 4);
    for v in verdicts {
        assert_eq!(v["ph"], "i");
        assert_eq!(v["s"], "t", "on the socket's own track");
        assert!(v["name"].as_str().unwrap().starts_with("VERDICT "));
        assert!(
            v["args"]["explanation"]
                .as_str()
                .is_some_and(|e| e.len() > 20)
        );
    }

    // Timestamps in µs from the start of tracing: the first event is 10 ms + 1 µs in.
    let first = tracks
        .values()
        .map(|t| t[1]["ts"].as_f64().unwrap())
        .fold(f64::MAX, f64::min);
    assert_eq!(first, 10_001.0);

    // Without --all: only the sockets with a verdict.
    assert_eq!(self::tracks(&perfetto(&path, &[])).len(), 3);
}

#[test]
fn a_difference_between_live_and_replay_is_named() {
    let (mut lines, _) = synthetic_trace();
    let peer_reset = lines
        .iter()
        .position(|l| l.contains(r#""verdict":"peer_reset""#))
        .expect("a peer_reset verdict");
    lines.remove(peer_reset);
    let path = write_trace("live-differs.jsonl", &lines);
    let run = report(&path, &[]);
    assert!(run.ok, "{}", run.err);
    assert!(
        run.out
            .contains("note: the live tracer reached different verdicts than this replay"),
        "{}",
        run.out
    );
    assert!(
        run.out.contains(
            "  only replay: peer_reset socket 258 (sk:102) 10.0.0.1:40258 → 10.0.0.2:443\n"
        ),
        "{}",
        run.out
    );
    let doc = json_report(&path, &[]);
    assert_eq!(doc["live_verdicts"]["same"], false);
    assert_eq!(doc["live_verdicts"]["only_live"], serde_json::json!([]));
    assert_eq!(
        doc["live_verdicts"]["only_replay"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // A trace whose verdicts were filtered out says nothing either way.
    lines.retain(|l| !l.starts_with(r#"{"type":"verdict""#));
    let path = write_trace("no-verdicts.jsonl", &lines);
    let run = report(&path, &[]);
    assert!(!run.out.contains("live tracer"), "{}", run.out);
}

#[test]
fn a_trace_without_an_end_record_says_it_was_cut_short() {
    let (mut lines, _) = synthetic_trace();
    lines.pop();
    let path = write_trace("no-end.jsonl", &lines);
    let run = report(&path, &[]);
    assert!(run.ok, "{}", run.err);
    assert!(
        run.out
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("recording has no end record"),
        "{}",
        run.out
    );
}

// ---------------------------------------------------------------------------------------
// Inputs: stdin, gzip, and every kind of bad input

#[test]
fn report_reads_stdin_and_gzip() {
    let (lines, _) = synthetic_trace();
    let text = lines.join("\n") + "\n";
    let mut child = Command::new(env!("CARGO_BIN_EXE_tracer"))
        .args(["report", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run tracer");
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(text.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("verdicts: keepalive_exhausted 1"));

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all((lines.join("\n") + "\n").as_bytes()).unwrap();
    let path = scratch("trace.jsonl.gz", gz.finish().unwrap());
    let run = report(&path, &[]);
    assert!(run.ok, "{}", run.err);
    assert!(run.out.contains("verdicts: keepalive_exhausted 1"));
}

#[test]
fn files_that_are_not_traces_are_refused_with_file_and_line() {
    let (lines, _) = synthetic_trace();
    let mut newer = lines.clone();
    newer[0] = newer[0].replace("\"version\":1", "\"version\":2");
    let mut second_header = lines.clone();
    second_header.extend(lines.iter().cloned());
    let cases: Vec<(&str, Vec<u8>, String)> = vec![
        ("empty.jsonl", vec![], "empty.jsonl: empty file, not a tracer trace".into()),
        (
            "foreign.json",
            b"{\"hello\": \"world\"}\n".to_vec(),
            "foreign.json:1: not a tracer trace (a JSON object without a \"type\")".into(),
        ),
        (
            "text.log",
            b"Nov 22 10:00:00 host kernel: hello\n".to_vec(),
            "text.log:1: not a tracer trace (not JSON Lines: expected value (column 1))".into(),
        ),
        (
            "binary.bin",
            vec![0x7f, b'E', b'L', b'F', 0xff, 0x00, b'\n'],
            "binary.bin:1: not a tracer trace (binary data, not JSON Lines)".into(),
        ),
        (
            "newer.jsonl",
            (newer.join("\n") + "\n").into_bytes(),
            "newer.jsonl:1: trace format version 2 is not supported: this tracer (0.1.0) reads version 1".into(),
        ),
        (
            "joined.jsonl",
            (second_header.join("\n") + "\n").into_bytes(),
            format!(
                "joined.jsonl:{}: a second header: several traces were joined into one file; \
                 report them one at a time",
                lines.len() + 1
            ),
        ),
    ];
    for (name, contents, expected) in cases {
        let path = scratch(name, contents);
        let run = report(&path, &[]);
        assert!(!run.ok, "{name} must fail");
        assert_one_line(&run.err);
        let message = format!("tracer: {}/{expected}", path.parent().unwrap().display());
        assert_eq!(run.err.trim_end(), message, "{name}");
        assert!(run.out.is_empty(), "{name}: nothing on stdout");
    }
}

#[test]
fn garbage_in_the_middle_names_the_line_and_stops() {
    let (mut lines, _) = synthetic_trace();
    lines.insert(10, r#"{"type":"event","kind":"nonsense"}"#.into());
    lines.insert(5, "".into()); // blank lines count as lines
    let path = write_trace("middle.jsonl", &lines);
    let run = report(&path, &[]);
    assert!(!run.ok);
    assert_one_line(&run.err);
    assert!(
        run.err
            .contains("middle.jsonl:12: bad event record: unknown variant `nonsense`"),
        "{}",
        run.err
    );
}

#[test]
fn a_trace_cut_mid_line_is_reported_and_the_rest_used() {
    let (lines, _) = synthetic_trace();
    // Cut inside the last event, before the verdicts and the end record of the clean trace.
    let keep = lines.len() - 3;
    let mut text = lines[..keep].join("\n") + "\n";
    let last = &lines[keep];
    text += &last[..last.len() / 2];
    let path = scratch("cut.jsonl", text);
    let run = report(&path, &[]);
    assert!(run.ok, "{}", run.err);
    assert_one_line(&run.err);
    assert!(
        run.err.starts_with(&format!(
            "tracer: warning: {}:{}: last line is incomplete (the trace was cut off): ",
            path.display(),
            keep + 1
        )),
        "{}",
        run.err
    );
    assert!(
        run.err.trim_end().ends_with("; reporting the rest"),
        "{}",
        run.err
    );
    assert!(
        run.out.contains("recording has no end record"),
        "{}",
        run.out
    );
    assert!(run.out.contains("verdicts: "), "{}", run.out);
}

// ---------------------------------------------------------------------------------------
// Destinations

#[test]
fn unwritable_output_and_full_disk_give_one_clear_line() {
    let path = synthetic_file("destinations.jsonl");
    let run = report(&path, &["-o", "/nonexistent-dir/report.txt"]);
    assert!(!run.ok);
    assert_one_line(&run.err);
    assert_eq!(
        run.err.trim_end(),
        "tracer: cannot write /nonexistent-dir/report.txt: No such file or directory (os error 2)"
    );
    for format in ["text", "json", "perfetto"] {
        let run = report(&path, &["--format", format, "-o", "/dev/full"]);
        assert!(!run.ok);
        assert_one_line(&run.err);
        assert_eq!(
            run.err.trim_end(),
            "tracer: writing /dev/full: No space left on device (os error 28)",
            "{format}"
        );
    }
    // A trace that cannot be read leaves an existing report untouched.
    let existing = scratch("existing-report.txt", "previous report\n");
    let empty = scratch("empty-input.jsonl", "");
    let run = report(&empty, &["-o", existing.to_str().unwrap()]);
    assert!(!run.ok);
    assert_eq!(
        std::fs::read_to_string(&existing).unwrap(),
        "previous report\n"
    );
}

#[test]
fn record_to_an_unwritable_path_fails_before_tracing() {
    // No privileges needed to get this far: the destination is opened first.
    let run = tracer(&["record", "-o", "/nonexistent-dir/t.jsonl"]);
    assert!(!run.ok);
    assert_one_line(&run.err);
    assert_eq!(
        run.err.trim_end(),
        "tracer: cannot write /nonexistent-dir/t.jsonl: No such file or directory (os error 2)"
    );
    let run = tracer(&[
        "record",
        "--format",
        "binary",
        "-o",
        "/nonexistent-dir/t.bin",
    ]);
    assert_eq!(
        run.err.trim_end(),
        "tracer: cannot write /nonexistent-dir/t.bin: No such file or directory (os error 2)"
    );
}

#[test]
fn a_reader_that_goes_away_ends_the_report_quietly() {
    // `tracer report t.jsonl | head`: more output than a pipe holds, a reader that stops.
    for format in ["text", "json", "perfetto"] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tracer"))
            .args(["report", "--all", "--format", format, SCENARIOS])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run tracer");
        let mut stdout = child.stdout.take().unwrap();
        let mut first = [0u8; 16];
        stdout.read_exact(&mut first).unwrap();
        drop(stdout);
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{format}");
        assert!(
            out.stderr.is_empty(),
            "{format}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

// ---------------------------------------------------------------------------------------
// A trace recorded from the real kernel (the scenario suite, both address families)

fn scenario_verdicts() -> usize {
    std::fs::read_to_string(SCENARIOS)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with(r#"{"type":"verdict""#))
        .count()
}

#[test]
fn the_recorded_scenarios_replay_to_the_live_verdicts_in_every_format() {
    let path = Path::new(SCENARIOS);
    let text = report(path, &[]);
    assert!(text.ok, "{}", text.err);
    assert!(
        text.out.contains(&format!(
            "the live tracer reached the same {} verdicts",
            scenario_verdicts()
        )),
        "{}",
        text.out
    );
    assert!(
        text.out.contains("VERDICT retries_exhausted: peer "),
        "{}",
        text.out
    );

    let doc = json_report(path, &[]);
    assert_eq!(
        doc["verdicts"].as_array().unwrap().len(),
        scenario_verdicts()
    );
    assert_eq!(doc["live_verdicts"]["same"], true);

    let doc = perfetto(path, &[]);
    let tracks = tracks(&doc);
    let verdicts: usize = tracks
        .values()
        .flatten()
        .filter(|e| e["cat"] == "verdict")
        .count();
    assert_eq!(verdicts, scenario_verdicts());
    assert!(tracks.len() > 10);
    for track in tracks.values() {
        assert!(
            track[2..]
                .windows(2)
                .all(|w| w[0]["ts"].as_f64() <= w[1]["ts"].as_f64()),
            "time order within a track"
        );
    }
}

#[test]
fn help_version_completions_and_man_need_no_privileges() {
    for args in [
        vec!["--help"],
        vec!["--version"],
        vec!["completions", "bash"],
        vec!["man"],
        vec!["report", "--help"],
    ] {
        let run = tracer(&args);
        assert!(run.ok, "{args:?}: {}", run.err);
        assert!(!run.out.is_empty(), "{args:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Selection: --socket, --verdict, --since, --until

fn sockets_of(doc: &Value) -> Vec<u64> {
    doc["timelines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["socket"].as_u64().unwrap())
        .collect()
}

fn verdicts_in(doc: &Value) -> Vec<(u64, String)> {
    doc["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["socket"].as_u64().unwrap(),
                v["verdict"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn selection_by_socket_verdict_and_time() {
    let path = synthetic_file("select.jsonl");
    // By verdict: the sockets that got it, and only verdicts of that kind.
    let doc = json_report(&path, &["--verdict", "retries_exhausted"]);
    assert_eq!(sockets_of(&doc), [0x101]);
    assert_eq!(verdicts_in(&doc), [(0x101, "retries_exhausted".to_owned())]);
    assert_eq!(doc["selection"]["options"], "--verdict retries_exhausted");
    assert_eq!(
        doc["live_verdicts"]["same"], true,
        "compared on the whole trace"
    );
    // By socket, as ss -e shows it, with or without a verdict.
    let doc = json_report(&path, &["--socket", "sk:103", "--socket", "258"]);
    assert_eq!(sockets_of(&doc), [0x102, 0x103]);
    assert_eq!(verdicts_in(&doc), [(0x102, "peer_reset".to_owned())]);
    // By time: sockets with events in the window (whole), verdicts in it.
    let all = json_report(&path, &[]);
    // From just after the reset socket's last event.
    let reset = all["timelines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["socket"] == 0x102)
        .unwrap();
    let since_ms = (reset["last_ns"].as_u64().unwrap() - STARTED_NS) / MS + 1;
    let since = format!("+{since_ms}ms");
    let doc = json_report(&path, &["--since", &since]);
    let expected: Vec<u64> = all["timelines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["last_ns"].as_u64().unwrap() >= STARTED_NS + since_ms * MS)
        .map(|t| t["socket"].as_u64().unwrap())
        .collect();
    assert!(
        expected.contains(&0x104) && !expected.contains(&0x102),
        "{expected:?}"
    );
    assert_eq!(sockets_of(&doc), expected);
    let doc = json_report(&path, &["--until", &since, "--verdict", "peer_reset"]);
    assert_eq!(sockets_of(&doc), [0x102]);
    // The text report says what was selected; an empty selection says so.
    let text = report(&path, &["--verdict", "keepalive_exhausted"]);
    assert!(
        text.out
            .contains("selected: 1 sockets (--verdict keepalive_exhausted)"),
        "{}",
        text.out
    );
    assert!(text.out.contains("socket 260 (sk:104)"), "{}", text.out);
    assert!(!text.out.contains("sk:101"), "{}", text.out);
    let none = report(&path, &["--socket", "999"]);
    assert!(
        none.out.contains("no socket matches the selection"),
        "{}",
        none.out
    );
    // Bad values: one line, saying what would do.
    let bad = report(&path, &["--verdict", "dead"]);
    assert!(
        !bad.ok && bad.err.contains("keepalive_exhausted"),
        "{}",
        bad.err
    );
    let bad = report(&path, &["--since", "soon"]);
    assert!(!bad.ok && bad.err.contains("+30s"), "{}", bad.err);
    let bad = report(&path, &["--socket", "sk:xyz"]);
    assert!(!bad.ok && bad.err.contains("ss -e"), "{}", bad.err);
}

#[test]
fn html_report_of_a_selection_is_one_page_without_outside_references() {
    let path = synthetic_file("html.jsonl");
    let out = scratch("report.html", "");
    let run = tracer(&[
        "report",
        "--format",
        "html",
        "-o",
        out.to_str().unwrap(),
        "--verdict",
        "retries_exhausted",
        path.to_str().unwrap(),
    ]);
    assert!(run.ok, "{}", run.err);
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("Content-Security-Policy"));
    assert!(html.contains("id=\"socket-257\""), "the selected socket");
    assert!(!html.contains("id=\"socket-258\""), "not selected");
    assert!(html.contains("Selected: --verdict retries_exhausted"));
    // The backoff: the waits between RTOs, doubling.
    for wait in ["400 ms", "800 ms", "1.6 s", "3.2 s", "6.4 s"] {
        assert!(
            html.contains(&format!("<title>waited {wait}</title>")),
            "{wait}"
        );
    }
    assert!(
        html.matches("<svg").count() == 3,
        "chart, legend, one socket"
    );
    for outside in ["http:", "https:", "<script", "src="] {
        assert!(!html.contains(outside), "{outside}");
    }
}

#[test]
fn a_binary_trace_reports_exactly_as_its_json_lines() {
    let dir = scratch("binary-dummy", "");
    let binary = dir.with_file_name("scenarios.bin");
    let back = dir.with_file_name("scenarios-back.jsonl");
    let run = tracer(&["convert", SCENARIOS, "-o", binary.to_str().unwrap()]);
    assert!(run.ok, "{}", run.err);
    let bytes = std::fs::read(&binary).unwrap();
    assert!(bytes.starts_with(b"\x89TRACER\n"));
    // Every format of the report, with and without --all, is the same from either file.
    for extra in [
        &[][..],
        &["--all"],
        &["--format", "json"],
        &["--format", "json", "--all"],
        &["--format", "perfetto"],
        &["--format", "html"],
    ] {
        let from_json = report(Path::new(SCENARIOS), extra);
        let from_binary = report(&binary, extra);
        assert!(
            from_json.ok && from_binary.ok,
            "{}{}",
            from_json.err,
            from_binary.err
        );
        assert_eq!(from_binary.out, from_json.out, "{extra:?}");
        assert_eq!(from_binary.err, from_json.err, "{extra:?}");
    }
    let run = tracer(&[
        "convert",
        binary.to_str().unwrap(),
        "-o",
        binary.to_str().unwrap(),
    ]);
    assert!(!run.ok);
    assert_eq!(
        run.err.trim_end(),
        format!(
            "tracer: {}: the copy would overwrite the trace it is made from",
            binary.display()
        )
    );
    // And back to JSON Lines (the default for a binary input): the same report again.
    let run = tracer(&[
        "convert",
        binary.to_str().unwrap(),
        "-o",
        back.to_str().unwrap(),
    ]);
    assert!(run.ok, "{}", run.err);
    assert_eq!(
        report(&back, &["--format", "json"]).out,
        report(Path::new(SCENARIOS), &["--format", "json"]).out
    );
    // A cut binary trace: the rest is reported, with the warning naming the record.
    let cut = scratch("scenarios-cut.bin", &bytes[..bytes.len() - 3]);
    let run = report(&cut, &[]);
    assert!(run.ok, "{}", run.err);
    assert!(
        run.err
            .starts_with(&format!("tracer: warning: {}: record ", cut.display()))
            && run
                .err
                .contains("last record is incomplete (the trace was cut off); reporting the rest"),
        "{}",
        run.err
    );
}
