//! Detached signatures over a bundle's digest.
//!
//! The signed message is `morel-bundle-v1:` followed by the digest's hex, so a signature can
//! never be replayed as a signature over some other kind of Morel message.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use morel_core::Digest;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::{BundleError, SigningKey, TrustedKeys};

const DOMAIN: &str = "morel-bundle-v1:";

/// A detached signature: which key signed, and the base64 ed25519 signature.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    pub key_id: String,
    /// Standard base64 (with padding) of the 64 signature bytes.
    pub signature: String,
}

impl Signature {
    /// `<key_id>:<base64 signature>`, suitable for an HTTP header value.
    pub fn to_header(&self) -> String {
        format!("{}:{}", self.key_id, self.signature)
    }

    /// Parses [`Signature::to_header`] output, checking the shape of both halves.
    pub fn from_header(s: &str) -> Result<Self, BundleError> {
        let malformed = |reason: &str| BundleError::MalformedSignature {
            reason: reason.to_owned(),
        };
        let (key_id, signature) = s
            .trim()
            .split_once(':')
            .ok_or_else(|| malformed("expected \"<key id>:<base64 signature>\""))?;
        if key_id.len() != 16
            || !key_id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(malformed("the key id is not 16 lowercase hex characters"));
        }
        let sig = Self {
            key_id: key_id.to_owned(),
            signature: signature.to_owned(),
        };
        sig.decode()?;
        Ok(sig)
    }

    fn decode(&self) -> Result<ed25519_dalek::Signature, BundleError> {
        let bytes =
            BASE64
                .decode(&self.signature)
                .map_err(|_| BundleError::MalformedSignature {
                    reason: "the signature is not valid base64".to_owned(),
                })?;
        let bytes: [u8; 64] = bytes
            .try_into()
            .map_err(|_| BundleError::MalformedSignature {
                reason: "the signature is not 64 bytes long".to_owned(),
            })?;
        Ok(ed25519_dalek::Signature::from_bytes(&bytes))
    }
}

fn message(digest: &Digest) -> Vec<u8> {
    format!("{DOMAIN}{}", digest.as_str()).into_bytes()
}

/// Signs a bundle digest.
pub fn sign(digest: &Digest, key: &SigningKey) -> Signature {
    let signature = key.sign_message(&message(digest));
    Signature {
        key_id: key.key_id(),
        signature: BASE64.encode(signature.to_bytes()),
    }
}

/// The sha256 digest of a bundle's bytes.
pub fn digest_of(bytes: &[u8]) -> Digest {
    Digest::from_sha256(Sha256::digest(bytes).into())
}

/// Checks that sha256(bytes) equals `expected` (when given) and that `sig` is a valid signature
/// over that digest by a key in `trusted`. Returns the digest.
///
/// Checks run in that order, so a corrupted download reports [`BundleError::DigestMismatch`]
/// rather than a confusing signature failure.
pub fn verify(
    bytes: &[u8],
    expected: Option<&Digest>,
    sig: &Signature,
    trusted: &TrustedKeys,
) -> Result<Digest, BundleError> {
    let actual = digest_of(bytes);
    if let Some(expected) = expected
        && *expected != actual
    {
        return Err(BundleError::DigestMismatch {
            expected: expected.clone(),
            actual,
        });
    }
    let key = trusted
        .get(&sig.key_id)
        .ok_or_else(|| BundleError::UnknownKey {
            key_id: sig.key_id.clone(),
        })?;
    let signature = sig.decode()?;
    if !key.verify_message(&message(&actual), &signature) {
        return Err(BundleError::BadSignature {
            key_id: sig.key_id.clone(),
        });
    }
    Ok(actual)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // panicking is how a test fails
mod tests {
    use super::*;

    fn setup() -> (SigningKey, TrustedKeys) {
        let key = SigningKey::generate().unwrap();
        let trusted = TrustedKeys::from_iter([key.public()]);
        (key, trusted)
    }

    #[test]
    fn round_trip() {
        let (key, trusted) = setup();
        let bytes = b"bundle bytes".to_vec();
        let digest = digest_of(&bytes);
        let sig = sign(&digest, &key);
        assert_eq!(sig.key_id, key.key_id());
        assert_eq!(
            verify(&bytes, Some(&digest), &sig, &trusted).unwrap(),
            digest
        );
        assert_eq!(verify(&bytes, None, &sig, &trusted).unwrap(), digest);
    }

    #[test]
    fn digest_is_sha256_hex() {
        assert_eq!(
            digest_of(b"").as_str(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn signature_is_bound_to_the_domain_prefix() {
        let (key, _) = setup();
        let digest = digest_of(b"x");
        let sig = sign(&digest, &key);
        // A signature over the bare digest hex must not be what `sign` produced.
        let bare = key.sign_message(digest.as_str().as_bytes());
        assert_ne!(sig.signature, BASE64.encode(bare.to_bytes()));
    }

    #[test]
    fn tampering_is_detected() {
        let (key, trusted) = setup();
        let bytes = b"bundle bytes".to_vec();
        let digest = digest_of(&bytes);
        let sig = sign(&digest, &key);
        let mut tampered = bytes.clone();
        tampered[0] ^= 1;
        assert!(matches!(
            verify(&tampered, Some(&digest), &sig, &trusted),
            Err(BundleError::DigestMismatch { expected, actual }) if expected == digest && actual == digest_of(&tampered)
        ));
        assert!(matches!(
            verify(&tampered, None, &sig, &trusted),
            Err(BundleError::BadSignature { key_id }) if key_id == key.key_id()
        ));
    }

    #[test]
    fn untrusted_and_malformed_signatures() {
        let (key, _) = setup();
        let bytes = b"bundle".to_vec();
        let sig = sign(&digest_of(&bytes), &key);
        let other = TrustedKeys::from_iter([SigningKey::generate().unwrap().public()]);
        let err = verify(&bytes, None, &sig, &other).unwrap_err();
        assert!(matches!(&err, BundleError::UnknownKey { key_id } if *key_id == key.key_id()));
        assert!(err.is_client_error());

        // A trusted key id paired with a signature made by another key.
        let (_, trusted) = setup();
        let forged = Signature {
            key_id: trusted.iter().next().unwrap().key_id(),
            signature: sig.signature.clone(),
        };
        assert!(matches!(
            verify(&bytes, None, &forged, &trusted),
            Err(BundleError::BadSignature { .. })
        ));

        let garbage = Signature {
            key_id: forged.key_id.clone(),
            signature: "not base64!".into(),
        };
        assert!(matches!(
            verify(&bytes, None, &garbage, &trusted),
            Err(BundleError::MalformedSignature { .. })
        ));
    }

    #[test]
    fn header_round_trip_and_rejects() {
        let (key, _) = setup();
        let sig = sign(&digest_of(b"x"), &key);
        let header = sig.to_header();
        assert_eq!(header.split_once(':').unwrap().0, key.key_id());
        assert_eq!(Signature::from_header(&header).unwrap(), sig);
        for bad in [
            "",
            "nocolon",
            "XYZ:AAAA",
            &format!("{}:AAAA", key.key_id()),
            &format!("{}:!!", key.key_id()),
        ] {
            assert!(
                matches!(
                    Signature::from_header(bad),
                    Err(BundleError::MalformedSignature { .. })
                ),
                "{bad:?} should be rejected"
            );
        }
    }
}
