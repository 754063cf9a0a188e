//! Bearer-token authentication for the control API. The call path is public and never
//! passes through here. Seed 000's client sends `Authorization: jwt <token>`; it is the
//! same token under another scheme name.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest as _, Sha256};

use crate::ApiError;

/// The admin token as servers know it: only its SHA-256, which every server of one database
/// reads from the store (the first server to start records it), so the token one server
/// printed is accepted by all of them. It never prints.
#[derive(Clone)]
pub struct Token(Arc<[u8; 32]>);

/// The platform setting holding the admin token's SHA-256 (hex).
pub const ADMIN_TOKEN_SETTING: &str = "admin_token_sha256";

impl Token {
    /// A token known by its plain text.
    pub fn new(plain: &str) -> Self {
        Token(Arc::new(Sha256::digest(plain.as_bytes()).into()))
    }

    /// A token known by its SHA-256 in hex, as stored.
    pub fn from_hash_hex(hex_hash: &str) -> Option<Self> {
        let bytes: [u8; 32] = hex::decode(hex_hash).ok()?.try_into().ok()?;
        Some(Token(Arc::new(bytes)))
    }

    pub fn hash_hex(&self) -> String {
        hex::encode(*self.0)
    }

    /// Constant-time comparison of the hashes, so response timing reveals nothing.
    pub fn matches(&self, candidate: &str) -> bool {
        let c: [u8; 32] = Sha256::digest(candidate.as_bytes()).into();
        self.0.iter().zip(c).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(***)")
    }
}

/// This installation's admin token: the store's, if a server recorded one; else `local` (the
/// plain token of this server's state directory), recorded now (of two servers starting at
/// once, the first to record wins). Returns the token and whether `local` is it.
pub async fn installation_token(
    store: &dyn morel_store::Store,
    local: &str,
) -> Result<(Token, bool), morel_store::StoreError> {
    let mine = Token::new(local);
    let stored = store
        .put_setting_if_absent(ADMIN_TOKEN_SETTING, &mine.hash_hex())
        .await?;
    match Token::from_hash_hex(&stored) {
        Some(t) => {
            let same = t.hash_hex() == mine.hash_hex();
            Ok((t, same))
        }
        None => Err(morel_store::StoreError::Corrupt {
            column: "platform_settings.value",
            message: format!("{ADMIN_TOKEN_SETTING} is not a SHA-256"),
        }),
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
