//! `morel keys`: this CLI's signing key, and the keys a server trusts.

use anyhow::{Context, Result, bail};
use morel_bundle::{PublicKey, SigningKey};
use reqwest::Method;
use serde_json::Value;

use crate::args::KeysCommand;
use crate::client::Client;
use crate::settings;

pub async fn run(cmd: KeysCommand) -> Result<()> {
    let path = settings::signing_key_path();
    match cmd {
        KeysCommand::Generate { force } => {
            if path.exists() && !force {
                bail!(
                    "{} already exists (use --force to replace it; bundles signed with the old key will need it trusted)",
                    path.display()
                );
            }
            let key = SigningKey::generate()?;
            key.save(&path)?;
            println!("wrote {} (key id {})", path.display(), key.key_id());
            println!("{}", key.public().to_text());
        }
        KeysCommand::Show(flag) => {
            let key = SigningKey::load(&path)
                .with_context(|| "no signing key yet: run `morel keys generate`")?;
            let public = key.public();
            if flag.json {
                let v = serde_json::json!({
                    "key_id": public.key_id(),
                    "public_key": public.to_text(),
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{}", public.to_text());
            }
        }
        KeysCommand::Trust { key, name } => {
            let text = match std::fs::read_to_string(&key) {
                Ok(t) => t,
                Err(_) => key.clone(),
            };
            let public = PublicKey::from_text(text.trim()).with_context(|| {
                format!("{key:?} is neither a public key nor a file holding one")
            })?;
            let client = Client::from_settings()?;
            let body = serde_json::json!({ "public_key": public.to_text(), "name": name });
            let v: Value = client
                .json(client.request(Method::POST, "/api/keys").json(&body))
                .await?;
            println!(
                "trusted key {}",
                v.get("key_id").and_then(|k| k.as_str()).unwrap_or("?")
            );
        }
        KeysCommand::Ls(j) => {
            let client = Client::from_settings()?;
            let keys: Vec<Value> = client.get("/api/keys").await?;
            if j.json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
            } else {
                for k in keys {
                    let s = |f: &str| k.get(f).and_then(|v| v.as_str()).unwrap_or("").to_owned();
                    println!("{}  {:<12} {}", s("key_id"), s("name"), s("created_at"));
                }
            }
        }
        KeysCommand::Rm { key_id } => {
            let client = Client::from_settings()?;
            client
                .send(client.request(Method::DELETE, &format!("/api/keys/{key_id}")))
                .await?;
            println!("removed {key_id}");
        }
    }
    Ok(())
}
