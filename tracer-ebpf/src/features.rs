//! Feature probes: each program uses one capability the tracer's programs may need. The
//! loader verifies them (without attaching) to fill `Config::features`; a capability whose
//! probe this kernel rejects is never used, and the verifier removes the code that would.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
#![warn(clippy::undocumented_unsafe_blocks)]

#[cfg(target_arch = "bpf")]
mod probes {
    use aya_ebpf::{
        helpers::generated::bpf_get_socket_cookie, macros::btf_tracepoint,
        programs::BtfTracePointContext,
    };

    /// `bpf_get_socket_cookie()` on a BTF socket pointer (tracing programs: 5.12+).
    #[btf_tracepoint(function = "inet_sock_set_state")]
    pub fn probe_socket_cookie(ctx: BtfTracePointContext) -> i32 {
        let sk: u64 = ctx.arg(0);
        if sk == 0 {
            return 0;
        }
        // SAFETY: `sk` is the tracepoint's non-null BTF socket pointer.
        unsafe { bpf_get_socket_cookie(sk as *mut _) as i32 }
    }

    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo) -> ! {
        loop {}
    }

    #[unsafe(link_section = "license")]
    #[unsafe(no_mangle)]
    static LICENSE: [u8; 4] = *b"GPL\0";
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}
