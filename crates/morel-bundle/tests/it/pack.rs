use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, SystemTime};

use morel_bundle::{BundleError, ExtractLimits, PackLimits, Packed, extract, pack_dir, read_entry};

use crate::support::{Sandbox, chmod, mode_of, write_tree};

fn names(packed: &Packed) -> Vec<String> {
    let archive = zip::ZipArchive::new(std::io::Cursor::new(&packed.bytes)).unwrap();
    archive.file_names().map(str::to_owned).collect()
}

fn sample_project(dir: &Path) {
    write_tree(
        dir,
        &[
            ("app.py", "print('hi')\n"),
            ("lib/util.py", "X = 1\n"),
            ("static/index.html", "<h1>hi</h1>\n"),
            ("run.sh", "#!/bin/sh\necho hi\n"),
        ],
    );
    chmod(&dir.join("run.sh"), 0o755);
}

fn pack(dir: &Path) -> Packed {
    pack_dir(dir, b"{\"name\":\"demo\"}", &PackLimits::default()).unwrap()
}

#[test]
fn packing_is_deterministic() {
    let a = tempfile::tempdir().unwrap();
    sample_project(a.path());
    let first = pack(a.path());
    let second = pack(a.path());
    assert_eq!(first.digest, second.digest);
    assert_eq!(first.bytes, second.bytes);

    // Touching mtimes changes nothing.
    let past = SystemTime::now() - Duration::from_secs(86_400 * 365);
    for path in ["app.py", "lib/util.py", "run.sh"] {
        fs::File::options()
            .write(true)
            .open(a.path().join(path))
            .unwrap()
            .set_modified(past)
            .unwrap();
    }
    assert_eq!(pack(a.path()).digest, first.digest);

    // Neither does the directory it lives in, or the order files were created in.
    let b = tempfile::tempdir().unwrap();
    write_tree(b.path(), &[("run.sh", "#!/bin/sh\necho hi\n")]);
    chmod(&b.path().join("run.sh"), 0o755);
    write_tree(
        b.path(),
        &[
            ("static/index.html", "<h1>hi</h1>\n"),
            ("lib/util.py", "X = 1\n"),
            ("app.py", "print('hi')\n"),
        ],
    );
    assert_eq!(pack(b.path()).digest, first.digest);

    // But content, the exec bit and the manifest do.
    chmod(&b.path().join("run.sh"), 0o644);
    assert_ne!(pack(b.path()).digest, first.digest);
    let other_manifest = pack_dir(a.path(), b"{}", &PackLimits::default()).unwrap();
    assert_ne!(other_manifest.digest, first.digest);
    fs::write(a.path().join("app.py"), "print('bye')\n").unwrap();
    assert_ne!(pack(a.path()).digest, first.digest);
}

#[test]
fn entries_are_sorted_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    sample_project(dir.path());
    let packed = pack(dir.path());
    assert_eq!(
        names(&packed),
        [
            "app.py",
            "lib/util.py",
            "manifest.json",
            "run.sh",
            "static/index.html"
        ]
    );
    assert_eq!(packed.files, 5);
    let content_bytes = 12 + 6 + 12 + 18 + 15;
    assert_eq!(packed.uncompressed, content_bytes);
}

#[test]
fn ignore_files_and_always_skipped_directories() {
    let dir = tempfile::tempdir().unwrap();
    write_tree(
        dir.path(),
        &[
            ("app.py", "x"),
            (".gitignore", "*.log\nbuild/\n"),
            (".morelignore", "secret.txt\ndocs/\n"),
            ("debug.log", "x"),
            ("build/out.bin", "x"),
            ("secret.txt", "x"),
            ("docs/guide.md", "x"),
            ("sub/.gitignore", "local.tmp\n"),
            ("sub/local.tmp", "x"),
            ("sub/kept.py", "x"),
            ("sub/nested.log", "x"),
            (".env.example", "KEY=\n"),
            (".git/config", "x"),
            (".morel/state", "x"),
            ("node_modules/left-pad/index.js", "x"),
            ("web/node_modules/react/index.js", "x"),
            (".venv/bin/python", "x"),
            ("venv/lib/site.py", "x"),
            ("lib/__pycache__/util.cpython-312.pyc", "x"),
            ("lib/util.py", "x"),
            ("manifest.json", "{\"stale\":true}"),
        ],
    );
    let packed = pack_dir(dir.path(), b"{\"fresh\":true}", &PackLimits::default()).unwrap();
    assert_eq!(
        names(&packed),
        [
            ".env.example",
            ".gitignore",
            ".morelignore",
            "app.py",
            "lib/util.py",
            "manifest.json",
            "sub/.gitignore",
            "sub/kept.py",
        ]
    );
    assert_eq!(
        read_entry(&packed.bytes, "manifest.json", 1024).unwrap(),
        b"{\"fresh\":true}"
    );
}

#[test]
fn exec_bit_survives_pack_and_extract() {
    let dir = tempfile::tempdir().unwrap();
    sample_project(dir.path());
    // Odd permissions are normalized to 0644 / 0755.
    chmod(&dir.path().join("app.py"), 0o600);
    chmod(&dir.path().join("lib/util.py"), 0o744);
    let packed = pack(dir.path());

    let sandbox = Sandbox::new();
    let extracted = extract(&packed.bytes, &sandbox.dest, &ExtractLimits::default()).unwrap();
    assert_eq!(extracted.files, 5);
    assert_eq!(extracted.bytes, packed.uncompressed);
    assert_eq!(mode_of(&sandbox.dest.join("run.sh")), 0o755);
    assert_eq!(mode_of(&sandbox.dest.join("lib/util.py")), 0o755);
    assert_eq!(mode_of(&sandbox.dest.join("app.py")), 0o644);
    assert_eq!(mode_of(&sandbox.dest.join("static/index.html")), 0o644);
    assert_eq!(
        fs::read_to_string(sandbox.dest.join("run.sh")).unwrap(),
        "#!/bin/sh\necho hi\n"
    );
}

#[test]
fn symlinks_inside_the_tree_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    sample_project(dir.path());
    symlink("lib/util.py", dir.path().join("util-link.py")).unwrap();
    symlink("../static", dir.path().join("lib/assets")).unwrap();
    symlink("missing-but-inside", dir.path().join("dangling")).unwrap();
    let packed = pack(dir.path());

    let sandbox = Sandbox::new();
    extract(&packed.bytes, &sandbox.dest, &ExtractLimits::default()).unwrap();
    let dest = &sandbox.dest;
    assert_eq!(
        fs::read_link(dest.join("util-link.py")).unwrap(),
        Path::new("lib/util.py")
    );
    assert_eq!(
        fs::read_to_string(dest.join("util-link.py")).unwrap(),
        "X = 1\n"
    );
    assert_eq!(
        fs::read_to_string(dest.join("lib/assets/index.html")).unwrap(),
        "<h1>hi</h1>\n"
    );
    assert_eq!(
        fs::read_link(dest.join("dangling")).unwrap(),
        Path::new("missing-but-inside")
    );
}

#[test]
fn symlinks_leaving_the_tree_are_refused_naming_the_path() {
    for target in ["/etc/passwd", "../../outside", "../lib/../../x"] {
        let dir = tempfile::tempdir().unwrap();
        sample_project(dir.path());
        let link = dir.path().join("lib/escape");
        symlink(target, &link).unwrap();
        let err = pack_dir(dir.path(), b"{}", &PackLimits::default()).unwrap_err();
        match &err {
            BundleError::SymlinkOutsideProject { path, target: t } => {
                assert_eq!(path, &link);
                assert_eq!(t, target);
            }
            other => panic!("{target}: unexpected {other:?}"),
        }
        assert!(err.to_string().contains("lib/escape"), "{err}");
    }
}

#[test]
fn special_files_are_refused_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    sample_project(dir.path());
    let socket_path = dir.path().join("lib/app.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket_path).unwrap();
    let err = pack_dir(dir.path(), b"{}", &PackLimits::default()).unwrap_err();
    assert!(
        matches!(&err, BundleError::UnsupportedFileType { path, kind: "a socket" } if *path == socket_path),
        "{err:?}"
    );
    assert!(err.to_string().contains("app.sock"));
}

#[test]
fn limits_are_enforced_and_named() {
    let dir = tempfile::tempdir().unwrap();
    sample_project(dir.path());
    let err = pack_dir(
        dir.path(),
        b"{}",
        &PackLimits {
            max_files: 4,
            max_bytes: 1 << 20,
        },
    )
    .unwrap_err();
    assert!(
        matches!(err, BundleError::PackTooManyFiles { limit: 4, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("more than 4 files"), "{err}");
    // Exactly at the limit is fine (4 files + the manifest).
    pack_dir(
        dir.path(),
        b"{}",
        &PackLimits {
            max_files: 5,
            max_bytes: 1 << 20,
        },
    )
    .unwrap();

    let err = pack_dir(
        dir.path(),
        b"{}",
        &PackLimits {
            max_files: 100,
            max_bytes: 20,
        },
    )
    .unwrap_err();
    assert!(
        matches!(err, BundleError::PackTooLarge { limit: 20, .. }),
        "{err:?}"
    );
}

#[test]
fn packing_a_file_or_missing_dir_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    fs::write(&file, "x").unwrap();
    assert!(matches!(
        pack_dir(&file, b"{}", &PackLimits::default()),
        Err(BundleError::NotADirectory { .. })
    ));
    assert!(matches!(
        pack_dir(&dir.path().join("nope"), b"{}", &PackLimits::default()),
        Err(BundleError::ReadFile { .. })
    ));
}

#[test]
fn the_project_root_itself_may_have_a_skipped_name() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("venv");
    write_tree(&dir, &[("app.py", "x")]);
    let packed = pack(&dir);
    assert_eq!(names(&packed), ["app.py", "manifest.json"]);
}
