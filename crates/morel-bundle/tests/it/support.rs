//! Helpers to build project trees and to craft zips the zip library would refuse to write.

use std::fs;
use std::io::{Cursor, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use zip::ZipWriter;
use zip::write::SimpleFileOptions;

pub type Writer = ZipWriter<Cursor<Vec<u8>>>;

pub fn opts() -> SimpleFileOptions {
    SimpleFileOptions::default()
}

/// Builds a zip with the given closure.
pub fn zip_with(build: impl FnOnce(&mut Writer)) -> Vec<u8> {
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    build(&mut zip);
    zip.finish().unwrap().into_inner()
}

pub fn add_file(zip: &mut Writer, name: &str, content: &[u8]) {
    zip.start_file(name, opts()).unwrap();
    zip.write_all(content).unwrap();
}

fn read_u16(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_le_bytes([b[at], b[at + 1]]))
}

fn read_u32(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize
}

/// Calls `patch` with the offsets of the central and local headers of entry `name`.
fn patch_entry(bytes: &mut [u8], name: &str, mut patch: impl FnMut(&mut [u8], usize, usize)) {
    let eocd = bytes
        .windows(4)
        .rposition(|w| w == [0x50, 0x4b, 0x05, 0x06])
        .expect("end of central directory");
    let entries = read_u16(bytes, eocd + 10);
    let mut pos = read_u32(bytes, eocd + 16);
    for _ in 0..entries {
        assert_eq!(&bytes[pos..pos + 4], [0x50, 0x4b, 0x01, 0x02]);
        let name_len = read_u16(bytes, pos + 28);
        let next = pos + 46 + name_len + read_u16(bytes, pos + 30) + read_u16(bytes, pos + 32);
        if &bytes[pos + 46..pos + 46 + name_len] == name.as_bytes() {
            let local = read_u32(bytes, pos + 42);
            patch(bytes, pos, local);
            return;
        }
        pos = next;
    }
    panic!("no entry {name:?}");
}

/// Rewrites the Unix mode (file type and permissions) stored for `name`.
pub fn set_unix_mode(bytes: &mut [u8], name: &str, mode: u32) {
    patch_entry(bytes, name, |b, central, _| {
        b[central + 5] = 3; // "version made by" host system: Unix
        b[central + 38..central + 42].copy_from_slice(&(mode << 16).to_le_bytes());
    });
}

/// Makes the headers of `name` lie about its uncompressed size.
pub fn set_uncompressed_size(bytes: &mut [u8], name: &str, size: u32) {
    patch_entry(bytes, name, |b, central, local| {
        b[central + 24..central + 28].copy_from_slice(&size.to_le_bytes());
        b[local + 22..local + 26].copy_from_slice(&size.to_le_bytes());
    });
}

/// Replaces every occurrence of `from` with `to` (same length), e.g. to duplicate a name.
pub fn replace_bytes(bytes: &mut [u8], from: &[u8], to: &[u8]) {
    assert_eq!(from.len(), to.len());
    let mut found = 0;
    for i in 0..=bytes.len() - from.len() {
        if &bytes[i..i + from.len()] == from {
            bytes[i..i + from.len()].copy_from_slice(to);
            found += 1;
        }
    }
    assert!(found > 0, "pattern not found");
}

/// A scratch area: `dest` is `<tmp>/root/out`; after a failed extraction, `root` must still
/// be empty and `<tmp>` must hold only `root`.
pub struct Sandbox {
    pub tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub dest: PathBuf,
}

impl Sandbox {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        fs::create_dir(&root).unwrap();
        let dest = root.join("out");
        Self { tmp, root, dest }
    }

    /// Nothing was created: not `dest`, not a temporary sibling, nothing outside.
    pub fn assert_untouched(&self) {
        assert!(!self.dest.exists(), "dest exists after a failed extraction");
        assert_eq!(
            listing(&self.root),
            Vec::<String>::new(),
            "left behind in root"
        );
        assert_eq!(
            listing(self.tmp.path()),
            ["root"],
            "left behind next to root"
        );
    }
}

pub fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Writes `files` (path, content) under `dir`, creating parents.
pub fn write_tree(dir: &Path, files: &[(&str, &str)]) {
    for (path, content) in files {
        let path = dir.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }
}

pub fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

pub fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
}
