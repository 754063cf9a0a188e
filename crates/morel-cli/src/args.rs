use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Morel: a self-hosted serverless platform. Deploy Python and Node projects as signed
/// bundles and call their functions over HTTP.
#[derive(Debug, Parser)]
#[command(name = "morel", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run control plane + gateway + local agent on the embedded store.
    Up(UpArgs),
    /// Start a project from a template: code, morel.toml, a README and a test that runs
    /// without Morel. `morel deploy DIR` deploys it as it is.
    Init(InitArgs),
    /// Discover functions, write the manifest and pack a signed bundle.
    Build(BuildArgs),
    /// Build, upload and deploy a project; waits until it answers and prints its URLs.
    Deploy(DeployArgs),
    /// Call a deployed function.
    Call(CallArgs),
    /// List apps.
    Ls(JsonFlag),
    /// Show an app: releases, resources, functions, instances.
    Inspect(InspectArgs),
    /// Show (and follow) an app's logs.
    Logs(LogsArgs),
    /// Stop an app and delete everything it has.
    Delete(DeleteArgs),
    /// Re-activate an older release of an app (default: the previous one).
    Rollback(RollbackArgs),
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Save a server URL and token for later commands.
    Login(LoginArgs),
    /// Compiled (WebAssembly) functions: create from source, list, execute, delete.
    #[command(subcommand, name = "fn")]
    Fn(FnCommand),
    /// Run only the compiler service against a state directory's store.
    Compiler(CompilerArgs),
    /// Report which function languages this machine can compile, and which containment layers
    /// (uid per app, namespaces, Landlock, seccomp, limits) hold for workloads here, and why not.
    Doctor(JsonFlag),
    /// Build, sign and upload a project's bundle without deploying it; prints its digest.
    Push(PushArgs),
    /// Release an uploaded bundle (from `morel push`) as the app's next version; waits for it.
    Publish(PublishArgs),
    /// An app's budget: the most instances, CPU and memory its http services may use.
    #[command(subcommand)]
    Budget(BudgetCommand),
    /// Set how many instances each of an app's http services runs (min, max).
    Scale(ScaleArgs),
    /// List an app's instances: node, port, digest, state, restarts, uptime.
    Ps(InspectArgs),
    /// An app's environments: list, configure, remove.
    #[command(subcommand)]
    Env(EnvCommand),
    /// An environment's secrets (values are write-only).
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// An environment's TLS certificate.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Write an embedded (SQLite) installation's store and bundles to a directory.
    Export(ExportArgs),
    /// Load an export into a new PostgreSQL database and a state directory.
    Import(ImportArgs),
    /// Join this machine to a Morel server as a node (registers and heartbeats).
    Agent(AgentArgs),
    /// Control plane + gateway on a shared database, instances on joined agents.
    Server(ServerArgs),
    /// A stateless edge: forwards calls to agents, from the shared database's placements.
    Gateway(GatewayArgs),
}

#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
    /// The servers' database: postgres://user@host:port/db.
    #[arg(long, env = morel_core::env_vars::MOREL_DATABASE_URL)]
    pub database_url: String,
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The servers' shared state (bundles, keys, admin token): the same directory, e.g. on a
    /// shared filesystem, for every server of one database.
    #[arg(long, default_value = "./.morel")]
    pub state_dir: PathBuf,
    /// The store's database: postgres://user@host:port/db (shared by every server).
    #[arg(long, env = morel_core::env_vars::MOREL_DATABASE_URL)]
    pub database_url: String,
    /// Do not run the compiler service in this process.
    #[arg(long)]
    pub no_compiler: bool,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// Project directory.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// App name (default: morel.toml's [app] name, else the directory name).
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    pub app: String,
    /// The digest `morel push` printed.
    pub digest: String,
    #[arg(long, default_value = "production")]
    pub env: String,
    /// Environment variables for the instances (KEY=VALUE), repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum BudgetCommand {
    /// Set the budget (omitted limits are removed).
    Set {
        app: String,
        #[arg(long)]
        max_instances: Option<u32>,
        /// CPU cores for the whole app, e.g. 1.5.
        #[arg(long)]
        cpu: Option<f64>,
        /// Memory for the whole app: MiB, or with a unit (512M, 2G).
        #[arg(long)]
        memory: Option<String>,
    },
    /// Show the budget and scale.
    Show {
        app: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct ScaleArgs {
    pub app: String,
    #[arg(long)]
    pub min: u32,
    /// Default: the same as --min.
    #[arg(long)]
    pub max: Option<u32>,
}

#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// List an app's environments with branch, release, status and URLs.
    Ls {
        app: String,
        #[arg(long)]
        json: bool,
    },
    /// Set config values (environment variables), kept across deploys; rolls out a new
    /// release and waits until it is ready.
    Set {
        app: String,
        #[arg(value_name = "KEY=VALUE", required = true)]
        pairs: Vec<String>,
        /// The environment (production, or a preview's name).
        #[arg(long, default_value = "production")]
        env: String,
        /// Return once the release is created, without waiting for it to be ready.
        #[arg(long)]
        detach: bool,
    },
    /// Remove config values; rolls out a new release and waits until it is ready.
    Unset {
        app: String,
        #[arg(value_name = "KEY", required = true)]
        keys: Vec<String>,
        /// The environment (production, or a preview's name).
        #[arg(long, default_value = "production")]
        env: String,
        /// Return once the release is created, without waiting for it to be ready.
        #[arg(long)]
        detach: bool,
    },
    /// Remove a preview environment: stop its instances and delete its data.
    Rm { app: String, env: String },
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Set a secret (value from --value or stdin); a new release restarts the environment's
    /// instances with it, and this waits until it is ready.
    Set {
        app: String,
        key: String,
        /// The value (read from stdin when absent, so it stays out of shell history).
        #[arg(long)]
        value: Option<String>,
        /// The environment (production, or a preview's name).
        #[arg(long, default_value = "production")]
        env: String,
        /// Return once the secret is stored, without waiting for the restart.
        #[arg(long)]
        detach: bool,
    },
    /// List secret names and update times (never values).
    Ls {
        app: String,
        #[arg(long, default_value = "production")]
        env: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove a secret; a new release restarts the environment's instances without it, and
    /// this waits until it is ready.
    Rm {
        app: String,
        key: String,
        /// The environment (production, or a preview's name).
        #[arg(long, default_value = "production")]
        env: String,
        /// Return once the secret is removed, without waiting for the restart.
        #[arg(long)]
        detach: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Add (or replace) an environment's certificate from PEM files.
    Add {
        app: String,
        #[arg(long, default_value = "production")]
        env: String,
        #[arg(long)]
        cert: PathBuf,
        #[arg(long)]
        key: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The server's URL (http://host:port); several, comma-separated or repeated, to fail over.
    #[arg(long, required = true, value_delimiter = ',')]
    pub join: Vec<String>,
    /// Where this agent keeps bundles, extracted releases and dependencies.
    #[arg(long, default_value = "./.morel-agent")]
    pub state_dir: PathBuf,
    /// The server's token.
    #[arg(long, env = morel_core::env_vars::MOREL_TOKEN)]
    pub token: String,
    /// This node's name (default: the host name).
    #[arg(long)]
    pub node: Option<String>,
    /// How many instances this node may run.
    #[arg(long, default_value_t = 8)]
    pub capacity: i64,
    /// Address the agent listens on (and announces to the server).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Milliseconds between heartbeats (the server marks a node lost after 10 s without one).
    #[arg(long, default_value_t = 3000)]
    pub heartbeat_ms: u64,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The installation's state directory (its morel.db and blobs/).
    #[arg(long, default_value = "./.morel")]
    pub state_dir: PathBuf,
    /// Directory to write (must not exist, or be empty).
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Directory written by `morel export`.
    pub dir: PathBuf,
    /// The PostgreSQL database to load (must hold no apps yet).
    #[arg(long, env = morel_core::env_vars::MOREL_DATABASE_URL)]
    pub database_url: String,
    /// State directory of the server that will run on that database (receives the bundles).
    #[arg(long, default_value = "./.morel")]
    pub state_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum FnCommand {
    /// Register a function from a source file; waits until it is READY or FAILED.
    ///
    /// Names are unique: creating a name that is taken fails, unless that function is FAILED,
    /// which is then replaced (this is how a failed function is recompiled).
    Create {
        name: String,
        /// wat, c, rust or assemblyscript.
        #[arg(long)]
        lang: String,
        file: PathBuf,
        /// Return at once without waiting for the compile.
        #[arg(long)]
        detach: bool,
        #[arg(long)]
        json: bool,
    },
    /// List functions.
    Ls(JsonFlag),
    /// Execute a READY function with a JSON input.
    Exec {
        /// The function's name or id.
        function: String,
        #[arg(long, default_value = "null")]
        input: String,
        #[arg(long)]
        timeout_ms: Option<u64>,
        #[arg(long)]
        json: bool,
    },
    /// A function's recent executions.
    Executions {
        /// The function's name or id.
        function: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete a function and its executions.
    Rm {
        /// The function's name or id.
        function: String,
    },
}

#[derive(Debug, Args)]
pub struct CompilerArgs {
    /// The state directory whose store holds the queues.
    #[arg(long, default_value = "./.morel")]
    pub state_dir: PathBuf,
    /// How long a job read by this compiler stays hidden from others (default: compile timeout + 30 s).
    #[arg(long)]
    pub visibility_timeout_ms: Option<u64>,
    /// The store's database, when it is not STATE_DIR/morel.db (e.g. postgres://…).
    #[arg(long, env = morel_core::env_vars::MOREL_DATABASE_URL)]
    pub database_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Where state lives (database, bundles, dependencies, admin token).
    #[arg(long, default_value = "./.morel")]
    pub state_dir: PathBuf,
    /// Projects to deploy once the server is up (e.g. examples/hello-python).
    #[arg(long = "deploy", value_name = "DIR")]
    pub deploy: Vec<PathBuf>,
    /// Do not run the compiler service in this process (run `morel compiler` elsewhere).
    #[arg(long)]
    pub no_compiler: bool,
    /// Route `Host: {app}.{domain}` to apps' http services (default: MOREL_EDGE_DOMAIN, else --domain).
    #[arg(long, value_name = "DOMAIN")]
    pub edge_domain: Option<String>,
    /// Serve environments by host name: `{app}.DOMAIN` and `{env}--{app}.DOMAIN`.
    #[arg(long)]
    pub domain: Option<String>,
    /// Also serve HTTPS here, with each environment's certificate chosen by SNI.
    #[arg(long)]
    pub tls_listen: Option<SocketAddr>,
    /// Keep the bundles of this many newest releases per environment (0: keep all).
    #[arg(long, default_value_t = 10)]
    pub keep_releases: usize,
    /// The store's database: postgres://user@host:port/db, or a SQLite file. Default:
    /// STATE_DIR/morel.db.
    #[arg(long, env = morel_core::env_vars::MOREL_DATABASE_URL)]
    pub database_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Project directory.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// App name (default: morel.toml's [app] name, else the directory name).
    #[arg(long)]
    pub name: Option<String>,
    /// Print the manifest instead of writing a bundle.
    #[arg(long)]
    pub print: bool,
    /// Where to write the bundle (default: DIR/.morel/<digest>.bundle).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Project directory.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Deploy a git repository's branch instead (https, ssh or file URL); the server clones it.
    #[arg(long, value_name = "URL")]
    pub git: Option<String>,
    /// With --git: the branch (default: the app's main branch → production).
    #[arg(long, requires = "git")]
    pub branch: Option<String>,
    /// With --git: make this the app's main branch (the one that deploys to production).
    #[arg(long, requires = "git")]
    pub main_branch: Option<String>,
    #[arg(long)]
    pub name: Option<String>,
    /// Environment to deploy into.
    #[arg(long, default_value = "production")]
    pub env: String,
    /// Environment variables for the instances (KEY=VALUE), repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Return once the release is created, without waiting for it to be ready.
    #[arg(long)]
    pub detach: bool,
    /// Upload and print the reconcile plan (new / changed / removed / unchanged), then stop.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CallArgs {
    pub app: String,
    pub function: String,
    /// JSON body: an array (positional) or an object (named) of arguments.
    #[arg(long, short)]
    pub data: Option<String>,
    /// Which release: `latest`, `vN` or an environment name.
    #[arg(long, default_value = "latest")]
    pub release: String,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// What to start: a Python or Node app of functions, an HTTP service, or a WebAssembly
    /// function in C or Rust.
    pub kind: InitKind,
    /// Project directory, created when missing; files already in it are kept.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// App name written into morel.toml (default: the directory's name, made a valid app name).
    #[arg(long)]
    pub name: Option<String>,
    /// Overwrite files of the template that already exist (otherwise init refuses and names them).
    #[arg(long)]
    pub force: bool,
}

/// The templates of `morel init`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InitKind {
    /// Python functions (hello.py), tested with `python3 -m unittest`.
    Python,
    /// Node functions (index.js), tested with `node --test`.
    Node,
    /// An HTTP service (a small Python server on $PORT), tested against a local instance.
    Http,
    /// A WebAssembly function in C (a WASI command), checked natively with cc.
    WasmC,
    /// A WebAssembly function in Rust (a WASI command), with unit tests run by rustc --test.
    WasmRust,
}

#[derive(Debug, Args)]
pub struct JsonFlag {
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    pub app: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    pub app: String,
    /// Keep streaming new lines.
    #[arg(long, short)]
    pub follow: bool,
    /// Only lines newer than this (e.g. 10m, 2h).
    #[arg(long)]
    pub since: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    pub app: String,
    /// The environment to roll back.
    #[arg(long, default_value = "production")]
    pub env: String,
    /// The release to re-activate, e.g. v1.
    #[arg(long)]
    pub to: Option<String>,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    pub app: String,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create this CLI's signing key (kept in the config directory).
    Generate {
        /// Replace an existing key.
        #[arg(long)]
        force: bool,
    },
    /// Print this CLI's public key (give it to `morel keys trust` on a server).
    Show,
    /// Trust a public key on the server (the text printed by `morel keys show`, or a file holding it).
    Trust {
        key: String,
        #[arg(long)]
        name: Option<String>,
    },
    /// List the keys the server trusts.
    Ls(JsonFlag),
    /// Stop trusting a key.
    Rm { key_id: String },
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    pub url: String,
    #[arg(long)]
    pub token: String,
}
