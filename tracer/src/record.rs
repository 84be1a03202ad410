//! The records of a JSON Lines trace (`live --json`, `record`, and what `report` reads).
//! Every line is one object whose first key is `type`. Documented in docs/trace-format.md.

use serde::{Deserialize, Serialize};

use crate::{
    event::{Event, KernelFacts},
    kernel::HookStatus,
    timeline::{Thresholds, Verdict},
};

/// Identifies our traces; `report` refuses other files.
pub const FORMAT: &str = "tracer-trace";
/// Bumped when a reader of the previous version would misread a trace.
pub const VERSION: u32 = 1;

/// First record of every trace: what produced it and how to read its numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub version: u32,
    pub tool_version: String,
    pub hostname: String,
    pub kernel_release: String,
    pub kernel: KernelFacts,
    /// Add to an event's `ts_ns` (CLOCK_BOOTTIME) to get wall-clock ns since the epoch.
    pub boot_to_wall_offset_ns: i64,
    /// CLOCK_BOOTTIME when tracing started.
    pub started_ns: u64,
    /// Kernel hooks and whether they were attached.
    #[serde(default)]
    pub hooks: Vec<HookStatus>,
    /// Kernel struct members this kernel lacks, with what that costs.
    #[serde(default)]
    pub missing: Vec<String>,
    /// The command line, for the record.
    #[serde(default)]
    pub command: Vec<String>,
    /// The verdict thresholds in force, so that a replay reaches the same verdicts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thresholds: Option<RecordedThresholds>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedThresholds {
    /// None: each namespace's tcp_retries1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn_after_rtos: Option<u8>,
    pub dead_socket_after_ms: u64,
    /// Absent in traces of tracers without these verdicts: the defaults apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close_wait_after_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver_stalled_after_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_storm_attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_storm_window_ms: Option<u64>,
}

impl RecordedThresholds {
    pub fn of(t: &Thresholds) -> Self {
        Self {
            warn_after_rtos: t.warn_after_rtos,
            dead_socket_after_ms: t.dead_socket_after_ns / 1_000_000,
            close_wait_after_ms: Some(t.close_wait_after_ns / 1_000_000),
            receiver_stalled_after_ms: Some(t.receiver_stalled_after_ns / 1_000_000),
            retry_storm_attempts: Some(t.retry_storm_attempts),
            retry_storm_window_ms: Some(t.retry_storm_window_ns / 1_000_000),
        }
    }

    /// The engine's thresholds, as the trace was recorded with them.
    pub fn thresholds(self) -> Thresholds {
        let defaults = Thresholds::default();
        let ns = |ms: Option<u64>, default: u64| ms.map_or(default, |ms| ms * 1_000_000);
        Thresholds {
            warn_after_rtos: self.warn_after_rtos,
            dead_socket_after_ns: self.dead_socket_after_ms * 1_000_000,
            close_wait_after_ns: ns(self.close_wait_after_ms, defaults.close_wait_after_ns),
            receiver_stalled_after_ns: ns(
                self.receiver_stalled_after_ms,
                defaults.receiver_stalled_after_ns,
            ),
            retry_storm_attempts: self
                .retry_storm_attempts
                .unwrap_or(defaults.retry_storm_attempts),
            retry_storm_window_ns: ns(self.retry_storm_window_ms, defaults.retry_storm_window_ns),
            ..defaults
        }
    }
}

/// Why events were lost.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum LossCause {
    /// The ring buffer was full: the kernel dropped the events it could not write.
    #[default]
    RingBufferFull,
    /// The kernel skipped one of the programs for hits that arrived while it was already
    /// running on that CPU (a softirq interrupting it), and its twin could not handle
    /// them either: the events those hits would have produced do not exist.
    KernelSkipped,
}

impl LossCause {
    fn is_default(&self) -> bool {
        *self == LossCause::RingBufferFull
    }
}

/// Events the kernel could not deliver since the previous `lost` record of the same cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lost {
    pub ts_ns: u64,
    /// Absent in traces of earlier tracers, which only lost events to a full ring buffer.
    #[serde(default, skip_serializing_if = "LossCause::is_default")]
    pub cause: LossCause,
    pub lost: u64,
    /// Lost to this cause since tracing started.
    pub total: u64,
}

/// In one network namespace, the deaths the kernel counted (its TCP MIB counters) and the
/// death verdicts the trace holds, over the same span of time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconciled {
    pub netns: u32,
    /// TcpExt.TCPAbortOnTimeout: connections the kernel gave up on (retransmits, SYNs,
    /// keepalive or zero-window probes exhausted; orphans too).
    pub kernel_timeout_deaths: u64,
    /// keepalive_exhausted, retries_exhausted, connect_timeout (not refused by ICMP) and
    /// orphan_timeout verdicts in that namespace.
    pub traced_timeout_deaths: u64,
}

impl Reconciled {
    pub fn agrees(&self) -> bool {
        self.kernel_timeout_deaths == self.traced_timeout_deaths
    }
}

/// Last record of a trace that ended cleanly.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct End {
    pub ts_ns: u64,
    pub events: u64,
    pub verdicts: u64,
    /// Lost to a full ring buffer.
    pub lost: u64,
    /// Lost because the kernel skipped a program and no twin handled the hit.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub kernel_skipped: u64,
    /// Hits the kernel skipped for a busy program that its twin handled: nothing lost.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub kernel_rescued: u64,
    /// Per namespace the trace covers, the kernel's count of deaths against the trace's;
    /// absent when in-kernel filters other than --netns hide part of each namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reconciled: Vec<Reconciled>,
    /// "duration", "signal", "end of input".
    pub reason: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Header(Box<Header>),
    Event(Box<Event>),
    Verdict(Box<Verdict>),
    Lost(Lost),
    End(End),
}

impl Record {
    pub fn type_name(&self) -> &'static str {
        match self {
            Record::Header(_) => "header",
            Record::Event(_) => "event",
            Record::Verdict(_) => "verdict",
            Record::Lost(_) => "lost",
            Record::End(_) => "end",
        }
    }

    pub fn ts_ns(&self) -> u64 {
        match self {
            Record::Header(h) => h.started_ns,
            Record::Event(e) => e.ts_ns,
            Record::Verdict(v) => v.ts_ns,
            Record::Lost(l) => l.ts_ns,
            Record::End(e) => e.ts_ns,
        }
    }
}

/// Turns CLOCK_BOOTTIME ns into wall-clock text for the `time` field and for people.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    pub boot_to_wall_offset_ns: i64,
}

impl WallClock {
    pub fn system_time(&self, ts_ns: u64) -> std::time::SystemTime {
        let wall = (ts_ns as i64 + self.boot_to_wall_offset_ns).max(0) as u64;
        std::time::UNIX_EPOCH + std::time::Duration::from_nanos(wall)
    }

    /// RFC 3339, UTC, microseconds: `2026-11-22T08:54:51.123456Z`.
    pub fn rfc3339(&self, ts_ns: u64) -> String {
        humantime::format_rfc3339_micros(self.system_time(ts_ns)).to_string()
    }
}

#[derive(Serialize)]
struct Tagged<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<String>,
    #[serde(flatten)]
    body: &'a T,
}

/// One JSON line (without the newline) for a record body of type `kind`; `clock` adds the
/// human `time` field.
pub fn json_line<T: Serialize>(
    kind: &'static str,
    ts_ns: u64,
    body: &T,
    clock: Option<&WallClock>,
) -> String {
    let time = clock.map(|c| c.rfc3339(ts_ns));
    // Our types serialise infallibly (no maps with non-string keys, no failing impls).
    serde_json::to_string(&Tagged { kind, time, body }).expect("trace records always serialise")
}

/// [`json_line`] appended to `out` (no newline), without a `String` of its own.
pub fn write_json_line<T: Serialize>(
    out: &mut Vec<u8>,
    kind: &'static str,
    ts_ns: u64,
    body: &T,
    clock: Option<&WallClock>,
) {
    let time = clock.map(|c| c.rfc3339(ts_ns));
    serde_json::to_writer(out, &Tagged { kind, time, body })
        .expect("trace records always serialise");
}

impl Record {
    /// One JSON line (without the newline).
    pub fn to_json(&self, clock: Option<&WallClock>) -> String {
        let (kind, ts) = (self.type_name(), self.ts_ns());
        match self {
            Record::Header(h) => json_line(kind, ts, &**h, clock),
            Record::Event(e) => json_line(kind, ts, &**e, clock),
            Record::Verdict(v) => json_line(kind, ts, &**v, clock),
            Record::Lost(l) => json_line(kind, ts, l, clock),
            Record::End(e) => json_line(kind, ts, e, clock),
        }
    }

    /// Parses one JSON line. Unknown fields are ignored (newer writers may add some);
    /// an unknown `type` is an error the caller reports with file and line.
    pub fn parse(line: &str) -> Result<Record, String> {
        #[derive(Deserialize)]
        struct TypeOnly<'a> {
            #[serde(rename = "type", borrow)]
            kind: std::borrow::Cow<'a, str>,
        }
        // Fast path: our writer puts `type` first, and type names need no escaping.
        let kind = match line
            .strip_prefix(r#"{"type":""#)
            .and_then(|rest| rest.split_once('"'))
        {
            Some((kind, _)) if !kind.contains('\\') => std::borrow::Cow::Borrowed(kind),
            _ => {
                serde_json::from_str::<TypeOnly>(line)
                    .map_err(|e| format!("not a trace record: {}", json_error(&e)))?
                    .kind
            }
        };
        let bad = |e: serde_json::Error| format!("bad {kind} record: {}", json_error(&e));
        Ok(match &*kind {
            "event" => Record::Event(Box::new(serde_json::from_str(line).map_err(bad)?)),
            "verdict" => Record::Verdict(Box::new(serde_json::from_str(line).map_err(bad)?)),
            "lost" => Record::Lost(serde_json::from_str(line).map_err(bad)?),
            "header" => Record::Header(Box::new(serde_json::from_str(line).map_err(bad)?)),
            "end" => Record::End(serde_json::from_str(line).map_err(bad)?),
            other => return Err(format!("unknown record type {other:?}")),
        })
    }
}

/// serde_json's message without its "at line 1 column N" (a record is one line), with the
/// column kept.
pub fn json_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let message = text
        .rsplit_once(" at line ")
        .map_or(text.as_str(), |(m, _)| m);
    format!("{message} (column {})", e.column())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_with_type_first() {
        let lost = Record::Lost(Lost {
            ts_ns: 7,
            cause: LossCause::RingBufferFull,
            lost: 3,
            total: 10,
        });
        let clock = WallClock {
            boot_to_wall_offset_ns: 1_700_000_000_000_000_000,
        };
        let line = lost.to_json(Some(&clock));
        assert!(
            line.starts_with(r#"{"type":"lost","time":"2023-11-14T"#),
            "{line}"
        );
        assert_eq!(Record::parse(&line).unwrap(), lost);
        // Key order does not matter to the reader.
        let reordered = r#"{"lost":3,"total":10,"ts_ns":7,"type":"lost"}"#;
        assert_eq!(Record::parse(reordered).unwrap(), lost);
    }

    #[test]
    fn rejects_unknown_types_and_garbage() {
        assert!(
            Record::parse(r#"{"type":"bogus"}"#)
                .unwrap_err()
                .contains("bogus")
        );
        assert!(Record::parse("not json").is_err());
        assert!(Record::parse(r#"{"type":"lost","lost":"x"}"#).is_err());
    }
}
