//! `tracer top` in a real terminal: tmux runs it at 80×24, real deaths happen in network
//! namespaces, and the test reads the screen (capture-pane) as a person would.

use std::{io::Write, time::Duration};

use tracer_tests::{
    Hosts, require_root,
    scenario::{ClientOptions, abort, establish},
    terminal::Tmux,
    tracer::{start_timeout, tracer_bin},
};

const TIMEOUT: Duration = Duration::from_secs(40);

/// The row naming `peer` and owned by `owner`, if on screen.
fn row<'a>(screen: &'a str, peer: &str, owner: &str) -> Option<&'a str> {
    screen
        .lines()
        .find(|l| l.contains(&format!("{peer} ")) && l.contains(owner))
}

/// The countdown at the start of an unresponsive peer's row (`9.8 s`), in seconds.
fn countdown(row: &str) -> Option<f64> {
    let mut words = row.split_whitespace();
    let value = words.next()?.parse().ok()?;
    (words.next()? == "s").then_some(value)
}

/// The colours an escaped screen sets (SGR foreground and background codes; 39 and 49,
/// back to the default, are none).
fn colours(escaped: &str) -> Vec<String> {
    let mut found = Vec::new();
    for sequence in escaped.split("\x1b[").skip(1) {
        let Some(end) = sequence.find(|c: char| !(c.is_ascii_digit() || c == ';')) else {
            continue;
        };
        if !sequence[end..].starts_with('m') {
            continue;
        }
        for code in sequence[..end]
            .split(';')
            .filter_map(|c| c.parse::<u32>().ok())
        {
            if matches!(code, 30..=38 | 40..=48 | 90..=97 | 100..=107) {
                found.push(sequence[..end].to_owned());
            }
        }
    }
    found
}

#[test]
fn an_unresponsive_peer_counts_down_then_turns_into_its_verdict() {
    require_root();
    let hosts = Hosts::new("top");
    let mut args = vec!["top".to_owned(), "--no-sweep".into()];
    args.extend(hosts.netns_args());
    args.extend(["--dead-socket-after".into(), "2s".into()]);
    let tmux = Tmux::start(
        80,
        24,
        &[("NO_COLOR", "1")],
        tracer_bin().to_str().unwrap(),
        &args,
    );
    tmux.wait_for(start_timeout(), "the top screen", |s| {
        s.contains("tracer top · ").then_some(())
    });

    // The peer closes and this side keeps its socket: CLOSE_WAIT.
    let close_wait = establish(&hosts, false, ClientOptions::default());
    drop(close_wait.server);
    // The peer resets and this side keeps the dead socket: dead, then dead_socket_held.
    let reset = establish(&hosts, false, ClientOptions::default());
    abort(reset.server);
    // The peer vanishes while data is in flight; the kernel gives up after 12 s.
    let options = ClientOptions {
        user_timeout: Some(Duration::from_secs(12)),
        ..Default::default()
    };
    let mut vanished = establish(&hosts, false, options);
    hosts.client.blackhole_from(Hosts::server_addr(false));
    vanished.client.write_all(&[1u8; 2000]).unwrap();

    let peer = format!("{}:{}", Hosts::SERVER_V4, vanished.server_port);
    let (first, screen) = tmux.wait_for(TIMEOUT, "the unresponsive peer with a countdown", |s| {
        countdown(row(s, &peer, "client/")?).map(|left| (left, s.to_owned()))
    });
    println!("the countdown:\n{screen}");
    assert!(first > 0.0 && first <= 12.0, "{first}");
    let later = tmux.wait_for(TIMEOUT, "the countdown to go down", |s| {
        countdown(row(s, &peer, "client/")?).filter(|&left| left < first - 1.0)
    });
    assert!(later >= 0.0, "{later}");
    tmux.wait_for(TIMEOUT, "the peer's verdict in its row", |s| {
        row(s, &peer, "client/")
            .is_some_and(|r| r.trim_start().starts_with("retries_exhausted"))
            .then_some(())
    });

    let held = format!("{}:{}", Hosts::SERVER_V4, reset.server_port);
    let screen = tmux.wait_for(TIMEOUT, "the dead socket held", |s| {
        let r = row(s, &held, "client/")?;
        (r.contains("dead, held") && r.contains("ECONNRESET")).then(|| s.to_owned())
    });
    let waiting = format!("{}:{}", Hosts::SERVER_V4, close_wait.server_port);
    let r = row(&screen, &waiting, "client/").unwrap_or_else(|| panic!("{screen}"));
    assert!(r.contains("CLOSE_WAIT"), "{screen}");
    // A kind counts once it has its row in the table (the peers' section names the verdict
    // first): a name followed by its count.
    let tallied = |s: &str, kind: &str| {
        s.lines().any(|l| {
            let mut words = l.split_whitespace();
            words.next() == Some(kind) && words.next().is_some_and(|n| n.parse::<u32>().is_ok())
        })
    };
    let screen = tmux.wait_for(TIMEOUT, "the verdicts by kind and by process", |s| {
        ["dead_socket_held", "peer_reset", "retries_exhausted"]
            .iter()
            .all(|kind| tallied(s, kind))
            .then(|| s.to_owned())
    });
    assert!(screen.lines().all(|l| l.chars().count() <= 80), "{screen}");
    // By process: every verdict is about the client's sockets but the server's local_abort,
    // which belongs to the test itself (how many there are depends on when the screen was
    // read: the vanished peer's socket is held dead too, 2 s after its give-up).
    let count_after = |marker: &str| {
        screen
            .lines()
            .find_map(|l| l.split_once(marker).map(|(_, rest)| rest.to_owned()))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<u32>().ok())
    };
    let all = screen
        .lines()
        .find_map(|l| {
            l.split_once(" in all")?
                .0
                .rsplit(", ")
                .next()?
                .parse::<u32>()
                .ok()
        })
        .unwrap_or_else(|| panic!("{screen}"));
    assert!(all >= 5, "{screen}");
    assert_eq!(count_after(" client "), Some(all - 1), "{screen}");
    assert!(tallied(&screen, "local_abort"), "{screen}");
    // NO_COLOR: attributes (bold, reverse) but no colour.
    let escapes = tmux.screen_with_escapes();
    assert_eq!(colours(&escapes), Vec::<String>::new(), "{escapes:?}");

    // A larger terminal shows more: the local ends.
    tmux.resize(130, 40);
    tmux.wait_for(TIMEOUT, "the wider layout", |s| {
        s.contains("LOCAL").then_some(())
    });

    // q quits: the terminal is back, with the session's summary.
    tmux.send_keys(&["q"]);
    // The screen is captured before `exited` is asked: wait for both, or the capture may
    // predate the summary's last lines.
    let screen = tmux.wait_for(TIMEOUT, "top to quit and print its summary", |s| {
        (tmux.exited() && s.contains("── summary:") && s.contains("retries_exhausted"))
            .then(|| s.to_owned())
    });
    assert!(screen.contains("── summary:"), "{screen}");
    assert!(screen.contains("retries_exhausted 1"), "{screen}");
    drop((close_wait.client, reset.client, vanished));
}
