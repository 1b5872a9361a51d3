//! The report's rollup: the sums of [`crate::report::tally`] per quarter hour (`report_slots`)
//! and per queue, agent and DID and hour (`report_*_hours`), kept by triggers on `calls`.
//! Owner: the reporting work.
//!
//! Why: a year of a busy centre is millions of calls, and reading them takes seconds; the
//! rollup answers the same question in tens of thousands of rows. Triggers (not the writer)
//! keep it, so every way a row changes is covered: a verdict, a later resolution, an import, a
//! retention prune or a `forget`. The period's partial hours at either end, and quarter hours
//! inside which the working-hours schedule opens or closes, are read from `calls` itself, so
//! every figure is exact whatever the period and the schedule.
//!
//! Calls are folded in lazily, not by the insert: a verdict costs no more than before (replay
//! and the daemon write thousands a second), and a reader folds what came since the last time
//! in one set-based statement a table ([`Store::fold_report_rollup`]; `report_settings.folded_id`
//! is the newest call folded). The triggers follow only calls already folded: a later resolution,
//! a correction, a delete (retention, `forget`), and an insert that reuses the id of a deleted
//! newest row.
//!
//! The service level threshold is part of the rollup (`report_settings`); when the configured
//! one differs, [`Store::set_report_service_level`] rebuilds the rollup once.

use super::calls::{row_to_call, COLUMNS};
use super::db::{params, Db, DbResult, Engine, Row};
use super::{f64_to_ts, ts_to_f64, Result, Store, StoreError};
use crate::calls::record::CallRecord;
use crate::report::tally::{Detail, Head, Tally, HOUR_SECS, SLOT_SECS};

include!("rollup_sql.rs");

/// The migration: `calls.queue`, the indexes the report reads by, the rollup and its triggers.
/// The calls already stored are folded in by the first report ([`Store::fold_report_rollup`]).
pub const SCHEMA_REPORT: &str = concat!(rollup_tables!(), rollup_triggers!());

/// [`SCHEMA_REPORT`] for PostgreSQL: the same tables, and one PL/pgSQL row trigger for the
/// four SQLite ones (both generated from the same terms by tools/gen-report-rollup.py).
pub const SCHEMA_REPORT_PG: &str = concat!(rollup_tables_pg!(), rollup_triggers_pg!());

const CLEAR: &str = "DELETE FROM report_slots; DELETE FROM report_queue_hours; \
    DELETE FROM report_agent_hours; DELETE FROM report_did_hours; \
    UPDATE report_settings SET folded_id = 0 WHERE id = 1;";

/// Call ids folded per transaction.
pub const FOLD_CHUNK: i64 = 100_000;

/// Columns of [`Head`] in a row.
const HEAD_LEN: usize = 12;

/// What the report asks of the rollup.
#[derive(Debug, Clone)]
pub struct RollupQuery<'a> {
    /// Calls that started in `[from, to)`.
    pub from: jiff::Timestamp,
    pub to: jiff::Timestamp,
    /// Quarter hours ([`SLOT_SECS`] slots) to count from their calls, sorted: those the schedule
    /// opens or closes inside.
    pub split_slots: &'a [i64],
    /// Also the per-queue, per-agent and per-DID sums (the previous period needs none).
    pub breakdowns: bool,
}

/// The rollup's answer for a period.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rollup {
    /// Whole quarter hours of the period (not split ones), by slot number.
    pub slots: Vec<(i64, Tally)>,
    /// Sums over the whole hours of the period, by key (`""` when the call had none).
    pub queues: Vec<(String, Head)>,
    pub agents: Vec<(String, Head)>,
    pub dids: Vec<(String, Head)>,
    /// Inbound calls of the period's partial hours: they count everywhere.
    pub edge_calls: Vec<CallRecord>,
    /// Inbound calls of the split slots: they count in the time figures only (the breakdowns
    /// hold them already).
    pub split_calls: Vec<CallRecord>,
    pub service_level_secs: f64,
}

fn head_from_row(row: &Row, base: usize) -> DbResult<Head> {
    let i = |k: usize| row.get::<i64>(base + k);
    let f = |k: usize| row.get::<f64>(base + k);
    Ok(Head {
        inbound: i(0)?,
        answered: i(1)?,
        missed: i(2)?,
        ignored: i(3)?,
        unknown: i(4)?,
        withheld: i(5)?,
        withheld_missed: i(6)?,
        abandoned: i(7)?,
        sl_hits: i(8)?,
        answer_wait_sum: f(9)?,
        miss_wait_sum: f(10)?,
        talk_sum: f(11)?,
    })
}

fn detail_from_row(row: &Row, base: usize) -> DbResult<Detail> {
    let mut d = Detail::default();
    let mut k = base;
    let mut next = || {
        k += 1;
        row.get::<i64>(k - 1)
    };
    for x in d
        .answered_waits
        .iter_mut()
        .chain(d.missed_waits.iter_mut())
        .chain(d.lost_at.iter_mut())
        .chain(d.resolved.iter_mut())
        .chain(d.reaction.iter_mut().flatten())
    {
        *x = next()?;
    }
    d.reaction_n = next()?;
    d.reaction_sum = row.get::<f64>(k)?;
    Ok(d)
}

/// The whole hours `[h0, h1)` inside `[from, to)`, if any.
fn whole_hours(from: f64, to: f64) -> Option<(i64, i64)> {
    let h = HOUR_SECS as f64;
    let (h0, h1) = ((from / h).ceil() as i64, (to / h).floor() as i64);
    (h0 < h1).then_some((h0, h1))
}

impl Store {
    /// The service level threshold the rollup counts with.
    pub fn report_service_level(&self) -> Result<f64> {
        self.db
            .query_row(
                "SELECT service_level_secs FROM report_settings WHERE id = 1",
                params![],
                |r| r.get(0),
            )
            .map_err(StoreError::sql("read the report's service level"))
    }

    /// Makes the rollup count "answered within `secs`"; rebuilds it from `calls` (one
    /// transaction) when it counted with another threshold. Returns whether it rebuilt.
    pub fn set_report_service_level(&self, secs: f64) -> Result<bool> {
        if !secs.is_finite() || secs < 0.0 {
            return Err(StoreError::Invalid(format!(
                "service level of {secs} s is not a duration"
            )));
        }
        if self.report_service_level()? == secs {
            return Ok(false);
        }
        self.in_transaction("rebuild the report rollup", |tx| {
            tx.execute(
                "UPDATE report_settings SET service_level_secs = ?1 WHERE id = 1",
                params![secs],
            )?;
            tx.batch(CLEAR)
        })?;
        // Readers that fold meanwhile continue the same fold: each chunk reads `folded_id` in
        // its own transaction, so nothing is counted twice.
        self.fold_report_rollup()?;
        Ok(true)
    }

    /// Folds the calls stored since the last fold into the rollup; returns how many ids it
    /// covered. Run by every report before it reads the rollup. Each [`FOLD_CHUNK`] ids are
    /// one transaction, so a big first fold never holds the daemon's writes back for long.
    pub fn fold_report_rollup(&self) -> Result<i64> {
        let mut total = 0;
        loop {
            let n = self.in_transaction("fold calls into the report rollup", |tx| {
                fold_in_transaction(tx, FOLD_CHUNK)
            })?;
            if n == 0 {
                return Ok(total);
            }
            total += n;
        }
    }

    /// Runs `f` in a write transaction (committed when it returns `Ok`; retried whole on a
    /// PostgreSQL serialization failure).
    fn in_transaction<T>(
        &self,
        what: &'static str,
        f: impl FnMut(&Db) -> DbResult<T>,
    ) -> Result<T> {
        self.db.transaction(f).map_err(StoreError::sql(what))
    }

    /// The rollup of the calls that started in `[q.from, q.to)`.
    ///
    /// One read transaction, so the sums and `folded_id` are of the same moment: the calls not
    /// folded yet (stored since the last fold, or a reader that cannot write) are read from
    /// `calls` as edge calls, so the answer is exact either way.
    pub fn report_rollup(&self, q: &RollupQuery<'_>) -> Result<Rollup> {
        self.db.read_snapshot(|_| self.report_rollup_in_snapshot(q))
    }

    fn report_rollup_in_snapshot(&self, q: &RollupQuery<'_>) -> Result<Rollup> {
        let (f, t) = (ts_to_f64(q.from), ts_to_f64(q.to));
        let mut out = Rollup {
            service_level_secs: self.report_service_level()?,
            ..Rollup::default()
        };
        if t <= f {
            return Ok(out);
        }
        let Some((h0, h1)) = whole_hours(f, t) else {
            out.edge_calls = self.inbound_started_between(f, t)?;
            return Ok(out);
        };
        let per = HOUR_SECS / SLOT_SECS;
        out.edge_calls = self.inbound_started_between(f, (h0 * HOUR_SECS) as f64)?;
        out.edge_calls
            .extend(self.inbound_started_between((h1 * HOUR_SECS) as f64, t)?);
        out.edge_calls
            .extend(self.unfolded_between((h0 * HOUR_SECS) as f64, (h1 * HOUR_SECS) as f64)?);
        let sql = format!(
            "SELECT slot, {SLOT_COLUMNS} FROM report_slots WHERE slot >= ?1 AND slot < ?2 ORDER BY slot"
        );
        let rows = self
            .db
            .query_map(&sql, params![h0 * per, h1 * per], |r| {
                Ok((
                    r.get::<i64>(0)?,
                    Tally {
                        head: head_from_row(r, 1)?,
                        detail: detail_from_row(r, 1 + HEAD_LEN)?,
                    },
                ))
            })
            .map_err(StoreError::sql("read the report rollup"))?;
        for (slot, tally) in rows {
            if q.split_slots.binary_search(&slot).is_err() {
                out.slots.push((slot, tally));
            }
        }
        for &s in q.split_slots {
            if s >= h0 * per && s < h1 * per {
                let start = (s * SLOT_SECS) as f64;
                out.split_calls
                    .extend(self.inbound_started_between(start, start + SLOT_SECS as f64)?);
            }
        }
        if q.breakdowns {
            out.queues = self.rollup_by("report_queue_hours", "queue", h0, h1)?;
            out.agents = self.rollup_by("report_agent_hours", "agent", h0, h1)?;
            out.dids = self.rollup_by("report_did_hours", "did", h0, h1)?;
        }
        Ok(out)
    }

    fn rollup_by(&self, table: &str, key: &str, h0: i64, h1: i64) -> Result<Vec<(String, Head)>> {
        let sums: Vec<String> = HEAD_COLUMNS
            .split(", ")
            .map(|c| format!("SUM({c})"))
            .collect();
        let sql = format!(
            "SELECT {key}, {} FROM {table} WHERE hour >= ?1 AND hour < ?2 GROUP BY {key}",
            sums.join(", ")
        );
        self.db
            .query_map(&sql, params![h0, h1], |r| {
                Ok((r.get::<String>(0)?, head_from_row(r, 1)?))
            })
            .map_err(StoreError::sql("read a report breakdown"))
    }

    /// Inbound calls not folded into the rollup yet that started in `[from, to)` (seconds).
    fn unfolded_between(&self, from: f64, to: f64) -> Result<Vec<CallRecord>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM calls WHERE id > (SELECT folded_id FROM report_settings WHERE id = 1) \
             AND started_at >= ?1 AND started_at < ?2 AND direction = 'inbound' ORDER BY id"
        );
        self.db
            .query_map(&sql, params![from, to], row_to_call)
            .map_err(StoreError::sql("read the unfolded calls"))
    }

    /// Inbound calls that started in `[from, to)` (seconds), in the order they started.
    fn inbound_started_between(&self, from: f64, to: f64) -> Result<Vec<CallRecord>> {
        if to <= from {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {COLUMNS} FROM calls WHERE started_at >= ?1 AND started_at < ?2 \
             AND direction = 'inbound' ORDER BY started_at, id"
        );
        self.db
            .query_map(&sql, params![from, to], row_to_call)
            .map_err(StoreError::sql("read the report's calls"))
    }

    /// Numbers missed at least twice among calls that started in `[from, to)`: (normalised
    /// number, the number as delivered on the newest miss, misses, unresolved misses, newest
    /// miss's start), most misses first, at most `limit`.
    pub fn repeat_missed_numbers(
        &self,
        from: jiff::Timestamp,
        to: jiff::Timestamp,
        limit: usize,
    ) -> Result<Vec<RepeatNumber>> {
        // Over a long period, walking the misses number by number (no sort of every miss) is
        // the faster plan; over a short one, the period's misses by time are few. SQLite cannot
        // tell the two apart without statistics, so the query names the index.
        let long = to.duration_since(from) > jiff::SignedDuration::from_hours(31 * 24);
        // PostgreSQL has statistics (and no INDEXED BY) to choose the plan itself.
        let indexed = match self.db.engine() {
            Engine::Sqlite if long => "INDEXED BY calls_misses_by_number",
            Engine::Sqlite => "INDEXED BY calls_misses_by_start",
            Engine::Postgres => "",
        };
        let sql = format!(
            "SELECT caller_normalized, COUNT(*), SUM(CASE WHEN resolved_by IS NULL THEN 1 ELSE 0 END), MAX(started_at) \
             FROM calls {indexed} \
             WHERE direction = 'inbound' AND (missed = 1 OR status = 'missed') \
             AND started_at >= ?1 AND started_at < ?2 AND ignored = 0 \
             AND status NOT IN ('ignored', 'unknown') \
             AND caller_normalized IS NOT NULL AND caller_normalized <> '' \
             GROUP BY caller_normalized HAVING COUNT(*) >= 2 \
             ORDER BY COUNT(*) DESC, MAX(started_at) DESC, caller_normalized LIMIT ?3"
        );
        let rows: Vec<(String, i64, i64, f64)> = self
            .db
            .query_map(
                &sql,
                params![
                    ts_to_f64(from),
                    ts_to_f64(to),
                    i64::try_from(limit).unwrap_or(i64::MAX)
                ],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .map_err(StoreError::sql("query repeat callers"))?;
        rows.into_iter()
            .map(|(n, misses, unresolved, last)| {
                let caller: Option<String> = self
                    .db
                    .query_row(
                        "SELECT caller FROM calls WHERE caller_normalized = ?1 AND started_at = ?2 \
                         AND direction = 'inbound' LIMIT 1",
                        params![n, last],
                        |r| r.get(0),
                    )
                    .map_err(StoreError::sql("read a repeat caller"))?;
                Ok(RepeatNumber {
                    normalized: n,
                    caller,
                    misses: misses.max(0) as u64,
                    unresolved: unresolved.max(0) as u64,
                    last: f64_to_ts(last),
                })
            })
            .collect()
    }

    /// The newest misses nobody resolved among calls that started in `[from, to)`, at most
    /// `limit`, newest first.
    pub fn recent_unresolved_misses(
        &self,
        from: jiff::Timestamp,
        to: jiff::Timestamp,
        limit: usize,
    ) -> Result<Vec<CallRecord>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM calls WHERE direction = 'inbound' \
             AND (missed = 1 OR status = 'missed') AND started_at >= ?1 AND started_at < ?2 \
             AND ignored = 0 AND status NOT IN ('ignored', 'unknown') AND resolved_by IS NULL \
             ORDER BY started_at DESC LIMIT ?3"
        );
        self.db
            .query_map(
                &sql,
                params![
                    ts_to_f64(from),
                    ts_to_f64(to),
                    i64::try_from(limit).unwrap_or(i64::MAX)
                ],
                row_to_call,
            )
            .map_err(StoreError::sql("read unresolved misses"))
    }
}

impl Store {
    /// Whether the scheduled report `kind` (`daily`, `weekly`) of the period starting at
    /// `period_start` was mailed already.
    pub fn report_mail_sent(&self, kind: &str, period_start: jiff::Timestamp) -> Result<bool> {
        self.db
            .query_row(
                "SELECT count(*) FROM report_mail_sent WHERE kind = ?1 AND period_start = ?2",
                params![kind, ts_to_f64(period_start)],
                |r| r.get::<i64>(0),
            )
            .map(|n| n > 0)
            .map_err(StoreError::sql("read the report mail log"))
    }

    /// Records that the report was mailed (so a restart does not mail it again).
    pub fn mark_report_mail_sent(
        &self,
        kind: &str,
        period_start: jiff::Timestamp,
        at: jiff::Timestamp,
    ) -> Result<()> {
        self.db
            .execute(
                "INSERT INTO report_mail_sent (kind, period_start, sent_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (kind, period_start) DO UPDATE SET sent_at = excluded.sent_at",
                params![kind, ts_to_f64(period_start), ts_to_f64(at)],
            )
            .map_err(StoreError::sql("write the report mail log"))?;
        Ok(())
    }
}

/// Folds the next `limit` ids at most (inside the caller's transaction).
fn fold_in_transaction(tx: &Db, limit: i64) -> DbResult<i64> {
    let folded: i64 = tx.query_row(
        "SELECT folded_id FROM report_settings WHERE id = 1",
        params![],
        |r| r.get(0),
    )?;
    let newest: i64 = tx.query_row("SELECT IFNULL(MAX(id), 0) FROM calls", params![], |r| {
        r.get(0)
    })?;
    if newest <= folded {
        return Ok(0);
    }
    let newest = newest.min(folded.saturating_add(limit));
    let fold = match tx.engine() {
        Engine::Sqlite => &FOLD,
        Engine::Postgres => &FOLD_PG,
    };
    for sql in fold {
        tx.execute(sql, params![folded, newest])?;
    }
    tx.execute(
        "UPDATE report_settings SET folded_id = ?1 WHERE id = 1",
        params![newest],
    )?;
    Ok(newest - folded)
}

/// A number missed more than once in a period.
#[derive(Debug, Clone, PartialEq)]
pub struct RepeatNumber {
    pub normalized: String,
    pub caller: Option<String>,
    pub misses: u64,
    pub unresolved: u64,
    pub last: jiff::Timestamp,
}

#[cfg(test)]
mod tests;
