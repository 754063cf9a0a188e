use morel_bundle::{
    BundleError, ExtractLimits, PackLimits, Signature, SigningKey, TrustedKeys, digest_of, extract,
    pack_dir, sign, verify,
};

use crate::support::{Sandbox, write_tree};

fn packed_bundle() -> (Vec<u8>, morel_core::Digest) {
    let tmp = tempfile::tempdir().unwrap();
    write_tree(tmp.path(), &[("app.py", "print('hi')\n")]);
    let packed = pack_dir(tmp.path(), b"{}", &PackLimits::default()).unwrap();
    (packed.bytes, packed.digest)
}

#[test]
fn sign_verify_extract_round_trip_through_a_header() {
    let (bytes, digest) = packed_bundle();
    assert_eq!(digest_of(&bytes), digest);
    let key = SigningKey::generate().unwrap();
    let header = sign(&digest, &key).to_header();

    let trusted = TrustedKeys::from_iter([key.public()]);
    let sig = Signature::from_header(&header).unwrap();
    assert_eq!(
        verify(&bytes, Some(&digest), &sig, &trusted).unwrap(),
        digest
    );

    let sandbox = Sandbox::new();
    let extracted = extract(&bytes, &sandbox.dest, &ExtractLimits::default()).unwrap();
    assert_eq!(extracted.files, 2);
    assert_eq!(
        std::fs::read_to_string(sandbox.dest.join("app.py")).unwrap(),
        "print('hi')\n"
    );
}

#[test]
fn a_tampered_byte_fails_verification() {
    let (bytes, digest) = packed_bundle();
    let key = SigningKey::generate().unwrap();
    let sig = sign(&digest, &key);
    let trusted = TrustedKeys::from_iter([key.public()]);

    let mut tampered = bytes.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x01;

    let err = verify(&tampered, Some(&digest), &sig, &trusted).unwrap_err();
    assert!(
        matches!(&err, BundleError::DigestMismatch { expected, .. } if *expected == digest),
        "{err:?}"
    );
    assert!(err.is_client_error());

    let err = verify(&tampered, None, &sig, &trusted).unwrap_err();
    assert!(matches!(&err, BundleError::BadSignature { key_id } if *key_id == key.key_id()));
    assert_eq!(
        err.to_string(),
        format!(
            "signature by key {} does not match the bundle",
            key.key_id()
        )
    );
}

#[test]
fn an_unknown_key_is_refused_with_a_hint() {
    let (bytes, digest) = packed_bundle();
    let key = SigningKey::generate().unwrap();
    let sig = sign(&digest, &key);
    let trusted = TrustedKeys::from_iter([SigningKey::generate().unwrap().public()]);
    let err = verify(&bytes, Some(&digest), &sig, &trusted).unwrap_err();
    assert!(matches!(&err, BundleError::UnknownKey { key_id } if *key_id == key.key_id()));
    assert!(err.to_string().contains("morel keys trust"));
    assert!(matches!(
        verify(&bytes, None, &sig, &TrustedKeys::new()),
        Err(BundleError::UnknownKey { .. })
    ));
}

#[test]
fn signature_serializes_as_json() {
    let key = SigningKey::generate().unwrap();
    let sig = sign(&digest_of(b"x"), &key);
    let json = serde_json::to_string(&sig).unwrap();
    assert!(json.contains("\"key_id\""));
    assert_eq!(serde_json::from_str::<Signature>(&json).unwrap(), sig);
}
