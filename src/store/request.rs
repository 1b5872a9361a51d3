//! Requested and owned callbacks, dispositions and the do-not-call list (issue 14). Owner: the
//! request work.
//!
//! - `callback_tasks` gains the task's kind (`missed` / `requested`), its owner (the agent who
//!   last talked with the customer, and until when attempts wait for them), the queue a caller
//!   requested from and when they joined it, and the agent's disposition.
//! - `callback_requests` remembers which call asked for a callback, so that the same call's
//!   missed-call verdict does not make a second task (one task per number, one per request).
//! - `dnc` is the do-not-call list kept in the database (`perezvon dnc`, "press 9", the
//!   `do_not_call` disposition); the `callback.dnc_file` list is read by the dialer on top.
//!
//! Adding a number to the list cancels its open task in the same transaction.

/// Requested/owned tasks, dispositions, callback requests and the do-not-call list.
pub const SCHEMA_REQUEST: &str = "
ALTER TABLE callback_tasks ADD COLUMN kind TEXT NOT NULL DEFAULT 'missed' CHECK (kind IN ('missed', 'requested'));
ALTER TABLE callback_tasks ADD COLUMN owner TEXT;
ALTER TABLE callback_tasks ADD COLUMN owner_until REAL;
ALTER TABLE callback_tasks ADD COLUMN queue TEXT;
ALTER TABLE callback_tasks ADD COLUMN joined_at REAL;
ALTER TABLE callback_tasks ADD COLUMN disposition TEXT CHECK (disposition IN ('resolved', 'call_later', 'wrong_number', 'do_not_call'));
ALTER TABLE callback_tasks ADD COLUMN disposition_at REAL;
ALTER TABLE callback_tasks ADD COLUMN disposition_by TEXT;
CREATE TABLE callback_requests (
    server TEXT NOT NULL,
    linkedid TEXT NOT NULL,
    uniqueid TEXT NOT NULL,
    number TEXT NOT NULL,
    queue TEXT,
    joined_at REAL,
    requested_at REAL NOT NULL,
    task_id INTEGER REFERENCES callback_tasks (id),
    PRIMARY KEY (server, linkedid)
);
CREATE TABLE dnc (
    number TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    added_at REAL NOT NULL
);
";

use super::db::params;
use super::{f64_to_ts, ts_to_f64, Result, Store, StoreError};
use crate::callback::planner::TaskState;
use crate::callback::request::{Disposition, Routing};

/// One entry of the do-not-call list.
#[derive(Debug, Clone, PartialEq)]
pub struct DncEntry {
    pub number: String,
    /// `cli`, `caller` (press 9), `disposition`, `console`.
    pub source: String,
    pub added_at: jiff::Timestamp,
}

/// A callback request as [`Store::record_request`] keeps it.
#[derive(Debug, Clone)]
pub struct NewRequest<'a> {
    pub server: &'a str,
    pub linkedid: &'a str,
    pub uniqueid: &'a str,
    /// Normalised and guard-checked.
    pub number: &'a str,
    pub queue: Option<&'a str>,
    pub joined_at: Option<jiff::Timestamp>,
    pub requested_at: jiff::Timestamp,
}

/// What a disposition did to its task.
#[derive(Debug, Clone, PartialEq)]
pub struct DispositionApplied {
    pub task_id: i64,
    pub number: String,
    /// The task's state afterwards.
    pub state: TaskState,
}

/// Dispositions given in a period, for resolution statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DispositionCounts {
    pub resolved: u64,
    pub call_later: u64,
    pub wrong_number: u64,
    pub do_not_call: u64,
    /// Tasks closed in the period with no disposition.
    pub none: u64,
}

impl Store {
    /// Adds a normalised number to the do-not-call list and cancels its open task (reason
    /// `do_not_call`), in one transaction. Returns false when it was on the list already.
    pub fn dnc_add(&mut self, number: &str, source: &str, at: jiff::Timestamp) -> Result<bool> {
        self.db.transaction(|tx| -> Result<bool> {
            let n = tx
                .execute(
                    "INSERT INTO dnc (number, source, added_at) VALUES (?1, ?2, ?3) \
                     ON CONFLICT DO NOTHING",
                    params![number, source, ts_to_f64(at)],
                )
                .map_err(StoreError::sql("add to dnc"))?;
            // An attempt in flight ends on its own; the task is closed now so none follows.
            tx.execute(
                "UPDATE callback_tasks SET state = 'cancelled', closed_at = ?2, \
                 close_reason = 'do_not_call' WHERE number = ?1 AND state IN ('pending', 'in_progress', 'unknown')",
                params![number, ts_to_f64(at)],
            )
            .map_err(StoreError::sql("cancel task of a dnc number"))?;
            Ok(n == 1)
        })
    }

    /// Takes a number off the list. Returns false when it was not on it.
    pub fn dnc_remove(&self, number: &str) -> Result<bool> {
        let n = self
            .db
            .execute("DELETE FROM dnc WHERE number = ?1", params![number])
            .map_err(StoreError::sql("remove from dnc"))?;
        Ok(n == 1)
    }

    pub fn dnc_contains(&self, number: &str) -> Result<bool> {
        self.db
            .query_opt(
                "SELECT 1 FROM dnc WHERE number = ?1",
                params![number],
                |_| Ok(()),
            )
            .map(|r| r.is_some())
            .map_err(StoreError::sql("look up dnc"))
    }

    /// The list, by number.
    pub fn dnc_list(&self) -> Result<Vec<DncEntry>> {
        self.db
            .query_map(
                "SELECT number, source, added_at FROM dnc ORDER BY number",
                params![],
                |r| {
                    Ok(DncEntry {
                        number: r.get(0)?,
                        source: r.get(1)?,
                        added_at: f64_to_ts(r.get(2)?),
                    })
                },
            )
            .map_err(StoreError::sql("list dnc"))
    }

    /// Records that call (server, linkedid) asked for a callback to `number`. Returns false when
    /// that call's request is already recorded (a repeated key press, a replayed event).
    pub fn record_request(&self, r: &NewRequest<'_>) -> Result<bool> {
        let n = self
            .db
            .execute(
                "INSERT INTO callback_requests (server, linkedid, uniqueid, number, \
                 queue, joined_at, requested_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                 ON CONFLICT DO NOTHING",
                params![
                    r.server,
                    r.linkedid,
                    r.uniqueid,
                    r.number,
                    r.queue,
                    r.joined_at.map(ts_to_f64),
                    ts_to_f64(r.requested_at)
                ],
            )
            .map_err(StoreError::sql("record callback request"))?;
        Ok(n == 1)
    }

    /// Links a recorded request to the task it made.
    pub fn link_request(&self, server: &str, linkedid: &str, task_id: i64) -> Result<()> {
        self.db
            .execute(
                "UPDATE callback_requests SET task_id = ?3 WHERE server = ?1 AND linkedid = ?2",
                params![server, linkedid, task_id],
            )
            .map_err(StoreError::sql("link callback request"))?;
        Ok(())
    }

    /// Did this call ask for a callback? (Its missed-call verdict then makes no task.)
    pub fn requested_by_call(&self, server: &str, linkedid: &str) -> Result<bool> {
        self.db
            .query_opt(
                "SELECT 1 FROM callback_requests WHERE server = ?1 AND linkedid = ?2",
                params![server, linkedid],
                |_| Ok(()),
            )
            .map(|r| r.is_some())
            .map_err(StoreError::sql("look up callback request"))
    }

    /// Makes an open task requested (the caller asked while a missed-call task was open): its
    /// place is when the caller joined the queue, and it is due now.
    pub fn make_requested(
        &self,
        id: i64,
        queue: Option<&str>,
        joined_at: Option<jiff::Timestamp>,
        due_at: jiff::Timestamp,
    ) -> Result<bool> {
        let n = self
            .db
            .execute(
                "UPDATE callback_tasks SET kind = 'requested', queue = COALESCE(?2, queue), \
                 joined_at = COALESCE(?3, joined_at), next_attempt_at = LEAST(next_attempt_at, ?4) \
                 WHERE id = ?1 AND state IN ('pending', 'in_progress', 'unknown')",
                params![id, queue, joined_at.map(ts_to_f64), ts_to_f64(due_at)],
            )
            .map_err(StoreError::sql("make task requested"))?;
        Ok(n == 1)
    }

    /// Sets an open task's owner (and until when attempts wait for them).
    pub fn set_owner(&self, id: i64, routing: &Routing) -> Result<()> {
        self.db
            .execute(
                "UPDATE callback_tasks SET owner = ?2, owner_until = ?3 WHERE id = ?1",
                params![id, routing.owner, routing.owner_until.map(ts_to_f64)],
            )
            .map_err(StoreError::sql("set task owner"))?;
        Ok(())
    }

    /// The owner missed an attempt (or gave it up): from now on the group takes the task.
    pub fn release_owner(&self, id: i64, at: jiff::Timestamp) -> Result<()> {
        self.db
            .execute(
                "UPDATE callback_tasks SET owner_until = LEAST(COALESCE(owner_until, ?2), ?2) \
                 WHERE id = ?1 AND owner IS NOT NULL",
                params![id, ts_to_f64(at)],
            )
            .map_err(StoreError::sql("release task owner"))?;
        Ok(())
    }

    /// The agent who last had a conversation with this customer (inbound answered, outbound
    /// or callback talked), if any: the owner of an owned callback.
    pub fn last_agent_of(&self, number: &str) -> Result<Option<String>> {
        self.db
            .query_opt(
                "SELECT agent FROM calls WHERE agent IS NOT NULL AND agent != '' \
                 AND answered_at IS NOT NULL AND talk_secs > 0 \
                 AND ((direction = 'inbound' AND caller_normalized = ?1) \
                   OR (direction IN ('outbound', 'callback') AND callee_normalized = ?1)) \
                 ORDER BY started_at DESC LIMIT 1",
                params![number],
                |r| r.get(0),
            )
            .map_err(StoreError::sql("find the customer's last agent"))
    }

    /// Records an agent's (or the console's) disposition of task `id` and applies it, in one
    /// transaction:
    /// - `resolved`: an open task is closed `done` (reason `disposition_resolved`);
    /// - `call_later`: the task is pending again, due at `call_later_at`, with one more attempt
    ///   (reopened if it was closed, unless the number has another open task);
    /// - `wrong_number`: an open task is cancelled (`wrong_number`);
    /// - `do_not_call`: the number goes on the list and its open task is cancelled.
    ///
    /// The disposition is kept with the task either way (resolution statistics).
    pub fn set_disposition(
        &mut self,
        id: i64,
        d: Disposition,
        by: Option<&str>,
        at: jiff::Timestamp,
        call_later_at: jiff::Timestamp,
    ) -> Result<DispositionApplied> {
        self.db.transaction(|tx| -> Result<DispositionApplied> {
            let number: Option<String> = tx
                .query_opt(
                    "SELECT number FROM callback_tasks WHERE id = ?1",
                    params![id],
                    |r| r.get(0),
                )
                .map_err(StoreError::sql("find task"))?;
            let Some(number) = number else {
                return Err(StoreError::Invalid(format!("no callback task {id}")));
            };
            tx.execute(
                "UPDATE callback_tasks SET disposition = ?2, disposition_at = ?3, disposition_by = ?4 \
                 WHERE id = ?1",
                params![id, d.as_str(), ts_to_f64(at), by],
            )
            .map_err(StoreError::sql("record disposition"))?;
            let close = |state: &str, reason: &str| {
                tx.execute(
                    "UPDATE callback_tasks SET state = ?2, closed_at = ?3, close_reason = ?4 \
                     WHERE id = ?1 AND state IN ('pending', 'in_progress', 'unknown')",
                    params![id, state, ts_to_f64(at), reason],
                )
                .map_err(StoreError::sql("close task by disposition"))
            };
            match d {
                Disposition::Resolved => {
                    close("done", "disposition_resolved")?;
                }
                Disposition::WrongNumber => {
                    close("cancelled", "wrong_number")?;
                }
                Disposition::DoNotCall => {
                    tx.execute(
                        "INSERT INTO dnc (number, source, added_at) VALUES (?1, 'disposition', ?2) \
                         ON CONFLICT DO NOTHING",
                        params![number, ts_to_f64(at)],
                    )
                    .map_err(StoreError::sql("add to dnc"))?;
                    close("cancelled", "do_not_call")?;
                }
                Disposition::CallLater => {
                    let other: Option<i64> = tx
                        .query_opt(
                            "SELECT id FROM callback_tasks WHERE number = ?1 AND id != ?2 \
                             AND state IN ('pending', 'in_progress', 'unknown')",
                            params![number, id],
                            |r| r.get(0),
                        )
                        .map_err(StoreError::sql("find other open task"))?;
                    if let Some(other) = other {
                        return Err(StoreError::Invalid(format!(
                            "number {number} already has open callback task {other}"
                        )));
                    }
                    // An attempt in flight keeps its state; its outcome then schedules as usual,
                    // and the later due time here wins only for a task not in flight.
                    tx.execute(
                        "UPDATE callback_tasks SET state = CASE state WHEN 'in_progress' THEN state ELSE 'pending' END, \
                         next_attempt_at = ?2, attempt_budget = GREATEST(attempt_budget, attempts + 1), \
                         give_up_at = GREATEST(give_up_at, ?3), closed_at = NULL, close_reason = NULL \
                         WHERE id = ?1",
                        params![
                            id,
                            ts_to_f64(call_later_at),
                            ts_to_f64(call_later_at) + 86_400.0
                        ],
                    )
                    .map_err(StoreError::sql("reschedule task"))?;
                }
            }
            let state: String = tx
                .query_row(
                    "SELECT state FROM callback_tasks WHERE id = ?1",
                    params![id],
                    |r| r.get(0),
                )
                .map_err(StoreError::sql("read task state"))?;
            Ok(DispositionApplied {
                task_id: id,
                number: number.clone(),
                state: TaskState::parse(&state).unwrap_or(TaskState::Cancelled),
            })
        })
    }

    /// The task a disposition is about: the task of callback attempt `callback_id`, else the
    /// latest task of `number` (open first), else the task of the latest callback `agent` talked
    /// in (a feature code dialled after the call).
    pub fn task_for_disposition(
        &self,
        callback_id: Option<&str>,
        number: Option<&str>,
        agent: Option<&str>,
    ) -> Result<Option<i64>> {
        if let Some(cb) = callback_id {
            if let Some(a) = self.attempt(cb)? {
                return Ok(Some(a.task_id));
            }
        }
        let Some(n) = number else {
            let Some(agent) = agent else {
                return Ok(None);
            };
            return self
                .db
                .query_opt(
                    "SELECT a.task_id FROM calls c JOIN callback_attempts a \
                     ON a.callback_id = c.callback_id \
                     WHERE c.direction = 'callback' AND c.agent = ?1 AND c.answered_at IS NOT NULL \
                     ORDER BY c.ended_at DESC LIMIT 1",
                    params![agent],
                    |r| r.get(0),
                )
                .map_err(StoreError::sql("find the agent's last callback"));
        };
        self.db
            .query_opt(
                "SELECT id FROM callback_tasks WHERE number = ?1 \
                 ORDER BY state IN ('pending', 'in_progress', 'unknown') DESC, id DESC LIMIT 1",
                params![n],
                |r| r.get(0),
            )
            .map_err(StoreError::sql("find task for disposition"))
    }

    /// Dispositions of the tasks closed or disposed of in `[from, to)`.
    pub fn disposition_counts(
        &self,
        from: jiff::Timestamp,
        to: jiff::Timestamp,
    ) -> Result<DispositionCounts> {
        let rows = self
            .db
            .query_map(
                "SELECT disposition, COUNT(*) FROM callback_tasks \
                 WHERE COALESCE(disposition_at, closed_at) >= ?1 AND COALESCE(disposition_at, closed_at) < ?2 \
                 GROUP BY disposition",
                params![ts_to_f64(from), ts_to_f64(to)],
                |r| Ok((r.get::<Option<String>>(0)?, r.get::<u64>(1)?)),
            )
            .map_err(StoreError::sql("count dispositions"))?;
        let mut c = DispositionCounts::default();
        for (d, n) in rows {
            match d.as_deref().and_then(Disposition::parse) {
                Some(Disposition::Resolved) => c.resolved += n,
                Some(Disposition::CallLater) => c.call_later += n,
                Some(Disposition::WrongNumber) => c.wrong_number += n,
                Some(Disposition::DoNotCall) => c.do_not_call += n,
                None => c.none += n,
            }
        }
        Ok(c)
    }
}

/// Reads a do-not-call file: one number per line, `#` comments and blank lines ignored, each
/// normalised with `plan`. Lines that are not numbers are returned as errors with their line
/// number (the dialer logs them; the rest of the file still applies).
pub fn parse_dnc_file(
    text: &str,
    plan: &crate::number::NumberPlan,
) -> (std::collections::HashSet<String>, Vec<String>) {
    let mut set = std::collections::HashSet::new();
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        match plan.normalize(line) {
            Ok(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                set.insert(n);
            }
            _ => errors.push(format!("line {}: {line:?} is not a number", i + 1)),
        }
    }
    (set, errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::callback::planner::Task;
    use crate::callback::request::TaskKind;
    use crate::test_support::pg::each_engine;
    use jiff::{SignedDuration, Timestamp};

    fn t0() -> Timestamp {
        Timestamp::from_second(1_766_300_000).unwrap()
    }

    fn task(number: &str) -> Task {
        Task {
            id: 0,
            number: number.into(),
            state: TaskState::Pending,
            server: "pbx".into(),
            missed_count: 1,
            attempts: 0,
            attempt_budget: 3,
            lost_at: None,
            first_missed_at: t0(),
            last_missed_at: t0(),
            next_attempt_at: t0() + SignedDuration::from_secs(60),
            give_up_at: t0() + SignedDuration::from_secs(86_400),
            last_attempt_at: None,
            last_outcome: None,
            use_fallback: false,
            routing: Routing::default(),
        }
    }

    #[test]
    fn dnc_add_cancels_the_open_task_and_is_idempotent() {
        each_engine(|db| {
            let mut s = db.open();
            let id = s.create_task(&task("79161234567")).unwrap();
            assert!(s.dnc_add("79161234567", "cli", t0()).unwrap());
            assert!(!s.dnc_add("79161234567", "cli", t0()).unwrap());
            assert!(s.dnc_contains("79161234567").unwrap());
            let row = s.task(id).unwrap().unwrap();
            assert_eq!(row.task.state, TaskState::Cancelled);
            assert_eq!(row.close_reason.as_deref(), Some("do_not_call"));
            assert_eq!(
                s.dnc_list().unwrap(),
                vec![DncEntry {
                    number: "79161234567".into(),
                    source: "cli".into(),
                    added_at: t0(),
                }]
            );
            assert!(s.dnc_remove("79161234567").unwrap());
            assert!(!s.dnc_remove("79161234567").unwrap());
            assert!(!s.dnc_contains("79161234567").unwrap());
            assert!(s.dnc_list().unwrap().is_empty());
        });
    }

    #[test]
    fn kind_owner_and_place_round_trip() {
        each_engine(|db| {
            let s = db.open();
            let mut t = task("79161234567");
            t.routing = Routing {
                kind: TaskKind::Requested,
                owner: Some("201".into()),
                owner_until: Some(t0() + SignedDuration::from_secs(600)),
                queue: Some("sales".into()),
                joined_at: Some(t0() - SignedDuration::from_secs(90)),
            };
            let id = s.create_task(&t).unwrap();
            let back = s.task(id).unwrap().unwrap().task;
            assert_eq!(back.routing, t.routing);
            s.release_owner(id, t0()).unwrap();
            let back = s.task(id).unwrap().unwrap().task;
            assert_eq!(back.routing.owner_until, Some(t0()));
            assert_eq!(back.routing.owner_at(t0()), None);
            // Releasing again never moves the deadline later.
            s.release_owner(id, t0() + SignedDuration::from_secs(5))
                .unwrap();
            assert_eq!(
                s.task(id).unwrap().unwrap().task.routing.owner_until,
                Some(t0())
            );
            let owned = Routing {
                owner: Some("202".into()),
                owner_until: None,
                ..t.routing.clone()
            };
            s.set_owner(id, &owned).unwrap();
            let back = s.task(id).unwrap().unwrap().task;
            assert_eq!(
                (back.routing.owner.as_deref(), back.routing.owner_until),
                (Some("202"), None)
            );
            // No deadline yet: releasing sets it to now.
            s.release_owner(id, t0()).unwrap();
            assert_eq!(
                s.task(id).unwrap().unwrap().task.routing.owner_until,
                Some(t0())
            );
        });
    }

    #[test]
    fn a_missed_call_task_becomes_requested() {
        each_engine(|db| {
            let s = db.open();
            let id = s.create_task(&task("79161234567")).unwrap();
            let joined = t0() - SignedDuration::from_secs(30);
            // Due earlier than planned: the earlier time wins.
            assert!(s
                .make_requested(id, Some("sales"), Some(joined), t0())
                .unwrap());
            let back = s.task(id).unwrap().unwrap().task;
            assert_eq!(back.routing.kind, TaskKind::Requested);
            assert_eq!(back.routing.queue.as_deref(), Some("sales"));
            assert_eq!(back.routing.joined_at, Some(joined));
            assert_eq!(back.next_attempt_at, t0());
            // Nothing known: queue and place stay, a later due time does not postpone it.
            assert!(s
                .make_requested(id, None, None, t0() + SignedDuration::from_secs(900))
                .unwrap());
            let again = s.task(id).unwrap().unwrap().task;
            assert_eq!(again, back);
            assert!(s.close_task(id, TaskState::Done, "x", t0()).unwrap());
            assert!(!s.make_requested(id, None, None, t0()).unwrap());
        });
    }

    #[test]
    fn a_request_is_remembered_per_call() {
        each_engine(|db| {
            let s = db.open();
            let r = NewRequest {
                server: "pbx",
                linkedid: "1.1",
                uniqueid: "1.1",
                number: "79161234567",
                queue: Some("sales"),
                joined_at: None,
                requested_at: t0(),
            };
            assert!(s.record_request(&r).unwrap());
            assert!(!s.record_request(&r).unwrap());
            assert!(s.requested_by_call("pbx", "1.1").unwrap());
            assert!(!s.requested_by_call("pbx", "1.2").unwrap());
            assert!(!s.requested_by_call("other", "1.1").unwrap());
            let id = s.create_task(&task("79161234567")).unwrap();
            s.link_request("pbx", "1.1", id).unwrap();
            let linked: Option<i64> = s
                .db
                .query_row(
                    "SELECT task_id FROM callback_requests WHERE server = 'pbx' AND linkedid = '1.1'",
                    params![],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(linked, Some(id));
        });
    }

    #[test]
    fn dispositions_apply_and_are_counted() {
        each_engine(|db| {
            let mut s = db.open();
            let later = t0() + SignedDuration::from_secs(7200);
            let a = s.create_task(&task("79161111111")).unwrap();
            let r = s
                .set_disposition(a, Disposition::Resolved, Some("201"), t0(), later)
                .unwrap();
            assert_eq!(r.state, TaskState::Done);
            assert_eq!(r.number, "79161111111");
            let row = s.task(a).unwrap().unwrap();
            assert_eq!(row.disposition, Some(Disposition::Resolved));
            assert_eq!(row.disposition_by.as_deref(), Some("201"));
            assert_eq!(row.disposition_at, Some(t0()));
            // call_later reopens the closed task, due later, with an attempt to make.
            let r = s
                .set_disposition(a, Disposition::CallLater, None, t0(), later)
                .unwrap();
            assert_eq!(r.state, TaskState::Pending);
            let row = s.task(a).unwrap().unwrap();
            assert_eq!(row.task.next_attempt_at, later);
            assert_eq!(
                row.task.give_up_at,
                later + SignedDuration::from_secs(86_400)
            );
            assert!(row.task.attempt_budget > row.task.attempts);
            assert_eq!((row.closed_at, row.close_reason), (None, None));
            let b = s.create_task(&task("79162222222")).unwrap();
            s.set_disposition(b, Disposition::WrongNumber, None, t0(), later)
                .unwrap();
            assert_eq!(s.task(b).unwrap().unwrap().task.state, TaskState::Cancelled);
            // call_later of a closed task whose number has another open task: refused, and
            // nothing of it is kept.
            let b2 = s.create_task(&task("79162222222")).unwrap();
            let e = s
                .set_disposition(b, Disposition::CallLater, None, later, later)
                .unwrap_err();
            assert!(
                e.to_string().contains(&format!("open callback task {b2}")),
                "{e}"
            );
            let row = s.task(b).unwrap().unwrap();
            assert_eq!(
                (row.task.state, row.disposition),
                (TaskState::Cancelled, Some(Disposition::WrongNumber))
            );
            assert!(s.close_task(b2, TaskState::Cancelled, "x", t0()).unwrap());
            let c = s.create_task(&task("79163333333")).unwrap();
            s.set_disposition(c, Disposition::DoNotCall, None, t0(), later)
                .unwrap();
            assert!(s.dnc_contains("79163333333").unwrap());
            // Already on the list: still applied.
            let c2 = s.create_task(&task("79163333333")).unwrap();
            let r = s
                .set_disposition(c2, Disposition::DoNotCall, None, t0(), later)
                .unwrap();
            assert_eq!(r.state, TaskState::Cancelled);
            let n = s
                .disposition_counts(t0(), t0() + SignedDuration::from_secs(1))
                .unwrap();
            assert_eq!(
                n,
                DispositionCounts {
                    resolved: 0,
                    call_later: 1,
                    wrong_number: 1,
                    do_not_call: 2,
                    none: 1
                }
            );
            assert!(s
                .set_disposition(999, Disposition::Resolved, None, t0(), later)
                .is_err());
            assert_eq!(
                s.task_for_disposition(None, Some("79162222222"), None)
                    .unwrap(),
                Some(b2)
            );
            // The open task of a number comes first.
            let b3 = s.create_task(&task("79162222222")).unwrap();
            s.create_task(&task("79164444444")).unwrap();
            assert_eq!(
                s.task_for_disposition(None, Some("79162222222"), None)
                    .unwrap(),
                Some(b3)
            );
            assert_eq!(
                s.task_for_disposition(Some("pzv-x"), None, None).unwrap(),
                None
            );
            assert_eq!(
                s.task_for_disposition(None, None, Some("201")).unwrap(),
                None
            );
            assert_eq!(s.last_agent_of("79161111111").unwrap(), None);
        });
    }

    #[test]
    fn the_dnc_file_is_normalised_and_bad_lines_are_reported() {
        let plan = crate::number::NumberPlan::default();
        let (set, errors) = parse_dnc_file(
            "# list\n+7 (916) 123-45-67\n\n89031234567 # wife\nhello\n",
            &plan,
        );
        assert!(set.contains("79161234567"), "{set:?}");
        assert!(set.contains("79031234567"), "{set:?}");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("line 5"));
    }
}
