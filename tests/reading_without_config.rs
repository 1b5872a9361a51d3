//! `perezvon missed` and `perezvon report` need to know which database and time zone are meant:
//! without `--config` and without the system file they stop with exit 78 instead of quietly
//! reading the lab PBX's settings; `--db FILE` alone is enough, with the default settings (UTC).

use std::path::Path;
use std::process::Command;

use jiff::{SignedDuration, Timestamp};
use perezvon::store::Store;

mod support;

const SYSTEM_CONFIG: &str = "/etc/perezvon/perezvon.toml";

/// Runs the binary in `cwd` (so a relative default database path could not hide in the
/// repository), returning the exit code, stdout and stderr.
fn perezvon(cwd: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_perezvon"))
        .args(args)
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// These tests are about a machine without the system configuration; where perezvon is
/// installed (a package, an admin's /etc), `missed` rightly reads that file instead.
fn system_config_present() -> bool {
    let present = Path::new(SYSTEM_CONFIG).exists();
    if present {
        eprintln!("skipped: {SYSTEM_CONFIG} exists on this machine");
    }
    present
}

/// A database with one miss 30 minutes ago.
fn db_with_a_miss(dir: &Path) -> std::path::PathBuf {
    let db = dir.join("calls.db");
    let store = Store::open(&db).unwrap();
    let started = Timestamp::now() - SignedDuration::from_mins(30);
    store
        .insert_call(&support::inbound_miss("1795375036.1", started, 20.0))
        .unwrap();
    db
}

#[test]
fn missed_and_report_without_config_or_db_exit_78_and_say_why() {
    if system_config_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["missed"][..],
        &["report"],
        &["report", "--format", "html"],
    ] {
        let (code, out, err) = perezvon(dir.path(), args);
        assert_eq!(code, 78, "{args:?}: {err}");
        assert_eq!(out, "", "{args:?}");
        assert!(
            err.contains("no configuration")
                && err.contains(SYSTEM_CONFIG)
                && err.contains("--config")
                && err.contains("--db"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("lab"), "{args:?}: {err}");
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "a refused command left a file behind"
    );
}

#[test]
fn with_db_alone_the_defaults_apply_and_times_are_utc() {
    if system_config_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = db_with_a_miss(dir.path());
    let db = db.to_str().unwrap();
    let (code, out, err) = perezvon(dir.path(), &["missed", "--db", db, "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("default settings (times in UTC)"), "{err}");
    let line: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let started = line["started_at"].as_str().unwrap();
    assert!(started.ends_with("+00:00"), "{started}");
    let (code, out, err) = perezvon(dir.path(), &["report", "--db", db, "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["inbound"]["missed"], 1, "{out}");

    // The same database read with a configuration uses its time zone (the contrast that makes
    // the UTC above mean something).
    let cfg = dir.path().join("p.toml");
    std::fs::write(&cfg, "[hours]\ntimezone = \"Europe/Moscow\"\n").unwrap();
    let (code, out, err) = perezvon(
        dir.path(),
        &[
            "missed",
            "--db",
            db,
            "--config",
            cfg.to_str().unwrap(),
            "--format",
            "json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("default settings"), "{err}");
    let line: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(
        line["started_at"].as_str().unwrap().ends_with("+03:00"),
        "{out}"
    );
}

#[test]
fn a_bad_config_is_a_configuration_error_too() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_with_a_miss(dir.path());
    let cfg = dir.path().join("p.toml");
    std::fs::write(&cfg, "[hours]\ntimezone = \"Mars/Base\"\n").unwrap();
    for cmd in ["missed", "report"] {
        let (code, out, err) = perezvon(
            dir.path(),
            &[
                cmd,
                "--config",
                cfg.to_str().unwrap(),
                "--db",
                db.to_str().unwrap(),
            ],
        );
        assert_eq!(code, 78, "{cmd}: {err}");
        assert_eq!(out, "");
        assert!(err.contains("hours.timezone"), "{cmd}: {err}");
    }
    let missing = dir.path().join("missing.toml");
    let (code, _, err) = perezvon(
        dir.path(),
        &["missed", "--config", missing.to_str().unwrap()],
    );
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("cannot read"), "{err}");
}
