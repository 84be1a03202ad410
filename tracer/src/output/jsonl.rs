//! JSON Lines: `live --json` and `record`. One record per line, flushed after each batch,
//! so a SIGTERM, a crash or a full disk never loses (or corrupts) what was already written.

use std::io::Write;

use anyhow::{Context, Result};
use serde::Serialize;

use super::Sink;
use crate::{
    event::Event,
    record::{End, Header, Lost, WallClock, json_line},
    timeline::Verdict,
};

pub struct JsonLines<W: Write> {
    out: W,
    clock: Option<WallClock>,
    /// Name of the destination, for error messages.
    name: String,
}

impl<W: Write> JsonLines<W> {
    pub fn new(out: W, name: impl Into<String>) -> Self {
        Self {
            out,
            clock: None,
            name: name.into(),
        }
    }

    fn write<T: Serialize>(&mut self, kind: &'static str, ts_ns: u64, body: &T) -> Result<()> {
        let mut line = json_line(kind, ts_ns, body, self.clock.as_ref());
        line.push('\n');
        self.out
            .write_all(line.as_bytes())
            .with_context(|| format!("writing {}", self.name))
    }
}

impl<W: Write> Sink for JsonLines<W> {
    fn header(&mut self, header: &Header) -> Result<()> {
        self.clock = Some(WallClock {
            boot_to_wall_offset_ns: header.boot_to_wall_offset_ns,
        });
        self.write("header", header.started_ns, header)?;
        self.flush()
    }

    fn event(&mut self, event: &Event) -> Result<()> {
        self.write("event", event.ts_ns, event)
    }

    fn verdict(&mut self, verdict: &Verdict) -> Result<()> {
        self.write("verdict", verdict.ts_ns, verdict)
    }

    fn lost(&mut self, lost: &Lost) -> Result<()> {
        self.write("lost", lost.ts_ns, lost)
    }

    fn end(&mut self, end: &End) -> Result<()> {
        self.write("end", end.ts_ns, end)?;
        self.flush()
    }

    fn flush(&mut self) -> Result<()> {
        self.out
            .flush()
            .with_context(|| format!("writing {}", self.name))
    }
}
