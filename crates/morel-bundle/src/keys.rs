//! Ed25519 signing keys, their public halves, and the set of keys an agent trusts.
//!
//! Both halves have a one-line text form with a version tag so a file can be recognised (and
//! a future format told apart): `morel-secret-key-v1 <base64>` and `morel-public-key-v1 <base64>`.
//! A key is referred to by its key id, the first 16 hex characters of sha256(public key bytes).

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest as _, Sha256};

use crate::BundleError;

const SECRET_TAG: &str = "morel-secret-key-v1";
const PUBLIC_TAG: &str = "morel-public-key-v1";

/// A secret ed25519 key that signs bundles. `Debug` shows only the key id.
#[derive(Clone)]
pub struct SigningKey {
    inner: ed25519_dalek::SigningKey,
}

/// The public half of a [`SigningKey`], used to verify signatures.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    inner: ed25519_dalek::VerifyingKey,
}

impl SigningKey {
    /// A fresh key from the operating system's random number generator.
    pub fn generate() -> Result<Self, BundleError> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|source| BundleError::Random { source })?;
        let key = Self {
            inner: ed25519_dalek::SigningKey::from_bytes(&secret),
        };
        // The dalek key zeroizes its own copy on drop; clear ours too.
        secret.fill(0);
        Ok(key)
    }

    pub fn public(&self) -> PublicKey {
        PublicKey {
            inner: self.inner.verifying_key(),
        }
    }

    pub fn key_id(&self) -> String {
        self.public().key_id()
    }

    /// The key file content: `morel-secret-key-v1 <base64 of the 32 secret bytes>\n`.
    pub fn to_file_string(&self) -> String {
        format!("{SECRET_TAG} {}\n", BASE64.encode(self.inner.as_bytes()))
    }

    pub fn from_file_string(s: &str) -> Result<Self, BundleError> {
        Self::parse(s).map_err(|reason| BundleError::InvalidKey {
            what: "secret key".to_owned(),
            reason: reason.to_owned(),
        })
    }

    fn parse(s: &str) -> Result<Self, &'static str> {
        let bytes = parse_tagged(s, SECRET_TAG)?;
        Ok(Self {
            inner: ed25519_dalek::SigningKey::from_bytes(&bytes),
        })
    }

    /// Reads a key file written by [`SigningKey::save`]. Errors name the path.
    pub fn load(path: &Path) -> Result<Self, BundleError> {
        let text = fs::read_to_string(path).map_err(|source| BundleError::KeyFile {
            action: "read",
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|reason| BundleError::InvalidKey {
            what: format!("secret key file {}", path.display()),
            reason: reason.to_owned(),
        })
    }

    /// Writes the key file, creating missing parent directories (mode 0700). The file is
    /// created with mode 0600 so the secret is never readable by others, even briefly.
    pub fn save(&self, path: &Path) -> Result<(), BundleError> {
        create_parent(path)?;
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true).mode(0o600);
        self.write_with(path, &options)
    }

    /// Loads the key at `path`, or generates and saves a new one if there is no file yet.
    ///
    /// The new file is created with `O_EXCL`, so when two processes race, exactly one key
    /// wins and the loser loads it.
    pub fn load_or_generate(path: &Path) -> Result<Self, BundleError> {
        match fs::symlink_metadata(path) {
            Ok(_) => return Self::load(path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(BundleError::KeyFile {
                    action: "read",
                    path: path.to_owned(),
                    source,
                });
            }
        }
        let key = Self::generate()?;
        create_parent(path)?;
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true).mode(0o600);
        match key.write_with(path, &options) {
            Ok(()) => {
                tracing::info!(path = %path.display(), key_id = %key.key_id(), "generated a new signing key");
                Ok(key)
            }
            Err(BundleError::KeyFile { source, .. })
                if source.kind() == io::ErrorKind::AlreadyExists =>
            {
                Self::load(path)
            }
            Err(e) => Err(e),
        }
    }

    fn write_with(&self, path: &Path, options: &fs::OpenOptions) -> Result<(), BundleError> {
        let key_file_error = |source| BundleError::KeyFile {
            action: "write",
            path: path.to_owned(),
            source,
        };
        let mut file = options.open(path).map_err(key_file_error)?;
        // `mode` only applies to newly created files; tighten an existing one too.
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(key_file_error)?;
        file.write_all(self.to_file_string().as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(key_file_error)
    }

    pub(crate) fn sign_message(&self, message: &[u8]) -> ed25519_dalek::Signature {
        use ed25519_dalek::Signer;
        self.inner.sign(message)
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", &self.key_id())
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl PublicKey {
    /// The first 16 hex characters of sha256 of the 32 public key bytes.
    pub fn key_id(&self) -> String {
        let hash = Sha256::digest(self.inner.as_bytes());
        let mut id = hex::encode(hash);
        id.truncate(16);
        id
    }

    /// `morel-public-key-v1 <base64 of the 32 public bytes>`, one line, no newline.
    pub fn to_text(&self) -> String {
        format!("{PUBLIC_TAG} {}", BASE64.encode(self.inner.as_bytes()))
    }

    /// Parses [`PublicKey::to_text`] output; surrounding whitespace is ignored.
    pub fn from_text(s: &str) -> Result<Self, BundleError> {
        let invalid = |reason: &str| BundleError::InvalidKey {
            what: "public key".to_owned(),
            reason: reason.to_owned(),
        };
        let bytes = parse_tagged(s, PUBLIC_TAG).map_err(invalid)?;
        let inner = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .map_err(|_| invalid("the bytes are not a valid ed25519 public key"))?;
        Ok(Self { inner })
    }

    pub(crate) fn verify_message(
        &self,
        message: &[u8],
        signature: &ed25519_dalek::Signature,
    ) -> bool {
        self.inner.verify_strict(message, signature).is_ok()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.key_id())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl FromStr for PublicKey {
    type Err = BundleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_text(s)
    }
}

/// A set of trusted public keys (by key id). Agents accept a bundle only when it is signed by
/// one of these.
#[derive(Clone, Debug, Default)]
pub struct TrustedKeys {
    keys: BTreeMap<String, PublicKey>,
}

impl TrustedKeys {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key; returns false if a key with that id was already trusted.
    pub fn insert(&mut self, key: PublicKey) -> bool {
        self.keys.insert(key.key_id(), key).is_none()
    }

    pub fn contains(&self, key_id: &str) -> bool {
        self.keys.contains_key(key_id)
    }

    pub fn get(&self, key_id: &str) -> Option<&PublicKey> {
        self.keys.get(key_id)
    }

    /// The keys in key-id order.
    pub fn iter(&self) -> impl Iterator<Item = &PublicKey> {
        self.keys.values()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl FromIterator<PublicKey> for TrustedKeys {
    fn from_iter<I: IntoIterator<Item = PublicKey>>(iter: I) -> Self {
        let mut keys = Self::new();
        for key in iter {
            keys.insert(key);
        }
        keys
    }
}

/// Parses `<tag> <base64 of 32 bytes>`. The reason never includes the input, which may be secret.
fn parse_tagged(s: &str, tag: &str) -> Result<[u8; 32], &'static str> {
    let (found_tag, encoded) = s
        .trim()
        .split_once(' ')
        .ok_or("expected \"<kind> <base64>\" on one line")?;
    if found_tag != tag {
        return Err(if found_tag.starts_with("morel-") {
            "wrong key kind or unsupported key format version"
        } else {
            "not a Morel key (missing the morel-…-key-v1 prefix)"
        });
    }
    let bytes = BASE64
        .decode(encoded.trim())
        .map_err(|_| "the key is not valid base64")?;
    bytes.try_into().map_err(|_| "the key is not 32 bytes long")
}

fn create_parent(path: &Path) -> Result<(), BundleError> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|source| BundleError::KeyFile {
                action: "create the directory of",
                path: path.to_owned(),
                source,
            }),
        _ => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // panicking is how a test fails
mod tests {
    use super::*;

    #[test]
    fn text_forms_round_trip() {
        let key = SigningKey::generate().unwrap();
        let again = SigningKey::from_file_string(&key.to_file_string()).unwrap();
        assert_eq!(again.public(), key.public());
        assert!(key.to_file_string().starts_with("morel-secret-key-v1 "));
        assert!(key.to_file_string().ends_with('\n'));

        let public = key.public();
        let text = format!("  {}\n", public.to_text());
        assert_eq!(PublicKey::from_text(&text).unwrap(), public);
        assert!(public.to_text().starts_with("morel-public-key-v1 "));
    }

    #[test]
    fn key_id_is_16_hex_of_sha256_of_public_bytes() {
        let key = SigningKey::generate().unwrap();
        let id = key.key_id();
        assert_eq!(id.len(), 16);
        let expected = hex::encode(Sha256::digest(key.public().inner.as_bytes()));
        assert_eq!(id, expected[..16]);
        assert_ne!(id, SigningKey::generate().unwrap().key_id());
    }

    #[test]
    fn rejects_wrong_kind_and_garbage_without_echoing_it() {
        let key = SigningKey::generate().unwrap();
        let secret_line = key.to_file_string();
        let err = PublicKey::from_text(&secret_line).unwrap_err();
        assert!(matches!(err, BundleError::InvalidKey { .. }));
        assert!(!err.to_string().contains(secret_line.trim()));
        assert!(SigningKey::from_file_string("morel-secret-key-v1 !!!").is_err());
        assert!(SigningKey::from_file_string("morel-secret-key-v1 AAAA").is_err());
        assert!(SigningKey::from_file_string("").is_err());
    }

    #[test]
    fn debug_redacts_the_secret() {
        let key = SigningKey::generate().unwrap();
        let debug = format!("{key:?}");
        let encoded = BASE64.encode(key.inner.as_bytes());
        assert!(!debug.contains(&encoded));
        assert!(debug.contains(&key.key_id()));
        assert!(debug.contains("redacted"));
    }

    #[test]
    fn trusted_keys_by_id() {
        let a = SigningKey::generate().unwrap().public();
        let b = SigningKey::generate().unwrap().public();
        let mut trusted = TrustedKeys::new();
        assert!(trusted.is_empty());
        assert!(trusted.insert(a.clone()));
        assert!(!trusted.insert(a.clone()));
        assert!(trusted.contains(&a.key_id()));
        assert!(!trusted.contains(&b.key_id()));
        assert_eq!(trusted.get(&a.key_id()), Some(&a));
        trusted.insert(b);
        assert_eq!(trusted.len(), 2);
        assert_eq!(trusted.iter().count(), 2);
    }
}
