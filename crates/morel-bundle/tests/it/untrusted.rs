use morel_bundle::{BundleError, ExtractLimits, read_untrusted_zip};

use crate::support::{add_file, opts, zip_with};

fn sorted(mut files: Vec<(String, Vec<u8>, bool)>) -> Vec<(String, Vec<u8>, bool)> {
    files.sort();
    files
}

#[test]
fn strips_a_single_top_level_directory() {
    let bytes = zip_with(|z| {
        z.add_directory("proj/", opts()).unwrap();
        z.add_directory("proj/src/", opts()).unwrap();
        add_file(z, "proj/app.py", b"print(1)");
        z.start_file("proj/src/run.sh", opts().unix_permissions(0o755))
            .unwrap();
        std::io::Write::write_all(z, b"#!/bin/sh").unwrap();
        add_file(z, "__MACOSX/proj/._app.py", b"resource fork");
    });
    let files = read_untrusted_zip(&bytes, &ExtractLimits::default()).unwrap();
    assert_eq!(
        sorted(files),
        [
            ("app.py".to_owned(), b"print(1)".to_vec(), false),
            ("src/run.sh".to_owned(), b"#!/bin/sh".to_vec(), true),
        ]
    );
}

#[test]
fn keeps_paths_when_there_is_more_than_one_root() {
    let bytes = zip_with(|z| {
        add_file(z, "proj/app.py", b"1");
        add_file(z, "README.md", b"2");
    });
    let files = read_untrusted_zip(&bytes, &ExtractLimits::default()).unwrap();
    let names: Vec<String> = sorted(files).into_iter().map(|f| f.0).collect();
    assert_eq!(names, ["README.md", "proj/app.py"]);

    // A single top-level *file* is not a directory to strip.
    let bytes = zip_with(|z| add_file(z, "app.py", b"1"));
    let files = read_untrusted_zip(&bytes, &ExtractLimits::default()).unwrap();
    assert_eq!(files[0].0, "app.py");
}

#[test]
fn applies_the_same_safety_checks() {
    let bytes = zip_with(|z| add_file(z, "proj/../../evil", b"x"));
    assert!(matches!(
        read_untrusted_zip(&bytes, &ExtractLimits::default()),
        Err(BundleError::UnsafeEntryName { .. })
    ));

    let bytes = zip_with(|z| {
        add_file(z, "proj/a", b"x");
        z.add_symlink("proj/link", "a", opts()).unwrap();
    });
    let err = read_untrusted_zip(&bytes, &ExtractLimits::default()).unwrap_err();
    assert!(
        matches!(&err, BundleError::SymlinkNotAllowed { entry } if entry == "proj/link"),
        "{err:?}"
    );

    let bytes = zip_with(|z| add_file(z, "big", &vec![0u8; 5000]));
    let limits = ExtractLimits {
        max_files: 10,
        max_bytes: 4000,
        max_file_bytes: 10_000,
    };
    assert!(matches!(
        read_untrusted_zip(&bytes, &limits),
        Err(BundleError::TooLarge { limit: 4000 })
    ));
}
