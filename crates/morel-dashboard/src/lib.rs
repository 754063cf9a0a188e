//! The web dashboard: a small client app (one HTML page, one vanilla JavaScript file, one
//! stylesheet) compiled into the binary with `include_str!` and served by [`router`].
//!
//! There is no build step and no server-side rendering: the page talks to the same JSON control
//! API as the CLI, sending the admin token as `Authorization: Bearer`, and keeps the token in the
//! tab's `sessionStorage` (never in a URL or a cookie). This crate therefore holds no state,
//! touches no store and needs no token itself: everything it serves is public and static, and the
//! API it calls enforces authentication.
//!
//! Every response carries `Cache-Control: no-store` (a dashboard must never show a stale build
//! after an upgrade) and a Content-Security-Policy that allows scripts, styles, images and
//! fetches from the server's own origin only, with no inline script or style. The JavaScript
//! renders server data with `textContent` and DOM nodes, never `innerHTML`.

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::IntoResponse;
use axum::routing::get;

/// The dashboard's page, served at `/`.
pub const INDEX_HTML: &str = include_str!("../assets/index.html");
/// The client app, served at [`APP_JS_PATH`].
pub const APP_JS: &str = include_str!("../assets/app.js");
/// The stylesheet, served at [`APP_CSS_PATH`].
pub const APP_CSS: &str = include_str!("../assets/app.css");
/// The icon, served at [`FAVICON_PATH`] (browsers ask for one; without it they log a 404).
pub const FAVICON_SVG: &str = include_str!("../assets/favicon.svg");

pub const APP_JS_PATH: &str = "/dashboard/app.js";
pub const APP_CSS_PATH: &str = "/dashboard/app.css";
pub const FAVICON_PATH: &str = "/dashboard/favicon.svg";

/// Only the server's own origin, for everything; no inline code, no plugins, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; font-src 'self'; object-src 'none'; \
     base-uri 'self'; form-action 'self'; frame-ancestors 'none'";

/// The dashboard's routes: `GET /`, `GET /dashboard/app.js`, `GET /dashboard/app.css` and
/// `GET /dashboard/favicon.svg`. Merge it into the server's router; it needs no state.
pub fn router() -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            APP_JS_PATH,
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            APP_CSS_PATH,
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
        .route(
            FAVICON_PATH,
            get(|| async { asset("image/svg+xml", FAVICON_SVG) }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (
                HeaderName::from_static("cross-origin-opener-policy"),
                HeaderValue::from_static("same-origin"),
            ),
        ],
        body,
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Serves the router on a loopback port and returns the raw HTTP/1.1 response to a GET.
    async fn get_raw(path: &str) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, router()).await });
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        conn.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        conn.read_to_string(&mut out).await.unwrap();
        server.abort();
        out.to_ascii_lowercase()
    }

    #[tokio::test]
    async fn every_asset_has_its_type_and_the_security_headers() {
        for (path, ty) in [
            ("/", "text/html"),
            (APP_JS_PATH, "text/javascript"),
            (APP_CSS_PATH, "text/css"),
            (FAVICON_PATH, "image/svg+xml"),
        ] {
            let r = get_raw(path).await;
            assert!(r.starts_with("http/1.1 200"), "{path}: {r}");
            assert!(r.contains(&format!("content-type: {ty}")), "{path}: {r}");
            assert!(r.contains("cache-control: no-store"), "{path}: {r}");
            assert!(
                r.contains("content-security-policy: default-src 'self'"),
                "{path}: {r}"
            );
            assert!(r.contains("x-content-type-options: nosniff"), "{path}: {r}");
        }
    }

    #[test]
    fn the_page_loads_only_its_own_assets() {
        assert!(INDEX_HTML.contains(&format!("src=\"{APP_JS_PATH}\"")));
        assert!(INDEX_HTML.contains(&format!("href=\"{APP_CSS_PATH}\"")));
        assert!(INDEX_HTML.contains(&format!("href=\"{FAVICON_PATH}\"")));
        // The CSP forbids inline code; keep the page free of it so nothing is silently blocked.
        assert!(!INDEX_HTML.contains("<script>"));
        assert!(!INDEX_HTML.contains("<style"));
        assert!(!INDEX_HTML.contains(" style="));
        assert!(!has_inline_handler(INDEX_HTML), "no inline event handlers");
    }

    /// True if the markup has an attribute like ` onclick=`.
    fn has_inline_handler(html: &str) -> bool {
        html.match_indices(" on").any(|(i, _)| {
            let rest = &html[i + 3..];
            let name_len = rest
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(rest.len());
            name_len > 0 && rest[name_len..].starts_with('=')
        })
    }

    #[test]
    fn the_client_never_parses_server_data_as_html() {
        for banned in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "localStorage",
        ] {
            assert!(!APP_JS.contains(banned), "app.js uses {banned}");
        }
    }
}
