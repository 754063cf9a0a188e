//! Fuzz targets for every parser of untrusted input in Morel, and a stable-toolchain driver
//! for them (`morel-fuzz`, see `docs/fuzzing.md`).
//!
//! A target is a function `fn(&[u8]) -> u64`: it feeds the bytes to the real parser (the same
//! code the server runs, reached through small `…_for_fuzzing` functions where the parser is
//! private) and asserts the parser's own invariants: it never panics, and what it accepts is
//! consistent (a bundle that extracts has entries only under its destination, a head the lane
//! forwards is a well-formed head without hop-by-hop headers, …). A broken invariant is a
//! panic. The `u64` is the target's *outcome*: a hash of which branch or error the input
//! reached, the cheap signal the driver keeps new inputs by (no instrumentation needed).
//!
//! The driver ([`driver`]) also checks that no input hangs (a watchdog per run) or allocates
//! far beyond what its size and the parser's limits allow (a counting allocator, [`alloc`]).

pub mod alloc;
pub mod driver;
pub mod mutate;
pub mod seeds;
mod sig;
mod targets;

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use sig::Sig;

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

/// One fuzz target.
pub struct Target {
    /// The name used on the command line and for the corpus, regression and crash files.
    pub name: &'static str,
    /// What it fuzzes, in a few words.
    pub about: &'static str,
    /// Runs one input; panics when an invariant breaks; returns the input's outcome.
    pub run: fn(&[u8]) -> u64,
    /// Byte strings the mutator inserts, besides the common ones (JSON and HTTP punctuation,
    /// huge numbers, invalid UTF-8).
    pub tokens: &'static [&'static [u8]],
    /// Longest input the mutator makes.
    pub max_len: usize,
    /// Most bytes an input may hold allocated at once: `fixed + per_byte * input length`.
    /// Past it the input is a finding (memory that grows with something other than the input
    /// and the parser's documented limits).
    pub alloc_fixed: usize,
    pub alloc_per_byte: usize,
}

impl Target {
    /// The most an input of `len` bytes may hold allocated at once.
    pub fn alloc_allowance(&self, len: usize) -> usize {
        self.alloc_fixed
            .saturating_add(self.alloc_per_byte.saturating_mul(len))
    }
}

/// Every target, in the order `all` runs them.
pub fn targets() -> &'static [Target] {
    targets::ALL
}

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    targets().iter().find(|t| t.name == name)
}

/// This crate's directory (where `corpus/`, `regressions/` and `crashes/` live), as built.
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What running one input did.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// Ran to the end with this outcome.
    Pass(u64),
    /// Panicked: a bug in the parser or a broken invariant.
    Panic {
        message: String,
        /// `file:line:column` of the panic; findings are told apart by it.
        location: String,
    },
}

/// One run of one input: its verdict, the most it held allocated at once, how long it took.
#[derive(Debug, Clone)]
pub struct Exec {
    pub verdict: Verdict,
    pub peak_alloc: usize,
    pub elapsed: Duration,
}

/// Runs `data` through `target` on this thread, catching a panic and measuring the peak of
/// what it allocated. A hang is not caught here: [`driver`] runs inputs under a watchdog.
pub fn execute(target: &Target, data: &[u8]) -> Exec {
    sig::install_panic_hook();
    let start = Instant::now();
    let (result, peak_alloc) = alloc::track(|| {
        sig::capturing_panics(|| std::panic::catch_unwind(AssertUnwindSafe(|| (target.run)(data))))
    });
    let elapsed = start.elapsed();
    let verdict = match result {
        Ok(outcome) => Verdict::Pass(outcome),
        Err(payload) => {
            let (message, location) = sig::take_panic().unwrap_or_else(|| {
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic without a message".to_owned());
                (message, "unknown".to_owned())
            });
            Verdict::Panic { message, location }
        }
    };
    Exec {
        verdict,
        peak_alloc,
        elapsed,
    }
}

/// Why an input fails its target (for the regression tests and `morel-fuzz run`).
#[derive(Debug, Clone)]
pub enum Failure {
    Panic { message: String, location: String },
    Memory { peak: usize, allowed: usize },
    Slow { elapsed: Duration, limit: Duration },
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Panic { message, location } => write!(f, "panic at {location}: {message}"),
            Failure::Memory { peak, allowed } => write!(
                f,
                "held {peak} bytes allocated at once (allowed for this input: {allowed})"
            ),
            Failure::Slow { elapsed, limit } => {
                write!(f, "took {elapsed:?} (limit {limit:?})")
            }
        }
    }
}

/// Runs `data` once and judges it: a panic, memory past the target's allowance, or a run
/// longer than `slow` fail it.
pub fn check(target: &Target, data: &[u8], slow: Duration) -> Result<u64, Failure> {
    let exec = execute(target, data);
    judge(target, data.len(), &exec, slow)
}

/// Judges one [`Exec`] of an input of `len` bytes.
pub fn judge(target: &Target, len: usize, exec: &Exec, slow: Duration) -> Result<u64, Failure> {
    match &exec.verdict {
        Verdict::Panic { message, location } => Err(Failure::Panic {
            message: message.clone(),
            location: location.clone(),
        }),
        Verdict::Pass(outcome) => {
            let allowed = target.alloc_allowance(len);
            if exec.peak_alloc > allowed {
                Err(Failure::Memory {
                    peak: exec.peak_alloc,
                    allowed,
                })
            } else if exec.elapsed > slow {
                Err(Failure::Slow {
                    elapsed: exec.elapsed,
                    limit: slow,
                })
            } else {
                Ok(*outcome)
            }
        }
    }
}

/// A short hex name for an input (FNV-1a, 64 bits): crash files are `TARGET-<name>`.
pub fn input_name(data: &[u8]) -> String {
    format!("{:016x}", sig::fnv(data))
}

/// `data` as a Rust byte string literal, cut after `max` bytes: how crashes are printed.
pub fn escaped(data: &[u8], max: usize) -> String {
    let mut out = String::from("b\"");
    for &b in data.iter().take(max) {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('"');
    if data.len() > max {
        out.push_str(&format!(" … ({} bytes in all)", data.len()));
    }
    out
}
