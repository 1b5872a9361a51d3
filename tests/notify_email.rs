//! The e-mail channel against a fake relay (tests/support/smtp.rs): STARTTLS and implicit TLS
//! with a CA made in the test, AUTH with the password from a file or the environment, every
//! recipient, a Russian subject and body decoded back with `mail-parser`, 4xx retried, 5xx given
//! up, an untrusted certificate refused, and the config rules for `tls`.

use std::sync::Arc;
use std::time::Duration;

use mail_parser::MessageParser;
use perezvon::calls::record::CallRecord;
use perezvon::config::Config;
use perezvon::metrics::Metrics;
use perezvon::notify::{self, email, DeliveryError};
use perezvon::store::Store;
use tokio_util::sync::CancellationToken;

#[path = "support/smtp.rs"]
mod smtp;
mod support;

use smtp::{Auth, Mode, Relay};

const PATIENCE: Duration = Duration::from_secs(60);

const SUBJECT: &str = "Пропущенный звонок от +79161234567: потерян в очереди «Продажи»";
const BODY: &str =
    "Пропущенный звонок\n\n.строка с точкой\n..две точки\nНомер: +79161234567\nЖдал: 40 с\n";

fn mail() -> email::Mail {
    email::Mail {
        subject: SUBJECT.into(),
        body: BODY.into(),
        event_id: "missed:pbx1:1.2".into(),
        kind: "missed".into(),
        date: "Sun, 22 Nov 2026 20:36:00 +0300".into(),
    }
}

/// A config for the relay; `extra` adds keys to `[notify.email]`.
fn config(dir: &std::path::Path, port: u16, extra: &str) -> Config {
    Config::from_toml_in(
        &format!(
            "[hours]\ntimezone = \"Europe/Moscow\"\n\
             [notify.email]\n\
             smtp_host = \"127.0.0.1\"\n\
             smtp_port = {port}\n\
             from = \"perezvon@example.com\"\n\
             to = [\"lead@example.com\", \"boss@example.com\"]\n\
             helo = \"pbx.example.com\"\n\
             timeout = \"10s\"\n\
             retry_every = \"50ms\"\n\
             max_retry_every = \"200ms\"\n\
             {extra}\n"
        ),
        "test.toml",
        Some(dir.to_path_buf()),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn write(dir: &std::path::Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

async fn send(cfg: &Config) -> Result<(), DeliveryError> {
    tokio::time::timeout(
        PATIENCE,
        email::send(cfg.notify.email.as_ref().unwrap(), &mail()),
    )
    .await
    .expect("the session ends in time")
}

/// The received message decodes to what was sent: Russian subject and body, both recipients,
/// the sender, the Message-ID and perezvon's own headers.
fn assert_message(data: &[u8]) {
    let raw = String::from_utf8_lossy(data);
    // Nothing but 7-bit ASCII travels: lettre MIME-encoded the Russian text.
    assert!(data.is_ascii(), "{raw}");
    let m = MessageParser::default()
        .parse(data)
        .expect("a parsable message");
    assert_eq!(m.subject(), Some(SUBJECT), "{raw}");
    let body = m.body_text(0).expect("a text body").replace("\r\n", "\n");
    assert_eq!(body, BODY, "{raw}");
    let to: Vec<&str> = m.to().unwrap().iter().filter_map(|a| a.address()).collect();
    assert_eq!(to, ["lead@example.com", "boss@example.com"]);
    assert_eq!(
        m.from().unwrap().first().unwrap().address(),
        Some("perezvon@example.com")
    );
    assert_eq!(m.message_id(), Some("missed.pbx1.1.2@perezvon"));
    assert_eq!(
        m.header_raw("X-Perezvon-Event").map(str::trim),
        Some("missed")
    );
    assert_eq!(
        m.header_raw("X-Perezvon-Event-Id").map(str::trim),
        Some("missed:pbx1:1.2")
    );
    assert!(
        raw.contains("Date: Sun, 22 Nov 2026 20:36:00 +0300\r\n"),
        "{raw}"
    );
}

#[tokio::test]
async fn starttls_with_auth_from_a_file_delivers_a_readable_russian_mail_to_every_recipient() {
    let relay = Relay::start(Mode::StartTls, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "relay-ca.pem", &relay.ca_pem);
    write(dir.path(), "smtp.pass", "s3cret-пароль\n");
    let cfg = config(
        dir.path(),
        relay.port(),
        "tls = \"starttls\"\nca_file = \"relay-ca.pem\"\nusername = \"pbx@example.com\"\npassword_file = \"smtp.pass\"",
    );
    send(&cfg).await.unwrap();
    let s = relay.wait_sessions(1).await.remove(0);
    assert!(s.tls, "{s:?}");
    // Before the upgrade only EHLO and STARTTLS travel in the clear.
    let upgrade = s.commands.iter().position(|c| c == "STARTTLS").unwrap();
    assert_eq!(&s.commands[..upgrade], ["EHLO pbx.example.com"]);
    assert_eq!(
        s.auth,
        Some((
            "PLAIN".to_string(),
            "pbx@example.com".to_string(),
            "s3cret-пароль".to_string()
        ))
    );
    assert_eq!(s.mail_from.as_deref(), Some("<perezvon@example.com>"));
    assert_eq!(s.rcpt, ["<lead@example.com>", "<boss@example.com>"]);
    assert_message(s.data.as_deref().expect("DATA sent"));
    // The dot-stuffed lines came through unharmed.
    assert!(BODY.contains("\n.строка"));
}

#[tokio::test]
async fn implicit_tls_with_the_password_from_the_environment() {
    let relay = Relay::start(Mode::Implicit, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "relay-ca.pem", &relay.ca_pem);
    std::env::set_var("PEREZVON_TEST_SMTP_PASSWORD", "from-env");
    let cfg = config(
        dir.path(),
        relay.port(),
        "tls = \"tls\"\nca_file = \"relay-ca.pem\"\nusername = \"u\"\npassword_env = \"PEREZVON_TEST_SMTP_PASSWORD\"",
    );
    send(&cfg).await.unwrap();
    let s = relay.wait_sessions(1).await.remove(0);
    assert!(s.tls);
    assert_eq!(
        s.commands.first().map(String::as_str),
        Some("EHLO pbx.example.com")
    );
    assert_eq!(s.auth.as_ref().map(|a| a.2.as_str()), Some("from-env"));
    assert_eq!(s.rcpt.len(), 2);
    assert_message(s.data.as_deref().unwrap());
}

#[tokio::test]
async fn auth_login_when_the_relay_offers_only_login_and_a_wrong_password_gives_up() {
    let auth = Auth {
        mechanisms: "LOGIN",
        password: Some("right"),
    };
    let relay = Relay::start_with(Mode::StartTls, &[], auth).await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "relay-ca.pem", &relay.ca_pem);
    write(dir.path(), "right.pass", "right\n");
    write(dir.path(), "wrong.pass", "wrong\n");
    let cfg = |pass: &str| {
        config(
            dir.path(),
            relay.port(),
            &format!("tls = \"starttls\"\nca_file = \"relay-ca.pem\"\nusername = \"u\"\npassword_file = \"{pass}\""),
        )
    };
    send(&cfg("right.pass")).await.unwrap();
    let s = relay.wait_sessions(1).await.remove(0);
    assert_eq!(
        s.auth,
        Some(("LOGIN".to_string(), "u".to_string(), "right".to_string()))
    );
    assert!(s.data.is_some());
    // 535: retrying cannot help until someone fixes the password.
    let err = send(&cfg("wrong.pass")).await.unwrap_err();
    assert!(
        matches!(err, DeliveryError::Permanent(_)),
        "{}",
        err.chain()
    );
    assert!(err.chain().contains("535"), "{}", err.chain());
    let s = relay.wait_sessions(2).await.remove(1);
    assert!(s.auth.is_none() && s.mail_from.is_none(), "{s:?}");
}

#[tokio::test]
async fn a_plain_local_relay_gets_the_mail_without_tls() {
    let relay = Relay::start(Mode::Plain, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    // No `tls` key: a loopback relay is plain by default.
    let cfg = config(dir.path(), relay.port(), "");
    send(&cfg).await.unwrap();
    let s = relay.wait_sessions(1).await.remove(0);
    assert!(!s.tls && s.auth.is_none());
    assert_message(s.data.as_deref().unwrap());
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused_before_anything_is_sent() {
    for mode in [Mode::StartTls, Mode::Implicit] {
        let relay = Relay::start(mode, &[]).await;
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "smtp.pass", "never-sent");
        // No ca_file: the relay's CA is not in the system store.
        let tls = if mode == Mode::Implicit {
            "tls"
        } else {
            "starttls"
        };
        let cfg = config(
            dir.path(),
            relay.port(),
            &format!("tls = \"{tls}\"\nusername = \"u\"\npassword_file = \"smtp.pass\""),
        );
        let err = send(&cfg).await.unwrap_err();
        let text = err.chain();
        assert!(
            matches!(err, DeliveryError::Connect { .. }),
            "retried, not given up: {text}"
        );
        assert!(text.to_lowercase().contains("certificate"), "{text}");
        let s = relay.wait_sessions(1).await.remove(0);
        assert!(!s.tls, "{mode:?}: the handshake failed");
        assert!(
            s.auth.is_none() && s.mail_from.is_none() && s.data.is_none(),
            "{s:?}"
        );
    }
}

#[tokio::test]
async fn a_4xx_reply_is_transient_and_a_5xx_reply_permanent() {
    let dir = tempfile::tempdir().unwrap();
    let busy = Relay::start(Mode::Plain, &["451 4.3.0 mailbox busy, try later"]).await;
    let err = send(&config(dir.path(), busy.port(), ""))
        .await
        .unwrap_err();
    assert!(matches!(err, DeliveryError::Rejected(_)), "{}", err.chain());
    assert!(err.chain().contains("451"), "{}", err.chain());
    let gone = Relay::start(Mode::Plain, &["550 5.1.1 no such user"]).await;
    let err = send(&config(dir.path(), gone.port(), ""))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DeliveryError::Permanent(_)),
        "{}",
        err.chain()
    );
    assert!(err.chain().contains("no such user"), "{}", err.chain());
    // Nothing listens: a connection error, retried.
    let port = gone.port();
    drop(gone);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let err = send(&config(dir.path(), port, "")).await.unwrap_err();
    assert!(
        matches!(err, DeliveryError::Connect { .. }),
        "{}",
        err.chain()
    );
}

fn missed_call(linkedid: &str) -> CallRecord {
    CallRecord {
        server: "pbx1".into(),
        ..support::inbound_miss(
            linkedid,
            jiff::Timestamp::from_second(1_800_000_000).unwrap(),
            40.0,
        )
    }
}

/// Runs the delivery loop over one missed call until `done` holds for the outbox counts.
async fn deliver_one(cfg: Config, done: impl Fn(&Store) -> bool) -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("perezvon.db");
    let cfg = Arc::new(cfg);
    let store = Store::open(&db).unwrap();
    let n = notify::enqueue_for_record(&store, &cfg, &missed_call("5.5"), jiff::Timestamp::now())
        .unwrap();
    assert_eq!(n, 1);
    let shutdown = CancellationToken::new();
    let delivery = tokio::spawn(notify::run_delivery(
        cfg,
        db.clone(),
        Arc::new(Metrics::default()),
        shutdown.clone(),
    ));
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !done(&store) {
        assert!(tokio::time::Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    delivery.await.unwrap().unwrap();
    (store, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_retries_a_4xx_until_delivered_and_gives_up_on_a_5xx() {
    let dir = tempfile::tempdir().unwrap();
    let busy = Relay::start(Mode::Plain, &["452 4.2.2 over quota", "421 4.4.5 busy"]).await;
    let (store, _db) = deliver_one(config(dir.path(), busy.port(), ""), |s| {
        s.outbox_counts().unwrap().delivered == 1
    })
    .await;
    let sessions = busy.wait_sessions(3).await;
    assert_eq!(sessions.len(), 3, "two refused sessions, then the delivery");
    assert_eq!(sessions.iter().filter(|s| s.data.is_some()).count(), 1);
    assert_eq!(store.outbox_counts().unwrap().given_up, 0);

    let gone = Relay::start(Mode::Plain, &["550 5.1.1 no such user"; 5]).await;
    let (store, _db) = deliver_one(config(dir.path(), gone.port(), ""), |s| {
        s.outbox_counts().unwrap().given_up == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(gone.sessions.lock().unwrap().len(), 1, "no second try");
    assert_eq!(store.outbox_counts().unwrap().pending, 0);
}

fn config_error(email: &str) -> String {
    match Config::from_toml(&format!("[notify.email]\n{email}\n")) {
        Ok(_) => panic!("accepted: {email}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn plain_smtp_is_only_for_a_relay_on_this_machine() {
    let e = config_error(
        "smtp_host = \"mail.example.com\"\ntls = \"none\"\nfrom = \"p@example.com\"\nto = \"l@example.com\"",
    );
    assert!(
        e.contains("notify.email.tls") && e.contains("plain SMTP"),
        "{e}"
    );
    for host in ["127.0.0.1", "::1", "localhost", "[::1]"] {
        Config::from_toml(&format!(
            "[notify.email]\nsmtp_host = \"{host}\"\ntls = \"none\"\nfrom = \"p@example.com\"\nto = \"l@example.com\"\n"
        ))
        .unwrap_or_else(|e| panic!("{host}: {e}"));
    }
    let e = config_error("tls = \"ssl\"\nfrom = \"p@example.com\"\nto = \"l@example.com\"");
    assert!(
        e.contains("notify.email.tls") && e.contains("\"ssl\""),
        "{e}"
    );
}

#[test]
fn defaults_follow_the_tls_mode_and_a_single_recipient_string_works() {
    use perezvon::config::SmtpTls;
    let c = |extra: &str| {
        Config::from_toml(&format!(
            "[notify.email]\nfrom = \"p@example.com\"\nto = \"l@example.com\"\n{extra}\n"
        ))
        .unwrap_or_else(|e| panic!("{e}"))
        .notify
        .email
        .unwrap()
    };
    let local = c("");
    assert_eq!((local.tls, local.smtp_port), (SmtpTls::None, 25));
    assert_eq!(local.to, ["l@example.com"]);
    let remote = c("smtp_host = \"mail.example.com\"");
    assert_eq!((remote.tls, remote.smtp_port), (SmtpTls::StartTls, 587));
    let smtps = c("smtp_host = \"mail.example.com\"\ntls = \"tls\"");
    assert_eq!((smtps.tls, smtps.smtp_port), (SmtpTls::Tls, 465));
    // A port that does not fit the mode is a warning: both sides would wait for the other.
    let warned = |extra: &str| {
        Config::from_toml(&format!(
            "[notify.email]\nsmtp_host = \"mail.example.com\"\nfrom = \"p@example.com\"\nto = \"l@example.com\"\n{extra}\n"
        ))
        .unwrap()
        .warnings
        .iter()
        .map(|w| w.to_string())
        .collect::<Vec<_>>()
        .join("\n")
    };
    assert!(warned("tls = \"starttls\"\nsmtp_port = 465").contains("465 is the implicit-TLS port"));
    assert!(warned("tls = \"tls\"\nsmtp_port = 587").contains("587 is a STARTTLS port"));
    assert_eq!(warned("tls = \"tls\"\nsmtp_port = 465"), "");
}

#[test]
fn auth_and_ca_problems_are_config_errors() {
    let base = "smtp_host = \"mail.example.com\"\nfrom = \"p@example.com\"\nto = [\"l@example.com\", \"not an address\"]";
    let e = config_error(&format!("{base}\nusername = \"u\""));
    assert!(
        e.contains("notify.email.username") && e.contains("no password"),
        "{e}"
    );
    assert!(e.contains("notify.email.to[1]"), "{e}");
    let e = config_error(&format!(
        "{base}\npassword_env = \"PEREZVON_TEST_UNSET_VARIABLE\""
    ));
    assert!(e.contains("notify.email.password_env"), "{e}");
    let e = config_error(&format!("{base}\nca_file = \"/nonexistent/ca.pem\""));
    assert!(
        e.contains("notify.email.ca_file") && e.contains("cannot read"),
        "{e}"
    );
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "hello").unwrap();
    let e = config_error(&format!(
        "{base}\nca_file = {:?}",
        junk.display().to_string()
    ));
    assert!(e.contains("no PEM certificate"), "{e}");
    let e = config_error("from = \"p@example.com\"\nto = 5");
    assert!(
        e.contains("notify.email.to") && e.contains("expected a string or a list of strings"),
        "{e}"
    );
}
