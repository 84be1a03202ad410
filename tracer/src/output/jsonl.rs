//! JSON Lines: `live --json` and `record`. One record per line, flushed after each batch,
//! so a SIGTERM, a crash or a full disk never loses (or corrupts) what was already written.
//!
//! Lines are built in one buffer and handed to the writer in large pieces ([`Buffered`]).
//! Event records are written by hand ([`EventJson`]), and so are verdicts (a refused
//! connect is one); the others, a few per thousand events, through serde.

use std::io::Write;

use anyhow::Result;
use serde::Serialize;

use super::{Sink, buffered::Buffered, event_json::EventJson};
use crate::{
    event::Event,
    record::{End, Header, Lost, WallClock, write_json_line},
    timeline::Verdict,
};

pub struct JsonLines<W: Write> {
    out: Buffered<W>,
    clock: Option<WallClock>,
    events: EventJson,
}

impl<W: Write> JsonLines<W> {
    pub fn new(out: W, name: impl Into<String>) -> Self {
        Self {
            out: Buffered::new(out, name),
            clock: None,
            events: EventJson::new(),
        }
    }

    fn write<T: Serialize>(&mut self, kind: &'static str, ts_ns: u64, body: &T) -> Result<()> {
        write_json_line(&mut self.out.buf, kind, ts_ns, body, self.clock.as_ref());
        self.line_done()
    }

    /// A line is complete: its newline.
    fn line_done(&mut self) -> Result<()> {
        self.out.buf.push(b'\n');
        self.out.record_done()
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
        self.events
            .write(&mut self.out.buf, event, self.clock.as_ref());
        self.line_done()
    }

    fn verdict(&mut self, verdict: &Verdict) -> Result<()> {
        self.events
            .write_verdict(&mut self.out.buf, verdict, self.clock.as_ref());
        self.line_done()
    }

    fn lost(&mut self, lost: &Lost) -> Result<()> {
        self.write("lost", lost.ts_ns, lost)
    }

    fn end(&mut self, end: &End) -> Result<()> {
        self.write("end", end.ts_ns, end)?;
        self.flush()
    }

    fn flush(&mut self) -> Result<()> {
        self.out.flush()
    }
}
