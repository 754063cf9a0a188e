//! The fuzz loop: corpus in, mutants through a target under a watchdog, new outcomes kept,
//! findings written to the crashes directory.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::mutate::Mutator;
use crate::{Failure, Target, escaped, execute, input_name, judge};

/// How a run is set up.
#[derive(Clone, Debug)]
pub struct Options {
    /// How long to fuzz the target.
    pub duration: Duration,
    /// The seed corpus: every file in it (default `corpus/TARGET`).
    pub corpus: PathBuf,
    /// More seeds, if the directory exists (default `regressions/TARGET`).
    pub regressions: Option<PathBuf>,
    /// Where findings are written, as `TARGET-<hash>` (default `crashes/`).
    pub crashes: PathBuf,
    /// Where inputs with new outcomes are written, if anywhere.
    pub save_corpus: Option<PathBuf>,
    pub seed: u64,
    /// An input still running after this long is a hang: reported, not waited for.
    pub timeout: Duration,
    /// An input that takes longer than this (but finishes) is a finding too.
    pub slow: Duration,
    /// Most entries kept in the corpus.
    pub max_corpus: usize,
}

impl Options {
    /// The defaults for `target`, with the paths under this crate's directory.
    pub fn for_target(target: &Target, duration: Duration, seed: u64) -> Options {
        let dir = crate::crate_dir();
        Options {
            duration,
            corpus: dir.join("corpus").join(target.name),
            regressions: Some(dir.join("regressions").join(target.name)),
            crashes: dir.join("crashes"),
            save_corpus: None,
            seed,
            timeout: Duration::from_secs(10),
            slow: Duration::from_secs(2),
            max_corpus: 4096,
        }
    }
}

/// Something wrong found with one input.
#[derive(Clone, Debug)]
pub struct Finding {
    pub kind: &'static str,
    pub detail: String,
    pub input: Vec<u8>,
    /// Where the input was written.
    pub file: Option<PathBuf>,
    /// How many inputs hit the same finding.
    pub hits: u64,
}

/// What one run did.
#[derive(Clone, Debug)]
pub struct Report {
    pub target: &'static str,
    pub execs: u64,
    pub elapsed: Duration,
    pub corpus_start: usize,
    pub corpus_end: usize,
    /// Distinct outcomes seen.
    pub outcomes: usize,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn execs_per_sec(&self) -> f64 {
        self.execs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// What the fuzz thread shares with the watchdog.
struct Shared {
    /// When the running input started, in microseconds since `epoch` (0: none running).
    started: AtomicU64,
    epoch: Instant,
    /// The running input.
    current: Mutex<Vec<u8>>,
    execs: AtomicU64,
    corpus: AtomicUsize,
    outcomes: AtomicUsize,
    stop: AtomicBool,
    findings: Mutex<Vec<Finding>>,
}

impl Shared {
    fn begin(&self, input: &[u8]) {
        if let Ok(mut c) = self.current.lock() {
            c.clear();
            c.extend_from_slice(input);
        }
        let now = self.epoch.elapsed().as_micros() as u64;
        self.started.store(now.max(1), Ordering::SeqCst);
    }

    fn end(&self) {
        self.started.store(0, Ordering::SeqCst);
    }
}

/// Fuzzes `target` for `opts.duration` and reports. Progress and findings go to stderr.
pub fn fuzz(target: &'static Target, opts: &Options) -> Report {
    let shared = Arc::new(Shared {
        started: AtomicU64::new(0),
        epoch: Instant::now(),
        current: Mutex::new(Vec::new()),
        execs: AtomicU64::new(0),
        corpus: AtomicUsize::new(0),
        outcomes: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
        findings: Mutex::new(Vec::new()),
    });
    let seeds = load_seeds(opts);
    let corpus_start = seeds.len();
    let start = Instant::now();
    let deadline = start + opts.duration;
    let worker = {
        let shared = Arc::clone(&shared);
        let opts = opts.clone();
        std::thread::Builder::new()
            .name(format!("fuzz {}", target.name))
            // Parsers that recurse get the stack a server's thread has.
            .stack_size(8 << 20)
            .spawn(move || fuzz_loop(target, &opts, seeds, deadline, &shared))
    };
    let worker = match worker {
        Ok(w) => w,
        Err(e) => {
            eprintln!("{}: cannot start the fuzz thread: {e}", target.name);
            return Report {
                target: target.name,
                execs: 0,
                elapsed: Duration::ZERO,
                corpus_start,
                corpus_end: corpus_start,
                outcomes: 0,
                findings: Vec::new(),
            };
        }
    };
    // The watchdog: the fuzz thread ends by itself at the deadline, unless an input hangs.
    let mut hung = false;
    while !worker.is_finished() {
        std::thread::sleep(Duration::from_millis(20));
        let started = shared.started.load(Ordering::SeqCst);
        if started == 0 {
            continue;
        }
        let running = shared
            .epoch
            .elapsed()
            .saturating_sub(Duration::from_micros(started));
        if running > opts.timeout && !worker.is_finished() {
            let input = shared.current.lock().map(|c| c.clone()).unwrap_or_default();
            let detail = format!("still running after {running:?} (limit {:?})", opts.timeout);
            let finding = record(target, opts, "hang", detail, input);
            if let Ok(mut f) = shared.findings.lock() {
                f.push(finding);
            }
            // The stuck thread is left behind (it ends with the process); nothing more runs
            // on this target.
            shared.stop.store(true, Ordering::SeqCst);
            hung = true;
            break;
        }
    }
    if !hung && worker.join().is_err() {
        // A panic outside an input's run is the driver's own bug: say so, loudly.
        let finding = Finding {
            kind: "driver",
            detail: "the fuzz loop itself panicked (see above)".to_owned(),
            input: Vec::new(),
            file: None,
            hits: 1,
        };
        eprintln!("{}: {}", target.name, finding.detail);
        if let Ok(mut f) = shared.findings.lock() {
            f.push(finding);
        }
    }
    let findings = shared
        .findings
        .lock()
        .map(|f| f.clone())
        .unwrap_or_default();
    Report {
        target: target.name,
        execs: shared.execs.load(Ordering::SeqCst),
        elapsed: start.elapsed(),
        corpus_start,
        corpus_end: shared.corpus.load(Ordering::SeqCst),
        outcomes: shared.outcomes.load(Ordering::SeqCst),
        findings,
    }
}

/// Every file in the corpus and regressions directories, sorted by name; one empty input
/// when there are none.
pub fn load_seeds(opts: &Options) -> Vec<Vec<u8>> {
    let mut seeds = read_dir_files(&opts.corpus);
    if let Some(r) = &opts.regressions {
        seeds.extend(read_dir_files(r));
    }
    let mut seeds: Vec<Vec<u8>> = seeds.into_iter().map(|(_, data)| data).collect();
    if seeds.is_empty() {
        seeds.push(Vec::new());
    }
    seeds
}

/// The files directly in `dir` (not dot files), sorted by name.
pub fn read_dir_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    paths.sort();
    paths
        .into_iter()
        .filter_map(|p| fs::read(&p).ok().map(|d| (p, d)))
        .collect()
}

fn fuzz_loop(
    target: &'static Target,
    opts: &Options,
    seeds: Vec<Vec<u8>>,
    deadline: Instant,
    shared: &Shared,
) {
    let mut corpus: Vec<Vec<u8>> = Vec::new();
    let mut seen: HashSet<u64> = HashSet::new();
    // Findings by key (kind and where), so one bug is written once.
    let mut found: HashMap<String, usize> = HashMap::new();
    let mut mutator = Mutator::new(opts.seed, target.tokens, target.max_len);
    let run = |input: &[u8],
               corpus: &mut Vec<Vec<u8>>,
               seen: &mut HashSet<u64>,
               found: &mut HashMap<String, usize>,
               keep_anyway: bool| {
        shared.begin(input);
        let exec = execute(target, input);
        shared.end();
        shared.execs.fetch_add(1, Ordering::Relaxed);
        match judge(target, input.len(), &exec, opts.slow) {
            Ok(outcome) => {
                let new = seen.insert(outcome);
                if (new || keep_anyway) && corpus.len() < opts.max_corpus {
                    corpus.push(input.to_vec());
                    if new && !keep_anyway {
                        save_new(opts, target, input);
                    }
                }
                shared.corpus.store(corpus.len(), Ordering::Relaxed);
                shared.outcomes.store(seen.len(), Ordering::Relaxed);
            }
            Err(failure) => {
                let key = failure_key(&failure);
                if let Some(&i) = found.get(&key) {
                    if let Ok(mut f) = shared.findings.lock() {
                        f[i].hits += 1;
                    }
                    return;
                }
                let small = minimize(target, input, &failure, opts, shared);
                let finding = record(target, opts, kind(&failure), failure.to_string(), small);
                if let Ok(mut f) = shared.findings.lock() {
                    found.insert(key, f.len());
                    f.push(finding);
                }
            }
        }
    };
    // Every seed runs once (and stays in the corpus, whatever its outcome).
    for seed in &seeds {
        run(seed, &mut corpus, &mut seen, &mut found, true);
    }
    if corpus.is_empty() {
        corpus.push(Vec::new());
    }
    while Instant::now() < deadline && !shared.stop.load(Ordering::Relaxed) {
        let base = mutator.below(corpus.len());
        let other = mutator.below(corpus.len());
        let input = mutator.mutate(&corpus[base], &corpus[other]);
        run(&input, &mut corpus, &mut seen, &mut found, false);
    }
}

fn kind(failure: &Failure) -> &'static str {
    match failure {
        Failure::Panic { .. } => "panic",
        Failure::Memory { .. } => "memory",
        Failure::Slow { .. } => "slow",
    }
}

/// One finding per panic location; one per kind for memory and slowness.
fn failure_key(failure: &Failure) -> String {
    match failure {
        Failure::Panic { location, .. } => format!("panic {location}"),
        other => kind(other).to_owned(),
    }
}

fn same_failure(a: &Failure, b: &Failure) -> bool {
    failure_key(a) == failure_key(b)
}

/// A smaller input that fails the same way: chunks are removed while the failure stays,
/// within a budget of runs and time.
fn minimize(
    target: &Target,
    input: &[u8],
    failure: &Failure,
    opts: &Options,
    shared: &Shared,
) -> Vec<u8> {
    // A slow input is timed again and again; keep it as found.
    if matches!(failure, Failure::Slow { .. }) {
        return input.to_vec();
    }
    let budget = Instant::now() + Duration::from_secs(5);
    let mut best = input.to_vec();
    let mut chunk = best.len() / 2;
    let mut tries = 0;
    while chunk > 0 && tries < 4000 && Instant::now() < budget {
        let mut at = 0;
        let mut shrunk = false;
        while at < best.len() && tries < 4000 && Instant::now() < budget {
            let end = (at + chunk).min(best.len());
            let mut candidate = best[..at].to_vec();
            candidate.extend_from_slice(&best[end..]);
            tries += 1;
            shared.begin(&candidate);
            let exec = execute(target, &candidate);
            shared.end();
            match judge(target, candidate.len(), &exec, opts.slow) {
                Err(f) if same_failure(&f, failure) => {
                    best = candidate;
                    shrunk = true;
                }
                _ => at += chunk,
            }
        }
        if !shrunk {
            chunk /= 2;
        }
    }
    best
}

/// Writes a finding's input to the crashes directory and tells stderr about it.
fn record(
    target: &Target,
    opts: &Options,
    kind: &'static str,
    detail: String,
    input: Vec<u8>,
) -> Finding {
    let file = opts
        .crashes
        .join(format!("{}-{}", target.name, input_name(&input)));
    let written = fs::create_dir_all(&opts.crashes).and_then(|()| fs::write(&file, &input));
    let file = match written {
        Ok(()) => Some(file),
        Err(e) => {
            eprintln!("{}: cannot write {}: {e}", target.name, file.display());
            None
        }
    };
    eprintln!(
        "\n=== {} found a {kind}: {detail}\n    input ({} bytes): {}\n    written to {}\n",
        target.name,
        input.len(),
        escaped(&input, 600),
        file.as_deref()
            .map_or_else(|| "nowhere".to_owned(), |f| f.display().to_string())
    );
    Finding {
        kind,
        detail,
        input,
        file,
        hits: 1,
    }
}

fn save_new(opts: &Options, target: &Target, input: &[u8]) {
    if let Some(dir) = &opts.save_corpus {
        let dir = dir.join(target.name);
        let _ =
            fs::create_dir_all(&dir).and_then(|()| fs::write(dir.join(input_name(input)), input));
    }
}
