//! The disk cache of precompiled modules.

use std::fs;
use std::path::{Path, PathBuf};

use crate::{ECHO, call, core_guest, engine, load};

fn cached_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn a_restart_does_not_recompile() {
    let dir = tempfile::tempdir().unwrap();
    let wat = core_guest(ECHO, "");

    let first = engine(dir.path());
    let module = load(&first, &wat);
    assert_eq!(first.compiled_count(), 1);
    let files = cached_files(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_str().unwrap().to_owned();
    assert!(name.starts_with(module.digest()), "{name}");
    assert!(name.ends_with(".cwasm"), "{name}");
    // Loading again in the same engine also hits the cache.
    load(&first, &wat);
    assert_eq!(first.compiled_count(), 1);
    drop(first);

    let second = engine(dir.path());
    let module = load(&second, &wat);
    assert_eq!(second.compiled_count(), 0);
    assert_eq!(
        call(&second, &module, r#"{"a":1}"#).await.unwrap(),
        r#"{"a":1}"#
    );
}

#[tokio::test]
async fn corrupt_cache_files_are_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    let wat = core_guest(ECHO, "");
    load(&engine(dir.path()), &wat);
    let path = cached_files(dir.path()).pop().unwrap();
    let intact = fs::read(&path).unwrap();

    // A flipped byte in the middle (the code), a truncated file, and garbage.
    let mut flipped = intact.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0xff;
    let damaged = [
        flipped,
        intact[..intact.len() / 3].to_vec(),
        b"garbage".to_vec(),
    ];
    for bytes in damaged {
        fs::write(&path, bytes).unwrap();
        let engine = engine(dir.path());
        let module = load(&engine, &wat);
        assert_eq!(engine.compiled_count(), 1);
        assert_eq!(call(&engine, &module, "[1]").await.unwrap(), "[1]");
        // The file was replaced by a good one.
        assert_eq!(fs::read(&path).unwrap().len(), intact.len());
    }

    let engine = engine(dir.path());
    load(&engine, &wat);
    assert_eq!(engine.compiled_count(), 0);
}

#[tokio::test]
async fn an_unwritable_cache_still_loads() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    // Make the cache path for writes a directory so the rename fails.
    let wat = core_guest(ECHO, "");
    let digest = engine.load(wat.as_bytes()).unwrap().digest().to_owned();
    let path = cached_files(dir.path()).pop().unwrap();
    fs::remove_file(&path).unwrap();
    fs::create_dir(&path).unwrap();
    let fresh = crate::engine(dir.path());
    let module = load(&fresh, &wat);
    assert_eq!(module.digest(), digest);
    assert_eq!(fresh.compiled_count(), 1);
    assert_eq!(call(&fresh, &module, "2").await.unwrap(), "2");
}
