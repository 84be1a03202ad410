//! The kernel hooks: which program serves which tracepoint, the variants picked by the
//! tracepoint's arguments on this kernel, and what the user loses without each.

use serde::{Deserialize, Serialize};

/// One kernel hook: the program (and its nested-context twin), the tracepoint, and what
/// the user loses without it.
#[derive(Debug)]
pub struct Hook {
    pub program: &'static str,
    /// The program that handles hits nesting inside `program` on one CPU (tracer-ebpf's
    /// `nesting`); attached after it.
    pub twin: Option<&'static str>,
    pub tracepoint: &'static str,
    /// Arguments the program reads; the variant with the most that the kernel has wins.
    pub reads_args: usize,
    pub provides: &'static str,
    /// What a kernel whose tracepoint lacks the argument the richer variant reads loses
    /// (set on the poorer variant).
    pub without_richer_variant: Option<&'static str>,
}

#[rustfmt::skip]
pub const HOOKS: &[Hook] = &[
    Hook { program: "tr_set_state", twin: Some("tr_set_state_nested"), tracepoint: "inet_sock_set_state", reads_args: 3, provides: "state changes, connection deaths and their errors", without_richer_variant: None },
    Hook { program: "tr_retransmit", twin: Some("tr_retransmit_nested"), tracepoint: "tcp_retransmit_skb", reads_args: 2, provides: "retransmits", without_richer_variant: Some("failed retransmit attempts (tcp_retransmit_skb carries no err before 6.17)") },
    Hook { program: "tr_retransmit_e", twin: Some("tr_retransmit_e_nested"), tracepoint: "tcp_retransmit_skb", reads_args: 3, provides: "retransmits and failed retransmit attempts", without_richer_variant: None },
    Hook { program: "tr_synack", twin: Some("tr_synack_nested"), tracepoint: "tcp_retransmit_synack", reads_args: 2, provides: "SYN-ACK retransmits", without_richer_variant: None },
    Hook { program: "tr_send_reset", twin: Some("tr_send_reset_nested"), tracepoint: "tcp_send_reset", reads_args: 2, provides: "resets sent", without_richer_variant: Some("reset reasons (tcp_send_reset carries none before 6.10)") },
    Hook { program: "tr_send_reset_r", twin: Some("tr_send_reset_r_nested"), tracepoint: "tcp_send_reset", reads_args: 3, provides: "resets sent, with the kernel's reason", without_richer_variant: None },
    Hook { program: "tr_recv_reset", twin: Some("tr_recv_reset_nested"), tracepoint: "tcp_receive_reset", reads_args: 1, provides: "resets received", without_richer_variant: None },
    Hook { program: "tr_error_report", twin: Some("tr_error_report_nested"), tracepoint: "inet_sk_error_report", reads_args: 1, provides: "socket error reports", without_richer_variant: None },
    Hook { program: "tr_destroy", twin: Some("tr_destroy_nested"), tracepoint: "tcp_destroy_sock", reads_args: 1, provides: "socket release (when the application closes a dead socket)", without_richer_variant: None },
    Hook { program: "tr_timer_entry", twin: None, tracepoint: "timer_expire_entry", reads_args: 1, provides: "keepalive probes, zero-window probes, RTO/TLP classification", without_richer_variant: None },
    Hook { program: "tr_timer_exit", twin: None, tracepoint: "timer_expire_exit", reads_args: 1, provides: "keepalive probes, zero-window probes", without_richer_variant: None },
    Hook { program: "tr_drop", twin: Some("tr_drop_nested"), tracepoint: "kfree_skb", reads_args: 3, provides: "TCP segments this host dropped, with the kernel's reason", without_richer_variant: Some("the socket of incoming segments dropped after its lookup, matched by tuple instead (kfree_skb carries rx_sk from 6.11)") },
    Hook { program: "tr_drop_rx", twin: Some("tr_drop_rx_nested"), tracepoint: "kfree_skb", reads_args: 4, provides: "TCP segments this host dropped, with the kernel's reason and socket", without_richer_variant: None },
    Hook { program: "tr_send_len", twin: None, tracepoint: "sock_send_length", reads_args: 1, provides: "owners of accepted sockets", without_richer_variant: None },
    Hook { program: "tr_recv_len", twin: None, tracepoint: "sock_recv_length", reads_args: 1, provides: "owners of accepted sockets", without_richer_variant: None },
];

/// What each tracepoint's absence costs, by verdict.
#[rustfmt::skip]
pub const DEGRADES_WITHOUT: &[(&str, &str)] = &[
    ("inet_sock_set_state", "everything: tracing cannot start without it"),
    ("tcp_retransmit_skb", "peer_unresponsive; retransmit counts in retries_exhausted, connect_timeout and orphan_timeout"),
    ("tcp_retransmit_synack", "server-side SYN-ACK retransmits (no verdict depends on them)"),
    ("tcp_send_reset", "local_abort, and resets sent for segments that matched no socket"),
    ("tcp_receive_reset", "peer_reset's evidence and its lost-state detection"),
    ("inet_sk_error_report", "error reports in timelines (no verdict depends on them)"),
    ("tcp_destroy_sock", "dead_socket_held (not flagged: the release cannot be seen), and releasing finished timelines"),
    ("timer_expire_entry", "keepalive probe counts in keepalive_exhausted; RTO and TLP classification"),
    ("timer_expire_exit", "keepalive and zero-window probe events"),
    ("kfree_skb", "drops this host made itself: no `drop` events, and verdicts cannot blame this host's own drops (kfree_skb carries a drop reason from 5.17)"),
    ("sock_send_length", "owners of accepted sockets (the listener's process stands in; sock_send_length exists from 6.4)"),
    ("sock_recv_length", "owners of accepted sockets (the listener's process stands in; sock_recv_length exists from 6.4)"),
];

/// The tracepoints in table order, each once.
pub fn tracepoints() -> Vec<&'static str> {
    let mut tracepoints: Vec<&str> = HOOKS.iter().map(|h| h.tracepoint).collect();
    tracepoints.dedup();
    tracepoints
}

/// The program for `tracepoint` on a kernel whose tracepoint has `arity` arguments.
pub fn choose_variant(tracepoint: &str, arity: usize) -> Option<&'static Hook> {
    HOOKS
        .iter()
        .filter(|h| h.tracepoint == tracepoint && h.reads_args <= arity)
        .max_by_key(|h| h.reads_args)
}

/// The first hook of `tracepoint` (for reporting one this kernel lacks).
pub fn first_hook(tracepoint: &str) -> &'static Hook {
    HOOKS
        .iter()
        .find(|h| h.tracepoint == tracepoint)
        .expect("every tracepoint has a hook")
}

pub fn cost_without(tracepoint: &str) -> &'static str {
    DEGRADES_WITHOUT
        .iter()
        .find(|(tp, _)| *tp == tracepoint)
        .map_or("", |(_, cost)| cost)
}

/// How a hook fares on this kernel.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HookState {
    /// Verified (and, when tracing, attached) with everything it can give.
    Ok,
    /// Verified and attached, but this kernel withholds part of what it gives (`degraded`).
    Degraded,
    /// This kernel has no such tracepoint, or the tracer left it out (`problem` says why).
    Unavailable,
    /// The kernel refused the program (`problem`: the verifier's reason).
    Failed,
}

/// Whether a hook runs on this kernel; recorded in every trace's header.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HookStatus {
    pub tracepoint: String,
    pub program: String,
    pub attached: bool,
    pub provides: String,
    /// Why it is not attached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// Absent in traces of tracers that did not record it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<HookState>,
    /// What this kernel withholds although the hook is attached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded: Option<String>,
    /// The nested-context twin, when attached beside the program.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twin: Option<String>,
}

impl HookStatus {
    pub fn new(hook: &Hook) -> Self {
        Self {
            tracepoint: hook.tracepoint.into(),
            program: hook.program.into(),
            attached: false,
            provides: hook.provides.into(),
            problem: None,
            state: None,
            degraded: None,
            twin: None,
        }
    }

    pub fn unavailable(hook: &Hook, why: impl Into<String>) -> Self {
        Self {
            problem: Some(why.into()),
            state: Some(HookState::Unavailable),
            ..Self::new(hook)
        }
    }

    pub fn failed(hook: &Hook, why: impl Into<String>) -> Self {
        Self {
            problem: Some(why.into()),
            state: Some(HookState::Failed),
            ..Self::new(hook)
        }
    }

    /// Adds something this kernel withholds.
    pub fn degrade(&mut self, what: &str) {
        self.state = Some(HookState::Degraded);
        self.degraded = Some(match self.degraded.take() {
            Some(before) => format!("{before}; {what}"),
            None => what.to_owned(),
        });
    }
}

/// The line of a verifier log that says why it refused the program: the last line that is
/// neither empty nor one of the statistics the kernel appends.
pub fn verifier_reason(log: &str) -> Option<&str> {
    log.lines().rev().map(str::trim).find(|line| {
        !line.is_empty()
            && !line.starts_with("processed ")
            && !line.starts_with("verification time")
            && !line.starts_with("stack depth")
            && !line.starts_with("mark_precise")
            && !line.starts_with("-- END PROG LOAD LOG --")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_variant_matching_the_kernel() {
        let program = |tp, arity| choose_variant(tp, arity).map(|h| h.program);
        assert_eq!(program("tcp_retransmit_skb", 2), Some("tr_retransmit"));
        assert_eq!(program("tcp_retransmit_skb", 3), Some("tr_retransmit_e"));
        assert_eq!(program("tcp_send_reset", 3), Some("tr_send_reset_r"));
        assert_eq!(program("tcp_send_reset", 2), Some("tr_send_reset"));
        assert_eq!(program("timer_expire_entry", 2), Some("tr_timer_entry"));
        assert_eq!(program("tcp_retransmit_skb", 1), None);
        // kfree_skb: 5.10 has no reason (none), 5.17 adds it, 6.11 adds rx_sk.
        assert_eq!(program("kfree_skb", 2), None);
        assert_eq!(program("kfree_skb", 3), Some("tr_drop"));
        assert_eq!(program("kfree_skb", 4), Some("tr_drop_rx"));
    }

    #[test]
    fn every_tracepoint_has_a_cost() {
        for tracepoint in tracepoints() {
            assert!(!cost_without(tracepoint).is_empty(), "{tracepoint}");
        }
    }

    #[test]
    fn the_verifier_reason_is_the_last_meaningful_line() {
        // Shapes seen on 5.10 and 6.1 (kernel-matrix notes).
        let e2big = "0: (bf) r6 = r1\n...\nBPF program is too large. Processed 1000001 insn\n\
                     processed 1000001 insns (limit 1000000) max_states_per_insn 4 total_states 31715\n";
        assert_eq!(
            verifier_reason(e2big),
            Some("BPF program is too large. Processed 1000001 insn")
        );
        let eacces = "reg type unsupported for arg#0 function tr_retransmit#25\n\
                      333: (69) r0 = *(u16 *)(r3 +0)\nR3 invalid mem access 'scalar'\n\
                      verification time 1234 usec\nstack depth 64\nprocessed 400 insns\n";
        assert_eq!(
            verifier_reason(eacces),
            Some("R3 invalid mem access 'scalar'")
        );
        assert_eq!(
            verifier_reason("unknown func bpf_get_socket_cookie#46\n"),
            Some("unknown func bpf_get_socket_cookie#46")
        );
        assert_eq!(verifier_reason("\n\n"), None);
    }
}
