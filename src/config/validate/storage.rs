//! `[storage]`: the database and retention.

use super::*;

/// `[storage]`: the SQLite file or the PostgreSQL URL, and retention.
pub(super) fn validate_storage(v: &mut V, raw: &RawStorage, web: &RawWeb) -> StorageConfig {
    let database = raw
        .database
        .as_deref()
        .map(|p| v.resolve_path(p))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATABASE));
    let url = match (&raw.url, &raw.url_file) {
        (Some(u), None) => Some(u.trim().to_string()),
        (None, Some(p)) => {
            let p = v.resolve_path(p);
            match std::fs::read_to_string(&p) {
                Ok(s) => Some(s.trim().to_string()),
                Err(e) => {
                    v.err(
                        "storage.url_file",
                        format!("cannot read {}: {e}", p.display()),
                        Some("a file holding one postgres:// URL"),
                    );
                    None
                }
            }
        }
        (Some(_), Some(_)) => {
            v.err(
                "storage.url",
                "url and url_file are exclusive",
                Some("keep the URL with its password in url_file only"),
            );
            None
        }
        (None, None) => None,
    };
    let location = match url {
        Some(u) => {
            if raw.database.is_some() {
                v.err(
                    "storage.database",
                    "database (SQLite) and url (PostgreSQL) are exclusive",
                    Some("keep one of them"),
                );
            }
            match crate::store::Location::parse(&u) {
                crate::store::Location::Postgres(_) if crate::store::pg_config(&u).is_ok() => {
                    crate::store::Location::Postgres(u)
                }
                crate::store::Location::Postgres(_) => {
                    let why = crate::store::pg_config(&u).err().unwrap_or_default();
                    v.err(
                        "storage.url",
                        format!("not a PostgreSQL URL perezvon can use: {why}"),
                        Some("e.g. postgres://perezvon@/perezvon?host=/run/postgresql"),
                    );
                    crate::store::Location::Sqlite(database.clone())
                }
                crate::store::Location::Sqlite(_) => {
                    v.err(
                        "storage.url",
                        "must start with postgres:// or postgresql://",
                        Some("for SQLite set storage.database instead"),
                    );
                    crate::store::Location::Sqlite(database.clone())
                }
            }
        }
        None => crate::store::Location::Sqlite(database.clone()),
    };
    if location.is_postgres() && web.listen.is_some() && web.secret_file.is_none() {
        v.err(
            "web.secret_file",
            "is required with storage.url: there is no directory beside a PostgreSQL database for console.key",
            Some("head -c 32 /dev/urandom > /etc/perezvon/console.key; the same file on every node"),
        );
    }
    let keep_calls = raw
        .keep_calls
        .as_ref()
        .map(|_| v.duration("storage.keep_calls", &raw.keep_calls, "400d"));
    if keep_calls.is_some_and(|d| d < Duration::from_secs(86_400)) {
        v.err(
            "storage.keep_calls",
            "must be at least 1d",
            Some("calls younger than this are kept; write it like \"400d\""),
        );
    }
    StorageConfig {
        database: location.as_arg(),
        location,
        keep_calls,
    }
}
