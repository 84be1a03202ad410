//! Where events and verdicts go: the terminal, JSON Lines, the binary trace, Perfetto, a
//! self-contained HTML report, the exit summary, the `top` screen.
//! Every sink sees the same records in the same order.

mod binary;
mod buffered;
pub mod event_json;
pub mod html;
mod jsonl;
pub mod perfetto;
pub mod summary;
pub mod text;
pub mod top;

pub use binary::BinaryTrace;
pub use jsonl::JsonLines;
pub use summary::Summary;
pub use text::Text;

/// A trace written to `path` (`-`: standard output) in `format`: the sink of `record` and
/// `convert`. The file is created here, so callers create it only once they know they will
/// write it.
pub fn trace_sink(path: &Path, format: TraceFormat) -> Result<Box<dyn Sink>> {
    let out: Box<dyn Write> = if path.as_os_str() == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        let file =
            File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
        Box::new(BufWriter::new(file))
    };
    let name = path.display().to_string();
    Ok(match format {
        TraceFormat::Json => Box::new(JsonLines::new(out, name)),
        TraceFormat::Binary => Box::new(BinaryTrace::new(out, name)),
    })
}

use std::{
    fs::File,
    io::{BufWriter, Write},
    path::Path,
};

use anyhow::{Context, Result};

use crate::{
    cli::TraceFormat,
    event::Event,
    record::{End, Header, Lost},
    session::Snapshot,
    timeline::{Engine, Verdict},
};

pub trait Sink {
    fn header(&mut self, header: &Header) -> Result<()>;
    fn event(&mut self, event: &Event) -> Result<()>;
    fn verdict(&mut self, verdict: &Verdict) -> Result<()>;
    fn lost(&mut self, lost: &Lost) -> Result<()>;
    fn end(&mut self, end: &End) -> Result<()>;
    /// Called after every batch: what was received must be on its way to disk.
    fn flush(&mut self) -> Result<()>;
    /// Called about once a second while tracing live.
    fn status(&mut self, _status: &Status) -> Result<()> {
        Ok(())
    }
    /// Called about four times a second while tracing live, with the engine (read-only)
    /// and the time (CLOCK_BOOTTIME ns): live views read what sockets are going through.
    /// [`Flow::Stop`] ends the session, as a signal would.
    fn tick(&mut self, _engine: &Engine, _now_ns: u64) -> Result<Flow> {
        Ok(Flow::Continue)
    }
    /// Called after each status: the session's state, for gauges and self-metrics.
    fn snapshot(&mut self, _snapshot: &Snapshot<'_>) -> Result<()> {
        Ok(())
    }
    /// SIGHUP in a session that asked for it (`tracer agent`): reopen what can be reopened.
    fn reopen(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Whether a live session goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// The user asked to stop (`q` in `tracer top`).
    Stop,
}

/// Several sinks as one: each record goes to every sink, in order.
impl Sink for [&mut dyn Sink] {
    fn header(&mut self, header: &Header) -> Result<()> {
        self.iter_mut().try_for_each(|s| s.header(header))
    }

    fn event(&mut self, event: &Event) -> Result<()> {
        self.iter_mut().try_for_each(|s| s.event(event))
    }

    fn verdict(&mut self, verdict: &Verdict) -> Result<()> {
        self.iter_mut().try_for_each(|s| s.verdict(verdict))
    }

    fn lost(&mut self, lost: &Lost) -> Result<()> {
        self.iter_mut().try_for_each(|s| s.lost(lost))
    }

    fn end(&mut self, end: &End) -> Result<()> {
        self.iter_mut().try_for_each(|s| s.end(end))
    }

    fn flush(&mut self) -> Result<()> {
        self.iter_mut().try_for_each(|s| s.flush())
    }

    fn status(&mut self, status: &Status) -> Result<()> {
        self.iter_mut().try_for_each(|s| s.status(status))
    }

    fn tick(&mut self, engine: &Engine, now_ns: u64) -> Result<Flow> {
        let mut flow = Flow::Continue;
        for sink in self.iter_mut() {
            if sink.tick(engine, now_ns)? == Flow::Stop {
                flow = Flow::Stop;
            }
        }
        Ok(flow)
    }

    fn snapshot(&mut self, snapshot: &Snapshot<'_>) -> Result<()> {
        self.iter_mut().try_for_each(|s| s.snapshot(snapshot))
    }

    fn reopen(&mut self) -> Result<()> {
        self.iter_mut().try_for_each(|s| s.reopen())
    }
}

/// How tracing is going, for status lines.
#[derive(Debug, Clone, Copy, Default)]
pub struct Status {
    pub events_per_sec: f64,
    pub sockets: usize,
    pub verdicts: u64,
    pub lost: u64,
}
