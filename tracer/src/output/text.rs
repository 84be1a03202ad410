//! Human-readable lines for the terminal: one per event, verdicts standing out.

use std::io::Write;

use anyhow::{Context, Result};

use super::Sink;
use crate::{
    event::Event,
    record::{End, Header, Lost, WallClock},
    timeline::Verdict,
};

pub struct Text<W: Write> {
    out: W,
    clock: WallClock,
    pub show_events: bool,
    pub show_verdicts: bool,
}

impl<W: Write> Text<W> {
    pub fn new(out: W) -> Self {
        Self {
            out,
            clock: WallClock {
                boot_to_wall_offset_ns: 0,
            },
            show_events: true,
            show_verdicts: true,
        }
    }

    /// `HH:MM:SS.ffffff` (UTC) of a CLOCK_BOOTTIME timestamp.
    fn time(&self, ts_ns: u64) -> String {
        let full = self.clock.rfc3339(ts_ns);
        full.get(11..26).unwrap_or(&full).to_owned()
    }
}

fn process(p: Option<&crate::event::Process>) -> String {
    match p {
        Some(p) => format!("{}/{}", p.comm, p.pid),
        None => "?".to_owned(),
    }
}

impl<W: Write> Sink for Text<W> {
    fn header(&mut self, header: &Header) -> Result<()> {
        self.clock = WallClock {
            boot_to_wall_offset_ns: header.boot_to_wall_offset_ns,
        };
        Ok(())
    }

    fn event(&mut self, e: &Event) -> Result<()> {
        if !self.show_events {
            return Ok(());
        }
        let line = format!(
            "{}  {:<20} {:<45} {:<18} {}",
            self.time(e.ts_ns),
            process(e.process.as_ref()),
            e.endpoints(),
            e.kind.name(),
            e.state
        );
        writeln!(self.out, "{line}").context("writing to stdout")
    }

    fn verdict(&mut self, v: &Verdict) -> Result<()> {
        if !self.show_verdicts {
            return Ok(());
        }
        writeln!(
            self.out,
            "{}  VERDICT {}  {}  {}",
            self.time(v.ts_ns),
            v.verdict,
            process(v.process.as_ref()),
            v.explanation
        )
        .context("writing to stdout")
    }

    fn lost(&mut self, l: &Lost) -> Result<()> {
        writeln!(
            self.out,
            "{}  LOST {} events (ring buffer full; {} in total)",
            self.time(l.ts_ns),
            l.lost,
            l.total
        )
        .context("writing to stdout")
    }

    fn end(&mut self, _end: &End) -> Result<()> {
        self.flush()
    }

    fn flush(&mut self) -> Result<()> {
        self.out.flush().context("writing to stdout")
    }
}
