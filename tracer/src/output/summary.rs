//! The exit summary: verdicts by kind, the sockets with most retransmits, what was lost.
//! A sink like the others, so live tracing and reports summarise the same way.

use std::collections::{BTreeMap, HashMap};

use anyhow::Result;

use super::{Sink, text::process_label};
use crate::{
    event::{Event, EventKind, SocketId},
    record::{End, Header, Lost},
    timeline::{EngineStats, Verdict, VerdictKind, words::duration_ms},
};

/// Bound on sockets tallied for "most retransmits".
const MAX_TALLIED: usize = 100_000;

#[derive(Debug, Clone)]
struct Tally {
    retransmits: u64,
    segments: u64,
    endpoints: String,
    process: String,
    verdict: Option<VerdictKind>,
}

#[derive(Debug, Default)]
pub struct Summary {
    first_ns: Option<u64>,
    last_ns: u64,
    pub events: u64,
    pub by_kind: BTreeMap<EventKind, u64>,
    pub verdicts: BTreeMap<VerdictKind, u64>,
    tallies: HashMap<SocketId, Tally>,
    untallied: u64,
    pub lost: u64,
}

/// Counters from outside the record stream.
#[derive(Debug, Default, Clone, Copy)]
pub struct Extra {
    /// Events the kernel dropped on purpose (filters).
    pub filtered: u64,
    pub engine: EngineStats,
}

impl Summary {
    pub fn new() -> Self {
        Self::default()
    }

    fn seen(&mut self, ts_ns: u64) {
        self.first_ns.get_or_insert(ts_ns);
        self.last_ns = self.last_ns.max(ts_ns);
    }

    pub fn duration_ms(&self) -> u64 {
        self.first_ns.map_or(0, |f| (self.last_ns - f) / 1_000_000)
    }

    pub fn render(&self, extra: &Extra) -> String {
        let mut out = String::new();
        out += &format!(
            "── summary: {} events over {}, {} lost",
            self.events,
            duration_ms(self.duration_ms()),
            self.lost
        );
        if extra.filtered > 0 {
            out += &format!(", {} filtered out in the kernel", extra.filtered);
        }
        out += " ──\n";
        if self.verdicts.is_empty() {
            out += "verdicts: none\n";
        } else {
            let list: Vec<String> = self
                .verdicts
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            out += &format!("verdicts: {}\n", list.join(" · "));
        }
        let mut top: Vec<&Tally> = self.tallies.values().collect();
        top.sort_by(|a, b| {
            b.retransmits
                .cmp(&a.retransmits)
                .then(a.endpoints.cmp(&b.endpoints))
        });
        if !top.is_empty() {
            out += "most retransmits:\n";
            for t in top.iter().take(5) {
                let verdict = t.verdict.map(|v| format!("  ({v})")).unwrap_or_default();
                out += &format!(
                    "  {:>6} ({} segments)  {:<46} {}{verdict}\n",
                    t.retransmits, t.segments, t.endpoints, t.process
                );
            }
        }
        let e = extra.engine;
        if e.evicted > 0 || e.truncated_events > 0 || self.untallied > 0 {
            out += &format!(
                "bounded memory: {} idle timelines evicted, {} events not kept in timelines, {} sockets not tallied\n",
                e.evicted, e.truncated_events, self.untallied
            );
        }
        if self.lost > 0 {
            out += &format!(
                "{} events were lost in the kernel (ring buffer full): verdicts may be missing; \
                 use --ring-buffer 16M or narrower filters\n",
                self.lost
            );
        }
        out
    }
}

impl Sink for Summary {
    fn header(&mut self, header: &Header) -> Result<()> {
        self.seen(header.started_ns);
        Ok(())
    }

    fn event(&mut self, e: &Event) -> Result<()> {
        self.seen(e.ts_ns);
        self.events += 1;
        *self.by_kind.entry(e.kind).or_default() += 1;
        if e.kind == EventKind::Retransmit
            && let Some(socket) = e.socket
        {
            let full = self.tallies.len() >= MAX_TALLIED;
            match self.tallies.get_mut(&socket) {
                Some(t) => {
                    t.retransmits += 1;
                    t.segments += u64::from(e.segs.unwrap_or(1));
                }
                None if full => self.untallied += 1,
                None => {
                    self.tallies.insert(
                        socket,
                        Tally {
                            retransmits: 1,
                            segments: u64::from(e.segs.unwrap_or(1)),
                            endpoints: e.endpoints(),
                            process: process_label(e.process.as_ref()),
                            verdict: None,
                        },
                    );
                }
            }
        }
        Ok(())
    }

    fn verdict(&mut self, v: &Verdict) -> Result<()> {
        self.seen(v.ts_ns);
        *self.verdicts.entry(v.verdict).or_default() += 1;
        if let Some(t) = self.tallies.get_mut(&v.socket) {
            t.verdict = Some(v.verdict);
        }
        Ok(())
    }

    fn lost(&mut self, l: &Lost) -> Result<()> {
        self.lost += l.lost;
        Ok(())
    }

    fn end(&mut self, end: &End) -> Result<()> {
        self.seen(end.ts_ns);
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
}
