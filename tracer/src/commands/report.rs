//! `tracer report FILE`: rebuild timelines and verdicts from a recorded trace, without
//! privileges, and print them as text, JSON, a Perfetto trace or a self-contained HTML page.
//!
//! The events go through the same engine as live tracing, with the thresholds the trace
//! was recorded with; time-based verdicts are decided at the trace's last timestamp. The
//! verdicts the live tracer wrote into the trace are compared with the replay's: a
//! difference means the replay did not see what the live tracer saw (changed thresholds,
//! a cut trace, a bug) and is said so.

use std::{
    collections::BTreeMap,
    fs::File,
    io::{BufWriter, IsTerminal, Write},
};

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::json;

use super::selection::{Selection, TimeSpec};
use crate::{
    cli::{ColorChoice, ReportArgs, ReportFormat},
    event::{Connection, Errno, Event, Owner, SocketId, TcpState},
    output::{
        Sink, Summary,
        html::{HtmlReport, write_html},
        perfetto::write_chrome_trace,
        summary::Extra,
        text::{Text, clock_time, is_noise, use_color},
    },
    record::{End, Header, Record, WallClock},
    timeline::{Engine, Retain, Timeline, Verdict, VerdictKind},
    trace_file::TraceReader,
    words::duration_ms,
};

/// Everything a report prints, rebuilt from the trace.
pub struct Replay {
    pub header: Header,
    /// Sorted by first event.
    pub timelines: Vec<Timeline>,
    /// In the order they were reached.
    pub verdicts: Vec<Verdict>,
    /// The verdict records of the trace (what the live tracer concluded).
    pub recorded: Vec<VerdictSeen>,
    /// The trace's `end` record; None when the recording was cut short.
    pub end: Option<End>,
    pub summary: Summary,
    pub extra: Extra,
    /// The trace's last timestamp: time-based verdicts are decided as of then.
    pub end_ns: u64,
    /// The warning for a cut last line.
    pub truncated: Option<String>,
}

/// Reads the whole trace through the engine. One thread: decoding and the engine together
/// are faster on one core than split across two (allocations would cross threads).
pub fn replay(args: &ReportArgs) -> Result<Replay> {
    let (mut reader, header) = TraceReader::open(&args.input)?;
    let mut engine = Engine::new(args.thresholds.thresholds(header.thresholds));
    // A socket asked for by name is reported with or without a verdict.
    let all = args.all || !args.sockets.is_empty();
    engine.retain(if all {
        Retain::All
    } else {
        Retain::WithVerdicts
    });
    let mut summary = Summary::new();
    summary.header(&header)?;
    let mut verdicts = Vec::new();
    let mut recorded = Vec::new();
    let mut end = None;
    let mut end_ns = header.started_ns;
    while let Some(record) = reader.next_record()? {
        end_ns = end_ns.max(record.ts_ns());
        match record {
            Record::Event(e) => {
                summary.event(&e)?;
                engine.push_boxed(e, &mut verdicts);
            }
            Record::Verdict(v) => recorded.push(VerdictSeen::of(&v)),
            Record::Lost(l) => summary.lost(&l)?,
            Record::End(e) => {
                summary.end(&e)?;
                end = Some(e);
            }
            Record::Header(_) => {} // refused by the reader
        }
    }
    engine.finish(end_ns, &mut verdicts);
    for v in &verdicts {
        summary.verdict(v)?;
    }
    let extra = Extra {
        engine: engine.stats(),
        ..Extra::default()
    };
    let mut timelines = engine.take_finished();
    timelines.extend(
        engine
            .timelines()
            .filter(|t| all || !t.verdicts.is_empty())
            .cloned(),
    );
    timelines.sort_by_key(|t| (t.first_ns, t.socket));
    Ok(Replay {
        header,
        timelines,
        verdicts,
        recorded,
        end,
        summary,
        extra,
        end_ns,
        truncated: reader.truncated().map(str::to_owned),
    })
}

/// The selection options, resolved against the trace.
fn selection(args: &ReportArgs, header: &Header) -> Result<Selection> {
    let mut words = Vec::new();
    words.extend(args.sockets.iter().map(|s| format!("--socket {}", s.0)));
    words.extend(args.verdicts.iter().map(|v| format!("--verdict {v}")));
    let mut resolve = |spec: &Option<TimeSpec>, option: &str| -> Result<Option<u64>> {
        let Some(spec) = spec else { return Ok(None) };
        let ts = spec
            .resolve(header)
            .with_context(|| format!("{option}: the trace cannot say when that was"))?;
        let clock = WallClock {
            boot_to_wall_offset_ns: header.boot_to_wall_offset_ns,
        };
        words.push(format!("{option} {}", clock.rfc3339(ts)));
        Ok(Some(ts))
    };
    let since_ns = resolve(&args.since, "--since")?;
    let until_ns = resolve(&args.until, "--until")?;
    Ok(Selection {
        sockets: args.sockets.clone(),
        verdicts: args.verdicts.clone(),
        since_ns,
        until_ns,
        words,
    })
}

pub fn run(args: ReportArgs) -> Result<()> {
    let mut replay = replay(&args)?;
    let selection = selection(&args, &replay.header)?;
    replay.timelines.retain(|t| selection.keeps_timeline(t));
    let selected: Vec<Verdict> = replay
        .verdicts
        .iter()
        .filter(|v| selection.keeps_verdict(v))
        .cloned()
        .collect();
    let selected_words = (!selection.is_everything()).then(|| selection.words.join(" "));
    if let Some(warning) = &replay.truncated {
        eprintln!("tracer: warning: {warning}; reporting the rest");
    }
    // Created only now: a trace that cannot be read leaves an existing report untouched.
    let (mut out, name, terminal): (Box<dyn Write>, String, bool) = match &args.output {
        Some(path) => (
            Box::new(BufWriter::new(
                File::create(path).with_context(|| format!("cannot write {}", path.display()))?,
            )),
            path.display().to_string(),
            false,
        ),
        None => {
            let stdout = std::io::stdout();
            let terminal = stdout.is_terminal();
            (
                Box::new(BufWriter::new(stdout.lock())),
                "stdout".into(),
                terminal,
            )
        }
    };
    let written = match args.format {
        ReportFormat::Text => write_text(
            &mut out,
            &replay,
            selected_words.as_deref(),
            args.all || !args.sockets.is_empty(),
            args.verbose,
            use_color(ColorChoice::Auto, terminal),
        ),
        ReportFormat::Json => write_json(&mut out, &replay, &selected, selected_words.as_deref()),
        ReportFormat::Html => write_html(
            &mut out,
            &HtmlReport {
                header: &replay.header,
                end_ns: replay.end_ns,
                end: replay.end.as_ref(),
                summary: &replay.summary,
                verdicts: &selected,
                timelines: &replay.timelines,
                selection: selected_words.clone(),
            },
        ),
        ReportFormat::Perfetto => write_chrome_trace(
            &mut out,
            &replay.timelines,
            perfetto_origin(&replay),
            replay.end_ns,
        ),
    };
    written
        .and_then(|()| out.flush().map_err(anyhow::Error::from))
        .with_context(|| format!("writing {name}"))
}

/// Time zero of the Perfetto trace: the start of tracing, or an earlier event (events
/// already in the ring buffer when the header was written).
fn perfetto_origin(replay: &Replay) -> u64 {
    replay
        .timelines
        .iter()
        .map(|t| t.first_ns)
        .fold(replay.header.started_ns, u64::min)
}

/// A verdict as compared between the live trace and the replay (small: a trace may hold
/// many).
#[derive(Debug, Clone, Copy)]
pub struct VerdictSeen {
    pub socket: SocketId,
    pub kind: VerdictKind,
    pub conn: Connection,
}

impl VerdictSeen {
    fn of(v: &Verdict) -> VerdictSeen {
        VerdictSeen {
            socket: v.socket,
            kind: v.verdict,
            conn: v.conn,
        }
    }

    fn label(&self) -> String {
        format!("{} {} {}", self.kind, socket_label(self.socket), self.conn)
    }
}

/// How the verdicts in the trace compare with the replay's.
#[derive(Debug, Default, Serialize)]
pub struct LiveComparison {
    /// Verdict records in the trace.
    pub in_trace: usize,
    pub same: bool,
    /// Reached live, not by the replay: `kind socket endpoints`.
    pub only_live: Vec<String>,
    /// Reached by the replay, not live.
    pub only_replay: Vec<String>,
}

impl Replay {
    /// None when the trace does not say what the live tracer concluded (its verdict records
    /// were filtered out, or it was cut before any).
    pub fn compare_with_live(&self) -> Option<LiveComparison> {
        let live_known =
            !self.recorded.is_empty() || self.end.as_ref().is_some_and(|e| e.verdicts == 0);
        if !live_known {
            return None;
        }
        let count = |verdicts: &mut dyn Iterator<Item = VerdictSeen>| {
            let mut set: BTreeMap<(SocketId, VerdictKind), (usize, VerdictSeen)> = BTreeMap::new();
            for v in verdicts {
                set.entry((v.socket, v.kind)).or_insert((0, v)).0 += 1;
            }
            set
        };
        let live = count(&mut self.recorded.iter().copied());
        let replayed = count(&mut self.verdicts.iter().map(VerdictSeen::of));
        let mut comparison = LiveComparison {
            in_trace: self.recorded.len(),
            ..LiveComparison::default()
        };
        // Multiset differences, both ways.
        for (mine, theirs, out) in [
            (&live, &replayed, &mut comparison.only_live),
            (&replayed, &live, &mut comparison.only_replay),
        ] {
            for (key, (n, seen)) in mine {
                let m = theirs.get(key).map_or(0, |r| r.0);
                out.extend((m..*n).map(|_| seen.label()));
            }
        }
        comparison.same = comparison.only_live.is_empty() && comparison.only_replay.is_empty();
        Some(comparison)
    }
}

/// `socket 257 (sk:101)`: the number as in the trace (for jq), and as `ss -e` shows the
/// same cookie.
fn socket_label(socket: SocketId) -> String {
    format!("socket {} (sk:{socket})", socket.0)
}

/// Differences listed in the text report before "and N more".
const DIFFERENCES_SHOWN: usize = 5;

fn write_text(
    out: &mut dyn Write,
    replay: &Replay,
    selection: Option<&str>,
    all: bool,
    verbose: bool,
    color: bool,
) -> Result<()> {
    let h = &replay.header;
    let offset = h.boot_to_wall_offset_ns;
    writeln!(
        out,
        "trace from {} (kernel {}, HZ {}), {} → {} ({})",
        h.hostname,
        h.kernel_release,
        h.kernel.hz,
        clock_time(h.started_ns as i64 + offset),
        clock_time(replay.end_ns as i64 + offset),
        duration_ms(replay.end_ns.saturating_sub(h.started_ns) / 1_000_000)
    )?;
    match &replay.end {
        Some(end) if end.lost + end.kernel_skipped > 0 => writeln!(
            out,
            "recording ended: {} ({} events lost in the kernel)",
            end.reason,
            end.lost + end.kernel_skipped
        )?,
        Some(end) => writeln!(out, "recording ended: {}", end.reason)?,
        None => writeln!(
            out,
            "recording has no end record: it was cut short (killed, crashed, disk full) or is \
             still being written"
        )?,
    }
    let missing: Vec<&str> = h
        .hooks
        .iter()
        .filter(|k| !k.attached)
        .map(|k| k.tracepoint.as_str())
        .collect();
    if !missing.is_empty() {
        writeln!(out, "hooks missing when recorded: {}", missing.join(", "))?;
    }
    write!(out, "{}", replay.summary.render(&replay.extra))?;
    if let Some(live) = replay.compare_with_live() {
        if live.same {
            writeln!(
                out,
                "the live tracer reached the same {} verdicts",
                live.in_trace
            )?;
        } else {
            writeln!(
                out,
                "note: the live tracer reached different verdicts than this replay (thresholds \
                 overridden, a cut trace, or a live/replay difference):"
            )?;
            for (label, list) in [
                ("only live:  ", &live.only_live),
                ("only replay:", &live.only_replay),
            ] {
                for item in list.iter().take(DIFFERENCES_SHOWN) {
                    writeln!(out, "  {label} {item}")?;
                }
                if list.len() > DIFFERENCES_SHOWN {
                    writeln!(
                        out,
                        "  {label} … and {} more",
                        list.len() - DIFFERENCES_SHOWN
                    )?;
                }
            }
        }
    }
    if let Some(selection) = selection {
        writeln!(
            out,
            "selected: {} sockets ({selection})",
            replay.timelines.len()
        )?;
        if replay.timelines.is_empty() {
            writeln!(out, "\nno socket matches the selection")?;
            return Ok(());
        }
    }
    if replay.timelines.is_empty() {
        if !all {
            writeln!(out, "\nno socket got a verdict (--all shows every socket)")?;
        }
        return Ok(());
    }
    let mut text = Text::new(Vec::new(), color);
    text.header(h)?;
    for t in &replay.timelines {
        if !all && t.verdicts.is_empty() {
            continue;
        }
        writeln!(
            out,
            "\n{}   {}   netns {}   {}",
            t.conn,
            Owner::label(t.process.as_ref()),
            t.conn.netns,
            socket_label(t.socket)
        )?;
        let mut verdicts = t.verdicts.iter().peekable();
        for (shown, e) in t.kept_events().enumerate() {
            while let Some(v) = verdicts.next_if(|v| v.ts_ns < e.ts_ns) {
                writeln!(out, "  {}", text.compact_verdict(v))?;
            }
            if shown == t.events.len() && t.truncated > 0 {
                writeln!(out, "  … {} events not kept …", t.truncated)?;
            }
            if verbose || !is_noise(e) {
                writeln!(out, "  {}", text.compact_line(e))?;
            }
        }
        for v in verdicts {
            writeln!(out, "  {}", text.compact_verdict(v))?;
        }
    }
    Ok(())
}

/// A timeline as the JSON report shows it.
#[derive(Serialize)]
struct TimelineJson<'a> {
    socket: SocketId,
    #[serde(flatten)]
    conn: Connection,
    process: &'a Option<Owner>,
    first_ns: u64,
    last_ns: u64,
    state: TcpState,
    error: Option<Errno>,
    retransmits: u32,
    truncated_events: u64,
    verdicts: Vec<VerdictKind>,
    events: Vec<&'a Event>,
}

/// Written piece by piece: a report of a million events must not build a document tree.
fn write_json(
    out: &mut dyn Write,
    replay: &Replay,
    verdicts: &[Verdict],
    selection: Option<&str>,
) -> Result<()> {
    let h = &replay.header;
    let engine = replay.extra.engine;
    let trace = json!({
        "hostname": h.hostname,
        "kernel_release": h.kernel_release,
        "tool_version": h.tool_version,
        "started_ns": h.started_ns,
        "end_ns": replay.end_ns,
        "boot_to_wall_offset_ns": h.boot_to_wall_offset_ns,
        "end": replay.end,
        "truncated": replay.truncated,
        "events": replay.summary.events,
        "events_by_kind": replay.summary.by_kind,
        "lost": replay.summary.lost,
        "kernel_skipped": replay.summary.kernel_skipped,
        "engine": {
            "evicted": engine.evicted,
            "truncated_events": engine.truncated_events,
            "socketless": engine.socketless,
            "late": engine.late,
            "out_of_window": engine.out_of_window,
        },
    });
    write!(out, "{{\"trace\":{trace},\"verdict_counts\":")?;
    serde_json::to_writer(&mut *out, &replay.summary.verdicts)?;
    write!(out, ",\"live_verdicts\":")?;
    serde_json::to_writer(&mut *out, &replay.compare_with_live())?;
    write!(out, ",\"selection\":")?;
    let selection = selection.map(|words| {
        json!({"options": words, "sockets": replay.timelines.len(), "verdicts": verdicts.len()})
    });
    serde_json::to_writer(&mut *out, &selection)?;
    write!(out, ",\"verdicts\":")?;
    serde_json::to_writer(&mut *out, verdicts)?;
    write!(out, ",\"timelines\":[")?;
    for (i, t) in replay.timelines.iter().enumerate() {
        if i > 0 {
            write!(out, ",")?;
        }
        let view = TimelineJson {
            socket: t.socket,
            conn: t.conn,
            process: &t.process,
            first_ns: t.first_ns,
            last_ns: t.last_ns,
            state: t.state,
            error: t.death_error(),
            retransmits: t.retransmits(),
            truncated_events: t.truncated,
            verdicts: t.verdicts.iter().map(|v| v.verdict).collect(),
            events: t.kept_events().collect(),
        };
        writeln!(out)?;
        serde_json::to_writer(&mut *out, &view)?;
    }
    writeln!(out, "\n]}}")?;
    Ok(())
}
