//! What the CRM notifiers remember: which CRM entity (a lead, a contact) stands for a customer's
//! number, so a later event of the same number (the callback's outcome, the next miss) lands on
//! the entity the first one created or found instead of creating another. Owner: the
//! notifications work.
//!
//! Version 5 also widens the outbox's channel check to the new channels (SQLite cannot alter a
//! CHECK constraint: the table is rebuilt with its rows).

/// Version 5: CRM links, and the outbox's channels of the CRM/messenger notifiers.
pub const SCHEMA_V5: &str = "
CREATE TABLE outbox_v5 (
    id INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL,
    channel TEXT NOT NULL CHECK (channel IN ('webhook', 'email', 'bitrix24', 'amocrm', 'telegram') OR channel LIKE 'http:%'),
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
INSERT INTO outbox_v5 (id, event_id, channel, kind, payload, created_at, next_attempt_at, attempts, last_error, delivered_at, given_up_at)
    SELECT id, event_id, channel, kind, payload, created_at, next_attempt_at, attempts, last_error, delivered_at, given_up_at FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_v5 RENAME TO outbox;
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE delivered_at IS NULL AND given_up_at IS NULL;
CREATE TABLE crm_links (
    channel TEXT NOT NULL,
    number TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (channel, number)
);
";

use super::db::{params, Engine};
use super::{f64_to_ts, ts_to_f64, Result, Store, StoreError};

/// The CRM entity of a customer's number on one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrmLink {
    /// `bitrix24` or `amocrm`.
    pub channel: String,
    /// Digits only (`79161234567`).
    pub number: String,
    /// The CRM's name of the entity type (`LEAD`, `CONTACT`; `leads`, `contacts`).
    pub entity_type: String,
    pub entity_id: String,
    /// The event that created or found it.
    pub event_id: String,
    pub created_at: jiff::Timestamp,
}

impl Store {
    /// The entity linked to `number` on `channel`, if any.
    pub fn crm_link(&self, channel: &str, number: &str) -> Result<Option<CrmLink>> {
        self.db
            .query_opt(
                "SELECT channel, number, entity_type, entity_id, event_id, created_at FROM crm_links \
                 WHERE channel = ?1 AND number = ?2",
                params![channel, number],
                |r| {
                    Ok(CrmLink {
                        channel: r.get(0)?,
                        number: r.get(1)?,
                        entity_type: r.get(2)?,
                        entity_id: r.get(3)?,
                        event_id: r.get(4)?,
                        created_at: f64_to_ts(r.get(5)?),
                    })
                },
            )
            .map_err(StoreError::sql("read crm link"))
    }

    /// Whether a `missed` event of `number` (digits) waits on `channel`: a later event of the
    /// number waits for it, so that it lands on the entity the miss creates.
    pub fn missed_pending_for(&self, channel: &str, number: &str) -> Result<bool> {
        // The payload's `number`, as text: SQLite's json_extract, PostgreSQL's ->> of the
        // payload read as JSON.
        let number_of_payload = match self.db.engine() {
            Engine::Sqlite => "json_extract(payload, '$.number')",
            Engine::Postgres => "(CAST(payload AS JSONB) ->> 'number')",
        };
        self.db
            .query_row(
                &format!(
                    "SELECT EXISTS (SELECT 1 FROM outbox WHERE channel = ?1 AND kind = 'missed' \
                     AND delivered_at IS NULL AND given_up_at IS NULL \
                     AND replace({number_of_payload}, '+', '') = ?2)"
                ),
                params![channel, number],
                |r| r.get(0),
            )
            .map_err(StoreError::sql("read pending misses"))
    }

    /// Links `number` to an entity (replacing an older link: the newest entity wins).
    pub fn save_crm_link(&self, link: &CrmLink) -> Result<()> {
        self.db
            .execute(
                "INSERT INTO crm_links (channel, number, entity_type, entity_id, event_id, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                 ON CONFLICT (channel, number) DO UPDATE SET entity_type = excluded.entity_type, \
                 entity_id = excluded.entity_id, event_id = excluded.event_id, created_at = excluded.created_at",
                params![
                    link.channel,
                    link.number,
                    link.entity_type,
                    link.entity_id,
                    link.event_id,
                    ts_to_f64(link.created_at)
                ],
            )
            .map_err(StoreError::sql("save crm link"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::outbox::NewNotification;

    fn ts(s: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    #[test]
    fn links_are_per_channel_and_number_and_replaced() {
        crate::test_support::pg::each_engine(|db| {
            let s = db.open();
            assert_eq!(s.crm_link("bitrix24", "79161234567").unwrap(), None);
            let mut link = CrmLink {
                channel: "bitrix24".into(),
                number: "79161234567".into(),
                entity_type: "LEAD".into(),
                entity_id: "17".into(),
                event_id: "missed:pbx:1".into(),
                created_at: ts(0),
            };
            s.save_crm_link(&link).unwrap();
            assert_eq!(
                s.crm_link("bitrix24", "79161234567").unwrap(),
                Some(link.clone())
            );
            assert_eq!(s.crm_link("amocrm", "79161234567").unwrap(), None);
            link.entity_type = "CONTACT".into();
            link.entity_id = "5".into();
            s.save_crm_link(&link).unwrap();
            assert_eq!(
                s.crm_link("bitrix24", "79161234567")
                    .unwrap()
                    .unwrap()
                    .entity_id,
                "5"
            );
        });
    }

    #[test]
    fn version_5_keeps_the_rows_of_version_4() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        for sql in &crate::store::migrations::MIGRATIONS[..4] {
            c.execute_batch(sql).unwrap();
        }
        c.pragma_update(None, "user_version", 4).unwrap();
        c.execute(
            "INSERT INTO outbox (event_id, channel, kind, payload, created_at, next_attempt_at, attempts, last_error) \
             VALUES ('missed:a:1', 'webhook', 'missed', '{}', 1.5, 2.5, 3, 'HTTP 500')",
            [],
        )
        .unwrap();
        let db = crate::store::Db::sqlite(c);
        crate::store::migrations::migrate(&db, ":memory:").unwrap();
        let row: (String, String, f64, i64, String) = db
            .sqlite_conn()
            .unwrap()
            .query_row(
                "SELECT event_id, channel, next_attempt_at, attempts, last_error FROM outbox",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .unwrap();
        assert_eq!(
            row,
            (
                "missed:a:1".into(),
                "webhook".into(),
                2.5,
                3,
                "HTTP 500".into()
            )
        );
        // The unique key and the due index came through the rebuild.
        let indexes: i64 = db
            .sqlite_conn()
            .unwrap()
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'outbox'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(indexes, 2);
    }

    #[test]
    fn outbox_takes_the_new_channels_only() {
        crate::test_support::pg::each_engine(|db| {
            let s = db.open();
            for channel in [
                "webhook", "email", "bitrix24", "amocrm", "telegram", "http:sms",
            ] {
                let n = NewNotification {
                    event_id: "e",
                    channel,
                    kind: "missed",
                    payload: "{}",
                };
                assert!(s.enqueue_notification(&n, ts(0)).unwrap(), "{channel}");
            }
            let bad = NewNotification {
                event_id: "e",
                channel: "sms",
                kind: "missed",
                payload: "{}",
            };
            // INSERT OR IGNORE skips a row its CHECK refuses.
            assert!(!s.enqueue_notification(&bad, ts(0)).unwrap());
            assert_eq!(s.outbox_counts().unwrap().pending, 6);
        });
    }
}
