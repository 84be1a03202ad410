//! `tcp:tcp_send_reset` and `tcp:tcp_receive_reset`: resets in both directions, with the
//! kernel's reason where the tracepoint carries one (6.10+).

use aya_ebpf::programs::BtfTracePointContext;
use tracer_common::{hook, kind};

use crate::{
    access::{SkbPtr, SockPtr, TcpSockPtr, Typed},
    emit::{Subject, emit},
    nesting::{hit_of_args, programs_with_twin},
    socket::{cookie_of, reset_reply_id, sock_id},
};

programs_with_twin!(
    hook::SEND_RESET,
    "tcp_send_reset",
    tr_send_reset,
    tr_send_reset_nested,
    hit_of_args!(2),
    |ctx| on_send_reset(ctx, u32::MAX)
);
programs_with_twin!(
    hook::SEND_RESET,
    "tcp_send_reset",
    tr_send_reset_r,
    tr_send_reset_r_nested,
    hit_of_args!(2),
    |ctx: &BtfTracePointContext| on_send_reset(ctx, ctx.arg::<u64>(2) as u32)
);
programs_with_twin!(
    hook::RECV_RESET,
    "tcp_receive_reset",
    tr_recv_reset,
    tr_recv_reset_nested,
    hit_of_args!(1),
    on_receive_reset
);

#[inline(always)]
fn on_send_reset(ctx: &BtfTracePointContext, reason: u32) {
    let subject: Subject<Typed> = match SockPtr::arg(ctx, 0) {
        Some(sk) => {
            let tp = sk.as_tcp();
            Subject {
                sk: Some(sk),
                tp,
                cookie: cookie_of(sk),
                id: sock_id(sk, tp),
            }
        }
        // A reset for a segment that matched no socket: named by the segment's tuple.
        None => {
            let Some(id) = SkbPtr::arg(ctx, 1).and_then(reset_reply_id) else {
                return;
            };
            Subject {
                sk: None,
                tp: None::<TcpSockPtr<Typed>>,
                cookie: 0,
                id,
            }
        }
    };
    emit(kind::RESET_SENT, &subject, |ev| ev.reason = reason);
}

#[inline(always)]
fn on_receive_reset(ctx: &BtfTracePointContext) {
    let Some(sk) = SockPtr::arg(ctx, 0) else {
        return;
    };
    let tp = sk.as_tcp();
    let subject = Subject {
        sk: Some(sk),
        tp,
        cookie: cookie_of(sk),
        id: sock_id(sk, tp),
    };
    emit(kind::RESET_RECEIVED, &subject, |_| {});
}
