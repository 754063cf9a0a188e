//! Safe reading and extraction of bundle archives.
//!
//! Every archive goes through [`plan`] first: one pass over the central directory that checks
//! every entry name, type, declared size, symlink target and the shape of the tree, before a
//! single byte is written. Only then are contents streamed out, with sizes counted as they are
//! decompressed (the sizes in the zip headers are attacker-controlled and never trusted).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs;
use std::io::{self, Cursor, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use zip::ZipArchive;
use zip::result::ZipError;

use crate::{BundleError, NameProblem};

/// Longest symlink target accepted, matching Linux's PATH_MAX.
const MAX_LINK_TARGET: u64 = 4096;
/// Symlinks followed while resolving one link, matching Linux's limit before ELOOP.
const MAX_LINK_HOPS: usize = 40;

const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;
const S_IFDIR: u32 = 0o040000;
const S_IFLNK: u32 = 0o120000;
const S_IFIFO: u32 = 0o010000;
const S_IFCHR: u32 = 0o020000;
const S_IFBLK: u32 = 0o060000;
const S_IFSOCK: u32 = 0o140000;

/// Bounds on what an archive may expand to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtractLimits {
    /// Entries in the archive, directories included.
    pub max_files: usize,
    /// Total uncompressed bytes of all files.
    pub max_bytes: u64,
    /// Uncompressed bytes of any single file.
    pub max_file_bytes: u64,
}

impl Default for ExtractLimits {
    fn default() -> Self {
        Self {
            max_files: 20_000,
            max_bytes: 512 * 1024 * 1024,
            max_file_bytes: 256 * 1024 * 1024,
        }
    }
}

/// What [`extract`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extracted {
    /// Regular files and symlinks written.
    pub files: usize,
    /// Bytes of regular file content written.
    pub bytes: u64,
}

/// Reads one file out of a bundle zip (e.g. `manifest.json`), refusing more than `max` bytes.
pub fn read_entry(bytes: &[u8], name: &str, max: u64) -> Result<Vec<u8>, BundleError> {
    let mut archive = open(bytes)?;
    // With duplicate names, which copy `by_name` returns is an accident of the zip library;
    // refuse instead of guessing.
    check_unique_names(bytes, &archive)?;
    let mut entry = match archive.by_name(name) {
        Ok(entry) => entry,
        Err(ZipError::FileNotFound) => {
            return Err(BundleError::MissingEntry {
                name: name.to_owned(),
            });
        }
        Err(source) => {
            return Err(BundleError::CorruptEntry {
                entry: name.to_owned(),
                source,
            });
        }
    };
    if entry.is_dir() || entry.is_symlink() || entry.encrypted() {
        return Err(BundleError::NotAFile {
            entry: name.to_owned(),
        });
    }
    let mut out = Vec::new();
    let mut budget = Budget {
        max_file: max,
        max_total: u64::MAX,
        total: 0,
    };
    budget.copy(&mut entry, &mut out, name, Path::new(name))?;
    Ok(out)
}

/// Extracts an (already verified) bundle into `dest`, which must be absent or an empty
/// directory.
///
/// The whole archive is validated before anything is written; contents go into a temporary
/// sibling of `dest` that is renamed into place on success and removed on failure, so after
/// an error neither `dest` nor anything else exists. Symlinks are created last, and files are
/// created with `O_EXCL`, so no write ever goes through a link from the same archive.
pub fn extract(
    bytes: &[u8],
    dest: &Path,
    limits: &ExtractLimits,
) -> Result<Extracted, BundleError> {
    let mut archive = open(bytes)?;
    let planned = plan(bytes, &mut archive, limits)?;

    let name = dest.file_name().ok_or(BundleError::BadDestination {
        path: dest.to_owned(),
        reason: "the path has no final component",
    })?;
    match fs::symlink_metadata(dest) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => return Err(extract_io("inspect", dest, source)),
        Ok(meta) if !meta.is_dir() => {
            return Err(BundleError::BadDestination {
                path: dest.to_owned(),
                reason: "it exists and is not a directory",
            });
        }
        Ok(_) => {
            let mut listing = fs::read_dir(dest).map_err(|e| extract_io("list", dest, e))?;
            if listing.next().is_some() {
                return Err(BundleError::BadDestination {
                    path: dest.to_owned(),
                    reason: "the directory is not empty",
                });
            }
        }
    }
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::create_dir_all(parent).map_err(|e| extract_io("create", parent, e))?;

    let mut suffix = [0u8; 8];
    getrandom::fill(&mut suffix).map_err(|source| BundleError::Random { source })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".partial-{}", hex::encode(suffix)));
    let tmp = parent.join(tmp_name);
    fs::DirBuilder::new()
        .mode(0o755)
        .create(&tmp)
        .map_err(|e| extract_io("create", &tmp, e))?;

    let result = write_entries(&mut archive, &planned, &tmp, limits).and_then(|extracted| {
        fs::rename(&tmp, dest).map_err(|e| extract_io("move into place", dest, e))?;
        Ok(extracted)
    });
    if result.is_err()
        && let Err(e) = fs::remove_dir_all(&tmp)
    {
        tracing::warn!(path = %tmp.display(), error = %e, "could not remove a partial extraction");
    }
    if let Ok(extracted) = &result {
        tracing::debug!(dest = %dest.display(), files = extracted.files, bytes = extracted.bytes, "extracted bundle");
    }
    result
}

/// Reads a user-uploaded (unsigned, untrusted) zip into `(path, bytes, executable)` triples,
/// with the same checks as [`extract`].
///
/// Directory entries are dropped (they are implied by the files), as is macOS's `__MACOSX/`
/// metadata folder. When every entry lives under one top-level directory (a zip made with
/// `zip -r dir`), that directory is stripped. Symlinks are refused: the result has no way to
/// express them.
pub fn read_untrusted_zip(
    bytes: &[u8],
    limits: &ExtractLimits,
) -> Result<Vec<(String, Vec<u8>, bool)>, BundleError> {
    let mut archive = open(bytes)?;
    let planned = plan(bytes, &mut archive, limits)?;
    if let Some(link) = planned
        .iter()
        .find(|p| matches!(p.kind, Kind::Symlink { .. }))
    {
        return Err(BundleError::SymlinkNotAllowed {
            entry: link.name.clone(),
        });
    }
    let kept: Vec<&Planned> = planned
        .iter()
        .filter(|p| p.path != "__MACOSX" && !p.path.starts_with("__MACOSX/"))
        .collect();
    let strip = common_top_dir(&kept).map_or(0, |dir| dir.len() + 1);

    let mut files = Vec::new();
    let mut budget = Budget::new(limits);
    for p in kept {
        let Kind::File { executable } = p.kind else {
            continue;
        };
        let mut entry = archive
            .by_index(p.index)
            .map_err(|source| corrupt(&p.name, source))?;
        let mut content = Vec::new();
        budget.copy(&mut entry, &mut content, &p.name, Path::new(&p.name))?;
        files.push((p.path[strip..].to_owned(), content, executable));
    }
    Ok(files)
}

/// The single directory every entry is under, if there is one and at least one file in it.
fn common_top_dir<'a>(entries: &[&'a Planned]) -> Option<&'a str> {
    let first_file = entries.iter().find(|p| !matches!(p.kind, Kind::Dir))?;
    let (top, _) = first_file.path.split_once('/')?;
    let all_inside = entries.iter().all(|p| match p.path.split_once('/') {
        Some((t, _)) => t == top,
        // Only the directory entry for `top` itself may sit at the root.
        None => p.path == top && matches!(p.kind, Kind::Dir),
    });
    all_inside.then_some(top)
}

// ---- validation ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    File { executable: bool },
    Dir,
    Symlink { target: String },
}

/// One validated archive entry.
#[derive(Debug)]
struct Planned {
    index: usize,
    /// The name as stored, for error messages.
    name: String,
    /// The normalized relative path: `/`-separated, no `.`, `..` or empty components.
    path: String,
    kind: Kind,
}

fn open(bytes: &[u8]) -> Result<ZipArchive<Cursor<&[u8]>>, BundleError> {
    ZipArchive::new(Cursor::new(bytes)).map_err(|source| BundleError::InvalidArchive { source })
}

fn corrupt(entry: &str, source: ZipError) -> BundleError {
    BundleError::CorruptEntry {
        entry: entry.to_owned(),
        source,
    }
}

fn extract_io(action: &'static str, path: &Path, source: io::Error) -> BundleError {
    BundleError::ExtractIo {
        action,
        path: path.to_owned(),
        source,
    }
}

/// Validates every entry from the central directory without writing anything.
fn plan(
    bytes: &[u8],
    archive: &mut ZipArchive<Cursor<&[u8]>>,
    limits: &ExtractLimits,
) -> Result<Vec<Planned>, BundleError> {
    let count = archive.len();
    if count > limits.max_files {
        return Err(BundleError::TooManyFiles {
            count,
            limit: limits.max_files,
        });
    }
    check_unique_names(bytes, archive)?;

    let mut planned = Vec::with_capacity(count);
    let mut declared_total = 0u64;
    for index in 0..count {
        let listed_name = archive.name_for_index(index).unwrap_or("?").to_owned();
        let entry = archive
            .by_index_raw(index)
            .map_err(|source| corrupt(&listed_name, source))?;
        let name = entry.name().to_owned();
        if entry.encrypted() {
            return Err(BundleError::EncryptedEntry { entry: name });
        }
        let (components, dir_syntax) =
            normalize_name(&name).map_err(|problem| BundleError::UnsafeEntryName {
                entry: name.clone(),
                problem,
            })?;
        let path = components.join("/");
        let mode = entry.unix_mode().unwrap_or(0);
        let executable = mode & 0o111 != 0;
        let declared = entry.size();
        drop(entry);

        let kind = match mode & S_IFMT {
            S_IFDIR => Kind::Dir,
            0 | S_IFREG if dir_syntax => Kind::Dir,
            0 | S_IFREG => Kind::File { executable },
            S_IFLNK => Kind::Symlink {
                target: read_link_target(archive, index, &name)?,
            },
            other => {
                return Err(BundleError::SpecialEntry {
                    entry: name,
                    kind: match other {
                        S_IFIFO => "a named pipe (FIFO)",
                        S_IFCHR => "a character device",
                        S_IFBLK => "a block device",
                        S_IFSOCK => "a socket",
                        _ => "of an unknown file type",
                    },
                });
            }
        };
        if path.is_empty() {
            if kind == Kind::Dir {
                // A `./` directory entry names the root itself; nothing to do.
                continue;
            }
            return Err(BundleError::UnsafeEntryName {
                entry: name,
                problem: NameProblem::Empty,
            });
        }
        if let Kind::File { .. } = kind {
            if declared > limits.max_file_bytes {
                return Err(BundleError::FileTooLarge {
                    entry: name,
                    limit: limits.max_file_bytes,
                });
            }
            declared_total = declared_total.saturating_add(declared);
            if declared_total > limits.max_bytes {
                return Err(BundleError::TooLarge {
                    limit: limits.max_bytes,
                });
            }
        }
        planned.push(Planned {
            index,
            name,
            path,
            kind,
        });
    }

    let nodes: Vec<(&str, &str, Node<'_>)> = planned
        .iter()
        .map(|p| {
            let node = match &p.kind {
                Kind::File { .. } => Node::File,
                Kind::Dir => Node::Dir,
                Kind::Symlink { target } => Node::Symlink(target),
            };
            (p.name.as_str(), p.path.as_str(), node)
        })
        .collect();
    check_tree(&nodes)?;
    Ok(planned)
}

fn read_link_target(
    archive: &mut ZipArchive<Cursor<&[u8]>>,
    index: usize,
    name: &str,
) -> Result<String, BundleError> {
    let entry = archive
        .by_index(index)
        .map_err(|source| corrupt(name, source))?;
    let mut raw = Vec::new();
    entry
        .take(MAX_LINK_TARGET + 1)
        .read_to_end(&mut raw)
        .map_err(|e| corrupt(name, ZipError::Io(e)))?;
    let bad = |target: String, reason| BundleError::BadSymlink {
        entry: name.to_owned(),
        target,
        reason,
    };
    if raw.len() as u64 > MAX_LINK_TARGET {
        return Err(bad(String::new(), "the target is longer than 4096 bytes"));
    }
    let target = String::from_utf8(raw).map_err(|e| {
        bad(
            String::from_utf8_lossy(e.as_bytes()).into_owned(),
            "the target is not valid UTF-8",
        )
    })?;
    if target.is_empty() {
        return Err(bad(target, "the target is empty"));
    }
    if target.contains('\0') || target.contains('\\') {
        return Err(bad(target, "the target contains a NUL byte or a backslash"));
    }
    Ok(target)
}

/// Splits an entry name into normal components. Returns whether the name had directory
/// syntax (a trailing `/`). `.` and empty components are dropped; an empty result means the
/// root itself.
pub(crate) fn normalize_name(name: &str) -> Result<(Vec<&str>, bool), NameProblem> {
    if name.is_empty() {
        return Err(NameProblem::Empty);
    }
    if name.contains('\0') {
        return Err(NameProblem::Nul);
    }
    if name.contains('\\') {
        return Err(NameProblem::Backslash);
    }
    if name.starts_with('/') {
        return Err(NameProblem::Absolute);
    }
    let b = name.as_bytes();
    if b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':' {
        return Err(NameProblem::DrivePrefix);
    }
    let mut components = Vec::new();
    let mut depth = 0usize;
    let mut parent_seen = false;
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if depth == 0 {
                    return Err(NameProblem::Escapes);
                }
                depth -= 1;
                parent_seen = true;
            }
            c => {
                depth += 1;
                components.push(c);
            }
        }
    }
    if parent_seen {
        return Err(NameProblem::ParentComponent);
    }
    Ok((components, name.ends_with('/')))
}

/// The kind of a tree node, for [`check_tree`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Node<'a> {
    File,
    Dir,
    /// The link's target, as stored.
    Symlink(&'a str),
}

/// Checks the shape of a set of normalized paths `(name for messages, path, kind)`: no path
/// twice, nothing inside a file or written through a symlink, and every symlink resolving
/// inside the root (following the set's other symlinks, as the kernel would).
///
/// Runs in time linear in the total length of names and targets: names and link targets are
/// attacker-controlled, so nothing here may be quadratic in them.
pub(crate) fn check_tree(nodes: &[(&str, &str, Node<'_>)]) -> Result<(), BundleError> {
    let mut tree = Tree::default();
    for &(name, path, node) in nodes {
        let id = tree.insert(path);
        if tree.entries[id].replace((name, node)).is_some() {
            return Err(BundleError::DuplicateEntry {
                entry: name.to_owned(),
            });
        }
    }
    for &(name, path, _) in nodes {
        let mut id = Tree::ROOT;
        let mut end = 0;
        for component in path.split('/') {
            if end > 0 {
                match tree.entries[id] {
                    Some((_, Node::File)) => {
                        return Err(BundleError::EntryUnderFile {
                            entry: name.to_owned(),
                            parent: path[..end].to_owned(),
                        });
                    }
                    Some((_, Node::Symlink(_))) => {
                        return Err(BundleError::EntryUnderSymlink {
                            entry: name.to_owned(),
                            link: path[..end].to_owned(),
                        });
                    }
                    Some((_, Node::Dir)) | None => {}
                }
                end += 1;
            }
            end += component.len();
            id = tree.children[&(id, component)];
        }
    }
    let mut states = vec![LinkState::Unvisited; tree.parents.len()];
    for id in 0..tree.parents.len() {
        if let Some((name, Node::Symlink(target))) = tree.entries[id] {
            tree.resolve(id, &mut states, 0)
                .map_err(|problem| match problem {
                    LinkProblem::Escapes => BundleError::SymlinkOutside {
                        entry: name.to_owned(),
                        target: target.to_owned(),
                    },
                    LinkProblem::Loop => BundleError::BadSymlink {
                        entry: name.to_owned(),
                        target: target.to_owned(),
                        reason: "it is part of a symlink loop or a chain of more than 40 links",
                    },
                })?;
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkProblem {
    Escapes,
    Loop,
}

/// A place a path can lead to: a node of the tree, or `extra` levels below one into names
/// the archive does not contain (which cannot be links, so only `..` matters there).
#[derive(Debug, Clone, Copy)]
struct Position {
    node: usize,
    extra: usize,
}

#[derive(Debug, Clone, Copy)]
enum LinkState {
    Unvisited,
    InProgress,
    Resolved(Position),
}

/// The archive's paths as a tree: node 0 is the root, every other node is an entry or an
/// implied parent directory of one.
struct Tree<'a> {
    parents: Vec<Option<usize>>,
    /// The entry at each node (`None` for implied directories): (name for messages, kind).
    entries: Vec<Option<(&'a str, Node<'a>)>>,
    children: HashMap<(usize, &'a str), usize>,
}

impl Default for Tree<'_> {
    fn default() -> Self {
        Self {
            parents: vec![None],
            entries: vec![None],
            children: HashMap::new(),
        }
    }
}

impl<'a> Tree<'a> {
    const ROOT: usize = 0;

    fn insert(&mut self, path: &'a str) -> usize {
        let mut id = Self::ROOT;
        for component in path.split('/') {
            id = match self.children.get(&(id, component)) {
                Some(&child) => child,
                None => {
                    let child = self.parents.len();
                    self.parents.push(Some(id));
                    self.entries.push(None);
                    self.children.insert((id, component), child);
                    child
                }
            };
        }
        id
    }

    /// Where the symlink at node `link` leads, substituting the archive's other links as it
    /// goes. Each link's target is walked once (results are memoized in `states`), so the
    /// total work is linear; `depth` bounds the nesting like the kernel's ELOOP limit.
    fn resolve(
        &self,
        link: usize,
        states: &mut [LinkState],
        depth: usize,
    ) -> Result<Position, LinkProblem> {
        match states[link] {
            LinkState::Resolved(position) => return Ok(position),
            LinkState::InProgress => return Err(LinkProblem::Loop),
            LinkState::Unvisited => {}
        }
        if depth > MAX_LINK_HOPS {
            return Err(LinkProblem::Loop);
        }
        let Some((_, Node::Symlink(target))) = self.entries[link] else {
            return Err(LinkProblem::Loop); // unreachable: only called on links
        };
        if target.starts_with('/') {
            return Err(LinkProblem::Escapes);
        }
        states[link] = LinkState::InProgress;
        // A relative target starts from the link's own directory.
        let mut at = Position {
            node: self.parents[link].unwrap_or(Self::ROOT),
            extra: 0,
        };
        for component in target.split('/') {
            match component {
                "" | "." => {}
                ".." if at.extra > 0 => at.extra -= 1,
                ".." => at.node = self.parents[at.node].ok_or(LinkProblem::Escapes)?,
                _ if at.extra > 0 => at.extra += 1,
                name => match self.children.get(&(at.node, name)) {
                    Some(&child) => match self.entries[child] {
                        Some((_, Node::Symlink(_))) => {
                            at = self.resolve(child, states, depth + 1)?;
                        }
                        _ => at.node = child,
                    },
                    None => at.extra = 1,
                },
            }
        }
        states[link] = LinkState::Resolved(at);
        Ok(at)
    }
}

/// Detects duplicate names. The zip library keys entries by name and silently keeps one of
/// the duplicates, so the central directory is walked here directly.
fn check_unique_names(
    bytes: &[u8],
    archive: &ZipArchive<Cursor<&[u8]>>,
) -> Result<(), BundleError> {
    const SIGNATURE: &[u8] = &[0x50, 0x4b, 0x01, 0x02];
    const FIXED: usize = 46;
    let read_u16 = |at: usize| -> Option<usize> {
        let b = bytes.get(at..at + 2)?;
        Some(usize::from(u16::from_le_bytes([b[0], b[1]])))
    };
    let mut pos = usize::try_from(archive.central_directory_start()).unwrap_or(usize::MAX);
    let mut seen: HashSet<&[u8]> = HashSet::with_capacity(archive.len());
    let mut count = 0usize;
    while bytes.get(pos..pos + 4) == Some(SIGNATURE) {
        let lengths = (read_u16(pos + 28), read_u16(pos + 30), read_u16(pos + 32));
        let (Some(name_len), Some(extra_len), Some(comment_len)) = lengths else {
            break;
        };
        let Some(name) = bytes.get(pos + FIXED..pos + FIXED + name_len) else {
            break;
        };
        if !seen.insert(name) {
            return Err(BundleError::DuplicateEntry {
                entry: String::from_utf8_lossy(name).into_owned(),
            });
        }
        count += 1;
        pos += FIXED + name_len + extra_len + comment_len;
    }
    if count != archive.len() {
        return Err(BundleError::MalformedArchive {
            reason: format!(
                "the central directory holds {count} entries but {} distinct names",
                archive.len()
            ),
        });
    }
    Ok(())
}

// ---- writing ------------------------------------------------------------------------------

/// Where limits stand while streaming entries out of one archive.
struct Budget {
    max_file: u64,
    max_total: u64,
    /// Bytes already produced by earlier entries.
    total: u64,
}

impl Budget {
    fn new(limits: &ExtractLimits) -> Self {
        Self {
            max_file: limits.max_file_bytes,
            max_total: limits.max_bytes,
            total: 0,
        }
    }

    /// Streams one entry from `reader` to `out`, failing as soon as the decompressor has
    /// produced more than the per-file or total limit. `out_path` names `out` in write errors.
    fn copy(
        &mut self,
        reader: &mut impl Read,
        out: &mut impl Write,
        entry: &str,
        out_path: &Path,
    ) -> Result<u64, BundleError> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut copied = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => return Ok(copied),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(corrupt(entry, ZipError::Io(e))),
            };
            copied += n as u64;
            self.total += n as u64;
            if copied > self.max_file {
                return Err(BundleError::FileTooLarge {
                    entry: entry.to_owned(),
                    limit: self.max_file,
                });
            }
            if self.total > self.max_total {
                return Err(BundleError::TooLarge {
                    limit: self.max_total,
                });
            }
            out.write_all(&buf[..n])
                .map_err(|e| extract_io("write", out_path, e))?;
        }
    }
}

fn write_entries(
    archive: &mut ZipArchive<Cursor<&[u8]>>,
    planned: &[Planned],
    root: &Path,
    limits: &ExtractLimits,
) -> Result<Extracted, BundleError> {
    // Directories first, parents before children (a prefix sorts first).
    let mut dirs = BTreeSet::new();
    for p in planned {
        if p.kind == Kind::Dir {
            dirs.insert(p.path.as_str());
        }
        for (slash, _) in p.path.match_indices('/') {
            dirs.insert(&p.path[..slash]);
        }
    }
    for dir in dirs {
        let path = root.join(dir);
        fs::DirBuilder::new()
            .mode(0o755)
            .create(&path)
            .and_then(|()| fs::set_permissions(&path, fs::Permissions::from_mode(0o755)))
            .map_err(|e| extract_io("create", &path, e))?;
    }

    let mut extracted = Extracted { files: 0, bytes: 0 };
    let mut budget = Budget::new(limits);
    for p in planned {
        let Kind::File { executable } = p.kind else {
            continue;
        };
        let path = root.join(&p.path);
        let mode = if executable { 0o755 } else { 0o644 };
        // create_new: fails rather than follow anything already at this path.
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .map_err(|e| extract_io("create", &path, e))?;
        let mut entry = archive
            .by_index(p.index)
            .map_err(|source| corrupt(&p.name, source))?;
        let written = budget.copy(&mut entry, &mut file, &p.name, &path)?;
        // The umask may have masked the mode at creation; set it exactly.
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| extract_io("set permissions of", &path, e))?;
        extracted.bytes += written;
        extracted.files += 1;
    }

    // Links last: nothing written after them can be redirected through one.
    for p in planned {
        if let Kind::Symlink { target } = &p.kind {
            let path = root.join(&p.path);
            std::os::unix::fs::symlink(target, &path)
                .map_err(|e| extract_io("create symlink", &path, e))?;
            extracted.files += 1;
        }
    }
    Ok(extracted)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // panicking is how a test fails
mod tests {
    use super::*;

    #[test]
    fn normalizes_safe_names() {
        assert_eq!(
            normalize_name("a/b.txt").unwrap(),
            (vec!["a", "b.txt"], false)
        );
        assert_eq!(normalize_name("./a//b/").unwrap(), (vec!["a", "b"], true));
        assert_eq!(normalize_name("./").unwrap(), (vec![], true));
        assert_eq!(
            normalize_name(".env.example").unwrap().0,
            vec![".env.example"]
        );
    }

    #[test]
    fn rejects_unsafe_names() {
        let cases = [
            ("", NameProblem::Empty),
            ("../evil", NameProblem::Escapes),
            ("a/../../evil", NameProblem::Escapes),
            ("a/../b", NameProblem::ParentComponent),
            ("/abs/path", NameProblem::Absolute),
            ("..\\evil", NameProblem::Backslash),
            ("a\\..\\..\\evil", NameProblem::Backslash),
            ("C:/Windows/evil", NameProblem::DrivePrefix),
            ("c:evil", NameProblem::DrivePrefix),
            ("a\0b", NameProblem::Nul),
        ];
        for (name, problem) in cases {
            assert_eq!(normalize_name(name), Err(problem), "{name:?}");
        }
    }

    /// Checks a tree made only of the given links.
    fn links(pairs: &[(&'static str, &'static str)]) -> Result<(), BundleError> {
        let nodes: Vec<_> = pairs
            .iter()
            .map(|&(path, target)| (path, path, Node::Symlink(target)))
            .collect();
        check_tree(&nodes)
    }

    fn outside(result: Result<(), BundleError>) -> Option<String> {
        match result {
            Err(BundleError::SymlinkOutside { entry, .. }) => Some(entry),
            _ => None,
        }
    }

    #[test]
    fn resolves_links_inside_the_root() {
        links(&[("link", "data/file")]).unwrap();
        links(&[("a/b/link", "../../x")]).unwrap();
        links(&[("link", ".")]).unwrap();
        links(&[("a/link", "..")]).unwrap();
        links(&[("a/link", "missing/deeper/../..")]).unwrap();
        // Chains that stay inside: versioned shared libraries, a `current` release link.
        links(&[("lib.so", "lib.so.1"), ("lib.so.1", "lib.so.1.2")]).unwrap();
        links(&[
            ("current", "releases/v2"),
            ("bin/app", "../current/bin/app"),
        ])
        .unwrap();
    }

    #[test]
    fn rejects_links_escaping_the_root() {
        assert_eq!(outside(links(&[("link", "..")])).as_deref(), Some("link"));
        assert!(outside(links(&[("a/link", "../../x")])).is_some());
        assert!(outside(links(&[("a/link", "b/../../../x")])).is_some());
        assert!(outside(links(&[("a/link", "missing/../../../x")])).is_some());
        assert!(outside(links(&[("link", "/etc/passwd")])).is_some());
    }

    #[test]
    fn follows_other_links_while_resolving() {
        // `d/l` points at the root, which is fine on its own, but `e -> d/l/..` climbs out.
        assert_eq!(
            outside(links(&[("d/l", ".."), ("e", "d/l/..")])).as_deref(),
            Some("e")
        );
        // Same, with the escaping link listed first.
        assert_eq!(
            outside(links(&[("e", "d/l/.."), ("d/l", "..")])).as_deref(),
            Some("e")
        );
        // A link to a link to an absolute path.
        assert!(outside(links(&[("x", "abs"), ("abs", "/etc")])).is_some());
        // Through a link to the root from one level down: d/up is the root, so
        // d/up/.. is above it.
        assert!(outside(links(&[("d/up", ".."), ("d/sub/x", "../up/..")])).is_some());
        links(&[("d/up", ".."), ("d/sub/x", "../up/d")]).unwrap();
        assert!(matches!(
            links(&[("a", "b"), ("b", "a")]),
            Err(BundleError::BadSymlink { .. })
        ));
        assert!(matches!(
            links(&[("a", "a/x")]),
            Err(BundleError::BadSymlink { .. })
        ));
    }

    #[test]
    fn long_link_chains_are_cut_off() {
        let names: Vec<String> = (0..=MAX_LINK_HOPS + 1).map(|i| format!("l{i}")).collect();
        let targets: Vec<String> = (1..=MAX_LINK_HOPS + 2).map(|i| format!("l{i}")).collect();
        let nodes: Vec<_> = names
            .iter()
            .zip(&targets)
            .map(|(n, t)| (n.as_str(), n.as_str(), Node::Symlink(t.as_str())))
            .collect();
        assert!(matches!(
            check_tree(&nodes),
            Err(BundleError::BadSymlink { .. })
        ));
    }

    #[test]
    fn deep_names_and_targets_are_checked_quickly() {
        // Names and targets are attacker-controlled; a quadratic check would take minutes.
        let deep = vec!["a"; 30_000].join("/");
        let up = vec![".."; 30_000].join("/");
        let target = format!("{deep}/{up}/x");
        let file_path = format!("{deep}/f");
        let nodes = [
            (file_path.as_str(), file_path.as_str(), Node::File),
            ("link", "link", Node::Symlink(target.as_str())),
        ];
        check_tree(&nodes).unwrap();
        let escaping = format!("{up}/../x");
        let nodes = [(
            file_path.as_str(),
            file_path.as_str(),
            Node::Symlink(escaping.as_str()),
        )];
        assert!(matches!(
            check_tree(&nodes),
            Err(BundleError::SymlinkOutside { .. })
        ));
    }

    #[test]
    fn tree_shape_checks() {
        let ok = [
            ("a", "a", Node::Dir),
            ("a/x", "a/x", Node::File),
            ("l", "l", Node::Symlink("a/x")),
        ];
        check_tree(&ok).unwrap();
        let dup = [("a", "a", Node::File), ("./a", "a", Node::File)];
        assert!(matches!(
            check_tree(&dup),
            Err(BundleError::DuplicateEntry { entry }) if entry == "./a"
        ));
        let under_file = [("a", "a", Node::File), ("a/x", "a/x", Node::File)];
        assert!(matches!(
            check_tree(&under_file),
            Err(BundleError::EntryUnderFile { .. })
        ));
        let under_link = [
            ("d/a", "d/a", Node::Symlink("..")),
            ("d/a/x", "d/a/x", Node::File),
        ];
        assert!(matches!(
            check_tree(&under_link),
            Err(BundleError::EntryUnderSymlink { entry, link }) if entry == "d/a/x" && link == "d/a"
        ));
    }

    #[test]
    fn budget_counts_streamed_bytes_not_declared_ones() {
        let data = vec![7u8; 100];
        let mut budget = Budget {
            max_file: 60,
            max_total: 1000,
            total: 0,
        };
        let err = budget
            .copy(
                &mut data.as_slice(),
                &mut Vec::new(),
                "big",
                Path::new("big"),
            )
            .unwrap_err();
        assert!(matches!(err, BundleError::FileTooLarge { limit: 60, .. }));

        let mut budget = Budget {
            max_file: 100,
            max_total: 150,
            total: 0,
        };
        let mut out = Vec::new();
        assert_eq!(
            budget
                .copy(&mut data.as_slice(), &mut out, "a", Path::new("a"))
                .unwrap(),
            100
        );
        let err = budget
            .copy(&mut data.as_slice(), &mut out, "b", Path::new("b"))
            .unwrap_err();
        assert!(matches!(err, BundleError::TooLarge { limit: 150 }));
    }
}

/// A digest of an extracted tree: every entry's relative path, kind, and contents (a link's
/// target), in sorted order, with the top-level names in `skip` left out. Two trees with the
/// same digest hold the same files; the agent records it at extraction and compares it before
/// running a release again, so a file changed after extraction is found.
pub fn tree_digest(dir: &Path, skip: &[&str]) -> io::Result<String> {
    use sha2::Digest as _;
    fn walk(dir: &Path, rel: &str, h: &mut sha2::Sha256, skip: &[&str]) -> io::Result<()> {
        let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            if rel.is_empty() && skip.contains(&name.as_str()) {
                continue;
            }
            let path = format!("{rel}/{name}");
            let meta = fs::symlink_metadata(e.path())?;
            h.update(path.as_bytes());
            if meta.file_type().is_symlink() {
                h.update(b"\0l\0");
                h.update(fs::read_link(e.path())?.as_os_str().as_encoded_bytes());
            } else if meta.is_dir() {
                h.update(b"\0d\0");
                walk(&e.path(), &path, h, skip)?;
            } else {
                h.update(b"\0f\0");
                h.update(meta.len().to_le_bytes());
                let mut f = fs::File::open(e.path())?;
                io::copy(&mut f, h)?;
            }
            h.update(b"\0");
        }
        Ok(())
    }
    let mut h = sha2::Sha256::new();
    walk(dir, "", &mut h, skip)?;
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tree_digest_tests {
    use super::tree_digest;

    #[test]
    fn any_change_to_a_file_changes_the_digest_and_skipped_names_do_not() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("pkg")).unwrap();
        std::fs::write(dir.path().join("pkg/app.py"), b"def f(): return 1\n").unwrap();
        std::fs::write(dir.path().join("main.py"), b"x = 1\n").unwrap();
        let first = tree_digest(dir.path(), &["marker"]).unwrap();
        std::fs::write(dir.path().join("marker"), b"anything").unwrap();
        assert_eq!(tree_digest(dir.path(), &["marker"]).unwrap(), first);
        std::fs::write(dir.path().join("pkg/app.py"), b"def f(): return 2\n").unwrap();
        assert_ne!(tree_digest(dir.path(), &["marker"]).unwrap(), first);
        std::fs::write(dir.path().join("pkg/app.py"), b"def f(): return 1\n").unwrap();
        assert_eq!(tree_digest(dir.path(), &["marker"]).unwrap(), first);
        std::fs::write(dir.path().join("pkg/extra.py"), b"").unwrap();
        assert_ne!(tree_digest(dir.path(), &["marker"]).unwrap(), first);
    }
}

/// Checks, before each start of a workload, that an extracted tree still holds what was
/// signed: the digest recorded at extraction ([`tree_digest`]). Comparing every file's
/// contents each time would cost a cold start as much as reading the app, so the tree's
/// metadata (paths, sizes, modification and change times, inodes) is compared first, and the
/// contents are hashed again only when that changed since the last check that passed.
#[derive(Debug)]
pub struct TreeCheck {
    root: std::path::PathBuf,
    skip: Vec<String>,
    digest: String,
    /// The metadata fingerprint of the last check that passed.
    verified: std::sync::Mutex<Option<[u8; 32]>>,
}

impl TreeCheck {
    pub fn new(root: &Path, skip: &[&str], digest: String) -> TreeCheck {
        TreeCheck {
            root: root.to_path_buf(),
            skip: skip.iter().map(|s| (*s).to_owned()).collect(),
            digest,
            verified: std::sync::Mutex::new(None),
        }
    }

    /// `Ok` when the tree matches its recorded digest; otherwise what is wrong.
    pub fn verify(&self) -> Result<(), String> {
        let skip: Vec<&str> = self.skip.iter().map(String::as_str).collect();
        let fail = |e: io::Error| format!("cannot check {}: {e}", self.root.display());
        let stats = stat_fingerprint(&self.root, &skip).map_err(fail)?;
        if self.verified.lock().ok().and_then(|v| *v) == Some(stats) {
            return Ok(());
        }
        let now = tree_digest(&self.root, &skip).map_err(fail)?;
        if now != self.digest {
            return Err(format!(
                "the release's files in {} changed after extraction; it is not started \
                 (a restart or a redeploy extracts it again from its signed bundle)",
                self.root.display()
            ));
        }
        if let Ok(mut v) = self.verified.lock() {
            *v = Some(stats);
        }
        Ok(())
    }
}

/// A hash of a tree's metadata: every entry's path, size, times and inode.
fn stat_fingerprint(dir: &Path, skip: &[&str]) -> io::Result<[u8; 32]> {
    use sha2::Digest as _;
    use std::os::unix::fs::MetadataExt;
    fn walk(dir: &Path, top: bool, h: &mut sha2::Sha256, skip: &[&str]) -> io::Result<()> {
        let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            if top && skip.contains(&e.file_name().to_string_lossy().as_ref()) {
                continue;
            }
            let m = fs::symlink_metadata(e.path())?;
            h.update(e.file_name().as_encoded_bytes());
            for v in [
                m.size() as i64,
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec(),
                m.ino() as i64,
            ] {
                h.update(v.to_le_bytes());
            }
            if m.is_dir() {
                walk(&e.path(), false, h, skip)?;
            }
            h.update(b"\0");
        }
        Ok(())
    }
    let mut h = sha2::Sha256::new();
    walk(dir, true, &mut h, skip)?;
    Ok(h.finalize().into())
}

#[cfg(test)]
mod tree_check_tests {
    use super::{TreeCheck, tree_digest};

    #[test]
    fn a_changed_file_fails_the_check_and_restoring_it_passes_again() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("app.py"), b"def f(): return 1\n").unwrap();
        let digest = tree_digest(dir.path(), &["marker"]).unwrap();
        let check = TreeCheck::new(dir.path(), &["marker"], digest);
        check.verify().unwrap();
        check.verify().unwrap();
        std::fs::write(dir.path().join("marker"), b"x").unwrap();
        check.verify().unwrap();
        std::fs::write(dir.path().join("app.py"), b"def f(): return 2\n").unwrap();
        let e = check.verify().unwrap_err();
        assert!(e.contains("changed after extraction"), "{e}");
        std::fs::write(dir.path().join("app.py"), b"def f(): return 1\n").unwrap();
        check.verify().unwrap();
    }
}
