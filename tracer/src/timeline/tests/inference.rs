//! Deaths whose move to CLOSE was not seen (the kernel skipped the program that reports it):
//! decided from the evidence that did arrive, and said to be inferred.

use super::*;
use crate::event::{Errno, EventKind, TcpState as S, TimerKind};

/// Drops the socket's CLOSE state change from a story.
fn without_close(mut s: Sock) -> Sock {
    s.events
        .retain(|e| !(e.kind == EventKind::StateChange && e.state == S::CLOSE));
    s
}

fn error_report_in(mut s: Sock, err: i32, timer: Option<TimerKind>) -> Sock {
    s = s.error_report(err);
    if let Some(e) = s.events.last_mut() {
        e.timer = timer;
    }
    s
}

#[test]
fn a_keepalive_death_without_its_close_is_decided_from_the_give_up_reset() {
    // What a storm run recorded: probes, the TCP_KEEPALIVE_TIMEOUT reset and the error
    // report from the same timer run, but no ESTABLISHED → CLOSE.
    let s = without_close(Sock::new(1).keepalive_exhausted()).error_report(110);
    let verdicts = verdicts_of(&s);
    assert_eq!(kinds(&verdicts), [VerdictKind::KeepaliveExhausted]);
    assert_eq!(verdicts[0].inferred_from, Some(EventKind::ResetSent));
    assert_eq!(verdicts[0].facts.probes, Some(3));
    assert_eq!(verdicts[0].facts.error, Some(Errno::ETIMEDOUT));
    assert!(
        verdicts[0]
            .explanation
            .ends_with("(its move to CLOSE was not seen: decided from the reset the kernel sent when it gave up)"),
        "{}",
        verdicts[0].explanation
    );
}

#[test]
fn an_rto_give_up_without_its_close_is_decided_from_the_error_report() {
    let s = without_close(Sock::new(1).retries_exhausted());
    let s = error_report_in(s, 110, Some(TimerKind::Write));
    let verdicts = verdicts_of(&s);
    assert_eq!(
        kinds(&verdicts),
        [VerdictKind::PeerUnresponsive, VerdictKind::RetriesExhausted]
    );
    assert_eq!(verdicts[1].inferred_from, Some(EventKind::ErrorReport));
    assert_eq!(verdicts[1].facts.retransmits, Some(6));
}

#[test]
fn with_neither_close_nor_report_the_release_tells() {
    let mut s = without_close(Sock::new(1).retries_exhausted())
        .after_ms(5)
        .destroy();
    if let Some(sock) = s.events.last_mut().and_then(|e| e.sock.as_mut()) {
        sock.error = Some(Errno::ETIMEDOUT);
    }
    let verdicts = verdicts_of(&s);
    assert_eq!(
        kinds(&verdicts),
        [VerdictKind::PeerUnresponsive, VerdictKind::RetriesExhausted]
    );
    assert_eq!(verdicts[1].inferred_from, Some(EventKind::Destroy));
}

#[test]
fn a_seen_close_is_not_inferred_whatever_the_order_of_its_report() {
    // 6.x reports the error after tcp_done(); older kernels before it.
    let after = error_report_in(
        Sock::new(1).retries_exhausted(),
        110,
        Some(TimerKind::Write),
    );
    let mut before = Sock::new(2).established().rtos(6).after_ms(12_800);
    before = error_report_in(before, 110, Some(TimerKind::Write));
    before = before.close_with(S::ESTABLISHED, Errno::ETIMEDOUT, Some(TimerKind::Write));
    for s in [after, before] {
        let verdicts = verdicts_of(&s);
        assert_eq!(
            kinds(&verdicts),
            [VerdictKind::PeerUnresponsive, VerdictKind::RetriesExhausted]
        );
        assert_eq!(verdicts[1].inferred_from, None);
    }
}

#[test]
fn errors_the_connection_lives_through_infer_nothing() {
    // IP_RECVERR: an ICMP error is reported outside any timer and the connection goes on.
    let icmp = error_report_in(Sock::new(1).established().rtos(2), 113, None);
    assert!(verdicts_of(&icmp).is_empty());
    // A socket first seen at its release (it died before tracing started).
    let mut stale = Sock::new(2).destroy();
    if let Some(sock) = stale.events.last_mut().and_then(|e| e.sock.as_mut()) {
        sock.error = Some(Errno::ECONNRESET);
    }
    assert!(verdicts_of(&stale).is_empty());
}

#[test]
fn the_close_arriving_within_the_margin_wins() {
    // The evidence, then another socket's events 5 ms later, then the CLOSE (out of order
    // across CPUs but inside the margin): one death, not inferred.
    let s = Sock::new(1).keepalive_exhausted();
    let mut events = s.events.clone();
    let close = events.pop().unwrap();
    let other = Sock::new(2).at_ms(s.now / MS + 5).established();
    events.extend(other.events);
    events.push(close);
    let verdicts = run(events, s.now + 100 * MS);
    assert_eq!(kinds(&verdicts), [VerdictKind::KeepaliveExhausted]);
    assert_eq!(verdicts[0].inferred_from, None);
}
