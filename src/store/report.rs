//! Read-only queries behind `perezvon missed` and `perezvon report`. Owner: the reporting work.
//!
//! Nothing here writes: the CLI may run while the daemon holds the database, and WAL lets both
//! read at once. The callback tables belong to the dialer; a missed call is tied to its callback
//! task by the customer's normalised number and time, because a task serves every miss of one
//! number (see `tasks.rs`), not one call.

use rusqlite::{params, OptionalExtension};

use super::{f64_to_ts, ts_to_f64, Result, Store, StoreError};
use crate::calls::record::{CallRecord, CallbackOutcome, Direction};

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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallbackCounts {
    /// Finished attempts by outcome, in [`CallbackOutcome::ALL`] order.
    pub attempts_by_outcome: Vec<(CallbackOutcome, u64)>,
    /// Attempts started in the period whose outcome is not known (yet).
    pub attempts_pending: u64,
    /// Tasks first missed in the period, by state (`pending`, `in_progress`, `done`, `given_up`,
    /// `cancelled`), in that order.
    pub tasks_by_state: Vec<(String, u64)>,
}

/// Task states in the order reports show them.
pub const TASK_STATES: [&str; 5] = ["pending", "in_progress", "done", "given_up", "cancelled"];

impl Store {
    /// Missed inbound calls that ended in `[from, to)`, newest first, each with its callback task.
    /// `unresolved_only` keeps those nobody has resolved yet.
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
            .filter(|c| c.direction == Direction::Inbound && c.missed)
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
        self.conn
            .prepare_cached(
                "SELECT id, state, attempts, last_outcome, next_attempt_at FROM callback_tasks \
                 WHERE number = ?1 AND first_missed_at <= ?3 + 1 \
                 AND (closed_at IS NULL OR closed_at >= ?2 - 1) \
                 ORDER BY id DESC LIMIT 1",
            )
            .and_then(|mut s| {
                s.query_row(params![number, started, ended], |r| {
                    Ok(TaskBrief {
                        id: r.get(0)?,
                        state: r.get(1)?,
                        attempts: r.get(2)?,
                        last_outcome: r.get(3)?,
                        next_attempt_at: r.get::<_, Option<f64>>(4)?.map(f64_to_ts),
                    })
                })
                .optional()
            })
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
        let mut pending = 0;
        let rows: Vec<(Option<String>, i64)> = self
            .conn
            .prepare_cached(
                "SELECT outcome, COUNT(*) FROM callback_attempts \
                 WHERE started_at >= ?1 AND started_at < ?2 GROUP BY outcome",
            )
            .and_then(|mut s| {
                s.query_map(params![f, t], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect()
            })
            .map_err(StoreError::sql("count callback attempts"))?;
        for (outcome, n) in rows {
            let n = n.max(0) as u64;
            match outcome.as_deref().and_then(CallbackOutcome::parse) {
                Some(o) => {
                    if let Some(slot) = by_outcome.iter_mut().find(|(k, _)| *k == o) {
                        slot.1 += n;
                    }
                }
                // No outcome yet, or one this binary does not know: not a success either way.
                None => pending += n,
            }
        }
        let mut by_state: Vec<(String, u64)> =
            TASK_STATES.iter().map(|s| (s.to_string(), 0)).collect();
        let rows: Vec<(String, i64)> = self
            .conn
            .prepare_cached(
                "SELECT state, COUNT(*) FROM callback_tasks \
                 WHERE first_missed_at >= ?1 AND first_missed_at < ?2 GROUP BY state",
            )
            .and_then(|mut s| {
                s.query_map(params![f, t], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect()
            })
            .map_err(StoreError::sql("count callback tasks"))?;
        for (state, n) in rows {
            let n = n.max(0) as u64;
            match by_state.iter_mut().find(|(k, _)| *k == state) {
                Some(slot) => slot.1 += n,
                None => by_state.push((state, n)),
            }
        }
        Ok(CallbackCounts {
            attempts_by_outcome: by_outcome,
            attempts_pending: pending,
            tasks_by_state: by_state,
        })
    }
}
