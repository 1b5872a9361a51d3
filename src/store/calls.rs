//! Call verdicts. Owner: the call-tracking work. One row per (server, linkedid).
//!
//! Resolution lives here, in SQL, so it works across restarts: [`Store::record_call`] stores a
//! verdict and, in the same transaction, marks earlier unresolved misses of the same customer
//! that this call resolves (or resolves this miss with a later call already stored, when calls
//! end out of order). A call resolves a miss from number N when, within `resolve_within` of the
//! miss ending and after the miss started:
//! - `caller`: N called in and had a conversation of at least `min_talk` (status `answered`);
//! - `agent`: a person called N and talked at least `min_talk` (outbound, `answered`);
//! - `callback`: a perezvon callback to N connected.
//!
//! `resolved_at` is when the resolving call started (the reaction time).

/// Version 1: the calls table.
pub const SCHEMA_V1: &str = "
CREATE TABLE calls (
    id INTEGER PRIMARY KEY,
    server TEXT NOT NULL,
    linkedid TEXT NOT NULL,
    direction TEXT NOT NULL,
    status TEXT NOT NULL,
    caller TEXT,
    caller_normalized TEXT,
    callee TEXT,
    callee_normalized TEXT,
    started_at REAL NOT NULL,
    ended_at REAL NOT NULL,
    answered_at REAL,
    wait_secs REAL NOT NULL,
    talk_secs REAL NOT NULL,
    agent TEXT,
    missed INTEGER NOT NULL,
    ignored INTEGER NOT NULL,
    lost_at TEXT,
    hangup_by TEXT,
    resolved_by TEXT,
    resolved_at REAL,
    resolved_by_linkedid TEXT,
    callback_id TEXT,
    callback_outcome TEXT,
    unknown_reason TEXT,
    UNIQUE (server, linkedid)
);
CREATE INDEX calls_ended_at ON calls (ended_at);
CREATE INDEX calls_unresolved_misses ON calls (caller_normalized, ended_at) WHERE missed = 1 AND resolved_by IS NULL;
CREATE INDEX calls_by_caller ON calls (caller_normalized, started_at);
CREATE INDEX calls_by_callee ON calls (callee_normalized, started_at);
";

/// Version 4: `dialer_pending` marks a verdict the callback dialer has not acted on yet (set in
/// the verdict's own transaction when the daemon dials, cleared by the dialer once the task it
/// implies is committed). At start-up the dialer acts on every marked verdict, so a miss that
/// is committed always gets its task, whenever the process dies.
pub const SCHEMA_V4: &str = "
ALTER TABLE calls ADD COLUMN dialer_pending INTEGER NOT NULL DEFAULT 0;
CREATE INDEX calls_dialer_pending ON calls (id) WHERE dialer_pending = 1;
";

/// Version 11: the misses a call resolved, found by the resolving call (the notifications
/// observer asks for every verdict; without it that is a scan of the whole table).
pub const SCHEMA_RESOLVED_INDEX: &str = "
CREATE INDEX calls_resolved_by_linkedid ON calls (resolved_by_linkedid) WHERE resolved_by_linkedid IS NOT NULL;
";

use super::db::{params, Db, DbResult, FromValue, Row};

use super::{f64_to_ts, ts_to_f64, Result, Store, StoreError};
use crate::calls::record::{
    CallRecord, CallbackOutcome, Direction, LostAt, ResolvedBy, Status, UnknownReason,
};

pub(super) const COLUMNS: &str = "server, linkedid, direction, status, caller, caller_normalized, callee, \
    callee_normalized, started_at, ended_at, answered_at, wait_secs, talk_secs, agent, missed, ignored, \
    lost_at, hangup_by, resolved_by, resolved_at, resolved_by_linkedid, callback_id, callback_outcome, \
    unknown_reason, queue";

fn enum_str<T: serde::Serialize>(v: &T) -> String {
    // The enums serialise as plain lowercase strings; this cannot fail for them.
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn parse_enum<T: serde::de::DeserializeOwned>(s: Option<String>) -> Option<T> {
    s.and_then(|s| serde_json::from_value(serde_json::Value::String(s)).ok())
}

/// A miss resolved by a call.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolution {
    pub server: String,
    /// The missed call.
    pub linkedid: String,
    pub resolved_by: ResolvedBy,
    pub resolved_at: jiff::Timestamp,
    pub resolved_by_linkedid: String,
}

/// What [`Store::record_call`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// False when the call was already stored (replay, reconnect): nothing changed.
    pub inserted: bool,
    /// The record as stored (with its own resolution, if a later call was already known).
    pub record: CallRecord,
    /// Earlier misses this call resolved.
    pub resolved: Vec<Resolution>,
}

/// What [`Store::record_calls`] did with one verdict.
#[derive(Debug, Clone, PartialEq)]
pub enum Written {
    /// Committed (or found already stored).
    Recorded(Box<Recorded>),
    /// Not written: this node no longer holds the server's lease.
    Fenced,
}

/// What [`Store::record_calls`] committed: the first `written.len()` verdicts, in order.
#[derive(Debug)]
pub struct BatchWritten {
    pub written: Vec<Written>,
    /// Why the verdict after the written ones (and those after it) was not written.
    pub failed: Option<StoreError>,
}

fn is_open_miss(r: &CallRecord) -> bool {
    r.direction == Direction::Inbound
        && r.status == Status::Missed
        && r.resolved_by.is_none()
        && r.caller_normalized
            .as_deref()
            .is_some_and(|n| !n.is_empty())
}

impl Store {
    /// Stores a verdict and applies resolution, in one transaction: when it returns `Ok`, the
    /// verdict and every resolution it caused are committed.
    pub fn record_call(
        &self,
        r: &CallRecord,
        resolve_within: std::time::Duration,
    ) -> Result<Recorded> {
        self.record_call_marked(r, resolve_within, false)
    }

    /// [`Store::record_call`], also marking the new row `dialer_pending` when `for_dialer`.
    pub fn record_call_marked(
        &self,
        r: &CallRecord,
        resolve_within: std::time::Duration,
        for_dialer: bool,
    ) -> Result<Recorded> {
        // Inside a batch ([`Store::begin_batch`]) the verdict is a savepoint of the batch's
        // transaction: a failing one is undone alone and the batch goes on. On PostgreSQL a
        // verdict that conflicts with another node's write is retried whole.
        self.db.transaction(|tx| {
            self.check_fence(tx, &r.server)?;
            self.record_in_transaction(r, resolve_within, for_dialer)
        })
    }

    /// Group commit: stores `recs` in order in one transaction ([`Store::record_call_marked`]
    /// for each, the fence checked once per server). What [`BatchWritten::written`] holds is
    /// committed; a verdict that fails stops the batch there (the transaction is rolled back
    /// and the verdicts before it are written again), and [`BatchWritten::failed`] is its
    /// error. A failed commit writes nothing. On PostgreSQL a serialization failure re-runs
    /// the whole batch, as it does a single verdict.
    pub fn record_calls(
        &self,
        recs: &[CallRecord],
        resolve_within: std::time::Duration,
        for_dialer: bool,
    ) -> BatchWritten {
        let mut upto = recs.len();
        let mut failed = None;
        while upto > 0 {
            let failed_at = std::cell::Cell::new(None);
            let r = self.db.transaction(|tx| {
                failed_at.set(None);
                let mut fenced: std::collections::HashMap<&str, bool> =
                    std::collections::HashMap::new();
                let mut out = Vec::with_capacity(upto);
                for (i, r) in recs[..upto].iter().enumerate() {
                    let is_fenced = match fenced.get(r.server.as_str()) {
                        Some(f) => *f,
                        None => {
                            let f = match self.check_fence(tx, &r.server) {
                                Ok(()) => false,
                                Err(StoreError::Fenced { .. }) => true,
                                Err(e) => {
                                    failed_at.set(Some(i));
                                    return Err(e);
                                }
                            };
                            fenced.insert(r.server.as_str(), f);
                            f
                        }
                    };
                    if is_fenced {
                        out.push(Written::Fenced);
                        continue;
                    }
                    match self.record_in_transaction(r, resolve_within, for_dialer) {
                        Ok(rec) => out.push(Written::Recorded(Box::new(rec))),
                        Err(e) => {
                            failed_at.set(Some(i));
                            return Err(e);
                        }
                    }
                }
                Ok(out)
            });
            match r {
                Ok(written) => return BatchWritten { written, failed },
                Err(e) => {
                    // Not at a verdict: BEGIN or COMMIT failed, and nothing is written.
                    upto = failed_at.get().unwrap_or(0);
                    failed = Some(e);
                }
            }
        }
        BatchWritten {
            written: Vec::new(),
            failed,
        }
    }

    /// The body of [`Store::record_call_marked`], inside its transaction or savepoint.
    pub(super) fn record_in_transaction(
        &self,
        r: &CallRecord,
        resolve_within: std::time::Duration,
        for_dialer: bool,
    ) -> Result<Recorded> {
        let within = resolve_within.as_secs_f64();
        let tx = &self.db;
        let mut rec = r.clone();
        if is_open_miss(&rec) {
            // A resolving call may already be stored (it ended first).
            let n = rec.caller_normalized.clone().unwrap_or_default();
            let found = tx
                .query_opt(
                    "SELECT direction, linkedid, started_at FROM calls \
                     WHERE started_at > ?2 AND started_at <= ?3 AND ( \
                       (caller_normalized = ?1 AND direction = 'inbound' AND status = 'answered') OR \
                       (callee_normalized = ?1 AND direction = 'outbound' AND status = 'answered') OR \
                       (callee_normalized = ?1 AND direction = 'callback' AND callback_outcome = 'connected')) \
                     ORDER BY started_at LIMIT 1",
                    params![n, ts_to_f64(rec.started_at), ts_to_f64(rec.ended_at) + within],
                    |row| {
                        Ok((
                            row.get::<String>(0)?,
                            row.get::<String>(1)?,
                            row.get::<f64>(2)?,
                        ))
                    },
                )
                .map_err(StoreError::sql("look for a resolving call"))?;
            if let Some((dir, lid, at)) = found {
                rec.resolved_by = Some(match dir.as_str() {
                    "inbound" => ResolvedBy::Caller,
                    "outbound" => ResolvedBy::Agent,
                    _ => ResolvedBy::Callback,
                });
                rec.resolved_at = Some(f64_to_ts(at));
                rec.resolved_by_linkedid = Some(lid);
            }
        }
        let inserted = insert(tx, &rec, for_dialer)?;
        let mut resolved = Vec::new();
        if inserted {
            if let Some((by, n)) = rec.resolves_as() {
                let started = ts_to_f64(rec.started_at);
                let rows = tx
                    .query_map(
                        "UPDATE calls SET resolved_by = ?1, resolved_at = ?2, resolved_by_linkedid = ?3 \
                         WHERE caller_normalized = ?4 AND missed = 1 AND ignored = 0 AND resolved_by IS NULL \
                           AND direction = 'inbound' AND status = 'missed' \
                           AND started_at < ?2 AND ended_at >= ?5 \
                           AND NOT (server = ?6 AND linkedid = ?7) \
                         RETURNING server, linkedid",
                        params![
                            by.as_str(),
                            started,
                            rec.linkedid,
                            n,
                            started - within,
                            rec.server,
                            rec.linkedid
                        ],
                        |row| Ok((row.get::<String>(0)?, row.get::<String>(1)?)),
                    )
                    .map_err(StoreError::sql("resolve misses"))?;
                for (server, linkedid) in rows {
                    resolved.push(Resolution {
                        server,
                        linkedid,
                        resolved_by: by,
                        resolved_at: rec.started_at,
                        resolved_by_linkedid: rec.linkedid.clone(),
                    });
                }
            }
        }
        Ok(Recorded {
            inserted,
            record: rec,
            resolved,
        })
    }

    /// Stores a verdict. A call already stored for the same server + linkedid is left as it is
    /// (replaying a capture twice, or a reconnect re-reading a call, never duplicates it).
    /// Returns whether a row was inserted.
    pub fn insert_call(&self, r: &CallRecord) -> Result<bool> {
        insert(&self.db, r, false)
    }

    /// One stored call.
    pub fn get_call(&self, server: &str, linkedid: &str) -> Result<Option<CallRecord>> {
        let sql = format!("SELECT {COLUMNS} FROM calls WHERE server = ?1 AND linkedid = ?2");
        self.db
            .query_opt(&sql, params![server, linkedid], row_to_call)
            .map_err(StoreError::sql("read call"))
    }

    /// Calls that ended in `[from, to)`, in the order they ended.
    /// Verdicts the dialer has not acted on yet (`dialer_pending`), oldest first, at most
    /// `limit`, with their row ids.
    pub fn dialer_pending_calls(&self, limit: usize) -> Result<Vec<(i64, CallRecord)>> {
        let sql = format!(
            "SELECT id, {COLUMNS} FROM calls WHERE dialer_pending = 1 ORDER BY id LIMIT ?1"
        );
        self.db
            .query_map(
                &sql,
                params![i64::try_from(limit).unwrap_or(i64::MAX)],
                |row| Ok((row.get::<i64>(0)?, row_to_call_at(row, 1)?)),
            )
            .map_err(StoreError::sql("read dialer backlog"))
    }

    /// Whether the stored verdict of (server, linkedid) still waits for the dialer; `None` when
    /// no such call is stored.
    pub fn dialer_pending(&self, server: &str, linkedid: &str) -> Result<Option<bool>> {
        self.db
            .query_opt(
                "SELECT dialer_pending FROM calls WHERE server = ?1 AND linkedid = ?2",
                params![server, linkedid],
                |r| r.get(0),
            )
            .map_err(StoreError::sql("read dialer mark"))
    }

    /// The dialer acted on this verdict.
    pub fn dialer_done(&self, server: &str, linkedid: &str) -> Result<()> {
        self.db
            .execute(
                "UPDATE calls SET dialer_pending = 0 WHERE server = ?1 AND linkedid = ?2 AND dialer_pending = 1",
                params![server, linkedid],
            )
            .map_err(StoreError::sql("clear dialer mark"))?;
        Ok(())
    }

    /// Misses of `number` that ended at or after `since` and nothing has resolved yet: while
    /// there is one, its callback task stays open.
    pub fn unresolved_misses(&self, number: &str, since: jiff::Timestamp) -> Result<u64> {
        self.db
            .query_row(
                "SELECT count(*) FROM calls WHERE caller_normalized = ?1 AND missed = 1 \
                 AND ignored = 0 AND resolved_by IS NULL AND direction = 'inbound' \
                 AND status = 'missed' AND ended_at >= ?2",
                params![number, ts_to_f64(since) - 1e-3],
                |r| r.get(0),
            )
            .map_err(StoreError::sql("count unresolved misses"))
    }

    /// Verdicts still waiting for the dialer (STATUS, tests).
    pub fn dialer_backlog(&self) -> Result<u64> {
        self.db
            .query_row(
                "SELECT count(*) FROM calls WHERE dialer_pending = 1",
                params![],
                |r| r.get(0),
            )
            .map_err(StoreError::sql("count dialer backlog"))
    }

    pub fn calls_ended_between(
        &self,
        from: jiff::Timestamp,
        to: jiff::Timestamp,
    ) -> Result<Vec<CallRecord>> {
        let sql = format!("SELECT {COLUMNS} FROM calls WHERE ended_at >= ?1 AND ended_at < ?2 ORDER BY ended_at, id");
        self.db
            .query_map(&sql, params![ts_to_f64(from), ts_to_f64(to)], row_to_call)
            .map_err(StoreError::sql("read calls"))
    }
}

/// Inserts a verdict unless (server, linkedid) is stored already; `for_dialer` marks it
/// `dialer_pending`. Whether a row was inserted.
fn insert(db: &Db, r: &CallRecord, for_dialer: bool) -> Result<bool> {
    let sql = format!(
        "INSERT INTO calls ({COLUMNS}, dialer_pending) VALUES \
         (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26) \
         ON CONFLICT (server, linkedid) DO NOTHING"
    );
    let n = db
        .execute(
            &sql,
            params![
                r.server,
                r.linkedid,
                enum_str(&r.direction),
                enum_str(&r.status),
                r.caller,
                r.caller_normalized,
                r.callee,
                r.callee_normalized,
                ts_to_f64(r.started_at),
                ts_to_f64(r.ended_at),
                r.answered_at.map(ts_to_f64),
                r.wait_secs,
                r.talk_secs,
                r.agent,
                r.missed,
                r.ignored,
                r.lost_at.map(|l| l.as_str()),
                r.hangup_by,
                r.resolved_by.map(|b| b.as_str()),
                r.resolved_at.map(ts_to_f64),
                r.resolved_by_linkedid,
                r.callback_id,
                r.callback_outcome.map(|o| o.as_str()),
                r.unknown_reason.as_ref().map(enum_str),
                r.queue,
                for_dialer,
            ],
        )
        .map_err(StoreError::sql("insert call"))?;
    Ok(n == 1)
}

/// Maps a row selected with [`COLUMNS`] (in that order).
pub(super) fn row_to_call(row: &Row) -> DbResult<CallRecord> {
    row_to_call_at(row, 0)
}

/// [`row_to_call`] with the columns starting at `base`.
pub(super) fn row_to_call_at(row: &Row, base: usize) -> DbResult<CallRecord> {
    let row = Offset { row, base };
    Ok(CallRecord {
        server: row.get(0)?,
        linkedid: row.get(1)?,
        direction: parse_enum::<Direction>(row.get(2)?).unwrap_or(Direction::Inbound),
        status: parse_enum::<Status>(row.get(3)?).unwrap_or(Status::Unknown),
        caller: row.get(4)?,
        caller_normalized: row.get(5)?,
        callee: row.get(6)?,
        callee_normalized: row.get(7)?,
        started_at: f64_to_ts(row.get(8)?),
        ended_at: f64_to_ts(row.get(9)?),
        answered_at: row.get::<Option<f64>>(10)?.map(f64_to_ts),
        wait_secs: row.get(11)?,
        talk_secs: row.get(12)?,
        agent: row.get(13)?,
        missed: row.get(14)?,
        ignored: row.get(15)?,
        lost_at: row
            .get::<Option<String>>(16)?
            .as_deref()
            .and_then(LostAt::parse),
        hangup_by: row.get(17)?,
        resolved_by: row
            .get::<Option<String>>(18)?
            .as_deref()
            .and_then(ResolvedBy::parse),
        resolved_at: row.get::<Option<f64>>(19)?.map(f64_to_ts),
        resolved_by_linkedid: row.get(20)?,
        callback_id: row.get(21)?,
        callback_outcome: row
            .get::<Option<String>>(22)?
            .as_deref()
            .and_then(CallbackOutcome::parse),
        unknown_reason: parse_enum::<UnknownReason>(row.get(23)?),
        queue: row.get(24)?,
    })
}

/// A row read from column `base` on.
struct Offset<'a> {
    row: &'a Row,
    base: usize,
}

impl Offset<'_> {
    fn get<T: FromValue>(&self, i: usize) -> DbResult<T> {
        self.row.get(self.base + i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample(linkedid: &str) -> CallRecord {
        let t = jiff::Timestamp::from_second(1_795_375_036).unwrap();
        crate::test_support::inbound_miss(linkedid, t, 10.0)
    }

    fn at(r: CallRecord, start: i64, len: i64) -> CallRecord {
        let t0 = jiff::Timestamp::from_second(1_795_375_000).unwrap();
        CallRecord {
            started_at: t0 + jiff::SignedDuration::from_secs(start),
            ended_at: t0 + jiff::SignedDuration::from_secs(start + len),
            ..r
        }
    }

    fn answered(linkedid: &str, dir: Direction) -> CallRecord {
        let mut r = sample(linkedid);
        r.direction = dir;
        r.status = Status::Answered;
        r.missed = false;
        r.lost_at = None;
        r.talk_secs = 30.0;
        if dir != Direction::Inbound {
            r.caller = Some("201".into());
            r.caller_normalized = Some("201".into());
            r.callee = Some("89161234567".into());
            r.callee_normalized = Some("79161234567".into());
        }
        if dir == Direction::Callback {
            r.callback_id = Some("cb-1".into());
            r.callback_outcome = Some(CallbackOutcome::Connected);
        }
        r
    }

    const WEEK: std::time::Duration = std::time::Duration::from_secs(7 * 86400);

    #[test]
    fn a_later_conversation_resolves_the_miss() {
        for (dir, by) in [
            (Direction::Inbound, ResolvedBy::Caller),
            (Direction::Outbound, ResolvedBy::Agent),
            (Direction::Callback, ResolvedBy::Callback),
        ] {
            crate::test_support::pg::each_engine(|db| {
                let s = db.open();
                resolves_as(&s, dir, by)
            });
        }
    }

    fn resolves_as(s: &Store, dir: Direction, by: ResolvedBy) {
        {
            let miss = at(sample("m"), 0, 10);
            let rec = s.record_call(&miss, WEEK).unwrap();
            assert!(rec.inserted && rec.resolved.is_empty());
            let r = s
                .record_call(&at(answered("r", dir), 100, 60), WEEK)
                .unwrap();
            assert_eq!(r.resolved.len(), 1, "{dir:?}");
            assert_eq!(r.resolved[0].resolved_by, by);
            let m = s.get_call("lab", "m").unwrap().unwrap();
            assert_eq!(m.resolved_by, Some(by));
            assert_eq!(m.resolved_by_linkedid.as_deref(), Some("r"));
            assert_eq!(
                m.resolved_at,
                Some(at(answered("r", dir), 100, 60).started_at)
            );
            // Replaying the resolver changes nothing.
            let again = s
                .record_call(&at(answered("r", dir), 100, 60), WEEK)
                .unwrap();
            assert!(!again.inserted && again.resolved.is_empty());
        }
    }

    /// A batch commits its verdicts together; a verdict that fails inside it is undone alone
    /// (its savepoint), the others stay; a second connection sees nothing before the commit.
    #[test]
    fn a_batch_commits_together_and_a_failing_verdict_is_undone_alone() {
        crate::test_support::pg::each_engine(|db| {
            let s = db.open();
            s.db.batch(if s.db.is_postgres() {
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $r$ BEGIN \
                 IF NEW.linkedid = 'bad' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $r$; \
                 CREATE TRIGGER refuse BEFORE INSERT ON calls FOR EACH ROW EXECUTE FUNCTION refuse();"
            } else {
                "CREATE TRIGGER refuse BEFORE INSERT ON calls WHEN NEW.linkedid = 'bad' \
                 BEGIN SELECT RAISE(ABORT, 'refused'); END"
            })
            .unwrap();
            batch_on(&s, &db.open());
        });
    }

    fn batch_on(s: &Store, other: &Store) {
        s.begin_batch().unwrap();
        s.record_call(&at(sample("m"), 0, 10), WEEK).unwrap();
        assert!(s.record_call(&at(sample("bad"), 20, 10), WEEK).is_err());
        // The resolution in the same batch sees the earlier, uncommitted miss.
        let r = s
            .record_call(&at(answered("r", Direction::Inbound), 100, 60), WEEK)
            .unwrap();
        assert_eq!(r.resolved.len(), 1);
        assert!(
            other.get_call("lab", "m").unwrap().is_none(),
            "not yet committed"
        );
        s.commit_batch().unwrap();
        let m = other.get_call("lab", "m").unwrap().unwrap();
        assert_eq!(m.resolved_by, Some(ResolvedBy::Caller));
        assert!(other.get_call("lab", "r").unwrap().is_some());
        assert!(other.get_call("lab", "bad").unwrap().is_none());
        // Without a batch every verdict is its own transaction again.
        s.commit_batch().unwrap();
        s.record_call(&at(sample("m2"), 200, 10), WEEK).unwrap();
        assert!(other.get_call("lab", "m2").unwrap().is_some());
    }

    /// A server fenced for every write; counts the fence checks.
    struct FenceOff {
        server: &'static str,
        checks: std::sync::atomic::AtomicUsize,
    }

    impl crate::store::FenceCheck for FenceOff {
        fn check(&self, _tx: &Db, server: &str) -> Result<()> {
            self.checks
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if server == self.server {
                return Err(StoreError::Fenced {
                    server: server.to_string(),
                    epoch: 1,
                });
            }
            Ok(())
        }
    }

    /// Group commit: the verdicts before a failing one are committed together (with the
    /// resolutions between them), the failing one and those after it are not; a fenced
    /// server's verdicts are skipped and said so; the fence is read once per server.
    #[test]
    fn a_group_commits_up_to_a_failing_verdict_and_skips_fenced_servers() {
        crate::test_support::pg::each_engine(|db| {
            let mut s = db.open();
            s.db.batch(if s.db.is_postgres() {
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $r$ BEGIN \
                 IF NEW.linkedid = 'bad' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $r$; \
                 CREATE TRIGGER refuse BEFORE INSERT ON calls FOR EACH ROW EXECUTE FUNCTION refuse();"
            } else {
                "CREATE TRIGGER refuse BEFORE INSERT ON calls WHEN NEW.linkedid = 'bad' \
                 BEGIN SELECT RAISE(ABORT, 'refused'); END"
            })
            .unwrap();
            let fence = std::sync::Arc::new(FenceOff {
                server: "gone",
                checks: Default::default(),
            });
            s.set_fence(fence.clone());
            let mut theirs = at(sample("x"), 5, 10);
            theirs.server = "gone".into();
            let recs = [
                at(sample("m"), 0, 10),
                theirs,
                at(answered("r", Direction::Inbound), 100, 60),
                at(sample("bad"), 200, 10),
                at(sample("after"), 300, 10),
            ];
            let b = s.record_calls(&recs, WEEK, true);
            assert_eq!(b.written.len(), 3, "{b:?}");
            assert!(matches!(&b.written[0], Written::Recorded(r) if r.inserted));
            assert_eq!(b.written[1], Written::Fenced);
            assert!(matches!(&b.written[2], Written::Recorded(r) if r.resolved.len() == 1));
            let e = b.failed.expect("the refused verdict");
            assert!(crate::store::error_chain(&e).contains("refused"), "{e}");
            // Two transactions (the whole group, then the part before the failure), each
            // reading the fence once per server.
            assert_eq!(fence.checks.load(std::sync::atomic::Ordering::Relaxed), 4);
            let other = db.open();
            let m = other.get_call("lab", "m").unwrap().unwrap();
            assert_eq!(m.resolved_by, Some(ResolvedBy::Caller));
            assert!(other.get_call("lab", "r").unwrap().is_some());
            for gone in ["x", "bad", "after"] {
                assert!(other.get_call("lab", gone).unwrap().is_none(), "{gone}");
                assert!(other.get_call("gone", gone).unwrap().is_none(), "{gone}");
            }
            let none = s.record_calls(&[], WEEK, true);
            assert!(none.written.is_empty() && none.failed.is_none());
        });
    }

    #[test]
    fn out_of_order_window_and_non_resolvers() {
        crate::test_support::pg::each_engine(|db| out_of_order_on(&db.open(), &db.open()));
    }

    fn out_of_order_on(s: &Store, s2: &Store) {
        // The resolver ended first (the customer called on another line while queued).
        s.record_call(&at(answered("r", Direction::Inbound), 5, 60), WEEK)
            .unwrap();
        let rec = s.record_call(&at(sample("m"), 0, 10), WEEK).unwrap();
        assert_eq!(rec.record.resolved_by, Some(ResolvedBy::Caller));
        assert_eq!(
            s.get_call("lab", "m").unwrap().unwrap().resolved_by,
            Some(ResolvedBy::Caller)
        );

        s.db.batch("DELETE FROM calls").unwrap();
        let s = s2;
        s.record_call(&at(sample("m"), 0, 10), WEEK).unwrap();
        // Too late (8 days), a short callback, an ignored miss: nothing resolves.
        let late = at(answered("late", Direction::Inbound), 8 * 86400, 60);
        assert!(s.record_call(&late, WEEK).unwrap().resolved.is_empty());
        let mut short = at(answered("short", Direction::Callback), 50, 10);
        short.callback_outcome = Some(CallbackOutcome::TooShort);
        assert!(s.record_call(&short, WEEK).unwrap().resolved.is_empty());
        let mut ign = at(sample("ign"), 8 * 86400 + 100, 1);
        ign.status = Status::Ignored;
        ign.ignored = true;
        s.record_call(&ign, WEEK).unwrap();
        let r = at(answered("r2", Direction::Outbound), 8 * 86400 + 200, 60);
        assert!(s.record_call(&r, WEEK).unwrap().resolved.is_empty());
        assert_eq!(s.get_call("lab", "m").unwrap().unwrap().resolved_by, None);
        assert_eq!(s.get_call("lab", "ign").unwrap().unwrap().resolved_by, None);
    }

    #[test]
    fn insert_is_idempotent_and_round_trips() {
        crate::test_support::pg::each_engine(|db| round_trips(&db.open()));
    }

    fn round_trips(s: &Store) {
        let r = sample("1795375036.4");
        assert!(s.insert_call(&r).unwrap());
        assert!(!s.insert_call(&r).unwrap());
        assert_eq!(s.get_call("lab", "1795375036.4").unwrap().unwrap(), r);
        let all = s
            .calls_ended_between(jiff::Timestamp::UNIX_EPOCH, jiff::Timestamp::MAX)
            .unwrap();
        assert_eq!(all.len(), 1);
    }
}
