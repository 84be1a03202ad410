//! Kernel programs of the connection tracer.
//!
//! All hooks are BTF tracepoints (tp_btf): they load wherever the kernel has BTF (5.10 and
//! later here) and give typed `struct sock *` arguments. No fentry/kprobe is needed.
//!
//! | program              | hook                            | event                               |
//! |----------------------|---------------------------------|-------------------------------------|
//! | tr_set_state         | sock:inet_sock_set_state        | STATE_CHANGE; learns owners         |
//! | tr_retransmit(_e)    | tcp:tcp_retransmit_skb          | RETRANSMIT / RETRANSMIT_FAILED      |
//! | tr_synack            | tcp:tcp_retransmit_synack       | RETRANSMIT (SYN_ACK)                |
//! | tr_send_reset(_r)    | tcp:tcp_send_reset              | RESET_SENT                          |
//! | tr_recv_reset        | tcp:tcp_receive_reset           | RESET_RECEIVED                      |
//! | tr_error_report      | sock:inet_sk_error_report       | ERROR_REPORT                        |
//! | tr_destroy           | tcp:tcp_destroy_sock            | DESTROY                             |
//! | tr_timer_entry       | timer:timer_expire_entry        | (opens a TCP timer bracket)         |
//! | tr_timer_exit        | timer:timer_expire_exit         | KEEPALIVE_PROBE / ZERO_WINDOW_PROBE |
//! | tr_send_len/recv_len | sock:sock_{send,recv}_length    | (learns owners of accepted sockets) |
//!
//! The `_e` / `_r` variants are for kernels whose tracepoint has the extra `err` (6.17+) or
//! `reason` (6.10+) argument; the loader picks the one matching the kernel's BTF. Every
//! event program has a `_nested` twin for hits that interrupt it (see `nesting`).
//!
//! Layout: `access` (reading kernel memory through BTF offsets), `socket` (identity, tuple,
//! counters), `owner` (who owns a socket), `emit` (filters and the ring buffer), `nesting`
//! (twins), `programs/` (one file per hook family).
// Built for the host too (workspace clippy): there it is an empty program.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod access;
mod emit;
mod nesting;
mod owner;
mod programs;
mod socket;

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
