//! Human-readable lines for the terminal: one per event, verdicts standing out, a status
//! line while running.
//!
//! ```text
//! 10:42:07.118  curl/4242          10.0.0.1:40212 → 10.0.0.2:443   retransmit   RTO #3, RTO 1.6 s
//! 10:42:09.870  VERDICT retries_exhausted  curl/4242  10.0.0.1:40212 → 10.0.0.2:443
//!               peer 10.0.0.2:443 stopped acknowledging: 6 retransmits over 12.6 s ...
//! ```

use std::io::{IsTerminal, Write};

use anstyle::{AnsiColor, Style};
use anyhow::{Context, Result};

use super::{Sink, Status};
use crate::{
    cli::ColorChoice,
    event::{Event, EventKind, Process, RetransmitClass, TimerKind},
    record::{End, Header, Lost},
    timeline::{Verdict, VerdictKind, words::duration_ms},
};

/// Whether to colour: `--color`, then NO_COLOR (https://no-color.org), then "is it a
/// terminal".
pub fn use_color(choice: ColorChoice, is_terminal: bool) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        }
    }
}

/// `HH:MM:SS.mmm` in local time.
pub fn clock_time(wall_ns: i64) -> String {
    let secs = wall_ns.div_euclid(1_000_000_000);
    let millis = wall_ns.rem_euclid(1_000_000_000) / 1_000_000;
    // SAFETY: localtime_r with valid pointers; tm is plain data.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        let t = secs as libc::time_t;
        libc::localtime_r(&t, &mut tm);
        tm
    };
    format!(
        "{:02}:{:02}:{:02}.{millis:03}",
        tm.tm_hour, tm.tm_min, tm.tm_sec
    )
}

pub fn process_label(p: Option<&Process>) -> String {
    match p {
        Some(p) => format!("{}/{}", p.comm, p.pid),
        None => "-".to_owned(),
    }
}

/// The event's name and details, as a person reads them.
pub fn describe(e: &Event) -> (&'static str, String) {
    let sock = e.sock.as_ref();
    match e.kind {
        EventKind::StateChange => {
            let mut d = format!(
                "{} → {}",
                e.old_state.map(|s| s.name()).unwrap_or_default(),
                e.state
            );
            if let Some(err) = e.errno() {
                d += &format!("  {err}");
                match e.timer {
                    Some(TimerKind::Write) => d += " (retransmit timer gave up)",
                    Some(TimerKind::Keepalive) => d += " (keepalive gave up)",
                    None => {}
                }
            }
            ("state", d)
        }
        EventKind::Retransmit => {
            let consecutive = sock.map_or(0, |s| s.retransmits);
            let class = match e.class {
                Some(RetransmitClass::Rto) => format!("RTO #{consecutive}"),
                Some(RetransmitClass::Syn) => format!("SYN #{consecutive}"),
                Some(RetransmitClass::SynAck) => "SYN-ACK".into(),
                Some(RetransmitClass::Tlp) => "tail loss probe".into(),
                Some(RetransmitClass::Fast) => "fast".into(),
                Some(RetransmitClass::LossRecovery) => "loss recovery".into(),
                Some(RetransmitClass::RackTimeout) => "RACK timeout".into(),
                Some(RetransmitClass::Unknown) | None => "other".into(),
            };
            let mut d = class;
            if let Some(s) = sock.filter(|s| s.rto_us > 0) {
                d += &format!(", RTO {}", duration_ms(s.rto_us / 1000));
            }
            if let Some(segs) = e.segs.filter(|&n| n > 1) {
                d += &format!(", {segs} segments");
            }
            ("retransmit", d)
        }
        EventKind::RetransmitFailed => (
            "retransmit!",
            format!("failed, error {}", e.err.unwrap_or(0)),
        ),
        EventKind::ResetSent => {
            let reason = e.reason.as_deref().unwrap_or("reason unknown");
            if e.socket.is_none() {
                ("reset out", format!("{reason} (no socket for the segment)"))
            } else {
                ("reset out", format!("{reason}, in {}", e.state))
            }
        }
        EventKind::ResetReceived => ("reset in", format!("in {}", e.state)),
        EventKind::KeepaliveProbe => {
            let of = sock.map(|s| s.keepalive_probes).filter(|&n| n > 0);
            let mut d = match of {
                Some(n) => format!("probe {}/{n}", e.probe.unwrap_or(0)),
                None => format!("probe {}", e.probe.unwrap_or(0)),
            };
            if let Some(s) = sock.filter(|s| s.keepalive_intvl_ms > 0) {
                d += &format!(", every {}", duration_ms(s.keepalive_intvl_ms));
            }
            ("keepalive", d)
        }
        EventKind::ZeroWindowProbe => ("zero window", format!("probe {}", e.probe.unwrap_or(0))),
        EventKind::ErrorReport => (
            "error",
            match e.err.unwrap_or(0) {
                0 => "reported, no error".into(),
                n => crate::event::errno_name(n),
            },
        ),
        EventKind::Destroy => ("released", String::new()),
        EventKind::Sweep => {
            let mut d = format!("{} (already open)", e.state);
            if !e.flags.is_empty() {
                d += &format!(", {}", e.flags.join(", "));
            }
            ("open", d)
        }
    }
}

struct Styles {
    death: Style,
    warning: Style,
    lost: Style,
    dim: Style,
}

impl Styles {
    fn new(color: bool) -> Styles {
        if !color {
            return Styles {
                death: Style::new(),
                warning: Style::new(),
                lost: Style::new(),
                dim: Style::new(),
            };
        }
        Styles {
            death: Style::new().bold().fg_color(Some(AnsiColor::Red.into())),
            warning: Style::new().bold().fg_color(Some(AnsiColor::Yellow.into())),
            lost: Style::new()
                .bold()
                .fg_color(Some(AnsiColor::Magenta.into())),
            dim: Style::new().dimmed(),
        }
    }
}

pub struct Text<W: Write> {
    out: W,
    offset_ns: i64,
    styles: Styles,
    pub show_events: bool,
    pub show_verdicts: bool,
    /// A status line is kept on stderr (a terminal) and redrawn after each batch.
    status_line: Option<String>,
    status_shown: bool,
    status_enabled: bool,
}

impl<W: Write> Text<W> {
    pub fn new(out: W, color: bool) -> Self {
        Self {
            out,
            offset_ns: 0,
            styles: Styles::new(color),
            show_events: true,
            show_verdicts: true,
            status_line: None,
            status_shown: false,
            status_enabled: false,
        }
    }

    /// Shows a status line on stderr (only when stderr is a terminal).
    pub fn with_status_line(mut self) -> Self {
        self.status_enabled = std::io::stderr().is_terminal();
        self
    }

    fn time(&self, ts_ns: u64) -> String {
        clock_time(ts_ns as i64 + self.offset_ns)
    }

    fn clear_status(&mut self) {
        if self.status_shown {
            eprint!("\r\x1b[2K");
            self.status_shown = false;
        }
    }

    fn write_line(&mut self, line: &str) -> Result<()> {
        self.clear_status();
        writeln!(self.out, "{line}").context("writing to stdout")
    }

    pub fn event_line(&self, e: &Event) -> String {
        let (name, details) = describe(e);
        format!(
            "{}  {:<18} {:<46} {:<11} {}",
            self.time(e.ts_ns),
            process_label(e.process.as_ref()),
            e.endpoints(),
            name,
            details
        )
        .trim_end()
        .to_owned()
    }

    /// Time, event and details only: for listings under a socket's heading.
    pub fn compact_line(&self, e: &Event) -> String {
        let (name, details) = describe(e);
        format!("{}  {:<11} {}", self.time(e.ts_ns), name, details)
            .trim_end()
            .to_owned()
    }

    /// A verdict under its socket's heading.
    pub fn compact_verdict(&self, v: &Verdict) -> String {
        let style = if v.verdict == VerdictKind::PeerUnresponsive {
            self.styles.warning
        } else {
            self.styles.death
        };
        format!(
            "{}  {style}VERDICT {}{style:#}: {}",
            self.time(v.ts_ns),
            v.verdict,
            v.explanation
        )
    }

    pub fn verdict_lines(&self, v: &Verdict) -> String {
        let style = if v.verdict.is_death() || v.verdict == VerdictKind::DeadSocketHeld {
            self.styles.death
        } else {
            self.styles.warning
        };
        let endpoints = format!(
            "{} → {}",
            crate::event::endpoint(v.laddr, v.lport),
            crate::event::endpoint(v.raddr, v.rport)
        );
        format!(
            "{}  {style}VERDICT {}{style:#}  {}  {}\n{:14}{}",
            self.time(v.ts_ns),
            v.verdict,
            process_label(v.process.as_ref()),
            endpoints,
            "",
            v.explanation
        )
    }
}

impl<W: Write> Sink for Text<W> {
    fn header(&mut self, header: &Header) -> Result<()> {
        self.offset_ns = header.boot_to_wall_offset_ns;
        Ok(())
    }

    fn event(&mut self, e: &Event) -> Result<()> {
        if !self.show_events {
            return Ok(());
        }
        let line = self.event_line(e);
        self.write_line(&line)
    }

    fn verdict(&mut self, v: &Verdict) -> Result<()> {
        if !self.show_verdicts {
            return Ok(());
        }
        let lines = self.verdict_lines(v);
        self.write_line(&lines)
    }

    fn lost(&mut self, l: &Lost) -> Result<()> {
        let style = self.styles.lost;
        let line = format!(
            "{}  {style}LOST {} events{style:#} (the ring buffer was full; {} lost in total: \
             try --ring-buffer 16M or narrower filters)",
            self.time(l.ts_ns),
            l.lost,
            l.total
        );
        self.write_line(&line)
    }

    fn end(&mut self, _end: &End) -> Result<()> {
        self.clear_status();
        self.status_line = None;
        self.flush()
    }

    fn flush(&mut self) -> Result<()> {
        self.out.flush().context("writing to stdout")?;
        if let Some(line) = &self.status_line
            && !self.status_shown
        {
            eprint!("\r\x1b[2K{line}");
            self.status_shown = true;
        }
        Ok(())
    }

    fn status(&mut self, status: &Status) -> Result<()> {
        if !self.status_enabled {
            return Ok(());
        }
        let dim = self.styles.dim;
        let lost = if status.lost > 0 {
            format!(", {} lost", status.lost)
        } else {
            String::new()
        };
        let line = format!(
            "{dim}tracing: {:.0} events/s, {} sockets tracked, {} verdicts{lost}{dim:#}",
            status.events_per_sec, status.sockets, status.verdicts
        );
        eprint!("\r\x1b[2K{line}");
        self.status_line = Some(line);
        self.status_shown = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::{VerdictFacts, VerdictKind};

    fn verdict() -> Verdict {
        Verdict {
            ts_ns: 5_000_000_000,
            verdict: VerdictKind::RetriesExhausted,
            socket: crate::event::SocketId(1),
            family: crate::event::Family::Ipv4,
            laddr: "10.0.0.1".parse().unwrap(),
            lport: 40000,
            raddr: "10.0.0.2".parse().unwrap(),
            rport: 80,
            netns: 1,
            process: Some(Process {
                pid: 7,
                comm: "curl".into(),
                cgroup_id: 0,
                owner: crate::event::OwnerSource::Owner,
            }),
            explanation: "peer 10.0.0.2:80 stopped acknowledging".into(),
            facts: VerdictFacts::default(),
            evidence: vec![],
        }
    }

    #[test]
    fn verdicts_read_on_two_lines_without_colour() {
        let text = Text::new(Vec::new(), false);
        let lines = text.verdict_lines(&verdict());
        let mut it = lines.lines();
        let first = it.next().unwrap();
        assert!(
            first.contains("VERDICT retries_exhausted  curl/7  10.0.0.1:40000 → 10.0.0.2:80"),
            "{first}"
        );
        assert!(!first.contains('\x1b'), "no escape codes without colour");
        assert_eq!(
            it.next().unwrap().trim(),
            "peer 10.0.0.2:80 stopped acknowledging"
        );
    }

    #[test]
    fn colour_follows_the_choice_and_no_color() {
        assert!(use_color(ColorChoice::Always, false));
        assert!(!use_color(ColorChoice::Never, true));
        let coloured = Text::new(Vec::new(), true).verdict_lines(&verdict());
        assert!(coloured.contains("\x1b["), "{coloured:?}");
    }
}
