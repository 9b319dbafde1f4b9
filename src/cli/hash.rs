//! `auditai hash`: b3sum-style digests of files and directory trees.

use std::io::Write;
use std::path::PathBuf;

use serde_json::json;

use auditai::hash::{Hashed, Hasher, StatCache, TreeEntry};

use super::printer::Printer;
use super::{EXIT_OK, clean, write_json};

#[derive(Debug, clap::Args)]
pub(super) struct HashArgs {
    /// Files or directories to hash.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Also compute sha256 (shown in --json).
    #[arg(long)]
    sha256: bool,
    /// Re-read every file instead of trusting the stat cache.
    #[arg(long)]
    no_cache: bool,
    /// Print one JSON object instead of `digest  path` lines.
    #[arg(long)]
    json: bool,
}

/// `hash --json`: one entry per path (sorted keys, as before).
#[derive(serde::Serialize)]
struct HashJson {
    entries: Vec<serde_json::Value>,
    /// `auditai.hash/v1`.
    schema: &'static str,
}

pub(super) fn hash(args: &HashArgs) -> anyhow::Result<u8> {
    let cache = (!args.no_cache)
        .then(StatCache::default_path)
        .flatten()
        .map(StatCache::open);
    let hasher = Hasher::new(cache.as_ref(), args.sha256);
    let mut out = std::io::stdout().lock();
    let mut json_entries = Vec::new();
    let printer = Printer::new(false);
    for path in &args.paths {
        let shown = path.display().to_string();
        match hasher.hash_path(path)? {
            Hashed::File(d) => {
                if args.json {
                    json_entries.push(json!({ "path": shown, "kind": "file", "size": d.size, "blake3": d.blake3, "sha256": d.sha256 }));
                } else {
                    writeln!(out, "{}  {shown}", d.blake3)?;
                }
            }
            Hashed::Dir(t) => {
                for e in &t.entries {
                    match e {
                        TreeEntry::Symlink { path: p, target } => printer.line(&format!(
                            "notice: {shown}/{} is a symlink to {}; recorded, not followed",
                            clean(p),
                            clean(target)
                        )),
                        TreeEntry::Special { path: p } => printer.line(&format!(
                            "notice: {shown}/{} is not a regular file; recorded, not read",
                            clean(p)
                        )),
                        TreeEntry::File { .. } => {}
                    }
                }
                if args.json {
                    json_entries.push(json!({
                        "path": shown, "kind": "directory", "blake3": t.blake3,
                        "files": t.entries.len(), "entries": t.entries,
                    }));
                } else {
                    writeln!(out, "{}  {}/", t.blake3, shown.trim_end_matches('/'))?;
                }
            }
            Hashed::Symlink(target) => {
                printer.line(&format!(
                    "notice: {shown} is a symlink to {target}; not followed"
                ));
                if args.json {
                    json_entries
                        .push(json!({ "path": shown, "kind": "symlink", "target": target }));
                }
            }
            Hashed::Special => {
                printer.line(&format!("notice: {shown} is not a regular file; not read"));
                if args.json {
                    json_entries.push(json!({ "path": shown, "kind": "special" }));
                }
            }
        }
    }
    if args.json {
        write_json(
            &mut out,
            &HashJson {
                entries: json_entries,
                schema: "auditai.hash/v1",
            },
        )?;
    }
    out.flush()?;
    if let Some(c) = &cache {
        // The cache only saves time; failing to write it is not an error.
        let _ = c.save();
    }
    Ok(EXIT_OK)
}
