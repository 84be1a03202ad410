//! One socket's story so far: what the verdict rules need to remember between events, and
//! the order in which they are asked. Events arrive in time order (the engine's reorder
//! buffer sees to that); the rules themselves are in `rules.rs`.

use super::{
    rules::{self, Finding},
    verdict::VerdictKind,
};
use crate::{
    event::{
        Direction, Dropped, Endpoint, Errno, Event, EventKind, ResetReason, RetransmitClass,
        TcpState, TimerKind,
    },
    words::ns_to_ms,
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
    pub fn of(e: &Event) -> Mark {
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

    /// From the first of the streak to the latest.
    pub fn span_ms(&self) -> u64 {
        match (self.first, self.last) {
            (Some(f), Some(l)) => ns_to_ms(l.ts_ns.saturating_sub(f.ts_ns)),
            _ => 0,
        }
    }

    /// From the first of the streak to `ts_ns` (the death).
    pub fn until_ms(&self, ts_ns: u64) -> u64 {
        self.first
            .map_or(0, |f| ns_to_ms(ts_ns.saturating_sub(f.ts_ns)))
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
    pub fn interval_ms(&self) -> u64 {
        if self.interval_ms > 0 || self.series.count < 2 {
            self.interval_ms
        } else {
            self.series.span_ms() / u64::from(self.series.count - 1)
        }
    }
}

/// Segments of the socket that this host dropped itself (`skb:kfree_skb`).
#[derive(Debug, Default, Clone)]
pub struct Drops {
    pub count: u32,
    /// Our connection requests (SYN) dropped on their way out.
    pub syns_out: u32,
    /// The peer's answers (SYN-ACK) dropped on their way in.
    pub answers_in: u32,
    /// Other segments, by direction.
    pub data_out: u32,
    pub data_in: u32,
    /// The first drop, and whether later ones gave another reason.
    pub first: Option<(Mark, Dropped)>,
    pub latest: Option<(Mark, Dropped)>,
    pub mixed_reasons: bool,
}

impl Drops {
    fn add(&mut self, mark: Mark, d: &Dropped) {
        self.count += 1;
        match (d.direction, d.tcp_flags.is_syn(), d.tcp_flags.is_syn_ack()) {
            (Direction::Out, true, _) => self.syns_out += 1,
            (Direction::In, _, true) => self.answers_in += 1,
            (Direction::Out, _, _) => self.data_out += 1,
            (Direction::In, _, _) => self.data_in += 1,
        }
        match &self.first {
            None => self.first = Some((mark, d.clone())),
            Some((_, first)) if first.reason != d.reason => self.mixed_reasons = true,
            Some(_) => {}
        }
        self.latest = Some((mark, d.clone()));
    }
}

/// Zero-window probes while the peer's window stays closed: one stall from the first
/// probe until the window opens (the kernel then resets its probe backoff).
#[derive(Debug, Default, Clone, Copy)]
pub struct WindowStall {
    pub probes: Streak,
    /// icsk_backoff at the latest probe: tcp_send_probe0() raises it with every probe of
    /// a stall, tcp_ack_probe() clears it when the window opens.
    pub backoff: u8,
    /// The peer stopped answering the probes too: the latest one is the third or later
    /// without an answer (icsk_probes_out; a single unanswered probe is common, the peer
    /// rate-limits its answers to out-of-window segments).
    pub unanswered: bool,
}

impl WindowStall {
    /// The longest a stall's probes can be apart: TCP_RTO_MAX (120 s), twice over.
    const MAX_GAP_NS: u64 = 240_000_000_000;

    fn add(&mut self, e: &Event, mark: Mark) {
        let backoff = e.sock.as_ref().map_or(0, |s| s.backoff);
        let gap = self
            .probes
            .last
            .map_or(u64::MAX, |last| e.ts_ns.saturating_sub(last.ts_ns));
        // A backoff back at 1 (or below the last one) starts a new stall: the window
        // opened in between. Without the counters, a long silence does.
        let new_stall = self.probes.count == 0
            || gap > Self::MAX_GAP_NS
            || (backoff != 0 && (backoff == 1 || backoff < self.backoff));
        if new_stall {
            *self = WindowStall::default();
        }
        self.probes.add(mark);
        self.backoff = backoff;
        self.unanswered = e.probe.unwrap_or(0) >= 3;
    }
}

/// The socket's move to CLOSE, and the error it ended with (none for an orderly close).
#[derive(Debug, Clone, Copy)]
pub struct Close {
    pub mark: Mark,
    pub error: Option<Errno>,
}

/// A CLOSE inferred from the evidence that did arrive, when the state change itself was
/// not seen (the kernel skipped the program, or the trace was cut).
#[derive(Debug, Clone)]
pub struct UnseenClose {
    /// The evidence, rewritten as the CLOSE it implies.
    pub close: Event,
    pub error: Errno,
    /// What the inference rests on.
    pub evidence: EventKind,
}

/// Everything the rules need to know about one socket.
#[derive(Debug, Default, Clone)]
pub struct SocketState {
    pub opened: Option<Mark>,
    pub ever_synchronized: bool,
    /// The last synchronized state, for a reset sent after CLOSE was already reported.
    pub last_open_state: Option<TcpState>,
    /// All retransmits of the socket, of any class.
    pub retransmits: u32,
    pub syn: Streak,
    pub rto: Streak,
    pub consecutive_rtos: u8,
    /// When the kernel will give up on the RTO streak in progress (CLOCK_BOOTTIME ms), as
    /// predicted at its latest RTO; None outside a streak of a connection the application
    /// holds.
    pub give_up_ms: Option<u64>,
    pub keepalive: Probes,
    pub zero_window: Probes,
    /// The reset received, and how many RTOs in a row were unanswered before it.
    pub reset_received: Option<(Mark, u8)>,
    pub reset_sent: Option<(Mark, Option<ResetReason>)>,
    pub close: Option<Close>,
    pub destroyed_ns: Option<u64>,
    /// A death whose move to CLOSE has not been seen (yet): the CLOSE that the evidence
    /// (an error report, the keepalive give-up's reset) says happened. Decided as soon as
    /// the CLOSE cannot arrive any more in time order, or at the release.
    pub unseen_close: Option<UnseenClose>,
    /// The death verdict, once reached: there is one per socket.
    pub death: Option<VerdictKind>,
    /// Set when a death leaves the application holding the socket: since when.
    pub held_since_ns: Option<u64>,
    /// Since when the socket is in CLOSE_WAIT (the peer closed its side; the application
    /// has not closed the socket yet).
    pub close_wait_since_ns: Option<u64>,
    /// SYN retransmits that could not be sent (retransmit_failed in SYN_SENT, 6.17+).
    pub syn_failed: u32,
    pub drops: Drops,
    pub window_stall: WindowStall,
    emitted: u16,
}

impl SocketState {
    pub fn has(&self, kind: VerdictKind) -> bool {
        self.emitted & (1 << kind as u16) != 0
    }

    /// Each verdict at most once per socket, and one death.
    fn decide(&mut self, finding: Option<Finding>, out: &mut Vec<Finding>) {
        let Some(f) = finding else { return };
        let kind = f.facts.kind();
        let death = kind.is_death();
        if self.has(kind) || (death && self.death.is_some()) {
            return;
        }
        self.emitted |= 1 << kind as u16;
        if death {
            self.death = Some(kind);
        }
        out.push(f);
    }

    /// Applies one event (in time order) and appends any finding it completes.
    pub fn apply(&mut self, e: &Event, warn_after_rtos: Option<u8>, out: &mut Vec<Finding>) {
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
                self.give_up_ms = None;
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
        if e.kind == EventKind::StateChange || e.kind == EventKind::Destroy {
            self.close_wait_since_ns = match (e.kind, e.state) {
                (EventKind::StateChange, TcpState::CLOSE_WAIT) => {
                    self.close_wait_since_ns.or(Some(e.ts_ns))
                }
                _ => None,
            };
        }
        match e.kind {
            EventKind::Retransmit => {
                self.retransmits += 1;
                match e.class {
                    Some(RetransmitClass::Syn) => self.syn.add(mark),
                    Some(RetransmitClass::Rto) => {
                        self.rto.add(mark);
                        let held = e.sock.as_ref().is_some_and(|s| !s.orphan);
                        self.give_up_ms = (held && e.state.is_synchronized())
                            .then(|| rules::predicted_give_up_ms(self, e))
                            .flatten();
                        let warning = rules::peer_unresponsive(self, e, warn_after_rtos);
                        self.decide(warning, out);
                    }
                    Some(
                        RetransmitClass::SynAck
                        | RetransmitClass::Tlp
                        | RetransmitClass::Fast
                        | RetransmitClass::LossRecovery
                        | RetransmitClass::RackTimeout
                        | RetransmitClass::Unknown,
                    )
                    | None => {}
                }
            }
            EventKind::KeepaliveProbe => self.keepalive.add(e, mark),
            EventKind::ZeroWindowProbe => {
                self.zero_window.add(e, mark);
                self.window_stall.add(e, mark);
            }
            EventKind::RetransmitFailed if e.state == TcpState::SYN_SENT => self.syn_failed += 1,
            EventKind::Drop => {
                if let Some(d) = &e.drop {
                    self.drops.add(mark, d);
                }
            }
            EventKind::ResetReceived => {
                self.reset_received = Some((mark, self.consecutive_rtos));
            }
            EventKind::ResetSent => {
                self.reset_sent = Some((mark, e.reason.clone()));
                let abort = rules::local_abort(self, e, mark);
                self.decide(abort, out);
                if rules::keepalive_give_up(e) {
                    // tcp_keepalive_timer() resets, then tcp_write_err() ends the socket.
                    let error = e
                        .sock
                        .as_ref()
                        .and_then(|s| s.soft_error)
                        .unwrap_or(Errno::ETIMEDOUT);
                    self.expect_close(e, error);
                }
            }
            EventKind::ErrorReport => {
                // Only reports of errors the kernel ends the socket with: an ICMP error
                // outside a timer (IP_RECVERR) is reported and the connection lives on.
                let reported = e.err.filter(|&n| n > 0).map(Errno).or(e.errno());
                if let Some(error) = reported
                    && (e.timer.is_some()
                        || matches!(
                            error,
                            Errno::ETIMEDOUT
                                | Errno::ECONNRESET
                                | Errno::ECONNREFUSED
                                | Errno::EPIPE
                        ))
                {
                    self.expect_close(e, error);
                }
            }
            EventKind::StateChange if e.state == TcpState::CLOSE => {
                self.unseen_close = None;
                let error = e.errno();
                self.close = Some(Close { mark, error });
                if let Some(error) = error {
                    if rules::held_after_death(self, e) {
                        self.held_since_ns = Some(e.ts_ns);
                    }
                    let death = rules::death(self, e, mark, error);
                    self.decide(death, out);
                }
            }
            EventKind::Destroy => {
                // Released without its CLOSE seen, by a socket seen alive in this trace:
                // whatever ended it is known by now.
                let seen_alive = self.ever_synchronized
                    || self.syn.count > 0
                    || self.opened.is_some_and(|o| o.state == TcpState::SYN_SENT);
                if seen_alive
                    && self.close.is_none()
                    && self.unseen_close.is_none()
                    && let Some(error) = e.errno()
                {
                    self.expect_close(e, error);
                }
                self.decide_unseen_close(warn_after_rtos, out);
                self.destroyed_ns = Some(e.ts_ns);
            }
            EventKind::StateChange | EventKind::RetransmitFailed | EventKind::Sweep => {}
        }
    }

    /// `e` shows the socket died with `error`, but its CLOSE was not seen yet.
    fn expect_close(&mut self, e: &Event, error: Errno) {
        if self.close.is_some() || self.death.is_some() || self.unseen_close.is_some() {
            return;
        }
        let mut close = e.clone();
        close.kind = EventKind::StateChange;
        close.old_state = Some(match self.last_open_state {
            Some(open) => open,
            None if self.syn.count > 0
                || self.opened.is_some_and(|o| o.state == TcpState::SYN_SENT) =>
            {
                TcpState::SYN_SENT
            }
            None => e.state,
        });
        close.state = TcpState::CLOSE;
        if let Some(sock) = close.sock.as_mut() {
            sock.error = Some(error);
        }
        self.unseen_close = Some(UnseenClose {
            close,
            error,
            evidence: e.kind,
        });
    }

    /// Decides the death an unseen CLOSE implies (the engine calls this once no CLOSE can
    /// arrive any more in time order). No dead_socket_held follows an inferred death: the
    /// release may have been missed as well.
    pub fn decide_unseen_close(&mut self, _warn_after_rtos: Option<u8>, out: &mut Vec<Finding>) {
        let Some(unseen) = self.unseen_close.take() else {
            return;
        };
        if self.close.is_some() {
            return;
        }
        let e = &unseen.close;
        let mark = Mark::of(e);
        self.close = Some(Close {
            mark,
            error: Some(unseen.error),
        });
        let mut death = rules::death(self, e, mark, unseen.error);
        if let Some(finding) = death.as_mut() {
            finding.inferred_from = Some(unseen.evidence);
        }
        self.decide(death, out);
    }

    /// dead_socket_held, decided by the engine's clock at `due_ns` (the death plus the
    /// threshold).
    pub fn held(&mut self, due_ns: u64, peer: Endpoint) -> Option<Finding> {
        let mut out = Vec::with_capacity(1);
        let finding = rules::dead_socket_held(self, due_ns, peer);
        self.decide(finding, &mut out);
        out.pop()
    }

    /// close_wait_held, decided by the engine's clock at `due_ns`: the socket entered
    /// CLOSE_WAIT at `since_ns`, the threshold before `due_ns`.
    pub fn close_wait_held(
        &mut self,
        since_ns: u64,
        due_ns: u64,
        peer: Endpoint,
    ) -> Option<Finding> {
        let mut out = Vec::with_capacity(1);
        let finding = rules::close_wait_held(self, since_ns, due_ns, peer);
        self.decide(finding, &mut out);
        out.pop()
    }

    /// receiver_stalled: asked at each zero-window probe, after it joined the stall.
    pub fn receiver_stalled(&mut self, e: &Event, after_ns: u64, out: &mut Vec<Finding>) {
        let finding = rules::receiver_stalled(self, e, after_ns);
        self.decide(finding, out);
    }
}
