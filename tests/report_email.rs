//! The scheduled report e-mail against the fake relay (tests/support/smtp.rs): the captures
//! replayed into a database, the day's report mailed at the set time as text + HTML with the
//! charts inline, to the report's own recipients; never twice; the daemon's loop sends a mail
//! it missed while it was down; and the config rules of `[report.email]`.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use mail_parser::MessageParser;
use perezvon::config::Config;
use perezvon::report::mail;
use tokio_util::sync::CancellationToken;

#[path = "support/smtp.rs"]
mod smtp;

use smtp::{Mode, Relay};

fn config(dir: &Path, port: u16, schedule: &str) -> Config {
    Config::from_toml_in(
        &format!(
            "[hours]\ntimezone = \"Europe/Moscow\"\n\
             [notify.email]\n\
             smtp_host = \"127.0.0.1\"\n\
             smtp_port = {port}\n\
             from = \"perezvon@example.com\"\n\
             to = [\"alerts@example.com\"]\n\
             retry_every = \"1s\"\n\
             [report.email]\n\
             to = [\"manager@example.com\", \"lead@example.com\"]\n\
             {schedule}\n"
        ),
        "test.toml",
        Some(dir.to_path_buf()),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn replay_mixed(db: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_perezvon"))
        .args(["replay", "--format", "jsonl", "--db"])
        .arg(db)
        .arg("fixtures/asterisk-22/mixed_concurrent.ami")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn the_days_report_is_mailed_once_with_its_charts_inline() {
    let relay = Relay::start(Mode::Plain, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    replay_mixed(&db);
    let cfg = config(dir.path(), relay.port(), "daily = \"08:00\"");

    // 2026-11-23 07:59 Moscow: the 22nd's mail is not due yet, and the 21st's (due on the
    // 22nd at 08:00) is older than the catch-up window.
    let early: jiff::Timestamp = "2026-11-23T04:59:00Z".parse().unwrap();
    assert!(mail::send_due(&cfg, &db, early).await.unwrap().is_empty());
    // 08:00:30: the report of Sunday the 22nd goes out.
    let now: jiff::Timestamp = "2026-11-23T05:00:30Z".parse().unwrap();
    let sent = mail::send_due(&cfg, &db, now).await.unwrap();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].from, "2026-11-21T21:00:00Z".parse().unwrap());
    let s = relay.wait_sessions(1).await.remove(0);
    assert_eq!(s.rcpt, ["<manager@example.com>", "<lead@example.com>"]);
    let data = s.data.unwrap();
    let m = MessageParser::default().parse(&data).unwrap();
    let subject = m.subject().unwrap();
    assert!(
        subject.contains("2026-11-22")
            && subject.contains("28 inbound")
            && subject.contains("18 missed"),
        "{subject}"
    );
    let html = m.body_html(0).expect("an HTML part").to_string();
    assert!(html.contains("<svg"), "the charts are inline SVG");
    assert!(html.contains("By queue") && html.contains("sales"));
    for external in [
        "src=\"http",
        "href=\"http",
        "url(http",
        "<script src",
        "<link",
    ] {
        assert!(!html.contains(external), "external resource {external:?}");
    }
    let text = m.body_text(0).expect("a text part").to_string();
    assert!(text.contains("Service level"), "{text}");

    // Again (a restart, the next loop turn): nothing more is sent.
    assert!(mail::send_due(&cfg, &db, now).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(relay.sessions.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_refusing_relay_is_an_error_and_the_mail_is_sent_later() {
    let relay = Relay::start(Mode::Plain, &["451 4.3.0 try later"]).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    replay_mixed(&db);
    let cfg = config(
        dir.path(),
        relay.port(),
        "weekly = \"mon 09:00\"\nlang = \"ru\"",
    );
    let now: jiff::Timestamp = "2026-11-23T06:30:00Z".parse().unwrap();
    let err = mail::send_due(&cfg, &db, now).await.unwrap_err();
    assert!(err.to_string().contains("451"), "{err}");
    // The second session is accepted: the week 16-22 November goes out then.
    let sent = mail::send_due(&cfg, &db, now).await.unwrap();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].from, "2026-11-15T21:00:00Z".parse().unwrap());
    assert_eq!(sent[0].to, "2026-11-22T21:00:00Z".parse().unwrap());
    // `lang = "ru"`: the HTML part is the Russian page.
    let s = relay.wait_sessions(2).await.remove(1);
    let data = s.data.unwrap();
    let m = MessageParser::default().parse(&data).unwrap();
    let html = m.body_html(0).expect("an HTML part").to_string();
    assert!(
        html.contains("По очередям") && !html.contains("By queue"),
        "{html}"
    );
}

#[tokio::test]
async fn the_daemon_loop_sends_the_mail_it_missed_and_stops_on_shutdown() {
    let relay = Relay::start(Mode::Plain, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    replay_mixed(&db);
    // Scheduled a minute ago: the loop sends it at start.
    let tz = jiff::tz::TimeZone::get("Europe/Moscow").unwrap();
    let a_minute_ago = jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_secs(60))
        .unwrap()
        .to_zoned(tz);
    let cfg = config(
        dir.path(),
        relay.port(),
        &format!("daily = \"{}\"", a_minute_ago.strftime("%H:%M")),
    );
    let stop = CancellationToken::new();
    let task = tokio::spawn(mail::run(Arc::new(cfg), db.clone(), stop.clone()));
    let s = tokio::time::timeout(Duration::from_secs(60), relay.wait_sessions(1))
        .await
        .expect("the missed mail is sent")
        .remove(0);
    assert!(s.data.is_some());
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the loop stops on shutdown")
        .unwrap();
}

#[test]
fn config_rules_name_the_key() {
    let err = |text: &str| {
        Config::from_toml(text)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let e = err("[report.email]\nto = [\"a@example.com\"]\ndaily = \"08:00\"\n");
    assert!(
        e.contains("report.email") && e.contains("[notify.email]"),
        "{e}"
    );
    let relay = "[notify.email]\nsmtp_host = \"127.0.0.1\"\nfrom = \"p@example.com\"\nto = [\"a@example.com\"]\n";
    let e = err(&format!("{relay}[report.email]\nto = [\"a@example.com\"]\ndaily = \"8 am\"\nweekly = \"funday 08:00\"\n"));
    assert!(
        e.contains("report.email.daily") && e.contains("report.email.weekly"),
        "{e}"
    );
    let e = err(&format!("{relay}[report.email]\nto = []\n"));
    assert!(
        e.contains("report.email.to") && e.contains("neither daily nor weekly"),
        "{e}"
    );
    let e = err(&format!(
        "{relay}[report.email]\nto = [\"a@example.com\"]\ndaily = \"08:00\"\nlang = \"de\"\n"
    ));
    assert!(e.contains("report.email.lang"), "{e}");
    let e = err("[report]\nservice_level = \"0s\"\n");
    assert!(e.contains("report.service_level"), "{e}");
    let e = err("[report]\nservice_level = \"soon\"\n");
    assert!(e.contains("report.service_level"), "{e}");
    let ok = Config::from_toml(&format!(
        "{relay}[report]\nservice_level = \"30s\"\n[report.email]\nto = [\"m@example.com\"]\nweekly = \"Friday 17:30\"\n"
    ))
    .unwrap();
    assert_eq!(ok.report.service_level, Duration::from_secs(30));
    let email = ok.report.email.unwrap();
    assert_eq!(
        email.weekly,
        Some((jiff::civil::Weekday::Friday, 17 * 60 + 30))
    );
}
