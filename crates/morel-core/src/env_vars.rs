//! Every environment variable Morel reads or sets, in one place.

/// Server URL the CLI talks to (overrides what `morel up`/`morel login` saved).
pub const MOREL_URL: &str = "MOREL_URL";
/// Bearer token the CLI sends (overrides what `morel up`/`morel login` saved).
pub const MOREL_TOKEN: &str = "MOREL_TOKEN";
/// Directory of the CLI's own config (saved login, signing key). Default `~/.config/morel`.
pub const MOREL_CONFIG_DIR: &str = "MOREL_CONFIG_DIR";
/// Log filter for Morel's own tracing output (`info`, `morel_agent=debug`, …).
pub const MOREL_LOG: &str = "MOREL_LOG";
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

/// The store's database: `postgres://user@host:port/db` for PostgreSQL (shared by servers on
/// several machines), or a SQLite file path. Default: `STATE_DIR/morel.db`. Same as
/// `--database-url`.
pub const MOREL_DATABASE_URL: &str = "MOREL_DATABASE_URL";
/// Tests only: the PostgreSQL server the PostgreSQL tests create their scratch databases on.
/// Default `postgres://postgres@127.0.0.1:5432/test`; `scripts/test` sets it when it starts a
/// server of its own.
pub const MOREL_TEST_DATABASE_URL: &str = "MOREL_TEST_DATABASE_URL";
