//! A fake SMTP relay on `127.0.0.1:0` for the e-mail channel's tests: EHLO, STARTTLS (or TLS
//! from the first byte) with a certificate signed by a CA made here with `rcgen`, AUTH PLAIN and
//! LOGIN, MAIL/RCPT/DATA, RSET, QUIT. It records what each session carried and answers RCPT as
//! the test scripts it, so 4xx and 5xx replies can be tried. Included with
//! `#[path = "support/smtp.rs"] mod smtp;`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

/// How the relay protects its sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// No TLS at all (a local relay).
    Plain,
    /// Offers STARTTLS; AUTH only after it.
    StartTls,
    /// TLS from the first byte (port 465 style).
    Implicit,
}

/// What the relay offers and accepts for AUTH.
#[derive(Debug, Clone, Copy)]
pub struct Auth {
    /// The EHLO `AUTH` line: `"PLAIN LOGIN"`, `"LOGIN"`.
    pub mechanisms: &'static str,
    /// `Some`: any other password gets `535`.
    pub password: Option<&'static str>,
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            mechanisms: "PLAIN LOGIN",
            password: None,
        }
    }
}

/// What one session carried.
#[derive(Debug, Default, Clone)]
pub struct Session {
    /// Every command line, in order (AUTH continuation lines as `<auth data>`).
    pub commands: Vec<String>,
    /// Whether the commands after the greeting (or after STARTTLS) ran inside TLS.
    pub tls: bool,
    /// User and password of a successful AUTH, and the mechanism.
    pub auth: Option<(String, String, String)>,
    pub mail_from: Option<String>,
    /// RCPT TO addresses, accepted or not.
    pub rcpt: Vec<String>,
    /// The message as the client meant it: dot-stuffing undone, CRLF line ends.
    pub data: Option<Vec<u8>>,
}

/// A running relay.
pub struct Relay {
    pub addr: SocketAddr,
    /// The CA that signed the relay's certificate, PEM (for `ca_file`).
    pub ca_pem: String,
    pub sessions: Arc<Mutex<Vec<Session>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Relay {
    /// Starts a relay. `rcpt_replies[i]` answers every RCPT of the `i`-th session (from 0);
    /// sessions past the list get `250`.
    pub async fn start(mode: Mode, rcpt_replies: &[&'static str]) -> Relay {
        Self::start_with(mode, rcpt_replies, Auth::default()).await
    }

    /// [`Relay::start`] with the AUTH mechanisms offered and the one password accepted.
    pub async fn start_with(mode: Mode, rcpt_replies: &[&'static str], auth: Auth) -> Relay {
        let (acceptor, ca_pem) = tls_acceptor();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sessions = Arc::new(Mutex::new(Vec::new()));
        let replies: Vec<&'static str> = rcpt_replies.to_vec();
        let s2 = sessions.clone();
        let task = tokio::spawn(async move {
            let mut n = 0;
            while let Ok((stream, _)) = listener.accept().await {
                let rcpt = replies.get(n).copied().unwrap_or("250 2.1.5 ok");
                n += 1;
                let (acceptor, sessions) = (acceptor.clone(), s2.clone());
                tokio::spawn(async move {
                    let s = serve(stream, mode, acceptor, rcpt, auth).await;
                    sessions.lock().unwrap().push(s);
                });
            }
        });
        Relay {
            addr,
            ca_pem,
            sessions,
            task,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Waits (up to a minute) until `n` sessions ended, and returns them in the order they ended.
    pub async fn wait_sessions(&self, n: usize) -> Vec<Session> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            {
                let s = self.sessions.lock().unwrap();
                if s.len() >= n {
                    return s.clone();
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {n} SMTP sessions"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A CA and a certificate for 127.0.0.1/localhost it signed; the acceptor serving it.
fn tls_acceptor() -> (TlsAcceptor, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "perezvon test relay CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "relay.test");
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    (TlsAcceptor::from(Arc::new(config)), ca.pem())
}

async fn serve(
    stream: TcpStream,
    mode: Mode,
    acceptor: TlsAcceptor,
    rcpt: &str,
    auth: Auth,
) -> Session {
    let mut s = Session::default();
    match mode {
        Mode::Implicit => {
            let Ok(tls) = acceptor.accept(stream).await else {
                return s;
            };
            s.tls = true;
            dialogue(BufReader::new(tls), true, false, rcpt, auth, &mut s).await;
        }
        Mode::Plain | Mode::StartTls => {
            let offer = mode == Mode::StartTls;
            if let Some(io) =
                dialogue(BufReader::new(stream), true, offer, rcpt, auth, &mut s).await
            {
                let Ok(tls) = acceptor.accept(io.into_inner()).await else {
                    return s;
                };
                s.tls = true;
                dialogue(BufReader::new(tls), false, false, rcpt, auth, &mut s).await;
            }
        }
    }
    s
}

async fn line<S: AsyncRead + AsyncWrite + Unpin>(io: &mut BufReader<S>) -> Option<String> {
    let mut l = String::new();
    match io.read_line(&mut l).await {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(l.trim_end_matches(['\r', '\n']).to_string()),
    }
}

async fn say<S: AsyncRead + AsyncWrite + Unpin>(io: &mut BufReader<S>, reply: &str) {
    let _ = io.get_mut().write_all(reply.as_bytes()).await;
    let _ = io.get_mut().write_all(b"\r\n").await;
    let _ = io.get_mut().flush().await;
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default()
}

/// One SMTP dialogue. Returns the stream when the client asked for STARTTLS and got `220`.
async fn dialogue<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: BufReader<S>,
    greet: bool,
    offer_starttls: bool,
    rcpt_reply: &str,
    auth: Auth,
    s: &mut Session,
) -> Option<BufReader<S>> {
    if greet {
        say(&mut io, "220 relay.test ESMTP fake").await;
    }
    // AUTH travels only inside TLS, unless the relay is a plain local one.
    let auth_ok = s.tls || !offer_starttls;
    while let Some(cmd) = line(&mut io).await {
        s.commands.push(cmd.clone());
        let upper = cmd.to_ascii_uppercase();
        let verb = upper.split(' ').next().unwrap_or("").to_string();
        match verb.as_str() {
            "EHLO" => {
                let mut caps = vec![
                    "relay.test greets you".to_string(),
                    "8BITMIME".into(),
                    "SIZE 10240000".into(),
                ];
                if offer_starttls {
                    caps.push("STARTTLS".into());
                }
                if auth_ok {
                    caps.push(format!("AUTH {}", auth.mechanisms));
                }
                let last = caps.len() - 1;
                let text: Vec<String> = caps
                    .iter()
                    .enumerate()
                    .map(|(i, c)| format!("250{}{c}", if i == last { ' ' } else { '-' }))
                    .collect();
                say(&mut io, &text.join("\r\n")).await;
            }
            "STARTTLS" if offer_starttls => {
                say(&mut io, "220 2.0.0 go ahead").await;
                return Some(io);
            }
            "AUTH" if auth_ok => {
                let mut parts = cmd.split(' ').skip(1);
                let mech = parts.next().unwrap_or("").to_ascii_uppercase();
                if !auth.mechanisms.split(' ').any(|m| m == mech) {
                    say(&mut io, "504 5.5.4 unknown mechanism").await;
                    continue;
                }
                let initial = parts.next().map(str::to_string);
                let (user, pass) = match mech.as_str() {
                    "PLAIN" => {
                        let data = match initial {
                            Some(d) => d,
                            None => {
                                say(&mut io, "334 ").await;
                                line(&mut io).await.unwrap_or_default()
                            }
                        };
                        let text = b64(&data);
                        let mut f = text.split('\0').skip(1);
                        (
                            f.next().unwrap_or("").to_string(),
                            f.next().unwrap_or("").to_string(),
                        )
                    }
                    "LOGIN" => {
                        let user = match initial {
                            Some(d) => b64(&d),
                            None => {
                                say(&mut io, "334 VXNlcm5hbWU6").await;
                                b64(&line(&mut io).await.unwrap_or_default())
                            }
                        };
                        say(&mut io, "334 UGFzc3dvcmQ6").await;
                        let pass = b64(&line(&mut io).await.unwrap_or_default());
                        (user, pass)
                    }
                    _ => unreachable!("checked against the offered mechanisms"),
                };
                s.commands.push("<auth data>".into());
                if auth.password.is_some_and(|p| p != pass) {
                    say(&mut io, "535 5.7.8 authentication credentials invalid").await;
                    continue;
                }
                s.auth = Some((mech, user, pass));
                say(&mut io, "235 2.7.0 authenticated").await;
            }
            "MAIL" => {
                s.mail_from = Some(cmd[cmd.find(':').map_or(0, |i| i + 1)..].to_string());
                say(&mut io, "250 2.1.0 ok").await;
            }
            "RCPT" => {
                s.rcpt
                    .push(cmd[cmd.find(':').map_or(0, |i| i + 1)..].to_string());
                say(&mut io, rcpt_reply).await;
            }
            "DATA" => {
                say(&mut io, "354 end with <CRLF>.<CRLF>").await;
                let mut data = Vec::new();
                loop {
                    let mut l = Vec::new();
                    if io.read_until(b'\n', &mut l).await.unwrap_or(0) == 0 {
                        return None;
                    }
                    if l == b".\r\n" {
                        break;
                    }
                    let l = l.strip_prefix(b".").unwrap_or(&l);
                    data.extend_from_slice(l);
                }
                s.data = Some(data);
                say(&mut io, "250 2.0.0 queued as 42").await;
            }
            "RSET" | "NOOP" => say(&mut io, "250 2.0.0 ok").await,
            "QUIT" => {
                say(&mut io, "221 2.0.0 bye").await;
                return None;
            }
            _ => say(&mut io, "502 5.5.2 not here").await,
        }
    }
    None
}
