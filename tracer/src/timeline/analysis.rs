//! One socket's story so far, and the verdict rules applied to it as events arrive (in time
//! order: the engine's reorder buffer sees to that).
//!
//! The rules, checkable against net/ipv4/tcp_timer.c, tcp_input.c and tcp_ipv4.c:
//!
//! | verdict | fires when |
//! |---|---|
//! | peer_unresponsive | an RTO retransmit (tcp_retransmit_timer) brings icsk_retransmits to the threshold (tcp_retries1 by default: where the kernel itself starts suspecting the path) on a synchronized connection the application still holds; once per socket |
//! | connection_refused | SYN_SENT → CLOSE with ECONNREFUSED (tcp_reset() in SYN_SENT), or with an ICMP error outside any timer (tcp_v4_err()/tcp_v6_err() end a connect at once) |
//! | connect_timeout | SYN_SENT → CLOSE with ETIMEDOUT, or an ICMP soft error inside the retransmit timer (tcp_write_err() after tcp_syn_retries / TCP_SYNCNT) |
//! | peer_reset | → CLOSE with ECONNRESET, or EPIPE in CLOSE_WAIT (tcp_reset()); "lost state" when our RTOs were outstanding at the reset |
//! | keepalive_exhausted | → CLOSE with ETIMEDOUT / soft error inside tcp_keepalive_timer, or after keepalive probes and a TCP_KEEPALIVE_TIMEOUT reset |
//! | orphan_timeout | → CLOSE with ETIMEDOUT / soft error on a socket the application had closed (SOCK_DEAD: tcp_orphan_retries) |
//! | retries_exhausted | → CLOSE with ETIMEDOUT / soft error otherwise (tcp_write_timeout(): tcp_retries2 or TCP_USER_TIMEOUT; tcp_probe_timer(): zero-window probes) |
//! | local_abort | this host sent an active reset (tcp_send_active_reset(): linger 0, unread data, abort on memory, ...) on a synchronized connection, except a keepalive give-up (keepalive_exhausted) |
//! | dead_socket_held | (engine, on the clock) a synchronized socket the application still holds reached CLOSE with an error, and no tcp_destroy_sock followed within the threshold |
//!
//! The CLOSE rules are [`death_rule`], a table. One death verdict per socket, the most
//! specific; an orderly close (FIN both ways, including a peer process that crashed) has
//! none.

use crate::{
    event::{Event, EventKind, RetransmitClass, TcpState, TimerKind},
    tcp_model,
    timeline::{
        verdict::{Evidence, VerdictFacts, VerdictKind},
        words::{count, duration_ms, ns_to_ms},
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
                    d += &format!(", {} in a row", count(self.retransmits, "timeout"));
                }
                if self.rto_us > 0 {
                    d += &format!(", RTO {}", duration_ms(self.rto_us / 1000));
                }
                d
            }
            EventKind::KeepaliveProbe => format!("keepalive probe {}", self.probe),
            EventKind::ZeroWindowProbe => format!("zero-window probe {}", self.probe),
            EventKind::StateChange => {
                let timer = match self.timer {
                    Some(TimerKind::Write) => " in the retransmit timer",
                    Some(TimerKind::Keepalive) => " in the keepalive timer",
                    None => "",
                };
                format!(
                    "{} → {}{timer}",
                    self.old_state.map(|s| s.to_string()).unwrap_or_default(),
                    self.state
                )
            }
            EventKind::ResetReceived => format!("reset received in {}", self.state),
            EventKind::ResetSent => format!("reset sent in {}", self.state),
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

/// A run of retransmits or probes without progress.
#[derive(Debug, Default, Clone, Copy)]
pub struct Streak {
    pub count: u32,
    pub first: Option<Mark>,
    /// The one before `last`: with it, how late the timer has been running.
    pub previous: Option<Mark>,
    pub last: Option<Mark>,
}

impl Streak {
    fn add(&mut self, m: Mark) {
        if self.first.is_none() {
            self.first = Some(m);
        }
        self.count += 1;
        self.previous = self.last;
        self.last = Some(m);
    }

    fn span_ms(&self) -> u64 {
        match (self.first, self.last) {
            (Some(f), Some(l)) => ns_to_ms(l.ts_ns.saturating_sub(f.ts_ns)),
            _ => 0,
        }
    }

    /// From the first of the streak to `ts_ns` (the death).
    fn until_ms(&self, ts_ns: u64) -> u64 {
        self.first
            .map_or(0, |f| ns_to_ms(ts_ns.saturating_sub(f.ts_ns)))
    }

    /// The first and (if different) the latest, as evidence.
    fn evidence(&self, out: &mut Vec<Evidence>) {
        if let Some(first) = self.first {
            out.push(first.evidence(if self.count > 1 { " (first)" } else { "" }));
        }
        if let Some(last) = self.last
            && self.count > 1
        {
            out.push(last.evidence(" (latest)"));
        }
    }
}

/// Probes numbered 1..N by the kernel (icsk_probes_out), keepalive or zero-window.
#[derive(Debug, Default, Clone, Copy)]
pub struct Probes {
    pub series: Streak,
    /// The socket's keepalive interval and idle time at the first probe (0: unknown).
    pub interval_ms: u64,
    pub idle_before_ms: Option<u64>,
}

impl Probes {
    fn add(&mut self, e: &Event, mark: Mark) {
        let n = u32::from(e.probe.unwrap_or(0));
        // Probe 1 again (or a number already seen) means the previous series was answered.
        if n <= 1 || n <= self.series.count {
            *self = Probes::default();
        }
        self.series.add(mark);
        if let Some(sock) = &e.sock {
            self.interval_ms = sock.keepalive_intvl_ms;
            if self.series.count == 1 {
                // Time since the peer last acknowledged anything: the idle period.
                self.idle_before_ms = sock.idle_rx_ms.or(Some(sock.keepalive_idle_ms));
            }
        }
    }

    /// The configured interval, else the one the probes' own times show.
    fn interval_ms(&self) -> u64 {
        if self.interval_ms > 0 || self.series.count < 2 {
            self.interval_ms
        } else {
            self.series.span_ms() / u64::from(self.series.count - 1)
        }
    }
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

/// What the socket error at CLOSE says ended the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// ECONNREFUSED: tcp_reset() in SYN_SENT (or an ICMP port unreachable).
    Refused,
    /// ECONNRESET, or EPIPE in CLOSE_WAIT: tcp_reset().
    Reset,
    /// ETIMEDOUT: tcp_write_err() with no ICMP error recorded.
    TimedOut,
    /// ECONNABORTED: tcp_abort() (sock_diag SOCK_DESTROY, `ss -K`).
    Aborted,
    /// Anything else: an ICMP error (EHOSTUNREACH, ENETUNREACH, EPROTO...), which
    /// tcp_write_err() reports instead of ETIMEDOUT (sk_err_soft ?: ETIMEDOUT), and which
    /// ends a connect() at once.
    Network,
}

impl Cause {
    pub fn of(error: &str) -> Cause {
        match error {
            "ECONNREFUSED" => Cause::Refused,
            "ECONNRESET" | "EPIPE" => Cause::Reset,
            "ETIMEDOUT" => Cause::TimedOut,
            "ECONNABORTED" => Cause::Aborted,
            _ => Cause::Network,
        }
    }
}

/// What else the kernel showed about a death, besides the socket error.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeathContext {
    /// The CLOSE fired inside the write (retransmit / probe) or keepalive timer.
    pub in_timer: bool,
    /// Keepalive gave up: inside tcp_keepalive_timer, or probes then a
    /// TCP_KEEPALIVE_TIMEOUT reset.
    pub keepalive: bool,
    /// The application had closed the socket (SOCK_DEAD).
    pub orphan: bool,
    /// Retransmits or probes went unanswered before (tcp_write_err() may also run deferred,
    /// outside the timer, from tcp_release_cb()).
    pub unanswered: bool,
}

/// The death rules: which verdict a CLOSE with a socket error gets. First match wins.
///
/// `connecting`: the socket left SYN_SENT.
pub fn death_rule(connecting: bool, cause: Cause, c: DeathContext) -> Option<VerdictKind> {
    use Cause::*;
    use VerdictKind::*;
    let timed_out = |cause| cause == TimedOut || (cause == Network && (c.in_timer || c.unanswered));
    Some(match (connecting, cause) {
        // tcp_reset() in SYN_SENT
        (true, Refused) => ConnectionRefused,
        // tcp_write_timeout(): tcp_syn_retries / TCP_SYNCNT exhausted
        (true, _) if timed_out(cause) => ConnectTimeout,
        // tcp_v4_err() / tcp_v6_err(): an ICMP error ends a connect at once
        (true, Network) => ConnectionRefused,
        // tcp_reset() on a synchronized connection
        (false, Reset) => PeerReset,
        // tcp_keepalive_timer(): probes_out reached TCP_KEEPCNT (or TCP_USER_TIMEOUT)
        (false, _) if timed_out(cause) && c.keepalive => KeepaliveExhausted,
        // tcp_write_timeout() on SOCK_DEAD: tcp_orphan_retries
        (false, _) if timed_out(cause) && c.orphan => OrphanTimeout,
        // tcp_write_timeout(): tcp_retries2 / TCP_USER_TIMEOUT; tcp_probe_timer()
        (false, _) if timed_out(cause) => RetriesExhausted,
        // ECONNABORTED: this host's own abort, judged at its reset (local_abort)
        _ => return None,
    })
}

#[derive(Debug, Default, Clone)]
pub struct Analysis {
    pub opened: Option<Mark>,
    pub ever_synchronized: bool,
    /// The last synchronized state, for a reset sent after CLOSE was already reported.
    pub last_open_state: Option<TcpState>,
    /// All retransmits of the socket, of any class.
    pub retransmits: u32,
    pub syn: Streak,
    pub rto: Streak,
    pub consecutive_rtos: u8,
    pub keepalive: Probes,
    pub zero_window: Probes,
    pub reset_received: Option<(Mark, u8)>,
    pub reset_sent: Option<(Mark, Option<String>)>,
    pub close: Option<Close>,
    pub destroyed_ns: Option<u64>,
    /// The death verdict, once reached: there is one per socket.
    pub death: Option<VerdictKind>,
    /// Set when a death leaves the application holding the socket: since when.
    pub held_since_ns: Option<u64>,
    emitted: u16,
}

impl Analysis {
    pub fn has(&self, kind: VerdictKind) -> bool {
        self.emitted & (1 << kind as u16) != 0
    }

    fn decide(&mut self, d: Decision, out: &mut Vec<Decision>) {
        let death = d.kind.is_death();
        if self.has(d.kind) || (death && self.death.is_some()) {
            return;
        }
        self.emitted |= 1 << d.kind as u16;
        if death {
            self.death = Some(d.kind);
        }
        out.push(d);
    }

    /// Applies one event (in time order) and appends any verdict it completes.
    pub fn apply(&mut self, e: &Event, warn_after_rtos: Option<u8>, out: &mut Vec<Decision>) {
        let mark = Mark::of(e);
        if self.opened.is_none() {
            self.opened = Some(mark);
        }
        if e.state.is_synchronized() && e.state != TcpState::TIME_WAIT {
            self.ever_synchronized = true;
            self.last_open_state = Some(e.state);
        }
        if let Some(sock) = &e.sock
            && !(e.kind == EventKind::StateChange && e.state == TcpState::CLOSE)
        {
            // icsk_retransmits drops back when an ACK makes progress: the streak ends.
            if sock.retransmits < self.consecutive_rtos {
                self.rto = Streak::default();
            }
            self.consecutive_rtos = sock.retransmits;
            // icsk_probes_out back to 0: the peer answered (tcp_ack() clears it).
            if sock.probes_out == 0
                && !matches!(
                    e.kind,
                    EventKind::KeepaliveProbe | EventKind::ZeroWindowProbe
                )
            {
                self.keepalive.series = Streak::default();
                self.zero_window.series = Streak::default();
            }
        }
        match e.kind {
            EventKind::Retransmit => self.on_retransmit(e, mark, warn_after_rtos, out),
            EventKind::KeepaliveProbe => self.keepalive.add(e, mark),
            EventKind::ZeroWindowProbe => self.zero_window.add(e, mark),
            EventKind::ResetReceived => {
                self.reset_received = Some((mark, self.consecutive_rtos));
            }
            EventKind::ResetSent => self.on_reset_sent(e, mark, out),
            EventKind::StateChange if e.state == TcpState::CLOSE => self.on_close(e, mark, out),
            EventKind::Destroy => self.destroyed_ns = Some(e.ts_ns),
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
        match e.class {
            Some(RetransmitClass::Syn) => self.syn.add(mark),
            Some(RetransmitClass::Rto) => {
                self.rto.add(mark);
                self.maybe_warn(e, warn_after_rtos, out);
            }
            _ => {}
        }
    }

    /// peer_unresponsive: the early warning, with the moment the kernel will give up.
    fn maybe_warn(&mut self, e: &Event, warn_after_rtos: Option<u8>, out: &mut Vec<Decision>) {
        let Some(sock) = &e.sock else { return };
        let threshold = warn_after_rtos
            .unwrap_or(if sock.retries1 > 0 { sock.retries1 } else { 3 })
            .max(1);
        // An orphan's budget is tcp_orphan_retries and nobody is left to warn: its death
        // gets orphan_timeout.
        if self.has(VerdictKind::PeerUnresponsive)
            || sock.orphan
            || !e.state.is_synchronized()
            || sock.retransmits < threshold
        {
            return;
        }
        let Some(first) = self.rto.first else { return };
        let budget_ms = tcp_model::data_give_up_budget_ms(sock.retries2, sock.user_timeout_ms);
        // The kernel's clock (retrans_stamp) starts at the streak's first RTO retransmit; read
        // from the socket, it is right even when the tracer started mid-streak.
        let clock_start_ms = match sock.retrans_elapsed_ms {
            Some(elapsed) => ns_to_ms(e.ts_ns).saturating_sub(elapsed),
            None => ns_to_ms(first.ts_ns),
        };
        // The RTO that just expired is the interval since the previous RTO, nominally.
        let lateness = match self.rto.previous {
            Some(prev) if sock.rto_us > 0 => {
                e.ts_ns.saturating_sub(prev.ts_ns) as f64 / (sock.rto_us as f64 * 1000.0)
            }
            _ => 1.0,
        };
        let give_up_ms = tcp_model::predicted_data_give_up_ms(
            clock_start_ms,
            budget_ms,
            sock.user_timeout_ms != 0,
            ns_to_ms(e.ts_ns),
            sock.rto_us / 1000,
            lateness,
        );
        let now_ms = ns_to_ms(e.ts_ns);
        let budget = budget_text(sock.retries2, sock.user_timeout_ms, budget_ms);
        let mut evidence = Vec::new();
        self.rto.evidence(&mut evidence);
        let decision = Decision {
            kind: VerdictKind::PeerUnresponsive,
            ts_ns: e.ts_ns,
            explanation: format!(
                "peer {} is not acknowledging: {} in a row over {}, RTO now {}; the kernel \
                 will give up in about {} ({budget}) unless it answers",
                e.conn.remote().to_string(),
                count(sock.retransmits, "retransmission timeout"),
                duration_ms(self.rto.span_ms()),
                duration_ms(sock.rto_us / 1000),
                duration_ms(give_up_ms.saturating_sub(now_ms)),
            ),
            facts: VerdictFacts {
                retransmits: Some(self.rto.count),
                consecutive_rtos: Some(u32::from(sock.retransmits)),
                duration_ms: Some(self.rto.span_ms()),
                last_rto_ms: Some(sock.rto_us / 1000),
                predicted_give_up_ns: Some(give_up_ms * 1_000_000),
                give_up_budget: Some(budget),
                ..VerdictFacts::default()
            },
            evidence,
        };
        self.decide(decision, out);
    }

    fn on_reset_sent(&mut self, e: &Event, mark: Mark, out: &mut Vec<Decision>) {
        self.reset_sent = Some((mark, e.reason.clone()));
        let reason = e.reason.as_deref();
        let active = reason.is_none_or(|r| ABORT_REASONS.contains(&r));
        // The keepalive give-up resets first, then reports the death: keepalive_exhausted.
        let keepalive_give_up =
            reason == Some("TCP_KEEPALIVE_TIMEOUT") || e.timer == Some(TimerKind::Keepalive);
        if !active
            || keepalive_give_up
            || !self.ever_synchronized
            || matches!(e.state, TcpState::TIME_WAIT | TcpState::NEW_SYN_RECV)
        {
            return;
        }
        let peer = e.conn.remote().to_string();
        let mut evidence = Vec::new();
        if let Some(close) = &self.close {
            evidence.push(close.mark.evidence(""));
        }
        evidence.push(mark.evidence(&reason.map(|r| format!(" ({r})")).unwrap_or_default()));
        // 6.x reports CLOSE before the reset of a linger-0 close: name the state it left.
        let state = if e.state == TcpState::CLOSE {
            self.last_open_state.unwrap_or(e.state)
        } else {
            e.state
        };
        let why = reason
            .map(|r| format!(" ({r}: {})", reset_reason_words(r)))
            .unwrap_or_default();
        let decision = Decision {
            kind: VerdictKind::LocalAbort,
            ts_ns: e.ts_ns,
            explanation: format!(
                "this host reset its connection to {peer} in {state}{why}; the peer sees \
                 ECONNRESET"
            ),
            facts: VerdictFacts {
                reset_reason: e.reason.clone(),
                ..VerdictFacts::default()
            },
            evidence,
        };
        self.decide(decision, out);
    }

    fn on_close(&mut self, e: &Event, mark: Mark, out: &mut Vec<Decision>) {
        let sock = e.sock.as_ref();
        let error = sock.and_then(|s| s.error.clone());
        let orphan = sock.is_some_and(|s| s.orphan);
        self.close = Some(Close {
            mark,
            error: error.clone(),
        });
        let Some(error) = error else { return };
        let old = e.old_state.unwrap_or(TcpState::CLOSE);
        let connecting = old == TcpState::SYN_SENT;
        let context = DeathContext {
            in_timer: e.timer.is_some(),
            keepalive: self.keepalive_death(e),
            orphan,
            unanswered: self.rto.count > 0
                || self.syn.count > 0
                || self.zero_window.series.count > 0
                || self.keepalive.series.count > 0,
        };
        // connect() reports its own failure; other deaths reach the application only when
        // it next uses or polls the socket. Orphans have no application left.
        if !orphan && !connecting && self.ever_synchronized {
            self.held_since_ns = Some(e.ts_ns);
        }
        let Some(kind) = death_rule(connecting, Cause::of(&error), context) else {
            return;
        };
        let peer = e.conn.remote().to_string();
        let decision = match kind {
            VerdictKind::ConnectionRefused => self.refused(e, &peer, mark, &error),
            VerdictKind::ConnectTimeout => self.connect_timeout(e, &peer, mark, &error),
            VerdictKind::PeerReset => self.peer_reset(e, &peer, mark, &error, old),
            VerdictKind::KeepaliveExhausted => self.keepalive_exhausted(e, &peer, mark, &error),
            VerdictKind::OrphanTimeout => self.orphan_timeout(e, &peer, mark, &error),
            _ => self.retries_exhausted(e, &peer, mark, &error),
        };
        self.decide(decision, out);
    }

    fn keepalive_death(&self, e: &Event) -> bool {
        e.timer == Some(TimerKind::Keepalive)
            || (self.keepalive.series.count > 0
                && self
                    .reset_sent
                    .as_ref()
                    .is_some_and(|(_, r)| r.as_deref() == Some("TCP_KEEPALIVE_TIMEOUT")))
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
        let how = if error == "ECONNREFUSED" && self.reset_received.is_some() {
            format!(
                "the peer answered our SYN with a reset (nothing listens on port {})",
                e.conn.rport
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
        let waited = self
            .opened
            .map_or(0, |o| ns_to_ms(e.ts_ns.saturating_sub(o.ts_ns)));
        let mut evidence = Vec::new();
        if let Some(opened) = self.opened {
            evidence.push(opened.evidence(""));
        }
        self.syn.evidence(&mut evidence);
        evidence.push(mark.evidence(&format!(", {error}")));
        let limit = e
            .sock
            .as_ref()
            .filter(|s| s.syn_retries > 0)
            .map(|s| format!(" (tcp_syn_retries={})", s.syn_retries))
            .unwrap_or_default();
        let icmp = if error == "ETIMEDOUT" {
            String::new()
        } else {
            format!("; the network last said {error}")
        };
        Decision {
            kind: VerdictKind::ConnectTimeout,
            ts_ns: e.ts_ns,
            explanation: format!(
                "connect to {peer} timed out: {} over {} went unanswered{limit}, the kernel \
                 gave up with {error}{icmp}",
                count(self.syn.count, "SYN retransmit"),
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
            self.rto.evidence(&mut evidence);
        }
        if let Some((reset, _)) = self.reset_received {
            evidence.push(reset.evidence(""));
        }
        evidence.push(mark.evidence(&format!(", {error}")));
        let why = if lost_state {
            format!(
                ", answering our retransmits after {} in a row: the peer lost the \
                 connection's state (it rebooted, or a middlebox expired the flow)",
                count(unanswered, "unanswered timeout")
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

    fn retries_exhausted(&self, e: &Event, peer: &str, mark: Mark, error: &str) -> Decision {
        // tcp_probe_timer(): the peer's window stayed closed and the probes went unanswered.
        let zero_window = self.rto.count == 0 && self.zero_window.series.count > 0;
        let budget = match &e.sock {
            // tcp_probe_timer() counts probes against tcp_retries2, not time.
            Some(s) if zero_window && s.user_timeout_ms == 0 => {
                format!("tcp_retries2={} probes", s.retries2)
            }
            Some(s) => budget_text(
                s.retries2,
                s.user_timeout_ms,
                tcp_model::data_give_up_budget_ms(s.retries2, s.user_timeout_ms),
            ),
            None => "its retry budget".to_owned(),
        };
        let icmp = if error == "ETIMEDOUT" {
            String::new()
        } else {
            " (the network's last ICMP error, reported instead of ETIMEDOUT)".to_owned()
        };
        let mut evidence = Vec::new();
        let (what, facts) = if zero_window {
            let probes = &self.zero_window.series;
            probes.evidence(&mut evidence);
            (
                format!(
                    "peer {peer} kept its receive window closed and stopped answering: {} \
                     over {}",
                    count(probes.count, "zero-window probe"),
                    duration_ms(probes.until_ms(e.ts_ns)),
                ),
                VerdictFacts {
                    retransmits: Some(0),
                    probes: Some(probes.count),
                    duration_ms: Some(probes.until_ms(e.ts_ns)),
                    ..VerdictFacts::default()
                },
            )
        } else {
            let last_rto_ms = self.rto.last.map_or(0, |m| m.rto_us / 1000);
            self.rto.evidence(&mut evidence);
            (
                format!(
                    "peer {peer} stopped acknowledging: {} over {} (last RTO {})",
                    count(self.rto.count, "retransmit"),
                    duration_ms(self.rto.until_ms(e.ts_ns)),
                    duration_ms(last_rto_ms)
                ),
                VerdictFacts {
                    retransmits: Some(self.rto.count),
                    duration_ms: Some(self.rto.until_ms(e.ts_ns)),
                    last_rto_ms: Some(last_rto_ms),
                    ..VerdictFacts::default()
                },
            )
        };
        evidence.push(mark.evidence(&format!(", {error}")));
        Decision {
            kind: VerdictKind::RetriesExhausted,
            ts_ns: e.ts_ns,
            explanation: format!("{what}; the kernel gave up after {budget} with {error}{icmp}"),
            facts: VerdictFacts {
                error: Some(error.into()),
                give_up_budget: Some(budget),
                ..facts
            },
            evidence,
        }
    }

    fn orphan_timeout(&self, e: &Event, peer: &str, mark: Mark, error: &str) -> Decision {
        let mut evidence = Vec::new();
        self.rto.evidence(&mut evidence);
        evidence.push(mark.evidence(&format!(", {error}, orphan")));
        let retries = e
            .sock
            .as_ref()
            .filter(|s| s.orphan_retries > 0)
            .map(|s| format!(" (tcp_orphan_retries={})", s.orphan_retries))
            .unwrap_or_default();
        Decision {
            kind: VerdictKind::OrphanTimeout,
            ts_ns: e.ts_ns,
            explanation: format!(
                "a socket to {peer} that the application had already closed died retransmitting \
                 in {}: {} over {}{retries}, the kernel gave up with {error}; data still \
                 unacknowledged was lost",
                e.old_state.unwrap_or(TcpState::CLOSE),
                count(self.rto.count, "retransmit"),
                duration_ms(self.rto.until_ms(e.ts_ns)),
            ),
            facts: VerdictFacts {
                retransmits: Some(self.rto.count),
                duration_ms: Some(self.rto.until_ms(e.ts_ns)),
                last_rto_ms: self.rto.last.map(|m| m.rto_us / 1000),
                error: Some(error.into()),
                ..VerdictFacts::default()
            },
            evidence,
        }
    }

    fn keepalive_exhausted(&self, e: &Event, peer: &str, mark: Mark, error: &str) -> Decision {
        let probes = &self.keepalive;
        let mut evidence = Vec::new();
        probes.series.evidence(&mut evidence);
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
        let interval_ms = probes.interval_ms();
        Decision {
            kind: VerdictKind::KeepaliveExhausted,
            ts_ns: e.ts_ns,
            explanation: format!(
                "peer {peer} declared dead by keepalive: {} {} apart{idle} went unanswered; \
                 the kernel reset the connection with {error}",
                count(probes.series.count, "probe"),
                duration_ms(interval_ms)
            ),
            facts: VerdictFacts {
                probes: Some(probes.series.count),
                probe_interval_ms: Some(interval_ms),
                idle_before_probes_ms: probes.idle_before_ms,
                duration_ms: Some(probes.series.until_ms(e.ts_ns)),
                error: Some(error.into()),
                reset_reason: self.reset_sent.as_ref().and_then(|(_, r)| r.clone()),
                ..VerdictFacts::default()
            },
            evidence,
        }
    }

    /// dead_socket_held, decided by the engine's clock at `due_ns` (the death plus the
    /// threshold): nothing released the socket by then.
    pub fn held(&mut self, due_ns: u64, peer: &str, holder: &str) -> Option<Decision> {
        let since = self.held_since_ns?;
        if self.destroyed_ns.is_some_and(|d| d <= due_ns) {
            return None;
        }
        let close = self.close.as_ref()?;
        let held_ms = ns_to_ms(due_ns.saturating_sub(since));
        let error = close.error.clone().unwrap_or_default();
        let evidence = vec![close.mark.evidence(&format!(", {error}"))];
        let mut out = Vec::with_capacity(1);
        self.decide(
            Decision {
                kind: VerdictKind::DeadSocketHeld,
                ts_ns: due_ns,
                explanation: format!(
                    "{holder} still holds its socket to {peer} {} after the kernel ended the \
                     connection with {error}: the application has not noticed",
                    duration_ms(held_ms)
                ),
                facts: VerdictFacts {
                    held_ms: Some(held_ms),
                    error: close.error.clone(),
                    ..VerdictFacts::default()
                },
                evidence,
            },
            &mut out,
        );
        out.pop()
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

fn reset_reason_words(reason: &str) -> &str {
    match reason {
        "TCP_ABORT_ON_LINGER" => "closed with SO_LINGER 0",
        "TCP_ABORT_ON_CLOSE" => "closed with unread data",
        "TCP_ABORT_ON_DATA" => "data arrived after close",
        "TCP_ABORT_ON_MEMORY" => "out of memory for orphans",
        "TCP_DISCONNECT_WITH_DATA" => "disconnected with unread data",
        "TCP_STATE" => "closed or aborted in a state that needs a reset, e.g. SO_LINGER 0",
        "NOT_SPECIFIED" => "no reason given",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Cause::*;
    use VerdictKind::*;

    fn ctx(in_timer: bool, keepalive: bool, orphan: bool, unanswered: bool) -> DeathContext {
        DeathContext {
            in_timer,
            keepalive,
            orphan,
            unanswered,
        }
    }

    #[test]
    fn the_death_table() {
        let quiet = ctx(false, false, false, false);
        let write_timer = ctx(true, false, false, true);
        let keepalive = ctx(true, true, false, true);
        let orphan = ctx(true, false, true, true);
        let cases = [
            (true, Refused, quiet, Some(ConnectionRefused)),
            (true, TimedOut, write_timer, Some(ConnectTimeout)),
            (true, Network, write_timer, Some(ConnectTimeout)),
            (true, Network, quiet, Some(ConnectionRefused)),
            (true, Aborted, quiet, None),
            (false, Reset, quiet, Some(PeerReset)),
            // A reset is a reset, whatever timer was running.
            (false, Reset, write_timer, Some(PeerReset)),
            (false, TimedOut, keepalive, Some(KeepaliveExhausted)),
            (false, Network, keepalive, Some(KeepaliveExhausted)),
            (false, TimedOut, orphan, Some(OrphanTimeout)),
            (false, TimedOut, write_timer, Some(RetriesExhausted)),
            (false, Network, write_timer, Some(RetriesExhausted)),
            // Deferred to tcp_release_cb(): no timer, but the retransmits went unanswered.
            (
                false,
                Network,
                ctx(false, false, false, true),
                Some(RetriesExhausted),
            ),
            (false, TimedOut, quiet, Some(RetriesExhausted)),
            // An error left over from IP_RECVERR on an orderly close is no death.
            (false, Network, quiet, None),
            (false, Aborted, quiet, None),
        ];
        for (connecting, cause, c, want) in cases {
            assert_eq!(
                death_rule(connecting, cause, c),
                want,
                "{connecting} {cause:?} {c:?}"
            );
        }
    }

    #[test]
    fn errors_name_their_cause() {
        assert_eq!(Cause::of("ECONNREFUSED"), Refused);
        assert_eq!(Cause::of("EPIPE"), Reset);
        assert_eq!(Cause::of("ETIMEDOUT"), TimedOut);
        assert_eq!(Cause::of("ECONNABORTED"), Aborted);
        assert_eq!(Cause::of("EHOSTUNREACH"), Network);
    }
}
