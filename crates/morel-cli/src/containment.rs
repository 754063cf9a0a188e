//! Turning on the containment of workloads for the commands that run them (`up`, `server`,
//! `agent`), and locking down the state directory they keep keys in.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result, bail};
use morel_core::env_vars::{MOREL_CONTAINMENT, MOREL_UID_RANGE};
use morel_runtime_process::Sandbox;

/// The default range of app uids: above the ids distributions hand to people and services.
pub const DEFAULT_UID_RANGE: (u32, u32) = (200_000, 65_536);

/// Configures the sandbox for this process (once) and logs which layers are in force; a
/// missing layer is a warning, never silent.
pub fn start() -> Result<&'static Sandbox> {
    let enabled = std::env::var(MOREL_CONTAINMENT).map_or(true, |v| v.trim() != "0");
    let range = match std::env::var(MOREL_UID_RANGE) {
        Ok(v) => parse_uid_range(&v).with_context(|| format!("{MOREL_UID_RANGE}={v}"))?,
        Err(_) => DEFAULT_UID_RANGE,
    };
    let exe = std::env::current_exe().context("finding the morel binary (the workloads' init)")?;
    let sandbox = Sandbox::configure(Some(exe), enabled, range);
    // The sandbox's layers, then how memory and cpu are limited (cgroup v2, v1 or rlimit).
    for p in morel_agent::protections() {
        if p.enabled {
            tracing::info!(layer = p.layer, "containment: {}", p.detail);
        } else {
            tracing::warn!(layer = p.layer, "containment off: {}", p.detail);
        }
    }
    Ok(sandbox)
}

/// `FIRST-LAST` (inclusive) → `(first, count)`.
pub fn parse_uid_range(text: &str) -> Result<(u32, u32)> {
    let (a, b) = text
        .trim()
        .split_once('-')
        .context("expected FIRST-LAST, e.g. 200000-265535")?;
    let first: u32 = a.trim().parse().context("FIRST is not a uid")?;
    let last: u32 = b.trim().parse().context("LAST is not a uid")?;
    if first < 1000 || last < first {
        bail!("the range must start at 1000 or above and end at or after its start");
    }
    Ok((first, last - first + 1))
}

/// The state directory is the server's alone (0700), and its keys, token and database files
/// are readable by the server's uid only (0600). Workloads never see it: their view of it
/// holds only their own release, dependencies and scratch directory.
pub fn lock_state_dir(state_dir: &Path) -> Result<()> {
    let set = |p: &Path, mode: u32| -> Result<()> {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("setting the mode of {} to {mode:o}", p.display()))
    };
    set(state_dir, 0o700)?;
    let keys = state_dir.join("keys");
    if keys.is_dir() {
        set(&keys, 0o700)?;
        for e in std::fs::read_dir(&keys)?.flatten() {
            if e.path().is_file() {
                set(&e.path(), 0o600)?;
            }
        }
    }
    for e in std::fs::read_dir(state_dir)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if (name.ends_with(".token") || name.contains(".db")) && e.path().is_file() {
            set(&e.path(), 0o600)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_ranges_are_inclusive_and_checked() {
        assert_eq!(parse_uid_range("200000-200009").unwrap(), (200_000, 10));
        assert_eq!(parse_uid_range(" 5000 - 5000 ").unwrap(), (5000, 1));
        for bad in ["", "200000", "x-y", "10-20", "300-200", "5000-4000"] {
            assert!(parse_uid_range(bad).is_err(), "{bad}");
        }
    }
}
