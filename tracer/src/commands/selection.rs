//! What `tracer report` shows of a trace: `--socket`, `--verdict`, `--since`, `--until`.
//! The whole trace is replayed either way (a verdict depends on everything before it);
//! the selection only chooses which timelines and verdicts are reported.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};

use crate::{
    event::SocketId,
    record::Header,
    timeline::{Timeline, Verdict, VerdictKind},
};

/// A point in a trace, as the user writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeSpec {
    /// `+30s`, `+5m`: after the trace's start.
    AfterStart(Duration),
    /// `2026-11-22T09:54:37Z`: RFC 3339.
    Wall(SystemTime),
    /// `09:54`, `09:54:37`, `09:54:37.250`: local time of day, on the day the trace started.
    Clock { secs_of_day: u32, millis: u32 },
}

/// Parses `--since` / `--until`.
pub fn parse_time(s: &str) -> Result<TimeSpec, String> {
    let hint = "(examples: 09:54:37, +30s, 2026-11-22T09:54:37Z)";
    if let Some(after) = s.strip_prefix('+') {
        return crate::cli::parse_duration(after)
            .map(TimeSpec::AfterStart)
            .map_err(|e| format!("{e} {hint}"));
    }
    if s.contains('T') || s.contains(' ') {
        return humantime::parse_rfc3339_weak(s)
            .map(TimeSpec::Wall)
            .map_err(|e| format!("{e} {hint}"));
    }
    let (clock, millis) = match s.split_once('.') {
        Some((clock, frac)) => {
            let digits: String = frac.chars().chain("000".chars()).take(3).collect();
            (
                clock,
                digits
                    .parse::<u32>()
                    .map_err(|_| format!("not a time: {s:?} {hint}"))?,
            )
        }
        None => (s, 0),
    };
    let parts: Vec<u32> = clock
        .split(':')
        .map(|p| p.parse::<u32>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("not a time: {s:?} {hint}"))?;
    let (h, m, sec) = match parts[..] {
        [h, m] => (h, m, 0),
        [h, m, sec] => (h, m, sec),
        _ => return Err(format!("not a time: {s:?} {hint}")),
    };
    if h > 23 || m > 59 || sec > 60 {
        return Err(format!("not a time of day: {s:?} {hint}"));
    }
    Ok(TimeSpec::Clock {
        secs_of_day: h * 3600 + m * 60 + sec,
        millis,
    })
}

/// `--socket`: the number as in the trace (`4854`), or the cookie as `ss -e` shows it
/// (`sk:12f6`).
pub fn parse_socket(s: &str) -> Result<SocketId, String> {
    let parsed = match s.strip_prefix("sk:").or_else(|| s.strip_prefix("0x")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    };
    parsed.map(SocketId).ok_or_else(|| {
        format!("not a socket: {s:?} (a number as in the trace, or sk:HEX as ss -e shows it)")
    })
}

/// `--verdict`: a verdict's name.
pub fn parse_verdict(s: &str) -> Result<VerdictKind, String> {
    VerdictKind::from_name(s).ok_or_else(|| {
        let names: Vec<&str> = VerdictKind::ALL.iter().map(|k| k.name()).collect();
        format!("no verdict {s:?}: one of {}", names.join(", "))
    })
}

impl TimeSpec {
    /// The instant in the trace's clock (CLOCK_BOOTTIME ns).
    pub fn resolve(&self, header: &Header) -> Result<u64> {
        let offset = header.boot_to_wall_offset_ns;
        let from_wall = |wall_ns: i128| -> Result<u64> {
            let boot = wall_ns - i128::from(offset);
            u64::try_from(boot).or_else(|_| bail!("that time is before the traced host booted"))
        };
        match self {
            TimeSpec::AfterStart(d) => Ok(header.started_ns + d.as_nanos() as u64),
            TimeSpec::Wall(t) => {
                let wall = t
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as i128);
                from_wall(wall)
            }
            TimeSpec::Clock {
                secs_of_day,
                millis,
            } => {
                let start_wall_s = (header.started_ns as i64 + offset).div_euclid(1_000_000_000);
                // SAFETY: localtime_r and mktime with valid pointers; tm is plain data.
                let midnight = unsafe {
                    let mut tm: libc::tm = std::mem::zeroed();
                    let t = start_wall_s as libc::time_t;
                    libc::localtime_r(&t, &mut tm);
                    tm.tm_hour = 0;
                    tm.tm_min = 0;
                    tm.tm_sec = 0;
                    tm.tm_isdst = -1;
                    libc::mktime(&mut tm) as i64
                };
                let wall_s = midnight + i64::from(*secs_of_day);
                from_wall(i128::from(wall_s) * 1_000_000_000 + i128::from(*millis) * 1_000_000)
            }
        }
    }
}

/// The selection, resolved against a trace.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub sockets: Vec<SocketId>,
    pub verdicts: Vec<VerdictKind>,
    pub since_ns: Option<u64>,
    pub until_ns: Option<u64>,
    /// The options as given, for people.
    pub words: Vec<String>,
}

impl Selection {
    pub fn is_everything(&self) -> bool {
        self.words.is_empty()
    }

    fn in_window(&self, from_ns: u64, to_ns: u64) -> bool {
        self.since_ns.is_none_or(|s| to_ns >= s) && self.until_ns.is_none_or(|u| from_ns <= u)
    }

    /// A socket is reported when it is one of `--socket`, got one of `--verdict`, and had
    /// events in the `--since`/`--until` window (its whole timeline is shown).
    pub fn keeps_timeline(&self, t: &Timeline) -> bool {
        let last = t.verdicts.iter().map(|v| v.ts_ns).fold(t.last_ns, u64::max);
        (self.sockets.is_empty() || self.sockets.contains(&t.socket))
            && (self.verdicts.is_empty()
                || t.verdicts
                    .iter()
                    .any(|v| self.verdicts.contains(&v.verdict)))
            && self.in_window(t.first_ns, last)
    }

    /// A verdict is reported when it is of the selected sockets and kinds, in the window.
    pub fn keeps_verdict(&self, v: &Verdict) -> bool {
        (self.sockets.is_empty() || self.sockets.contains(&v.socket))
            && (self.verdicts.is_empty() || self.verdicts.contains(&v.verdict))
            && self.in_window(v.ts_ns, v.ts_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{MS, Sock, header};

    #[test]
    fn times_parse_and_resolve_against_the_trace() {
        let h = header("t", 1_000 * MS);
        let at = |s: &str| parse_time(s).unwrap().resolve(&h).unwrap();
        assert_eq!(at("+30s"), 31_000 * MS);
        // The header's wall clock: boot + offset.
        let wall = crate::record::WallClock {
            boot_to_wall_offset_ns: h.boot_to_wall_offset_ns,
        };
        let ts = 5_000 * MS;
        // Written to the µs, the ms or the second: the instant's start.
        let into = |unit: i64| (ts as i64 + h.boot_to_wall_offset_ns).rem_euclid(unit) as u64;
        assert_eq!(at(&wall.rfc3339(ts)), ts - into(1_000));
        // Local time of day, to the millisecond, as the text output prints it.
        let clock = crate::output::text::clock_time(ts as i64 + h.boot_to_wall_offset_ns);
        assert_eq!(at(&clock), ts - into(1_000_000), "{clock}");
        assert_eq!(at(&clock[..8]), ts - into(1_000_000_000), "{clock}");
        for bad in ["soon", "25:00", "+x", "9:60:00", "1:2:3:4"] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sockets_and_verdicts_by_name() {
        assert_eq!(parse_socket("4854"), Ok(SocketId(4854)));
        assert_eq!(parse_socket("sk:12f6"), Ok(SocketId(0x12f6)));
        assert!(parse_socket("sk:zz").unwrap_err().contains("ss -e"));
        assert_eq!(parse_verdict("peer_reset"), Ok(VerdictKind::PeerReset));
        assert!(parse_verdict("dead").unwrap_err().contains("peer_reset"));
    }

    #[test]
    fn a_timeline_is_kept_when_every_criterion_holds() {
        let s = Sock::new(7).peer_reset();
        let v = s.verdict(s.now, VerdictKind::PeerReset);
        let mut sel = Selection {
            words: vec!["x".into()],
            ..Selection::default()
        };
        assert!(sel.keeps_verdict(&v));
        sel.verdicts = vec![VerdictKind::RetriesExhausted];
        assert!(!sel.keeps_verdict(&v));
        sel.verdicts = vec![VerdictKind::PeerReset];
        sel.sockets = vec![SocketId(8)];
        assert!(!sel.keeps_verdict(&v));
        sel.sockets = vec![SocketId(7)];
        sel.since_ns = Some(s.now + 1);
        assert!(!sel.keeps_verdict(&v));
        sel.since_ns = Some(s.now);
        sel.until_ns = Some(s.now);
        assert!(sel.keeps_verdict(&v));
    }
}
