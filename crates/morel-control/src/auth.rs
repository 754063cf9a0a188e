//! Bearer-token authentication for the control API. The call path is public and never
//! passes through here. Seed 000's client sends `Authorization: jwt <token>`; it is the
//! same token under another scheme name.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::ApiError;

/// A secret that never prints.
#[derive(Clone)]
pub struct Token(Arc<str>);

impl Token {
    pub fn new(s: &str) -> Self {
        Token(Arc::from(s))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// Constant-time comparison, so response timing does not reveal a prefix.
    pub fn matches(&self, candidate: &str) -> bool {
        let a = self.0.as_bytes();
        let b = candidate.as_bytes();
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(***)")
    }
}

pub fn presented(req: &Request) -> Option<&str> {
    let h = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = h.split_once(' ')?;
    matches!(scheme.to_ascii_lowercase().as_str(), "bearer" | "jwt").then(|| token.trim())
}

pub async fn require_token(State(token): State<Token>, req: Request, next: Next) -> Response {
    match presented(&req) {
        Some(t) if token.matches(t) => next.run(req).await,
        _ => ApiError::unauthorized().into_response(),
    }
}
