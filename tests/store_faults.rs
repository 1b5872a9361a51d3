//! A database that fails under the daemon: verdicts are held and retried, never dropped; a
//! database that can never work stops `perezvon run` with exit code 78 and the reason.

use std::path::Path;
use std::process::Command;

use perezvon::ami::codec::decode_all;
use perezvon::ami::Message;
use perezvon::calls::record::{Status, Timestamp};
use perezvon::config::Config;
use perezvon::daemon::ingest::Pipeline;
use perezvon::store::{Store, StoreError};

fn lab() -> Config {
    Config::load(Path::new("fixtures/asterisk-22/lab.toml")).unwrap()
}

fn capture(name: &str) -> Vec<Message> {
    let (m, _) = decode_all(&std::fs::read(format!("fixtures/asterisk-22/{name}.ami")).unwrap());
    m
}

/// Feeds a whole capture; returns the verdicts committed on the way.
fn play(p: &mut Pipeline, name: &str) -> Result<usize, StoreError> {
    let mut n = 0;
    for m in capture(name) {
        n += p.feed("lab", &m, Timestamp::UNIX_EPOCH)?.len();
    }
    Ok(n)
}

fn stored(db: &Path) -> i64 {
    let c = rusqlite::Connection::open(db).unwrap();
    c.query_row("SELECT count(*) FROM calls", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn a_lock_held_past_the_busy_timeout_holds_verdicts_then_commits_them_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let mut p = Pipeline::new(&lab(), Store::open(&db).unwrap()).hold_up_to(100);
    // Another process takes the write lock and keeps it (a backup tool, a stuck CLI).
    let locker = rusqlite::Connection::open(&db).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    // The store's busy timeout (5 s) passes: the verdict is held, nothing fails.
    assert_eq!(play(&mut p, "queue_abandon").unwrap(), 0);
    let held = p.held().expect("holding");
    assert_eq!(held.count, 1);
    assert!(
        held.error.contains("locked") || held.error.contains("busy"),
        "{}",
        held.error
    );
    // More calls end meanwhile: queued behind it (the retry is not due yet: no new wait).
    assert_eq!(play(&mut p, "voicemail").unwrap(), 0);
    assert_eq!(p.held().unwrap().count, 2);
    locker.execute_batch("ROLLBACK").unwrap();
    drop(locker);
    // The next retry commits both, oldest first, and the outage is over.
    let far = Timestamp::from_second(4_000_000_000).unwrap();
    let out = p.tick(far).unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].status, Status::Missed);
    assert!(p.held().is_none());
    assert_eq!(stored(&db), 2, "verdicts lost during a store fault: 0");
}

#[test]
fn a_full_queue_stops_with_a_clear_error_and_without_a_limit_errors_pass_through() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let locker = rusqlite::Connection::open(&db).unwrap();
    Store::open(&db).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    // Replay (no holding): the error is the caller's at once.
    let mut replay = Pipeline::new(&lab(), Store::open(&db).unwrap());
    assert!(play(&mut replay, "queue_abandon").is_err());
    // The daemon with room for one: the second verdict overflows.
    let mut p = Pipeline::new(&lab(), Store::open(&db).unwrap()).hold_up_to(1);
    assert_eq!(play(&mut p, "queue_abandon").unwrap(), 0);
    let e = play(&mut p, "voicemail").unwrap_err();
    assert!(matches!(e, StoreError::HeldFull { count: 2, .. }), "{e}");
    assert!(
        e.to_string().contains("stopping rather than dropping"),
        "{e}"
    );
}

/// Group commit (the daemon's ingest turn): verdicts are staged until the group ends, then
/// committed in one transaction and returned as an ungrouped pipeline returns them; a group
/// whose commit fails is held whole and retried, oldest first.
#[test]
fn a_group_commits_its_verdicts_together_and_a_failed_group_is_held_whole() {
    let dir = tempfile::tempdir().unwrap();
    let names = [
        "queue_abandon",
        "voicemail",
        "answered_by_agent",
        "ivr_abandon",
    ];
    // Ungrouped: one transaction per verdict.
    let plain_db = dir.path().join("plain.db");
    let mut plain = Pipeline::new(&lab(), Store::open(&plain_db).unwrap());
    let mut expected = Vec::new();
    for n in names {
        for m in capture(n) {
            expected.extend(plain.feed("lab", &m, Timestamp::UNIX_EPOCH).unwrap());
        }
    }
    assert_eq!(expected.len(), names.len());

    let db = dir.path().join("g.db");
    let mut p = Pipeline::new(&lab(), Store::open(&db).unwrap()).hold_up_to(100);
    p.begin_group();
    for n in names {
        assert_eq!(play(&mut p, n).unwrap(), 0, "staged, not returned");
    }
    assert_eq!(p.staged(), names.len());
    assert_eq!(stored(&db), 0, "nothing committed before the group ends");
    let got = p.end_group().unwrap();
    assert_eq!(got, expected);
    assert_eq!(stored(&db), names.len() as i64);

    // A group whose commit cannot take the write lock: held whole, none committed.
    let db = dir.path().join("held.db");
    let mut p = Pipeline::new(&lab(), Store::open(&db).unwrap()).hold_up_to(100);
    let locker = rusqlite::Connection::open(&db).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    p.begin_group();
    for n in names {
        play(&mut p, n).unwrap();
    }
    assert!(p.end_group().unwrap().is_empty());
    assert_eq!(p.held().expect("holding").count, names.len());
    locker.execute_batch("ROLLBACK").unwrap();
    drop(locker);
    assert_eq!(stored(&db), 0);
    let far = Timestamp::from_second(4_000_000_000).unwrap();
    let out = p.tick(far).unwrap();
    assert_eq!(out, expected, "retried in order, nothing lost");
    assert!(p.held().is_none());
    assert_eq!(stored(&db), names.len() as i64);
}

fn run_with_db(db: &Path) -> std::process::Output {
    let dir = db.parent().unwrap();
    let cfg = dir.join("perezvon.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[asterisk]]\nname = \"pbx\"\nhost = \"127.0.0.1\"\nport = 1\nusername = \"u\"\nsecret = \"s3cret-value\"\n\n[storage]\ndatabase = \"{}\"\n",
            db.display()
        ),
    )
    .unwrap();
    Command::new(env!("CARGO_BIN_EXE_perezvon"))
        .args(["run", "--config"])
        .arg(&cfg)
        .output()
        .unwrap()
}

#[test]
fn a_database_that_can_never_work_exits_78_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    // Not a database at all.
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![0x5a; 8192]).unwrap();
    let out = run_with_db(&junk);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("database"), "{err}");
    // A database from a newer perezvon.
    let newer = dir.path().join("newer.db");
    rusqlite::Connection::open(&newer)
        .unwrap()
        .pragma_update(None, "user_version", 999)
        .unwrap();
    let out = run_with_db(&newer);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("newer than this perezvon"), "{err}");
    // A read-only file (meaningless for root, who writes anyway: then skipped).
    let ro = dir.path().join("ro.db");
    Store::open(&ro).unwrap();
    for f in ["ro.db-wal", "ro.db-shm"] {
        let _ = std::fs::remove_file(dir.path().join(f));
    }
    let mut perm = std::fs::metadata(&ro).unwrap().permissions();
    perm.set_readonly(true);
    std::fs::set_permissions(&ro, perm).unwrap();
    if std::fs::OpenOptions::new().append(true).open(&ro).is_ok() {
        eprintln!("read-only case skipped: running as root, file modes do not stop writes");
        return;
    }
    let out = run_with_db(&ro);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
}
