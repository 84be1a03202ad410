//! `tracer report FILE`: rebuild timelines and verdicts from a recorded trace, without
//! privileges, and print them as text, JSON or a Perfetto trace.

use std::{
    collections::BTreeMap,
    fs::File,
    io::{BufWriter, Write},
};

use std::net::IpAddr;

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::json;

use crate::{
    cli::{ReportArgs, ReportFormat},
    event::{Event, Family, Process, SocketId, TcpState},
    output::{
        Sink, Summary,
        perfetto::chrome_trace,
        summary::Extra,
        text::{Text, clock_time, process_label},
    },
    record::{Header, Record},
    timeline::{Engine, Retain, Thresholds, Timeline, Verdict, VerdictKind, words::duration_ms},
    trace_file::TraceReader,
};

/// Everything a report prints, rebuilt from the trace.
pub struct Replay {
    pub header: Header,
    pub timelines: Vec<Timeline>,
    pub verdicts: Vec<Verdict>,
    /// Verdict records found in the trace (what the live tracer concluded).
    pub recorded: BTreeMap<(u64, VerdictKind), usize>,
    pub summary: Summary,
    pub extra: Extra,
    pub end_ns: u64,
    pub truncated: Option<String>,
}

/// The thresholds the trace was recorded with, unless the user overrides them.
fn thresholds(header: &Header, args: &ReportArgs) -> Thresholds {
    let recorded = header.thresholds;
    let dead_socket_after_ms = args
        .thresholds
        .dead_socket_after
        .map(|d| d.as_millis() as u64)
        .or(recorded.map(|t| t.dead_socket_after_ms))
        .unwrap_or(30_000);
    Thresholds {
        warn_after_rtos: args
            .thresholds
            .warn_after_rtos
            .or(recorded.and_then(|t| t.warn_after_rtos)),
        dead_socket_after_ns: dead_socket_after_ms * 1_000_000,
        ..Thresholds::default()
    }
}

/// Records decoded on a second thread, handed over in batches: decoding JSON is most of a
/// report's work, and the engine keeps the order.
const BATCH: usize = 4096;

pub fn replay(args: &ReportArgs) -> Result<Replay> {
    let (mut reader, header) = TraceReader::open(&args.input)?;
    let mut engine = Engine::new(thresholds(&header, args));
    engine.retain(if args.all {
        Retain::All
    } else {
        Retain::WithVerdicts
    });
    let mut summary = Summary::new();
    summary.header(&header)?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Record>>(4);
    let decoder = std::thread::Builder::new().name("decode".into()).spawn(
        move || -> Result<Option<String>> {
            let mut batch = Vec::with_capacity(BATCH);
            while let Some(record) = reader.next_record()? {
                batch.push(record);
                if batch.len() == BATCH
                    && tx
                        .send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))
                        .is_err()
                {
                    return Ok(reader.truncated);
                }
            }
            let _ = tx.send(batch);
            Ok(reader.truncated)
        },
    )?;
    let mut verdicts = Vec::new();
    let mut recorded = BTreeMap::new();
    let mut end_ns = header.started_ns;
    for batch in rx {
        for record in batch {
            end_ns = end_ns.max(record.ts_ns());
            match record {
                Record::Event(e) => {
                    summary.event(&e)?;
                    engine.push(*e, &mut verdicts);
                }
                Record::Verdict(v) => *recorded.entry((v.socket.0, v.verdict)).or_default() += 1,
                Record::Lost(l) => summary.lost(&l)?,
                Record::Header(_) | Record::End(_) => {}
            }
        }
    }
    let truncated = decoder
        .join()
        .map_err(|_| anyhow::anyhow!("the trace decoder panicked"))??;
    engine.finish(end_ns, &mut verdicts);
    for v in &verdicts {
        summary.verdict(v)?;
    }
    let extra = Extra {
        filtered: 0,
        engine: engine.stats(),
    };
    let mut timelines = engine.take_finished();
    timelines.extend(
        engine
            .timelines()
            .filter(|t| args.all || !t.verdicts.is_empty())
            .cloned(),
    );
    timelines.sort_by_key(|t| (t.first_ns, t.socket));
    Ok(Replay {
        header,
        timelines,
        verdicts,
        recorded,
        summary,
        extra,
        end_ns,
        truncated,
    })
}

pub fn run(args: ReportArgs) -> Result<()> {
    let replay = replay(&args)?;
    if let Some(warning) = &replay.truncated {
        eprintln!("tracer: warning: {warning}; reporting the rest");
    }
    let (mut out, name): (Box<dyn Write>, String) = match &args.output {
        Some(path) => (
            Box::new(BufWriter::new(
                File::create(path).with_context(|| format!("cannot write {}", path.display()))?,
            )),
            path.display().to_string(),
        ),
        None => (Box::new(std::io::stdout().lock()), "stdout".into()),
    };
    let written = match args.format {
        ReportFormat::Text => write_text(&mut out, &replay, args.all),
        ReportFormat::Json => write_json(&mut out, &replay),
        ReportFormat::Perfetto => {
            let refs: Vec<&Timeline> = replay.timelines.iter().collect();
            let doc = chrome_trace(&refs, replay.header.started_ns, replay.end_ns);
            serde_json::to_writer(&mut out, &doc).map_err(anyhow::Error::from)
        }
    };
    written
        .and_then(|()| out.flush().map_err(anyhow::Error::from))
        .with_context(|| format!("writing {name}"))
}

fn replayed_set(replay: &Replay) -> BTreeMap<(u64, VerdictKind), usize> {
    let mut set = BTreeMap::new();
    for v in &replay.verdicts {
        *set.entry((v.socket.0, v.verdict)).or_default() += 1;
    }
    set
}

fn write_text(out: &mut dyn Write, replay: &Replay, all: bool) -> Result<()> {
    let h = &replay.header;
    let offset = h.boot_to_wall_offset_ns;
    writeln!(
        out,
        "trace from {} (kernel {}, HZ {}), started {}, {}",
        h.hostname,
        h.kernel_release,
        h.kernel.hz,
        clock_time(h.started_ns as i64 + offset),
        duration_ms((replay.end_ns - h.started_ns) / 1_000_000)
    )?;
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
    if !replay.recorded.is_empty() && replay.recorded != replayed_set(replay) {
        writeln!(
            out,
            "note: the live tracer reached different verdicts than this replay \
             (thresholds changed, or events were lost)"
        )?;
    }
    let mut text = Text::new(Vec::new(), false);
    text.header(h)?;
    for t in &replay.timelines {
        if !all && t.verdicts.is_empty() {
            continue;
        }
        writeln!(
            out,
            "\n{} → {}   {}   netns {}   socket {}",
            crate::event::endpoint(t.laddr, t.lport),
            crate::event::endpoint(t.raddr, t.rport),
            process_label(t.process.as_ref()),
            t.netns,
            t.socket
        )?;
        let mut verdicts = t.verdicts.iter().peekable();
        for (shown, e) in t.kept_events().enumerate() {
            while let Some(v) = verdicts.next_if(|v| v.ts_ns < e.ts_ns) {
                writeln!(out, "  {}", text.compact_verdict(v))?;
            }
            if shown == t.events.len() && t.truncated > 0 {
                writeln!(out, "  … {} events not kept …", t.truncated)?;
            }
            writeln!(out, "  {}", text.compact_line(e))?;
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
    family: Family,
    laddr: IpAddr,
    lport: u16,
    raddr: IpAddr,
    rport: u16,
    netns: u32,
    process: &'a Option<Process>,
    first_ns: u64,
    last_ns: u64,
    state: TcpState,
    error: Option<&'a str>,
    retransmits: u32,
    truncated_events: u64,
    verdicts: Vec<VerdictKind>,
    events: Vec<&'a Event>,
}

/// Written piece by piece: a report of a million events must not build a document tree.
fn write_json(out: &mut dyn Write, replay: &Replay) -> Result<()> {
    let h = &replay.header;
    let trace = json!({
        "hostname": h.hostname,
        "kernel_release": h.kernel_release,
        "started_ns": h.started_ns,
        "end_ns": replay.end_ns,
        "boot_to_wall_offset_ns": h.boot_to_wall_offset_ns,
        "events": replay.summary.events,
        "lost": replay.summary.lost,
        "truncated": replay.truncated,
    });
    write!(out, "{{\"trace\":{trace},\"verdict_counts\":")?;
    serde_json::to_writer(&mut *out, &replay.summary.verdicts)?;
    write!(out, ",\"verdicts\":")?;
    serde_json::to_writer(&mut *out, &replay.verdicts)?;
    write!(out, ",\"timelines\":[")?;
    for (i, t) in replay.timelines.iter().enumerate() {
        if i > 0 {
            write!(out, ",")?;
        }
        let view = TimelineJson {
            socket: t.socket,
            family: t.family,
            laddr: t.laddr,
            lport: t.lport,
            raddr: t.raddr,
            rport: t.rport,
            netns: t.netns,
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
