//! Resets: received (the peer's, and the peer that lost the connection's state), sent by
//! this host (with the kernel's reason), and the one death each socket gets.

use super::*;
use crate::event::{Errno, ResetReason, TcpState as S, TimerKind};

#[test]
fn peer_reset_and_lost_state() {
    let plain = Sock::new(1).peer_reset().error_report(104).destroy();
    assert_eq!(
        facts(&plain),
        [Facts::PeerReset {
            state: S::ESTABLISHED,
            error: Errno::ECONNRESET,
            unanswered_rtos: 0,
        }]
    );
    assert_eq!(verdicts_of(&plain)[0].facts.peer_lost_state, Some(false));

    let rebooted = Sock::new(2).peer_lost_state().destroy();
    assert_eq!(
        facts(&rebooted),
        [Facts::PeerReset {
            state: S::ESTABLISHED,
            error: Errno::ECONNRESET,
            unanswered_rtos: 2,
        }]
    );
    let v = verdicts_of(&rebooted);
    assert_eq!(
        (v[0].facts.peer_lost_state, v[0].facts.consecutive_rtos),
        (Some(true), Some(2))
    );

    // In CLOSE_WAIT the application sees EPIPE.
    let half_closed = Sock::new(3)
        .established()
        .state(S::ESTABLISHED, S::CLOSE_WAIT)
        .after_ms(50)
        .reset_received(S::CLOSE_WAIT)
        .close_with(S::CLOSE_WAIT, Errno::EPIPE, None)
        .destroy();
    assert_eq!(
        facts(&half_closed),
        [Facts::PeerReset {
            state: S::CLOSE_WAIT,
            error: Errno::EPIPE,
            unanswered_rtos: 0,
        }]
    );
}

#[test]
fn one_death_per_socket() {
    // tcp_abort() (ss -K): reset sent in ESTABLISHED, then CLOSE with ECONNABORTED while
    // the application still holds the socket.
    let killed = Sock::new(1)
        .established()
        .after_ms(5)
        .reset_sent(S::ESTABLISHED, ResetReason::TcpState, None)
        .close_with(S::ESTABLISHED, Errno::ECONNABORTED, None);
    let v = run(killed.events.clone(), killed.now + 60_000 * MS);
    assert_eq!(
        kinds(&v),
        [VerdictKind::LocalAbort, VerdictKind::DeadSocketHeld]
    );
    // A local reset followed by a timeout report is still one death.
    let both = Sock::new(2)
        .established()
        .rtos(2)
        .reset_sent(S::ESTABLISHED, ResetReason::NotSpecified, None)
        .close_with(S::ESTABLISHED, Errno::ETIMEDOUT, Some(TimerKind::Write))
        .destroy();
    assert_eq!(kinds(&verdicts_of(&both)), [VerdictKind::LocalAbort]);
}

#[test]
fn local_abort_with_reason_but_not_for_reply_resets() {
    // 6.18: CLOSE first (no error), then the reset with reason TCP_STATE.
    let linger = Sock::new(1)
        .aborted(ResetReason::TcpState)
        .error_report(0)
        .destroy();
    assert_eq!(
        facts(&linger),
        [Facts::LocalAbort {
            state: S::ESTABLISHED,
            reason: Some(ResetReason::TcpState),
        }]
    );
    assert_eq!(kinds(&verdicts_of(&linger)), [VerdictKind::LocalAbort]);

    let older = Sock::new(2)
        .aborted(ResetReason::TcpAbortOnLinger)
        .destroy();
    assert_eq!(
        facts(&older),
        [Facts::LocalAbort {
            state: S::ESTABLISHED,
            reason: Some(ResetReason::TcpAbortOnLinger),
        }]
    );

    // A time-wait socket answering a stray segment ends nothing.
    let stray = Sock::new(3).established().fin_close().reset_sent(
        S::TIME_WAIT,
        ResetReason::from_name("TCP_TIMEWAIT_SOCKET"),
        None,
    );
    assert!(verdicts_of(&stray).is_empty());
}
