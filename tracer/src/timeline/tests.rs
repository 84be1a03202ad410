//! The verdict rules on synthetic event sequences shaped like what the kernel produces
//! (see tests/tests/probes.rs for the real sequences), including near misses that must not
//! fire, and the property that interleaving sockets never changes a verdict.

use std::net::IpAddr;

use proptest::prelude::*;

use super::{Engine, Thresholds, Verdict, VerdictKind};
use crate::event::{
    Event, EventKind, Family, OwnerSource, Process, RetransmitClass, SocketCounters, SocketId,
    TcpState, TimerKind,
};

const MS: u64 = 1_000_000;

/// Builds one socket's events tersely: `Sock::new(1).at(0).state(SYN_SENT, ESTABLISHED)`.
#[derive(Clone)]
pub struct Sock {
    id: u64,
    now: u64,
    lport: u16,
    retries2: u8,
    user_timeout_ms: u32,
    orphan: bool,
    keepalive: bool,
    /// icsk_retransmits as the kernel would report it on the next event.
    consecutive: u8,
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
            keepalive: false,
            consecutive: 0,
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
            ts_ns: self.now,
            kind,
            socket: Some(SocketId(self.id)),
            family: Family::Ipv4,
            laddr: IpAddr::from([10, 0, 0, 1]),
            lport: self.lport,
            raddr: IpAddr::from([10, 0, 0, 2]),
            rport: 80,
            netns: 4026531840,
            state,
            old_state: None,
            process: Some(Process {
                pid: 4242,
                comm: "app".into(),
                cgroup_id: 0,
                owner: OwnerSource::Owner,
            }),
            class: None,
            segs: None,
            timer: None,
            reason: None,
            err: None,
            probe: None,
            sock: Some(SocketCounters {
                retransmits: self.consecutive,
                probes_out: 0,
                backoff: 0,
                rto_us: 200_000,
                total_retrans: 0,
                packets_out: 0,
                ca_state: Default::default(),
                keepalive: self.keepalive,
                keepalive_idle_ms: 1_000,
                keepalive_intvl_ms: 1_000,
                keepalive_probes: 3,
                user_timeout_ms: self.user_timeout_ms,
                retries1: 3,
                retries2: self.retries2,
                syn_retries: 6,
                orphan_retries: 0,
                idle_rx_ms: None,
                idle_tx_ms: None,
                orphan: self.orphan,
                error: None,
                soft_error: None,
            }),
            flags: Vec::new(),
        }
    }

    pub fn state(mut self, old: TcpState, new: TcpState) -> Self {
        let mut e = self.event(EventKind::StateChange, new);
        e.old_state = Some(old);
        self.events.push(e);
        self
    }

    pub fn connect(self) -> Self {
        self.state(TcpState::CLOSE, TcpState::SYN_SENT)
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
        self.events.push(e);
        self
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
        let mut e = self.event(EventKind::Retransmit, state);
        e.class = Some(class);
        e.segs = Some(1);
        e.timer = Some(TimerKind::Write);
        if let Some(s) = &mut e.sock {
            s.retransmits = consecutive;
            s.rto_us = rto_ms * 1000;
        }
        self.events.push(e);
        self
    }

    /// `n` RTOs from 200 ms, doubling, each after its RTO.
    pub fn rtos(mut self, n: u8) -> Self {
        let mut rto = 200;
        for k in 1..=n {
            self = self.after_ms(rto).retransmit(RetransmitClass::Rto, k, rto);
            rto *= 2;
        }
        self
    }

    /// Progress: an ACK arrived (icsk_retransmits back to 0), seen on the next event.
    pub fn progress(mut self) -> Self {
        self.consecutive = 0;
        let mut e = self.event(EventKind::Retransmit, TcpState::ESTABLISHED);
        e.class = Some(RetransmitClass::Fast);
        e.segs = Some(1);
        self.events.push(e);
        self
    }

    pub fn probe(mut self, n: u8) -> Self {
        let mut e = self.event(EventKind::KeepaliveProbe, TcpState::ESTABLISHED);
        e.probe = Some(n);
        e.timer = Some(TimerKind::Keepalive);
        if let Some(s) = &mut e.sock {
            s.probes_out = n;
            s.idle_rx_ms = Some(1_000 + 1_000 * u64::from(n - 1));
        }
        self.events.push(e);
        self
    }

    pub fn reset_received(mut self, state: TcpState) -> Self {
        let e = self.event(EventKind::ResetReceived, state);
        self.events.push(e);
        self
    }

    pub fn reset_sent(mut self, state: TcpState, reason: &str, timer: Option<TimerKind>) -> Self {
        let mut e = self.event(EventKind::ResetSent, state);
        e.reason = Some(reason.into());
        e.timer = timer;
        self.events.push(e);
        self
    }

    pub fn destroy(mut self) -> Self {
        let e = self.event(EventKind::Destroy, TcpState::CLOSE);
        self.events.push(e);
        self
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
}

/// Feeds events in the given order; returns verdicts after `finish(end)`.
pub fn run(events: Vec<Event>, end_ns: u64) -> Vec<Verdict> {
    let mut engine = Engine::new(Thresholds {
        dead_socket_after_ns: 30_000 * MS,
        ..Thresholds::default()
    });
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
    let v = run(s.events.clone(), end_of(&s));
    assert_eq!(kinds(&v), [PeerUnresponsive, RetriesExhausted]);
    let warning = &v[0];
    assert_eq!(warning.facts.consecutive_rtos, Some(3));
    assert!(
        warning.explanation.contains("tcp_retries2=15, 924.6 s"),
        "{}",
        warning.explanation
    );
    // Default budget 924.6 s from the original send: the warning comes ~15 min ahead.
    let lead = warning.facts.predicted_give_up_ns.unwrap() - warning.ts_ns;
    assert!(lead > 900_000 * MS, "warning lead {} ms", lead / MS);
    let death = &v[1];
    assert_eq!(death.facts.retransmits, Some(6));
    assert_eq!(death.facts.last_rto_ms, Some(6_400));
    assert_eq!(death.facts.error.as_deref(), Some("ETIMEDOUT"));
    assert!(
        death.explanation.contains("6 retransmits"),
        "{}",
        death.explanation
    );
    assert!(!death.evidence.is_empty());
}

#[test]
fn an_icmp_error_can_replace_etimedout() {
    let s = Sock::new(1).established().rtos(2).after_ms(800).close_with(
        S::ESTABLISHED,
        "EHOSTUNREACH",
        Some(TimerKind::Write),
    );
    let v = run(s.events.clone(), end_of(&s));
    assert_eq!(kinds(&v), [RetriesExhausted]);
    assert!(v[0].explanation.contains("EHOSTUNREACH"));
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
    assert!(run(s.events.clone(), end_of(&s)).is_empty());
}

#[test]
fn the_warning_uses_the_user_timeout_budget() {
    let s = Sock::new(1).user_timeout(5_000).established().rtos(3);
    let v = run(s.events.clone(), end_of(&s));
    assert_eq!(kinds(&v), [PeerUnresponsive]);
    assert_eq!(
        v[0].facts.give_up_budget.as_deref(),
        Some("TCP_USER_TIMEOUT 5.0 s")
    );
    // Original send = the first RTO retransmit − its 200 ms RTO; the kernel clamps the
    // timer so that it fires 5 s after that.
    let first_rto = s.events.iter().find(|e| e.class == Some(Rto)).unwrap();
    let first_send_ms = first_rto.ts_ns / MS - 200;
    assert_eq!(
        v[0].facts.predicted_give_up_ns,
        Some((first_send_ms + 5_000) * MS)
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
fn keepalive_exhausted_counts_probes_and_interval() {
    let s = Sock::new(1)
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
        .close_with(S::ESTABLISHED, "ETIMEDOUT", Some(TimerKind::Keepalive));
    let v = run(s.events.clone(), end_of(&s));
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
}

#[test]
fn answered_keepalive_probes_give_no_verdict() {
    let s = Sock::new(1)
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
    assert!(run(s.events.clone(), end_of(&s)).is_empty());
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
    let refused = Sock::new(2)
        .connect()
        .after_ms(1)
        .reset_received(S::SYN_SENT)
        .close_with(S::SYN_SENT, "ECONNREFUSED", None)
        .destroy();
    let v = run(timeout.events.clone(), end_of(&timeout));
    assert_eq!(kinds(&v), [ConnectTimeout]);
    assert_eq!(v[0].facts.retransmits, Some(2));
    assert_eq!(v[0].facts.duration_ms, Some(7_000));
    let v = run(refused.events.clone(), end_of(&refused));
    assert_eq!(kinds(&v), [ConnectionRefused]);
    assert!(v[0].explanation.contains("reset"), "{}", v[0].explanation);
}

#[test]
fn peer_reset_and_lost_state() {
    let plain = Sock::new(1)
        .established()
        .after_ms(50)
        .reset_received(S::ESTABLISHED)
        .close_with(S::ESTABLISHED, "ECONNRESET", None)
        .destroy();
    let v = run(plain.events.clone(), end_of(&plain));
    assert_eq!(kinds(&v), [PeerReset]);
    assert_eq!(v[0].facts.peer_lost_state, Some(false));

    let rebooted = Sock::new(2)
        .established()
        .rtos(2)
        .after_ms(300)
        .reset_received(S::ESTABLISHED)
        .close_with(S::ESTABLISHED, "ECONNRESET", None)
        .destroy();
    let v = run(rebooted.events.clone(), end_of(&rebooted));
    assert_eq!(kinds(&v), [PeerReset]);
    assert_eq!(v[0].facts.peer_lost_state, Some(true));
    assert!(v[0].explanation.contains("lost the connection's state"));
}

#[test]
fn local_abort_with_reason_but_not_for_reply_resets() {
    let linger = Sock::new(1)
        .established()
        .after_ms(5)
        .state(S::ESTABLISHED, S::CLOSE)
        .reset_sent(S::CLOSE, "TCP_ABORT_ON_LINGER", None)
        .destroy();
    let v = run(linger.events.clone(), end_of(&linger));
    assert_eq!(kinds(&v), [LocalAbort]);
    assert_eq!(
        v[0].facts.reset_reason.as_deref(),
        Some("TCP_ABORT_ON_LINGER")
    );

    // A time-wait socket answering a stray segment ends nothing.
    let stray = Sock::new(2).established().fin_close().reset_sent(
        S::TIME_WAIT,
        "TCP_TIMEWAIT_SOCKET",
        None,
    );
    assert!(run(stray.events.clone(), end_of(&stray)).is_empty());
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
    let v = run(s.events.clone(), end_of(&s));
    // The FIN_WAIT1 events are not synchronized-data RTOs for the warning (2 < 3) either.
    assert_eq!(kinds(&v), [OrphanTimeout]);
}

#[test]
fn dead_socket_held_until_the_application_closes() {
    let s = Sock::new(1)
        .established()
        .after_ms(10)
        .reset_received(S::ESTABLISHED)
        .close_with(S::ESTABLISHED, "ECONNRESET", None);
    let died = s.now;
    // Not yet: 29 s later.
    let v = run(s.events.clone(), died + 29_000 * MS);
    assert_eq!(kinds(&v), [PeerReset]);
    // 31 s later, never closed.
    let v = run(s.events.clone(), died + 31_000 * MS);
    assert_eq!(kinds(&v), [PeerReset, DeadSocketHeld]);
    assert_eq!(v[1].facts.held_ms, Some(31_000));
    assert!(
        v[1].explanation.contains("app/4242"),
        "{}",
        v[1].explanation
    );
    // Closed after 5 s: nothing more.
    let closed = s.clone().after_ms(5_000).destroy();
    let v = run(closed.events.clone(), died + 60_000 * MS);
    assert_eq!(kinds(&v), [PeerReset]);
}

#[test]
fn orderly_close_and_crashed_peer_process_give_nothing() {
    let ours = Sock::new(1).established().after_ms(100).fin_close();
    let theirs = Sock::new(2)
        .established()
        .after_ms(100)
        .state(S::ESTABLISHED, S::CLOSE_WAIT)
        .after_ms(1)
        .state(S::CLOSE_WAIT, S::LAST_ACK)
        .after_ms(1)
        .state(S::LAST_ACK, S::CLOSE)
        .destroy();
    assert!(run(ours.events.clone(), end_of(&ours)).is_empty());
    assert!(run(theirs.events.clone(), end_of(&theirs)).is_empty());
}

#[test]
fn memory_is_bounded() {
    let mut engine = Engine::new(Thresholds {
        max_timelines: 100,
        max_events_per_timeline: 16,
        ..Thresholds::default()
    });
    let mut out = Vec::new();
    for id in 0..1_000u64 {
        for e in Sock::new(id).established().events {
            engine.push(e, &mut out);
        }
    }
    let mut chatty = Sock::new(5_000).established();
    for _ in 0..100 {
        chatty = chatty.after_ms(1).progress();
    }
    for e in chatty.events {
        engine.push(e, &mut out);
    }
    engine.finish(u64::MAX / 2, &mut out);
    let stats = engine.stats();
    assert!(stats.tracked <= 100, "{stats:?}");
    assert!(stats.evicted >= 900, "{stats:?}");
    assert!(stats.truncated_events >= 80, "{stats:?}");
}

/// Several sockets' events, each socket's own order kept, merged and then jittered within
/// less than the reorder window.
fn scenario_sockets() -> Vec<Sock> {
    vec![
        Sock::new(1)
            .established()
            .rtos(6)
            .after_ms(12_800)
            .close_with(S::ESTABLISHED, "ETIMEDOUT", Some(TimerKind::Write))
            .destroy(),
        Sock::new(2)
            .established()
            .after_ms(1_000)
            .probe(1)
            .after_ms(1_000)
            .probe(2)
            .after_ms(1_000)
            .reset_sent(
                S::ESTABLISHED,
                "TCP_KEEPALIVE_TIMEOUT",
                Some(TimerKind::Keepalive),
            )
            .close_with(S::ESTABLISHED, "ETIMEDOUT", Some(TimerKind::Keepalive))
            .destroy(),
        Sock::new(3)
            .connect()
            .after_ms(1)
            .reset_received(S::SYN_SENT)
            .close_with(S::SYN_SENT, "ECONNREFUSED", None)
            .destroy(),
        Sock::new(4)
            .established()
            .rtos(2)
            .after_ms(300)
            .reset_received(S::ESTABLISHED)
            .close_with(S::ESTABLISHED, "ECONNRESET", None),
        Sock::new(5)
            .established()
            .after_ms(5)
            .state(S::ESTABLISHED, S::CLOSE)
            .reset_sent(S::CLOSE, "TCP_ABORT_ON_LINGER", None)
            .destroy(),
        Sock::new(6)
            .established()
            .rtos(2)
            .after_ms(10)
            .progress()
            .fin_close(),
    ]
}

fn by_socket(verdicts: &[Verdict]) -> std::collections::BTreeMap<u64, Vec<VerdictKind>> {
    let mut m = std::collections::BTreeMap::new();
    for v in verdicts {
        m.entry(v.socket.0).or_insert_with(Vec::new).push(v.verdict);
    }
    m
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Interleaving many sockets in any order within a reordering window smaller than the
    /// engine's gives every socket the verdicts it gets alone.
    #[test]
    fn interleaving_never_changes_a_verdict(jitter in proptest::collection::vec(0u64..50, 200), offsets in proptest::collection::vec(0u64..3_000, 6)) {
        let sockets = scenario_sockets();
        let end = 200_000 * MS;
        let mut alone = std::collections::BTreeMap::new();
        for s in &sockets {
            alone.extend(by_socket(&run(s.events.clone(), end)));
        }
        // Shift each socket in time, merge by timestamp, then let arrival lag by up to
        // 50 ms (the ring buffer's cross-CPU disorder), smaller than the 100 ms window.
        let mut merged: Vec<(u64, Event)> = Vec::new();
        for (i, s) in sockets.iter().enumerate() {
            for e in &s.events {
                let mut e = e.clone();
                e.ts_ns += offsets[i] * MS;
                merged.push((e.ts_ns, e));
            }
        }
        merged.sort_by_key(|(ts, _)| *ts);
        let mut arrivals: Vec<(u64, usize, Event)> = merged
            .into_iter()
            .enumerate()
            .map(|(i, (ts, e))| (ts + jitter[i % jitter.len()] * MS, i, e))
            .collect();
        arrivals.sort_by_key(|(arrival, i, _)| (*arrival, *i));
        let together = by_socket(&run(arrivals.into_iter().map(|(_, _, e)| e).collect(), end + 10_000 * MS));
        prop_assert_eq!(alone, together);
    }
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
    let v = run(s.events.clone(), end_of(&s));
    assert_eq!(v[0].socket, SocketId(7));
    assert_eq!(v[0].lport, 40_007);
    assert_eq!(v[0].rport, 80);
    assert_eq!(v[0].process.as_ref().unwrap().comm, "app");
    let json = serde_json::to_string(&v[0]).unwrap();
    assert!(json.contains(r#""verdict":"peer_reset""#), "{json}");
}

#[test]
fn the_warning_follows_the_namespace_retries2() {
    let s = Sock::new(1).retries2(5).established().rtos(3);
    let v = run(s.events.clone(), end_of(&s));
    assert_eq!(kinds(&v), [PeerUnresponsive]);
    // tcp_retries2=5: (2^6 − 1) × 200 ms = 12.6 s from the original send.
    assert_eq!(
        v[0].facts.give_up_budget.as_deref(),
        Some("tcp_retries2=5, 12.6 s")
    );
}
