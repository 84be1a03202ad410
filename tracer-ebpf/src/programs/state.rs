//! `sock:inet_sock_set_state`: every TCP state change, connection deaths with their error,
//! and the owners of sockets (connect, listen and close run in the owner's context).

use aya_ebpf::programs::BtfTracePointContext;
use tracer_common::{hook, kind};

use crate::{
    access::SockPtr,
    emit::{Subject, emit},
    nesting::{hit_of_args, programs_with_twin},
    owner::{inherit_listener_owner, remember_listener, remember_owner},
    programs::timer::learn_callbacks,
    socket::{cookie_of, sock_id, state},
};

programs_with_twin!(
    hook::SET_STATE,
    "inet_sock_set_state",
    tr_set_state,
    tr_set_state_nested,
    hit_of_args!(3),
    on_set_state
);

#[inline(always)]
fn on_set_state(ctx: &BtfTracePointContext) {
    let Some(sk) = SockPtr::arg(ctx, 0) else {
        return;
    };
    let Some(tp) = sk.as_tcp() else {
        return;
    };
    let old: i32 = ctx.arg(1);
    let new: i32 = ctx.arg(2);
    learn_callbacks(tp);
    let cookie = cookie_of(sk);
    let id = sock_id(sk, Some(tp));
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
    let subject = Subject {
        sk: Some(sk),
        tp: Some(tp),
        cookie,
        id,
    };
    emit(kind::STATE_CHANGE, &subject, |ev| {
        ev.old_state = old as u8;
        ev.state = new as u8;
    });
}
