//! The report's figures on the real captures: `perezvon replay` fills a database from
//! fixtures/, `perezvon report --from/--to` must give the per-queue, per-DID, per-agent numbers,
//! the service level and the open / after hours split that the captures' labels
//! (`*.expect.toml`) imply. The numbers are pinned: a change in the tracker or the report that
//! moves them fails here.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const DAY: &str = "2026-11-22";

fn replay(db: &Path, captures: &[PathBuf]) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_perezvon"))
        .args(["replay", "--format", "jsonl", "--db"])
        .arg(db)
        .args(captures)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "replay: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `perezvon report ARGS --format json` with `[hours]` and `[report]` as given.
fn report(db: &Path, config: &str, args: &[&str]) -> Value {
    let path = db.with_extension("toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_perezvon"))
        .arg("report")
        .args(args)
        .args(["--format", "json", "--config"])
        .arg(&path)
        .arg("--db")
        .arg(db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "report {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// (inbound, answered, missed, abandoned, withheld_missed) of one breakdown row.
fn row(list: &Value, name: Option<&str>) -> (u64, u64, u64, u64, u64) {
    let r = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"].as_str() == name)
        .unwrap_or_else(|| panic!("no row {name:?} in {list}"));
    let n = |k: &str| r[k].as_u64().unwrap();
    (
        n("inbound"),
        n("answered"),
        n("missed"),
        n("abandoned"),
        n("withheld_missed"),
    )
}

const MOSCOW: &str = "[hours]\ntimezone = \"Europe/Moscow\"\n";

#[test]
fn mixed_concurrent_per_queue_did_and_agent() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("mixed.db");
    replay(&db, &["fixtures/asterisk-22/mixed_concurrent.ami".into()]);
    let r = report(&db, MOSCOW, &["--from", DAY, "--to", DAY]);
    for key in [
        "by_queue",
        "by_agent",
        "by_did",
        "service_level",
        "open_hours",
        "after_hours",
    ] {
        assert!(r.get(key).is_some(), "the contract key {key} is missing");
    }
    // 30 inbound calls; c11 (1 s ring) and c27 (hung up in the IVR after 2 s, under the lab's
    // min_wait of 3 s) are accidental, so 28 count: 10 answered, 18 missed.
    assert_eq!(r["inbound"]["total"], 28);
    assert_eq!(r["inbound"]["answered"], 10);
    assert_eq!(r["inbound"]["missed"], 18);
    assert_eq!(r["inbound"]["ignored"], 2);
    // c15 is anonymous: counted, missed, and apart as withheld (cannot be called back).
    assert_eq!(r["inbound"]["withheld_missed"], 1);
    assert_eq!(r["inbound"]["callable_missed"], 17);

    // Queue sales: c01 c13 c29 answered; c05 c15 c22 c26 abandoned, c19 too short (the agent
    // hung up). Queue support: c06 c23 c30 answered, c14 abandoned.
    assert_eq!(row(&r["by_queue"], Some("sales")), (8, 3, 5, 4, 1));
    assert_eq!(row(&r["by_queue"], Some("support")), (4, 3, 1, 1, 0));
    assert_eq!(row(&r["by_queue"], None), (16, 4, 12, 7, 0));
    // The IVR number 74951110000: c02 abandoned, c20 invalid choice, c13 c30 answered (c27
    // accidental, apart).
    assert_eq!(row(&r["by_did"], Some("74951110000")), (4, 2, 2, 1, 0));
    // Sales' number: c01 c29 answered, c05 c15 c19 c22 c26 missed.
    assert_eq!(row(&r["by_did"], Some("74951110001")), (7, 2, 5, 4, 1));
    // Agent 203 answered c13, c21 and c29 (and was rung last on nothing else missed).
    let a203 = row(&r["by_agent"], Some("203"));
    assert_eq!((a203.0 - a203.2, a203.1), (3, 3), "{a203:?}");

    // Every answered call was answered within 20 s (the longest ring is c13's 7.5 s).
    let sl = &r["service_level"];
    assert_eq!(sl["threshold_secs"], 20.0);
    assert_eq!(
        (sl["offered"].as_u64(), sl["answered_within"].as_u64()),
        (Some(28), Some(10))
    );
    assert!((sl["share"].as_f64().unwrap() - 10.0 / 28.0).abs() < 1e-9);
    // Abandoned: the 12 misses the caller ended (c02 c03 c05 c09 c10 c14 c15 c16 c18 c22 c24 c26).
    assert_eq!(sl["abandoned"], 12);
    let asa = sl["asa_secs"].as_f64().unwrap();
    assert!((2.0..8.0).contains(&asa), "average speed of answer {asa}");
    // With a 4 s threshold only the quick answers are in service: c04 (2.0 s), c06 (3.5),
    // c08 (3.0), c17 (3.0), c23 (2.5).
    let strict = report(
        &db,
        &format!("{MOSCOW}[report]\nservice_level = \"4s\"\n"),
        &["--from", DAY, "--to", DAY],
    );
    assert_eq!(strict["service_level"]["answered_within"], 5);
    assert_eq!(row(&strict["by_queue"], Some("support")).0, 4);

    // The capture is on a Sunday evening (22:23 in Moscow); the default schedule is closed.
    assert_eq!(r["after_hours"]["inbound"], 28);
    assert_eq!(r["open_hours"]["inbound"], 0);
    assert_eq!(r["weekends"]["inbound"], 28);
    // The day before had nothing: the previous period is there, empty, and the change is all.
    assert_eq!(r["previous"]["inbound"], 0);
    assert_eq!(r["previous"]["change"]["inbound"], 28);
}

#[test]
fn all_captures_inside_and_outside_working_hours() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("all.db");
    let mut captures: Vec<PathBuf> = std::fs::read_dir("fixtures/asterisk-22")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ami"))
        .collect();
    captures.sort();
    let calls = replay(&db, &captures);
    // Open from 22:20 Moscow (19:20 UTC), inside a quarter hour: the captures recorded from
    // queue_ringall_one_answers on are inside working hours, the earlier ones outside.
    let hours = format!("{MOSCOW}sunday = [\"22:20-24:00\"]\n");
    let r = report(&db, &hours, &["--from", DAY, "--to", DAY]);
    let opens: jiff::Timestamp = "2026-11-22T19:20:00Z".parse().unwrap();
    let counted = |c: &&Value| {
        c["direction"] == "inbound"
            && c["ignored"] != true
            && c["status"] != "unknown"
            && c["status"] != "ignored"
    };
    let started = |c: &Value| {
        c["started_at"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .unwrap()
    };
    let (mut inside, mut outside) = ((0, 0), (0, 0));
    for c in calls.iter().filter(counted) {
        let side = if started(c) >= opens {
            &mut inside
        } else {
            &mut outside
        };
        side.0 += 1;
        side.1 += u64::from(c["status"] == "missed" || c["missed"] == true);
    }
    let got = |k: &str| {
        (
            r[k]["inbound"].as_u64().unwrap(),
            r[k]["missed"].as_u64().unwrap(),
        )
    };
    assert_eq!(got("open_hours"), inside);
    assert_eq!(got("after_hours"), outside);
    // Pinned: what the 23 captures hold on each side of 22:20.
    assert_eq!((inside, outside), ((39, 26), (13, 11)));
    assert_eq!(r["inbound"]["total"], 52);

    // A `--since` period that is not whole hours reads its edges from the calls: same figures.
    let since = report(&db, &hours, &["--since", "36500d"]);
    assert_eq!(since["open_hours"], r["open_hours"]);
    assert_eq!(since["by_queue"], r["by_queue"]);
}

#[test]
fn bad_dates_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("e.db");
    replay(&db, &["fixtures/asterisk-22/voicemail.ami".into()]);
    let path = db.with_extension("toml");
    std::fs::write(&path, MOSCOW).unwrap();
    for (args, says) in [
        (
            &["--from", "2026-13-01"][..],
            "--from \"2026-13-01\": not a date",
        ),
        (
            &["--from", "2026-12-07", "--to", "2026-12-01"][..],
            "is after --to",
        ),
        (&["--to", "yesterday"][..], "--to \"yesterday\": not a date"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_perezvon"))
            .arg("report")
            .args(args)
            .arg("--config")
            .arg(&path)
            .arg("--db")
            .arg(&db)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(says),
            "{args:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    // CSV: one figure a row, the contract's sections present.
    let out = Command::new(env!("CARGO_BIN_EXE_perezvon"))
        .args([
            "report", "--from", DAY, "--to", DAY, "--format", "csv", "--config",
        ])
        .arg(&path)
        .arg("--db")
        .arg(&db)
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut rdr = csv::Reader::from_reader(&out.stdout[..]);
    let rows: Vec<csv::StringRecord> = rdr.records().map(|r| r.unwrap()).collect();
    assert!(rows.iter().all(|r| r.len() == 4));
    let has =
        |section: &str, metric: &str| rows.iter().any(|r| &r[0] == section && &r[2] == metric);
    assert!(has("service_level", "share") && has("open_hours", "inbound"));
    assert!(has("after_hours", "service_level") && has("change", "inbound"));
    let inbound = rows
        .iter()
        .find(|r| &r[0] == "inbound" && &r[2] == "total")
        .unwrap();
    assert_eq!(&inbound[3], "1");
}
