//! The binary trace (`record --format binary`, [`crate::trace_bin`]): the same records as
//! JSON Lines, flushed the same way (after each batch, or whenever the buffer passes
//! [`WRITE_AT`]), so a cut file loses at most its last frame.

use std::io::Write;

use anyhow::{Context, Result};

use super::Sink;
use crate::{
    event::Event,
    record::{End, Header, Lost},
    timeline::Verdict,
    trace_bin::{BinaryWriter, tag},
};

/// Buffered bytes handed to the writer at once, before the batch's end.
const WRITE_AT: usize = 256 << 10;

pub struct BinaryTrace<W: Write> {
    out: W,
    /// Name of the destination, for error messages.
    name: String,
    /// Complete frames not yet handed to `out`.
    buf: Vec<u8>,
    frames: BinaryWriter,
}

impl<W: Write> BinaryTrace<W> {
    pub fn new(out: W, name: impl Into<String>) -> Self {
        Self {
            out,
            name: name.into(),
            buf: Vec::with_capacity(WRITE_AT + (64 << 10)),
            frames: BinaryWriter::new(),
        }
    }

    fn frame_done(&mut self) -> Result<()> {
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

impl<W: Write> Sink for BinaryTrace<W> {
    fn header(&mut self, header: &Header) -> Result<()> {
        BinaryWriter::start(&mut self.buf);
        BinaryWriter::json(
            &mut self.buf,
            tag::HEADER,
            "header",
            header.started_ns,
            header,
        );
        self.flush()
    }

    fn event(&mut self, event: &Event) -> Result<()> {
        self.frames.event(&mut self.buf, event);
        self.frame_done()
    }

    fn verdict(&mut self, verdict: &Verdict) -> Result<()> {
        BinaryWriter::json(
            &mut self.buf,
            tag::VERDICT,
            "verdict",
            verdict.ts_ns,
            verdict,
        );
        self.frame_done()
    }

    fn lost(&mut self, lost: &Lost) -> Result<()> {
        BinaryWriter::json(&mut self.buf, tag::LOST, "lost", lost.ts_ns, lost);
        self.frame_done()
    }

    fn end(&mut self, end: &End) -> Result<()> {
        BinaryWriter::json(&mut self.buf, tag::END, "end", end.ts_ns, end);
        self.flush()
    }

    fn flush(&mut self) -> Result<()> {
        self.write_out()?;
        self.out
            .flush()
            .with_context(|| format!("writing {}", self.name))
    }
}
