//! Append-only schema migrations keyed by `PRAGMA user_version`.
//!
//! Never edit a migration that has shipped: add a new one at the end. Migration N brings the
//! schema from version N-1 to N and runs in one transaction with the version bump, so a crash
//! mid-migration leaves the previous version intact.

use rusqlite::Connection;

use super::{Result, StoreError};

/// The migrations, in order: index 0 takes an empty database to version 1.
pub const MIGRATIONS: &[&str] = &[
    super::calls::SCHEMA_V1,
    super::tasks::SCHEMA_V2,
    super::outbox::SCHEMA_V3,
    super::calls::SCHEMA_V4,
    super::crm::SCHEMA_V5,
    // issue 14 (request): requested/owned tasks, dispositions, callback requests, dnc.
    super::request::SCHEMA_REQUEST,
    // history: imported/backfilled calls, AMI watermarks (the backfill work).
    super::history::SCHEMA_HISTORY,
    // guard (issue 14): task states expired/unknown, attempts indexed by start.
    super::tasks::SCHEMA_TASK_STATES,
    // report: calls.queue, report indexes, the report rollup and its triggers.
    super::rollup::SCHEMA_REPORT,
];

/// The version this binary brings databases to.
pub fn latest() -> i64 {
    MIGRATIONS.len() as i64
}

pub(super) fn migrate(conn: &mut Connection, path: &str) -> Result<()> {
    let found: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(StoreError::sql("read schema version"))?;
    if found > latest() {
        return Err(StoreError::TooNew {
            path: path.to_string(),
            found,
            known: latest(),
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = i as i64 + 1;
        let err = |source| StoreError::Migration { version, source };
        // IMMEDIATE takes the write lock first; the version is read again under it, so two
        // processes opening a new database at once (the daemon and a `perezvon` command)
        // migrate it once, one after the other, instead of both running step N.
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        let now: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(err)?;
        if now >= version {
            continue;
        }
        tx.execute_batch(sql).map_err(err)?;
        tx.pragma_update(None, "user_version", version)
            .map_err(err)?;
        tx.commit().map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_in_memory_step_by_step_and_is_idempotent() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, ":memory:").unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, latest());
        migrate(&mut conn, ":memory:").unwrap();
        // Each prefix of the list applies on its own too (what an older binary left behind).
        for n in 1..=MIGRATIONS.len() {
            let mut c = Connection::open_in_memory().unwrap();
            for sql in &MIGRATIONS[..n] {
                c.execute_batch(sql).unwrap();
            }
            c.pragma_update(None, "user_version", n as i64).unwrap();
            migrate(&mut c, ":memory:").unwrap();
        }
    }

    #[test]
    fn two_processes_opening_a_new_database_at_once_migrate_it_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let mut c = Connection::open(&path).unwrap();
                    c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
                    migrate(&mut c, "p.db")
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
        let c = Connection::open(&path).unwrap();
        let v: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, latest());
    }

    #[test]
    fn newer_database_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", latest() + 1)
            .unwrap();
        assert!(matches!(
            migrate(&mut conn, "x"),
            Err(StoreError::TooNew { .. })
        ));
    }
}
