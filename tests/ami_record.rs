//! `perezvon record` writes exactly the bytes the server sent, banner and login reply included,
//! and saves them on SIGTERM.

mod ami_fake;

use std::process::{Command, Stdio};
use std::time::Duration;

use ami_fake::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_writes_the_raw_stream_and_flushes_on_sigterm() {
    let (l, port) = listener().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("perezvon.toml");
    let toml = perezvon::config::EMBEDDED_DEFAULT
        .replace("port = 5038", &format!("port = {port}"))
        .replace("username = \"listener\"", "username = \"perezvon\"")
        .replace(
            "secret = \"listener\"",
            "secret = \"s3cret\"\nping_interval = \"300ms\"",
        );
    std::fs::write(&cfg_path, toml).unwrap();
    let out = dir.path().join("out.ami");
    let child = Command::new(env!("CARGO_BIN_EXE_perezvon"))
        .args(["record", "--config"])
        .arg(&cfg_path)
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let mut peer = accept(&l).await;
    let mut sent = Vec::new();
    sent.extend_from_slice(BANNER);
    sent.extend_from_slice(
        format!(
            "Response: Success\r\nActionID: perezvon-challenge\r\nChallenge: {CHALLENGE}\r\n\r\n"
        )
        .as_bytes(),
    );
    let mut tail = FULLY_BOOTED.to_vec();
    // Odd bytes a recording must keep as they are: cp1251, a bare-LF message, an extra blank line.
    tail.extend_from_slice(
        b"Event: Newchannel\r\nCallerIDName: \xcf\xe5\xf2\xff\r\n\r\n\r\nEvent: Bare\nK: v\n\n",
    );
    sent.extend_from_slice(
        b"Response: Success\r\nActionID: perezvon-login\r\nMessage: Authentication accepted\r\n\r\n",
    );
    sent.extend_from_slice(&tail);
    peer.login_md5("s3cret", &tail).await;
    // Two answered Pings prove everything above was read (reading has priority over the timer).
    let mut pings = 0;
    while pings < 2 {
        let a = peer.read_action().await;
        assert!(
            a.starts_with(b"Action: Ping\r\n"),
            "{:?}",
            String::from_utf8_lossy(&a)
        );
        let pong = format!(
            "Response: Success\r\nActionID: {}\r\nPing: Pong\r\n\r\n",
            action_id(&a)
        );
        peer.write(pong.as_bytes()).await;
        sent.extend_from_slice(pong.as_bytes());
        pings += 1;
    }
    // Let the last Pong be read too, then stop the recorder like systemd would.
    let _ = peer.try_read_action(Duration::from_millis(700)).await;
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
    let got = std::fs::read(&out).unwrap();
    let expect = &sent[..got.len().min(sent.len())];
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(expect)
    );
    assert_eq!(got.len(), sent.len(), "recording is incomplete");
    assert!(!String::from_utf8_lossy(&status.stderr).contains("s3cret"));

    // The file is never overwritten.
    let again = Command::new(env!("CARGO_BIN_EXE_perezvon"))
        .args(["record", "--config"])
        .arg(&cfg_path)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("cannot create"));
}
