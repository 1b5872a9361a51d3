//! Callback tasks and their attempts. Owner: the dialer work.
//!
//! Durability rules the schema enforces, not just the code:
//! - one open (pending / in-progress) task per number (`callback_tasks_one_open_per_number`);
//! - one unfinished attempt per number (`callback_attempts_one_open_per_number`): even a second
//!   perezvon on the same database, or a bug, cannot originate twice to one number at once;
//! - an attempt row is committed, and its task marked in progress, *before* the Originate is
//!   sent ([`Store::begin_attempt`]): after a crash the attempt is there, with no outcome, and its
//!   start time is what the spacing of the next attempt counts from.

/// Version 2: callback tasks (one open task per number) and attempts.
pub const SCHEMA_V2: &str = "
CREATE TABLE callback_tasks (
    id INTEGER PRIMARY KEY,
    number TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'in_progress', 'done', 'given_up', 'cancelled')),
    server TEXT NOT NULL,
    missed_count INTEGER NOT NULL DEFAULT 1,
    attempts INTEGER NOT NULL DEFAULT 0,
    attempt_budget INTEGER NOT NULL,
    lost_at TEXT,
    first_missed_at REAL NOT NULL,
    last_missed_at REAL NOT NULL,
    next_attempt_at REAL NOT NULL,
    give_up_at REAL NOT NULL,
    last_attempt_at REAL,
    last_outcome TEXT,
    use_fallback INTEGER NOT NULL DEFAULT 0,
    closed_at REAL,
    close_reason TEXT
);
CREATE UNIQUE INDEX callback_tasks_one_open_per_number ON callback_tasks (number) WHERE state IN ('pending', 'in_progress');
CREATE TABLE callback_attempts (
    id INTEGER PRIMARY KEY,
    task_id INTEGER NOT NULL REFERENCES callback_tasks (id),
    attempt_no INTEGER NOT NULL,
    callback_id TEXT NOT NULL UNIQUE,
    number TEXT NOT NULL,
    target TEXT NOT NULL,
    started_at REAL NOT NULL,
    answered_at REAL,
    ended_at REAL,
    outcome TEXT,
    talk_secs REAL,
    linkedid TEXT,
    detail TEXT
);
CREATE INDEX callback_attempts_task ON callback_attempts (task_id);
CREATE UNIQUE INDEX callback_attempts_one_open_per_number ON callback_attempts (number) WHERE ended_at IS NULL;
";

/// Task states `expired` and `unknown` (issue 14), an index for the per-number budget, and
/// the dialer's view of its targets for `callbacks list`.
///
/// SQLite cannot change a CHECK constraint with ALTER TABLE. Rebuilding the table would drop
/// whatever columns other migrations added to it, and cannot run with the store's foreign keys
/// on (attempts refer to tasks) inside the migration's transaction. A CHECK that only admits
/// *more* values changes nothing on disk, so this uses SQLite's documented procedure for such
/// changes ("Making Other Kinds Of Table Schema Changes", sqlite.org/lang_altertable.html):
/// the table's stored definition is edited under `writable_schema`, and `RESET` makes this
/// connection re-read it. Prepending to the IN list keeps any other value a later edit adds.
/// `unknown` is an open state (the number keeps its one task; a new miss reopens it), but is
/// never dialled by itself.
pub const SCHEMA_TASK_STATES: &str = "
PRAGMA writable_schema = ON;
UPDATE sqlite_schema SET sql = replace(sql, 'CHECK (state IN (', 'CHECK (state IN (''expired'', ''unknown'', ')
 WHERE type = 'table' AND name = 'callback_tasks';
PRAGMA writable_schema = RESET;
DROP INDEX callback_tasks_one_open_per_number;
CREATE UNIQUE INDEX callback_tasks_one_open_per_number ON callback_tasks (number) WHERE state IN ('pending', 'in_progress', 'unknown');
CREATE INDEX callback_attempts_started ON callback_attempts (started_at);
CREATE TABLE callback_target_state (
    target TEXT PRIMARY KEY,
    checked_at REAL NOT NULL,
    held_back TEXT
);
";

/// [`SCHEMA_TASK_STATES`] for PostgreSQL, which changes a CHECK constraint the ordinary way
/// (`callback_tasks_state_check` is the name PostgreSQL gives the column's CHECK).
pub const SCHEMA_TASK_STATES_PG: &str = "
ALTER TABLE callback_tasks DROP CONSTRAINT callback_tasks_state_check;
ALTER TABLE callback_tasks ADD CONSTRAINT callback_tasks_state_check
    CHECK (state IN ('expired', 'unknown', 'pending', 'in_progress', 'done', 'given_up', 'cancelled'));
DROP INDEX callback_tasks_one_open_per_number;
CREATE UNIQUE INDEX callback_tasks_one_open_per_number ON callback_tasks (number) WHERE state IN ('pending', 'in_progress', 'unknown');
CREATE INDEX callback_attempts_started ON callback_attempts (started_at);
CREATE TABLE callback_target_state (
    target TEXT PRIMARY KEY,
    checked_at DOUBLE PRECISION NOT NULL,
    held_back TEXT
);
";

/// The states a number's one task can be in (`pending`, `in_progress`, `unknown`), for SQL.
const OPEN: &str = "('pending', 'in_progress', 'unknown')";

use super::db::{params, DbResult, Params, Row};
use super::{f64_to_ts, ts_to_f64, Result, Store, StoreError};
use crate::callback::planner::{AfterOutcome, AttemptOutcome, Task, TaskState};
use crate::callback::request::{Disposition, Routing, TaskKind};
use crate::calls::record::LostAt;

const TASK_COLUMNS: &str = "id, number, state, server, missed_count, attempts, attempt_budget, \
    lost_at, first_missed_at, last_missed_at, next_attempt_at, give_up_at, last_attempt_at, \
    last_outcome, use_fallback, kind, owner, owner_until, queue, joined_at";

/// [`TaskRow`]'s columns after [`TASK_COLUMNS`] (their indexes start at [`ROW_EXTRA`]).
const ROW_COLUMNS: &str = "closed_at, close_reason, disposition, disposition_at, disposition_by";
const ROW_EXTRA: usize = 20;

const ATTEMPT_COLUMNS: &str = "id, task_id, attempt_no, callback_id, number, target, started_at, \
    answered_at, ended_at, outcome, talk_secs, linkedid, detail";

/// One callback attempt (a row of `callback_attempts`).
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub id: i64,
    pub task_id: i64,
    /// 1 for the task's first attempt.
    pub attempt_no: u32,
    pub callback_id: String,
    pub number: String,
    pub target: String,
    pub started_at: jiff::Timestamp,
    /// When OriginateResponse reported the first leg answered.
    pub answered_at: Option<jiff::Timestamp>,
    pub ended_at: Option<jiff::Timestamp>,
    pub outcome: Option<AttemptOutcome>,
    pub talk_secs: Option<f64>,
    pub linkedid: Option<String>,
    pub detail: Option<String>,
}

/// A task with the columns only reports need.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRow {
    pub task: Task,
    pub closed_at: Option<jiff::Timestamp>,
    pub close_reason: Option<String>,
    /// An agent's verdict (issue 14), when one was given.
    pub disposition: Option<Disposition>,
    pub disposition_at: Option<jiff::Timestamp>,
    pub disposition_by: Option<String>,
}

fn row_to_task(row: &Row) -> DbResult<Task> {
    let state: String = row.get(2)?;
    Ok(Task {
        id: row.get(0)?,
        number: row.get(1)?,
        // The CHECK constraint keeps other strings out.
        state: TaskState::parse(&state).unwrap_or(TaskState::Cancelled),
        server: row.get(3)?,
        missed_count: row.get(4)?,
        attempts: row.get(5)?,
        attempt_budget: row.get(6)?,
        lost_at: row
            .get::<Option<String>>(7)?
            .as_deref()
            .and_then(LostAt::parse),
        first_missed_at: f64_to_ts(row.get(8)?),
        last_missed_at: f64_to_ts(row.get(9)?),
        next_attempt_at: f64_to_ts(row.get(10)?),
        give_up_at: f64_to_ts(row.get(11)?),
        last_attempt_at: row.get::<Option<f64>>(12)?.map(f64_to_ts),
        last_outcome: row
            .get::<Option<String>>(13)?
            .as_deref()
            .and_then(AttemptOutcome::parse),
        use_fallback: row.get(14)?,
        routing: Routing {
            kind: TaskKind::parse(&row.get::<String>(15)?).unwrap_or_default(),
            owner: row.get(16)?,
            owner_until: row.get::<Option<f64>>(17)?.map(f64_to_ts),
            queue: row.get(18)?,
            joined_at: row.get::<Option<f64>>(19)?.map(f64_to_ts),
        },
    })
}

fn row_to_task_row(r: &Row) -> DbResult<TaskRow> {
    Ok(TaskRow {
        task: row_to_task(r)?,
        closed_at: r.get::<Option<f64>>(ROW_EXTRA)?.map(f64_to_ts),
        close_reason: r.get(ROW_EXTRA + 1)?,
        disposition: r
            .get::<Option<String>>(ROW_EXTRA + 2)?
            .as_deref()
            .and_then(Disposition::parse),
        disposition_at: r.get::<Option<f64>>(ROW_EXTRA + 3)?.map(f64_to_ts),
        disposition_by: r.get(ROW_EXTRA + 4)?,
    })
}

fn row_to_attempt(row: &Row) -> DbResult<Attempt> {
    Ok(Attempt {
        id: row.get(0)?,
        task_id: row.get(1)?,
        attempt_no: row.get(2)?,
        callback_id: row.get(3)?,
        number: row.get(4)?,
        target: row.get(5)?,
        started_at: f64_to_ts(row.get(6)?),
        answered_at: row.get::<Option<f64>>(7)?.map(f64_to_ts),
        ended_at: row.get::<Option<f64>>(8)?.map(f64_to_ts),
        outcome: row
            .get::<Option<String>>(9)?
            .as_deref()
            .and_then(AttemptOutcome::parse),
        talk_secs: row.get(10)?,
        linkedid: row.get(11)?,
        detail: row.get(12)?,
    })
}

pub use crate::callback::guard::AttemptCap;

/// What [`Store::begin_attempt`] records.
#[derive(Debug, Clone)]
pub struct NewAttempt<'a> {
    pub task_id: i64,
    pub attempt_no: u32,
    pub callback_id: &'a str,
    pub number: &'a str,
    pub target: &'a str,
    pub started_at: jiff::Timestamp,
}

impl Store {
    fn tasks_where(&self, clause: &str, p: Params<'_>) -> Result<Vec<Task>> {
        let sql = format!("SELECT {TASK_COLUMNS} FROM callback_tasks {clause}");
        self.db
            .query_map(&sql, p, row_to_task)
            .map_err(StoreError::sql("query tasks"))
    }

    /// Pending and in-progress tasks: what the planner decides over.
    pub fn open_tasks(&self) -> Result<Vec<Task>> {
        self.tasks_where(&format!("WHERE state IN {OPEN} ORDER BY id"), params![])
    }

    /// The open task of a number.
    pub fn open_task_for(&self, number: &str) -> Result<Option<Task>> {
        Ok(self
            .tasks_where(
                &format!("WHERE number = ?1 AND state IN {OPEN}"),
                params![number],
            )?
            .into_iter()
            .next())
    }

    pub fn task(&self, id: i64) -> Result<Option<TaskRow>> {
        let sql = format!("SELECT {TASK_COLUMNS}, {ROW_COLUMNS} FROM callback_tasks WHERE id = ?1");
        self.db
            .query_opt(&sql, params![id], row_to_task_row)
            .map_err(StoreError::sql("read task"))
    }

    /// Every task, newest first (open ones only unless `all`), at most `limit`.
    pub fn list_tasks(&self, all: bool, limit: u32) -> Result<Vec<TaskRow>> {
        let filter = if all {
            String::new()
        } else {
            format!("WHERE state IN {OPEN}")
        };
        let sql = format!(
            "SELECT {TASK_COLUMNS}, {ROW_COLUMNS} FROM callback_tasks {filter} \
             ORDER BY id DESC LIMIT ?1"
        );
        self.db
            .query_map(&sql, params![limit], row_to_task_row)
            .map_err(StoreError::sql("list tasks"))
    }

    /// Inserts a new pending task; returns its id.
    pub fn create_task(&self, t: &Task) -> Result<i64> {
        self.db
            .query_row(
                "INSERT INTO callback_tasks (number, state, server, missed_count, attempts, \
                 attempt_budget, lost_at, first_missed_at, last_missed_at, next_attempt_at, \
                 give_up_at, use_fallback, kind, owner, owner_until, queue, joined_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17) \
                 RETURNING id",
                params![
                    t.number,
                    t.state.as_str(),
                    t.server,
                    t.missed_count,
                    t.attempts,
                    t.attempt_budget,
                    t.lost_at.map(|l| l.as_str()),
                    ts_to_f64(t.first_missed_at),
                    ts_to_f64(t.last_missed_at),
                    ts_to_f64(t.next_attempt_at),
                    ts_to_f64(t.give_up_at),
                    t.use_fallback,
                    t.routing.kind.as_str(),
                    t.routing.owner,
                    t.routing.owner_until.map(ts_to_f64),
                    t.routing.queue,
                    t.routing.joined_at.map(ts_to_f64),
                ],
                |r| r.get(0),
            )
            .map_err(StoreError::sql("insert task"))
    }

    /// Counts another miss on an open task.
    pub fn bump_task(
        &self,
        id: i64,
        missed_count: u32,
        last_missed_at: jiff::Timestamp,
        give_up_at: jiff::Timestamp,
    ) -> Result<bool> {
        let n = self
            .db
            .execute(
                "UPDATE callback_tasks SET missed_count = ?2, last_missed_at = ?3, give_up_at = ?4 \
                 WHERE id = ?1 AND state IN ('pending', 'in_progress', 'unknown')",
                params![
                    id,
                    missed_count,
                    ts_to_f64(last_missed_at),
                    ts_to_f64(give_up_at)
                ],
            )
            .map_err(StoreError::sql("update task miss count"))?;
        Ok(n == 1)
    }

    /// Records an attempt and marks its task in progress, in one transaction, before the
    /// Originate goes out. Fails (and records nothing) when the task is no longer pending or the
    /// number already has an unfinished attempt.
    pub fn begin_attempt(&mut self, a: &NewAttempt<'_>) -> Result<i64> {
        self.begin_attempt_capped(a, &[])
    }

    /// [`Store::begin_attempt`] under the per-number budget: fails (and records nothing) when
    /// the number already has `cap` attempts started after (or, `inclusive`, at) a cap's
    /// instant. Counted in the same transaction as the insert, so perezvon processes sharing
    /// the database (several servers) cannot together exceed the budget.
    pub fn begin_attempt_capped(&mut self, a: &NewAttempt<'_>, caps: &[AttemptCap]) -> Result<i64> {
        self.db.transaction(|tx| -> Result<i64> {
            self.check_attempt_fence(tx)?;
            for c in caps {
                let sql = if c.inclusive {
                    "SELECT count(*) FROM callback_attempts WHERE number = ?1 AND started_at >= ?2"
                } else {
                    "SELECT count(*) FROM callback_attempts WHERE number = ?1 AND started_at > ?2"
                };
                let n: i64 = tx
                    .query_row(sql, params![a.number, ts_to_f64(c.after)], |r| r.get(0))
                    .map_err(StoreError::sql("count the number's attempts"))?;
                if n >= i64::from(c.cap) {
                    return Err(StoreError::Invalid(format!(
                        "number {} is over its budget ({n} of {} = {})",
                        a.number, c.rule, c.cap
                    )));
                }
            }
            let n = tx
                .execute(
                    "UPDATE callback_tasks SET state = 'in_progress', attempts = attempts + 1, \
                     last_attempt_at = ?2 WHERE id = ?1 AND state = 'pending'",
                    params![a.task_id, ts_to_f64(a.started_at)],
                )
                .map_err(StoreError::sql("mark task in progress"))?;
            if n != 1 {
                return Err(StoreError::Invalid(format!(
                    "callback task {} is no longer pending",
                    a.task_id
                )));
            }
            tx.query_row(
                "INSERT INTO callback_attempts (task_id, attempt_no, callback_id, number, target, \
                 started_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
                params![
                    a.task_id,
                    a.attempt_no,
                    a.callback_id,
                    a.number,
                    a.target,
                    ts_to_f64(a.started_at)
                ],
                |r| r.get(0),
            )
            .map_err(StoreError::sql("insert attempt"))
        })
    }

    /// Takes back an attempt whose Originate never left (the link was down): the row goes and
    /// its task is `pending` again with the attempt uncounted and its spacing as before, in one
    /// transaction. Returns false when the attempt had already ended or is unknown.
    pub fn abandon_attempt(&mut self, callback_id: &str) -> Result<bool> {
        self.db.transaction(|tx| -> Result<bool> {
            let task_id: Option<i64> = tx
                .query_opt(
                    "DELETE FROM callback_attempts WHERE callback_id = ?1 AND ended_at IS NULL \
                     RETURNING task_id",
                    params![callback_id],
                    |r| r.get(0),
                )
                .map_err(StoreError::sql("delete attempt"))?;
            let Some(task_id) = task_id else {
                // Nothing was deleted: committing changes nothing.
                return Ok(false);
            };
            tx.execute(
                "UPDATE callback_tasks SET state = 'pending', attempts = GREATEST(attempts - 1, 0), \
                 last_attempt_at = (SELECT MAX(started_at) FROM callback_attempts WHERE task_id = ?1) \
                 WHERE id = ?1 AND state = 'in_progress'",
                params![task_id],
            )
            .map_err(StoreError::sql("restore task"))?;
            Ok(true)
        })
    }

    /// The first leg answered (OriginateResponse Success).
    pub fn attempt_answered(
        &self,
        callback_id: &str,
        at: jiff::Timestamp,
        linkedid: Option<&str>,
    ) -> Result<()> {
        self.db
            .execute(
                "UPDATE callback_attempts SET answered_at = ?2, linkedid = COALESCE(?3, linkedid) \
                 WHERE callback_id = ?1 AND ended_at IS NULL",
                params![callback_id, ts_to_f64(at), linkedid],
            )
            .map_err(StoreError::sql("mark attempt answered"))?;
        Ok(())
    }

    /// Ends an attempt and applies the planner's verdict to its task, in one transaction.
    /// Returns false when the attempt had already ended (a late duplicate outcome). A task
    /// closed meanwhile (`callbacks cancel`) stays closed.
    pub fn finish_attempt(
        &mut self,
        callback_id: &str,
        outcome: AttemptOutcome,
        ended_at: jiff::Timestamp,
        talk_secs: Option<f64>,
        detail: Option<&str>,
        after: &AfterOutcome,
    ) -> Result<bool> {
        self.db.transaction(|tx| -> Result<bool> {
            self.check_attempt_fence(tx)?;
            let task_id: Option<i64> = tx
                .query_opt(
                    "SELECT task_id FROM callback_attempts WHERE callback_id = ?1 AND ended_at IS NULL",
                    params![callback_id],
                    |r| r.get(0),
                )
                .map_err(StoreError::sql("find attempt"))?;
            let Some(task_id) = task_id else {
                return Ok(false);
            };
            tx.execute(
                "UPDATE callback_attempts SET ended_at = ?2, outcome = ?3, talk_secs = ?4, detail = ?5 \
                 WHERE callback_id = ?1",
                params![
                    callback_id,
                    ts_to_f64(ended_at),
                    outcome.as_str(),
                    talk_secs,
                    detail
                ],
            )
            .map_err(StoreError::sql("end attempt"))?;
            let closing = !after.state.is_open();
            tx.execute(
                "UPDATE callback_tasks SET state = ?2, next_attempt_at = ?3, use_fallback = ?4, \
                 last_outcome = ?5, closed_at = ?6, close_reason = ?7 \
                 WHERE id = ?1 AND state IN ('pending', 'in_progress')",
                params![
                    task_id,
                    after.state.as_str(),
                    ts_to_f64(after.next_attempt_at),
                    after.use_fallback,
                    outcome.as_str(),
                    closing.then(|| ts_to_f64(ended_at)),
                    after.close_reason,
                ],
            )
            .map_err(StoreError::sql("update task after attempt"))?;
            // A cancelled task still records the outcome it got.
            tx.execute(
                "UPDATE callback_tasks SET last_outcome = ?2 WHERE id = ?1",
                params![task_id, outcome.as_str()],
            )
            .map_err(StoreError::sql("record last outcome"))?;
            Ok(true)
        })
    }

    /// A late record tells what an attempt settled as `unknown` really did: the attempt gets
    /// that outcome and its task, still `unknown`, the planner's verdict for it (pending again
    /// with its spacing, or closed), in one transaction. Returns false when the attempt was not
    /// `unknown` or its task has moved on (retried, cancelled).
    pub fn settle_unknown(
        &mut self,
        callback_id: &str,
        outcome: AttemptOutcome,
        at: jiff::Timestamp,
        detail: &str,
        after: &AfterOutcome,
    ) -> Result<bool> {
        self.db.transaction(|tx| -> Result<bool> {
            // The task first: when it has moved on, the attempt stays as it was recorded.
            let task_id: Option<i64> = tx
                .query_opt(
                    "SELECT a.task_id FROM callback_attempts a JOIN callback_tasks t \
                     ON t.id = a.task_id \
                     WHERE a.callback_id = ?1 AND a.outcome = 'unknown' AND t.state = 'unknown'",
                    params![callback_id],
                    |r| r.get(0),
                )
                .map_err(StoreError::sql("find the unknown attempt"))?;
            let Some(task_id) = task_id else {
                return Ok(false);
            };
            tx.execute(
                "UPDATE callback_attempts SET outcome = ?2, detail = ?3 \
                 WHERE callback_id = ?1 AND outcome = 'unknown'",
                params![callback_id, outcome.as_str(), detail],
            )
            .map_err(StoreError::sql("record late outcome"))?;
            let closing = !after.state.is_open();
            tx.execute(
                "UPDATE callback_tasks SET state = ?2, next_attempt_at = ?3, use_fallback = ?4, \
                 last_outcome = ?5, closed_at = ?6, close_reason = ?7 \
                 WHERE id = ?1 AND state = 'unknown'",
                params![
                    task_id,
                    after.state.as_str(),
                    ts_to_f64(after.next_attempt_at),
                    after.use_fallback,
                    outcome.as_str(),
                    closing.then(|| ts_to_f64(at)),
                    after.close_reason,
                ],
            )
            .map_err(StoreError::sql("update task after late outcome"))?;
            Ok(true)
        })
    }

    /// Attempts with no outcome (in flight, or lost in a crash).
    pub fn unfinished_attempts(&self) -> Result<Vec<Attempt>> {
        let sql = format!(
            "SELECT {ATTEMPT_COLUMNS} FROM callback_attempts WHERE ended_at IS NULL ORDER BY id"
        );
        self.db
            .query_map(&sql, params![], row_to_attempt)
            .map_err(StoreError::sql("query attempts"))
    }

    /// The attempts of one task, oldest first.
    pub fn attempts_of(&self, task_id: i64) -> Result<Vec<Attempt>> {
        let sql = format!(
            "SELECT {ATTEMPT_COLUMNS} FROM callback_attempts WHERE task_id = ?1 ORDER BY id"
        );
        self.db
            .query_map(&sql, params![task_id], row_to_attempt)
            .map_err(StoreError::sql("query attempts"))
    }

    /// Attempts that ended in `[from, to)`, oldest first (notifications' crash catch-up).
    pub fn attempts_ended_between(
        &self,
        from: jiff::Timestamp,
        to: jiff::Timestamp,
    ) -> Result<Vec<Attempt>> {
        let sql = format!(
            "SELECT {ATTEMPT_COLUMNS} FROM callback_attempts \
             WHERE ended_at >= ?1 AND ended_at < ?2 ORDER BY ended_at, id"
        );
        self.db
            .query_map(
                &sql,
                params![ts_to_f64(from), ts_to_f64(to)],
                row_to_attempt,
            )
            .map_err(StoreError::sql("query attempts"))
    }

    /// One attempt by callback id.
    pub fn attempt(&self, callback_id: &str) -> Result<Option<Attempt>> {
        let sql = format!("SELECT {ATTEMPT_COLUMNS} FROM callback_attempts WHERE callback_id = ?1");
        self.db
            .query_opt(&sql, params![callback_id], row_to_attempt)
            .map_err(StoreError::sql("read attempt"))
    }

    /// Closes an open task (`done`, `given_up`, `cancelled`). Returns false when it was not open.
    pub fn close_task(
        &self,
        id: i64,
        state: TaskState,
        reason: &str,
        at: jiff::Timestamp,
    ) -> Result<bool> {
        if state.is_open() {
            return Err(StoreError::Invalid(format!(
                "close_task with open state {}",
                state.as_str()
            )));
        }
        let n = self
            .db
            .execute(
                "UPDATE callback_tasks SET state = ?2, closed_at = ?3, close_reason = ?4 \
                 WHERE id = ?1 AND state IN ('pending', 'in_progress', 'unknown')",
                params![id, state.as_str(), ts_to_f64(at), reason],
            )
            .map_err(StoreError::sql("close task"))?;
        Ok(n == 1)
    }

    /// Makes a task dialable again now (`callbacks retry`): pending, due at `now`, with
    /// `extra_attempts` more attempts and a fresh give-up horizon. Refused while an attempt is in
    /// flight, and when the number has another open task.
    pub fn retry_task(
        &self,
        id: i64,
        now: jiff::Timestamp,
        extra_attempts: u32,
        give_up_at: jiff::Timestamp,
    ) -> Result<()> {
        let Some(row) = self.task(id)? else {
            return Err(StoreError::Invalid(format!("no callback task {id}")));
        };
        if row.task.state == TaskState::InProgress {
            return Err(StoreError::Invalid(format!(
                "callback task {id} has an attempt in flight; retry it when that ends"
            )));
        }
        if let Some(other) = self.open_task_for(&row.task.number)? {
            if other.id != id {
                return Err(StoreError::Invalid(format!(
                    "number {} already has open callback task {}",
                    row.task.number, other.id
                )));
            }
        }
        self.db
            .execute(
                "UPDATE callback_tasks SET state = 'pending', next_attempt_at = ?2, \
                 attempt_budget = attempts + ?3, give_up_at = ?4, closed_at = NULL, \
                 close_reason = NULL WHERE id = ?1",
                params![id, ts_to_f64(now), extra_attempts, ts_to_f64(give_up_at)],
            )
            .map_err(StoreError::sql("retry task"))?;
        Ok(())
    }

    /// The number and start of every attempt started at or after `since` (the per-number
    /// budget: all tasks, all servers), oldest first.
    pub fn attempt_starts_since(
        &self,
        since: jiff::Timestamp,
    ) -> Result<Vec<(String, jiff::Timestamp)>> {
        self.db
            .query_map(
                "SELECT number, started_at FROM callback_attempts WHERE started_at >= ?1 \
                 ORDER BY started_at",
                params![ts_to_f64(since)],
                |r| Ok((r.get::<String>(0)?, f64_to_ts(r.get(1)?))),
            )
            .map_err(StoreError::sql("query attempt starts"))
    }

    /// Records why the dialer holds a target back now (`None`: it does not), for
    /// `callbacks list`: a queue with callers waiting, or no agent to spare.
    pub fn set_target_state(
        &self,
        target: &str,
        at: jiff::Timestamp,
        held_back: Option<&str>,
    ) -> Result<()> {
        self.db
            .execute(
                "INSERT INTO callback_target_state (target, checked_at, held_back) \
                 VALUES (?1, ?2, ?3) ON CONFLICT (target) DO UPDATE SET \
                 checked_at = excluded.checked_at, held_back = excluded.held_back",
                params![target, ts_to_f64(at), held_back],
            )
            .map_err(StoreError::sql("record target state"))?;
        Ok(())
    }

    /// Every target the dialer holds back, with why and since when it knows.
    pub fn held_back_targets(&self) -> Result<Vec<(String, jiff::Timestamp, String)>> {
        self.db
            .query_map(
                "SELECT target, checked_at, held_back FROM callback_target_state \
                 WHERE held_back IS NOT NULL ORDER BY target",
                params![],
                |r| Ok((r.get(0)?, f64_to_ts(r.get(1)?), r.get(2)?)),
            )
            .map_err(StoreError::sql("query target state"))
    }

    /// Changes whenever another connection commits (the CLI cancelling a task while the daemon
    /// runs): the dialer re-reads its tasks when this moves.
    ///
    /// SQLite: `PRAGMA data_version`. PostgreSQL has no such counter: this is a hash of the
    /// current snapshot (`xmin:xmax:xids in progress`), which changes whenever a transaction
    /// anywhere on the server starts writing or ends. It moves at least whenever SQLite's
    /// counter would (also on this connection's own commits and other databases' writes,
    /// which only costs a re-read).
    pub fn data_version(&self) -> Result<i64> {
        if !self.db.is_postgres() {
            return self
                .db
                .query_row("PRAGMA data_version", params![], |r| r.get(0))
                .map_err(StoreError::sql("read data_version"));
        }
        use std::hash::{Hash, Hasher};
        let snapshot: String = self
            .db
            .query_row(
                "SELECT CAST(txid_current_snapshot() AS TEXT)",
                params![],
                |r| r.get(0),
            )
            .map_err(StoreError::sql("read data_version"))?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        snapshot.hash(&mut h);
        Ok(h.finish() as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::pg::each_engine;
    use jiff::{SignedDuration, Timestamp};

    fn t0() -> Timestamp {
        Timestamp::from_second(1_795_375_036).unwrap()
    }

    fn new_task(number: &str) -> Task {
        Task {
            id: 0,
            number: number.into(),
            state: TaskState::Pending,
            server: "lab".into(),
            missed_count: 1,
            attempts: 0,
            attempt_budget: 3,
            lost_at: Some(LostAt::Queue),
            first_missed_at: t0(),
            last_missed_at: t0(),
            next_attempt_at: t0() + SignedDuration::from_secs(60),
            give_up_at: t0() + SignedDuration::from_secs(86400),
            last_attempt_at: None,
            last_outcome: None,
            use_fallback: false,
            routing: Default::default(),
        }
    }

    /// SQLite only: the migration edits SQLite's stored schema (PostgreSQL has its own text).
    #[test]
    fn the_task_states_migration_keeps_tasks_attempts_and_their_link() {
        use crate::store::migrations::MIGRATIONS;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let before = MIGRATIONS
            .iter()
            .position(|m| *m == SCHEMA_TASK_STATES)
            .unwrap();
        {
            // A database as the previous release left it, foreign keys on as the store runs.
            let c = rusqlite::Connection::open(&path).unwrap();
            c.pragma_update(None, "foreign_keys", "ON").unwrap();
            for m in &MIGRATIONS[..before] {
                c.execute_batch(m).unwrap();
            }
            c.pragma_update(None, "user_version", before as i64)
                .unwrap();
            c.execute_batch(
                "INSERT INTO callback_tasks (id, number, state, server, attempt_budget, \
                 first_missed_at, last_missed_at, next_attempt_at, give_up_at, close_reason) \
                 VALUES (7, '79161234567', 'given_up', 'lab', 3, 1, 1, 2, 3, 'max_attempts'), \
                 (8, '79161234567', 'pending', 'lab', 3, 1, 1, 2, 3, NULL);
                 INSERT INTO callback_attempts (task_id, attempt_no, callback_id, number, target, \
                 started_at, ended_at, outcome) VALUES (7, 1, 'pzv-7-1-0', '79161234567', 'q', 5, 6, 'busy');",
            )
            .unwrap();
        }
        let mut s = Store::open(&path).unwrap();
        let old = s.task(7).unwrap().unwrap();
        assert_eq!(old.task.state, TaskState::GivenUp);
        assert_eq!(old.close_reason.as_deref(), Some("max_attempts"));
        assert_eq!(s.attempts_of(7).unwrap().len(), 1);
        assert_eq!(s.open_tasks().unwrap()[0].id, 8);
        // The new states are accepted; `unknown` still holds the number's one task.
        s.db.execute(
            "UPDATE callback_tasks SET state = 'unknown' WHERE id = 8",
            params![],
        )
        .unwrap();
        assert!(s.create_task(&new_task("79161234567")).is_err());
        assert_eq!(s.open_task_for("79161234567").unwrap().unwrap().id, 8);
        assert!(s
            .close_task(8, TaskState::Expired, "expire_after", t0())
            .unwrap());
        assert_eq!(s.task(8).unwrap().unwrap().task.state, TaskState::Expired);
        // The attempts still point at the rebuilt table.
        let bad = s.begin_attempt(&NewAttempt {
            task_id: 999,
            attempt_no: 1,
            callback_id: "x",
            number: "1",
            target: "q",
            started_at: t0(),
        });
        assert!(bad.is_err());
        let fk: i64 =
            s.db.query_row(
                "SELECT count(*) FROM pragma_foreign_key_check",
                params![],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(fk, 0);
        let ok: String =
            s.db.query_row("PRAGMA integrity_check", params![], |r| r.get(0))
                .unwrap();
        assert_eq!(ok, "ok");
        // A state outside the list is still refused.
        assert!(s
            .db
            .execute(
                "UPDATE callback_tasks SET state = 'bogus' WHERE id = 8",
                params![]
            )
            .is_err());
        assert_eq!(
            s.attempt_starts_since(jiff::Timestamp::UNIX_EPOCH).unwrap(),
            vec![("79161234567".to_string(), crate::store::f64_to_ts(5.0))]
        );
    }

    /// The states of migration 8 on a fresh database, on both engines: `unknown` holds the
    /// number's one task, `expired` closes it, anything else is refused.
    #[test]
    fn unknown_and_expired_are_states_and_others_are_refused() {
        each_engine(|db| {
            let s = db.open();
            let id = s.create_task(&new_task("79161234567")).unwrap();
            s.db.execute(
                "UPDATE callback_tasks SET state = 'unknown' WHERE id = ?1",
                params![id],
            )
            .unwrap();
            assert!(s.create_task(&new_task("79161234567")).is_err());
            assert_eq!(s.open_task_for("79161234567").unwrap().unwrap().id, id);
            assert!(s
                .close_task(id, TaskState::Expired, "expire_after", t0())
                .unwrap());
            assert_eq!(s.task(id).unwrap().unwrap().task.state, TaskState::Expired);
            assert!(s
                .db
                .execute(
                    "UPDATE callback_tasks SET state = 'bogus' WHERE id = ?1",
                    params![id]
                )
                .is_err());
            // An attempt must belong to a task.
            let mut s = s;
            assert!(s
                .begin_attempt(&NewAttempt {
                    task_id: 999,
                    attempt_no: 1,
                    callback_id: "x",
                    number: "1",
                    target: "q",
                    started_at: t0(),
                })
                .is_err());
        });
    }

    #[test]
    fn the_budget_is_enforced_in_the_attempts_transaction() {
        each_engine(|db| {
            let mut s = db.open();
            let a = s.create_task(&new_task("79161234567")).unwrap();
            let start = t0() + SignedDuration::from_secs(60);
            let attempt = |id: i64, cb: &'static str, at: jiff::Timestamp| NewAttempt {
                task_id: id,
                attempt_no: 1,
                callback_id: cb,
                number: "79161234567",
                target: "queue:sales",
                started_at: at,
            };
            let cap = |after: jiff::Timestamp, inclusive: bool| AttemptCap {
                after,
                inclusive,
                cap: 1,
                rule: "max_per_number_24h",
            };
            s.begin_attempt_capped(&attempt(a, "pzv-1-1-0", start), &[cap(t0(), false)])
                .unwrap();
            s.close_task(a, TaskState::Cancelled, "test", start)
                .unwrap();
            s.db.execute(
                "UPDATE callback_attempts SET ended_at = 1, outcome = 'busy'",
                params![],
            )
            .unwrap();
            // Another task of the number (another server's, say): the number's budget is spent.
            let b = s.create_task(&new_task("79161234567")).unwrap();
            let later = start + SignedDuration::from_secs(600);
            let e = s
                .begin_attempt_capped(&attempt(b, "pzv-2-1-0", later), &[cap(t0(), false)])
                .unwrap_err();
            assert!(e.to_string().contains("over its budget"), "{e}");
            assert_eq!(s.task(b).unwrap().unwrap().task.state, TaskState::Pending);
            assert!(
                s.attempt("pzv-2-1-0").unwrap().is_none(),
                "nothing recorded"
            );
            // Exclusive bound: an attempt exactly at `after` has left the rolling window;
            // inclusive: it still counts (the calendar day's midnight).
            assert!(s
                .begin_attempt_capped(&attempt(b, "pzv-2-1-0", later), &[cap(start, true)])
                .is_err());
            s.begin_attempt_capped(&attempt(b, "pzv-2-1-0", later), &[cap(start, false)])
                .unwrap();
            assert_eq!(
                s.attempt_starts_since(start).unwrap(),
                vec![
                    ("79161234567".to_string(), start),
                    ("79161234567".to_string(), later)
                ]
            );
        });
    }

    #[test]
    fn one_open_task_per_number() {
        each_engine(|db| {
            let s = db.open();
            let id = s.create_task(&new_task("79161234567")).unwrap();
            let e = s.create_task(&new_task("79161234567")).unwrap_err();
            assert!(e.is_unique_violation(), "{e}");
            assert!(s
                .close_task(id, TaskState::GivenUp, "max_attempts", t0())
                .unwrap());
            // A closed task frees the number.
            let next = s.create_task(&new_task("79161234567")).unwrap();
            assert!(next > id);
            assert_eq!(s.open_tasks().unwrap().len(), 1);
            // Bumping counts a miss on the open task only.
            let later = t0() + SignedDuration::from_secs(30);
            assert!(s.bump_task(next, 2, later, later).unwrap());
            assert!(!s.bump_task(id, 2, later, later).unwrap());
            let t = s.open_task_for("79161234567").unwrap().unwrap();
            assert_eq!((t.missed_count, t.last_missed_at), (2, later));
            assert_eq!(t, new_task_with(next, &t));
        });
    }

    /// `t` as created from [`new_task`] with id `id` and its bumped fields.
    fn new_task_with(id: i64, t: &Task) -> Task {
        Task {
            id,
            missed_count: t.missed_count,
            last_missed_at: t.last_missed_at,
            give_up_at: t.give_up_at,
            ..new_task("79161234567")
        }
    }

    #[test]
    fn attempt_lifecycle_round_trips() {
        each_engine(|db| {
            let mut s = db.open();
            let id = s.create_task(&new_task("79161234567")).unwrap();
            let start = t0() + SignedDuration::from_secs(60);
            let first = s
                .begin_attempt(&NewAttempt {
                    task_id: id,
                    attempt_no: 1,
                    callback_id: "pzv-1-1-0",
                    number: "79161234567",
                    target: "queue:sales",
                    started_at: start,
                })
                .unwrap();
            // Not pending any more: a second begin fails and records nothing.
            assert!(s
                .begin_attempt(&NewAttempt {
                    task_id: id,
                    attempt_no: 2,
                    callback_id: "pzv-1-2-0",
                    number: "79161234567",
                    target: "queue:sales",
                    started_at: start,
                })
                .is_err());
            let open = s.unfinished_attempts().unwrap();
            assert_eq!(open.len(), 1);
            assert_eq!(open[0].id, first);
            let t = &s.open_tasks().unwrap()[0];
            assert_eq!((t.state, t.attempts), (TaskState::InProgress, 1));
            assert_eq!(t.last_attempt_at, Some(start));
            s.attempt_answered("pzv-1-1-0", start, Some("pzv-1-1-0-c"))
                .unwrap();
            let after = AfterOutcome {
                state: TaskState::Pending,
                next_attempt_at: start + SignedDuration::from_secs(600),
                use_fallback: true,
                close_reason: None,
            };
            let o = AttemptOutcome::Call(crate::calls::record::CallbackOutcome::AgentMissed);
            let end = start + SignedDuration::from_secs(20);
            assert!(s
                .finish_attempt("pzv-1-1-0", o, end, Some(0.0), None, &after)
                .unwrap());
            assert!(!s
                .finish_attempt("pzv-1-1-0", o, end, Some(0.0), None, &after)
                .unwrap());
            let t = &s.open_tasks().unwrap()[0];
            assert_eq!(t.state, TaskState::Pending);
            assert_eq!(t.last_outcome, Some(o));
            assert!(t.use_fallback);
            assert_eq!(t.next_attempt_at, after.next_attempt_at);
            let a = s.attempt("pzv-1-1-0").unwrap().unwrap();
            assert_eq!(a.outcome, Some(o));
            assert_eq!(a.linkedid.as_deref(), Some("pzv-1-1-0-c"));
            assert_eq!(a.answered_at, Some(start));
            assert_eq!(a.ended_at, Some(end));
            assert_eq!(a.talk_secs, Some(0.0));
            assert_eq!(s.attempts_of(id).unwrap(), vec![a.clone()]);
            assert_eq!(
                s.attempts_ended_between(end, end + SignedDuration::from_secs(1))
                    .unwrap(),
                vec![a]
            );
            assert!(s.attempts_ended_between(start, end).unwrap().is_empty());
        });
    }

    #[test]
    fn an_abandoned_attempt_is_taken_back() {
        each_engine(|db| {
            let mut s = db.open();
            let id = s.create_task(&new_task("79161234567")).unwrap();
            let start = t0() + SignedDuration::from_secs(60);
            s.begin_attempt(&NewAttempt {
                task_id: id,
                attempt_no: 1,
                callback_id: "pzv-1-1-0",
                number: "79161234567",
                target: "queue:sales",
                started_at: start,
            })
            .unwrap();
            assert!(s.abandon_attempt("pzv-1-1-0").unwrap());
            assert!(!s.abandon_attempt("pzv-1-1-0").unwrap());
            let t = s.task(id).unwrap().unwrap().task;
            assert_eq!(
                (t.state, t.attempts, t.last_attempt_at),
                (TaskState::Pending, 0, None)
            );
            assert!(s.attempt("pzv-1-1-0").unwrap().is_none());
        });
    }

    #[test]
    fn a_late_record_settles_an_unknown_attempt() {
        each_engine(|db| {
            let mut s = db.open();
            let id = s.create_task(&new_task("79161234567")).unwrap();
            let start = t0() + SignedDuration::from_secs(60);
            s.begin_attempt(&NewAttempt {
                task_id: id,
                attempt_no: 1,
                callback_id: "a",
                number: "79161234567",
                target: "t",
                started_at: start,
            })
            .unwrap();
            let unknown = AfterOutcome {
                state: TaskState::Unknown,
                next_attempt_at: start,
                use_fallback: false,
                close_reason: None,
            };
            s.finish_attempt("a", AttemptOutcome::Unknown, start, None, None, &unknown)
                .unwrap();
            assert_eq!(s.task(id).unwrap().unwrap().task.state, TaskState::Unknown);
            let o = AttemptOutcome::Call(crate::calls::record::CallbackOutcome::AgentMissed);
            let done = AfterOutcome {
                state: TaskState::GivenUp,
                next_attempt_at: start,
                use_fallback: false,
                close_reason: Some("max_attempts"),
            };
            // Not an unknown attempt: nothing changes.
            assert!(!s.settle_unknown("b", o, start, "late", &done).unwrap());
            assert!(s.settle_unknown("a", o, start, "late", &done).unwrap());
            let row = s.task(id).unwrap().unwrap();
            assert_eq!(row.task.state, TaskState::GivenUp);
            assert_eq!(row.close_reason.as_deref(), Some("max_attempts"));
            assert_eq!(row.closed_at, Some(start));
            let a = s.attempt("a").unwrap().unwrap();
            assert_eq!((a.outcome, a.detail.as_deref()), (Some(o), Some("late")));
            // Settled once: a second late record changes nothing.
            assert!(!s.settle_unknown("a", o, start, "later", &done).unwrap());

            // The task moved on (cancelled): the attempt stays as it was recorded.
            let id2 = s.create_task(&new_task("79162222222")).unwrap();
            s.begin_attempt(&NewAttempt {
                task_id: id2,
                attempt_no: 1,
                callback_id: "c",
                number: "79162222222",
                target: "t",
                started_at: start,
            })
            .unwrap();
            s.finish_attempt("c", AttemptOutcome::Unknown, start, None, None, &unknown)
                .unwrap();
            assert!(s
                .close_task(id2, TaskState::Cancelled, "cli", start)
                .unwrap());
            assert!(!s.settle_unknown("c", o, start, "late", &done).unwrap());
            let c = s.attempt("c").unwrap().unwrap();
            assert_eq!((c.outcome, c.detail), (Some(AttemptOutcome::Unknown), None));
        });
    }

    #[test]
    fn cancelled_task_stays_cancelled_and_retry_reopens() {
        each_engine(|db| {
            let mut s = db.open();
            let id = s.create_task(&new_task("79161234567")).unwrap();
            s.begin_attempt(&NewAttempt {
                task_id: id,
                attempt_no: 1,
                callback_id: "a",
                number: "79161234567",
                target: "t",
                started_at: t0(),
            })
            .unwrap();
            assert!(s.retry_task(id, t0(), 1, t0()).is_err(), "in flight");
            assert!(s.close_task(id, TaskState::Cancelled, "cli", t0()).unwrap());
            let after = AfterOutcome {
                state: TaskState::Pending,
                next_attempt_at: t0(),
                use_fallback: false,
                close_reason: None,
            };
            s.finish_attempt("a", AttemptOutcome::Unknown, t0(), None, None, &after)
                .unwrap();
            let row = s.task(id).unwrap().unwrap();
            assert_eq!(row.task.state, TaskState::Cancelled);
            assert_eq!(row.close_reason.as_deref(), Some("cli"));
            assert_eq!(row.task.last_outcome, Some(AttemptOutcome::Unknown));
            s.retry_task(id, t0(), 2, t0() + SignedDuration::from_secs(3600))
                .unwrap();
            let row = s.task(id).unwrap().unwrap();
            assert_eq!(row.task.state, TaskState::Pending);
            assert_eq!(row.task.attempt_budget, 3);
            assert_eq!(row.closed_at, None);
            assert_eq!(s.list_tasks(true, 10).unwrap().len(), 1);
            assert_eq!(s.list_tasks(false, 10).unwrap().len(), 1);
            assert!(s.close_task(id, TaskState::Done, "x", t0()).unwrap());
            assert!(s.list_tasks(false, 10).unwrap().is_empty());
        });
    }

    #[test]
    fn held_back_targets_are_kept_per_target() {
        each_engine(|db| {
            let s = db.open();
            s.set_target_state("queue:sales", t0(), Some("callers waiting"))
                .unwrap();
            s.set_target_state("queue:care", t0(), None).unwrap();
            assert_eq!(
                s.held_back_targets().unwrap(),
                vec![(
                    "queue:sales".to_string(),
                    t0(),
                    "callers waiting".to_string()
                )]
            );
            let later = t0() + SignedDuration::from_secs(5);
            s.set_target_state("queue:sales", later, None).unwrap();
            s.set_target_state("queue:care", later, Some("no agent"))
                .unwrap();
            assert_eq!(
                s.held_back_targets().unwrap(),
                vec![("queue:care".to_string(), later, "no agent".to_string())]
            );
        });
    }

    /// The dialer re-reads its tasks when another connection committed.
    #[test]
    fn data_version_moves_when_another_connection_commits() {
        each_engine(|db| {
            let a = db.open();
            let b = db.open();
            let v = a.data_version().unwrap();
            b.create_task(&new_task("79161234567")).unwrap();
            assert_ne!(a.data_version().unwrap(), v, "{}", db.engine);
        });
    }
}
