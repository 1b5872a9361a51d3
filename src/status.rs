//! What the admin sees: the one-line state systemd shows (`STATUS=`), the `GET /status` JSON of
//! the running daemon and what `perezvon status` prints.
//!
//! [`StatusReport`] is the one shape of all three. The live parts (links, events, calls in
//! progress) come from [`Metrics`]; the callback queue and today's counters from the store, so
//! `perezvon status` can still say them when the daemon is not running ([`from_store`]).
//! [`line()`] and [`render_text`] are pure.

use std::fmt::Write as _;

use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::callback::planner::{AttemptOutcome, TaskState};
use crate::calls::record::{CallbackOutcome, Direction, Status};
use crate::metrics::{Metrics, ServerSnapshot};
use crate::store::{Store, StoreError};

/// The callback queue.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueStatus {
    /// Tasks pending or in progress.
    pub pending: u64,
    /// Tasks whose last attempt's outcome is unknown: they wait for `callbacks retry`.
    #[serde(default)]
    pub unknown: u64,
    /// Attempts originated without an outcome yet.
    pub in_flight: u64,
    /// The earliest next attempt of a pending task.
    pub next_attempt_at: Option<Timestamp>,
}

/// Counters of the calls that ended today (midnight in `hours.timezone` until now).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TodayStatus {
    /// The day, `YYYY-MM-DD`.
    pub date: String,
    /// Calls whose verdict is stored, every direction.
    pub calls: u64,
    pub inbound: u64,
    pub answered: u64,
    pub missed: u64,
    /// Missed calls nobody has resolved yet.
    pub unresolved: u64,
    /// Callback attempts that ended today, and those of them that connected.
    pub callbacks: u64,
    pub callbacks_connected: u64,
}

/// The daemon's state (`GET /status`, `perezvon status --json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub version: String,
    pub now: Timestamp,
    /// When the daemon started (`None`: the report comes from the store alone).
    pub started_at: Option<Timestamp>,
    /// The `STATUS=` line.
    pub line: String,
    pub servers: Vec<ServerSnapshot>,
    pub calls_in_progress: u64,
    /// Verdicts held in memory because the database refuses writes.
    pub held_verdicts: u64,
    pub queue: QueueStatus,
    pub today: TodayStatus,
}

/// The `STATUS=` line: `2/2 servers connected, 3 callbacks pending, 41 calls today, 1 call in
/// progress`, and a loud tail when the database fails.
pub fn line(
    servers_up: usize,
    servers: usize,
    pending: u64,
    today: u64,
    in_progress: u64,
    held: u64,
) -> String {
    let plural = |n: u64, one: &str, many: &str| {
        if n == 1 {
            format!("{n} {one}")
        } else {
            format!("{n} {many}")
        }
    };
    let mut s = format!(
        "{servers_up}/{servers} servers connected, {}, {}, {}",
        plural(pending, "callback pending", "callbacks pending"),
        plural(today, "call today", "calls today"),
        plural(in_progress, "call in progress", "calls in progress"),
    );
    if held > 0 {
        let _ = write!(s, ", DATABASE FAILING: {held} verdicts held in memory");
    }
    s
}

/// The `STATUS=` line of a running daemon, from its metrics.
pub fn line_from(metrics: &Metrics, now: Timestamp) -> String {
    let servers = metrics.servers(now);
    line(
        servers.iter().filter(|s| s.link_up).count(),
        servers.len(),
        metrics.pending_callback_tasks(),
        metrics.calls_today(),
        metrics.calls_in_progress(),
        metrics.held_verdicts(),
    )
}

/// Midnight of `now`'s day in `tz`, and the day.
pub fn today_start(now: Timestamp, tz: &TimeZone) -> (Timestamp, jiff::civil::Date) {
    let date = now.to_zoned(tz.clone()).date();
    let start = date
        .to_zoned(tz.clone())
        .map(|z| z.timestamp())
        // A day that starts in a DST gap: an hour off at worst for a counter.
        .unwrap_or(now);
    (start, date)
}

/// The queue and today's counters as the store has them.
pub fn from_store(
    store: &Store,
    tz: &TimeZone,
    now: Timestamp,
) -> Result<(QueueStatus, TodayStatus), StoreError> {
    let tasks = store.open_tasks()?;
    let in_flight = store.unfinished_attempts()?.len() as u64;
    let queue = QueueStatus {
        pending: tasks
            .iter()
            .filter(|t| t.state != TaskState::Unknown)
            .count() as u64,
        unknown: tasks
            .iter()
            .filter(|t| t.state == TaskState::Unknown)
            .count() as u64,
        in_flight,
        next_attempt_at: tasks
            .iter()
            .filter(|t| t.state == TaskState::Pending)
            .map(|t| t.next_attempt_at)
            .min(),
    };
    let (start, date) = today_start(now, tz);
    let calls = store.calls_ended_between(start, now)?;
    let attempts = store.attempts_ended_between(start, now)?;
    let today = TodayStatus {
        date: date.to_string(),
        calls: calls.len() as u64,
        inbound: count(&calls, |c| c.direction == Direction::Inbound),
        answered: count(&calls, |c| {
            c.direction == Direction::Inbound && c.status == Status::Answered
        }),
        missed: count(&calls, |c| c.missed),
        unresolved: count(&calls, |c| c.missed && c.resolved_at.is_none()),
        callbacks: attempts.len() as u64,
        callbacks_connected: attempts
            .iter()
            .filter(|a| a.outcome == Some(AttemptOutcome::Call(CallbackOutcome::Connected)))
            .count() as u64,
    };
    Ok((queue, today))
}

fn count<T>(items: &[T], f: impl Fn(&T) -> bool) -> u64 {
    items.iter().filter(|x| f(x)).count() as u64
}

/// The report of a running daemon.
pub fn report(
    metrics: &Metrics,
    started_at: Timestamp,
    queue: QueueStatus,
    today: TodayStatus,
    now: Timestamp,
) -> StatusReport {
    StatusReport {
        version: env!("CARGO_PKG_VERSION").to_string(),
        now,
        started_at: Some(started_at),
        line: line_from(metrics, now),
        servers: metrics.servers(now),
        calls_in_progress: metrics.calls_in_progress(),
        held_verdicts: metrics.held_verdicts(),
        queue,
        today,
    }
}

/// Seconds as `3s`, `4m10s`, `2h05m`, `3d04h`.
pub fn ago(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// The human text of `perezvon status`; times in `tz`.
pub fn render_text(r: &StatusReport, tz: &TimeZone) -> String {
    let at = |t: Timestamp| {
        t.to_zoned(tz.clone())
            .strftime("%Y-%m-%d %H:%M:%S")
            .to_string()
    };
    let mut s = String::new();
    let _ = writeln!(s, "{}", r.line);
    if let Some(start) = r.started_at {
        let up = (r.now.as_second() - start.as_second()) as f64;
        let _ = writeln!(
            s,
            "perezvon {} running since {} ({})",
            r.version,
            at(start),
            ago(up)
        );
    }
    for sv in &r.servers {
        let mut l = format!(
            "server {}: link {}",
            sv.name,
            if sv.link_up { "up" } else { "down" }
        );
        if let Some(since) = sv.link_since {
            let _ = write!(
                l,
                " since {} ({} ago)",
                at(since),
                ago((r.now.as_millisecond() - since.as_millisecond()) as f64 / 1000.0)
            );
        }
        let _ = write!(l, ", {} events", sv.events);
        match sv.seconds_since_last_event {
            Some(secs) => {
                let _ = write!(l, ", last {} ago", ago(secs));
            }
            None => l.push_str(", none yet"),
        }
        if let Some(lag) = sv.lag_seconds {
            let _ = write!(l, ", lag {lag:.3}s");
        }
        if let Some(owner) = &sv.owner {
            let _ = write!(l, ", owner {owner}");
        }
        if sv.reconnects > 0 {
            let _ = write!(l, ", {} reconnects", sv.reconnects);
        }
        if sv.decode_problems > 0 {
            let _ = write!(l, ", {} messages skipped", sv.decode_problems);
        }
        let _ = writeln!(s, "{l}");
    }
    let q = &r.queue;
    let _ = write!(
        s,
        "callbacks: {} pending, {} attempt{} in flight",
        q.pending,
        q.in_flight,
        if q.in_flight == 1 { "" } else { "s" }
    );
    if q.unknown > 0 {
        let _ = write!(s, ", {} of unknown outcome (callbacks retry)", q.unknown);
    }
    match q.next_attempt_at {
        Some(t) if t <= r.now => s.push_str(", next attempt due now\n"),
        Some(t) => {
            let _ = writeln!(s, ", next attempt at {}", at(t));
        }
        None => s.push('\n'),
    }
    let t = &r.today;
    let _ = writeln!(
        s,
        "today ({}): {} calls, {} inbound: {} answered, {} missed ({} unresolved); {} callbacks, {} connected",
        t.date, t.calls, t.inbound, t.answered, t.missed, t.unresolved, t.callbacks, t.callbacks_connected
    );
    if r.held_verdicts > 0 {
        let _ = writeln!(
            s,
            "DATABASE FAILING: {} verdicts held in memory",
            r.held_verdicts
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_counts_and_pluralises() {
        assert_eq!(
            line(2, 2, 3, 41, 0, 0),
            "2/2 servers connected, 3 callbacks pending, 41 calls today, 0 calls in progress"
        );
        assert_eq!(
            line(0, 1, 1, 1, 1, 7),
            "0/1 servers connected, 1 callback pending, 1 call today, 1 call in progress, \
             DATABASE FAILING: 7 verdicts held in memory"
        );
    }

    #[test]
    fn ago_is_short() {
        assert_eq!(ago(0.4), "0s");
        assert_eq!(ago(250.0), "4m10s");
        assert_eq!(ago(7500.0), "2h05m");
        assert_eq!(ago(3.0 * 86_400.0 + 4.0 * 3600.0), "3d04h");
        assert_eq!(ago(-5.0), "0s");
    }

    #[test]
    fn today_starts_at_local_midnight() {
        let tz = TimeZone::get("Europe/Moscow").unwrap();
        let now: Timestamp = "2026-12-02T20:30:00Z".parse().unwrap();
        let (start, date) = today_start(now, &tz);
        assert_eq!(date.to_string(), "2026-12-02");
        assert_eq!(start, "2026-12-01T21:00:00Z".parse::<Timestamp>().unwrap());
        // 23:30 UTC is already the next day in Moscow.
        let (_, date) = today_start("2026-12-02T23:30:00Z".parse().unwrap(), &tz);
        assert_eq!(date.to_string(), "2026-12-03");
    }
}
