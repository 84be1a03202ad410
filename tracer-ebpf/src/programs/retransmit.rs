//! `tcp:tcp_retransmit_skb` and `tcp:tcp_retransmit_synack`: every retransmitted segment,
//! classified by the timer running on this CPU and the congestion state.

use aya_ebpf::programs::BtfTracePointContext;
use tracer_common::{class, hook, kind, pending, timer};

use crate::{
    access::{SkbPtr, SockPtr, config},
    emit::{Subject, emit},
    nesting::{hit_of_args, programs_with_twin},
    socket::{cookie_of, sock_id, state},
};

// Kernels before 6.17 pass (sk, skb); 6.17+ add the attempt's `err` (failed attempts fire
// too). The loader picks the variant matching the tracepoint's arity.
programs_with_twin!(
    hook::RETRANSMIT,
    "tcp_retransmit_skb",
    tr_retransmit,
    tr_retransmit_nested,
    hit_of_args!(2),
    |ctx| on_retransmit(ctx, 0)
);
programs_with_twin!(
    hook::RETRANSMIT,
    "tcp_retransmit_skb",
    tr_retransmit_e,
    tr_retransmit_e_nested,
    hit_of_args!(2),
    |ctx: &BtfTracePointContext| on_retransmit(ctx, ctx.arg::<i64>(2) as i32)
);
programs_with_twin!(
    hook::SYNACK,
    "tcp_retransmit_synack",
    tr_synack,
    tr_synack_nested,
    hit_of_args!(2),
    on_synack
);

/// Which retransmit this is, from the timer running on this CPU and the congestion state.
#[inline(always)]
fn classify(ev_timer: u8, ev_pending: u8, ev_state: u8, ca_state: u8) -> u8 {
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
    let Some(sk) = SockPtr::arg(ctx, 0) else {
        return;
    };
    let tp = sk.as_tcp();
    let segs = SkbPtr::arg(ctx, 1).map_or(1, |skb| {
        (skb.0.read(config!(skb_tcp_gso_segs)) as u32).max(1)
    });
    let event_kind = if err == 0 {
        kind::RETRANSMIT
    } else {
        kind::RETRANSMIT_FAILED
    };
    let subject = Subject {
        sk: Some(sk),
        tp,
        cookie: cookie_of(sk),
        id: sock_id(sk, tp),
    };
    emit(event_kind, &subject, |ev| {
        ev.err = err;
        ev.segs = segs;
        ev.class = classify(ev.timer, ev.timer_pending, ev.state, ev.ca_state);
    });
}

#[inline(always)]
fn on_synack(ctx: &BtfTracePointContext) {
    // arg 0 is the listener; the connection is the request socket (arg 1).
    let Some(req) = SockPtr::arg(ctx, 1) else {
        return;
    };
    let subject = Subject {
        sk: Some(req),
        tp: None,
        cookie: cookie_of(req),
        id: sock_id(req, None),
    };
    emit(kind::RETRANSMIT, &subject, |ev| {
        ev.class = class::SYN_ACK;
        ev.segs = 1;
    });
}
