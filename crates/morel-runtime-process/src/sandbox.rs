//! Containment of workloads: what a worker or an http instance may reach.
//!
//! Every workload process is started through the sandbox's init, the `morel` binary itself run
//! as `morel __sandbox JAIL -- PROGRAM ARGS…` ([`INIT_ARG`]). The host side ([`Sandbox`])
//! decides once per process what this machine can enforce, builds the command, and, when it may
//! (Morel runs as root), starts it as the first process of a new PID namespace from a
//! long-lived spawner thread. The init side ([`run_init`]) runs in the new process before the
//! workload's code, as plain single-threaded Rust after `exec`, and applies, in order:
//!
//! 1. as the first process of a PID namespace: a mount namespace with a fresh `/proc` (only the
//!    workload's own processes), the state directory hidden behind an empty tmpfs into which
//!    only the workload's own trees are bound back, private writable `/tmp`, `/var/tmp` and
//!    `/dev/shm` (tmpfs, bounded);
//! 0. (before anything, and before it forks) the instance's cgroups ([`Jail::cgroups`]), which
//!    limit memory and CPU for the whole tree;
//! 2. rlimits: memory (`RLIMIT_DATA`, when there is no cgroup), processes (`RLIMIT_NPROC`, per
//!    app uid), open files, no core dumps;
//! 3. the app's own uid and gid, no supplementary groups;
//! 4. Landlock: read and execute beneath the system and runtime trees and the app's own files,
//!    write only beneath its scratch directory (and its private `/dev/shm`), signals only within
//!    the sandbox (ABI 6);
//! 5. a seccomp filter denying the calls a workload never needs ([`DENIED_SYSCALLS`]);
//!
//! then, as PID 1, forks the workload and stays as its init: it forwards termination signals,
//! reaps orphans, and exits with the workload's status, which ends every other process of the
//! namespace (children started with `setsid` included). Killing the init (a stop, `kill_on_drop`,
//! or the server's death through `PR_SET_PDEATHSIG`) ends the whole tree.
//!
//! A layer the machine lacks is left out with a warning at startup and shown by
//! [`Sandbox::protections`]; `MOREL_CONTAINMENT=0` turns containment off (for benchmarks).
//! This module holds `unsafe` for the calls with no safe wrapper: `unshare`/`setns` on the
//! spawner thread, the init's signal handlers, `fork`, and probing the Landlock ABI.

#![allow(unsafe_code)]

use std::collections::BTreeSet;
use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::mpsc;

use serde::{Deserialize, Serialize};

/// The first argument that makes the `morel` binary run as a workload's init.
pub const INIT_ARG: &str = "__sandbox";

/// Set in every contained workload: its pid as Morel shows it (`morel ps`, the API), which
/// in its own PID namespace `os.getpid()` does not tell.
pub const PID_VAR: &str = "MOREL_PID";

/// Default limits when a manifest sets none.
pub const DEFAULT_MEMORY_MB: u64 = 1024;
/// Processes and threads per app uid (all of the app's instances on a machine together).
pub const DEFAULT_PROCESSES: u64 = 256;
pub const DEFAULT_OPEN_FILES: u64 = 4096;

/// The system calls the seccomp filter answers with EPERM.
pub const DENIED_SYSCALLS: &[&str] = &[
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "bpf",
    "keyctl",
    "add_key",
    "request_key",
    "mount",
    "umount2",
    "pivot_root",
    "unshare",
    "setns",
    "perf_event_open",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    "swapon",
    "swapoff",
    "open_by_handle_at",
    "userfaultfd",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    "syslog",
    "iopl",
    "ioperm",
    "acct",
    "quotactl",
    "settimeofday",
    "clock_settime",
];

/// Everything one workload process is confined to. Built by the host, read by the init.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Jail {
    /// Run as this uid (and the gid of the same number), without supplementary groups.
    pub uid: Option<u32>,
    /// `RLIMIT_DATA` in bytes (the fallback when the instance has no cgroup).
    pub memory_bytes: Option<u64>,
    /// `cgroup.procs` files the init writes `0` to before anything else (as the server's
    /// uid, before it forks): the instance's cgroups, so the init and its whole tree are
    /// inside. Made and removed by the agent (`morel-agent`'s `limits.rs`).
    #[serde(default)]
    pub cgroups: Vec<PathBuf>,
    /// `RLIMIT_NPROC` (counted per uid: every process and thread of the app on this machine).
    pub processes: Option<u64>,
    /// `RLIMIT_NOFILE`.
    pub open_files: Option<u64>,
    /// Trees the workload may read and execute: the app's release, its dependencies, the
    /// runners, the runtimes. System trees are added by the init.
    pub read: Vec<PathBuf>,
    /// Trees the workload may write: its scratch directory.
    pub write: Vec<PathBuf>,
    /// Trees hidden behind an empty tmpfs, where only `read` and `write` entries are bound back
    /// (the state directory).
    pub hide: Vec<PathBuf>,
    /// Apply Landlock.
    pub landlock: bool,
    /// Apply the seccomp filter.
    pub seccomp: bool,
    /// Run in a user namespace of its own (Morel is not root; see
    /// [`Sandbox::user_namespaces`]), with PID and mount namespaces owned by it.
    #[serde(default)]
    pub user_namespace: bool,
}

/// What containment is in force on this machine: one line per layer.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Protection {
    pub layer: &'static str,
    pub enabled: bool,
    /// How it is enforced, or why it is not and what that means.
    pub detail: String,
}

/// The process-wide containment settings, decided once ([`Sandbox::configure`]).
#[derive(Debug)]
pub struct Sandbox {
    /// The `morel` binary that runs as the init; `None`: workloads start bare.
    init: Option<PathBuf>,
    /// Morel runs as root: uids per app and namespaces are possible.
    root: bool,
    landlock_abi: i32,
    seccomp: bool,
    /// The spawner thread, when it could make a PID namespace.
    spawner: Option<mpsc::Sender<SpawnJob>>,
    spawner_error: Option<String>,
    uid_range: (u32, u32),
    /// Not root: whether workloads get a user namespace (probed once), or why not.
    user_namespaces: Result<bool, String>,
}

static SANDBOX: OnceLock<Sandbox> = OnceLock::new();

type SpawnJob = Box<dyn FnOnce(bool) + Send>;

impl Sandbox {
    /// Decides what can be enforced here. `init` is the `morel` binary (None in processes that
    /// are not it, e.g. unit tests: workloads then run without containment); `enabled` false
    /// turns every layer off. Later calls keep the first configuration.
    pub fn configure(
        init: Option<PathBuf>,
        enabled: bool,
        uid_range: (u32, u32),
    ) -> &'static Sandbox {
        SANDBOX.get_or_init(|| {
            let init = init.filter(|_| enabled);
            let root = nix::unistd::geteuid().is_root();
            let (spawner, spawner_error) = if init.is_some() && root {
                match start_spawner() {
                    Ok(tx) => (Some(tx), None),
                    Err(e) => (None, Some(e)),
                }
            } else {
                (None, None)
            };
            let user_namespaces = match &init {
                Some(exe) if !root => probe_user_namespaces(exe),
                _ => Ok(false),
            };
            Sandbox {
                user_namespaces,
                init,
                root,
                landlock_abi: landlock_abi(),
                seccomp: std::fs::read_to_string("/proc/self/status")
                    .map(|s| s.lines().any(|l| l.starts_with("Seccomp:")))
                    .unwrap_or(false),
                spawner,
                spawner_error,
                uid_range,
            }
        })
    }

    /// The configuration in force; an unconfigured process (a library's tests) runs workloads
    /// bare.
    pub fn current() -> &'static Sandbox {
        Sandbox::configure(None, false, (0, 0))
    }

    /// Whether workloads go through the init at all.
    pub fn enabled(&self) -> bool {
        self.init.is_some()
    }

    /// Whether each app gets its own uid (Morel runs as root with containment on).
    pub fn uid_per_app(&self) -> bool {
        self.enabled() && self.root
    }

    /// Whether workloads run in a user namespace of their own (Morel is not root, and the
    /// kernel allows it): with PID and mount namespaces owned by it, as with root.
    pub fn user_namespaces(&self) -> bool {
        self.enabled() && matches!(self.user_namespaces, Ok(true))
    }

    /// The uid range apps are given ids from: `(first, count)`.
    pub fn uid_range(&self) -> (u32, u32) {
        self.uid_range
    }

    /// The layers in force here, and what a missing one means.
    pub fn protections(&self) -> Vec<Protection> {
        let on = self.enabled();
        let off = |why: &str| why.to_owned();
        let mut out = Vec::new();
        out.push(Protection {
            layer: "uid per app",
            enabled: on && self.root,
            detail: if !on {
                off("containment is off: workloads run as the server's user")
            } else if self.root {
                format!(
                    "each app runs as its own uid and gid from {}..{}",
                    self.uid_range.0,
                    self.uid_range.0 as u64 + self.uid_range.1 as u64
                )
            } else {
                off(
                    "Morel is not root: workloads run as the server's uid, so they can signal \
                     it and each other; Landlock and seccomp still confine their files",
                )
            },
        });
        out.push(Protection {
            layer: "environment",
            enabled: true,
            detail: "workers start from an empty environment plus the documented allow-list".into(),
        });
        out.push(Protection {
            layer: "user namespace",
            enabled: self.user_namespaces(),
            detail: match (&self.user_namespaces, on, self.root) {
                (_, false, _) => off("containment is off"),
                (_, true, true) => "not needed: Morel is root and gives each app its own uid".into(),
                (Ok(true), true, false) => "each instance runs as root of a user namespace of its own \
                     (the server's uid outside, no capabilities once its mounts are made), with \
                     PID and mount namespaces"
                    .into(),
                (Ok(false), true, false) => off("unavailable"),
                (Err(e), true, false) => format!(
                    "unavailable ({e}): without root, workloads share the server's PID and mount namespaces"
                ),
            },
        });
        let ns = self.spawner.is_some() || self.user_namespaces();
        out.push(Protection {
            layer: "pid and mount namespaces",
            enabled: on && ns,
            detail: if !on {
                off("containment is off")
            } else if ns {
                "each instance has its own PID namespace (stopping it ends its whole tree, \
                 setsid children included) and mount namespace (its own /proc, /tmp, /var/tmp \
                 and /dev/shm; the state directory shows only its own files)"
                    .into()
            } else if let Some(e) = &self.spawner_error {
                format!("unavailable ({e}): a workload's children can outlive it, and it sees every process in /proc")
            } else {
                off("needs root or a user namespace: a workload's children can outlive it, and it sees every process in /proc")
            },
        });
        out.push(Protection {
            layer: "landlock",
            enabled: on && self.landlock_abi > 0,
            detail: if !on {
                off("containment is off")
            } else if self.landlock_abi > 0 {
                format!(
                    "ABI {}: read-only system, runtime and app trees, writes only to the instance's scratch directory{}",
                    self.landlock_abi,
                    if self.landlock_abi >= 6 { ", signals only within the instance" } else { "" }
                )
            } else {
                off("the kernel has no Landlock: files are confined by uid and namespaces only")
            },
        });
        out.push(Protection {
            layer: "seccomp",
            enabled: on && self.seccomp,
            detail: if !on {
                off("containment is off")
            } else if self.seccomp {
                format!(
                    "denies {} system calls (ptrace, bpf, mount, unshare, …)",
                    DENIED_SYSCALLS.len()
                )
            } else {
                off("the kernel has no seccomp")
            },
        });
        out.push(Protection {
            layer: "limits",
            enabled: on,
            detail: if on {
                format!(
                    "rlimits per workload: {DEFAULT_PROCESSES} processes per app (RLIMIT_NPROC), \
                     {DEFAULT_OPEN_FILES} open files, no core dumps (memory and cpu: see their own line)"
                )
            } else {
                off("containment is off")
            },
        });
        out
    }

    /// One line per layer, for logs and `morel doctor`.
    pub fn describe(&self) -> Vec<String> {
        self.protections()
            .iter()
            .map(|p| {
                format!(
                    "{:<26} {:<3} {}",
                    p.layer,
                    if p.enabled { "on" } else { "off" },
                    p.detail
                )
            })
            .collect()
    }

    /// A command that runs `program args` confined to `jail` (bare when containment is off).
    /// The caller sets the environment, stdio and cwd, then starts it with [`Sandbox::spawn`].
    pub fn command(&self, program: &Path, args: &[String], jail: &Jail) -> tokio::process::Command {
        match &self.init {
            Some(init) => {
                let mut cmd = tokio::process::Command::new(init);
                cmd.arg(INIT_ARG)
                    .arg(serde_json::to_string(jail).unwrap_or_default())
                    .arg("--")
                    .arg(program)
                    .args(args);
                cmd
            }
            None => {
                let mut cmd = tokio::process::Command::new(program);
                cmd.args(args);
                cmd
            }
        }
    }

    /// Starts `cmd`: as the first process of a new PID namespace when this machine allows it.
    pub async fn spawn(
        &self,
        mut cmd: tokio::process::Command,
    ) -> io::Result<tokio::process::Child> {
        let Some(spawner) = &self.spawner else {
            return cmd.spawn();
        };
        let handle = tokio::runtime::Handle::current();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: SpawnJob = Box::new(move |_in_new_ns| {
            let _enter = handle.enter();
            let _ = tx.send(cmd.spawn());
        });
        spawner
            .send(job)
            .map_err(|_| io::Error::other("the sandbox's spawner thread is gone"))?;
        rx.await
            .map_err(|_| io::Error::other("the sandbox's spawner thread dropped a spawn"))?
    }

    /// The tree a workload's program lives in, to add to [`Jail::read`]: `prefix/bin/prog` →
    /// `prefix`, for the program as found on `PATH` and for its real path (a venv's python is a
    /// link into its interpreter's prefix; a pyenv shim runs from pyenv's root).
    pub fn program_trees(program: &Path, path_var: Option<&std::ffi::OsStr>) -> Vec<PathBuf> {
        let found = if program.components().count() > 1 {
            Some(program.to_path_buf())
        } else {
            path_var.and_then(|p| {
                std::env::split_paths(p)
                    .map(|d| d.join(program))
                    .find(|c| c.is_file())
            })
        };
        let mut out = Vec::new();
        for p in found
            .iter()
            .cloned()
            .chain(found.iter().filter_map(|f| f.canonicalize().ok()))
        {
            if let Some(prefix) = p.parent().and_then(Path::parent)
                && prefix != Path::new("/")
                && !out.iter().any(|o: &PathBuf| o == prefix)
            {
                out.push(prefix.to_path_buf());
            }
        }
        out
    }
}

/// A workload's own writable directory, owned by its uid, mode 0700; removed on drop.
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    pub fn create(base: &Path, name: &str, uid: Option<u32>) -> io::Result<Scratch> {
        std::fs::create_dir_all(base)?;
        let path = base.join(name);
        if path.exists() {
            std::fs::remove_dir_all(&path)?;
        }
        std::fs::create_dir(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))?;
        if let Some(uid) = uid {
            std::os::unix::fs::chown(&path, Some(uid), Some(uid))?;
        }
        Ok(Scratch { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The environment every workload starts from (before the app's config, secrets and Morel's
/// own `MOREL_*` variables): `PATH` and the locale from the server, `HOME` and `TMPDIR` at
/// its scratch directory. Nothing else of the server's environment reaches it.
pub fn base_env(scratch: &Path) -> Vec<(String, String)> {
    let mut env = vec![
        (
            "PATH".to_owned(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
        ),
        ("HOME".to_owned(), scratch.display().to_string()),
        ("TMPDIR".to_owned(), scratch.display().to_string()),
    ];
    for k in ["LANG", "LC_ALL", "TZ"] {
        if let Ok(v) = std::env::var(k) {
            env.push((k.to_owned(), v));
        }
    }
    if !env.iter().any(|(k, _)| k == "LANG") {
        env.push(("LANG".to_owned(), "C.UTF-8".to_owned()));
    }
    env
}

fn landlock_abi() -> i32 {
    // SAFETY: landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION) only returns
    // the ABI version (or an error); no memory is passed.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            1u32,
        )
    };
    if v < 0 { 0 } else { v as i32 }
}

/// Runs `init probe` once: whether an unprivileged process may make a user namespace here.
fn probe_user_namespaces(init: &Path) -> Result<bool, String> {
    let out = std::process::Command::new(init)
        .args([INIT_ARG, "probe"])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", init.display()))?;
    if out.status.success() {
        Ok(true)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// The thread that starts contained workloads. Before each spawn it makes a fresh PID
/// namespace for its children (`unshare(CLONE_NEWPID)`, after returning to its own with
/// `setns`), so the child is PID 1 of a namespace of its own. It lives as long as the process:
/// `PR_SET_PDEATHSIG` fires when the thread that forked a child ends.
fn start_spawner() -> Result<mpsc::Sender<SpawnJob>, String> {
    let (tx, rx) = mpsc::channel::<SpawnJob>();
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    std::thread::Builder::new()
        .name("morel-spawner".into())
        .spawn(move || {
            let own = match std::fs::File::open("/proc/thread-self/ns/pid") {
                Ok(f) => f,
                Err(e) => {
                    let _ =
                        ready_tx.send(Err(format!("cannot open this thread's PID namespace: {e}")));
                    return;
                }
            };
            let fresh = || -> io::Result<()> {
                // SAFETY: setns/unshare change only this thread's namespace for its future
                // children; the fd is open for the duration of the call.
                unsafe {
                    if libc::setns(own.as_raw_fd(), libc::CLONE_NEWPID) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    if libc::unshare(libc::CLONE_NEWPID) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            };
            if let Err(e) = fresh() {
                let _ = ready_tx.send(Err(format!("cannot create a PID namespace: {e}")));
                return;
            }
            let _ = ready_tx.send(Ok(()));
            let mut first = true;
            while let Ok(job) = rx.recv() {
                let ok = if first { true } else { fresh().is_ok() };
                first = false;
                job(ok);
            }
        })
        .map_err(|e| format!("cannot start the spawner thread: {e}"))?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(tx),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("the spawner thread ended".into()),
    }
}

// ---------------------------------------------------------------------------------------------
// The init: runs in the workload's process, after exec.

/// Runs as the init of one workload (`morel __sandbox JAIL -- PROGRAM ARGS…`, `args` without
/// the program name and [`INIT_ARG`]). Never returns: it execs the workload, or supervises it
/// as PID 1 and exits with its status. A failure is written to stderr (the app's log) and
/// exits 126.
pub fn run_init(args: Vec<OsString>) -> ! {
    if args.first().is_some_and(|a| a == "probe") {
        std::process::exit(probe_user_namespace());
    }
    match init(args) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("morel sandbox: {e}");
            std::process::exit(126)
        }
    }
}

fn init(args: Vec<OsString>) -> Result<i32, String> {
    let mut it = args.into_iter();
    let jail: Jail = it
        .next()
        .and_then(|j| serde_json::from_slice(j.as_bytes()).ok())
        .ok_or("missing or unreadable jail")?;
    if it.next().as_deref() != Some(std::ffi::OsStr::new("--")) {
        return Err("expected -- before the program".into());
    }
    let argv: Vec<CString> = it
        .map(|a| CString::new(a.as_bytes()).map_err(|_| "an argument holds a NUL byte".to_owned()))
        .collect::<Result<_, _>>()?;
    if argv.is_empty() {
        return Err("no program to run".into());
    }
    // First, before this process forks anything: whatever the workload starts is inside.
    join_cgroups(&jail.cgroups)?;
    die_with_parent()?;
    let pid1 = nix::unistd::getpid().as_raw() == 1;
    // The pid Morel shows for the instance is this process's on the host; the host's /proc,
    // still mounted, says it before the namespace gets its own.
    let host_pid = std::fs::read_link("/proc/self")
        .ok()
        .and_then(|p| p.to_str().and_then(|s| s.parse::<u32>().ok()))
        .unwrap_or_else(std::process::id);
    let mut env: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| k != PID_VAR)
        .filter_map(|(k, v)| {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend(v.into_vec());
            CString::new(kv).ok()
        })
        .collect();
    env.extend(CString::new(format!("{PID_VAR}={host_pid}")).ok());
    if !pid1 && jail.user_namespace {
        // Without root: this process stays outside as the instance's pid; its child is PID 1
        // of the workload's namespaces and goes on confining from here.
        enter_user_namespace()?;
        return run_supervised(|| match contain(&jail, &argv, &env, true) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("morel sandbox: {e}");
                126
            }
        });
    }
    contain(&jail, &argv, &env, pid1)
}

/// Confines this process to `jail` and runs the workload: as PID 1 of its namespaces
/// (`pid1`), a child it supervises; otherwise the workload replaces it.
fn contain(jail: &Jail, argv: &[CString], env: &[CString], pid1: bool) -> Result<i32, String> {
    let jail = jail.clone();
    let (argv, env) = (argv.to_vec(), env.to_vec());
    if pid1 {
        die_with_parent()?;
        namespaces(&jail)?;
    }
    limits(&jail)?;
    if jail.user_namespace && pid1 {
        drop_capabilities()?;
    }
    if let Some(uid) = jail.uid {
        use nix::unistd::{Gid, Uid, setgid, setgroups, setuid};
        setgroups(&[]).map_err(|e| format!("setgroups: {e}"))?;
        setgid(Gid::from_raw(uid)).map_err(|e| format!("setgid {uid}: {e}"))?;
        setuid(Uid::from_raw(uid)).map_err(|e| format!("setuid {uid}: {e}"))?;
        // A change of credentials clears the parent-death signal.
        die_with_parent()?;
    }
    if jail.landlock {
        landlock(&jail, pid1)?;
    }
    if jail.seccomp {
        seccomp()?;
    }
    if pid1 {
        supervise(&argv, &env)
    } else {
        Err(exec(&argv, &env))
    }
}

/// Moves this process into each cgroup (`0` written to its `cgroup.procs` means "the writer").
fn join_cgroups(procs: &[PathBuf]) -> Result<(), String> {
    for p in procs {
        std::fs::write(p, "0").map_err(|e| format!("joining the cgroup {}: {e}", p.display()))?;
    }
    Ok(())
}

fn die_with_parent() -> Result<(), String> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .map_err(|e| format!("PR_SET_PDEATHSIG: {e}"))
}

fn exec(argv: &[CString], env: &[CString]) -> String {
    match nix::unistd::execvpe(&argv[0], argv, env) {
        Err(e) => format!("cannot run {}: {e}", argv[0].to_string_lossy()),
        Ok(never) => match never {},
    }
}

/// Mount namespace: a fresh `/proc` for this PID namespace, the hidden trees behind empty
/// tmpfs mounts with the workload's own trees bound back at their paths, a private `/dev/shm`.
fn namespaces(jail: &Jail) -> Result<(), String> {
    use nix::mount::{MsFlags, mount};
    use nix::sched::{CloneFlags, unshare};
    unshare(CloneFlags::CLONE_NEWNS).map_err(|e| format!("unshare(CLONE_NEWNS): {e}"))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("making / private: {e}"))?;

    // Open every tree to bind back before anything is hidden.
    let exposed: Vec<&PathBuf> = jail.read.iter().chain(&jail.write).collect();
    let masks = masks(jail, &exposed);
    let mut binds = Vec::new();
    for e in &exposed {
        if masks.iter().any(|m| e.starts_with(m) && *e != m)
            && !exposed
                .iter()
                .any(|o| e.starts_with(o) && o != e && masks.iter().any(|m| o.starts_with(m)))
        {
            let fd = nix::fcntl::open(
                e.as_path(),
                nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(|err| format!("opening {}: {err}", e.display()))?;
            binds.push(((*e).clone(), fd));
        }
    }

    mount(
        Some("proc"),
        "/proc",
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(|e| format!("mounting /proc: {e}"))?;

    for m in &masks {
        // /tmp and /var/tmp are the workload's own, writable and bounded; the other masks only
        // hold the trees bound back.
        let options = if PRIVATE_TMP.iter().any(|t| m == Path::new(t)) {
            "mode=1777,size=64m,nr_inodes=16384"
        } else {
            "mode=0755,size=1m,nr_inodes=4096"
        };
        mount(
            Some("tmpfs"),
            m.as_path(),
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(options),
        )
        .map_err(|e| format!("hiding {}: {e}", m.display()))?;
    }
    for (path, fd) in &binds {
        let is_dir = std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .map(|m| m.is_dir())
            .unwrap_or(true);
        if is_dir {
            std::fs::create_dir_all(path).map_err(|e| format!("mkdir {}: {e}", path.display()))?;
        } else {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("mkdir {}: {e}", parent.display()))?;
            }
            std::fs::write(path, b"").map_err(|e| format!("creating {}: {e}", path.display()))?;
        }
        mount(
            Some(format!("/proc/self/fd/{}", fd.as_raw_fd()).as_str()),
            path.as_path(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| format!("binding {}: {e}", path.display()))?;
    }
    if Path::new("/dev/shm").is_dir() {
        mount(
            Some("tmpfs"),
            "/dev/shm",
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("mode=1777,size=64m"),
        )
        .map_err(|e| format!("mounting a private /dev/shm: {e}"))?;
    }
    Ok(())
}

/// The trees to hide: the jail's `hide` list, `/tmp` and `/var/tmp`, and, when the workload
/// runs as another uid, the highest ancestor of an exposed tree that others cannot traverse
/// (e.g. `/root` above a pyenv interpreter), so the exposed tree is reachable. Nested ones are
/// covered by their ancestor.
fn masks(jail: &Jail, exposed: &[&PathBuf]) -> Vec<PathBuf> {
    let mut all: BTreeSet<PathBuf> = jail.hide.iter().cloned().collect();
    for t in PRIVATE_TMP {
        if Path::new(t).is_dir() {
            all.insert(PathBuf::from(t));
        }
    }
    if jail.uid.is_some() {
        for e in exposed {
            let mut cur = PathBuf::from("/");
            for c in e.components().skip(1) {
                cur.push(c);
                if cur == **e {
                    break;
                }
                let traversable = std::fs::metadata(&cur)
                    .map(|m| m.permissions().mode() & 0o001 != 0)
                    .unwrap_or(true);
                if !traversable {
                    all.insert(cur.clone());
                    break;
                }
            }
        }
    }
    let all: Vec<PathBuf> = all.into_iter().collect();
    all.iter()
        .filter(|m| !all.iter().any(|o| o != *m && m.starts_with(o)))
        .filter(|m| m.is_dir())
        .cloned()
        .collect()
}

fn limits(jail: &Jail) -> Result<(), String> {
    use nix::sys::resource::{Resource, setrlimit};
    let set = |r: Resource, v: u64, what: &str| {
        setrlimit(r, v, v).map_err(|e| format!("setrlimit {what} {v}: {e}"))
    };
    if let Some(m) = jail.memory_bytes {
        set(Resource::RLIMIT_DATA, m, "RLIMIT_DATA")?;
    }
    if let Some(n) = jail.processes {
        set(Resource::RLIMIT_NPROC, n, "RLIMIT_NPROC")?;
    }
    if let Some(n) = jail.open_files {
        set(Resource::RLIMIT_NOFILE, n, "RLIMIT_NOFILE")?;
    }
    set(Resource::RLIMIT_CORE, 0, "RLIMIT_CORE")?;
    Ok(())
}

/// Replaced by a private, writable tmpfs (64 MiB) in each workload's mount namespace.
const PRIVATE_TMP: [&str; 2] = ["/tmp", "/var/tmp"];

/// System trees every runtime may read and execute.
const SYSTEM_READ: &[&str] = &[
    "/usr",
    "/lib",
    "/lib32",
    "/lib64",
    "/bin",
    "/sbin",
    "/etc",
    "/opt",
    "/sys/devices/system/cpu",
    "/sys/fs/cgroup",
    "/dev/urandom",
    "/dev/random",
];
/// Device files every runtime may read and write.
const SYSTEM_WRITE: &[&str] = &["/dev/null", "/dev/zero", "/dev/full"];

fn landlock(jail: &Jail, pid1: bool) -> Result<(), String> {
    use landlock::{
        ABI, Access, AccessFs, BitFlags, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset,
        RulesetAttr, RulesetCreatedAttr, Scope,
    };
    let abi = ABI::V6;
    let read = AccessFs::from_read(abi);
    let all = AccessFs::from_all(abi);
    let mut rules: Vec<(&Path, BitFlags<AccessFs>)> = Vec::new();
    rules.extend(SYSTEM_READ.iter().map(|p| (Path::new(*p), read)));
    if pid1 {
        // Only this namespace's /proc: other processes are not in it.
        rules.push((Path::new("/proc"), read));
        rules.push((Path::new("/dev/shm"), all));
        // Its private /tmp and /var/tmp (trees of the state dir bound back under them stay
        // read-only: they belong to the server's uid).
        rules.extend(PRIVATE_TMP.iter().map(|t| (Path::new(*t), all)));
    }
    rules.extend(
        SYSTEM_WRITE
            .iter()
            .map(|p| (Path::new(*p), read | AccessFs::WriteFile)),
    );
    rules.extend(jail.read.iter().map(|p| (p.as_path(), read)));
    rules.extend(jail.write.iter().map(|p| (p.as_path(), all)));
    let beneath = rules.into_iter().filter_map(|(path, access)| {
        // A tree this machine does not have is skipped.
        let fd = PathFd::new(path).ok()?;
        let is_dir = std::fs::metadata(path).map(|m| m.is_dir()).unwrap_or(false);
        let access = if is_dir {
            access
        } else {
            access & AccessFs::from_file(abi)
        };
        Some(PathBeneath::new(fd, access))
    });
    let err = |e: landlock::RulesetError| format!("landlock: {e}");
    Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(all)
        .map_err(err)?
        .scope(Scope::from_all(abi))
        .map_err(err)?
        .create()
        .map_err(err)?
        .add_rules(beneath.map(Ok::<_, landlock::RulesetError>))
        .map_err(err)?
        .restrict_self()
        .map_err(err)?;
    Ok(())
}

fn seccomp() -> Result<(), String> {
    use seccompiler::{
        BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule, TargetArch,
    };
    let fail = |e: &dyn std::fmt::Debug| format!("seccomp: {e:?}");
    let arch: TargetArch = std::env::consts::ARCH.try_into().map_err(|e| fail(&e))?;
    let mut rules = std::collections::BTreeMap::new();
    for name in DENIED_SYSCALLS {
        if let Some(nr) = syscall_number(name) {
            rules.insert(nr, vec![]);
        }
    }
    // clone with a namespace flag: a new user namespace would give back what is denied. One
    // rule per flag; a call matching any rule is denied.
    let mut clone_rules = Vec::new();
    for flag in [
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWNS,
        libc::CLONE_NEWPID,
        libc::CLONE_NEWNET,
        libc::CLONE_NEWIPC,
        libc::CLONE_NEWUTS,
        libc::CLONE_NEWCGROUP,
    ] {
        let f = flag as u64;
        clone_rules.push(
            SeccompRule::new(vec![
                SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(f), f)
                    .map_err(|e| fail(&e))?,
            ])
            .map_err(|e| fail(&e))?,
        );
    }
    rules.insert(libc::SYS_clone, clone_rules);
    let deny = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(|e| fail(&e))?;
    // clone3 passes its flags in memory a filter cannot read: ENOSYS makes libc fall back to clone.
    let clone3 = SeccompFilter::new(
        [(libc::SYS_clone3, vec![])].into_iter().collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(|e| fail(&e))?;
    for f in [deny, clone3] {
        let prog: BpfProgram = f.try_into().map_err(|e| fail(&e))?;
        seccompiler::apply_filter(&prog).map_err(|e| fail(&e))?;
    }
    Ok(())
}

fn syscall_number(name: &str) -> Option<i64> {
    Some(match name {
        "ptrace" => libc::SYS_ptrace,
        "process_vm_readv" => libc::SYS_process_vm_readv,
        "process_vm_writev" => libc::SYS_process_vm_writev,
        "bpf" => libc::SYS_bpf,
        "keyctl" => libc::SYS_keyctl,
        "add_key" => libc::SYS_add_key,
        "request_key" => libc::SYS_request_key,
        "mount" => libc::SYS_mount,
        "umount2" => libc::SYS_umount2,
        "pivot_root" => libc::SYS_pivot_root,
        "unshare" => libc::SYS_unshare,
        "setns" => libc::SYS_setns,
        "perf_event_open" => libc::SYS_perf_event_open,
        "kexec_load" => libc::SYS_kexec_load,
        "kexec_file_load" => libc::SYS_kexec_file_load,
        "init_module" => libc::SYS_init_module,
        "finit_module" => libc::SYS_finit_module,
        "delete_module" => libc::SYS_delete_module,
        "reboot" => libc::SYS_reboot,
        "swapon" => libc::SYS_swapon,
        "swapoff" => libc::SYS_swapoff,
        "open_by_handle_at" => libc::SYS_open_by_handle_at,
        "userfaultfd" => libc::SYS_userfaultfd,
        "fsopen" => libc::SYS_fsopen,
        "fsconfig" => libc::SYS_fsconfig,
        "fsmount" => libc::SYS_fsmount,
        "fspick" => libc::SYS_fspick,
        "move_mount" => libc::SYS_move_mount,
        "open_tree" => libc::SYS_open_tree,
        "mount_setattr" => libc::SYS_mount_setattr,
        "syslog" => libc::SYS_syslog,
        "iopl" => libc::SYS_iopl,
        "ioperm" => libc::SYS_ioperm,
        "acct" => libc::SYS_acct,
        "quotactl" => libc::SYS_quotactl,
        "settimeofday" => libc::SYS_settimeofday,
        "clock_settime" => libc::SYS_clock_settime,
        _ => return None,
    })
}

extern "C" fn forward_noop(_: libc::c_int) {}

/// PID 1 of the workload's namespace: fork the workload, forward termination signals to it,
/// reap every orphan, exit with the workload's status (which ends the namespace).
fn supervise(argv: &[CString], env: &[CString]) -> Result<i32, String> {
    run_supervised(|| {
        let e = exec(argv, env);
        eprintln!("morel sandbox: {e}");
        127
    })
}

/// Forks; the child runs `body` (with default signal handling) and exits with what it
/// returns; this process forwards termination signals to it, reaps every orphan, and returns
/// the child's status once it has exited.
fn run_supervised(body: impl FnOnce() -> i32) -> Result<i32, String> {
    use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, sigprocmask};
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    const FORWARD: [Signal; 6] = [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
    ];
    let mut set = SigSet::empty();
    for s in FORWARD.iter().chain([Signal::SIGCHLD].iter()) {
        set.add(*s);
        // An init ignores signals left at their default action; a handler makes them arrive.
        // SAFETY: the handler does nothing, so it is async-signal-safe.
        unsafe {
            nix::sys::signal::signal(*s, SigHandler::Handler(forward_noop))
                .map_err(|e| format!("signal {s}: {e}"))?;
        }
    }
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
        .map_err(|e| format!("sigprocmask: {e}"))?;
    // SAFETY: this process is single-threaded (it is the init after exec), so the child may
    // run any code.
    let child = match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
        nix::unistd::ForkResult::Child => {
            for s in FORWARD.iter().chain([Signal::SIGCHLD].iter()) {
                // SAFETY: restoring the default action.
                unsafe {
                    let _ = nix::sys::signal::signal(*s, SigHandler::SigDfl);
                }
            }
            let _ = sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None);
            std::process::exit(body());
        }
        nix::unistd::ForkResult::Parent { child } => child,
    };
    loop {
        let sig = set.wait().map_err(|e| format!("sigwait: {e}"))?;
        if sig != Signal::SIGCHLD {
            let _ = nix::sys::signal::kill(child, sig);
            continue;
        }
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == child => return Ok(code),
                Ok(WaitStatus::Signaled(pid, s, _)) if pid == child => return Ok(128 + s as i32),
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    }
}

/// Without root: a user namespace in which this process is root, with new PID and mount
/// namespaces owned by it. Its uid and gid map to the server's; supplementary groups are
/// denied. The next child is PID 1 of the new PID namespace.
fn enter_user_namespace() -> Result<(), String> {
    use nix::sched::{CloneFlags, unshare};
    let (uid, gid) = (nix::unistd::getuid(), nix::unistd::getgid());
    unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID)
        .map_err(|e| format!("unshare(CLONE_NEWUSER): {e}"))?;
    std::fs::write("/proc/self/setgroups", "deny")
        .map_err(|e| format!("writing setgroups: {e}"))?;
    std::fs::write("/proc/self/uid_map", format!("0 {uid} 1"))
        .map_err(|e| format!("writing uid_map: {e}"))?;
    std::fs::write("/proc/self/gid_map", format!("0 {gid} 1"))
        .map_err(|e| format!("writing gid_map: {e}"))?;
    Ok(())
}

/// Gives up every capability (the bounding set too, so an exec regains none): after the
/// mounts, root in a user namespace is no more than the server's own uid.
fn drop_capabilities() -> Result<(), String> {
    for cap in 0..=63 {
        // SAFETY: prctl with integer arguments only; EINVAL past the last capability.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if rc != 0 {
            break;
        }
    }
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capset reads a valid version-3 header and two data structs.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if rc != 0 {
        return Err(format!("capset: {}", io::Error::last_os_error()));
    }
    Ok(())
}

/// Whether workloads can get a user namespace here (run once by an unprivileged server):
/// `morel __sandbox probe` tries it and exits 0.
pub fn probe_user_namespace() -> i32 {
    match enter_user_namespace() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_trees_are_the_prefixes_of_the_program_and_its_real_path() {
        let dir = tempfile_dir();
        let bin = dir.join("prefix/bin");
        std::fs::create_dir_all(&bin).unwrap();
        let real = dir.join("real/bin");
        std::fs::create_dir_all(&real).unwrap();
        std::fs::write(real.join("python3.11"), b"").unwrap();
        std::os::unix::fs::symlink(real.join("python3.11"), bin.join("python")).unwrap();
        let trees = Sandbox::program_trees(&bin.join("python"), None);
        assert_eq!(
            trees,
            vec![dir.join("prefix"), dir.canonicalize().unwrap().join("real")]
        );
        let found = Sandbox::program_trees(Path::new("python"), Some(bin.as_os_str()));
        assert_eq!(found[0], dir.join("prefix"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn masks_hide_the_state_dir_and_untraversable_ancestors_once() {
        let dir = tempfile_dir();
        let closed = dir.join("closed");
        std::fs::create_dir_all(closed.join("py/versions/3")).unwrap();
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();
        let state = dir.join("state");
        std::fs::create_dir_all(state.join("releases/a")).unwrap();
        let jail = Jail {
            uid: Some(200_000),
            hide: vec![state.clone(), state.join("releases")],
            ..Jail::default()
        };
        let py = closed.join("py/versions/3");
        let rel = state.join("releases/a");
        let m = masks(&jail, &[&py, &rel]);
        // Under /tmp (the test's temp dir), everything is covered by the /tmp mask.
        if dir.starts_with("/tmp") {
            assert!(m.contains(&PathBuf::from("/tmp")), "{m:?}");
            assert!(
                !m.iter()
                    .any(|p| p.starts_with("/tmp") && p != Path::new("/tmp")),
                "{m:?}"
            );
        } else {
            assert!(m.contains(&closed) && m.contains(&state), "{m:?}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "morel-sandbox-test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
