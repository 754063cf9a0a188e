//! A small typed client for the control API, turning error bodies into readable errors.

use anyhow::{Context, Result, bail};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;

use crate::settings::{self, Login};

pub struct Client {
    http: reqwest::Client,
    pub login: Login,
}

impl Client {
    pub fn from_settings() -> Result<Self> {
        Ok(Client {
            http: reqwest::Client::builder().build()?,
            login: settings::login()?,
        })
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.login.url))
            .bearer_auth(&self.login.token)
    }

    pub async fn send(&self, req: RequestBuilder) -> Result<reqwest::Response> {
        let resp = req.send().await.with_context(|| {
            format!(
                "cannot reach the Morel server at {} (is `morel up` running?)",
                self.login.url
            )
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let msg = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or(text);
        if status == StatusCode::UNAUTHORIZED {
            bail!("{msg}\nhint: run `morel login URL --token T` or set MOREL_TOKEN");
        }
        bail!("{msg} (HTTP {})", status.as_u16())
    }

    pub async fn json<T: DeserializeOwned>(&self, req: RequestBuilder) -> Result<T> {
        let resp = self.send(req).await?;
        Ok(resp.json().await?)
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.json(self.request(Method::GET, path)).await
    }
}
