//! Human-readable lines for the terminal: one per event, verdicts standing out, a status
//! line while running.
//!
//! ```text
//! 10:42:07.118  curl/4242          10.0.0.1:40212 → 10.0.0.2:443                  retransmit  RTO #3, RTO 1.6 s
//! 10:42:09.870  VERDICT retries_exhausted  curl/4242  10.0.0.1:40212 → 10.0.0.2:443
//!               peer 10.0.0.2:443 stopped acknowledging: 6 retransmits over 12.6 s ...
//! ```

use std::io::{IsTerminal, Write};

use anstyle::{AnsiColor, Style};
use anyhow::{Context, Result};

use super::{Sink, Status};
use crate::{
    cli::ColorChoice,
    event::{Direction, Errno, Event, EventKind, Owner, ResetReason, RetransmitClass, TimerKind},
    record::{End, Header, LossCause, Lost},
    timeline::{Verdict, VerdictKind},
    words::{self, duration_ms},
};

/// Whether to colour: `--color`, then NO_COLOR (https://no-color.org), then "is it a
/// terminal".
pub fn use_color(choice: ColorChoice, is_terminal: bool) -> bool {
    color_decision(choice, is_terminal, std::env::var_os("NO_COLOR").as_deref())
}

/// [`use_color`] with the environment passed in.
fn color_decision(
    choice: ColorChoice,
    is_terminal: bool,
    no_color: Option<&std::ffi::OsStr>,
) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        // NO_COLOR counts when set to anything but the empty string.
        ColorChoice::Auto => is_terminal && no_color.is_none_or(|v| v.is_empty()),
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

/// The event's name and details, as a person reads them.
pub fn describe(e: &Event) -> (&'static str, String) {
    let sock = e.sock.as_ref();
    match e.kind {
        EventKind::StateChange => {
            let mut d = format!(
                "{} → {}",
                e.old_state.map(|s| s.to_string()).unwrap_or_default(),
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
            let mut d = words::retransmit_class(e.class).to_owned();
            if let Some(RetransmitClass::Rto | RetransmitClass::Syn) = e.class {
                // Timeouts count: the kernel's icsk_retransmits.
                d += &format!(" #{}", sock.map_or(0, |s| s.retransmits));
            }
            if let Some(s) = sock.filter(|s| s.rto_us > 0) {
                d += &format!(", RTO {}", duration_ms(s.rto_us / 1000));
            }
            if let Some(segs) = e.segs.filter(|&n| n > 1) {
                d += &format!(", {segs} segments");
            }
            ("retransmit", d)
        }
        EventKind::RetransmitFailed => {
            // The kernel's return value: a negative errno (EBUSY: the segment is still in a
            // device queue; ENOMEM; EHOSTUNREACH from routing).
            let reason = match e.err {
                Some(err) if err != 0 => Errno(err.saturating_abs()).to_string(),
                _ => "unknown error".into(),
            };
            ("retrans err", format!("not sent: {reason}"))
        }
        EventKind::ResetSent => {
            let reason = e
                .reason
                .as_ref()
                .map_or("reason unknown", ResetReason::name);
            if e.socket.is_none() {
                (
                    "reset sent",
                    format!("{reason} (no socket for the segment)"),
                )
            } else {
                ("reset sent", format!("{reason}, in {}", e.state))
            }
        }
        EventKind::ResetReceived => ("reset rcvd", format!("in {}", e.state)),
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
                n => Errno(n).to_string(),
            },
        ),
        EventKind::Destroy => ("released", String::new()),
        EventKind::Drop => match &e.drop {
            Some(d) => {
                let way = match d.direction {
                    Direction::Out => "outgoing",
                    Direction::In => "incoming",
                };
                let mut text = format!("{way} {}", d.tcp_flags);
                if d.len > 0 {
                    text += &format!(" ({} bytes)", d.len);
                }
                text += &format!(" dropped by this host: {}", d.reason);
                if e.socket.is_none() {
                    text += " (no traced socket)";
                }
                ("drop", text)
            }
            None => ("drop", "dropped by this host".into()),
        },
        EventKind::Sweep => {
            let mut d = format!("{} (already open)", e.state);
            if !e.flags.is_empty() {
                d += &format!(", {}", e.flags.join(", "));
            }
            ("open", d)
        }
    }
}

/// Events that tell a person nothing, shown only with `-v`: an error report whose error was
/// already consumed (`tcp_disconnect()` reports one after a failed connect, with no error
/// left pending).
pub fn is_noise(e: &Event) -> bool {
    e.kind == EventKind::ErrorReport && e.err.unwrap_or(0) == 0
}

struct Styles {
    /// Verdicts that end a connection, and dead_socket_held.
    death: Style,
    /// The early warning (peer_unresponsive).
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

    fn verdict(&self, kind: VerdictKind) -> Style {
        if kind == VerdictKind::PeerUnresponsive {
            self.warning
        } else {
            self.death
        }
    }
}

/// Writes to stderr, ignoring failures: the status line is a courtesy, and a closed stderr
/// must not stop tracing.
fn to_stderr(text: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(text.as_bytes());
    let _ = stderr.flush();
}

/// Moves to the start of the line and erases it.
const CLEAR_LINE: &str = "\r\x1b[2K";

pub struct Text<W: Write> {
    out: W,
    offset_ns: i64,
    styles: Styles,
    pub show_events: bool,
    pub show_verdicts: bool,
    /// Show the events [`is_noise`] leaves out.
    pub verbose: bool,
    /// The status line, kept on stderr (a terminal) below the output and redrawn after
    /// each batch.
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
            verbose: false,
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

    /// The destination, back (tests).
    pub fn into_inner(self) -> W {
        self.out
    }

    fn time(&self, ts_ns: u64) -> String {
        clock_time(ts_ns as i64 + self.offset_ns)
    }

    fn clear_status(&mut self) {
        if self.status_shown {
            to_stderr(CLEAR_LINE);
            self.status_shown = false;
        }
    }

    fn write_line(&mut self, line: &str) -> Result<()> {
        self.clear_status();
        writeln!(self.out, "{line}").context("writing to stdout")
    }

    /// `time  process  local → remote  event  details`, aligned in columns.
    pub fn event_line(&self, e: &Event) -> String {
        let (name, details) = describe(e);
        format!(
            "{}  {:<18} {:<46} {:<11} {}",
            self.time(e.ts_ns),
            Owner::label(e.process.as_ref()),
            e.conn,
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
        let style = self.styles.verdict(v.verdict);
        format!(
            "{}  {style}VERDICT {}{style:#}: {}",
            self.time(v.ts_ns),
            v.verdict,
            v.explanation
        )
    }

    /// Two lines: what and whose, then the explanation, indented under it.
    pub fn verdict_lines(&self, v: &Verdict) -> String {
        let style = self.styles.verdict(v.verdict);
        format!(
            "{}  {style}VERDICT {}{style:#}  {}  {}\n{:14}{}",
            self.time(v.ts_ns),
            v.verdict,
            Owner::label(v.process.as_ref()),
            v.conn,
            "",
            v.explanation
        )
    }

    pub fn lost_line(&self, l: &Lost) -> String {
        let style = self.styles.lost;
        let (why, hint) = match l.cause {
            LossCause::RingBufferFull => (
                "the ring buffer was full",
                ": try --ring-buffer 16M or narrower filters",
            ),
            LossCause::KernelSkipped => (
                "the kernel skipped a tracer program already running on that CPU",
                "",
            ),
        };
        format!(
            "{}  {style}LOST {} events{style:#} ({why}; {} lost in total{hint})",
            self.time(l.ts_ns),
            l.lost,
            l.total
        )
    }

    /// `tracing: 1200 events/s, 35 sockets tracked, 2 verdicts, 17 lost`: short enough for
    /// any terminal (a wrapped line could not be redrawn in place).
    pub fn status_text(&self, status: &Status) -> String {
        let dim = self.styles.dim;
        let lost_style = self.styles.lost;
        let lost = if status.lost > 0 {
            format!(
                ", {dim:#}{lost_style}{} lost{lost_style:#}{dim}",
                status.lost
            )
        } else {
            String::new()
        };
        format!(
            "{dim}tracing: {:.0} events/s, {} sockets tracked, {} verdicts{lost}{dim:#}",
            status.events_per_sec, status.sockets, status.verdicts
        )
    }
}

impl<W: Write> Sink for Text<W> {
    fn header(&mut self, header: &Header) -> Result<()> {
        self.offset_ns = header.boot_to_wall_offset_ns;
        Ok(())
    }

    fn event(&mut self, e: &Event) -> Result<()> {
        if !self.show_events || (!self.verbose && is_noise(e)) {
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

    /// Shown whatever `--show` says: missing events change what the output means.
    fn lost(&mut self, l: &Lost) -> Result<()> {
        let line = self.lost_line(l);
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
            to_stderr(&format!("{CLEAR_LINE}{line}"));
            self.status_shown = true;
        }
        Ok(())
    }

    fn status(&mut self, status: &Status) -> Result<()> {
        if !self.status_enabled {
            return Ok(());
        }
        let line = self.status_text(status);
        to_stderr(&format!("{CLEAR_LINE}{line}"));
        self.status_line = Some(line);
        self.status_shown = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::{
        event::{Family, TcpState},
        testing::Sock,
        timeline::VerdictKind,
    };

    fn event(kind: EventKind) -> Event {
        Sock::new(0x1f3)
            .owner("curl", 4242)
            .ports(40212, 443)
            .event(kind, TcpState::ESTABLISHED)
    }

    fn verdict(kind: VerdictKind) -> Verdict {
        Verdict {
            explanation: "peer 10.0.0.2:80 stopped acknowledging".into(),
            ..Sock::new(1)
                .owner("curl", 7)
                .ports(40000, 80)
                .verdict(5_000_000_000, kind)
        }
    }

    /// The line without its local-time prefix (which depends on the time zone).
    fn without_time(line: &str) -> &str {
        let (time, rest) = line.split_once("  ").expect("time first");
        assert_eq!(time.len(), "HH:MM:SS.mmm".len(), "{line}");
        rest
    }

    fn details(e: &Event) -> String {
        let (name, details) = describe(e);
        format!("{name}: {details}")
    }

    #[test]
    fn an_event_line_has_process_endpoints_event_and_details_in_columns() {
        let mut e = event(EventKind::Retransmit);
        e.class = Some(RetransmitClass::Rto);
        e.segs = Some(1);
        let c = e.sock.as_mut().unwrap();
        c.retransmits = 3;
        c.rto_us = 1_600_000;
        let text = Text::new(Vec::new(), false);
        assert_eq!(
            without_time(&text.event_line(&e)),
            "curl/4242          10.0.0.1:40212 → 10.0.0.2:443                  retransmit  \
             RTO #3, RTO 1.6 s"
        );
        e.process = None;
        e.conn.laddr = "fd00::1".parse::<IpAddr>().unwrap();
        e.conn.raddr = "fd00::2".parse::<IpAddr>().unwrap();
        e.conn.family = Family::Ipv6;
        let line = text.event_line(&e);
        assert!(
            without_time(&line).starts_with("-                  [fd00::1]:40212 → [fd00::2]:443 "),
            "{line}"
        );
        assert_eq!(
            without_time(&text.compact_line(&e)),
            "retransmit  RTO #3, RTO 1.6 s"
        );
    }

    #[test]
    fn retransmits_say_why_how_many_and_how_much() {
        let mut e = event(EventKind::Retransmit);
        e.class = Some(RetransmitClass::Syn);
        e.state = TcpState::SYN_SENT;
        let c = e.sock.as_mut().unwrap();
        c.retransmits = 2;
        c.rto_us = 2_000_000;
        assert_eq!(details(&e), "retransmit: SYN #2, RTO 2.0 s");
        e.class = Some(RetransmitClass::Tlp);
        e.segs = Some(4);
        e.sock = None;
        assert_eq!(details(&e), "retransmit: tail loss probe, 4 segments");
        e.class = Some(RetransmitClass::Fast);
        e.segs = Some(1);
        assert_eq!(details(&e), "retransmit: fast");
        let mut failed = event(EventKind::RetransmitFailed);
        failed.err = Some(-16);
        assert_eq!(details(&failed), "retrans err: not sent: EBUSY");
    }

    #[test]
    fn probes_count_against_their_budget() {
        let mut e = event(EventKind::KeepaliveProbe);
        e.probe = Some(2);
        let c = e.sock.as_mut().unwrap();
        c.keepalive_probes = 9;
        c.keepalive_intvl_ms = 75_000;
        assert_eq!(details(&e), "keepalive: probe 2/9, every 75.0 s");
        e.sock = None;
        assert_eq!(details(&e), "keepalive: probe 2");
        let mut zw = event(EventKind::ZeroWindowProbe);
        zw.probe = Some(1);
        assert_eq!(details(&zw), "zero window: probe 1");
    }

    #[test]
    fn resets_say_direction_reason_and_state() {
        let mut sent = event(EventKind::ResetSent);
        sent.reason = Some(ResetReason::from_name("TCP_ABORT_ON_LINGER"));
        assert_eq!(
            details(&sent),
            "reset sent: TCP_ABORT_ON_LINGER, in ESTABLISHED"
        );
        sent.socket = None;
        sent.reason = Some(ResetReason::from_name("NO_SOCKET"));
        assert_eq!(
            details(&sent),
            "reset sent: NO_SOCKET (no socket for the segment)"
        );
        let mut received = event(EventKind::ResetReceived);
        received.state = TcpState::SYN_SENT;
        assert_eq!(details(&received), "reset rcvd: in SYN_SENT");
    }

    #[test]
    fn state_changes_show_old_new_and_the_error_with_its_timer() {
        let mut e = event(EventKind::StateChange);
        e.old_state = Some(TcpState::SYN_SENT);
        assert_eq!(details(&e), "state: SYN_SENT → ESTABLISHED");
        e.old_state = Some(TcpState::ESTABLISHED);
        e.state = TcpState::CLOSE;
        e.sock.as_mut().unwrap().error = Some(Errno::ETIMEDOUT);
        e.timer = Some(TimerKind::Keepalive);
        assert_eq!(
            details(&e),
            "state: ESTABLISHED → CLOSE  ETIMEDOUT (keepalive gave up)"
        );
        e.timer = Some(TimerKind::Write);
        assert_eq!(
            details(&e),
            "state: ESTABLISHED → CLOSE  ETIMEDOUT (retransmit timer gave up)"
        );
    }

    #[test]
    fn errors_releases_and_swept_sockets_read_plainly() {
        let mut e = event(EventKind::ErrorReport);
        e.err = Some(104);
        assert_eq!(details(&e), "error: ECONNRESET");
        assert_eq!(details(&event(EventKind::Destroy)), "released: ");
        let mut swept = event(EventKind::Sweep);
        swept.flags = vec!["half_open_risk".into()];
        assert_eq!(
            details(&swept),
            "open: ESTABLISHED (already open), half_open_risk"
        );
    }

    #[test]
    fn verdicts_read_on_two_lines_without_colour() {
        let text = Text::new(Vec::new(), false);
        let lines = text.verdict_lines(&verdict(VerdictKind::RetriesExhausted));
        let mut it = lines.lines();
        let first = without_time(it.next().unwrap()).to_owned();
        assert_eq!(
            first,
            "VERDICT retries_exhausted  curl/7  10.0.0.1:40000 → 10.0.0.2:80"
        );
        assert_eq!(
            it.next().unwrap(),
            format!("{:14}peer 10.0.0.2:80 stopped acknowledging", "")
        );
        assert!(it.next().is_none());
        assert!(!lines.contains('\x1b'), "no escape codes without colour");
    }

    #[test]
    fn colour_follows_the_choice_and_no_color() {
        use std::ffi::OsStr;
        assert!(color_decision(
            ColorChoice::Always,
            false,
            Some(OsStr::new("1"))
        ));
        assert!(!color_decision(ColorChoice::Never, true, None));
        assert!(color_decision(ColorChoice::Auto, true, None));
        assert!(color_decision(
            ColorChoice::Auto,
            true,
            Some(OsStr::new(""))
        ));
        assert!(!color_decision(
            ColorChoice::Auto,
            true,
            Some(OsStr::new("1"))
        ));
        assert!(!color_decision(ColorChoice::Auto, false, None));
        let text = Text::new(Vec::new(), true);
        let red = "\x1b[1m\x1b[31m";
        let yellow = "\x1b[1m\x1b[33m";
        let death = text.verdict_lines(&verdict(VerdictKind::RetriesExhausted));
        assert!(
            death.contains(&format!("{red}VERDICT retries_exhausted\x1b[0m")),
            "{death:?}"
        );
        let warning = text.compact_verdict(&verdict(VerdictKind::PeerUnresponsive));
        assert!(warning.contains(yellow), "{warning:?}");
    }

    #[test]
    fn lost_events_and_the_status_line_stand_out() {
        let plain = Text::new(Vec::new(), false);
        let lost = Lost {
            ts_ns: 1,
            cause: LossCause::RingBufferFull,
            lost: 12,
            total: 40,
        };
        assert!(
            without_time(&plain.lost_line(&lost))
                .starts_with("LOST 12 events (the ring buffer was full; 40 lost in total"),
        );
        let skipped = Lost {
            cause: LossCause::KernelSkipped,
            ..lost
        };
        assert_eq!(
            without_time(&plain.lost_line(&skipped)),
            "LOST 12 events (the kernel skipped a tracer program already running on that CPU; \
             40 lost in total)"
        );
        let status = Status {
            events_per_sec: 1234.4,
            sockets: 35,
            verdicts: 2,
            lost: 0,
        };
        assert_eq!(
            plain.status_text(&status),
            "tracing: 1234 events/s, 35 sockets tracked, 2 verdicts"
        );
        let lossy = Status { lost: 17, ..status };
        assert_eq!(
            plain.status_text(&lossy),
            "tracing: 1234 events/s, 35 sockets tracked, 2 verdicts, 17 lost"
        );
        assert!(plain.status_text(&lossy).len() < 80);
        let coloured = Text::new(Vec::new(), true);
        assert!(coloured.lost_line(&lost).contains("\x1b[35m"));
    }

    #[test]
    fn an_error_report_with_no_error_is_shown_only_when_verbose() {
        let mut consumed = event(EventKind::ErrorReport);
        consumed.err = Some(0);
        let mut refused = consumed.clone();
        refused.err = Some(111);
        assert!(is_noise(&consumed) && !is_noise(&refused));
        let run = |verbose: bool| {
            let mut text = Text::new(Vec::new(), false);
            text.verbose = verbose;
            text.event(&refused).unwrap();
            text.event(&consumed).unwrap();
            String::from_utf8(text.into_inner()).unwrap()
        };
        let quiet = run(false);
        assert!(quiet.contains("ECONNREFUSED"), "{quiet}");
        assert!(!quiet.contains("no error"), "{quiet}");
        assert!(run(true).contains("reported, no error"));
    }

    #[test]
    fn show_chooses_events_verdicts_or_both_but_lost_is_always_shown() {
        let run = |events: bool, verdicts: bool| {
            let mut text = Text::new(Vec::new(), false);
            text.show_events = events;
            text.show_verdicts = verdicts;
            text.event(&event(EventKind::Destroy)).unwrap();
            text.verdict(&verdict(VerdictKind::PeerReset)).unwrap();
            text.lost(&Lost {
                ts_ns: 1,
                cause: LossCause::RingBufferFull,
                lost: 1,
                total: 1,
            })
            .unwrap();
            String::from_utf8(text.into_inner()).unwrap()
        };
        let both = run(true, true);
        assert_eq!(both.lines().count(), 4, "{both}");
        let verdicts = run(false, true);
        assert!(!verdicts.contains("released") && verdicts.contains("VERDICT peer_reset"));
        assert!(verdicts.contains("LOST 1 events"));
        let events = run(true, false);
        assert!(events.contains("released") && !events.contains("VERDICT"));
        assert!(events.contains("LOST 1 events"));
    }
}
