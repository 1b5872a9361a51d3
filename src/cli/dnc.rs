//! `perezvon dnc add|remove|list`: the do-not-call list in the database. A number is given in
//! any form (`+7 916 123-45-67`, `8 (916) 123-45-67`, `79161234567`) and stored normalised with
//! the `[pbx]` numbering plan of the configuration, the same normalisation every caller's
//! number gets. Works while the daemon runs: it re-checks the list before every Originate.
//! Numbers of `callback.dnc_file` are on the list too but are edited in that file.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{CmdResult, DEFAULT_CONFIG};
use crate::config::{Config, EXIT_CONFIG};
use crate::number::NumberPlan;
use crate::store::Store;

#[derive(Debug, Args)]
pub struct DncArgs {
    #[command(subcommand)]
    pub command: DncCommand,
}

#[derive(Debug, Subcommand)]
pub enum DncCommand {
    /// Put a number on the list: it is never called back (its open task is cancelled).
    #[command(
        after_help = "Example:\n  perezvon dnc add --config /etc/perezvon/perezvon.toml '+7 916 123-45-67'"
    )]
    Add(NumberArgs),
    /// Take a number off the list.
    #[command(
        after_help = "Example:\n  perezvon dnc remove --config /etc/perezvon/perezvon.toml 89161234567"
    )]
    Remove(NumberArgs),
    /// Print the list: number, where it came from (cli, caller, disposition, console), when.
    #[command(after_help = "Example:\n  perezvon dnc list --db /var/lib/perezvon/perezvon.db")]
    List(ListArgs),
}

#[derive(Debug, Args)]
pub struct Location {
    /// Configuration file [default: /etc/perezvon/perezvon.toml]; its `[pbx]` plan normalises.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Database: a SQLite file or a postgres:// URL [default: storage.database or storage.url of the configuration].
    #[arg(long)]
    pub db: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct NumberArgs {
    /// The number, in any form.
    pub number: String,
    #[command(flatten)]
    pub at: Location,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub at: Location,
}

enum Opened {
    Ready(Box<(Store, NumberPlan)>),
    /// Exit with this code (the message is printed).
    Exit(i32),
}

fn open(at: &Location, create: bool) -> Result<Opened, Box<dyn std::error::Error + Send + Sync>> {
    let cfg = match (&at.config, &at.db) {
        (Some(p), _) => match Config::load(p) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("{e}");
                return Ok(Opened::Exit(EXIT_CONFIG));
            }
        },
        // With --db alone the configuration is optional (the default plan normalises).
        (None, Some(_)) => Config::load(std::path::Path::new(DEFAULT_CONFIG)).ok(),
        (None, None) => match Config::load(std::path::Path::new(DEFAULT_CONFIG)) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("{e}");
                return Ok(Opened::Exit(EXIT_CONFIG));
            }
        },
    };
    let path = match (&at.db, &cfg) {
        (Some(p), _) => p.clone(),
        (None, Some(c)) => c.storage.database.clone(),
        // Not reached: without --db the configuration was required above.
        (None, None) => {
            eprintln!("perezvon: pass --db or --config");
            return Ok(Opened::Exit(EXIT_CONFIG));
        }
    };
    // The list may be prepared before the daemon's first start: `add` creates the database.
    if !create && !crate::store::may_exist(&path) {
        eprintln!(
            "perezvon: database {} does not exist (has `perezvon run` started yet? pass --db)",
            path.display()
        );
        return Ok(Opened::Exit(1));
    }
    let store = Store::open(&path)?;
    let plan = cfg.map(|c| c.pbx.numbers).unwrap_or_default();
    Ok(Opened::Ready(Box::new((store, plan))))
}

/// The number normalised, or a message for the operator.
fn normalize(plan: &NumberPlan, raw: &str) -> Result<String, String> {
    match plan.normalize(raw) {
        Ok(n) if (3..=15).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        Ok(n) => Err(format!(
            "{raw:?} is not a phone number (normalised: {n:?}; 3 to 15 digits expected)"
        )),
        Err(e) => Err(format!("{raw:?} is not a phone number ({e:?})")),
    }
}

pub fn run(args: &DncArgs) -> CmdResult {
    match &args.command {
        DncCommand::Add(a) => change(a, true),
        DncCommand::Remove(a) => change(a, false),
        DncCommand::List(a) => list(a),
    }
}

fn change(a: &NumberArgs, add: bool) -> CmdResult {
    let (mut store, plan) = match open(&a.at, add)? {
        Opened::Ready(b) => *b,
        Opened::Exit(code) => return Ok(code),
    };
    let n = match normalize(&plan, &a.number) {
        Ok(n) => n,
        Err(msg) => {
            eprintln!("perezvon: {msg}");
            return Ok(2);
        }
    };
    let shown = crate::number::display(Some(&n), None);
    if add {
        if store.dnc_add(&n, "cli", jiff::Timestamp::now())? {
            println!("{shown} is on the do-not-call list");
        } else {
            println!("{shown} was already on the do-not-call list");
        }
    } else if store.dnc_remove(&n)? {
        println!("{shown} is off the do-not-call list");
    } else {
        eprintln!("perezvon: {shown} is not on the do-not-call list");
        return Ok(1);
    }
    Ok(0)
}

fn list(a: &ListArgs) -> CmdResult {
    let store = match open(&a.at, false)? {
        Opened::Ready(b) => b.0,
        Opened::Exit(code) => return Ok(code),
    };
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{:<16}  {:<12}  ADDED", "NUMBER", "SOURCE")?;
    let cell = |s: &str| crate::report::text::cell(s, crate::report::text::MAX_CELL);
    for e in store.dnc_list()? {
        writeln!(
            out,
            "{:<16}  {:<12}  {}",
            cell(&crate::number::display(Some(&e.number), None)),
            cell(&e.source),
            e.added_at.strftime("%Y-%m-%d %H:%M:%S UTC")
        )?;
    }
    Ok(0)
}
