//! A scriptable fake Asterisk for the client tests: a listener on 127.0.0.1:0, one [`Peer`] per
//! accepted connection, helpers that assert the exact bytes perezvon sends.
#![allow(dead_code)]

use std::time::Duration;

use bytes::BytesMut;
use perezvon::ami::{client, LinkEvent};
use perezvon::config::{AsteriskConfig, AuthType, Config, Secret};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Every wait in these tests: generous, so a loaded machine never fails them.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub const BANNER: &[u8] = b"Asterisk Call Manager/11.0.0\r\n";
pub const CHALLENGE: &str = "406985235";

pub async fn listener() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

/// The lab configuration pointed at the fake, with test-friendly timings.
pub fn config(port: u16, auth: AuthType) -> AsteriskConfig {
    let mut c = Config::embedded_default().asterisk.remove(0);
    c.name = "fake".into();
    c.host = "127.0.0.1".into();
    c.port = port;
    c.username = "perezvon".into();
    c.secret = Secret::new("s3cret");
    c.auth = auth;
    c.events = "on".into();
    c.connect_timeout = Duration::from_secs(5);
    c.action_timeout = Duration::from_secs(5);
    c.ping_interval = Duration::from_secs(60);
    c.reconnect_max = Duration::from_secs(2);
    c
}

pub struct Peer {
    pub stream: TcpStream,
    buf: BytesMut,
}

pub async fn accept(l: &TcpListener) -> Peer {
    let (stream, _) = tokio::time::timeout(PATIENCE, l.accept())
        .await
        .expect("client did not connect")
        .unwrap();
    Peer {
        stream,
        buf: BytesMut::new(),
    }
}

impl Peer {
    /// One action as raw bytes, terminator included.
    pub async fn read_action(&mut self) -> Vec<u8> {
        self.try_read_action(PATIENCE)
            .await
            .expect("no action from the client")
    }

    /// One action, or None on timeout or EOF.
    pub async fn try_read_action(&mut self, wait: Duration) -> Option<Vec<u8>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(i) = memchr::memmem::find(&self.buf, b"\r\n\r\n") {
                return Some(self.buf.split_to(i + 4).to_vec());
            }
            let n = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf))
                .await
                .ok()?
                .ok()?;
            if n == 0 {
                return None;
            }
        }
    }

    pub async fn write(&mut self, b: &[u8]) {
        self.stream.write_all(b).await.unwrap();
    }

    /// Banner, then the MD5 Challenge and Login exchange with byte-exact assertions. `tail` is
    /// written in the same write as the login reply (bytes that already belong to the stream).
    pub async fn login_md5(&mut self, secret: &str, tail: &[u8]) {
        self.write(BANNER).await;
        let got = self.read_action().await;
        assert_eq!(
            String::from_utf8_lossy(&got),
            "Action: Challenge\r\nActionID: perezvon-challenge\r\nAuthType: MD5\r\n\r\n"
        );
        self.write(
            format!(
                "Response: Success\r\nActionID: perezvon-challenge\r\nChallenge: {CHALLENGE}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
        let got = self.read_action().await;
        let key = client::md5_key(CHALLENGE.as_bytes(), secret.as_bytes());
        assert_eq!(
            String::from_utf8_lossy(&got),
            format!(
                "Action: Login\r\nActionID: perezvon-login\r\nAuthType: MD5\r\nUsername: perezvon\r\nKey: {key}\r\nEvents: on\r\n\r\n"
            )
        );
        let mut reply =
            b"Response: Success\r\nActionID: perezvon-login\r\nMessage: Authentication accepted\r\n\r\n"
                .to_vec();
        reply.extend_from_slice(tail);
        self.write(&reply).await;
    }

    /// Answers every `Ping` until `stop` actions of other kinds were seen; returns those.
    pub async fn answer_pings_until(&mut self, stop: usize) -> Vec<Vec<u8>> {
        let mut others = Vec::new();
        while others.len() < stop {
            let a = self.read_action().await;
            if a.starts_with(b"Action: Ping\r\n") {
                let id = action_id(&a);
                self.write(
                    format!("Response: Success\r\nActionID: {id}\r\nPing: Pong\r\nTimestamp: 1.0\r\n\r\n")
                        .as_bytes(),
                )
                .await;
            } else {
                others.push(a);
            }
        }
        others
    }
}

/// The ActionID of a raw action.
pub fn action_id(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    s.lines()
        .find_map(|l| l.strip_prefix("ActionID: "))
        .expect("action without ActionID")
        .to_string()
}

pub const FULLY_BOOTED: &[u8] =
    b"Event: FullyBooted\r\nPrivilege: system,all\r\nUptime: 7\r\nLastReload: 7\r\nStatus: Fully Booted\r\n\r\n";

pub async fn next(rx: &mut mpsc::Receiver<LinkEvent>) -> LinkEvent {
    tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .expect("no link event")
        .expect("link event channel closed")
}

/// The event name of a Message, or "Up"/"Down".
pub fn label(ev: &LinkEvent) -> String {
    match ev {
        LinkEvent::Up { .. } => "Up".into(),
        LinkEvent::Down { .. } => "Down".into(),
        LinkEvent::Message { msg, .. } => msg
            .event()
            .or(msg.get(b"Response"))
            .map(|e| String::from_utf8_lossy(e).into_owned())
            .unwrap_or_default(),
    }
}

/// A manager.conf user for [`serve_manager`]: its secret and `read`/`write` classes.
#[derive(Debug, Clone)]
pub struct ManagerUser {
    pub username: &'static str,
    pub secret: &'static str,
    pub read: &'static [&'static str],
    pub write: &'static [&'static str],
    /// Raw events sent after a login, each ending in a blank line; as Asterisk does, only those
    /// whose `Privilege:` class the user may read reach it.
    pub events: Vec<&'static str>,
}

/// Actions of Asterisk 22 with their authority and synopsis (main/manager.c, manager_doc.xml,
/// apps/app_queue.c, res/res_manager_devicestate.c), in registration order.
pub const ACTIONS: [(&str, &[&str], &str); 15] = [
    ("Ping", &[], "Keepalive command."),
    ("Events", &[], "Control Event Flow."),
    ("Logoff", &[], "Logoff Manager."),
    ("Login", &[], "Login Manager."),
    ("Challenge", &[], "Generate Challenge for MD5 Auth."),
    ("Hangup", &["system", "call"], "Hangup channel."),
    (
        "Status",
        &["system", "call", "reporting"],
        "List channel status.",
    ),
    (
        "Getvar",
        &["call", "reporting"],
        "Gets a channel variable or function value.",
    ),
    ("Originate", &["originate"], "Originate a call."),
    ("Command", &["command"], "Execute Asterisk CLI Command."),
    ("ListCommands", &[], "List available manager commands."),
    (
        "CoreShowChannels",
        &["system", "reporting"],
        "List currently active channels.",
    ),
    ("QueueStatus", &[], "Show queue status."),
    ("QueueSummary", &[], "Show queue summary."),
    (
        "DeviceStateList",
        &["call", "reporting"],
        "List the current known device states.",
    ),
];

/// Serves manager sessions like Asterisk until the listener's task is dropped: the banner, MD5
/// challenge or plain login against `user`, then `ListCommands` (the actions whose authority
/// meets the user's write classes, formatted as manager.c's `action_listcommands`), `Ping`,
/// `Logoff`, and `Permission denied` for any other action.
pub async fn serve_manager(l: TcpListener, user: ManagerUser) {
    loop {
        let Ok((stream, _)) = l.accept().await else {
            return;
        };
        let user = user.clone();
        tokio::spawn(async move {
            let mut p = Peer {
                stream,
                buf: BytesMut::new(),
            };
            manager_session(&mut p, &user).await;
        });
    }
}

fn header(raw: &[u8], name: &str) -> Option<String> {
    String::from_utf8_lossy(raw).lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

async fn manager_session(p: &mut Peer, user: &ManagerUser) {
    p.write(BANNER).await;
    let mut logged_in = false;
    while let Some(a) = p.try_read_action(PATIENCE).await {
        let id = header(&a, "ActionID").unwrap_or_default();
        let action = header(&a, "Action")
            .unwrap_or_default()
            .to_ascii_lowercase();
        let reply = match (action.as_str(), logged_in) {
            ("challenge", _) => format!(
                "Response: Success\r\nActionID: {id}\r\nChallenge: {CHALLENGE}\r\n\r\n"
            ),
            ("login", _) => {
                let ok = header(&a, "Username").as_deref() == Some(user.username)
                    && match header(&a, "Key") {
                        Some(key) => {
                            key == client::md5_key(CHALLENGE.as_bytes(), user.secret.as_bytes())
                        }
                        None => header(&a, "Secret").as_deref() == Some(user.secret),
                    };
                if !ok {
                    // manager.c answers and ends the session.
                    p.write(
                        format!("Response: Error\r\nActionID: {id}\r\nMessage: Authentication failed\r\n\r\n")
                            .as_bytes(),
                    )
                    .await;
                    return;
                }
                logged_in = true;
                let mut r = format!(
                    "Response: Success\r\nActionID: {id}\r\nMessage: Authentication accepted\r\n\r\n"
                );
                for e in &user.events {
                    let class = header(e.as_bytes(), "Privilege")
                        .and_then(|v| v.split(',').next().map(str::to_string))
                        .unwrap_or_default();
                    if user.read.contains(&class.as_str()) {
                        r.push_str(e);
                    }
                }
                r
            }
            (_, false) => format!(
                "Response: Error\r\nActionID: {id}\r\nMessage: Missing action in request\r\n\r\n"
            ),
            ("listcommands", true) => {
                let mut r = format!("Response: Success\r\nActionID: {id}\r\n");
                for (name, authority, synopsis) in ACTIONS {
                    if authority.is_empty() || authority.iter().any(|c| user.write.contains(c)) {
                        let privs = if authority.is_empty() {
                            "<none>".to_string()
                        } else {
                            authority.join(",")
                        };
                        r.push_str(&format!("{name}: {synopsis} (Priv: {privs})\r\n"));
                    }
                }
                r.push_str("\r\n");
                r
            }
            ("ping", true) => format!(
                "Response: Success\r\nActionID: {id}\r\nPing: Pong\r\nTimestamp: 1795375019.530492\r\n\r\n"
            ),
            ("logoff", true) => {
                p.write(
                    format!("Response: Goodbye\r\nActionID: {id}\r\nMessage: Thanks for all the fish.\r\n\r\n")
                        .as_bytes(),
                )
                .await;
                return;
            }
            (_, true) => format!(
                "Response: Error\r\nActionID: {id}\r\nMessage: Permission denied\r\n\r\n"
            ),
        };
        if p.stream.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}
