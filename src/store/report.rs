//! Read-only queries behind `perezvon missed` and `perezvon report`. Owner: the reporting work.
//!
//! Nothing here writes: the CLI may run while the daemon holds the database, and WAL lets both
//! read at once. The callback tables belong to the dialer; a missed call is tied to its callback
//! task by the customer's normalised number and time, because a task serves every miss of one
//! number (see `tasks.rs`), not one call.

use super::db::params;

use super::{f64_to_ts, ts_to_f64, Result, Store, StoreError};
use crate::calls::record::{CallRecord, CallbackOutcome};

/// What the dialer did about one number, as the missed-call list shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskBrief {
    pub id: i64,
    /// `pending`, `in_progress`, `done`, `given_up`, `cancelled`.
    pub state: String,
    pub attempts: i64,
    pub last_outcome: Option<String>,
    pub next_attempt_at: Option<jiff::Timestamp>,
}

/// A missed inbound call with the callback task that covers it, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct MissedCall {
    pub call: CallRecord,
    pub task: Option<TaskBrief>,
}

/// Counts over the callback tables for a period (input of the report's callback section).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallbackCounts {
    /// Finished attempts by outcome, in [`CallbackOutcome::ALL`] order.
    pub attempts_by_outcome: Vec<(CallbackOutcome, u64)>,
    /// Attempts started in the period that have no outcome yet (still ringing).
    pub attempts_pending: u64,
    /// Attempts whose outcome nobody could tell (perezvon restarted mid-call: `unknown`).
    pub attempts_unknown: u64,
    /// Tasks first missed in the period, by state (`pending`, `in_progress`, `done`, `given_up`,
    /// `cancelled`), in that order.
    pub tasks_by_state: Vec<(String, u64)>,
    /// Tasks first missed in the period that reached the customer (`done`), by the time from
    /// the first miss to the task's close, in [`crate::report::REACTION_BUCKETS`].
    pub reached_after: [u64; 9],
    /// The sum of those times, seconds.
    pub reached_after_sum: f64,
}

/// Task states in the order reports show them.
pub const TASK_STATES: [&str; 5] = ["pending", "in_progress", "done", "given_up", "cancelled"];

impl Store {
    /// Missed inbound calls that ended in `[from, to)`, newest first, each with its callback task.
    /// Accidental (`ignored`) and `unknown` calls are not misses. `unresolved_only` keeps those
    /// nobody has resolved yet.
    pub fn missed_calls(
        &self,
        from: jiff::Timestamp,
        to: jiff::Timestamp,
        unresolved_only: bool,
    ) -> Result<Vec<MissedCall>> {
        // The calls query is the call-tracking owner's; filtering here keeps one row mapping.
        let mut calls: Vec<CallRecord> = self
            .calls_ended_between(from, to)?
            .into_iter()
            .filter(|c| c.is_counted_miss())
            .filter(|c| !unresolved_only || c.resolved_by.is_none())
            .collect();
        calls.reverse();
        calls
            .into_iter()
            .map(|call| {
                let task = match call.caller_normalized.as_deref() {
                    Some(n) => {
                        self.task_for_miss(n, ts_to_f64(call.started_at), ts_to_f64(call.ended_at))?
                    }
                    None => None,
                };
                Ok(MissedCall { call, task })
            })
            .collect()
    }

    /// The task covering a miss of `number` that happened between `started` and `ended`: the newest
    /// task opened no later than the miss and not closed before it. One second of slack on either
    /// side because the dialer stamps tasks with its own reading of the same event time.
    fn task_for_miss(&self, number: &str, started: f64, ended: f64) -> Result<Option<TaskBrief>> {
        self.db
            .query_opt(
                "SELECT id, state, attempts, last_outcome, next_attempt_at FROM callback_tasks \
                 WHERE number = ?1 AND first_missed_at <= CAST(?3 AS DOUBLE PRECISION) + 1 \
                 AND (closed_at IS NULL OR closed_at >= CAST(?2 AS DOUBLE PRECISION) - 1) \
                 ORDER BY id DESC LIMIT 1",
                params![number, started, ended],
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

    /// Callback attempts started in `[from, to)` by outcome, and tasks first missed then by state.
    pub fn callback_counts(
        &self,
        from: jiff::Timestamp,
        to: jiff::Timestamp,
    ) -> Result<CallbackCounts> {
        let (f, t) = (ts_to_f64(from), ts_to_f64(to));
        let mut by_outcome: Vec<(CallbackOutcome, u64)> =
            CallbackOutcome::ALL.iter().map(|o| (*o, 0)).collect();
        let (mut pending, mut unknown) = (0, 0);
        let rows: Vec<(Option<String>, i64)> = self
            .db
            .query_map(
                "SELECT outcome, COUNT(*) FROM callback_attempts \
                 WHERE started_at >= ?1 AND started_at < ?2 GROUP BY outcome",
                params![f, t],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(StoreError::sql("count callback attempts"))?;
        for (outcome, n) in rows {
            let n = n.max(0) as u64;
            match outcome.as_deref().and_then(CallbackOutcome::parse) {
                Some(o) => {
                    if let Some(slot) = by_outcome.iter_mut().find(|(k, _)| *k == o) {
                        slot.1 += n;
                    }
                }
                None if outcome.is_none() => pending += n,
                // `unknown`, or an outcome newer than this binary: dialled, not known to connect.
                None => unknown += n,
            }
        }
        let mut by_state: Vec<(String, u64)> =
            TASK_STATES.iter().map(|s| (s.to_string(), 0)).collect();
        let rows: Vec<(String, i64)> = self
            .db
            .query_map(
                "SELECT state, COUNT(*) FROM callback_tasks \
                 WHERE first_missed_at >= ?1 AND first_missed_at < ?2 GROUP BY state",
                params![f, t],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(StoreError::sql("count callback tasks"))?;
        for (state, n) in rows {
            let n = n.max(0) as u64;
            match by_state.iter_mut().find(|(k, _)| *k == state) {
                Some(slot) => slot.1 += n,
                None => by_state.push((state, n)),
            }
        }
        let mut reached_after = [0u64; 9];
        let mut reached_after_sum = 0.0;
        let d = "GREATEST(closed_at - first_missed_at, 0.0)";
        let mut case = String::from("CASE");
        for (i, (upper, _)) in crate::report::REACTION_BUCKETS.iter().enumerate() {
            if upper.is_finite() {
                case.push_str(&format!(" WHEN {d} < {upper} THEN {i}"));
            } else {
                case.push_str(&format!(" ELSE {i} END"));
            }
        }
        let sql = format!(
            "SELECT {case}, COUNT(*), SUM({d}) FROM callback_tasks \
             WHERE state = 'done' AND closed_at IS NOT NULL \
             AND first_missed_at >= ?1 AND first_missed_at < ?2 GROUP BY 1"
        );
        let rows: Vec<(i64, i64, f64)> = self
            .db
            .query_map(&sql, params![f, t], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(StoreError::sql("time reached callback tasks"))?;
        for (b, n, sum) in rows {
            if let Some(slot) = usize::try_from(b)
                .ok()
                .and_then(|b| reached_after.get_mut(b))
            {
                *slot += n.max(0) as u64;
                reached_after_sum += sum;
            }
        }
        Ok(CallbackCounts {
            reached_after,
            reached_after_sum,
            attempts_by_outcome: by_outcome,
            attempts_pending: pending,
            attempts_unknown: unknown,
            tasks_by_state: by_state,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::record::Status;
    use crate::test_support::inbound_miss;

    fn t(s: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_795_000_000 + s).unwrap()
    }

    fn miss(id: &str, number: Option<&str>, start: i64) -> CallRecord {
        CallRecord {
            caller: number.map(str::to_string),
            caller_normalized: number.map(str::to_string),
            callee: None,
            callee_normalized: None,
            hangup_by: None,
            ..inbound_miss(id, t(start), 20.0)
        }
    }

    use crate::store::db::Value;
    use crate::test_support::insert_row_in as insert_row;

    fn task(s: &Store, number: &str, state: &str, first: i64, closed: Option<i64>) -> i64 {
        insert_row(
            s,
            "callback_tasks",
            &[
                ("number", Value::Text(number.into())),
                ("state", Value::Text(state.into())),
                ("first_missed_at", Value::Real(ts_to_f64(t(first)))),
                ("last_missed_at", Value::Real(ts_to_f64(t(first)))),
                (
                    "closed_at",
                    closed.map_or(Value::Null, |c| Value::Real(ts_to_f64(t(c)))),
                ),
            ],
        )
    }

    #[test]
    fn each_miss_gets_the_task_that_covered_it() {
        crate::test_support::pg::each_engine(|db| {
            each_miss_gets_the_task_that_covered_it_on(&db.open())
        });
    }

    fn each_miss_gets_the_task_that_covered_it_on(s: &Store) {
        // First miss at 0, its task closed at 1000; a second miss at 5000 opened a new task.
        let done = task(s, "79161234567", "done", 20, Some(1000));
        let open = task(s, "79161234567", "pending", 5020, None);
        s.insert_call(&miss("a", Some("79161234567"), 0)).unwrap();
        s.insert_call(&miss("b", Some("79161234567"), 5000))
            .unwrap();
        s.insert_call(&miss("c", None, 6000)).unwrap();
        s.insert_call(&miss("d", Some("79990000000"), 7000))
            .unwrap();
        let list = s.missed_calls(t(-10), t(10_000), false).unwrap();
        let ids: Vec<(&str, Option<i64>)> = list
            .iter()
            .map(|m| (m.call.linkedid.as_str(), m.task.as_ref().map(|t| t.id)))
            .collect();
        assert_eq!(
            ids,
            vec![
                ("d", None),
                ("c", None),
                ("b", Some(open)),
                ("a", Some(done))
            ]
        );
        // The window is half-open on the end time, like calls_ended_between.
        assert_eq!(s.missed_calls(t(-10), t(20), false).unwrap().len(), 0);
        assert_eq!(s.missed_calls(t(-10), t(21), false).unwrap().len(), 1);
    }

    #[test]
    fn accidental_call_marked_missed_and_ignored_is_not_listed() {
        crate::test_support::pg::each_engine(|db| {
            accidental_call_marked_missed_and_ignored_is_not_listed_on(&db.open())
        });
    }

    fn accidental_call_marked_missed_and_ignored_is_not_listed_on(s: &Store) {
        let mut r = miss("acc", Some("79161234567"), 0);
        // What the tracker writes for an accidental call: status ignored, missed and ignored set.
        (r.status, r.ignored) = (Status::Ignored, true);
        s.insert_call(&r).unwrap();
        let mut u = miss("lost", Some("79161234567"), 100);
        u.status = Status::Unknown;
        s.insert_call(&u).unwrap();
        assert!(s.missed_calls(t(-10), t(10_000), false).unwrap().is_empty());
    }

    #[test]
    fn callback_counts_by_outcome_and_state() {
        crate::test_support::pg::each_engine(|db| {
            callback_counts_by_outcome_and_state_on(&db.open())
        });
    }

    fn callback_counts_by_outcome_and_state_on(s: &Store) {
        let a = task(s, "79161234567", "done", 100, Some(900));
        task(s, "79161234568", "given_up", 100, Some(900));
        task(s, "79161234569", "pending", 99_999, None);
        let outcomes = [
            Some("busy"),
            Some("connected"),
            None,
            Some("unknown"),
            Some("from_the_future"),
        ];
        for (i, o) in outcomes.iter().enumerate() {
            let at = ts_to_f64(t(200 + i as i64));
            insert_row(
                s,
                "callback_attempts",
                &[
                    ("task_id", Value::Int(a)),
                    ("callback_id", Value::Text(format!("cb{i}"))),
                    ("number", Value::Text(format!("7916123456{i}"))),
                    ("started_at", Value::Real(at)),
                    (
                        "ended_at",
                        o.map_or(Value::Null, |_| Value::Real(at + 30.0)),
                    ),
                    ("outcome", o.map_or(Value::Null, |o| Value::Text(o.into()))),
                ],
            );
        }
        let c = s.callback_counts(t(0), t(1000)).unwrap();
        let n = |o: CallbackOutcome| c.attempts_by_outcome.iter().find(|x| x.0 == o).unwrap().1;
        assert_eq!(n(CallbackOutcome::Busy), 1);
        assert_eq!(n(CallbackOutcome::Connected), 1);
        assert_eq!(n(CallbackOutcome::NoAnswer), 0);
        assert_eq!((c.attempts_pending, c.attempts_unknown), (1, 2));
        let st = |k: &str| c.tasks_by_state.iter().find(|x| x.0 == k).unwrap().1;
        assert_eq!((st("done"), st("given_up"), st("pending")), (1, 1, 0));
        // The done task reached its customer 800 s after the first miss: "5-15 m". The given-up
        // one never did.
        assert_eq!(c.reached_after, [0, 1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(c.reached_after_sum, 800.0);
        assert_eq!(s.callback_counts(t(0), t(0)).unwrap().attempts_pending, 0);
    }
}
