//! Can this process load kernel programs? Answered before trying, so that the user gets one
//! clear line instead of a verifier or permission backtrace.

use std::path::Path;

use anyhow::{Result, bail};

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Effective capability bits of this process (/proc/self/status `CapEff`).
fn effective_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

fn has(caps: u64, cap: u32) -> bool {
    caps & (1 << cap) != 0
}

/// What is missing for tracing, as one sentence; None when everything is there.
pub fn missing_for_tracing(caps: u64, btf_present: bool) -> Option<String> {
    let mut missing = Vec::new();
    let privileged = has(caps, CAP_SYS_ADMIN) || (has(caps, CAP_BPF) && has(caps, CAP_PERFMON));
    if !privileged {
        missing.push("root (or CAP_BPF and CAP_PERFMON)".to_owned());
    }
    if !btf_present {
        missing.push(format!(
            "kernel BTF at {} (CONFIG_DEBUG_INFO_BTF=y)",
            super::btf::VMLINUX
        ));
    }
    if missing.is_empty() {
        None
    } else {
        Some(missing.join(" and "))
    }
}

/// Fails with one line naming what is missing and what still works without it.
pub fn check_tracing() -> Result<()> {
    let btf_present = Path::new(super::btf::VMLINUX).exists();
    if let Some(missing) = missing_for_tracing(effective_caps(), btf_present) {
        // SAFETY: getuid has no preconditions.
        let uid = unsafe { libc::getuid() };
        bail!(
            "tracing needs {missing} (running as uid {uid}); \
             `tracer report FILE` works without privileges"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_what_is_missing() {
        assert_eq!(missing_for_tracing(u64::MAX, true), None);
        assert_eq!(missing_for_tracing(1 << CAP_SYS_ADMIN, true), None);
        assert_eq!(
            missing_for_tracing((1 << CAP_BPF) | (1 << CAP_PERFMON), true),
            None
        );
        let only_bpf = missing_for_tracing(1 << CAP_BPF, true).unwrap();
        assert!(only_bpf.contains("CAP_PERFMON"), "{only_bpf}");
        let nothing = missing_for_tracing(0, false).unwrap();
        assert!(
            nothing.contains("root") && nothing.contains("BTF"),
            "{nothing}"
        );
    }
}
