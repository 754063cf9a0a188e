//! The local blob directory: bundles by digest, each with its detached signature beside it.
//! The control plane writes it on upload; a local agent reads it directly (a remote agent
//! would pull the same two files over HTTP).

use std::path::{Path, PathBuf};

use morel_core::Digest;

#[derive(Clone, Debug)]
pub struct BlobDir {
    dir: PathBuf,
}

impl BlobDir {
    pub fn new(dir: PathBuf) -> Self {
        BlobDir { dir }
    }

    pub fn bundle_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(format!("{digest}.bundle"))
    }

    pub fn signature_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(format!("{digest}.sig"))
    }

    pub fn contains(&self, digest: &Digest) -> bool {
        self.bundle_path(digest).exists() && self.signature_path(digest).exists()
    }

    /// Writes a bundle and its signature; the bundle is written under a temporary name and
    /// renamed so a reader never sees a partial file.
    pub async fn put(
        &self,
        digest: &Digest,
        bytes: &[u8],
        signature: &morel_bundle::Signature,
    ) -> std::io::Result<()> {
        tokio::fs::create_dir_all(&self.dir).await?;
        let tmp = self
            .dir
            .join(format!(".{digest}.{}.tmp", std::process::id()));
        tokio::fs::write(&tmp, bytes).await?;
        tokio::fs::write(self.signature_path(digest), signature.to_header()).await?;
        tokio::fs::rename(&tmp, self.bundle_path(digest)).await
    }

    pub async fn read(&self, digest: &Digest) -> std::io::Result<(Vec<u8>, String)> {
        let bytes = tokio::fs::read(self.bundle_path(digest)).await?;
        let sig = tokio::fs::read_to_string(self.signature_path(digest)).await?;
        Ok((bytes, sig))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
