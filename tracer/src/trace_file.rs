//! Reading recorded traces: record by record, with errors that name the file and line.
//!
//! Policy (documented for users in docs/trace-format.md):
//!
//! | input | outcome |
//! |---|---|
//! | empty (or only blank lines) | error: `FILE: empty file, not a tracer trace` |
//! | first record not our `header` (other JSON, not JSON, binary) | error: `FILE:LINE: not a tracer trace (...)` |
//! | `header` of another format version | error naming both versions |
//! | malformed line in the middle, a second `header` | error `FILE:LINE: ...`, reading stops: a trace with a hole would give wrong verdicts |
//! | unparsable *last* line without a newline (a crash, SIGKILL or full disk cut the writer off) | warning `FILE:LINE: last line is incomplete ...`; everything before it is used |
//! | blank lines | skipped |
//! | gzip-compressed trace | read transparently |
//! | binary trace ([`crate::trace_bin`], told by its first bytes) | read the same way: errors name `FILE: record N (byte B)`; a cut last frame is the warning above; a frame that does not decode, or a length past [`trace_bin::MAX_FRAME`], is an error |
//!
//! One line buffer is reused for the whole file; a line is never longer than
//! [`MAX_LINE`] bytes (so `/dev/zero` or a binary file cannot exhaust memory).

use std::{
    borrow::Cow,
    fs::File,
    io::{BufRead, BufReader, Read},
    path::Path,
};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::{
    event_read::EventReader,
    record::{FORMAT, Header, Record, VERSION, json_error},
    trace_bin::{self, BinaryReader},
};

/// Longer than any record we write (a header with every hook is a few KiB).
pub const MAX_LINE: usize = 1 << 20;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

pub struct TraceReader {
    input: Box<dyn BufRead + Send>,
    name: String,
    /// Line number of the line in `line` (1-based).
    line_no: u64,
    line: Vec<u8>,
    /// Set when the last line was cut short: `FILE:LINE: ...`.
    truncated: Option<String>,
    /// Event lines as our writer lays them out; None: every line through serde.
    events: Option<EventReader>,
    /// Set for a binary trace: `line_no` then counts frames.
    binary: Option<BinaryFrames>,
}

/// Where a binary trace is read.
struct BinaryFrames {
    decoder: BinaryReader,
    /// Offset of the current frame in the (decompressed) file.
    offset: u64,
    /// Offset of the next frame.
    next: u64,
}

/// What tells our header from any other first line, read before the full header so that a
/// header of another version is named as such even if its fields changed.
#[derive(Deserialize)]
struct Identity<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    format: Option<Cow<'a, str>>,
    #[serde(default)]
    version: Option<serde_json::Value>,
}

impl TraceReader {
    /// Opens a trace file, or stdin for `-`, and reads its header.
    pub fn open(path: &Path) -> Result<(TraceReader, Header)> {
        if path == Path::new("-") {
            return Self::from_reader(std::io::stdin(), "<stdin>");
        }
        let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        Self::from_reader(file, path.display().to_string())
    }

    /// Reads a trace from any byte stream (plain or gzip); `name` is used in messages.
    pub fn from_reader(
        input: impl Read + Send + 'static,
        name: impl Into<String>,
    ) -> Result<(TraceReader, Header)> {
        let name = name.into();
        let mut buffered = BufReader::with_capacity(1 << 20, input);
        let head = buffered
            .fill_buf()
            .with_context(|| format!("cannot read {name}"))?;
        let mut input: Box<dyn BufRead + Send> = if head.starts_with(&GZIP_MAGIC) {
            Box::new(BufReader::with_capacity(
                1 << 20,
                flate2::bufread::MultiGzDecoder::new(buffered),
            ))
        } else {
            Box::new(buffered)
        };
        // No JSON text starts with this byte (nor any UTF-8 text).
        let binary = input
            .fill_buf()
            .with_context(|| format!("cannot read {name}"))?
            .first()
            == Some(&trace_bin::MAGIC[0]);
        let mut reader = TraceReader {
            input,
            name,
            line_no: 0,
            line: Vec::with_capacity(4096),
            truncated: None,
            events: Some(EventReader::new()),
            binary: None,
        };
        let header = if binary {
            reader.read_binary_header()?
        } else {
            reader.read_header()?
        };
        Ok((reader, header))
    }

    /// Whether the trace is binary (`record --format binary`).
    pub fn is_binary(&self) -> bool {
        self.binary.is_some()
    }

    /// The name used in messages (`<stdin>` for stdin).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The line number of the record returned last (its frame's number in a binary trace).
    pub fn line_no(&self) -> u64 {
        self.line_no
    }

    /// Reads every record through serde, the reference (tests compare the two readers).
    pub fn serde_only(mut self) -> Self {
        self.events = None;
        self
    }

    /// The warning for a cut last line, once the end was reached.
    pub fn truncated(&self) -> Option<&str> {
        self.truncated.as_deref()
    }

    /// `FILE:LINE`, for messages about the current line (`FILE: record N (byte B)` in a
    /// binary trace).
    fn here(&self) -> String {
        match &self.binary {
            Some(b) => format!("{}: record {} (byte {})", self.name, self.line_no, b.offset),
            None => format!("{}:{}", self.name, self.line_no),
        }
    }

    /// Reads the next non-blank line into `self.line` (without its line ending); returns
    /// whether it ended with a newline, or None at the end of the input.
    fn next_line(&mut self) -> Result<Option<bool>> {
        loop {
            self.line.clear();
            let read = (&mut self.input)
                .take(MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut self.line);
            let n = match read {
                Ok(n) => n,
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("cannot read {} (after line {})", self.name, self.line_no)
                    });
                }
            };
            if n == 0 {
                return Ok(None);
            }
            self.line_no += 1;
            let complete = self.line.last() == Some(&b'\n');
            if !complete && self.line.len() > MAX_LINE {
                bail!(
                    "{}: line longer than {} MiB: not a trace record",
                    self.here(),
                    MAX_LINE >> 20
                );
            }
            while matches!(self.line.last(), Some(b'\n' | b'\r' | b' ' | b'\t')) {
                self.line.pop();
            }
            if !self.line.is_empty() {
                return Ok(Some(complete));
            }
        }
    }

    fn line_text(&self) -> Result<&str> {
        std::str::from_utf8(&self.line).map_err(|e| {
            anyhow::anyhow!(
                "{}: not UTF-8 text (byte {})",
                self.here(),
                e.valid_up_to() + 1
            )
        })
    }

    fn read_header(&mut self) -> Result<Header> {
        let Some(complete) = self.next_line()? else {
            bail!("{}: empty file, not a tracer trace", self.name);
        };
        let not_ours = |why: String| anyhow::anyhow!("{}: not a tracer trace ({why})", self.here());
        let text = self
            .line_text()
            .map_err(|_| not_ours("binary data, not JSON Lines".into()))?;
        let identity: Identity = serde_json::from_str(text)
            .map_err(|e| not_ours(format!("not JSON Lines: {}", json_error(&e))))?;
        match identity.kind.as_deref() {
            Some("header") => {}
            Some(other) => {
                return Err(not_ours(format!(
                    "the first record is {other:?}, not a \"header\""
                )));
            }
            None => return Err(not_ours("a JSON object without a \"type\"".into())),
        }
        if identity.format.as_deref() != Some(FORMAT) {
            return Err(not_ours(format!(
                "format {:?}, expected {FORMAT:?}",
                identity.format.unwrap_or_default()
            )));
        }
        let version = identity.version.unwrap_or_default();
        if version != VERSION {
            bail!(
                "{}: trace format version {version} is not supported: this tracer ({}) reads \
                 version {VERSION}",
                self.here(),
                env!("CARGO_PKG_VERSION")
            );
        }
        match Record::parse(text) {
            Ok(Record::Header(h)) => Ok(*h),
            Ok(other) => Err(not_ours(format!(
                "the first record is {:?}, not a \"header\"",
                other.type_name()
            ))),
            Err(e) if !complete => bail!("{}: the header is incomplete ({e})", self.here()),
            Err(e) => bail!("{}: {e}", self.here()),
        }
    }

    /// Magic, layout version and the header frame of a binary trace.
    fn read_binary_header(&mut self) -> Result<Header> {
        let mut start = [0; trace_bin::MAGIC.len() + 2];
        let n = read_full(&mut self.input, &mut start)
            .with_context(|| format!("cannot read {}", self.name))?;
        if n < start.len() || !start.starts_with(trace_bin::MAGIC) {
            bail!(
                "{}:1: not a tracer trace (binary data, not JSON Lines)",
                self.name
            );
        }
        let version = u16::from_le_bytes([start[8], start[9]]);
        if version != trace_bin::BINARY_VERSION {
            bail!(
                "{}: binary trace layout version {version} is not supported: this tracer ({}) \
                 reads version {}",
                self.name,
                env!("CARGO_PKG_VERSION"),
                trace_bin::BINARY_VERSION
            );
        }
        self.binary = Some(BinaryFrames {
            decoder: BinaryReader::new(),
            offset: n as u64,
            next: n as u64,
        });
        let header = match self.next_frame()? {
            Some(Record::Header(h)) => *h,
            Some(other) => bail!(
                "{}: not a tracer trace (the first record is {:?}, not a \"header\")",
                self.here(),
                other.type_name()
            ),
            None => match self.truncated.take() {
                Some(cut) => bail!("{cut}: the header is incomplete"),
                None => bail!("{}: a binary trace without a header", self.name),
            },
        };
        if header.format != FORMAT || header.version != VERSION {
            bail!(
                "{}: trace format {:?} version {} is not supported: this tracer ({}) reads \
                 {FORMAT:?} version {VERSION}",
                self.here(),
                header.format,
                header.version,
                env!("CARGO_PKG_VERSION")
            );
        }
        Ok(header)
    }

    /// The next record of a binary trace (definitions are taken in on the way).
    fn next_frame(&mut self) -> Result<Option<Record>> {
        loop {
            let frames = self
                .binary
                .as_mut()
                .expect("only binary traces have frames");
            frames.offset = frames.next;
            let offset = frames.offset;
            // Most frames are whole in the input's buffer: decoded there, not copied.
            let buffered = self
                .input
                .fill_buf()
                .with_context(|| format!("cannot read {} (at byte {offset})", self.name))?;
            if buffered.is_empty() {
                return Ok(None);
            }
            self.line_no += 1;
            let whole = (buffered.len() >= trace_bin::FRAME_HEAD)
                .then(|| frame_len(buffered))
                .filter(|&len| {
                    len <= trace_bin::MAX_FRAME && buffered.len() >= trace_bin::FRAME_HEAD + len
                });
            let (len, decoded) = if let Some(len) = whole {
                let payload = &buffered[trace_bin::FRAME_HEAD..trace_bin::FRAME_HEAD + len];
                let decoded = frames.decoder.frame(buffered[0], payload);
                self.input.consume(trace_bin::FRAME_HEAD + len);
                (len, decoded)
            } else {
                // A frame across the buffer's end, or cut short, or too long.
                let mut head = [0; trace_bin::FRAME_HEAD];
                let got = read_full(&mut self.input, &mut head)
                    .with_context(|| format!("cannot read {} (at byte {offset})", self.name))?;
                if got < head.len() {
                    return self.cut();
                }
                let len = frame_len(&head);
                if len > trace_bin::MAX_FRAME {
                    bail!(
                        "{}: frame of {len} bytes, more than {} MiB: not a trace record (a \
                         corrupt file?)",
                        self.here(),
                        trace_bin::MAX_FRAME >> 20
                    );
                }
                self.line.resize(len, 0);
                let got = read_full(&mut self.input, &mut self.line)
                    .with_context(|| format!("cannot read {} (at {})", self.name, self.here()))?;
                if got < len {
                    return self.cut();
                }
                let frames = self
                    .binary
                    .as_mut()
                    .expect("only binary traces have frames");
                (len, frames.decoder.frame(head[0], &self.line))
            };
            let frames = self
                .binary
                .as_mut()
                .expect("only binary traces have frames");
            frames.next = offset + (trace_bin::FRAME_HEAD + len) as u64;
            match decoded {
                Ok(Some(Record::Header(_))) if self.line_no > 1 => bail!(
                    "{}: a second header: several traces were joined into one file; report \
                     them one at a time",
                    self.here()
                ),
                Ok(Some(record)) => return Ok(Some(record)),
                Ok(None) => {}
                Err(e) => bail!("{}: {e}", self.here()),
            }
        }
    }

    /// The end of a binary trace cut inside a frame: a warning, the frames before it kept.
    fn cut(&mut self) -> Result<Option<Record>> {
        self.truncated = Some(format!(
            "{}: last record is incomplete (the trace was cut off)",
            self.here()
        ));
        Ok(None)
    }

    /// The next record after the header; None at the end. See the module's policy table.
    pub fn next_record(&mut self) -> Result<Option<Record>> {
        if self.binary.is_some() {
            return self.next_frame();
        }
        let Some(complete) = self.next_line()? else {
            return Ok(None);
        };
        // Event lines first as our writer lays them out; anything else through serde.
        if let (Ok(text), Some(events)) = (std::str::from_utf8(&self.line), &mut self.events)
            && let Some(e) = events.read(text)
        {
            return Ok(Some(Record::Event(Box::new(e))));
        }
        let parsed = match self.line_text() {
            Ok(text) => Record::parse(text),
            Err(e) if complete => return Err(e),
            Err(_) => Err("not UTF-8 text".to_owned()),
        };
        match parsed {
            Ok(Record::Header(_)) => bail!(
                "{}: a second header: several traces were joined into one file; report them \
                 one at a time",
                self.here()
            ),
            Ok(record) => Ok(Some(record)),
            Err(e) if !complete => {
                // The writer was cut off mid-line: keep everything before it.
                self.truncated = Some(format!(
                    "{}: last line is incomplete (the trace was cut off): {e}",
                    self.here()
                ));
                Ok(None)
            }
            Err(e) => bail!("{}: {e}", self.here()),
        }
    }
}

/// The payload length in a frame's head.
fn frame_len(head: &[u8]) -> usize {
    u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize
}

/// Reads until `buf` is full or the input ends; the bytes read.
fn read_full(input: &mut dyn BufRead, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::record::{LossCause, Lost};

    fn header() -> Header {
        Header {
            format: FORMAT.into(),
            version: VERSION,
            tool_version: "test".into(),
            hostname: "h".into(),
            kernel_release: "6.18".into(),
            kernel: crate::event::KernelFacts {
                hz: 250,
                reset_reasons: Default::default(),
                drop_reasons: Default::default(),
            },
            boot_to_wall_offset_ns: 0,
            started_ns: 1,
            hooks: vec![],
            missing: vec![],
            command: vec![],
            thresholds: None,
        }
    }

    fn header_line() -> String {
        Record::Header(Box::new(header())).to_json(None)
    }

    fn lost_line(ts: u64) -> String {
        Record::Lost(Lost {
            ts_ns: ts,
            cause: LossCause::RingBufferFull,
            lost: 1,
            total: 1,
        })
        .to_json(None)
    }

    fn read_bytes(bytes: Vec<u8>) -> Result<(Vec<Record>, Option<String>)> {
        let (mut r, h) = TraceReader::from_reader(std::io::Cursor::new(bytes), "t.jsonl")?;
        assert_eq!(h, header());
        let mut out = Vec::new();
        while let Some(rec) = r.next_record()? {
            out.push(rec);
        }
        Ok((out, r.truncated().map(str::to_owned)))
    }

    fn read_all(text: &str) -> Result<(Vec<Record>, Option<String>)> {
        read_bytes(text.as_bytes().to_vec())
    }

    fn error(text: &str) -> String {
        format!("{:#}", read_all(text).unwrap_err())
    }

    #[test]
    fn reads_a_trace_and_skips_blank_lines_and_crlf() {
        let text = format!(
            "\n{}\r\n{}\n\n{}\n",
            header_line(),
            lost_line(2),
            lost_line(3)
        );
        let (records, truncated) = read_all(&text).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].ts_ns(), 3);
        assert!(truncated.is_none());
    }

    #[test]
    fn a_complete_last_line_without_newline_is_kept() {
        let text = format!("{}\n{}", header_line(), lost_line(2));
        let (records, truncated) = read_all(&text).unwrap();
        assert_eq!(records.len(), 1);
        assert!(truncated.is_none());
    }

    #[test]
    fn inputs_that_are_not_traces_are_named_with_file_and_line() {
        assert_eq!(error(""), "t.jsonl: empty file, not a tracer trace");
        assert_eq!(error("\n \n"), "t.jsonl: empty file, not a tracer trace");
        let foreign = error("{\"hello\":1}\n");
        assert_eq!(
            foreign,
            "t.jsonl:1: not a tracer trace (a JSON object without a \"type\")"
        );
        let other_type = error(&format!("{}\n", lost_line(1)));
        assert!(
            other_type.starts_with("t.jsonl:1: not a tracer trace (the first record is \"lost\""),
            "{other_type}"
        );
        let text = error("hello world\n");
        assert!(
            text.starts_with("t.jsonl:1: not a tracer trace (not JSON Lines: expected value"),
            "{text}"
        );
        let array = error("[1,2]\n");
        assert!(
            array.starts_with("t.jsonl:1: not a tracer trace"),
            "{array}"
        );
        let other_format = header_line().replace(FORMAT, "pcap-ish");
        let err = error(&format!("\n{other_format}\n"));
        assert_eq!(
            err,
            "t.jsonl:2: not a tracer trace (format \"pcap-ish\", expected \"tracer-trace\")"
        );
    }

    #[test]
    fn binary_input_is_refused_without_reading_it_all() {
        let mut zeros = vec![0u8; MAX_LINE * 3];
        zeros[0] = 0xff;
        let err = format!("{:#}", read_bytes(zeros).unwrap_err());
        assert_eq!(
            err,
            format!(
                "t.jsonl:1: line longer than {} MiB: not a trace record",
                MAX_LINE >> 20
            )
        );
        let err = format!(
            "{:#}",
            read_bytes(b"\xff\xfe\x00\x01\n".to_vec()).unwrap_err()
        );
        assert_eq!(
            err,
            "t.jsonl:1: not a tracer trace (binary data, not JSON Lines)"
        );
    }

    #[test]
    fn another_version_is_refused_naming_both_versions() {
        // A future header may have changed its fields: the version is still what is named.
        let newer = r#"{"type":"header","format":"tracer-trace","version":2,"renamed":true}"#;
        assert_eq!(
            error(&format!("{newer}\n")),
            format!(
                "t.jsonl:1: trace format version 2 is not supported: this tracer ({}) reads \
                 version 1",
                env!("CARGO_PKG_VERSION")
            )
        );
    }

    #[test]
    fn malformed_lines_in_the_middle_stop_with_file_and_line() {
        let garbage = format!(
            "{}\n{}\nnot json at all\n{}\n",
            header_line(),
            lost_line(2),
            lost_line(3)
        );
        let err = error(&garbage);
        assert!(
            err.starts_with("t.jsonl:3: not a trace record: expected"),
            "{err}"
        );
        let bad_field = format!(
            "{}\n{}\n",
            header_line(),
            r#"{"type":"lost","ts_ns":1,"lost":"many","total":1}"#
        );
        let err = error(&bad_field);
        assert!(
            err.starts_with("t.jsonl:2: bad lost record: invalid type: string \"many\"")
                && err.ends_with("(column 38)"),
            "{err}"
        );
        let unknown = format!("{}\n{{\"type\":\"gossip\"}}\n", header_line());
        assert_eq!(error(&unknown), "t.jsonl:2: unknown record type \"gossip\"");
        let mut invalid_utf8 = format!("{}\n", header_line()).into_bytes();
        invalid_utf8.extend_from_slice(b"{\"type\":\"lost\xff\"}\n");
        invalid_utf8.extend_from_slice(format!("{}\n", lost_line(3)).as_bytes());
        let err = format!("{:#}", read_bytes(invalid_utf8).unwrap_err());
        assert_eq!(err, "t.jsonl:2: not UTF-8 text (byte 14)");
    }

    #[test]
    fn two_traces_joined_are_refused() {
        let joined = format!("{}\n{}\n{}\n", header_line(), lost_line(2), header_line());
        let err = error(&joined);
        assert!(err.starts_with("t.jsonl:3: a second header"), "{err}");
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
        let warning = truncated.unwrap();
        assert!(
            warning.starts_with("t.jsonl:3: last line is incomplete (the trace was cut off): "),
            "{warning}"
        );
        // Cut in the middle of a multi-byte character: still only a warning.
        let mut bytes = format!("{}\n{}\n", header_line(), lost_line(2)).into_bytes();
        bytes.extend_from_slice(b"{\"type\":\"event\",\"comm\":\"\xc3");
        let (records, truncated) = read_bytes(bytes).unwrap();
        assert_eq!(records.len(), 1);
        assert!(truncated.unwrap().starts_with("t.jsonl:3: last line"));
    }

    #[test]
    fn gzip_traces_are_read_transparently() {
        let text = format!("{}\n{}\n{}\n", header_line(), lost_line(2), lost_line(3));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(text.as_bytes()).unwrap();
        let (records, _) = read_bytes(gz.finish().unwrap()).unwrap();
        assert_eq!(records.len(), 2);
    }
}
