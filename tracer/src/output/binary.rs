//! The binary trace (`record --format binary`, [`crate::trace_bin`]): the same records as
//! JSON Lines, flushed the same way ([`Buffered`]), so a cut file loses at most its last
//! frame.

use std::io::Write;

use anyhow::Result;

use super::{Sink, buffered::Buffered, event_json::EventJson};
use crate::{
    event::Event,
    record::{End, Header, Lost},
    timeline::Verdict,
    trace_bin::{BinaryWriter, tag},
};

pub struct BinaryTrace<W: Write> {
    out: Buffered<W>,
    frames: BinaryWriter,
    /// Verdict frames hold the verdict's JSON line, written as JSON Lines write it.
    verdicts: EventJson,
}

impl<W: Write> BinaryTrace<W> {
    pub fn new(out: W, name: impl Into<String>) -> Self {
        Self {
            out: Buffered::new(out, name),
            frames: BinaryWriter::new(),
            verdicts: EventJson::new(),
        }
    }
}

impl<W: Write> Sink for BinaryTrace<W> {
    fn header(&mut self, header: &Header) -> Result<()> {
        BinaryWriter::start(&mut self.out.buf);
        BinaryWriter::json(
            &mut self.out.buf,
            tag::HEADER,
            "header",
            header.started_ns,
            header,
        );
        self.flush()
    }

    fn event(&mut self, event: &Event) -> Result<()> {
        self.frames.event(&mut self.out.buf, event);
        self.out.record_done()
    }

    fn verdict(&mut self, verdict: &Verdict) -> Result<()> {
        BinaryWriter::verdict(&mut self.out.buf, verdict, &mut self.verdicts);
        self.out.record_done()
    }

    fn lost(&mut self, lost: &Lost) -> Result<()> {
        BinaryWriter::json(&mut self.out.buf, tag::LOST, "lost", lost.ts_ns, lost);
        self.out.record_done()
    }

    fn end(&mut self, end: &End) -> Result<()> {
        BinaryWriter::json(&mut self.out.buf, tag::END, "end", end.ts_ns, end);
        self.flush()
    }

    fn flush(&mut self) -> Result<()> {
        self.out.flush()
    }
}
