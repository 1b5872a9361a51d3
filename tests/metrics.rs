//! The metrics endpoint: every name and label in the exposition text, parsed back with a
//! Prometheus text parser, and real scrapes over 127.0.0.1 through the axum router.

use std::sync::Arc;
use std::time::Duration;

use perezvon::calls::record::{CallRecord, CallbackOutcome, Direction, LostAt, Status};
use perezvon::metrics::{serve_on, Metrics};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

mod support;

fn record(direction: Direction, status: Status, lost_at: Option<LostAt>) -> CallRecord {
    let t = jiff::Timestamp::from_second(1_800_000_000).unwrap();
    CallRecord {
        server: "pbx1".into(),
        direction,
        caller: None,
        caller_normalized: None,
        callee: None,
        callee_normalized: None,
        status,
        missed: status == Status::Missed,
        ignored: status == Status::Ignored,
        lost_at,
        hangup_by: None,
        ..support::inbound_miss("1.1", t, 0.0)
    }
}

fn sample() -> Metrics {
    let m = Metrics::new(["pbx1", "odd \"name\"\\x"]);
    m.record_call(&record(
        Direction::Inbound,
        Status::Missed,
        Some(LostAt::Queue),
    ));
    m.record_call(&record(
        Direction::Inbound,
        Status::Missed,
        Some(LostAt::Queue),
    ));
    m.record_call(&record(Direction::Inbound, Status::Missed, None));
    m.record_call(&record(Direction::Inbound, Status::Answered, None));
    m.record_call(&record(Direction::Callback, Status::Answered, None));
    m.record_callback(CallbackOutcome::Connected);
    m.record_callback(CallbackOutcome::NoAnswer);
    m.record_callback(CallbackOutcome::NoAnswer);
    let s = m.server("pbx1");
    s.set_link_up(true);
    s.events_received(40);
    s.event_received();
    s.decode_problems(2);
    s.reconnected();
    m.set_pending_callback_tasks(5);
    m.set_outbox_pending(3);
    m.notification_delivered("webhook");
    m.notification_failed("email");
    m.notification_given_up("sms"); // not a channel: ignored, never a panic
    m.observe_verdict_latency(0.2);
    m.observe_verdict_latency(3.0);
    m.observe_callback_latency(25.0);
    let t = jiff::Timestamp::from_second(1_800_000_000).unwrap();
    m.server("pbx1").event_at(t, Some(1_799_999_999.75));
    m
}

/// The sample lines of `text`, sorted (the crate writes a family's series in hash order).
fn sample_lines(text: &str) -> Vec<&str> {
    let mut v: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    v.sort_unstable();
    v
}

#[test]
fn exposition_text_keeps_every_name_and_label() {
    let text = sample().render();
    assert!(text.starts_with(
        "# HELP perezvon_build_info Always 1; the version label says which perezvon is running.\n\
         # TYPE perezvon_build_info gauge\n\
         perezvon_build_info{version=\""
    ));
    assert!(text.ends_with("# EOF\n"), "OpenMetrics ends in # EOF");
    let lines = sample_lines(&text);
    let expected = [
        "perezvon_missed_calls_total{lost_at=\"ivr\"} 0",
        "perezvon_missed_calls_total{lost_at=\"voicemail\"} 0",
        "perezvon_missed_calls_total{lost_at=\"invalid_number\"} 0",
        "perezvon_missed_calls_total{lost_at=\"queue\"} 2",
        "perezvon_missed_calls_total{lost_at=\"group\"} 0",
        "perezvon_missed_calls_total{lost_at=\"external\"} 0",
        "perezvon_missed_calls_total{lost_at=\"user\"} 0",
        "perezvon_missed_calls_total{lost_at=\"unknown\"} 1",
        "perezvon_calls_total{direction=\"inbound\",status=\"missed\"} 3",
        "perezvon_calls_total{direction=\"inbound\",status=\"answered\"} 1",
        "perezvon_calls_total{direction=\"callback\",status=\"answered\"} 1",
        "perezvon_calls_total{direction=\"outbound\",status=\"unknown\"} 0",
        "perezvon_callbacks_total{outcome=\"connected\"} 1",
        "perezvon_callbacks_total{outcome=\"no_answer\"} 2",
        "perezvon_ami_link_up{server=\"odd \\\"name\\\"\\\\x\"} 0",
        "perezvon_ami_link_up{server=\"pbx1\"} 1",
        "perezvon_ami_events_received_total{server=\"pbx1\"} 42",
        "perezvon_ami_decode_problems_total{server=\"pbx1\"} 2",
        "perezvon_ami_reconnects_total{server=\"pbx1\"} 1",
        "perezvon_callback_tasks_pending 5",
        "perezvon_outbox_pending 3",
        "perezvon_held_verdicts 0",
        "perezvon_notifications_total{channel=\"webhook\",result=\"delivered\"} 1",
        "perezvon_notifications_total{channel=\"email\",result=\"failed\"} 1",
        "perezvon_verdict_latency_seconds_count 2",
        "perezvon_verdict_latency_seconds_bucket{le=\"0.25\"} 1",
        "perezvon_verdict_latency_seconds_bucket{le=\"0.5\"} 1",
        "perezvon_verdict_latency_seconds_bucket{le=\"5.0\"} 2",
        "perezvon_verdict_latency_seconds_bucket{le=\"+Inf\"} 2",
        "perezvon_callback_outcome_latency_seconds_count 1",
        "perezvon_callback_outcome_latency_seconds_bucket{le=\"20.0\"} 0",
        "perezvon_callback_outcome_latency_seconds_bucket{le=\"30.0\"} 1",
    ];
    for e in expected {
        assert!(lines.contains(&e), "missing {e:?} in:\n{text}");
    }
    assert!(text.contains(
        "# HELP perezvon_callback_tasks_pending Callback tasks waiting for an attempt or in progress.\n\
         # TYPE perezvon_callback_tasks_pending gauge\n\
         perezvon_callback_tasks_pending 5\n"
    ));
    // Every notification channel × result is present from the start.
    for ch in perezvon::metrics::CHANNELS {
        for res in ["delivered", "failed", "given_up"] {
            let prefix =
                format!("perezvon_notifications_total{{channel=\"{ch}\",result=\"{res}\"}} ");
            assert!(lines.iter().any(|l| l.starts_with(&prefix)), "{prefix}");
        }
    }
    // The per-server clock: only for a server that sent an event.
    let since: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("perezvon_ami_seconds_since_last_event{"))
        .collect();
    assert_eq!(since.len(), 1, "{since:?}");
    assert!(since[0].starts_with("perezvon_ami_seconds_since_last_event{server=\"pbx1\"} "));
    assert!(lines
        .iter()
        .any(|l| l.starts_with("perezvon_ami_event_lag_seconds{server=\"pbx1\"} 0.25")));
}

#[cfg(target_os = "linux")]
#[test]
fn process_metrics_come_from_proc() {
    let text = Metrics::default().render();
    let value = |name: &str| -> f64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing in:\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(value("process_resident_memory_bytes") > 1e6);
    assert!(value("process_virtual_memory_bytes") >= value("process_resident_memory_bytes"));
    assert!(value("process_open_fds") >= 3.0);
    assert!(value("process_max_fds") >= value("process_open_fds"));
    assert!(value("process_cpu_seconds_total") >= 0.0);
    let start = value("process_start_time_seconds");
    let now = jiff::Timestamp::now().as_second() as f64;
    assert!(
        start <= now + 1.0 && start > now - 86_400.0,
        "{start} vs {now}"
    );
}

/// Parses with the `prometheus-parse` text-format parser and checks that it understood every
/// line (it skips what it cannot read, so the count is the test).
fn parse_strictly(text: &str) -> prometheus_parse::Scrape {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let histograms: std::collections::BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" histogram"))
        .collect();
    let plain_lines = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.contains("_bucket{"))
        .count();
    assert_eq!(
        scrape.samples.len(),
        plain_lines + histograms.len(),
        "every sample line parsed"
    );
    scrape
}

#[test]
fn exposition_text_parses_with_a_prometheus_parser() {
    let text = sample().render();
    let scrape = parse_strictly(&text);
    let hist = |name: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name)
            .map(|s| s.value.clone())
    };
    let Some(prometheus_parse::Value::Histogram(buckets)) =
        hist("perezvon_verdict_latency_seconds")
    else {
        panic!("no verdict histogram");
    };
    let at = |le: f64| buckets.iter().find(|b| b.less_than == le).map(|b| b.count);
    assert_eq!(at(0.1), Some(0.0));
    assert_eq!(at(0.25), Some(1.0));
    assert_eq!(at(f64::INFINITY), Some(2.0));
    assert!(matches!(
        hist("perezvon_callback_outcome_latency_seconds"),
        Some(prometheus_parse::Value::Histogram(_))
    ));
    let link = scrape
        .samples
        .iter()
        // prometheus-parse does not unescape label values: it hands back the escaped text.
        .find(|s| {
            s.metric == "perezvon_ami_link_up"
                && s.labels.get("server") == Some(r#"odd \"name\"\\x"#)
        })
        .expect("escaped label read back");
    assert_eq!(link.value, prometheus_parse::Value::Gauge(0.0));
    let events = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "perezvon_ami_events_received_total"
                && s.labels.get("server") == Some("pbx1")
        })
        .expect("pbx1's events (series come in any order)");
    assert!(matches!(events.value, prometheus_parse::Value::Untyped(v) if v == 42.0));
}

async fn get(addr: std::net::SocketAddr, request: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_string(&mut out))
        .await
        .expect("response in time")
        .unwrap();
    out
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test]
async fn scrape_over_loopback() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let metrics = Arc::new(sample());
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve_on(listener, metrics.clone(), shutdown.clone()));

    let r = get(
        addr,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    let (head, body) = r.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(
        header(head, "content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert_eq!(
        header(head, "content-length"),
        Some(body.len().to_string().as_str())
    );
    let scrape = parse_strictly(body);
    assert!(scrape
        .samples
        .iter()
        .any(|s| matches!(s.value, prometheus_parse::Value::Histogram(_))));

    // Updates show in the next scrape.
    metrics.server("pbx1").set_link_up(false);
    let r = get(addr, "GET /metrics?x=1 HTTP/1.0\r\n\r\n").await;
    assert!(r.contains("perezvon_ami_link_up{server=\"pbx1\"} 0\n"));

    let r = get(
        addr,
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 404 Not Found\r\n"), "{r}");
    // No status source here: /status is not served.
    let r = get(
        addr,
        "GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    let r = get(
        addr,
        "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 405"), "{r}");
    assert_eq!(
        header(r.split_once("\r\n\r\n").unwrap().0, "allow").map(|a| a.contains("GET")),
        Some(true)
    );
    // A body beyond the limit is refused before any handler reads it.
    let big = "x".repeat(perezvon::web::MAX_BODY + 1);
    let r = get(
        addr,
        &format!("POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{big}", big.len()),
    )
    .await;
    assert!(
        r.starts_with("HTTP/1.1 413") || r.starts_with("HTTP/1.1 405"),
        "{r}"
    );
    // Garbage is answered with 400, not a panic, and the server keeps serving.
    let r = get(addr, "\x16\x03\x01 not http\r\n\r\n").await;
    assert!(r.is_empty() || r.starts_with("HTTP/1.1 400"), "{r}");
    let r = get(addr, "GET /metrics HTTP/1.0\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.0 200"), "{r}");

    // An idle keep-alive connection does not hold up shutdown.
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("server stops on shutdown")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn status_route_reads_the_store_and_says_when_it_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("perezvon.db");
    let now = jiff::Timestamp::now();
    {
        let store = perezvon::store::Store::open(&db).unwrap();
        store
            .insert_call(&support::inbound_miss(
                "9.1",
                now - jiff::SignedDuration::from_secs(3),
                1.0,
            ))
            .unwrap();
    }
    let metrics = Arc::new(sample());
    metrics.set_calls_today(1);
    let serve = |db: std::path::PathBuf| {
        let router = perezvon::web::router(
            metrics.clone(),
            Some(perezvon::web::StatusSource {
                db,
                timezone: jiff::tz::TimeZone::UTC,
                started_at: now,
            }),
        );
        async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let stop = CancellationToken::new();
            let task = tokio::spawn(perezvon::web::serve_listener(
                listener,
                router,
                stop.clone(),
            ));
            (addr, stop, task)
        }
    };

    let (addr, stop, task) = serve(db.clone()).await;
    let r = get(
        addr,
        "GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    let (head, body) = r.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{r}");
    assert_eq!(header(head, "content-type"), Some("application/json"));
    let report: perezvon::status::StatusReport = serde_json::from_str(body).unwrap();
    assert_eq!(
        report.line,
        "1/2 servers connected, 5 callbacks pending, 1 call today, 0 calls in progress"
    );
    assert_eq!(report.started_at, Some(now));
    assert_eq!(report.today.calls, 1);
    assert_eq!(report.today.missed, 1);
    assert_eq!(report.queue.pending, 0, "the store's queue, not the gauge");
    let pbx1 = report.servers.iter().find(|s| s.name == "pbx1").unwrap();
    assert!(pbx1.link_up);
    assert_eq!(pbx1.events, 42);
    assert_eq!(pbx1.lag_seconds, Some(0.25));
    let r = get(
        addr,
        "DELETE /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 405"), "{r}");
    stop.cancel();
    task.await.unwrap().unwrap();

    // A database that cannot be opened: 503 with the reason, not a panic.
    let blocked = dir.path().join("a-file");
    std::fs::write(&blocked, "x").unwrap();
    let (addr, stop, task) = serve(blocked.join("perezvon.db")).await;
    let r = get(
        addr,
        "GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 503"), "{r}");
    assert!(r.contains("cannot read the database"), "{r}");
    stop.cancel();
    task.await.unwrap().unwrap();
}
