//! The same commands on both engines: `replay --db` into a SQLite file and into a PostgreSQL
//! database, then `missed`, `report` and `callbacks list` read each; the outputs must be the same
//! byte for byte. Skipped (with a message) when PostgreSQL is not installed.

mod support;

use std::process::Command;

use support::pg::TestDb;

const BIN: &str = env!("CARGO_BIN_EXE_perezvon");

fn perezvon(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .env("TZ", "UTC")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "perezvon {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Every capture of a lab, replayed into `db`.
fn replay_lab(lab_dir: &str, config: &str, db: &TestDb) {
    let mut captures: Vec<String> = std::fs::read_dir(lab_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path().display().to_string())
        .filter(|p| p.ends_with(".ami"))
        .collect();
    captures.sort();
    let mut args = vec!["replay", "--config", config, "--db"];
    let arg = db.arg();
    args.push(&arg);
    args.extend(captures.iter().map(String::as_str));
    perezvon(&args);
}

fn readings(config: &str, db: &TestDb) -> Vec<(String, String)> {
    let arg = db.arg();
    let base = ["--config", config, "--db", arg.as_str()];
    let with = |cmd: &[&str], extra: &[&str]| -> Vec<String> {
        cmd.iter()
            .chain(base.iter())
            .chain(extra.iter())
            .map(|s| s.to_string())
            .collect()
    };
    let runs: Vec<Vec<String>> = vec![
        with(&["missed"], &["--since", "3650d", "--format", "json"]),
        with(&["missed"], &["--since", "3650d", "--format", "csv"]),
        with(&["missed"], &["--since", "3650d", "--unresolved"]),
        with(
            &["report"],
            &[
                "--from",
                "2026-01-01",
                "--to",
                "2027-12-31",
                "--format",
                "json",
            ],
        ),
        with(&["report"], &["--from", "2026-01-01", "--to", "2027-12-31"]),
        with(
            &["report"],
            &[
                "--from",
                "2026-01-01",
                "--to",
                "2027-12-31",
                "--format",
                "csv",
            ],
        ),
        with(&["callbacks", "list"], &["--format", "json"]),
    ];
    runs.into_iter()
        .map(|a| {
            let refs: Vec<&str> = a.iter().map(String::as_str).collect();
            (a.join(" ").replace(&arg, "DB"), perezvon(&refs))
        })
        .collect()
}

fn same_on_both_engines(lab_dir: &str, config: &str) {
    let Some(pg) = TestDb::postgres() else {
        return;
    };
    let sqlite = TestDb::sqlite();
    replay_lab(lab_dir, config, &sqlite);
    replay_lab(lab_dir, config, &pg);
    let a = readings(config, &sqlite);
    let b = readings(config, &pg);
    for ((cmd, x), (_, y)) in a.iter().zip(&b) {
        assert!(
            !x.trim().is_empty() || cmd.contains("callbacks"),
            "{cmd}: empty output"
        );
        assert!(
            x == y,
            "{cmd}: SQLite and PostgreSQL differ:\n{}",
            line_diff(x, y)
        );
    }
}

/// The lines that differ (SQLite `-`, PostgreSQL `+`), with their numbers, at most 40.
fn line_diff(a: &str, b: &str) -> String {
    let (la, lb): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let mut out = String::new();
    let mut shown = 0;
    for i in 0..la.len().max(lb.len()) {
        let (x, y) = (la.get(i), lb.get(i));
        if x != y && shown < 40 {
            out.push_str(&format!(
                "{i}: - {}\n{i}: + {}\n",
                x.unwrap_or(&""),
                y.unwrap_or(&"")
            ));
            shown += 1;
        }
    }
    out
}

#[test]
fn local_channel_lab_reads_the_same_on_both_engines() {
    same_on_both_engines("fixtures/asterisk-22", "fixtures/asterisk-22/lab.toml");
}

#[test]
fn pjsip_lab_reads_the_same_on_both_engines() {
    same_on_both_engines(
        "fixtures/asterisk-22-pjsip",
        "fixtures/asterisk-22-pjsip/pjsip.toml",
    );
}

#[test]
fn replaying_twice_into_postgres_is_idempotent() {
    let Some(pg) = TestDb::postgres() else {
        return;
    };
    let lab = "fixtures/asterisk-22/lab.toml";
    replay_lab("fixtures/asterisk-22", lab, &pg);
    let first = readings(lab, &pg);
    replay_lab("fixtures/asterisk-22", lab, &pg);
    assert_eq!(first, readings(lab, &pg));
}
