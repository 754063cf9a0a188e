use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Morel: a self-hosted serverless platform. Deploy Python and Node projects as signed
/// bundles and call their functions over HTTP.
#[derive(Debug, Parser)]
#[command(
    name = "morel",
    version,
    propagate_version = true,
    after_help = crate::client::EXIT_CODES_HELP
)]
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
    /// Stop an app and delete everything it has. Asks for confirmation on a terminal;
    /// elsewhere refuses unless --yes.
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
    /// Print a shell completion script on stdout, e.g.
    /// `morel completions bash > ~/.local/share/bash-completion/completions/morel`.
    Completions(CompletionsArgs),
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete in.
    pub shell: clap_complete::Shell,
}

impl Command {
    /// Whether this command is a server that runs until stopped (and so keeps ignoring
    /// SIGPIPE), rather than a client that prints and exits.
    pub fn is_long_running(&self) -> bool {
        match self {
            Command::Up(_)
            | Command::Server(_)
            | Command::Agent(_)
            | Command::Gateway(_)
            | Command::Compiler(_) => true,
            Command::Init(_)
            | Command::Build(_)
            | Command::Deploy(_)
            | Command::Call(_)
            | Command::Ls(_)
            | Command::Inspect(_)
            | Command::Logs(_)
            | Command::Delete(_)
            | Command::Rollback(_)
            | Command::Keys(_)
            | Command::Login(_)
            | Command::Fn(_)
            | Command::Doctor(_)
            | Command::Push(_)
            | Command::Publish(_)
            | Command::Budget(_)
            | Command::Scale(_)
            | Command::Ps(_)
            | Command::Env(_)
            | Command::Secrets(_)
            | Command::Certs(_)
            | Command::Export(_)
            | Command::Import(_)
            | Command::Completions(_) => false,
        }
    }
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
    /// This server's own state: its bundle cache, keys and, on the first server of a
    /// database, the admin token. Servers share only the database and the KEK file
    /// (MOREL_KEK_FILE, default STATE/keys/kek.key: copy the first server's to the others).
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
    /// The app's name.
    pub app: String,
    /// The digest `morel push` printed.
    pub digest: String,
    /// The environment to release into (production, or a preview's name).
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
        /// The app's name.
        app: String,
        /// The most instances the app's http services may run in all.
        #[arg(long)]
        max_instances: Option<u32>,
        /// CPU cores for the whole app, e.g. 1.5.
        #[arg(long)]
        cpu: Option<f64>,
        /// Memory for the whole app: MiB, or with a unit (512M, 2G).
        #[arg(long)]
        memory: Option<String>,
        /// Print the app's budget as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the budget and scale.
    Show {
        /// The app's name.
        app: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// The app's name.
    pub app: String,
    /// Instances each http service keeps running.
    #[arg(long)]
    pub min: u32,
    /// Default: the same as --min.
    #[arg(long)]
    pub max: Option<u32>,
    /// Print the app's scale and budget as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// List an app's environments with branch, release, status and URLs.
    Ls {
        /// The app's name.
        app: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Set config values (environment variables), kept across deploys; rolls out a new
    /// release and waits until it is ready.
    Set {
        /// The app's name.
        app: String,
        /// Config values to set.
        #[arg(value_name = "KEY=VALUE", required = true)]
        pairs: Vec<String>,
        /// The environment (production, or a preview's name).
        #[arg(long, default_value = "production")]
        env: String,
        /// Return once the release is created, without waiting for it to be ready.
        #[arg(long)]
        detach: bool,
        /// Print the release it made as JSON (without --detach: once it is ready).
        #[arg(long)]
        json: bool,
    },
    /// Remove config values; rolls out a new release and waits until it is ready.
    Unset {
        /// The app's name.
        app: String,
        /// Names of the config values to remove.
        #[arg(value_name = "KEY", required = true)]
        keys: Vec<String>,
        /// The environment (production, or a preview's name).
        #[arg(long, default_value = "production")]
        env: String,
        /// Return once the release is created, without waiting for it to be ready.
        #[arg(long)]
        detach: bool,
        /// Print the release it made as JSON (without --detach: once it is ready).
        #[arg(long)]
        json: bool,
    },
    /// Remove a preview environment: stop its instances and delete its data. Asks for
    /// confirmation on a terminal; elsewhere refuses unless --yes.
    Rm {
        /// The app's name.
        app: String,
        /// The preview environment to remove (production cannot be: use `morel delete`).
        env: String,
        /// Do not ask for confirmation (required when stdin is not a terminal).
        #[arg(long, short)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Set a secret (value from --value or stdin); a new release restarts the environment's
    /// instances with it, and this waits until it is ready.
    Set {
        /// The app's name.
        app: String,
        /// The secret's name (an environment variable in the instances).
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
        /// Print the release it made as JSON (without --detach: once it is ready).
        #[arg(long)]
        json: bool,
    },
    /// List secret names and update times (never values).
    Ls {
        /// The app's name.
        app: String,
        /// The environment (production, or a preview's name).
        #[arg(long, default_value = "production")]
        env: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Remove a secret; a new release restarts the environment's instances without it, and
    /// this waits until it is ready.
    Rm {
        /// The app's name.
        app: String,
        /// The secret's name.
        key: String,
        /// The environment (production, or a preview's name).
        #[arg(long, default_value = "production")]
        env: String,
        /// Return once the secret is removed, without waiting for the restart.
        #[arg(long)]
        detach: bool,
        /// Print the release it made as JSON (without --detach: once it is ready).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Add (or replace) an environment's certificate from PEM files.
    Add {
        /// The app's name.
        app: String,
        /// The environment (production, or a preview's name).
        #[arg(long, default_value = "production")]
        env: String,
        /// The certificate chain, PEM.
        #[arg(long)]
        cert: PathBuf,
        /// The certificate's private key, PEM.
        #[arg(long)]
        key: PathBuf,
        /// Print the server's answer (the host names now served) as JSON.
        #[arg(long)]
        json: bool,
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
    /// Address the agent listens on (announced to the servers unless --advertise is given).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// The URL servers reach this agent at (default: http:// and the listen address). Needed
    /// when listening on a wildcard address such as 0.0.0.0.
    #[arg(long)]
    pub advertise: Option<String>,
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
        /// The function's name (unique).
        name: String,
        /// wat, c, rust or assemblyscript.
        #[arg(long)]
        lang: String,
        /// The source file.
        file: PathBuf,
        /// Return at once without waiting for the compile.
        #[arg(long)]
        detach: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List functions.
    Ls(JsonFlag),
    /// Execute a READY function with a JSON input.
    Exec {
        /// The function's name or id.
        function: String,
        /// The input, as JSON.
        #[arg(long, default_value = "null")]
        input: String,
        /// Stop the execution after this many milliseconds (default: the server's limit).
        #[arg(long)]
        timeout_ms: Option<u64>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// A function's recent executions.
    Executions {
        /// The function's name or id.
        function: String,
        /// Print JSON instead of text.
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
    /// App name (default: morel.toml's [app] name, else the directory name).
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
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CallArgs {
    /// The app's name.
    pub app: String,
    /// The function to call.
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
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The app's name.
    pub app: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The app's name.
    pub app: String,
    /// Keep streaming new lines.
    #[arg(long, short)]
    pub follow: bool,
    /// Only lines newer than this (e.g. 10m, 2h).
    #[arg(long)]
    pub since: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The app's name.
    pub app: String,
    /// The environment to roll back.
    #[arg(long, default_value = "production")]
    pub env: String,
    /// The release to re-activate, e.g. v1.
    #[arg(long)]
    pub to: Option<String>,
    /// Print the re-activated release as JSON once it is ready.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The app to delete.
    pub app: String,
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long, short)]
    pub yes: bool,
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
    Show(JsonFlag),
    /// Trust a public key on the server (the text printed by `morel keys show`, or a file holding it).
    Trust {
        /// The public key: the text `morel keys show` prints, or a file holding it.
        key: String,
        /// A name for the key, shown by `morel keys ls`.
        #[arg(long)]
        name: Option<String>,
    },
    /// List the keys the server trusts.
    Ls(JsonFlag),
    /// Stop trusting a key.
    Rm {
        /// The key's id, as `morel keys ls` shows it.
        key_id: String,
    },
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The server's URL, e.g. http://127.0.0.1:8080.
    pub url: String,
    /// The server's admin token (STATE_DIR/admin.token).
    #[arg(long)]
    pub token: String,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every subcommand and argument of `morel` says what it is in `--help`.
    #[test]
    fn every_command_and_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} <{id}>"));
                }
            }
            for sub in cmd.get_subcommands() {
                let sub_path = format!("{path} {}", sub.get_name());
                if sub.get_name() != "help" && sub.get_about().is_none() {
                    missing.push(sub_path.clone());
                }
                walk(sub, &sub_path, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "morel", &mut missing);
        assert!(missing.is_empty(), "no help text:\n{}", missing.join("\n"));
    }
}
