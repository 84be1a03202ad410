//! Kernel programs of the connection tracer.
//!
//! All hooks are BTF tracepoints (tp_btf): they load wherever the kernel has BTF, give typed
//! `struct sock *` arguments and allow `bpf_get_socket_cookie`, the socket identity that
//! survives pointer and port reuse. No fentry/kprobe is needed.
//!
//! | program           | hook                              | event                           |
//! |-------------------|-----------------------------------|---------------------------------|
//! | tr_set_state      | sock:inet_sock_set_state          | STATE_CHANGE; learns owners     |
//! | tr_retransmit(_e) | tcp:tcp_retransmit_skb            | RETRANSMIT / RETRANSMIT_FAILED  |
//! | tr_synack         | tcp:tcp_retransmit_synack         | RETRANSMIT (SYN_ACK)            |
//! | tr_send_reset(_r) | tcp:tcp_send_reset                | RESET_SENT                      |
//! | tr_recv_reset     | tcp:tcp_receive_reset             | RESET_RECEIVED                  |
//! | tr_error_report   | sock:inet_sk_error_report         | ERROR_REPORT                    |
//! | tr_destroy        | tcp:tcp_destroy_sock              | DESTROY                         |
//! | tr_timer_entry    | timer:timer_expire_entry          | (opens a TCP timer bracket)     |
//! | tr_timer_exit     | timer:timer_expire_exit           | KEEPALIVE_PROBE / ZERO_WINDOW_PROBE |
//! | tr_send_len/recv_len | sock:sock_{send,recv}_length   | (learns owners of accepted sockets) |
//!
//! The `_e` / `_r` variants are for kernels whose tracepoint has the extra `err` (6.17+) or
//! `reason` (6.10+) argument; the loader picks the one matching the kernel's BTF.
// Built for the host too (workspace clippy): there it is an empty program.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

mod emit;
mod kernel;
mod socket;

use aya_ebpf::{
    EbpfContext,
    helpers::generated::{bpf_get_socket_cookie, bpf_skc_to_tcp_sock},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use tracer_common::{TimerBracket, class, kind, pending, stat, timer};

use crate::{
    emit::{
        PROBES_REPORTED, TIMER, count, emit, forget_owner, inherit_listener_owner,
        remember_io_owner, remember_listener, remember_owner,
    },
    kernel::{Access, Copied, Typed, config, read},
    socket::{reset_reply_id, sock_id, state},
};

/// Argument `n` as a plain number (a probe-read copy): the verifier forbids container_of
/// arithmetic on typed pointers, and a copy is a scalar. Used only on rare paths.
#[inline(always)]
fn arg_addr(ctx: &BtfTracePointContext, n: usize) -> u64 {
    Copied.load::<u64>(ctx.as_ptr() as u64 + 8 * n as u64)
}

/// The socket cookie of a BTF-typed socket pointer (0 for null).
#[inline(always)]
fn cookie_of(sk: u64) -> u64 {
    if sk == 0 {
        return 0;
    }
    unsafe { bpf_get_socket_cookie(sk as *mut _) }
}

/// The same socket as a full `tcp_sock`, or 0 for anything else (request and timewait
/// mini-sockets, other protocols). Doubles as the "is this TCP" check.
#[inline(always)]
fn as_tcp_sock(sk: u64) -> u64 {
    if sk == 0 {
        return 0;
    }
    unsafe { bpf_skc_to_tcp_sock(sk as *mut _) as u64 }
}

/// The cookie of a socket reached through memory (a timer), where the helper cannot be
/// used: the stored `skc_cookie`, set once anything asked for it (our state-change program,
/// sock_diag). 0 when never generated; userspace then keys the socket by its tuple.
#[inline(always)]
fn stored_cookie(sk: u64) -> u64 {
    read(Copied, sk, config!(skc_cookie))
}

#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn tr_set_state(ctx: BtfTracePointContext) -> i32 {
    let sk: u64 = ctx.arg(0);
    let tp = as_tcp_sock(sk);
    if tp == 0 {
        return 0;
    }
    let old: i32 = ctx.arg(1);
    let new: i32 = ctx.arg(2);
    let cookie = cookie_of(sk);
    let id = sock_id(Typed, sk, tp);
    // These transitions happen in a system call of the socket's owner.
    let owner_context = matches!(
        (old, new),
        (state::CLOSE, state::SYN_SENT)
            | (state::CLOSE, state::LISTEN)
            | (state::ESTABLISHED, state::FIN_WAIT1)
            | (state::CLOSE_WAIT, state::LAST_ACK)
    );
    if owner_context {
        if let Some(owner) = remember_owner(cookie)
            && new == state::LISTEN
        {
            remember_listener(id.netns, id.sport, &owner);
        }
    } else if old == state::LISTEN && new == state::SYN_RECV {
        inherit_listener_owner(cookie, id.netns, id.sport);
    }
    emit(Typed, kind::STATE_CHANGE, sk, tp, cookie, &id, |ev| {
        ev.old_state = old as u8;
        ev.state = new as u8;
    });
    0
}

/// Which retransmit this is, from the timer running on this CPU and the congestion state.
#[inline(always)]
fn classify_retransmit(ev_timer: u8, ev_pending: u8, ev_state: u8, ca_state: u8) -> u8 {
    if ev_state == state::SYN_SENT as u8 {
        return class::SYN;
    }
    if ev_timer == timer::WRITE {
        return match ev_pending {
            pending::RETRANS => class::RTO,
            pending::LOSS_PROBE => class::TLP,
            pending::REO_TIMEOUT => class::RACK_TIMEOUT,
            _ => class::UNKNOWN,
        };
    }
    match ca_state {
        // TCP_CA_Loss: after an RTO, ACK-clocked (or deferred) go-back-N.
        4 => class::LOSS_RECOVERY,
        // TCP_CA_Disorder / TCP_CA_Recovery: dupACK / SACK driven.
        1 | 3 => class::FAST,
        _ => class::UNKNOWN,
    }
}

#[inline(always)]
fn on_retransmit(ctx: &BtfTracePointContext, err: i32) {
    let sk: u64 = ctx.arg(0);
    let skb: u64 = ctx.arg(1);
    let tp = as_tcp_sock(sk);
    let id = sock_id(Typed, sk, tp);
    let event_kind = if err == 0 {
        kind::RETRANSMIT
    } else {
        kind::RETRANSMIT_FAILED
    };
    let segs = if skb == 0 {
        1
    } else {
        read(Typed, skb, config!(skb_tcp_gso_segs)).max(1) as u32
    };
    emit(Typed, event_kind, sk, tp, cookie_of(sk), &id, |ev| {
        ev.err = err;
        ev.segs = segs;
        ev.class = classify_retransmit(ev.timer, ev.timer_pending, ev.state, ev.ca_state);
    });
}

#[btf_tracepoint(function = "tcp_retransmit_skb")]
pub fn tr_retransmit(ctx: BtfTracePointContext) -> i32 {
    on_retransmit(&ctx, 0);
    0
}

#[btf_tracepoint(function = "tcp_retransmit_skb")]
pub fn tr_retransmit_e(ctx: BtfTracePointContext) -> i32 {
    let err: i64 = ctx.arg(2);
    on_retransmit(&ctx, err as i32);
    0
}

#[btf_tracepoint(function = "tcp_retransmit_synack")]
pub fn tr_synack(ctx: BtfTracePointContext) -> i32 {
    // arg 0 is the listener; the connection is the request socket (arg 1).
    let req: u64 = ctx.arg(1);
    let id = sock_id(Typed, req, 0);
    emit(Typed, kind::RETRANSMIT, req, 0, cookie_of(req), &id, |ev| {
        ev.class = class::SYN_ACK;
        ev.segs = 1;
    });
    0
}

#[inline(always)]
fn on_send_reset(ctx: &BtfTracePointContext, reason: u32) {
    let sk: u64 = ctx.arg(0);
    let tp = as_tcp_sock(sk);
    let id = if sk != 0 {
        sock_id(Typed, sk, tp)
    } else {
        let skb: u64 = ctx.arg(1);
        if skb == 0 {
            return;
        }
        match reset_reply_id(skb) {
            Some(id) => id,
            None => return,
        }
    };
    emit(Typed, kind::RESET_SENT, sk, tp, cookie_of(sk), &id, |ev| {
        ev.reason = reason;
    });
}

#[btf_tracepoint(function = "tcp_send_reset")]
pub fn tr_send_reset(ctx: BtfTracePointContext) -> i32 {
    on_send_reset(&ctx, u32::MAX);
    0
}

#[btf_tracepoint(function = "tcp_send_reset")]
pub fn tr_send_reset_r(ctx: BtfTracePointContext) -> i32 {
    let reason: u64 = ctx.arg(2);
    on_send_reset(&ctx, reason as u32);
    0
}

#[btf_tracepoint(function = "tcp_receive_reset")]
pub fn tr_recv_reset(ctx: BtfTracePointContext) -> i32 {
    let sk: u64 = ctx.arg(0);
    let tp = as_tcp_sock(sk);
    let id = sock_id(Typed, sk, tp);
    emit(
        Typed,
        kind::RESET_RECEIVED,
        sk,
        tp,
        cookie_of(sk),
        &id,
        |_| {},
    );
    0
}

#[btf_tracepoint(function = "inet_sk_error_report")]
pub fn tr_error_report(ctx: BtfTracePointContext) -> i32 {
    let sk: u64 = ctx.arg(0);
    let tp = as_tcp_sock(sk);
    if tp == 0 {
        return 0;
    }
    let id = sock_id(Typed, sk, tp);
    emit(
        Typed,
        kind::ERROR_REPORT,
        sk,
        tp,
        cookie_of(sk),
        &id,
        |ev| {
            ev.err = ev.sk_err;
        },
    );
    0
}

#[btf_tracepoint(function = "tcp_destroy_sock")]
pub fn tr_destroy(ctx: BtfTracePointContext) -> i32 {
    let sk: u64 = ctx.arg(0);
    let tp = as_tcp_sock(sk);
    let cookie = cookie_of(sk);
    let id = sock_id(Typed, sk, tp);
    emit(Typed, kind::DESTROY, sk, tp, cookie, &id, |_| {});
    forget_owner(cookie, sk);
    0
}

/// Runs for every kernel timer in the system: one typed load and two compares, nothing
/// else, unless the callback is one of TCP's.
#[btf_tracepoint(function = "timer_expire_entry")]
pub fn tr_timer_entry(ctx: BtfTracePointContext) -> i32 {
    let timer_list: u64 = ctx.arg(0);
    let function = read(Typed, timer_list, config!(timer_function));
    let (kind_of_timer, member_offset) = if function == config!(fn_tcp_keepalive_timer) {
        (timer::KEEPALIVE, config!(sk_timer).offset)
    } else if function == config!(fn_tcp_write_timer) {
        (timer::WRITE, config!(icsk_retransmit_timer).offset)
    } else {
        return 0;
    };
    if function == 0 {
        return 0;
    }
    // container_of: the socket embeds this timer.
    let sk = arg_addr(&ctx, 0) - u64::from(member_offset);
    let probes_out = read(Copied, sk, config!(icsk_probes_out)) as u8;
    let pending = read(Copied, sk, config!(icsk_pending)) as u8;
    reconcile_probes(sk, probes_out, kind_of_timer, pending);
    let opened = TimerBracket {
        sk,
        timer: kind_of_timer,
        pending,
        probes_out,
        _pad: [0; 5],
    };
    if let Some(bracket) = TIMER.get_ptr_mut(0) {
        // SAFETY: this CPU's slot; timers do not nest on one CPU.
        unsafe { *bracket = opened };
        count(stat::TIMER_BRACKETS);
    }
    0
}

/// Probes sent since the last one reported for this socket, whose own timer run went
/// unseen: reported now, so that probe numbers never skip.
#[inline(always)]
fn reconcile_probes(sk: u64, probes_out: u8, timer_kind: u8, pending: u8) {
    let Some(last) = PROBES_REPORTED.get_ptr_mut(sk) else {
        return;
    };
    // SAFETY: a value slot of this map.
    let last = unsafe { &mut *last };
    if probes_out < *last {
        // Answered: the count started over.
        *last = probes_out;
        return;
    }
    let event_kind = if timer_kind == timer::KEEPALIVE {
        kind::KEEPALIVE_PROBE
    } else if pending == pending::PROBE0 {
        kind::ZERO_WINDOW_PROBE
    } else {
        return;
    };
    // Bounded: more than a few unseen runs in a row does not happen.
    for _ in 0..4 {
        if *last >= probes_out {
            break;
        }
        *last += 1;
        let number = *last;
        count(stat::PROBES_SEEN);
        count(stat::PROBES_LATE);
        emit(
            Copied,
            event_kind,
            sk,
            sk,
            stored_cookie(sk),
            &sock_id(Copied, sk, sk),
            |ev| {
                ev.timer = timer_kind;
                ev.probes_out = number;
            },
        );
    }
}

/// Closes the bracket; a rise of icsk_probes_out inside it is one probe sent.
#[btf_tracepoint(function = "timer_expire_exit")]
pub fn tr_timer_exit(_ctx: BtfTracePointContext) -> i32 {
    let Some(bracket) = TIMER.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: this CPU's slot.
    let bracket = unsafe { &mut *bracket };
    let sk = bracket.sk;
    if sk == 0 {
        return 0;
    }
    bracket.sk = 0;
    let probes_now = read(Copied, sk, config!(icsk_probes_out)) as u8;
    if probes_now <= bracket.probes_out {
        return 0;
    }
    count(stat::PROBES_SEEN);
    let event_kind = match (bracket.timer, bracket.pending) {
        (timer::KEEPALIVE, _) => kind::KEEPALIVE_PROBE,
        (timer::WRITE, pending::PROBE0) => kind::ZERO_WINDOW_PROBE,
        _ => return 0,
    };
    let (timer_kind, timer_pending) = (bracket.timer, bracket.pending);
    let id = sock_id(Copied, sk, sk);
    emit(Copied, event_kind, sk, sk, stored_cookie(sk), &id, |ev| {
        ev.timer = timer_kind;
        ev.timer_pending = timer_pending;
    });
    let _ = PROBES_REPORTED.insert(sk, probes_now, 0);
    0
}

/// sendmsg/recvmsg run in the owner's context: the way accepted sockets get their owner.
/// Runs for every send and receive on the host, so the common case (same socket, same
/// process as last time on this CPU) costs one map lookup.
#[inline(always)]
fn learn_owner_from_io(ctx: &BtfTracePointContext) {
    // A call that moved no data (EAGAIN from a polling server) teaches nothing new.
    let moved: i64 = ctx.arg(1);
    if moved as i32 <= 0 {
        return;
    }
    let sk: u64 = ctx.arg(0);
    remember_io_owner(sk, || {
        if as_tcp_sock(sk) != 0 {
            cookie_of(sk)
        } else {
            0
        }
    });
}

#[btf_tracepoint(function = "sock_send_length")]
pub fn tr_send_len(ctx: BtfTracePointContext) -> i32 {
    learn_owner_from_io(&ctx);
    0
}

#[btf_tracepoint(function = "sock_recv_length")]
pub fn tr_recv_len(ctx: BtfTracePointContext) -> i32 {
    learn_owner_from_io(&ctx);
    0
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
