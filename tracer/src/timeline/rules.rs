//! The verdict rules: what a socket's state and the event at hand establish, as typed facts
//! ([`Finding`]). No words here: `explain.rs` renders them.
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
//! | close_wait_held | (engine, on the clock) the socket entered CLOSE_WAIT (tcp_fin(): the peer's FIN) and was still there after the threshold: the application never called close() (which moves it to LAST_ACK) |
//! | receiver_stalled | a zero-window probe (tcp_probe_timer() → tcp_send_probe0()) sent the threshold or more after the first probe of the same stall: the peer kept its window closed all along (each probe proves it: the window's opening itself sends nothing to see); once per socket |
//! | retry_storm | (engine, across sockets: `storms.rs`) one process's attempts to one peer: the threshold of them within the window unanswered (a SYN retransmitted) or failed, none answered since |
//!
//! Drops this host made itself (`skb:kfree_skb`) are cited by the verdicts they explain:
//! connect_timeout when our SYNs (or the peer's SYN-ACKs) never got past this host,
//! retries_exhausted and peer_unresponsive when our retransmits did not.
//!
//! The CLOSE rules are [`death_rule`], a table. One death verdict per socket, the most
//! specific; an orderly close (FIN both ways, including a peer process that crashed) has
//! none.

use super::{
    state::{Mark, SocketState, Streak},
    verdict::VerdictKind,
};
use crate::{
    event::{
        Direction, DropReason, Dropped, Endpoint, Errno, Event, EventKind, ResetReason, TcpState,
        TimerKind,
    },
    tcp_model,
    words::ns_to_ms,
};

/// What a rule established about a socket: the verdict's facts, when, about which peer, and
/// the moments that show it.
#[derive(Debug, Clone)]
pub struct Finding {
    pub ts_ns: u64,
    /// The peer, as the deciding event names it.
    pub peer: Endpoint,
    pub facts: Facts,
    /// The evidence, oldest first.
    pub cited: Vec<Cited>,
    /// Set when the socket's move to CLOSE was not seen and the death was decided from
    /// this other evidence (an error report, the keepalive give-up's reset, the release).
    pub inferred_from: Option<EventKind>,
}

/// A moment cited as evidence, and what it adds.
#[derive(Debug, Clone)]
pub struct Cited {
    pub mark: Mark,
    pub note: Note,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    Plain,
    /// The first of a streak.
    First,
    /// The latest of a streak.
    Latest,
    /// The death, and the error it ended with.
    Error(Errno),
    /// The death of a socket the application had closed.
    OrphanError(Errno),
    /// A reset this host sent, with the kernel's reason when it gave one.
    Reason(Option<ResetReason>),
    /// A segment this host dropped.
    Drop(Dropped),
}

/// The facts behind each verdict: one variant per [`VerdictKind`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Facts {
    PeerUnresponsive(Warning),
    ConnectionRefused {
        error: Errno,
        /// The peer answered our SYN with a reset.
        reset_received: bool,
    },
    ConnectTimeout {
        syn_retransmits: u32,
        /// From the connect to the death.
        waited_ms: u64,
        /// The effective SYN retries, when the kernel reported them.
        syn_retries: Option<u8>,
        error: Errno,
        /// SYNs this host dropped before they left, and the peer's answers it dropped on
        /// arrival.
        drops: Option<HostDrops>,
    },
    PeerReset {
        /// The state the reset ended.
        state: TcpState,
        error: Errno,
        /// RTOs in a row that went unanswered before the reset (0: none; more: the peer
        /// lost the connection's state).
        unanswered_rtos: u8,
    },
    LocalAbort {
        state: TcpState,
        reason: Option<ResetReason>,
    },
    KeepaliveExhausted {
        probes: u32,
        interval_ms: u64,
        idle_before_ms: Option<u64>,
        duration_ms: u64,
        error: Errno,
        reset_reason: Option<ResetReason>,
    },
    OrphanTimeout {
        state: TcpState,
        retransmits: u32,
        duration_ms: u64,
        last_rto_ms: Option<u64>,
        /// The effective orphan retries, when the kernel reported them.
        orphan_retries: Option<u8>,
        error: Errno,
    },
    RetriesExhausted {
        stall: Stall,
        budget: Budget,
        error: Errno,
        /// Our retransmits this host dropped before they left.
        drops: Option<HostDrops>,
    },
    DeadSocketHeld {
        held_ms: u64,
        error: Errno,
    },
    CloseWaitHeld {
        held_ms: u64,
    },
    ReceiverStalled {
        /// Zero-window probes of the stall so far.
        probes: u32,
        /// From the stall's first probe to this one.
        duration_ms: u64,
        /// The peer stopped answering the probes as well (the latest is the third or later
        /// in a row without an answer).
        unanswered: bool,
    },
    RetryStorm(Storm),
}

/// What this host dropped of a socket's segments, as a verdict cites it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostDrops {
    /// Segments of the kind the verdict is about that this host dropped.
    pub dropped: u32,
    /// Of how many sent (our SYNs, our retransmits) or, for the peer's answers, 0.
    pub of: u32,
    pub direction: Direction,
    pub reason: DropReason,
    /// Later drops gave other reasons.
    pub mixed: bool,
}

impl HostDrops {
    /// Every segment of the kind was dropped here.
    pub fn all(&self) -> bool {
        self.of > 0 && self.dropped >= self.of
    }
}

/// retry_storm: one process's connection attempts to one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Storm {
    /// Attempts since the storm's first one.
    pub attempts: u32,
    /// Attempts that failed so far, by how (`StormFailure` names), in name order.
    pub failures: Vec<(&'static str, u32)>,
    /// Attempts unanswered at the verdict (their SYN retransmitted, no answer yet).
    pub unanswered: u32,
    pub max_in_flight: u32,
    pub window_ms: u64,
    pub first_ns: u64,
    pub last_ns: u64,
    /// The owner's pid and name.
    pub process: String,
    /// This verdict repeats an earlier one about the same storm.
    pub repeated: bool,
    /// Attempts within the window that make a storm.
    pub threshold: u32,
}

impl Facts {
    pub fn kind(&self) -> VerdictKind {
        match self {
            Facts::PeerUnresponsive(_) => VerdictKind::PeerUnresponsive,
            Facts::ConnectionRefused { .. } => VerdictKind::ConnectionRefused,
            Facts::ConnectTimeout { .. } => VerdictKind::ConnectTimeout,
            Facts::PeerReset { .. } => VerdictKind::PeerReset,
            Facts::LocalAbort { .. } => VerdictKind::LocalAbort,
            Facts::KeepaliveExhausted { .. } => VerdictKind::KeepaliveExhausted,
            Facts::OrphanTimeout { .. } => VerdictKind::OrphanTimeout,
            Facts::RetriesExhausted { .. } => VerdictKind::RetriesExhausted,
            Facts::DeadSocketHeld { .. } => VerdictKind::DeadSocketHeld,
            Facts::CloseWaitHeld { .. } => VerdictKind::CloseWaitHeld,
            Facts::ReceiverStalled { .. } => VerdictKind::ReceiverStalled,
            Facts::RetryStorm(_) => VerdictKind::RetryStorm,
        }
    }

    /// The socket error the application sees, for the verdicts that end a connection with
    /// one.
    pub fn error(&self) -> Option<Errno> {
        match *self {
            Facts::ConnectionRefused { error, .. }
            | Facts::ConnectTimeout { error, .. }
            | Facts::PeerReset { error, .. }
            | Facts::KeepaliveExhausted { error, .. }
            | Facts::OrphanTimeout { error, .. }
            | Facts::RetriesExhausted { error, .. }
            | Facts::DeadSocketHeld { error, .. } => Some(error),
            Facts::PeerUnresponsive(_)
            | Facts::LocalAbort { .. }
            | Facts::CloseWaitHeld { .. }
            | Facts::ReceiverStalled { .. }
            | Facts::RetryStorm(_) => None,
        }
    }
}

/// peer_unresponsive: the streak so far and the predicted give-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Warning {
    /// RTO retransmits in the streak.
    pub retransmits: u32,
    /// icsk_retransmits: RTOs in a row without progress.
    pub consecutive_rtos: u8,
    /// From the streak's first RTO to this one.
    pub span_ms: u64,
    pub rto_ms: u64,
    /// When the kernel will give up (CLOCK_BOOTTIME ms), and how long from now that is.
    pub give_up_ms: u64,
    pub give_up_in_ms: u64,
    pub budget: Budget,
}

/// What went unanswered before retries_exhausted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stall {
    /// RTO retransmits (tcp_write_timeout()).
    Retransmits {
        count: u32,
        duration_ms: u64,
        last_rto_ms: u64,
    },
    /// The peer kept its window closed and stopped answering zero-window probes
    /// (tcp_probe_timer()).
    ZeroWindowProbes { count: u32, duration_ms: u64 },
}

/// The give-up budget the kernel applies to unacknowledged data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// tcp_retries2 as time: the backoff schedule from TCP_RTO_MIN (tcp_model).
    Retries2 {
        retries2: u8,
        budget_ms: u64,
    },
    /// tcp_probe_timer() counts zero-window probes against tcp_retries2, not time.
    Retries2Probes {
        retries2: u8,
    },
    UserTimeout {
        ms: u32,
    },
    /// The event carried no socket counters.
    Unknown,
}

impl Budget {
    fn data(retries2: u8, user_timeout_ms: u32) -> Budget {
        if user_timeout_ms != 0 {
            Budget::UserTimeout {
                ms: user_timeout_ms,
            }
        } else {
            Budget::Retries2 {
                retries2,
                budget_ms: tcp_model::data_give_up_budget_ms(retries2, user_timeout_ms),
            }
        }
    }
}

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
    pub fn of(error: Errno) -> Cause {
        match error {
            Errno::ECONNREFUSED => Cause::Refused,
            Errno::ECONNRESET | Errno::EPIPE => Cause::Reset,
            Errno::ETIMEDOUT => Cause::TimedOut,
            Errno::ECONNABORTED => Cause::Aborted,
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

/// The deaths a CLOSE with a socket error can be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Death {
    ConnectionRefused,
    ConnectTimeout,
    PeerReset,
    KeepaliveExhausted,
    OrphanTimeout,
    RetriesExhausted,
}

/// The death rules: which death a CLOSE with a socket error is. Every (connecting, cause)
/// pair is spelled out: a new cause must be placed, not swallowed.
///
/// `connecting`: the socket left SYN_SENT.
pub fn death_rule(connecting: bool, cause: Cause, c: DeathContext) -> Option<Death> {
    use Cause::*;
    use Death::*;
    // tcp_write_err(): ETIMEDOUT, or the ICMP soft error it reports instead once
    // retransmits (or probes) went unanswered.
    let gave_up = c.in_timer || c.unanswered;
    let timed_out = cause == TimedOut || (cause == Network && gave_up);
    Some(match (connecting, cause) {
        // tcp_reset() in SYN_SENT
        (true, Refused) => ConnectionRefused,
        // tcp_write_timeout(): tcp_syn_retries / TCP_SYNCNT exhausted
        (true, TimedOut) => ConnectTimeout,
        (true, Network) if timed_out => ConnectTimeout,
        // tcp_v4_err() / tcp_v6_err(): an ICMP error ends a connect at once
        (true, Network) => ConnectionRefused,
        // A reset in SYN_SENT is ECONNREFUSED; a connect aborted by tcp_abort() is this
        // host's own doing, judged at its reset (local_abort).
        (true, Reset | Aborted) => return None,
        // tcp_reset() on a synchronized connection
        (false, Reset) => PeerReset,
        // tcp_keepalive_timer(): probes_out reached TCP_KEEPCNT (or TCP_USER_TIMEOUT)
        (false, TimedOut | Network) if timed_out && c.keepalive => KeepaliveExhausted,
        // tcp_write_timeout() on SOCK_DEAD: tcp_orphan_retries
        (false, TimedOut | Network) if timed_out && c.orphan => OrphanTimeout,
        // tcp_write_timeout(): tcp_retries2 / TCP_USER_TIMEOUT; tcp_probe_timer()
        (false, TimedOut) => RetriesExhausted,
        (false, Network) if timed_out => RetriesExhausted,
        // An error left over from IP_RECVERR on an orderly close is no death.
        (false, Network) => return None,
        // ECONNREFUSED on a synchronized connection ends nothing the kernel did to it;
        // ECONNABORTED is this host's own abort, judged at its reset (local_abort).
        (false, Refused | Aborted) => return None,
    })
}

impl ResetReason {
    /// An active reset: the kernel tearing down a connection itself
    /// (tcp_send_active_reset()). Other resets answer a stray segment and end nothing.
    pub fn ends_connection(&self) -> bool {
        match self {
            ResetReason::NotSpecified
            | ResetReason::TcpAbortOnData
            | ResetReason::TcpAbortOnClose
            | ResetReason::TcpAbortOnLinger
            | ResetReason::TcpAbortOnMemory
            | ResetReason::TcpState
            | ResetReason::TcpDisconnectWithData
            | ResetReason::TcpKeepaliveTimeout => true,
            ResetReason::NoSocket | ResetReason::Other(_) => false,
        }
    }
}

/// peer_unresponsive: the early warning, with the moment the kernel will give up. Asked at
/// each RTO retransmit, after it joined the streak.
pub fn peer_unresponsive(
    state: &SocketState,
    e: &Event,
    warn_after_rtos: Option<u8>,
) -> Option<Finding> {
    let sock = e.sock.as_ref()?;
    let threshold = warn_after_rtos
        .unwrap_or(if sock.retries1 > 0 { sock.retries1 } else { 3 })
        .max(1);
    // Once per socket. An orphan's budget is tcp_orphan_retries and nobody is left to
    // warn: its death gets orphan_timeout.
    if state.has(VerdictKind::PeerUnresponsive)
        || sock.orphan
        || !e.state.is_synchronized()
        || sock.retransmits < threshold
    {
        return None;
    }
    let rto = &state.rto;
    let give_up_ms = predicted_give_up_ms(state, e)?;
    let now_ms = ns_to_ms(e.ts_ns);
    Some(Finding {
        ts_ns: e.ts_ns,
        peer: e.conn.remote(),
        facts: Facts::PeerUnresponsive(Warning {
            retransmits: rto.count,
            consecutive_rtos: sock.retransmits,
            span_ms: rto.span_ms(),
            rto_ms: sock.rto_us / 1000,
            give_up_ms,
            give_up_in_ms: give_up_ms.saturating_sub(now_ms),
            budget: Budget::data(sock.retries2, sock.user_timeout_ms),
        }),
        cited: streak(rto),
        inferred_from: None,
    })
}

/// When the kernel will give up on the unacknowledged data of a streak of RTOs (CLOCK_BOOTTIME
/// ms), seen from the RTO retransmit `e` that just joined `state.rto`. None without the
/// socket's counters or a streak.
pub fn predicted_give_up_ms(state: &SocketState, e: &Event) -> Option<u64> {
    let sock = e.sock.as_ref()?;
    let rto = &state.rto;
    let first = rto.first?;
    let budget_ms = tcp_model::data_give_up_budget_ms(sock.retries2, sock.user_timeout_ms);
    // The kernel's clock (retrans_stamp) starts at the streak's first RTO retransmit; read
    // from the socket, it is right even when the tracer started mid-streak.
    let clock_start_ms = match sock.retrans_elapsed_ms {
        Some(elapsed) => ns_to_ms(e.ts_ns).saturating_sub(elapsed),
        None => ns_to_ms(first.ts_ns),
    };
    // The RTO that just expired is the interval since the previous RTO, nominally.
    let lateness = match rto.previous {
        Some(prev) if sock.rto_us > 0 => {
            e.ts_ns.saturating_sub(prev.ts_ns) as f64 / (sock.rto_us as f64 * 1000.0)
        }
        _ => 1.0,
    };
    Some(tcp_model::predicted_data_give_up_ms(
        clock_start_ms,
        budget_ms,
        sock.user_timeout_ms != 0,
        ns_to_ms(e.ts_ns),
        sock.rto_us / 1000,
        lateness,
    ))
}

/// The reset tcp_keepalive_timer() sends when it gives up, just before tcp_write_err().
pub fn keepalive_give_up(e: &Event) -> bool {
    e.reason.as_ref() == Some(&ResetReason::TcpKeepaliveTimeout)
        || e.timer == Some(TimerKind::Keepalive)
}

/// local_abort: a reset this host sent (`mark`) that ended a synchronized connection.
pub fn local_abort(state: &SocketState, e: &Event, mark: Mark) -> Option<Finding> {
    let reason = e.reason.as_ref();
    let active = reason.is_none_or(ResetReason::ends_connection);
    // The keepalive give-up resets first, then reports the death: keepalive_exhausted.
    if !active
        || keepalive_give_up(e)
        || !state.ever_synchronized
        || matches!(e.state, TcpState::TIME_WAIT | TcpState::NEW_SYN_RECV)
    {
        return None;
    }
    let mut cited = Vec::new();
    if let Some(close) = &state.close {
        cited.push(plain(close.mark));
    }
    cited.push(Cited {
        mark,
        note: Note::Reason(e.reason.clone()),
    });
    // 6.x reports CLOSE before the reset of a linger-0 close: name the state it left.
    let left = if e.state == TcpState::CLOSE {
        state.last_open_state.unwrap_or(e.state)
    } else {
        e.state
    };
    Some(Finding {
        ts_ns: e.ts_ns,
        peer: e.conn.remote(),
        facts: Facts::LocalAbort {
            state: left,
            reason: e.reason.clone(),
        },
        cited,
        inferred_from: None,
    })
}

/// Whether a death (a CLOSE with an error) leaves an application holding the socket, so
/// that dead_socket_held may follow. connect() reports its own failure; other deaths reach
/// the application only when it next uses or polls the socket. Orphans have no application
/// left.
pub fn held_after_death(state: &SocketState, e: &Event) -> bool {
    let orphan = e.sock.as_ref().is_some_and(|s| s.orphan);
    let connecting = e.old_state == Some(TcpState::SYN_SENT);
    !orphan && !connecting && state.ever_synchronized
}

/// The death verdicts: a CLOSE (`mark`) with socket error `error`.
pub fn death(state: &SocketState, e: &Event, mark: Mark, error: Errno) -> Option<Finding> {
    let sock = e.sock.as_ref();
    let orphan = sock.is_some_and(|s| s.orphan);
    let old = e.old_state.unwrap_or(TcpState::CLOSE);
    let connecting = old == TcpState::SYN_SENT;
    let context = DeathContext {
        in_timer: e.timer.is_some(),
        keepalive: e.timer == Some(TimerKind::Keepalive)
            || (state.keepalive.series.count > 0
                && state
                    .reset_sent
                    .as_ref()
                    .is_some_and(|(_, r)| r.as_ref() == Some(&ResetReason::TcpKeepaliveTimeout))),
        orphan,
        unanswered: state.rto.count > 0
            || state.syn.count > 0
            || state.zero_window.series.count > 0
            || state.keepalive.series.count > 0,
    };
    let death = death_rule(connecting, Cause::of(error), context)?;
    let mut cited = Vec::new();
    let closed = Cited {
        mark,
        note: Note::Error(error),
    };
    let facts = match death {
        Death::ConnectionRefused => {
            cited.extend(state.opened.map(plain));
            cited.extend(state.reset_received.map(|(reset, _)| plain(reset)));
            Facts::ConnectionRefused {
                error,
                reset_received: state.reset_received.is_some(),
            }
        }
        Death::ConnectTimeout => {
            cited.extend(state.opened.map(plain));
            cited.extend(streak(&state.syn));
            cited.extend(drop_evidence(state));
            Facts::ConnectTimeout {
                drops: syn_drops(state),
                syn_retransmits: state.syn.count,
                waited_ms: state
                    .opened
                    .map_or(0, |o| ns_to_ms(e.ts_ns.saturating_sub(o.ts_ns))),
                syn_retries: sock.map(|s| s.syn_retries).filter(|&n| n > 0),
                error,
            }
        }
        Death::PeerReset => {
            let unanswered_rtos = state.reset_received.map_or(0, |(_, n)| n);
            if unanswered_rtos > 0 {
                cited.extend(streak(&state.rto));
            }
            cited.extend(state.reset_received.map(|(reset, _)| plain(reset)));
            Facts::PeerReset {
                state: old,
                error,
                unanswered_rtos,
            }
        }
        Death::KeepaliveExhausted => {
            let probes = &state.keepalive;
            cited.extend(streak(&probes.series));
            if let Some((reset, reason)) = &state.reset_sent {
                cited.push(Cited {
                    mark: *reset,
                    note: Note::Reason(reason.clone()),
                });
            }
            Facts::KeepaliveExhausted {
                // The kernel's own count at the give-up when it is higher: a probe whose
                // timer run the bracket missed is reported at the next run, and for the
                // last probe that is the give-up itself, whose events may come first.
                probes: probes
                    .series
                    .count
                    .max(sock.map_or(0, |s| u32::from(s.probes_out))),
                interval_ms: probes.interval_ms(),
                idle_before_ms: probes.idle_before_ms,
                duration_ms: probes.series.until_ms(e.ts_ns),
                error,
                reset_reason: state.reset_sent.as_ref().and_then(|(_, r)| r.clone()),
            }
        }
        Death::OrphanTimeout => {
            cited.extend(streak(&state.rto));
            cited.push(Cited {
                mark,
                note: Note::OrphanError(error),
            });
            return Some(Finding {
                ts_ns: e.ts_ns,
                peer: e.conn.remote(),
                facts: Facts::OrphanTimeout {
                    state: old,
                    retransmits: state.rto.count,
                    duration_ms: state.rto.until_ms(e.ts_ns),
                    last_rto_ms: state.rto.last.map(|m| m.rto_us / 1000),
                    orphan_retries: sock.map(|s| s.orphan_retries).filter(|&n| n > 0),
                    error,
                },
                cited,
                inferred_from: None,
            });
        }
        Death::RetriesExhausted => {
            // tcp_probe_timer(): the peer's window stayed closed and the probes went
            // unanswered.
            let zero_window = state.rto.count == 0 && state.zero_window.series.count > 0;
            let budget = match sock {
                Some(s) if zero_window && s.user_timeout_ms == 0 => Budget::Retries2Probes {
                    retries2: s.retries2,
                },
                Some(s) => Budget::data(s.retries2, s.user_timeout_ms),
                None => Budget::Unknown,
            };
            let stall = if zero_window {
                let probes = &state.zero_window.series;
                cited.extend(streak(probes));
                Stall::ZeroWindowProbes {
                    count: probes.count,
                    duration_ms: probes.until_ms(e.ts_ns),
                }
            } else {
                cited.extend(streak(&state.rto));
                Stall::Retransmits {
                    count: state.rto.count,
                    duration_ms: state.rto.until_ms(e.ts_ns),
                    last_rto_ms: state.rto.last.map_or(0, |m| m.rto_us / 1000),
                }
            };
            let drops = retransmit_drops(state);
            if drops.is_some() {
                cited.extend(drop_evidence(state));
            }
            Facts::RetriesExhausted {
                stall,
                budget,
                error,
                drops,
            }
        }
    };
    cited.push(closed);
    Some(Finding {
        ts_ns: e.ts_ns,
        peer: e.conn.remote(),
        facts,
        cited,
        inferred_from: None,
    })
}

/// dead_socket_held at `due_ns` (the death plus the threshold): nothing released the
/// socket by then.
pub fn dead_socket_held(state: &SocketState, due_ns: u64, peer: Endpoint) -> Option<Finding> {
    let since = state.held_since_ns?;
    if state.destroyed_ns.is_some_and(|d| d <= due_ns) {
        return None;
    }
    let close = state.close.as_ref()?;
    let error = close.error?;
    Some(Finding {
        ts_ns: due_ns,
        peer,
        facts: Facts::DeadSocketHeld {
            held_ms: ns_to_ms(due_ns.saturating_sub(since)),
            error,
        },
        cited: vec![Cited {
            mark: close.mark,
            note: Note::Error(error),
        }],
        inferred_from: None,
    })
}

/// close_wait_held at `due_ns`: the socket entered CLOSE_WAIT at `since_ns` and has not
/// left it (the application's close() moves it to LAST_ACK).
pub fn close_wait_held(
    state: &SocketState,
    since_ns: u64,
    due_ns: u64,
    peer: Endpoint,
) -> Option<Finding> {
    if state.close_wait_since_ns != Some(since_ns) || state.destroyed_ns.is_some() {
        return None;
    }
    let entered = Mark {
        ts_ns: since_ns,
        kind: EventKind::StateChange,
        state: TcpState::CLOSE_WAIT,
        old_state: Some(
            state
                .last_open_state
                .filter(|s| *s != TcpState::CLOSE_WAIT)
                .unwrap_or(TcpState::ESTABLISHED),
        ),
        class: None,
        retransmits: 0,
        rto_us: 0,
        probe: 0,
        timer: None,
    };
    Some(Finding {
        ts_ns: due_ns,
        peer,
        facts: Facts::CloseWaitHeld {
            held_ms: ns_to_ms(due_ns.saturating_sub(since_ns)),
        },
        cited: vec![plain(entered)],
        inferred_from: None,
    })
}

/// receiver_stalled at the zero-window probe `e`: the stall it belongs to has lasted
/// `after_ns` or more.
pub fn receiver_stalled(state: &SocketState, e: &Event, after_ns: u64) -> Option<Finding> {
    let stall = &state.window_stall;
    let first = stall.probes.first?;
    let lasted = e.ts_ns.saturating_sub(first.ts_ns);
    if state.has(VerdictKind::ReceiverStalled) || lasted < after_ns || state.close.is_some() {
        return None;
    }
    Some(Finding {
        ts_ns: e.ts_ns,
        peer: e.conn.remote(),
        facts: Facts::ReceiverStalled {
            probes: stall.probes.count,
            duration_ms: ns_to_ms(lasted),
            unanswered: stall.unanswered,
        },
        cited: streak(&stall.probes),
        inferred_from: None,
    })
}

/// The SYNs of a connect this host dropped (or the peer's SYN-ACKs it dropped), if any.
fn syn_drops(state: &SocketState) -> Option<HostDrops> {
    let d = &state.drops;
    let (_, first) = d.first.as_ref()?;
    // SYNs sent: the first, and the retransmits, sent or failed (6.17+ reports failures).
    let sent = 1 + state.syn.count + state.syn_failed;
    let (dropped, of, direction) = if d.syns_out > 0 {
        (d.syns_out, sent.max(d.syns_out), Direction::Out)
    } else if d.answers_in > 0 {
        (d.answers_in, 0, Direction::In)
    } else {
        return None;
    };
    Some(HostDrops {
        dropped,
        of,
        direction,
        reason: first.reason.clone(),
        mixed: d.mixed_reasons,
    })
}

/// Our data or retransmits this host dropped on their way out, if any.
fn retransmit_drops(state: &SocketState) -> Option<HostDrops> {
    let d = &state.drops;
    let (_, first) = d.first.as_ref()?;
    (d.data_out > 0).then(|| HostDrops {
        dropped: d.data_out,
        of: state.rto.count,
        direction: Direction::Out,
        reason: first.reason.clone(),
        mixed: d.mixed_reasons,
    })
}

/// The first and latest drop, as evidence.
fn drop_evidence(state: &SocketState) -> Vec<Cited> {
    let d = &state.drops;
    let mut out = Vec::with_capacity(2);
    if let Some((mark, dropped)) = &d.first {
        out.push(Cited {
            mark: *mark,
            note: Note::Drop(dropped.clone()),
        });
    }
    if let Some((mark, dropped)) = &d.latest
        && d.count > 1
    {
        out.push(Cited {
            mark: *mark,
            note: Note::Drop(dropped.clone()),
        });
    }
    out
}

fn plain(mark: Mark) -> Cited {
    Cited {
        mark,
        note: Note::Plain,
    }
}

/// The first of a streak and (if different) the latest, as evidence.
fn streak(s: &Streak) -> Vec<Cited> {
    let mut out = Vec::with_capacity(2);
    if let Some(first) = s.first {
        let note = if s.count > 1 {
            Note::First
        } else {
            Note::Plain
        };
        out.push(Cited { mark: first, note });
    }
    if let Some(last) = s.last
        && s.count > 1
    {
        out.push(Cited {
            mark: last,
            note: Note::Latest,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{Cause::*, Death::*, *};

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
            (true, Reset, quiet, None),
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
            (false, Refused, quiet, None),
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
        assert_eq!(Cause::of(Errno::ECONNREFUSED), Refused);
        assert_eq!(Cause::of(Errno::EPIPE), Reset);
        assert_eq!(Cause::of(Errno::ETIMEDOUT), TimedOut);
        assert_eq!(Cause::of(Errno::ECONNABORTED), Aborted);
        assert_eq!(Cause::of(Errno::EHOSTUNREACH), Network);
    }

    #[test]
    fn only_active_resets_end_a_connection() {
        for active in [
            "NOT_SPECIFIED",
            "TCP_ABORT_ON_LINGER",
            "TCP_STATE",
            "TCP_KEEPALIVE_TIMEOUT",
        ] {
            assert!(ResetReason::from_name(active).ends_connection(), "{active}");
        }
        for reply in ["NO_SOCKET", "TCP_TIMEWAIT_SOCKET", "REASON_99"] {
            assert!(!ResetReason::from_name(reply).ends_connection(), "{reply}");
        }
    }
}
