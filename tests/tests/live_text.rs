//! `tracer live` as a person reads it: every line names the socket by the tuple and owner
//! it had, also after the kernel cleared them, and lines that say nothing stay out.

use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener},
    time::Duration,
};

use tracer_tests::{
    Netns, Tracer, require_root,
    scenario::{ClientOptions, connect},
    terminal::TextTracer,
};

const TIMEOUT: Duration = Duration::from_secs(30);

/// A port nothing listens on in `ns`: one that was just free.
fn closed_port(ns: &Netns) -> u16 {
    ns.run_in("probe", || {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        l.local_addr().unwrap().port()
    })
}

/// A connect refused on loopback: after the reset, tcp_disconnect() clears the local address
/// and the remote port, and reports an error that is no longer pending (which the kernel
/// programs leave out: it tells nothing). The release line still names the real tuple and
/// owner. The connect itself is reported before the kernel picks the local port:
/// `127.0.0.1:*`.
#[test]
fn a_refused_connect_ends_with_its_real_tuple_and_no_noise() {
    require_root();
    let ns = Netns::new("naming");
    let netns = vec!["--netns".to_owned(), ns.inode.to_string()];
    let text = TextTracer::start(&netns);
    let verbose = TextTracer::start(&[netns.clone(), vec!["-v".into()]].concat());
    let json = Tracer::live(&netns, &[]);
    let port = closed_port(&ns);
    let to = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let err = connect(&ns, "refused", to, ClientOptions::default()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);

    let peer = format!("→ 127.0.0.1:{port} ");
    let released = text.wait_line(TIMEOUT, "the release line", |l| {
        l.contains(&peer) && l.contains(" released")
    });
    // The release names the tuple the connection had, and its owner.
    let record = json.wait_for(TIMEOUT, "the destroy record", |r| {
        r["kind"] == "destroy" && r["rport"] == port
    });
    let lport = record["lport"].as_u64().unwrap();
    assert!(lport > 0, "{record}");
    assert_eq!(record["laddr"], "127.0.0.1", "{record}");
    assert_eq!(record["process"]["comm"], "refused", "{record}");
    // What the kernel itself reported stays in the record.
    assert_eq!(record["raw"]["laddr"], "0.0.0.0", "{record}");
    assert_eq!(record["raw"]["rport"], 0, "{record}");
    assert_eq!(record["raw"]["lport"], lport, "{record}");
    let tuple = format!("127.0.0.1:{lport} → 127.0.0.1:{port}");
    assert!(released.contains(&tuple), "{released}");
    assert!(released.contains("refused/"), "{released}");

    verbose.wait_line(TIMEOUT, "the release line (-v)", |l| {
        l.contains(&peer) && l.contains(" released")
    });
    let quiet = text.stop();
    let all = verbose.stop();
    let reports: Vec<_> = json
        .records()
        .into_iter()
        .filter(|r| r["kind"] == "error_report" && r["rport"] == port)
        .collect();
    json.stop();
    // One report: the refusal. tcp_disconnect()'s empty one never reaches the trace.
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!(reports[0]["err"], libc::ECONNREFUSED, "{reports:#?}");
    let ours = |lines: &[String]| -> Vec<String> {
        lines
            .iter()
            .filter(|l| l.contains(&format!("→ 127.0.0.1:{port}")))
            .cloned()
            .collect()
    };
    let (quiet, all) = (ours(&quiet), ours(&all));
    for line in &quiet {
        assert!(
            !line.contains("0.0.0.0"),
            "a tuple that never existed: {line}"
        );
        assert!(!line.contains(":0 "), "a tuple that never existed: {line}");
        assert!(!line.contains("no error"), "noise shown by default: {line}");
    }
    assert!(
        quiet
            .iter()
            .any(|l| l.contains("error") && l.contains("ECONNREFUSED")),
        "{quiet:#?}"
    );
    assert!(
        !all.iter().any(|l| l.contains("no error")),
        "no empty error report, even with -v: {all:#?}"
    );
}
