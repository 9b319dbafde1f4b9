//! Reading a CSV: its dialect (the delimiter sniffed from the first lines, or the spec's; quotes;
//! a UTF-8 BOM; CRLF), which cell texts mean "missing", and records bounded in size however
//! they are quoted. Shared by training (`data`) and by `predict` and `eval`, so that every row is
//! read the same way.

use std::cell::Cell;
use std::io::Read;
use std::rc::Rc;

use crate::spec::Delimiter;

/// The most bytes one record may span (a quoted field may hold newlines; it is bounded all the
/// same).
pub const MAX_RECORD: u64 = 1 << 20;

/// How many lines the sniffer looks at.
const SNIFF_LINES: usize = 50;

/// Guess the delimiter from the first lines: the candidate (`,` `;` tab `|`) that splits every
/// line into the same number (at least two) of fields outside quotes, the most fields winning;
/// else runs of whitespace when they split every line alike; else `,` (one column).
pub fn sniff(bytes: &[u8]) -> Delimiter {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let lines: Vec<&[u8]> = bytes
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .take(SNIFF_LINES)
        .collect();
    if lines.is_empty() {
        return Delimiter::Comma;
    }
    let mut best: Option<(Delimiter, usize)> = None;
    for d in [
        Delimiter::Comma,
        Delimiter::Semicolon,
        Delimiter::Tab,
        Delimiter::Pipe,
    ] {
        let counts: Vec<usize> = lines.iter().map(|l| fields(l, d.byte())).collect();
        let n = counts[0];
        if n >= 2 && counts.iter().all(|&c| c == n) && best.is_none_or(|(_, m)| n > m) {
            best = Some((d, n));
        }
    }
    if let Some((d, _)) = best {
        return d;
    }
    let counts: Vec<usize> = lines.iter().map(|l| whitespace_fields(l)).collect();
    if counts[0] >= 2 && counts.iter().all(|&c| c == counts[0]) {
        Delimiter::Whitespace
    } else {
        Delimiter::Comma
    }
}

/// Fields of one line split on `delim` outside double quotes.
fn fields(line: &[u8], delim: u8) -> usize {
    let mut quoted = false;
    let mut n = 1;
    for &b in line {
        if b == b'"' {
            quoted = !quoted;
        } else if b == delim && !quoted {
            n += 1;
        }
    }
    n
}

/// Fields of one line split on runs of spaces and tabs outside quotes.
fn whitespace_fields(line: &[u8]) -> usize {
    let collapsed = collapse_whitespace(line);
    if collapsed.is_empty() {
        0
    } else {
        fields(&collapsed, b' ')
    }
}

/// A whitespace-separated text as a space-separated one: outside quotes, every run of spaces
/// and tabs becomes one space, and leading and trailing runs on a line are dropped.
fn collapse_whitespace(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut quoted = false;
    let mut pending_space = false;
    let mut at_line_start = true;
    for &b in bytes {
        match b {
            b'"' => {
                if pending_space && !at_line_start {
                    out.push(b' ');
                }
                pending_space = false;
                at_line_start = false;
                quoted = !quoted;
                out.push(b);
            }
            b' ' | b'\t' if !quoted => pending_space = true,
            b'\n' if !quoted => {
                pending_space = false;
                at_line_start = true;
                out.push(b);
            }
            b'\r' if !quoted => {}
            _ => {
                if pending_space && !at_line_start {
                    out.push(b' ');
                }
                pending_space = false;
                at_line_start = false;
                out.push(b);
            }
        }
    }
    out
}

/// A CSV's dialect: the delimiter and the cell texts that mean "missing".
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Dialect {
    /// The delimiter.
    pub delimiter: Delimiter,
    /// Texts (after trimming) that mean a missing value.
    pub missing: Vec<String>,
}

impl Dialect {
    /// Whether a (trimmed) cell is missing.
    pub fn is_missing(&self, cell: &str) -> bool {
        // Called for every cell: compare lengths and first bytes before the bytes themselves.
        let b = cell.as_bytes();
        self.missing.iter().any(|m| {
            let m = m.as_bytes();
            m.len() == b.len() && m.first() == b.first() && m == b
        })
    }
}

/// Counts the bytes a reader has handed out, so that a record can be bounded while it is read.
#[derive(Debug, Clone, Default)]
pub struct Meter {
    read: Rc<Cell<u64>>,
    record_start: Rc<Cell<u64>>,
}

impl Meter {
    /// A record was returned: what the reader reads from now on belongs to the next one (up to
    /// the CSV reader's buffer was read ahead already, which the bound allows for).
    pub fn next_record(&self) {
        self.record_start.set(self.read.get());
    }
}

/// A reader that fails once the record being read grows past [`MAX_RECORD`] bytes (plus the CSV
/// reader's own buffer), so that a hostile input (one endless quoted field, a line without a
/// newline) cannot make it buffer everything.
pub struct Bounded<R> {
    inner: R,
    meter: Meter,
}

impl<R> Bounded<R> {
    /// Wrap `inner`; `meter` is shared with whoever marks record boundaries.
    pub fn new(inner: R, meter: Meter) -> Bounded<R> {
        Bounded { inner, meter }
    }
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let total = self.meter.read.get() + n as u64;
        self.meter.read.set(total);
        if total.saturating_sub(self.meter.record_start.get()) > MAX_RECORD + (1 << 16) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("a record longer than {MAX_RECORD} bytes"),
            ));
        }
        Ok(n)
    }
}

/// A CSV reader for `dialect` over `input`: headers, trimmed cells, records of any width (the
/// caller checks widths), each bounded by [`MAX_RECORD`].
pub fn reader<'a, R: Read + 'a>(
    input: R,
    dialect: &Dialect,
) -> (csv::Reader<Box<dyn Read + 'a>>, Meter) {
    let meter = Meter::default();
    let bounded = Bounded::new(input, meter.clone());
    let source: Box<dyn Read + 'a> = if dialect.delimiter == Delimiter::Whitespace {
        // Collapsing reads a byte at a time: buffer what it reads from.
        Box::new(Collapsing::new(std::io::BufReader::new(bounded)))
    } else {
        Box::new(bounded)
    };
    let r = csv::ReaderBuilder::new()
        .delimiter(dialect.delimiter.byte())
        .flexible(true)
        // Headers are trimmed here; cells where they are read (`cell`): the csv crate's
        // per-record trimming costs a fifth of the time of reading a wide file.
        .trim(csv::Trim::Headers)
        .has_headers(true)
        .from_reader(source);
    (r, meter)
}

/// Field `i` of a record, trimmed (`""` when the record is shorter).
pub fn cell(rec: &csv::StringRecord, i: usize) -> &str {
    rec.get(i).map_or("", str::trim)
}

/// A reader applying [`collapse_whitespace`] as it streams (its quote state carried across
/// reads).
struct Collapsing<R> {
    inner: R,
    buf: Vec<u8>,
    pos: usize,
}

impl<R: Read> Collapsing<R> {
    fn new(inner: R) -> Collapsing<R> {
        Collapsing {
            inner,
            buf: Vec::new(),
            pos: 0,
        }
    }
}

impl<R: Read> Read for Collapsing<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.buf.len() {
            // Whole lines keep the transform's state simple: read up to a newline.
            let mut line = Vec::new();
            let mut byte = [0u8; 1];
            let mut quoted = false;
            loop {
                if self.inner.read(&mut byte)? == 0 {
                    break;
                }
                line.push(byte[0]);
                if byte[0] == b'"' {
                    quoted = !quoted;
                }
                if byte[0] == b'\n' && !quoted {
                    break;
                }
            }
            self.buf = collapse_whitespace(&line);
            self.pos = 0;
            if self.buf.is_empty() {
                return Ok(0);
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A CSV error as one line (the csv crate's own messages name byte offsets).
pub fn csv_message(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Io(io) => io.to_string(),
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("row has {len} fields, the header has {expected_len}"),
        csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".to_string(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialects_are_sniffed() {
        assert_eq!(sniff(b"a,b,c\n1,2,3\n"), Delimiter::Comma);
        assert_eq!(sniff(b"a;b;c\n1,5;2;3\n"), Delimiter::Semicolon);
        assert_eq!(sniff(b"a\tb\n1\t2\n"), Delimiter::Tab);
        assert_eq!(sniff(b"\"x, y\";b\n\"1,2\";3\n"), Delimiter::Semicolon);
        assert_eq!(sniff(b"  a   b  c\n 1  2   3\n"), Delimiter::Whitespace);
        assert_eq!(sniff(b"\xef\xbb\xbfa|b\r\n1|2\r\n"), Delimiter::Pipe);
        assert_eq!(sniff(b"only\n1\n"), Delimiter::Comma);
    }

    #[test]
    fn whitespace_runs_collapse_outside_quotes() {
        assert_eq!(
            collapse_whitespace(b"  a \t b  \"x  y\" \n1  2 \"3\"\n"),
            b"a b \"x  y\"\n1 2 \"3\"\n"
        );
        let d = Dialect {
            delimiter: Delimiter::Whitespace,
            missing: vec![],
        };
        let (mut r, _) = reader(&b"a  b   c\n1   2 \"x y\"\n"[..], &d);
        assert_eq!(r.headers().unwrap().len(), 3);
        let rec = r.records().next().unwrap().unwrap();
        assert_eq!(rec.get(2), Some("x y"));
    }

    #[test]
    fn a_record_is_bounded_however_it_is_quoted() {
        let mut text = b"a,b\n1,\"".to_vec();
        text.extend(std::iter::repeat_n(
            b'\n',
            (MAX_RECORD as usize) + (1 << 17),
        ));
        text.extend_from_slice(b"\"\n");
        let d = Dialect {
            delimiter: Delimiter::Comma,
            missing: vec![],
        };
        let (mut r, meter) = reader(text.as_slice(), &d);
        r.headers().unwrap();
        meter.next_record();
        let e = r.records().next().unwrap().unwrap_err();
        assert!(csv_message(&e).contains("a record longer than"), "{e}");
    }
}
