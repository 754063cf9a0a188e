//! Resource limits for HTTP service instances: a cgroup v2 per instance (memory.max, cpu.max)
//! when this machine delegates the memory and cpu controllers to us, otherwise `setrlimit`
//! in the child before exec (RLIMIT_DATA for memory; CPU is then not enforced).
//!
//! Which one is in force is decided once per agent ([`LimitBackend::detect`]) and shown in
//! every instance's status, so an operator never has to guess. This is the second place in
//! the tree with `unsafe`: `pre_exec` runs between fork and exec and may only make
//! async-signal-safe calls.

#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// What an instance may use. `None` means unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Limits {
    pub memory_mb: Option<u64>,
    /// CPU cores (e.g. 0.5).
    pub cpu: Option<f64>,
}

/// How limits are enforced on this machine.
#[derive(Clone, Debug)]
pub enum LimitBackend {
    /// A delegated cgroup v2 directory whose subtree has `memory` and `cpu` enabled; each
    /// instance gets a child cgroup in it.
    CgroupV2 { parent: PathBuf },
    /// Per-process rlimits; `why` says why cgroup v2 is not usable here.
    Rlimit { why: String },
}

impl LimitBackend {
    /// Looks for a usable cgroup v2 hierarchy: the unified mount, our own cgroup in it, and a
    /// child cgroup `morel.<pid>` we can create with the memory and cpu controllers enabled.
    pub fn detect() -> LimitBackend {
        match try_cgroup_v2() {
            Ok(parent) => LimitBackend::CgroupV2 { parent },
            Err(why) => LimitBackend::Rlimit { why },
        }
    }

    /// One line for the instance status: what is enforced, and how.
    pub fn describe(&self, limits: &Limits) -> String {
        let mem = limits.memory_mb.map(|m| format!("{m} MiB"));
        let cpu = limits.cpu.map(|c| format!("{c} cpu"));
        match self {
            LimitBackend::CgroupV2 { .. } => format!(
                "cgroup v2: memory {}, cpu {}",
                mem.unwrap_or_else(|| "unlimited".into()),
                cpu.unwrap_or_else(|| "unlimited".into())
            ),
            LimitBackend::Rlimit { why } => format!(
                "rlimit: memory {}, cpu {} (cgroup v2 unavailable: {why})",
                mem.map(|m| format!("{m} (RLIMIT_DATA)"))
                    .unwrap_or_else(|| "unlimited".into()),
                if cpu.is_some() {
                    "not enforced"
                } else {
                    "unlimited"
                }
            ),
        }
    }
}

fn try_cgroup_v2() -> Result<PathBuf, String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts")
        .map_err(|e| format!("cannot read /proc/self/mounts: {e}"))?;
    let mount = mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, path, kind) = (f.next()?, f.next()?, f.next()?);
            (kind == "cgroup2").then(|| PathBuf::from(path))
        })
        .next()
        .ok_or_else(|| "no cgroup2 mount".to_owned())?;
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
    let rel = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or_else(|| "this process has no cgroup v2 membership".to_owned())?;
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

/// An instance's cgroup (removed on drop, once its processes are gone).
pub struct InstanceCgroup {
    dir: PathBuf,
    procs: OwnedFd,
}

impl InstanceCgroup {
    pub fn create(parent: &Path, name: &str, limits: &Limits) -> std::io::Result<InstanceCgroup> {
        let dir = parent.join(name);
        std::fs::create_dir_all(&dir)?;
        if let Some(m) = limits.memory_mb {
            std::fs::write(dir.join("memory.max"), (m << 20).to_string())?;
            // No swap: the limit is what the process can really use.
            let _ = std::fs::write(dir.join("memory.swap.max"), "0");
        }
        if let Some(c) = limits.cpu {
            let period = 100_000u64;
            let quota = ((c * period as f64) as u64).max(1000);
            std::fs::write(dir.join("cpu.max"), format!("{quota} {period}"))?;
        }
        let procs = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.procs"))?
            .into();
        Ok(InstanceCgroup { dir, procs })
    }

    /// Whether the kernel killed a process of this cgroup for exceeding memory.max.
    pub fn oom_killed(&self) -> bool {
        std::fs::read_to_string(self.dir.join("memory.events"))
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("oom_kill "))
                    .and_then(|n| n.trim().parse::<u64>().ok())
            })
            .is_some_and(|n| n > 0)
    }
}

impl Drop for InstanceCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Prepares `cmd` so the child runs in its own process group, dies with the agent
/// (PR_SET_PDEATHSIG), and is limited: moved into `cgroup` when given, else `setrlimit`.
pub fn apply(cmd: &mut tokio::process::Command, limits: &Limits, cgroup: Option<&InstanceCgroup>) {
    let procs_fd = cgroup.map(|c| c.procs.as_raw_fd());
    let data_limit = if cgroup.is_none() {
        limits.memory_mb.map(|m| m << 20)
    } else {
        None
    };
    // SAFETY: the closure makes only async-signal-safe system calls (setpgid, prctl, write,
    // setrlimit) on values computed before the fork, and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
            if let Some(fd) = procs_fd {
                // Writing "0" moves the writing process (this child) into the cgroup.
                if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
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
}
