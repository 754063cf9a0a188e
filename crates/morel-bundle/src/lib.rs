//! Bundles: the immutable, signed zip archives that carry an app build from the CLI (or the
//! control plane) to the agents that run it.
//!
//! A bundle is a zip with `manifest.json` at its root plus the project's files. It is named by
//! the sha256 of its bytes ([`digest_of`]) and signed with ed25519 over that digest
//! ([`sign`]). An agent calls [`verify`] against its [`TrustedKeys`] *before* touching the
//! archive, then [`extract`]s it with every entry checked up front (no path escapes, no device
//! files, no writes through symlinks, sizes counted while decompressing).
//!
//! This crate deliberately knows nothing about what is inside `manifest.json` (that is
//! `morel-manifest`), where bundles are stored or fetched from, or HTTP; it never runs
//! anything it extracts. It is Unix-only: bundles carry Unix permission bits and symlinks.
//!
//! ```no_run
//! # fn main() -> Result<(), morel_bundle::BundleError> {
//! use morel_bundle::*;
//! let key = SigningKey::load_or_generate("keys/signing.key".as_ref())?;
//! let packed = pack_dir("my-app".as_ref(), br#"{"name":"my-app"}"#, &PackLimits::default())?;
//! let signature = sign(&packed.digest, &key);
//!
//! let trusted = TrustedKeys::from_iter([key.public()]);
//! verify(&packed.bytes, Some(&packed.digest), &signature, &trusted)?;
//! extract(&packed.bytes, "/srv/morel/bundles/x".as_ref(), &ExtractLimits::default())?;
//! # Ok(()) }
//! ```

#[cfg(not(unix))]
compile_error!("morel-bundle supports Unix only: bundles carry Unix permission bits and symlinks");

mod error;
mod extract;
mod keys;
mod pack;
mod sign;

pub use error::{BundleError, NameProblem};
pub use extract::{
    ExtractLimits, Extracted, TreeCheck, extract, read_entry, read_untrusted_zip, tree_digest,
};
pub use keys::{PublicKey, SigningKey, TrustedKeys};
pub use pack::{MANIFEST_NAME, PackLimits, Packed, pack_dir, pack_files};
pub use sign::{Signature, digest_of, sign, verify};
