//! `perezvon callbacks list|cancel|retry`: the admin's view of the callback queue. Works on the
//! database while the daemon runs (SQLite WAL; the daemon notices changes through
//! `PRAGMA data_version`).

use std::io::Write as _;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde::Serialize;

use super::{CmdResult, DEFAULT_CONFIG};
use crate::callback::planner::TaskState;
use crate::config::{Config, EXIT_CONFIG};
use crate::store::tasks::TaskRow;
use crate::store::Store;

#[derive(Debug, Args)]
pub struct CallbacksArgs {
    #[command(subcommand)]
    pub command: CallbacksCommand,
}

#[derive(Debug, Subcommand)]
pub enum CallbacksCommand {
    /// List callback tasks, newest first. The table's NEXT ATTEMPT takes the working hours into
    /// account; JSON's `next_attempt_at` is the raw "not before" instant.
    #[command(
        after_help = "Example:\n  perezvon callbacks list --config /etc/perezvon/perezvon.toml\n  perezvon callbacks list --db /var/lib/perezvon/perezvon.db --format json --open | jq .number"
    )]
    List(ListArgs),
    /// Cancel a task: it is never dialled again (an attempt in flight is not hung up).
    #[command(
        after_help = "Example:\n  perezvon callbacks cancel 42 --config /etc/perezvon/perezvon.toml"
    )]
    Cancel(IdArgs),
    /// Dial a task again as soon as the hours allow, with a fresh round of attempts.
    #[command(
        after_help = "Example:\n  perezvon callbacks retry 42 --config /etc/perezvon/perezvon.toml"
    )]
    Retry(IdArgs),
    /// Record an agent's outcome of a task (what the feature codes and the console do):
    /// resolved, call_later, wrong_number or do_not_call (which also lists the number).
    #[command(
        after_help = "Example:\n  perezvon callbacks dispose 42 resolved --config /etc/perezvon/perezvon.toml\n  perezvon callbacks dispose 42 do_not_call --by 201 --config /etc/perezvon/perezvon.toml"
    )]
    Dispose(DisposeArgs),
    /// Which time zone(s) a number is in for `callback.customer_hours`, and whether its window
    /// is open now.
    #[command(
        after_help = "Example:\n  perezvon callbacks zone +74152123456 --config /etc/perezvon/perezvon.toml"
    )]
    Zone(ZoneArgs),
}

#[derive(Debug, Args)]
pub struct DisposeArgs {
    /// Task id (the first column of `callbacks list`).
    pub id: i64,
    /// The outcome.
    #[arg(value_parser = ["resolved", "call_later", "wrong_number", "do_not_call"])]
    pub disposition: String,
    /// Who gave it (an agent's extension, a login), kept with the task.
    #[arg(long)]
    pub by: Option<String>,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, Args)]
pub struct ZoneArgs {
    /// A phone number in any form the `[pbx]` plan normalises (`+7 415 212-34-56`, `8415…`).
    pub number: String,
    /// Configuration file [default: /etc/perezvon/perezvon.toml; built-in defaults if absent].
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DbArgs {
    /// Configuration file [default: /etc/perezvon/perezvon.toml].
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Database: a SQLite file or a postgres:// URL [default: storage.database or storage.url of the configuration].
    #[arg(long)]
    pub db: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Output format: an aligned table, or one JSON object per line per task.
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    pub format: String,
    /// Only pending and in-progress tasks.
    #[arg(long)]
    pub open: bool,
    /// At most this many tasks.
    #[arg(long, default_value_t = 10_000)]
    pub limit: u32,
}

#[derive(Debug, Args)]
pub struct IdArgs {
    /// Task id (the first column of `callbacks list`).
    pub id: i64,
    #[command(flatten)]
    pub db: DbArgs,
}

/// One task as `--format json` prints it.
#[derive(Debug, Serialize)]
pub struct TaskJson {
    pub id: i64,
    pub number: String,
    /// pending | in_progress | unknown | done | given_up | cancelled | expired
    pub state: &'static str,
    pub missed_count: u32,
    pub attempts: u32,
    pub last_outcome: Option<&'static str>,
    /// RFC 3339, the spacing's "not before"; `null` once the task is closed.
    pub next_attempt_at: Option<String>,
    /// RFC 3339: when the next attempt can really happen (not before `next_attempt_at` nor now,
    /// and within working hours); `null` when closed, in progress, or without a configuration.
    pub next_possible_at: Option<String>,
    pub first_missed_at: String,
    pub last_missed_at: String,
    pub lost_at: Option<&'static str>,
    pub closed_at: Option<String>,
    pub close_reason: Option<String>,
    pub server: String,
    /// missed | requested (the caller asked for it).
    pub kind: &'static str,
    /// The agent the callback goes through first (owned callbacks), if any.
    pub owner: Option<String>,
    /// RFC 3339: until when attempts wait for the owner (`null`: no owner).
    pub owner_until: Option<String>,
    /// Requested: the queue the caller asked from, and when they joined it (RFC 3339).
    pub queue: Option<String>,
    pub joined_at: Option<String>,
    /// resolved | call_later | wrong_number | do_not_call, when an agent gave one.
    pub disposition: Option<&'static str>,
    pub disposition_by: Option<String>,
    /// Why a pending task is not being dialled now: `spacing`, `closed`, `over_budget`,
    /// `customer_night`, `queue_busy`, `due`; for an `unknown` task `needs_retry`; `null`
    /// otherwise or without a configuration.
    pub waiting: Option<&'static str>,
    /// The same in words ("over budget: 3 of max_per_number_24h = 3", "customer's night:
    /// 23:10 Asia/Kamchatka", "queue sales busy: 2 caller(s) waiting").
    pub waiting_detail: Option<String>,
}

impl TaskJson {
    pub fn from_row(r: &TaskRow) -> TaskJson {
        let t = &r.task;
        TaskJson {
            id: t.id,
            number: t.number.clone(),
            state: t.state.as_str(),
            missed_count: t.missed_count,
            attempts: t.attempts,
            last_outcome: t.last_outcome.map(|o| o.as_str()),
            next_attempt_at: t.state.is_open().then(|| t.next_attempt_at.to_string()),
            next_possible_at: None,
            first_missed_at: t.first_missed_at.to_string(),
            last_missed_at: t.last_missed_at.to_string(),
            lost_at: t.lost_at.map(|l| l.as_str()),
            closed_at: r.closed_at.map(|c| c.to_string()),
            close_reason: r.close_reason.clone(),
            server: t.server.clone(),
            kind: t.routing.kind.as_str(),
            owner: t.routing.owner.clone(),
            owner_until: t.routing.owner_until.map(|o| o.to_string()),
            queue: t.routing.queue.clone(),
            joined_at: t.routing.joined_at.map(|j| j.to_string()),
            disposition: r.disposition.map(|d| d.as_str()),
            disposition_by: r.disposition_by.clone(),
            waiting: (t.state == TaskState::Unknown).then_some("needs_retry"),
            waiting_detail: (t.state == TaskState::Unknown).then(|| {
                "the last attempt's outcome is unknown (it may have reached the customer): \
                 check, then `perezvon callbacks retry` or `cancel`"
                    .to_string()
            }),
        }
    }
}

/// The configuration (if any) and the database path the arguments point to.
fn open(args: &DbArgs) -> Result<(Option<Config>, Store), CmdError> {
    let cfg = match (&args.config, &args.db) {
        (Some(p), _) => Some(Config::load(p).map_err(CmdError::Config)?),
        // With --db alone the configuration is optional (defaults are used for `retry`).
        (None, Some(_)) => Config::load(std::path::Path::new(DEFAULT_CONFIG)).ok(),
        (None, None) => {
            Some(Config::load(std::path::Path::new(DEFAULT_CONFIG)).map_err(CmdError::Config)?)
        }
    };
    let path = match (&args.db, &cfg) {
        (Some(p), _) => p.clone(),
        (None, Some(c)) => c.storage.database.clone(),
        (None, None) => return Err(CmdError::NoDatabase(DEFAULT_CONFIG.into())),
    };
    if !crate::store::may_exist(&path) {
        return Err(CmdError::NoDatabase(path));
    }
    let store = Store::open(&path).map_err(CmdError::Store)?;
    Ok((cfg, store))
}

#[derive(Debug, thiserror::Error)]
enum CmdError {
    #[error("{0}")]
    Config(crate::config::ConfigError),
    #[error("database {0} does not exist (has `perezvon run` started yet? pass --db)")]
    NoDatabase(PathBuf),
    #[error(transparent)]
    Store(crate::store::StoreError),
}

fn fail(e: CmdError) -> CmdResult {
    match e {
        CmdError::Config(c) => {
            let mut err = std::io::stderr().lock();
            writeln!(err, "{c}")?;
            Ok(EXIT_CONFIG)
        }
        other => Err(Box::new(other)),
    }
}

pub fn run(args: &CallbacksArgs) -> CmdResult {
    match &args.command {
        CallbacksCommand::List(a) => list(a),
        CallbacksCommand::Cancel(a) => cancel(a),
        CallbacksCommand::Retry(a) => retry(a),
        CallbacksCommand::Dispose(a) => dispose(a),
        CallbacksCommand::Zone(a) => zone(a),
    }
}

fn zone(a: &ZoneArgs) -> CmdResult {
    use crate::callback::guard::{CustomerHours, CustomerZone, Rules};
    use crate::callback::zones::ZoneTable;
    let default = std::path::Path::new(DEFAULT_CONFIG);
    let cfg = match (&a.config, default.exists()) {
        (Some(p), _) => Config::load(p),
        (None, true) => Config::load(default),
        // No configuration at all: the built-in defaults (hours.timezone UTC, no overrides).
        (None, false) => Config::from_toml(""),
    };
    let cfg = match cfg {
        Ok(c) => c,
        Err(e) => return fail(CmdError::Config(e)),
    };
    let number = match cfg.pbx.numbers.normalize(&a.number) {
        Ok(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => n,
        _ => {
            eprintln!(
                "perezvon: {} is not a phone number",
                crate::report::text::cell(&a.number, crate::report::text::MAX_CELL)
            );
            return Ok(1);
        }
    };
    let rules = Rules::from_config(&cfg.callback, &cfg.hours);
    // Without customer_hours the zones are still shown, against a 09:00-21:00 example window.
    let example = CustomerHours {
        weekdays: vec![crate::config::DayRange {
            start_min: 9 * 60,
            end_min: 21 * 60,
        }],
        weekend: vec![crate::config::DayRange {
            start_min: 9 * 60,
            end_min: 21 * 60,
        }],
        unknown_region: cfg.callback.customer_unknown_region,
        unknown_country: cfg.callback.customer_unknown_country,
        overrides: cfg.callback.customer_zones.clone(),
        business_zone: cfg.hours.timezone.clone(),
    };
    let (c, configured) = match &rules.customer {
        Some(c) => (c, true),
        None => (&example, false),
    };
    let now = jiff::Timestamp::now();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "number: {}",
        crate::number::display(Some(&number), None)
    )?;
    let local = |tz: &jiff::tz::TimeZone| now.to_zoned(tz.clone()).strftime("%a %H:%M").to_string();
    match c.zone_of(&number) {
        CustomerZone::Never => {
            writeln!(out, "zone: country not in the table; callback.customer_unknown_country = \"never\": not called")?;
        }
        CustomerZone::One(tz, name, how) => {
            writeln!(out, "zone: {name} ({how}), now {}", local(&tz))?;
        }
        CustomerZone::Table(set, how) => {
            let names = ZoneTable::names(set);
            writeln!(
                out,
                "zone{}: {how}",
                if names.len() == 1 { "" } else { "s" }
            )?;
            for n in names {
                let tz = jiff::tz::TimeZone::get(n).unwrap_or(jiff::tz::TimeZone::UTC);
                writeln!(out, "  {n:<20} now {}", local(&tz))?;
            }
        }
    }
    let tz = cfg.hours.timezone.clone();
    let when = |t: jiff::Timestamp| {
        t.to_zoned(tz.clone())
            .strftime("%Y-%m-%d %H:%M %Z")
            .to_string()
    };
    let label = if configured {
        "customer_hours"
    } else {
        "customer_hours not set; with \"09:00-21:00\""
    };
    if c.allows(&number, &c.open_mask(now)) {
        writeln!(out, "{label}: inside the window now")?;
    } else {
        match c.next_allowed(&number, now) {
            Some(t) => writeln!(out, "{label}: outside the window; it opens {}", when(t))?,
            None => writeln!(out, "{label}: the window never holds in every zone")?,
        }
    }
    Ok(0)
}

fn list(a: &ListArgs) -> CmdResult {
    let (cfg, store) = match open(&a.db) {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    let rows = store.list_tasks(!a.open, a.limit)?;
    let mut out = std::io::stdout().lock();
    // When an attempt can really happen: not before the next opening, nor while a guard holds
    // the task back (budget, customer's clock).
    let hours = cfg
        .as_ref()
        .map(|c| crate::callback::hours::Hours::from_config(&c.hours));
    let rules = cfg
        .as_ref()
        .map(|c| crate::callback::guard::Rules::from_config(&c.callback, &c.hours));
    let policy = cfg
        .as_ref()
        .map(|c| crate::callback::planner::Policy::from_config(&c.callback, c.calls.min_talk));
    let now = jiff::Timestamp::now();
    let log = match &rules {
        Some(r) if r.has_budget() => crate::callback::guard::AttemptLog::from_starts(
            store.attempt_starts_since(now - r.budget_horizon())?,
        ),
        _ => Default::default(),
    };
    // As the dialer last recorded it (it checks each second while tasks are due).
    let held: std::collections::HashMap<String, String> = store
        .held_back_targets()?
        .into_iter()
        .map(|(t, at, why)| {
            let tz = cfg
                .as_ref()
                .map_or(jiff::tz::TimeZone::UTC, |c| c.hours.timezone.clone());
            let at = at.to_zoned(tz).strftime("%Y-%m-%d %H:%M:%S").to_string();
            (t, format!("{why} (as of {at})"))
        })
        .collect();
    let possible = |t: &crate::callback::planner::Task| match (&hours, &rules) {
        (Some(h), Some(r)) => {
            crate::callback::guard::earliest_possible(t, now, h, r, log.starts(&t.number))
        }
        _ => None,
    };
    // Why a pending task waits, in the planner's order; then the dialer's word on its target.
    let waiting = |t: &crate::callback::planner::Task| -> Option<(&'static str, String)> {
        use crate::callback::guard::{why_waiting, Wait};
        let (h, r) = (hours.as_ref()?, rules.as_ref()?);
        if t.state != TaskState::Pending {
            return None;
        }
        let w = why_waiting(t, now, h, r, log.starts(&t.number));
        let detail = match &w {
            Wait::Spacing(_) => "retry spacing".to_string(),
            Wait::Closed(_) => "outside working hours".to_string(),
            Wait::OverBudget(b) => format!("over budget: {} of {} = {}", b.used, b.rule, b.cap),
            Wait::CustomerNight { local, .. } => format!("customer's night: {local}"),
            Wait::Due => {
                let target = policy.as_ref()?.target_of(t).key();
                if let Some(why) = held.get(&target) {
                    return Some(("queue_busy", why.clone()));
                }
                "due: waits for a free slot or agent".to_string()
            }
        };
        Some((w.code(), detail))
    };
    if a.format == "json" {
        for r in &rows {
            let mut j = TaskJson::from_row(r);
            if r.task.state == TaskState::Pending {
                j.next_possible_at = possible(&r.task).map(|t| t.to_string());
                if let Some((code, detail)) = waiting(&r.task) {
                    j.waiting = Some(code);
                    j.waiting_detail = Some(detail);
                }
            }
            let line = crate::report::text::json_escape_unsafe(serde_json::to_string(&j)?);
            out.write_all(line.as_bytes())?;
            out.write_all(b"\n")?;
        }
        return Ok(0);
    }
    let tz = cfg
        .as_ref()
        .map(|c| c.hours.timezone.clone())
        .unwrap_or(jiff::tz::TimeZone::UTC);
    let local = |t: jiff::Timestamp| {
        t.to_zoned(tz.clone())
            .strftime("%Y-%m-%d %H:%M")
            .to_string()
    };
    let effective = |t: &crate::callback::planner::Task| match &hours {
        Some(_) => possible(t).map_or_else(|| "never (closed)".to_string(), local),
        None => local(t.next_attempt_at),
    };
    writeln!(
        out,
        "{:>6}  {:<15}  {:<11}  {:<9}  {:>6}  {:>8}  {:<12}  {:<16}  {:<8}  {:<12}  REASON",
        "ID",
        "NUMBER",
        "STATE",
        "KIND",
        "MISSED",
        "ATTEMPTS",
        "LAST",
        "NEXT ATTEMPT",
        "OWNER",
        "DISPOSITION"
    )?;
    // The number is normalised and the reason is perezvon's own, but both come from the
    // database: escaped and cut like every table's cells.
    let cell = |s: &str| crate::report::text::cell(s, crate::report::text::MAX_CELL);
    for r in &rows {
        let t = &r.task;
        writeln!(
            out,
            "{:>6}  {:<15}  {:<11}  {:<9}  {:>6}  {:>8}  {:<12}  {:<16}  {:<8}  {:<12}  {}",
            t.id,
            cell(&crate::number::display(Some(&t.number), None)),
            t.state.as_str(),
            t.routing.kind.as_str(),
            t.missed_count,
            t.attempts,
            t.last_outcome.map(|o| o.as_str()).unwrap_or("-"),
            if t.state == TaskState::Pending {
                effective(t)
            } else if t.state == TaskState::InProgress {
                "(dialling)".to_string()
            } else if t.state == TaskState::Unknown {
                "(needs retry)".to_string()
            } else {
                "-".into()
            },
            cell(t.routing.owner.as_deref().unwrap_or("-")),
            r.disposition.map(|d| d.as_str()).unwrap_or("-"),
            cell(&match (t.state, waiting(t)) {
                (TaskState::Pending, Some((code, detail))) if code != "spacing" => detail,
                (TaskState::Unknown, _) => format!(
                    "outcome unknown: check, then `perezvon callbacks retry {}` or cancel",
                    t.id
                ),
                _ => r.close_reason.clone().unwrap_or_default(),
            })
        )?;
    }
    Ok(0)
}

fn cancel(a: &IdArgs) -> CmdResult {
    let (_, store) = match open(&a.db) {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    let Some(row) = store.task(a.id)? else {
        eprintln!("perezvon: no callback task {}", a.id);
        return Ok(1);
    };
    if !row.task.state.is_open() {
        eprintln!(
            "perezvon: callback task {} is already {}",
            a.id,
            row.task.state.as_str()
        );
        return Ok(1);
    }
    store.close_task(
        a.id,
        TaskState::Cancelled,
        "cancelled_by_admin",
        jiff::Timestamp::now(),
    )?;
    let number = crate::report::text::cell(&row.task.number, crate::report::text::MAX_CELL);
    if row.task.state == TaskState::InProgress {
        println!(
            "cancelled callback task {} ({}); the attempt in flight is not hung up",
            a.id, number
        );
    } else {
        println!("cancelled callback task {} ({number})", a.id);
    }
    Ok(0)
}

fn retry(a: &IdArgs) -> CmdResult {
    let (cfg, store) = match open(&a.db) {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    // Without a configuration, the documented defaults (3 attempts, 24 h).
    let cb = match cfg {
        Some(c) => c.callback,
        None => Config::from_toml("")?.callback,
    };
    let now = jiff::Timestamp::now();
    let give_up_at = jiff::SignedDuration::try_from(cb.give_up_after)
        .ok()
        .and_then(|d| now.checked_add(d).ok())
        .unwrap_or(jiff::Timestamp::MAX);
    match store.retry_task(a.id, now, cb.max_attempts, give_up_at) {
        Ok(()) => {
            println!(
                "callback task {} is pending again: up to {} more attempt{} while open",
                a.id,
                cb.max_attempts,
                if cb.max_attempts == 1 { "" } else { "s" }
            );
            Ok(0)
        }
        Err(crate::store::StoreError::Invalid(msg)) => {
            eprintln!("perezvon: {msg}");
            Ok(1)
        }
        Err(e) => Err(Box::new(e)),
    }
}

fn dispose(a: &DisposeArgs) -> CmdResult {
    let (cfg, mut store) = match open(&a.db) {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    let Some(d) = crate::callback::request::Disposition::parse(&a.disposition) else {
        eprintln!("perezvon: unknown disposition {:?}", a.disposition);
        return Ok(2);
    };
    let after = match cfg {
        Some(c) => c.callback.request.call_later_after,
        None => crate::config::RequestSettings::default().call_later_after,
    };
    let now = jiff::Timestamp::now();
    let later = jiff::SignedDuration::try_from(after)
        .ok()
        .and_then(|d| now.checked_add(d).ok())
        .unwrap_or(jiff::Timestamp::MAX);
    match store.set_disposition(a.id, d, a.by.as_deref(), now, later) {
        Ok(applied) => {
            println!(
                "callback task {} ({}): {}, now {}",
                a.id,
                crate::report::text::cell(&applied.number, crate::report::text::MAX_CELL),
                d.as_str(),
                applied.state.as_str()
            );
            Ok(0)
        }
        Err(crate::store::StoreError::Invalid(msg)) => {
            eprintln!("perezvon: {msg}");
            Ok(1)
        }
        Err(e) => Err(Box::new(e)),
    }
}
