//! One socket's story so far, and the verdict rules applied to it as events arrive (in time
//! order: the engine's reorder buffer sees to that).
//!
//! The rules, checkable against net/ipv4/tcp_timer.c and tcp_input.c:
//!
//! | verdict | fires when |
//! |---|---|
//! | peer_unresponsive | an RTO retransmit (tcp_retransmit_timer) brings icsk_retransmits to the threshold (tcp_retries1 by default: where the kernel itself starts suspecting the path) on a synchronized connection; once per socket |
//! | connection_refused | SYN_SENT → CLOSE with ECONNREFUSED (tcp_reset() in SYN_SENT) |
//! | connect_timeout | SYN_SENT → CLOSE with ETIMEDOUT or an ICMP soft error (tcp_write_err() after SYN retries) |
//! | peer_reset | → CLOSE with ECONNRESET or EPIPE after a reset was received (tcp_reset()); "lost state" when our RTOs were outstanding |
//! | orphan_timeout | → CLOSE with ETIMEDOUT / soft error on a socket the application had closed (SOCK_DEAD; tcp_orphan_retries) |
//! | keepalive_exhausted | → CLOSE with ETIMEDOUT / soft error inside tcp_keepalive_timer, or after keepalive probes and a TCP_KEEPALIVE_TIMEOUT reset |
//! | retries_exhausted | → CLOSE with ETIMEDOUT / soft error otherwise (tcp_retries2 or TCP_USER_TIMEOUT in tcp_write_timeout()) |
//! | local_abort | this host sent an active reset (tcp_send_active_reset(): linger 0, unread data, abort on memory, ...) on a synchronized connection — except a keepalive give-up, which is keepalive_exhausted |
//! | dead_socket_held | (engine, on the clock) a death above with an error, not an orphan, and no tcp_destroy_sock after the threshold |
//!
//! One verdict per death: the most specific. An orderly close (FIN both ways, including a
//! peer process that crashed) has none.

use crate::{
    event::{Event, EventKind, RetransmitClass, TcpState, TimerKind},
    tcp_model,
    timeline::{
        verdict::{Evidence, VerdictFacts, VerdictKind},
        words::{duration_ms, ns_to_ms},
    },
};

/// A moment worth citing as evidence, kept without allocating.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    pub ts_ns: u64,
    pub kind: EventKind,
    pub state: TcpState,
    pub old_state: Option<TcpState>,
    pub class: Option<RetransmitClass>,
    pub retransmits: u8,
    pub rto_us: u64,
    pub probe: u8,
    pub timer: Option<TimerKind>,
}

impl Mark {
    fn of(e: &Event) -> Mark {
        Mark {
            ts_ns: e.ts_ns,
            kind: e.kind,
            state: e.state,
            old_state: e.old_state,
            class: e.class,
            retransmits: e.sock.as_ref().map_or(0, |s| s.retransmits),
            rto_us: e.sock.as_ref().map_or(0, |s| s.rto_us),
            probe: e.probe.unwrap_or(0),
            timer: e.timer,
        }
    }

    fn evidence(&self, note: &str) -> Evidence {
        let detail = match self.kind {
            EventKind::Retransmit => {
                let class = match self.class {
                    Some(RetransmitClass::Rto) => "RTO",
                    Some(RetransmitClass::Syn) => "SYN",
                    Some(RetransmitClass::SynAck) => "SYN-ACK",
                    Some(RetransmitClass::Tlp) => "tail loss probe",
                    Some(RetransmitClass::Fast) => "fast",
                    Some(RetransmitClass::LossRecovery) => "loss recovery",
                    Some(RetransmitClass::RackTimeout) => "RACK timeout",
                    _ => "unclassified",
                };
                let mut d = format!("{class} retransmit");
                if self.retransmits > 0 {
                    d += &format!(", {} consecutive RTOs", self.retransmits);
                }
                if self.rto_us > 0 {
                    d += &format!(", RTO {}", duration_ms(self.rto_us / 1000));
                }
                d
            }
            EventKind::KeepaliveProbe => format!("keepalive probe {}", self.probe),
            EventKind::StateChange => {
                let timer = match self.timer {
                    Some(TimerKind::Write) => " in the retransmit timer",
                    Some(TimerKind::Keepalive) => " in the keepalive timer",
                    None => "",
                };
                format!(
                    "{} → {}{timer}",
                    self.old_state.map(|s| s.name()).unwrap_or_default(),
                    self.state
                )
            }
            EventKind::ResetReceived => format!("reset received in {}", self.state),
            EventKind::ResetSent => "reset sent".to_owned(),
            other => other.name().replace('_', " "),
        };
        Evidence {
            ts_ns: self.ts_ns,
            kind: self.kind,
            detail: if note.is_empty() {
                detail
            } else {
                format!("{detail}{note}")
            },
        }
    }
}

/// A run of retransmits without progress.
#[derive(Debug, Default, Clone, Copy)]
pub struct Streak {
    pub count: u32,
    pub first: Option<Mark>,
    pub last: Option<Mark>,
}

impl Streak {
    fn add(&mut self, m: Mark) {
        if self.first.is_none() {
            self.first = Some(m);
        }
        self.count += 1;
        self.last = Some(m);
    }

    fn duration_ms(&self) -> u64 {
        match (self.first, self.last) {
            (Some(f), Some(l)) => ns_to_ms(l.ts_ns - f.ts_ns),
            _ => 0,
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct Probes {
    pub series: Streak,
    pub interval_ms: u64,
    pub configured: u8,
    pub idle_before_ms: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Close {
    pub mark: Mark,
    pub error: Option<String>,
}

/// What a rule concluded: the engine adds the socket's identity.
pub struct Decision {
    pub kind: VerdictKind,
    pub ts_ns: u64,
    pub explanation: String,
    pub facts: VerdictFacts,
    pub evidence: Vec<Evidence>,
}

/// Active resets: the kernel tearing down a connection itself (tcp_send_active_reset()).
/// Other reasons answer a stray segment and end nothing.
const ABORT_REASONS: &[&str] = &[
    "NOT_SPECIFIED",
    "TCP_ABORT_ON_DATA",
    "TCP_ABORT_ON_CLOSE",
    "TCP_ABORT_ON_LINGER",
    "TCP_ABORT_ON_MEMORY",
    "TCP_STATE",
    "TCP_DISCONNECT_WITH_DATA",
    "TCP_KEEPALIVE_TIMEOUT",
];

#[derive(Debug, Default, Clone)]
pub struct Analysis {
    pub opened: Option<Mark>,
    pub ever_synchronized: bool,
    pub retransmits: u32,
    pub segments: u64,
    pub syn: Streak,
    pub rto: Streak,
    pub consecutive_rtos: u8,
    pub probes: Probes,
    pub reset_received: Option<(Mark, u8)>,
    pub reset_sent: Option<(Mark, Option<String>)>,
    pub close: Option<Close>,
    pub destroyed_ns: Option<u64>,
    pub warned: bool,
    /// Set when a death leaves the application holding the socket: when its close is due.
    pub held_since_ns: Option<u64>,
    emitted: u16,
}

impl Analysis {
    pub fn has(&self, kind: VerdictKind) -> bool {
        self.emitted & (1 << kind as u16) != 0
    }

    fn decide(&mut self, d: Decision, out: &mut Vec<Decision>) {
        if !self.has(d.kind) {
            self.emitted |= 1 << d.kind as u16;
            out.push(d);
        }
    }

    /// Applies one event (in time order) and appends any verdict it completes.
    pub fn apply(&mut self, e: &Event, warn_after_rtos: Option<u8>, out: &mut Vec<Decision>) {
        let mark = Mark::of(e);
        if self.opened.is_none() {
            self.opened = Some(mark);
        }
        if e.state.is_synchronized() && e.state != TcpState::TIME_WAIT {
            self.ever_synchronized = true;
        }
        if let Some(sock) = &e.sock {
            // icsk_retransmits drops back when an ACK makes progress: the streak ends.
            if sock.retransmits < self.consecutive_rtos && e.kind != EventKind::StateChange {
                self.rto = Streak::default();
            }
            if e.kind != EventKind::StateChange || e.state != TcpState::CLOSE {
                self.consecutive_rtos = sock.retransmits;
            }
        }
        match e.kind {
            EventKind::Retransmit => self.on_retransmit(e, mark, warn_after_rtos, out),
            EventKind::KeepaliveProbe => self.on_probe(e, mark),
            EventKind::ResetReceived => {
                self.reset_received = Some((mark, self.consecutive_rtos.max(self.rto.count as u8)));
            }
            EventKind::ResetSent => self.on_reset_sent(e, mark, out),
            EventKind::StateChange if e.state == TcpState::CLOSE => self.on_close(e, mark, out),
            EventKind::Destroy => {
                self.destroyed_ns = Some(e.ts_ns);
            }
            _ => {}
        }
    }

    fn on_retransmit(
        &mut self,
        e: &Event,
        mark: Mark,
        warn_after_rtos: Option<u8>,
        out: &mut Vec<Decision>,
    ) {
        self.retransmits += 1;
        self.segments += u64::from(e.segs.unwrap_or(1));
        match e.class {
            Some(RetransmitClass::Syn) => self.syn.add(mark),
            Some(RetransmitClass::Rto) => {
                self.rto.add(mark);
                self.maybe_warn(e, mark, warn_after_rtos, out);
            }
            _ => {}
        }
    }

    /// peer_unresponsive: the early warning, with the moment the kernel will give up.
    fn maybe_warn(
        &mut self,
        e: &Event,
        mark: Mark,
        warn_after_rtos: Option<u8>,
        out: &mut Vec<Decision>,
    ) {
        let Some(sock) = &e.sock else { return };
        let threshold = warn_after_rtos
            .unwrap_or(if sock.retries1 > 0 { sock.retries1 } else { 3 })
            .max(1);
        // An orphan's budget is tcp_orphan_retries and nobody is left to warn: its death
        // gets orphan_timeout.
        if self.warned || sock.orphan || !e.state.is_synchronized() || sock.retransmits < threshold
        {
            return;
        }
        self.warned = true;
        let first = self.rto.first.unwrap_or(mark);
        // The kernel counts from the original transmission of the oldest unacknowledged
        // segment (retrans_stamp): one RTO before the first RTO retransmit.
        let start_ms = ns_to_ms(first.ts_ns).saturating_sub(first.rto_us / 1000);
        let budget_ms = tcp_model::data_give_up_budget_ms(sock.retries2, sock.user_timeout_ms);
        let now_ms = ns_to_ms(e.ts_ns);
        let next_rto_ms = (sock.rto_us / 1000 * 2).clamp(1, tcp_model::RTO_MAX_MS);
        let give_up_ms = if sock.user_timeout_ms != 0 {
            // tcp_clamp_rto_to_user_timeout(): the timer fires exactly at the deadline.
            (start_ms + budget_ms).max(now_ms)
        } else {
            tcp_model::predicted_give_up_ms(start_ms, budget_ms, now_ms, next_rto_ms)
        };
        let budget = budget_text(sock.retries2, sock.user_timeout_ms, budget_ms);
        out.push(Decision {
            kind: VerdictKind::PeerUnresponsive,
            ts_ns: e.ts_ns,
            explanation: format!(
                "peer {} is not acknowledging: {} consecutive RTOs over {}, RTO now {}; \
                 the kernel will give up in about {} ({budget}) unless it answers",
                crate::event::endpoint(e.raddr, e.rport),
                sock.retransmits,
                duration_ms(self.rto.duration_ms().max(sock.rto_us / 1000)),
                duration_ms(sock.rto_us / 1000),
                duration_ms(give_up_ms.saturating_sub(now_ms)),
            ),
            facts: VerdictFacts {
                retransmits: Some(self.rto.count),
                consecutive_rtos: Some(u32::from(sock.retransmits)),
                duration_ms: Some(self.rto.duration_ms()),
                last_rto_ms: Some(sock.rto_us / 1000),
                predicted_give_up_ns: Some(give_up_ms * 1_000_000),
                give_up_budget: Some(budget),
                ..VerdictFacts::default()
            },
            evidence: self.rto_evidence(),
        });
        self.emitted |= 1 << VerdictKind::PeerUnresponsive as u16;
    }

    fn on_probe(&mut self, e: &Event, mark: Mark) {
        let n = e.probe.unwrap_or(0);
        // Probe 1 again means the previous series was answered: start over.
        if n <= 1 || n as u32 <= self.probes.series.count {
            self.probes = Probes::default();
        }
        self.probes.series.add(mark);
        if let Some(sock) = &e.sock {
            self.probes.interval_ms = sock.keepalive_intvl_ms;
            self.probes.configured = sock.keepalive_probes;
            if self.probes.series.count == 1 {
                self.probes.idle_before_ms = sock.idle_rx_ms.or(Some(sock.keepalive_idle_ms));
            }
        }
    }

    fn on_reset_sent(&mut self, e: &Event, mark: Mark, out: &mut Vec<Decision>) {
        self.reset_sent = Some((mark, e.reason.clone()));
        let reason = e.reason.as_deref();
        let active = reason.is_none_or(|r| ABORT_REASONS.contains(&r));
        let keepalive_give_up =
            reason == Some("TCP_KEEPALIVE_TIMEOUT") || e.timer == Some(TimerKind::Keepalive);
        if !active
            || keepalive_give_up
            || !self.ever_synchronized
            || matches!(e.state, TcpState::TIME_WAIT | TcpState::NEW_SYN_RECV)
        {
            return;
        }
        let mut evidence =
            vec![mark.evidence(&reason.map(|r| format!(" ({r})")).unwrap_or_default())];
        if let Some(close) = &self.close {
            evidence.insert(0, close.mark.evidence(""));
        }
        self.decide(
            Decision {
                kind: VerdictKind::LocalAbort,
                ts_ns: e.ts_ns,
                explanation: format!(
                    "this host reset the connection to {}{}",
                    crate::event::endpoint(e.raddr, e.rport),
                    reason
                        .map(|r| format!(" ({})", reset_reason_words(r)))
                        .unwrap_or_default()
                ),
                facts: VerdictFacts {
                    reset_reason: e.reason.clone(),
                    ..VerdictFacts::default()
                },
                evidence,
            },
            out,
        );
    }

    fn on_close(&mut self, e: &Event, mark: Mark, out: &mut Vec<Decision>) {
        let sock = e.sock.as_ref();
        let error = sock.and_then(|s| s.error.clone());
        let orphan = sock.is_some_and(|s| s.orphan);
        let budget = sock
            .map(|s| {
                budget_text(
                    s.retries2,
                    s.user_timeout_ms,
                    tcp_model::data_give_up_budget_ms(s.retries2, s.user_timeout_ms),
                )
            })
            .unwrap_or_default();
        self.close = Some(Close {
            mark,
            error: error.clone(),
        });
        let Some(error) = error else { return };
        let peer = crate::event::endpoint(e.raddr, e.rport);
        let old = e.old_state.unwrap_or(TcpState::CLOSE);
        // tcp_write_err() runs inside the write or keepalive timer (or its deferred run in
        // tcp_release_cb()) and reports sk_err_soft ?: ETIMEDOUT: an ICMP error may stand
        // in for the timeout.
        let timed_out = e.timer.is_some() || error == "ETIMEDOUT";
        let decision = if old == TcpState::SYN_SENT {
            if timed_out {
                self.connect_timeout(e, &peer, mark, &error)
            } else {
                self.refused(e, &peer, mark, &error)
            }
        } else if timed_out {
            if orphan {
                self.orphan_timeout(e, &peer, mark, &error)
            } else if self.keepalive_death(e) {
                self.keepalive_exhausted(e, &peer, mark, &error)
            } else {
                self.retries_exhausted(e, &peer, mark, &error, &budget)
            }
        } else if matches!(error.as_str(), "ECONNRESET" | "EPIPE") {
            self.peer_reset(e, &peer, mark, &error, old)
        } else {
            return;
        };
        let death = decision.kind;
        self.decide(decision, out);
        // connect() reports its own failure; other deaths reach the application only when
        // it next uses or polls the socket. Orphans have no application left.
        if !orphan
            && !matches!(
                death,
                VerdictKind::ConnectionRefused | VerdictKind::ConnectTimeout
            )
        {
            self.held_since_ns = Some(e.ts_ns);
        }
    }

    fn keepalive_death(&self, e: &Event) -> bool {
        e.timer == Some(TimerKind::Keepalive)
            || (self.probes.series.count > 0
                && self
                    .reset_sent
                    .as_ref()
                    .is_some_and(|(_, r)| r.as_deref() == Some("TCP_KEEPALIVE_TIMEOUT")))
    }

    fn rto_evidence(&self) -> Vec<Evidence> {
        let mut ev = Vec::new();
        if let Some(first) = self.rto.first {
            ev.push(first.evidence(" (first)"));
        }
        if let Some(last) = self.rto.last
            && self.rto.count > 1
        {
            ev.push(last.evidence(" (latest)"));
        }
        ev
    }

    fn refused(&self, e: &Event, peer: &str, mark: Mark, error: &str) -> Decision {
        let mut evidence = Vec::new();
        if let Some(opened) = self.opened {
            evidence.push(opened.evidence(""));
        }
        if let Some((reset, _)) = self.reset_received {
            evidence.push(reset.evidence(""));
        }
        evidence.push(mark.evidence(&format!(", {error}")));
        let how = if self.reset_received.is_some() {
            format!(
                "the peer answered our SYN with a reset (nothing listens on port {})",
                e.rport
            )
        } else {
            format!("the network answered our SYN with {error}")
        };
        Decision {
            kind: VerdictKind::ConnectionRefused,
            ts_ns: e.ts_ns,
            explanation: format!("connect to {peer} refused: {how}"),
            facts: VerdictFacts {
                error: Some(error.into()),
                ..VerdictFacts::default()
            },
            evidence,
        }
    }

    fn connect_timeout(&self, e: &Event, peer: &str, mark: Mark, error: &str) -> Decision {
        let waited = self.opened.map_or(0, |o| ns_to_ms(e.ts_ns - o.ts_ns));
        let mut evidence = Vec::new();
        if let Some(opened) = self.opened {
            evidence.push(opened.evidence(""));
        }
        if let Some(first) = self.syn.first {
            evidence.push(first.evidence(" (first)"));
        }
        if let Some(last) = self.syn.last
            && self.syn.count > 1
        {
            evidence.push(last.evidence(" (last)"));
        }
        evidence.push(mark.evidence(&format!(", {error}")));
        let icmp = if error == "ETIMEDOUT" {
            String::new()
        } else {
            format!("; the network said {error}")
        };
        Decision {
            kind: VerdictKind::ConnectTimeout,
            ts_ns: e.ts_ns,
            explanation: format!(
                "connect to {peer} timed out: {} SYN retransmits over {} went unanswered{icmp}",
                self.syn.count,
                duration_ms(waited)
            ),
            facts: VerdictFacts {
                retransmits: Some(self.syn.count),
                duration_ms: Some(waited),
                error: Some(error.into()),
                ..VerdictFacts::default()
            },
            evidence,
        }
    }

    fn peer_reset(
        &self,
        e: &Event,
        peer: &str,
        mark: Mark,
        error: &str,
        old: TcpState,
    ) -> Decision {
        let unanswered = self.reset_received.map_or(0, |(_, n)| n);
        let lost_state = unanswered > 0;
        let mut evidence = Vec::new();
        if lost_state {
            evidence.extend(self.rto_evidence());
        }
        if let Some((reset, _)) = self.reset_received {
            evidence.push(reset.evidence(""));
        }
        evidence.push(mark.evidence(&format!(", {error}")));
        let why = if lost_state {
            format!(
                " answering our retransmits after {unanswered} unanswered RTOs: the peer lost \
                 the connection's state (it rebooted, or a middlebox expired the flow)"
            )
        } else {
            String::new()
        };
        Decision {
            kind: VerdictKind::PeerReset,
            ts_ns: e.ts_ns,
            explanation: format!(
                "{peer} reset the connection in {old}{why}; the application sees {error}"
            ),
            facts: VerdictFacts {
                error: Some(error.into()),
                peer_lost_state: Some(lost_state),
                consecutive_rtos: lost_state.then_some(u32::from(unanswered)),
                ..VerdictFacts::default()
            },
            evidence,
        }
    }

    fn retries_exhausted(
        &self,
        e: &Event,
        peer: &str,
        mark: Mark,
        error: &str,
        budget: &str,
    ) -> Decision {
        let last_rto_ms = self.rto.last.map_or(0, |m| m.rto_us / 1000);
        let mut evidence = self.rto_evidence();
        evidence.push(mark.evidence(&format!(", {error}")));
        let icmp = if error == "ETIMEDOUT" {
            String::new()
        } else {
            format!(" (the network last said {error})")
        };
        Decision {
            kind: VerdictKind::RetriesExhausted,
            ts_ns: e.ts_ns,
            explanation: format!(
                "peer {peer} stopped acknowledging: {} retransmits over {} (last RTO {}); \
                 the kernel gave up after {budget}{icmp}",
                self.rto.count,
                duration_ms(self.rto.duration_ms()),
                duration_ms(last_rto_ms)
            ),
            facts: VerdictFacts {
                retransmits: Some(self.rto.count),
                duration_ms: Some(self.rto.duration_ms()),
                last_rto_ms: Some(last_rto_ms),
                error: Some(error.into()),
                give_up_budget: Some(budget.into()),
                ..VerdictFacts::default()
            },
            evidence,
        }
    }

    fn orphan_timeout(&self, e: &Event, peer: &str, mark: Mark, error: &str) -> Decision {
        let mut evidence = self.rto_evidence();
        evidence.push(mark.evidence(&format!(", {error}, orphan")));
        let retries = e.sock.as_ref().map_or(0, |s| s.orphan_retries);
        Decision {
            kind: VerdictKind::OrphanTimeout,
            ts_ns: e.ts_ns,
            explanation: format!(
                "a socket to {peer} that the application had already closed died retransmitting: \
                 {} retransmits over {} (tcp_orphan_retries={retries}); its unsent data is lost",
                self.rto.count,
                duration_ms(self.rto.duration_ms()),
            ),
            facts: VerdictFacts {
                retransmits: Some(self.rto.count),
                duration_ms: Some(self.rto.duration_ms()),
                error: Some(error.into()),
                ..VerdictFacts::default()
            },
            evidence,
        }
    }

    fn keepalive_exhausted(&self, e: &Event, peer: &str, mark: Mark, error: &str) -> Decision {
        let probes = &self.probes;
        let mut evidence = Vec::new();
        if let Some(first) = probes.series.first {
            evidence.push(first.evidence(""));
        }
        if let Some(last) = probes.series.last
            && probes.series.count > 1
        {
            evidence.push(last.evidence(""));
        }
        if let Some((reset, reason)) = &self.reset_sent {
            evidence.push(
                reset.evidence(
                    &reason
                        .as_ref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default(),
                ),
            );
        }
        evidence.push(mark.evidence(&format!(", {error}")));
        let idle = probes
            .idle_before_ms
            .map(|ms| format!(" after {} idle", duration_ms(ms)))
            .unwrap_or_default();
        Decision {
            kind: VerdictKind::KeepaliveExhausted,
            ts_ns: e.ts_ns,
            explanation: format!(
                "peer {peer} declared dead by keepalive: {} probes {} apart{idle} went unanswered; \
                 the kernel reset the connection ({error})",
                probes.series.count,
                duration_ms(probes.interval_ms)
            ),
            facts: VerdictFacts {
                probes: Some(probes.series.count),
                probe_interval_ms: Some(probes.interval_ms),
                idle_before_probes_ms: probes.idle_before_ms,
                duration_ms: Some(probes.series.duration_ms()),
                error: Some(error.into()),
                reset_reason: self.reset_sent.as_ref().and_then(|(_, r)| r.clone()),
                ..VerdictFacts::default()
            },
            evidence,
        }
    }

    /// dead_socket_held, decided by the engine's clock.
    pub fn held(&mut self, now_ns: u64, peer: &str, holder: &str) -> Option<Decision> {
        let since = self.held_since_ns?;
        if self.destroyed_ns.is_some() || self.has(VerdictKind::DeadSocketHeld) {
            return None;
        }
        self.emitted |= 1 << VerdictKind::DeadSocketHeld as u16;
        let close = self.close.as_ref()?;
        let held_ms = ns_to_ms(now_ns.saturating_sub(since));
        let error = close.error.clone().unwrap_or_default();
        Some(Decision {
            kind: VerdictKind::DeadSocketHeld,
            ts_ns: now_ns,
            explanation: format!(
                "{holder} still holds its socket to {peer} {} after the kernel ended the \
                 connection ({error}): the application has not noticed",
                duration_ms(held_ms)
            ),
            facts: VerdictFacts {
                held_ms: Some(held_ms),
                error: close.error.clone(),
                ..VerdictFacts::default()
            },
            evidence: vec![close.mark.evidence(&format!(", {error}"))],
        })
    }
}

fn budget_text(retries2: u8, user_timeout_ms: u32, budget_ms: u64) -> String {
    if user_timeout_ms != 0 {
        format!(
            "TCP_USER_TIMEOUT {}",
            duration_ms(u64::from(user_timeout_ms))
        )
    } else {
        format!("tcp_retries2={retries2}, {}", duration_ms(budget_ms))
    }
}

fn reset_reason_words(reason: &str) -> String {
    match reason {
        "TCP_ABORT_ON_LINGER" => "closed with SO_LINGER 0".into(),
        "TCP_ABORT_ON_CLOSE" => "closed with unread data".into(),
        "TCP_ABORT_ON_DATA" => "data arrived after close".into(),
        "TCP_ABORT_ON_MEMORY" => "out of memory for orphans".into(),
        "TCP_DISCONNECT_WITH_DATA" => "disconnected with unread data".into(),
        "TCP_STATE" => "closed in a state that requires a reset, e.g. SO_LINGER 0".into(),
        other => other.to_owned(),
    }
}
