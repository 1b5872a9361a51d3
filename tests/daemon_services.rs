//! `perezvon run` with its services wired: against the embedded lab, a missed call becomes a
//! webhook event, its callback connects and is announced, and the Prometheus endpoint reports the
//! link and the counters.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use perezvon::config::Config;
use perezvon::demo::lab::{self, Capture, LabOptions, LabOutcome};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A webhook receiver that answers 200 and keeps the bodies.
async fn receiver() -> (u16, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let g = g.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            g.lock()
                                .unwrap()
                                .push(text[end + 4..end + 4 + len].to_string());
                            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
                            return;
                        }
                    }
                }
            });
        }
    });
    (port, got)
}

async fn scrape(port: u16) -> String {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_call_is_announced_called_back_and_counted() {
    let stop = CancellationToken::new();
    let traffic = lab::traffic_timeline(
        &[Capture {
            name: "queue_abandon",
            bytes: include_bytes!("../fixtures/asterisk-22/queue_abandon.ami"),
        }],
        Duration::ZERO,
    );
    let lab = lab::start(
        LabOptions {
            traffic,
            script: |_, _| LabOutcome::Connected,
        },
        stop.clone(),
    )
    .await
    .unwrap();
    let (hook_port, bodies) = receiver().await;
    let metrics_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let all_day = "[\"00:00-24:00\"]";
    let cfg = Config::from_toml(&format!(
        r#"
[[asterisk]]
name = "lab"
port = {port}
username = "u"
secret = "s"
[pbx]
inbound_contexts = ["from-trunk"]
trunk_channels = ["Local/*@from-trunk-*;2"]
agent_channels = ["Local/2??@agent-sim-*", "Local/2??@agent-phone-*"]
external_channels = ["Local/*@external-sim-*", "Local/*@customer-sim-*"]
[callback]
enabled = true
dial_template = "Local/{{national}}@customer-sim"
caller_id = "74951110000"
target = {{ context = "callback", exten = "201" }}
delay = "1s"
spread = "1s"
[hours]
timezone = "Europe/Moscow"
monday = {all_day}
tuesday = {all_day}
wednesday = {all_day}
thursday = {all_day}
friday = {all_day}
saturday = {all_day}
sunday = {all_day}
[notify.webhook]
url = "http://127.0.0.1:{hook_port}/hook"
secret = "k"
retry_every = "1s"
[metrics]
enabled = true
listen = "127.0.0.1:{metrics_port}"
"#,
        port = lab.addr.port()
    ))
    .unwrap();

    let daemon = perezvon::daemon::run(cfg, db.clone(), stop.clone());
    let watch = async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let b = bodies.lock().unwrap().clone();
            let has = |e: &str| b.iter().any(|x| x.contains(&format!("\"event\":\"{e}\"")));
            if (has("missed") && has("callback") && has("resolved"))
                || tokio::time::Instant::now() > deadline
            {
                break;
            }
        }
        let text = scrape(metrics_port).await;
        stop.cancel();
        text
    };
    let (result, metrics) = tokio::join!(daemon, watch);
    result.unwrap();
    let b = bodies.lock().unwrap().clone();
    let store = perezvon::store::Store::open(&db).unwrap();
    let miss = store
        .get_call("lab", "1795375036.4")
        .unwrap()
        .expect("the miss is stored");
    assert_eq!(
        miss.resolved_by,
        Some(perezvon::calls::record::ResolvedBy::Callback),
        "{miss:?}"
    );
    assert!(
        metrics.contains("perezvon_ami_link_up{server=\"lab\"} 1"),
        "{metrics}"
    );
    for e in ["missed", "callback", "resolved"] {
        assert!(
            b.iter().any(|x| x.contains(&format!("\"event\":\"{e}\""))),
            "no {e} event in {b:#?}"
        );
    }
    assert!(
        b.iter().any(|x| x.contains("\"outcome\":\"connected\"")),
        "{b:#?}"
    );
    assert!(
        metrics.contains("perezvon_ami_link_up{server=\"lab\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("perezvon_missed_calls_total{lost_at=\"queue\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("perezvon_callbacks_total{outcome=\"connected\"} 1"),
        "{metrics}"
    );
}
