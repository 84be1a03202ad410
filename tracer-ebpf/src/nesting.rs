//! Twins for programs a softirq can interrupt.
//!
//! BPF runs a tracing program at most once per CPU at a time: a hit on a CPU where the same
//! program is already running (a timer softirq on interrupt exit, while the program runs in
//! process context for a `connect()`) is skipped, and only counted in that program's
//! `recursion_misses`. A death inside a TCP timer could be lost that way. So each such hook
//! has two programs on its tracepoint, attached in this order: the primary handles every
//! hit it is allowed to run for; the twin handles exactly the hits that arrive while the
//! primary is running on this CPU (the ones the kernel skipped for the primary), and counts
//! them. On kernels without the recursion guard the nested primary runs itself and clears
//! the busy mark, so the twin never doubles an event.

use aya_ebpf::{macros::map, maps::PerCpuArray};
use tracer_common::{hook, stat};

use crate::emit::count;

/// Per CPU and hook: 1 while the primary program runs.
#[map]
static BUSY: PerCpuArray<u8> = PerCpuArray::with_max_entries(hook::COUNT, 0);

/// Per CPU and hook: hits the twin handled because the primary was busy.
#[map]
static RESCUED: PerCpuArray<u64> = PerCpuArray::with_max_entries(hook::COUNT, 0);

#[inline(always)]
pub fn primary(hook: u32, handle: impl FnOnce()) {
    let busy = BUSY.get_ptr_mut(hook);
    if let Some(busy) = busy {
        // SAFETY: this CPU's slot.
        unsafe { *busy = 1 };
    }
    handle();
    if let Some(busy) = busy {
        // SAFETY: as above.
        unsafe { *busy = 0 };
    }
}

#[inline(always)]
pub fn nested(hook: u32, handle: impl FnOnce()) {
    match BUSY.get(hook) {
        Some(1) => {}
        _ => return,
    }
    if let Some(rescued) = RESCUED.get_ptr_mut(hook) {
        // SAFETY: this CPU's slot.
        unsafe { *rescued += 1 };
    }
    count(stat::RESCUED);
    handle();
}

/// Defines the primary program of a hook and its twin; both call `$handler(&ctx)`.
macro_rules! programs_with_twin {
    ($hook:expr, $tracepoint:tt, $primary:ident, $twin:ident, $handler:expr) => {
        #[aya_ebpf::macros::btf_tracepoint(function = $tracepoint)]
        pub fn $primary(ctx: aya_ebpf::programs::BtfTracePointContext) -> i32 {
            $crate::nesting::primary($hook, || ($handler)(&ctx));
            0
        }

        #[aya_ebpf::macros::btf_tracepoint(function = $tracepoint)]
        pub fn $twin(ctx: aya_ebpf::programs::BtfTracePointContext) -> i32 {
            $crate::nesting::nested($hook, || ($handler)(&ctx));
            0
        }
    };
}
pub(crate) use programs_with_twin;
