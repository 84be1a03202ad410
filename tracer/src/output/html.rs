//! `tracer report --format html`: one self-contained page to attach to a ticket. The
//! summary, the verdicts by kind, and each socket's timeline drawn as SVG: its TCP states as
//! bands on a time axis, its events as marks (retransmission timeouts bracketed with the
//! wait before each, so the backoff shows), its verdicts as lines across.
//!
//! No scripts, fonts, images or styles from elsewhere: a Content-Security-Policy in the page
//! itself forbids loading anything, so it reads the same on an air-gapped host. Times are
//! UTC.

use std::{collections::BTreeMap, fmt::Write as _, io::Write};

use anyhow::Result;

use super::{Summary, text::describe};
use crate::{
    event::{Event, EventKind, Owner, RetransmitClass, TcpState},
    record::{End, Header, WallClock},
    timeline::{Timeline, Verdict, VerdictKind},
    words::duration_ms,
};

/// Sockets drawn; beyond, the page says how many were left out.
const MAX_SOCKETS: usize = 500;
/// The drawing's coordinate width (it scales to the page).
const WIDTH: f64 = 1000.0;
const LEFT: f64 = 10.0;
const RIGHT: f64 = 990.0;

/// What the page shows, from a replayed trace.
pub struct HtmlReport<'a> {
    pub header: &'a Header,
    pub end_ns: u64,
    pub end: Option<&'a End>,
    pub summary: &'a Summary,
    pub verdicts: &'a [Verdict],
    pub timelines: &'a [Timeline],
    /// The report's selection in words (`--socket`, `--verdict`, `--since`...), if any.
    pub selection: Option<String>,
}

/// `&`, `<`, `>`, `"` and `'` as entities.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
:root { color-scheme: light; --ink: #1d2329; --muted: #5d6b78; --line: #d5dbe1; --death: #c8102e; --warn: #d98e04; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; color: var(--ink); margin: 0; background: #f4f6f8; }
main { max-width: 1100px; margin: 0 auto; padding: 24px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 10px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 14px; margin: 0 0 6px; font-family: ui-monospace, "DejaVu Sans Mono", monospace; }
.meta { color: var(--muted); margin: 2px 0; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 12px 0; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 8px 14px; min-width: 130px; }
.card b { display: block; font-size: 20px; }
.card span { color: var(--muted); font-size: 12px; }
table { border-collapse: collapse; background: #fff; }
td, th { border: 1px solid var(--line); padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #eef1f4; font-weight: 600; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.socket { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 12px 14px; margin: 0 0 14px; }
.owner { color: var(--muted); font-weight: normal; }
.verdict { margin: 2px 0; }
.verdict b { font-family: ui-monospace, "DejaVu Sans Mono", monospace; }
.death b { color: var(--death); }
.warning b { color: var(--warn); }
svg { display: block; width: 100%; height: auto; }
svg text { font: 11px system-ui, "DejaVu Sans", sans-serif; fill: #33404c; }
details { margin-top: 6px; }
summary { cursor: pointer; color: var(--muted); }
details table { font-size: 12px; margin-top: 6px; }
.note { background: #fff8e1; border: 1px solid #f0d68a; border-radius: 6px; padding: 6px 10px; }
footer { color: var(--muted); font-size: 12px; margin-top: 30px; }
"#;

/// Colour of a TCP state's band.
fn state_color(state: TcpState) -> &'static str {
    match state {
        TcpState::ESTABLISHED => "#b9e4c9",
        TcpState::SYN_SENT | TcpState::SYN_RECV | TcpState::NEW_SYN_RECV => "#bcd7f5",
        TcpState::CLOSE_WAIT | TcpState::LAST_ACK => "#f7d7a8",
        TcpState::FIN_WAIT1 | TcpState::FIN_WAIT2 | TcpState::CLOSING | TcpState::TIME_WAIT => {
            "#e6d3f2"
        }
        _ => "#dde2e7",
    }
}

fn verdict_color(kind: VerdictKind) -> &'static str {
    if kind == VerdictKind::PeerUnresponsive {
        "#d98e04"
    } else {
        "#c8102e"
    }
}

/// `09:54:37.611` (UTC), for the instant `ts_ns`.
fn utc_time(clock: &WallClock, ts_ns: u64) -> String {
    let text = clock.rfc3339(ts_ns);
    let time = text.split('T').nth(1).unwrap_or(&text);
    time.get(..12).unwrap_or(time).to_owned()
}

pub fn write_html(out: &mut dyn Write, r: &HtmlReport) -> Result<()> {
    let h = r.header;
    let clock = WallClock {
        boot_to_wall_offset_ns: h.boot_to_wall_offset_ns,
    };
    let mut page = String::new();
    let started = clock.rfc3339(h.started_ns);
    let span_ms = r.end_ns.saturating_sub(h.started_ns) / 1_000_000;
    write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>TCP connections on {host}, {started}</title>\n<style>{STYLE}</style>\n\
         </head>\n<body>\n<main>\n<h1>TCP connections on {host}</h1>\n\
         <p class=\"meta\">kernel {kernel} (HZ {hz}) · traced from {started} for {span} \
         (times in UTC) · tracer {version}</p>\n",
        host = escape(&h.hostname),
        kernel = escape(&h.kernel_release),
        hz = h.kernel.hz,
        span = duration_ms(span_ms),
        version = escape(&h.tool_version),
    )?;
    let ended = match r.end {
        Some(end) => format!("recording ended: {}", escape(&end.reason)),
        None => "recording has no end record: it was cut short or is still being written".into(),
    };
    writeln!(page, "<p class=\"meta\">{ended}</p>")?;
    if let Some(selection) = &r.selection {
        writeln!(
            page,
            "<p class=\"note\">Selected: {}. The summary counts the whole trace.</p>",
            escape(selection)
        )?;
    }
    summary(&mut page, r)?;
    verdicts_by_kind(&mut page, r)?;
    sockets(&mut page, r, &clock)?;
    writeln!(
        page,
        "<footer>Written by <code>tracer report --format html</code> from a trace of \
         {events} events. Self-contained: nothing is loaded from elsewhere.</footer>\n\
         </main>\n</body>\n</html>",
        events = r.summary.events
    )?;
    out.write_all(page.as_bytes())?;
    Ok(())
}

fn summary(page: &mut String, r: &HtmlReport) -> Result<()> {
    let deaths: u64 = r
        .summary
        .verdicts
        .iter()
        .filter(|(k, _)| k.is_death())
        .map(|(_, n)| n)
        .sum();
    let warnings = r
        .summary
        .verdicts
        .get(&VerdictKind::PeerUnresponsive)
        .copied()
        .unwrap_or(0);
    let held = r
        .summary
        .verdicts
        .get(&VerdictKind::DeadSocketHeld)
        .copied()
        .unwrap_or(0);
    writeln!(
        page,
        "<h2 id=\"summary\">Summary</h2>\n<div class=\"cards\">"
    )?;
    for (value, label) in [
        (r.summary.events, "events"),
        (deaths, "connections died"),
        (warnings, "early warnings"),
        (held, "dead sockets held"),
        (r.summary.lost, "events lost"),
    ] {
        writeln!(
            page,
            "<div class=\"card\"><b>{value}</b><span>{label}</span></div>"
        )?;
    }
    writeln!(page, "</div>")?;
    if r.summary.lost > 0 {
        writeln!(
            page,
            "<p class=\"note\">{} events were lost in the kernel (its ring buffer was full): \
             verdicts may be missing.</p>",
            r.summary.lost
        )?;
    }
    if !r.summary.by_kind.is_empty() {
        write!(page, "<table><tr><th>event</th><th>count</th></tr>")?;
        for (kind, n) in &r.summary.by_kind {
            write!(
                page,
                "<tr><td>{}</td><td class=\"n\">{n}</td></tr>",
                kind.name()
            )?;
        }
        writeln!(page, "</table>")?;
    }
    Ok(())
}

fn verdicts_by_kind(page: &mut String, r: &HtmlReport) -> Result<()> {
    writeln!(page, "<h2 id=\"verdicts\">Verdicts by kind</h2>")?;
    let mut counts: BTreeMap<VerdictKind, u64> = BTreeMap::new();
    for v in r.verdicts {
        *counts.entry(v.verdict).or_default() += 1;
    }
    if counts.is_empty() {
        writeln!(page, "<p>No verdicts: no connection died abnormally.</p>")?;
        return Ok(());
    }
    let max = counts.values().copied().max().unwrap_or(1) as f64;
    let row = 24.0;
    let height = row * counts.len() as f64 + 6.0;
    writeln!(
        page,
        "<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" \
         aria-label=\"verdicts by kind\">"
    )?;
    for (i, (kind, n)) in counts.iter().enumerate() {
        let y = 3.0 + row * i as f64;
        let w = (600.0 * *n as f64 / max).max(2.0);
        writeln!(
            page,
            "<text x=\"180\" y=\"{ty}\" text-anchor=\"end\">{kind}</text>\
             <rect x=\"190\" y=\"{y}\" width=\"{w:.1}\" height=\"18\" fill=\"{color}\" rx=\"2\"/>\
             <text x=\"{tx:.1}\" y=\"{ty}\">{n}</text>",
            ty = y + 13.0,
            color = verdict_color(*kind),
            tx = 196.0 + w,
        )?;
    }
    writeln!(page, "</svg>")?;
    write!(
        page,
        "<table><tr><th>verdict</th><th>count</th><th>first</th></tr>"
    )?;
    for (kind, n) in &counts {
        let first = r.verdicts.iter().find(|v| v.verdict == *kind);
        let link = first.map_or(String::new(), |v| {
            format!(
                "<a href=\"#socket-{}\">{}</a>",
                v.socket.0,
                escape(&v.conn.to_string())
            )
        });
        write!(
            page,
            "<tr><td>{kind}</td><td class=\"n\">{n}</td><td>{link}</td></tr>"
        )?;
    }
    writeln!(page, "</table>")?;
    Ok(())
}

fn sockets(page: &mut String, r: &HtmlReport, clock: &WallClock) -> Result<()> {
    writeln!(
        page,
        "<h2 id=\"sockets\">Sockets ({})</h2>",
        r.timelines.len()
    )?;
    if r.timelines.is_empty() {
        writeln!(page, "<p>No socket to show.</p>")?;
        return Ok(());
    }
    legend(page)?;
    for t in r.timelines.iter().take(MAX_SOCKETS) {
        socket(page, t, clock, r.end_ns)?;
    }
    if r.timelines.len() > MAX_SOCKETS {
        writeln!(
            page,
            "<p class=\"note\">{} more sockets not drawn: select with --socket, --verdict, \
             --since or --until.</p>",
            r.timelines.len() - MAX_SOCKETS
        )?;
    }
    Ok(())
}

fn legend(page: &mut String) -> Result<()> {
    writeln!(
        page,
        "<svg class=\"legend\" viewBox=\"0 0 {WIDTH} 26\" role=\"img\" aria-label=\"legend\">\
         <rect x=\"10\" y=\"6\" width=\"26\" height=\"12\" fill=\"{est}\"/>\
         <text x=\"40\" y=\"16\">ESTABLISHED</text>\
         <rect x=\"130\" y=\"6\" width=\"26\" height=\"12\" fill=\"{syn}\"/>\
         <text x=\"160\" y=\"16\">connecting</text>\
         <rect x=\"240\" y=\"6\" width=\"26\" height=\"12\" fill=\"{fin}\"/>\
         <text x=\"270\" y=\"16\">closing</text>\
         {rto}<text x=\"355\" y=\"16\">RTO retransmit</text>\
         {other}<text x=\"475\" y=\"16\">other retransmit</text>\
         {probe}<text x=\"600\" y=\"16\">probe</text>\
         {reset}<text x=\"665\" y=\"16\">reset</text>\
         {error}<text x=\"730\" y=\"16\">error</text>\
         <line x1=\"790\" y1=\"3\" x2=\"790\" y2=\"23\" stroke=\"#c8102e\" stroke-width=\"2\" \
         stroke-dasharray=\"4 2\"/><text x=\"796\" y=\"16\">verdict</text>\
         {drop}<text x=\"870\" y=\"16\">dropped here</text></svg>",
        est = state_color(TcpState::ESTABLISHED),
        syn = state_color(TcpState::SYN_SENT),
        fin = state_color(TcpState::FIN_WAIT1),
        rto = mark(
            EventKind::Retransmit,
            Some(RetransmitClass::Rto),
            345.0,
            12.0,
            ""
        ),
        other = mark(
            EventKind::Retransmit,
            Some(RetransmitClass::Fast),
            465.0,
            12.0,
            ""
        ),
        probe = mark(EventKind::KeepaliveProbe, None, 590.0, 12.0, ""),
        reset = mark(EventKind::ResetReceived, None, 655.0, 12.0, ""),
        error = mark(EventKind::ErrorReport, None, 720.0, 12.0, ""),
        drop = mark(EventKind::Drop, None, 860.0, 12.0, ""),
    )?;
    Ok(())
}

/// The SVG mark of an event at (`x`, `y`), with `title` as its tooltip.
fn mark(kind: EventKind, class: Option<RetransmitClass>, x: f64, y: f64, title: &str) -> String {
    let title = if title.is_empty() {
        String::new()
    } else {
        format!("<title>{}</title>", escape(title))
    };
    match kind {
        EventKind::Retransmit
            if matches!(class, Some(RetransmitClass::Rto | RetransmitClass::Syn)) =>
        {
            format!(
                "<path d=\"M{:.1} {:.1} l-5 9 h10 z\" fill=\"#c8102e\">{title}</path>",
                x,
                y - 6.0
            )
        }
        EventKind::Retransmit | EventKind::RetransmitFailed => format!(
            "<path d=\"M{:.1} {:.1} l-4 7 h8 z\" fill=\"#f08a24\">{title}</path>",
            x,
            y - 4.0
        ),
        EventKind::KeepaliveProbe | EventKind::ZeroWindowProbe => format!(
            "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"4.5\" fill=\"#7b3fb5\">{title}</circle>"
        ),
        EventKind::ResetReceived | EventKind::ResetSent => format!(
            "<path d=\"M{:.1} {:.1} l9 9 m0 -9 l-9 9\" stroke=\"#111\" stroke-width=\"2.2\">\
             {title}</path>",
            x - 4.5,
            y - 4.5
        ),
        EventKind::ErrorReport => format!(
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"8\" height=\"8\" fill=\"#c8102e\">{title}</rect>",
            x - 4.0,
            y - 4.0
        ),
        EventKind::Destroy => format!(
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"3\" height=\"14\" fill=\"#5d6b78\">{title}</rect>",
            x - 1.5,
            y - 7.0
        ),
        EventKind::Drop => format!(
            "<path d=\"M{:.1} {:.1} l4 8 l-8 0 z\" fill=\"#8a6d00\" transform=\"rotate(180 {x:.1} {y:.1})\">\
             {title}</path>",
            x,
            y - 4.0
        ),
        EventKind::StateChange | EventKind::Sweep => format!(
            "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"2.5\" fill=\"#5d6b78\">{title}</circle>"
        ),
    }
}

/// Maps trace time to the drawing's x.
struct Axis {
    from_ns: u64,
    to_ns: u64,
}

impl Axis {
    fn x(&self, ts_ns: u64) -> f64 {
        let span = self.to_ns.saturating_sub(self.from_ns).max(1) as f64;
        LEFT + (RIGHT - LEFT) * ts_ns.saturating_sub(self.from_ns) as f64 / span
    }

    /// Tick marks: a round step giving 4 to 10 ticks.
    fn ticks(&self) -> Vec<u64> {
        let span_ms = (self.to_ns.saturating_sub(self.from_ns) / 1_000_000).max(1);
        let steps = [
            1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 30_000,
            60_000, 120_000, 300_000, 600_000, 1_800_000, 3_600_000, 7_200_000,
        ];
        let step = steps
            .into_iter()
            .find(|s| span_ms / s <= 8)
            .unwrap_or(14_400_000);
        (0..=span_ms / step).map(|i| i * step).collect()
    }
}

fn socket(page: &mut String, t: &Timeline, clock: &WallClock, end_ns: u64) -> Result<()> {
    let events: Vec<&Event> = t.kept_events().collect();
    let last = t
        .verdicts
        .iter()
        .map(|v| v.ts_ns)
        .chain([t.last_ns])
        .max()
        .unwrap_or(t.last_ns);
    let open_end = if t.state == TcpState::CLOSE {
        last
    } else {
        end_ns.max(last)
    };
    // A little room after the last moment, so that its mark is not on the edge.
    let span = open_end.saturating_sub(t.first_ns).max(1_000_000);
    let axis = Axis {
        from_ns: t.first_ns,
        to_ns: t.first_ns + span + span / 40,
    };
    let owner = Owner::label(t.process.as_ref());
    writeln!(
        page,
        "<article class=\"socket\" id=\"socket-{id}\">\n<h3>{tuple} \
         <span class=\"owner\">{owner} · netns {netns} · socket {id} (sk:{hex}) · from {from}\
         </span></h3>",
        id = t.socket.0,
        tuple = escape(&t.conn.to_string()),
        owner = escape(&owner),
        netns = t.conn.netns,
        hex = t.socket,
        from = utc_time(clock, t.first_ns),
    )?;
    for v in &t.verdicts {
        let class = if v.verdict == VerdictKind::PeerUnresponsive {
            "warning"
        } else {
            "death"
        };
        writeln!(
            page,
            "<p class=\"verdict {class}\"><b>{}</b> at {}: {}</p>",
            v.verdict,
            utc_time(clock, v.ts_ns),
            escape(&v.explanation)
        )?;
    }
    let height = 118.0;
    writeln!(
        page,
        "<svg viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" aria-label=\"timeline of socket {}\">",
        t.socket.0
    )?;
    // States: a band from each state change to the next.
    let mut bands: Vec<(TcpState, u64, u64)> = Vec::new();
    let mut current: Option<(TcpState, u64)> = events
        .first()
        .filter(|e| e.kind != EventKind::StateChange)
        .map(|e| (e.state, e.ts_ns));
    for e in &events {
        if e.kind == EventKind::StateChange {
            if let Some((state, since)) = current.take() {
                bands.push((state, since, e.ts_ns));
            }
            current = Some((e.state, e.ts_ns));
        }
    }
    if let Some((state, since)) = current {
        let until = if state == TcpState::CLOSE {
            since
        } else {
            open_end
        };
        bands.push((state, since, until));
    }
    for (state, from, to) in &bands {
        let (x1, x2) = (axis.x(*from), axis.x(*to));
        let w = (x2 - x1).max(1.5);
        writeln!(
            page,
            "<rect x=\"{x1:.1}\" y=\"8\" width=\"{w:.1}\" height=\"20\" fill=\"{}\">\
             <title>{state} {} → {}</title></rect>",
            state_color(*state),
            utc_time(clock, *from),
            utc_time(clock, *to)
        )?;
        let label = state.to_string();
        if w > label.len() as f64 * 6.5 + 6.0 {
            writeln!(page, "<text x=\"{:.1}\" y=\"22\">{label}</text>", x1 + 4.0)?;
        }
    }
    // Events, and the wait before each RTO (the backoff).
    for e in &events {
        let (name, details) = describe(e);
        let title = format!("{} {name} {details}", utc_time(clock, e.ts_ns));
        page.push_str(&mark(e.kind, e.class, axis.x(e.ts_ns), 48.0, &title));
        page.push('\n');
    }
    backoff(page, &events, &axis)?;
    if t.truncated > 0 {
        writeln!(
            page,
            "<text x=\"{:.1}\" y=\"40\" text-anchor=\"middle\">… {} events not kept …</text>",
            (LEFT + RIGHT) / 2.0,
            t.truncated
        )?;
    }
    // Verdicts: a dashed line across, named.
    for v in &t.verdicts {
        let x = axis.x(v.ts_ns);
        let color = verdict_color(v.verdict);
        let anchor = if x > WIDTH * 0.7 { "end" } else { "start" };
        let tx = if anchor == "end" { x - 4.0 } else { x + 4.0 };
        writeln!(
            page,
            "<line x1=\"{x:.1}\" y1=\"2\" x2=\"{x:.1}\" y2=\"88\" stroke=\"{color}\" \
             stroke-width=\"2\" stroke-dasharray=\"4 2\"><title>{}</title></line>\
             <text x=\"{tx:.1}\" y=\"40\" text-anchor=\"{anchor}\" style=\"fill:{color};\
             font-weight:600\">{}</text>",
            escape(&v.explanation),
            v.verdict
        )?;
    }
    // The time axis, from the socket's first event.
    writeln!(
        page,
        "<line x1=\"{LEFT}\" y1=\"92\" x2=\"{RIGHT}\" y2=\"92\" stroke=\"#8895a2\"/>"
    )?;
    for tick in axis.ticks() {
        let x = axis.x(t.first_ns + tick * 1_000_000);
        let anchor = if tick == 0 { "start" } else { "middle" };
        writeln!(
            page,
            "<line x1=\"{x:.1}\" y1=\"92\" x2=\"{x:.1}\" y2=\"97\" stroke=\"#8895a2\"/>\
             <text x=\"{x:.1}\" y=\"110\" text-anchor=\"{anchor}\">+{}</text>",
            duration_ms(tick)
        )?;
    }
    writeln!(page, "</svg>")?;
    // Every event, as text.
    writeln!(
        page,
        "<details><summary>{} events{}</summary><table><tr><th>time (UTC)</th><th>event</th>\
         <th>details</th><th>state</th></tr>",
        events.len(),
        if t.truncated > 0 {
            format!(" ({} more not kept)", t.truncated)
        } else {
            String::new()
        }
    )?;
    for e in &events {
        let (name, details) = describe(e);
        writeln!(
            page,
            "<tr><td>{}</td><td>{name}</td><td>{}</td><td>{}</td></tr>",
            utc_time(clock, e.ts_ns),
            escape(&details),
            e.state
        )?;
    }
    writeln!(page, "</table></details>\n</article>")?;
    Ok(())
}

/// Brackets between consecutive RTO (or SYN) retransmits of a streak, labelled with the
/// wait: 200 ms, 400 ms, 800 ms... the exponential backoff, visible.
fn backoff(page: &mut String, events: &[&Event], axis: &Axis) -> Result<()> {
    let rtos: Vec<&Event> = events
        .iter()
        .copied()
        .filter(|e| {
            e.kind == EventKind::Retransmit
                && matches!(e.class, Some(RetransmitClass::Rto | RetransmitClass::Syn))
        })
        .collect();
    for pair in rtos.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        // A new streak starts over at 1: no bracket across it.
        let consecutive = |e: &Event| e.sock.as_ref().map_or(0, |s| s.retransmits);
        if consecutive(b) <= consecutive(a) && consecutive(b) != 0 {
            continue;
        }
        let (x1, x2) = (axis.x(a.ts_ns), axis.x(b.ts_ns));
        if x2 - x1 < 4.0 {
            continue;
        }
        let gap = duration_ms(b.ts_ns.saturating_sub(a.ts_ns) / 1_000_000);
        writeln!(
            page,
            "<path d=\"M{x1:.1} 60 v6 H{x2:.1} v-6\" fill=\"none\" stroke=\"#c8102e\" \
             stroke-width=\"1\"><title>waited {gap}</title></path>"
        )?;
        if x2 - x1 > gap.len() as f64 * 6.0 + 4.0 {
            writeln!(
                page,
                "<text x=\"{:.1}\" y=\"80\" text-anchor=\"middle\" style=\"fill:#c8102e\">{gap}</text>",
                (x1 + x2) / 2.0
            )?;
        }
    }
    Ok(())
}
