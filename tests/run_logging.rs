//! `perezvon run` logs to stderr as text or, with `[log] format = "json"`, one JSON object per
//! line; SIGTERM stops it cleanly (exit 0) even while Asterisk is unreachable.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

fn run_until_sigterm(format: &str) -> (std::process::ExitStatus, String) {
    let dir = tempfile::tempdir().unwrap();
    // A port nobody listens on: the daemon keeps reconnecting and logging about it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = dir.path().join("p.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[asterisk]]\nname = \"pbx\"\nport = {port}\nusername = \"u\"\nsecret_env = \"PEREZVON_TEST_SECRET\"\nreconnect_max = \"1s\"\n\
             [storage]\ndatabase = \"p.db\"\n[log]\nlevel = \"info\"\nformat = \"{format}\"\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_perezvon"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("PEREZVON_TEST_SECRET", "s")
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        dir.path().join("p.db").exists(),
        "the database is created beside the config"
    );
    (status, err)
}

#[test]
fn json_logs_are_one_object_per_line() {
    let (status, err) = run_until_sigterm("json");
    assert!(status.success(), "{status:?}\n{err}");
    let lines: Vec<_> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 2, "{err}");
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(
            v.get("level").is_some() && v.get("timestamp").is_some(),
            "{l}"
        );
    }
    assert!(err.contains("perezvon started"), "{err}");
    assert!(
        !err.contains("\"s\""),
        "the secret must not be logged: {err}"
    );
}

#[test]
fn text_logs_by_default() {
    let (status, err) = run_until_sigterm("text");
    assert!(status.success(), "{status:?}\n{err}");
    assert!(err.contains("perezvon started"), "{err}");
    assert!(serde_json::from_str::<serde_json::Value>(err.lines().next().unwrap_or("")).is_err());
    // stderr is a pipe here, as under journald: no colour escapes.
    assert!(
        !err.contains('\u{1b}'),
        "ANSI escapes in non-terminal logs:\n{err:?}"
    );
}
