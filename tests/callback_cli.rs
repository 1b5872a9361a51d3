//! `perezvon callbacks list|cancel|retry` and `perezvon run --help`, as an admin runs them.

use std::path::Path;
use std::process::Command;

use jiff::{SignedDuration, Timestamp};
use perezvon::callback::planner::{Task, TaskState};
use perezvon::calls::record::LostAt;
use perezvon::store::tasks::NewAttempt;
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

fn task(number: &str, t0: Timestamp) -> Task {
    Task {
        id: 0,
        number: number.into(),
        state: TaskState::Pending,
        server: "pbx".into(),
        missed_count: 2,
        attempts: 0,
        attempt_budget: 3,
        lost_at: Some(LostAt::Queue),
        first_missed_at: t0,
        last_missed_at: t0,
        next_attempt_at: t0 + SignedDuration::from_secs(60),
        give_up_at: t0 + SignedDuration::from_secs(86_400),
        last_attempt_at: None,
        last_outcome: None,
        use_fallback: false,
        routing: Default::default(),
    }
}

/// Three tasks: pending, in progress, given up.
fn seed(db: &Path) -> (i64, i64, i64) {
    let mut s = Store::open(db).unwrap();
    let t0 = Timestamp::from_second(1_795_375_036).unwrap();
    let a = s.create_task(&task("79161111111", t0)).unwrap();
    let b = s.create_task(&task("79162222222", t0)).unwrap();
    s.begin_attempt(&NewAttempt {
        task_id: b,
        attempt_no: 1,
        callback_id: "pzv-2-1-0",
        number: "79162222222",
        target: "queue:sales",
        started_at: t0,
    })
    .unwrap();
    let c = s.create_task(&task("79163333333", t0)).unwrap();
    s.close_task(c, TaskState::GivenUp, "max_attempts", t0)
        .unwrap();
    (a, b, c)
}

#[test]
fn list_json_has_the_contract_fields() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let (a, b, c) = seed(&db);
    let (code, out, err) = perezvon(&[
        "callbacks",
        "list",
        "--db",
        db.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    let by_id = |id: i64| rows.iter().find(|r| r["id"] == id).unwrap();
    let ra = by_id(a);
    assert_eq!(ra["number"], "79161111111");
    assert_eq!(ra["state"], "pending");
    assert_eq!(ra["missed_count"], 2);
    assert_eq!(ra["attempts"], 0);
    assert!(ra["last_outcome"].is_null());
    assert_eq!(ra["next_attempt_at"], "2026-11-22T19:18:16Z");
    assert_eq!(by_id(b)["state"], "in_progress");
    assert_eq!(by_id(b)["attempts"], 1);
    assert_eq!(by_id(c)["state"], "given_up");
    assert!(by_id(c)["next_attempt_at"].is_null());

    let (code, out, _) = perezvon(&["callbacks", "list", "--db", db.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.starts_with("    ID  NUMBER"), "{out}");
    assert_eq!(out.lines().count(), 4);
}

#[test]
fn cancel_and_retry() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let (a, b, c) = seed(&db);
    let dbs = db.to_str().unwrap();
    let (code, out, err) = perezvon(&["callbacks", "cancel", &a.to_string(), "--db", dbs]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("cancelled callback task"), "{out}");
    let (code, _, err) = perezvon(&["callbacks", "cancel", &a.to_string(), "--db", dbs]);
    assert_eq!(code, 1);
    assert!(err.contains("already cancelled"), "{err}");
    let (code, _, err) = perezvon(&["callbacks", "cancel", "999", "--db", dbs]);
    assert_eq!(code, 1);
    assert!(err.contains("no callback task 999"), "{err}");
    // In flight: retry is refused.
    let (code, _, err) = perezvon(&["callbacks", "retry", &b.to_string(), "--db", dbs]);
    assert_eq!(code, 1);
    assert!(err.contains("in flight"), "{err}");
    // Given up: retry reopens it, due now.
    let (code, out, err) = perezvon(&["callbacks", "retry", &c.to_string(), "--db", dbs]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("pending again"), "{out}");
    let s = Store::open(&db).unwrap();
    let row = s.task(c).unwrap().unwrap();
    assert_eq!(row.task.state, TaskState::Pending);
    assert!(row.task.next_attempt_at <= Timestamp::now());
    assert_eq!(row.close_reason, None);
    assert_eq!(
        s.task(a).unwrap().unwrap().close_reason.as_deref(),
        Some("cancelled_by_admin")
    );
}

#[test]
fn help_has_examples_and_missing_database_is_explained() {
    for args in [
        &["run", "--help"][..],
        &["callbacks", "--help"],
        &["callbacks", "list", "--help"],
        &["callbacks", "cancel", "--help"],
        &["callbacks", "retry", "--help"],
    ] {
        let (code, out, _) = perezvon(args);
        assert_eq!(code, 0, "{args:?}");
        assert!(out.contains("Example:"), "{args:?}: {out}");
    }
    let (code, _, err) = perezvon(&["callbacks", "list", "--db", "/nonexistent/p.db"]);
    assert_eq!(code, 1);
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn run_with_a_bad_config_exits_78() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[callback]\nmode = \"sideways\"\n").unwrap();
    let (code, _, err) = perezvon(&["run", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 78);
    assert!(err.contains("callback.mode"), "{err}");
}

#[test]
fn list_json_says_when_an_attempt_can_really_happen() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let (a, b, _) = seed(&db);
    // Closed every day: a pending task can never be dialled...
    let closed = dir.path().join("closed.toml");
    std::fs::write(&closed, "[hours]\ntimezone = \"UTC\"\nmonday = []\ntuesday = []\nwednesday = []\nthursday = []\nfriday = []\n").unwrap();
    // ...and open all week: due now (its spacing is long past).
    let open = dir.path().join("open.toml");
    let all = "[\"00:00-24:00\"]";
    std::fs::write(
        &open,
        format!("[hours]\ntimezone = \"UTC\"\nmonday = {all}\ntuesday = {all}\nwednesday = {all}\nthursday = {all}\nfriday = {all}\nsaturday = {all}\nsunday = {all}\n"),
    )
    .unwrap();
    let rows = |cfg: &Path| -> Vec<serde_json::Value> {
        let (code, out, err) = perezvon(&[
            "callbacks",
            "list",
            "--config",
            cfg.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
            "--format",
            "json",
        ]);
        assert_eq!(code, 0, "{err}");
        out.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let find =
        |rows: &[serde_json::Value], id: i64| rows.iter().find(|r| r["id"] == id).unwrap().clone();
    let never = rows(&closed);
    assert!(
        find(&never, a)["next_possible_at"].is_null(),
        "closed hours: never"
    );
    let now = rows(&open);
    let at: Timestamp = find(&now, a)["next_possible_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        at >= Timestamp::now() - SignedDuration::from_secs(60),
        "not in the past: {at}"
    );
    assert!(
        find(&now, b)["next_possible_at"].is_null(),
        "in progress: no next attempt"
    );
}

/// Issue 14: `callbacks list` shows the new states and why a task waits; `callbacks retry`
/// is how an `unknown` task is dialled again.
#[test]
fn list_shows_unknown_tasks_and_why_pending_ones_wait() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let now = Timestamp::now();
    let mut s = Store::open(&db).unwrap();
    let t0 = now - SignedDuration::from_hours(2);
    // A: called once an hour ago (max_per_number_24h = 1): over budget.
    let a = s.create_task(&task("79161111111", t0)).unwrap();
    s.begin_attempt(&NewAttempt {
        task_id: a,
        attempt_no: 1,
        callback_id: "pzv-1-1-0",
        number: "79161111111",
        target: "queue:sales",
        started_at: now - SignedDuration::from_hours(1),
    })
    .unwrap();
    let after = perezvon::callback::planner::AfterOutcome {
        state: TaskState::Pending,
        next_attempt_at: t0,
        use_fallback: false,
        close_reason: None,
    };
    s.finish_attempt(
        "pzv-1-1-0",
        perezvon::callback::planner::AttemptOutcome::Call(
            perezvon::calls::record::CallbackOutcome::NoAnswer,
        ),
        now,
        None,
        None,
        &after,
    )
    .unwrap();
    // B: its attempt's outcome is unknown.
    let b = s.create_task(&task("79162222222", t0)).unwrap();
    s.begin_attempt(&NewAttempt {
        task_id: b,
        attempt_no: 1,
        callback_id: "pzv-2-1-0",
        number: "79162222222",
        target: "queue:sales",
        started_at: t0,
    })
    .unwrap();
    let unknown = perezvon::callback::planner::AfterOutcome {
        state: TaskState::Unknown,
        next_attempt_at: t0,
        use_fallback: false,
        close_reason: Some("outcome_unknown"),
    };
    s.finish_attempt(
        "pzv-2-1-0",
        perezvon::callback::planner::AttemptOutcome::Unknown,
        now,
        None,
        None,
        &unknown,
    )
    .unwrap();
    // C: due, but the dialer found its queue busy.
    let c = s.create_task(&task("79163333333", t0)).unwrap();
    s.set_target_state(
        "queue:sales",
        now,
        Some("queue sales busy: 2 caller(s) waiting"),
    )
    .unwrap();
    drop(s);
    let cfg = dir.path().join("p.toml");
    let all = "[\"00:00-24:00\"]";
    std::fs::write(
        &cfg,
        format!(
            "[callback]\nmax_per_number_24h = 1\ntarget = {{ queue = \"sales\" }}\n\
             [hours]\ntimezone = \"UTC\"\nmonday = {all}\ntuesday = {all}\nwednesday = {all}\n\
             thursday = {all}\nfriday = {all}\nsaturday = {all}\nsunday = {all}\n"
        ),
    )
    .unwrap();
    let args = |fmt: &str| {
        perezvon(&[
            "callbacks",
            "list",
            "--config",
            cfg.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
            "--format",
            fmt,
        ])
    };
    let (code, out, err) = args("json");
    assert_eq!(code, 0, "{err}");
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let find = |id: i64| rows.iter().find(|r| r["id"] == id).unwrap().clone();
    let ra = find(a);
    assert_eq!(ra["state"], "pending");
    assert_eq!(ra["waiting"], "over_budget");
    assert!(
        ra["waiting_detail"]
            .as_str()
            .unwrap()
            .contains("max_per_number_24h"),
        "{ra}"
    );
    // Free again 24 h after the attempt.
    let at: Timestamp = ra["next_possible_at"].as_str().unwrap().parse().unwrap();
    let want = now + SignedDuration::from_hours(23);
    assert!(
        at.duration_since(want).abs() < SignedDuration::from_secs(2),
        "{at} vs {want}"
    );
    let rb = find(b);
    assert_eq!(
        (rb["state"].as_str(), rb["waiting"].as_str()),
        (Some("unknown"), Some("needs_retry"))
    );
    assert_eq!(rb["last_outcome"], "unknown");
    let rc = find(c);
    assert_eq!(rc["waiting"], "queue_busy");
    assert!(rc["waiting_detail"]
        .as_str()
        .unwrap()
        .contains("2 caller(s) waiting"));
    // The table says the same in words.
    let (_, table, _) = args("table");
    let line = |id: i64| {
        table
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{id} ")))
            .unwrap()
            .to_string()
    };
    assert!(line(a).contains("over budget"), "{table}");
    assert!(
        line(b).contains("unknown") && line(b).contains("callbacks retry"),
        "{table}"
    );
    assert!(line(c).contains("queue sales busy"), "{table}");
    // `--open` lists the unknown task too: it still holds the number.
    let (_, open, _) = perezvon(&["callbacks", "list", "--db", db.to_str().unwrap(), "--open"]);
    assert!(open.contains("unknown"), "{open}");
    // An explicit retry makes it pending and due.
    let (code, out, err) = perezvon(&[
        "callbacks",
        "retry",
        &b.to_string(),
        "--db",
        db.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("pending again"), "{out}");
    let s = Store::open(&db).unwrap();
    assert_eq!(s.task(b).unwrap().unwrap().task.state, TaskState::Pending);
}

#[test]
fn zone_says_where_a_number_is_and_whether_its_window_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("p.toml");
    std::fs::write(
        &cfg,
        "[pbx]\ncountry_code = \"7\"\n[callback]\ncustomer_hours = \"09:00-21:00\"\n\
         customer_zones = { \"7914\" = \"Asia/Vladivostok\" }\n[hours]\ntimezone = \"Europe/Moscow\"\n",
    )
    .unwrap();
    let zone = |n: &str| perezvon(&["callbacks", "zone", n, "--config", cfg.to_str().unwrap()]);
    let (code, out, err) = zone("+7 (415) 212-34-56");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("+74152123456"), "{out}");
    assert!(out.contains("Asia/Kamchatka"), "{out}");
    assert!(out.contains("customer_hours: "), "{out}");
    // A Russian mobile outside the table: every zone of the country.
    let (_, out, _) = zone("89031234567");
    assert!(out.contains("every zone of the country"), "{out}");
    assert!(
        out.contains("Europe/Kaliningrad") && out.contains("Asia/Anadyr"),
        "{out}"
    );
    // The operator's prefix wins.
    let (_, out, _) = zone("+79141234567");
    assert!(out.contains("Asia/Vladivostok (customer_zones)"), "{out}");
    // Garbage is refused with a clear message, not a panic.
    let (code, _, err) = zone("call me maybe");
    assert_eq!(code, 1);
    assert!(err.contains("not a phone number"), "{err}");
}
