//! The CLI's own files: the saved login (server URL + token) and the signing key, in the
//! config directory (`MOREL_CONFIG_DIR`, default `~/.config/morel`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use morel_core::env_vars;
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Login {
    pub url: String,
    pub token: String,
}

pub fn config_dir() -> PathBuf {
    if let Ok(d) = std::env::var(env_vars::MOREL_CONFIG_DIR) {
        return PathBuf::from(d);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| ".".into());
    PathBuf::from(home).join(".config/morel")
}

pub fn signing_key_path() -> PathBuf {
    config_dir().join("signing.key")
}

pub fn save_login(login: &Login) -> Result<()> {
    let dir = config_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("login.json");
    std::fs::write(&path, serde_json::to_vec_pretty(login)?)
        .with_context(|| format!("writing {}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

/// Server URL and token: `MOREL_URL`/`MOREL_TOKEN` win over the saved login.
pub fn login() -> Result<Login> {
    let saved: Login = std::fs::read(config_dir().join("login.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let url = std::env::var(env_vars::MOREL_URL)
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or(saved.url);
    let token = std::env::var(env_vars::MOREL_TOKEN)
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or(saved.token);
    if url.is_empty() {
        anyhow::bail!(
            "no Morel server configured: run `morel up`, or `morel login URL --token T`, or set MOREL_URL and MOREL_TOKEN"
        );
    }
    Ok(Login {
        url: url.trim_end_matches('/').to_owned(),
        token,
    })
}
