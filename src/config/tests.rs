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
fn webhook_urls_are_https_or_loopback_http() {
    let url = |u: &str| Config::from_toml(&format!("[notify.webhook]\nurl = \"{u}\"\n"));
    for ok in [
        "https://crm.example.com/hooks/perezvon?x=1",
        "https://127.0.0.1:8443/hook",
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://[::1]:9/",
    ] {
        assert!(url(ok).is_ok(), "{ok}: {:?}", url(ok).err());
    }
    for (bad, why) in [
        ("http://crm.example.com/hook", "loopback"),
        ("http://10.0.0.5/hook", "loopback"),
        ("ftp://127.0.0.1/", "unsupported scheme"),
        ("https://u:p@h/", "credentials"),
        ("not a url", "not a URL"),
        ("", "missing"),
    ] {
        let e = url(bad).unwrap_err();
        assert_eq!(e.problems[0].key, "notify.webhook.url", "{bad}");
        assert!(
            e.problems[0].message.contains(why),
            "{bad}: {}",
            e.problems[0]
        );
    }
}

#[test]
fn tls_files_are_checked_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "hello").unwrap();
    let cert_like = dir.path().join("cert.pem");
    std::fs::write(
        &cert_like,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let e = Config::from_toml(&format!(
        "[notify.webhook]\nurl = \"https://h/\"\nca_file = {:?}\nclient_cert = {:?}\n\
         [notify.telegram]\nbot_token = \"1:a\"\nchat_id = 1\nca_file = {:?}\n",
        dir.path().join("missing.pem"),
        junk,
        cert_like
    ))
    .unwrap_err();
    let shown: Vec<String> = e.problems.iter().map(|p| p.to_string()).collect();
    let has = |k: &str, m: &str| shown.iter().any(|p| p.starts_with(k) && p.contains(m));
    assert!(has("notify.webhook.ca_file", "cannot read"), "{shown:?}");
    assert!(has("notify.webhook.client_key", "missing"), "{shown:?}");
    assert!(
        has("notify.telegram.ca_file", "not usable for TLS"),
        "{shown:?}"
    );
    let e = Config::from_toml(&format!(
        "[notify.webhook]\nurl = \"https://h/\"\nclient_cert = {:?}\nclient_key = {:?}\n",
        junk, junk
    ))
    .unwrap_err();
    let shown: Vec<String> = e.problems.iter().map(|p| p.to_string()).collect();
    assert!(
        shown
            .iter()
            .any(|p| p.starts_with("notify.webhook.client_cert: no certificate")),
        "{shown:?}"
    );
    assert!(
        shown
            .iter()
            .any(|p| p.starts_with("notify.webhook.client_key: no PEM private key")),
        "{shown:?}"
    );
}

#[test]
fn notifier_sections_and_their_secrets() {
    let c = Config::from_toml(
        "[notify.bitrix24]\nwebhook_url = \"https://portal.bitrix24.ru/rest/1/abc123\"\nresponsible_id = 5\n\
         [notify.amocrm]\nbase_url = \"https://example.amocrm.ru/\"\ntoken = \"t\"\n\
         [notify.telegram]\nbot_token = \"123:abc\"\nchat_id = \"@team\"\nlanguage = \"en\"\nevents = [\"missed\"]\n\
         [[notify.http]]\nname = \"sms\"\nmethod = \"get\"\nurl = \"https://sms.example/send?to={number}&msg={text}\"\n",
    )
    .unwrap();
    let b = c.notify.bitrix24.as_ref().unwrap();
    assert_eq!(
        b.webhook_url.expose(),
        "https://portal.bitrix24.ru/rest/1/abc123/"
    );
    assert!(
        !format!("{b:?}").contains("abc123"),
        "the webhook token leaked in Debug"
    );
    assert_eq!(
        c.notify.amocrm.as_ref().unwrap().base_url.as_str(),
        "https://example.amocrm.ru/"
    );
    let t = c.notify.telegram.as_ref().unwrap();
    assert_eq!(t.chat_id, serde_json::json!("@team"));
    assert_eq!(t.channel.language, Language::En);
    assert_eq!(t.api_url.as_str(), "https://api.telegram.org/");
    assert_eq!(c.notify.http[0].method, reqwest::Method::GET);
    let names: Vec<String> = c.notify.channels().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["bitrix24", "amocrm", "telegram", "http:sms"]);

    let e = Config::from_toml(
        "[notify.bitrix24]\nwebhook_url = \"http://portal.bitrix24.ru/rest/1/verysecrettoken/\"\n\
         [notify.amocrm]\nbase_url = \"https://example.amocrm.ru/api\"\n\
         [notify.telegram]\nchat_id = \"team\"\n\
         [[notify.http]]\nname = \"SMS\"\nurl = \"https://sms.example/?to={nubmer}\"\nbody = \"{\\\"a\\\": {text}}\"\n\
         [[notify.http]]\nname = \"x\"\nurl = \"https://x/\"\nheaders = { Authorization = \"Bearer key\\nX: y\" }\n",
    )
    .unwrap_err();
    let shown: Vec<String> = e.problems.iter().map(|p| p.to_string()).collect();
    for k in [
        "notify.bitrix24.webhook_url: the URL: plain http://",
        "notify.amocrm.base_url: must be",
        "notify.amocrm.token: missing",
        "notify.telegram.bot_token: missing",
        "notify.telegram.chat_id: \"team\" is not a chat id",
        "notify.http[0].name",
        "notify.http[0].url: unknown placeholder {nubmer}",
        "notify.http[0].body: not JSON",
        "notify.http[1].headers: the value of \"Authorization\"",
    ] {
        assert!(
            shown.iter().any(|p| p.starts_with(k)),
            "{k} missing in {shown:?}"
        );
    }
    let all = shown.join("\n");
    assert!(
        !all.contains("verysecrettoken") && !all.contains("Bearer key"),
        "{all}"
    );
}

#[test]
fn notify_sections() {
    let c = Config::from_toml(
        "[notify.webhook]\nurl = \"http://127.0.0.1:9/h\"\nsecret = \"k\"\nevents = [\"missed\"]\n\
         [notify.email]\nfrom = \"pbx@example.com\"\nto = [\"boss@example.com\"]\n",
    )
    .unwrap();
    let w = c.notify.webhook.unwrap();
    assert_eq!(w.endpoint.port(), Some(9));
    assert_eq!(w.secret.unwrap().expose(), "k");
    assert_eq!(c.notify.email.unwrap().helo, "localhost");
    let e = Config::from_toml(
        "[notify.webhook]\nurl = \"http://x/\"\nsecret = \"k\"\nsecret_env = \"X\"\n[notify.email]\nto = []\nhelo = \"a b\"\n",
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

// --- issue 14 (request) ---

#[test]
fn request_keys_are_validated_with_their_names() {
    let c = Config::from_toml(
        "[callback]\nowner_wait = \"10m\"\nannounce = \"perezvon/missed-caller\"\n\
         agent_caller_name = \"{number} missed {count}x\"\ndnc_file = \"/etc/perezvon/dnc.txt\"\n",
    )
    .unwrap();
    let r = &c.callback.request;
    assert_eq!(r.owner_wait, Some(Duration::from_secs(600)));
    assert_eq!(r.owner_endpoint, "PJSIP/{agent}");
    assert_eq!(r.announce.as_deref(), Some("perezvon/missed-caller"));
    assert_eq!(r.call_later_after, Duration::from_secs(7200));
    // "0s" switches owned callbacks off.
    let c = Config::from_toml("[callback]\nowner_wait = \"0s\"\n").unwrap();
    assert_eq!(c.callback.request.owner_wait, None);
    let e = Config::from_toml(
        "[callback]\nowner_wait = \"soon\"\nowner_endpoint = \"PJSIP/201\"\n\
         announce = \"../../etc/passwd\"\ncustomer_prompt = \"a,b\"\n\
         agent_caller_name = \"x\\ny\"\ncall_later_after = \"later\"\ndnc_file = \"\"\n",
    )
    .unwrap_err();
    let shown: Vec<String> = e.problems.iter().map(|p| p.to_string()).collect();
    for key in [
        "callback.owner_wait",
        "callback.owner_endpoint",
        "callback.announce",
        "callback.customer_prompt",
        "callback.agent_caller_name",
        "callback.call_later_after",
        "callback.dnc_file",
    ] {
        assert!(shown.iter().any(|p| p.starts_with(key)), "{key}: {shown:?}");
    }
}

#[test]
fn guard_keys_parse_and_every_bad_value_is_named() {
    let c = Config::from_toml(
        "[callback]\nmax_per_number_24h = 3\nmax_per_number_day = 2\n\
         customer_hours = \"09:00-21:00\"\ncustomer_hours_weekend = [\"10:00-14:00\", \"15:00-20:00\"]\n\
         customer_unknown_region = \"business_zone\"\ncustomer_unknown_country = \"never\"\n\
         customer_zones = { \"7914\" = \"Asia/Vladivostok\", \"79141\" = \"Asia/Magadan\" }\n\
         expire_after = \"3d\"\nexpire_at_close = true\nqueue_reserve = 1\n\
         queue_reserves = { support = 0 }\n",
    )
    .unwrap();
    let cb = &c.callback;
    assert_eq!(
        (cb.max_per_number_24h, cb.max_per_number_day),
        (Some(3), Some(2))
    );
    assert_eq!(cb.customer_hours.as_ref().unwrap().len(), 1);
    assert_eq!(cb.customer_hours_weekend.as_ref().unwrap().len(), 2);
    assert_eq!(cb.customer_unknown_region, UnknownRegion::BusinessZone);
    assert_eq!(cb.customer_unknown_country, UnknownCountry::Never);
    // Longest prefix first.
    assert_eq!(cb.customer_zones[0].0, "79141");
    assert_eq!(
        cb.expire_after,
        Some(std::time::Duration::from_secs(3 * 86400))
    );
    assert!(cb.expire_at_close);
    assert_eq!((cb.queue_reserve, cb.queue_reserves["support"]), (1, 0));
    // Defaults: no caps, no window, no expiry, no reserve.
    let d = Config::from_toml("").unwrap().callback;
    assert_eq!((d.max_per_number_24h, d.max_per_number_day), (None, None));
    assert!(d.customer_hours.is_none() && d.expire_after.is_none() && !d.expire_at_close);
    assert_eq!(d.queue_reserve, 0);

    let e = Config::from_toml(
        "[callback]\nmax_per_number_24h = 0\nmax_per_number_day = -1\n\
         customer_hours = \"21:00-09:00\"\ncustomer_unknown_region = \"guess\"\n\
         customer_unknown_country = \"maybe\"\n\
         customer_zones = { \"+7914\" = \"Asia/Vladivostok\", \"7912\" = \"Mars/Olympus\" }\n\
         expire_after = \"soon\"\nqueue_reserve = -2\nqueue_reserves = { sales = 5000 }\n",
    )
    .unwrap_err();
    let keys: Vec<&str> = e.problems.iter().map(|p| p.key.as_str()).collect();
    for k in [
        "callback.max_per_number_24h",
        "callback.max_per_number_day",
        "callback.customer_hours",
        "callback.customer_unknown_region",
        "callback.customer_unknown_country",
        "callback.customer_zones.+7914",
        "callback.customer_zones.7912",
        "callback.expire_after",
        "callback.queue_reserve",
        "callback.queue_reserves.sales",
    ] {
        assert!(keys.contains(&k), "missing {k} in {keys:?}");
    }
}

#[test]
fn storage_url_selects_postgres_and_cluster_has_defaults() {
    let c = Config::from_toml(
        r#"
[storage]
url = "postgres://perezvon@localhost/perezvon?host=/run/postgresql&port=5432"
[cluster]
node_id = "node-a"
lease_ttl = "6s"
"#,
    )
    .unwrap();
    assert!(c.storage.location.is_postgres());
    assert_eq!(c.cluster.node_id, "node-a");
    assert_eq!(c.cluster.lease_ttl, Duration::from_secs(6));
    let d = Config::from_toml("").unwrap();
    assert!(!d.storage.location.is_postgres());
    assert!(
        !d.cluster.node_id.is_empty(),
        "default node id: the host name"
    );
    assert_eq!(d.cluster.lease_ttl, Duration::from_secs(6));
}

#[test]
fn storage_url_problems_are_reported() {
    let e = Config::from_toml(
        r#"
[storage]
database = "x.db"
url = "mysql://nope"
[cluster]
node_id = "no spaces"
lease_ttl = "1s"
"#,
    )
    .unwrap_err()
    .to_string();
    for key in [
        "storage.url",
        "storage.database",
        "cluster.node_id",
        "cluster.lease_ttl",
    ] {
        assert!(e.contains(key), "{key} missing from: {e}");
    }
    let e = Config::from_toml("[storage]\nurl = \"postgres://a@b/c?sslmode=bogus\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("storage.url"), "{e}");
}

#[test]
fn redacted_location_hides_the_password() {
    let l = crate::store::Location::parse("postgres://u:secret@h/db");
    assert_eq!(l.to_string(), "postgres://u:***@h/db");
    assert!(!format!("{l:?}").contains("secret"));
}
