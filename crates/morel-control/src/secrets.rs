//! Secrets at rest: values are sealed with ChaCha20-Poly1305 under the installation's secrets
//! key. Each sealed value is bound to its slot (app, environment, name) as associated data, so
//! a ciphertext copied to another slot does not open. Plain values exist only in memory, on
//! their way into an instance's environment; [`SecretValue`] keeps them out of logs.
//!
//! The secrets key lives in the store, sealed by a key-encryption key (KEK) that only servers
//! hold: a file (`MOREL_KEK_FILE`, default `STATE/keys/kek.key`, 64 hex digits, created on
//! first start). Every server of one database must have the same KEK file; a server whose KEK
//! does not open the store's key refuses to start ([`SecretBox::share_via_store`]). A state
//! directory from before the store held the key keeps its `keys/secrets.key` as the key.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret key file {path}: {source}")]
    KeyFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("secret key file {0} is not 64 hex digits")]
    BadKeyFile(PathBuf),
    #[error("no randomness available: {0}")]
    Random(String),
    #[error("a sealed value of {0} does not open with this server's secret key")]
    Open(String),
    #[error(
        "the store's secrets key does not open with the key-encryption key {0}: give every \
         server of this database the same KEK file (MOREL_KEK_FILE)"
    )]
    WrongKek(PathBuf),
    #[error("reading or recording the secrets key in the store: {0}")]
    Store(#[from] morel_store::StoreError),
}

/// The platform setting holding the secrets key sealed by the KEK.
pub const SECRETS_KEY_SETTING: &str = "secrets_key_sealed";
/// The associated data of the sealed secrets key.
const SECRETS_KEY_AAD: &str = "morel secrets key";

/// A secret's plain value. Its `Debug` never shows the value.
#[derive(Clone, serde::Deserialize)]
#[serde(transparent)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn new(v: String) -> Self {
        SecretValue(v)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Seals and opens secret values with the state directory's key (created on first use).
pub struct SecretBox {
    path: PathBuf,
    key: Mutex<Option<[u8; 32]>>,
}

impl SecretBox {
    pub fn new(path: PathBuf) -> Self {
        SecretBox {
            path,
            key: Mutex::new(None),
        }
    }

    fn cipher(&self) -> Result<ChaCha20Poly1305, SecretError> {
        let mut slot = self.key.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(self.load_or_create()?);
        }
        let key = slot
            .as_ref()
            .ok_or_else(|| SecretError::BadKeyFile(self.path.clone()))?;
        Ok(ChaCha20Poly1305::new(Key::from_slice(key)))
    }

    fn load_or_create(&self) -> Result<[u8; 32], SecretError> {
        key_file(&self.path)
    }

    /// Makes this box use the installation's secrets key from the store, opened with the KEK
    /// in `kek_path` (created if missing). The first server to start records the key: this
    /// state directory's `keys/secrets.key` when it has one (so existing secrets keep
    /// opening), else a new random key that exists on disk only sealed.
    pub async fn share_via_store(
        &self,
        store: &dyn morel_store::Store,
        kek_path: &std::path::Path,
    ) -> Result<(), SecretError> {
        let kek = ChaCha20Poly1305::new(Key::from_slice(&key_file(kek_path)?));
        let sealed = match store.get_setting(SECRETS_KEY_SETTING).await? {
            Some(s) => s,
            None => {
                let key = match std::fs::read_to_string(&self.path) {
                    Ok(_) => self.load_or_create()?,
                    Err(_) => random_key()?,
                };
                let sealed = seal_with(&kek, SECRETS_KEY_AAD, &key)?;
                store
                    .put_setting_if_absent(SECRETS_KEY_SETTING, &sealed)
                    .await?
            }
        };
        let key: [u8; 32] = open_with(&kek, SECRETS_KEY_AAD, &sealed)
            .ok()
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| SecretError::WrongKek(kek_path.to_owned()))?;
        *self.key.lock().unwrap_or_else(|e| e.into_inner()) = Some(key);
        Ok(())
    }

    /// Seals `plain` for the slot named by `aad`: base64 of nonce ‖ ciphertext.
    pub fn seal(&self, aad: &str, plain: &[u8]) -> Result<String, SecretError> {
        seal_with(&self.cipher()?, aad, plain)
    }

    pub fn open(&self, aad: &str, sealed: &str) -> Result<Vec<u8>, SecretError> {
        open_with(&self.cipher()?, aad, sealed)
    }
}

fn random_key() -> Result<[u8; 32], SecretError> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| SecretError::Random(e.to_string()))?;
    Ok(key)
}

/// A 32-byte key kept as 64 hex digits in a file (mode 0600), created on first use.
fn key_file(path: &std::path::Path) -> Result<[u8; 32], SecretError> {
    let io = |source| SecretError::KeyFile {
        path: path.to_owned(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let bytes =
                hex::decode(text.trim()).map_err(|_| SecretError::BadKeyFile(path.to_owned()))?;
            bytes
                .try_into()
                .map_err(|_| SecretError::BadKeyFile(path.to_owned()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = random_key()?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(io)?;
            f.write_all(format!("{}\n", hex::encode(key)).as_bytes())
                .map_err(io)?;
            f.sync_all().map_err(io)?;
            Ok(key)
        }
        Err(e) => Err(io(e)),
    }
}

/// Seals `plain` for the slot named by `aad`: base64 of nonce ‖ ciphertext.
fn seal_with(cipher: &ChaCha20Poly1305, aad: &str, plain: &[u8]) -> Result<String, SecretError> {
    {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| SecretError::Random(e.to_string()))?;
        let ct = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Open(aad.to_owned()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(base64::engine::general_purpose::STANDARD.encode(out))
    }
}

fn open_with(cipher: &ChaCha20Poly1305, aad: &str, sealed: &str) -> Result<Vec<u8>, SecretError> {
    {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .map_err(|_| SecretError::Open(aad.to_owned()))?;
        if bytes.len() < NONCE_LEN {
            return Err(SecretError::Open(aad.to_owned()));
        }
        let (nonce, ct) = bytes.split_at(NONCE_LEN);
        cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Open(aad.to_owned()))
    }
}

/// The associated data naming a secret's slot.
pub fn secret_aad(app: &morel_store::AppKey, env: &str, name: &str) -> String {
    format!("secret/{}/{}/{env}/{name}", app.namespace, app.name)
}

/// The associated data naming a certificate key's slot.
pub fn cert_key_aad(app: &morel_store::AppKey, env: &str) -> String {
    format!("cert-key/{}/{}/{env}", app.namespace, app.name)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn seals_opens_and_binds_to_the_slot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/secrets.key");
        let b = SecretBox::new(path.clone());
        let sealed = b.seal("a", b"hunter2").unwrap();
        assert!(!sealed.contains("hunter2"));
        assert_eq!(b.open("a", &sealed).unwrap(), b"hunter2");
        assert!(
            b.open("b", &sealed).is_err(),
            "a value must not open in another slot"
        );
        // A second box on the same file (a restart) opens it; another key does not.
        assert_eq!(SecretBox::new(path).open("a", &sealed).unwrap(), b"hunter2");
        let other = SecretBox::new(dir.path().join("other.key"));
        assert!(other.open("a", &sealed).is_err());
        assert_eq!(format!("{:?}", SecretValue::new("x".into())), "<redacted>");
    }
}
