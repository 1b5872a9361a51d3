//! Notifications waiting for delivery: the durable outbox. Owner: the notifications work.
//!
//! One row per (event, channel). Rows are written by the process that stores the verdict, right
//! after it, and read by the delivery loop on its own connection; a receiver that is down only
//! delays rows, it never loses them. `event_id` is deterministic (`missed:<server>:<linkedid>`),
//! so enqueueing the same event twice (a replay, a restart) is a no-op.

/// Version 3: the durable notification outbox.
pub const SCHEMA_V3: &str = "
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL,
    channel TEXT NOT NULL CHECK (channel IN ('webhook', 'email')),
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL,
    next_attempt_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    delivered_at REAL,
    given_up_at REAL,
    UNIQUE (event_id, channel)
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE delivered_at IS NULL AND given_up_at IS NULL;
";

use super::db::{params, Engine};
use super::{f64_to_ts, ts_to_f64, Result, Store, StoreError};

/// A notification to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNotification<'a> {
    pub event_id: &'a str,
    /// `webhook`, `email`, `bitrix24`, `amocrm`, `telegram` or `http:<name>`.
    pub channel: &'a str,
    /// `missed`, `resolved` or `callback`.
    pub kind: &'a str,
    /// The JSON body (what the webhook posts; the e-mail is rendered from it).
    pub payload: &'a str,
}

/// A row waiting for delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxItem {
    pub id: i64,
    pub event_id: String,
    pub channel: String,
    pub kind: String,
    pub payload: String,
    pub created_at: jiff::Timestamp,
    pub next_attempt_at: jiff::Timestamp,
    /// Attempts made so far (0 before the first).
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// Counts of the outbox by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxCounts {
    pub pending: u64,
    pub delivered: u64,
    pub given_up: u64,
}

impl Store {
    /// Adds a notification, due at once. Returns false when the same event was already queued for
    /// this channel (delivered or not): an event is never sent twice because it was enqueued twice.
    /// A channel the outbox's CHECK refuses is skipped too (false), as SQLite's `INSERT OR
    /// IGNORE` did: it is tested here, so that a PostgreSQL transaction around the call is not
    /// aborted by the refused row.
    pub fn enqueue_notification(&self, n: &NewNotification, now: jiff::Timestamp) -> Result<bool> {
        if !channel_allowed(n.channel, self.db.engine()) {
            return Ok(false);
        }
        let t = ts_to_f64(now);
        let rows = self
            .db
            .execute(
                "INSERT INTO outbox (event_id, channel, kind, payload, created_at, next_attempt_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5) ON CONFLICT DO NOTHING",
                params![n.event_id, n.channel, n.kind, n.payload, t],
            )
            .map_err(StoreError::sql("enqueue notification"))?;
        Ok(rows == 1)
    }

    /// Up to `limit` undelivered rows due at `now`, oldest first.
    pub fn due_notifications(&self, now: jiff::Timestamp, limit: usize) -> Result<Vec<OutboxItem>> {
        self.due_notifications_on(None, now, limit)
    }

    /// Like [`Store::due_notifications`], for one channel only when `channel` is given.
    pub fn due_notifications_on(
        &self,
        channel: Option<&str>,
        now: jiff::Timestamp,
        limit: usize,
    ) -> Result<Vec<OutboxItem>> {
        self.db
            .query_map(
                "SELECT id, event_id, channel, kind, payload, created_at, next_attempt_at, attempts, last_error \
                 FROM outbox WHERE delivered_at IS NULL AND given_up_at IS NULL AND next_attempt_at <= ?1 \
                 AND (CAST(?3 AS TEXT) IS NULL OR channel = ?3) \
                 ORDER BY next_attempt_at, id LIMIT ?2",
                params![ts_to_f64(now), limit as i64, channel],
                |r| {
                    Ok(OutboxItem {
                        id: r.get(0)?,
                        event_id: r.get(1)?,
                        channel: r.get(2)?,
                        kind: r.get(3)?,
                        payload: r.get(4)?,
                        created_at: f64_to_ts(r.get(5)?),
                        next_attempt_at: f64_to_ts(r.get(6)?),
                        attempts: r.get::<i64>(7)?.clamp(0, i64::from(u32::MAX)) as u32,
                        last_error: r.get(8)?,
                    })
                },
            )
            .map_err(StoreError::sql("read due notifications"))
    }

    /// When the next undelivered row falls due, if any.
    pub fn next_notification_at(&self) -> Result<Option<jiff::Timestamp>> {
        self.next_notification_at_on(None)
    }

    /// Like [`Store::next_notification_at`], for one channel only when `channel` is given.
    pub fn next_notification_at_on(
        &self,
        channel: Option<&str>,
    ) -> Result<Option<jiff::Timestamp>> {
        self.db
            .query_opt(
                "SELECT MIN(next_attempt_at) FROM outbox WHERE delivered_at IS NULL AND given_up_at IS NULL \
                 AND (CAST(?1 AS TEXT) IS NULL OR channel = ?1)",
                params![channel],
                |r| r.get::<Option<f64>>(0),
            )
            .map(|v| v.flatten().map(f64_to_ts))
            .map_err(StoreError::sql("read next notification time"))
    }

    pub fn mark_notification_delivered(&self, id: i64, now: jiff::Timestamp) -> Result<()> {
        self.db
            .execute(
                "UPDATE outbox SET delivered_at = ?2, attempts = attempts + 1, last_error = NULL WHERE id = ?1",
                params![id, ts_to_f64(now)],
            )
            .map_err(StoreError::sql("mark notification delivered"))?;
        Ok(())
    }

    /// Records a failed attempt and when to try again.
    pub fn reschedule_notification(
        &self,
        id: i64,
        next_attempt_at: jiff::Timestamp,
        error: &str,
    ) -> Result<()> {
        self.db
            .execute(
                "UPDATE outbox SET next_attempt_at = ?2, attempts = attempts + 1, last_error = ?3 WHERE id = ?1",
                params![id, ts_to_f64(next_attempt_at), error],
            )
            .map_err(StoreError::sql("reschedule notification"))?;
        Ok(())
    }

    /// Records a last failed attempt: the row stays for inspection but is never retried.
    pub fn give_up_notification(&self, id: i64, now: jiff::Timestamp, error: &str) -> Result<()> {
        self.db
            .execute(
                "UPDATE outbox SET given_up_at = ?2, attempts = attempts + 1, last_error = ?3 WHERE id = ?1",
                params![id, ts_to_f64(now), error],
            )
            .map_err(StoreError::sql("give up notification"))?;
        Ok(())
    }

    /// Gives up every pending row of a channel not in `keep` (a channel removed from the config:
    /// its rows would otherwise wait forever). Returns how many rows were given up.
    pub fn give_up_channels_except(
        &self,
        keep: &[&str],
        now: jiff::Timestamp,
        error: &str,
    ) -> Result<usize> {
        let pending: Vec<(i64, String)> = self
            .db
            .query_map(
                "SELECT id, channel FROM outbox WHERE delivered_at IS NULL AND given_up_at IS NULL",
                params![],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(StoreError::sql("read pending notifications"))?;
        let mut n = 0;
        for (id, channel) in pending {
            if !keep.contains(&channel.as_str()) {
                self.give_up_notification(id, now, error)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// The missed calls a call resolved (`resolved_by_linkedid`), read for their `resolved` event.
    pub fn misses_resolved_by(
        &self,
        _server: &str,
        linkedid: &str,
    ) -> Result<Vec<crate::calls::record::CallRecord>> {
        // Resolution matches numbers across servers, so the miss may live on another server.
        let keys: Vec<(String, String)> = self
            .db
            .query_map(
                "SELECT server, linkedid FROM calls WHERE resolved_by_linkedid = ?1 AND missed = 1",
                params![linkedid],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(StoreError::sql("read resolved misses"))?;
        let mut out = Vec::with_capacity(keys.len());
        for (server, lid) in keys {
            if let Some(c) = self.get_call(&server, &lid)? {
                out.push(c);
            }
        }
        Ok(out)
    }

    pub fn outbox_counts(&self) -> Result<OutboxCounts> {
        self.db
            .query_row(
                "SELECT \
                   COALESCE(SUM(CASE WHEN delivered_at IS NULL AND given_up_at IS NULL THEN 1 ELSE 0 END), 0), \
                   COALESCE(SUM(CASE WHEN delivered_at IS NOT NULL THEN 1 ELSE 0 END), 0), \
                   COALESCE(SUM(CASE WHEN given_up_at IS NOT NULL THEN 1 ELSE 0 END), 0) FROM outbox",
                params![],
                |r| {
                    Ok(OutboxCounts {
                        pending: r.get::<i64>(0)?.max(0) as u64,
                        delivered: r.get::<i64>(1)?.max(0) as u64,
                        given_up: r.get::<i64>(2)?.max(0) as u64,
                    })
                },
            )
            .map_err(StoreError::sql("count outbox"))
    }

    /// Deletes delivered and given-up rows older than `before` (housekeeping).
    pub fn prune_outbox(&self, before: jiff::Timestamp) -> Result<usize> {
        self.db
            .execute(
                "DELETE FROM outbox WHERE (delivered_at IS NOT NULL AND delivered_at < ?1) \
                 OR (given_up_at IS NOT NULL AND given_up_at < ?1)",
                params![ts_to_f64(before)],
            )
            .map(|n| n as usize)
            .map_err(StoreError::sql("prune outbox"))
    }
}

/// The outbox's channel CHECK (version 5, [`super::crm::SCHEMA_V5`]) as each engine applies
/// it: the named channels, or `http:<name>` (`LIKE 'http:%'`, which SQLite compares
/// case-insensitively and PostgreSQL does not).
fn channel_allowed(channel: &str, engine: Engine) -> bool {
    const NAMED: [&str; 5] = ["webhook", "email", "bitrix24", "amocrm", "telegram"];
    if NAMED.contains(&channel) {
        return true;
    }
    let prefix = channel.get(..5);
    match engine {
        Engine::Sqlite => prefix.is_some_and(|p| p.eq_ignore_ascii_case("http:")),
        Engine::Postgres => prefix == Some("http:"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn n<'a>(id: &'a str, channel: &'a str) -> NewNotification<'a> {
        NewNotification {
            event_id: id,
            channel,
            kind: "missed",
            payload: "{}",
        }
    }

    #[test]
    fn enqueue_is_idempotent_per_channel() {
        crate::test_support::pg::each_engine(|db| {
            let s = db.open();
            assert!(s
                .enqueue_notification(&n("missed:a:1", "webhook"), ts(0))
                .unwrap());
            assert!(!s
                .enqueue_notification(&n("missed:a:1", "webhook"), ts(5))
                .unwrap());
            assert!(s
                .enqueue_notification(&n("missed:a:1", "email"), ts(5))
                .unwrap());
            assert_eq!(s.outbox_counts().unwrap().pending, 2);
        });
    }

    #[test]
    fn per_channel_queries_and_removed_channels() {
        crate::test_support::pg::each_engine(|db| {
            let s = db.open();
            s.enqueue_notification(&n("e1", "webhook"), ts(0)).unwrap();
            s.enqueue_notification(&n("e1", "email"), ts(1)).unwrap();
            let due = s.due_notifications_on(Some("email"), ts(5), 10).unwrap();
            assert_eq!(due.len(), 1);
            assert_eq!(due[0].channel, "email");
            assert_eq!(
                s.next_notification_at_on(Some("email")).unwrap(),
                Some(ts(1))
            );
            assert_eq!(s.next_notification_at_on(None).unwrap(), Some(ts(0)));
            assert_eq!(
                s.give_up_channels_except(&["webhook"], ts(9), "removed")
                    .unwrap(),
                1
            );
            assert!(s
                .due_notifications_on(Some("email"), ts(9), 10)
                .unwrap()
                .is_empty());
            assert_eq!(s.due_notifications(ts(9), 10).unwrap().len(), 1);
        });
    }

    #[test]
    fn due_reschedule_deliver_give_up() {
        crate::test_support::pg::each_engine(|db| {
            let s = db.open();
            s.enqueue_notification(&n("e1", "webhook"), ts(0)).unwrap();
            s.enqueue_notification(&n("e2", "webhook"), ts(1)).unwrap();
            assert!(s.due_notifications(ts(-1), 10).unwrap().is_empty());
            let due = s.due_notifications(ts(1), 10).unwrap();
            assert_eq!(due.len(), 2);
            assert_eq!(due[0].event_id, "e1");
            assert_eq!(due[0].attempts, 0);

            s.reschedule_notification(due[0].id, ts(60), "HTTP 500")
                .unwrap();
            s.mark_notification_delivered(due[1].id, ts(2)).unwrap();
            assert!(s.due_notifications(ts(59), 10).unwrap().is_empty());
            assert_eq!(s.next_notification_at().unwrap(), Some(ts(60)));
            let again = s.due_notifications(ts(60), 10).unwrap();
            assert_eq!(again.len(), 1);
            assert_eq!(again[0].attempts, 1);
            assert_eq!(again[0].last_error.as_deref(), Some("HTTP 500"));

            s.give_up_notification(again[0].id, ts(61), "refused")
                .unwrap();
            assert!(s.due_notifications(ts(1000), 10).unwrap().is_empty());
            assert_eq!(s.next_notification_at().unwrap(), None);
            assert_eq!(
                s.outbox_counts().unwrap(),
                OutboxCounts {
                    pending: 0,
                    delivered: 1,
                    given_up: 1
                }
            );
            assert_eq!(s.prune_outbox(ts(100)).unwrap(), 2);
        });
    }
}
