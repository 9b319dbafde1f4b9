//! Crash-safe file writes and bounded reads of untrusted files.
//!
//! Every output is written to a temporary file in the same directory, synced, renamed into place
//! and the directory synced, so an interrupted run never leaves a file that looks complete but is
//! not; a file the user already had keeps its permission bits. Untrusted inputs are read through
//! [`read_bounded`], which never follows a final symlink, never opens a FIFO or device (it cannot
//! block on one) and stops at a size limit. Owns no file names and deletes nothing.

use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

/// The largest manifest, receipt, proof, state or policy file auditai reads (16 MiB).
pub const MAX_DOCUMENT: u64 = 16 << 20;

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Write `bytes` to `path` atomically (temp file in the same directory, fsync, rename, fsync of
/// the directory). An existing file's permission bits are kept; a new file gets 0644 before the
/// umask.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = parent_of(path);
    let mut builder = tempfile::Builder::new();
    builder.prefix(".auditai-tmp-");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // Outputs are ordinary files, not tempfile's private 0600, unless the user chose a mode.
        let mode = std::fs::symlink_metadata(path)
            .ok()
            .filter(|m| m.is_file())
            .map_or(0o644, |m| m.permissions().mode() & 0o7777);
        builder.permissions(std::fs::Permissions::from_mode(mode));
    }
    let mut tmp = builder.tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir)
}

/// Make the directory entry of `path` (a rename, a new file) durable.
pub fn sync_parent(path: &Path) -> std::io::Result<()> {
    sync_dir(parent_of(path))
}

/// Make a rename or a new directory entry in `dir` durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Append one line to `path` and sync it (for logs such as `metrics.jsonl`).
pub fn append_line(path: &Path, line: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(line.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_data()
}

/// Read a file the user named as their own input (a data file), following a link (a DVC cache,
/// a shared mount), refusing one larger than `max` bytes before reading it.
pub fn read_own(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let len = std::fs::metadata(path)?.len();
    if len > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {max} bytes"),
        ));
    }
    std::fs::read(path)
}

/// Read an untrusted regular file of at most `max` bytes.
///
/// Refuses a symlink (the final component is not followed), a FIFO, socket or device (opened
/// non-blocking and checked before a byte is read) and a file larger than `max`, each with an
/// `InvalidData` error that says which.
pub fn read_bounded(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let file = open_regular(path)?;
    let meta = file.metadata()?;
    if meta.len() > max {
        return Err(invalid(&format!(
            "is {} bytes, over the {max}-byte limit",
            meta.len()
        )));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    // The file may grow after the check: never read past the limit.
    file.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(invalid(&format!("is over the {max}-byte limit")));
    }
    Ok(bytes)
}

/// A path a document records (see [`relative_to`]), joined to `base` through [`safe_join`]:
/// an absolute path or one that climbs out of `base` is refused, never opened, so that a
/// document nobody vouches for cannot make a reader hash or read an arbitrary file.
pub fn recorded(base: &Path, name: &str) -> Result<PathBuf, PathRefused> {
    safe_join(base, name)
}

/// `path` as a document in `base_dir` records it: relative to `base_dir` (`/`-separated) when it
/// lies below it, else absolute. Both are canonicalised where they exist.
pub fn relative_to(base_dir: &Path, path: &Path) -> String {
    let canon = |p: &Path| {
        let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        std::fs::canonicalize(&abs).unwrap_or(abs)
    };
    let abs = canon(path);
    match abs.strip_prefix(canon(base_dir)) {
        Ok(rel) if !rel.as_os_str().is_empty() => rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/"),
        _ => abs.display().to_string(),
    }
}

/// Open an untrusted file for reading, streamed: refuses a symlink (not followed) and a FIFO,
/// socket or device (opened non-blocking, so it cannot hang, and checked before a byte is read).
pub fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let file = opts.open(path).map_err(|e| {
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
            invalid("is a symlink; symlinks are not followed")
        } else {
            e
        }
    })?;
    if !file.metadata()?.is_file() {
        return Err(invalid("is not a regular file"));
    }
    Ok(file)
}

fn invalid(why: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string())
}

/// Why a path named by an untrusted document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathRefused {
    /// Absolute, or with `..`, `.` or a root or prefix component, or empty.
    #[error("path `{0}` is absolute or leaves its directory; refused")]
    Escapes(String),
    /// A component on the way is a symlink (it could lead anywhere).
    #[error("path `{0}` passes through a symlink; not followed")]
    Symlink(String),
}

/// Whether `name` is a non-empty relative path of plain components only (no `..`, `.`, root,
/// prefix or backslash): the syntactic half of [`safe_join`].
pub fn is_plain_relative(name: &str) -> bool {
    !name.is_empty()
        && !name.contains('\\')
        && Path::new(name)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

/// Join `name`, a relative `/`-separated path from an untrusted document, to `base`.
///
/// Refuses absolute paths, `..` and `.` components and the empty path, and any symlink between
/// `base` and the final component (the final component is checked by the reader). The result
/// always lies inside `base`.
///
/// ```
/// use std::path::Path;
/// use auditai::fsio::safe_join;
/// let base = Path::new("/nonexistent/run");
/// assert_eq!(safe_join(base, "checkpoints/epoch-0001.bpk").unwrap(), base.join("checkpoints/epoch-0001.bpk"));
/// assert!(safe_join(base, "../../etc/passwd").is_err());
/// assert!(safe_join(base, "/etc/passwd").is_err());
/// ```
pub fn safe_join(base: &Path, name: &str) -> Result<PathBuf, PathRefused> {
    let p = Path::new(name);
    if !is_plain_relative(name) {
        return Err(PathRefused::Escapes(name.to_string()));
    }
    let mut path = base.to_path_buf();
    let mut parts = p.components().peekable();
    while let Some(c) = parts.next() {
        path.push(c);
        if parts.peek().is_some()
            && std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink())
        {
            return Err(PathRefused::Symlink(name.to_string()));
        }
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_keeps_a_users_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write_atomic(&p, b"a").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        write_atomic(&p, b"b").unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read(&p).unwrap(), b"b");
    }

    #[test]
    fn bounded_reads_refuse_fifos_symlinks_and_large_files() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string and mode.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let e = read_bounded(&fifo, 10).unwrap_err();
        assert_eq!(e.to_string(), "is not a regular file");
        let f = dir.path().join("f");
        std::fs::write(&f, b"0123456789a").unwrap();
        let e = read_bounded(&f, 10).unwrap_err();
        assert_eq!(e.to_string(), "is 11 bytes, over the 10-byte limit");
        std::os::unix::fs::symlink(&f, dir.path().join("l")).unwrap();
        let e = read_bounded(&dir.path().join("l"), 100).unwrap_err();
        assert_eq!(e.to_string(), "is a symlink; symlinks are not followed");
        assert_eq!(read_bounded(&f, 11).unwrap(), b"0123456789a");
    }

    #[test]
    fn safe_join_stays_inside() {
        let dir = tempfile::tempdir().unwrap();
        let b = dir.path();
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "./a", "a\\..\\b"] {
            assert!(safe_join(b, bad).is_err(), "{bad}");
        }
        assert_eq!(safe_join(b, "a/b").unwrap(), b.join("a/b"));
        std::os::unix::fs::symlink("/", b.join("up")).unwrap();
        assert_eq!(
            safe_join(b, "up/etc/passwd"),
            Err(PathRefused::Symlink("up/etc/passwd".into()))
        );
    }
}
