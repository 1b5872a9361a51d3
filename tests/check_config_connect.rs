//! `perezvon check-config --connect` (the built binary) against the fake Asterisk manager of
//! `ami_fake::serve_manager`, one manager.conf user per test; and the AMI security review
//! (placeholder secret, plain TCP beyond this machine) of plain `check-config`.

use std::process::Command;

mod ami_fake;

use ami_fake::{ManagerUser, FULLY_BOOTED};

const EXIT_CONFIG: i32 = 78;

const NEWCHANNEL: &str = "Event: Newchannel\r\nPrivilege: call,all\r\nTimestamp: 1795375019.530492\r\nChannel: PJSIP/trunk-00000001\r\nChannelState: 0\r\nChannelStateDesc: Down\r\nUniqueid: 1795375019.1\r\nLinkedid: 1795375019.1\r\n\r\n";
const NEWEXTEN: &str = "Event: Newexten\r\nPrivilege: dialplan,all\r\nTimestamp: 1795375019.530600\r\nChannel: PJSIP/trunk-00000001\r\nContext: from-trunk\r\nExtension: s\r\nPriority: 1\r\nApplication: Answer\r\nAppData: \r\nUniqueid: 1795375019.1\r\nLinkedid: 1795375019.1\r\n\r\n";
const QUEUE_JOIN: &str = "Event: QueueCallerJoin\r\nPrivilege: agent,all\r\nTimestamp: 1795375020.000100\r\nChannel: PJSIP/trunk-00000001\r\nQueue: sales\r\nPosition: 1\r\nCount: 1\r\nUniqueid: 1795375019.1\r\nLinkedid: 1795375019.1\r\n\r\n";

fn config(port: u16, secret: &str, callbacks: bool) -> String {
    let callback = if callbacks {
        r#"
[callback]
enabled = true
dial_template = "PJSIP/{national}@trunk"
caller_id = "74951110000"
target = { queue = "sales" }
allow = ["^7\\d{10}$"]
"#
    } else {
        ""
    };
    format!(
        r#"
[[asterisk]]
name = "pbx"
host = "127.0.0.1"
port = {port}
username = "perezvon"
secret = "{secret}"
connect_timeout = "5s"
action_timeout = "5s"

[pbx]
country_code = "7"
inbound_contexts = ["from-trunk"]
{callback}
[hours]
timezone = "UTC"
monday = ["09:00-18:00"]
"#
    )
}

fn check(text: &str, connect: bool) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("perezvon.toml");
    std::fs::write(&path, text).unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_perezvon"));
    c.args(["check-config", "--config"]).arg(&path);
    if connect {
        c.arg("--connect");
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Starts the fake manager for `user` and runs `check-config --connect` in a blocking task.
async fn connect_with(user: ManagerUser, secret: &str, callbacks: bool) -> (i32, String, String) {
    let (l, port) = ami_fake::listener().await;
    let server = tokio::spawn(ami_fake::serve_manager(l, user));
    let text = config(port, secret, callbacks);
    let r = tokio::task::spawn_blocking(move || check(&text, true))
        .await
        .unwrap();
    server.abort();
    r
}

fn server_line(stdout: &str) -> &str {
    stdout
        .lines()
        .find(|l| l.starts_with("server pbx (127.0.0.1:"))
        .unwrap_or_else(|| panic!("no server line in:\n{stdout}"))
}

fn full_user() -> ManagerUser {
    ManagerUser {
        username: "perezvon",
        secret: "k7Qf9x2LwT",
        read: &["system", "call", "dialplan", "agent"],
        write: &["system", "call", "originate"],
        events: vec![
            std::str::from_utf8(FULLY_BOOTED).unwrap(),
            NEWCHANNEL,
            NEWEXTEN,
            QUEUE_JOIN,
        ],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_privilege_present() {
    let (code, out, err) = connect_with(full_user(), "k7Qf9x2LwT", true).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let line = server_line(&out);
    assert!(
        line.ends_with(
            "connected, login ok, privileges ok (CoreShowChannels, Originate); events of call, dialplan, agent arrive"
        ),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_write_classes_are_named_with_the_line_to_add() {
    let user = ManagerUser {
        write: &["call"],
        read: &["call"],
        ..full_user()
    };
    let (code, out, err) = connect_with(user, "k7Qf9x2LwT", true).await;
    assert_eq!(code, EXIT_CONFIG, "{out}\n{err}");
    let line = server_line(&out);
    assert!(line.contains("connected, login ok, MISSING PRIVILEGES: CoreShowChannels (needs write = system or reporting: re-reads the live calls after a reconnect), Originate (needs write = originate: places the callbacks)"), "{line}");
    assert!(
        line.contains("in manager.conf [perezvon] set `write = system,originate` and `read = call,dialplan,agent`"),
        "{line}"
    );
    // Only call events reached it: dialplan and agent are said to be missing, as a hint.
    assert!(line.contains("no dialplan/agent events in 2s"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_callbacks_originate_is_not_needed() {
    let user = ManagerUser {
        write: &["reporting"],
        ..full_user()
    };
    let (code, out, err) = connect_with(user, "k7Qf9x2LwT", false).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        server_line(&out).contains("privileges ok (CoreShowChannels)"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_fails_the_login() {
    let (code, out, err) = connect_with(full_user(), "notTheSecret1", true).await;
    assert_eq!(code, EXIT_CONFIG, "{out}\n{err}");
    let line = server_line(&out);
    assert!(
        line.contains(
            "connected, LOGIN FAILED: login as \"perezvon\" refused: Authentication failed"
        ),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_listening_cannot_connect() {
    let (l, port) = ami_fake::listener().await;
    drop(l);
    let text = config(port, "k7Qf9x2LwT", true);
    let (code, out, _) = tokio::task::spawn_blocking(move || check(&text, true))
        .await
        .unwrap();
    assert_eq!(code, EXIT_CONFIG);
    assert!(
        server_line(&out).contains("CANNOT CONNECT: connect to 127.0.0.1:"),
        "{out}"
    );
}

#[test]
fn placeholder_and_empty_secrets_are_refused() {
    for secret in ["change-me", "CHANGEME", "amp111", "password", ""] {
        let (code, _, err) = check(&config(5038, secret, false), false);
        assert_eq!(code, EXIT_CONFIG, "{secret:?}: {err}");
        assert!(
            err.lines().any(|l| l.starts_with("asterisk[0].secret: ")),
            "{secret:?}: {err}"
        );
    }
    let (code, _, err) = check(&config(5038, "k7Qf9x2LwT", false), false);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("asterisk[0]"), "{err}");
}

#[test]
fn plain_tcp_beyond_this_machine_is_warned_about() {
    let text = config(5038, "k7Qf9x2LwT", false).replace("127.0.0.1", "10.1.2.3");
    let (code, out, err) = check(&text, false);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(": OK"));
    let w = err
        .lines()
        .find(|l| l.starts_with("warning: asterisk[0].host: 10.1.2.3 is not this machine"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        w.contains("cross the network in clear") && w.contains("SSH tunnel"),
        "{w}"
    );
    // With md5 the secret itself never crosses; with plain login it does, and the warning says so.
    assert!(!w.contains("the AMI secret and"), "{w}");
    let plain = text.replace("connect_timeout", "auth = \"plain\"\nconnect_timeout");
    let (_, _, err) = check(&plain, false);
    assert!(err.contains("the AMI secret and all call data"), "{err}");
    for host in ["localhost", "::1", "127.0.0.2"] {
        let (_, _, err) = check(
            &config(5038, "k7Qf9x2LwT", false).replace("127.0.0.1", host),
            false,
        );
        assert!(!err.contains("is not this machine"), "{host}: {err}");
    }
}
