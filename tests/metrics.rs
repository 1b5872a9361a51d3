//! The Prometheus endpoint: exact exposition text and a real scrape over 127.0.0.1.

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
    s.events_received(41);
    s.event_received();
    s.decode_problems(2);
    s.reconnected();
    m.set_pending_callback_tasks(5);
    m.set_outbox_pending(3);
    m.notification_delivered("webhook");
    m.notification_failed("email");
    m.notification_given_up("sms"); // not a channel: ignored, never a panic
    m
}

#[test]
fn exposition_text_is_exact() {
    let text = sample().render();
    assert!(text.starts_with(
        "# HELP perezvon_build_info Always 1; the version label says which perezvon is running.\n\
         # TYPE perezvon_build_info gauge\n\
         perezvon_build_info{version=\""
    ));
    let expected_fragments = [
        "# HELP perezvon_missed_calls_total Missed inbound calls, by where the caller was lost.\n\
         # TYPE perezvon_missed_calls_total counter\n\
         perezvon_missed_calls_total{lost_at=\"ivr\"} 0\n\
         perezvon_missed_calls_total{lost_at=\"voicemail\"} 0\n\
         perezvon_missed_calls_total{lost_at=\"invalid_number\"} 0\n\
         perezvon_missed_calls_total{lost_at=\"queue\"} 2\n\
         perezvon_missed_calls_total{lost_at=\"group\"} 0\n\
         perezvon_missed_calls_total{lost_at=\"external\"} 0\n\
         perezvon_missed_calls_total{lost_at=\"user\"} 0\n\
         perezvon_missed_calls_total{lost_at=\"unknown\"} 1\n",
        "perezvon_calls_total{direction=\"inbound\",status=\"missed\"} 3\n",
        "perezvon_calls_total{direction=\"inbound\",status=\"answered\"} 1\n",
        "perezvon_calls_total{direction=\"callback\",status=\"answered\"} 1\n",
        "# TYPE perezvon_callbacks_total counter\n\
         perezvon_callbacks_total{outcome=\"connected\"} 1\n\
         perezvon_callbacks_total{outcome=\"no_answer\"} 2\n",
        "# TYPE perezvon_ami_link_up gauge\n\
         perezvon_ami_link_up{server=\"odd \\\"name\\\"\\\\x\"} 0\n\
         perezvon_ami_link_up{server=\"pbx1\"} 1\n",
        "perezvon_ami_events_received_total{server=\"pbx1\"} 42\n",
        "perezvon_ami_decode_problems_total{server=\"pbx1\"} 2\n",
        "perezvon_ami_reconnects_total{server=\"pbx1\"} 1\n",
        "# HELP perezvon_callback_tasks_pending Callback tasks waiting for an attempt or in progress.\n\
         # TYPE perezvon_callback_tasks_pending gauge\n\
         perezvon_callback_tasks_pending 5\n",
        "# TYPE perezvon_outbox_pending gauge\nperezvon_outbox_pending 3\n",
        "perezvon_notifications_total{channel=\"webhook\",result=\"delivered\"} 1\n",
        "perezvon_notifications_total{channel=\"email\",result=\"failed\"} 1\n",
    ];
    for f in expected_fragments {
        assert!(text.contains(f), "missing:\n{f}\nin:\n{text}");
    }
}

#[test]
fn exposition_text_is_well_formed() {
    let text = sample().render();
    assert!(text.ends_with('\n'));
    let mut declared: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(kind == "counter" || kind == "gauge", "{line}");
            assert_eq!(
                kind == "counter",
                name.ends_with("_total"),
                "counters and only counters end in _total: {line}"
            );
            assert!(
                !declared.iter().any(|(n, _)| n == name),
                "{name} declared twice"
            );
            declared.push((name.to_string(), kind.to_string()));
        } else if line.starts_with("# HELP ") {
            continue;
        } else {
            // A sample belongs to the family declared just before it.
            let name = line.split(['{', ' ']).next().unwrap();
            assert_eq!(
                Some(name),
                declared.last().map(|(n, _)| n.as_str()),
                "{line}"
            );
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
    // Every HELP precedes its TYPE.
    let lines: Vec<&str> = text.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap();
            assert!(lines[i - 1].starts_with(&format!("# HELP {name} ")));
        }
    }
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

#[tokio::test]
async fn scrape_over_loopback() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let metrics = Arc::new(sample());
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve_on(listener, metrics.clone(), shutdown.clone()));

    let r = get(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let (head, body) = r.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8"));
    assert!(head.contains(&format!("Content-Length: {}", body.len())));
    assert_eq!(body, metrics.render());

    // Updates show in the next scrape.
    metrics.server("pbx1").set_link_up(false);
    let r = get(addr, "GET /metrics?x=1 HTTP/1.0\r\n\r\n").await;
    assert!(r.contains("perezvon_ami_link_up{server=\"pbx1\"} 0\n"));

    let r = get(addr, "GET / HTTP/1.1\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 404 Not Found\r\n"), "{r}");
    let r = get(addr, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 405"), "{r}");

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("server stops on shutdown")
        .unwrap()
        .unwrap();
}
