//! Twins for programs a softirq can interrupt.
//!
//! BPF runs a tracing program at most once per CPU at a time: a hit on a CPU where the same
//! program is already running (a timer softirq on interrupt exit, while the program runs in
//! process context for a `connect()`) is skipped, and only counted in that program's
//! `recursion_misses`. A death inside a TCP timer could be lost that way. So each such hook
//! has two programs on its tracepoint, attached in this order, and every hit runs both
//! unless the kernel skips one:
//! - the primary claims the hit (pushes its arguments on this CPU's stack of claims for the
//!   hook) before handling it;
//! - the twin looks for the hit's claim: found, the primary ran, and the twin pops it (and
//!   any claim above it); not found, the kernel skipped the primary, and the twin handles
//!   the hit and counts it in `RESCUED`.
//!
//! Why a stack, and not a "primary is busy" flag or a single "last hit" mark: a hit can
//! nest anywhere, including before the primary's first instruction, after its last, and
//! between the primary and the twin of the hit it interrupted. A flag loses hits nested at
//! the primary's edges (they find the flag down); a single mark is overwritten by a nested
//! hit's primary, so the twin of the interrupted hit handles it a second time. With a
//! stack, a claim stays until its own twin pops it:
//! - a nested hit whose primary ran claims and pops above the interrupted hit's claim,
//!   which is untouched (the push reserves its slot before writing it);
//! - claims made while the twin itself runs (their twin is skipped) sit above the claim
//!   the twin is looking for, and go with it.
//!
//! What is left: a hit skipped for both programs (nested in the twin, or three deep) is
//! lost, and counted (`recursion_misses` minus `RESCUED`). A claim whose twin was skipped
//! stays on the stack, stale, until a twin pops a claim below it or a primary finds it older
//! than any nesting lasts; a skipped hit whose arguments equal a stale claim is taken as
//! handled, and counted the same way. On kernels without the recursion guard a nested
//! primary runs and its twin pops its own claim, so nothing is doubled.

use aya_ebpf::{helpers::generated::bpf_jiffies64, macros::map, maps::PerCpuArray};
use tracer_common::{hook, stat};

use crate::emit::count;

/// A hit: the tracepoint's arguments that tell it from others (unused words 0). Pointers
/// among them are kept as numbers: the verifier allows no arithmetic on them, and a copy
/// read back from a map is a plain number.
pub type Hit = [u64; 3];

/// Claims deeper than contexts can nest (task, softirq, hardirq, NMI) plus stale ones.
const DEPTH: usize = 8;

/// A claim older than this many jiffies (100 ms at HZ=1000, 1 s at HZ=100) is stale: no
/// program, and no interrupt nested in one, runs this long between a primary and its twin.
/// Jiffies, not a clock read: the primary pays for this on every hit, and reading the clock
/// costs as much as the rest of the claim.
const STALE_JIFFIES: u64 = 100;

#[repr(C)]
pub struct Claim {
    hit: Hit,
    at_jiffies: u64,
}

/// Per CPU and hook: the hits whose primary ran and whose twin has not run yet.
#[repr(C)]
pub struct Claims {
    depth: u64,
    claims: [Claim; DEPTH],
}

#[map]
static CLAIMS: PerCpuArray<Claims> = PerCpuArray::with_max_entries(hook::COUNT, 0);

/// Per CPU and hook: hits the twin handled because the kernel skipped the primary.
#[map]
static RESCUED: PerCpuArray<u64> = PerCpuArray::with_max_entries(hook::COUNT, 0);

// Every access to a claim stack is volatile: a nested program may change it between any
// two instructions of ours, and the compiler must neither merge nor reorder them.
#[inline(always)]
fn load<T: Copy>(p: *const T) -> T {
    // SAFETY: a pointer into this CPU's slot of a per-CPU array.
    unsafe { core::ptr::read_volatile(p) }
}

#[inline(always)]
fn store<T>(p: *mut T, value: T) {
    // SAFETY: as in `load`.
    unsafe { core::ptr::write_volatile(p, value) }
}

#[inline(always)]
pub fn primary(hook: u32, hit: Hit, handle: impl FnOnce()) {
    if let Some(claims) = CLAIMS.get_ptr_mut(hook) {
        // SAFETY: this CPU's slot; only pointers to its fields are formed.
        let (depth, slots) = unsafe { (&raw mut (*claims).depth, &raw mut (*claims).claims) };
        // SAFETY: a helper without arguments.
        let now = unsafe { bpf_jiffies64() };
        let mut at = (load(depth) as usize).min(DEPTH - 1);
        if at > 0 {
            // SAFETY: `at - 1 < DEPTH`.
            let below = load(unsafe { &raw const (*(*slots).as_ptr().add(at - 1)).at_jiffies });
            if now.wrapping_sub(below) > STALE_JIFFIES {
                at = 0;
            }
        }
        // Reserve the slot first: a hit nesting after this pushes above it.
        store(depth, at as u64 + 1);
        // SAFETY: `at < DEPTH`.
        let slot = unsafe { (*slots).as_mut_ptr().add(at) };
        // Word by word: the verifier refuses the wide copies a whole-struct store becomes.
        for (i, word) in hit.iter().enumerate() {
            // SAFETY: `i < 3`, inside the slot.
            store(
                unsafe { (&raw mut (*slot).hit).cast::<u64>().add(i) },
                *word,
            );
        }
        // SAFETY: a field of the slot above.
        store(unsafe { &raw mut (*slot).at_jiffies }, now);
    }
    handle();
}

#[inline(always)]
pub fn nested(hook: u32, hit: Hit, handle: impl FnOnce()) {
    let Some(claims) = CLAIMS.get_ptr_mut(hook) else {
        return;
    };
    // SAFETY: as in `primary`.
    let (depth, slots) = unsafe { (&raw mut (*claims).depth, &raw mut (*claims).claims) };
    let top = (load(depth) as usize).min(DEPTH);
    // The claim is the topmost equal one: claims above it were made while this twin ran.
    let mut found = None;
    for at in (0..DEPTH).rev() {
        if at < top {
            // SAFETY: `at < DEPTH`.
            let slot = unsafe { (*slots).as_ptr().add(at) };
            let word = |i: usize| {
                // SAFETY: `i < 3`, inside the slot.
                load(unsafe { (&raw const (*slot).hit).cast::<u64>().add(i) })
            };
            if word(0) == hit[0] && word(1) == hit[1] && word(2) == hit[2] {
                found = Some(at);
                break;
            }
        }
    }
    match found {
        Some(at) => store(depth, at as u64),
        None => {
            if let Some(rescued) = RESCUED.get_ptr_mut(hook) {
                store(rescued, load(rescued) + 1);
            }
            count(stat::RESCUED);
            handle();
        }
    }
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
