//! Everything that touches the kernel: privileges, BTF layouts, host facts, feature probes,
//! the hook table, loading/verifying/attaching the programs, reading the ring buffer.
//! Dropping [`Probes`] detaches every program (the links are file descriptors; even a crash
//! releases them).

pub mod btf;
mod features;
pub mod hooks;
pub mod host;
pub mod layout;
pub mod privileges;
mod probes;

use anyhow::{Result, bail};

pub use hooks::{HookState, HookStatus};
pub use probes::{
    DRAIN_INTERVAL, ProbeOptions, Probes, ProgramStats, RingStats, Verification, verify,
};

/// The oldest kernel line the tracer is proven on (`cargo xtask kernels`): tp_btf, the BPF
/// ring buffer and `bpf_skc_to_tcp_sock` in tracing programs all exist from there.
pub const OLDEST_KERNEL: (u32, u32) = (5, 10);

/// (major, minor) of a kernel release string such as `6.1.0-57-amd64`.
pub fn release_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Refuses, in one line, a kernel older than [`OLDEST_KERNEL`].
pub fn check_kernel_floor(release: &str) -> Result<()> {
    match release_version(release) {
        Some(version) if version < OLDEST_KERNEL => bail!(
            "kernel {release} is older than {}.{}, the oldest this tracer supports (it needs \
             BTF tracepoints, the BPF ring buffer and socket helpers in tracing programs); \
             `tracer report FILE` works on any kernel",
            OLDEST_KERNEL.0,
            OLDEST_KERNEL.1
        ),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_older_than_the_floor_are_refused_in_one_line() {
        assert_eq!(release_version("6.1.0-57-amd64"), Some((6, 1)));
        assert_eq!(release_version("5.10.0-46-amd64"), Some((5, 10)));
        assert_eq!(release_version("6.12.95+deb12-amd64"), Some((6, 12)));
        assert_eq!(release_version("garbage"), None);
        assert!(check_kernel_floor("5.10.0-46-amd64").is_ok());
        assert!(check_kernel_floor("6.18.44-fc").is_ok());
        // An unreadable release is not a reason to refuse.
        assert!(check_kernel_floor("unknown").is_ok());
        let refused = check_kernel_floor("4.19.0-27-amd64")
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("4.19.0-27-amd64") && refused.contains("5.10"),
            "{refused}"
        );
        assert!(!refused.contains('\n'), "{refused}");
    }
}
