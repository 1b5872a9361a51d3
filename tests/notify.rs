//! Notifications end to end: events enqueued in the outbox reach a receiver on 127.0.0.1 that is
//! first down, then failing, then hanging, then healthy; nothing is lost and nothing acknowledged
//! is sent again. E-mail goes through a plain fake SMTP relay (TLS, AUTH and MIME: tests/notify_email.rs).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use perezvon::calls::record::{CallRecord, CallbackOutcome, ResolvedBy, Status};
use perezvon::config::Config;
use perezvon::metrics::Metrics;
use perezvon::notify::{self, CallbackEvent};
use perezvon::store::Store;
use sha2::Sha256;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

mod support;

const PATIENCE: Duration = Duration::from_secs(60);

fn t(s: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_800_000_000 + s).unwrap()
}

fn missed_call(linkedid: &str) -> CallRecord {
    CallRecord {
        server: "pbx1".into(),
        caller: Some("89161234567".into()),
        agent: Some("201".into()),
        ..support::inbound_miss(linkedid, t(0), 40.0)
    }
}

fn callback_event() -> CallbackEvent {
    CallbackEvent {
        server: "pbx1".into(),
        callback_id: "cb-7-1".into(),
        task_id: 7,
        number: "79161234567".into(),
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

/// A port nothing listens on (yet): bound, then released.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Seen {
    head: String,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

#[derive(Default)]
struct Receiver {
    /// Every request in arrival order, with the answer given (None = left hanging).
    requests: Vec<(Seen, Option<u16>)>,
    /// Connections left hanging, kept open until the test ends.
    hanging: Vec<TcpStream>,
}

async fn read_request(stream: &mut TcpStream) -> Option<Seen> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).ok()?;
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length").then_some(v)
        })
        .and_then(|v| v.trim().parse().ok())?;
    while buf.len() < head_end + len {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(Seen {
        head,
        body: buf[head_end..head_end + len].to_vec(),
    })
}

/// An HTTP receiver that answers its first request with 500, leaves the second hanging past the
/// client's timeout, and acknowledges everything after that with 200.
async fn flaky_receiver(listener: TcpListener, state: Arc<Mutex<Receiver>>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let Some(seen) = read_request(&mut stream).await else {
                return;
            };
            let n = state.lock().unwrap().requests.len();
            let answer = match n {
                0 => Some(500),
                1 => None,
                _ => Some(200),
            };
            state.lock().unwrap().requests.push((seen, answer));
            match answer {
                Some(code) => {
                    let reason = if code == 200 {
                        "OK"
                    } else {
                        "Internal Server Error"
                    };
                    let _ = stream
                        .write_all(
                            format!("HTTP/1.1 {code} {reason}\r\nContent-Length: 0\r\n\r\n")
                                .as_bytes(),
                        )
                        .await;
                }
                None => state.lock().unwrap().hanging.push(stream),
            }
        });
    }
}

/// What a receiver does to check a request (docs/WEBHOOK.md shows the same in other languages).
fn signature_ok(secret: &str, body: &[u8], header: &str) -> bool {
    let Some(hex) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(expected) = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2).unwrap_or("zz"), 16))
        .collect::<Result<Vec<u8>, _>>()
    else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

fn webhook_config(port: u16, extra: &str) -> Config {
    Config::from_toml(&format!(
        "[notify.webhook]\n\
         url = \"http://127.0.0.1:{port}/hooks/perezvon\"\n\
         secret = \"s3cret\"\n\
         timeout = \"2s\"\n\
         retry_every = \"50ms\"\n\
         max_retry_every = \"200ms\"\n{extra}"
    ))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_delivers_every_event_once_after_refused_500_and_hang() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("perezvon.db");
    let port = free_port();
    let cfg = Arc::new(webhook_config(port, ""));

    // The daemon's side: verdicts stored, events enqueued on its connection.
    let store = Store::open(&db).unwrap();
    let now = jiff::Timestamp::now();
    let missed = missed_call("1800000000.1");
    assert_eq!(
        notify::enqueue_for_record(&store, &cfg, &missed, now).unwrap(),
        1
    );
    // A replay or restart enqueues the same event again: no duplicate.
    assert_eq!(
        notify::enqueue_for_record(&store, &cfg, &missed, now).unwrap(),
        0
    );
    // Answered calls are no event.
    let mut answered = missed_call("1800000000.2");
    answered.status = Status::Answered;
    assert_eq!(
        notify::enqueue_for_record(&store, &cfg, &answered, now).unwrap(),
        0
    );
    let mut resolved = missed.clone();
    resolved.resolved_by = Some(ResolvedBy::Agent);
    resolved.resolved_at = Some(t(40 + 725));
    resolved.resolved_by_linkedid = Some("1800000700.9".into());
    assert_eq!(
        notify::enqueue_resolved(&store, &cfg, &resolved, now).unwrap(),
        1
    );
    assert_eq!(
        notify::enqueue_callback_outcome(&store, &cfg, &callback_event(), now).unwrap(),
        1
    );

    let metrics = Arc::new(Metrics::default());
    let shutdown = CancellationToken::new();
    let delivery = tokio::spawn(notify::run_delivery(
        cfg.clone(),
        db.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));

    // Phase 1: nothing listens. Every event is tried, fails, and stays queued.
    let probe = Store::open(&db).unwrap();
    let far = now
        .checked_add(jiff::SignedDuration::from_hours(24))
        .unwrap();
    wait_for("every event tried against a closed port", || {
        let rows = probe.due_notifications(far, 10).unwrap();
        rows.len() == 3 && rows.iter().all(|r| r.attempts >= 1)
    })
    .await;
    for r in probe.due_notifications(far, 10).unwrap() {
        assert!(
            r.last_error
                .as_deref()
                .unwrap_or("")
                .contains("cannot connect"),
            "{:?}",
            r.last_error
        );
    }

    // Phase 2: the receiver comes up, answers 500, then hangs once, then recovers.
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let state = Arc::new(Mutex::new(Receiver::default()));
    let server = tokio::spawn(flaky_receiver(listener, state.clone()));
    let acked_ids = |state: &Mutex<Receiver>| -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for (seen, answer) in &state.lock().unwrap().requests {
            if *answer == Some(200) {
                *m.entry(seen.header("Idempotency-Key").unwrap_or_default())
                    .or_insert(0) += 1;
            }
        }
        m
    };
    wait_for("three events acknowledged", || acked_ids(&state).len() == 3).await;
    wait_for("the outbox drained", || {
        probe.outbox_counts().unwrap().pending == 0
    })
    .await;
    // Give a wrong implementation the chance to send something twice.
    tokio::time::sleep(Duration::from_millis(300)).await;
    shutdown.cancel();
    tokio::time::timeout(PATIENCE, delivery)
        .await
        .expect("delivery stops on shutdown")
        .unwrap()
        .unwrap();
    server.abort();

    let acked = acked_ids(&state);
    let expected_ids = [
        "missed:pbx1:1800000000.1",
        "resolved:pbx1:1800000000.1",
        "callback:cb-7-1",
    ];
    for id in expected_ids {
        assert_eq!(
            acked.get(id),
            Some(&1),
            "{id} acknowledged {:?} times",
            acked.get(id)
        );
    }
    let counts = probe.outbox_counts().unwrap();
    assert_eq!(
        (counts.delivered, counts.pending, counts.given_up),
        (3, 0, 0)
    );
    assert!(metrics
        .render()
        .contains("perezvon_notifications_total{channel=\"webhook\",result=\"delivered\"} 3\n"));

    let st = state.lock().unwrap();
    assert_eq!(st.requests[0].1, Some(500));
    assert_eq!(st.requests[1].1, None);
    for (seen, _) in &st.requests {
        assert!(
            seen.head.starts_with("POST /hooks/perezvon HTTP/1.1\r\n"),
            "{}",
            seen.head
        );
        assert_eq!(
            seen.header("Host").as_deref(),
            Some(&*format!("127.0.0.1:{port}"))
        );
        assert_eq!(
            seen.header("Content-Type").as_deref(),
            Some("application/json; charset=utf-8")
        );
        let sig = seen.header("X-Perezvon-Signature").unwrap();
        assert!(
            signature_ok("s3cret", &seen.body, &sig),
            "bad signature {sig}"
        );
        assert!(!signature_ok("wrong", &seen.body, &sig));
        let body: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
        assert_eq!(
            seen.header("Idempotency-Key"),
            body["id"].as_str().map(String::from)
        );
        assert_eq!(
            seen.header("X-Perezvon-Event-Id"),
            seen.header("Idempotency-Key")
        );
        assert_eq!(
            seen.header("X-Perezvon-Event"),
            body["event"].as_str().map(String::from)
        );
        assert!(seen
            .header("X-Perezvon-Timestamp")
            .and_then(|v| v.parse::<i64>().ok())
            .is_some_and(|ts| (ts - now.as_second()).abs() < 3600));
        assert!(
            seen.header("X-Perezvon-Delivery-Attempt")
                .and_then(|v| v.parse::<u32>().ok())
                .is_some_and(|n| n >= 2),
            "the first attempt hit a closed port"
        );
        assert_eq!(body["schema"], 1);
        assert_eq!(body["number"], "79161234567");
        assert_eq!(body["number_e164"], "+79161234567");
        match body["event"].as_str().unwrap() {
            "missed" => {
                assert_eq!(body["call"]["lost_at"], "queue");
                assert_eq!(body["call"]["wait_secs"], 40.0);
                assert_eq!(body["occurred_at"], body["call"]["ended_at"]);
            }
            "resolved" => {
                assert_eq!(body["resolved_by"], "agent");
                assert_eq!(body["reaction_secs"], 725.0);
            }
            "callback" => {
                assert_eq!(body["callback"]["outcome"], "connected");
                assert_eq!(body["callback"]["task_state"], "done");
            }
            other => panic!("unexpected event {other}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undeliverable_event_is_given_up_after_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("perezvon.db");
    let cfg = Arc::new(webhook_config(free_port(), "give_up_after = \"300ms\"\n"));
    let store = Store::open(&db).unwrap();
    notify::enqueue_for_record(&store, &cfg, &missed_call("9.9"), jiff::Timestamp::now()).unwrap();
    let metrics = Arc::new(Metrics::default());
    let shutdown = CancellationToken::new();
    let delivery = tokio::spawn(notify::run_delivery(
        cfg,
        db.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));
    wait_for("the event given up", || {
        store.outbox_counts().unwrap().given_up == 1
    })
    .await;
    shutdown.cancel();
    delivery.await.unwrap().unwrap();
    assert_eq!(store.outbox_counts().unwrap().pending, 0);
    assert!(metrics
        .render()
        .contains("perezvon_notifications_total{channel=\"webhook\",result=\"given_up\"} 1\n"));
}

/// What a fake relay saw in one SMTP session.
#[derive(Debug, Default, Clone)]
struct Session {
    commands: Vec<String>,
    /// The DATA bytes exactly as received, up to and excluding the final `.` line.
    data: String,
}

/// A fake SMTP relay. With `refuse_first`, the first session is greeted with 421 and closed.
async fn fake_relay(listener: TcpListener, refuse_first: bool, sessions: Arc<Mutex<Vec<Session>>>) {
    let mut first = true;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let mut io = BufReader::new(stream);
        if first && refuse_first {
            first = false;
            let _ = io
                .get_mut()
                .write_all(b"421 4.3.2 busy, try later\r\n")
                .await;
            continue;
        }
        let mut s = Session::default();
        let _ = io.get_mut().write_all(b"220 relay.test ESMTP\r\n").await;
        loop {
            let mut line = String::new();
            if io.read_line(&mut line).await.unwrap_or(0) == 0 {
                break;
            }
            let cmd = line.trim_end().to_string();
            s.commands.push(cmd.clone());
            let reply: &[u8] = if cmd.starts_with("EHLO") {
                b"250-relay.test greets you\r\n250-8BITMIME\r\n250 SIZE 10240000\r\n"
            } else if cmd == "DATA" {
                let _ = io.get_mut().write_all(b"354 go ahead\r\n").await;
                loop {
                    let mut l = String::new();
                    if io.read_line(&mut l).await.unwrap_or(0) == 0 || l == ".\r\n" {
                        break;
                    }
                    s.data.push_str(&l);
                }
                b"250 2.0.0 queued as 42\r\n"
            } else if cmd == "QUIT" {
                let _ = io.get_mut().write_all(b"221 bye\r\n").await;
                break;
            } else {
                b"250 ok\r\n"
            };
            let _ = io.get_mut().write_all(reply).await;
        }
        sessions.lock().unwrap().push(s);
    }
}

fn unstuff(data: &str) -> String {
    data.split_inclusive("\r\n")
        .map(|l| l.strip_prefix('.').unwrap_or(l))
        .collect()
}

fn email_config(port: u16) -> Config {
    Config::from_toml(&format!(
        "[hours]\ntimezone = \"Europe/Moscow\"\n\
         [notify.email]\n\
         smtp_host = \"127.0.0.1\"\n\
         smtp_port = {port}\n\
         from = \"perezvon@example.com\"\n\
         to = [\"lead@example.com\", \"boss@example.com\"]\n\
         helo = \"pbx.example.com\"\n\
         timeout = \"10s\"\n\
         retry_every = \"50ms\"\n\
         max_retry_every = \"200ms\"\n"
    ))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_channel_retries_a_busy_relay() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let sessions = Arc::new(Mutex::new(Vec::new()));
    let relay = tokio::spawn(fake_relay(listener, true, sessions.clone()));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("perezvon.db");
    let cfg = Arc::new(email_config(port));
    let store = Store::open(&db).unwrap();
    assert_eq!(
        notify::enqueue_for_record(&store, &cfg, &missed_call("5.5"), jiff::Timestamp::now())
            .unwrap(),
        1
    );
    let shutdown = CancellationToken::new();
    let delivery = tokio::spawn(notify::run_delivery(
        cfg,
        db.clone(),
        Arc::new(Metrics::default()),
        shutdown.clone(),
    ));
    wait_for("the mail delivered", || {
        store.outbox_counts().unwrap().delivered == 1
    })
    .await;
    shutdown.cancel();
    delivery.await.unwrap().unwrap();
    relay.abort();
    let sessions = sessions.lock().unwrap();
    assert_eq!(
        sessions.len(),
        1,
        "one accepted session after the refused one"
    );
    let message = unstuff(&sessions[0].data);
    assert!(
        message.contains("Subject: Missed call from +79161234567 (lost at queue)\r\n"),
        "{message}"
    );
    assert!(message.contains("Lost at:  queue"), "{message}");
    // 1_800_000_040 is 2027-01-15 08:00:40 UTC: shown in the configured zone.
    assert!(
        message.contains("Ended:    2027-01-15 11:00:40 MSK"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_webhook_does_not_hold_back_email() {
    // A receiver that accepts and never answers, with a timeout longer than the test.
    let hanging = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let web_port = hanging.local_addr().unwrap().port();
    let held = Arc::new(Mutex::new(Vec::new()));
    let held2 = held.clone();
    let sink = tokio::spawn(async move {
        while let Ok((s, _)) = hanging.accept().await {
            held2.lock().unwrap().push(s);
        }
    });
    let relay_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let smtp_port = relay_listener.local_addr().unwrap().port();
    let sessions = Arc::new(Mutex::new(Vec::new()));
    let relay = tokio::spawn(fake_relay(relay_listener, false, sessions.clone()));

    let cfg = Config::from_toml(&format!(
        "[notify.webhook]\nurl = \"http://127.0.0.1:{web_port}/\"\ntimeout = \"1h\"\n\
         [notify.email]\nsmtp_port = {smtp_port}\nfrom = \"p@example.com\"\nto = [\"l@example.com\"]\n"
    ))
    .unwrap();
    let cfg = Arc::new(cfg);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("perezvon.db");
    let store = Store::open(&db).unwrap();
    assert_eq!(
        notify::enqueue_for_record(&store, &cfg, &missed_call("7.7"), jiff::Timestamp::now())
            .unwrap(),
        2
    );
    let shutdown = CancellationToken::new();
    let delivery = tokio::spawn(notify::run_delivery(
        cfg,
        db.clone(),
        Arc::new(Metrics::default()),
        shutdown.clone(),
    ));
    wait_for("the webhook request hanging", || {
        !held.lock().unwrap().is_empty()
    })
    .await;
    wait_for("the mail delivered", || {
        store.outbox_counts().unwrap().delivered == 1
    })
    .await;
    assert_eq!(
        store.outbox_counts().unwrap().pending,
        1,
        "the webhook is still waiting"
    );
    // Shutdown does not wait for the hanging request's hour.
    shutdown.cancel();
    tokio::time::timeout(PATIENCE, delivery)
        .await
        .expect("delivery stops on shutdown")
        .unwrap()
        .unwrap();
    sink.abort();
    relay.abort();
    assert_eq!(sessions.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn events_of_a_removed_channel_are_given_up() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("perezvon.db");
    let store = Store::open(&db).unwrap();
    let with_webhook = webhook_config(free_port(), "");
    notify::enqueue_for_record(
        &store,
        &with_webhook,
        &missed_call("8.8"),
        jiff::Timestamp::now(),
    )
    .unwrap();
    // The admin removed [notify.webhook] and restarted.
    let without = Arc::new(Config::from_toml("").unwrap());
    let shutdown = CancellationToken::new();
    shutdown.cancel();
    notify::run_delivery(without, db, Arc::new(Metrics::default()), shutdown)
        .await
        .unwrap();
    let c = store.outbox_counts().unwrap();
    assert_eq!((c.pending, c.given_up), (0, 1));
}
