//! Fills [`Config`] with every kernel member the programs read, from BTF.
//!
//! The table below is the whole contract between the kernel programs and the kernel: one row
//! per member, with what the user loses when this kernel lacks it.

use tracer_common::{Config, FieldLoc};

use super::btf::KernelBtf;

/// A member this kernel does not have, and the consequence.
#[derive(Debug, Clone)]
pub struct Missing {
    pub member: String,
    pub cost: &'static str,
}

/// Whether a member is essential (no useful tracing without it) or an enrichment.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Essential,
    Optional(&'static str),
}

type Slot = fn(&mut Config) -> &mut FieldLoc;

/// (slot, struct, member path, need). A path may list alternatives `a|b` for members
/// that moved between kernel versions; the first that resolves wins.
#[rustfmt::skip]
const MEMBERS: &[(Slot, &str, &str, Need)] = &[
    (|c| &mut c.skc_daddr, "sock_common", "skc_daddr", Need::Essential),
    (|c| &mut c.skc_rcv_saddr, "sock_common", "skc_rcv_saddr", Need::Essential),
    (|c| &mut c.skc_dport, "sock_common", "skc_dport", Need::Essential),
    (|c| &mut c.skc_num, "sock_common", "skc_num", Need::Essential),
    (|c| &mut c.skc_family, "sock_common", "skc_family", Need::Essential),
    (|c| &mut c.skc_state, "sock_common", "skc_state", Need::Essential),
    (|c| &mut c.skc_net, "sock_common", "skc_net", Need::Optional("network namespace ids and --netns")),
    (|c| &mut c.skc_v6_daddr, "sock_common", "skc_v6_daddr", Need::Optional("IPv6 addresses")),
    (|c| &mut c.skc_v6_rcv_saddr, "sock_common", "skc_v6_rcv_saddr", Need::Optional("IPv6 addresses")),
    (|c| &mut c.skc_cookie, "sock_common", "skc_cookie", Need::Optional("socket identity of keepalive/zero-window probes on sockets never seen before (keyed by tuple instead)")),
    (|c| &mut c.inet_sport, "inet_sock", "inet_sport", Need::Optional("local ports of closing sockets")),
    (|c| &mut c.net_inum, "net", "ns.inum", Need::Optional("network namespace ids and --netns")),
    (|c| &mut c.net_tcp_retries1, "net", "ipv4.sysctl_tcp_retries1", Need::Optional("per-namespace tcp_retries1 (early warning threshold)")),
    (|c| &mut c.net_tcp_retries2, "net", "ipv4.sysctl_tcp_retries2", Need::Optional("per-namespace tcp_retries2 (give-up prediction)")),
    (|c| &mut c.net_tcp_syn_retries, "net", "ipv4.sysctl_tcp_syn_retries", Need::Optional("per-namespace tcp_syn_retries")),
    (|c| &mut c.net_tcp_orphan_retries, "net", "ipv4.sysctl_tcp_orphan_retries", Need::Optional("per-namespace tcp_orphan_retries")),
    (|c| &mut c.net_tcp_keepalive_time, "net", "ipv4.sysctl_tcp_keepalive_time", Need::Optional("default keepalive idle time")),
    (|c| &mut c.net_tcp_keepalive_intvl, "net", "ipv4.sysctl_tcp_keepalive_intvl", Need::Optional("default keepalive interval")),
    (|c| &mut c.net_tcp_keepalive_probes, "net", "ipv4.sysctl_tcp_keepalive_probes", Need::Optional("default keepalive probe count")),
    (|c| &mut c.sk_err, "sock", "sk_err", Need::Optional("socket errors (ETIMEDOUT, ECONNRESET, ...)")),
    (|c| &mut c.sk_err_soft, "sock", "sk_err_soft", Need::Optional("soft ICMP errors")),
    (|c| &mut c.sk_flags, "sock", "__sk_common.skc_flags|sk_flags", Need::Optional("orphan and keepalive-on flags")),
    // Stable kernels moved TCP's keepalive timer out of the sock (sk_timer stays, for MPTCP).
    (|c| &mut c.keepalive_timer, "inet_connection_sock", "icsk_keepalive_timer|icsk_inet.sk.sk_timer", Need::Optional("keepalive probes")),
    (|c| &mut c.icsk_retransmit_timer, "inet_connection_sock", "icsk_retransmit_timer", Need::Optional("RTO/TLP classification and zero-window probes")),
    (|c| &mut c.icsk_rto, "inet_connection_sock", "icsk_rto", Need::Optional("current RTO")),
    (|c| &mut c.icsk_ca_state, "inet_connection_sock", "icsk_ca_state", Need::Optional("fast-retransmit classification")),
    (|c| &mut c.icsk_retransmits, "inet_connection_sock", "icsk_retransmits", Need::Optional("consecutive RTO count (early warning)")),
    (|c| &mut c.icsk_pending, "inet_connection_sock", "icsk_pending", Need::Optional("RTO/TLP classification")),
    (|c| &mut c.icsk_backoff, "inet_connection_sock", "icsk_backoff", Need::Optional("RTO backoff")),
    (|c| &mut c.icsk_probes_out, "inet_connection_sock", "icsk_probes_out", Need::Optional("keepalive and zero-window probes")),
    (|c| &mut c.icsk_user_timeout, "inet_connection_sock", "icsk_user_timeout", Need::Optional("TCP_USER_TIMEOUT")),
    (|c| &mut c.icsk_syn_retries, "inet_connection_sock", "icsk_syn_retries", Need::Optional("TCP_SYNCNT")),
    (|c| &mut c.tp_total_retrans, "tcp_sock", "total_retrans", Need::Optional("total retransmits")),
    (|c| &mut c.tp_packets_out, "tcp_sock", "packets_out", Need::Optional("packets in flight")),
    (|c| &mut c.tp_keepalive_time, "tcp_sock", "keepalive_time", Need::Optional("per-socket keepalive idle time")),
    (|c| &mut c.tp_keepalive_intvl, "tcp_sock", "keepalive_intvl", Need::Optional("per-socket keepalive interval")),
    (|c| &mut c.tp_keepalive_probes, "tcp_sock", "keepalive_probes", Need::Optional("per-socket keepalive probe count")),
    (|c| &mut c.tp_rcv_tstamp, "tcp_sock", "rcv_tstamp", Need::Optional("time since the last ACK")),
    (|c| &mut c.tp_lsndtime, "tcp_sock", "lsndtime", Need::Optional("time since the last send")),
    (|c| &mut c.tp_retrans_stamp, "tcp_sock", "retrans_stamp", Need::Optional("the kernel's give-up clock (exact give-up prediction)")),
    (|c| &mut c.tp_mstamp, "tcp_sock", "tcp_mstamp", Need::Optional("the kernel's give-up clock (exact give-up prediction)")),
    (|c| &mut c.skb_head, "sk_buff", "head", Need::Optional("resets for segments that matched no socket")),
    (|c| &mut c.skb_network_header, "sk_buff", "network_header", Need::Optional("resets for segments that matched no socket")),
    (|c| &mut c.skb_transport_header, "sk_buff", "transport_header", Need::Optional("resets for segments that matched no socket")),
    (|c| &mut c.skb_dev, "sk_buff", "dev", Need::Optional("namespace of resets that matched no socket")),
    (|c| &mut c.dev_nd_net, "net_device", "nd_net", Need::Optional("namespace of resets that matched no socket")),
    (|c| &mut c.skb_sk, "sk_buff", "sk", Need::Optional("the socket of dropped segments (matched by tuple instead)")),
    (|c| &mut c.skb_protocol, "sk_buff", "protocol", Need::Optional("drops this host made itself")),
    (|c| &mut c.timer_function, "timer_list", "function", Need::Optional("keepalive probes and RTO/TLP classification")),
];

/// The types [`resolve`] looks up by name, beyond the structs of [`MEMBERS`].
const OTHER_TYPES: &[&str] = &["tcp_skb_cb", "sock_flags", "skb_drop_reason"];

/// Every type name start-up asks BTF about: those [`resolve`] reads, the reset reasons the
/// trace's header names, the tracepoints' typedefs (`tcp_send_reset`'s among them), for
/// [`KernelBtf::load_finding`].
pub fn type_names() -> Vec<String> {
    MEMBERS
        .iter()
        .map(|m| m.1)
        .chain(OTHER_TYPES.iter().copied())
        .chain(["sk_rst_reason"])
        .map(str::to_owned)
        .chain(
            super::hooks::tracepoints()
                .into_iter()
                .map(super::btf::tracepoint_typedef),
        )
        .collect()
}

/// Resolves every member; returns the config and what this kernel lacks.
pub fn resolve(btf: &KernelBtf) -> anyhow::Result<(Config, Vec<Missing>)> {
    let mut config = Config::default();
    let mut missing = Vec::new();
    for (slot, outer, paths, need) in MEMBERS {
        let mut resolved = paths.split('|').map(|path| btf.field(outer, path));
        let first = resolved.next().expect("at least one path");
        let found = if first.is_ok() {
            first
        } else {
            resolved.find(Result::is_ok).unwrap_or(first)
        };
        let path = paths;
        match found {
            Ok(loc) => *slot(&mut config) = loc,
            Err(e) => match need {
                Need::Essential => {
                    anyhow::bail!(
                        "this kernel's BTF lacks {outer}.{path}, which tracing needs: {e}"
                    )
                }
                Need::Optional(cost) => missing.push(Missing {
                    member: format!("{outer}.{path}"),
                    cost,
                }),
            },
        }
    }
    // Microsecond TCP timestamps (6.7+); without the bit, stamps are in ms.
    config.tp_usec_ts = btf
        .field("tcp_sock", "tcp_usec_ts")
        .unwrap_or(FieldLoc::ABSENT);
    // tcp_skb_pcount(): skb->cb holds struct tcp_skb_cb.
    match (
        btf.offset_of("sk_buff", "cb"),
        btf.field("tcp_skb_cb", "tcp_gso_segs"),
    ) {
        (Ok(cb), Ok(mut segs)) => {
            segs.offset += cb;
            config.skb_tcp_gso_segs = segs;
        }
        _ => missing.push(Missing {
            member: "tcp_skb_cb.tcp_gso_segs".into(),
            cost: "segment counts of GSO retransmits (each counts as 1)",
        }),
    }
    match (
        btf.enum_value("sock_flags", "SOCK_DEAD"),
        btf.enum_value("sock_flags", "SOCK_KEEPOPEN"),
    ) {
        (Ok(dead), Ok(keepopen)) => {
            config.sock_flag_dead = dead as u32;
            config.sock_flag_keepopen = keepopen as u32;
        }
        _ => {
            config.sk_flags = FieldLoc::ABSENT;
            missing.push(Missing {
                member: "enum sock_flags".into(),
                cost: "orphan and keepalive-on flags",
            });
        }
    }
    config.drop_no_socket_answered = no_socket_drops_answered(btf).unwrap_or(u32::MAX);
    Ok((config, missing))
}

const NO_SOCKET_RESET_TRACEPOINT: &str = "tcp_send_reset";

/// The drop reason of a segment that matched no socket, when the kernel traces the reset
/// it answers each such segment with (`tcp_send_reset` with its reason and a NULL socket,
/// both since 6.10): the drop then repeats the `reset_sent` fact (for each refused connect,
/// one record more of eight), and the programs leave it out.
fn no_socket_drops_answered(btf: &KernelBtf) -> Option<u32> {
    if btf.tracepoint_arity(NO_SOCKET_RESET_TRACEPOINT)? < 3 {
        return None;
    }
    let value = btf
        .enum_value("skb_drop_reason", "SKB_DROP_REASON_NO_SOCKET")
        .ok()?;
    u32::try_from(value).ok()
}
