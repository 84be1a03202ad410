//! Twins for programs a softirq can interrupt.
//!
//! BPF runs a tracing program at most once per CPU at a time: a hit on a CPU where the same
//! program is already running (a timer softirq on interrupt exit, while the program runs in
//! process context for a `connect()`) is skipped, and only counted in that program's
//! `recursion_misses`. A death inside a TCP timer could be lost that way. So each such hook
//! has two programs on its tracepoint, attached in this order, and every hit runs both
//! unless the kernel skips one:
//! - the primary handles every hit it runs for, and marks it on its CPU (the tracepoint's
//!   arguments) when it starts and again when it ends;
//! - the twin handles a hit only when the mark is not that hit's: the primary did not run
//!   for it, because the kernel skipped it. It counts those in `RESCUED`.
//!
//! There is no window: a hit nested before the primary's first store, or after its last,
//! still finds another hit's mark. On kernels without the recursion guard the nested
//! primary runs itself and the outer primary's final store restores its own mark, so the
//! twin never doubles an event. Only a hit identical to the one before (same arguments)
//! that is also skipped could be missed, and reported as lost.

use aya_ebpf::{macros::map, maps::PerCpuArray};
use tracer_common::{hook, stat};

use crate::emit::count;

/// A hit: the tracepoint's arguments that tell it from others (unused words 0). Pointers
/// among them are stored as they are: the verifier allows no arithmetic on them, and a copy
/// read back from a map is a plain number.
pub type Hit = [u64; 3];

/// Per CPU and hook: the last hit the primary ran for.
#[map]
static HANDLED: PerCpuArray<Hit> = PerCpuArray::with_max_entries(hook::COUNT, 0);

/// Per CPU and hook: the twin's copy of the hit at hand, to compare as numbers.
#[map]
static AT_HAND: PerCpuArray<Hit> = PerCpuArray::with_max_entries(hook::COUNT, 0);

/// Per CPU and hook: hits the twin handled because the kernel skipped the primary.
#[map]
static RESCUED: PerCpuArray<u64> = PerCpuArray::with_max_entries(hook::COUNT, 0);

#[inline(always)]
fn store(map: &PerCpuArray<Hit>, hook: u32, hit: &Hit) -> Option<*mut Hit> {
    let slot = map.get_ptr_mut(hook)?;
    // SAFETY: this CPU's slot of a per-CPU array; volatile, so that the store before the
    // handler is not merged with the one after it.
    unsafe { core::ptr::write_volatile(slot, *hit) };
    Some(slot)
}

#[inline(always)]
pub fn primary(hook: u32, hit: Hit, handle: impl FnOnce()) {
    store(&HANDLED, hook, &hit);
    handle();
    store(&HANDLED, hook, &hit);
}

#[inline(always)]
pub fn nested(hook: u32, hit: Hit, handle: impl FnOnce()) {
    let (Some(at_hand), Some(handled)) = (store(&AT_HAND, hook, &hit), HANDLED.get(hook)) else {
        return;
    };
    // SAFETY: this CPU's slot, written just above.
    let at_hand = unsafe { core::ptr::read_volatile(at_hand) };
    if at_hand == *handled {
        return;
    }
    if let Some(rescued) = RESCUED.get_ptr_mut(hook) {
        // SAFETY: this CPU's slot.
        unsafe { *rescued += 1 };
    }
    count(stat::RESCUED);
    handle();
}

/// Defines the primary program of a hook and its twin; both call `$handler(&ctx)`, and
/// `$hit(&ctx)` names the hit.
macro_rules! programs_with_twin {
    ($hook:expr, $tracepoint:tt, $primary:ident, $twin:ident, $hit:expr, $handler:expr) => {
        #[aya_ebpf::macros::btf_tracepoint(function = $tracepoint)]
        pub fn $primary(ctx: aya_ebpf::programs::BtfTracePointContext) -> i32 {
            $crate::nesting::primary($hook, ($hit)(&ctx), || ($handler)(&ctx));
            0
        }

        #[aya_ebpf::macros::btf_tracepoint(function = $tracepoint)]
        pub fn $twin(ctx: aya_ebpf::programs::BtfTracePointContext) -> i32 {
            $crate::nesting::nested($hook, ($hit)(&ctx), || ($handler)(&ctx));
            0
        }
    };
}
pub(crate) use programs_with_twin;

/// The hit of a tracepoint whose first `n` arguments (n ≤ 3) identify it.
macro_rules! hit_of_args {
    ($n:literal) => {
        |ctx: &aya_ebpf::programs::BtfTracePointContext| {
            let mut hit: $crate::nesting::Hit = [0; 3];
            for (i, word) in hit.iter_mut().enumerate().take($n) {
                *word = ctx.arg(i);
            }
            hit
        }
    };
}
pub(crate) use hit_of_args;
