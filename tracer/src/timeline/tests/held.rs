//! dead_socket_held: a connection the kernel ended, still held by its application; and the
//! endings that are no death at all.

use super::*;
use crate::{
    event::{Errno, TcpState as S},
    timeline::Retain,
};

#[test]
fn dead_socket_held_until_the_application_closes() {
    let s = Sock::new(1).peer_reset().error_report(104);
    let died = s.events[s.events.len() - 2].ts_ns;
    // Not yet: 29 s later.
    let v = run(s.events.clone(), died + 29_000 * MS);
    assert_eq!(kinds(&v), [VerdictKind::PeerReset]);
    // 31 s later, never closed: dated when the threshold passed.
    let v = run(s.events.clone(), died + 31_000 * MS);
    assert_eq!(
        kinds(&v),
        [VerdictKind::PeerReset, VerdictKind::DeadSocketHeld]
    );
    assert_eq!(v[1].ts_ns, died + 30_000 * MS);
    assert_eq!(v[1].facts.held_ms, Some(30_000));
    assert_eq!(v[1].facts.error, Some(Errno::ECONNRESET));
    assert_eq!(v[1].process.as_ref().unwrap().to_string(), "app/4242");
    // Closed after 5 s: nothing more.
    let closed = s.clone().after_ms(5_000).destroy();
    let v = run(closed.events.clone(), died + 60_000 * MS);
    assert_eq!(kinds(&v), [VerdictKind::PeerReset]);
    // Closed after 45 s: the verdict came at 30 s (from the event clock alone), and the
    // timeline notes how long the socket was held.
    let late = s.clone().after_ms(45_000).destroy();
    let mut engine = Engine::new(Thresholds::default());
    engine.retain(Retain::WithVerdicts);
    let mut out = Vec::new();
    for e in late.events.clone() {
        engine.push(e, &mut out);
    }
    engine.finish(late.now, &mut out);
    assert_eq!(
        kinds(&out),
        [VerdictKind::PeerReset, VerdictKind::DeadSocketHeld]
    );
    let timelines = engine.take_finished();
    assert_eq!(timelines.len(), 1);
    let held = timelines[0].held_after_death_ns().unwrap();
    assert!((45_000 * MS..45_001 * MS).contains(&held), "{held}");
}

#[test]
fn ticks_decide_dead_socket_held_live() {
    let s = Sock::new(1).peer_reset();
    let mut engine = Engine::new(Thresholds::default());
    let mut out = Vec::new();
    for e in s.events.clone() {
        engine.push(e, &mut out);
    }
    // Live: no more events, only the 250 ms clock.
    let mut now = s.now;
    while now < s.now + 29_000 * MS {
        now += 250 * MS;
        engine.tick(now, &mut out);
    }
    assert_eq!(kinds(&out), [VerdictKind::PeerReset]);
    for _ in 0..8 {
        now += 250 * MS;
        engine.tick(now, &mut out);
    }
    assert_eq!(
        kinds(&out),
        [VerdictKind::PeerReset, VerdictKind::DeadSocketHeld]
    );
}

#[test]
fn close_without_an_error_and_an_empty_error_report_give_nothing() {
    let s = Sock::new(1)
        .established()
        .after_ms(100)
        .state(S::ESTABLISHED, S::CLOSE)
        .error_report(0);
    assert!(run(s.events.clone(), s.now + 60_000 * MS).is_empty());
}

#[test]
fn orderly_close_and_crashed_peer_process_give_nothing() {
    let ours = Sock::new(1).established().after_ms(100).fin_close();
    // The peer process crashed: its kernel sent FIN; we read 0 and close.
    let theirs = Sock::new(2)
        .established()
        .after_ms(100)
        .state(S::ESTABLISHED, S::CLOSE_WAIT)
        .after_ms(1)
        .state(S::CLOSE_WAIT, S::LAST_ACK)
        .after_ms(1)
        .state(S::LAST_ACK, S::CLOSE)
        .destroy();
    assert!(verdicts_of(&ours).is_empty());
    assert!(verdicts_of(&theirs).is_empty());
}
