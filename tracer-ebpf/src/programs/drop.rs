//! `skb:kfree_skb` (with `reason` since 5.17, `rx_sk` since 6.11): TCP segments this host
//! dropped itself, and why.
//!
//! The tracepoint runs for every packet the host drops, of any protocol, so the program
//! leaves early: one typed load and a compare for what is not IP, one copied header for
//! what is not TCP. What is left is named by the segment's own tuple (source →
//! destination) in the namespace of the socket the kernel attached to it, else of the
//! device it arrived on; the cookie is that socket's (`skb->sk`: outgoing segments and
//! early-demuxed incoming ones; `rx_sk`: incoming segments dropped after the socket
//! lookup), or 0 when the drop happened before any socket was known (netfilter's input
//! hook, a bad checksum, no socket): userspace then matches the tuple. The user's filters
//! apply as to every event. A segment dropped for matching no socket is left out where the
//! kernel traces the reset that answers it (6.10+): that `reset_sent` names the same tuple.

use aya_ebpf::programs::BtfTracePointContext;
use tracer_common::{flags, hook, kind};

use crate::{
    access::{Access, Copied, SkbPtr, SockPtr, TcpSockPtr, arg_value, config},
    emit::{Subject, emit},
    nesting::{hit_of_args, programs_with_twin},
    socket::{AF_INET6, SockId, stored_cookie},
};

programs_with_twin!(
    hook::DROP,
    "kfree_skb",
    tr_drop,
    tr_drop_nested,
    hit_of_args!(2),
    |ctx: &BtfTracePointContext| on_drop(ctx, ctx.arg::<u64>(2) as u32, 0)
);
programs_with_twin!(
    hook::DROP,
    "kfree_skb",
    tr_drop_rx,
    tr_drop_rx_nested,
    hit_of_args!(2),
    |ctx: &BtfTracePointContext| on_drop(ctx, ctx.arg::<u64>(2) as u32, arg_value(ctx, 3))
);

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const IPPROTO_TCP: u8 = 6;
const TCP_RST: u8 = 0x04;
/// `skb->network_header` when no network header was set.
const NO_HEADER: u64 = 0xFFFF;

#[inline(always)]
fn on_drop(ctx: &BtfTracePointContext, reason: u32, rx_sk: u64) {
    let Some(skb) = SkbPtr::arg(ctx, 0) else {
        return;
    };
    let protocol = u16::from_be(skb.0.read(config!(skb_protocol)) as u16);
    let v6 = match protocol {
        ETH_P_IP => false,
        ETH_P_IPV6 => true,
        _ => return,
    };
    let head = skb.0.read(config!(skb_head));
    let network = skb.0.read(config!(skb_network_header));
    if head == 0 || network == NO_HEADER {
        return;
    }
    let ip = head + network;
    // Built in place: the stack is tight with the twin's bookkeeping around it.
    let mut subject: Subject<Copied> = Subject {
        sk: None,
        tp: None::<TcpSockPtr<Copied>>,
        cookie: 0,
        id: SockId::of_packet(0),
    };
    let id = &mut subject.id;
    // The TCP header's address and the IP payload's length, from as few copies as can be.
    let (tcp, ip_payload) = if v6 {
        // Version, ..., payload length (4-5), next header (6).
        let fixed = Copied.load::<u64>(ip).to_le_bytes();
        // No extension headers: TCP follows the fixed header, or the segment is skipped.
        if fixed[0] >> 4 != 6 || fixed[6] != IPPROTO_TCP {
            return;
        }
        id.family = AF_INET6;
        (ip + 40, u32::from(u16::from_be_bytes([fixed[4], fixed[5]])))
    } else {
        // Version and header length (0), total length (2-3); protocol (9).
        let start = Copied.load::<u32>(ip).to_le_bytes();
        if start[0] >> 4 != 4 || Copied.load::<u8>(ip + 9) != IPPROTO_TCP {
            return;
        }
        let header = u32::from(start[0] & 0x0f) * 4;
        let total = u32::from(u16::from_be_bytes([start[2], start[3]]));
        (ip + u64::from(header), total.saturating_sub(header))
    };
    let ports = Copied.load::<u32>(tcp).to_le_bytes();
    id.sport = u16::from_be_bytes([ports[0], ports[1]]);
    id.dport = u16::from_be_bytes([ports[2], ports[3]]);
    // Data offset (12, high nibble) and flags (13).
    let offset_flags = Copied.load::<u16>(tcp + 12).to_le_bytes();
    let tcp_header = u32::from(offset_flags[0] >> 4) * 4;
    let tcp_flags = offset_flags[1];
    // A segment that matched no socket is answered with a reset the reset program traces
    // (unless it was a reset itself): the drop would say it twice.
    if reason == config!(drop_no_socket_answered) && tcp_flags & TCP_RST == 0 {
        return;
    }
    // The addresses only now: a refused connect's SYN leaves above without them.
    if v6 {
        Copied.copy_into(ip + 8, &mut id.saddr);
        Copied.copy_into(ip + 24, &mut id.daddr);
    } else {
        Copied.copy_into(ip + 12, &mut id.saddr[..4]);
        Copied.copy_into(ip + 16, &mut id.daddr[..4]);
    }
    // The socket the kernel named with the drop: the owner of the buffer, else the socket
    // the segment was looked up for.
    // Copied, so that the verifier sees numbers, whatever it thinks of these pointers.
    let owner = match config!(skb_sk) {
        loc if loc.size == 8 => Copied.load::<u64>(skb.0.addr() + u64::from(loc.offset)),
        _ => 0,
    };
    let named = if owner != 0 { owner } else { rx_sk };
    let mut outgoing = false;
    match SockPtr::at(named) {
        Some(sk) => {
            subject.sk = Some(sk);
            subject.cookie = stored_cookie(sk);
            let id = &mut subject.id;
            outgoing = sk.0.read(config!(skc_num)) as u16 == id.sport;
            id.state = sk.0.read(config!(skc_state)) as u8;
            id.netns =
                sk.0.follow(config!(skc_net))
                    .map_or(0, |net| net.read(config!(net_inum)) as u32);
        }
        None => {
            subject.id.netns = skb
                .0
                .follow(config!(skb_dev))
                .and_then(|dev| dev.follow(config!(dev_nd_net)))
                .map_or(0, |net| net.read(config!(net_inum)) as u32);
        }
    }
    let cookie = subject.cookie;
    emit(kind::DROP, &subject, |ev| {
        ev.reason = reason;
        ev.tcp_flags = tcp_flags;
        ev.segs = ip_payload.saturating_sub(tcp_header);
        if cookie != 0 {
            ev.flags |= flags::SOCKET_NAMED;
        }
        if outgoing {
            ev.flags |= flags::OUTGOING;
        }
    });
}
