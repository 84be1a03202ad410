//! Facts about the running kernel that the events need to be read correctly: its release,
//! its timer frequency (HZ: the kernel keeps RTOs and keepalive times in jiffies), the
//! boot-time → wall-clock offset, and the addresses of the TCP timer callbacks.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader, Read},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, bail};

pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// CONFIG_HZ from the kernel's own config (/proc/config.gz or /boot/config-RELEASE); failing
/// that, measured from /proc/timer_list's jiffies over a short interval.
pub fn kernel_hz() -> Result<u32> {
    if let Some(hz) = hz_from_config() {
        return Ok(hz);
    }
    hz_from_timer_list()
        .context("cannot tell the kernel's HZ (no kernel config, no /proc/timer_list)")
}

fn parse_config_hz(config: &str) -> Option<u32> {
    config
        .lines()
        .find_map(|l| l.strip_prefix("CONFIG_HZ="))
        .and_then(|v| v.trim().parse().ok())
}

fn hz_from_config() -> Option<u32> {
    if let Ok(file) = std::fs::File::open("/proc/config.gz") {
        let mut text = String::new();
        if flate2::read::GzDecoder::new(file)
            .read_to_string(&mut text)
            .is_ok()
            && let Some(hz) = parse_config_hz(&text)
        {
            return Some(hz);
        }
    }
    let path = format!("/boot/config-{}", kernel_release());
    parse_config_hz(&std::fs::read_to_string(path).ok()?)
}

fn timer_list_jiffies() -> Result<(u64, u64)> {
    let file = std::fs::File::open("/proc/timer_list")?;
    let mut now_ns = None;
    for line in BufReader::new(file).lines() {
        let line = line?;
        if let Some(rest) = line.strip_prefix("now at ") {
            now_ns = rest.split_whitespace().next().and_then(|n| n.parse().ok());
        } else if let Some(rest) = line.strip_prefix("jiffies: ")
            && let (Some(now), Ok(j)) = (now_ns, rest.trim().parse())
        {
            return Ok((now, j));
        }
    }
    bail!("no jiffies in /proc/timer_list")
}

fn hz_from_timer_list() -> Result<u32> {
    let (t0, j0) = timer_list_jiffies()?;
    std::thread::sleep(Duration::from_millis(200));
    let (t1, j1) = timer_list_jiffies()?;
    let measured = (j1 - j0) as f64 / ((t1 - t0) as f64 / 1e9);
    // Snap to the frequencies Linux offers.
    Ok([100, 250, 300, 1000]
        .into_iter()
        .min_by_key(|hz| (f64::from(*hz) - measured).abs() as u64)
        .unwrap())
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid clock id and out pointer.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    // Only an invalid clock id or pointer make it fail, and both are ours.
    assert_eq!(
        rc,
        0,
        "clock_gettime({clock}): {}",
        std::io::Error::last_os_error()
    );
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CLOCK_BOOTTIME now (the clock of `bpf_ktime_get_boot_ns`).
pub fn boottime_ns() -> u64 {
    clock_ns(libc::CLOCK_BOOTTIME)
}

/// Wall-clock ns since the epoch minus CLOCK_BOOTTIME: add to an event's boot time to get
/// its wall-clock time.
pub fn boot_to_wall_offset_ns() -> i64 {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as i64;
    wall - boottime_ns() as i64
}

/// Addresses of the named text symbols in /proc/kallsyms (0 or absent when hidden by
/// kptr_restrict).
pub fn kallsyms(names: &[&str]) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    let Ok(file) = std::fs::File::open("/proc/kallsyms") else {
        return out;
    };
    for line in BufReader::new(file).lines().map_while(Result::ok) {
        let mut parts = line.split_whitespace();
        let (Some(addr), Some(kind), Some(name)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if !matches!(kind, "t" | "T") || !names.contains(&name) || out.contains_key(name) {
            continue;
        }
        if let Ok(addr) = u64::from_str_radix(addr, 16)
            && addr != 0
        {
            out.insert(name.to_owned(), addr);
        }
        if out.len() == names.len() {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hz_from_a_kernel_config() {
        let config = "# comment\nCONFIG_HZ_250=y\nCONFIG_HZ=250\nCONFIG_X=1\n";
        assert_eq!(parse_config_hz(config), Some(250));
        assert_eq!(parse_config_hz("CONFIG_HZ_1000=y\n"), None);
    }

    #[test]
    fn this_kernel_has_a_plausible_hz() {
        let hz = kernel_hz().unwrap();
        assert!([100, 250, 300, 1000].contains(&hz), "HZ {hz}");
    }
}
