//! close_wait_held and receiver_stalled: a peer that closed while the application never
//! did, and a peer whose application stopped reading; with their near misses.

use super::*;
use crate::event::TcpState as S;

#[test]
fn close_wait_held_after_the_threshold_dated_when_it_passed() {
    let s = Sock::new(1).established().after_ms(100).peer_closed();
    let entered = s.events.last().unwrap().ts_ns;
    // 29 s later: not yet.
    assert!(run(s.events.clone(), entered + 29_000 * MS).is_empty());
    // 31 s later, never closed.
    let v = run(s.events.clone(), entered + 31_000 * MS);
    assert_eq!(kinds(&v), [VerdictKind::CloseWaitHeld]);
    assert_eq!(v[0].ts_ns, entered + 30_000 * MS);
    assert_eq!(v[0].facts.held_ms, Some(30_000));
    assert_eq!(
        v[0].explanation,
        "10.0.0.2:80 closed its side of the connection 30.0 s ago (FIN received, CLOSE_WAIT) \
         and app/4242 has not closed its socket: a socket and file-descriptor leak"
    );
    assert_eq!(v[0].evidence[0].detail, "ESTABLISHED → CLOSE_WAIT");
    // Decided by the event clock too: a later event of another socket is enough.
    let mut events = s.events.clone();
    events.extend(Sock::new(2).at_ms(40_000).established().events);
    let v = run(events, 40_100 * MS);
    assert_eq!(kinds(&v), [VerdictKind::CloseWaitHeld]);
}

#[test]
fn closing_in_time_is_no_leak() {
    // The application closes 5 s after the peer: CLOSE_WAIT → LAST_ACK → CLOSE.
    let s = Sock::new(1)
        .established()
        .peer_closed()
        .after_ms(5_000)
        .state(S::CLOSE_WAIT, S::LAST_ACK)
        .after_ms(1)
        .state(S::LAST_ACK, S::CLOSE)
        .destroy();
    assert!(run(s.events.clone(), s.now + 60_000 * MS).is_empty());
    // Near miss: still in CLOSE_WAIT at 29.9 s, closed at 29.9 s.
    let s = Sock::new(1)
        .established()
        .peer_closed()
        .after_ms(29_900)
        .state(S::CLOSE_WAIT, S::LAST_ACK);
    assert!(run(s.events.clone(), s.now + 60_000 * MS).is_empty());
}

#[test]
fn close_wait_threshold_is_configurable_and_ticks_decide_it() {
    let s = Sock::new(1).established().peer_closed();
    let mut engine = Engine::new(Thresholds {
        close_wait_after_ns: 2_000 * MS,
        ..Thresholds::default()
    });
    let mut out = Vec::new();
    for e in s.events.clone() {
        engine.push(e, &mut out);
    }
    let mut now = s.now;
    for _ in 0..7 {
        now += 250 * MS;
        engine.tick(now, &mut out);
    }
    assert!(out.is_empty());
    for _ in 0..2 {
        now += 250 * MS;
        engine.tick(now, &mut out);
    }
    assert_eq!(kinds(&out), [VerdictKind::CloseWaitHeld]);
    assert_eq!(out[0].facts.held_ms, Some(2_000));
}

#[test]
fn receiver_stalled_at_the_first_probe_past_the_threshold() {
    // Probes 0.2, 0.6, 1.4, 3.0, 6.2, 12.6, 25.4 s after the window closed.
    let s = Sock::new(1).established().window_closed(7);
    let v = verdicts_of(&s);
    assert_eq!(kinds(&v), [VerdictKind::ReceiverStalled]);
    let probes: Vec<u64> = s
        .events
        .iter()
        .filter(|e| e.kind == crate::event::EventKind::ZeroWindowProbe)
        .map(|e| e.ts_ns)
        .collect();
    // Decided at the sixth probe, 12.4 s after the first, counting the six.
    assert_eq!(v[0].ts_ns, probes[5]);
    assert_eq!(v[0].facts.probes, Some(6));
    assert_eq!(v[0].facts.duration_ms, Some(12_400));
    assert_eq!(
        v[0].explanation,
        "peer 10.0.0.2:80 has kept its receive window closed for 12.4 s: its application \
         stopped reading; 6 zero-window probes so far"
    );
    assert_eq!(v[0].evidence.len(), 2);
    assert_eq!(v[0].evidence[0].detail, "zero-window probe 1 (first)");
}

#[test]
fn short_stalls_are_no_stall() {
    // 6.0 s of closed window, then it opens: nothing.
    let s = Sock::new(1).established().window_closed(5).window_opened();
    assert!(verdicts_of(&s).is_empty());
    // Two 6 s stalls with the window open between them are not one 12 s stall.
    let twice = s.after_ms(1_000).window_closed(5);
    assert!(verdicts_of(&twice).is_empty());
    // A lower threshold catches them.
    let mut engine = Engine::new(Thresholds {
        receiver_stalled_after_ns: 5_000 * MS,
        ..Thresholds::default()
    });
    let mut out = Vec::new();
    for e in twice.events.clone() {
        engine.push(e, &mut out);
    }
    engine.finish(twice.now, &mut out);
    assert_eq!(kinds(&out), [VerdictKind::ReceiverStalled]);
    assert_eq!(out[0].facts.probes, Some(5));
}

#[test]
fn a_peer_gone_behind_a_closed_window_stalls_then_dies() {
    // Unanswered probes (the kernel's count rises): the stall, then retries_exhausted.
    let mut s = Sock::new(1).established();
    for n in 1..=6 {
        s = s.after_ms(200 << n).zero_window_probe(n);
    }
    let s = s.after_ms(25_600).close_with(
        S::ESTABLISHED,
        crate::event::Errno::ETIMEDOUT,
        Some(crate::event::TimerKind::Write),
    );
    let v = verdicts_of(&s);
    assert_eq!(
        kinds(&v),
        [VerdictKind::ReceiverStalled, VerdictKind::RetriesExhausted]
    );
    assert!(
        v[0].explanation
            .ends_with("; the peer has stopped answering the probes too"),
        "{}",
        v[0].explanation
    );
}
