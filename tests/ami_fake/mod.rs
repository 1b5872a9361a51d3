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
