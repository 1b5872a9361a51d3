//! `perezvon missed` and `perezvon report` end to end: a database built here, the real binary, every
//! output format checked by parsing it back.

use std::path::{Path, PathBuf};
use std::process::Command;

use jiff::{SignedDuration, Timestamp};
use perezvon::calls::record::{CallRecord, LostAt, ResolvedBy, Status};
use perezvon::store::Store;
use rusqlite::types::Value;

mod support;

const NASTY: &str = "<script>alert(1)</script>";

struct Fixture {
    _dir: tempfile::TempDir,
    db: PathBuf,
    config: PathBuf,
}

fn inbound(id: usize, start: Timestamp, status: Status, wait: f64) -> CallRecord {
    CallRecord {
        caller: Some(format!("+7916{:07}", id % 97)),
        caller_normalized: Some(format!("7916{:07}", id % 97)),
        status,
        missed: status == Status::Missed,
        ignored: status == Status::Ignored,
        lost_at: None,
        ..support::inbound_miss(&format!("1795375036.{id}"), start, wait)
    }
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

/// A week of a small call centre, deterministic: busy mornings and afternoons, a lunch dip with
/// more misses, quiet weekends; callbacks and resolutions of several speeds.
fn busy_week(store: &Store, now: Timestamp) -> Vec<CallRecord> {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut out = Vec::new();
    let lost = LostAt::ALL;
    let mut id = 0;
    for hours_ago in (1..7 * 24).rev() {
        let slot = now - SignedDuration::from_hours(hours_ago);
        let hour = slot
            .to_zoned(jiff::tz::TimeZone::get("Europe/Moscow").unwrap())
            .hour();
        let weekend = slot
            .to_zoned(jiff::tz::TimeZone::get("Europe/Moscow").unwrap())
            .weekday()
            .to_monday_zero_offset()
            >= 5;
        let base = match hour {
            9..=12 | 14..=17 => 9,
            13 => 6,
            8 | 18..=19 => 3,
            _ => 0,
        };
        let n = if weekend { base / 3 } else { base };
        for _ in 0..n + rng.usize(0..2) {
            id += 1;
            let start = slot + SignedDuration::from_secs(rng.i64(0..3500));
            let miss_p = if hour == 13 || hour >= 18 { 35 } else { 12 };
            let roll = rng.u32(0..100);
            let status = if roll < 3 {
                Status::Ignored
            } else if roll < 4 {
                Status::Unknown
            } else if roll < 4 + miss_p {
                Status::Missed
            } else {
                Status::Answered
            };
            let wait = match status {
                Status::Ignored => rng.f64() * 2.5,
                Status::Missed => [4.0, 18.0, 42.0, 95.0][rng.usize(0..4)] + rng.f64() * 5.0,
                _ => 3.0 + rng.f64() * 20.0,
            };
            let mut r = inbound(id, start, status, wait);
            if status == Status::Missed {
                r.lost_at = Some(lost[rng.usize(0..lost.len())]);
                let after = [
                    120.0, 600.0, 1500.0, 2800.0, 5000.0, 12000.0, 20000.0, 50000.0,
                ][rng.usize(0..8)];
                let resolved_at = r.ended_at + SignedDuration::from_secs_f64(after);
                if rng.u32(0..100) < 70 && resolved_at < now {
                    r.resolved_by = Some(
                        [ResolvedBy::Caller, ResolvedBy::Agent, ResolvedBy::Callback]
                            [rng.usize(0..3)],
                    );
                    r.resolved_at = Some(resolved_at);
                }
            }
            store.insert_call(&r).unwrap();
            out.push(r);
        }
    }
    out
}

fn secs(t: Timestamp) -> Value {
    Value::Real(t.as_millisecond() as f64 / 1000.0)
}

/// A callback task for `number` with one finished attempt per outcome, the way the dialer writes them.
fn add_task(
    db: &Path,
    number: &str,
    state: &str,
    attempts: &[&str],
    first_missed: Timestamp,
    closed: Option<Timestamp>,
) {
    let c = rusqlite::Connection::open(db).unwrap();
    let task = support::insert_row(
        &c,
        "callback_tasks",
        &[
            ("number", Value::Text(number.into())),
            ("state", Value::Text(state.into())),
            ("server", Value::Text("lab".into())),
            ("attempts", Value::Integer(attempts.len() as i64)),
            ("first_missed_at", secs(first_missed)),
            ("last_missed_at", secs(first_missed)),
            (
                "next_attempt_at",
                secs(first_missed + SignedDuration::from_mins(10)),
            ),
            (
                "last_outcome",
                attempts
                    .last()
                    .map_or(Value::Null, |o| Value::Text(o.to_string())),
            ),
            ("closed_at", closed.map_or(Value::Null, secs)),
        ],
    );
    for (i, outcome) in attempts.iter().enumerate() {
        let at = first_missed + SignedDuration::from_mins(i as i64 + 1);
        support::insert_row(
            &c,
            "callback_attempts",
            &[
                ("task_id", Value::Integer(task)),
                ("attempt_no", Value::Integer(i as i64 + 1)),
                ("callback_id", Value::Text(format!("cb-{task}-{i}"))),
                ("number", Value::Text(number.into())),
                ("target", Value::Text("sales".into())),
                ("started_at", secs(at)),
                ("ended_at", secs(at + SignedDuration::from_secs(30))),
                ("outcome", Value::Text(outcome.to_string())),
            ],
        );
    }
}

fn perezvon(f: &Fixture, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_perezvon"))
        .args(args)
        .arg("--config")
        .arg(&f.config)
        .arg("--db")
        .arg(&f.db)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// A fixture with a handful of hand-made misses whose every field the assertions know.
fn small(now: Timestamp) -> Fixture {
    let f = fixture();
    let store = Store::open(&f.db).unwrap();
    let h = |n: i64| now - SignedDuration::from_hours(n);
    let mut a = inbound(1, h(3), Status::Missed, 25.0);
    a.lost_at = Some(LostAt::Queue);
    a.caller = Some(format!("{NASTY}, \"Ltd\""));
    a.caller_normalized = Some("79160000001".into());
    let mut b = inbound(2, h(2), Status::Missed, 9.99);
    b.lost_at = Some(LostAt::Ivr);
    b.caller_normalized = Some("79160000002".into());
    b.resolved_by = Some(ResolvedBy::Callback);
    b.resolved_at = Some(b.ended_at + SignedDuration::from_secs(300));
    let c = inbound(3, h(1), Status::Answered, 5.0);
    let old = inbound(4, h(30), Status::Missed, 50.0);
    let ign = inbound(5, h(1), Status::Ignored, 1.0);
    for r in [&a, &b, &c, &old, &ign] {
        store.insert_call(r).unwrap();
    }
    add_task(
        &f.db,
        "79160000001",
        "pending",
        &["no_answer"],
        a.ended_at,
        None,
    );
    add_task(
        &f.db,
        "79160000002",
        "done",
        &["busy", "connected"],
        b.ended_at,
        b.resolved_at,
    );
    f
}

#[test]
fn missed_table_is_newest_first_in_local_time() {
    let now = Timestamp::now();
    let f = small(now);
    let (code, out, err) = perezvon(&f, &["missed"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("when"), "{out}");
    assert_eq!(
        lines.len(),
        4,
        "header, rule, two misses of the last 24 h:\n{out}"
    );
    assert!(
        lines[2].contains("ivr") && lines[2].contains("callback after 5 m 00 s"),
        "{out}"
    );
    assert!(lines[2].contains("done, 2 attempts (connected)"), "{out}");
    assert!(
        lines[3].contains("queue") && lines[3].contains("pending, 1 attempt (no answer), next"),
        "{out}"
    );
    let moscow = jiff::tz::TimeZone::get("Europe/Moscow").unwrap();
    let local = (now - SignedDuration::from_hours(2))
        .to_zoned(moscow)
        .strftime("%Y-%m-%d %H:%M")
        .to_string();
    assert!(lines[2].starts_with(&local), "{local} in {out}");

    let (_, out, _) = perezvon(&f, &["missed", "--unresolved"]);
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(out.contains("queue"));
    let (_, out, _) = perezvon(&f, &["missed", "--since", "2d"]);
    assert_eq!(out.lines().count(), 5, "{out}");
}

#[test]
fn missed_json_is_one_object_per_line() {
    let f = small(Timestamp::now());
    let (code, out, err) = perezvon(&f, &["missed", "--format", "json", "--since", "2d"]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["linkedid"], "1795375036.2");
    assert_eq!(rows[0]["resolved_by"], "callback");
    assert_eq!(rows[0]["reaction_secs"], 300.0);
    assert_eq!(rows[0]["wait_secs"], 9.99);
    assert_eq!(rows[0]["callback_state"], "done");
    assert_eq!(rows[0]["callback_attempts"], 2);
    assert!(
        rows[0]["started_at"].as_str().unwrap().ends_with("+03:00"),
        "{}",
        rows[0]
    );
    assert_eq!(rows[1]["caller"], format!("{NASTY}, \"Ltd\""));
    assert_eq!(rows[1]["lost_at"], "queue");
    assert_eq!(rows[1]["resolved_by"], serde_json::Value::Null);
    assert_eq!(rows[2]["linkedid"], "1795375036.4");
    assert_eq!(rows[2]["callback_state"], serde_json::Value::Null);
}

/// RFC 4180 reader, enough to prove the writer's quoting round-trips.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let (mut rows, mut row, mut field) = (Vec::new(), Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(
        !quoted && field.is_empty() && row.is_empty(),
        "unterminated csv"
    );
    rows
}

#[test]
fn missed_csv_quotes_what_needs_quoting() {
    let f = small(Timestamp::now());
    let (code, out, err) = perezvon(&f, &["missed", "--format", "csv"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\r\n"));
    let rows = parse_csv(&out);
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0][0], "started_at");
    assert!(rows.iter().all(|r| r.len() == rows[0].len()), "{rows:?}");
    let col = |name: &str| rows[0].iter().position(|h| h == name).unwrap();
    assert_eq!(rows[2][col("caller")], format!("{NASTY}, \"Ltd\""));
    assert_eq!(rows[1][col("resolved_by")], "callback");
    assert_eq!(rows[1][col("reaction_secs")], "300");
    assert_eq!(rows[2][col("resolved_by")], "");
}

/// `--format csv-excel`: a UTF-8 BOM, `;`, CRLF; a caller name that is a formula is neutralised
/// in both CSV dialects, an E.164 number only in the Excel one (Excel would turn it into 7.92E+10).
#[test]
fn missed_csv_excel_opens_in_a_russian_excel_and_runs_no_formula() {
    let now = Timestamp::now();
    let f = fixture();
    let store = Store::open(&f.db).unwrap();
    let mut a = inbound(1, now - SignedDuration::from_hours(2), Status::Missed, 25.0);
    a.caller = Some("=HYPERLINK(\"http://evil/\";\"Иванов\")".into());
    a.caller_normalized = None;
    let mut b = inbound(2, now - SignedDuration::from_hours(1), Status::Missed, 9.0);
    b.caller = Some("+79160000002".into());
    b.agent = Some("Петров; старший".into());
    for r in [&a, &b] {
        store.insert_call(r).unwrap();
    }
    let read = |text: &str, delimiter: u8| -> Vec<csv::StringRecord> {
        csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .has_headers(false)
            .from_reader(text.as_bytes())
            .records()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let (code, excel, err) = perezvon(&f, &["missed", "--format", "csv-excel"]);
    assert_eq!(code, 0, "{err}");
    let body = excel.strip_prefix('\u{feff}').expect("a UTF-8 BOM first");
    assert!(body.starts_with("started_at;ended_at;"), "{body}");
    assert!(body.ends_with("\r\n") && !body.replace("\r\n", "").contains('\n'));
    let rows = read(body, b';');
    assert_eq!(rows.len(), 3);
    let col = |name: &str| rows[0].iter().position(|h| h == name).unwrap();
    // Newest first: b, then a.
    assert_eq!(&rows[1][col("caller")], "'+79160000002");
    assert_eq!(&rows[1][col("number")], "'+79160000002");
    assert_eq!(&rows[1][col("agent")], "Петров; старший");
    assert_eq!(
        &rows[2][col("caller")],
        "'=HYPERLINK(\"http://evil/\";\"Иванов\")"
    );

    let (code, plain, err) = perezvon(&f, &["missed", "--format", "csv"]);
    assert_eq!(code, 0, "{err}");
    assert!(plain.starts_with("started_at,"), "no BOM in plain CSV");
    let rows = read(&plain, b',');
    assert_eq!(&rows[1][col("caller")], "+79160000002");
    assert_eq!(&rows[1][col("caller_normalized")], "79160000002");
    assert_eq!(
        &rows[2][col("caller")],
        "'=HYPERLINK(\"http://evil/\";\"Иванов\")"
    );
    // No cell of either file starts with a formula character.
    for (text, d) in [(body, b';'), (plain.as_str(), b',')] {
        for row in read(text, d) {
            for cell in row.iter() {
                let number = cell.len() > 1
                    && cell.as_bytes()[1..]
                        .iter()
                        .copied()
                        .all(|c| c.is_ascii_digit() || c == b'.');
                assert!(
                    !cell.starts_with(['=', '@'])
                        && (!cell.starts_with(['+', '-']) || (d == b',' && number)),
                    "{cell:?}"
                );
            }
        }
    }
}

/// Tags open and close in order (void and self-closed ones aside), and no script element exists.
fn assert_balanced(html: &str) {
    let void = ["meta", "br", "hr", "img", "input", "link"];
    let mut stack: Vec<String> = Vec::new();
    let mut rest = html;
    let mut counts = std::collections::HashMap::<String, usize>::new();
    while let Some(i) = rest.find('<') {
        let end = rest[i..].find('>').expect("unclosed tag") + i;
        let tag = &rest[i + 1..end];
        rest = &rest[end + 1..];
        if tag.starts_with('!') {
            continue;
        }
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        assert_ne!(name, "script", "a script element in the page");
        *counts.entry(name.clone()).or_default() += 1;
        if tag.starts_with('/') {
            assert_eq!(
                stack.pop().as_deref(),
                Some(name.as_str()),
                "mismatched </{name}>"
            );
        } else if !tag.ends_with('/') && !void.contains(&name.as_str()) {
            stack.push(name);
        }
    }
    assert!(stack.is_empty(), "unclosed: {stack:?}");
    assert!(
        counts.get("svg").copied().unwrap_or(0) >= 12,
        "expected the charts: {counts:?}"
    );
    assert!(
        counts.get("table").copied().unwrap_or(0) >= 4,
        "expected tables: {counts:?}"
    );
}

#[test]
fn report_formats_on_a_busy_week() {
    let now = Timestamp::now();
    let f = fixture();
    let store = Store::open(&f.db).unwrap();
    let calls = busy_week(&store, now);
    let mut first = calls
        .iter()
        .find(|c| c.missed && c.resolved_by.is_none())
        .unwrap()
        .clone();
    first.linkedid = "nasty".into();
    first.caller = Some(NASTY.into());
    first.started_at = now - SignedDuration::from_mins(30);
    first.ended_at = first.started_at + SignedDuration::from_secs(20);
    store.insert_call(&first).unwrap();
    add_task(
        &f.db,
        "79160000001",
        "done",
        &["no_answer", "connected"],
        now - SignedDuration::from_hours(20),
        Some(now),
    );
    add_task(
        &f.db,
        "79160000002",
        "given_up",
        &["busy", "no_answer", "failed"],
        now - SignedDuration::from_hours(30),
        Some(now),
    );
    add_task(
        &f.db,
        "79160000003",
        "pending",
        &["agent_missed"],
        now - SignedDuration::from_hours(2),
        None,
    );

    let inbound: Vec<&CallRecord> = calls.iter().chain([&first]).collect();
    let missed = inbound.iter().filter(|c| c.missed).count() as u64;
    let answered = inbound
        .iter()
        .filter(|c| c.status == Status::Answered)
        .count() as u64;

    let (code, out, err) = perezvon(&f, &["report", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["inbound"]["missed"], missed);
    assert_eq!(j["inbound"]["answered"], answered);
    assert_eq!(j["inbound"]["total"], missed + answered);
    assert_eq!(j["timezone"], "Europe/Moscow");
    let hour_missed: u64 = j["by_hour"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["missed"].as_u64().unwrap())
        .sum();
    assert_eq!(hour_missed, missed);
    let waits: u64 = j["waits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .sum();
    assert_eq!(waits, missed);
    assert_eq!(j["callbacks"]["attempts"], 6);
    assert_eq!(j["callbacks"]["connected"], 1);
    assert_eq!(j["callbacks"]["tasks_done"], 1);
    assert_eq!(j["callbacks"]["tasks_given_up"], 1);

    let (code, out, err) = perezvon(&f, &["report"]);
    assert_eq!(code, 0, "{err}");
    let line = out.lines().find(|l| l.starts_with("Missed  ")).unwrap();
    assert_eq!(
        line.split_whitespace().nth(1),
        Some(missed.to_string().as_str()),
        "{out}"
    );
    for section in [
        "Summary",
        "Mon-Fri",
        "Waited before giving up",
        "Lost at",
        "Resolved by",
        "Resolved within",
        "attempt outcome",
        "Hour",
        "Weekday",
        "Missed more than once",
    ] {
        assert!(out.contains(section), "no {section} in\n{out}");
    }

    // The page goes where the integration tests keep their files, so a person can open it.
    let page = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report.html");
    let (code, out, err) = perezvon(
        &f,
        &[
            "report",
            "--format",
            "html",
            "--out",
            page.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.is_empty());
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert_eq!(
        html.matches("http://").count(),
        html.matches("xmlns=\"http://www.w3.org/2000/svg\"").count(),
        "only the SVG namespace may be a URL"
    );
    assert!(
        !html.contains("src=") && !html.contains("href="),
        "external assets"
    );
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("Numbers missed more than once"));
    assert_balanced(&html);

    // --lang ru: the same page in Russian.
    let (code, out, err) = perezvon(&f, &["report", "--format", "html", "--lang", "ru"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(r#"<!DOCTYPE html><html lang="ru">"#));
    assert!(out.contains("Номера, пропущенные не раз") && out.contains("Звонки по часам"));
    assert!(!out.contains("Numbers missed more than once") && !out.contains("Calls by hour"));
    assert!(out.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert_balanced(&out);
}

#[test]
fn empty_database_gives_a_sensible_report() {
    let f = fixture();
    for format in ["table", "json", "html"] {
        let (code, out, err) = perezvon(&f, &["report", "--format", format]);
        assert_eq!(code, 0, "{format}: {err}");
        assert!(
            !out.contains("NaN") && !out.contains("inf"),
            "{format}: {out}"
        );
        if format == "json" {
            let j: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(j["inbound"]["total"], 0);
            assert_eq!(j["inbound"]["missed_share"], 0.0);
        }
        if format == "html" {
            assert_balanced(&out);
            assert!(out.contains("No inbound calls in this period"));
        }
    }
    let (code, out, _) = perezvon(&f, &["missed"]);
    assert_eq!(code, 0);
    assert_eq!(out, "No missed calls in the last 1day.\n");
    let (_, out, _) = perezvon(&f, &["missed", "--format", "json"]);
    assert_eq!(out, "");
    let (_, out, _) = perezvon(&f, &["missed", "--format", "csv"]);
    assert_eq!(out.lines().count(), 1);
}

#[test]
fn help_has_examples_and_bad_input_is_an_error() {
    for cmd in ["missed", "report"] {
        let out = Command::new(env!("CARGO_BIN_EXE_perezvon"))
            .args([cmd, "--help"])
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(out.status.success());
        assert!(
            text.contains("Example:") && text.contains(&format!("perezvon {cmd} --since")),
            "{text}"
        );
    }
    let f = fixture();
    let (code, _, err) = perezvon(&f, &["missed", "--since", "yesterday"]);
    assert_ne!(code, 0);
    assert!(err.contains("--since"), "{err}");
    let (code, _, err) = perezvon(&f, &["report", "--format", "html", "--lang", "de"]);
    assert_eq!(code, 2);
    assert!(err.contains("--lang"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_perezvon"))
        .args(["report", "--db", "/nonexistent/perezvon.db", "--config"])
        .arg(&f.config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    let (code, _, err) = perezvon(
        &f,
        &[
            "report",
            "--format",
            "html",
            "--out",
            "/nonexistent/dir/r.html",
        ],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot write /nonexistent/dir/r.html"),
        "{err}"
    );
}
