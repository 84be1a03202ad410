//! The exit summary: verdicts by kind and by pod, container or unit, the sockets with most
//! retransmits, what was lost.
//! A sink like the others, so live tracing and reports summarise the same way.

use std::{cmp::Reverse, collections::BTreeMap, sync::Arc};

use anyhow::Result;
use foldhash::HashMap;

use super::Sink;
use crate::{
    event::{Connection, Event, EventKind, Owner, SocketId},
    identity::Identity,
    record::{End, Header, LossCause, Lost},
    timeline::{EngineStats, Verdict, VerdictKind},
    words::duration_ms,
};

/// Bound on sockets tallied for "most retransmits".
const MAX_TALLIED: usize = 100_000;
/// Sockets listed under "most retransmits".
const TOP: usize = 5;
/// Bound on the pods, containers and units verdicts are counted for, and how many are shown.
const MAX_GROUPS: usize = 10_000;
const GROUPS_SHOWN: usize = 10;

#[derive(Debug, Clone)]
struct Tally {
    retransmits: u64,
    segments: u64,
    conn: Connection,
    process: Option<Owner>,
    verdict: Option<VerdictKind>,
}

#[derive(Debug, Default)]
pub struct Summary {
    first_ns: Option<u64>,
    last_ns: u64,
    pub events: u64,
    pub by_kind: BTreeMap<EventKind, u64>,
    pub verdicts: BTreeMap<VerdictKind, u64>,
    /// Verdicts by the owner's short label (`pod payments/api-7f9c`, `ctr a1b2c3d4e5f6`,
    /// `unit nginx.service`); those of owners without one are only counted.
    pub verdicts_by_owner: BTreeMap<String, BTreeMap<VerdictKind, u64>>,
    verdicts_elsewhere: u64,
    /// The identity the last verdict's owner had, and its short label: a storm's verdicts
    /// name the same owner one after another, labelled once.
    last_label: Option<(Arc<Identity>, Option<String>)>,
    tallies: HashMap<SocketId, Tally>,
    untallied: u64,
    /// Events lost to a full ring buffer.
    pub lost: u64,
    /// Events lost to hits the kernel skipped and no twin handled.
    pub kernel_skipped: u64,
    /// The end record, when the trace has one (kernel rescues, reconciliation).
    end: Option<End>,
    /// Segments this host dropped, by the kernel's reason (a few dozen reasons exist).
    pub drops: BTreeMap<String, u64>,
}

/// Counters from outside the record stream.
#[derive(Debug, Default, Clone, Copy)]
pub struct Extra {
    /// Events the kernel dropped on purpose (filters).
    pub filtered: u64,
    /// Events the owner filter dropped in userspace (cgroups not decided in the kernel yet).
    pub owner_filtered: u64,
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
            self.lost + self.kernel_skipped
        );
        if extra.filtered > 0 {
            out += &format!(", {} filtered out in the kernel", extra.filtered);
        }
        if extra.owner_filtered > 0 {
            out += &format!(", {} by the owner filter", extra.owner_filtered);
        }
        out += " ──\n";
        if self.verdicts.is_empty() {
            out += "verdicts: none\n";
        } else {
            out += &format!("verdicts: {}\n", kinds(&self.verdicts));
        }
        if !self.verdicts_by_owner.is_empty() {
            out += "verdicts by pod, container or unit:\n";
            let mut groups: Vec<(&String, &BTreeMap<VerdictKind, u64>)> =
                self.verdicts_by_owner.iter().collect();
            groups.sort_by_key(|(label, kinds)| (Reverse(kinds.values().sum::<u64>()), *label));
            for (label, by_kind) in groups.iter().take(GROUPS_SHOWN) {
                out += &format!("  {label:<32} {}\n", kinds(by_kind));
            }
            if groups.len() > GROUPS_SHOWN {
                out += &format!("  … and {} more\n", groups.len() - GROUPS_SHOWN);
            }
            if self.verdicts_elsewhere > 0 {
                out += &format!(
                    "  {:<32} {}\n",
                    "(none of them, or not resolved)", self.verdicts_elsewhere
                );
            }
        }
        if !self.by_kind.is_empty() {
            let list: Vec<String> = self
                .by_kind
                .iter()
                .map(|(k, n)| format!("{} {n}", k.name()))
                .collect();
            out += &format!("events: {}\n", list.join(" · "));
        }
        let mut top: Vec<&Tally> = self.tallies.values().collect();
        top.sort_by_cached_key(|t| (Reverse(t.retransmits), t.conn.to_string()));
        if !top.is_empty() {
            out += "most retransmits:\n";
            for t in top.iter().take(TOP) {
                let verdict = t.verdict.map(|v| format!("  ({v})")).unwrap_or_default();
                out += &format!(
                    "  {:>6} ({} segments)  {:<46} {}{verdict}\n",
                    t.retransmits,
                    t.segments,
                    t.conn,
                    Owner::label(t.process.as_ref())
                );
            }
        }
        if !self.drops.is_empty() {
            let mut by_count: Vec<(&String, &u64)> = self.drops.iter().collect();
            by_count.sort_by_key(|(reason, n)| (Reverse(**n), *reason));
            let list: Vec<String> = by_count.iter().map(|(r, n)| format!("{r} {n}")).collect();
            out += &format!("drops by this host: {}\n", list.join(" · "));
        }
        let e = extra.engine;
        let resets = e.socketless.saturating_sub(e.unmatched_drops);
        if resets > 0 {
            out += &format!(
                "{resets} resets sent for segments that matched no socket (connects to closed \
                 ports, peers that lost their connection)\n",
            );
        }
        if e.unmatched_drops > 0 {
            out += &format!(
                "{} drops of segments that matched no traced socket\n",
                e.unmatched_drops
            );
        }
        if e.out_of_window > 0 {
            out += &format!(
                "{} events arrived after later ones had been applied (beyond the reorder \
                 window): applied late\n",
                e.out_of_window
            );
        }
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
        if self.kernel_skipped > 0 {
            out += &format!(
                "{} events were lost in the kernel: it skipped a tracer program for hits that \
                 arrived while that program was already running on the same CPU, and the \
                 nested-context program could not take them either: verdicts may be missing\n",
                self.kernel_skipped
            );
        }
        if let Some(end) = &self.end {
            if end.kernel_rescued > 0 {
                out += &format!(
                    "{} hits the kernel skipped (nested in a running program) were handled by \
                     the nested-context programs: nothing lost\n",
                    end.kernel_rescued
                );
            }
            for r in &end.reconciled {
                let mark = if r.agrees() { "" } else { "WARNING: " };
                out += &format!(
                    "{mark}netns {}: the kernel counted {} timeout deaths (TCPAbortOnTimeout), \
                     the trace has {}{}\n",
                    r.netns,
                    r.kernel_timeout_deaths,
                    r.traced_timeout_deaths,
                    if r.agrees() {
                        ""
                    } else {
                        ": some deaths were not traced"
                    }
                );
            }
        }
        out
    }
}

/// `kind n · kind n`, in the (stable) order of the kinds.
fn kinds(counts: &BTreeMap<VerdictKind, u64>) -> String {
    counts
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(" · ")
}

/// `identity`'s short label ([`crate::identity::owner_short`]), from `last` when it is the same
/// identity.
fn short_label<'a>(
    last: &'a mut Option<(Arc<Identity>, Option<String>)>,
    identity: &Arc<Identity>,
) -> Option<&'a str> {
    if !last
        .as_ref()
        .is_some_and(|(known, _)| Arc::ptr_eq(known, identity))
    {
        *last = Some((identity.clone(), identity.short()));
    }
    last.as_ref()?.1.as_deref()
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
        if let Some(d) = &e.drop {
            match self.drops.get_mut(d.reason.name()) {
                Some(n) => *n += 1,
                None => {
                    self.drops.insert(d.reason.name().to_owned(), 1);
                }
            }
        }
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
                            conn: e.conn,
                            process: e.process.clone(),
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
        let label = v
            .process
            .as_ref()
            .and_then(|owner| owner.container.as_ref())
            .and_then(|identity| short_label(&mut self.last_label, identity));
        let groups = &mut self.verdicts_by_owner;
        match label {
            Some(label) if groups.len() < MAX_GROUPS || groups.contains_key(label) => {
                let by_kind = match groups.get_mut(label) {
                    Some(by_kind) => by_kind,
                    None => groups.entry(label.to_owned()).or_default(),
                };
                *by_kind.entry(v.verdict).or_default() += 1;
            }
            _ => self.verdicts_elsewhere += 1,
        }
        if let Some(t) = self.tallies.get_mut(&v.socket) {
            t.verdict = Some(v.verdict);
        }
        Ok(())
    }

    fn lost(&mut self, l: &Lost) -> Result<()> {
        match l.cause {
            LossCause::RingBufferFull => self.lost += l.lost,
            LossCause::KernelSkipped => self.kernel_skipped += l.lost,
        }
        Ok(())
    }

    fn end(&mut self, end: &End) -> Result<()> {
        self.seen(end.ts_ns);
        self.end = Some(end.clone());
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        event::{RetransmitClass, TcpState},
        testing::Sock,
    };

    fn retransmit(ts_ns: u64, socket: u64, rport: u16, segs: u32) -> Event {
        let mut e = Sock::new(socket)
            .owner("curl", 7)
            .ports(40000, rport)
            .event(EventKind::Retransmit, TcpState::ESTABLISHED);
        e.ts_ns = ts_ns;
        e.class = Some(RetransmitClass::Rto);
        e.segs = Some(segs);
        e
    }

    fn verdict(ts_ns: u64, socket: u64, kind: VerdictKind) -> Verdict {
        Sock::new(socket)
            .without_owner()
            .ports(40000, 443)
            .verdict(ts_ns, kind)
    }

    #[test]
    fn a_quiet_session_says_so() {
        let mut s = Summary::new();
        s.end(&End {
            ts_ns: 0,
            events: 0,
            verdicts: 0,
            reason: "signal".into(),
            ..End::default()
        })
        .unwrap();
        assert_eq!(
            s.render(&Extra::default()),
            "── summary: 0 events over 0 ms, 0 lost ──\nverdicts: none\n"
        );
    }

    #[test]
    fn verdicts_by_kind_top_retransmitters_lost_and_bounds() {
        let mut s = Summary::new();
        let second = 1_000_000_000;
        // Socket 1 (port 443): 3 retransmits, 5 segments, then a verdict; socket 2 (port 80):
        // 1 retransmit; socket 3..=8: one each, to push the list past its length.
        for (i, segs) in [1, 2, 2].into_iter().enumerate() {
            s.event(&retransmit(second * (i as u64 + 1), 1, 443, segs))
                .unwrap();
        }
        s.event(&retransmit(2 * second, 2, 80, 1)).unwrap();
        for socket in 3..=8 {
            s.event(&retransmit(3 * second, socket, 1000 + socket as u16, 1))
                .unwrap();
        }
        s.verdict(&verdict(4 * second, 1, VerdictKind::RetriesExhausted))
            .unwrap();
        s.verdict(&verdict(4 * second, 9, VerdictKind::PeerReset))
            .unwrap();
        s.verdict(&verdict(5 * second, 10, VerdictKind::PeerReset))
            .unwrap();
        s.lost(&Lost {
            ts_ns: 5 * second,
            cause: LossCause::RingBufferFull,
            lost: 4,
            total: 4,
        })
        .unwrap();
        let extra = Extra {
            filtered: 9,
            owner_filtered: 0,
            engine: EngineStats {
                evicted: 2,
                truncated_events: 30,
                socketless: 3,
                ..EngineStats::default()
            },
        };
        let text = s.render(&extra);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "── summary: 10 events over 4.0 s, 4 lost, 9 filtered out in the kernel ──"
        );
        // Verdicts in the order of their (stable) kinds.
        assert_eq!(lines[1], "verdicts: retries_exhausted 1 · peer_reset 2");
        assert_eq!(lines[2], "events: retransmit 10");
        assert_eq!(lines[3], "most retransmits:");
        assert_eq!(
            lines[4].split_whitespace().collect::<Vec<_>>(),
            [
                "3",
                "(5",
                "segments)",
                "10.0.0.1:40000",
                "→",
                "10.0.0.2:443",
                "curl/7",
                "(retries_exhausted)"
            ]
        );
        assert_eq!(
            lines.iter().filter(|l| l.contains(" segments) ")).count(),
            TOP
        );
        assert!(
            lines.contains(&"3 resets sent for segments that matched no socket (connects to closed ports, peers that lost their connection)"),
            "{text}"
        );
        assert!(
            lines.contains(
                &"bounded memory: 2 idle timelines evicted, 30 events not kept in timelines, 0 sockets not tallied"
            ),
            "{text}"
        );
        assert!(
            lines.last().unwrap().starts_with(
                "4 events were lost in the kernel (ring buffer full): verdicts may be missing"
            ),
            "{text}"
        );
    }
}

#[cfg(test)]
mod by_owner {
    use super::*;
    use crate::testing::Sock;

    fn verdict_of(unit: Option<&str>, kind: VerdictKind) -> Verdict {
        let mut v = Sock::new(1).verdict(1, kind);
        if let Some(unit) = unit {
            v.process.as_mut().unwrap().container = Some(Arc::new(Identity {
                unit: Some(unit.into()),
                ..Identity::bare(format!("/system.slice/{unit}"))
            }));
        }
        v
    }

    #[test]
    fn verdicts_by_pod_container_or_unit_most_first() {
        let mut s = Summary::new();
        for (unit, kind) in [
            (Some("a.service"), VerdictKind::PeerReset),
            (Some("b.service"), VerdictKind::ConnectionRefused),
            (Some("b.service"), VerdictKind::PeerReset),
            (Some("b.service"), VerdictKind::PeerReset),
            (None, VerdictKind::PeerReset),
        ] {
            s.verdict(&verdict_of(unit, kind)).unwrap();
        }
        let text = s.render(&Extra {
            filtered: 3,
            owner_filtered: 2,
            ..Extra::default()
        });
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].ends_with("3 filtered out in the kernel, 2 by the owner filter ──"),
            "{text}"
        );
        assert_eq!(lines[2], "verdicts by pod, container or unit:");
        assert_eq!(
            lines[3].split_whitespace().collect::<Vec<_>>().join(" "),
            "unit b.service connection_refused 1 · peer_reset 2"
        );
        assert_eq!(
            lines[4].split_whitespace().collect::<Vec<_>>().join(" "),
            "unit a.service peer_reset 1"
        );
        assert_eq!(
            lines[5].split_whitespace().collect::<Vec<_>>().join(" "),
            "(none of them, or not resolved) 1"
        );
        // Without any identity, no such section.
        let mut plain = Summary::new();
        plain
            .verdict(&verdict_of(None, VerdictKind::PeerReset))
            .unwrap();
        assert!(!plain.render(&Extra::default()).contains("by pod"));
    }

    /// Owners' identities shared from verdict to verdict (as a session's are), one after
    /// another and back: each verdict counted under its own owner's label.
    #[test]
    fn shared_identities_are_counted_under_their_own_labels() {
        let units = [
            verdict_of(Some("a.service"), VerdictKind::PeerReset),
            verdict_of(Some("b.service"), VerdictKind::PeerReset),
        ];
        let mut s = Summary::new();
        for which in [0, 0, 1, 0, 1, 1, 1] {
            s.verdict(&units[which]).unwrap();
        }
        let counted: Vec<(&str, u64)> = s
            .verdicts_by_owner
            .iter()
            .map(|(label, by_kind)| (label.as_str(), by_kind[&VerdictKind::PeerReset]))
            .collect();
        assert_eq!(counted, [("unit a.service", 3), ("unit b.service", 4)]);
    }
}
