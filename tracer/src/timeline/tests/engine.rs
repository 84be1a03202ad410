//! The engine around the rules: bounded memory, events it cannot place, reordering, and
//! the identity and owner verdicts carry.

use super::*;
use crate::{
    event::{Errno, EventKind, Owner, OwnerSource, SocketId, TcpState},
    testing::socketless_reset,
    timeline::Retain,
};

#[test]
fn memory_is_bounded() {
    let mut engine = Engine::new(Thresholds {
        max_timelines: 100,
        max_events_per_timeline: 16,
        ..Thresholds::default()
    });
    engine.retain(Retain::All);
    let mut out = Vec::new();
    // One socket opening every millisecond, none seen to end.
    for id in 0..1_000u64 {
        for e in Sock::new(id).established().shifted(id).events {
            engine.push(e, &mut out);
        }
    }
    let mut chatty = Sock::new(5_000).established().shifted(1_000);
    for _ in 0..100 {
        chatty = chatty.after_ms(1).progress();
    }
    for e in chatty.events {
        engine.push(e, &mut out);
    }
    engine.finish(u64::MAX / 2, &mut out);
    let stats = engine.stats();
    assert!(stats.tracked <= 100, "{stats:?}");
    assert!((900..=910).contains(&stats.evicted), "{stats:?}");
    assert_eq!(stats.truncated_events, 102 - 16, "{stats:?}");
    let chatty = engine
        .timelines()
        .find(|t| t.socket == SocketId(5_000))
        .unwrap();
    // The first quarter (how it started), then the most recent.
    assert_eq!(chatty.events.len(), 4);
    assert_eq!(chatty.events[0].kind, EventKind::StateChange);
    assert_eq!(chatty.kept_events().count(), 16);
    assert_eq!(chatty.truncated, 86);
    assert_eq!(chatty.retransmits(), 100, "the rules saw every event");
}

#[test]
fn live_tracing_keeps_no_events() {
    let mut engine = Engine::new(Thresholds::default());
    let mut out = Vec::new();
    for e in Sock::new(1).established().rtos(2).events {
        engine.push(e, &mut out);
    }
    engine.finish(u64::MAX / 2, &mut out);
    let t = engine.timelines().next().unwrap();
    assert_eq!(t.kept_events().count(), 0);
    assert_eq!(t.retransmits(), 2);
}

#[test]
fn stragglers_and_socketless_resets_are_counted() {
    let mut engine = Engine::new(Thresholds::default());
    let mut out = Vec::new();
    let s = Sock::new(1).established().fin_close();
    // After the socket's release: nothing to add it to.
    let mut straggler = s.events[1].clone();
    straggler.ts_ns = s.now + 10 * MS;
    for e in s.events {
        engine.push(e, &mut out);
    }
    engine.finish(s.now, &mut out);
    engine.push(straggler, &mut out);
    // Older than events already applied: it came too late to be reordered.
    engine.push(socketless_reset(1_000 * MS), &mut out);
    engine.finish(u64::MAX / 2, &mut out);
    let stats = engine.stats();
    assert_eq!((stats.late, stats.socketless), (1, 1), "{stats:?}");
    assert_eq!(stats.out_of_window, 1, "{stats:?}");
    assert_eq!(stats.finished, 1);
    assert_eq!(stats.tracked, 0);
    assert!(out.is_empty());
}

#[test]
fn events_of_one_socket_out_of_order_within_the_window() {
    // CLOSE arrives before the reset that caused it.
    let s = Sock::new(1).peer_reset().destroy();
    let mut events = s.events.clone();
    let n = events.len();
    events.swap(n - 3, n - 2);
    assert_eq!(kinds(&run(events, end_of(&s))), [VerdictKind::PeerReset]);
}

#[test]
fn verdicts_carry_identity_and_owner() {
    let s = Sock::new(7).peer_reset().destroy();
    let v = verdicts_of(&s);
    assert_eq!(v[0].socket, SocketId(7));
    assert_eq!(v[0].conn.lport, 40_007);
    assert_eq!(v[0].conn.rport, 80);
    assert_eq!(v[0].process.as_ref().unwrap().comm, "app");
    let json = serde_json::to_string(&v[0]).unwrap();
    assert!(json.contains(r#""verdict":"peer_reset""#), "{json}");
}

#[test]
fn an_owner_seen_in_its_own_context_is_not_replaced_by_a_guess() {
    let mut s = Sock::new(1)
        .established()
        .after_ms(5)
        .reset_received(TcpState::ESTABLISHED);
    let n = s.events.len();
    s.events[n - 1].process = Some(Owner {
        pid: 1,
        comm: "listener".into(),
        cgroup_id: 0,
        source: OwnerSource::Listener,
        container: None,
    });
    let s = s.close_with(TcpState::ESTABLISHED, Errno::ECONNRESET, None);
    let v = verdicts_of(&s);
    assert_eq!(v[0].process.as_ref().unwrap().comm, "app");
}

/// A failed connect as 6.18 reports it on loopback: tcp_disconnect() then clears the local
/// address and the remote port, and the socket's last events (an error report, the release)
/// carry a tuple that never existed, and no owner.
fn refused_then_cleared() -> Vec<Event> {
    let mut events = Sock::new(3).connection_refused().destroy().events;
    let n = events.len();
    for e in &mut events[n - 2..] {
        e.conn.laddr = "0.0.0.0".parse().unwrap();
        e.conn.rport = 0;
        e.process = None;
    }
    events
}

#[test]
fn events_are_named_by_the_sockets_best_known_tuple_and_owner() {
    let mut engine = Engine::new(Thresholds::default());
    let mut out = Vec::new();
    let mut named = Vec::new();
    for mut e in refused_then_cleared() {
        engine.name(&mut e);
        named.push(e.clone());
        engine.push(e, &mut out);
    }
    let full = Sock::new(3).connection();
    // The connect comes before the port is chosen: nothing better is known yet.
    assert_eq!(named[0].conn.lport, 0);
    assert_eq!(named[0].raw, None);
    let release = named.last().unwrap();
    assert_eq!(release.kind, EventKind::Destroy);
    assert_eq!(release.conn, full);
    assert_eq!(release.process.as_ref().unwrap().comm, "app");
    let raw = release.raw.expect("the kernel's own tuple is kept");
    assert_eq!(
        (raw.laddr.to_string(), raw.lport, raw.rport),
        ("0.0.0.0".to_owned(), full.lport, 0)
    );
    // Events whose tuple was complete carry no raw copy.
    assert!(named[1..named.len() - 2].iter().all(|e| e.raw.is_none()));
    // Read back from a trace, the named event is the same.
    let json = serde_json::to_string(release).unwrap();
    assert!(
        json.contains(&format!(
            r#""raw":{{"laddr":"0.0.0.0","lport":{},"raddr":"10.0.0.2","rport":0}}"#,
            full.lport
        )),
        "{json}"
    );
    assert_eq!(&serde_json::from_str::<Event>(&json).unwrap(), release);
}

#[test]
fn naming_changes_no_verdict() {
    let mut named = Engine::new(Thresholds::default());
    let mut plain = Engine::new(Thresholds::default());
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for e in refused_then_cleared() {
        let mut n = e.clone();
        named.name(&mut n);
        named.push(n, &mut a);
        plain.push(e, &mut b);
    }
    named.finish(u64::MAX / 2, &mut a);
    plain.finish(u64::MAX / 2, &mut b);
    assert_eq!(a, b);
    assert_eq!(kinds(&a), [VerdictKind::ConnectionRefused]);
}
