//! The words: a rule's [`Finding`] rendered as the verdict record people and alert rules
//! read (its explanation, its `facts` and its evidence). Every sentence a verdict can say is
//! here, and nothing here decides anything.
//!
//! Each text is written into one `String` (a connect storm makes a verdict per refused
//! connect): the common sentences piece by piece, the rare ones through `write!`.

use std::fmt::Write as _;

use super::{
    rules::{Budget, Cited, Facts, Finding, HostDrops, Note, Stall, Storm, Warning},
    verdict::{Evidence, Verdict, VerdictFacts},
};
use crate::{
    event::{
        Connection, Direction, DropReason, Endpoint, Errno, EventKind, Owner, ResetReason,
        SocketId, TcpState, TimerKind,
    },
    words::{count, duration_ms, ns_to_ms, retransmit_class},
};

/// The verdict record of `finding` about `socket`.
pub fn verdict(
    finding: Finding,
    socket: SocketId,
    conn: Connection,
    process: Option<Owner>,
) -> Verdict {
    // Room for the usual sentence (a refused connect's is about 100 bytes).
    let mut text = String::with_capacity(128);
    explanation(&mut text, &finding, process.as_ref());
    inference(&mut text, &finding);
    Verdict {
        ts_ns: finding.ts_ns,
        verdict: finding.facts.kind(),
        socket,
        conn,
        explanation: text,
        facts: record_facts(&finding.facts),
        evidence: finding.cited.iter().map(evidence).collect(),
        process,
        inferred_from: finding.inferred_from,
    }
}

/// What a verdict decided without seeing the socket's move to CLOSE rests on, appended.
fn inference(out: &mut String, finding: &Finding) {
    let Some(kind) = finding.inferred_from else {
        return;
    };
    let what = match kind {
        EventKind::ErrorReport => "the error reported to the application",
        EventKind::ResetSent => "the reset the kernel sent when it gave up",
        EventKind::Destroy => "the socket's error at its release",
        _ => "the other events of the socket",
    };
    out.push_str(" (its move to CLOSE was not seen: decided from ");
    out.push_str(what);
    out.push(')');
}

/// One line, with the numbers, appended to `out`. `owner`: who holds the socket (for
/// dead_socket_held).
fn explanation(out: &mut String, finding: &Finding, owner: Option<&Owner>) {
    let peer = finding.peer;
    // Writing to a `String` cannot fail.
    let _ = match &finding.facts {
        Facts::PeerUnresponsive(w) => {
            let Warning {
                consecutive_rtos,
                span_ms,
                rto_ms,
                give_up_in_ms,
                budget,
                ..
            } = w;
            write!(
                out,
                "peer {peer} is not acknowledging: {} in a row over {}, RTO now {}; the kernel \
                 will give up in about {} ({}) unless it answers",
                count(*consecutive_rtos, "retransmission timeout"),
                duration_ms(*span_ms),
                duration_ms(*rto_ms),
                duration_ms(*give_up_in_ms),
                budget_text(budget),
            )
        }
        Facts::ConnectionRefused {
            error,
            reset_received,
        } => {
            out.push_str("connect to ");
            push_endpoint(out, peer);
            out.push_str(" refused: ");
            if *error == Errno::ECONNREFUSED && *reset_received {
                out.push_str("the peer answered our SYN with a reset (nothing listens on port ");
                out.push_str(itoa::Buffer::new().format(peer.port));
                out.push(')');
            } else {
                out.push_str("the network answered our SYN with ");
                push_errno(out, *error);
            }
            Ok(())
        }
        Facts::ConnectTimeout {
            syn_retransmits,
            waited_ms,
            syn_retries,
            error,
            drops,
        } => {
            let limit = setting("tcp_syn_retries", *syn_retries);
            let icmp = if *error == Errno::ETIMEDOUT {
                String::new()
            } else {
                format!("; the network last said {error}")
            };
            match drops {
                Some(d) if d.all() => write!(
                    out,
                    "connect to {peer} timed out: every SYN ({} over {}) was dropped by {} \
                     ({}) before it left, so the peer never saw one{limit}; the kernel gave up \
                     with {error}{icmp}",
                    d.of,
                    duration_ms(*waited_ms),
                    dropper(&d.reason),
                    reasons(d),
                ),
                Some(d) if d.direction == Direction::In => write!(
                    out,
                    "connect to {peer} timed out: the peer answered, but {} dropped its {} \
                     ({}){limit}; the kernel gave up with {error}{icmp}",
                    dropper(&d.reason),
                    count(d.dropped, "SYN-ACK"),
                    reasons(d),
                ),
                _ => {
                    let dropped = drops.as_ref().map_or_else(String::new, |d| {
                        format!(
                            "; {} dropped {} of our {} ({})",
                            dropper(&d.reason),
                            d.dropped,
                            count(d.of, "SYN"),
                            reasons(d)
                        )
                    });
                    write!(
                        out,
                        "connect to {peer} timed out: {} over {} went unanswered{limit}{dropped}, \
                         the kernel gave up with {error}{icmp}",
                        count(*syn_retransmits, "SYN retransmit"),
                        duration_ms(*waited_ms)
                    )
                }
            }
        }
        Facts::PeerReset {
            state,
            error,
            unanswered_rtos,
        } => {
            let why = if *unanswered_rtos > 0 {
                format!(
                    ", answering our retransmits after {} in a row: the peer lost the \
                     connection's state (it rebooted, or a middlebox expired the flow)",
                    count(*unanswered_rtos, "unanswered timeout")
                )
            } else {
                String::new()
            };
            write!(
                out,
                "{peer} reset the connection in {state}{why}; the application sees {error}"
            )
        }
        Facts::LocalAbort { state, reason } => {
            let why = reason
                .as_ref()
                .map(|r| format!(" ({r}: {})", reset_reason_words(r)))
                .unwrap_or_default();
            write!(
                out,
                "this host reset its connection to {peer} in {state}{why}; the peer sees \
                 ECONNRESET"
            )
        }
        Facts::KeepaliveExhausted {
            probes,
            interval_ms,
            idle_before_ms,
            error,
            ..
        } => {
            let idle = idle_before_ms
                .map(|ms| format!(" after {} idle", duration_ms(ms)))
                .unwrap_or_default();
            write!(
                out,
                "peer {peer} declared dead by keepalive: {} {} apart{idle} went unanswered; \
                 the kernel reset the connection with {error}",
                count(*probes, "probe"),
                duration_ms(*interval_ms)
            )
        }
        Facts::OrphanTimeout {
            state,
            retransmits,
            duration_ms: duration,
            orphan_retries,
            error,
            ..
        } => {
            let retries = setting("tcp_orphan_retries", *orphan_retries);
            write!(
                out,
                "a socket to {peer} that the application had already closed died retransmitting \
                 in {state}: {} over {}{retries}, the kernel gave up with {error}; data still \
                 unacknowledged was lost",
                count(*retransmits, "retransmit"),
                duration_ms(*duration),
            )
        }
        Facts::RetriesExhausted {
            stall,
            budget,
            error,
            drops,
        } => {
            let what = match stall {
                Stall::ZeroWindowProbes {
                    count: probes,
                    duration_ms: duration,
                } => format!(
                    "peer {peer} kept its receive window closed and stopped answering: {} over {}",
                    count(*probes, "zero-window probe"),
                    duration_ms(*duration),
                ),
                Stall::Retransmits {
                    count: retransmits,
                    duration_ms: duration,
                    last_rto_ms,
                } => format!(
                    "peer {peer} stopped acknowledging: {} over {} (last RTO {})",
                    count(*retransmits, "retransmit"),
                    duration_ms(*duration),
                    duration_ms(*last_rto_ms)
                ),
            };
            let icmp = if *error == Errno::ETIMEDOUT {
                ""
            } else {
                " (the network's last ICMP error, reported instead of ETIMEDOUT)"
            };
            let dropped = drops.as_ref().map_or_else(String::new, |d| {
                format!(
                    "; {} dropped {} of our outgoing segments ({}) before they left",
                    dropper(&d.reason),
                    d.dropped,
                    reasons(d)
                )
            });
            write!(
                out,
                "{what}{dropped}; the kernel gave up after {} with {error}{icmp}",
                budget_text(budget)
            )
        }
        Facts::DeadSocketHeld { held_ms, error } => {
            let holder = owner.map_or_else(|| "the owning process".to_owned(), Owner::to_string);
            write!(
                out,
                "{holder} still holds its socket to {peer} {} after the kernel ended the \
                 connection with {error}: the application has not noticed",
                duration_ms(*held_ms)
            )
        }
        Facts::CloseWaitHeld { held_ms } => {
            let holder = owner.map_or_else(|| "the owning process".to_owned(), Owner::to_string);
            write!(
                out,
                "{peer} closed its side of the connection {} ago (FIN received, CLOSE_WAIT) and \
                 {holder} has not closed its socket: a socket and file-descriptor leak",
                duration_ms(*held_ms)
            )
        }
        Facts::ReceiverStalled {
            probes,
            duration_ms: lasted,
            unanswered,
        } => {
            let answers = if *unanswered {
                "; the peer has stopped answering the probes too"
            } else {
                ""
            };
            write!(
                out,
                "peer {peer} has kept its receive window closed for {}: its application stopped \
                 reading; {} so far{answers}",
                duration_ms(*lasted),
                count(*probes, "zero-window probe"),
            )
        }
        Facts::RetryStorm(storm) => storm_text(out, storm, peer),
    };
}

/// retry_storm's sentence.
fn storm_text(out: &mut String, storm: &Storm, peer: Endpoint) -> std::fmt::Result {
    let Storm {
        attempts,
        failures,
        unanswered,
        max_in_flight,
        window_ms,
        first_ns,
        last_ns,
        process,
        repeated,
        threshold,
    } = storm;
    let failed: u32 = failures.iter().map(|(_, n)| n).sum();
    let how = if failures.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = failures
            .iter()
            .map(|(name, n)| format!("{name} ×{n}"))
            .collect();
        format!(": {}", list.join(", "))
    };
    let still = if *repeated { "still " } else { "" };
    write!(
        out,
        "{process} is {still}retrying {peer} in a storm: {} in {} ({threshold} or more within {} \
         unanswered or failing, none answered); {failed} failed{how}; {unanswered} unanswered \
         so far; up to {max_in_flight} in flight at once",
        count(*attempts, "connection attempt"),
        duration_ms(ns_to_ms(last_ns.saturating_sub(*first_ns))),
        duration_ms(*window_ms),
    )
}

/// Who dropped it: this host's firewall, or its kernel for another reason.
fn dropper(reason: &DropReason) -> &'static str {
    if reason.is_netfilter() {
        "this host's netfilter"
    } else {
        "this host"
    }
}

/// `NETFILTER_DROP`, or `NETFILTER_DROP and others`.
fn reasons(d: &HostDrops) -> String {
    if d.mixed {
        format!("{} and others", d.reason)
    } else {
        d.reason.to_string()
    }
}

/// The verdict record's `facts`: the numbers behind the explanation.
pub fn record_facts(facts: &Facts) -> VerdictFacts {
    let none = VerdictFacts::default();
    let numbers = match *facts {
        Facts::PeerUnresponsive(w) => VerdictFacts {
            retransmits: Some(w.retransmits),
            consecutive_rtos: Some(u32::from(w.consecutive_rtos)),
            duration_ms: Some(w.span_ms),
            last_rto_ms: Some(w.rto_ms),
            predicted_give_up_ns: Some(w.give_up_ms * 1_000_000),
            give_up_budget: Some(budget_text(&w.budget)),
            ..none
        },
        Facts::ConnectionRefused { .. } => none,
        Facts::ConnectTimeout {
            syn_retransmits,
            waited_ms,
            ..
        } => VerdictFacts {
            retransmits: Some(syn_retransmits),
            duration_ms: Some(waited_ms),
            ..none
        },
        Facts::PeerReset {
            unanswered_rtos: n, ..
        } => VerdictFacts {
            peer_lost_state: Some(n > 0),
            consecutive_rtos: (n > 0).then_some(u32::from(n)),
            ..none
        },
        Facts::LocalAbort { ref reason, .. } => VerdictFacts {
            reset_reason: reason.clone(),
            ..none
        },
        Facts::KeepaliveExhausted {
            probes,
            interval_ms,
            idle_before_ms,
            duration_ms,
            ref reset_reason,
            ..
        } => VerdictFacts {
            probes: Some(probes),
            probe_interval_ms: Some(interval_ms),
            idle_before_probes_ms: idle_before_ms,
            duration_ms: Some(duration_ms),
            reset_reason: reset_reason.clone(),
            ..none
        },
        Facts::OrphanTimeout {
            retransmits,
            duration_ms,
            last_rto_ms,
            ..
        } => VerdictFacts {
            retransmits: Some(retransmits),
            duration_ms: Some(duration_ms),
            last_rto_ms,
            ..none
        },
        Facts::RetriesExhausted {
            stall: Stall::ZeroWindowProbes { count, duration_ms },
            budget,
            ..
        } => VerdictFacts {
            retransmits: Some(0),
            probes: Some(count),
            duration_ms: Some(duration_ms),
            give_up_budget: Some(budget_text(&budget)),
            ..none
        },
        Facts::RetriesExhausted {
            stall:
                Stall::Retransmits {
                    count,
                    duration_ms,
                    last_rto_ms,
                },
            budget,
            ..
        } => VerdictFacts {
            retransmits: Some(count),
            duration_ms: Some(duration_ms),
            last_rto_ms: Some(last_rto_ms),
            give_up_budget: Some(budget_text(&budget)),
            ..none
        },
        Facts::DeadSocketHeld { held_ms, .. } | Facts::CloseWaitHeld { held_ms } => VerdictFacts {
            held_ms: Some(held_ms),
            ..none
        },
        Facts::ReceiverStalled {
            probes,
            duration_ms,
            ..
        } => VerdictFacts {
            probes: Some(probes),
            duration_ms: Some(duration_ms),
            ..none
        },
        Facts::RetryStorm(ref storm) => VerdictFacts {
            attempts: Some(storm.attempts),
            failures: Some(
                storm
                    .failures
                    .iter()
                    .map(|(name, n)| ((*name).to_owned(), *n))
                    .collect(),
            ),
            max_in_flight: Some(storm.max_in_flight),
            window_ms: Some(storm.window_ms),
            first_attempt_ns: Some(storm.first_ns),
            last_attempt_ns: Some(storm.last_ns),
            ..none
        },
    };
    let drops = match facts {
        Facts::ConnectTimeout { drops, .. } | Facts::RetriesExhausted { drops, .. } => {
            drops.as_ref()
        }
        _ => None,
    };
    VerdictFacts {
        error: facts.error(),
        local_drops: drops.map(|d| d.dropped),
        drop_reason: drops.map(|d| d.reason.clone()),
        ..numbers
    }
}

/// ` (tcp_syn_retries=6)`, when the kernel reported the setting.
fn setting(name: &str, value: Option<u8>) -> String {
    value.map(|n| format!(" ({name}={n})")).unwrap_or_default()
}

/// `TCP_USER_TIMEOUT 5.0 s`, `tcp_retries2=15, 924.6 s`, ...
pub fn budget_text(budget: &Budget) -> String {
    match *budget {
        Budget::UserTimeout { ms } => format!("TCP_USER_TIMEOUT {}", duration_ms(u64::from(ms))),
        Budget::Retries2 {
            retries2,
            budget_ms,
        } => format!("tcp_retries2={retries2}, {}", duration_ms(budget_ms)),
        Budget::Retries2Probes { retries2 } => format!("tcp_retries2={retries2} probes"),
        Budget::Unknown => "its retry budget".to_owned(),
    }
}

/// One cited moment, summarised: `RTO retransmit, 3 timeouts in a row, RTO 1.6 s (latest)`.
pub fn evidence(cited: &Cited) -> Evidence {
    let m = &cited.mark;
    // Room for the usual detail (`SYN_SENT → CLOSE, ECONNREFUSED`).
    let mut detail = String::with_capacity(64);
    if let Note::Drop(d) = &cited.note {
        let way = match d.direction {
            Direction::Out => "outgoing",
            Direction::In => "incoming",
        };
        let _ = write!(
            detail,
            "{way} {} dropped by this host ({})",
            d.tcp_flags, d.reason
        );
        return Evidence {
            ts_ns: m.ts_ns,
            kind: m.kind,
            detail,
        };
    }
    let out = &mut detail;
    match m.kind {
        EventKind::Retransmit => {
            out.push_str(retransmit_class(m.class));
            out.push_str(" retransmit");
            if m.retransmits > 0 {
                out.push_str(", ");
                out.push_str(&count(m.retransmits, "timeout"));
                out.push_str(" in a row");
            }
            if m.rto_us > 0 {
                out.push_str(", RTO ");
                out.push_str(&duration_ms(m.rto_us / 1000));
            }
        }
        EventKind::KeepaliveProbe => {
            out.push_str("keepalive probe ");
            out.push_str(itoa::Buffer::new().format(m.probe));
        }
        EventKind::ZeroWindowProbe => {
            out.push_str("zero-window probe ");
            out.push_str(itoa::Buffer::new().format(m.probe));
        }
        EventKind::StateChange => {
            if let Some(old) = m.old_state {
                push_state(out, old);
            }
            out.push_str(" → ");
            push_state(out, m.state);
            out.push_str(match m.timer {
                Some(TimerKind::Write) => " in the retransmit timer",
                Some(TimerKind::Keepalive) => " in the keepalive timer",
                None => "",
            });
        }
        EventKind::ResetReceived => {
            out.push_str("reset received in ");
            push_state(out, m.state);
        }
        EventKind::ResetSent => {
            out.push_str("reset sent in ");
            push_state(out, m.state);
        }
        EventKind::Drop => out.push_str("dropped by this host"),
        EventKind::RetransmitFailed
        | EventKind::ErrorReport
        | EventKind::Destroy
        | EventKind::Sweep => out.extend(m.kind.name().chars().map(|c| match c {
            '_' => ' ',
            c => c,
        })),
    }
    match &cited.note {
        Note::Plain | Note::Reason(None) | Note::Drop(_) => {}
        Note::First => out.push_str(" (first)"),
        Note::Latest => out.push_str(" (latest)"),
        Note::Error(error) => {
            out.push_str(", ");
            push_errno(out, *error);
        }
        Note::OrphanError(error) => {
            out.push_str(", ");
            push_errno(out, *error);
            out.push_str(", orphan");
        }
        Note::Reason(Some(reason)) => {
            out.push_str(" (");
            out.push_str(reason.name());
            out.push(')');
        }
    }
    Evidence {
        ts_ns: m.ts_ns,
        kind: m.kind,
        detail,
    }
}

/// Appends `peer` as `Display` spells it, without the formatting machinery's padding.
fn push_endpoint(out: &mut String, peer: Endpoint) {
    // Writing to a `String` cannot fail.
    let _ = peer.write_text(out);
}

/// Appends `state` as `Display` spells it.
fn push_state(out: &mut String, state: TcpState) {
    match state.known() {
        Some(known) => out.push_str(known.name()),
        None => {
            let _ = write!(out, "{state}");
        }
    }
}

/// Appends `error` as `Display` spells it.
fn push_errno(out: &mut String, error: Errno) {
    match error.name() {
        Some(name) => out.push_str(name),
        None => {
            let _ = write!(out, "{error}");
        }
    }
}

/// What the kernel's reason for an active reset means, in the user's terms.
pub fn reset_reason_words(reason: &ResetReason) -> &str {
    match reason {
        ResetReason::TcpAbortOnLinger => "closed with SO_LINGER 0",
        ResetReason::TcpAbortOnClose => "closed with unread data",
        ResetReason::TcpAbortOnData => "data arrived after close",
        ResetReason::TcpAbortOnMemory => "out of memory for orphans",
        ResetReason::TcpDisconnectWithData => "disconnected with unread data",
        ResetReason::TcpState => {
            "closed or aborted in a state that needs a reset, e.g. SO_LINGER 0"
        }
        ResetReason::NotSpecified => "no reason given",
        ResetReason::NoSocket | ResetReason::TcpKeepaliveTimeout | ResetReason::Other(_) => {
            reason.name()
        }
    }
}
