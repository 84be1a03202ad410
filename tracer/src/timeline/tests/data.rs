//! Unacknowledged data: the early warning, the give-up (tcp_retries2, TCP_USER_TIMEOUT,
//! zero-window probes), orphans, and streaks that recover.

use super::*;
use crate::{
    event::{Errno, RetransmitClass::*, TcpState as S, TimerKind},
    timeline::rules::{Budget, Note, Stall, Warning},
};

fn warning(s: &Sock) -> Warning {
    match facts(s).first() {
        Some(Facts::PeerUnresponsive(w)) => *w,
        other => panic!("no warning first: {other:?}"),
    }
}

#[test]
fn retries_exhausted_after_the_warning() {
    let s = Sock::new(1).retries_exhausted().after_ms(5).destroy();
    assert_eq!(
        kinds(&verdicts_of(&s)),
        [VerdictKind::PeerUnresponsive, VerdictKind::RetriesExhausted]
    );
    let found = findings(&s);
    let budget = Budget::Retries2 {
        retries2: 15,
        budget_ms: 924_600,
    };
    assert!(
        matches!(found[0].facts, Facts::PeerUnresponsive(w) if w.consecutive_rtos == 3 && w.budget == budget),
        "{:?}",
        found[0].facts
    );
    assert_eq!(
        found[1].facts,
        Facts::RetriesExhausted {
            // From the first retransmit to the death: 0.4 + 0.8 + 1.6 + 3.2 + 6.4 + 12.8 s.
            stall: Stall::Retransmits {
                count: 6,
                duration_ms: 25_200,
                last_rto_ms: 6_400,
            },
            budget,
            error: Errno::ETIMEDOUT,
            drops: None,
        }
    );
    // The streak's first and latest RTO, then the death.
    let cited: Vec<(u8, &Note)> = found[1]
        .cited
        .iter()
        .map(|c| (c.mark.retransmits, &c.note))
        .collect();
    assert_eq!(
        cited,
        [
            (1, &Note::First),
            (6, &Note::Latest),
            (6, &Note::Error(Errno::ETIMEDOUT))
        ]
    );
}

#[test]
fn the_default_warning_comes_minutes_before_the_give_up() {
    let s = Sock::new(1).established().rtos(3);
    let v = verdicts_of(&s);
    assert_eq!(kinds(&v), [VerdictKind::PeerUnresponsive]);
    let first_rto_ms = s
        .events
        .iter()
        .find(|e| e.class == Some(Rto))
        .unwrap()
        .ts_ns
        / MS;
    // Fired at +0, +0.4, +1.2 s; then 1.6, 3.2, ... 102.4 s, then 120 s apart. The budget
    // (924.6 s from the first retransmit) runs out just after the firing at +924.4 s: the
    // kernel gives up at the next one, +1044.4 s.
    assert_eq!(
        v[0].facts.predicted_give_up_ns,
        Some((first_rto_ms + 1_044_400) * MS)
    );
    let w = warning(&s);
    assert_eq!(w.give_up_ms, first_rto_ms + 1_044_400);
    assert_eq!(w.give_up_in_ms, 1_044_400 - 1_200);
}

#[test]
fn the_warning_follows_the_kernel_clock_and_the_timer_lateness() {
    // Measured on 6.18 with tcp_retries2=4 (budget 6.2 s from retrans_stamp, the first RTO
    // retransmit): RTOs 204, 408, 816 ms, each firing ~2% late (HZ rounding). At the warning
    // the kernel's clock reads 1252 ms. With the nominal RTOs the firing 4.9 s later would
    // fall 52 ms short of the budget, one more backoff (6.5 s); the timers really fire 2%
    // late, so the kernel gave up 5.09 s after the warning.
    let mut s = Sock::new(1)
        .retries2(4)
        .established()
        .after_ms(204)
        .retransmit(Rto, 1, 204)
        .after_ms(420)
        .retransmit(Rto, 2, 408)
        .after_ms(832)
        .retransmit(Rto, 3, 816);
    let warned_at_ms = s.events.last().unwrap().ts_ns / MS;
    s.events
        .last_mut()
        .unwrap()
        .sock
        .as_mut()
        .unwrap()
        .retrans_elapsed_ms = Some(1_252);
    let v = verdicts_of(&s);
    assert_eq!(kinds(&v), [VerdictKind::PeerUnresponsive]);
    let lead_ms = v[0].facts.predicted_give_up_ns.unwrap() / MS - warned_at_ms;
    assert!(
        (4_950..5_050).contains(&lead_ms),
        "predicted {lead_ms} ms ahead"
    );
    assert_eq!(warning(&s).give_up_in_ms, lead_ms);
}

#[test]
fn an_icmp_error_can_replace_etimedout() {
    let s = Sock::new(1).established().rtos(2).after_ms(800).close_with(
        S::ESTABLISHED,
        Errno::EHOSTUNREACH,
        Some(TimerKind::Write),
    );
    assert!(
        matches!(
            facts(&s)[..],
            [Facts::RetriesExhausted {
                error: Errno::EHOSTUNREACH,
                ..
            }]
        ),
        "{:?}",
        facts(&s)
    );
}

#[test]
fn a_retransmit_burst_that_recovers_gives_no_verdict() {
    let s = Sock::new(1).recovered().after_ms(10).fin_close();
    assert!(verdicts_of(&s).is_empty());
}

#[test]
fn a_new_streak_after_recovery_counts_from_scratch() {
    // Two RTOs, recovery, then a streak of three: the warning counts three, not five.
    let s = Sock::new(1).recovered().after_ms(5_000).rtos(3);
    let w = warning(&s);
    assert_eq!((w.retransmits, w.span_ms), (3, 1_200));
}

#[test]
fn the_warning_uses_the_user_timeout_budget() {
    let s = Sock::new(1).user_timeout(5_000).established().rtos(3);
    let v = verdicts_of(&s);
    assert_eq!(kinds(&v), [VerdictKind::PeerUnresponsive]);
    assert_eq!(warning(&s).budget, Budget::UserTimeout { ms: 5_000 });
    // The kernel counts from the first retransmit (retrans_stamp) and clamps the timer so
    // that it fires 5 s after it.
    let first_rto = s.events.iter().find(|e| e.class == Some(Rto)).unwrap();
    assert_eq!(
        v[0].facts.predicted_give_up_ns,
        Some((first_rto.ts_ns / MS + 5_000) * MS)
    );
}

#[test]
fn warning_threshold_can_be_configured() {
    let s = Sock::new(1).established().rtos(2);
    let mut engine = Engine::new(Thresholds {
        warn_after_rtos: Some(2),
        ..Thresholds::default()
    });
    let mut out = Vec::new();
    for e in s.events {
        engine.push(e, &mut out);
    }
    engine.finish(u64::MAX / 2, &mut out);
    assert_eq!(kinds(&out), [VerdictKind::PeerUnresponsive]);
}

#[test]
fn the_warning_follows_the_namespace_retries2() {
    let s = Sock::new(1).retries2(5).established().rtos(3);
    // tcp_retries2=5: (2^6 − 1) × 200 ms = 12.6 s from the first retransmit.
    assert_eq!(
        warning(&s).budget,
        Budget::Retries2 {
            retries2: 5,
            budget_ms: 12_600
        }
    );
}

#[test]
fn no_warning_for_an_orphan_or_a_connect() {
    let orphan = Sock::new(1)
        .established()
        .state(S::ESTABLISHED, S::FIN_WAIT1)
        .orphaned()
        .rtos(4);
    assert!(verdicts_of(&orphan).is_empty());
    let mut syn = Sock::new(2).connect();
    for (n, rto) in [(1, 1_000), (2, 2_000), (3, 4_000), (4, 8_000)] {
        syn = syn.after_ms(rto).retransmit(Syn, n, rto);
    }
    assert!(verdicts_of(&syn).is_empty());
}

#[test]
fn zero_window_probes_until_the_kernel_gives_up() {
    let s = Sock::new(1).zero_window_exhausted().destroy();
    assert_eq!(
        facts(&s),
        [Facts::RetriesExhausted {
            stall: Stall::ZeroWindowProbes {
                count: 3,
                duration_ms: 5_600,
            },
            // tcp_probe_timer() counts probes against tcp_retries2, not time.
            budget: Budget::Retries2Probes { retries2: 15 },
            error: Errno::ETIMEDOUT,
            drops: None,
        }]
    );
    let v = verdicts_of(&s);
    assert_eq!(
        (v[0].facts.probes, v[0].facts.retransmits),
        (Some(3), Some(0))
    );
}

#[test]
fn orphan_timeout_not_retries_exhausted() {
    let s = Sock::new(1).orphan_timeout().destroy();
    // No warning (nobody to warn) and no dead_socket_held (nobody holds it).
    let v = run(s.events.clone(), end_of(&s) + 60_000 * MS);
    assert_eq!(kinds(&v), [VerdictKind::OrphanTimeout]);
    assert_eq!(
        facts(&s),
        [Facts::OrphanTimeout {
            state: S::FIN_WAIT1,
            retransmits: 2,
            duration_ms: 1_200,
            last_rto_ms: Some(400),
            orphan_retries: None,
            error: Errno::ETIMEDOUT,
        }]
    );
}
