//! Values from outside (a caller ID, a task's number) reach the admin's terminal only escaped and
//! cut, and `run` refuses a configuration that watches nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

use jiff::{SignedDuration, Timestamp};
use perezvon::calls::record::CallRecord;
use perezvon::store::Store;
use rusqlite::types::Value;

mod support;

/// ESC sequences (clear screen, set the window title, OSC 8 link), NUL, BEL, CR, DEL, a C1 CSI,
/// the bidi overrides, then 100 KB of digits.
fn hostile() -> String {
    format!(
        "\u{1b}[2J\u{1b}]0;pwned\u{7}\u{1b}]8;;http://evil/\u{1b}\\x\0\r\u{7f}\u{9b}31m\u{202e}321\u{202c}\u{2066}\u{2069}{}",
        "9".repeat(100_000)
    )
}

struct Fixture {
    _dir: tempfile::TempDir,
    db: PathBuf,
    config: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("perezvon.db");
    let config = dir.path().join("perezvon.toml");
    std::fs::write(&config, perezvon::config::EMBEDDED_DEFAULT).unwrap();
    Store::open(&db).unwrap();
    Fixture {
        _dir: dir,
        db,
        config,
    }
}

fn with_hostile_miss() -> Fixture {
    let f = fixture();
    let store = Store::open(&f.db).unwrap();
    let now = Timestamp::now();
    // Not a number (letters, escapes): it never normalises, so it is shown as Asterisk gave it.
    let call = CallRecord {
        caller: Some(hostile()),
        caller_normalized: None,
        agent: Some(format!("PJSIP/\u{1b}[5m{}", "2".repeat(50_000))),
        ..support::inbound_miss("1795375036.1", now - SignedDuration::from_mins(30), 20.0)
    };
    store.insert_call(&call).unwrap();
    // A second miss from the same number, for the report's "missed more than once" table.
    store
        .insert_call(&CallRecord {
            caller: Some(hostile()),
            ..support::inbound_miss("1795375036.2", now - SignedDuration::from_mins(20), 20.0)
        })
        .unwrap();
    f
}

fn perezvon(args: &[&str], config: &Path, db: Option<&Path>) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_perezvon"));
    cmd.args(args).arg("--config").arg(config);
    if let Some(db) = db {
        cmd.arg("--db").arg(db);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// No character a terminal acts on, except the line ends `allowed`.
fn assert_inert(what: &str, out: &str, allowed: &[char]) {
    let bad: Vec<char> = out
        .chars()
        .filter(|c| !allowed.contains(c))
        .filter(|c| {
            c.is_control()
                || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}')
        })
        .collect();
    assert!(bad.is_empty(), "{what}: {bad:?} reaches the terminal");
}

#[test]
fn missed_table_is_escaped_and_bounded() {
    let f = with_hostile_miss();
    let (code, out, err) = perezvon(&["missed", "--format", "table"], &f.config, Some(&f.db));
    assert_eq!(code, 0, "{err}");
    assert!(out.len() < 2_000, "{} bytes:\n{out}", out.len());
    assert!(out.lines().all(|l| l.chars().count() < 250), "{out}");
    assert_inert("missed table", &out, &['\n']);
    // Visible, and cut with an ellipsis.
    assert!(out.contains("\\x1b[2J\\x1b]0;pwned\\x07"), "{out}");
    assert!(out.contains("\\x0d\\x7f…  queue"), "{out}");
    assert_eq!(out.lines().count(), 4, "{out}");
}

#[test]
fn missed_csv_is_escaped() {
    let f = with_hostile_miss();
    let (code, out, err) = perezvon(&["missed", "--format", "csv"], &f.config, Some(&f.db));
    assert_eq!(code, 0, "{err}");
    assert_inert("missed csv", &out, &['\r', '\n']);
    assert_eq!(
        out.split("\r\n").count(),
        4,
        "one header, two rows, the last line end"
    );
    assert!(
        out.contains("\\x1b[2J\\x1b]0;pwned\\x07\\x1b]8;;http://evil/\\x1b\\x\\x00\\x0d\\x7f\\x9b31m\\u{202e}321\\u{202c}\\u{2066}\\u{2069}9999"),
        "{}",
        &out[..out.len().min(600)]
    );
    // CSV is for data: the value is escaped, never cut.
    assert!(out.contains(&"9".repeat(100_000)));
}

#[test]
fn missed_json_keeps_the_exact_value_escaped() {
    let f = with_hostile_miss();
    let (code, out, err) = perezvon(&["missed", "--format", "json"], &f.config, Some(&f.db));
    assert_eq!(code, 0, "{err}");
    assert_inert("missed json", &out, &['\n']);
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["caller"], hostile());
    }
}

#[test]
fn report_text_is_escaped_and_bounded() {
    let f = with_hostile_miss();
    let (code, out, err) = perezvon(&["report", "--format", "table"], &f.config, Some(&f.db));
    assert_eq!(code, 0, "{err}");
    assert_inert("report", &out, &['\n']);
    assert!(out.len() < 20_000, "{} bytes", out.len());
    assert!(out.contains("\\x1b[2J"), "{out}");
    let (code, out, err) = perezvon(&["report", "--format", "json"], &f.config, Some(&f.db));
    assert_eq!(code, 0, "{err}");
    assert_inert("report json", &out, &['\n']);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["recent_unresolved"][0]["caller"], hostile());
}

#[test]
fn callbacks_list_is_escaped_and_bounded() {
    let f = fixture();
    let c = rusqlite::Connection::open(&f.db).unwrap();
    let now = Timestamp::now().as_millisecond() as f64 / 1000.0;
    support::insert_row(
        &c,
        "callback_tasks",
        &[
            ("number", Value::Text(hostile())),
            ("state", Value::Text("given_up".into())),
            ("server", Value::Text("lab".into())),
            ("first_missed_at", Value::Real(now - 60.0)),
            ("last_missed_at", Value::Real(now - 60.0)),
            ("next_attempt_at", Value::Real(now)),
            ("closed_at", Value::Real(now)),
            ("close_reason", Value::Text(hostile())),
        ],
    );
    drop(c);
    let (code, out, err) = perezvon(&["callbacks", "list"], &f.config, Some(&f.db));
    assert_eq!(code, 0, "{err}");
    assert_inert("callbacks list", &out, &['\n']);
    assert!(out.len() < 1_000, "{} bytes:\n{out}", out.len());
    assert!(out.contains("\\x1b[2J"), "{out}");
    let (code, out, err) = perezvon(
        &["callbacks", "list", "--format", "json"],
        &f.config,
        Some(&f.db),
    );
    assert_eq!(code, 0, "{err}");
    assert_inert("callbacks json", &out, &['\n']);
    let v: serde_json::Value = serde_json::from_str(out.trim_end()).unwrap();
    assert_eq!(v["number"], hostile());
}

#[test]
fn run_refuses_a_configuration_without_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.toml");
    std::fs::write(&empty, "").unwrap();
    let started = std::time::Instant::now();
    let (code, _, err) = perezvon(&["run"], &empty, Some(&dir.path().join("p.db")));
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("asterisk: no server"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(
        !dir.path().join("p.db").exists(),
        "no database for a daemon that never ran"
    );
}

#[test]
fn reading_commands_still_take_a_configuration_without_a_server() {
    let f = fixture();
    let cfg = f.db.with_file_name("empty.toml");
    std::fs::write(&cfg, "[hours]\ntimezone = \"Europe/Moscow\"\n").unwrap();
    for args in [&["missed"][..], &["report"], &["callbacks", "list"]] {
        let (code, _, err) = perezvon(args, &cfg, Some(&f.db));
        assert_eq!(code, 0, "{args:?}: {err}");
    }
}

#[test]
fn a_secret_is_not_echoed_by_the_other_commands_either() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("p.toml");
    std::fs::write(
        &cfg,
        "[[asterisk]]\nusername = \"u\"\nsecret = 84512397123\n",
    )
    .unwrap();
    let db = dir.path().join("p.db");
    Store::open(&db).unwrap();
    for args in [
        &["run"][..],
        &["missed"],
        &["report"],
        &["callbacks", "list"],
    ] {
        let (code, out, err) = perezvon(args, &cfg, Some(&db));
        assert_ne!(code, 0, "{args:?}");
        assert!(err.contains("asterisk[0].secret"), "{args:?}: {err}");
        assert!(
            !out.contains("8451239") && !err.contains("8451239"),
            "{args:?}: {out}{err}"
        );
    }
}
