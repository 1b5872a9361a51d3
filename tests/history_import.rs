//! The lab's CDR and queue_log (one run recorded three ways, fixtures/asterisk-22-cdr/) against
//! the labels of the same calls: what history can decide, and how close it comes to AMI.

use std::collections::HashMap;
use std::path::Path;

use perezvon::config::Config;
use perezvon::history::{self, Files};

const DIR: &str = "fixtures/asterisk-22-cdr";

#[derive(Debug, serde::Deserialize)]
struct Expect {
    #[serde(default)]
    calls: Vec<Label>,
}

#[derive(Debug, serde::Deserialize)]
struct Label {
    id: String,
    direction: String,
    linkedid: String,
    #[serde(default)]
    missed: Option<bool>,
    #[serde(default)]
    hangup_place: Option<String>,
    #[serde(default)]
    resolved_by: Option<String>,
}

fn labels() -> Vec<Label> {
    let mut out = Vec::new();
    for s in [
        "mixed_concurrent",
        "resolved_by_caller_callback",
        "callback_originate_success",
    ] {
        let text = std::fs::read_to_string(format!("{DIR}/{s}.expect.toml")).unwrap();
        let e: Expect = toml::from_str(&text).unwrap();
        out.extend(e.calls);
    }
    out
}

fn load(cdr: bool, qlog: bool) -> Vec<perezvon::history::build::HistoryCall> {
    let cfg = Config::embedded_default();
    let cdr_path = Path::new(DIR).join("Master.csv");
    let q_path = Path::new(DIR).join("queue_log");
    let files = Files {
        cdr: cdr.then_some(cdr_path.as_path()),
        queue_log: qlog.then_some(q_path.as_path()),
        timezone: &jiff::tz::TimeZone::UTC,
    };
    let l = history::load("lab", &cfg, &files, None).unwrap();
    assert!(l.problems.is_empty(), "{:?}", l.problems);
    l.calls
}

fn compare(calls: &[perezvon::history::build::HistoryCall]) -> Vec<String> {
    let by_id: HashMap<&str, &perezvon::calls::record::CallRecord> = calls
        .iter()
        .map(|c| (c.record.linkedid.as_str(), &c.record))
        .collect();
    let mut wrong = Vec::new();
    let labels = labels();
    assert_eq!(labels.len(), 34, "the lab run has 34 labelled calls");
    for l in labels {
        let Some(r) = by_id.get(l.linkedid.as_str()) else {
            wrong.push(format!("{} ({}): not found", l.id, l.linkedid));
            continue;
        };
        if l.direction == "inbound" {
            let missed = r.is_counted_miss() || r.ignored;
            if Some(missed) != l.missed {
                wrong.push(format!(
                    "{} ({}): missed {missed}, label {:?}: {r:?}",
                    l.id, l.linkedid, l.missed
                ));
            } else if missed {
                let at = r.lost_at.map(|x| x.as_str().to_string());
                if at != l.hangup_place {
                    wrong.push(format!(
                        "{}: lost_at {at:?}, label {:?}",
                        l.id, l.hangup_place
                    ));
                }
            }
        } else if format!("{:?}", r.direction).to_lowercase() != l.direction {
            wrong.push(format!(
                "{}: direction {:?}, label {}",
                l.id, r.direction, l.direction
            ));
        }
        let _ = &l.resolved_by;
    }
    wrong
}

#[test]
fn cdr_with_queue_log_decides_every_lab_call_like_ami() {
    let calls = load(true, true);
    let wrong = compare(&calls);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn cdr_alone() {
    let calls = load(true, false);
    let wrong = compare(&calls);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

fn perezvon(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_perezvon"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const WEEK: std::time::Duration = std::time::Duration::from_secs(7 * 86_400);

/// Resolution is the store's, as for live calls: the lab's two callers who called again or
/// were called back are resolved, nobody else.
#[test]
fn imported_misses_are_resolved_by_later_imported_conversations() {
    let s = perezvon::store::Store::open_in_memory().unwrap();
    let calls = load(true, true);
    let out = s
        .record_history(
            &calls,
            perezvon::store::history::Source::Imported,
            WEEK,
            None,
        )
        .unwrap();
    assert_eq!(out.stored.len(), calls.len());
    let mut checked = 0;
    for l in labels().iter().filter(|l| l.direction == "inbound") {
        let r = s.get_call("lab", &l.linkedid).unwrap().unwrap();
        let want = l.resolved_by.as_deref().filter(|b| *b != "none");
        if l.missed == Some(true) {
            assert_eq!(
                r.resolved_by.map(|b| b.as_str()),
                want,
                "{} ({})",
                l.id,
                l.linkedid
            );
            checked += 1;
        }
        assert_eq!(
            s.call_source("lab", &l.linkedid).unwrap().as_deref(),
            Some("imported")
        );
    }
    assert!(checked >= 20, "{checked}");
    // The queue of a queue call is kept.
    assert_eq!(
        s.call_queue("lab", "1796197842.88").unwrap().as_deref(),
        Some("sales")
    );
    // Importing again adds nothing.
    let again = s
        .record_history(
            &calls,
            perezvon::store::history::Source::Imported,
            WEEK,
            None,
        )
        .unwrap();
    assert!(again.stored.is_empty());
    assert_eq!(again.known as usize, calls.len());
}

/// queue_log alone decides the queue calls (missed or answered, the queue, the member); run
/// after the CDR import, it finds every one of its calls already stored.
#[test]
fn queue_log_alone_decides_queue_calls_and_never_duplicates_the_cdr_ones() {
    let q = load(false, true);
    let by_caller: HashMap<String, &perezvon::calls::record::CallRecord> = q
        .iter()
        .map(|c| (c.record.caller.clone().unwrap_or_default(), &c.record))
        .collect();
    // c19: the member answered but talked 3 s (< min_talk): a miss; c29 answered.
    assert!(by_caller["+79160000019"].is_counted_miss());
    assert_eq!(
        by_caller["+79160000019"].agent.as_deref(),
        Some("Maria Ivanova")
    );
    assert_eq!(
        by_caller["89160000022"].hangup_by.as_deref(),
        Some("caller")
    );
    assert!(q
        .iter()
        .all(|c| c.origin == "queue_log" && c.queue.is_some()));

    let s = perezvon::store::Store::open_in_memory().unwrap();
    let src = perezvon::store::history::Source::Imported;
    s.record_history(&load(true, false), src, WEEK, None)
        .unwrap();
    let again = s.record_history(&q, src, WEEK, None).unwrap();
    assert!(again.stored.is_empty(), "{:?}", again.stored);
}

/// A call recorded live is never replaced by its CDR; a live `unknown` (the link was down) is.
#[test]
fn live_verdicts_stay_and_live_unknowns_are_decided_from_history() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let db_s = db.to_str().unwrap();
    let (code, _, err) = perezvon(&[
        "replay",
        "--db",
        db_s,
        "--config",
        "fixtures/asterisk-22/lab.toml",
        &format!("{DIR}/mixed_concurrent.ami"),
    ]);
    assert_eq!(code, 0, "{err}");
    let s = perezvon::store::Store::open(&db).unwrap();
    let live = s.get_call("lab", "1796197842.88").unwrap().unwrap();
    // c24 becomes unknown, as if it had ended while the link was down.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute(
        "UPDATE calls SET status = 'unknown', missed = 0, lost_at = NULL, unknown_reason = 'link_down' \
         WHERE server = 'lab' AND linkedid = '1796197842.98'",
        [],
    )
    .unwrap();
    drop(conn);
    let out = s
        .record_history(
            &load(true, true),
            perezvon::store::history::Source::Backfilled,
            WEEK,
            None,
        )
        .unwrap();
    assert_eq!(out.upgraded, 1);
    assert_eq!(s.get_call("lab", "1796197842.88").unwrap().unwrap(), live);
    assert_eq!(
        s.call_source("lab", "1796197842.88").unwrap().as_deref(),
        Some("ami")
    );
    let c24 = s.get_call("lab", "1796197842.98").unwrap().unwrap();
    assert!(c24.is_counted_miss(), "{c24:?}");
    assert_eq!(c24.lost_at.map(|l| l.as_str()), Some("group"));
    assert_eq!(
        s.call_source("lab", "1796197842.98").unwrap().as_deref(),
        Some("backfilled")
    );
    // Only the calls of the other two scenarios (and the lab's own) were new.
    assert!(out.stored.len() < 8, "{}", out.stored.len());
}

#[test]
fn cli_import_is_idempotent_and_bad_lines_are_named_with_the_rest_kept() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.db");
    let db_s = db.to_str().unwrap();
    let csv = dir.path().join("Master.csv");
    let good = std::fs::read_to_string(format!("{DIR}/Master.csv")).unwrap();
    let mut lines: Vec<&str> = good.lines().collect();
    lines.insert(3, "\"half a row\",\"x\"");
    lines.insert(7, "\u{1}\u{2}garbage");
    std::fs::write(&csv, lines.join("\n")).unwrap();
    let args = [
        "import",
        "--config",
        "fixtures/asterisk-22/lab.toml",
        "--db",
        db_s,
        "--cdr",
        csv.to_str().unwrap(),
        "--queue-log",
        &format!("{DIR}/queue_log"),
    ];
    let (code, out, err) = perezvon(&args);
    assert_eq!(code, 65, "{out}{err}");
    assert!(err.contains("Master.csv: line 4: 2 columns"), "{err}");
    assert!(err.contains("line 8:"), "{err}");
    assert!(out.starts_with("imported 3"), "{out}");
    let (code, out, _) = perezvon(&args);
    assert_eq!(code, 65);
    assert!(out.starts_with("imported 0 calls"), "{out}");
    let (code, out, err) = perezvon(&[
        "missed",
        "--config",
        "fixtures/asterisk-22/lab.toml",
        "--db",
        db_s,
        "--since",
        "36500d",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 20, "{out}");
    assert!(
        err.contains("35 imported and 0 backfilled calls in this period"),
        "{err}"
    );
    // A file that is not there: a clear error, nothing else.
    let (code, _, err) = perezvon(&[
        "import",
        "--db",
        db_s,
        "--server",
        "lab",
        "--cdr",
        "/nonexistent/Master.csv",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot read /nonexistent/Master.csv"), "{err}");
    let (code, _, err) = perezvon(&["import", "--db", db_s, "--server", "lab"]);
    assert_eq!(code, 1);
    assert!(err.contains("nothing to import"), "{err}");
}

#[test]
fn cli_export_and_forget_by_any_form_of_the_number() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.db");
    let db_s = db.to_str().unwrap();
    let cfg = "fixtures/asterisk-22/lab.toml";
    let (code, _, err) = perezvon(&[
        "import",
        "--config",
        cfg,
        "--db",
        db_s,
        "--cdr",
        &format!("{DIR}/Master.csv"),
    ]);
    assert_eq!(code, 0, "{err}");
    // +79160000003: a group miss, a queue call, answered.
    let (code, out, err) = perezvon(&[
        "export",
        "--config",
        cfg,
        "--db",
        db_s,
        "--number",
        "8 (916) 000-00-03",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["number"], "79160000003");
    assert_eq!(v["calls"].as_array().unwrap().len(), 2, "{out}");
    assert_eq!(v["calls"][0]["source"], "imported");
    let (code, out, err) = perezvon(&[
        "forget",
        "--config",
        cfg,
        "--db",
        db_s,
        "--number",
        "+7 916 000-00-03",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        "forgot 79160000003: 2 calls, 0 callback tasks, 0 callback attempts, 0 notifications, 0 CRM links, 0 callback requests (2 rows)"
    );
    let (_, out, _) = perezvon(&[
        "export",
        "--config",
        cfg,
        "--db",
        db_s,
        "--number",
        "79160000003",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["calls"].as_array().unwrap().is_empty());
    // Others are untouched.
    let (_, out, _) = perezvon(&[
        "export",
        "--config",
        cfg,
        "--db",
        db_s,
        "--number",
        "+79160000002",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["calls"].as_array().unwrap().len(), 2);
    let (code, _, err) = perezvon(&[
        "forget", "--config", cfg, "--db", db_s, "--number", "call me",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("not a phone number"), "{err}");
}

#[test]
fn backfill_and_retention_keys_are_checked_with_their_names() {
    let text = r#"
[[asterisk]]
name = "pbx1"
username = "perezvon"
secret = "a-long-random-secret-0123456789"
[storage]
keep_calls = "12h"
[backfill]
cdr = ""
server = "pbx2"
timezone = "Mars/Olympus"
max_gap = "soon"
"#;
    let e = Config::from_toml(text).unwrap_err().to_string();
    for want in [
        "storage.keep_calls: must be at least 1d",
        "backfill.cdr: is empty",
        "backfill.server: no [[asterisk]] server is named \"pbx2\"",
        "backfill.timezone: unknown time zone \"Mars/Olympus\"",
        "backfill.max_gap: invalid duration \"soon\"",
    ] {
        assert!(e.contains(want), "{want} not in:\n{e}");
    }
    let ok = Config::from_toml(
        "[storage]\nkeep_calls = \"400d\"\n[backfill]\ncdr = \"/var/log/asterisk/cdr-csv/Master.csv\"\ntimezone = \"Europe/Moscow\"\n",
    )
    .unwrap();
    assert_eq!(
        ok.storage.keep_calls,
        Some(std::time::Duration::from_secs(400 * 86_400))
    );
    assert!(ok.backfill.enabled());
    assert_eq!(
        ok.backfill.max_gap,
        std::time::Duration::from_secs(7 * 86_400)
    );
    assert!(Config::from_toml("").unwrap().storage.keep_calls.is_none());
}

#[test]
fn cli_backfill_by_hand_keeps_live_calls_and_stores_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let db_s = db.to_str().unwrap();
    let cfg = "fixtures/asterisk-22/lab.toml";
    let (code, _, err) = perezvon(&[
        "backfill",
        "--config",
        cfg,
        "--db",
        db_s,
        "--since",
        "3650d",
        "--cdr",
        &format!("{DIR}/Master.csv"),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("does not exist"), "{err}");
    // Two calls seen live.
    let (code, _, err) = perezvon(&[
        "replay",
        "--db",
        db_s,
        "--config",
        cfg,
        &format!("{DIR}/resolved_by_caller_callback.ami"),
    ]);
    assert_eq!(code, 0, "{err}");
    let args = [
        "backfill",
        "--config",
        cfg,
        "--db",
        db_s,
        "--since",
        "3650d",
        "--cdr",
        &format!("{DIR}/Master.csv"),
        "--queue-log",
        &format!("{DIR}/queue_log"),
    ];
    let (code, out, err) = perezvon(&args);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("backfilled 33 calls (19 missed)") && out.contains("2 already known"),
        "{out}"
    );
    let s = perezvon::store::Store::open(&db).unwrap();
    assert_eq!(
        s.call_source("lab", "1796197866.160").unwrap().as_deref(),
        Some("ami")
    );
    assert_eq!(
        s.call_source("lab", "1796197895.170").unwrap().as_deref(),
        Some("backfilled")
    );
    let (_, out, _) = perezvon(&args);
    assert!(out.starts_with("backfilled 0 calls"), "{out}");
    // A window with nothing in it, and one that ends before it starts.
    let mut empty = args.to_vec();
    empty[6] = "1m";
    let (code, out, _) = perezvon(&empty);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("backfilled 0 calls (0 missed) from 0 CDR rows"),
        "{out}"
    );
    let (code, _, err) = perezvon(&[
        "backfill", "--config", cfg, "--db", db_s, "--since", "1h", "--until", "2h", "--cdr",
        "x.csv",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("--until must be later than --since"), "{err}");
    let (code, _, err) = perezvon(&["backfill", "--config", cfg, "--db", db_s, "--since", "1h"]);
    assert_eq!(code, 1);
    assert!(err.contains("nothing to backfill from"), "{err}");
}

#[test]
fn each_server_may_name_its_own_records() {
    let c = Config::from_toml(
        r#"
[[asterisk]]
name = "pbx1"
username = "perezvon"
secret = "a-long-random-secret-0123456789"
[[asterisk]]
name = "pbx2"
username = "perezvon"
secret = "a-long-random-secret-0123456789"
backfill_queue_log = "/mnt/pbx2/queue_log"
[backfill]
cdr = "/var/log/asterisk/cdr-csv/Master.csv"
"#,
    )
    .unwrap();
    fn p(s: &str) -> Option<&Path> {
        Some(Path::new(s))
    }
    assert_eq!(
        c.backfill.files_for("pbx1"),
        Some((p("/var/log/asterisk/cdr-csv/Master.csv"), None))
    );
    assert_eq!(
        c.backfill.files_for("pbx2"),
        Some((None, p("/mnt/pbx2/queue_log")))
    );
    assert_eq!(c.backfill.files_for("pbx3"), None);
    assert_eq!(
        Config::from_toml("").unwrap().backfill.files_for("default"),
        None
    );
}
