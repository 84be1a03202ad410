//! Keepalive and zero-window probes, and which TCP timer is running, from the
//! `timer:timer_expire_entry` / `timer_expire_exit` bracket around every kernel timer
//! callback.
//!
//! No tracepoint marks a keepalive probe. Between the entry and the exit of
//! `tcp_keepalive_timer` (on `icsk_keepalive_timer`, or `sk_timer` on kernels that have not
//! moved it), `icsk_probes_out` rising is one probe sent;
//! the same on `tcp_write_timer` with ICSK_TIME_PROBE0 pending is a zero-window probe. The
//! bracket also tells other programs whether their event happens inside a TCP timer (RTO
//! and TLP retransmits, timer deaths). Entry runs for every timer in the system, so it does
//! one typed load and two compares unless the callback is one of TCP's.

use aya_ebpf::{
    helpers::generated::bpf_ktime_get_boot_ns,
    macros::{btf_tracepoint, map},
    maps::{Array, LruHashMap, PerCpuArray},
    programs::BtfTracePointContext,
};
use tracer_common::{TimerBracket, kind, pending, stat, timer, timer_callback};

use crate::{
    access::{Ptr, TcpSockPtr, Typed, arg_value, config},
    emit::{Subject, add, emit},
    socket::{sock_id, stored_cookie},
};

/// Kernel addresses of `tcp_keepalive_timer` and `tcp_write_timer` ([`timer_callback`]).
#[map]
static TIMER_CALLBACKS: Array<[u64; timer_callback::COUNT]> = Array::with_max_entries(1, 0);

/// Learns TCP's timer callbacks from a socket's own timers (set up for every TCP socket),
/// so that no kernel symbol table is needed. A few loads once known.
#[inline(always)]
pub fn learn_callbacks(tp: TcpSockPtr<Typed>) {
    let Some(known) = TIMER_CALLBACKS.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: the map's only value; every writer stores the same addresses.
    let known = unsafe { &mut *known };
    if known[timer_callback::KEEPALIVE] != 0 && known[timer_callback::WRITE] != 0 {
        return;
    }
    let function = config!(timer_function).offset;
    let member = |timer: u32| {
        let mut loc = config!(timer_function);
        loc.offset = timer + function;
        tp.0.read(loc)
    };
    let keepalive = member(config!(keepalive_timer).offset);
    let write = member(config!(icsk_retransmit_timer).offset);
    if keepalive != 0 && write != 0 {
        *known = [keepalive, write];
    }
}

/// The TCP timer callback running on this CPU, if any. Timer callbacks do not nest on a CPU.
#[map]
static TIMER: PerCpuArray<TimerBracket> = PerCpuArray::with_max_entries(1, 0);

/// Socket address → the highest probe number reported for it. A probe whose timer run went
/// unseen is reported with the socket's next run instead of never. Cleared at destroy.
#[map]
static PROBES_REPORTED: LruHashMap<u64, u8> = LruHashMap::with_max_entries(65536, 0);

/// The TCP timer (kind, pending event) running on this CPU for the socket at `sk`.
#[inline(always)]
pub fn running_for(sk: u64) -> Option<(u8, u8)> {
    let bracket = TIMER.get(0)?;
    (bracket.sk == sk).then_some((bracket.timer, bracket.pending))
}

/// The socket at `sk` is gone.
#[inline(always)]
pub fn forget_probes(sk: u64) {
    // Looked up first: most sockets never sent a probe, and a lookup takes no lock where a
    // delete takes the bucket's.
    // SAFETY: the value is only tested for presence.
    if unsafe { PROBES_REPORTED.get(sk) }.is_some() {
        let _ = PROBES_REPORTED.remove(sk);
    }
}

#[btf_tracepoint(function = "timer_expire_entry")]
pub fn tr_timer_entry(ctx: BtfTracePointContext) -> i32 {
    let Some(timer_list) = Ptr::<Typed>::arg(&ctx, 0) else {
        return 0;
    };
    let function = timer_list.read(config!(timer_function));
    let Some(callbacks) = TIMER_CALLBACKS.get(0) else {
        return 0;
    };
    if function == 0 {
        return 0;
    }
    let (timer_kind, member_offset) = if function == callbacks[timer_callback::KEEPALIVE] {
        (timer::KEEPALIVE, config!(keepalive_timer).offset)
    } else if function == callbacks[timer_callback::WRITE] {
        (timer::WRITE, config!(icsk_retransmit_timer).offset)
    } else {
        return 0;
    };
    let Some(tp) = TcpSockPtr::embedding(arg_value(&ctx, 0), member_offset) else {
        return 0;
    };
    let sk = tp.0.addr();
    let probes_out = tp.0.read(config!(icsk_probes_out)) as u8;
    // SAFETY: a value of this map, copied out at once.
    let reported = unsafe { PROBES_REPORTED.get(sk) }.copied();
    let late_from = match reported {
        Some(last) if last < probes_out => last + 1,
        _ => 0,
    };
    let opened = TimerBracket {
        sk,
        // SAFETY: no preconditions.
        ts_ns: unsafe { bpf_ktime_get_boot_ns() },
        timer: timer_kind,
        pending: tp.0.read(config!(icsk_pending)) as u8,
        probes_out,
        late_from,
        _pad: [0; 4],
    };
    if let Some(bracket) = TIMER.get_ptr_mut(0) {
        // SAFETY: this CPU's slot.
        unsafe { *bracket = opened };
        add(stat::TIMER_BRACKETS, 1);
    }
    0
}

/// Closes the bracket and reports the probes this run sent, with any earlier ones whose
/// runs went unseen.
#[btf_tracepoint(function = "timer_expire_exit")]
pub fn tr_timer_exit(_ctx: BtfTracePointContext) -> i32 {
    let Some(slot) = TIMER.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: this CPU's slot.
    let bracket = unsafe { *slot };
    if bracket.sk == 0 {
        return 0;
    }
    // SAFETY: as above.
    unsafe { (*slot).sk = 0 };
    let event_kind = match (bracket.timer, bracket.pending) {
        (timer::KEEPALIVE, _) => kind::KEEPALIVE_PROBE,
        (timer::WRITE, pending::PROBE0) => kind::ZERO_WINDOW_PROBE,
        _ => return 0,
    };
    let Some(tp) = TcpSockPtr::embedding(bracket.sk, 0) else {
        return 0;
    };
    let probes_now = tp.0.read(config!(icsk_probes_out)) as u8;
    let first = if bracket.late_from != 0 {
        bracket.late_from
    } else {
        bracket.probes_out.saturating_add(1)
    };
    if probes_now < first {
        return 0;
    }
    add(stat::PROBES_SEEN, u64::from(probes_now - first) + 1);
    if bracket.late_from != 0 {
        add(
            stat::PROBES_LATE,
            u64::from(bracket.probes_out.saturating_sub(bracket.late_from)) + 1,
        );
    }
    let subject = Subject {
        sk: Some(tp.sock()),
        tp: Some(tp),
        cookie: stored_cookie(tp.sock()),
        id: sock_id(tp.sock(), Some(tp)),
    };
    emit(event_kind, &subject, |ev| {
        ev.timer = bracket.timer;
        ev.timer_pending = bracket.pending;
        ev.probes_out = probes_now;
        ev.probe_first = first;
        if bracket.late_from != 0 {
            // Stamped at the start of this run: before anything this run decided.
            ev.ts_ns = bracket.ts_ns;
        }
    });
    let _ = PROBES_REPORTED.insert(bracket.sk, probes_now, 0);
    0
}
