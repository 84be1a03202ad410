//! Chrome trace-event JSON (opens in https://ui.perfetto.dev and chrome://tracing): one
//! track per socket, grouped under its process; spans for the connection's life and its
//! TCP states; instant events for retransmits, probes and resets; verdicts as marked
//! instants carrying their explanation.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::text::describe;
use crate::{
    event::{EventKind, TcpState},
    timeline::Timeline,
};

fn us(ts_ns: u64, origin_ns: u64) -> f64 {
    ts_ns.saturating_sub(origin_ns) as f64 / 1000.0
}

/// Builds the trace document. `origin_ns` becomes time zero; `end_ns` closes spans of
/// sockets still open.
pub fn chrome_trace(timelines: &[&Timeline], origin_ns: u64, end_ns: u64) -> Value {
    let mut events = Vec::new();
    let mut processes: BTreeMap<u32, String> = BTreeMap::new();
    for (index, t) in timelines.iter().enumerate() {
        let pid = t.process.as_ref().map_or(0, |p| p.pid);
        processes.entry(pid).or_insert_with(|| match &t.process {
            Some(p) => format!("{} ({})", p.comm, p.pid),
            None => "sockets without a known process".to_owned(),
        });
        let tid = index as u64 + 1;
        let name = format!(
            "{} → {}",
            crate::event::endpoint(t.laddr, t.lport),
            crate::event::endpoint(t.raddr, t.rport)
        );
        events.push(json!({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": name}}));
        let last = if t.state == TcpState::CLOSE {
            t.last_ns
        } else {
            end_ns.max(t.last_ns)
        };
        events.push(json!({
            "ph": "X", "name": "connection", "cat": "connection", "pid": pid, "tid": tid,
            "ts": us(t.first_ns, origin_ns), "dur": us(last, t.first_ns),
            "args": {"socket": t.socket.0, "netns": t.netns, "truncated_events": t.truncated},
        }));
        // State spans: from each state change to the next.
        let mut current: Option<(TcpState, u64)> = None;
        for e in t.kept_events() {
            if e.kind == EventKind::StateChange {
                if let Some((state, since)) = current.take() {
                    events.push(state_span(state, since, e.ts_ns, origin_ns, pid, tid));
                }
                if e.state != TcpState::CLOSE {
                    current = Some((e.state, e.ts_ns));
                }
            } else if e.kind != EventKind::Destroy || current.is_some() {
                let (what, details) = describe(e);
                events.push(json!({
                    "ph": "i", "s": "t", "name": what, "cat": e.kind.name(), "pid": pid, "tid": tid,
                    "ts": us(e.ts_ns, origin_ns), "args": {"details": details},
                }));
            }
        }
        if let Some((state, since)) = current {
            events.push(state_span(state, since, last, origin_ns, pid, tid));
        }
        for v in &t.verdicts {
            events.push(json!({
                "ph": "i", "s": "p", "name": format!("VERDICT {}", v.verdict), "cat": "verdict",
                "pid": pid, "tid": tid, "ts": us(v.ts_ns, origin_ns),
                "args": {"explanation": v.explanation, "verdict": v.verdict.name()},
            }));
        }
    }
    for (pid, name) in processes {
        events.push(json!({"ph": "M", "name": "process_name", "pid": pid, "args": {"name": name}}));
    }
    json!({"traceEvents": events, "displayTimeUnit": "ms"})
}

fn state_span(state: TcpState, from: u64, to: u64, origin: u64, pid: u32, tid: u64) -> Value {
    json!({
        "ph": "X", "name": state.name(), "cat": "state", "pid": pid, "tid": tid,
        "ts": us(from, origin), "dur": us(to, from),
    })
}
