//! `perezvon export` and `perezvon forget`: all data held for one customer, by number.

use std::io::Write;
use std::path::PathBuf;

use super::report::{load_config, open_store};
use super::CmdResult;
use crate::config::Config;

#[derive(Debug, clap::Args)]
pub struct NumberArgs {
    /// The customer's number, in any form (+7 916 123-45-67, 89161234567, 79161234567).
    #[arg(long)]
    pub number: String,
    /// Configuration file [default: /etc/perezvon/perezvon.toml] (the numbering plan, the
    /// database). Without one, --db is needed.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Database: a SQLite file or a postgres:// URL (default: storage.database or storage.url).
    #[arg(long)]
    pub db: Option<PathBuf>,
}

fn normalized(cfg: &Config, raw: &str) -> Result<String, String> {
    match cfg.pbx.numbers.normalize(raw) {
        Ok(n) if !n.is_empty() => Ok(n),
        _ => Err(format!(
            "--number {raw:?} is not a phone number (digits, an optional leading +, separators)"
        )),
    }
}

pub fn export(args: &NumberArgs) -> CmdResult {
    let cfg = match load_config(args.config.as_deref(), args.db.as_deref()) {
        Ok(cfg) => cfg,
        Err(code) => return Ok(code),
    };
    let number = normalized(&cfg, &args.number)?;
    let store = open_store(args.db.as_deref(), &cfg)?;
    let data = store.export_number(&number)?;
    let mut s = crate::report::text::json_escape_unsafe(serde_json::to_string_pretty(&data)?);
    s.push('\n');
    std::io::stdout().lock().write_all(s.as_bytes())?;
    Ok(0)
}

pub fn forget(args: &NumberArgs) -> CmdResult {
    let cfg = match load_config(args.config.as_deref(), args.db.as_deref()) {
        Ok(cfg) => cfg,
        Err(code) => return Ok(code),
    };
    let number = normalized(&cfg, &args.number)?;
    let store = open_store(args.db.as_deref(), &cfg)?;
    let f = store.forget_number(&number)?;
    let plural = |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    writeln!(
        std::io::stdout().lock(),
        "forgot {number}: {}, {}, {}, {}, {}, {} ({} rows){}",
        plural(f.calls, "call", "calls"),
        plural(f.callback_tasks, "callback task", "callback tasks"),
        plural(f.callback_attempts, "callback attempt", "callback attempts"),
        plural(f.notifications, "notification", "notifications"),
        plural(f.crm_links, "CRM link", "CRM links"),
        plural(f.callback_requests, "callback request", "callback requests"),
        f.total(),
        if f.kept_on_dnc {
            "; it stays on the do-not-call list (perezvon dnc remove takes it off)"
        } else {
            ""
        }
    )?;
    Ok(0)
}
