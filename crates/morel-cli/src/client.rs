//! A small typed client for the control API, turning error bodies into readable errors, and
//! the process exit codes chosen by the HTTP status of an error answer.

use anyhow::{Context, Result};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;

use crate::settings::{self, Login};

/// Exit codes of `morel` (documented in `morel --help` and the README's usage).
pub mod exit_code {
    /// Any other failure (bad input, no server reachable, a failed deploy, …).
    pub const OTHER: u8 = 1;
    /// Command-line usage error (clap's own code).
    pub const USAGE: u8 = 2;
    /// The server answered 404: no such app, environment, release, function or key.
    pub const NOT_FOUND: u8 = 3;
    /// The server answered 401 or 403: missing or wrong token.
    pub const UNAUTHORIZED: u8 = 4;
    /// The server answered 409: the name is taken, or the state forbids it right now.
    pub const CONFLICT: u8 = 5;
    /// The server answered 5xx.
    pub const SERVER_ERROR: u8 = 6;
}

/// The `after_help` of `morel --help`.
pub const EXIT_CODES_HELP: &str = "Exit codes: 0 success, 1 other failure, 2 usage error, \
3 not found (HTTP 404), 4 unauthorized (HTTP 401/403), 5 conflict (HTTP 409), \
6 server error (HTTP 5xx).";

/// An error answer of the server: its message (from the JSON body's `error`, else the body) and
/// its status, which chooses the exit code.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    /// Reads an unsuccessful answer's body into an error.
    pub async fn from_response(resp: reqwest::Response) -> ApiError {
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or(text);
        ApiError { status, message }
    }

    pub fn exit_code(&self) -> u8 {
        match self.status {
            StatusCode::NOT_FOUND => exit_code::NOT_FOUND,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => exit_code::UNAUTHORIZED,
            StatusCode::CONFLICT => exit_code::CONFLICT,
            s if s.is_server_error() => exit_code::SERVER_ERROR,
            _ => exit_code::OTHER,
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.status == StatusCode::UNAUTHORIZED {
            return write!(
                f,
                "{}\nhint: run `morel login URL --token T` or set MOREL_TOKEN",
                self.message
            );
        }
        write!(f, "{} (HTTP {})", self.message, self.status.as_u16())
    }
}

impl std::error::Error for ApiError {}

/// The exit code for a command's error: from the first server answer in its chain, else
/// [`exit_code::OTHER`].
pub fn exit_code_of(e: &anyhow::Error) -> u8 {
    e.chain()
        .find_map(|cause| cause.downcast_ref::<ApiError>())
        .map_or(exit_code::OTHER, ApiError::exit_code)
}

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
        Err(ApiError::from_response(resp).await.into())
    }

    pub async fn json<T: DeserializeOwned>(&self, req: RequestBuilder) -> Result<T> {
        let resp = self.send(req).await?;
        Ok(resp.json().await?)
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.json(self.request(Method::GET, path)).await
    }
}
