use super::*;

fn write(dir: &Path, rel: &str, bytes: &[u8]) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

#[test]
fn file_digests_match_reference_values() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "abc", b"abc");
    let d = Hasher::new(None, true)
        .hash_file(&dir.path().join("abc"))
        .unwrap();
    assert_eq!(d.size, 3);
    assert_eq!(
        d.blake3.hex(),
        "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
    );
    assert_eq!(
        d.sha256.unwrap().hex(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn large_files_take_the_parallel_path_and_agree() {
    let dir = tempfile::tempdir().unwrap();
    let bytes: Vec<u8> = (0..3 * MMAP_THRESHOLD as usize)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    write(dir.path(), "big", &bytes);
    let d = Hasher::new(None, true)
        .hash_file(&dir.path().join("big"))
        .unwrap();
    assert_eq!(d, bytes_digest(&bytes));
}

#[test]
fn tree_digest_changes_on_add_remove_rename_and_edit() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "a.txt", b"one");
    write(root, "sub/b.txt", b"two");
    let h = Hasher::new(None, false);
    let base = h.hash_tree(root).unwrap();
    assert_eq!(
        base.entries.iter().map(TreeEntry::path).collect::<Vec<_>>(),
        vec!["a.txt", "sub/b.txt"]
    );
    let mut seen = vec![base.blake3];
    write(root, "sub/c.txt", b"");
    seen.push(h.hash_tree(root).unwrap().blake3);
    std::fs::remove_file(root.join("sub/c.txt")).unwrap();
    assert_eq!(h.hash_tree(root).unwrap().blake3, base.blake3);
    std::fs::rename(root.join("a.txt"), root.join("a2.txt")).unwrap();
    seen.push(h.hash_tree(root).unwrap().blake3);
    std::fs::rename(root.join("a2.txt"), root.join("a.txt")).unwrap();
    write(root, "a.txt", b"onE");
    seen.push(h.hash_tree(root).unwrap().blake3);
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "{seen:?}");
}

#[cfg(unix)]
#[test]
fn symlinks_are_recorded_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "real", b"x");
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link")).unwrap();
    let t = Hasher::new(None, false).hash_tree(dir.path()).unwrap();
    assert_eq!(
        t.entries[0],
        TreeEntry::Symlink {
            path: "link".into(),
            target: "/etc/passwd".into()
        }
    );
}

#[test]
fn stat_cache_serves_unchanged_files_and_rereads_changed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    let size = MMAP_THRESHOLD as usize;
    std::fs::write(&file, vec![b'a'; size]).unwrap();
    let cache_file = dir.path().join("cache.json");
    let cache = StatCache::open(cache_file.clone());
    let first = Hasher::new(Some(&cache), false).hash_file(&file).unwrap();
    cache.save().unwrap();

    // A poisoned entry with the right stat proves the cache is consulted.
    let reopened = StatCache::open(cache_file.clone());
    let meta = std::fs::metadata(&file).unwrap();
    let key = reopened.key(&file, &meta).unwrap();
    let mut fake = first.clone();
    fake.blake3 = Digest([9; 32]);
    reopened.put(key, fake.clone());
    assert_eq!(
        Hasher::new(Some(&reopened), false)
            .hash_file(&file)
            .unwrap(),
        fake
    );

    // Same size, mtime restored: the ctime still moves, so the file is re-read.
    let mtime = meta.modified().unwrap();
    std::fs::write(&file, b"bbbb").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let again = Hasher::new(Some(&reopened), false)
        .hash_file(&file)
        .unwrap();
    assert_eq!(again.blake3.hex(), blake3::hash(b"bbbb").to_hex().as_str());
}
