//! The pipeline itself: the kernel programs built from source load into this kernel, a real
//! TCP state change in a namespace reaches userspace, and everything detaches on exit.

use std::{
    net::{TcpListener, TcpStream},
    time::Duration,
};

use tracer_tests::{Netns, Tracer, require_root, tracer::program_loaded, wait_until};

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
