//! History and personal data: calls imported from Asterisk's CDR and queue_log or backfilled
//! after a gap, the last event seen per server (where a gap starts), retention, and a
//! customer's data by number (export, forget). Owner: the history work.
//!
//! An imported call is a row of `calls` like any other (so `missed`, `report` and the dialer
//! see it), with `source` = `imported` or `backfilled` (live ones are `ami`) and a
//! `call_history` row saying what it was decided from. Its key is the same `(server, linkedid)`
//! as a live call's: importing twice adds nothing, and a call recorded live is never replaced,
//! except a live `unknown` (perezvon lost sight of it), which history may decide.

/// Schema: `calls.source`, `call_history`, `ami_watermarks`.
pub const SCHEMA_HISTORY: &str = "
ALTER TABLE calls ADD COLUMN source TEXT NOT NULL DEFAULT 'ami';
CREATE TABLE call_history (
    call_id INTEGER PRIMARY KEY REFERENCES calls (id) ON DELETE CASCADE,
    origin TEXT NOT NULL,
    queue TEXT,
    imported_at REAL NOT NULL
);
CREATE TABLE ami_watermarks (
    server TEXT PRIMARY KEY,
    last_event_at REAL NOT NULL
);
CREATE INDEX callback_tasks_by_number ON callback_tasks (number);
CREATE INDEX callback_attempts_by_number ON callback_attempts (number);
";

use serde_json::{Map, Value};

use super::db::{self, params};
use super::{f64_to_ts, ts_to_f64, Result, Store, StoreError};
use crate::calls::record::CallRecord;
use crate::history::build::HistoryCall;

/// How a history call reached the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `perezvon import`: history from before perezvon ran.
    Imported,
    /// Decided after a gap in the AMI stream (the daemon, `perezvon backfill`).
    Backfilled,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Imported => "imported",
            Source::Backfilled => "backfilled",
        }
    }
}

/// What [`Store::record_history`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistoryStored {
    /// New calls, as stored (with their resolution): the dialer and notifications act on these.
    pub stored: Vec<CallRecord>,
    /// Of those, calls that replaced a live `unknown` verdict.
    pub upgraded: u64,
    /// Already stored with a verdict (live, or by an earlier import): left as they were.
    pub known: u64,
}

/// Rows removed by retention.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    pub calls: u64,
    pub tasks: u64,
    pub attempts: u64,
    pub notifications: u64,
    pub crm_links: u64,
}

impl Pruned {
    pub fn total(&self) -> u64 {
        self.calls + self.tasks + self.attempts + self.notifications + self.crm_links
    }
}

/// Rows erased by [`Store::forget_number`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Forgotten {
    pub calls: u64,
    pub callback_tasks: u64,
    pub callback_attempts: u64,
    pub notifications: u64,
    pub crm_links: u64,
    /// Press-1 requests (`callback_requests`).
    pub callback_requests: u64,
    /// Whether the number stays on the do-not-call list: `forget` keeps that entry, so a
    /// customer who asked never to be called is not called again (`dnc remove` removes it).
    pub kept_on_dnc: bool,
}

impl Forgotten {
    pub fn total(&self) -> u64 {
        self.calls
            + self.callback_tasks
            + self.callback_attempts
            + self.notifications
            + self.crm_links
            + self.callback_requests
    }
}

/// Calls stored per transaction by an import (one commit per batch, not per call).
const BATCH: usize = 500;

/// A number in an outbox payload or a CRM link: the digits of the normalised number appear in
/// every form the notifiers write (`79161234567`, `+79161234567`). `?1` is a substring of the
/// payload (SQLite's `instr`, PostgreSQL's `strpos`).
fn outbox_match(engine: db::Engine) -> &'static str {
    match engine {
        db::Engine::Sqlite => "instr(payload, ?1) > 0",
        db::Engine::Postgres => "strpos(payload, ?1) > 0",
    }
}

impl Store {
    /// Stores history calls (in the order given), `BATCH` per transaction. A call already known
    /// by its key is left alone unless its stored verdict is a live `unknown`. A call known only
    /// from queue_log (no linkedid) is also a duplicate of a stored call of the same caller on
    /// the same server that spans its queue entry. Misses that ended at or after
    /// `dialer_since` are marked for the dialer. On an error, the batches before are committed.
    pub fn record_history(
        &self,
        calls: &[HistoryCall],
        source: Source,
        resolve_within: std::time::Duration,
        dialer_since: Option<jiff::Timestamp>,
    ) -> Result<HistoryStored> {
        let mut out = HistoryStored::default();
        for chunk in calls.chunks(BATCH) {
            // The closure may run again on PostgreSQL (a serialization failure): it starts
            // from an empty part each time.
            let part = self.db.transaction(|_| {
                let mut part = HistoryStored::default();
                chunk.iter().try_for_each(|c| {
                    self.history_one(c, source, resolve_within, dialer_since, &mut part)
                })?;
                Ok::<_, StoreError>(part)
            })?;
            out.stored.extend(part.stored);
            out.upgraded += part.upgraded;
            out.known += part.known;
        }
        Ok(out)
    }

    fn history_one(
        &self,
        h: &HistoryCall,
        source: Source,
        resolve_within: std::time::Duration,
        dialer_since: Option<jiff::Timestamp>,
        out: &mut HistoryStored,
    ) -> Result<()> {
        let r = &h.record;
        let mut existing: Option<(i64, String)> = self
            .db
            .query_opt(
                "SELECT id, status FROM calls WHERE server = ?1 AND linkedid = ?2",
                params![r.server, r.linkedid],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .map_err(StoreError::sql("look up a history call"))?;
        if existing.is_none() && h.origin == "queue_log" {
            // `caller IS ?2` (equal, or both NULL) spelled for both engines.
            existing = self
                .db
                .query_opt(
                    "SELECT id, status FROM calls WHERE server = ?1 AND direction = 'inbound' \
                     AND (caller_normalized = ?4 OR (CAST(?4 AS TEXT) IS NULL \
                     AND (caller = ?2 OR (caller IS NULL AND CAST(?2 AS TEXT) IS NULL)))) \
                     AND started_at <= CAST(?3 AS DOUBLE PRECISION) + 2 \
                     AND ended_at >= CAST(?3 AS DOUBLE PRECISION) - 2 LIMIT 1",
                    params![
                        r.server,
                        r.caller,
                        ts_to_f64(r.started_at),
                        r.caller_normalized
                    ],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .map_err(StoreError::sql("look up a queue_log call"))?;
        }
        let mut upgraded = false;
        if let Some((id, status)) = existing {
            if status != "unknown" {
                out.known += 1;
                return Ok(());
            }
            let live: bool = self
                .db
                .query_row(
                    "SELECT source = 'ami' FROM calls WHERE id = ?1",
                    params![id],
                    |x| x.get(0),
                )
                .map_err(StoreError::sql("read call source"))?;
            if !live {
                out.known += 1;
                return Ok(());
            }
            self.db
                .execute("DELETE FROM calls WHERE id = ?1", params![id])
                .map_err(StoreError::sql("replace an unknown verdict"))?;
            upgraded = true;
        }
        let for_dialer = dialer_since.is_some_and(|t| r.ended_at >= t);
        let rec = self.record_in_transaction(r, resolve_within, for_dialer)?;
        if !rec.inserted {
            out.known += 1;
            return Ok(());
        }
        self.db
            .query_row(
                "UPDATE calls SET source = ?3 WHERE server = ?1 AND linkedid = ?2 RETURNING id",
                params![r.server, r.linkedid, source.as_str()],
                |x| x.get::<i64>(0),
            )
            .and_then(|id| {
                self.db.execute(
                    "INSERT INTO call_history (call_id, origin, queue, imported_at) \
                     VALUES (?1, ?2, ?3, ?4)",
                    params![id, h.origin, h.queue, ts_to_f64(jiff::Timestamp::now())],
                )
            })
            .map_err(StoreError::sql("mark a history call"))?;
        if upgraded {
            out.upgraded += 1;
        }
        out.stored.push(rec.record);
        Ok(())
    }

    /// Where a call came from: `ami`, `imported`, `backfilled`; `None` when not stored.
    pub fn call_source(&self, server: &str, linkedid: &str) -> Result<Option<String>> {
        self.db
            .query_opt(
                "SELECT source FROM calls WHERE server = ?1 AND linkedid = ?2",
                params![server, linkedid],
                |r| r.get(0),
            )
            .map_err(StoreError::sql("read call source"))
    }

    /// The queue a history call was in (queue_log or the CDR's `Queue` row).
    pub fn call_queue(&self, server: &str, linkedid: &str) -> Result<Option<String>> {
        self.db
            .query_opt(
                "SELECT h.queue FROM call_history h JOIN calls c ON c.id = h.call_id \
                 WHERE c.server = ?1 AND c.linkedid = ?2",
                params![server, linkedid],
                |r| r.get::<Option<String>>(0),
            )
            .map(Option::flatten)
            .map_err(StoreError::sql("read call queue"))
    }

    /// Calls that ended in `[from, to)` decided from Asterisk's records, not live: (imported,
    /// backfilled). The reading commands say so beside their figures.
    pub fn history_counts(&self, from: jiff::Timestamp, to: jiff::Timestamp) -> Result<(u64, u64)> {
        self.db
            .query_row(
                "SELECT COALESCE(SUM(CASE WHEN source = 'imported' THEN 1 ELSE 0 END), 0), \
                 COALESCE(SUM(CASE WHEN source = 'backfilled' THEN 1 ELSE 0 END), 0) \
                 FROM calls WHERE ended_at >= ?1 AND ended_at < ?2 AND source != 'ami'",
                params![ts_to_f64(from), ts_to_f64(to)],
                |r| {
                    Ok((
                        r.get::<i64>(0)?.max(0) as u64,
                        r.get::<i64>(1)?.max(0) as u64,
                    ))
                },
            )
            .map_err(StoreError::sql("count history calls"))
    }

    /// Remembers the time of the last AMI event seen from `server` (never moves back).
    pub fn save_watermark(&self, server: &str, at: jiff::Timestamp) -> Result<()> {
        self.db
            .execute(
                "INSERT INTO ami_watermarks (server, last_event_at) VALUES (?1, ?2) \
                 ON CONFLICT (server) DO UPDATE SET \
                 last_event_at = GREATEST(ami_watermarks.last_event_at, excluded.last_event_at)",
                params![server, ts_to_f64(at)],
            )
            .map_err(StoreError::sql("save the last event time"))?;
        Ok(())
    }

    /// The last AMI event seen from `server` by any run of perezvon on this database.
    pub fn watermark(&self, server: &str) -> Result<Option<jiff::Timestamp>> {
        self.db
            .query_opt(
                "SELECT last_event_at FROM ami_watermarks WHERE server = ?1",
                params![server],
                |r| r.get::<f64>(0),
            )
            .map(|v| v.map(f64_to_ts))
            .map_err(StoreError::sql("read the last event time"))
    }

    /// Retention: deletes calls that ended before `before`, closed callback tasks whose last
    /// miss and closing are before it (with their attempts), delivered or given-up
    /// notifications and CRM links older than it. An open task is never touched, nor the calls
    /// of its number (the task is still owed, and its misses say why). One transaction.
    pub fn prune_before(&self, before: jiff::Timestamp) -> Result<Pruned> {
        let t = ts_to_f64(before);
        self.db.transaction(|tx| {
            let n = |sql: &str, what: &'static str| -> Result<u64> {
                tx.execute(sql, params![t]).map_err(StoreError::sql(what))
            };
            let closed = "state NOT IN ('pending', 'in_progress', 'unknown') AND last_missed_at < ?1 \
                          AND COALESCE(closed_at, last_missed_at) < ?1";
            let attempts = n(
                &format!(
                    "DELETE FROM callback_attempts WHERE task_id IN (SELECT id FROM callback_tasks WHERE {closed})"
                ),
                "prune callback attempts",
            )?;
            // Press-1 requests of the tasks going away, and old ones whose task is gone (they
            // reference callback_tasks, and foreign keys are on).
            n(
                &format!(
                    "DELETE FROM callback_requests WHERE task_id IN (SELECT id FROM callback_tasks WHERE {closed}) \
                     OR (requested_at < ?1 AND (task_id IS NULL OR task_id NOT IN \
                     (SELECT id FROM callback_tasks WHERE state IN ('pending', 'in_progress', 'unknown'))))"
                ),
                "prune callback requests",
            )?;
            let tasks = n(
                &format!("DELETE FROM callback_tasks WHERE {closed}"),
                "prune callback tasks",
            )?;
            let calls = n(
                "DELETE FROM calls WHERE ended_at < ?1 AND NOT EXISTS (SELECT 1 FROM callback_tasks t \
                 WHERE t.state IN ('pending', 'in_progress', 'unknown') \
                 AND (t.number = calls.caller_normalized OR t.number = calls.callee_normalized))",
                "prune calls",
            )?;
            let notifications = n(
                "DELETE FROM outbox WHERE created_at < ?1 AND (delivered_at IS NOT NULL OR given_up_at IS NOT NULL)",
                "prune notifications",
            )?;
            let crm_links = n(
                "DELETE FROM crm_links WHERE created_at < ?1",
                "prune CRM links",
            )?;
            Ok(Pruned {
                calls,
                tasks,
                attempts,
                notifications,
                crm_links,
            })
        })
    }

    /// Everything held about one customer (`number` normalised): their calls, callback tasks
    /// and attempts, notifications that name them and CRM links, every column as stored.
    pub fn export_number(&self, number: &str) -> Result<Value> {
        let mut out = Map::new();
        out.insert("number".into(), Value::String(number.to_string()));
        // Every column of calls (those other work adds too), then what history knows.
        let mut call_columns: Vec<String> = self
            .table_columns("calls")?
            .into_iter()
            .map(|c| format!("c.{c}"))
            .collect();
        call_columns.push("h.origin AS history_origin".into());
        call_columns.push("h.queue AS history_queue".into());
        out.insert(
            "calls".into(),
            self.rows_json(
                &call_columns.join(", "),
                "calls c LEFT JOIN call_history h ON h.call_id = c.id \
                 WHERE c.caller_normalized = ?1 OR c.callee_normalized = ?1 ORDER BY c.started_at, c.id",
                number,
            )?,
        );
        let outbox_rest = format!("WHERE {} ORDER BY id", outbox_match(self.db.engine()));
        for (key, table, rest) in [
            (
                "callback_tasks",
                "callback_tasks",
                "WHERE number = ?1 ORDER BY id",
            ),
            (
                "callback_attempts",
                "callback_attempts",
                "WHERE number = ?1 ORDER BY id",
            ),
            ("notifications", "outbox", outbox_rest.as_str()),
            ("crm_links", "crm_links", "WHERE number = ?1"),
            (
                "callback_requests",
                "callback_requests",
                "WHERE number = ?1 \
                 OR task_id IN (SELECT id FROM callback_tasks WHERE number = ?1) ORDER BY requested_at",
            ),
            ("dnc", "dnc", "WHERE number = ?1"),
        ] {
            let columns = self.table_columns(table)?.join(", ");
            out.insert(
                key.into(),
                self.rows_json(&columns, &format!("{table} {rest}"), number)?,
            );
        }
        Ok(Value::Object(out))
    }

    /// Erases everything [`Store::export_number`] shows, in one transaction. Refused while a
    /// callback to the number is in flight: the dialer is waiting for that call's outcome.
    pub fn forget_number(&self, number: &str) -> Result<Forgotten> {
        self.db.transaction(|tx| {
            let in_flight: Option<String> = tx
                .query_opt(
                    "SELECT callback_id FROM callback_attempts WHERE number = ?1 AND ended_at IS NULL",
                    params![number],
                    |r| r.get(0),
                )
                .map_err(StoreError::sql("look for a callback in flight"))?;
            if let Some(cb) = in_flight {
                return Err(StoreError::Invalid(format!(
                    "a callback to {number} is in progress ({cb}): try again once it has ended"
                )));
            }
            let n = |sql: &str, what: &'static str| -> Result<u64> {
                tx.execute(sql, params![number])
                    .map_err(StoreError::sql(what))
            };
            let callback_requests = n(
                "DELETE FROM callback_requests WHERE number = ?1 \
                 OR task_id IN (SELECT id FROM callback_tasks WHERE number = ?1)",
                "forget callback requests",
            )?;
            let kept_on_dnc = tx
                .query_opt(
                    "SELECT 1 FROM dnc WHERE number = ?1",
                    params![number],
                    |_| Ok(()),
                )
                .map_err(StoreError::sql(
                    "look the number up on the do-not-call list",
                ))?
                .is_some();
            let callback_attempts = n(
                "DELETE FROM callback_attempts WHERE number = ?1 \
                 OR task_id IN (SELECT id FROM callback_tasks WHERE number = ?1)",
                "forget callback attempts",
            )?;
            let callback_tasks = n(
                "DELETE FROM callback_tasks WHERE number = ?1",
                "forget callback tasks",
            )?;
            let calls = n(
                "DELETE FROM calls WHERE caller_normalized = ?1 OR callee_normalized = ?1",
                "forget calls",
            )?;
            let notifications = n(
                &format!("DELETE FROM outbox WHERE {}", outbox_match(tx.engine())),
                "forget notifications",
            )?;
            let crm_links = n(
                "DELETE FROM crm_links WHERE number = ?1",
                "forget CRM links",
            )?;
            Ok(Forgotten {
                calls,
                callback_tasks,
                callback_attempts,
                notifications,
                crm_links,
                callback_requests,
                kept_on_dnc,
            })
        })
    }

    /// The columns of `table`, in their order (the engine's catalogue: what a later migration
    /// added is there too).
    fn table_columns(&self, table: &str) -> Result<Vec<String>> {
        let sql = match self.db.engine() {
            db::Engine::Sqlite => "SELECT name FROM pragma_table_info(?1) ORDER BY cid",
            db::Engine::Postgres => {
                "SELECT column_name FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = ?1 ORDER BY ordinal_position"
            }
        };
        let columns: Vec<String> = self
            .db
            .query_map(sql, params![table], |r| r.get(0))
            .map_err(StoreError::sql("read the columns of a table"))?;
        if columns.is_empty() {
            return Err(StoreError::Invalid(format!("no table {table}")));
        }
        Ok(columns)
    }

    /// `SELECT columns FROM rest` (`?1` = `number`) as JSON objects, each column by its name
    /// (an `AS` alias, else the column). An outbox payload is JSON itself and is nested as such.
    fn rows_json(&self, columns: &str, rest: &str, number: &str) -> Result<Value> {
        let names: Vec<String> = columns
            .split(", ")
            .map(|c| {
                let c = c.rsplit(" AS ").next().unwrap_or(c);
                c.rsplit('.').next().unwrap_or(c).to_string()
            })
            .collect();
        let rows = self
            .db
            .query(&format!("SELECT {columns} FROM {rest}"), params![number])
            .map_err(StoreError::sql("query export"))?;
        Ok(Value::Array(
            rows.iter()
                .map(|row| {
                    let mut m = Map::new();
                    for (name, v) in names.iter().zip(row.values()) {
                        let v = match v {
                            db::Value::Null => Value::Null,
                            db::Value::Int(n) => Value::from(*n),
                            db::Value::Real(f) => {
                                serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
                            }
                            db::Value::Text(s) => {
                                if name == "payload" {
                                    serde_json::from_str(s)
                                        .unwrap_or_else(|_| Value::String(s.clone()))
                                } else {
                                    Value::String(s.clone())
                                }
                            }
                            db::Value::Blob(b) => {
                                Value::String(String::from_utf8_lossy(b).into_owned())
                            }
                        };
                        m.insert(name.clone(), v);
                    }
                    Value::Object(m)
                })
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::callback::planner::{Task, TaskState};
    use crate::calls::record::{LostAt, Status, UnknownReason};
    use crate::store::outbox::NewNotification;
    use crate::store::tasks::NewAttempt;
    use jiff::SignedDuration;

    const WEEK: std::time::Duration = std::time::Duration::from_secs(7 * 86_400);

    fn t(s: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn miss(linkedid: &str, number: &str, at: i64) -> CallRecord {
        let mut r = crate::test_support::inbound_miss(linkedid, t(at), 10.0);
        r.caller = Some(format!("+{number}"));
        r.caller_normalized = Some(number.into());
        r
    }

    fn hist(r: CallRecord) -> HistoryCall {
        HistoryCall {
            record: r,
            queue: Some("sales".into()),
            origin: "cdr",
        }
    }

    fn task(number: &str, state: TaskState, at: i64) -> Task {
        Task {
            id: 0,
            number: number.into(),
            state,
            server: "lab".into(),
            missed_count: 1,
            attempts: 0,
            attempt_budget: 3,
            lost_at: Some(LostAt::Queue),
            first_missed_at: t(at),
            last_missed_at: t(at),
            next_attempt_at: t(at + 60),
            give_up_at: t(at + 86_400),
            last_attempt_at: None,
            last_outcome: None,
            use_fallback: false,
            routing: Default::default(),
        }
    }

    #[test]
    fn history_is_idempotent_replaces_only_live_unknowns_and_marks_recent_misses() {
        crate::test_support::pg::each_engine(|db| {
            let s = db.open();
            // Live: a miss with a verdict, and one perezvon lost sight of.
            let live = miss("1.1", "79161111111", 0);
            s.insert_call(&live).unwrap();
            let mut unknown = miss("2.1", "79162222222", 100);
            unknown.status = Status::Unknown;
            unknown.unknown_reason = Some(UnknownReason::LinkDown);
            s.insert_call(&unknown).unwrap();
            let calls = vec![
                hist(CallRecord {
                    agent: Some("from cdr".into()),
                    ..live.clone()
                }),
                hist(miss("2.1", "79162222222", 100)),
                hist(miss("3.1", "79163333333", 200)),
            ];
            let out = s
                .record_history(&calls, Source::Backfilled, WEEK, Some(t(150)))
                .unwrap();
            assert_eq!((out.stored.len(), out.upgraded, out.known), (2, 1, 1));
            assert_eq!(s.get_call("lab", "1.1").unwrap().unwrap(), live);
            assert_eq!(s.call_source("lab", "1.1").unwrap().as_deref(), Some("ami"));
            assert_eq!(
                s.get_call("lab", "2.1").unwrap().unwrap().status,
                Status::Missed
            );
            assert_eq!(
                s.call_source("lab", "2.1").unwrap().as_deref(),
                Some("backfilled")
            );
            assert_eq!(
                s.call_queue("lab", "3.1").unwrap().as_deref(),
                Some("sales")
            );
            // Only the miss that ended after `dialer_since` waits for the dialer.
            assert_eq!(s.dialer_pending("lab", "2.1").unwrap(), Some(false));
            assert_eq!(s.dialer_pending("lab", "3.1").unwrap(), Some(true));
            let again = s
                .record_history(&calls, Source::Imported, WEEK, None)
                .unwrap();
            assert_eq!((again.stored.len(), again.known), (0, 3));
        });
    }

    #[test]
    fn a_queue_log_call_is_a_duplicate_of_a_stored_call_spanning_its_entry() {
        crate::test_support::pg::each_engine(|db| {
            let s = db.open();
            s.insert_call(&miss("1.1", "79161111111", 0)).unwrap();
            let mut q = miss("1.2", "79161111111", 4);
            q.started_at = t(4);
            // queue_log writes the caller id as the trunk gave it.
            q.caller = Some("89161111111".into());
            let out = s
                .record_history(
                    &[HistoryCall {
                        record: q,
                        queue: Some("sales".into()),
                        origin: "queue_log",
                    }],
                    Source::Imported,
                    WEEK,
                    None,
                )
                .unwrap();
            assert_eq!((out.stored.len(), out.known), (0, 1));
        });
    }

    #[test]
    fn watermarks_never_move_back() {
        crate::test_support::pg::each_engine(|db| {
            let s = db.open();
            assert_eq!(s.watermark("lab").unwrap(), None);
            s.save_watermark("lab", t(10)).unwrap();
            s.save_watermark("lab", t(5)).unwrap();
            assert_eq!(s.watermark("lab").unwrap(), Some(t(10)));
            s.save_watermark("lab", t(20)).unwrap();
            assert_eq!(s.watermark("lab").unwrap(), Some(t(20)));
            assert_eq!(s.watermark("other").unwrap(), None);
        });
    }

    #[test]
    fn retention_prunes_old_calls_and_closed_tasks_never_an_open_task() {
        crate::test_support::pg::each_engine(|db| {
            let mut s = db.open();
            let day = 86_400;
            // Old: a closed number, and a number whose task is still open.
            s.insert_call(&miss("old.1", "79161111111", 0)).unwrap();
            s.insert_call(&miss("old.2", "79162222222", 0)).unwrap();
            s.insert_call(&miss("new.1", "79163333333", 500 * day))
                .unwrap();
            let closed = s
                .create_task(&task("79161111111", TaskState::Pending, 0))
                .unwrap();
            s.begin_attempt(&NewAttempt {
                task_id: closed,
                attempt_no: 1,
                callback_id: "cb-1",
                number: "79161111111",
                target: "queue:sales",
                started_at: t(60),
            })
            .unwrap();
            s.db.execute(
                "UPDATE callback_attempts SET ended_at = ?1, outcome = 'no_answer'",
                params![ts_to_f64(t(90))],
            )
            .unwrap();
            // The closed task was a press-1 request: its request row references it.
            s.db
            .execute(
                "INSERT INTO callback_requests (server, linkedid, uniqueid, number, requested_at, task_id) \
                 VALUES ('lab', 'old.1', 'old.1', '79161111111', ?1, ?2)",
                params![ts_to_f64(t(5)), closed],
            )
            .unwrap();
            s.close_task(closed, TaskState::GivenUp, "max_attempts", t(100))
                .unwrap();
            let open = s
                .create_task(&task("79162222222", TaskState::Pending, 0))
                .unwrap();
            s.enqueue_notification(
                &NewNotification {
                    event_id: "missed:lab:old.1",
                    channel: "webhook",
                    kind: "missed",
                    payload: "{\"caller\":\"+79161111111\"}",
                },
                t(0),
            )
            .unwrap();
            let id: i64 =
                s.db.query_row("SELECT id FROM outbox", params![], |r| r.get(0))
                    .unwrap();
            s.mark_notification_delivered(id, t(1)).unwrap();
            let p = s
                .prune_before(t(500 * day) - SignedDuration::from_secs(400 * day))
                .unwrap();
            assert_eq!(
                (p.calls, p.tasks, p.attempts, p.notifications),
                (1, 1, 1, 1),
                "{p:?}"
            );
            assert!(s.get_call("lab", "old.1").unwrap().is_none());
            assert!(
                s.get_call("lab", "old.2").unwrap().is_some(),
                "the misses of an open task stay"
            );
            assert!(s.get_call("lab", "new.1").unwrap().is_some());
            assert!(s.task(open).unwrap().is_some());
            assert!(s.task(closed).unwrap().is_none());
            // Nothing more to prune.
            assert_eq!(
                s.prune_before(t(500 * day) - SignedDuration::from_secs(400 * day))
                    .unwrap()
                    .total(),
                0
            );
        });
    }

    #[test]
    fn export_and_forget_cover_every_table_of_one_number_only() {
        crate::test_support::pg::each_engine(|db| {
            let mut s = db.open();
            s.insert_call(&miss("a.1", "79161111111", 0)).unwrap();
            s.insert_call(&miss("b.1", "79162222222", 0)).unwrap();
            let mut out = crate::test_support::inbound_miss("a.2", t(50), 0.0);
            out.direction = crate::calls::record::Direction::Outbound;
            out.caller = Some("201".into());
            out.caller_normalized = Some("201".into());
            out.callee = Some("89161111111".into());
            out.callee_normalized = Some("79161111111".into());
            s.insert_call(&out).unwrap();
            let id = s
                .create_task(&task("79161111111", TaskState::Pending, 0))
                .unwrap();
            s.begin_attempt(&NewAttempt {
                task_id: id,
                attempt_no: 1,
                callback_id: "cb-a",
                number: "79161111111",
                target: "queue:sales",
                started_at: t(60),
            })
            .unwrap();
            s.enqueue_notification(
                &NewNotification {
                    event_id: "missed:lab:a.1",
                    channel: "webhook",
                    kind: "missed",
                    payload: "{\"caller\":\"+79161111111\"}",
                },
                t(0),
            )
            .unwrap();
            s.save_crm_link(&crate::store::crm::CrmLink {
                channel: "bitrix24".into(),
                number: "79161111111".into(),
                entity_type: "LEAD".into(),
                entity_id: "7".into(),
                event_id: "missed:lab:a.1".into(),
                created_at: t(0),
            })
            .unwrap();
            let e = s.export_number("79161111111").unwrap();
            assert_eq!(e["calls"].as_array().unwrap().len(), 2);
            // Not while the callback is ringing.
            let busy = s.forget_number("79161111111").unwrap_err().to_string();
            assert!(busy.contains("in progress (cb-a)"), "{busy}");
            assert_eq!(s.export_number("79161111111").unwrap(), e);
            s.db
            .execute(
                "UPDATE callback_attempts SET ended_at = 1, outcome = 'busy' WHERE callback_id = 'cb-a'",
                params![],
            )
            .unwrap();
            let e = s.export_number("79161111111").unwrap();
            assert_eq!(e["callback_tasks"][0]["state"], "in_progress");
            assert_eq!(e["callback_attempts"][0]["callback_id"], "cb-a");
            assert_eq!(e["notifications"][0]["payload"]["caller"], "+79161111111");
            assert_eq!(e["crm_links"][0]["entity_id"], "7");
            s.dnc_add("79161111111", "cli", t(0)).unwrap();
            let f = s.forget_number("79161111111").unwrap();
            assert_eq!(
                f,
                Forgotten {
                    calls: 2,
                    callback_tasks: 1,
                    callback_attempts: 1,
                    notifications: 1,
                    crm_links: 1,
                    callback_requests: 0,
                    kept_on_dnc: true,
                }
            );
            let e = s.export_number("79161111111").unwrap();
            for k in [
                "calls",
                "callback_tasks",
                "callback_attempts",
                "notifications",
                "crm_links",
            ] {
                assert!(e[k].as_array().unwrap().is_empty(), "{k}");
            }
            // A customer who asked never to be called stays so: forget keeps the DNC entry.
            assert_eq!(e["dnc"][0]["number"], "79161111111");
            assert!(s.get_call("lab", "b.1").unwrap().is_some());
            assert_eq!(s.forget_number("79161111111").unwrap().total(), 0);
        });
    }
}
