//! Harness for the real-kernel tests: network namespaces as hosts, veth links, nftables
//! rules, per-namespace sysctls and MIB counters, cgroup trees, the `tracer` binary
//! itself, and the terminal a person reads it in (text lines, tmux).
//!
//! Every namespace is named uniquely (`trc-<pid>-<n>-<tag>`) and deleted when its guard
//! drops, also when a test panics. Every wait has a deadline: tests poll the trace, they
//! never sleep a fixed time and hope.

pub mod agent;
pub mod cgroup;
pub mod net;
pub mod scenario;
pub mod terminal;
pub mod tracer;

pub use net::{Hosts, Netns, Routed, Snmp};
pub use tracer::Tracer;

use std::time::{Duration, Instant};

/// Defines a test module `$name` running `$body(ipv6: bool)` once per address family.
#[macro_export]
macro_rules! both_families {
    ($name:ident, $body:ident) => {
        mod $name {
            #[test]
            fn ipv4() {
                super::$body(false);
            }
            #[test]
            fn ipv6() {
                super::$body(true);
            }
        }
    };
}

/// The real-kernel tests need root: say so loudly instead of passing or skipping.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the real-kernel tests need root (they load eBPF programs and create network \
         namespaces): run `cargo xtask test` as root"
    );
}

/// The keepalive probes of the last unanswered run: an answered probe (an ACK resets
/// `icsk_probes_out`) restarts the count at 1. It happens when the blackhole a test installs
/// with `nft` takes longer than the idle time on a loaded machine; the kernel really sent
/// those probes, and the count still equals `TCPKeepAlive`.
pub fn unanswered_probes(numbers: &[u64]) -> &[u64] {
    let start = numbers.iter().rposition(|&n| n == 1).unwrap_or(0);
    &numbers[start..]
}

/// Polls `probe` until it returns Some or `timeout` passes; panics with `what` on timeout.
pub fn wait_until<T>(timeout: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
