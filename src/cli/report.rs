//! `perezvon report`: statistics of a period as a table, JSON, CSV or one HTML page.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::config::{Config, EXIT_CONFIG};
use crate::report::{Report, Settings};
use crate::store::Store;

use super::{CmdResult, ReportArgs, DEFAULT_CONFIG};

/// The configuration of a reading command: `--config`, else the system file when it exists,
/// else, when `--db` names the database, the defaults of an empty file (times in UTC). With
/// neither a configuration nor `--db` nothing says which database or time zone is meant: that is
/// a configuration error, not a guess. On an error the problems are on stderr and `Err` holds the
/// exit code ([`EXIT_CONFIG`]).
pub(crate) fn load_config(path: Option<&Path>, db: Option<&Path>) -> Result<Config, i32> {
    let default = Path::new(DEFAULT_CONFIG);
    let loaded = match path {
        Some(p) => Config::load(p),
        None if default.exists() => Config::load(default),
        None if db.is_some() => {
            let cfg = Config::from_toml_in("", "defaults", None).map_err(|e| {
                eprintln!("perezvon: {e}");
                EXIT_CONFIG
            })?;
            // Say so: the times are shown in UTC, which is probably not this site's zone.
            eprintln!(
                "perezvon: no --config and no {DEFAULT_CONFIG}: default settings (times in {})",
                cfg.hours.timezone_name
            );
            return Ok(cfg);
        }
        None => {
            eprintln!(
                "perezvon: no configuration: no --config given and {DEFAULT_CONFIG} does not exist \
                 (pass --config FILE, or --db FILE to read a database with the default settings)"
            );
            return Err(EXIT_CONFIG);
        }
    };
    loaded.map_err(|e| {
        eprintln!("perezvon: {e}");
        EXIT_CONFIG
    })
}

/// The database: `--db`, else `storage.database` of the configuration. A reading command never
/// creates one: a typo in the path must not produce an empty report.
pub(crate) fn open_store(
    db: Option<&Path>,
    cfg: &Config,
) -> Result<Store, Box<dyn std::error::Error + Send + Sync>> {
    let path: PathBuf = db
        .map(Path::to_path_buf)
        .unwrap_or_else(|| cfg.storage.database.clone());
    if !crate::store::may_exist(&path) {
        return Err(format!(
            "database {} does not exist (pass --db, or set storage.database)",
            path.display()
        )
        .into());
    }
    Ok(Store::open(&path)?)
}

/// `now - since`, refusing a period that reaches before the epoch.
pub(crate) fn period_start(
    now: jiff::Timestamp,
    since: std::time::Duration,
) -> Result<jiff::Timestamp, Box<dyn std::error::Error + Send + Sync>> {
    let d =
        jiff::SignedDuration::try_from(since).map_err(|e| format!("--since is too long: {e}"))?;
    now.checked_sub(d).map_err(|_| {
        format!(
            "--since {} reaches before 1970",
            humantime::format_duration(since)
        )
        .into()
    })
}

/// The period `[from, to)` of `--from/--to` (local dates, `--to` inclusive) or `--since`.
pub(crate) fn period(
    args: &ReportArgs,
    tz: &jiff::tz::TimeZone,
    now: jiff::Timestamp,
) -> Result<(jiff::Timestamp, jiff::Timestamp), Box<dyn std::error::Error + Send + Sync>> {
    if args.from.is_none() && args.to.is_none() {
        return Ok((period_start(now, args.since.into())?, now));
    }
    let date = |flag: &str, s: &str| -> Result<jiff::civil::Date, String> {
        s.parse::<jiff::civil::Date>()
            .map_err(|_| format!("{flag} {s:?}: not a date (YYYY-MM-DD, e.g. 2026-12-01)"))
    };
    let today = now.to_zoned(tz.clone()).date();
    let last = match &args.to {
        Some(s) => date("--to", s)?,
        None => today,
    };
    let first = match &args.from {
        Some(s) => date("--from", s)?,
        // `--to` alone: the week ending that day.
        None => last
            .checked_sub(jiff::Span::new().days(6))
            .map_err(|e| format!("--to {last}: {e}"))?,
    };
    if first > last {
        return Err(format!("--from {first} is after --to {last}").into());
    }
    let midnight = |d: jiff::civil::Date| -> Result<jiff::Timestamp, String> {
        d.to_zoned(tz.clone())
            .map(|z| z.timestamp())
            .map_err(|e| format!("{d}: {e}"))
    };
    let end = last
        .tomorrow()
        .map_err(|e| format!("--to {last}: {e}"))
        .and_then(midnight)?;
    Ok((midnight(first)?, end))
}

pub fn run(args: &ReportArgs) -> CmdResult {
    let cfg = match load_config(args.config.as_deref(), args.db.as_deref()) {
        Ok(cfg) => cfg,
        Err(code) => return Ok(code),
    };
    let store = open_store(args.db.as_deref(), &cfg)?;
    let now = jiff::Timestamp::now();
    let tz = &cfg.hours.timezone;
    let (from, to) = period(args, tz, now)?;
    super::history::note_history(&store, from, to);
    let settings = Settings::from_config(&cfg);
    let report = Report::load(&store, &settings, from, to)?;
    let text = match args.format.as_str() {
        "json" => {
            // Exact values; what a terminal could act on (DEL, C1, bidi) as `\u` escapes.
            let mut s =
                crate::report::text::json_escape_unsafe(serde_json::to_string_pretty(&report)?);
            s.push('\n');
            s
        }
        "html" => {
            let lang = crate::lang::Lang::parse(&args.lang).unwrap_or_default();
            crate::report::html::render_in(&report, tz, lang)
        }
        "csv" => crate::report::csv::render(&report)?,
        _ => crate::report::text::render(&report, tz),
    };
    match &args.out {
        Some(path) => {
            // Write beside it and rename: a cron job refreshing a page people have open never
            // leaves them a half-written file.
            let tmp = path.with_extension("partial");
            std::fs::write(&tmp, text)
                .and_then(|()| std::fs::rename(&tmp, path))
                .map_err(|e| {
                    let _ = std::fs::remove_file(&tmp);
                    format!("cannot write {}: {e}", path.display())
                })?;
            eprintln!("perezvon: report written to {}", path.display());
        }
        None => std::io::stdout().lock().write_all(text.as_bytes())?,
    }
    Ok(0)
}
