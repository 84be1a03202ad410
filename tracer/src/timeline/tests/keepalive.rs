//! Keepalive: probes until the kernel declares the peer dead, and probes that were answered.

use super::*;
use crate::event::{Errno, EventKind, ResetReason, TcpState as S, TimerKind};

#[test]
fn keepalive_exhausted_counts_probes_and_interval() {
    let s = Sock::new(1)
        .keepalive_exhausted()
        .error_report(110)
        .after_ms(3)
        .destroy();
    assert_eq!(
        kinds(&verdicts_of(&s)),
        [VerdictKind::KeepaliveExhausted],
        "the give-up reset is not a local abort"
    );
    let found = findings(&s);
    assert_eq!(
        found[0].facts,
        Facts::KeepaliveExhausted {
            probes: 3,
            interval_ms: 1_000,
            idle_before_ms: Some(1_000),
            duration_ms: 3_000,
            error: Errno::ETIMEDOUT,
            reset_reason: Some(ResetReason::TcpKeepaliveTimeout),
        }
    );
    let cited: Vec<EventKind> = found[0].cited.iter().map(|c| c.mark.kind).collect();
    assert_eq!(
        cited,
        [
            EventKind::KeepaliveProbe,
            EventKind::KeepaliveProbe,
            EventKind::ResetSent,
            EventKind::StateChange
        ]
    );
}

#[test]
fn keepalive_exhausted_counts_the_kernels_probes_when_the_last_comes_late() {
    // The bracket missed the third probe's timer run: its event comes with the give-up's
    // run, after the CLOSE that carries icsk_probes_out = 3.
    let mut s = Sock::new(1).keepalive_exhausted();
    let third = s
        .events
        .iter()
        .position(|e| e.kind == EventKind::KeepaliveProbe && e.probe == Some(3))
        .unwrap();
    s.events.remove(third);
    let found = findings(&s);
    assert!(
        matches!(found[0].facts, Facts::KeepaliveExhausted { probes: 3, .. }),
        "{:?}",
        found[0].facts
    );
}

#[test]
fn keepalive_without_the_timer_mark_is_known_by_its_reset() {
    // Probes, then the TCP_KEEPALIVE_TIMEOUT reset: enough even if the CLOSE carries no timer.
    let mut s = Sock::new(1).keepalive_exhausted();
    for e in &mut s.events {
        e.timer = None;
    }
    assert_eq!(kinds(&verdicts_of(&s)), [VerdictKind::KeepaliveExhausted]);
}

#[test]
fn answered_keepalive_probes_give_no_verdict() {
    let restarted = Sock::new(1)
        .established()
        .after_ms(1_000)
        .probe(1)
        .after_ms(1_000)
        .probe(2)
        // answered: the next idle period starts over at probe 1
        .after_ms(2_000)
        .probe(1)
        .after_ms(100)
        .fin_close();
    assert!(verdicts_of(&restarted).is_empty());
    // Answered (icsk_probes_out back to 0), then a data death: not keepalive's doing.
    let answered = Sock::new(2)
        .established()
        .after_ms(1_000)
        .probe(1)
        .after_ms(1_000)
        .probe(2)
        .after_ms(500)
        .progress()
        .rtos(2)
        .after_ms(800)
        .close_with(S::ESTABLISHED, Errno::ETIMEDOUT, Some(TimerKind::Write))
        .destroy();
    assert_eq!(
        kinds(&verdicts_of(&answered)),
        [VerdictKind::RetriesExhausted]
    );
}
