//! Memory and CPU limits for every workload (function workers and http service instances):
//! a cgroup per instance when this machine lets us make one, otherwise `setrlimit` in the
//! sandbox's init (RLIMIT_DATA for memory; CPU is then not enforced).
//!
//! The backends, tried in this order once per process ([`LimitBackend::current`]):
//! - cgroup v2: a delegated directory whose subtree has `memory` and `cpu` (`memory.max`,
//!   `memory.swap.max`, `cpu.max`);
//! - cgroup v1, as root with the `cpu` and `memory` hierarchies mounted writable:
//!   `cpu.cfs_period_us`/`cpu.cfs_quota_us` and `memory.limit_in_bytes` (and
//!   `memory.memsw.limit_in_bytes` where swap accounting is on);
//! - rlimits.
//!
//! Each instance's cgroup lives under a per-process parent (`morel.<pid>`) beneath our own
//! cgroup in each hierarchy, and is removed when the instance is gone ([`InstanceCgroup`]'s
//! drop). The workload joins it through its [`Jail`](morel_runtime_process::Jail): the
//! sandbox's init writes `0` to each `cgroup.procs` as its first act, before it forks
//! anything, so the init and the whole workload tree are inside. Which backend is in force is
//! shown in every instance's status, `morel doctor`, the startup log and `GET /api/system`
//! ([`protections`]). This module holds `unsafe` only for `pre_exec` (process group and
//! parent-death signal of http instances), which runs between fork and exec and may only make
//! async-signal-safe calls.

#![allow(unsafe_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use morel_runtime_process::sandbox::{DEFAULT_MEMORY_MB, Protection};
use morel_runtime_process::{Jail, Sandbox};

/// What an instance may use. `None` means unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Limits {
    pub memory_mb: Option<u64>,
    /// CPU cores (e.g. 0.5).
    pub cpu: Option<f64>,
}

/// The CFS period both cgroup versions use: quotas are a share of 100 ms.
const CPU_PERIOD_US: u64 = 100_000;

impl Limits {
    /// These limits with the default memory ([`DEFAULT_MEMORY_MB`]) when none is set.
    pub fn with_default_memory(self) -> Limits {
        Limits {
            memory_mb: Some(self.memory_mb.unwrap_or(DEFAULT_MEMORY_MB)),
            ..self
        }
    }
}

/// How limits are enforced on this machine.
#[derive(Clone, Debug)]
pub enum LimitBackend {
    /// A delegated cgroup v2 directory whose subtree has `memory` and `cpu` enabled; each
    /// instance gets a child cgroup in it.
    CgroupV2 { parent: PathBuf },
    /// This process's own directories (`morel.<pid>`) in the cgroup v1 `cpu` and `memory`
    /// hierarchies; each instance gets a child in both.
    CgroupV1 { cpu: PathBuf, memory: PathBuf },
    /// Per-process rlimits; `why` says why neither cgroup version is usable here.
    Rlimit { why: String },
}

static CURRENT: OnceLock<LimitBackend> = OnceLock::new();

impl LimitBackend {
    /// The backend of this process, detected on first use: every agent, `morel doctor` and
    /// `GET /api/system` see the same one.
    pub fn current() -> &'static LimitBackend {
        CURRENT.get_or_init(LimitBackend::detect)
    }

    /// Looks for a usable cgroup v2 hierarchy, then (as root) writable cgroup v1 `cpu` and
    /// `memory` hierarchies, and makes this process's parent directory in it.
    pub fn detect() -> LimitBackend {
        let v2 = match try_cgroup_v2() {
            Ok(parent) => return LimitBackend::CgroupV2 { parent },
            Err(why) => why,
        };
        let v1 = if nix::unistd::geteuid().is_root() {
            match try_cgroup_v1() {
                Ok((cpu, memory)) => return LimitBackend::CgroupV1 { cpu, memory },
                Err(why) => why,
            }
        } else {
            "needs root".to_owned()
        };
        LimitBackend::Rlimit {
            why: format!("cgroup v2: {v2}; cgroup v1: {v1}"),
        }
    }

    /// Whether each instance gets a cgroup (memory and cpu both enforced).
    pub fn is_cgroup(&self) -> bool {
        !matches!(self, LimitBackend::Rlimit { .. })
    }

    /// One line for the instance status: what is enforced, and how.
    pub fn describe(&self, limits: &Limits) -> String {
        let mem = limits.memory_mb.map(|m| format!("{m} MiB"));
        let cpu = limits.cpu.map(|c| format!("{c} cpu"));
        let cgroup = |version: &str| {
            format!(
                "cgroup {version}: memory {}, cpu {}",
                mem.clone().unwrap_or_else(|| "unlimited".into()),
                cpu.clone().unwrap_or_else(|| "unlimited".into())
            )
        };
        match self {
            LimitBackend::CgroupV2 { .. } => cgroup("v2"),
            LimitBackend::CgroupV1 { .. } => cgroup("v1"),
            LimitBackend::Rlimit { why } => format!(
                "rlimit: memory {}, cpu {} (no cgroup: {why})",
                mem.clone()
                    .map(|m| format!("{m} (RLIMIT_DATA)"))
                    .unwrap_or_else(|| "unlimited".into()),
                if cpu.is_some() {
                    "not enforced"
                } else {
                    "unlimited"
                }
            ),
        }
    }

    /// The containment layer for memory and CPU: how they are enforced here, and what a
    /// missing cgroup means.
    pub fn protection(&self, containment: bool) -> Protection {
        let detail = match self {
            _ if !containment => "containment is off: no memory or cpu limits".to_owned(),
            LimitBackend::CgroupV2 { parent } => format!(
                "cgroup v2 per instance of a resource that sets cpu or memory_mb, under {}: \
                 memory.max from memory_mb (default {DEFAULT_MEMORY_MB} MiB, no swap), cpu.max \
                 from cpu; other instances: RLIMIT_DATA {DEFAULT_MEMORY_MB} MiB per process",
                parent.display()
            ),
            LimitBackend::CgroupV1 { cpu, memory } => format!(
                "cgroup v1 per instance of a resource that sets cpu or memory_mb, under {} and \
                 {}: memory.limit_in_bytes from memory_mb (default {DEFAULT_MEMORY_MB} MiB), \
                 cpu.cfs_quota_us from cpu; other instances: RLIMIT_DATA {DEFAULT_MEMORY_MB} MiB \
                 per process",
                memory.display(),
                cpu.display()
            ),
            LimitBackend::Rlimit { why } => format!(
                "rlimit: memory is RLIMIT_DATA per process (memory_mb, default \
                 {DEFAULT_MEMORY_MB} MiB, not the whole tree); cpu is NOT enforced ({why})"
            ),
        };
        Protection {
            layer: "memory and cpu limits",
            enabled: containment && self.is_cgroup(),
            detail,
        }
    }

    /// The cgroup of one instance with `limits`, or `None` when there is none to make (rlimit
    /// backend, or containment off: without the sandbox's init nothing would join it).
    /// `name` is made unique per call: a respawned instance never reuses the directory of
    /// its predecessor, which may still be waiting for its last process to be reaped.
    pub fn instance(&self, name: &str, limits: &Limits) -> std::io::Result<Option<InstanceCgroup>> {
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        if !Sandbox::current().enabled() {
            return Ok(None);
        }
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = &format!("{name}.{seq}");
        match self {
            LimitBackend::CgroupV2 { parent } => {
                InstanceCgroup::create_v2(parent, name, limits).map(Some)
            }
            LimitBackend::CgroupV1 { cpu, memory } => {
                InstanceCgroup::create_v1(cpu, memory, name, limits).map(Some)
            }
            LimitBackend::Rlimit { .. } => Ok(None),
        }
    }
}

/// The containment layers in force here: the sandbox's, then how memory and cpu are limited.
/// The one list the startup log, `morel doctor` and `GET /api/system` show.
pub fn protections() -> Vec<Protection> {
    let sandbox = Sandbox::current();
    let mut out = sandbox.protections();
    out.push(LimitBackend::current().protection(sandbox.enabled()));
    out
}

/// Our own cgroup in a hierarchy: the path after `prefix` in `/proc/self/cgroup`'s line
/// (`0::` for v2, `N:cpu,cpuacct:` style for v1, matched by controller name).
fn own_cgroup(controller: Option<&str>) -> Result<String, String> {
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
    own_cgroup_in(&own, controller).ok_or_else(|| match controller {
        None => "this process has no cgroup v2 membership".to_owned(),
        Some(c) => format!("this process is in no cgroup v1 {c} hierarchy"),
    })
}

fn own_cgroup_in(text: &str, controller: Option<&str>) -> Option<String> {
    text.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (id, controllers, path) = (f.next()?, f.next()?, f.next()?);
        let hit = match controller {
            None => id == "0" && controllers.is_empty(),
            Some(c) => controllers.split(',').any(|x| x == c),
        };
        hit.then(|| path.to_owned())
    })
}

/// Where a cgroup hierarchy is mounted: the first mount of `kind` (`cgroup2`, or `cgroup`
/// whose options name `controller`).
fn mount_of(mounts: &str, kind: &str, controller: Option<&str>) -> Option<PathBuf> {
    mounts.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let (_, path, fs, opts) = (f.next()?, f.next()?, f.next()?, f.next()?);
        let wanted = fs == kind && controller.is_none_or(|c| opts.split(',').any(|o| o == c));
        wanted.then(|| PathBuf::from(path))
    })
}

/// Removes the `morel.<pid>` directories of processes that are gone (their instance
/// directories first), so runs that ended without cleaning up leave nothing behind for long.
fn sweep_stale(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("morel."))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if let Ok(children) = std::fs::read_dir(e.path()) {
            for c in children.flatten() {
                if c.path().is_dir() {
                    let _ = std::fs::remove_dir(c.path());
                }
            }
        }
        let _ = std::fs::remove_dir(e.path());
    }
}

fn try_cgroup_v2() -> Result<PathBuf, String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts")
        .map_err(|e| format!("cannot read /proc/self/mounts: {e}"))?;
    let mount = mount_of(&mounts, "cgroup2", None).ok_or_else(|| "no cgroup2 mount".to_owned())?;
    let rel = own_cgroup(None)?;
    let base = mount.join(rel.trim_start_matches('/'));
    let controllers = std::fs::read_to_string(base.join("cgroup.controllers")).unwrap_or_default();
    for needed in ["memory", "cpu"] {
        if !controllers.split_whitespace().any(|c| c == needed) {
            return Err(format!(
                "no {needed} controller in {} (controllers: {})",
                base.display(),
                if controllers.trim().is_empty() {
                    "none"
                } else {
                    controllers.trim()
                }
            ));
        }
    }
    sweep_stale(&base);
    let parent = base.join(format!("morel.{}", std::process::id()));
    std::fs::create_dir_all(&parent)
        .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    let enabled = std::fs::read_to_string(parent.join("cgroup.controllers")).unwrap_or_default();
    if !["memory", "cpu"]
        .iter()
        .all(|c| enabled.split_whitespace().any(|x| x == *c))
    {
        let _ = std::fs::remove_dir(&parent);
        return Err(format!(
            "memory and cpu are not delegated to {} (enable them in {}/cgroup.subtree_control)",
            parent.display(),
            base.display()
        ));
    }
    std::fs::write(parent.join("cgroup.subtree_control"), "+memory +cpu").map_err(|e| {
        let _ = std::fs::remove_dir(&parent);
        format!("cannot enable controllers in {}: {e}", parent.display())
    })?;
    Ok(parent)
}

/// This process's `morel.<pid>` directories in the v1 `cpu` and `memory` hierarchies, beneath
/// our own cgroup in each (so limits set above us still hold).
fn try_cgroup_v1() -> Result<(PathBuf, PathBuf), String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts")
        .map_err(|e| format!("cannot read /proc/self/mounts: {e}"))?;
    let mut made: Vec<PathBuf> = Vec::new();
    let mut dir_for = |controller: &str, needed: &[&str]| -> Result<PathBuf, String> {
        let mount = mount_of(&mounts, "cgroup", Some(controller))
            .ok_or_else(|| format!("no {controller} hierarchy mounted"))?;
        let rel = own_cgroup(Some(controller))?;
        let base = mount.join(rel.trim_start_matches('/'));
        sweep_stale(&base);
        let parent = base.join(format!("morel.{}", std::process::id()));
        std::fs::create_dir_all(&parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        made.push(parent.clone());
        for file in needed {
            let f = parent.join(file);
            std::fs::OpenOptions::new()
                .write(true)
                .open(&f)
                .map_err(|e| format!("cannot write {}: {e}", f.display()))?;
        }
        Ok(parent)
    };
    let result = (|| {
        let cpu = dir_for("cpu", &["cpu.cfs_quota_us", "cgroup.procs"])?;
        let memory = dir_for("memory", &["memory.limit_in_bytes", "cgroup.procs"])?;
        Ok((cpu, memory))
    })();
    if result.is_err() {
        for d in &made {
            let _ = std::fs::remove_dir(d);
        }
    }
    result
}

/// The files of one cgroup limit: `(file, value)` pairs, in the order they must be written.
fn v2_files(limits: &Limits) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(m) = limits.memory_mb {
        out.push(("memory.max", (m << 20).to_string()));
    }
    if let Some(c) = limits.cpu {
        out.push(("cpu.max", format!("{} {CPU_PERIOD_US}", cpu_quota(c))));
    }
    out
}

fn v1_cpu_files(limits: &Limits) -> Vec<(&'static str, String)> {
    match limits.cpu {
        Some(c) => vec![
            ("cpu.cfs_period_us", CPU_PERIOD_US.to_string()),
            ("cpu.cfs_quota_us", cpu_quota(c).to_string()),
        ],
        None => Vec::new(),
    }
}

fn v1_memory_files(limits: &Limits) -> Vec<(&'static str, String)> {
    match limits.memory_mb {
        Some(m) => vec![("memory.limit_in_bytes", (m << 20).to_string())],
        None => Vec::new(),
    }
}

/// `cpu` cores as a CFS quota per [`CPU_PERIOD_US`] (at least 1 ms, the kernel's minimum).
fn cpu_quota(cpu: f64) -> u64 {
    ((cpu * CPU_PERIOD_US as f64) as u64).max(1000)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Version {
    V2,
    V1,
}

/// An instance's cgroup: one directory (v2) or one per hierarchy (v1, `cpu` then `memory`).
/// Removed on drop, once its processes are gone.
#[derive(Debug)]
pub struct InstanceCgroup {
    version: Version,
    dirs: Vec<PathBuf>,
}

impl InstanceCgroup {
    fn create_v2(parent: &Path, name: &str, limits: &Limits) -> std::io::Result<InstanceCgroup> {
        let cg = InstanceCgroup {
            version: Version::V2,
            dirs: vec![parent.join(name)],
        };
        make_dir(&cg.dirs[0])?;
        write_all(&cg.dirs[0], &v2_files(limits))?;
        if limits.memory_mb.is_some() {
            // No swap: the limit is what the process can really use.
            let _ = std::fs::write(cg.dirs[0].join("memory.swap.max"), "0");
        }
        Ok(cg)
    }

    fn create_v1(
        cpu: &Path,
        memory: &Path,
        name: &str,
        limits: &Limits,
    ) -> std::io::Result<InstanceCgroup> {
        let cg = InstanceCgroup {
            version: Version::V1,
            dirs: vec![cpu.join(name), memory.join(name)],
        };
        make_dir(&cg.dirs[0])?;
        make_dir(&cg.dirs[1])?;
        write_all(&cg.dirs[0], &v1_cpu_files(limits))?;
        write_all(&cg.dirs[1], &v1_memory_files(limits))?;
        if let Some(m) = limits.memory_mb {
            // No swap beyond the limit, where swap accounting is on (memsw may not be lower
            // than limit_in_bytes, so it is written after it).
            let _ = std::fs::write(
                cg.dirs[1].join("memory.memsw.limit_in_bytes"),
                (m << 20).to_string(),
            );
        }
        Ok(cg)
    }

    /// The `cgroup.procs` files a process writes `0` to, to join this cgroup.
    pub fn procs(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// Makes `jail`'s init join this cgroup; memory is then the cgroup's limit for the whole
    /// tree, not `RLIMIT_DATA` per process (which would fail allocations before the cgroup
    /// ever saw them).
    pub fn confine(&self, jail: &mut Jail) {
        jail.cgroups = self.procs();
        jail.memory_bytes = None;
    }

    /// Whether the kernel killed a process of this cgroup for exceeding its memory limit.
    pub fn oom_killed(&self) -> bool {
        let (dir, file, key) = match self.version {
            Version::V2 => (&self.dirs[0], "memory.events", "oom_kill "),
            Version::V1 => (&self.dirs[1], "memory.oom_control", "oom_kill "),
        };
        std::fs::read_to_string(dir.join(file))
            .ok()
            .and_then(|t| counter(&t, key))
            .is_some_and(|n| n > 0)
    }
}

/// `key N` in a cgroup's flat-keyed file.
fn counter(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|n| n.trim().parse().ok())
}

/// A fresh directory: one left by an earlier instance of the same name is removed first.
fn make_dir(dir: &Path) -> std::io::Result<()> {
    if dir.exists() {
        let _ = std::fs::remove_dir(dir);
    }
    std::fs::create_dir_all(dir)
}

fn write_all(dir: &Path, files: &[(&str, String)]) -> std::io::Result<()> {
    for (file, value) in files {
        let path = dir.join(file);
        std::fs::write(&path, value).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("writing {value} to {}: {e}", path.display()),
            )
        })?;
    }
    Ok(())
}

impl Drop for InstanceCgroup {
    fn drop(&mut self) {
        // A cgroup is removable once its last process has exited; the killed tree of an
        // instance may take a moment to be reaped, so a thread retries, bounded.
        let left: Vec<PathBuf> = self
            .dirs
            .drain(..)
            .filter(|d| std::fs::remove_dir(d).is_err() && d.exists())
            .collect();
        if left.is_empty() {
            return;
        }
        let _ = std::thread::Builder::new()
            .name("morel-cgroup-rm".into())
            .spawn(move || {
                for _ in 0..100 {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    if left
                        .iter()
                        .all(|d| std::fs::remove_dir(d).is_ok() || !d.exists())
                    {
                        return;
                    }
                }
                tracing::warn!(dirs = ?left, "an instance's cgroup still has processes after 10 s; left in place");
            });
    }
}

/// Prepares `cmd` so the child runs in its own process group and dies with the agent
/// (PR_SET_PDEATHSIG); without a cgroup, its memory is limited with `RLIMIT_DATA` (also when
/// containment is off and no sandbox init would set it). Joining a cgroup is the init's job
/// ([`InstanceCgroup::confine`]).
pub fn apply(cmd: &mut tokio::process::Command, limits: &Limits, cgroup: Option<&InstanceCgroup>) {
    let data_limit = if cgroup.is_none() {
        limits.memory_mb.map(|m| m << 20)
    } else {
        None
    };
    // SAFETY: the closure makes only async-signal-safe system calls (setpgid, prctl,
    // setrlimit) on values computed before the fork, and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
            if let Some(bytes) = data_limit {
                let lim = libc::rlimit {
                    rlim_cur: bytes as libc::rlim_t,
                    rlim_max: bytes as libc::rlim_t,
                };
                if libc::setrlimit(libc::RLIMIT_DATA, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// Sends `signal` to the process group led by `pid`.
pub fn kill_group(pid: u32, signal: i32) {
    // SAFETY: kill(2) with a negative pid targets a process group; no memory is involved.
    unsafe {
        libc::kill(-(pid as i32), signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_names_the_backend_and_the_limits() {
        let limits = Limits {
            memory_mb: Some(64),
            cpu: Some(0.5),
        };
        let r = LimitBackend::Rlimit {
            why: "no memory controller".into(),
        };
        let text = r.describe(&limits);
        assert!(
            text.starts_with("rlimit: memory 64 MiB (RLIMIT_DATA)"),
            "{text}"
        );
        assert!(text.contains("cpu not enforced"), "{text}");
        assert!(text.contains("no memory controller"), "{text}");
        let c = LimitBackend::CgroupV2 {
            parent: PathBuf::from("/x"),
        };
        assert_eq!(
            c.describe(&Limits::default()),
            "cgroup v2: memory unlimited, cpu unlimited"
        );
    }

    /// A temporary directory standing in for a cgroup hierarchy (the files are plain files).
    fn fake_hierarchy(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "morel-limits-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn v1_writes_the_quota_and_the_memory_limit_and_names_the_procs_files() {
        let (cpu, memory) = (fake_hierarchy("cpu"), fake_hierarchy("mem"));
        let limits = Limits {
            memory_mb: Some(256),
            cpu: Some(0.25),
        };
        let cg = InstanceCgroup::create_v1(&cpu, &memory, "inst", &limits).unwrap();
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(cpu.join("inst/cpu.cfs_period_us")), "100000");
        assert_eq!(read(cpu.join("inst/cpu.cfs_quota_us")), "25000");
        assert_eq!(read(memory.join("inst/memory.limit_in_bytes")), "268435456");
        assert_eq!(
            read(memory.join("inst/memory.memsw.limit_in_bytes")),
            "268435456"
        );
        assert_eq!(
            cg.procs(),
            vec![
                cpu.join("inst/cgroup.procs"),
                memory.join("inst/cgroup.procs")
            ]
        );
        let mut jail = Jail {
            memory_bytes: Some(1 << 30),
            ..Jail::default()
        };
        cg.confine(&mut jail);
        assert_eq!(jail.cgroups, cg.procs());
        assert_eq!(
            jail.memory_bytes, None,
            "the cgroup, not RLIMIT_DATA, limits memory"
        );

        // The v1 OOM counter is `oom_kill` in memory.oom_control.
        assert!(!cg.oom_killed());
        std::fs::write(
            memory.join("inst/memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
        )
        .unwrap();
        assert!(cg.oom_killed());
        // Plain files make these directories non-empty: a real cgroup's files vanish with
        // it. Emptied, they are removed on drop.
        for d in [cpu.join("inst"), memory.join("inst")] {
            for f in std::fs::read_dir(&d).unwrap() {
                std::fs::remove_file(f.unwrap().path()).unwrap();
            }
        }
        drop(cg);
        assert!(!cpu.join("inst").exists() && !memory.join("inst").exists());
        let _ = std::fs::remove_dir_all(&cpu);
        let _ = std::fs::remove_dir_all(&memory);
    }

    #[test]
    fn v1_without_limits_writes_nothing_and_small_quotas_are_clamped() {
        assert!(v1_cpu_files(&Limits::default()).is_empty());
        assert!(v1_memory_files(&Limits::default()).is_empty());
        assert_eq!(cpu_quota(0.001), 1000);
        assert_eq!(cpu_quota(1.5), 150_000);
        assert_eq!(
            v2_files(&Limits {
                memory_mb: Some(1),
                cpu: Some(0.5)
            }),
            vec![
                ("memory.max", "1048576".to_owned()),
                ("cpu.max", "50000 100000".to_owned())
            ]
        );
    }

    #[test]
    fn own_cgroups_and_mounts_are_found_per_hierarchy() {
        let cgroup = "9:name=systemd:/\n4:memory:/process_api/abc\n1:cpu,cpuacct:/x\n0::/\n";
        assert_eq!(own_cgroup_in(cgroup, None).as_deref(), Some("/"));
        assert_eq!(
            own_cgroup_in(cgroup, Some("memory")).as_deref(),
            Some("/process_api/abc")
        );
        assert_eq!(own_cgroup_in(cgroup, Some("cpu")).as_deref(), Some("/x"));
        assert_eq!(own_cgroup_in(cgroup, Some("pids")), None);
        let mounts = "cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,relatime,cpu,cpuacct 0 0\n\
                      cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0\n\
                      cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n";
        assert_eq!(
            mount_of(mounts, "cgroup", Some("cpu")),
            Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"))
        );
        assert_eq!(
            mount_of(mounts, "cgroup", Some("memory")),
            Some(PathBuf::from("/sys/fs/cgroup/memory"))
        );
        assert_eq!(
            mount_of(mounts, "cgroup2", None),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(mount_of(mounts, "cgroup", Some("pids")), None);
    }

    #[test]
    fn the_protection_says_what_holds() {
        let v1 = LimitBackend::CgroupV1 {
            cpu: PathBuf::from("/c"),
            memory: PathBuf::from("/m"),
        };
        let p = v1.protection(true);
        assert!(p.enabled && p.detail.starts_with("cgroup v1"), "{p:?}");
        assert!(
            v1.describe(&Limits {
                memory_mb: Some(8),
                cpu: Some(0.25)
            })
            .starts_with("cgroup v1: memory 8 MiB, cpu 0.25 cpu")
        );
        let r = LimitBackend::Rlimit { why: "none".into() }.protection(true);
        assert!(
            !r.enabled && r.detail.contains("cpu is NOT enforced"),
            "{r:?}"
        );
        assert!(!v1.protection(false).enabled);
    }
}
