//! Packing a project directory (or an in-memory file list) into a deterministic bundle zip.
//!
//! Determinism is what makes a digest meaningful: the same tree must always give the same
//! bytes. So entries are sorted by path, every timestamp is 1980-01-01 00:00, permissions are
//! reduced to 0644 or 0755, directories get no entries of their own, and nothing from the
//! machine (owner, mtime, global git config) reaches the archive.

use std::fs;
use std::io::{self, Cursor, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use morel_core::Digest;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

use crate::extract::{Node, check_tree, normalize_name};
use crate::{BundleError, digest_of};

/// The name the manifest always has at the bundle root.
pub const MANIFEST_NAME: &str = "manifest.json";

/// Directory and file names skipped at any depth, whatever the ignore files say: version
/// control, Morel's own state, and dependency/virtualenv/bytecode folders rebuilt on deploy.
const ALWAYS_SKIPPED: &[&str] = &[
    ".git",
    ".morel",
    "node_modules",
    ".venv",
    "venv",
    "__pycache__",
];

/// The ignore file for things that belong in git but not in a deployed bundle.
const MOREL_IGNORE_FILE: &str = ".morelignore";

/// Bounds on what [`pack_dir`] will put in one bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackLimits {
    /// Files (and symlinks), the manifest included.
    pub max_files: usize,
    /// Total uncompressed bytes, the manifest included.
    pub max_bytes: u64,
}

impl Default for PackLimits {
    fn default() -> Self {
        Self {
            max_files: 20_000,
            max_bytes: 512 * 1024 * 1024,
        }
    }
}

/// A packed bundle.
#[derive(Clone)]
pub struct Packed {
    /// The zip archive.
    pub bytes: Vec<u8>,
    /// sha256 of `bytes`.
    pub digest: Digest,
    /// Entries in the archive (files and symlinks, `manifest.json` included).
    pub files: usize,
    /// Total uncompressed size of the files.
    pub uncompressed: u64,
}

impl std::fmt::Debug for Packed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packed")
            .field("bytes", &format_args!("<{} bytes>", self.bytes.len()))
            .field("digest", &self.digest)
            .field("files", &self.files)
            .field("uncompressed", &self.uncompressed)
            .finish()
    }
}

enum Content {
    Disk(PathBuf),
    Memory(Vec<u8>),
    Symlink(String),
}

struct Entry {
    /// Normalized `/`-separated path inside the bundle.
    path: String,
    executable: bool,
    content: Content,
}

/// Packs `dir` plus `manifest_json`, written as `manifest.json` at the root (replacing any
/// file of that name in `dir`).
///
/// Files are selected like git would: `.gitignore` files are honoured even outside a git
/// repository (as are those of parent directories and `.git/info/exclude`; the user's global
/// git excludes are not, so the result does not depend on the machine), plus `.morelignore`
/// files in the same syntax. `.git`, `.morel`, `node_modules`, `.venv`, `venv` and
/// `__pycache__` are always skipped; other hidden files are kept. Empty directories are not
/// recorded.
///
/// Symlinks are stored as links when their target stays inside `dir`; a link pointing
/// outside, or a FIFO, socket or device, is an error naming the path.
pub fn pack_dir(
    dir: &Path,
    manifest_json: &[u8],
    limits: &PackLimits,
) -> Result<Packed, BundleError> {
    let meta = fs::metadata(dir).map_err(|source| BundleError::ReadFile {
        path: dir.to_owned(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(BundleError::NotADirectory {
            path: dir.to_owned(),
        });
    }

    let mut walker = ignore::WalkBuilder::new(dir);
    walker
        .hidden(false)
        .ignore(false)
        .git_ignore(true)
        .git_exclude(true)
        .git_global(false)
        .require_git(false)
        .parents(true)
        .follow_links(false)
        .add_custom_ignore_filename(MOREL_IGNORE_FILE)
        .filter_entry(|entry| {
            entry.depth() == 0
                || !entry
                    .file_name()
                    .to_str()
                    .is_some_and(|name| ALWAYS_SKIPPED.contains(&name))
        });

    let mut entries = Vec::new();
    let mut total = manifest_json.len() as u64;
    for result in walker.build() {
        let entry = result.map_err(|source| BundleError::Walk {
            path: dir.to_owned(),
            source,
        })?;
        if entry.depth() == 0 {
            continue;
        }
        let path = entry.path();
        let rel = bundle_path(dir, path)?;
        if rel == MANIFEST_NAME {
            continue;
        }
        let meta = fs::symlink_metadata(path).map_err(|source| BundleError::ReadFile {
            path: path.to_owned(),
            source,
        })?;
        let file_type = meta.file_type();
        let (executable, content) = if file_type.is_dir() {
            continue;
        } else if file_type.is_file() {
            total += meta.len();
            (
                meta.permissions().mode() & 0o111 != 0,
                Content::Disk(path.to_owned()),
            )
        } else if file_type.is_symlink() {
            let target = fs::read_link(path).map_err(|source| BundleError::ReadFile {
                path: path.to_owned(),
                source,
            })?;
            let target = target.into_os_string().into_string().map_err(|_| {
                BundleError::InvalidFileName {
                    path: path.to_owned(),
                    problem: "it is a symlink whose target is not valid UTF-8".to_owned(),
                }
            })?;
            (false, Content::Symlink(target))
        } else {
            return Err(BundleError::UnsupportedFileType {
                path: path.to_owned(),
                kind: special_kind(&file_type),
            });
        };
        entries.push(Entry {
            path: rel,
            executable,
            content,
        });
        // +1 for the manifest.
        if entries.len() + 1 > limits.max_files {
            return Err(BundleError::PackTooManyFiles {
                dir: dir.to_owned(),
                limit: limits.max_files,
            });
        }
        if total > limits.max_bytes {
            return Err(BundleError::PackTooLarge {
                dir: dir.to_owned(),
                limit: limits.max_bytes,
            });
        }
    }
    entries.push(Entry {
        path: MANIFEST_NAME.to_owned(),
        executable: false,
        content: Content::Memory(manifest_json.to_vec()),
    });
    entries.sort_by(|a, b| a.path.cmp(&b.path));

    // Links are checked against the final tree with the same rules extraction applies, so
    // whatever packs also extracts.
    check_entries(&entries).map_err(|e| match e {
        BundleError::SymlinkOutside { entry, target } => BundleError::SymlinkOutsideProject {
            path: dir.join(entry),
            target,
        },
        other => other,
    })?;

    let packed = write_archive(entries, Some((dir, limits.max_bytes)))?;
    tracing::debug!(dir = %dir.display(), digest = %packed.digest, files = packed.files, bytes = packed.uncompressed, "packed bundle");
    Ok(packed)
}

/// Packs an in-memory list of `(path, bytes, executable)` plus `manifest_json`; used by the
/// server to re-pack uploaded zips. Any `manifest.json` in `files` is replaced. Paths are
/// checked like archive entry names, and must be unique.
pub fn pack_files(
    files: Vec<(String, Vec<u8>, bool)>,
    manifest_json: &[u8],
) -> Result<Packed, BundleError> {
    let mut entries = Vec::with_capacity(files.len() + 1);
    for (name, bytes, executable) in files {
        let (components, _) =
            normalize_name(&name).map_err(|problem| BundleError::UnsafeEntryName {
                entry: name.clone(),
                problem,
            })?;
        if components.is_empty() {
            return Err(BundleError::UnsafeEntryName {
                entry: name,
                problem: crate::NameProblem::Empty,
            });
        }
        let path = components.join("/");
        if path == MANIFEST_NAME {
            continue;
        }
        entries.push(Entry {
            path,
            executable,
            content: Content::Memory(bytes),
        });
    }
    entries.push(Entry {
        path: MANIFEST_NAME.to_owned(),
        executable: false,
        content: Content::Memory(manifest_json.to_vec()),
    });
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    check_entries(&entries)?;
    write_archive(entries, None)
}

fn check_entries(entries: &[Entry]) -> Result<(), BundleError> {
    let nodes: Vec<(&str, &str, Node<'_>)> = entries
        .iter()
        .map(|e| {
            let node = match &e.content {
                Content::Symlink(target) => Node::Symlink(target),
                Content::Disk(_) | Content::Memory(_) => Node::File,
            };
            (e.path.as_str(), e.path.as_str(), node)
        })
        .collect();
    check_tree(&nodes)
}

/// The `/`-separated path of `path` relative to `dir`, refusing names extraction would refuse.
fn bundle_path(dir: &Path, path: &Path) -> Result<String, BundleError> {
    let invalid = |problem: String| BundleError::InvalidFileName {
        path: path.to_owned(),
        problem,
    };
    let rel = path
        .strip_prefix(dir)
        .map_err(|_| invalid("it is not inside the project directory".to_owned()))?;
    let mut parts = Vec::new();
    for component in rel.components() {
        let part = component
            .as_os_str()
            .to_str()
            .ok_or_else(|| invalid("its name is not valid UTF-8".to_owned()))?;
        parts.push(part);
    }
    let joined = parts.join("/");
    normalize_name(&joined).map_err(|problem| invalid(format!("its name {problem}")))?;
    Ok(joined)
}

fn special_kind(file_type: &fs::FileType) -> &'static str {
    if file_type.is_fifo() {
        "a named pipe (FIFO)"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else {
        "of an unknown file type"
    }
}

/// Writes sorted entries. `disk_limit` re-checks the byte limit while reading from disk, since
/// a file may grow between listing and reading.
fn write_archive(
    entries: Vec<Entry>,
    disk_limit: Option<(&Path, u64)>,
) -> Result<Packed, BundleError> {
    let zip_error = |source| BundleError::ZipWrite { source };
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    let base = SimpleFileOptions::default()
        .last_modified_time(DateTime::default())
        .compression_method(CompressionMethod::Deflated);
    let mut uncompressed = 0u64;
    let files = entries.len();
    for entry in entries {
        let mode = if entry.executable { 0o755 } else { 0o644 };
        match entry.content {
            Content::Symlink(target) => {
                zip.add_symlink(entry.path, target, base.unix_permissions(0o777))
                    .map_err(zip_error)?;
            }
            Content::Memory(bytes) => {
                let options = base
                    .unix_permissions(mode)
                    .large_file(bytes.len() as u64 >= u64::from(u32::MAX));
                zip.start_file(entry.path, options).map_err(zip_error)?;
                zip.write_all(&bytes)
                    .map_err(|e| zip_error(zip::result::ZipError::Io(e)))?;
                uncompressed += bytes.len() as u64;
            }
            Content::Disk(path) => {
                let read_error = |source| BundleError::ReadFile {
                    path: path.clone(),
                    source,
                };
                let mut file = fs::File::open(&path).map_err(read_error)?;
                let len = file.metadata().map_err(read_error)?.len();
                let options = base
                    .unix_permissions(mode)
                    .large_file(len >= u64::from(u32::MAX));
                zip.start_file(entry.path, options).map_err(zip_error)?;
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match file.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(read_error(e)),
                    };
                    uncompressed += n as u64;
                    if let Some((dir, limit)) = disk_limit
                        && uncompressed > limit
                    {
                        return Err(BundleError::PackTooLarge {
                            dir: dir.to_owned(),
                            limit,
                        });
                    }
                    zip.write_all(&buf[..n])
                        .map_err(|e| zip_error(zip::result::ZipError::Io(e)))?;
                }
            }
        }
    }
    let bytes = zip.finish().map_err(zip_error)?.into_inner();
    Ok(Packed {
        digest: digest_of(&bytes),
        bytes,
        files,
        uncompressed,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // panicking is how a test fails
mod tests {
    use super::*;
    use crate::ExtractLimits;

    #[test]
    fn pack_files_is_sorted_deterministic_and_replaces_the_manifest() {
        let files = vec![
            ("z.txt".to_owned(), b"z".to_vec(), false),
            ("bin/run".to_owned(), b"#!/bin/sh\n".to_vec(), true),
            (
                "manifest.json".to_owned(),
                b"{\"old\":true}".to_vec(),
                false,
            ),
        ];
        let mut reversed = files.clone();
        reversed.reverse();
        let a = pack_files(files, b"{}").unwrap();
        let b = pack_files(reversed, b"{}").unwrap();
        assert_eq!(a.digest, b.digest);
        assert_eq!(a.bytes, b.bytes);
        assert_eq!(a.files, 3);
        assert_eq!(a.uncompressed, 1 + 10 + 2);

        let archive = zip::ZipArchive::new(Cursor::new(&a.bytes)).unwrap();
        let names: Vec<&str> = archive.file_names().collect();
        assert_eq!(names, ["bin/run", "manifest.json", "z.txt"]);
        assert_eq!(
            crate::read_entry(&a.bytes, MANIFEST_NAME, 100).unwrap(),
            b"{}"
        );
        let read = crate::read_untrusted_zip(&a.bytes, &ExtractLimits::default()).unwrap();
        assert!(read.contains(&("bin/run".to_owned(), b"#!/bin/sh\n".to_vec(), true)));
        assert!(read.contains(&("z.txt".to_owned(), b"z".to_vec(), false)));
    }

    #[test]
    fn pack_files_rejects_unsafe_and_duplicate_paths() {
        let err = pack_files(vec![("../x".into(), vec![], false)], b"{}").unwrap_err();
        assert!(matches!(
            err,
            BundleError::UnsafeEntryName {
                problem: crate::NameProblem::Escapes,
                ..
            }
        ));
        let dup = vec![("a".into(), vec![], false), ("./a".into(), vec![], false)];
        assert!(matches!(
            pack_files(dup, b"{}"),
            Err(BundleError::DuplicateEntry { .. })
        ));
        let conflict = vec![("a".into(), vec![], false), ("a/b".into(), vec![], false)];
        assert!(matches!(
            pack_files(conflict, b"{}"),
            Err(BundleError::EntryUnderFile { .. })
        ));
    }

    #[test]
    fn entries_carry_fixed_time_and_normalized_modes() {
        let packed = pack_files(vec![("run".into(), vec![1], true)], b"{}").unwrap();
        let mut archive = zip::ZipArchive::new(Cursor::new(&packed.bytes)).unwrap();
        for i in 0..archive.len() {
            let entry = archive.by_index(i).unwrap();
            let time = entry.last_modified().unwrap();
            assert_eq!((time.year(), time.month(), time.day()), (1980, 1, 1));
            let expected = if entry.name() == "run" {
                0o100755
            } else {
                0o100644
            };
            assert_eq!(entry.unix_mode(), Some(expected), "{}", entry.name());
            assert_eq!(entry.compression(), CompressionMethod::Deflated);
        }
    }
}
