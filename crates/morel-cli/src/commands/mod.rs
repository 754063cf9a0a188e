mod agent;
mod apps;
mod deploy;
mod environments;
mod functions;
mod init;
mod keys;
mod node_agent;
mod server;
mod services;
mod transfer;
mod up;

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, Result, bail};

use crate::args::{Cli, Command};

pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Up(a) => up::run(a).await,
        Command::Init(a) => init::run(a),
        Command::Build(a) => deploy::build(a).await,
        Command::Deploy(a) => deploy::deploy(a).await,
        Command::Call(a) => apps::call(a).await,
        Command::Ls(a) => apps::ls(a.json).await,
        Command::Inspect(a) => apps::inspect(a).await,
        Command::Logs(a) => apps::logs(a).await,
        Command::Delete(a) => apps::delete(a).await,
        Command::Rollback(a) => apps::rollback(a).await,
        Command::Keys(k) => keys::run(k).await,
        Command::Fn(c) => functions::run(c).await,
        Command::Compiler(a) => functions::compiler(a).await,
        Command::Doctor(j) => functions::doctor(j.json).await,
        Command::Push(a) => services::push(a).await,
        Command::Publish(a) => services::publish(a).await,
        Command::Budget(c) => services::budget(c).await,
        Command::Scale(a) => services::scale(a).await,
        Command::Ps(a) => services::ps(a).await,
        Command::Env(c) => environments::env(c).await,
        Command::Secrets(c) => environments::secrets(c).await,
        Command::Certs(c) => environments::certs(c).await,
        Command::Export(a) => transfer::export(a).await,
        Command::Import(a) => transfer::import(a).await,
        Command::Agent(a) => agent::run(a).await,
        Command::Server(a) => server::run(a).await,
        Command::Gateway(a) => server::gateway(a).await,
        Command::Completions(a) => {
            let mut cli = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(a.shell, &mut cli, "morel", &mut std::io::stdout());
            Ok(())
        }
        Command::Login(a) => {
            crate::settings::save_login(&crate::settings::Login {
                url: a.url.trim_end_matches('/').to_owned(),
                token: a.token,
            })?;
            println!(
                "saved login to {}",
                crate::settings::config_dir().join("login.json").display()
            );
            Ok(())
        }
    }
}

/// Asks before a destructive command: on a terminal, `question [y/N]` on stderr and a line from
/// stdin; without one (a script, CI), refuses unless `--yes` was given, so nothing is deleted by
/// a command line that nobody looked at.
fn confirm(question: &str, yes: bool) -> Result<()> {
    if yes {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!("{question}\nrefusing without confirmation: stdin is not a terminal; pass --yes");
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    stdin
        .lock()
        .read_line(&mut answer)
        .context("cannot read the answer")?;
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => bail!("cancelled"),
    }
}
