//! Unit tests of the configuration stages.

use super::*;

#[test]
fn embedded_default_is_valid() {
    let c = Config::embedded_default();
    assert_eq!(c.callback.marker_variable, "CALLBACK_ID");
    assert_eq!(c.asterisk[0].secret.expose(), "listener");
    assert!(
        format!("{:?}", c.asterisk[0]).contains("secret: ***"),
        "secret leaked in Debug"
    );
}

#[test]
fn every_problem_at_once() {
    let e = Config::from_toml(
        r#"
[[asterisk]]
port = 99999
[calls]
min_talk = "six seconds"
[callback]
mode = "sideways"
allow = ["(("]
[hours]
timezone = "Mars/Base"
monday = ["18:00-09:00"]
"#,
    )
    .unwrap_err();
    let keys: Vec<_> = e.problems.iter().map(|p| p.key.as_str()).collect();
    for k in [
        "asterisk[0].port",
        "asterisk[0].username",
        "asterisk[0].secret",
        "calls.min_talk",
        "callback.mode",
        "callback.allow[0]",
        "hours.timezone",
        "hours.monday[0]",
    ] {
        assert!(keys.contains(&k), "missing {k} in {keys:?}");
    }
}

#[test]
fn unknown_key_is_an_error() {
    let e = Config::from_toml("[calls]\nmin_talkk = \"6s\"\n").unwrap_err();
    assert!(e.problems[0].message.contains("unknown key"), "{e}");
    assert_eq!(e.problems[0].key, "calls.min_talkk (line 2)");
}

#[test]
fn ranges() {
    assert_eq!(
        parse_range("00:00-24:00"),
        Some(DayRange {
            start_min: 0,
            end_min: 1440
        })
    );
    assert_eq!(
        parse_range("09:00-13:00"),
        Some(DayRange {
            start_min: 540,
            end_min: 780
        })
    );
    assert_eq!(parse_range("13:00-09:00"), None);
    assert_eq!(parse_range("24:00-24:00"), None);
    assert_eq!(parse_range("9:00-10:00"), None);
}

#[test]
fn agent_context_default_and_validation() {
    let c = Config::from_toml("").unwrap();
    assert_eq!(c.callback.agent_context, "from-internal");
    let e = Config::from_toml("[callback]\nagent_context = \"a,b\"\n").unwrap_err();
    assert_eq!(e.problems[0].key, "callback.agent_context");
}

#[test]
fn http_urls() {
    let u = HttpUrl::parse("http://crm.local:8080/hooks/perezvon?x=1").unwrap();
    assert_eq!(
        (u.host.as_str(), u.port, u.path.as_str()),
        ("crm.local", 8080, "/hooks/perezvon?x=1")
    );
    let u = HttpUrl::parse("http://[::1]/").unwrap();
    assert_eq!((u.host.as_str(), u.port, u.path.as_str()), ("::1", 80, "/"));
    assert_eq!(HttpUrl::parse("http://h?q").unwrap().path, "/?q");
    for bad in [
        "https://h/",
        "http://",
        "http://h:0/",
        "http://h:x/",
        "http://u:p@h/",
        "http://h/a b",
    ] {
        assert!(HttpUrl::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn notify_sections() {
    let c = Config::from_toml(
        "[notify.webhook]\nurl = \"http://127.0.0.1:9/h\"\nsecret = \"k\"\nevents = [\"missed\"]\n\
         [notify.email]\nfrom = \"pbx@example.com\"\nto = [\"boss@example.com\"]\n",
    )
    .unwrap();
    let w = c.notify.webhook.unwrap();
    assert_eq!(w.endpoint.port, 9);
    assert_eq!(w.secret.unwrap().expose(), "k");
    assert_eq!(c.notify.email.unwrap().helo, "localhost");
    let e = Config::from_toml(
        "[notify.webhook]\nurl = \"https://x/\"\nsecret = \"k\"\nsecret_env = \"X\"\n[notify.email]\nto = []\nhelo = \"a b\"\n",
    )
    .unwrap_err();
    let keys: Vec<_> = e.problems.iter().map(|p| p.key.as_str()).collect();
    for k in [
        "notify.webhook.url",
        "notify.webhook.secret",
        "notify.email.from",
        "notify.email.to",
        "notify.email.helo",
    ] {
        assert!(keys.contains(&k), "{k} missing in {keys:?}");
    }
}

#[test]
fn allow_list_is_anchored() {
    let c = Config::from_toml("[callback]\nallow = [\"7916\\\\d+\"]\n").unwrap();
    assert!(c.callback.allow[0].is_match("79161234567"));
    assert!(!c.callback.allow[0].is_match("879161234567"));
}

#[test]
fn only_the_daemon_needs_a_server() {
    // Reading commands and tests build configurations without one.
    assert!(Config::from_toml("").unwrap().asterisk.is_empty());
    let e = Config::parse("", "config", None, true).unwrap_err();
    assert_eq!(e.problems.len(), 1, "{e}");
    assert_eq!(e.problems[0].key, "asterisk");
    let e = Config::parse(
        "asterisk = []\n[calls]\nmin_talk = 6\n",
        "config",
        None,
        true,
    )
    .unwrap_err();
    let keys: Vec<_> = e.problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["asterisk", "calls.min_talk (line 3)"]);
    assert!(Config::parse(EMBEDDED_DEFAULT, "config", None, true).is_ok());
}

#[test]
fn secret_keys() {
    use validate::is_secret_key;
    for k in [
        "asterisk[0].secret",
        "notify.webhook.secret",
        "password",
        "x.api_token",
        "smtp_passwd",
    ] {
        assert!(is_secret_key(k), "{k}");
    }
    for k in [
        "asterisk[0].secret_file",
        "notify.webhook.secret_env",
        "asterisk[0].username",
    ] {
        assert!(!is_secret_key(k), "{k}");
    }
}

#[test]
fn no_message_quotes_a_secret() {
    let text = "[[asterisk]]\nusername = \"u\"\nsecret = 84512397123\n";
    let e = Config::from_toml(text).unwrap_err();
    assert!(!e.to_string().contains("84512397123"), "{e}");
    assert!(e.to_string().contains("integer `***`"), "{e}");
    // The value is cut out even where the key is not known (an inline table of another key).
    let text = "[notify]\nwebhook = { url = \"http://a/\", secret = 84512397123 }\n";
    let e = Config::from_toml(text).unwrap_err();
    assert_eq!(e.problems[0].key, "notify.webhook (line 2)");
    assert!(!e.to_string().contains("84512397123"), "{e}");
    // Other values are still quoted.
    let text = "[notify]\nwebhook = { url = \"http://a/\", secret = \"hunter2\", timeout = 5 }\n";
    let e = Config::from_toml(text).unwrap_err();
    assert!(e.to_string().contains("integer `5`"), "{e}");
}
