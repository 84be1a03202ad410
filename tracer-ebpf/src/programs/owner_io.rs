//! `sock:sock_send_length` / `sock:sock_recv_length` (6.4+): sendmsg/recvmsg run in the
//! owner's context, the way accepted sockets get their owner. They run for every send and
//! receive on the host, so the common case (same socket, same process as last time on this
//! CPU) costs one map lookup.

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};

use crate::{access::SockPtr, owner::remember_io_owner, socket::cookie_of};

#[inline(always)]
fn learn_owner_from_io(ctx: &BtfTracePointContext) {
    // A call that moved no data (EAGAIN from a polling server) teaches nothing new.
    let moved: i64 = ctx.arg(1);
    if moved as i32 <= 0 {
        return;
    }
    let Some(sk) = SockPtr::arg(ctx, 0) else {
        return;
    };
    remember_io_owner(sk, || match sk.as_tcp() {
        Some(_) => cookie_of(sk),
        None => 0,
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
