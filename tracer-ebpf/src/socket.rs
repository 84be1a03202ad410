//! Who a socket is (identity, tuple, namespace, state) and what its counters say.

use aya_ebpf::{
    helpers::{
        bpf_get_smp_processor_id,
        generated::{bpf_get_socket_cookie, bpf_jiffies64},
    },
    macros::map,
    maps::{LruHashMap, PerCpuArray},
};
use tracer_common::{RawEvent, SYNTHETIC_COOKIE_BIT, feature, flags};

use crate::access::{Access, Copied, SkbPtr, SockPtr, TcpSockPtr, Typed, config};

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

/// Socket address → synthetic id, on kernels whose tracing programs may not call
/// `bpf_get_socket_cookie` (see `feature::SOCKET_COOKIE`). Removed when the socket is
/// destroyed; LRU so that sockets whose destruction went unseen cannot fill it.
#[map]
static SYNTHETIC_IDS: LruHashMap<u64, u64> = LruHashMap::with_max_entries(65536, 0);

/// Per-CPU counter for synthetic ids (no atomics needed: the CPU is part of the id).
#[map]
static SYNTHETIC_NEXT: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// The identity of a socket reached through a BTF-typed pointer: the kernel's socket cookie
/// (the one sock_diag reports too).
#[inline(always)]
pub fn cookie_of(sk: SockPtr<Typed>) -> u64 {
    if config!(features) & feature::SOCKET_COOKIE != 0 {
        // SAFETY: the helper takes a BTF socket pointer, which `sk` is (non-null).
        unsafe { bpf_get_socket_cookie(sk.0.addr() as *mut _) }
    } else {
        synthetic_cookie(sk)
    }
}

/// The identity of a socket reached through memory (a timer), where the helper cannot be
/// used: the stored `skc_cookie` (set once anything asked for it: our programs, sock_diag;
/// 0 when never generated, and userspace then keys the socket by its tuple), or the
/// synthetic id on kernels without the helper.
#[inline(always)]
pub fn stored_cookie(sk: SockPtr<Copied>) -> u64 {
    if config!(features) & feature::SOCKET_COOKIE != 0 {
        sk.0.read(config!(skc_cookie))
    } else {
        synthetic_cookie(sk)
    }
}

/// A synthetic id for `sk`, stable for its life: the one assigned before, else the
/// kernel's cookie if sock_diag generated one (sockets older than the tracer: the sweep
/// sees the same value), else a new one.
#[inline(always)]
fn synthetic_cookie<A: Access>(sk: SockPtr<A>) -> u64 {
    let key = sk.0.addr();
    // SAFETY: a value of this map, copied out at once.
    if let Some(id) = unsafe { SYNTHETIC_IDS.get(key) } {
        return *id;
    }
    let stored = sk.0.read(config!(skc_cookie));
    if stored != 0 {
        return stored;
    }
    let Some(next) = SYNTHETIC_NEXT.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: this CPU's slot; programs on one CPU do not run this concurrently (a nested
    // run would at worst hand out one id twice to sockets of different addresses).
    let counter = unsafe {
        *next += 1;
        *next
    };
    // SAFETY: no preconditions.
    let cpu = u64::from(unsafe { bpf_get_smp_processor_id() });
    let id = SYNTHETIC_COOKIE_BIT | (cpu << 40) | (counter & ((1 << 40) - 1));
    let _ = SYNTHETIC_IDS.insert(key, id, 0);
    id
}

/// The socket is gone: its synthetic id too (its address will be reused).
#[inline(always)]
pub fn forget_synthetic(sk: u64) {
    if config!(features) & feature::SOCKET_COOKIE == 0 {
        let _ = SYNTHETIC_IDS.remove(sk);
    }
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

impl SockId {
    /// The base of an identity read from a packet (no socket): IPv4 until the packet says
    /// otherwise, CLOSE, every address and port 0 until filled in.
    #[inline(always)]
    pub fn of_packet(netns: u32) -> SockId {
        SockId {
            saddr: [0; 16],
            daddr: [0; 16],
            netns,
            sport: 0,
            dport: 0,
            family: AF_INET,
            state: state::CLOSE as u8,
        }
    }
}

/// Reads the tuple from `struct sock_common`, the head of full, request and timewait sockets.
/// `tp` is the same socket as a full `tcp_sock`, when it is one.
#[inline(always)]
pub fn sock_id<A: Access>(sk: SockPtr<A>, tp: Option<TcpSockPtr<A>>) -> SockId {
    let family = sk.0.read(config!(skc_family)) as u16;
    let netns = match sk.0.follow(config!(skc_net)) {
        Some(net) => net.read(config!(net_inum)) as u32,
        None => 0,
    };
    let mut id = SockId {
        saddr: [0; 16],
        daddr: [0; 16],
        netns,
        sport: sk.0.read(config!(skc_num)) as u16,
        dport: u16::from_be(sk.0.read(config!(skc_dport)) as u16),
        family,
        state: sk.0.read(config!(skc_state)) as u8,
    };
    // The kernel clears skc_num when it unhashes a closing socket; inet_sport keeps the port.
    if id.sport == 0
        && let Some(tp) = tp
    {
        id.sport = u16::from_be(tp.0.read(config!(inet_sport)) as u16);
    }
    if family == AF_INET6 {
        id.saddr = sk.0.read16(config!(skc_v6_rcv_saddr));
        id.daddr = sk.0.read16(config!(skc_v6_daddr));
    } else {
        let s = sk.0.read(config!(skc_rcv_saddr)) as u32;
        let d = sk.0.read(config!(skc_daddr)) as u32;
        id.saddr[..4].copy_from_slice(&s.to_ne_bytes());
        id.daddr[..4].copy_from_slice(&d.to_ne_bytes());
    }
    id
}

/// For a reset answering a segment that matched no socket: the tuple of the reset we send,
/// i.e. the incoming segment's addresses and ports swapped. The packet bytes behind
/// `skb->head` are copied.
#[inline(always)]
pub fn reset_reply_id(skb: SkbPtr) -> Option<SockId> {
    let head = skb.0.read(config!(skb_head));
    if head == 0 {
        return None;
    }
    let ip = head + skb.0.read(config!(skb_network_header));
    let tcp = head + skb.0.read(config!(skb_transport_header));
    let version = Copied.load::<u8>(ip) >> 4;
    let netns = skb
        .0
        .follow(config!(skb_dev))
        .and_then(|dev| dev.follow(config!(dev_nd_net)))
        .map_or(0, |net| net.read(config!(net_inum)) as u32);
    let mut id = SockId::of_packet(netns);
    // TCP header: source port at 0, destination port at 2 (network order).
    id.sport = u16::from_be(Copied.load::<u16>(tcp + 2));
    id.dport = u16::from_be(Copied.load::<u16>(tcp));
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
/// give-up budgets (socket option if set, else the namespace's sysctl).
#[inline(always)]
pub fn fill_counters<A: Access>(ev: &mut RawEvent, tp: TcpSockPtr<A>) {
    let sock = tp.0;
    let sk_flags = sock.read(config!(sk_flags));
    ev.flags |= flags::COUNTERS;
    if sk_flags & (1 << config!(sock_flag_dead)) != 0 {
        ev.flags |= flags::ORPHAN;
    }
    if sk_flags & (1 << config!(sock_flag_keepopen)) != 0 {
        ev.flags |= flags::KEEPALIVE_ON;
    }
    ev.sk_err = sock.read(config!(sk_err)) as i32;
    ev.sk_err_soft = sock.read(config!(sk_err_soft)) as i32;
    ev.ca_state = sock.read(config!(icsk_ca_state)) as u8;
    ev.retransmits = sock.read(config!(icsk_retransmits)) as u8;
    ev.probes_out = sock.read(config!(icsk_probes_out)) as u8;
    ev.backoff = sock.read(config!(icsk_backoff)) as u8;
    ev.rto_jiffies = sock.read(config!(icsk_rto)) as u32;
    ev.user_timeout_ms = sock.read(config!(icsk_user_timeout)) as u32;
    ev.total_retrans = sock.read(config!(tp_total_retrans)) as u32;
    ev.packets_out = sock.read(config!(tp_packets_out)) as u32;
    ev.rcv_tstamp = sock.read(config!(tp_rcv_tstamp)) as u32;
    ev.lsndtime = sock.read(config!(tp_lsndtime)) as u32;
    // SAFETY: no preconditions.
    ev.jiffies = unsafe { bpf_jiffies64() } as u32;
    ev.retrans_elapsed_ms = retrans_elapsed_ms(tp);

    ev.syn_retries = sock.read(config!(icsk_syn_retries)) as u8;
    ev.keepalive_probes = sock.read(config!(tp_keepalive_probes)) as u8;
    ev.keepalive_time_jiffies = sock.read(config!(tp_keepalive_time)) as u32;
    ev.keepalive_intvl_jiffies = sock.read(config!(tp_keepalive_intvl)) as u32;
    // The kernel stores 0 in a per-socket option meaning "use the namespace default".
    if let Some(net) = sock.follow(config!(skc_net)) {
        if ev.syn_retries == 0 {
            ev.syn_retries = net.read(config!(net_tcp_syn_retries)) as u8;
        }
        if ev.keepalive_probes == 0 {
            ev.keepalive_probes = net.read(config!(net_tcp_keepalive_probes)) as u8;
        }
        if ev.keepalive_time_jiffies == 0 {
            ev.keepalive_time_jiffies = net.read(config!(net_tcp_keepalive_time)) as u32;
        }
        if ev.keepalive_intvl_jiffies == 0 {
            ev.keepalive_intvl_jiffies = net.read(config!(net_tcp_keepalive_intvl)) as u32;
        }
        ev.retries1 = net.read(config!(net_tcp_retries1)) as u8;
        ev.retries2 = net.read(config!(net_tcp_retries2)) as u8;
        ev.orphan_retries = net.read(config!(net_tcp_orphan_retries)) as u8;
    }
}

/// How long the kernel's give-up clock has run: tcp_write_timeout() compares
/// `tcp_time_stamp_ts(tp) - retrans_stamp` with the retries budget, both as u32 in ms (or in
/// µs on sockets with `tcp_usec_ts`). 0 when no retransmit streak is running.
#[inline(always)]
fn retrans_elapsed_ms<A: Access>(tp: TcpSockPtr<A>) -> u32 {
    let stamp = tp.0.read(config!(tp_retrans_stamp)) as u32;
    let clock_us = tp.0.read(config!(tp_mstamp));
    if stamp == 0 || clock_us == 0 {
        return 0;
    }
    // Older kernels have no tcp_usec_ts: their stamps are in ms (size 0 reads as 0).
    if tp.0.read(config!(tp_usec_ts)) != 0 {
        ((clock_us as u32).wrapping_sub(stamp) as i32).max(0) as u32 / 1000
    } else {
        (((clock_us / 1000) as u32).wrapping_sub(stamp) as i32).max(0) as u32
    }
}
