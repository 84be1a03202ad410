//! `tracer convert FILE -o OUT`: a trace copied record by record into the other format, a
//! binary trace as JSON Lines (for people and `jq`) or JSON Lines as a binary trace. Every
//! record is kept as it is (a report of either gives the same verdicts); a cut last record
//! is left out, with the reader's warning.

use anyhow::{Result, bail};

use crate::{
    cli::{ConvertArgs, TraceFormat},
    output::{Sink, trace_sink},
    record::{Header, Record},
    trace_file::TraceReader,
};

pub fn run(args: ConvertArgs) -> Result<()> {
    let (mut reader, header) = TraceReader::open(&args.input)?;
    let format = args.format.unwrap_or(if reader.is_binary() {
        TraceFormat::Json
    } else {
        TraceFormat::Binary
    });
    // Creating the copy would empty the trace still being read.
    if let (Ok(input), Ok(output)) = (args.input.canonicalize(), args.output.canonicalize())
        && input == output
    {
        bail!(
            "{}: the copy would overwrite the trace it is made from",
            args.output.display()
        );
    }
    // Created only now: a file that is not a trace leaves an existing copy untouched.
    let mut sink = trace_sink(&args.output, format)?;
    copy(&mut reader, &header, &mut *sink)?;
    if let Some(warning) = reader.truncated() {
        eprintln!("tracer: warning: {warning}; copied the rest");
    }
    Ok(())
}

/// The header, then every record after it, through `sink`, in order.
pub fn copy(reader: &mut TraceReader, header: &Header, sink: &mut dyn Sink) -> Result<()> {
    sink.header(header)?;
    while let Some(record) = reader.next_record()? {
        match record {
            Record::Event(e) => sink.event(&e)?,
            Record::Verdict(v) => sink.verdict(&v)?,
            Record::Lost(l) => sink.lost(&l)?,
            Record::End(e) => sink.end(&e)?,
            Record::Header(_) => {} // refused by the reader
        }
    }
    sink.flush()
}
