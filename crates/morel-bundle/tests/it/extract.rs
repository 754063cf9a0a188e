//! Malicious archives: each must be refused with an error naming the entry, leaving nothing
//! behind (no dest, no temporary directory, nothing outside).

use std::fs;
use std::io::Write;

use morel_bundle::{BundleError, ExtractLimits, NameProblem, extract, pack_files, read_entry};

use crate::support::{
    Sandbox, add_file, opts, replace_bytes, set_uncompressed_size, set_unix_mode, zip_with,
};

/// Extracts `bytes` into a fresh sandbox, expects failure and checks nothing was written.
fn refused(bytes: &[u8], limits: &ExtractLimits) -> BundleError {
    let sandbox = Sandbox::new();
    let err = extract(bytes, &sandbox.dest, limits).expect_err("extraction should fail");
    sandbox.assert_untouched();
    assert!(err.is_client_error(), "{err:?} should be a client error");
    err
}

fn refused_default(bytes: &[u8]) -> BundleError {
    refused(bytes, &ExtractLimits::default())
}

fn unsafe_name(err: &BundleError) -> Option<(&str, NameProblem)> {
    match err {
        BundleError::UnsafeEntryName { entry, problem } => Some((entry.as_str(), *problem)),
        _ => None,
    }
}

#[test]
fn a_good_archive_extracts() {
    let bytes = zip_with(|z| {
        z.add_directory("dir/", opts()).unwrap();
        add_file(z, "dir/a.txt", b"a");
        add_file(z, "b.txt", b"bb");
    });
    let sandbox = Sandbox::new();
    let extracted = extract(&bytes, &sandbox.dest, &ExtractLimits::default()).unwrap();
    assert_eq!(extracted.files, 2);
    assert_eq!(extracted.bytes, 3);
    assert_eq!(fs::read(sandbox.dest.join("dir/a.txt")).unwrap(), b"a");
    // Only dest was created next to it.
    assert_eq!(crate::support::listing(&sandbox.root), ["out"]);
}

#[test]
fn an_existing_empty_dest_is_filled_but_a_non_empty_one_is_refused() {
    let bytes = pack_files(vec![("a".into(), b"1".to_vec(), false)], b"{}")
        .unwrap()
        .bytes;
    let sandbox = Sandbox::new();
    fs::create_dir(&sandbox.dest).unwrap();
    extract(&bytes, &sandbox.dest, &ExtractLimits::default()).unwrap();
    assert_eq!(fs::read(sandbox.dest.join("a")).unwrap(), b"1");

    let err = extract(&bytes, &sandbox.dest, &ExtractLimits::default()).unwrap_err();
    assert!(matches!(err, BundleError::BadDestination { .. }), "{err:?}");
    assert!(!err.is_client_error());
    assert_eq!(
        crate::support::listing(&sandbox.dest),
        ["a", "manifest.json"]
    );
    assert_eq!(crate::support::listing(&sandbox.root), ["out"]);
}

#[test]
fn parent_dir_escape() {
    let bytes = zip_with(|z| {
        add_file(z, "ok.txt", b"fine");
        add_file(z, "../evil", b"pwned");
    });
    let err = refused_default(&bytes);
    assert_eq!(unsafe_name(&err), Some(("../evil", NameProblem::Escapes)));
    assert_eq!(
        err.to_string(),
        r#"bundle entry "../evil" escapes the extraction directory"#
    );
}

#[test]
fn nested_parent_dir_escape() {
    let bytes = zip_with(|z| add_file(z, "a/../../evil", b"pwned"));
    let err = refused_default(&bytes);
    assert_eq!(
        unsafe_name(&err),
        Some(("a/../../evil", NameProblem::Escapes))
    );
}

#[test]
fn absolute_path() {
    let bytes = zip_with(|z| add_file(z, "/abs/path", b"pwned"));
    let err = refused_default(&bytes);
    assert_eq!(
        unsafe_name(&err),
        Some(("/abs/path", NameProblem::Absolute))
    );
}

#[test]
fn windows_tricks() {
    for (name, problem) in [
        ("..\\evil", NameProblem::Backslash),
        ("dir\\..\\..\\evil", NameProblem::Backslash),
        ("C:/Windows/evil", NameProblem::DrivePrefix),
        ("C:evil", NameProblem::DrivePrefix),
    ] {
        let bytes = zip_with(|z| add_file(z, name, b"pwned"));
        let err = refused_default(&bytes);
        assert_eq!(unsafe_name(&err), Some((name, problem)));
    }
}

#[test]
fn symlink_to_an_absolute_path() {
    let bytes = zip_with(|z| {
        add_file(z, "lib/real", b"x");
        z.add_symlink("lib/link", "/etc/passwd", opts()).unwrap();
    });
    let err = refused_default(&bytes);
    assert!(
        matches!(&err, BundleError::SymlinkOutside { entry, target } if entry == "lib/link" && target == "/etc/passwd"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        r#"bundle entry "lib/link" is a symlink to "/etc/passwd" outside the bundle"#
    );
}

#[test]
fn symlink_climbing_out() {
    let bytes = zip_with(|z| {
        z.add_symlink("lib/link", "../../etc/passwd", opts())
            .unwrap();
    });
    let err = refused_default(&bytes);
    assert!(matches!(err, BundleError::SymlinkOutside { .. }), "{err:?}");
}

#[test]
fn writing_through_a_symlink_to_the_parent() {
    // `a -> ..` then `a/x`: writing a/x would land next to dest.
    let bytes = zip_with(|z| {
        z.add_symlink("a", "..", opts()).unwrap();
        add_file(z, "a/x", b"pwned");
    });
    let err = refused_default(&bytes);
    assert!(
        matches!(
            &err,
            BundleError::EntryUnderSymlink { entry, link } if entry == "a/x" && link == "a"
        ) || matches!(&err, BundleError::SymlinkOutside { entry, .. } if entry == "a"),
        "{err:?}"
    );
}

#[test]
fn writing_through_a_symlink_that_stays_inside() {
    // Even a link that points inside may not be written through.
    let bytes = zip_with(|z| {
        z.add_directory("real/", opts()).unwrap();
        z.add_symlink("d/a", "../real", opts()).unwrap();
        add_file(z, "d/a/x", b"redirected");
    });
    let err = refused_default(&bytes);
    assert!(
        matches!(&err, BundleError::EntryUnderSymlink { entry, link } if entry == "d/a/x" && link == "d/a"),
        "{err:?}"
    );
}

#[test]
fn symlink_chain_climbing_out() {
    // d/l -> .. is the root (fine alone), but e -> d/l/.. is the root's parent.
    let bytes = zip_with(|z| {
        z.add_symlink("d/l", "..", opts()).unwrap();
        z.add_symlink("e", "d/l/..", opts()).unwrap();
    });
    let err = refused_default(&bytes);
    assert!(
        matches!(&err, BundleError::SymlinkOutside { entry, .. } if entry == "e"),
        "{err:?}"
    );
}

#[test]
fn device_and_fifo_entries() {
    for (mode, kind) in [
        (0o010644, "a named pipe (FIFO)"),
        (0o020644, "a character device"),
        (0o060644, "a block device"),
        (0o140644, "a socket"),
    ] {
        let mut bytes = zip_with(|z| {
            add_file(z, "ok", b"x");
            add_file(z, "dev/thing", b"");
        });
        set_unix_mode(&mut bytes, "dev/thing", mode);
        let err = refused_default(&bytes);
        assert!(
            matches!(&err, BundleError::SpecialEntry { entry, kind: k } if entry == "dev/thing" && *k == kind),
            "{err:?}"
        );
    }
}

#[test]
fn too_many_files() {
    let bytes = zip_with(|z| {
        for i in 0..5 {
            add_file(z, &format!("f{i}"), b"x");
        }
    });
    let limits = ExtractLimits {
        max_files: 4,
        ..ExtractLimits::default()
    };
    let err = refused(&bytes, &limits);
    assert!(
        matches!(err, BundleError::TooManyFiles { count: 5, limit: 4 }),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "bundle has 5 files, over the limit of 4");

    let sandbox = Sandbox::new();
    let exactly = ExtractLimits {
        max_files: 5,
        ..limits
    };
    extract(&bytes, &sandbox.dest, &exactly).unwrap();
}

#[test]
fn zip_bomb_with_a_lying_header() {
    let big = vec![0u8; 2 * 1024 * 1024];
    let mut bytes = zip_with(|z| {
        add_file(z, "a-first.txt", b"written before the bomb");
        add_file(z, "bomb", &big);
    });
    set_uncompressed_size(&mut bytes, "bomb", 10);
    // The archive really does claim 10 bytes.
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(&bytes)).unwrap();
    assert_eq!(archive.by_name("bomb").unwrap().size(), 10);
    assert!(bytes.len() < 64 * 1024, "should compress well");

    let limits = ExtractLimits {
        max_files: 10,
        max_bytes: 100 * 1024 * 1024,
        max_file_bytes: 1024 * 1024,
    };
    let err = refused(&bytes, &limits);
    assert!(
        matches!(&err, BundleError::FileTooLarge { entry, limit } if entry == "bomb" && *limit == 1024 * 1024),
        "{err:?}"
    );
}

#[test]
fn total_size_is_counted_while_streaming() {
    let chunk = vec![1u8; 600 * 1024];
    let mut bytes = zip_with(|z| {
        add_file(z, "one", &chunk);
        add_file(z, "two", &chunk);
    });
    set_uncompressed_size(&mut bytes, "one", 1);
    set_uncompressed_size(&mut bytes, "two", 1);
    let limits = ExtractLimits {
        max_files: 10,
        max_bytes: 1024 * 1024,
        max_file_bytes: 1024 * 1024,
    };
    let err = refused(&bytes, &limits);
    assert!(
        matches!(err, BundleError::TooLarge { limit } if limit == 1024 * 1024),
        "{err:?}"
    );
}

#[test]
fn declared_sizes_over_the_limit_are_refused_up_front() {
    let bytes = zip_with(|z| add_file(z, "big", &vec![0u8; 4096]));
    let limits = ExtractLimits {
        max_file_bytes: 1000,
        ..ExtractLimits::default()
    };
    let err = refused(&bytes, &limits);
    assert!(matches!(err, BundleError::FileTooLarge { .. }), "{err:?}");
}

#[test]
fn duplicate_names() {
    let mut bytes = zip_with(|z| {
        add_file(z, "aaa.txt", b"first");
        add_file(z, "bbb.txt", b"second");
    });
    replace_bytes(&mut bytes, b"bbb.txt", b"aaa.txt");
    let err = refused_default(&bytes);
    assert!(
        matches!(&err, BundleError::DuplicateEntry { entry } if entry == "aaa.txt"),
        "{err:?}"
    );
    // read_entry refuses to pick one of them.
    assert!(matches!(
        read_entry(&bytes, "aaa.txt", 100),
        Err(BundleError::DuplicateEntry { .. })
    ));
}

#[test]
fn names_that_are_duplicates_once_normalized() {
    for (first, second) in [("a.txt", "./a.txt"), ("d/a", "d//a"), ("x", "x/")] {
        let bytes = zip_with(|z| {
            add_file(z, first, b"1");
            if second.ends_with('/') {
                z.add_directory(second, opts()).unwrap();
            } else {
                add_file(z, second, b"2");
            }
        });
        let err = refused_default(&bytes);
        assert!(
            matches!(&err, BundleError::DuplicateEntry { .. }),
            "{first} + {second}: {err:?}"
        );
    }
}

#[test]
fn a_file_used_as_a_directory() {
    let bytes = zip_with(|z| {
        add_file(z, "a", b"file");
        add_file(z, "a/b", b"inside a file?");
    });
    let err = refused_default(&bytes);
    assert!(matches!(err, BundleError::EntryUnderFile { .. }), "{err:?}");
}

#[test]
fn corrupt_content_fails_the_crc_check() {
    let content = b"hello hello hello hello";
    let mut bytes = zip_with(|z| {
        z.start_file(
            "a.txt",
            opts().compression_method(zip::CompressionMethod::Stored),
        )
        .unwrap();
        z.write_all(content).unwrap();
    });
    replace_bytes(&mut bytes, b"hello hello", b"jello hello");
    let err = refused_default(&bytes);
    assert!(
        matches!(&err, BundleError::CorruptEntry { entry, .. } if entry == "a.txt"),
        "{err:?}"
    );
}

#[test]
fn not_a_zip() {
    let err = refused_default(b"definitely not a zip archive");
    assert!(matches!(err, BundleError::InvalidArchive { .. }), "{err:?}");
}

#[test]
fn read_entry_reads_one_file_with_a_cap() {
    let packed = pack_files(vec![("big".into(), vec![b'x'; 2000], false)], b"{\"a\":1}").unwrap();
    assert_eq!(
        read_entry(&packed.bytes, "manifest.json", 7).unwrap(),
        b"{\"a\":1}"
    );
    assert!(matches!(
        read_entry(&packed.bytes, "manifest.json", 6),
        Err(BundleError::FileTooLarge { limit: 6, .. })
    ));
    assert!(matches!(
        read_entry(&packed.bytes, "nope.json", 100),
        Err(BundleError::MissingEntry { .. })
    ));
    let with_link = zip_with(|z| z.add_symlink("manifest.json", "other", opts()).unwrap());
    assert!(matches!(
        read_entry(&with_link, "manifest.json", 100),
        Err(BundleError::NotAFile { .. })
    ));
}
