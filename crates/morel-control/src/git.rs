//! Git access for seed 000's repository API: `git` run with an argument array (never a
//! shell), URL schemes allow-listed, branch names validated, and no prompts.

use std::path::Path;
use std::time::Duration;

use tokio::process::Command;

use crate::ApiError;

const ALLOWED_SCHEMES: &[&str] = &["https://", "ssh://", "file://"];

pub fn check_url(url: &str) -> Result<(), ApiError> {
    let url = url.trim();
    if url.starts_with('-')
        || url.contains("::")
        || url.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(ApiError::bad_request(format!(
            "repository URL {url:?} is not allowed"
        )));
    }
    if !ALLOWED_SCHEMES.iter().any(|s| url.starts_with(s)) {
        return Err(ApiError::bad_request(format!(
            "repository URL {url:?} must use one of: https, ssh, file"
        )));
    }
    Ok(())
}

pub fn check_branch(branch: &str) -> Result<(), ApiError> {
    let ok = !branch.is_empty()
        && branch.len() <= 200
        && !branch.starts_with('-')
        && !branch.starts_with('/')
        && !branch.ends_with('/')
        && !branch.ends_with(".lock")
        && !branch.contains("..")
        && !branch.contains("//")
        && !branch.contains("@{")
        && branch
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "branch name {branch:?} is not valid"
        )))
    }
}

fn git(program: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ALLOW_PROTOCOL", "https:ssh:file")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    cmd
}

async fn run(mut cmd: Command, what: &str) -> Result<String, ApiError> {
    let out = tokio::time::timeout(Duration::from_secs(300), cmd.output())
        .await
        .map_err(|_| ApiError::bad_request(format!("{what} timed out")))?
        .map_err(|e| ApiError::internal("running git", &e))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(ApiError::bad_request(format!(
            "{what} failed: {}",
            err.trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub async fn branches(program: &str, url: &str) -> Result<Vec<String>, ApiError> {
    check_url(url)?;
    let mut cmd = git(program);
    cmd.args(["ls-remote", "--heads", "--", url]);
    let out = run(cmd, "listing branches").await?;
    Ok(out
        .lines()
        .filter_map(|l| l.split('\t').nth(1))
        .filter_map(|r| r.strip_prefix("refs/heads/"))
        .map(str::to_owned)
        .collect())
}

pub async fn clone(program: &str, url: &str, branch: &str, dest: &Path) -> Result<(), ApiError> {
    check_url(url)?;
    check_branch(branch)?;
    let mut cmd = git(program);
    cmd.args([
        "clone",
        "--quiet",
        "--depth",
        "1",
        "--single-branch",
        "--branch",
        branch,
        "--",
        url,
    ])
    .arg(dest);
    run(cmd, "git clone").await.map(|_| ())
}

/// The paths of every file in `branch` of the repository, as `git ls-tree -r` lists them
/// (sorted, relative to its root). Clones only the branch's tip, without checking anything
/// out, into a scratch directory removed afterwards; blobs are not fetched where the server
/// can filter them out.
pub async fn files(program: &str, url: &str, branch: &str) -> Result<Vec<String>, ApiError> {
    check_url(url)?;
    check_branch(branch)?;
    let scratch =
        tempfile::tempdir().map_err(|e| ApiError::internal("creating a scratch directory", &e))?;
    let dest = scratch.path().join("repo");
    let mut cmd = git(program);
    cmd.args([
        "clone",
        "--quiet",
        "--no-checkout",
        "--filter=blob:none",
        "--depth",
        "1",
        "--single-branch",
        "--branch",
        branch,
        "--",
        url,
    ])
    .arg(&dest);
    run(cmd, "git clone").await?;
    let mut cmd = git(program);
    cmd.arg("-C")
        .arg(&dest)
        .args(["ls-tree", "-r", "-z", "--name-only", "HEAD"]);
    let out = run(cmd, "listing files").await?;
    Ok(out
        .split('\0')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rejects_injection() {
        assert!(check_url("--upload-pack=touch /tmp/x").is_err());
        assert!(check_url("ext::sh -c touch% /tmp/x").is_err());
        assert!(check_url("http://example.com/repo.git").is_err());
        assert!(check_url("file:///tmp/repo").is_ok());
        assert!(check_url("https://example.com/a b").is_err());
        assert!(check_branch("main").is_ok());
        assert!(check_branch("feature/x-1").is_ok());
        assert!(check_branch("--upload-pack=x").is_err());
        assert!(check_branch("a..b").is_err());
        assert!(check_branch("a;rm").is_err());
    }
}
