//! Every environment variable Morel reads or sets, in one place.

/// Server URL the CLI talks to (overrides what `morel up`/`morel login` saved).
pub const MOREL_URL: &str = "MOREL_URL";
/// Bearer token the CLI sends (overrides what `morel up`/`morel login` saved).
pub const MOREL_TOKEN: &str = "MOREL_TOKEN";
/// Directory of the CLI's own config (saved login, signing key). Default `~/.config/morel`.
pub const MOREL_CONFIG_DIR: &str = "MOREL_CONFIG_DIR";
/// The servers' key-encryption key: a file of 64 hex digits that seals the installation's
/// secrets key in the store. Every server of one database needs the same one. Default
/// `STATE/keys/kek.key` (created on first start).
pub const MOREL_KEK_FILE: &str = "MOREL_KEK_FILE";
/// Log filter for Morel's own tracing output (`info`, `morel_agent=debug`, …).
pub const MOREL_LOG: &str = "MOREL_LOG";
/// Set and not empty: no colors in any output, even on a terminal (<https://no-color.org>).
/// Output that is not a terminal never has any.
pub const NO_COLOR: &str = "NO_COLOR";
/// Threads serving the public listener of `morel up` (calls, the edge, the API). Default: one
/// per core.
pub const MOREL_HTTP_THREADS: &str = "MOREL_HTTP_THREADS";
/// `0` turns off the fast lane of `morel up`'s public listener (calls and the edge answered
/// straight off the socket); everything then goes through hyper and the router. Default: on.
pub const MOREL_FAST_LANE: &str = "MOREL_FAST_LANE";
/// Python interpreter used for workers and discovery. Default `python3`.
pub const MOREL_PYTHON: &str = "MOREL_PYTHON";
/// Node interpreter used for workers and discovery. Default `node`.
pub const MOREL_NODE: &str = "MOREL_NODE";
/// npm used to install Node dependencies. Default `npm`.
pub const MOREL_NPM: &str = "MOREL_NPM";

/// Set in every instance: the app it belongs to.
pub const INSTANCE_APP: &str = "MOREL_APP";
/// Set in every instance: its environment (`production` or a preview name).
pub const INSTANCE_ENV: &str = "MOREL_ENV";
/// Set in every instance: the resource it serves.
pub const INSTANCE_RESOURCE: &str = "MOREL_RESOURCE";
/// Set in every instance: the gateway URL, for cross-function calls.
pub const INSTANCE_GATEWAY: &str = "MOREL_GATEWAY_URL";
/// Set in every instance of an `http` resource: the loopback port it must serve HTTP on.
pub const INSTANCE_PORT: &str = "PORT";
/// Domain under which `{app}.{domain}` host names reach apps' http services through the edge
/// (e.g. `apps.example.com`). Unset: path routing (`/{app}/…`) only.
pub const MOREL_EDGE_DOMAIN: &str = "MOREL_EDGE_DOMAIN";

/// Test hook for the e2e suite: the git deploy worker stops for good after recording the
/// step of this name (e.g. `environment`), so a test can kill the server mid-deploy and
/// check that the next server resumes it. Never set in normal operation.
pub const MOREL_TEST_DEPLOY_HOLD_AFTER: &str = "MOREL_TEST_DEPLOY_HOLD_AFTER";

/// Development only: when set, the OpenAPI test rewrites `docs/openapi.json` from the code
/// instead of failing on a difference.
pub const MOREL_UPDATE_OPENAPI: &str = "MOREL_UPDATE_OPENAPI";

/// The store's database: `postgres://user@host:port/db` for PostgreSQL (shared by servers on
/// several machines), or a SQLite file path. Default: `STATE_DIR/morel.db`. Same as
/// `--database-url`.
pub const MOREL_DATABASE_URL: &str = "MOREL_DATABASE_URL";
/// Tests only: the PostgreSQL server the PostgreSQL tests create their scratch databases on.
/// Default `postgres://postgres@127.0.0.1:5432/test`; `scripts/test` sets it when it starts a
/// server of its own.
pub const MOREL_TEST_DATABASE_URL: &str = "MOREL_TEST_DATABASE_URL";

/// `0` turns off the containment of workloads (own uid per app, namespaces, Landlock,
/// seccomp, limits): workers then run as the server's user with its reach. For benchmarks and
/// debugging only. Default: on.
pub const MOREL_CONTAINMENT: &str = "MOREL_CONTAINMENT";
/// The uids (and gids of the same number) Morel gives apps when it runs as root:
/// `FIRST-LAST`, inclusive. Default `200000-265535`. Each app keeps its id, recorded in the
/// store.
pub const MOREL_UID_RANGE: &str = "MOREL_UID_RANGE";

/// Connection limits of the public listener (`morel up`, `morel server`, agents), in
/// milliseconds: a request head must arrive within `MOREL_HEADER_TIMEOUT_MS` (default 10000)
/// of its first byte; a request body may pause at most `MOREL_BODY_TIMEOUT_MS` (default
/// 10000) between reads (408 and the connection closes); a keep-alive connection may sit idle
/// between requests for `MOREL_IDLE_TIMEOUT_MS` (default 120000: longer than common clients'
/// pool idle time, so a client never reuses a connection the server is closing).
pub const MOREL_HEADER_TIMEOUT_MS: &str = "MOREL_HEADER_TIMEOUT_MS";
pub const MOREL_BODY_TIMEOUT_MS: &str = "MOREL_BODY_TIMEOUT_MS";
pub const MOREL_IDLE_TIMEOUT_MS: &str = "MOREL_IDLE_TIMEOUT_MS";
/// Open connections the public listener serves at once (default 10000); past it a new
/// connection is answered 503 and closed.
pub const MOREL_MAX_CONNECTIONS: &str = "MOREL_MAX_CONNECTIONS";

/// Lines of output per second each app may write to its log (default 1000, with bursts of five
/// seconds' worth); lines past it are dropped and counted, and the log says how many.
pub const MOREL_LOG_RATE: &str = "MOREL_LOG_RATE";
