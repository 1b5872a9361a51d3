//! A PBX with `timestampevents = no`: `perezvon record` keeps the arrival times beside the raw
//! stream (`FILE.ami.times`), and `perezvon replay FILE.ami` finds them by itself and gives the
//! same wait and talk as the stamped original, within 1 s. Without them, replay says so once
//! and prints the durations as unknown, never as 0.

mod ami_fake;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use ami_fake::*;
use perezvon::ami::codec::decode_all;
use perezvon::ami::{Kind, Message};
use perezvon::calls::record::Timestamp;
use perezvon::daemon::ingest::event_time;

const BIN: &str = env!("CARGO_BIN_EXE_perezvon");
const LAB: &str = "fixtures/asterisk-22/lab.toml";
/// Short captures whose durations decide the verdict: talk 3.5 s (< min_talk: missed) and a
/// 1.3 s ring (< min_wait: ignored).
const CAPTURES: [&str; 2] = ["short_talk_3s", "accidental_1s_ring"];

fn replay(args: &[&str]) -> (Vec<serde_json::Value>, String) {
    let out = Command::new(BIN)
        .arg("replay")
        .args(["--config", LAB, "--format", "jsonl"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let calls = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (calls, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The capture's events after login, with their original times, `Timestamp` headers removed.
fn unstamped_events(name: &str) -> Vec<(Timestamp, Message)> {
    let bytes = std::fs::read(format!("fixtures/asterisk-22/{name}.ami")).unwrap();
    let (msgs, _) = decode_all(&bytes);
    let mut now = Timestamp::UNIX_EPOCH;
    msgs.into_iter()
        .filter(|m| m.kind() == Kind::Event && m.event() != Some(b"FullyBooted"))
        .map(|m| {
            now = event_time(&m, now);
            let pairs: Vec<(Vec<u8>, Vec<u8>)> = m
                .headers()
                .filter(|(n, _)| !n.eq_ignore_ascii_case(b"Timestamp"))
                .map(|(n, v)| (n.to_vec(), v.to_vec()))
                .collect();
            (now, Message::from_pairs(&pairs))
        })
        .collect()
}

fn secs(v: &serde_json::Value, k: &str) -> f64 {
    v[k].as_f64()
        .unwrap_or_else(|| panic!("{k} is not a number in {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unstamped_recording_replays_with_the_stamped_durations() {
    let (l, port) = listener().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("perezvon.toml");
    let toml = perezvon::config::EMBEDDED_DEFAULT
        .replace("port = 5038", &format!("port = {port}"))
        .replace("username = \"listener\"", "username = \"perezvon\"")
        .replace(
            "secret = \"listener\"",
            "secret = \"s3cret\"\nping_interval = \"120s\"",
        );
    std::fs::write(&cfg_path, toml).unwrap();
    let out = dir.path().join("pbx.ami");
    let child = Command::new(BIN)
        .args(["record", "--config"])
        .arg(&cfg_path)
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let mut peer = accept(&l).await;
    peer.login_md5("s3cret", FULLY_BOOTED).await;
    // Each capture at its real pace, one after the other, one message per write.
    for name in CAPTURES {
        let events = unstamped_events(name);
        let t0 = events[0].0;
        let start = tokio::time::Instant::now();
        for (t, m) in &events {
            let due =
                start + Duration::from_micros((t.as_microsecond() - t0.as_microsecond()) as u64);
            tokio::time::sleep_until(due).await;
            peer.write(&m.to_bytes()).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Let the recorder read the last bytes, then stop it like systemd would.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let kill = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(kill.success());
    let status = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let times = dir.path().join("pbx.ami.times");
    assert!(times.exists(), "no arrival times beside the recording");
    let raw = std::fs::read(&out).unwrap();
    assert!(
        !raw.windows(11).any(|w| w == b"Timestamp: "),
        "the fake played stamped events"
    );

    // The stamped originals, as they were recorded on the lab PBX.
    let mut expect = Vec::new();
    for name in CAPTURES {
        let (calls, _) = replay(&[&format!("fixtures/asterisk-22/{name}.ami")]);
        assert_eq!(calls.len(), 1, "{name}");
        expect.extend(calls);
    }
    let (got, stderr) = replay(&[out.to_str().unwrap()]);
    assert!(!stderr.contains("no Timestamp"), "{stderr}");
    assert_eq!(got.len(), expect.len(), "{got:?}");
    for (g, e) in got.iter().zip(&expect) {
        println!(
            "replayed wait {} talk {} / stamped wait {} talk {}",
            g["wait_secs"], g["talk_secs"], e["wait_secs"], e["talk_secs"]
        );
        for k in ["wait_secs", "talk_secs"] {
            assert!(
                (secs(g, k) - secs(e, k)).abs() <= 1.0,
                "{k}: replayed {} vs stamped {}\n{g}\n{e}",
                g[k],
                e[k]
            );
        }
        for k in ["status", "missed", "ignored", "lost_at", "hangup_by"] {
            assert_eq!(g[k], e[k], "{k}\n{g}\n{e}");
        }
        let started: Timestamp = g["started_at"].as_str().unwrap().parse().unwrap();
        let age = Timestamp::now().duration_since(started).as_secs_f64();
        assert!(
            (0.0..120.0).contains(&age),
            "started_at is arrival time: {started}"
        );
    }
    assert_eq!(expect[0]["status"], "missed");
    assert_eq!(expect[1]["status"], "ignored");

    // The same bytes without what record kept: no clock at all.
    let bare = dir.path().join("bare.ami");
    std::fs::copy(&out, &bare).unwrap();
    let (calls, stderr) = replay(&[bare.to_str().unwrap(), bare.to_str().unwrap()]);
    assert_eq!(
        stderr.matches("no Timestamp").count(),
        1,
        "said once: {stderr}"
    );
    assert!(stderr.contains(&*bare.to_string_lossy()), "{stderr}");
    // Twice the same calls: the second time as stored.
    assert_eq!(calls.len(), 4);
    for c in &calls {
        for k in ["wait_secs", "talk_secs", "started_at", "ended_at"] {
            assert!(c[k].is_null(), "{k} is unknown, not 0 or the epoch: {c}");
        }
    }
    // Without a clock no rule judges from a duration it does not have: the short talk may
    // have been long enough (unknown), nothing shows the accidental call was quick (a miss).
    for pair in calls.chunks(2) {
        assert_eq!(pair[0]["status"], "unknown", "{}", pair[0]);
        assert_eq!(pair[0]["unknown_reason"], "no_clock", "{}", pair[0]);
        assert_eq!(pair[1]["status"], "missed", "{}", pair[1]);
        assert_eq!(pair[1]["ignored"], false, "{}", pair[1]);
    }
    assert!(!Path::new(&format!("{}.times", bare.display())).exists());
}
