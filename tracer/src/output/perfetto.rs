//! Chrome trace-event JSON (opens in https://ui.perfetto.dev and chrome://tracing).
//!
//! | trace-event | what |
//! |---|---|
//! | process (`pid`, `process_name`) | the process owning the sockets (`comm (pid)`, then its container, pod or unit: `curl (4242) [pod payments/api-7f9c]`) |
//! | thread (`tid`, `thread_name`) | one socket: `laddr:lport → raddr:rport` |
//! | `X` `connection` | the socket's whole life in the trace |
//! | `X` in category `state` | each TCP state, from one state change to the next |
//! | `i` (thread scope) | retransmits, probes, resets, errors, release, named by event kind |
//! | `i` named `VERDICT kind` | a verdict, its explanation and facts in `args` |
//!
//! Timestamps are µs since `origin_ns`. Events of a track are written parents first
//! (a connection before its states, a state before the instants inside it), as the
//! importers nest them.

use std::{collections::BTreeMap, io::Write};

use anyhow::Result;
use serde_json::{Value, json};

use super::text::describe;
use crate::{
    event::{EventKind, TcpState},
    identity,
    timeline::Timeline,
};

/// Linux pids stay below PID_MAX_LIMIT (2^22): our synthetic ids never meet a real one.
const UNKNOWN_PROCESS_PID: u64 = 1 << 22;
const FIRST_SOCKET_TID: u64 = 1 << 23;

fn us(ts_ns: u64, origin_ns: u64) -> f64 {
    ts_ns.saturating_sub(origin_ns) as f64 / 1000.0
}

/// Writes the trace document. `origin_ns` becomes time zero; `end_ns` closes spans of
/// sockets still open at the end of the trace.
pub fn write_chrome_trace(
    out: &mut dyn Write,
    timelines: &[Timeline],
    origin_ns: u64,
    end_ns: u64,
) -> Result<()> {
    out.write_all(b"{\"displayTimeUnit\":\"ms\",\"traceEvents\":[")?;
    let mut written = 0u64;
    let mut emit = |out: &mut dyn Write, event: &Value| -> Result<()> {
        out.write_all(if written == 0 { b"\n" } else { b",\n" })?;
        serde_json::to_writer(&mut *out, event)?;
        written += 1;
        Ok(())
    };
    let mut processes: BTreeMap<u64, String> = BTreeMap::new();
    for (index, t) in timelines.iter().enumerate() {
        let pid = t
            .process
            .as_ref()
            .map_or(UNKNOWN_PROCESS_PID, |p| u64::from(p.pid));
        processes.entry(pid).or_insert_with(|| match &t.process {
            Some(p) => match identity::owner_short(p) {
                Some(short) => format!("{} ({}) [{short}]", p.comm, p.pid),
                None => format!("{} ({})", p.comm, p.pid),
            },
            None => "sockets without a known process".to_owned(),
        });
        let track = Track {
            pid,
            tid: FIRST_SOCKET_TID + index as u64,
            origin_ns,
        };
        for event in socket_events(t, &track, end_ns) {
            emit(out, &event)?;
        }
    }
    for (pid, name) in processes {
        emit(
            out,
            &json!({"ph": "M", "name": "process_name", "pid": pid, "args": {"name": name}}),
        )?;
    }
    out.write_all(b"\n]}\n")?;
    Ok(())
}

struct Track {
    pid: u64,
    tid: u64,
    origin_ns: u64,
}

impl Track {
    fn span(&self, name: &str, cat: &str, from_ns: u64, to_ns: u64, args: Value) -> Value {
        json!({
            "ph": "X", "name": name, "cat": cat, "pid": self.pid, "tid": self.tid,
            "ts": us(from_ns, self.origin_ns), "dur": us(to_ns, from_ns), "args": args,
        })
    }

    fn instant(&self, name: &str, cat: &str, ts_ns: u64, args: Value) -> Value {
        json!({
            "ph": "i", "s": "t", "name": name, "cat": cat, "pid": self.pid, "tid": self.tid,
            "ts": us(ts_ns, self.origin_ns), "args": args,
        })
    }
}

/// Writing order within a track at equal timestamps: enclosing spans first.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    Connection,
    State,
    Instant,
    Verdict,
}

/// One socket's track: its name, connection span, state spans, instants and verdicts.
fn socket_events(t: &Timeline, track: &Track, end_ns: u64) -> Vec<Value> {
    let tuple = t.conn.to_string();
    let mut last_ns = if t.state == TcpState::CLOSE {
        t.last_ns
    } else {
        end_ns.max(t.last_ns)
    };
    if let Some(v) = t.verdicts.iter().map(|v| v.ts_ns).max() {
        last_ns = last_ns.max(v);
    }
    let mut events: Vec<(u64, Rank, Value)> = Vec::new();
    events.push((
        t.first_ns,
        Rank::Connection,
        track.span(
            "connection",
            "connection",
            t.first_ns,
            last_ns,
            json!({
                "socket": t.socket.0.to_string(), "netns": t.conn.netns, "tuple": tuple,
                "final_state": t.state, "error": t.death_error(),
                "retransmits": t.retransmits(), "events_not_kept": t.truncated,
            }),
        ),
    ));
    // State spans, from each state change to the next. A socket first seen mid-life
    // (already open when tracing started) starts in the state of its first event.
    let mut current: Option<(TcpState, u64)> = None;
    let mut seen_state_change = false;
    let state_span = |state: TcpState, from: u64, to: u64| {
        (
            from,
            Rank::State,
            track.span(&state.to_string(), "state", from, to, json!({})),
        )
    };
    for (index, e) in t.kept_events().enumerate() {
        if index == t.events.len() && t.truncated > 0 {
            events.push((
                e.ts_ns,
                Rank::Instant,
                track.instant(
                    "events not kept",
                    "gap",
                    e.ts_ns,
                    json!({"events": t.truncated}),
                ),
            ));
        }
        if e.kind == EventKind::StateChange {
            seen_state_change = true;
            if let Some((state, since)) = current.take() {
                events.push(state_span(state, since, e.ts_ns));
            }
            if e.state != TcpState::CLOSE {
                current = Some((e.state, e.ts_ns));
            }
            continue;
        }
        if current.is_none() && !seen_state_change && e.state != TcpState::CLOSE {
            current = Some((e.state, e.ts_ns));
        }
        let (name, details) = describe(e);
        events.push((
            e.ts_ns,
            Rank::Instant,
            track.instant(
                name,
                e.kind.name(),
                e.ts_ns,
                json!({"details": details, "state": e.state}),
            ),
        ));
    }
    if let Some((state, since)) = current {
        events.push(state_span(state, since, last_ns));
    }
    for v in &t.verdicts {
        events.push((
            v.ts_ns,
            Rank::Verdict,
            track.instant(
                &format!("VERDICT {}", v.verdict),
                "verdict",
                v.ts_ns,
                json!({"verdict": v.verdict, "explanation": v.explanation, "facts": v.facts}),
            ),
        ));
    }
    // Stable: spans of equal start stay in the order they were pushed (a zero-length state
    // before the one that follows it).
    events.sort_by_key(|(ts, rank, _)| (*ts, *rank));
    let mut out = Vec::with_capacity(events.len() + 1);
    out.push(json!({
        "ph": "M", "name": "thread_name", "pid": track.pid, "tid": track.tid,
        "args": {"name": tuple},
    }));
    out.extend(events.into_iter().map(|(_, _, v)| v));
    out
}
