//! connect(): timeouts, refusals, and ICMP errors that end it at once or in the timer.

use super::*;
use crate::event::{Errno, RetransmitClass::Syn, TcpState as S, TimerKind};

#[test]
fn connect_timeout_and_refused() {
    let timeout = Sock::new(1)
        .connect()
        .after_ms(1_000)
        .retransmit(Syn, 1, 1_000)
        .after_ms(2_000)
        .retransmit(Syn, 2, 2_000)
        .after_ms(4_000)
        .close_with(S::SYN_SENT, Errno::ETIMEDOUT, Some(TimerKind::Write))
        .destroy();
    assert_eq!(kinds(&verdicts_of(&timeout)), [VerdictKind::ConnectTimeout]);
    assert_eq!(
        facts(&timeout),
        [Facts::ConnectTimeout {
            syn_retransmits: 2,
            waited_ms: 7_000,
            syn_retries: Some(6),
            error: Errno::ETIMEDOUT,
        }]
    );

    // As on 6.18: SYN_SENT (port not chosen yet), reset, CLOSE with ECONNREFUSED, two error
    // reports (111 then 0), destroy.
    let refused = Sock::new(2)
        .connect()
        .after_ms(1)
        .reset_received(S::SYN_SENT)
        .close_with(S::SYN_SENT, Errno::ECONNREFUSED, None)
        .error_report(111)
        .error_report(0)
        .destroy();
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

#[test]
fn icmp_errors_end_a_connect_at_once_or_in_the_timer() {
    // tcp_v4_err(): a hard ICMP error in SYN_SENT kills the connect outside any timer.
    let unreachable =
        Sock::new(1)
            .connect()
            .after_ms(3_000)
            .close_with(S::SYN_SENT, Errno::EHOSTUNREACH, None);
    assert_eq!(
        facts(&unreachable),
        [Facts::ConnectionRefused {
            error: Errno::EHOSTUNREACH,
            reset_received: false,
        }]
    );
    // tcp_write_err() after the SYN retries, reporting the soft error instead of ETIMEDOUT.
    let timed_out = Sock::new(2)
        .connect()
        .after_ms(1_000)
        .retransmit(Syn, 1, 1_000)
        .after_ms(2_000)
        .close_with(S::SYN_SENT, Errno::EHOSTUNREACH, Some(TimerKind::Write));
    assert_eq!(
        kinds(&verdicts_of(&timed_out)),
        [VerdictKind::ConnectTimeout]
    );
}
