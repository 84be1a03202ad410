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
///
/// The kernel formats every symbol up to the last one wanted (TCP's timers come late, after
/// most of the kernel's ~100k-200k symbols): that cost stays. Ours is kept small: large
/// reads, and the names searched for in them, nothing parsed or allocated per line.
pub fn kallsyms(names: &[&str]) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    let Ok(mut file) = std::fs::File::open("/proc/kallsyms") else {
        return out;
    };
    let mut buf = vec![0u8; 1 << 20];
    let mut filled = 0;
    loop {
        let read = match file.read(&mut buf[filled..]) {
            Ok(read) => read,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        filled += read;
        // Whole lines now; a partial last line waits for the next read (or the end).
        let whole = if read == 0 {
            filled
        } else {
            memchr::memrchr(b'\n', &buf[..filled]).map_or(0, |i| i + 1)
        };
        scan_kallsyms(&buf[..whole], names, &mut out);
        if read == 0 || out.len() == names.len() || (whole == 0 && filled == buf.len()) {
            break;
        }
        buf.copy_within(whole..filled, 0);
        filled -= whole;
    }
    out
}

/// Adds the wanted text symbols of `text` (whole /proc/kallsyms lines) to `out`, keeping the
/// first address of each name. The names are searched for, not every line split: the text
/// runs to megabytes.
fn scan_kallsyms(text: &[u8], names: &[&str], out: &mut HashMap<String, u64>) {
    for &name in names {
        if out.contains_key(name) {
            continue;
        }
        for at in memchr::memmem::find_iter(text, name.as_bytes()) {
            // "ffffffff8202bdf0 t tcp_keepalive_timer", then "\t[module]" for modules.
            let end = at + name.len();
            if at == 0
                || text[at - 1] != b' '
                || !matches!(text.get(end), None | Some(b'\n' | b'\t'))
            {
                continue;
            }
            let line = memchr::memrchr(b'\n', &text[..at]).map_or(0, |i| i + 1);
            let mut fields = text[line..at - 1].split(|&b| b == b' ');
            let (Some(addr), Some(b"t" | b"T"), None) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            if let Some(addr) = std::str::from_utf8(addr)
                .ok()
                .and_then(|a| u64::from_str_radix(a, 16).ok())
                && addr != 0
            {
                out.insert(name.to_owned(), addr);
                break;
            }
        }
    }
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
    fn finds_text_symbols_in_kallsyms_lines() {
        let text = b"ffffffff81000000 T _stext\n\
            ffffffff81243c71 t tcp_keepalive_timer.cold\n\
            ffffffff8202bdf0 d tcp_write_timer\n\
            ffffffff8202bd00 t xtcp_write_timer\n\
            ffffffff8202bd10 t tcp_write_timer_x\n\
            ffffffff8202bd20 t [tcp_write_timer]\n\
            ffffffff8202bdf0 t tcp_keepalive_timer\n\
            ffffffff8202d1e0 t tcp_write_timer\t[tcp_mod]\n\
            ffffffff8202d1f0 t tcp_write_timer\n\
            0000000000000000 T hidden\n";
        let mut out = HashMap::new();
        scan_kallsyms(
            text,
            &["tcp_keepalive_timer", "tcp_write_timer", "hidden", "absent"],
            &mut out,
        );
        assert_eq!(out.get("tcp_keepalive_timer"), Some(&0xffffffff8202bdf0));
        assert_eq!(out.get("tcp_write_timer"), Some(&0xffffffff8202d1e0));
        assert_eq!(out.len(), 2, "{out:?}");
    }

    #[test]
    fn reads_this_kernels_tcp_timers_from_kallsyms() {
        let names = ["tcp_keepalive_timer", "tcp_write_timer"];
        let found = kallsyms(&names);
        // The same answer as a plain line-by-line read.
        let text = std::fs::read_to_string("/proc/kallsyms").unwrap();
        let mut expected = HashMap::new();
        scan_kallsyms(text.as_bytes(), &names, &mut expected);
        assert_eq!(found, expected);
    }

    #[test]
    fn this_kernel_has_a_plausible_hz() {
        let hz = kernel_hz().unwrap();
        assert!([100, 250, 300, 1000].contains(&hz), "HZ {hz}");
    }
}
