//! The subcommands. Each lives in its own file; [`Cli`] is the clap definition `main.rs` parses.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub mod check_config;
pub mod replay;

/// A command's result: the process exit code, or an error whose chain `main` prints once.
pub type CmdResult = Result<i32, Box<dyn std::error::Error + Send + Sync>>;

/// Where perezvon looks for its configuration when `--config` is not given.
pub const DEFAULT_CONFIG: &str = "/etc/perezvon/perezvon.toml";

#[derive(Debug, Parser)]
#[command(name = "perezvon", version, about = "Calls back the customers your Asterisk PBX missed", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run recorded AMI captures through the tracker and print one verdict per call.
    #[command(
        after_help = "Example:\n  perezvon replay fixtures/asterisk-22/queue_abandon.ami\n  perezvon replay --format table fixtures/asterisk-22/*.ami"
    )]
    Replay(ReplayArgs),
    /// Check a configuration file: every problem at once, exit code 78 when it is not valid.
    #[command(
        after_help = "Example:\n  perezvon check-config --config /etc/perezvon/perezvon.toml && systemctl restart perezvon"
    )]
    CheckConfig(CheckConfigArgs),
}

#[derive(Debug, clap::Args)]
pub struct CheckConfigArgs {
    /// Configuration file [default: /etc/perezvon/perezvon.toml].
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Configuration file (default: the embedded lab configuration).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// SQLite database to store verdicts in (default: a temporary in-memory one).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Output format.
    #[arg(long, default_value = "jsonl", value_parser = ["jsonl", "table"])]
    pub format: String,
    /// Capture files, replayed in order as one continuous stream.
    #[arg(required = true)]
    pub captures: Vec<PathBuf>,
}

/// Runs a parsed command.
pub fn dispatch(cli: Cli) -> CmdResult {
    match cli.command {
        Command::Replay(a) => replay::run(&a),
        Command::CheckConfig(a) => check_config::run(&a),
    }
}
