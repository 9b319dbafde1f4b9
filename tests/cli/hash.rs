//! `auditai hash`: b3sum-compatible lines, directory digests, JSON, and the stat cache.

use crate::support::Workspace;

#[test]
fn file_lines_match_b3sum_format() {
    let ws = Workspace::new();
    std::fs::write(ws.path().join("a.txt"), b"abc").unwrap();
    std::fs::write(ws.path().join("b.txt"), b"").unwrap();
    let out = ws.run(&["hash", "a.txt", "b.txt"]).success();
    assert_eq!(
        out.stdout,
        format!(
            "{}  a.txt\n{}  b.txt\n",
            blake3::hash(b"abc").to_hex(),
            blake3::hash(b"").to_hex()
        )
    );
    assert_eq!(out.stderr, "");
}

#[test]
fn directory_digest_changes_when_a_file_is_added_and_symlinks_are_reported() {
    let ws = Workspace::new();
    std::fs::create_dir_all(ws.path().join("d/sub")).unwrap();
    std::fs::write(ws.path().join("d/x"), b"1").unwrap();
    std::fs::write(ws.path().join("d/sub/y"), b"2").unwrap();
    let first = ws.run(&["hash", "d"]).success().stdout;
    assert!(first.ends_with("  d/\n"), "{first}");
    std::fs::write(ws.path().join("d/sub/z"), b"").unwrap();
    let second = ws.run(&["hash", "d"]).success().stdout;
    assert_ne!(first, second);
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink("x", ws.path().join("d/link")).unwrap();
        let out = ws.run(&["hash", "d"]).success_with_stderr();
        assert_eq!(
            out.stderr,
            "notice: d/link is a symlink to x; recorded, not followed\n"
        );
        assert_ne!(out.stdout, second);
    }
    let v = ws
        .run(&["hash", "d", "--json", "--sha256"])
        .success_with_stderr()
        .json();
    let entries = v["entries"][0]["entries"].as_array().unwrap();
    let paths: Vec<&str> = entries
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    let expected: &[&str] = if cfg!(unix) {
        &["link", "sub/y", "sub/z", "x"]
    } else {
        &["sub/y", "sub/z", "x"]
    };
    assert_eq!(paths, expected);
    let x = entries.iter().find(|e| e["path"] == "x").unwrap();
    assert_eq!(x["blake3"], blake3::hash(b"1").to_hex().as_str());
    assert_eq!(x["size"], 1);
}

#[test]
fn missing_paths_are_an_error() {
    let ws = Workspace::new();
    let out = ws.run(&["hash", "nope"]);
    assert_eq!(out.code, 2);
    assert_eq!(
        out.stderr,
        "error: nope: No such file or directory (os error 2)\n"
    );
}

#[test]
fn a_changed_file_is_re_read_despite_the_cache() {
    let ws = Workspace::new();
    let f = ws.path().join("f");
    let size = 2 << 20; // cached files are at least 1 MiB
    std::fs::write(&f, vec![b'a'; size]).unwrap();
    let mtime = std::fs::metadata(&f).unwrap().modified().unwrap();
    let first = ws.run(&["hash", "f"]).success().stdout;
    assert!(ws.path().join(".cache/hash-cache-v1.json").is_file());
    // Same size, same mtime, different content.
    std::fs::write(&f, vec![b'b'; size]).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let second = ws.run(&["hash", "f"]).success().stdout;
    assert_eq!(
        second,
        format!("{}  f\n", blake3::hash(&vec![b'b'; size]).to_hex())
    );
    assert_ne!(first, second);
    let uncached = ws.run(&["hash", "--no-cache", "f"]).success().stdout;
    assert_eq!(uncached, second);
}
