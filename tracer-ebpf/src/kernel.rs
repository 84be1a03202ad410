//! Reading kernel memory through offsets the loader resolved from BTF.
//!
//! Rust emits no CO-RE relocations, so no struct layout is compiled in: every member is a
//! [`FieldLoc`] in the read-only `CONFIG` global, which the loader fills from
//! /sys/kernel/btf/vmlinux before loading. The map is frozen, so the verifier treats those
//! values as constants and prunes branches on absent members.

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

/// Reads the member at `loc` of the object at `base`; 0 when absent or unreadable.
#[inline(always)]
pub fn read(base: u64, loc: FieldLoc) -> u64 {
    let addr = base.wrapping_add(loc.offset as u64);
    // SAFETY: bpf_probe_read_kernel tolerates any address; a fault yields Err.
    let value = unsafe {
        match loc.size {
            0 => return 0,
            1 => bpf_probe_read_kernel(addr as *const u8).map(u64::from),
            2 => bpf_probe_read_kernel(addr as *const u16).map(u64::from),
            4 => bpf_probe_read_kernel(addr as *const u32).map(u64::from),
            _ => bpf_probe_read_kernel(addr as *const u64),
        }
    }
    .unwrap_or(0);
    if loc.bit_width == 0 {
        value
    } else {
        (value >> loc.bit_shift) & ((1u64 << loc.bit_width) - 1)
    }
}

/// Reads 16 bytes (an IPv6 address) at `loc` of `base`.
#[inline(always)]
pub fn read16(base: u64, loc: FieldLoc) -> [u8; 16] {
    if loc.size == 0 {
        return [0; 16];
    }
    let addr = base.wrapping_add(loc.offset as u64);
    unsafe { bpf_probe_read_kernel(addr as *const [u8; 16]) }.unwrap_or([0; 16])
}

/// Reads a plain value at an absolute kernel address.
#[inline(always)]
pub fn read_at<T: Copy + Default>(addr: u64) -> T {
    unsafe { bpf_probe_read_kernel(addr as *const T) }.unwrap_or_default()
}
