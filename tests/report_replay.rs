//! End to end on the real captures: `perezvon replay` fills a database from fixtures/, and
//! `perezvon missed` / `perezvon report` must agree with the verdicts replay printed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn captures() -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir("fixtures/asterisk-22")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ami"))
        .collect();
    v.sort();
    v
}

/// Runs a reading command with the lab's configuration (written out, so no system file is read).
fn run(args: &[&str], db: &Path) -> String {
    let config = db.with_extension("toml");
    std::fs::write(&config, perezvon::config::EMBEDDED_DEFAULT).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_perezvon"))
        .args(args)
        .arg("--config")
        .arg(&config)
        .arg("--db")
        .arg(db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "perezvon {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn missed_and_report_agree_with_replayed_captures() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("lab.db");
    let mut replay = Command::new(env!("CARGO_BIN_EXE_perezvon"));
    replay
        .args(["replay", "--format", "jsonl", "--db"])
        .arg(&db);
    replay.args(captures());
    let out = replay.output().unwrap();
    assert!(
        out.status.success(),
        "replay: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let calls: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let inbound: Vec<&Value> = calls
        .iter()
        .filter(|c| c["direction"] == "inbound")
        .collect();
    let is_missed = |c: &&Value| c["missed"] == true && c["ignored"] != true;
    let missed: Vec<&Value> = inbound.iter().copied().filter(is_missed).collect();
    assert!(
        missed.len() >= 20,
        "the captures hold dozens of misses, replay gave {}",
        missed.len()
    );

    // The captures were recorded on one day; a long window takes them all whatever today is.
    let since = ["--since", "36500d"];
    let listed: Vec<Value> = run(&[&["missed", "--format", "json"][..], &since].concat(), &db)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let key = |c: &Value| format!("{}/{}", c["server"], c["linkedid"]);
    let mut want: Vec<String> = missed.iter().map(|c| key(c)).collect();
    let mut got: Vec<String> = listed.iter().map(key).collect();
    want.sort();
    got.sort();
    assert_eq!(got, want, "missed lists exactly the missed inbound calls");
    let ends: Vec<&str> = listed
        .iter()
        .map(|c| c["ended_at"].as_str().unwrap())
        .collect();
    assert!(
        ends.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {ends:?}"
    );
    assert!(listed
        .iter()
        .all(|r| r["started_at"].as_str().unwrap().ends_with("+03:00")));
    for (c, l) in missed
        .iter()
        .map(|c| (key(c), c))
        .collect::<BTreeMap<_, _>>()
    {
        let row = listed.iter().find(|r| key(r) == c).unwrap();
        assert_eq!(row["lost_at"], l["lost_at"], "{c}");
        assert_eq!(row["resolved_by"], l["resolved_by"], "{c}");
    }
    let unresolved = run(
        &[&["missed", "--unresolved", "--format", "json"][..], &since].concat(),
        &db,
    );
    assert_eq!(
        unresolved.lines().count(),
        missed.iter().filter(|c| c["resolved_by"].is_null()).count()
    );

    let report: Value = serde_json::from_str(&run(
        &[&["report", "--format", "json"][..], &since].concat(),
        &db,
    ))
    .unwrap();
    let count = |f: &dyn Fn(&&&Value) -> bool| inbound.iter().filter(f).count() as u64;
    assert_eq!(report["inbound"]["missed"], missed.len() as u64);
    assert_eq!(
        report["inbound"]["ignored"],
        count(&|c| c["ignored"] == true)
    );
    for by in ["caller", "agent", "callback"] {
        let n = count(&|c| is_missed(c) && c["resolved_by"] == by);
        let b = report["resolved_by"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["label"] == by)
            .unwrap();
        assert_eq!(b["count"], n, "resolved by {by}");
        // mixed_concurrent and resolved_by_* are built to resolve misses each way but callback.
        if by != "callback" {
            assert!(n >= 1, "the captures resolve a miss by {by}");
        }
    }
    let waits: u64 = report["waits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .sum();
    assert_eq!(waits, missed.len() as u64);

    let html = run(&[&["report", "--format", "html"][..], &since].concat(), &db);
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    let table = run(&[&["report"][..], &since].concat(), &db);
    assert!(table.contains("Europe/Moscow"), "{table}");
}
