//! The fuzz targets as regression tests: every target runs every file of its seed corpus and
//! of `regressions/TARGET/` (inputs that once failed, now fixed) and must pass each; and the
//! driver itself runs, finds a planted bug and a planted hang, and reports them.

#![allow(clippy::unwrap_used)] // panicking is how a test fails

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use morel_fuzz::driver::{self, Options, read_dir_files};
use morel_fuzz::{Target, check, crate_dir, target, targets};

/// Generous: these run unoptimized, on a machine that may be busy.
const SLOW: Duration = Duration::from_secs(60);

fn run_files(name: &str) {
    let t = target(name).unwrap();
    let corpus = read_dir_files(&crate_dir().join("corpus").join(name));
    assert!(
        corpus.len() >= 3,
        "{name} has {} seed files; a target needs a handful",
        corpus.len()
    );
    let regressions = read_dir_files(&crate_dir().join("regressions").join(name));
    let mut failures = Vec::new();
    for (path, data) in corpus.iter().chain(&regressions) {
        if let Err(f) = check(t, data, SLOW) {
            failures.push(format!("{}: {f}", path.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

macro_rules! every_target {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                run_files(stringify!($name));
            }
        )*

        #[test]
        fn every_target_has_its_test() {
            let tested = [$(stringify!($name)),*];
            for t in targets() {
                assert!(tested.contains(&t.name), "no test runs {}", t.name);
            }
        }
    };
}

every_target!(
    lane_head,
    upstream_head,
    call_args,
    worker_frames,
    worker_frame_json,
    log_lines,
    bundle_extract,
    upload_zip,
    manifest_json,
    morel_toml,
    metacall_json,
);

#[test]
fn regression_folders_are_named_after_targets() {
    for dir in ["regressions", "corpus"] {
        for entry in std::fs::read_dir(crate_dir().join(dir)).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                let name = entry.file_name().to_string_lossy().into_owned();
                assert!(target(&name).is_some(), "{dir}/{name} is no target's");
            }
        }
    }
}

/// The driver runs every target briefly and finds nothing in the shipped code.
#[test]
fn the_driver_runs_every_target() {
    let crashes = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_morel-fuzz"))
        .args([
            "all",
            "--seconds",
            "0.2",
            "--seed",
            "1",
            "--slow-ms",
            "30000",
        ])
        .arg("--crashes")
        .arg(crashes.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for t in targets() {
        let line = stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(t.name))
            .unwrap_or_else(|| panic!("no line for {} in\n{stdout}", t.name));
        let execs: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert!(execs > 0, "{line}");
    }
    assert_eq!(std::fs::read_dir(crashes.path()).unwrap().count(), 0);
}

fn planted(data: &[u8]) -> u64 {
    if data.windows(3).any(|w| w == b"BUG") {
        panic!("planted bug");
    }
    if data.windows(4).any(|w| w == b"HANG") {
        loop {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    data.first().copied().map_or(0, u64::from)
}

static PLANTED: Target = Target {
    name: "planted",
    about: "a target with a planted panic and a planted hang",
    run: planted,
    tokens: &[b"BUG"],
    max_len: 64,
    alloc_fixed: 1 << 20,
    alloc_per_byte: 64,
};

fn options(corpus: &Path, crashes: &Path) -> Options {
    let mut opts = Options::for_target(&PLANTED, Duration::from_millis(500), 7);
    opts.corpus = corpus.to_owned();
    opts.regressions = None;
    opts.crashes = crashes.to_owned();
    opts.timeout = Duration::from_millis(300);
    opts
}

/// A panic is written to the crashes folder, cut down to what triggers it.
#[test]
fn a_panic_is_found_minimized_and_written() {
    let corpus = tempfile::tempdir().unwrap();
    let crashes = tempfile::tempdir().unwrap();
    std::fs::write(corpus.path().join("seed"), b"a long seed with a BUG in it").unwrap();
    std::fs::write(corpus.path().join("ok"), b"fine").unwrap();
    let report = driver::fuzz(&PLANTED, &options(corpus.path(), crashes.path()));
    assert!(report.execs > 2, "{report:?}");
    assert_eq!(report.findings.len(), 1, "{report:?}");
    let f = &report.findings[0];
    assert_eq!(f.kind, "panic");
    assert!(f.detail.contains("planted bug"), "{}", f.detail);
    assert_eq!(f.input, b"BUG");
    let file = f.file.as_ref().unwrap();
    assert_eq!(std::fs::read(file).unwrap(), b"BUG");
    assert!(file.starts_with(crashes.path()));
}

/// An input that never finishes is reported as a hang, not waited for.
#[test]
fn a_hang_is_reported_not_waited_for() {
    let corpus = tempfile::tempdir().unwrap();
    let crashes = tempfile::tempdir().unwrap();
    std::fs::write(corpus.path().join("seed"), b"HANG").unwrap();
    let started = std::time::Instant::now();
    let report = driver::fuzz(&PLANTED, &options(corpus.path(), crashes.path()));
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(report.findings.len(), 1, "{report:?}");
    assert_eq!(report.findings[0].kind, "hang");
    assert_eq!(report.findings[0].input, b"HANG");
}

/// Memory held past a target's allowance is a finding.
#[test]
fn memory_past_the_allowance_fails_an_input() {
    static GREEDY: Target = Target {
        name: "greedy",
        about: "allocates 64 MiB for any input",
        run: |data| {
            let v = vec![1u8; 64 << 20];
            u64::from(v[data.len() % v.len()])
        },
        tokens: &[],
        max_len: 16,
        alloc_fixed: 1 << 20,
        alloc_per_byte: 0,
    };
    match check(&GREEDY, b"x", SLOW) {
        Err(morel_fuzz::Failure::Memory { peak, allowed }) => {
            assert!(peak >= 64 << 20 && allowed == 1 << 20, "{peak} {allowed}");
        }
        other => panic!("{other:?}"),
    }
}
