//! Several CSV files with the same columns (`data.sources`) read as one table: the header once,
//! then each file's rows in turn, so that splitting, inference and fitting see every row, and
//! each row keeps the source it came from ([`SourceSpan`]). Errors and left-out rows are mapped
//! back to the file and line they came from.

use std::path::{Path, PathBuf};

use super::{BadRow, DataError, Dialect, Part, Prepared, table};
use crate::spec::Spec;

/// One data file's bytes, exactly as read (and hashed) once.
#[derive(Debug, Clone)]
pub struct SourceBytes {
    /// The file.
    pub path: PathBuf,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// Where one source's rows are in the combined table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSpan {
    /// The file.
    pub path: PathBuf,
    /// Its data records (0-based, header excluded) in the combined table.
    pub records: std::ops::Range<usize>,
}

impl Prepared {
    /// The source (index into [`Prepared::sources`]) of combined record `record`.
    pub fn source_of(&self, record: usize) -> usize {
        self.sources
            .partition_point(|s| s.records.end <= record)
            .min(self.sources.len().saturating_sub(1))
    }

    /// Rows of `part` per source.
    pub fn rows_by_source(&self, part: &Part) -> Vec<usize> {
        let mut n = vec![0; self.sources.len()];
        for &r in &part.source_rows {
            n[self.source_of(r)] += 1;
        }
        n
    }
}

/// Read every data file of the spec (the sources, or `data.path`).
pub fn read_all(spec: &Spec) -> Result<Vec<SourceBytes>, DataError> {
    spec.data
        .files(&spec.source)
        .into_iter()
        .map(|(path, pos)| {
            let bytes = crate::fsio::read_own(&path, super::MAX_DATA_BYTES).map_err(|e| {
                DataError::Spec {
                    spec: spec.source.clone(),
                    pos,
                    message: format!("cannot read data file {}: {e}", path.display()),
                }
            })?;
            Ok(SourceBytes { path, bytes })
        })
        .collect()
}

/// Where a source's body lies in the combined bytes.
struct Placed {
    path: PathBuf,
    /// The combined line its first data line has.
    first_line: u64,
    /// The source line of that first data line.
    own_first_line: u64,
}

/// Prepare splits from several sources' bytes (as [`read_all`] returned them).
pub fn parse_sources(
    spec: &Spec,
    sources: &[SourceBytes],
    opts: super::ParseOptions,
) -> Result<Prepared, DataError> {
    let [first, rest @ ..] = sources else {
        return Err(DataError::Csv {
            path: spec.data.resolved_path(&spec.source),
            line: None,
            message: "no data files".into(),
        });
    };
    let dialect = Dialect {
        delimiter: spec
            .data
            .delimiter
            .unwrap_or_else(|| table::sniff(&first.bytes)),
        missing: Vec::new(),
    };
    let header = header_of(first, &dialect)?;
    let mut combined = first.bytes.clone();
    let mut spans = vec![SourceSpan {
        path: first.path.clone(),
        records: 0..count_records(first, &dialect)?,
    }];
    let mut placed = vec![Placed {
        path: first.path.clone(),
        first_line: 1,
        own_first_line: 1,
    }];
    for s in rest {
        if header_of(s, &dialect)? != header {
            return Err(DataError::Csv {
                path: s.path.clone(),
                line: Some(1),
                message: format!(
                    "its columns differ from those of {} (every source needs the same header)",
                    first.path.display()
                ),
            });
        }
        if !combined.is_empty() && !combined.ends_with(b"\n") {
            combined.push(b'\n');
        }
        let body_at = s
            .bytes
            .iter()
            .position(|&b| b == b'\n')
            .map_or(s.bytes.len(), |i| i + 1);
        placed.push(Placed {
            path: s.path.clone(),
            first_line: 1 + combined.iter().filter(|&&b| b == b'\n').count() as u64,
            own_first_line: 2,
        });
        combined.extend_from_slice(&s.bytes[body_at..]);
        let start = spans.last().map_or(0, |l| l.records.end);
        spans.push(SourceSpan {
            path: s.path.clone(),
            records: start..start + count_records(s, &dialect)?,
        });
    }
    let mut prepared = super::parse_with(spec, &combined, opts).map_err(|e| remap(e, &placed))?;
    if sources.len() > 1 {
        for b in &mut prepared.skipped {
            *b = remap_row(b, &placed);
        }
    }
    prepared.path = first.path.clone();
    prepared.sources = spans;
    Ok(prepared)
}

fn header_of(s: &SourceBytes, dialect: &Dialect) -> Result<Vec<String>, DataError> {
    let (mut r, _) = table::reader(s.bytes.as_slice(), dialect);
    r.headers()
        .map(|h| h.iter().map(str::to_string).collect())
        .map_err(|e| DataError::Csv {
            path: s.path.clone(),
            line: Some(1),
            message: table::csv_message(&e),
        })
}

fn count_records(s: &SourceBytes, dialect: &Dialect) -> Result<usize, DataError> {
    let (mut r, meter) = table::reader(s.bytes.as_slice(), dialect);
    let mut rec = csv::StringRecord::new();
    let mut n = 0;
    loop {
        match r.read_record(&mut rec) {
            Ok(true) => {
                meter.next_record();
                n += 1;
            }
            Ok(false) => return Ok(n),
            Err(e) => {
                return Err(DataError::Csv {
                    path: s.path.clone(),
                    line: e.position().map(|p| p.line()),
                    message: table::csv_message(&e),
                });
            }
        }
    }
}

/// The source and its own line of combined line `line`.
fn locate(line: u64, placed: &[Placed]) -> (&Path, u64) {
    let i = placed
        .partition_point(|p| p.first_line <= line)
        .saturating_sub(1);
    let p = &placed[i];
    (
        &p.path,
        line.saturating_sub(p.first_line) + p.own_first_line,
    )
}

fn remap_row(b: &BadRow, placed: &[Placed]) -> BadRow {
    let (path, line) = locate(b.line, placed);
    let file = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().to_string(),
    );
    BadRow {
        line,
        why: format!("{file}: {}", b.why),
    }
}

fn remap(e: DataError, placed: &[Placed]) -> DataError {
    if placed.len() < 2 {
        return e;
    }
    match e {
        DataError::Csv {
            line: Some(l),
            message,
            ..
        } => {
            let (path, line) = locate(l, placed);
            DataError::Csv {
                path: path.to_path_buf(),
                line: Some(line),
                message,
            }
        }
        DataError::BadRows { bad, .. } => {
            let path = locate(bad.first().map_or(1, |b| b.line), placed)
                .0
                .to_path_buf();
            DataError::BadRows {
                path,
                bad: bad.iter().map(|b| remap_row(b, placed)).collect(),
            }
        }
        other => other,
    }
}
