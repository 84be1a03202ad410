//! `sock:inet_sk_error_report` (5.14+) and `tcp:tcp_destroy_sock`: the error the
//! application is told about, and the moment the kernel releases the socket (for a socket
//! the application still holds, that is at its close()).

use aya_ebpf::programs::BtfTracePointContext;
use tracer_common::{hook, kind};

use crate::{
    access::{SockPtr, config},
    emit::{Subject, emit},
    nesting::{hit_of_args, programs_with_twin},
    owner::forget_owner,
    programs::timer::forget_probes,
    socket::{cookie_of, forget_synthetic, sock_id},
};

programs_with_twin!(
    hook::ERROR_REPORT,
    "inet_sk_error_report",
    tr_error_report,
    tr_error_report_nested,
    hit_of_args!(1),
    on_error_report
);
programs_with_twin!(
    hook::DESTROY,
    "tcp_destroy_sock",
    tr_destroy,
    tr_destroy_nested,
    hit_of_args!(1),
    on_destroy
);

#[inline(always)]
fn on_error_report(ctx: &BtfTracePointContext) {
    let Some(sk) = SockPtr::arg(ctx, 0) else {
        return;
    };
    let Some(tp) = sk.as_tcp() else {
        return;
    };
    // `tcp_disconnect()` reports after a failed connect() has already taken the error:
    // a report with no error, hard or soft, tells nothing (one record of each refused
    // connect).
    if sk.0.read(config!(sk_err)) == 0 && sk.0.read(config!(sk_err_soft)) == 0 {
        return;
    }
    let subject = Subject {
        sk: Some(sk),
        tp: Some(tp),
        cookie: cookie_of(sk),
        id: sock_id(sk, Some(tp)),
    };
    emit(kind::ERROR_REPORT, &subject, |ev| ev.err = ev.sk_err);
}

#[inline(always)]
fn on_destroy(ctx: &BtfTracePointContext) {
    let Some(sk) = SockPtr::arg(ctx, 0) else {
        return;
    };
    let tp = sk.as_tcp();
    let cookie = cookie_of(sk);
    let subject = Subject {
        sk: Some(sk),
        tp,
        cookie,
        id: sock_id(sk, tp),
    };
    emit(kind::DESTROY, &subject, |_| {});
    // Everything kept per socket goes with it: its address and cookie are not reused
    // while they are remembered.
    let addr = sk.0.addr();
    forget_owner(cookie, addr);
    forget_probes(addr);
    forget_synthetic(addr);
}
