//! What the admin sees: `perezvon run` (a real process) against the lab AMI server, its
//! `STATUS=` lines on a `NOTIFY_SOCKET` bound here, `GET /status` read by `perezvon status`, and
//! `perezvon status` once the daemon is gone (exit 3, the database's view) or with a bad
//! configuration (78).

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use perezvon::demo::lab::{self, Capture, LabOptions, LabOutcome};
use tokio_util::sync::CancellationToken;

mod support;

const WAIT: Duration = Duration::from_secs(90);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_config(dir: &Path, ami_port: u16, metrics_port: u16) -> std::path::PathBuf {
    let all = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ]
    .iter()
    .map(|d| format!("{d} = [\"00:00-24:00\"]\n"))
    .collect::<String>();
    let cfg = format!(
        r#"
[[asterisk]]
name = "lab"
host = "127.0.0.1"
port = {ami_port}
username = "perezvon"
secret = "lab"
reconnect_max = "1s"

[pbx]
country_code = "7"
inbound_contexts = ["from-trunk"]
trunk_channels = ["Local/*@from-trunk-*;2"]
agent_channels = ["Local/2??@agent-sim-*", "Local/2??@agent-phone-*"]
external_channels = ["Local/*@external-sim-*", "Local/*@customer-sim-*"]

[calls]
min_talk = "6s"
min_wait = "3s"

[callback]
enabled = true
dial_template = "Local/{{national}}@customer-sim"
caller_id = "74951110000"
target = {{ context = "callback", exten = "201" }}
# The task waits: the queue shows one pending callback with its next attempt.
delay = "1h"
max_attempts = 2
retry_every = "10m"
give_up_after = "3h"
allow = ["^7\\d{{10}}$"]
marker_variable = "PEREZVON_CALLBACK_ID"

[hours]
timezone = "UTC"
{all}
[storage]
database = "perezvon.db"

[metrics]
enabled = true
listen = "127.0.0.1:{metrics_port}"
"#
    );
    let p = dir.join("perezvon.toml");
    std::fs::write(&p, cfg).unwrap();
    p
}

fn status(config: &Path, json: bool) -> (i32, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_perezvon"));
    c.arg("status").arg("--config").arg(config);
    if json {
        c.arg("--json");
    }
    let out = c.env_remove("RUST_LOG").output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `STATUS=` lines received until one satisfies `done`.
fn wait_status(sock: &UnixDatagram, seen: &mut Vec<String>, done: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + WAIT;
    let mut buf = vec![0u8; 4096];
    while Instant::now() < deadline {
        let Ok(n) = sock.recv(&mut buf) else {
            continue; // the read timeout
        };
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        for l in msg.lines() {
            if let Some(s) = l.strip_prefix("STATUS=") {
                seen.push(s.to_string());
                if done(s) {
                    return;
                }
            }
        }
    }
    panic!("no such STATUS= line in time; seen: {seen:#?}");
}

#[test]
fn status_of_a_running_daemon_then_of_a_stopped_one() {
    let dir = tempfile::tempdir().unwrap();
    // The lab AMI server on its own runtime thread, playing one inbound call abandoned in the IVR.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let stop = CancellationToken::new();
    let lab = rt
        .block_on(lab::start(
            LabOptions {
                traffic: lab::traffic_timeline(
                    &[Capture {
                        name: "ivr_abandon",
                        bytes: include_bytes!("../fixtures/asterisk-22/ivr_abandon.ami"),
                    }],
                    Duration::ZERO,
                ),
                script: |_, _| LabOutcome::NoAnswer,
            },
            stop.clone(),
        ))
        .unwrap();
    let config = write_config(dir.path(), lab.addr.port(), free_port());

    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let log = std::fs::File::create(dir.path().join("daemon.log")).unwrap();
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_perezvon"))
        .arg("run")
        .arg("--config")
        .arg(&config)
        .env("NOTIFY_SOCKET", &sock_path)
        .env_remove("WATCHDOG_USEC")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();

    // STATUS= follows what happens, not only the start.
    let mut seen = Vec::new();
    wait_status(&sock, &mut seen, |s| s.contains("1/1 servers connected"));
    wait_status(&sock, &mut seen, |s| {
        s.contains("1 callback pending") && s.contains("1 call today")
    });
    assert!(
        seen[0].starts_with("connecting to Asterisk; 0/1 servers connected"),
        "{seen:#?}"
    );
    let last = seen.last().unwrap().clone();
    assert!(
        last.starts_with("1/1 servers connected, 1 callback pending, 1 call today, "),
        "{last}"
    );

    // The running daemon answers: exit 0, the same line first, the server, queue and today.
    let (code, out, err) = status(&config, false);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let first = out.lines().next().unwrap();
    assert!(
        first.starts_with("1/1 servers connected, 1 callback pending, 1 call today"),
        "{out}"
    );
    assert!(
        out.contains("perezvon ") && out.contains(" running since "),
        "{out}"
    );
    let server = out
        .lines()
        .find(|l| l.starts_with("server lab: "))
        .expect(&out);
    assert!(server.starts_with("server lab: link up since "), "{server}");
    assert!(
        server.contains(" events, last ") && server.contains(" ago"),
        "{server}"
    );
    assert!(
        server.contains(", lag "),
        "the lab stamps its events: {server}"
    );
    assert!(
        out.contains("callbacks: 1 pending, 0 attempts in flight, next attempt at "),
        "{out}"
    );
    assert!(out.contains("today ("), "{out}");
    assert!(
        out.contains(": 1 calls, 1 inbound: 0 answered, 1 missed (1 unresolved)"),
        "{out}"
    );

    let (code, out, _) = status(&config, true);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["daemon"]["reachable"], true);
    assert_eq!(v["status"]["servers"][0]["name"], "lab");
    assert_eq!(v["status"]["servers"][0]["link_up"], true);
    assert!(v["status"]["servers"][0]["events"].as_u64().unwrap() > 10);
    assert_eq!(v["status"]["queue"]["pending"], 1);
    assert_eq!(v["status"]["today"]["missed"], 1);
    assert!(v["status"]["started_at"].is_string());
    // The operator's view (`--format json`): the node, one entry per server, the queue.
    let out = Command::new(env!("CARGO_BIN_EXE_perezvon"))
        .args(["status", "--format", "json", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success());
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let node = j["node_id"].as_str().unwrap();
    assert!(!node.is_empty());
    assert_eq!(j["servers"][0]["name"], "lab");
    assert_eq!(j["servers"][0]["state"], "connected");
    assert_eq!(j["servers"][0]["owner"], node, "one node owns every server");
    assert!(j["servers"][0]["lag_secs"].as_f64().is_some(), "{j}");
    assert_eq!(j["callbacks"]["pending"], 1);
    assert_eq!(j["callbacks"]["in_progress"], 0);
    assert_eq!(
        j["status"]["queue"]["pending"], 1,
        "--json's object is kept"
    );

    // The metrics of the same daemon have the verdict latency of that call.
    let metrics = {
        let port = v["daemon"]["url"]
            .as_str()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .trim_end_matches("/status")
            .to_string();
        let mut s = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
        use std::io::{Read as _, Write as _};
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut r = String::new();
        s.read_to_string(&mut r).unwrap();
        r
    };
    assert!(
        metrics.contains("perezvon_verdict_latency_seconds_count 1\n"),
        "{metrics}"
    );
    assert!(metrics.contains("perezvon_calls_today 1\n"));

    // Stop it (SIGTERM, as systemd does) and ask again.
    let ok = Command::new("kill")
        .arg("-TERM")
        .arg(daemon.id().to_string())
        .status()
        .unwrap();
    assert!(ok.success());
    let deadline = Instant::now() + WAIT;
    while daemon.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the daemon did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.cancel();

    let (code, out, err) = status(&config, false);
    assert_eq!(code, 3, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        err.contains("perezvon is not reachable: cannot connect to 127.0.0.1:"),
        "{err}"
    );
    assert!(out.starts_with("from the database "), "{out}");
    assert!(out.contains("callbacks: 1 pending"), "{out}");
    assert!(out.contains(": 1 calls, 1 inbound"), "{out}");
    let (code, out, _) = status(&config, true);
    assert_eq!(code, 3);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["daemon"]["reachable"], false);
    assert!(v["daemon"]["error"]
        .as_str()
        .unwrap()
        .contains("not reachable"));
    assert_eq!(v["status"]["queue"]["pending"], 1);
    assert_eq!(v["status"]["today"]["calls"], 1);
    assert!(v["status"]["started_at"].is_null());
    assert_eq!(v["servers"][0]["state"], "unknown");
    assert!(v["servers"][0]["owner"].is_null());
    assert_eq!(v["callbacks"]["pending"], 1);
}

#[test]
fn status_without_a_daemon_or_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), free_port(), free_port());
    let (code, out, err) = status(&config, false);
    assert_eq!(code, 3, "{out}{err}");
    assert!(err.contains("perezvon is not reachable"), "{err}");
    assert!(err.contains("no database at "), "{err}");
    assert!(
        !dir.path().join("perezvon.db").exists(),
        "status creates no database"
    );
    assert!(out.contains("callbacks: 0 pending"), "{out}");
}

#[test]
fn status_with_metrics_off_says_what_to_turn_on() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), free_port(), free_port());
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[metrics]\nenabled = true", "[metrics]\nenabled = false");
    std::fs::write(&config, text).unwrap();
    // A database with a pending task and a call of today.
    let db = dir.path().join("perezvon.db");
    let store = perezvon::store::Store::open(&db).unwrap();
    let now = jiff::Timestamp::now();
    store
        .insert_call(&support::inbound_miss(
            "1.1",
            now - jiff::SignedDuration::from_secs(5),
            1.0,
        ))
        .unwrap();
    drop(store);
    let (code, out, err) = status(&config, false);
    assert_eq!(code, 3, "{out}{err}");
    assert!(err.contains("[metrics] enabled = true"), "{err}");
    assert!(
        out.contains(": 1 calls, 1 inbound: 0 answered, 1 missed (1 unresolved)"),
        "{out}"
    );
}

#[test]
fn status_with_a_bad_config_exits_78() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.toml");
    std::fs::write(&p, "[metrics]\nenabled = \"yes\"\n").unwrap();
    let (code, _, err) = status(&p, false);
    assert_eq!(code, 78);
    assert!(err.contains("metrics.enabled"), "{err}");
}
