use std::fs;
use std::os::unix::fs::PermissionsExt;

use morel_bundle::{BundleError, PublicKey, SigningKey};

#[test]
fn key_file_round_trip_with_private_permissions() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("nested/keys/signing.key");
    let key = SigningKey::generate().unwrap();
    key.save(&path).unwrap();

    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = fs::read_to_string(&path).unwrap();
    assert_eq!(text, key.to_file_string());

    let loaded = SigningKey::load(&path).unwrap();
    assert_eq!(loaded.key_id(), key.key_id());
    assert_eq!(loaded.public(), key.public());
}

#[test]
fn save_tightens_an_existing_world_readable_file() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("signing.key");
    fs::write(&path, "old").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let key = SigningKey::generate().unwrap();
    key.save(&path).unwrap();
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(SigningKey::load(&path).unwrap().key_id(), key.key_id());
}

#[test]
fn load_or_generate_creates_once_then_reuses() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("state/signing.key");
    let first = SigningKey::load_or_generate(&path).unwrap();
    assert!(path.exists());
    let second = SigningKey::load_or_generate(&path).unwrap();
    assert_eq!(first.key_id(), second.key_id());
}

#[test]
fn load_errors_name_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing.key");
    let err = SigningKey::load(&missing).unwrap_err();
    assert!(matches!(err, BundleError::KeyFile { .. }));
    assert!(err.to_string().contains("missing.key"), "{err}");
    assert!(!err.is_client_error());

    let garbage = tmp.path().join("garbage.key");
    fs::write(&garbage, "hello world").unwrap();
    let err = SigningKey::load(&garbage).unwrap_err();
    assert!(matches!(err, BundleError::InvalidKey { .. }));
    assert!(err.to_string().contains("garbage.key"), "{err}");

    // A public key where a secret key is expected.
    let public = tmp.path().join("public.key");
    fs::write(&public, SigningKey::generate().unwrap().public().to_text()).unwrap();
    assert!(SigningKey::load(&public).is_err());
}

#[test]
fn public_key_text_round_trip() {
    let public = SigningKey::generate().unwrap().public();
    let parsed: PublicKey = format!("\n{}\n", public.to_text()).parse().unwrap();
    assert_eq!(parsed, public);
    assert_eq!(parsed.key_id(), public.key_id());
    assert!(PublicKey::from_text("morel-public-key-v1 AAAA").is_err());
}
