//! The trace files' writer: complete records gather in one buffer, handed to the
//! destination in large pieces (at a flush, after each batch, or whenever the buffer passes
//! [`WRITE_AT`]), so a SIGTERM, a crash or a full disk loses at most the records not yet
//! handed on, and never cuts one in the middle of a write of ours.

use std::io::Write;

use anyhow::{Context, Result};

/// Buffered bytes handed to the writer at once, before the batch's end.
const WRITE_AT: usize = 256 << 10;

pub struct Buffered<W: Write> {
    out: W,
    /// Name of the destination, for error messages.
    name: String,
    /// Complete records not yet handed to `out`; records are written straight into it.
    pub buf: Vec<u8>,
}

impl<W: Write> Buffered<W> {
    pub fn new(out: W, name: impl Into<String>) -> Self {
        Self {
            out,
            name: name.into(),
            buf: Vec::with_capacity(WRITE_AT + (64 << 10)),
        }
    }

    /// A record is complete in `buf`: the buffer is handed on once it is full.
    pub fn record_done(&mut self) -> Result<()> {
        if self.buf.len() >= WRITE_AT {
            self.write_out()?;
        }
        Ok(())
    }

    /// Everything buffered, to the destination and through it.
    pub fn flush(&mut self) -> Result<()> {
        self.write_out()?;
        self.out
            .flush()
            .with_context(|| format!("writing {}", self.name))
    }

    fn write_out(&mut self) -> Result<()> {
        let written = self.out.write_all(&self.buf);
        self.buf.clear();
        written.with_context(|| format!("writing {}", self.name))
    }
}
