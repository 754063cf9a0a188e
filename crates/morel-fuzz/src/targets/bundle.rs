//! Bundles and uploads: zips extracted to disk (`extract`) or read in memory
//! (`read_untrusted_zip`, `read_entry`), all in morel-bundle's `extract.rs`.

use std::cell::RefCell;
use std::collections::{HashSet, VecDeque};
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use morel_bundle::{BundleError, ExtractLimits, extract, read_entry, read_untrusted_zip};

use crate::Sig;

pub(crate) const TOKENS: &[&[u8]] = &[
    b"PK\x03\x04",
    b"PK\x01\x02",
    b"PK\x05\x06",
    b"PK\x06\x06",
    b"PK\x06\x07",
    b"PK\x07\x08",
    b"manifest.json",
    b"__MACOSX/",
    b"../",
    b"..",
    b"./",
    b"/etc/passwd",
    b"a/../b",
    b"\\",
    b"C:",
    b"\xa4\x81\x00\x00",
    b"\xff\xa1\x00\x00",
    b"\xed\x41\x00\x00",
    b"\xb6\x11\x00\x00",
    b"\x14\x00",
    b"\x3f\x03",
    b"\x00\x00\x00\x00\x00\x00\x00\x00",
];

/// The most read from `manifest.json` (deploy.rs's `read_manifest`).
const MANIFEST_MAX: u64 = 4 << 20;
/// Symlinks followed while checking where one leads, as the kernel's limit.
const MAX_HOPS: usize = 40;

thread_local! {
    /// A scratch directory per thread, empty between inputs.
    static SCRATCH: RefCell<Option<tempfile::TempDir>> = const { RefCell::new(None) };
}

fn error_kind(e: &BundleError) -> String {
    let debug = format!("{e:?}");
    let variant: String = debug
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    // The zip library's own error says which part of the archive was wrong.
    let source = match e {
        BundleError::InvalidArchive { source } | BundleError::CorruptEntry { source, .. } => {
            crate::sig::message_class(&source.to_string())
        }
        _ => String::new(),
    };
    format!("{variant} {source}")
}

/// Extracts `data` into a fresh destination under a scratch directory with the default
/// limits. After an error nothing may be left in the scratch directory (no destination, no
/// partial sibling); after success only the destination, holding exactly the files and bytes
/// `extract` counted, only directories, regular files and symlinks, with the modes extraction
/// sets, and no symlink that leads out of the destination (resolved on disk, following links).
pub(crate) fn bundle_extract(data: &[u8]) -> u64 {
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        if s.is_none() {
            *s = Some(tempfile::tempdir().expect("a scratch directory"));
        }
        let root = s.as_ref().map(|d| d.path().to_owned()).unwrap_or_default();
        let sig = extract_into(&root, data);
        // Leave the scratch directory empty for the next input, whatever happened.
        for entry in fs::read_dir(&root).into_iter().flatten().flatten() {
            let path = entry.path();
            let _ = fs::remove_dir_all(&path).or_else(|_| fs::remove_file(&path));
        }
        sig
    })
}

fn extract_into(root: &Path, data: &[u8]) -> u64 {
    let dest = root.join("dest");
    let result = extract(data, &dest, &ExtractLimits::default());
    let left: Vec<OsString> = fs::read_dir(root)
        .expect("the scratch directory")
        .map(|e| e.expect("a scratch entry").file_name())
        .collect();
    match result {
        Err(e) => {
            assert!(
                left.is_empty(),
                "after an error ({e}) these were left: {left:?}"
            );
            Sig::new("extract refused").str(&error_kind(&e)).done()
        }
        Ok(extracted) => {
            assert_eq!(
                left,
                [OsString::from("dest")],
                "only the destination is written"
            );
            let tree = walk(&dest);
            assert_eq!(
                tree.files + tree.links,
                extracted.files,
                "files and links written"
            );
            assert_eq!(tree.bytes, extracted.bytes, "bytes written");
            for link in &tree.link_paths {
                if let Err(why) = resolve_inside(&dest, link) {
                    panic!(
                        "symlink {} leads out of the destination: {why}",
                        link.display()
                    );
                }
            }
            Sig::new("extracted")
                .size(tree.files)
                .size(tree.dirs)
                .size(tree.links)
                .flag(tree.executables > 0)
                .done()
        }
    }
}

#[derive(Default)]
struct Tree {
    files: usize,
    dirs: usize,
    links: usize,
    executables: usize,
    bytes: u64,
    link_paths: Vec<PathBuf>,
}

/// Everything under `dir`, checked for kinds and modes.
fn walk(dir: &Path) -> Tree {
    let mut tree = Tree::default();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in fs::read_dir(&d).expect("an extracted directory") {
            let path = entry.expect("an extracted entry").path();
            let meta = fs::symlink_metadata(&path).expect("an extracted entry's metadata");
            let ft = meta.file_type();
            let mode = meta.permissions().mode() & 0o7777;
            if ft.is_symlink() {
                tree.links += 1;
                tree.link_paths.push(path);
            } else if ft.is_dir() {
                assert_eq!(mode, 0o755, "directory mode of {}", path.display());
                tree.dirs += 1;
                todo.push(path);
            } else if ft.is_file() {
                assert!(
                    mode == 0o644 || mode == 0o755,
                    "file mode {mode:o} of {}",
                    path.display()
                );
                tree.files += 1;
                tree.executables += usize::from(mode == 0o755);
                tree.bytes += meta.len();
            } else {
                let kind = if ft.is_fifo() {
                    "a FIFO"
                } else if ft.is_socket() {
                    "a socket"
                } else {
                    "a device"
                };
                panic!("{} is {kind}", path.display());
            }
        }
    }
    tree
}

/// Follows the symlink at `link` on disk, component by component and through other links,
/// and fails if it climbs above `root` or names an absolute path. Below a name that does not
/// exist the path is followed by its spelling (`missing/../..` climbs one level above where
/// `missing` would be), as the bundle's own check does; a chain longer than the kernel's
/// limit ends the walk (the kernel refuses it with ELOOP).
fn resolve_inside(root: &Path, link: &Path) -> Result<(), String> {
    let rel = link.strip_prefix(root).map_err(|e| e.to_string())?;
    // Where the walk is: existing components under the root, then `extra` missing levels.
    let mut at: Vec<OsString> = rel.components().map(|c| c.as_os_str().to_owned()).collect();
    // A relative target starts from the link's own directory.
    at.pop();
    let mut extra = 0usize;
    let mut queue: VecDeque<OsString> = target_of(link)?.into();
    let mut hops = 0usize;
    while let Some(c) = queue.pop_front() {
        if c == "." || c.is_empty() {
            continue;
        }
        if c == ".." {
            if extra > 0 {
                extra -= 1;
            } else if at.pop().is_none() {
                return Err("it climbs above the destination".to_owned());
            }
            continue;
        }
        if extra > 0 {
            extra += 1;
            continue;
        }
        at.push(c);
        let here: PathBuf = at.iter().fold(root.to_owned(), |p, c| p.join(c));
        match fs::symlink_metadata(&here) {
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                if hops > MAX_HOPS {
                    return Ok(());
                }
                at.pop();
                for c in target_of(&here)?.into_iter().rev() {
                    queue.push_front(c);
                }
            }
            Ok(_) => {}
            Err(_) => {
                at.pop();
                extra = 1;
            }
        }
    }
    Ok(())
}

/// A symlink's target as components; an absolute one is an escape.
fn target_of(link: &Path) -> Result<Vec<OsString>, String> {
    let target = fs::read_link(link).map_err(|e| e.to_string())?;
    if target.is_absolute() {
        return Err(format!(
            "{} points at the absolute path {}",
            link.display(),
            target.display()
        ));
    }
    Ok(target
        .components()
        .map(|c| match c {
            Component::CurDir => OsString::from("."),
            Component::ParentDir => OsString::from(".."),
            other => other.as_os_str().to_owned(),
        })
        .collect())
}

/// An upload read in memory: every path it yields must be a plain relative path (no empty,
/// `.` or `..` component, no backslash, no NUL), each once, none
/// inside another file, so writing them under a directory stays inside it. The same bytes as
/// a bundle's `manifest.json` are read within the deploy's 4 MiB limit and parsed.
pub(crate) fn upload_zip(data: &[u8]) -> u64 {
    let mut sig = Sig::new("upload");
    match read_untrusted_zip(data, &ExtractLimits::default()) {
        Err(e) => sig = sig.str("refused").str(&error_kind(&e)),
        Ok(files) => {
            let mut seen = HashSet::new();
            for (path, _, _) in &files {
                assert!(!path.is_empty(), "an empty path in {files:?}");
                assert!(
                    !path.contains(['\\', '\0']),
                    "a backslash or NUL in {path:?}"
                );
                for c in path.split('/') {
                    assert!(!matches!(c, "" | "." | ".."), "component {c:?} in {path:?}");
                }
                assert!(seen.insert(path.as_str()), "{path:?} twice");
            }
            for (path, _, _) in &files {
                let mut prefix = path.as_str();
                while let Some((parent, _)) = prefix.rsplit_once('/') {
                    assert!(!seen.contains(parent), "{path:?} is inside file {parent:?}");
                    prefix = parent;
                }
            }
            let executables = files.iter().filter(|f| f.2).count();
            sig = sig
                .str("read")
                .size(files.len())
                .flag(executables > 0)
                .flag(files.iter().any(|f| f.0.contains('/')));
        }
    }
    match read_entry(data, morel_manifest::MANIFEST_FILE, MANIFEST_MAX) {
        Err(e) => sig = sig.str(&error_kind(&e)),
        Ok(bytes) => {
            assert!(
                bytes.len() as u64 <= MANIFEST_MAX,
                "manifest.json past its limit"
            );
            sig = sig
                .str("manifest")
                .flag(morel_manifest::Manifest::from_json(&bytes).is_ok());
        }
    }
    sig.done()
}
