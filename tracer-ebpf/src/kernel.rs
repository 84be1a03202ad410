//! Reading kernel memory through offsets the loader resolved from BTF.
//!
//! Rust emits no CO-RE relocations, so no struct layout is compiled in: every member is a
//! [`FieldLoc`] in the read-only `CONFIG` global, which the loader fills from
//! /sys/kernel/btf/vmlinux before loading. The map is frozen, so the verifier treats those
//! values as constants and prunes branches on absent members.
//!
//! Two ways to reach memory, chosen per call site:
//! - [`Typed`]: a plain load through a pointer the verifier has typed from BTF (a tp_btf
//!   argument, `bpf_skc_to_tcp_sock()`'s result, or a pointer loaded through one). The
//!   verifier checks the offset against the kernel's BTF and turns it into a fault-tolerant
//!   load: a few nanoseconds. Used on every hot path.
//! - [`Copied`]: `bpf_probe_read_kernel()`, for addresses that are plain numbers to the
//!   verifier (a socket found from its timer, packet headers). Slower; used on rare paths.

use aya_ebpf::helpers::bpf_probe_read_kernel;
use tracer_common::{Config, FieldLoc};

#[unsafe(no_mangle)]
pub static CONFIG: Config = unsafe { core::mem::zeroed() };

/// One member of `CONFIG`, read volatile so the compiler cannot fold the zero initialiser.
macro_rules! config {
    ($field:ident) => {
        unsafe { core::ptr::read_volatile(&raw const $crate::kernel::CONFIG.$field) }
    };
}
pub(crate) use config;

pub trait Access: Copy {
    /// Loads a `T` at `addr`; 0 when the memory cannot be read.
    fn load<T: Copy + Default>(self, addr: u64) -> T;
}

/// Direct loads through a BTF-typed pointer (see the module documentation).
#[derive(Clone, Copy)]
pub struct Typed;

impl Access for Typed {
    #[inline(always)]
    fn load<T: Copy + Default>(self, addr: u64) -> T {
        // SAFETY: the verifier checks this access against BTF and makes it fault-tolerant.
        unsafe { core::ptr::read_volatile(addr as *const T) }
    }
}

/// `bpf_probe_read_kernel()` copies, for addresses the verifier sees as numbers.
#[derive(Clone, Copy)]
pub struct Copied;

impl Access for Copied {
    #[inline(always)]
    fn load<T: Copy + Default>(self, addr: u64) -> T {
        // SAFETY: bpf_probe_read_kernel tolerates any address; a fault yields Err.
        unsafe { bpf_probe_read_kernel(addr as *const T) }.unwrap_or_default()
    }
}

/// Reads the member at `loc` of the object at `base`; 0 when absent or unreadable.
#[inline(always)]
pub fn read<A: Access>(access: A, base: u64, loc: FieldLoc) -> u64 {
    let addr = base.wrapping_add(loc.offset as u64);
    let value = match loc.size {
        0 => return 0,
        1 => u64::from(access.load::<u8>(addr)),
        2 => u64::from(access.load::<u16>(addr)),
        4 => u64::from(access.load::<u32>(addr)),
        _ => access.load::<u64>(addr),
    };
    if loc.bit_width == 0 {
        value
    } else {
        (value >> loc.bit_shift) & ((1u64 << loc.bit_width) - 1)
    }
}

/// Reads 16 bytes (an IPv6 address) at `loc` of `base`, as two 8-byte loads.
#[inline(always)]
pub fn read16<A: Access>(access: A, base: u64, loc: FieldLoc) -> [u8; 16] {
    let mut out = [0u8; 16];
    if loc.size == 0 {
        return out;
    }
    let addr = base.wrapping_add(loc.offset as u64);
    out[..8].copy_from_slice(&access.load::<u64>(addr).to_ne_bytes());
    out[8..].copy_from_slice(&access.load::<u64>(addr + 8).to_ne_bytes());
    out
}
