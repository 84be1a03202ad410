//! Reading kernel memory through offsets the loader resolved from BTF.
//!
//! Rust emits no CO-RE relocations, so no struct layout is compiled in: every member is a
//! [`FieldLoc`] in the read-only `CONFIG` global, which the loader fills from
//! /sys/kernel/btf/vmlinux before loading. The map is frozen, so the verifier treats those
//! values as constants and prunes branches on absent members and missing features.
//!
//! Every kernel object is reached through a pointer type that carries how it may be read:
//! - [`Typed`]: a plain load through a pointer the verifier has typed from BTF (a tp_btf
//!   argument, `bpf_skc_to_tcp_sock()`'s result, or a pointer loaded through one). The
//!   verifier checks the offset against the kernel's BTF and turns it into a fault-tolerant
//!   load: a few nanoseconds. Used on every hot path.
//! - [`Copied`]: `bpf_probe_read_kernel()`, for addresses that are plain numbers to the
//!   verifier (a socket found from its timer, packet headers). Slower; used on rare paths.
//!
//! A typed pointer is never null: constructors return `None` for 0, so no program has a code
//! path that loads through a null typed pointer (6.1's verifier explores that path for tp_btf
//! arguments and rejects the program if it reads there).

use aya_ebpf::{
    EbpfContext,
    helpers::generated::{bpf_probe_read_kernel, bpf_skc_to_tcp_sock},
    programs::BtfTracePointContext,
};
use tracer_common::{Config, FieldLoc};

#[unsafe(no_mangle)]
// SAFETY: Config is plain integers; all-zero is a valid value (the loader replaces it).
pub static CONFIG: Config = unsafe { core::mem::zeroed() };

/// One member of `CONFIG`, read volatile so the compiler cannot fold the zero initialiser.
macro_rules! config {
    ($field:ident) => {
        // SAFETY: CONFIG is a plain static; the read only keeps the compiler from folding it.
        unsafe { core::ptr::read_volatile(&raw const $crate::access::CONFIG.$field) }
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
        let mut value = T::default();
        copy(addr, (&raw mut value).cast(), size_of::<T>());
        value
    }
}

impl Copied {
    /// Copies `dst.len()` bytes at `addr` straight into `dst` (no temporary on the stack);
    /// zeros when the memory cannot be read.
    #[inline(always)]
    pub fn copy_into(self, addr: u64, dst: &mut [u8]) {
        copy(addr, dst.as_mut_ptr().cast(), dst.len());
    }
}

/// `bpf_probe_read_kernel()`, its result ignored: the helper zeros the destination when the
/// memory cannot be read (since 5.5), which is the answer we want. Not branching on the
/// result matters: each branch would split the verifier's paths in two (one with a known 0,
/// one with an unknown value) for everything after it, and a program with several copies
/// was verified once per combination (the drop program: 108 000 instructions, 0.2 s).
#[inline(always)]
fn copy(addr: u64, dst: *mut core::ffi::c_void, len: usize) {
    // SAFETY: bpf_probe_read_kernel tolerates any source address; `dst` is `len` bytes of
    // our stack.
    unsafe { bpf_probe_read_kernel(dst, len as u32, addr as *const core::ffi::c_void) };
}

/// A non-null address of a kernel object, read with `A`.
#[derive(Clone, Copy)]
pub struct Ptr<A: Access> {
    addr: u64,
    access: A,
}

impl<A: Access> Ptr<A> {
    #[inline(always)]
    fn new(addr: u64, access: A) -> Option<Self> {
        (addr != 0).then_some(Self { addr, access })
    }

    #[inline(always)]
    pub fn addr(self) -> u64 {
        self.addr
    }

    /// The member at `loc`; 0 when this kernel lacks it or the memory cannot be read.
    #[inline(always)]
    pub fn read(self, loc: FieldLoc) -> u64 {
        let addr = self.addr.wrapping_add(loc.offset as u64);
        let value = match loc.size {
            0 => return 0,
            1 => u64::from(self.access.load::<u8>(addr)),
            2 => u64::from(self.access.load::<u16>(addr)),
            4 => u64::from(self.access.load::<u32>(addr)),
            _ => self.access.load::<u64>(addr),
        };
        if loc.bit_width == 0 {
            value
        } else {
            (value >> loc.bit_shift) & ((1u64 << loc.bit_width) - 1)
        }
    }

    /// 16 bytes (an IPv6 address) at `loc`, as two 8-byte loads.
    #[inline(always)]
    pub fn read16(self, loc: FieldLoc) -> [u8; 16] {
        let mut out = [0u8; 16];
        if loc.size == 0 {
            return out;
        }
        let addr = self.addr.wrapping_add(loc.offset as u64);
        out[..8].copy_from_slice(&self.access.load::<u64>(addr).to_ne_bytes());
        out[8..].copy_from_slice(&self.access.load::<u64>(addr + 8).to_ne_bytes());
        out
    }

    /// The object a pointer member points to, read the same way.
    #[inline(always)]
    pub fn follow(self, loc: FieldLoc) -> Option<Self> {
        Self::new(self.read(loc), self.access)
    }
}

/// `struct sock_common` and what starts with it: full, request and timewait sockets.
#[derive(Clone, Copy)]
pub struct SockPtr<A: Access>(pub Ptr<A>);

/// A full `struct tcp_sock` (also a `sock`, `inet_sock` and `inet_connection_sock`).
#[derive(Clone, Copy)]
pub struct TcpSockPtr<A: Access>(pub Ptr<A>);

/// `struct sk_buff`.
#[derive(Clone, Copy)]
pub struct SkbPtr(pub Ptr<Typed>);

impl Ptr<Typed> {
    /// A pointer argument of a BTF tracepoint (None when the kernel passed NULL).
    #[inline(always)]
    pub fn arg(ctx: &BtfTracePointContext, n: usize) -> Option<Self> {
        Self::new(ctx.arg(n), Typed)
    }
}

impl SockPtr<Typed> {
    /// A socket argument of a BTF tracepoint (None when the kernel passed NULL).
    #[inline(always)]
    pub fn arg(ctx: &BtfTracePointContext, n: usize) -> Option<Self> {
        Ptr::arg(ctx, n).map(Self)
    }

    /// The same socket as a full `tcp_sock`, if it is one (not a request or timewait
    /// mini-socket, not another protocol). Doubles as the "is this TCP" check.
    #[inline(always)]
    pub fn as_tcp(self) -> Option<TcpSockPtr<Typed>> {
        // SAFETY: the helper checks its argument (a BTF socket pointer) and returns NULL for
        // anything that is not a full TCP socket.
        let tp = unsafe { bpf_skc_to_tcp_sock(self.0.addr as *mut _) } as u64;
        Ptr::new(tp, Typed).map(TcpSockPtr)
    }
}

impl SkbPtr {
    #[inline(always)]
    pub fn arg(ctx: &BtfTracePointContext, n: usize) -> Option<Self> {
        Ptr::arg(ctx, n).map(Self)
    }
}

impl<A: Access> TcpSockPtr<A> {
    #[inline(always)]
    pub fn sock(self) -> SockPtr<A> {
        SockPtr(self.0)
    }
}

impl SockPtr<Copied> {
    /// The socket at `addr`, an address the verifier sees as a number (a pointer member
    /// copied out of a packet, or a tracepoint argument's value): read by copy.
    #[inline(always)]
    pub fn at(addr: u64) -> Option<Self> {
        Ptr::new(addr, Copied).map(Self)
    }
}

impl TcpSockPtr<Copied> {
    /// The socket that embeds the timer at `timer` (container_of: the member is at
    /// `member_offset` in the socket). The address is a number to the verifier: read by copy.
    #[inline(always)]
    pub fn embedding(timer: u64, member_offset: u32) -> Option<Self> {
        Ptr::new(timer.wrapping_sub(u64::from(member_offset)), Copied).map(Self)
    }
}

/// The raw value of a tracepoint argument, copied: the verifier forbids arithmetic on typed
/// pointers (container_of), and a copy is a plain number.
#[inline(always)]
pub fn arg_value(ctx: &BtfTracePointContext, n: usize) -> u64 {
    Copied.load::<u64>(ctx.as_ptr() as u64 + 8 * n as u64)
}

/// Zeros `*ptr` a word at a time. `write_bytes` compiles to a call of the BPF `memset`,
/// a loop storing one byte per turn (an event's 168 bytes cost more than the rest of
/// a typical program). Volatile stores keep the compiler from turning this back into one.
///
/// # Safety
/// `ptr` is valid for writes of `T`, 8-aligned, and `size_of::<T>()` is a multiple of 8.
#[inline(always)]
pub unsafe fn zero_words<T>(ptr: *mut T) {
    const { assert!(size_of::<T>().is_multiple_of(8)) };
    let words = ptr.cast::<u64>();
    let mut i = 0;
    while i < size_of::<T>() / 8 {
        // SAFETY: within `*ptr`, by the function's contract.
        unsafe { core::ptr::write_volatile(words.add(i), 0) };
        i += 1;
    }
}
