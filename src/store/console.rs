//! The web console's queries: missed calls with the console's filters, one customer's whole
//! history, and "call now". Read-only except [`Store::call_task_now`], which only moves a
//! pending task's "not before" to now: the dialer still decides (hours, guard, caps).

use super::calls::{row_to_call, COLUMNS};
use super::db::{params, Engine};
use super::report::{MissedCall, TaskBrief};
use super::tasks::Attempt;
use super::{f64_to_ts, ts_to_f64, Result, Store, StoreError};
use crate::calls::record::{CallRecord, LostAt};

/// Which misses the console's Missed calls page shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MissedFilter {
    /// Ended in `[from, to)`.
    pub from: jiff::Timestamp,
    pub to: jiff::Timestamp,
    pub lost_at: Option<LostAt>,
    /// The number the customer dialled (the inbound call's callee), exact.
    pub did: Option<String>,
    /// The agent last rung (a queue member, a group's phone), exact.
    pub agent: Option<String>,
    /// `Some(true)`: resolved ones only, `Some(false)`: unresolved ones only.
    pub resolved: Option<bool>,
    /// The queue the call was in, exact; only where the calls table has a `queue` column
    /// ([`Store::calls_have_queue`]), else refused.
    pub queue: Option<String>,
    /// At most this many rows, newest first.
    pub limit: u32,
}

impl Store {
    /// Counted misses (not accidental, not unknown) matching `f`, newest first, each with the
    /// callback task that covers it, and whether more rows matched than `f.limit`.
    pub fn console_missed(&self, f: &MissedFilter) -> Result<(Vec<MissedCall>, bool)> {
        // The definition of a counted miss is `CallRecord::is_counted_miss`; the SQL narrows
        // the rows and the Rust filter below keeps that one definition authoritative.
        let queue_clause = match &f.queue {
            Some(_) if self.calls_have_queue()? => "AND queue = ?8",
            Some(_) => {
                return Err(StoreError::Invalid(
                    "this database stores no queue names: the queue filter is not available".into(),
                ))
            }
            None => "AND CAST(?8 AS TEXT) IS NULL",
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM calls WHERE ended_at >= ?1 AND ended_at < ?2 \
             AND direction = 'inbound' AND missed = 1 AND ignored = 0 \
             AND (CAST(?3 AS TEXT) IS NULL OR lost_at = ?3) \
             AND (CAST(?4 AS TEXT) IS NULL OR callee = ?4 OR callee_normalized = ?4) \
             AND (CAST(?5 AS TEXT) IS NULL OR agent = ?5) \
             AND (CAST(?6 AS BIGINT) IS NULL \
                  OR (CAST(?6 AS BIGINT) = 1) = (resolved_by IS NOT NULL)) {queue_clause} \
             ORDER BY ended_at DESC, id DESC LIMIT ?7"
        );
        let limit = f.limit.max(1);
        let rows: Vec<CallRecord> = self
            .db
            .query_map(
                &sql,
                params![
                    ts_to_f64(f.from),
                    ts_to_f64(f.to),
                    f.lost_at.map(|l| l.as_str()),
                    f.did,
                    f.agent,
                    f.resolved.map(i64::from),
                    i64::from(limit) + 1,
                    f.queue,
                ],
                row_to_call,
            )
            .map_err(StoreError::sql("query missed calls for the console"))?;
        let more = rows.len() > limit as usize;
        let mut out = Vec::with_capacity(rows.len().min(limit as usize));
        for call in rows.into_iter().take(limit as usize) {
            if !call.is_counted_miss() {
                continue;
            }
            let task = match call.caller_normalized.as_deref() {
                Some(n) => self.console_task_for_miss(n, &call)?,
                None => None,
            };
            out.push(MissedCall { call, task });
        }
        Ok((out, more))
    }

    /// Whether calls carry the queue they were in (a `queue` column): the Missed calls page
    /// offers the queue filter then.
    pub fn calls_have_queue(&self) -> Result<bool> {
        let sql = match self.db.engine() {
            Engine::Sqlite => "SELECT COUNT(*) FROM pragma_table_info('calls') WHERE name = 'queue'",
            Engine::Postgres => {
                "SELECT COUNT(*) FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = 'calls' AND column_name = 'queue'"
            }
        };
        let n: i64 = self
            .db
            .query_row(sql, params![], |r| r.get(0))
            .map_err(StoreError::sql("read the calls table's columns"))?;
        Ok(n > 0)
    }

    /// The newest task opened no later than the miss and not closed before it (one second of
    /// slack: the dialer stamps tasks with its own reading of the same event time).
    fn console_task_for_miss(&self, number: &str, c: &CallRecord) -> Result<Option<TaskBrief>> {
        self.db
            .query_opt(
                "SELECT id, state, attempts, last_outcome, next_attempt_at FROM callback_tasks \
                 WHERE number = ?1 AND first_missed_at <= CAST(?3 AS DOUBLE PRECISION) + 1 \
                 AND (closed_at IS NULL OR closed_at >= CAST(?2 AS DOUBLE PRECISION) - 1) \
                 ORDER BY id DESC LIMIT 1",
                params![number, ts_to_f64(c.started_at), ts_to_f64(c.ended_at)],
                |r| {
                    Ok(TaskBrief {
                        id: r.get(0)?,
                        state: r.get(1)?,
                        attempts: r.get(2)?,
                        last_outcome: r.get(3)?,
                        next_attempt_at: r.get::<Option<f64>>(4)?.map(f64_to_ts),
                    })
                },
            )
            .map_err(StoreError::sql("query callback task of a miss"))
    }

    /// Every call of one customer (normalised number), inbound or outbound or callback, newest
    /// first, at most `limit`.
    pub fn customer_calls(&self, number: &str, limit: u32) -> Result<Vec<CallRecord>> {
        // Two indexed lookups (calls_by_caller, calls_by_callee) rather than an OR the planner
        // would scan for.
        let sql = format!(
            "SELECT {COLUMNS} FROM (SELECT * FROM calls WHERE caller_normalized = ?1 \
             UNION SELECT * FROM calls WHERE callee_normalized = ?1) AS u \
             ORDER BY started_at DESC LIMIT ?2"
        );
        self.db
            .query_map(&sql, params![number, limit], row_to_call)
            .map_err(StoreError::sql("query a customer's calls"))
    }

    /// The callback attempts made to one number, newest first, at most `limit`.
    pub fn customer_attempts(&self, number: &str, limit: u32) -> Result<Vec<Attempt>> {
        let ids: Vec<i64> = self
            .db
            .query_map(
                "SELECT id FROM callback_tasks WHERE number = ?1 ORDER BY id DESC LIMIT ?2",
                params![number, limit],
                |r| r.get(0),
            )
            .map_err(StoreError::sql("query a customer's tasks"))?;
        let mut out = Vec::new();
        for id in ids {
            out.extend(self.attempts_of(id)?);
        }
        out.sort_by_key(|a| std::cmp::Reverse(a.started_at));
        out.truncate(limit as usize);
        Ok(out)
    }

    /// "Call now": a pending task becomes due at `now`, and is not given up before
    /// `give_up_at` (a supervisor asked for this call). Returns false when the task is not
    /// pending (in progress, closed, or gone). The dialer notices the change through
    /// `PRAGMA data_version` and applies every rule of the planner to it as to any due task.
    pub fn call_task_now(
        &self,
        id: i64,
        now: jiff::Timestamp,
        give_up_at: jiff::Timestamp,
    ) -> Result<bool> {
        let n = self
            .db
            .execute(
                "UPDATE callback_tasks SET next_attempt_at = LEAST(next_attempt_at, ?2), \
                 give_up_at = GREATEST(give_up_at, ?3) WHERE id = ?1 AND state = 'pending'",
                params![id, ts_to_f64(now), ts_to_f64(give_up_at)],
            )
            .map_err(StoreError::sql("make a task due now"))?;
        Ok(n == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::callback::planner::{Task, TaskState};

    fn task(number: &str, at: jiff::Timestamp) -> Task {
        Task {
            id: 0,
            number: number.into(),
            state: TaskState::Pending,
            server: "pbx".into(),
            missed_count: 1,
            attempts: 0,
            attempt_budget: 3,
            lost_at: Some(LostAt::Queue),
            first_missed_at: at,
            last_missed_at: at,
            next_attempt_at: at + jiff::SignedDuration::from_hours(1),
            give_up_at: at + jiff::SignedDuration::from_hours(24),
            last_attempt_at: None,
            last_outcome: None,
            use_fallback: false,
            routing: Default::default(),
        }
    }

    #[test]
    fn the_queue_filter_needs_a_queue_column() {
        crate::test_support::pg::each_engine(|db| {
            let st = db.open();
            let at: jiff::Timestamp = "2026-12-01T10:00:00Z".parse().unwrap();
            let f = MissedFilter {
                from: at,
                to: at + jiff::SignedDuration::from_hours(1),
                queue: Some("sales".into()),
                limit: 10,
                ..MissedFilter::default()
            };
            if st.calls_have_queue().unwrap() {
                assert!(st.console_missed(&f).unwrap().0.is_empty());
            } else {
                assert!(matches!(st.console_missed(&f), Err(StoreError::Invalid(_))));
            }
            let all = MissedFilter { queue: None, ..f };
            assert!(st.console_missed(&all).unwrap().0.is_empty());
        });
    }

    #[test]
    fn call_now_moves_only_a_pending_task() {
        crate::test_support::pg::each_engine(|db| {
            let st = db.open();
            let at: jiff::Timestamp = "2026-12-01T10:00:00Z".parse().unwrap();
            let id = st.create_task(&task("79161234567", at)).unwrap();
            let now = at + jiff::SignedDuration::from_mins(5);
            let later = at + jiff::SignedDuration::from_hours(72);
            assert!(st.call_task_now(id, now, later).unwrap());
            let t = st.task(id).unwrap().unwrap().task;
            assert_eq!((t.next_attempt_at, t.give_up_at), (now, later));
            // Already due: still fine, never pushed back; the horizon is never shortened.
            let a_minute_on = now + jiff::SignedDuration::from_mins(1);
            assert!(st.call_task_now(id, a_minute_on, now).unwrap());
            let t = st.task(id).unwrap().unwrap().task;
            assert_eq!((t.next_attempt_at, t.give_up_at), (now, later));
            st.close_task(id, TaskState::Cancelled, "test", now)
                .unwrap();
            assert!(!st.call_task_now(id, now, later).unwrap());
            assert!(!st.call_task_now(9999, now, later).unwrap());
        });
    }
}
