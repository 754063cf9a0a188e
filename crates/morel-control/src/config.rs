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
            python: env(morel_core::env_vars::MOREL_PYTHON, "python3"),
            node: env(morel_core::env_vars::MOREL_NODE, "node"),
            npm: env(morel_core::env_vars::MOREL_NPM, "npm"),
            git: "git".into(),
            remote_agents: false,
        }
    }

    pub fn admin_token_path(&self) -> PathBuf {
        self.state_dir.join("admin.token")
    }

    pub fn server_key_path(&self) -> PathBuf {
        self.state_dir.join("keys/server.key")
    }
}
