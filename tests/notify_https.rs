//! The HTTPS channels end to end against local HTTPS fakes (tests/support/https.rs): the webhook
//! with a private CA and a client certificate, Bitrix24, amoCRM, Telegram and a `[[notify.http]]`
//! SMS gateway. Each fake checks the documented request shape and answers as the real API does,
//! its rate limit and its errors included: a rate limit is retried (no sooner than asked), a
//! permanent error is given up after one attempt, and a delivered event is never sent again,
//! not even after a restart.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use perezvon::calls::record::{CallRecord, CallbackOutcome};
use perezvon::config::{Config, Secret};
use perezvon::metrics::Metrics;
use perezvon::notify::{self, webhook, CallbackEvent};
use perezvon::store::Store;
use serde_json::json;
use tokio_util::sync::CancellationToken;

#[path = "support/https.rs"]
mod https;
mod support;

use https::{Pki, Reply};

const PATIENCE: Duration = Duration::from_secs(60);

fn t(s: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_800_000_000 + s).unwrap()
}

fn missed_call(linkedid: &str, number: &str) -> CallRecord {
    CallRecord {
        server: "pbx1".into(),
        caller: Some(format!("+{number}")),
        caller_normalized: Some(number.into()),
        ..support::inbound_miss(linkedid, t(0), 40.0)
    }
}

fn callback_event(number: &str) -> CallbackEvent {
    CallbackEvent {
        server: "pbx1".into(),
        callback_id: format!("cb-{number}"),
        task_id: 7,
        number: number.into(),
        attempt: 1,
        max_attempts: 3,
        outcome: CallbackOutcome::Connected,
        started_at: t(100),
        ended_at: t(200),
        talk_secs: 80.0,
        agent: Some("201".into()),
        task_state: "done".into(),
        next_attempt_at: None,
    }
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One outbox row, as a test reads it.
#[derive(Debug, Clone)]
struct Row {
    channel: String,
    event_id: String,
    attempts: i64,
    last_error: Option<String>,
    delivered: bool,
    given_up: bool,
}

fn rows(db: &std::path::Path) -> Vec<Row> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut s = c
        .prepare(
            "SELECT channel, event_id, attempts, last_error, delivered_at IS NOT NULL, \
             given_up_at IS NOT NULL FROM outbox ORDER BY id",
        )
        .unwrap();
    let out = s
        .query_map([], |r| {
            Ok(Row {
                channel: r.get(0)?,
                event_id: r.get(1)?,
                attempts: r.get(2)?,
                last_error: r.get(3)?,
                delivered: r.get(4)?,
                given_up: r.get(5)?,
            })
        })
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    out
}

/// The delivery loop, running until `stop()`.
struct Delivery {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), perezvon::store::StoreError>>,
    metrics: Arc<Metrics>,
}

fn start(cfg: &Arc<Config>, db: &std::path::Path) -> Delivery {
    let metrics = Arc::new(Metrics::default());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(notify::run_delivery(
        cfg.clone(),
        db.to_path_buf(),
        metrics.clone(),
        shutdown.clone(),
    ));
    Delivery {
        shutdown,
        task,
        metrics,
    }
}

impl Delivery {
    async fn stop(self) -> Arc<Metrics> {
        self.shutdown.cancel();
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("delivery stops on shutdown")
            .unwrap()
            .unwrap();
        self.metrics
    }
}

/// Runs the delivery loop again (a restart) and checks that the fake sees nothing new.
async fn restart_sends_nothing(cfg: &Arc<Config>, db: &std::path::Path, seen: impl Fn() -> usize) {
    let before = seen();
    let d = start(cfg, db);
    tokio::time::sleep(Duration::from_millis(700)).await;
    d.stop().await;
    assert_eq!(
        seen(),
        before,
        "a delivered event was sent again after a restart"
    );
}

fn config(text: &str) -> Arc<Config> {
    match Config::from_toml(text) {
        Ok(c) => Arc::new(c),
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_over_https_with_a_private_ca_and_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("perezvon.db");
    let pki = Pki::new(dir.path());
    let times = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let times2 = times.clone();
    // The receiver demands a client certificate, rate-limits the first request, then accepts.
    let server = https::serve(&pki, true, move |_, n| {
        times2.lock().unwrap().push(Instant::now());
        if n == 0 {
            Reply::empty(429).with_header("Retry-After", "1")
        } else {
            Reply::empty(204)
        }
    })
    .await;
    let cfg = config(&format!(
        "[notify.webhook]\nurl = \"{}/hooks/perezvon?src=pbx\"\nsecret = \"s3cret\"\n\
         ca_file = {:?}\nclient_cert = {:?}\nclient_key = {:?}\n\
         retry_every = \"50ms\"\nmax_retry_every = \"100ms\"\nevents = [\"missed\"]\n",
        server.url(),
        pki.ca_file,
        pki.client_cert,
        pki.client_key
    ));
    let store = Store::open(&db).unwrap();
    let missed = missed_call("1800000000.1", "79161234567");
    assert_eq!(
        notify::enqueue_for_record(&store, &cfg, &missed, jiff::Timestamp::now()).unwrap(),
        1
    );

    let d = start(&cfg, &db);
    wait_for("the event delivered", || rows(&db)[0].delivered).await;
    let metrics = d.stop().await;

    let seen = server.requests();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let t = times.lock().unwrap().clone();
    assert!(
        t[1] - t[0] >= Duration::from_millis(950),
        "Retry-After: 1 not honoured: {:?}",
        t[1] - t[0]
    );
    for (i, s) in seen.iter().enumerate() {
        assert_eq!(s.method, "POST");
        assert_eq!(s.path, "/hooks/perezvon?src=pbx");
        assert_eq!(
            s.header("idempotency-key"),
            Some("missed:pbx1:1800000000.1")
        );
        assert_eq!(
            s.header("x-perezvon-event-id"),
            Some("missed:pbx1:1800000000.1")
        );
        assert_eq!(s.header("x-perezvon-event"), Some("missed"));
        assert_eq!(
            s.header("x-perezvon-delivery-attempt"),
            Some((i + 1).to_string().as_str())
        );
        assert!(s
            .header("content-type")
            .unwrap()
            .starts_with("application/json"));
        assert_eq!(
            s.header("x-perezvon-signature"),
            Some(webhook::signature(&Secret::new("s3cret"), &s.body).as_str())
        );
        assert_eq!(s.json()["event"], "missed");
        assert_eq!(s.json()["number_e164"], "+79161234567");
    }
    assert!(metrics
        .render()
        .contains("perezvon_notifications_total{channel=\"webhook\",result=\"delivered\"} 1\n"));
    // Replayed and restarted: the event is not enqueued again, nor sent again.
    assert_eq!(
        notify::enqueue_for_record(&store, &cfg, &missed, jiff::Timestamp::now()).unwrap(),
        0
    );
    restart_sends_nothing(&cfg, &db, || server.requests().len()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("perezvon.db");
    let pki = Pki::new(dir.path());
    let server = https::serve(&pki, false, |_, _| Reply::empty(200)).await;
    // No ca_file: the test CA is in no system trust store.
    let cfg = config(&format!(
        "[notify.webhook]\nurl = \"{}/hook\"\nretry_every = \"50ms\"\nmax_retry_every = \"100ms\"\n",
        server.url()
    ));
    let store = Store::open(&db).unwrap();
    notify::enqueue_for_record(
        &store,
        &cfg,
        &missed_call("9.1", "79161234567"),
        jiff::Timestamp::now(),
    )
    .unwrap();
    let d = start(&cfg, &db);
    wait_for("two failed attempts", || rows(&db)[0].attempts >= 2).await;
    d.stop().await;
    let row = rows(&db).remove(0);
    assert!(!row.delivered && !row.given_up, "{row:?}");
    let err = row.last_error.unwrap_or_default();
    assert!(err.contains("certificate"), "{err}");
    assert!(
        server.requests().is_empty(),
        "a request went through an untrusted connection"
    );
    assert!(*server.handshake_failures.lock().unwrap() >= 1);
}

/// A Bitrix24 portal: no contact has the number, the first `crm.lead.add` hits the rate limit.
fn bitrix_portal(s: &https::Seen, _n: usize, lead_adds: &Mutex<usize>) -> Reply {
    assert_eq!(s.method, "POST");
    assert!(s
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    match s.path.as_str() {
        "/rest/1/abc123/crm.duplicate.findbycomm.json" => {
            let b = s.json();
            assert_eq!(b["entity_type"], "CONTACT");
            assert_eq!(b["type"], "PHONE");
            if b["values"][0] == "+79035550000" {
                Reply::json(200, json!({"result": {"CONTACT": [88]}, "time": {}}))
            } else {
                Reply::json(200, json!({"result": [], "time": {}}))
            }
        }
        "/rest/1/abc123/crm.lead.add.json" => {
            let mut n = lead_adds.lock().unwrap();
            *n += 1;
            if *n == 1 {
                Reply::json(
                    503,
                    json!({"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}),
                )
            } else {
                Reply::json(200, json!({"result": 42, "time": {}}))
            }
        }
        "/rest/1/abc123/crm.timeline.comment.add.json" => {
            Reply::json(200, json!({"result": 1001, "time": {}}))
        }
        other => Reply::json(
            404,
            json!({"error": "ERROR_METHOD_NOT_FOUND", "error_description": format!("Method not found: {other}")}),
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitrix24_lead_then_comment_on_it_and_a_comment_on_a_known_contact() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("perezvon.db");
    let pki = Pki::new(dir.path());
    let lead_adds = Arc::new(Mutex::new(0));
    let la = lead_adds.clone();
    let server = https::serve(&pki, false, move |s, n| bitrix_portal(s, n, &la)).await;
    let cfg = config(&format!(
        "[notify.bitrix24]\nwebhook_url = \"{}/rest/1/abc123\"\nresponsible_id = 5\nca_file = {:?}\n\
         retry_every = \"50ms\"\nmax_retry_every = \"100ms\"\n",
        server.url(),
        pki.ca_file
    ));
    let store = Store::open(&db).unwrap();
    let now = jiff::Timestamp::now();
    // A new customer: missed, then called back (the outcome is queued before the lead exists).
    notify::enqueue_for_record(&store, &cfg, &missed_call("1.1", "79161234567"), now).unwrap();
    notify::enqueue_callback_outcome(&store, &cfg, &callback_event("79161234567"), now).unwrap();
    // A known contact.
    notify::enqueue_for_record(&store, &cfg, &missed_call("1.2", "79035550000"), now).unwrap();

    let d = start(&cfg, &db);
    wait_for("three events delivered", || {
        rows(&db).iter().all(|r| r.delivered)
    })
    .await;
    d.stop().await;

    let seen = server.requests();
    let calls: Vec<&str> = seen
        .iter()
        .map(|s| s.path.rsplit('/').next().unwrap())
        .collect();
    let leads: Vec<_> = seen
        .iter()
        .filter(|s| s.path.ends_with("crm.lead.add.json"))
        .collect();
    assert_eq!(leads.len(), 2, "one rate-limited, one created: {calls:?}");
    let f = &leads[1].json()["fields"];
    assert_eq!(f["TITLE"], "Пропущенный звонок +79161234567");
    assert_eq!(f["PHONE"][0]["VALUE"], "+79161234567");
    assert_eq!(f["ASSIGNED_BY_ID"], 5);
    assert_eq!(f["SOURCE_ID"], "CALL");
    assert!(f["COMMENTS"].as_str().unwrap().contains("ждал 40 с"), "{f}");
    let comments: Vec<serde_json::Value> = seen
        .iter()
        .filter(|s| s.path.ends_with("crm.timeline.comment.add.json"))
        .map(|s| s.json()["fields"].clone())
        .collect();
    assert_eq!(comments.len(), 2, "{calls:?}");
    let on_lead = comments
        .iter()
        .find(|c| c["ENTITY_TYPE"] == "lead")
        .expect("a comment on the lead");
    assert_eq!(on_lead["ENTITY_ID"], 42);
    assert!(
        on_lead["COMMENT"]
            .as_str()
            .unwrap()
            .starts_with("Обратный звонок +79161234567: соединён"),
        "{on_lead}"
    );
    let on_contact = comments
        .iter()
        .find(|c| c["ENTITY_TYPE"] == "contact")
        .expect("a comment on the contact");
    assert_eq!(on_contact["ENTITY_ID"], 88);
    assert_eq!(on_contact["AUTHOR_ID"], 5);
    assert!(on_contact["COMMENT"]
        .as_str()
        .unwrap()
        .starts_with("Пропущенный звонок: +79035550000"));
    // The lead is remembered for the number.
    let link = store.crm_link("bitrix24", "79161234567").unwrap().unwrap();
    assert_eq!(
        (link.entity_type.as_str(), link.entity_id.as_str()),
        ("LEAD", "42")
    );
    restart_sends_nothing(&cfg, &db, || server.requests().len()).await;

    // The same customer misses again: a comment on the same lead, no search, no second lead.
    let before = server.requests().len();
    notify::enqueue_for_record(
        &store,
        &cfg,
        &missed_call("1.3", "79161234567"),
        jiff::Timestamp::now(),
    )
    .unwrap();
    let d = start(&cfg, &db);
    wait_for("the second miss delivered", || {
        rows(&db).iter().all(|r| r.delivered)
    })
    .await;
    d.stop().await;
    let again = server.requests();
    let new: Vec<&str> = again[before..].iter().map(|s| s.path.as_str()).collect();
    assert_eq!(new, ["/rest/1/abc123/crm.timeline.comment.add.json"]);
    let f = &again[before].json()["fields"];
    assert_eq!(
        (f["ENTITY_TYPE"].as_str(), f["ENTITY_ID"].as_i64()),
        (Some("lead"), Some(42))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitrix24_bad_token_is_given_up_at_once_and_never_logged() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("perezvon.db");
    let pki = Pki::new(dir.path());
    let server = https::serve(&pki, false, |_, _| {
        Reply::json(
            401,
            json!({"error": "invalid_token", "error_description": "Unable to authorize user"}),
        )
    })
    .await;
    let cfg = config(&format!(
        "[notify.bitrix24]\nwebhook_url = \"{}/rest/1/s3cr3tt0ken/\"\nca_file = {:?}\nretry_every = \"50ms\"\n",
        server.url(),
        pki.ca_file
    ));
    let store = Store::open(&db).unwrap();
    notify::enqueue_for_record(
        &store,
        &cfg,
        &missed_call("2.1", "79161234567"),
        jiff::Timestamp::now(),
    )
    .unwrap();
    let d = start(&cfg, &db);
    wait_for("the event given up", || rows(&db)[0].given_up).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let metrics = d.stop().await;
    let row = rows(&db).remove(0);
    assert_eq!(row.attempts, 1, "a bad token is not retried");
    let err = row.last_error.unwrap();
    assert!(
        err.contains("invalid_token") && err.contains("Unable to authorize user"),
        "{err}"
    );
    assert!(!err.contains("s3cr3tt0ken"), "the token leaked: {err}");
    assert_eq!(server.requests().len(), 1);
    assert!(metrics
        .render()
        .contains("perezvon_notifications_total{channel=\"bitrix24\",result=\"given_up\"} 1\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amocrm_task_on_a_found_contact_and_an_unsorted_lead_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("perezvon.db");
    let pki = Pki::new(dir.path());
    let tasks = Arc::new(Mutex::new(0));
    let tk = tasks.clone();
    let server = https::serve(&pki, false, move |s, _| {
        assert_eq!(s.header("authorization"), Some("Bearer amo-long-lived"));
        match (s.method.as_str(), s.path.as_str()) {
            ("GET", "/api/v4/contacts?query=79161234567") => Reply::json(
                200,
                json!({"_page": 1, "_embedded": {"contacts": [{"id": 77, "name": "Иван"}]}}),
            ),
            ("GET", p) if p.starts_with("/api/v4/contacts?query=") => Reply::empty(204),
            ("POST", "/api/v4/tasks") => {
                let mut n = tk.lock().unwrap();
                *n += 1;
                if *n == 1 {
                    Reply::empty(429)
                } else {
                    Reply::json(200, json!({"_embedded": {"tasks": [{"id": 5001, "request_id": "0"}]}}))
                }
            }
            ("POST", "/api/v4/leads/unsorted/forms") => Reply::json(
                200,
                json!({"_total_items": 1, "_embedded": {"unsorted": [{"uid": "u1", "account_id": 1,
                    "_embedded": {"leads": [{"id": 31}], "contacts": [{"id": 32}], "companies": []}}]}}),
            ),
            ("POST", "/api/v4/leads/31/notes") => Reply::json(200, json!({"_embedded": {"notes": [{"id": 1}]}})),
            _ => Reply::json(404, json!({"title": "Not found", "status": 404})),
        }
    })
    .await;
    let cfg = config(&format!(
        "[notify.amocrm]\nbase_url = \"{}\"\ntoken = \"amo-long-lived\"\nresponsible_user_id = 9\n\
         ca_file = {:?}\nretry_every = \"50ms\"\nmax_retry_every = \"100ms\"\n",
        server.url(),
        pki.ca_file
    ));
    let store = Store::open(&db).unwrap();
    let now = jiff::Timestamp::now();
    notify::enqueue_for_record(&store, &cfg, &missed_call("3.1", "79161234567"), now).unwrap();
    notify::enqueue_for_record(&store, &cfg, &missed_call("3.2", "79035550000"), now).unwrap();
    notify::enqueue_callback_outcome(&store, &cfg, &callback_event("79035550000"), now).unwrap();
    let d = start(&cfg, &db);
    wait_for("three events delivered", || {
        rows(&db).iter().all(|r| r.delivered)
    })
    .await;
    d.stop().await;

    let seen = server.requests();
    let task_posts: Vec<_> = seen.iter().filter(|s| s.path == "/api/v4/tasks").collect();
    assert_eq!(task_posts.len(), 2, "429 then created");
    let task = &task_posts[1].json()[0];
    assert_eq!(task["entity_id"], 77);
    assert_eq!(task["entity_type"], "contacts");
    assert_eq!(task["responsible_user_id"], 9);
    assert_eq!(task["task_type_id"], 1);
    assert!(task["complete_till"].as_i64().unwrap() > now.as_second());
    assert!(task["text"]
        .as_str()
        .unwrap()
        .starts_with("Пропущенный звонок: +79161234567"));
    let unsorted = seen
        .iter()
        .find(|s| s.path == "/api/v4/leads/unsorted/forms")
        .unwrap()
        .json();
    let u = &unsorted[0];
    assert_eq!(u["source_uid"], "missed:pbx1:3.2");
    assert_eq!(u["source_name"], "perezvon");
    assert_eq!(
        u["_embedded"]["contacts"][0]["custom_fields_values"][0]["field_code"],
        "PHONE"
    );
    assert_eq!(
        u["_embedded"]["contacts"][0]["custom_fields_values"][0]["values"][0]["value"],
        "+79035550000"
    );
    assert!(u["metadata"]["form_sent_at"].is_i64());
    let note = seen
        .iter()
        .find(|s| s.path == "/api/v4/leads/31/notes")
        .expect("the outcome as a note on the lead")
        .json();
    assert_eq!(note[0]["note_type"], "common");
    assert!(note[0]["params"]["text"]
        .as_str()
        .unwrap()
        .contains("соединён"));
    restart_sends_nothing(&cfg, &db, || server.requests().len()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amocrm_revoked_token_is_permanent() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("perezvon.db");
    let pki = Pki::new(dir.path());
    let server = https::serve(&pki, false, |_, _| {
        Reply::json(401, json!({"title": "Unauthorized", "type": "https://httpstatus.es/401", "status": 401, "detail": "Token has been revoked"}))
    })
    .await;
    let cfg = config(&format!(
        "[notify.amocrm]\nbase_url = \"{}\"\ntoken = \"revoked\"\nca_file = {:?}\nretry_every = \"50ms\"\n",
        server.url(),
        pki.ca_file
    ));
    let store = Store::open(&db).unwrap();
    notify::enqueue_for_record(
        &store,
        &cfg,
        &missed_call("4.1", "79161234567"),
        jiff::Timestamp::now(),
    )
    .unwrap();
    let d = start(&cfg, &db);
    wait_for("the event given up", || rows(&db)[0].given_up).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    d.stop().await;
    let row = rows(&db).remove(0);
    assert_eq!(row.attempts, 1);
    assert!(row.last_error.unwrap().contains("Token has been revoked"));
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegram_waits_out_flood_control_and_gives_up_on_a_wrong_chat() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("perezvon.db");
    let pki = Pki::new(dir.path());
    let times = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let times2 = times.clone();
    let server = https::serve(&pki, false, move |s, n| {
        times2.lock().unwrap().push(Instant::now());
        assert_eq!(s.method, "POST");
        assert_eq!(s.path, "/bot123456:ABC-def_ghi/sendMessage");
        let b = s.json();
        if b["chat_id"] == "@nosuchchat" {
            return Reply::json(400, json!({"ok": false, "error_code": 400, "description": "Bad Request: chat not found"}));
        }
        assert_eq!(b["chat_id"], -1001234567890_i64);
        if n == 0 {
            Reply::json(429, json!({"ok": false, "error_code": 429,
                "description": "Too Many Requests: retry after 1", "parameters": {"retry_after": 1}}))
        } else {
            Reply::json(200, json!({"ok": true, "result": {"message_id": n, "text": b["text"]}}))
        }
    })
    .await;
    let text = |chat: &str, lang: &str| {
        format!(
            "[notify.telegram]\nbot_token = \"123456:ABC-def_ghi\"\nchat_id = {chat}\napi_url = \"{}\"\n\
             ca_file = {:?}\nlanguage = \"{lang}\"\nevents = [\"missed\"]\nretry_every = \"50ms\"\nmax_retry_every = \"100ms\"\n",
            server.url(),
            pki.ca_file
        )
    };
    let cfg = config(&text("-1001234567890", "en"));
    let store = Store::open(&db).unwrap();
    notify::enqueue_for_record(
        &store,
        &cfg,
        &missed_call("5.1", "79161234567"),
        jiff::Timestamp::now(),
    )
    .unwrap();
    // Not wanted by this channel.
    assert_eq!(
        notify::enqueue_callback_outcome(
            &store,
            &cfg,
            &callback_event("79161234567"),
            jiff::Timestamp::now()
        )
        .unwrap(),
        0
    );
    let d = start(&cfg, &db);
    wait_for("the message sent", || rows(&db)[0].delivered).await;
    d.stop().await;
    let seen = server.requests();
    assert_eq!(seen.len(), 2);
    let t = times.lock().unwrap().clone();
    assert!(
        t[1] - t[0] >= Duration::from_millis(950),
        "retry_after not honoured"
    );
    assert!(seen[1].json()["text"]
        .as_str()
        .unwrap()
        .starts_with("Missed call: +79161234567 at "));
    restart_sends_nothing(&cfg, &db, || server.requests().len()).await;

    // A chat the bot cannot post to: Telegram's description, one attempt, no token in the error.
    let db2 = dir.path().join("second.db");
    let cfg = config(&text("\"@nosuchchat\"", "ru"));
    let store = Store::open(&db2).unwrap();
    notify::enqueue_for_record(
        &store,
        &cfg,
        &missed_call("5.2", "79161234567"),
        jiff::Timestamp::now(),
    )
    .unwrap();
    let d = start(&cfg, &db2);
    wait_for("the message given up", || rows(&db2)[0].given_up).await;
    d.stop().await;
    let row = rows(&db2).remove(0);
    assert_eq!(row.attempts, 1);
    let err = row.last_error.unwrap();
    assert!(err.contains("Bad Request: chat not found"), "{err}");
    assert!(!err.contains("ABC-def_ghi"), "the token leaked: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_template_posts_a_form_to_an_sms_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("perezvon.db");
    let pki = Pki::new(dir.path());
    let server = https::serve(&pki, false, |s, n| match s.path.as_str() {
        "/sms/send?sender=perezvon" => {
            if n == 0 {
                Reply::empty(502)
            } else {
                Reply::json(200, json!({"status": "OK"}))
            }
        }
        _ => Reply::json(
            400,
            json!({"status": "ERROR", "status_text": "invalid phone"}),
        ),
    })
    .await;
    let cfg = config(&format!(
        "[[notify.http]]\nname = \"sms\"\nurl = \"{url}/sms/send?sender=perezvon\"\n\
         headers = {{ X-Api-Key = \"k-123\" }}\ncontent_type = \"application/x-www-form-urlencoded\"\n\
         body = \"to={{number}}&text={{text}}&wait={{wait_s}}\"\nevents = [\"missed\"]\nca_file = {ca:?}\n\
         retry_every = \"50ms\"\nmax_retry_every = \"100ms\"\n\n\
         [[notify.http]]\nname = \"broken\"\nurl = \"{url}/other\"\ncontent_type = \"application/json\"\n\
         body = '{{\"to\": \"{{number}}\", \"text\": \"{{text}}\"}}'\nevents = [\"missed\"]\nca_file = {ca:?}\nretry_every = \"50ms\"\n",
        url = server.url(),
        ca = pki.ca_file
    ));
    let store = Store::open(&db).unwrap();
    assert_eq!(
        notify::enqueue_for_record(
            &store,
            &cfg,
            &missed_call("6.1", "79161234567"),
            jiff::Timestamp::now()
        )
        .unwrap(),
        2
    );
    let d = start(&cfg, &db);
    wait_for("one delivered, one given up", || {
        let r = rows(&db);
        r.iter().any(|r| r.channel == "http:sms" && r.delivered)
            && r.iter().any(|r| r.channel == "http:broken" && r.given_up)
    })
    .await;
    let metrics = d.stop().await;
    let seen = server.requests();
    let sms: Vec<_> = seen
        .iter()
        .filter(|s| s.path.starts_with("/sms/"))
        .collect();
    // 502 then OK; under load the first attempt can time out before the fake records it.
    assert!(!sms.is_empty() && sms.len() <= 2, "{}", sms.len());
    let s = sms[sms.len() - 1];
    assert_eq!(s.method, "POST");
    assert_eq!(s.header("x-api-key"), Some("k-123"));
    assert_eq!(
        s.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let body = s.text();
    assert!(body.starts_with("to=%2B79161234567&text=%D0%9F"), "{body}");
    assert!(body.ends_with("&wait=40"), "{body}");
    let broken: Vec<_> = seen.iter().filter(|s| s.path == "/other").collect();
    assert_eq!(broken.len(), 1, "a 400 is not retried");
    assert_eq!(broken[0].json()["to"], "+79161234567");
    let row = rows(&db)
        .into_iter()
        .find(|r| r.channel == "http:broken")
        .unwrap();
    assert_eq!(row.event_id, "missed:pbx1:6.1");
    assert!(row.last_error.unwrap().contains("HTTP 400"));
    let m = metrics.render();
    assert!(
        m.contains("perezvon_notifications_total{channel=\"http\",result=\"delivered\"} 1\n"),
        "{m}"
    );
    assert!(
        m.contains("perezvon_notifications_total{channel=\"http\",result=\"given_up\"} 1\n"),
        "{m}"
    );
    restart_sends_nothing(&cfg, &db, || server.requests().len()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_wants_a_client_certificate_refuses_a_client_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("perezvon.db");
    let pki = Pki::new(dir.path());
    let server = https::serve(&pki, true, |_, _| Reply::empty(200)).await;
    let cfg = config(&format!(
        "[notify.webhook]\nurl = \"{}/hook\"\nca_file = {:?}\nretry_every = \"50ms\"\nmax_retry_every = \"100ms\"\n",
        server.url(),
        pki.ca_file
    ));
    let store = Store::open(&db).unwrap();
    notify::enqueue_for_record(
        &store,
        &cfg,
        &missed_call("9.2", "79161234567"),
        jiff::Timestamp::now(),
    )
    .unwrap();
    let d = start(&cfg, &db);
    wait_for("two failed attempts", || rows(&db)[0].attempts >= 2).await;
    d.stop().await;
    let row = rows(&db).remove(0);
    assert!(!row.delivered, "{row:?}");
    assert!(server.requests().is_empty());
}
