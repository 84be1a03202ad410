//! The verdict rules on synthetic event sequences shaped like what the kernel produces
//! (see tests/tests/probes.rs for the real sequences), including near misses that must not
//! fire, and the property that interleaving sockets never changes a verdict.

use std::{collections::BTreeMap, net::IpAddr};

use proptest::prelude::*;

use super::{Engine, Retain, Thresholds, Verdict, VerdictKind};
use crate::{
    event::{
        Connection, Event, EventKind, Family, KernelFacts, Owner, OwnerSource, RetransmitClass,
        SocketCounters, SocketId, TcpState, TimerKind,
    },
    record::{End, FORMAT, Header, Record, RecordedThresholds, VERSION},
};

const MS: u64 = 1_000_000;

/// Builds one socket's events tersely: `Sock::new(1).established().rtos(3)`. Counters
/// follow the kernel's: icsk_retransmits and icsk_probes_out carry over to later events
/// until progress resets them.
#[derive(Clone)]
pub struct Sock {
    id: u64,
    pub now: u64,
    lport: u16,
    retries2: u8,
    user_timeout_ms: u32,
    orphan: bool,
    /// icsk_retransmits as the kernel would report it on the next event.
    consecutive: u8,
    probes_out: u8,
    rto_ms: u64,
    pub events: Vec<Event>,
}

impl Sock {
    pub fn new(id: u64) -> Sock {
        Sock {
            id,
            now: 1_000 * MS,
            lport: 40_000 + id as u16,
            retries2: 15,
            user_timeout_ms: 0,
            orphan: false,
            consecutive: 0,
            probes_out: 0,
            rto_ms: 200,
            events: Vec::new(),
        }
    }

    pub fn after_ms(mut self, ms: u64) -> Self {
        self.now += ms * MS;
        self
    }

    /// A new event 1 µs after the previous one (the kernel never reports two at once).
    fn event(&mut self, kind: EventKind, state: TcpState) -> Event {
        self.now += 1_000;
        Event {
            socket: Some(SocketId(self.id)),
            conn: Connection {
                family: Family::Ipv4,
                laddr: IpAddr::from([10, 0, 0, 1]),
                lport: self.lport,
                raddr: IpAddr::from([10, 0, 0, 2]),
                rport: 80,
                netns: 4026531840,
            },
            process: Some(Owner {
                pid: 4242,
                comm: "app".into(),
                cgroup_id: 0,
                source: OwnerSource::Owner,
            }),
            sock: Some(SocketCounters {
                retransmits: self.consecutive,
                probes_out: self.probes_out,
                rto_us: self.rto_ms * 1000,
                keepalive: true,
                keepalive_idle_ms: 1_000,
                keepalive_intvl_ms: 1_000,
                keepalive_probes: 3,
                user_timeout_ms: self.user_timeout_ms,
                retries1: 3,
                retries2: self.retries2,
                syn_retries: 6,
                orphan: self.orphan,
                ..SocketCounters::default()
            }),
            ..Event::new(self.now, kind, state)
        }
    }

    fn push(mut self, e: Event) -> Self {
        self.events.push(e);
        self
    }

    pub fn state(mut self, old: TcpState, new: TcpState) -> Self {
        let mut e = self.event(EventKind::StateChange, new);
        e.old_state = Some(old);
        self.push(e)
    }

    /// CLOSE → SYN_SENT, reported (as the kernel does) before the local port is chosen.
    pub fn connect(mut self) -> Self {
        let mut e = self.event(EventKind::StateChange, TcpState::SYN_SENT);
        e.old_state = Some(TcpState::CLOSE);
        e.conn.lport = 0;
        self.push(e)
    }

    pub fn established(self) -> Self {
        self.connect()
            .after_ms(1)
            .state(TcpState::SYN_SENT, TcpState::ESTABLISHED)
    }

    /// The kernel's death: → CLOSE with a socket error, inside `timer` if any.
    pub fn close_with(mut self, old: TcpState, error: &str, timer: Option<TimerKind>) -> Self {
        let mut e = self.event(EventKind::StateChange, TcpState::CLOSE);
        e.old_state = Some(old);
        e.timer = timer;
        if let Some(s) = &mut e.sock {
            s.error = Some(error.into());
        }
        self.push(e)
    }

    pub fn error_report(mut self, err: i32) -> Self {
        let mut e = self.event(EventKind::ErrorReport, TcpState::CLOSE);
        e.err = Some(err);
        self.push(e)
    }

    pub fn fin_close(self) -> Self {
        self.state(TcpState::ESTABLISHED, TcpState::FIN_WAIT1)
            .after_ms(1)
            .state(TcpState::FIN_WAIT1, TcpState::FIN_WAIT2)
            .after_ms(1)
            .state(TcpState::FIN_WAIT2, TcpState::CLOSE)
            .destroy()
    }

    pub fn retransmit(mut self, class: RetransmitClass, consecutive: u8, rto_ms: u64) -> Self {
        let state = if class == RetransmitClass::Syn {
            TcpState::SYN_SENT
        } else {
            TcpState::ESTABLISHED
        };
        self.consecutive = consecutive;
        self.rto_ms = rto_ms;
        let mut e = self.event(EventKind::Retransmit, state);
        e.class = Some(class);
        e.segs = Some(1);
        e.timer = Some(TimerKind::Write);
        self.push(e)
    }

    /// `n` RTOs from 200 ms, doubling, each after its RTO; the timer then holds twice the
    /// last one, as tcp_retransmit_timer() leaves it.
    pub fn rtos(mut self, n: u8) -> Self {
        let mut rto = 200;
        for k in 1..=n {
            self = self.after_ms(rto).retransmit(RetransmitClass::Rto, k, rto);
            rto *= 2;
        }
        self.rto_ms = rto;
        self
    }

    /// Progress: an ACK arrived (icsk_retransmits and icsk_probes_out back to 0), seen on
    /// the next event.
    pub fn progress(mut self) -> Self {
        self.consecutive = 0;
        self.probes_out = 0;
        self.rto_ms = 200;
        let mut e = self.event(EventKind::Retransmit, TcpState::ESTABLISHED);
        e.class = Some(RetransmitClass::Fast);
        e.segs = Some(1);
        self.push(e)
    }

    pub fn probe(mut self, n: u8) -> Self {
        self.probes_out = n;
        let mut e = self.event(EventKind::KeepaliveProbe, TcpState::ESTABLISHED);
        e.probe = Some(n);
        e.timer = Some(TimerKind::Keepalive);
        if let Some(s) = &mut e.sock {
            s.idle_rx_ms = Some(1_000 * u64::from(n));
        }
        self.push(e)
    }

    pub fn zero_window_probe(mut self, n: u8) -> Self {
        self.probes_out = n;
        let mut e = self.event(EventKind::ZeroWindowProbe, TcpState::ESTABLISHED);
        e.probe = Some(n);
        e.timer = Some(TimerKind::Write);
        self.push(e)
    }

    pub fn reset_received(mut self, state: TcpState) -> Self {
        let e = self.event(EventKind::ResetReceived, state);
        self.push(e)
    }

    pub fn reset_sent(mut self, state: TcpState, reason: &str, timer: Option<TimerKind>) -> Self {
        let mut e = self.event(EventKind::ResetSent, state);
        e.reason = Some(reason.into());
        e.timer = timer;
        self.push(e)
    }

    /// tcp_destroy_sock: the kernel releases the socket (the application's close()).
    pub fn destroy(mut self) -> Self {
        let e = self.event(EventKind::Destroy, TcpState::CLOSE);
        self.push(e)
    }

    pub fn orphaned(mut self) -> Self {
        self.orphan = true;
        self
    }

    pub fn user_timeout(mut self, ms: u32) -> Self {
        self.user_timeout_ms = ms;
        self
    }

    pub fn retries2(mut self, n: u8) -> Self {
        self.retries2 = n;
        self
    }

    /// The events moved `ms` later.
    pub fn shifted(mut self, ms: u64) -> Self {
        for e in &mut self.events {
            e.ts_ns += ms * MS;
        }
        self.now += ms * MS;
        self
    }
}

fn engine() -> Engine {
    Engine::new(Thresholds {
        dead_socket_after_ns: 30_000 * MS,
        ..Thresholds::default()
    })
}

/// Feeds events in the given order; returns verdicts after `finish(end)`.
pub fn run(events: Vec<Event>, end_ns: u64) -> Vec<Verdict> {
    let mut engine = engine();
    let mut out = Vec::new();
    for e in events {
        engine.push(e, &mut out);
    }
    engine.finish(end_ns, &mut out);
    out
}

fn kinds(verdicts: &[Verdict]) -> Vec<VerdictKind> {
    verdicts.iter().map(|v| v.verdict).collect()
}

fn end_of(sock: &Sock) -> u64 {
    sock.now + MS
}

fn verdicts_of(s: &Sock) -> Vec<Verdict> {
    run(s.events.clone(), end_of(s))
}

use RetransmitClass::*;
use TcpState as S;
use VerdictKind::*;

#[test]
fn retries_exhausted_after_the_warning() {
    let s = Sock::new(1)
        .established()
        .rtos(6)
        .after_ms(12_800)
        .close_with(S::ESTABLISHED, "ETIMEDOUT", Some(TimerKind::Write))
        .after_ms(5)
        .destroy();
    let v = verdicts_of(&s);
    assert_eq!(kinds(&v), [PeerUnresponsive, RetriesExhausted]);
    let warning = &v[0];
    assert_eq!(warning.facts.consecutive_rtos, Some(3));
    assert!(
        warning.explanation.contains("tcp_retries2=15, 924.6 s"),
        "{}",
        warning.explanation
    );
    let death = &v[1];
    assert_eq!(death.facts.retransmits, Some(6));
    assert_eq!(death.facts.last_rto_ms, Some(6_400));
    assert_eq!(death.facts.error.as_deref(), Some("ETIMEDOUT"));
    // From the first retransmit to the death: 0.4 + 0.8 + 1.6 + 3.2 + 6.4 + 12.8 s.
    assert_eq!(death.facts.duration_ms, Some(25_200));
    assert!(
        death
            .explanation
            .contains("6 retransmits over 25.2 s (last RTO 6.4 s)")
            && death.explanation.contains("with ETIMEDOUT"),
        "{}",
        death.explanation
    );
    let cited: Vec<_> = death.evidence.iter().map(|e| e.detail.as_str()).collect();
    assert_eq!(cited.len(), 3, "{cited:?}");
    assert!(
        cited[0].starts_with("RTO retransmit, 1 timeout in a row"),
        "{cited:?}"
    );
    assert!(cited[1].contains("6 timeouts in a row") && cited[1].ends_with("(latest)"));
    assert!(cited[2].contains("ESTABLISHED → CLOSE in the retransmit timer, ETIMEDOUT"));
}

#[test]
fn the_default_warning_comes_minutes_before_the_give_up() {
    let s = Sock::new(1).established().rtos(3);
    let v = verdicts_of(&s);
    assert_eq!(kinds(&v), [PeerUnresponsive]);
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
    let lead_s = (v[0].facts.predicted_give_up_ns.unwrap() - v[0].ts_ns) / 1_000 / MS;
    assert!(lead_s > 1_000, "warning {lead_s} s ahead");
    assert!(
        v[0].explanation.contains("give up in about 17 min 23 s"),
        "{}",
        v[0].explanation
    );
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
    assert_eq!(kinds(&v), [PeerUnresponsive]);
    let lead_ms = v[0].facts.predicted_give_up_ns.unwrap() / MS - warned_at_ms;
    assert!(
        (4_950..5_050).contains(&lead_ms),
        "predicted {lead_ms} ms ahead"
    );
    assert!(
        v[0].explanation.contains("give up in about 5.0 s"),
        "{}",
        v[0].explanation
    );
}

#[test]
fn an_icmp_error_can_replace_etimedout() {
    let s = Sock::new(1).established().rtos(2).after_ms(800).close_with(
        S::ESTABLISHED,
        "EHOSTUNREACH",
        Some(TimerKind::Write),
    );
    let v = verdicts_of(&s);
    assert_eq!(kinds(&v), [RetriesExhausted]);
    assert!(v[0].explanation.contains("EHOSTUNREACH"));
    assert_eq!(v[0].facts.error.as_deref(), Some("EHOSTUNREACH"));
}

#[test]
fn a_retransmit_burst_that_recovers_gives_no_verdict() {
    let s = Sock::new(1)
        .established()
        .rtos(2)
        .after_ms(10)
        .progress()
        .after_ms(10)
        .fin_close();
    assert!(verdicts_of(&s).is_empty());
}

#[test]
fn a_new_streak_after_recovery_counts_from_scratch() {
    // Two RTOs, recovery, then a streak of three: the warning counts three, not five.
    let s = Sock::new(1)
        .established()
        .rtos(2)
        .after_ms(10)
        .progress()
        .after_ms(5_000)
        .rtos(3);
    let v = verdicts_of(&s);
    assert_eq!(kinds(&v), [PeerUnresponsive]);
    assert_eq!(v[0].facts.retransmits, Some(3));
    assert_eq!(v[0].facts.duration_ms, Some(1_200));
}

#[test]
fn the_warning_uses_the_user_timeout_budget() {
    let s = Sock::new(1).user_timeout(5_000).established().rtos(3);
    let v = verdicts_of(&s);
    assert_eq!(kinds(&v), [PeerUnresponsive]);
    assert_eq!(
        v[0].facts.give_up_budget.as_deref(),
        Some("TCP_USER_TIMEOUT 5.0 s")
    );
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
    assert_eq!(kinds(&out), [PeerUnresponsive]);
}

#[test]
fn the_warning_follows_the_namespace_retries2() {
    let s = Sock::new(1).retries2(5).established().rtos(3);
    let v = verdicts_of(&s);
    assert_eq!(kinds(&v), [PeerUnresponsive]);
    // tcp_retries2=5: (2^6 − 1) × 200 ms = 12.6 s from the first retransmit.
    assert_eq!(
        v[0].facts.give_up_budget.as_deref(),
        Some("tcp_retries2=5, 12.6 s")
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

fn keepalive_give_up(id: u64) -> Sock {
    Sock::new(id)
        .established()
        .after_ms(1_000)
        .probe(1)
        .after_ms(1_000)
        .probe(2)
        .after_ms(1_000)
        .probe(3)
        .after_ms(1_000)
        .reset_sent(
            S::ESTABLISHED,
            "TCP_KEEPALIVE_TIMEOUT",
            Some(TimerKind::Keepalive),
        )
        .close_with(S::ESTABLISHED, "ETIMEDOUT", Some(TimerKind::Keepalive))
        .error_report(110)
}

#[test]
fn keepalive_exhausted_counts_probes_and_interval() {
    let s = keepalive_give_up(1).after_ms(3).destroy();
    let v = verdicts_of(&s);
    assert_eq!(
        kinds(&v),
        [KeepaliveExhausted],
        "the give-up reset is not a local abort"
    );
    let f = &v[0].facts;
    assert_eq!(f.probes, Some(3));
    assert_eq!(f.probe_interval_ms, Some(1_000));
    assert_eq!(f.idle_before_probes_ms, Some(1_000));
    assert_eq!(f.reset_reason.as_deref(), Some("TCP_KEEPALIVE_TIMEOUT"));
    assert_eq!(f.error.as_deref(), Some("ETIMEDOUT"));
    assert!(
        v[0].explanation
            .contains("3 probes 1.0 s apart after 1.0 s idle went unanswered"),
        "{}",
        v[0].explanation
    );
    let cited: Vec<_> = v[0].evidence.iter().map(|e| e.kind).collect();
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
fn keepalive_without_the_timer_mark_is_known_by_its_reset() {
    // Probes, then the TCP_KEEPALIVE_TIMEOUT reset: enough even if the CLOSE carries no timer.
    let mut s = keepalive_give_up(1);
    for e in &mut s.events {
        e.timer = None;
    }
    assert_eq!(kinds(&verdicts_of(&s)), [KeepaliveExhausted]);
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
        .close_with(S::ESTABLISHED, "ETIMEDOUT", Some(TimerKind::Write))
        .destroy();
    assert_eq!(kinds(&verdicts_of(&answered)), [RetriesExhausted]);
}

#[test]
fn zero_window_probes_until_the_kernel_gives_up() {
    let mut s = Sock::new(1).established();
    for n in 1..=3 {
        s = s.after_ms(200 << n).zero_window_probe(n);
    }
    let s = s
        .after_ms(3_200)
        .close_with(S::ESTABLISHED, "ETIMEDOUT", Some(TimerKind::Write))
        .destroy();
    let v = verdicts_of(&s);
    assert_eq!(kinds(&v), [RetriesExhausted]);
    assert_eq!(v[0].facts.probes, Some(3));
    assert_eq!(v[0].facts.retransmits, Some(0));
    assert!(
        v[0].explanation
            .contains("kept its receive window closed and stopped answering: 3 zero-window probes"),
        "{}",
        v[0].explanation
    );
}

#[test]
fn connect_timeout_and_refused() {
    let timeout = Sock::new(1)
        .connect()
        .after_ms(1_000)
        .retransmit(Syn, 1, 1_000)
        .after_ms(2_000)
        .retransmit(Syn, 2, 2_000)
        .after_ms(4_000)
        .close_with(S::SYN_SENT, "ETIMEDOUT", Some(TimerKind::Write))
        .destroy();
    let v = verdicts_of(&timeout);
    assert_eq!(kinds(&v), [ConnectTimeout]);
    assert_eq!(v[0].facts.retransmits, Some(2));
    assert_eq!(v[0].facts.duration_ms, Some(7_000));
    assert!(
        v[0].explanation.contains("2 SYN retransmits over 7.0 s"),
        "{}",
        v[0].explanation
    );

    // As on 6.18: SYN_SENT (port not chosen yet), reset, CLOSE with ECONNREFUSED, two error
    // reports (111 then 0), destroy.
    let refused = Sock::new(2)
        .connect()
        .after_ms(1)
        .reset_received(S::SYN_SENT)
        .close_with(S::SYN_SENT, "ECONNREFUSED", None)
        .error_report(111)
        .error_report(0)
        .destroy();
    let v = verdicts_of(&refused);
    assert_eq!(kinds(&v), [ConnectionRefused]);
    assert!(v[0].explanation.contains("reset"), "{}", v[0].explanation);
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
            .close_with(S::SYN_SENT, "EHOSTUNREACH", None);
    let v = verdicts_of(&unreachable);
    assert_eq!(kinds(&v), [ConnectionRefused]);
    assert!(
        v[0].explanation
            .contains("the network answered our SYN with EHOSTUNREACH"),
        "{}",
        v[0].explanation
    );
    // tcp_write_err() after the SYN retries, reporting the soft error instead of ETIMEDOUT.
    let timed_out = Sock::new(2)
        .connect()
        .after_ms(1_000)
        .retransmit(Syn, 1, 1_000)
        .after_ms(2_000)
        .close_with(S::SYN_SENT, "EHOSTUNREACH", Some(TimerKind::Write));
    assert_eq!(kinds(&verdicts_of(&timed_out)), [ConnectTimeout]);
}

#[test]
fn peer_reset_and_lost_state() {
    let plain = Sock::new(1)
        .established()
        .after_ms(50)
        .reset_received(S::ESTABLISHED)
        .close_with(S::ESTABLISHED, "ECONNRESET", None)
        .error_report(104)
        .destroy();
    let v = verdicts_of(&plain);
    assert_eq!(kinds(&v), [PeerReset]);
    assert_eq!(v[0].facts.peer_lost_state, Some(false));

    let rebooted = Sock::new(2)
        .established()
        .rtos(2)
        .after_ms(300)
        .reset_received(S::ESTABLISHED)
        .close_with(S::ESTABLISHED, "ECONNRESET", None)
        .destroy();
    let v = verdicts_of(&rebooted);
    assert_eq!(kinds(&v), [PeerReset]);
    assert_eq!(v[0].facts.peer_lost_state, Some(true));
    assert_eq!(v[0].facts.consecutive_rtos, Some(2));
    assert!(v[0].explanation.contains("lost the connection's state"));

    // In CLOSE_WAIT the application sees EPIPE.
    let half_closed = Sock::new(3)
        .established()
        .state(S::ESTABLISHED, S::CLOSE_WAIT)
        .after_ms(50)
        .reset_received(S::CLOSE_WAIT)
        .close_with(S::CLOSE_WAIT, "EPIPE", None)
        .destroy();
    let v = verdicts_of(&half_closed);
    assert_eq!(kinds(&v), [PeerReset]);
    assert!(
        v[0].explanation.contains("in CLOSE_WAIT") && v[0].explanation.contains("EPIPE"),
        "{}",
        v[0].explanation
    );
}

#[test]
fn local_abort_with_reason_but_not_for_reply_resets() {
    // 6.18: CLOSE first (no error), then the reset with reason TCP_STATE.
    let linger = Sock::new(1)
        .established()
        .after_ms(5)
        .state(S::ESTABLISHED, S::CLOSE)
        .reset_sent(S::CLOSE, "TCP_STATE", None)
        .error_report(0)
        .destroy();
    let v = verdicts_of(&linger);
    assert_eq!(kinds(&v), [LocalAbort]);
    assert_eq!(v[0].facts.reset_reason.as_deref(), Some("TCP_STATE"));
    assert!(
        v[0].explanation.contains("in ESTABLISHED (TCP_STATE"),
        "{}",
        v[0].explanation
    );

    let older = Sock::new(2)
        .established()
        .after_ms(5)
        .state(S::ESTABLISHED, S::CLOSE)
        .reset_sent(S::CLOSE, "TCP_ABORT_ON_LINGER", None)
        .destroy();
    let v = verdicts_of(&older);
    assert_eq!(kinds(&v), [LocalAbort]);
    assert!(v[0].explanation.contains("SO_LINGER 0"));

    // A time-wait socket answering a stray segment ends nothing.
    let stray = Sock::new(3).established().fin_close().reset_sent(
        S::TIME_WAIT,
        "TCP_TIMEWAIT_SOCKET",
        None,
    );
    assert!(verdicts_of(&stray).is_empty());
}

#[test]
fn one_death_per_socket() {
    // tcp_abort() (ss -K): reset sent in ESTABLISHED, then CLOSE with ECONNABORTED while
    // the application still holds the socket.
    let killed = Sock::new(1)
        .established()
        .after_ms(5)
        .reset_sent(S::ESTABLISHED, "TCP_STATE", None)
        .close_with(S::ESTABLISHED, "ECONNABORTED", None);
    let v = run(killed.events.clone(), killed.now + 60_000 * MS);
    assert_eq!(kinds(&v), [LocalAbort, DeadSocketHeld]);
    // A local reset followed by a timeout report is still one death.
    let both = Sock::new(2)
        .established()
        .rtos(2)
        .reset_sent(S::ESTABLISHED, "NOT_SPECIFIED", None)
        .close_with(S::ESTABLISHED, "ETIMEDOUT", Some(TimerKind::Write))
        .destroy();
    assert_eq!(kinds(&verdicts_of(&both)), [LocalAbort]);
}

#[test]
fn orphan_timeout_not_retries_exhausted() {
    let s = Sock::new(1)
        .established()
        .after_ms(10)
        .state(S::ESTABLISHED, S::FIN_WAIT1)
        .orphaned()
        .rtos(2)
        .after_ms(800)
        .close_with(S::FIN_WAIT1, "ETIMEDOUT", Some(TimerKind::Write))
        .destroy();
    let v = run(s.events.clone(), end_of(&s) + 60_000 * MS);
    // No warning (nobody to warn) and no dead_socket_held (nobody holds it).
    assert_eq!(kinds(&v), [OrphanTimeout]);
    assert!(
        v[0].explanation.contains("already closed") && v[0].explanation.contains("FIN_WAIT1"),
        "{}",
        v[0].explanation
    );
}

#[test]
fn dead_socket_held_until_the_application_closes() {
    let s = Sock::new(1)
        .established()
        .after_ms(10)
        .reset_received(S::ESTABLISHED)
        .close_with(S::ESTABLISHED, "ECONNRESET", None)
        .error_report(104);
    let died = s.events[s.events.len() - 2].ts_ns;
    // Not yet: 29 s later.
    let v = run(s.events.clone(), died + 29_000 * MS);
    assert_eq!(kinds(&v), [PeerReset]);
    // 31 s later, never closed: dated when the threshold passed.
    let v = run(s.events.clone(), died + 31_000 * MS);
    assert_eq!(kinds(&v), [PeerReset, DeadSocketHeld]);
    assert_eq!(v[1].ts_ns, died + 30_000 * MS);
    assert_eq!(v[1].facts.held_ms, Some(30_000));
    assert_eq!(v[1].facts.error.as_deref(), Some("ECONNRESET"));
    assert!(
        v[1].explanation.contains("app/4242"),
        "{}",
        v[1].explanation
    );
    // Closed after 5 s: nothing more.
    let closed = s.clone().after_ms(5_000).destroy();
    let v = run(closed.events.clone(), died + 60_000 * MS);
    assert_eq!(kinds(&v), [PeerReset]);
    // Closed after 45 s: the verdict came at 30 s (from the event clock alone), and the
    // timeline notes how long the socket was held.
    let late = s.clone().after_ms(45_000).destroy();
    let mut engine = engine();
    engine.retain(Retain::WithVerdicts);
    let mut out = Vec::new();
    for e in late.events.clone() {
        engine.push(e, &mut out);
    }
    engine.finish(late.now, &mut out);
    assert_eq!(kinds(&out), [PeerReset, DeadSocketHeld]);
    let timelines = engine.take_finished();
    assert_eq!(timelines.len(), 1);
    let held = timelines[0].held_after_death_ns().unwrap();
    assert!((45_000 * MS..45_001 * MS).contains(&held), "{held}");
}

#[test]
fn ticks_decide_dead_socket_held_live() {
    let s = Sock::new(1)
        .established()
        .after_ms(10)
        .reset_received(S::ESTABLISHED)
        .close_with(S::ESTABLISHED, "ECONNRESET", None);
    let mut engine = engine();
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
    assert_eq!(kinds(&out), [PeerReset]);
    for _ in 0..8 {
        now += 250 * MS;
        engine.tick(now, &mut out);
    }
    assert_eq!(kinds(&out), [PeerReset, DeadSocketHeld]);
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
    assert_eq!(chatty.retransmits(), 100, "the analysis saw every event");
}

#[test]
fn live_tracing_keeps_no_events() {
    let mut engine = engine();
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
    let mut engine = engine();
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
    let mut no_socket = Sock::new(2).established().events.remove(0);
    no_socket.kind = EventKind::ResetSent;
    no_socket.socket = None;
    no_socket.reason = Some("NO_SOCKET".into());
    engine.push(no_socket, &mut out);
    engine.finish(u64::MAX / 2, &mut out);
    let stats = engine.stats();
    assert_eq!((stats.late, stats.socketless), (1, 1), "{stats:?}");
    // The reset is older than events already applied: it came too late to be reordered.
    assert_eq!(stats.out_of_window, 1, "{stats:?}");
    assert_eq!(stats.finished, 1);
    assert_eq!(stats.tracked, 0);
    assert!(out.is_empty());
}

#[test]
fn events_of_one_socket_out_of_order_within_the_window() {
    // CLOSE arrives before the reset that caused it.
    let s = Sock::new(1)
        .established()
        .after_ms(50)
        .reset_received(S::ESTABLISHED)
        .close_with(S::ESTABLISHED, "ECONNRESET", None)
        .destroy();
    let mut events = s.events.clone();
    let n = events.len();
    events.swap(n - 3, n - 2);
    assert_eq!(kinds(&run(events, end_of(&s))), [PeerReset]);
}

#[test]
fn verdicts_carry_identity_and_owner() {
    let s = Sock::new(7)
        .established()
        .after_ms(5)
        .reset_received(S::ESTABLISHED)
        .close_with(S::ESTABLISHED, "ECONNRESET", None)
        .destroy();
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
        .reset_received(S::ESTABLISHED);
    let n = s.events.len();
    s.events[n - 1].process = Some(Owner {
        pid: 1,
        comm: "listener".into(),
        cgroup_id: 0,
        source: OwnerSource::Listener,
    });
    let s = s.close_with(S::ESTABLISHED, "ECONNRESET", None);
    let v = verdicts_of(&s);
    assert_eq!(v[0].process.as_ref().unwrap().comm, "app");
}

/// Several sockets, one of each kind of story (deaths, near misses, a held socket).
fn scenario_sockets() -> Vec<Sock> {
    let mut zero_window = Sock::new(9).established();
    for n in 1..=3 {
        zero_window = zero_window.after_ms(200 << n).zero_window_probe(n);
    }
    vec![
        Sock::new(1)
            .established()
            .rtos(6)
            .after_ms(12_800)
            .close_with(S::ESTABLISHED, "ETIMEDOUT", Some(TimerKind::Write))
            .destroy(),
        keepalive_give_up(2).destroy(),
        Sock::new(3)
            .connect()
            .after_ms(1)
            .reset_received(S::SYN_SENT)
            .close_with(S::SYN_SENT, "ECONNREFUSED", None)
            .error_report(111)
            .error_report(0)
            .destroy(),
        // Never closed by its application: dead_socket_held.
        Sock::new(4)
            .established()
            .rtos(2)
            .after_ms(300)
            .reset_received(S::ESTABLISHED)
            .close_with(S::ESTABLISHED, "ECONNRESET", None)
            .error_report(104),
        Sock::new(5)
            .established()
            .after_ms(5)
            .state(S::ESTABLISHED, S::CLOSE)
            .reset_sent(S::CLOSE, "TCP_STATE", None)
            .error_report(0)
            .destroy(),
        Sock::new(6)
            .established()
            .rtos(2)
            .after_ms(10)
            .progress()
            .fin_close(),
        Sock::new(7)
            .established()
            .after_ms(10)
            .state(S::ESTABLISHED, S::FIN_WAIT1)
            .orphaned()
            .rtos(2)
            .after_ms(800)
            .close_with(S::FIN_WAIT1, "ETIMEDOUT", Some(TimerKind::Write))
            .destroy(),
        Sock::new(8)
            .connect()
            .after_ms(1_000)
            .retransmit(Syn, 1, 1_000)
            .after_ms(2_000)
            .retransmit(Syn, 2, 2_000)
            .after_ms(4_000)
            .close_with(S::SYN_SENT, "ETIMEDOUT", Some(TimerKind::Write))
            .destroy(),
        zero_window
            .after_ms(3_200)
            .close_with(S::ESTABLISHED, "ETIMEDOUT", Some(TimerKind::Write))
            .destroy(),
    ]
}

fn by_socket(verdicts: Vec<Verdict>) -> BTreeMap<u64, Vec<Verdict>> {
    let mut m = BTreeMap::new();
    for v in verdicts {
        m.entry(v.socket.0).or_insert_with(Vec::new).push(v);
    }
    m
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Interleaving many sockets in any order within a reordering window smaller than the
    /// engine's gives every socket exactly the verdicts (times, facts, words) it gets alone.
    #[test]
    fn interleaving_never_changes_a_verdict(
        jitter in proptest::collection::vec(0u64..50_000, 256),
        offsets in proptest::collection::vec(0u64..3_000, 9),
    ) {
        let sockets: Vec<Sock> = scenario_sockets()
            .into_iter()
            .zip(&offsets)
            .map(|(s, &ms)| s.shifted(ms))
            .collect();
        let end = 200_000 * MS;
        let mut alone = BTreeMap::new();
        for s in &sockets {
            alone.extend(by_socket(run(s.events.clone(), end)));
        }
        // Merge by timestamp, then let each event's arrival lag by up to 50 ms (the ring
        // buffer's cross-CPU disorder), less than the engine's 100 ms window.
        let mut merged: Vec<Event> = sockets.iter().flat_map(|s| s.events.clone()).collect();
        merged.sort_by_key(|e| e.ts_ns);
        let mut arrivals: Vec<(u64, usize, Event)> = merged
            .into_iter()
            .enumerate()
            .map(|(i, e)| (e.ts_ns + jitter[i % jitter.len()] * 1_000, i, e))
            .collect();
        arrivals.sort_by_key(|(arrival, i, _)| (*arrival, *i));
        let together = by_socket(run(arrivals.into_iter().map(|(_, _, e)| e).collect(), end));
        prop_assert_eq!(&alone, &together);
        // And every story got the verdicts it should.
        let kinds_of = |id: u64| alone.get(&id).map(|v| kinds(v)).unwrap_or_default();
        prop_assert_eq!(kinds_of(1), vec![PeerUnresponsive, RetriesExhausted]);
        prop_assert_eq!(kinds_of(2), vec![KeepaliveExhausted]);
        prop_assert_eq!(kinds_of(3), vec![ConnectionRefused]);
        prop_assert_eq!(kinds_of(4), vec![PeerReset, DeadSocketHeld]);
        prop_assert_eq!(kinds_of(5), vec![LocalAbort]);
        prop_assert_eq!(kinds_of(6), vec![]);
        prop_assert_eq!(kinds_of(7), vec![OrphanTimeout]);
        prop_assert_eq!(kinds_of(8), vec![ConnectTimeout]);
        prop_assert_eq!(kinds_of(9), vec![RetriesExhausted]);
    }
}

/// The synthetic trace fixture (tests/data/synthetic.jsonl, replayed by tests/replay.rs):
/// the scenario sockets written as a recorded trace, with the engine's verdicts. Fails when
/// the rules or the record format changed; `UPDATE_FIXTURES=1 cargo test -p tracer --lib
/// synthetic_trace` rewrites it.
#[test]
fn synthetic_trace_fixture_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/synthetic.jsonl");
    let sockets: Vec<Sock> = scenario_sockets()
        .into_iter()
        .enumerate()
        .map(|(i, s)| s.shifted(i as u64 * 700))
        .collect();
    let mut events: Vec<Event> = sockets.iter().flat_map(|s| s.events.clone()).collect();
    events.sort_by_key(|e| e.ts_ns);
    let started = events[0].ts_ns - MS;
    let end = events[events.len() - 1].ts_ns + 40_000 * MS;
    let header = Header {
        format: FORMAT.into(),
        version: VERSION,
        tool_version: "0.1.0".into(),
        hostname: "synthetic".into(),
        kernel_release: "6.18".into(),
        kernel: KernelFacts {
            hz: 250,
            reset_reasons: BTreeMap::new(),
        },
        boot_to_wall_offset_ns: 1_795_336_426_879_599_346,
        started_ns: started,
        hooks: Vec::new(),
        missing: Vec::new(),
        command: vec!["synthetic".into()],
        thresholds: Some(RecordedThresholds {
            warn_after_rtos: None,
            dead_socket_after_ms: 30_000,
        }),
    };
    let mut engine = engine();
    let mut lines = vec![Record::Header(Box::new(header)).to_json(None)];
    let mut verdicts = Vec::new();
    let mut total = 0;
    for e in &events {
        let mut out = Vec::new();
        engine.push(e.clone(), &mut out);
        lines.push(Record::Event(Box::new(e.clone())).to_json(None));
        verdicts.extend(out.iter().cloned());
        total += out.len();
        for v in out {
            lines.push(Record::Verdict(Box::new(v)).to_json(None));
        }
    }
    let mut out = Vec::new();
    engine.finish(end, &mut out);
    total += out.len();
    for v in out {
        lines.push(Record::Verdict(Box::new(v)).to_json(None));
    }
    lines.push(
        Record::End(End {
            ts_ns: end,
            events: events.len() as u64,
            verdicts: total as u64,
            lost: 0,
            reason: "end of input".into(),
        })
        .to_json(None),
    );
    let text = lines.join("\n") + "\n";
    if std::env::var_os("UPDATE_FIXTURES").is_some() {
        std::fs::write(path, &text).unwrap();
    }
    let stored = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        stored == text,
        "{path} is out of date: rerun with UPDATE_FIXTURES=1 and review the diff"
    );
}
