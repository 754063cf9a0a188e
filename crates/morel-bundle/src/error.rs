//! The one error type of this crate.
//!
//! Variants carry the context a user needs to act (the path, the entry name, the limit) and
//! keep the underlying cause as `#[source]`. [`BundleError::is_client_error`] splits them into
//! "the bundle, key or signature you gave me is wrong" and "something failed on this machine".

use std::io;
use std::path::PathBuf;

use morel_core::Digest;

/// Why an entry name (a path inside a bundle) is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameProblem {
    /// The name is empty or only made of `/` and `.` components.
    Empty,
    /// The name starts with `/`.
    Absolute,
    /// `..` components climb above the bundle root.
    Escapes,
    /// A `..` component that stays inside the root; refused anyway to keep names canonical.
    ParentComponent,
    /// Backslashes are path separators on Windows, so `..\evil` would escape there.
    Backslash,
    /// `C:` and similar would be absolute on Windows.
    DrivePrefix,
    /// A NUL byte would truncate the name at the operating-system boundary.
    Nul,
}

impl std::fmt::Display for NameProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NameProblem::Empty => "has an empty name",
            NameProblem::Absolute => "is an absolute path",
            NameProblem::Escapes => "escapes the extraction directory",
            NameProblem::ParentComponent => "contains a \"..\" component",
            NameProblem::Backslash => "contains a backslash",
            NameProblem::DrivePrefix => "starts with a Windows drive prefix",
            NameProblem::Nul => "contains a NUL byte",
        })
    }
}

/// Everything that can go wrong while handling keys, signatures and bundle archives.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    // ---- keys -------------------------------------------------------------------------------
    #[error("could not get random bytes from the operating system to generate a key")]
    Random {
        #[source]
        source: getrandom::Error,
    },

    #[error("could not {action} key file {}", path.display())]
    KeyFile {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// `what` says which key or file was being parsed; the key material itself is never shown.
    #[error("invalid {what}: {reason}")]
    InvalidKey { what: String, reason: String },

    // ---- signatures -------------------------------------------------------------------------
    #[error("malformed bundle signature: {reason}")]
    MalformedSignature { reason: String },

    #[error(
        "bundle digest mismatch: expected {expected}, got {actual} (the bundle was corrupted or tampered with)"
    )]
    DigestMismatch { expected: Digest, actual: Digest },

    #[error("bundle is signed by untrusted key {key_id} (trust it with `morel keys trust`)")]
    UnknownKey { key_id: String },

    #[error("signature by key {key_id} does not match the bundle")]
    BadSignature { key_id: String },

    // ---- packing a project directory --------------------------------------------------------
    #[error("could not list the files of {}", path.display())]
    Walk {
        path: PathBuf,
        #[source]
        source: ignore::Error,
    },

    #[error("could not read {}", path.display())]
    ReadFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("{} is not a directory", path.display())]
    NotADirectory { path: PathBuf },

    #[error("cannot pack {}: {problem}", path.display())]
    InvalidFileName { path: PathBuf, problem: String },

    #[error(
        "cannot pack {}: it is {kind}; bundles hold only regular files, directories and symlinks",
        path.display()
    )]
    UnsupportedFileType { path: PathBuf, kind: &'static str },

    #[error(
        "cannot pack {}: it is a symlink to {target:?}, which points outside the project directory",
        path.display()
    )]
    SymlinkOutsideProject { path: PathBuf, target: String },

    #[error(
        "{} has more than {limit} files to pack (exclude some with .gitignore or .morelignore)",
        dir.display()
    )]
    PackTooManyFiles { dir: PathBuf, limit: usize },

    #[error(
        "{} has more than {limit} bytes of files to pack (exclude some with .gitignore or .morelignore)",
        dir.display()
    )]
    PackTooLarge { dir: PathBuf, limit: u64 },

    #[error("could not write the bundle archive")]
    ZipWrite {
        #[source]
        source: zip::result::ZipError,
    },

    // ---- reading a bundle archive (all caused by the archive's content) ---------------------
    #[error("bundle is not a valid zip archive")]
    InvalidArchive {
        #[source]
        source: zip::result::ZipError,
    },

    #[error("bundle is not a valid zip archive: {reason}")]
    MalformedArchive { reason: String },

    #[error("bundle entry {entry:?} could not be read")]
    CorruptEntry {
        entry: String,
        #[source]
        source: zip::result::ZipError,
    },

    #[error("bundle entry {entry:?} {problem}")]
    UnsafeEntryName { entry: String, problem: NameProblem },

    #[error("bundle entry {entry:?} is {kind}; only files, directories and symlinks are allowed")]
    SpecialEntry { entry: String, kind: &'static str },

    #[error("bundle entry {entry:?} is encrypted, which bundles never are")]
    EncryptedEntry { entry: String },

    #[error("bundle entry {entry:?} appears more than once")]
    DuplicateEntry { entry: String },

    #[error("bundle entry {entry:?} is inside {parent:?}, which is a file")]
    EntryUnderFile { entry: String, parent: String },

    #[error("bundle entry {entry:?} would be written through the symlink {link:?}")]
    EntryUnderSymlink { entry: String, link: String },

    #[error("bundle entry {entry:?} is a symlink to {target:?} outside the bundle")]
    SymlinkOutside { entry: String, target: String },

    #[error("bundle entry {entry:?} is a symlink with an unusable target {target:?}: {reason}")]
    BadSymlink {
        entry: String,
        target: String,
        reason: &'static str,
    },

    #[error("bundle entry {entry:?} is a symlink; uploaded archives may not contain symlinks")]
    SymlinkNotAllowed { entry: String },

    #[error("bundle has {count} files, over the limit of {limit}")]
    TooManyFiles { count: usize, limit: usize },

    #[error("bundle entry {entry:?} is larger than the per-file limit of {limit} bytes")]
    FileTooLarge { entry: String, limit: u64 },

    #[error("bundle is larger than the limit of {limit} bytes uncompressed")]
    TooLarge { limit: u64 },

    #[error("bundle has no entry {name:?}")]
    MissingEntry { name: String },

    #[error("bundle entry {entry:?} is not a regular file")]
    NotAFile { entry: String },

    // ---- writing an extracted bundle --------------------------------------------------------
    #[error("cannot extract into {}: {reason}", path.display())]
    BadDestination { path: PathBuf, reason: &'static str },

    #[error("could not {action} {} while extracting the bundle", path.display())]
    ExtractIo {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl BundleError {
    /// True when the error comes from what the caller handed in (the bundle bytes, a signature,
    /// a key, the files of a project) rather than from this machine (disk, randomness, a
    /// destination that is in the way). An HTTP layer maps `true` to 400 and `false` to 500.
    pub fn is_client_error(&self) -> bool {
        match self {
            BundleError::Random { .. }
            | BundleError::KeyFile { .. }
            | BundleError::Walk { .. }
            | BundleError::ReadFile { .. }
            | BundleError::NotADirectory { .. }
            | BundleError::ZipWrite { .. }
            | BundleError::BadDestination { .. }
            | BundleError::ExtractIo { .. } => false,
            BundleError::InvalidKey { .. }
            | BundleError::MalformedSignature { .. }
            | BundleError::DigestMismatch { .. }
            | BundleError::UnknownKey { .. }
            | BundleError::BadSignature { .. }
            | BundleError::InvalidFileName { .. }
            | BundleError::UnsupportedFileType { .. }
            | BundleError::SymlinkOutsideProject { .. }
            | BundleError::PackTooManyFiles { .. }
            | BundleError::PackTooLarge { .. }
            | BundleError::InvalidArchive { .. }
            | BundleError::MalformedArchive { .. }
            | BundleError::CorruptEntry { .. }
            | BundleError::UnsafeEntryName { .. }
            | BundleError::SpecialEntry { .. }
            | BundleError::EncryptedEntry { .. }
            | BundleError::DuplicateEntry { .. }
            | BundleError::EntryUnderFile { .. }
            | BundleError::EntryUnderSymlink { .. }
            | BundleError::SymlinkOutside { .. }
            | BundleError::BadSymlink { .. }
            | BundleError::SymlinkNotAllowed { .. }
            | BundleError::TooManyFiles { .. }
            | BundleError::FileTooLarge { .. }
            | BundleError::TooLarge { .. }
            | BundleError::MissingEntry { .. }
            | BundleError::NotAFile { .. } => true,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // panicking is how a test fails
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_entry_and_limit() {
        let e = BundleError::UnsafeEntryName {
            entry: "../evil".into(),
            problem: NameProblem::Escapes,
        };
        assert_eq!(
            e.to_string(),
            r#"bundle entry "../evil" escapes the extraction directory"#
        );
        let e = BundleError::SymlinkOutside {
            entry: "lib/link".into(),
            target: "/etc/passwd".into(),
        };
        assert_eq!(
            e.to_string(),
            r#"bundle entry "lib/link" is a symlink to "/etc/passwd" outside the bundle"#
        );
        let e = BundleError::TooManyFiles {
            count: 20_001,
            limit: 20_000,
        };
        assert_eq!(
            e.to_string(),
            "bundle has 20001 files, over the limit of 20000"
        );
        let e = BundleError::UnknownKey {
            key_id: "1a2b".into(),
        };
        assert_eq!(
            e.to_string(),
            "bundle is signed by untrusted key 1a2b (trust it with `morel keys trust`)"
        );
    }

    #[test]
    fn client_vs_local_errors() {
        assert!(BundleError::BadSignature { key_id: "k".into() }.is_client_error());
        assert!(BundleError::TooLarge { limit: 1 }.is_client_error());
        let io = BundleError::ExtractIo {
            action: "create",
            path: "/x".into(),
            source: io::Error::other("disk full"),
        };
        assert!(!io.is_client_error());
    }
}
