//! Who a socket is (tuple, namespace, state) and what its counters say.

use tracer_common::{RawEvent, flags};

use crate::kernel::{Access, Copied, Typed, config, read, read16};

pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

/// TCP states (include/net/tcp_states.h).
pub mod state {
    pub const ESTABLISHED: i32 = 1;
    pub const SYN_SENT: i32 = 2;
    pub const SYN_RECV: i32 = 3;
    pub const FIN_WAIT1: i32 = 4;
    pub const CLOSE: i32 = 7;
    pub const CLOSE_WAIT: i32 = 8;
    pub const LAST_ACK: i32 = 9;
    pub const LISTEN: i32 = 10;
}

/// The identity of a connection as the filters and the event need it.
pub struct SockId {
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub netns: u32,
    pub sport: u16,
    pub dport: u16,
    pub family: u16,
    pub state: u8,
}

/// Reads the tuple from `struct sock_common`, the head of full, request and timewait sockets.
/// `tp` is the same socket as a full `tcp_sock` (0 when it is not one).
#[inline(always)]
pub fn sock_id<A: Access>(access: A, sk: u64, tp: u64) -> SockId {
    let family = read(access, sk, config!(skc_family)) as u16;
    let net = read(access, sk, config!(skc_net));
    let mut id = SockId {
        saddr: [0; 16],
        daddr: [0; 16],
        netns: read(access, net, config!(net_inum)) as u32,
        sport: read(access, sk, config!(skc_num)) as u16,
        dport: u16::from_be(read(access, sk, config!(skc_dport)) as u16),
        family,
        state: read(access, sk, config!(skc_state)) as u8,
    };
    // The kernel clears skc_num when it unhashes a closing socket; inet_sport keeps the port.
    if id.sport == 0 && tp != 0 {
        id.sport = u16::from_be(read(access, tp, config!(inet_sport)) as u16);
    }
    if family == AF_INET6 {
        id.saddr = read16(access, sk, config!(skc_v6_rcv_saddr));
        id.daddr = read16(access, sk, config!(skc_v6_daddr));
    } else {
        let s = read(access, sk, config!(skc_rcv_saddr)) as u32;
        let d = read(access, sk, config!(skc_daddr)) as u32;
        id.saddr[..4].copy_from_slice(&s.to_ne_bytes());
        id.daddr[..4].copy_from_slice(&d.to_ne_bytes());
    }
    id
}

/// For a reset answering a segment that matched no socket: the tuple of the reset we send,
/// i.e. the incoming segment's addresses and ports swapped. `skb` is BTF-typed; the packet
/// bytes behind `skb->head` are copied.
#[inline(always)]
pub fn reset_reply_id(skb: u64) -> Option<SockId> {
    let head = read(Typed, skb, config!(skb_head));
    if head == 0 {
        return None;
    }
    let ip = head + read(Typed, skb, config!(skb_network_header));
    let tcp = head + read(Typed, skb, config!(skb_transport_header));
    let version = Copied.load::<u8>(ip) >> 4;
    let dev = read(Typed, skb, config!(skb_dev));
    let netns = if dev == 0 {
        0
    } else {
        let net = read(Typed, dev, config!(dev_nd_net));
        read(Typed, net, config!(net_inum)) as u32
    };
    let mut id = SockId {
        saddr: [0; 16],
        daddr: [0; 16],
        netns,
        // TCP header: source port at 0, destination port at 2 (network order).
        sport: u16::from_be(Copied.load::<u16>(tcp + 2)),
        dport: u16::from_be(Copied.load::<u16>(tcp)),
        family: AF_INET,
        state: state::CLOSE as u8,
    };
    match version {
        4 => {
            id.saddr[..4].copy_from_slice(&Copied.load::<[u8; 4]>(ip + 16));
            id.daddr[..4].copy_from_slice(&Copied.load::<[u8; 4]>(ip + 12));
        }
        6 => {
            id.family = AF_INET6;
            id.saddr = Copied.load::<[u8; 16]>(ip + 24);
            id.daddr = Copied.load::<[u8; 16]>(ip + 8);
        }
        _ => return None,
    }
    Some(id)
}

/// Fills the socket's retransmit, keepalive and error counters into `ev`, and the effective
/// give-up budgets (socket option if set, else the namespace's sysctl). `tp` is a full
/// `tcp_sock`.
#[inline(always)]
pub fn fill_counters<A: Access>(access: A, ev: &mut RawEvent, tp: u64) {
    let net = read(access, tp, config!(skc_net));
    let sk_flags = read(access, tp, config!(sk_flags));
    ev.flags |= flags::COUNTERS;
    if sk_flags & (1 << config!(sock_flag_dead)) != 0 {
        ev.flags |= flags::ORPHAN;
    }
    if sk_flags & (1 << config!(sock_flag_keepopen)) != 0 {
        ev.flags |= flags::KEEPALIVE_ON;
    }
    ev.sk_err = read(access, tp, config!(sk_err)) as i32;
    ev.sk_err_soft = read(access, tp, config!(sk_err_soft)) as i32;
    ev.ca_state = read(access, tp, config!(icsk_ca_state)) as u8;
    ev.retransmits = read(access, tp, config!(icsk_retransmits)) as u8;
    ev.probes_out = read(access, tp, config!(icsk_probes_out)) as u8;
    ev.backoff = read(access, tp, config!(icsk_backoff)) as u8;
    ev.rto_jiffies = read(access, tp, config!(icsk_rto)) as u32;
    ev.user_timeout_ms = read(access, tp, config!(icsk_user_timeout)) as u32;
    ev.total_retrans = read(access, tp, config!(tp_total_retrans)) as u32;
    ev.packets_out = read(access, tp, config!(tp_packets_out)) as u32;
    ev.rcv_tstamp = read(access, tp, config!(tp_rcv_tstamp)) as u32;
    ev.lsndtime = read(access, tp, config!(tp_lsndtime)) as u32;
    ev.jiffies = unsafe { aya_ebpf::helpers::generated::bpf_jiffies64() } as u32;
    ev.retrans_elapsed_ms = retrans_elapsed_ms(access, tp);

    ev.syn_retries = or_default(
        read(access, tp, config!(icsk_syn_retries)),
        read(access, net, config!(net_tcp_syn_retries)),
    ) as u8;
    ev.keepalive_probes = or_default(
        read(access, tp, config!(tp_keepalive_probes)),
        read(access, net, config!(net_tcp_keepalive_probes)),
    ) as u8;
    ev.keepalive_time_jiffies = or_default(
        read(access, tp, config!(tp_keepalive_time)),
        read(access, net, config!(net_tcp_keepalive_time)),
    ) as u32;
    ev.keepalive_intvl_jiffies = or_default(
        read(access, tp, config!(tp_keepalive_intvl)),
        read(access, net, config!(net_tcp_keepalive_intvl)),
    ) as u32;
    ev.retries1 = read(access, net, config!(net_tcp_retries1)) as u8;
    ev.retries2 = read(access, net, config!(net_tcp_retries2)) as u8;
    ev.orphan_retries = read(access, net, config!(net_tcp_orphan_retries)) as u8;
}

/// How long the kernel's give-up clock has run: tcp_write_timeout() compares
/// `tcp_time_stamp_ts(tp) - retrans_stamp` with the retries budget, both as u32 in ms (or in
/// µs on sockets with `tcp_usec_ts`). 0 when no retransmit streak is running.
#[inline(always)]
fn retrans_elapsed_ms<A: Access>(access: A, tp: u64) -> u32 {
    let stamp = read(access, tp, config!(tp_retrans_stamp)) as u32;
    let clock_us = read(access, tp, config!(tp_mstamp));
    if stamp == 0 || clock_us == 0 {
        return 0;
    }
    // Older kernels have no tcp_usec_ts: their stamps are in ms (size 0 reads as 0).
    if read(access, tp, config!(tp_usec_ts)) != 0 {
        ((clock_us as u32).wrapping_sub(stamp) as i32).max(0) as u32 / 1000
    } else {
        (((clock_us / 1000) as u32).wrapping_sub(stamp) as i32).max(0) as u32
    }
}

/// The kernel stores 0 in a per-socket option meaning "use the namespace default".
#[inline(always)]
fn or_default(socket_value: u64, namespace_value: u64) -> u64 {
    if socket_value != 0 {
        socket_value
    } else {
        namespace_value
    }
}
