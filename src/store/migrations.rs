//! Append-only schema migrations keyed by `PRAGMA user_version`.
//!
//! Never edit a migration that has shipped: add a new one at the end. Migration N brings the
//! schema from version N-1 to N and runs in one transaction with the version bump, so a crash
//! mid-migration leaves the previous version intact.

use super::db::{self, params, Db, DbResult, Engine};
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
    // cluster (issue 11): the nodes' heartbeats and the server leases.
    super::leases::SCHEMA_CLUSTER,
    // the 200-server bench: resolved misses by their resolving call.
    super::calls::SCHEMA_RESOLVED_INDEX,
];

/// The version this binary brings databases to.
pub fn latest() -> i64 {
    MIGRATIONS.len() as i64
}

/// Migration `version` (from 1) in `engine`'s dialect: the SQLite text, with its types mapped
/// for PostgreSQL ([`db::ddl_for`]) unless the step has its own PostgreSQL text.
pub fn step_sql(version: i64, engine: Engine) -> String {
    let i = (version - 1) as usize;
    match engine {
        Engine::Sqlite => MIGRATIONS[i].to_string(),
        Engine::Postgres => match postgres_text(version) {
            Some(t) => t.to_string(),
            None => db::ddl_for(MIGRATIONS[i], Engine::Postgres),
        },
    }
}

/// The steps whose PostgreSQL text is not a type mapping of the SQLite one (triggers,
/// SQLite-only table rebuilds).
fn postgres_text(version: i64) -> Option<&'static str> {
    POSTGRES_TEXT
        .iter()
        .find(|(v, _)| *v == version)
        .map(|(_, t)| *t)
}

/// (version, PostgreSQL text) for the steps that need their own.
const POSTGRES_TEXT: &[(i64, &str)] = &[
    (8, super::tasks::SCHEMA_TASK_STATES_PG),
    (9, super::rollup::SCHEMA_REPORT_PG),
];

/// The schema version recorded in the database (0: empty).
pub fn version(db: &Db) -> DbResult<i64> {
    match db.engine() {
        Engine::Sqlite => db.query_row("PRAGMA user_version", params![], |r| r.get(0)),
        Engine::Postgres => Ok(db
            .query_opt(
                "SELECT version FROM perezvon_schema WHERE id = 1",
                params![],
                |r| r.get(0),
            )?
            .unwrap_or(0)),
    }
}

/// Every PostgreSQL client of one database takes this advisory lock to migrate.
const PG_MIGRATION_LOCK: i64 = 0x7065_7265_7a76;

pub(super) fn migrate(db: &Db, path: &str) -> Result<()> {
    if !db.is_postgres() {
        return migrate_steps(db, path);
    }
    // A session lock, taken before any transaction begins: a lock taken inside a SERIALIZABLE
    // transaction would come after its snapshot, and the version read under it could be
    // stale (two clients starting together would both run step 1).
    db.query_row(
        "SELECT pg_advisory_lock(?1)",
        params![PG_MIGRATION_LOCK],
        |_| Ok(()),
    )
    .map_err(|source| StoreError::Migration { version: 0, source })?;
    let r = migrate_steps(db, path);
    let _ = db.query_row(
        "SELECT pg_advisory_unlock(?1)",
        params![PG_MIGRATION_LOCK],
        |_| Ok(()),
    );
    r
}

fn migrate_steps(db: &Db, path: &str) -> Result<()> {
    if db.is_postgres() {
        // The version table itself.
        db.transaction(|tx| {
            tx.batch(
                "CREATE TABLE IF NOT EXISTS perezvon_schema (id BIGINT PRIMARY KEY CHECK (id = 1), version BIGINT NOT NULL);
                 INSERT INTO perezvon_schema VALUES (1, 0) ON CONFLICT (id) DO NOTHING;",
            )
        })
        .map_err(|source| StoreError::Migration { version: 0, source })?;
    }
    let found = version(db).map_err(StoreError::sql("read schema version"))?;
    if found > latest() {
        return Err(StoreError::TooNew {
            path: path.to_string(),
            found,
            known: latest(),
        });
    }
    for version in (found + 1)..=latest() {
        // The write lock (SQLite: BEGIN IMMEDIATE; PostgreSQL: the advisory lock, held by
        // `migrate`) first; the version is read again under it, so two processes opening a new
        // database at once (the daemon and a `perezvon` command) migrate it once, one after the
        // other, instead of both running step N.
        db.transaction(|tx| -> DbResult<()> {
            if self::version(tx)? >= version {
                return Ok(());
            }
            tx.batch(&step_sql(version, tx.engine()))?;
            match tx.engine() {
                Engine::Sqlite => tx.batch(&format!("PRAGMA user_version = {version}")),
                Engine::Postgres => tx
                    .execute(
                        "UPDATE perezvon_schema SET version = ?1 WHERE id = 1",
                        params![version],
                    )
                    .map(|_| ()),
            }
        })
        .map_err(|source| StoreError::Migration { version, source })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    fn sqlite_db(c: Connection) -> Db {
        c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
        Db::sqlite(c)
    }

    #[test]
    fn migrates_in_memory_step_by_step_and_is_idempotent() {
        let db = sqlite_db(Connection::open_in_memory().unwrap());
        migrate(&db, ":memory:").unwrap();
        assert_eq!(version(&db).unwrap(), latest());
        migrate(&db, ":memory:").unwrap();
        // Each prefix of the list applies on its own too (what an older binary left behind).
        for n in 1..=MIGRATIONS.len() {
            let c = Connection::open_in_memory().unwrap();
            for sql in &MIGRATIONS[..n] {
                c.execute_batch(sql).unwrap();
            }
            c.pragma_update(None, "user_version", n as i64).unwrap();
            let db = sqlite_db(c);
            migrate(&db, ":memory:").unwrap();
        }
    }

    #[test]
    fn postgres_migrates_step_by_step_and_is_idempotent() {
        let Some(url) = crate::test_support::pg::fresh_url() else {
            return;
        };
        let db = Db::postgres(&url, "perezvon-test").unwrap();
        migrate(&db, "pg").unwrap();
        assert_eq!(version(&db).unwrap(), latest());
        migrate(&db, "pg").unwrap();
        // What an older binary left behind: the first steps only.
        let Some(url) = crate::test_support::pg::fresh_url() else {
            return;
        };
        let db = Db::postgres(&url, "perezvon-test").unwrap();
        db.batch("CREATE TABLE perezvon_schema (id BIGINT PRIMARY KEY CHECK (id = 1), version BIGINT NOT NULL); INSERT INTO perezvon_schema VALUES (1, 2);").unwrap();
        for v in 1..=2 {
            db.batch(&step_sql(v, Engine::Postgres)).unwrap();
        }
        migrate(&db, "pg").unwrap();
        assert_eq!(version(&db).unwrap(), latest());
    }

    #[test]
    fn two_processes_opening_a_new_database_at_once_migrate_it_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        let pg = crate::test_support::pg::fresh_url();
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let path = path.clone();
                let pg = pg.clone();
                std::thread::spawn(move || {
                    let db = sqlite_db(Connection::open(&path).unwrap());
                    migrate(&db, "p.db")?;
                    if let Some(url) = pg {
                        let db = Db::postgres(&url, &format!("m{i}")).unwrap();
                        migrate(&db, "pg")?;
                    }
                    Ok::<(), StoreError>(())
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
        let db = sqlite_db(Connection::open(&path).unwrap());
        assert_eq!(version(&db).unwrap(), latest());
        if let Some(url) = pg {
            let db = Db::postgres(&url, "check").unwrap();
            assert_eq!(version(&db).unwrap(), latest());
        }
    }

    #[test]
    fn newer_database_is_refused() {
        let conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", latest() + 1)
            .unwrap();
        assert!(matches!(
            migrate(&Db::sqlite(conn), "x"),
            Err(StoreError::TooNew { .. })
        ));
    }
}
