//! One connection, two engines: the SQL layer every store module is written against.
//!
//! [`Db`] is either a SQLite connection (rusqlite, the embedded default) or a PostgreSQL
//! connection (tokio-postgres). The store modules write their SQL once, in a portable subset,
//! and [`Db`] adapts it to the engine:
//! - placeholders are SQLite's `?1`, `?2` (or bare `?`); PostgreSQL gets `$1`, `$2`;
//! - `GREATEST(a, b)` / `LEAST(a, b)` become SQLite's scalar `MAX(a, b)` / `MIN(a, b)`;
//!   `IFNULL(` becomes `COALESCE(` on PostgreSQL;
//! - schema text ([`ddl_for`]) is written in SQLite's types and mapped for PostgreSQL
//!   (`INTEGER` -> `BIGINT`, `REAL` -> `DOUBLE PRECISION`, `BLOB` -> `BYTEA`, `INTEGER PRIMARY
//!   KEY` -> an identity column). What cannot be mapped (triggers) is written per engine.
//!
//! Values cross as [`Value`] (NULL, 64-bit integer, double, text, bytes). On PostgreSQL a
//! parameter takes the type the server inferred for it (an `i64` into a `DOUBLE PRECISION`
//! column is sent as a double), and a result column of any numeric type reads back as integer
//! or double, so `SUM` of a `BIGINT` (a `NUMERIC` on PostgreSQL) reads like SQLite's.
//!
//! Transactions: [`Db::transaction`] takes a closure. SQLite begins `IMMEDIATE` (the write lock
//! first, so the busy timeout applies); PostgreSQL begins `SERIALIZABLE`, which gives the
//! closure the same isolation SQLite's single writer gives it, and a serialization failure or a
//! deadlock re-runs the closure (a few times, with a short pause). Nested transactions are
//! savepoints. Only the outermost one retries, so a closure must not have effects outside the
//! database (dialling, sending) — the callers commit first and act after.
//!
//! The PostgreSQL connection lives on its own thread with a single-threaded runtime; the store's
//! methods stay synchronous (like rusqlite's) and can be called from a tokio task, where they
//! block that task for the round trip as SQLite's do for the disk.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::types::{FromSql, IsNull, ToSql, Type};

/// A value in or out of the database.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// The engine of a [`Db`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
        }
    }
}

/// A database failure of either engine.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("{}", pg_message(.0))]
    Postgres(#[source] tokio_postgres::Error),
    /// A value that does not fit where it goes (a column read as the wrong type).
    #[error("{0}")]
    Conversion(String),
    /// `query_row` found no row.
    #[error("no row")]
    NoRows,
    /// The PostgreSQL connection could not be made or its thread is gone.
    #[error("PostgreSQL connection: {0}")]
    Connection(String),
}

fn pg_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => {
            let mut s = format!(
                "{}: {} (SQLSTATE {})",
                d.severity(),
                d.message(),
                d.code().code()
            );
            if let Some(detail) = d.detail() {
                s.push_str(": ");
                s.push_str(detail);
            }
            s
        }
        None => {
            let mut s = e.to_string();
            if let Some(src) = std::error::Error::source(e) {
                s.push_str(": ");
                s.push_str(&src.to_string());
            }
            s
        }
    }
}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        DbError::Postgres(e)
    }
}

impl DbError {
    /// The SQLSTATE of a PostgreSQL error.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            DbError::Postgres(e) => e.code().map(|c| c.code()),
            _ => None,
        }
    }

    /// A unique index or primary key refused the row (both engines).
    pub fn is_unique_violation(&self) -> bool {
        match self {
            DbError::Sqlite(rusqlite::Error::SqliteFailure(f, _)) => {
                f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            }
            _ => self.sqlstate() == Some("23505"),
        }
    }

    /// Another transaction won: re-running the transaction may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self.sqlstate(), Some("40001") | Some("40P01"))
    }

    /// The connection is gone (the server went away, the socket was cut).
    pub fn is_connection_lost(&self) -> bool {
        match self {
            DbError::Postgres(e) => {
                e.is_closed()
                    || e.code().is_none() && e.as_db_error().is_none()
                    || matches!(
                        e.code().map(|c| c.code()),
                        Some(c) if c.starts_with("08") || c == "57P01" || c == "57P02" || c == "57P03"
                    )
            }
            DbError::Connection(_) => true,
            _ => false,
        }
    }
}

pub type DbResult<T> = std::result::Result<T, DbError>;

/// What can be a parameter.
pub trait ToValue {
    fn to_value(&self) -> Value;
}

macro_rules! int_to_value {
    ($($t:ty),*) => {$(
        impl ToValue for $t {
            fn to_value(&self) -> Value {
                Value::Int(*self as i64)
            }
        }
    )*};
}
int_to_value!(i8, i16, i32, i64, u8, u16, u32, u64, usize, isize);

impl ToValue for f64 {
    fn to_value(&self) -> Value {
        Value::Real(*self)
    }
}
impl ToValue for f32 {
    fn to_value(&self) -> Value {
        Value::Real(*self as f64)
    }
}
impl ToValue for bool {
    fn to_value(&self) -> Value {
        Value::Int(*self as i64)
    }
}
impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_string())
    }
}
impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}
impl ToValue for [u8] {
    fn to_value(&self) -> Value {
        Value::Blob(self.to_vec())
    }
}
impl ToValue for Vec<u8> {
    fn to_value(&self) -> Value {
        Value::Blob(self.clone())
    }
}
impl ToValue for Value {
    fn to_value(&self) -> Value {
        self.clone()
    }
}
impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}
impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        match self {
            Some(v) => v.to_value(),
            None => Value::Null,
        }
    }
}

/// The parameters of one statement: `params![a, b, c]`.
pub type Params<'a> = &'a [&'a dyn ToValue];

/// `params![a, b]`: a parameter list of mixed types.
#[macro_export]
macro_rules! db_params {
    () => { &[] as &[&dyn $crate::store::db::ToValue] };
    ($($p:expr),+ $(,)?) => { &[$(&$p as &dyn $crate::store::db::ToValue),+] as &[&dyn $crate::store::db::ToValue] };
}
pub use crate::db_params as params;

/// What a column can be read as.
pub trait FromValue: Sized {
    fn from_value(v: &Value) -> Result<Self, String>;
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "NULL",
        Value::Int(_) => "integer",
        Value::Real(_) => "real",
        Value::Text(_) => "text",
        Value::Blob(_) => "blob",
    }
}

macro_rules! int_from_value {
    ($($t:ty),*) => {$(
        impl FromValue for $t {
            fn from_value(v: &Value) -> Result<Self, String> {
                let i = match v {
                    Value::Int(i) => *i,
                    Value::Real(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => *f as i64,
                    other => return Err(format!("expected an integer, found {}", type_name(other))),
                };
                <$t>::try_from(i).map_err(|_| format!("{i} out of range for {}", stringify!($t)))
            }
        }
    )*};
}
int_from_value!(i32, i64, u8, u16, u32, u64, usize);

impl FromValue for f64 {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Int(i) => Ok(*i as f64),
            Value::Real(f) => Ok(*f),
            other => Err(format!("expected a number, found {}", type_name(other))),
        }
    }
}
impl FromValue for bool {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Int(i) => Ok(*i != 0),
            Value::Real(f) => Ok(*f != 0.0),
            other => Err(format!("expected a boolean, found {}", type_name(other))),
        }
    }
}
impl FromValue for String {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Text(s) => Ok(s.clone()),
            other => Err(format!("expected text, found {}", type_name(other))),
        }
    }
}
impl FromValue for Vec<u8> {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Blob(b) => Ok(b.clone()),
            Value::Text(s) => Ok(s.as_bytes().to_vec()),
            other => Err(format!("expected bytes, found {}", type_name(other))),
        }
    }
}
impl FromValue for Value {
    fn from_value(v: &Value) -> Result<Self, String> {
        Ok(v.clone())
    }
}
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Null => Ok(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// One result row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    values: Vec<Value>,
}

impl Row {
    /// A row of these values (the rusqlite shims of modules not ported yet).
    #[allow(dead_code)] // its last user (store::console) is ported: remove with the shim
    pub(crate) fn from_values(values: Vec<Value>) -> Row {
        Row { values }
    }

    /// Column `i` (from 0) as `T`.
    pub fn get<T: FromValue>(&self, i: usize) -> DbResult<T> {
        let v = self
            .values
            .get(i)
            .ok_or_else(|| DbError::Conversion(format!("no column {i}")))?;
        T::from_value(v).map_err(|e| DbError::Conversion(format!("column {i}: {e}")))
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn values(&self) -> &[Value] {
        &self.values
    }
}

/// One connection to either engine.
pub struct Db {
    conn: Conn,
    /// Open transactions (1 = a transaction, more = savepoints inside it).
    depth: Cell<u32>,
    /// Portable SQL -> this engine's SQL, for statements seen before.
    translated: RefCell<HashMap<String, Arc<str>>>,
}

enum Conn {
    Sqlite(rusqlite::Connection),
    Postgres(PgConn),
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("engine", &self.engine())
            .finish()
    }
}

const TRANSLATION_CACHE: usize = 512;
const PG_RETRIES: u32 = 20;

impl Db {
    pub fn sqlite(conn: rusqlite::Connection) -> Db {
        Db {
            conn: Conn::Sqlite(conn),
            depth: Cell::new(0),
            translated: RefCell::new(HashMap::new()),
        }
    }

    /// Connects to PostgreSQL (`application_name` names this connection in
    /// `pg_stat_activity`).
    pub fn postgres(url: &str, application_name: &str) -> DbResult<Db> {
        Ok(Db {
            conn: Conn::Postgres(PgConn::connect(url, application_name)?),
            depth: Cell::new(0),
            translated: RefCell::new(HashMap::new()),
        })
    }

    pub fn engine(&self) -> Engine {
        match self.conn {
            Conn::Sqlite(_) => Engine::Sqlite,
            Conn::Postgres(_) => Engine::Postgres,
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.engine() == Engine::Postgres
    }

    /// The SQLite connection (migrations, pragmas, SQLite-only maintenance).
    pub fn sqlite_conn(&self) -> Option<&rusqlite::Connection> {
        match &self.conn {
            Conn::Sqlite(c) => Some(c),
            Conn::Postgres(_) => None,
        }
    }

    fn sql(&self, sql: &str) -> Arc<str> {
        if let Some(t) = self.translated.borrow().get(sql) {
            return t.clone();
        }
        let t: Arc<str> = translate(sql, self.engine()).into();
        let mut cache = self.translated.borrow_mut();
        if cache.len() >= TRANSLATION_CACHE {
            cache.clear();
        }
        cache.insert(sql.to_string(), t.clone());
        t
    }

    /// Runs one statement; the number of rows it changed.
    pub fn execute(&self, sql: &str, params: Params<'_>) -> DbResult<u64> {
        let q = self.sql(sql);
        match &self.conn {
            Conn::Sqlite(c) => {
                let mut st = c.prepare_cached(&q)?;
                bind(&mut st, params)?;
                Ok(st.raw_execute()? as u64)
            }
            Conn::Postgres(p) => p.execute(&q, values(params)),
        }
    }

    /// Runs one statement and returns every row.
    pub fn query(&self, sql: &str, params: Params<'_>) -> DbResult<Vec<Row>> {
        let q = self.sql(sql);
        match &self.conn {
            Conn::Sqlite(c) => {
                let mut st = c.prepare_cached(&q)?;
                bind(&mut st, params)?;
                let n = st.column_count();
                let mut rows = st.raw_query();
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    let mut values = Vec::with_capacity(n);
                    for i in 0..n {
                        values.push(match r.get_ref(i)? {
                            rusqlite::types::ValueRef::Null => Value::Null,
                            rusqlite::types::ValueRef::Integer(i) => Value::Int(i),
                            rusqlite::types::ValueRef::Real(f) => Value::Real(f),
                            rusqlite::types::ValueRef::Text(t) => {
                                Value::Text(String::from_utf8_lossy(t).into_owned())
                            }
                            rusqlite::types::ValueRef::Blob(b) => Value::Blob(b.to_vec()),
                        });
                    }
                    out.push(Row { values });
                }
                Ok(out)
            }
            Conn::Postgres(p) => p.query(&q, values(params)),
        }
    }

    /// Every row, each turned into a `T`.
    pub fn query_map<T>(
        &self,
        sql: &str,
        params: Params<'_>,
        f: impl FnMut(&Row) -> DbResult<T>,
    ) -> DbResult<Vec<T>> {
        self.query(sql, params)?.iter().map(f).collect()
    }

    /// The first row (an error, [`DbError::NoRows`], when there is none).
    pub fn query_row<T>(
        &self,
        sql: &str,
        params: Params<'_>,
        f: impl FnOnce(&Row) -> DbResult<T>,
    ) -> DbResult<T> {
        match self.query(sql, params)?.first() {
            Some(r) => f(r),
            None => Err(DbError::NoRows),
        }
    }

    /// The first row, if any.
    pub fn query_opt<T>(
        &self,
        sql: &str,
        params: Params<'_>,
        f: impl FnOnce(&Row) -> DbResult<T>,
    ) -> DbResult<Option<T>> {
        match self.query(sql, params)?.first() {
            Some(r) => f(r).map(Some),
            None => Ok(None),
        }
    }

    /// Several statements without parameters (schema, maintenance).
    pub fn batch(&self, sql: &str) -> DbResult<()> {
        match &self.conn {
            Conn::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Conn::Postgres(p) => p.batch(sql),
        }
    }

    /// True while a transaction (or batch) is open on this connection.
    pub fn in_transaction(&self) -> bool {
        self.depth.get() > 0
    }

    /// Opens a transaction (or a savepoint inside one) that the caller closes with
    /// [`Db::commit`] or [`Db::rollback`]. Prefer [`Db::transaction`].
    pub fn begin(&self) -> DbResult<()> {
        let d = self.depth.get();
        let sql = match (d, self.engine()) {
            (0, Engine::Sqlite) => "BEGIN IMMEDIATE".to_string(),
            (0, Engine::Postgres) => "BEGIN ISOLATION LEVEL SERIALIZABLE".to_string(),
            (n, _) => format!("SAVEPOINT sp{n}"),
        };
        self.batch(&sql)?;
        self.depth.set(d + 1);
        Ok(())
    }

    /// Runs `f` on one consistent snapshot without taking the write lock (SQLite: a deferred
    /// transaction; PostgreSQL: REPEATABLE READ, READ ONLY). Inside an open transaction `f`
    /// simply runs in it.
    pub fn read_snapshot<T, E>(&self, f: impl FnOnce(&Db) -> Result<T, E>) -> Result<T, E>
    where
        E: From<DbError>,
    {
        if self.depth.get() > 0 {
            return f(self);
        }
        self.batch(match self.engine() {
            Engine::Sqlite => "BEGIN",
            Engine::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
        })?;
        self.depth.set(1);
        let out = f(self);
        // Nothing was written: a failed COMMIT of a read leaves nothing to undo.
        let end = if out.is_ok() {
            self.commit()
        } else {
            self.rollback()
        };
        self.depth.set(0);
        let v = out?;
        end?;
        Ok(v)
    }

    /// Commits the innermost open transaction or savepoint.
    pub fn commit(&self) -> DbResult<()> {
        let d = self.depth.get();
        if d == 0 {
            return Ok(());
        }
        let sql = if d == 1 {
            "COMMIT".to_string()
        } else {
            format!("RELEASE SAVEPOINT sp{}", d - 1)
        };
        match self.batch(&sql) {
            Ok(()) => {
                self.depth.set(d - 1);
                Ok(())
            }
            Err(e) => {
                let _ = self.rollback();
                Err(e)
            }
        }
    }

    /// Rolls back the innermost open transaction or savepoint.
    pub fn rollback(&self) -> DbResult<()> {
        let d = self.depth.get();
        if d == 0 {
            return Ok(());
        }
        self.depth.set(d - 1);
        if d == 1 {
            let r = self.batch("ROLLBACK");
            if matches!(&r, Err(e) if e.is_connection_lost()) {
                return Ok(()); // the server dropped the transaction with the connection
            }
            r
        } else {
            self.batch(&format!(
                "ROLLBACK TO SAVEPOINT sp{n}; RELEASE SAVEPOINT sp{n}",
                n = d - 1
            ))
        }
    }

    /// Runs `f` in a transaction: committed when it returns `Ok`, rolled back when it returns
    /// `Err`. On PostgreSQL a serialization failure or deadlock (of `f` or of the commit)
    /// re-runs `f` from the start, outermost transactions only.
    pub fn transaction<T, E>(&self, mut f: impl FnMut(&Db) -> Result<T, E>) -> Result<T, E>
    where
        E: From<DbError> + AsDbError,
    {
        let outer = self.depth.get() == 0;
        let mut attempt = 0;
        loop {
            self.begin().map_err(E::from)?;
            let r = f(self).and_then(|v| self.commit().map(|()| v).map_err(E::from));
            match r {
                Ok(v) => return Ok(v),
                Err(e) => {
                    // A failed commit has already rolled back.
                    if self.depth.get() > 0 && (outer || self.in_transaction()) {
                        let _ = self.rollback();
                    }
                    let retry = outer
                        && self.is_postgres()
                        && attempt < PG_RETRIES
                        && e.as_db_error().is_some_and(DbError::is_retryable);
                    if !retry {
                        return Err(e);
                    }
                    attempt += 1;
                    // Full jitter: writers that collided spread out instead of colliding
                    // again in step.
                    std::thread::sleep(Duration::from_millis(fastrand::u64(
                        1..=2u64.pow(attempt.min(7)),
                    )));
                }
            }
        }
    }
}

/// Errors that may carry a [`DbError`] (for [`Db::transaction`]'s retry decision).
pub trait AsDbError {
    fn as_db_error(&self) -> Option<&DbError>;
}

impl AsDbError for DbError {
    fn as_db_error(&self) -> Option<&DbError> {
        Some(self)
    }
}

fn values(params: Params<'_>) -> Vec<Value> {
    params.iter().map(|p| p.to_value()).collect()
}

fn bind(st: &mut rusqlite::CachedStatement<'_>, params: Params<'_>) -> DbResult<()> {
    let expected = st.parameter_count();
    if expected != params.len() {
        return Err(DbError::Sqlite(rusqlite::Error::InvalidParameterCount(
            params.len(),
            expected,
        )));
    }
    for (i, p) in params.iter().enumerate() {
        let v = match p.to_value() {
            Value::Null => rusqlite::types::Value::Null,
            Value::Int(i) => rusqlite::types::Value::Integer(i),
            Value::Real(f) => rusqlite::types::Value::Real(f),
            Value::Text(s) => rusqlite::types::Value::Text(s),
            Value::Blob(b) => rusqlite::types::Value::Blob(b),
        };
        st.raw_bind_parameter(i + 1, v)?;
    }
    Ok(())
}

/// The portable SQL of the store modules in `engine`'s dialect.
pub fn translate(sql: &str, engine: Engine) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let b = sql.as_bytes();
    let mut i = 0;
    let mut next_param = 1;
    while i < b.len() {
        let c = b[i];
        // String literals and quoted identifiers pass untouched.
        if c == b'\'' || c == b'"' {
            let q = c;
            let start = i;
            i += 1;
            while i < b.len() {
                if b[i] == q {
                    if i + 1 < b.len() && b[i + 1] == q {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
            i = (i + 1).min(b.len());
            out.push_str(&sql[start..i]);
            continue;
        }
        if c == b'?' && engine == Engine::Postgres {
            let start = i + 1;
            let mut j = start;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            out.push('$');
            if j > start {
                out.push_str(&sql[start..j]);
            } else {
                out.push_str(&next_param.to_string());
                next_param += 1;
            }
            i = j;
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            let word = &sql[start..i];
            let call = b.get(i) == Some(&b'(');
            let w = match (engine, word.to_ascii_uppercase().as_str(), call) {
                (Engine::Sqlite, "GREATEST", true) => "MAX",
                (Engine::Sqlite, "LEAST", true) => "MIN",
                (Engine::Postgres, "IFNULL", true) => "COALESCE",
                _ => word,
            };
            out.push_str(w);
            continue;
        }
        out.push(c as char);
        // Multi-byte UTF-8: copy the rest of the character.
        if c >= 0x80 {
            let ch_len = sql[i..].chars().next().map_or(1, char::len_utf8);
            out.pop();
            out.push_str(&sql[i..i + ch_len]);
            i += ch_len;
            continue;
        }
        i += 1;
    }
    out
}

/// Schema text written with SQLite's types, for `engine`.
pub fn ddl_for(sql: &str, engine: Engine) -> String {
    if engine == Engine::Sqlite {
        return sql.to_string();
    }
    let t = translate(sql, engine);
    let mut out = String::with_capacity(t.len() + 64);
    let words: Vec<&str> = split_keep(&t);
    let mut k = 0;
    while k < words.len() {
        let w = words[k];
        let upper = w.to_ascii_uppercase();
        let next_is = |n: usize, s: &str| {
            words
                .iter()
                .skip(k + 1)
                .filter(|x| !x.trim().is_empty())
                .nth(n)
                .is_some_and(|x| x.eq_ignore_ascii_case(s))
        };
        match upper.as_str() {
            "INTEGER" if next_is(0, "PRIMARY") && next_is(1, "KEY") => {
                out.push_str("BIGINT GENERATED BY DEFAULT AS IDENTITY");
            }
            "INTEGER" => out.push_str("BIGINT"),
            "REAL" => out.push_str("DOUBLE PRECISION"),
            "BLOB" => out.push_str("BYTEA"),
            "AUTOINCREMENT" => {}
            _ => out.push_str(w),
        }
        k += 1;
    }
    out
}

/// Words and the text between them, in order (quoted text is one piece).
fn split_keep(s: &str) -> Vec<&str> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut start = 0;
    while i < b.len() {
        if b[i] == b'\'' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'\'' {
                j += 1;
            }
            i = (j + 1).min(b.len());
            continue;
        }
        if b[i].is_ascii_alphabetic() || b[i] == b'_' {
            if start < i {
                out.push(&s[start..i]);
            }
            let ws = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push(&s[ws..i]);
            start = i;
            continue;
        }
        i += 1;
    }
    if start < b.len() {
        out.push(&s[start..]);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL: one connection on its own thread.

enum Job {
    Execute(String, Vec<Value>, std::sync::mpsc::Sender<DbResult<u64>>),
    Query(
        String,
        Vec<Value>,
        std::sync::mpsc::Sender<DbResult<Vec<Row>>>,
    ),
    Batch(String, std::sync::mpsc::Sender<DbResult<()>>),
}

struct PgConn {
    jobs: tokio::sync::mpsc::UnboundedSender<Job>,
}

impl PgConn {
    fn connect(url: &str, application_name: &str) -> DbResult<PgConn> {
        let mut config = super::pg_config(url).map_err(DbError::Connection)?;
        if config.get_application_name().is_none() {
            config.application_name(application_name);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(10));
        let (jobs, rx) = tokio::sync::mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("perezvon-pg".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(DbError::Connection(e.to_string())));
                        return;
                    }
                };
                rt.block_on(pg_worker(config, rx, ready_tx));
            })
            .map_err(|e| DbError::Connection(e.to_string()))?;
        ready_rx
            .recv()
            .map_err(|_| DbError::Connection("connection thread ended".into()))??;
        Ok(PgConn { jobs })
    }

    fn send<T>(
        &self,
        make: impl FnOnce(std::sync::mpsc::Sender<DbResult<T>>) -> Job,
    ) -> DbResult<T> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.jobs
            .send(make(tx))
            .map_err(|_| DbError::Connection("connection thread ended".into()))?;
        rx.recv()
            .map_err(|_| DbError::Connection("connection thread ended".into()))?
    }

    fn execute(&self, sql: &str, params: Vec<Value>) -> DbResult<u64> {
        self.send(|tx| Job::Execute(sql.to_string(), params, tx))
    }

    fn query(&self, sql: &str, params: Vec<Value>) -> DbResult<Vec<Row>> {
        self.send(|tx| Job::Query(sql.to_string(), params, tx))
    }

    fn batch(&self, sql: &str) -> DbResult<()> {
        self.send(|tx| Job::Batch(sql.to_string(), tx))
    }
}

struct PgWorker {
    config: tokio_postgres::Config,
    client: Option<tokio_postgres::Client>,
    statements: HashMap<String, tokio_postgres::Statement>,
}

impl PgWorker {
    async fn connect(&mut self) -> DbResult<&tokio_postgres::Client> {
        if self.client.as_ref().is_some_and(|c| c.is_closed()) {
            self.client = None;
        }
        if self.client.is_none() {
            self.statements.clear();
            let (client, connection) = self.config.connect(tokio_postgres::NoTls).await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "PostgreSQL connection ended");
                }
            });
            self.client = Some(client);
        }
        Ok(self.client.as_ref().expect("connected above"))
    }

    async fn statement(&mut self, sql: &str) -> DbResult<tokio_postgres::Statement> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let st = self.connect().await?.prepare(sql).await?;
        if self.statements.len() >= TRANSLATION_CACHE {
            self.statements.clear();
        }
        self.statements.insert(sql.to_string(), st.clone());
        Ok(st)
    }

    async fn run_query(&mut self, sql: &str, params: &[Value]) -> DbResult<Vec<Row>> {
        let st = self.statement(sql).await?;
        let args = pg_args(&st, params)?;
        let client = self.connect().await?;
        let rows = client.query(&st, &args).await?;
        rows.iter()
            .map(|r| {
                let mut values = Vec::with_capacity(r.len());
                for i in 0..r.len() {
                    values.push(r.try_get::<_, PgAny>(i).map(|v| v.0)?);
                }
                Ok(Row { values })
            })
            .collect()
    }

    async fn run_execute(&mut self, sql: &str, params: &[Value]) -> DbResult<u64> {
        let st = self.statement(sql).await?;
        let args = pg_args(&st, params)?;
        Ok(self.connect().await?.execute(&st, &args).await?)
    }
}

fn pg_args<'a>(
    st: &tokio_postgres::Statement,
    params: &'a [Value],
) -> DbResult<Vec<&'a (dyn ToSql + Sync)>> {
    if st.params().len() != params.len() {
        return Err(DbError::Conversion(format!(
            "the statement takes {} parameters, {} given",
            st.params().len(),
            params.len()
        )));
    }
    Ok(params.iter().map(|v| v as &(dyn ToSql + Sync)).collect())
}

async fn pg_worker(
    config: tokio_postgres::Config,
    mut jobs: tokio::sync::mpsc::UnboundedReceiver<Job>,
    ready: std::sync::mpsc::Sender<DbResult<()>>,
) {
    let mut w = PgWorker {
        config,
        client: None,
        statements: HashMap::new(),
    };
    let first = w.connect().await.map(|_| ());
    let failed = first.is_err();
    let _ = ready.send(first);
    if failed {
        return;
    }
    while let Some(job) = jobs.recv().await {
        match job {
            Job::Execute(sql, params, tx) => {
                let r = w.run_execute(&sql, &params).await;
                let _ = tx.send(r);
            }
            Job::Query(sql, params, tx) => {
                let r = w.run_query(&sql, &params).await;
                let _ = tx.send(r);
            }
            Job::Batch(sql, tx) => {
                let r = match w.connect().await {
                    Ok(c) => c.batch_execute(&sql).await.map_err(DbError::from),
                    Err(e) => Err(e),
                };
                let _ = tx.send(r);
            }
        }
    }
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        let mismatch = || -> Box<dyn std::error::Error + Sync + Send> {
            format!("cannot send {} as {}", type_name(self), ty.name()).into()
        };
        let as_i64 = || -> Result<i64, Box<dyn std::error::Error + Sync + Send>> {
            match self {
                Value::Int(i) => Ok(*i),
                Value::Real(f) if f.fract() == 0.0 => Ok(*f as i64),
                Value::Text(s) => s.trim().parse().map_err(|_| mismatch()),
                _ => Err(mismatch()),
            }
        };
        if *self == Value::Null {
            return Ok(IsNull::Yes);
        }
        match *ty {
            Type::INT8 => as_i64()?.to_sql(ty, out),
            Type::INT4 => i32::try_from(as_i64()?)
                .map_err(|_| mismatch())?
                .to_sql(ty, out),
            Type::INT2 => i16::try_from(as_i64()?)
                .map_err(|_| mismatch())?
                .to_sql(ty, out),
            Type::FLOAT8 | Type::FLOAT4 | Type::NUMERIC => {
                let f = match self {
                    Value::Int(i) => *i as f64,
                    Value::Real(f) => *f,
                    Value::Text(s) => s.trim().parse().map_err(|_| mismatch())?,
                    _ => return Err(mismatch()),
                };
                match *ty {
                    Type::FLOAT4 => (f as f32).to_sql(ty, out),
                    Type::FLOAT8 => f.to_sql(ty, out),
                    _ => {
                        Err("NUMERIC parameters are not supported: cast to DOUBLE PRECISION".into())
                    }
                }
            }
            Type::BOOL => match self {
                Value::Int(i) => (*i != 0).to_sql(ty, out),
                Value::Real(f) => (*f != 0.0).to_sql(ty, out),
                _ => Err(mismatch()),
            },
            Type::BYTEA => match self {
                Value::Blob(b) => b.as_slice().to_sql(ty, out),
                Value::Text(s) => s.as_bytes().to_sql(ty, out),
                _ => Err(mismatch()),
            },
            Type::TIMESTAMPTZ | Type::TIMESTAMP => {
                let secs = match self {
                    Value::Int(i) => *i as f64,
                    Value::Real(f) => *f,
                    _ => return Err(mismatch()),
                };
                let t = std::time::UNIX_EPOCH
                    + Duration::try_from_secs_f64(secs.max(0.0)).map_err(|_| mismatch())?;
                t.to_sql(ty, out)
            }
            _ => match self {
                Value::Text(s) => s.as_str().to_sql(ty, out),
                Value::Int(i) => i.to_string().as_str().to_sql(ty, out),
                Value::Real(f) => f.to_string().as_str().to_sql(ty, out),
                Value::Blob(_) | Value::Null => Err(mismatch()),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

/// A column of any supported type, read into a [`Value`].
struct PgAny(Value);

impl<'a> FromSql<'a> for PgAny {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(PgAny(match *ty {
            Type::INT8 => Value::Int(i64::from_sql(ty, raw)?),
            Type::INT4 => Value::Int(i32::from_sql(ty, raw)? as i64),
            Type::INT2 => Value::Int(i16::from_sql(ty, raw)? as i64),
            Type::OID => Value::Int(u32::from_sql(ty, raw)? as i64),
            Type::FLOAT8 => Value::Real(f64::from_sql(ty, raw)?),
            Type::FLOAT4 => Value::Real(f32::from_sql(ty, raw)? as f64),
            Type::NUMERIC => numeric(raw)?,
            Type::BOOL => Value::Int(bool::from_sql(ty, raw)? as i64),
            Type::BYTEA => Value::Blob(raw.to_vec()),
            Type::TIMESTAMPTZ | Type::TIMESTAMP => {
                let t = std::time::SystemTime::from_sql(ty, raw)?;
                Value::Real(match t.duration_since(std::time::UNIX_EPOCH) {
                    Ok(d) => d.as_secs_f64(),
                    Err(e) => -e.duration().as_secs_f64(),
                })
            }
            Type::VOID => Value::Null,
            _ => Value::Text(String::from_utf8(raw.to_vec())?),
        }))
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(PgAny(Value::Null))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// PostgreSQL's binary NUMERIC: an integer when it has no fraction and fits, else a double.
fn numeric(raw: &[u8]) -> Result<Value, Box<dyn std::error::Error + Sync + Send>> {
    let word = |i: usize| -> Result<u16, Box<dyn std::error::Error + Sync + Send>> {
        raw.get(i..i + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "short NUMERIC".into())
    };
    let ndigits = word(0)? as usize;
    let weight = word(2)? as i16 as i32;
    let sign = word(4)?;
    let dscale = word(6)?;
    if sign == 0xC000 {
        return Ok(Value::Real(f64::NAN));
    }
    let mut int: i128 = 0;
    let mut exact = true;
    let mut f = 0.0f64;
    for d in 0..ndigits {
        let digit = word(8 + 2 * d)? as i128;
        let power = weight - d as i32;
        f += digit as f64 * 10_000f64.powi(power);
        if power >= 0 {
            int = int
                .checked_mul(1)
                .and_then(|_| int.checked_add(digit * 10_000i128.checked_pow(power as u32)?))
                .unwrap_or_else(|| {
                    exact = false;
                    0
                });
        } else if digit != 0 {
            exact = false;
        }
    }
    let negative = sign == 0x4000;
    if exact && dscale == 0 {
        if let Ok(i) = i64::try_from(if negative { -int } else { int }) {
            return Ok(Value::Int(i));
        }
    }
    Ok(Value::Real(if negative { -f } else { f }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_and_functions_follow_the_engine() {
        let sql = "SELECT GREATEST(a, ?1), IFNULL(b, '?'), x FROM t WHERE y = ? AND z = ?3";
        assert_eq!(
            translate(sql, Engine::Postgres),
            "SELECT GREATEST(a, $1), COALESCE(b, '?'), x FROM t WHERE y = $1 AND z = $3"
        );
        assert_eq!(
            translate(sql, Engine::Sqlite),
            "SELECT MAX(a, ?1), IFNULL(b, '?'), x FROM t WHERE y = ? AND z = ?3"
        );
        assert_eq!(
            translate("SELECT 'й' || ?1", Engine::Postgres),
            "SELECT 'й' || $1"
        );
    }

    #[test]
    fn schema_types_map_to_postgres() {
        let ddl = "CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER NOT NULL DEFAULT 0, at REAL, b BLOB, s TEXT CHECK (s IN ('REAL')));";
        assert_eq!(
            ddl_for(ddl, Engine::Postgres),
            "CREATE TABLE t (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, n BIGINT NOT NULL DEFAULT 0, at DOUBLE PRECISION, b BYTEA, s TEXT CHECK (s IN ('REAL')));"
        );
        assert_eq!(ddl_for(ddl, Engine::Sqlite), ddl);
    }

    #[test]
    fn numeric_decodes_integers_and_fractions() {
        // 12345678 = [1234, 5678] weight 1; -1.5 = [1, 5000] weight 0 dscale 1.
        let enc = |digits: &[u16], weight: i16, sign: u16, dscale: u16| {
            let mut v = Vec::new();
            for w in [digits.len() as u16, weight as u16, sign, dscale] {
                v.extend_from_slice(&w.to_be_bytes());
            }
            for d in digits {
                v.extend_from_slice(&d.to_be_bytes());
            }
            v
        };
        assert_eq!(
            numeric(&enc(&[1234, 5678], 1, 0, 0)).unwrap(),
            Value::Int(12_345_678)
        );
        assert_eq!(
            numeric(&enc(&[1, 5000], 0, 0x4000, 1)).unwrap(),
            Value::Real(-1.5)
        );
        assert_eq!(numeric(&enc(&[], 0, 0, 0)).unwrap(), Value::Int(0));
        assert_eq!(
            numeric(&enc(&[7], 2, 0, 0)).unwrap(),
            Value::Int(700_000_000)
        );
        assert!(
            numeric(&[0, 1]).is_err(),
            "short input is an error, not a panic"
        );
    }

    fn both() -> Vec<Db> {
        let mut v = vec![Db::sqlite(rusqlite::Connection::open_in_memory().unwrap())];
        if let Some(url) = crate::test_support::pg::fresh_url() {
            v.push(Db::postgres(&url, "perezvon-test").unwrap());
        }
        v
    }

    #[test]
    fn values_round_trip_on_both_engines() {
        for db in both() {
            let e = db.engine().name();
            db.batch(&ddl_for(
                "CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER, f REAL, s TEXT, b BLOB)",
                db.engine(),
            ))
            .unwrap();
            // An integer into a REAL column, a float that is whole into an INTEGER one.
            let n = db
                .execute(
                    "INSERT INTO t (n, f, s, b) VALUES (?1, ?2, ?3, ?4)",
                    params![7.0f64, 3i64, "ж", vec![0u8, 1, 2]],
                )
                .unwrap();
            assert_eq!(n, 1, "{e}");
            db.execute(
                "INSERT INTO t (n, f, s, b) VALUES (?1, ?2, ?3, ?4)",
                params![None::<i64>, 0.5f64, None::<String>, None::<Vec<u8>>],
            )
            .unwrap();
            let rows = db
                .query_map("SELECT n, f, s, b FROM t ORDER BY id", params![], |r| {
                    Ok((
                        r.get::<Option<i64>>(0)?,
                        r.get::<f64>(1)?,
                        r.get::<Option<String>>(2)?,
                        r.get::<Option<Vec<u8>>>(3)?,
                    ))
                })
                .unwrap();
            assert_eq!(
                rows,
                vec![
                    (Some(7), 3.0, Some("ж".into()), Some(vec![0, 1, 2])),
                    (None, 0.5, None, None)
                ],
                "{e}"
            );
            // SUM of integers is an integer, AVG a number, on both.
            let (sum, avg): (i64, f64) = db
                .query_row("SELECT SUM(n), AVG(f) FROM t", params![], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .unwrap();
            assert_eq!((sum, avg), (7, 1.75), "{e}");
            assert!(matches!(
                db.query_row("SELECT n FROM t WHERE id < 0", params![], |r| r
                    .get::<i64>(0)),
                Err(DbError::NoRows)
            ));
            let bad = db.query_row("SELECT s FROM t WHERE n = 7", params![], |r| {
                r.get::<i64>(0)
            });
            assert!(matches!(bad, Err(DbError::Conversion(_))), "{e}: {bad:?}");
        }
    }

    #[test]
    fn transactions_commit_roll_back_and_nest_on_both_engines() {
        for db in both() {
            let e = db.engine().name();
            db.batch(&ddl_for(
                "CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)",
                db.engine(),
            ))
            .unwrap();
            let r: Result<(), DbError> = db.transaction(|tx| {
                tx.execute("INSERT INTO t VALUES ('a', 1)", params![])?;
                // An inner failure rolls back only the savepoint.
                let inner: Result<(), DbError> = tx.transaction(|tx| {
                    tx.execute("INSERT INTO t VALUES ('b', 2)", params![])?;
                    tx.execute("INSERT INTO t VALUES ('a', 3)", params![])?;
                    Ok(())
                });
                assert!(inner.unwrap_err().is_unique_violation(), "{e}");
                Ok(())
            });
            r.unwrap();
            let keys = db
                .query_map("SELECT k FROM t ORDER BY k", params![], |r| {
                    r.get::<String>(0)
                })
                .unwrap();
            assert_eq!(keys, vec!["a".to_string()], "{e}");
            let r: Result<(), DbError> = db.transaction(|tx| {
                tx.execute("INSERT INTO t VALUES ('c', 1)", params![])?;
                Err(DbError::Conversion("no".into()))
            });
            assert!(r.is_err());
            assert!(!db.in_transaction(), "{e}");
            let n: i64 = db
                .query_row("SELECT COUNT(*) FROM t", params![], |r| r.get(0))
                .unwrap();
            assert_eq!(n, 1, "{e}: the failed transaction left nothing");
        }
    }

    #[test]
    fn serialization_failures_are_retried_on_postgres() {
        let Some(url) = crate::test_support::pg::fresh_url() else {
            return;
        };
        let a = Db::postgres(&url, "a").unwrap();
        a.batch("CREATE TABLE c (k TEXT PRIMARY KEY, n BIGINT NOT NULL)")
            .unwrap();
        a.execute("INSERT INTO c VALUES ('x', 0)", params![])
            .unwrap();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let url = url.clone();
                std::thread::spawn(move || {
                    let db = Db::postgres(&url, "t").unwrap();
                    for _ in 0..25 {
                        let r: Result<(), DbError> = db.transaction(|tx| {
                            let n: i64 =
                                tx.query_row("SELECT n FROM c WHERE k = 'x'", params![], |r| {
                                    r.get(0)
                                })?;
                            tx.execute("UPDATE c SET n = ?1 WHERE k = 'x'", params![n + 1])?;
                            Ok(())
                        });
                        r.unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let n: i64 = a
            .query_row("SELECT n FROM c", params![], |r| r.get(0))
            .unwrap();
        assert_eq!(
            n, 100,
            "read-modify-write under SERIALIZABLE loses no update"
        );
    }

    #[test]
    fn a_bad_url_or_a_missing_server_is_an_error_not_a_panic() {
        let e = Db::postgres(
            "postgres://x@/db?host=/nonexistent-dir&connect_timeout=1",
            "t",
        )
        .unwrap_err();
        assert!(e.is_connection_lost(), "{e}");
    }
}
