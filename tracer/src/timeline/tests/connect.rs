//! connect(): timeouts, refusals, and ICMP errors that end it at once or in the timer.

use super::*;
use crate::event::{Errno, RetransmitClass::Syn, TcpState as S, TimerKind};

#[test]
fn connect_timeout_and_refused() {
    let timeout = Sock::new(1).connect_timeout().destroy();
    assert_eq!(kinds(&verdicts_of(&timeout)), [VerdictKind::ConnectTimeout]);
    assert_eq!(
        facts(&timeout),
        [Facts::ConnectTimeout {
            syn_retransmits: 2,
            waited_ms: 7_000,
            syn_retries: Some(6),
            error: Errno::ETIMEDOUT,
            drops: None,
        }]
    );

    let refused = Sock::new(2).connection_refused().destroy();
    let v = verdicts_of(&refused);
    assert_eq!(kinds(&v), [VerdictKind::ConnectionRefused]);
    assert_eq!(
        facts(&refused),
        [Facts::ConnectionRefused {
            error: Errno::ECONNREFUSED,
            reset_received: true,
        }]
    );
    assert_eq!(
        v[0].conn.lport, 40_002,
        "the port learned after the first event"
    );
}

/// tcp_v4_err(): a hard ICMP error in SYN_SENT kills the connect outside any timer.
pub(super) fn unreachable_at_once(id: u64) -> Sock {
    Sock::new(id)
        .connect()
        .after_ms(3_000)
        .close_with(S::SYN_SENT, Errno::EHOSTUNREACH, None)
}

/// tcp_write_err() after the SYN retries, reporting the soft error instead of ETIMEDOUT.
pub(super) fn unreachable_after_a_retry(id: u64) -> Sock {
    Sock::new(id)
        .connect()
        .after_ms(1_000)
        .retransmit(Syn, 1, 1_000)
        .after_ms(2_000)
        .close_with(S::SYN_SENT, Errno::EHOSTUNREACH, Some(TimerKind::Write))
}

#[test]
fn icmp_errors_end_a_connect_at_once_or_in_the_timer() {
    assert_eq!(
        facts(&unreachable_at_once(1)),
        [Facts::ConnectionRefused {
            error: Errno::EHOSTUNREACH,
            reset_received: false,
        }]
    );
    assert_eq!(
        kinds(&verdicts_of(&unreachable_after_a_retry(2))),
        [VerdictKind::ConnectTimeout]
    );
}
