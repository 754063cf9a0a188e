//! The on-disk cache of precompiled modules.
//!
//! A file is named `<sha256 of the wasm>-<engine hash>.cwasm`, where the engine hash covers
//! wasmtime's version and every setting that changes generated code
//! (`Engine::precompile_compatibility_hash`), so a changed configuration or an upgraded wasmtime
//! simply misses. Its content is `MAGIC`, the sha256 of the artifact, then the artifact that
//! `Module::serialize` produced. The checksum is what makes a torn or corrupted file a cache miss
//! instead of native code run blindly: wasmtime checks an artifact's headers, not its code.
//! Files are written to a temporary name and renamed, so readers never see a partial file and
//! concurrent writers (even in other processes) only race to put identical bytes in place.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::{Engine, Module};

use crate::WasmError;

/// Identifies this file layout; bump on any change to it.
const MAGIC: &[u8; 8] = b"MORELCW1";
const CHECKSUM_LEN: usize = 32;

/// Distinguishes temporary files written concurrently by one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

#[derive(Debug)]
pub(crate) struct DiskCache {
    dir: PathBuf,
    engine_hash: String,
}

impl DiskCache {
    /// Opens (creating) `dir` for modules compiled by `engine`.
    pub(crate) fn open(dir: &Path, engine: &Engine) -> Result<Self, WasmError> {
        fs::create_dir_all(dir).map_err(|source| WasmError::Io {
            action: "cannot create the module cache directory",
            path: dir.to_path_buf(),
            source,
        })?;
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_hash = hex::encode(&hasher.0.finalize()[..16]);
        Ok(Self {
            dir: dir.to_path_buf(),
            engine_hash,
        })
    }

    /// Where the artifact for the wasm with this digest lives.
    pub(crate) fn path(&self, digest: &str) -> PathBuf {
        self.dir
            .join(format!("{digest}-{}.cwasm", self.engine_hash))
    }

    /// The cached module, or `None` on a miss. A file that is unreadable, corrupt or rejected by
    /// wasmtime is logged, removed, and treated as a miss so the caller recompiles.
    pub(crate) fn get(&self, engine: &Engine, digest: &str) -> Option<Module> {
        let path = self.path(digest);
        let file = match fs::read(&path) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return None,
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "cannot read cached module; recompiling");
                return None;
            }
        };
        let loaded = match verified_artifact(&file) {
            Some(artifact) => deserialize(engine, artifact).map_err(|e| format!("{e:#}")),
            None => Err("bad header or checksum".to_owned()),
        };
        match loaded {
            Ok(module) => Some(module),
            Err(reason) => {
                tracing::warn!(path = %path.display(), %reason, "discarding corrupt cached module; recompiling");
                if let Err(err) = fs::remove_file(&path) {
                    tracing::warn!(path = %path.display(), error = %err, "cannot remove corrupt cached module");
                }
                None
            }
        }
    }

    /// Stores `artifact` (from `Module::serialize`) for the wasm with this digest.
    pub(crate) fn put(&self, digest: &str, artifact: &[u8]) -> io::Result<()> {
        let path = self.path(digest);
        let temp = self.dir.join(format!(
            ".{digest}.{}.{}.tmp",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let written = (|| {
            let mut file = fs::File::create(&temp)?;
            file.write_all(MAGIC)?;
            file.write_all(&Sha256::digest(artifact))?;
            file.write_all(artifact)?;
            // No fsync: after a crash, a torn file fails its checksum and is recompiled.
            drop(file);
            fs::rename(&temp, &path)
        })();
        if written.is_err() {
            // Best effort: the temp file may not even exist.
            let _ = fs::remove_file(&temp);
        }
        written
    }
}

/// The artifact inside a cache file, if the header and checksum hold.
fn verified_artifact(file: &[u8]) -> Option<&[u8]> {
    let rest = file.strip_prefix(MAGIC.as_slice())?;
    if rest.len() < CHECKSUM_LEN {
        return None;
    }
    let (checksum, artifact) = rest.split_at(CHECKSUM_LEN);
    (Sha256::digest(artifact).as_slice() == checksum).then_some(artifact)
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, artifact: &[u8]) -> wasmtime::Result<Module> {
    // SAFETY: `Module::deserialize` runs the bytes as native code, so they must come from
    // `Module::serialize`. These do: the cache directory is the operator's (guests and callers
    // cannot write to it), `put` wrote them from `Module::serialize`, and the checksum above
    // proves they are unchanged since. wasmtime additionally rejects artifacts from another
    // version or configuration.
    unsafe { Module::deserialize(engine, artifact) }
}

/// Feeds `Hash` output into sha256: unlike `DefaultHasher`, stable across processes and Rust
/// releases, so one engine configuration always maps to one file name.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_le_bytes(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_for(artifact: &[u8]) -> Vec<u8> {
        let mut file = MAGIC.to_vec();
        file.extend_from_slice(&Sha256::digest(artifact));
        file.extend_from_slice(artifact);
        file
    }

    #[test]
    fn intact_files_verify() {
        let file = file_for(b"artifact bytes");
        assert_eq!(verified_artifact(&file), Some(b"artifact bytes".as_slice()));
    }

    #[test]
    fn flipped_truncated_or_foreign_files_do_not_verify() {
        let mut flipped = file_for(b"artifact bytes");
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(verified_artifact(&flipped), None);

        let file = file_for(b"artifact bytes");
        assert_eq!(verified_artifact(&file[..file.len() - 3]), None);
        assert_eq!(verified_artifact(&file[..20]), None);
        assert_eq!(verified_artifact(b"\x7fELF not ours"), None);
        assert_eq!(verified_artifact(b""), None);
    }
}
