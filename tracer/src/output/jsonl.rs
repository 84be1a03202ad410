//! JSON Lines: `live --json` and `record`. One record per line, flushed after each batch,
//! so a SIGTERM, a crash or a full disk never loses (or corrupts) what was already written.
//!
//! Lines are built in one buffer and handed to the writer in large pieces: once per batch
//! (at `flush`), or whenever the buffer passes [`WRITE_AT`]. Event records are written by
//! hand ([`EventJson`]), and so are verdicts (a refused connect is one); the others, a few
//! per thousand events, through serde.

use std::io::Write;

use anyhow::{Context, Result};
use serde::Serialize;

use super::{Sink, event_json::EventJson};
use crate::{
    event::Event,
    record::{End, Header, Lost, WallClock, write_json_line},
    timeline::Verdict,
};

/// Buffered bytes handed to the writer at once, before the batch's end.
const WRITE_AT: usize = 256 << 10;

pub struct JsonLines<W: Write> {
    out: W,
    clock: Option<WallClock>,
    /// Name of the destination, for error messages.
    name: String,
    /// Complete lines not yet handed to `out`.
    buf: Vec<u8>,
    events: EventJson,
}

impl<W: Write> JsonLines<W> {
    pub fn new(out: W, name: impl Into<String>) -> Self {
        Self {
            out,
            clock: None,
            name: name.into(),
            buf: Vec::with_capacity(WRITE_AT + (64 << 10)),
            events: EventJson::new(),
        }
    }

    fn write<T: Serialize>(&mut self, kind: &'static str, ts_ns: u64, body: &T) -> Result<()> {
        write_json_line(&mut self.buf, kind, ts_ns, body, self.clock.as_ref());
        self.line_done()
    }

    /// A line is complete in `buf`: its newline, and the buffer handed on when it is full.
    fn line_done(&mut self) -> Result<()> {
        self.buf.push(b'\n');
        if self.buf.len() >= WRITE_AT {
            self.write_out()?;
        }
        Ok(())
    }

    fn write_out(&mut self) -> Result<()> {
        let written = self.out.write_all(&self.buf);
        self.buf.clear();
        written.with_context(|| format!("writing {}", self.name))
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
        self.events.write(&mut self.buf, event, self.clock.as_ref());
        self.line_done()
    }

    fn verdict(&mut self, verdict: &Verdict) -> Result<()> {
        self.events
            .write_verdict(&mut self.buf, verdict, self.clock.as_ref());
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
        self.write_out()?;
        self.out
            .flush()
            .with_context(|| format!("writing {}", self.name))
    }
}
