//! The server's configuration: one typed struct, filled by the CLI.

use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub state_dir: PathBuf,
    /// URL clients use to reach this server (shown in deploy output and given to workers).
    pub public_url: String,
    pub python: String,
    pub node: String,
    pub npm: String,
    pub git: String,
    /// Host names `{app}.{domain}` and `{env}--{app}.{domain}` route to environments.
    pub domain: Option<String>,
    /// Bundles of an environment's releases older than the newest this many are deleted
    /// after a git deploy (0 keeps everything).
    pub keep_releases: usize,
    /// Instances run on joined agents, placed by the scheduler (`morel server`), not in this
    /// process (`morel up`).
    pub remote_agents: bool,
}

impl ServerConfig {
    pub fn new(listen: SocketAddr, state_dir: PathBuf) -> Self {
        let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
        ServerConfig {
            listen,
            public_url: format!("http://{listen}"),
            state_dir,
            python: std::env::var(morel_core::env_vars::MOREL_PYTHON)
                .unwrap_or_else(|_| resolve_python("python3")),
            node: env(morel_core::env_vars::MOREL_NODE, "node"),
            npm: env(morel_core::env_vars::MOREL_NPM, "npm"),
            git: "git".into(),
            domain: None,
            keep_releases: 10,
            remote_agents: false,
        }
    }

    pub fn admin_token_path(&self) -> PathBuf {
        self.state_dir.join("admin.token")
    }

    pub fn server_key_path(&self) -> PathBuf {
        self.state_dir.join("keys/server.key")
    }

    /// The key-encryption key's file (`MOREL_KEK_FILE`, else `STATE/keys/kek.key`).
    pub fn kek_path(&self) -> PathBuf {
        std::env::var_os(morel_core::env_vars::MOREL_KEK_FILE)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| self.state_dir.join("keys/kek.key"))
    }
}

/// The interpreter behind `python3` on PATH, as Python itself reports it (`sys.executable`).
/// Version managers put shell-script shims on PATH (pyenv's run `pyenv rehash` after
/// `pip install`, which fails when two installs race); running the real binary skips the shim
/// and its startup cost. Falls back to the name when Python cannot say.
fn resolve_python(name: &str) -> String {
    std::process::Command::new(name)
        .args(["-c", "import sys; print(sys.executable)"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| name.to_owned())
}
