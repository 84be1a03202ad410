//! Reading recorded traces: record by record, with errors that name the file and line.
//!
//! Policy: the first record must be our header (else "not a tracer trace"); a header of
//! another format version is refused with both versions named. A malformed line in the
//! middle stops the read with `FILE:LINE: ...` (a trace with a hole would give wrong
//! verdicts). An unparsable *last* line without a newline is what a crash or a SIGKILL
//! leaves behind: it is reported as a warning and the rest of the trace is used.

use std::{
    fs::File,
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};

use crate::record::{FORMAT, Header, Record, VERSION};

pub struct TraceReader {
    input: Box<dyn BufRead + Send>,
    name: String,
    line_no: u64,
    line: String,
    /// Set when the last line was cut short: `FILE:LINE: ...`.
    pub truncated: Option<String>,
}

impl TraceReader {
    /// Opens a trace file, or stdin for `-`, and reads its header.
    pub fn open(path: &Path) -> Result<(TraceReader, Header)> {
        let (input, name): (Box<dyn Read + Send>, String) = if path == Path::new("-") {
            (Box::new(std::io::stdin()), "<stdin>".into())
        } else {
            let file =
                File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
            (Box::new(file), path.display().to_string())
        };
        Self::from_reader(input, name)
    }

    pub fn from_reader(input: Box<dyn Read + Send>, name: String) -> Result<(TraceReader, Header)> {
        let mut reader = TraceReader {
            input: Box::new(BufReader::with_capacity(1 << 20, input)),
            name,
            line_no: 0,
            line: String::with_capacity(1024),
            truncated: None,
        };
        let header = match reader.next_record()? {
            None => bail!("{}: empty file, not a tracer trace", reader.name),
            Some(Record::Header(h)) => *h,
            Some(_) => bail!(
                "{}:1: not a tracer trace (the first record must be a `header`)",
                reader.name
            ),
        };
        if header.format != FORMAT {
            bail!(
                "{}:1: not a tracer trace (format {:?}, expected {FORMAT:?})",
                reader.name,
                header.format
            );
        }
        if header.version != VERSION {
            bail!(
                "{}:1: trace format version {} is not supported (this tracer reads version {VERSION})",
                reader.name,
                header.version
            );
        }
        Ok((reader, header))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The next record; None at the end. Blank lines are skipped.
    pub fn next_record(&mut self) -> Result<Option<Record>> {
        loop {
            self.line.clear();
            let n = self.input.read_line(&mut self.line).with_context(|| {
                format!("{}: read error after line {}", self.name, self.line_no)
            })?;
            if n == 0 {
                return Ok(None);
            }
            self.line_no += 1;
            let complete = self.line.ends_with('\n');
            let text = self.line.trim_end();
            if text.is_empty() {
                continue;
            }
            match Record::parse(text) {
                Ok(record) => return Ok(Some(record)),
                Err(e) if !complete => {
                    // The writer was cut off mid-line: keep everything before it.
                    self.truncated = Some(format!(
                        "{}:{}: last line is incomplete (the trace was cut off): {e}",
                        self.name, self.line_no
                    ));
                    return Ok(None);
                }
                Err(e) if self.line_no == 1 => {
                    bail!("{}:1: not a tracer trace: {e}", self.name)
                }
                Err(e) => bail!("{}:{}: {e}", self.name, self.line_no),
            }
        }
    }
}

/// For callers that want a path back in messages.
pub fn display(path: &Path) -> String {
    if path == Path::new("-") {
        "<stdin>".into()
    } else {
        PathBuf::from(path).display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Lost;

    fn header_line() -> String {
        let header = Header {
            format: FORMAT.into(),
            version: VERSION,
            tool_version: "test".into(),
            hostname: "h".into(),
            kernel_release: "6.18".into(),
            kernel: crate::event::KernelFacts {
                hz: 250,
                reset_reasons: Default::default(),
            },
            boot_to_wall_offset_ns: 0,
            started_ns: 1,
            hooks: vec![],
            missing: vec![],
            command: vec![],
            thresholds: None,
        };
        Record::Header(Box::new(header)).to_json(None)
    }

    fn lost_line(ts: u64) -> String {
        Record::Lost(Lost {
            ts_ns: ts,
            lost: 1,
            total: 1,
        })
        .to_json(None)
    }

    fn read_all(text: &str) -> Result<(Vec<Record>, Option<String>)> {
        let (mut r, _) = TraceReader::from_reader(
            Box::new(std::io::Cursor::new(text.to_owned())),
            "t.jsonl".into(),
        )?;
        let mut out = Vec::new();
        while let Some(rec) = r.next_record()? {
            out.push(rec);
        }
        Ok((out, r.truncated))
    }

    #[test]
    fn reads_a_trace_and_skips_blank_lines() {
        let text = format!("{}\n{}\n\n{}\n", header_line(), lost_line(2), lost_line(3));
        let (records, truncated) = read_all(&text).unwrap();
        assert_eq!(records.len(), 2);
        assert!(truncated.is_none());
    }

    #[test]
    fn errors_name_file_and_line() {
        let empty = read_all("").unwrap_err().to_string();
        assert!(empty.contains("t.jsonl: empty file"), "{empty}");
        let foreign = read_all("{\"hello\":1}\n").unwrap_err().to_string();
        assert!(
            foreign.contains("t.jsonl:1: not a tracer trace"),
            "{foreign}"
        );
        let garbage = format!(
            "{}\n{}\nnot json at all\n{}\n",
            header_line(),
            lost_line(2),
            lost_line(3)
        );
        let err = read_all(&garbage).unwrap_err().to_string();
        assert!(err.starts_with("t.jsonl:3: "), "{err}");
        let newer = header_line().replace("\"version\":1", "\"version\":99");
        let err = read_all(&format!("{newer}\n")).unwrap_err().to_string();
        assert!(
            err.contains("version 99") && err.contains("version 1"),
            "{err}"
        );
    }

    #[test]
    fn a_cut_last_line_is_reported_and_the_rest_kept() {
        let line = lost_line(3);
        let text = format!(
            "{}\n{}\n{}",
            header_line(),
            lost_line(2),
            &line[..line.len() / 2]
        );
        let (records, truncated) = read_all(&text).unwrap();
        assert_eq!(records.len(), 1);
        assert!(
            truncated
                .unwrap()
                .starts_with("t.jsonl:3: last line is incomplete")
        );
    }
}
