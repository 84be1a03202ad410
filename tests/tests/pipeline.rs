//! The pipeline itself: the kernel programs built from source load into this kernel, a real
//! TCP state change in a namespace reaches userspace, and everything detaches on exit.

use std::{
    net::{TcpListener, TcpStream},
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use tracer::{record::Record, trace_file::TraceReader};
use tracer_tests::{
    Netns, Tracer, require_root,
    tracer::{program_loaded, start_timeout, tracer_bin},
    wait_until,
};

#[test]
fn a_state_change_in_a_namespace_reaches_userspace_and_programs_detach_on_exit() {
    require_root();
    let ns = Netns::new("pipe");
    let tracer = Tracer::live(&["--netns".into(), ns.inode.to_string()], &[]);
    let ids = tracer.program_ids();
    assert!(
        ids.len() >= 5,
        "expected the tracer to hold its programs, got {ids:?}"
    );

    let port = ns.run_in("pipe-client", || {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let _client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _accepted = listener.accept().unwrap();
        port
    });
    let connect = tracer.wait_for(Duration::from_secs(10), "SYN_SENT of our connect", |r| {
        r["kind"] == "state_change" && r["state"] == "SYN_SENT" && r["rport"] == port
    });
    assert_eq!(
        connect["netns"], ns.inode,
        "event carries the namespace inode"
    );
    assert_eq!(connect["old_state"], "CLOSE");
    assert_eq!(connect["family"], "ipv4");
    assert_eq!(
        connect["process"]["pid"],
        std::process::id(),
        "owner is this process"
    );
    assert_eq!(
        connect["process"]["comm"], "pipe-client",
        "owner comm is the thread's"
    );

    let (records, _stderr) = tracer.stop();
    let last = records.last().expect("records");
    assert_eq!(last["type"], "end", "the trace ends with an end record");
    assert_eq!(last["reason"], "signal");
    // The kernel frees programs asynchronously (RCU) once their last fd closes.
    wait_until(
        Duration::from_secs(10),
        "every program to be unloaded",
        || ids.iter().all(|&id| !program_loaded(id)).then_some(()),
    );
}

#[test]
fn the_filter_keeps_other_namespaces_out() {
    require_root();
    let watched = Netns::new("seen");
    let other = Netns::new("unseen");
    let tracer = Tracer::live(&["--netns".into(), watched.inode.to_string()], &[]);
    for ns in [&other, &watched] {
        ns.run_in("filter-test", || {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            let _c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        });
    }
    tracer.wait_for(
        Duration::from_secs(10),
        "an event from the watched namespace",
        |r| r["type"] == "event" && r["netns"] == watched.inode,
    );
    let (records, _) = tracer.stop();
    let leaked: Vec<_> = records
        .iter()
        .filter(|r| r["type"] == "event" && r["netns"] != watched.inode)
        .collect();
    assert!(
        leaked.is_empty(),
        "events from unwatched namespaces: {leaked:?}"
    );
}

#[test]
fn sigterm_ends_the_trace_cleanly_and_detaches() {
    require_root();
    let ns = Netns::new("term");
    let tracer = Tracer::live(&["--netns".into(), ns.inode.to_string()], &[]);
    let ids = tracer.program_ids();
    assert!(!ids.is_empty());
    let (records, _stderr) = tracer.stop_with(libc::SIGTERM);
    assert_eq!(records.first().unwrap()["type"], "header");
    assert_eq!(records.last().unwrap()["type"], "end");
    wait_until(
        Duration::from_secs(10),
        "every program to be unloaded",
        || ids.iter().all(|&id| !program_loaded(id)).then_some(()),
    );
}

/// `record --format binary` against the real kernel: a refused connect's events and
/// verdict can be read back from the file while the tracer still runs (each batch is
/// flushed), the trace ends with its `end` record, and `convert` gives back JSON Lines
/// that report the same as the binary trace.
#[test]
fn a_binary_trace_holds_what_the_kernel_said_and_converts_to_json_lines() {
    require_root();
    let ns = Netns::new("binrec");
    let dir = std::env::temp_dir().join(format!("tracer-binrec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let trace = dir.join("trace.bin");
    let mut child = Command::new(tracer_bin())
        .args(["record", "--format", "binary", "--no-sweep", "-o"])
        .arg(&trace)
        .args(["--netns", &ns.inode.to_string()])
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tracer");
    // The header is on disk once the programs are attached.
    wait_until(start_timeout(), "the binary trace's header", || {
        TraceReader::open(&trace).ok()
    });
    let port = ns.run_in("probe", || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    });
    let refused = ns.run_in("binrec", move || TcpStream::connect(("127.0.0.1", port)));
    assert!(refused.is_err(), "nothing listens on {port}");

    let kinds = |path: &Path| -> Vec<String> {
        let Ok((mut reader, _)) = TraceReader::open(path) else {
            return Vec::new();
        };
        let mut seen = Vec::new();
        // A frame still being written reads as a cut last record: what came before counts.
        while let Ok(Some(record)) = reader.next_record() {
            match record {
                Record::Event(e) if e.conn.rport == port => seen.push(e.kind.name().to_owned()),
                Record::Verdict(v) if v.conn.rport == port => {
                    seen.push(v.verdict.name().to_owned())
                }
                Record::End(_) => seen.push("end".to_owned()),
                _ => {}
            }
        }
        seen
    };
    let live = wait_until(
        Duration::from_secs(30),
        "the refusal in the binary trace",
        || {
            let seen = kinds(&trace);
            seen.iter()
                .any(|k| k == "connection_refused")
                .then_some(seen)
        },
    );
    assert!(
        live.iter().any(|k| k == "reset_received") && live.iter().any(|k| k == "state_change"),
        "{live:?}"
    );
    // SAFETY: signalling our own child, which has not been reaped yet.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert!(child.wait().unwrap().success());
    assert_eq!(kinds(&trace).last().map(String::as_str), Some("end"));

    let json = dir.join("trace.jsonl");
    let converted = Command::new(tracer_bin())
        .arg("convert")
        .arg(&trace)
        .arg("-o")
        .arg(&json)
        .status()
        .unwrap();
    assert!(converted.success());
    let first = std::fs::read_to_string(&json).unwrap();
    assert!(first.starts_with(r#"{"type":"header""#), "JSON Lines");
    let report = |path: &Path| {
        let out = Command::new(tracer_bin())
            .arg("report")
            .arg(path)
            .args(["--format", "json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let from_binary = report(&trace);
    assert!(
        String::from_utf8_lossy(&from_binary).contains("connection_refused"),
        "the report names the refusal"
    );
    assert_eq!(
        from_binary,
        report(&json),
        "binary and JSON Lines report alike"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
