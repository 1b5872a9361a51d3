//! `perezvon import` (history from before perezvon ran) and `perezvon backfill` (a gap in the
//! AMI stream, by hand): Asterisk's CDR and queue_log -> verdicts in the store.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::report::{load_config, period_start};
use super::CmdResult;
use crate::config::Config;
use crate::history::{self, Files, Loaded};
use crate::store::history::{HistoryStored, Source};
use crate::store::Store;

/// Exit code when some lines could not be read (sysexits `EX_DATAERR`); the others are stored.
pub const EXIT_DATA: i32 = 65;
/// Bad lines printed at most (the count of the rest follows).
const SHOW_BAD: usize = 20;

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// Configuration file [default: /etc/perezvon/perezvon.toml]: the numbering plan, the
    /// channel patterns, calls.min_talk, the database. Without one, --db is needed.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Database: a SQLite file or a postgres:// URL (default: storage.database or storage.url; created if missing).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Asterisk's cdr_csv file (Master.csv, with loguniqueid = yes).
    #[arg(long, value_name = "FILE")]
    pub cdr: Option<PathBuf>,
    /// app_queue's queue_log.
    #[arg(long, value_name = "FILE")]
    pub queue_log: Option<PathBuf>,
    /// The `[[asterisk]]` server the records belong to [default: backfill.server, else the first].
    #[arg(long)]
    pub server: Option<String>,
    /// Zone of the CDR's dates [default: backfill.timezone, else hours.timezone].
    #[arg(long)]
    pub timezone: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct BackfillArgs {
    /// Configuration file [default: /etc/perezvon/perezvon.toml] with `[backfill]` cdr/queue_log.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Database: a SQLite file or a postgres:// URL (default: storage.database or storage.url).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// The start of the gap: how long ago (e.g. 6h, 2d).
    #[arg(long)]
    pub since: humantime::Duration,
    /// The end of the gap: how long ago [default: now].
    #[arg(long)]
    pub until: Option<humantime::Duration>,
    /// Instead of backfill.cdr.
    #[arg(long, value_name = "FILE")]
    pub cdr: Option<PathBuf>,
    /// Instead of backfill.queue_log.
    #[arg(long, value_name = "FILE")]
    pub queue_log: Option<PathBuf>,
    /// The `[[asterisk]]` server [default: backfill.server, else the first].
    #[arg(long)]
    pub server: Option<String>,
}

fn server_name(cfg: &Config, arg: Option<&str>) -> Result<String, String> {
    arg.map(str::to_string)
        .or_else(|| cfg.backfill.server.clone())
        .or_else(|| cfg.asterisk.first().map(|a| a.name.clone()))
        .ok_or_else(|| {
            "which server are these records from? pass --server NAME (the [[asterisk]] name \
             live calls are stored under)"
                .to_string()
        })
}

fn db_path(db: Option<&Path>, cfg: &Config) -> PathBuf {
    db.map(Path::to_path_buf)
        .unwrap_or_else(|| cfg.storage.database.clone())
}

/// Misses that ended this recently still get a callback task (the dialer's give-up horizon);
/// older history only feeds the reports.
fn dialer_since(cfg: &Config, now: jiff::Timestamp) -> Option<jiff::Timestamp> {
    if !cfg.callback.enabled {
        return None;
    }
    let d = jiff::SignedDuration::try_from(cfg.callback.give_up_after).ok()?;
    now.checked_sub(d).ok()
}

fn report_problems(loaded: &Loaded) {
    for p in loaded.problems.iter().take(SHOW_BAD) {
        eprintln!("perezvon: {p}");
    }
    if loaded.problems.len() > SHOW_BAD {
        eprintln!(
            "perezvon: ... and {} more bad lines",
            loaded.problems.len() - SHOW_BAD
        );
    }
}

fn summary(verb: &str, loaded: &Loaded, stored: &HistoryStored) -> String {
    let missed = stored.stored.iter().filter(|r| r.is_counted_miss()).count();
    let mut s = format!(
        "{verb} {} calls ({missed} missed) from {} CDR rows and {} queue_log visits; {} already known",
        stored.stored.len(),
        loaded.cdr_rows,
        loaded.queue_visits,
        stored.known
    );
    if stored.upgraded > 0 {
        s.push_str(&format!(
            "; {} replaced a live unknown verdict",
            stored.upgraded
        ));
    }
    if !loaded.problems.is_empty() {
        s.push_str(&format!("; {} bad lines skipped", loaded.problems.len()));
    }
    s.push('\n');
    s
}

pub fn import(args: &ImportArgs) -> CmdResult {
    if args.cdr.is_none() && args.queue_log.is_none() {
        return Err("nothing to import: pass --cdr Master.csv and/or --queue-log queue_log".into());
    }
    let cfg = match load_config(args.config.as_deref(), args.db.as_deref()) {
        Ok(cfg) => cfg,
        Err(code) => return Ok(code),
    };
    let server = server_name(&cfg, args.server.as_deref())?;
    let tz = match &args.timezone {
        Some(name) => jiff::tz::TimeZone::get(name)
            .map_err(|_| format!("--timezone: unknown time zone {name:?}"))?,
        None => cfg.backfill.timezone.clone(),
    };
    let files = Files {
        cdr: args.cdr.as_deref(),
        queue_log: args.queue_log.as_deref(),
        timezone: &tz,
    };
    let loaded = history::load(&server, &cfg, &files, None)?;
    report_problems(&loaded);
    let store = Store::open(&db_path(args.db.as_deref(), &cfg))?;
    let now = jiff::Timestamp::now();
    let stored = store.record_history(
        &loaded.calls,
        Source::Imported,
        cfg.calls.resolve_within,
        dialer_since(&cfg, now),
    )?;
    std::io::stdout()
        .lock()
        .write_all(summary("imported", &loaded, &stored).as_bytes())?;
    Ok(if loaded.problems.is_empty() {
        0
    } else {
        EXIT_DATA
    })
}

pub fn backfill(args: &BackfillArgs) -> CmdResult {
    let cfg = match load_config(args.config.as_deref(), args.db.as_deref()) {
        Ok(cfg) => cfg,
        Err(code) => return Ok(code),
    };
    let server = server_name(&cfg, args.server.as_deref())?;
    let (own_cdr, own_queue_log) = cfg.backfill.files_for(&server).unwrap_or((None, None));
    let cdr = args.cdr.as_deref().or(own_cdr);
    let queue_log = args.queue_log.as_deref().or(own_queue_log);
    if cdr.is_none() && queue_log.is_none() {
        return Err(
            "nothing to backfill from: set [backfill] cdr and/or queue_log, or pass --cdr/--queue-log"
                .into(),
        );
    }
    let now = jiff::Timestamp::now();
    let from = period_start(now, args.since.into())?;
    let to = match args.until {
        Some(u) => period_start(now, u.into())?,
        None => now,
    };
    if to <= from {
        return Err("--until must be later than --since (both are how long ago)".into());
    }
    let files = Files {
        cdr,
        queue_log,
        timezone: &cfg.backfill.timezone,
    };
    let loaded = history::load(&server, &cfg, &files, Some((from, to)))?;
    report_problems(&loaded);
    let path = db_path(args.db.as_deref(), &cfg);
    if !crate::store::may_exist(&path) {
        return Err(format!(
            "database {} does not exist (pass --db, or set storage.database)",
            path.display()
        )
        .into());
    }
    let store = Store::open(&path)?;
    let stored = store.record_history(
        &loaded.calls,
        Source::Backfilled,
        cfg.calls.resolve_within,
        dialer_since(&cfg, now),
    )?;
    std::io::stdout()
        .lock()
        .write_all(summary("backfilled", &loaded, &stored).as_bytes())?;
    Ok(if loaded.problems.is_empty() {
        0
    } else {
        EXIT_DATA
    })
}

/// For `missed` and `report`: a line on stderr when the period holds calls decided from
/// Asterisk's records, which are less exact than AMI (docs/IMPORT.md).
pub(crate) fn note_history(store: &Store, from: jiff::Timestamp, to: jiff::Timestamp) {
    if let Ok((imported, backfilled)) = store.history_counts(from, to) {
        if imported + backfilled > 0 {
            eprintln!(
                "perezvon: {imported} imported and {backfilled} backfilled calls in this period were decided from Asterisk's CDR/queue_log (less exact than AMI; docs/IMPORT.md)"
            );
        }
    }
}
