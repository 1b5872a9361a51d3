//! `perezvon dnc add|remove|list` and the kind/owner/disposition columns of `callbacks list`,
//! as an admin runs them.

use std::process::Command;

use jiff::{SignedDuration, Timestamp};
use perezvon::callback::planner::{Task, TaskState};
use perezvon::callback::request::{Disposition, Routing, TaskKind};
use perezvon::store::Store;

fn perezvon(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_perezvon"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn any_form_of_the_number_is_stored_normalised() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let db = db.to_str().unwrap();
    // `add` creates the database: the list can be prepared before the first start.
    let (code, out, err) = perezvon(&["dnc", "add", "--db", db, "+7 (916) 123-45-67"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("+79161234567 is on the do-not-call list"),
        "{out}"
    );
    // The national form is the same number.
    let (code, out, _) = perezvon(&["dnc", "add", "--db", db, "8 916 123 45 67"]);
    assert_eq!(code, 0);
    assert!(out.contains("already"), "{out}");
    let s = Store::open(std::path::Path::new(db)).unwrap();
    let list = s.dnc_list().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].number, "79161234567");
    assert_eq!(list[0].source, "cli");
    drop(s);
    let (code, out, _) = perezvon(&["dnc", "list", "--db", db]);
    assert_eq!(code, 0);
    assert!(out.starts_with("NUMBER"), "{out}");
    assert!(out.contains("+79161234567"), "{out}");
    let (code, out, _) = perezvon(&["dnc", "remove", "--db", db, "79161234567"]);
    assert_eq!(code, 0);
    assert!(out.contains("off the do-not-call list"), "{out}");
    let (code, _, err) = perezvon(&["dnc", "remove", "--db", db, "79161234567"]);
    assert_eq!(code, 1);
    assert!(err.contains("not on the do-not-call list"), "{err}");
}

#[test]
fn bad_input_gets_a_clear_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let db = db.to_str().unwrap();
    for bad in ["hello", "", "12", "+7916\r\n1234567", "1234567890123456789"] {
        let (code, _, err) = perezvon(&["dnc", "add", "--db", db, bad]);
        assert_eq!(code, 2, "{bad:?}: {err}");
        assert!(err.contains("is not a phone number"), "{bad:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // list/remove do not create a database.
    let missing = dir.path().join("none.db");
    let (code, _, err) = perezvon(&["dnc", "list", "--db", missing.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("does not exist"), "{err}");
    // A bad configuration: exit 78.
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[callback]\nowner_wait = \"soon\"\n").unwrap();
    let (code, _, err) = perezvon(&["dnc", "list", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("callback.owner_wait"), "{err}");
}

#[test]
fn the_configured_plan_normalises_and_adding_cancels_the_open_task() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let cfg = dir.path().join("p.toml");
    std::fs::write(
        &cfg,
        format!("[storage]\ndatabase = {:?}\n", db.display().to_string()),
    )
    .unwrap();
    let t0 = Timestamp::now();
    let mut s = Store::open(&db).unwrap();
    let id = s
        .create_task(&Task {
            id: 0,
            number: "79161234567".into(),
            state: TaskState::Pending,
            server: "pbx".into(),
            missed_count: 2,
            attempts: 0,
            attempt_budget: 3,
            lost_at: None,
            first_missed_at: t0,
            last_missed_at: t0,
            next_attempt_at: t0,
            give_up_at: t0 + SignedDuration::from_secs(86_400),
            last_attempt_at: None,
            last_outcome: None,
            use_fallback: false,
            routing: Routing {
                kind: TaskKind::Requested,
                owner: Some("202".into()),
                owner_until: Some(t0 + SignedDuration::from_secs(600)),
                queue: Some("sales".into()),
                joined_at: Some(t0),
            },
        })
        .unwrap();
    let other = s
        .create_task(&Task {
            number: "79162222222".into(),
            routing: Routing::default(),
            ..s.task(id).unwrap().unwrap().task
        })
        .unwrap();
    s.set_disposition(other, Disposition::WrongNumber, Some("201"), t0, t0)
        .unwrap();
    drop(s);
    // callbacks list shows the kind, the owner and the disposition.
    let c = cfg.to_str().unwrap();
    let (code, out, err) = perezvon(&["callbacks", "list", "--config", c]);
    assert_eq!(code, 0, "{err}");
    let header = out.lines().next().unwrap();
    for col in ["KIND", "OWNER", "DISPOSITION"] {
        assert!(header.contains(col), "{header}");
    }
    let line = out.lines().find(|l| l.contains("+79161234567")).unwrap();
    assert!(line.contains("requested") && line.contains("202"), "{line}");
    let line = out.lines().find(|l| l.contains("+79162222222")).unwrap();
    assert!(
        line.contains("missed") && line.contains("wrong_number"),
        "{line}"
    );
    let (_, out, _) = perezvon(&["callbacks", "list", "--config", c, "--format", "json"]);
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let r = rows.iter().find(|r| r["id"] == id).unwrap();
    assert_eq!(r["kind"], "requested");
    assert_eq!(r["owner"], "202");
    assert_eq!(r["queue"], "sales");
    assert!(r["disposition"].is_null());
    let r = rows.iter().find(|r| r["id"] == other).unwrap();
    assert_eq!(r["disposition"], "wrong_number");
    assert_eq!(r["disposition_by"], "201");

    let (code, _, err) = perezvon(&["dnc", "add", "--config", c, "8-916-123-45-67"]);
    assert_eq!(code, 0, "{err}");
    let s = Store::open(&db).unwrap();
    let row = s.task(id).unwrap().unwrap();
    assert_eq!(row.task.state, TaskState::Cancelled);
    assert_eq!(row.close_reason.as_deref(), Some("do_not_call"));
}

#[test]
fn callbacks_dispose_records_the_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let t0 = Timestamp::now();
    let s = Store::open(&db).unwrap();
    let id = s
        .create_task(&Task {
            id: 0,
            number: "79161234567".into(),
            state: TaskState::Pending,
            server: "pbx".into(),
            missed_count: 1,
            attempts: 0,
            attempt_budget: 3,
            lost_at: None,
            first_missed_at: t0,
            last_missed_at: t0,
            next_attempt_at: t0,
            give_up_at: t0 + SignedDuration::from_secs(86_400),
            last_attempt_at: None,
            last_outcome: None,
            use_fallback: false,
            routing: Routing::default(),
        })
        .unwrap();
    drop(s);
    let d = db.to_str().unwrap();
    let id_s = id.to_string();
    let (code, out, err) = perezvon(&[
        "callbacks",
        "dispose",
        &id_s,
        "do_not_call",
        "--by",
        "201",
        "--db",
        d,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("do_not_call, now cancelled"), "{out}");
    let s = Store::open(&db).unwrap();
    let row = s.task(id).unwrap().unwrap();
    assert_eq!(row.disposition, Some(Disposition::DoNotCall));
    assert_eq!(row.disposition_by.as_deref(), Some("201"));
    assert!(s.dnc_contains("79161234567").unwrap());
    let (code, _, err) = perezvon(&["callbacks", "dispose", "999", "resolved", "--db", d]);
    assert_eq!(code, 1);
    assert!(err.contains("no callback task 999"), "{err}");
    let (code, _, _) = perezvon(&["callbacks", "dispose", &id_s, "maybe", "--db", d]);
    assert_eq!(code, 2, "clap refuses an unknown disposition");
}
