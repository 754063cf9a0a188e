//! Limits on the public listener's connections: how long a request head, a pause in a request
//! body and an idle keep-alive connection may take, and how many connections are served at
//! once. Read once from the environment (`morel_core::env_vars`), with the defaults below.

use std::sync::OnceLock;
use std::time::Duration;

use morel_core::env_vars::{
    MOREL_BODY_TIMEOUT_MS, MOREL_HEADER_TIMEOUT_MS, MOREL_IDLE_TIMEOUT_MS, MOREL_MAX_CONNECTIONS,
};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConnLimits {
    /// From a request's first byte to the end of its head.
    pub header: Duration,
    /// The longest pause between reads of a request body (408 past it).
    pub body: Duration,
    /// The longest wait for the next request on a keep-alive connection.
    pub idle: Duration,
    /// Connections served at once; more are answered 503.
    pub max_connections: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            header: Duration::from_secs(10),
            body: Duration::from_secs(10),
            idle: Duration::from_secs(120),
            max_connections: 10_000,
        }
    }
}

impl ConnLimits {
    /// The defaults, overridden by the environment where it sets a positive number.
    pub fn from_env() -> ConnLimits {
        let d = ConnLimits::default();
        let ms = |name: &str, default: Duration| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|v| *v > 0)
                .map(Duration::from_millis)
                .unwrap_or(default)
        };
        ConnLimits {
            header: ms(MOREL_HEADER_TIMEOUT_MS, d.header),
            body: ms(MOREL_BODY_TIMEOUT_MS, d.body),
            idle: ms(MOREL_IDLE_TIMEOUT_MS, d.idle),
            max_connections: std::env::var(MOREL_MAX_CONNECTIONS)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .filter(|v| *v > 0)
                .unwrap_or(d.max_connections),
        }
    }
}

/// This process's limits ([`ConnLimits::from_env`], read once).
pub fn conn_limits() -> &'static ConnLimits {
    static LIMITS: OnceLock<ConnLimits> = OnceLock::new();
    LIMITS.get_or_init(ConnLimits::from_env)
}

/// The answer to a request whose body stalled: 408, and the connection closes.
pub const BODY_TIMEOUT_ANSWER: &str =
    "the request body stopped arriving (a pause longer than the body timeout)";
