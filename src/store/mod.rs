//! SQLite behind typed methods. All SQL of perezvon lives under this module.
//!
//! One [`Store`] per connection. The file is in WAL mode with `synchronous = NORMAL`: a committed
//! transaction survives a process crash (and, with WAL, a power loss costs at most the last
//! transactions, never consistency). Migrations are append-only and keyed by `PRAGMA user_version`
//! ([`migrations`]); a database newer than this binary is refused rather than guessed at.
//!
//! - [`calls`]: call verdicts (one row per server + linkedid) and resolution of earlier misses.
//! - [`tasks`]: callback tasks (one open task per number) and their attempts.
//! - [`outbox`]: notifications waiting for delivery.
//! - [`crm`]: which CRM entity stands for a number (for the CRM notifiers).
//! - [`request`]: requested and owned callbacks, dispositions, the do-not-call list.
//! - [`history`]: imported and backfilled calls, the last AMI event per server, retention,
//!   a customer's data by number (export, forget).
//! - [`report`]: read-only queries of `perezvon missed` and `perezvon report`.
//! - [`console`]: what the web console reads (filtered misses, a customer's history) and the
//!   supervisor's "call now".
//! - [`rollup`]: the report's sums per quarter hour and per queue / agent / DID, kept by triggers.

pub mod calls;
pub mod console;
pub mod crm;
pub mod db;
pub mod history;
pub mod leases;
pub mod migrations;
pub mod outbox;
pub mod report;
pub mod request;
pub mod rollup;
pub mod tasks;

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

pub use db::{Db, DbError};

/// A storage failure, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {path}")]
    Open {
        path: String,
        #[source]
        source: DbError,
    },
    #[error("database {path} has schema version {found}, newer than this perezvon ({known}); upgrade perezvon")]
    TooNew {
        path: String,
        found: i64,
        known: i64,
    },
    #[error("migration to schema version {version} failed")]
    Migration {
        version: i64,
        #[source]
        source: DbError,
    },
    #[error("{what}")]
    Sql {
        what: &'static str,
        #[source]
        source: DbError,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{count} call verdicts are waiting for a database that keeps failing ({error}); stopping rather than dropping more")]
    HeldFull { count: usize, error: String },
    /// A write for a server whose lease this node no longer holds (another node took it over).
    #[error("server {server}: this node's lease (epoch {epoch}) is no longer valid; another node owns it")]
    Fenced { server: String, epoch: i64 },
}

/// An error with its sources, on one line (logs and STATUS).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}

impl StoreError {
    fn db_source(&self) -> Option<&DbError> {
        match self {
            StoreError::Open { source, .. }
            | StoreError::Migration { source, .. }
            | StoreError::Sql { source, .. } => Some(source),
            _ => None,
        }
    }

    /// The database cannot be written (opened or mounted read-only, no permission, a
    /// PostgreSQL standby or read-only transaction).
    pub fn is_read_only(&self) -> bool {
        match self.db_source() {
            Some(DbError::Sqlite(rusqlite::Error::SqliteFailure(f, _))) => {
                f.code == rusqlite::ErrorCode::ReadOnly
            }
            Some(e) => e.sqlstate() == Some("25006"),
            None => false,
        }
    }

    /// A database that can never work as it is (read-only, corrupt, not a database, newer than
    /// this binary; on PostgreSQL: no such database, bad credentials, no privilege): restarting
    /// will not help, the operator must act (exit code 78).
    pub fn is_permanent(&self) -> bool {
        use rusqlite::ErrorCode as C;
        if matches!(self, StoreError::TooNew { .. }) {
            return true;
        }
        match self.db_source() {
            Some(DbError::Sqlite(rusqlite::Error::SqliteFailure(f, _))) => matches!(
                f.code,
                C::ReadOnly
                    | C::DatabaseCorrupt
                    | C::NotADatabase
                    | C::CannotOpen
                    | C::PermissionDenied
                    | C::AuthorizationForStatementDenied
            ),
            Some(e) => matches!(
                e.sqlstate(),
                Some("25006" | "3D000" | "28000" | "28P01" | "42501")
            ),
            None => false,
        }
    }

    /// A unique index refused the row (both engines).
    pub fn is_unique_violation(&self) -> bool {
        self.db_source().is_some_and(DbError::is_unique_violation)
    }

    /// A closure mapping a database error to [`StoreError::Sql`] saying what was being done.
    pub(crate) fn sql<E: Into<DbError>>(what: &'static str) -> impl FnOnce(E) -> StoreError {
        move |source| StoreError::Sql {
            what,
            source: source.into(),
        }
    }
}

impl From<DbError> for StoreError {
    fn from(source: DbError) -> Self {
        StoreError::Sql {
            what: "database",
            source,
        }
    }
}

impl db::AsDbError for StoreError {
    fn as_db_error(&self) -> Option<&DbError> {
        self.db_source()
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Where a store lives: a SQLite file (the embedded default) or a PostgreSQL database.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    Sqlite(std::path::PathBuf),
    /// A `postgres://` (or `postgresql://`) URL.
    Postgres(String),
}

impl Location {
    /// `postgres://...` and `postgresql://...` name PostgreSQL; anything else is a SQLite path.
    pub fn parse(s: &str) -> Location {
        let t = s.trim();
        if t.starts_with("postgres://") || t.starts_with("postgresql://") {
            Location::Postgres(t.to_string())
        } else {
            Location::Sqlite(std::path::PathBuf::from(s))
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Location::Postgres(_))
    }
}

/// True when `path` (as `--db` takes it) names a database that may exist: a SQLite file that
/// exists, or any PostgreSQL URL (connecting tells).
pub fn may_exist(path: &Path) -> bool {
    path.to_str()
        .is_some_and(|s| Location::parse(s).is_postgres())
        || path.exists()
}

impl Location {
    /// The location as `--db` takes it (a path, or the URL in a path).
    pub fn as_arg(&self) -> std::path::PathBuf {
        match self {
            Location::Sqlite(p) => p.clone(),
            Location::Postgres(u) => std::path::PathBuf::from(u),
        }
    }
}

/// The URL with its password replaced by `***` (for logs and errors).
pub fn redact_url(url: &str) -> String {
    // postgres://user:password@host/db -> postgres://user:***@host/db
    if let Some((scheme, rest)) = url.split_once("://") {
        let (auth, tail) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if let Some((cred, host)) = auth.rsplit_once('@') {
            if let Some((user, _)) = cred.split_once(':') {
                return format!("{scheme}://{user}:***@{host}{tail}");
            }
        }
    }
    url.split("password=").next().unwrap_or(url).to_string()
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite(p) => write!(f, "{}", p.display()),
            Location::Postgres(u) => f.write_str(&redact_url(u)),
        }
    }
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Location({self})")
    }
}

/// Parses a `postgres://` URL into the driver's configuration; the error says what is wrong.
pub fn pg_config(url: &str) -> std::result::Result<tokio_postgres::Config, String> {
    url.parse::<tokio_postgres::Config>()
        .map_err(|e| error_chain(&e))
}

/// What fences a node's writes (several nodes on one PostgreSQL): run inside the write
/// transaction for a server, it fails with [`StoreError::Fenced`] unless this node still holds
/// that server's lease with the epoch it acts on.
pub trait FenceCheck: Send + Sync {
    fn check(&self, tx: &Db, server: &str) -> Result<()>;
}

/// A connection to perezvon's database: SQLite (the embedded default) or PostgreSQL.
pub struct Store {
    pub(crate) db: Db,
    path: String,
    /// The lease epochs this node's writes are fenced by (several nodes); `None`: not fenced.
    fence: Option<std::sync::Arc<dyn FenceCheck>>,
    /// The server whose lease fences the callback writes of this connection (the dialer's:
    /// the callback server); `None`: they are not fenced.
    attempts_via: Option<String>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("engine", &self.db.engine())
            .finish()
    }
}

impl Store {
    /// Opens the store named by `path`, as `--db` takes it: a `postgres://` URL opens
    /// PostgreSQL, anything else is a SQLite file (created if needed). The schema is brought
    /// up to date either way.
    pub fn open(path: &Path) -> Result<Store> {
        match path.to_str().map(Location::parse) {
            Some(l @ Location::Postgres(_)) => Self::open_location(&l),
            _ => Self::open_sqlite(path),
        }
    }

    /// Opens (creating if needed) a SQLite database file and brings its schema up to date.
    pub fn open_sqlite(path: &Path) -> Result<Store> {
        let name = path.display().to_string();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                std::fs::create_dir_all(dir).map_err(|e| StoreError::Open {
                    path: name.clone(),
                    source: DbError::Sqlite(rusqlite::Error::ToSqlConversionFailure(Box::new(e))),
                })?;
            }
        }
        let conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: name.clone(),
            source: source.into(),
        })?;
        Self::init_sqlite(conn, name)
    }

    /// Opens the store at `location`: a SQLite file or a PostgreSQL database (whose schema is
    /// brought up to date the same way).
    pub fn open_location(location: &Location) -> Result<Store> {
        Self::open_named(location, "perezvon")
    }

    /// [`Store::open_location`]; on PostgreSQL `application_name` names the connection in
    /// `pg_stat_activity` (`perezvon/ingest`, `perezvon/dialer`, ...).
    pub fn open_named(location: &Location, application_name: &str) -> Result<Store> {
        match location {
            Location::Sqlite(p) => Self::open_sqlite(p),
            Location::Postgres(url) => {
                let path = redact_url(url);
                let db =
                    Db::postgres(url, application_name).map_err(|source| StoreError::Open {
                        path: path.clone(),
                        source,
                    })?;
                let store = Store {
                    db,
                    path,
                    fence: None,
                    attempts_via: None,
                };
                migrations::migrate(&store.db, &store.path)?;
                Ok(store)
            }
        }
    }

    /// A private in-memory database (tests, `replay` without `--db`).
    pub fn open_in_memory() -> Result<Store> {
        let conn = Connection::open_in_memory().map_err(|source| StoreError::Open {
            path: ":memory:".into(),
            source: source.into(),
        })?;
        Self::init_sqlite(conn, ":memory:".into())
    }

    fn init_sqlite(conn: Connection, path: String) -> Result<Store> {
        let open_err = |source: rusqlite::Error| StoreError::Open {
            path: path.clone(),
            source: source.into(),
        };
        // Another process (the CLI while the daemon runs) may hold a write lock for a moment.
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        conn.set_prepared_statement_cache_capacity(64);
        // Every transaction of perezvon writes. A deferred one that reads first cannot be promoted
        // once another connection (the CLI, the dialer beside the pipeline) has written: SQLite
        // answers SQLITE_BUSY_SNAPSHOT at once, past the busy timeout. `Db` begins IMMEDIATE:
        // the write lock first, so the busy timeout applies instead.
        let store = Store {
            db: Db::sqlite(conn),
            path,
            fence: None,
            attempts_via: None,
        };
        migrations::migrate(&store.db, &store.path)?;
        Ok(store)
    }

    /// The engine behind this store.
    pub fn engine(&self) -> db::Engine {
        self.db.engine()
    }

    /// Fences this store's writes for a server by this node's lease on it (several nodes).
    pub fn set_fence(&mut self, fence: std::sync::Arc<dyn FenceCheck>) {
        self.fence = Some(fence);
    }

    /// Fences this connection's callback attempt writes by `server`'s lease (the server the
    /// Originates go through): a node that lost it cannot start or settle an attempt.
    pub fn fence_attempts_by(&mut self, server: &str) {
        self.attempts_via = Some(server.to_string());
    }

    /// Inside a callback attempt's write transaction: [`Store::check_fence`] of the server set
    /// by [`Store::fence_attempts_by`].
    pub(crate) fn check_attempt_fence(&self, tx: &Db) -> Result<()> {
        match &self.attempts_via {
            Some(s) => self.check_fence(tx, s),
            None => Ok(()),
        }
    }

    /// Inside a write transaction for `server`: fails with [`StoreError::Fenced`] unless this
    /// node still holds the server's lease with the epoch it acts on (nothing when unfenced).
    pub(crate) fn check_fence(&self, tx: &Db, server: &str) -> Result<()> {
        match &self.fence {
            Some(f) => f.check(tx, server),
            None => Ok(()),
        }
    }

    /// Fails unless this connection can write: a read-only file or directory is found at
    /// start-up rather than at the first verdict.
    pub fn check_writable(&self) -> Result<()> {
        let probe = match self.db.engine() {
            db::Engine::Sqlite => {
                "CREATE TABLE IF NOT EXISTS write_probe (x); DROP TABLE write_probe;"
            }
            db::Engine::Postgres => {
                "CREATE TEMP TABLE write_probe (x BIGINT); INSERT INTO write_probe VALUES (1); DROP TABLE write_probe;"
            }
        };
        self.db
            .transaction(|tx| tx.batch(probe))
            .map_err(StoreError::sql("check that the database is writable"))
    }

    /// Opens a batch: the verdicts recorded until [`Store::commit_batch`] share one
    /// transaction (each its own savepoint), so a bulk writer (`perezvon replay`) pays one
    /// commit per batch instead of one per call. What is not committed is lost on a crash:
    /// a writer shows a verdict only after the batch holding it committed. The daemon's group
    /// commit is [`Store::record_calls`] instead: each verdict is durable before the dialer or
    /// the outbox sees it.
    pub fn begin_batch(&self) -> Result<()> {
        self.db
            .begin()
            .map_err(StoreError::sql("begin a batch of verdicts"))
    }

    /// Commits the open batch (nothing when none is open).
    pub fn commit_batch(&self) -> Result<()> {
        if !self.db.in_transaction() {
            return Ok(());
        }
        self.db
            .commit()
            .map_err(StoreError::sql("commit a batch of verdicts"))
    }

    /// The engine connection (maintenance, tests, and SQL that belongs to no store module).
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The schema version of this database.
    pub fn schema_version(&self) -> Result<i64> {
        migrations::version(&self.db).map_err(StoreError::sql("read schema version"))
    }

    /// The SQLite file, or the PostgreSQL URL without its password.
    pub fn path(&self) -> &str {
        &self.path
    }
}

/// Seconds since the epoch (with microseconds) as stored in REAL columns.
pub fn ts_to_f64(t: jiff::Timestamp) -> f64 {
    t.as_microsecond() as f64 / 1e6
}

pub fn f64_to_ts(s: f64) -> jiff::Timestamp {
    jiff::Timestamp::from_microsecond((s * 1e6).round() as i64)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: the daemon died with "cannot promote read transaction to write transaction"
    /// (SQLITE_BUSY_SNAPSHOT) when the dialer's deferred transaction read, the pipeline wrote, and
    /// the dialer then tried to write. Transactions must take the write lock at BEGIN.
    #[test]
    fn transactions_take_the_write_lock_at_begin_busy_snapshot_regression() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        let a = Store::open(&path).unwrap();
        let b = Store::open(&path).unwrap();
        a.db.begin().unwrap();
        b.db.sqlite_conn()
            .unwrap()
            .busy_timeout(Duration::from_millis(0))
            .unwrap();
        let other =
            b.db.sqlite_conn()
                .unwrap()
                .execute("UPDATE calls SET agent = agent", []);
        assert!(
            other.is_err(),
            "a second writer must wait for the open transaction"
        );
        a.db.commit().unwrap();
        b.db.sqlite_conn()
            .unwrap()
            .execute("UPDATE calls SET agent = agent", [])
            .unwrap();
    }
}

#[cfg(test)]
mod pg_support_tests {
    /// The throw-away PostgreSQL of the tests starts (or says why the PostgreSQL tests are
    /// skipped) and hands out one empty database per test.
    #[test]
    fn throw_away_postgres_hands_out_fresh_databases() {
        let (Some(a), Some(b)) = (
            crate::test_support::pg::fresh_url(),
            crate::test_support::pg::fresh_url(),
        ) else {
            return;
        };
        assert_ne!(a, b);
        let pg = crate::test_support::pg::server().unwrap();
        assert_eq!(pg.psql("SHOW fsync"), "on");
    }
}
