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
            domain: None,
            keep_releases: 10,
        }
    }

    pub fn admin_token_path(&self) -> PathBuf {
        self.state_dir.join("admin.token")
    }

    pub fn server_key_path(&self) -> PathBuf {
        self.state_dir.join("keys/server.key")
    }
}
