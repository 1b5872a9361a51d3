//! `[notify]`: the channels a miss and its resolution are announced on.

use super::*;

/// `[notify]`: the webhook, e-mail, Bitrix24, amoCRM, Telegram and `[[notify.http]]` channels.
pub(super) fn notify(v: &mut V, n: &RawNotify) -> NotifyConfig {
    let webhook = n.webhook.as_ref().map(|w| webhook(v, w));
    let email = n.email.as_ref().map(|e| email(v, e));
    let bitrix24 = n.bitrix24.as_ref().map(|b| bitrix24(v, b));
    let amocrm = n.amocrm.as_ref().map(|a| amocrm(v, a));
    let telegram = n.telegram.as_ref().map(|t| telegram(v, t));
    let mut http: Vec<HttpNotifierConfig> = Vec::new();
    for (i, h) in n.http.iter().flatten().enumerate() {
        if let Some(h) = http_notifier(v, i, h) {
            if http.iter().any(|o| o.name == h.name) {
                v.err(
                    format!("notify.http[{i}].name"),
                    format!("duplicate name {:?}", h.name),
                    Some("every [[notify.http]] needs its own name"),
                );
            }
            http.push(h);
        }
    }
    NotifyConfig {
        webhook,
        email,
        bitrix24,
        amocrm,
        telegram,
        http,
    }
}

/// `[notify.webhook]`.
fn webhook(v: &mut V, w: &RawWebhook) -> WebhookConfig {
    let url = w.url.clone().unwrap_or_default();
    let endpoint = v
        .http_url("notify.webhook.url", Some(&url), true)
        .unwrap_or_else(placeholder_url);
    let secret = v.optional_secret("notify.webhook", &w.secret, &w.secret_file, &w.secret_env);
    let tls = v.tls_files("notify.webhook", &w.ca_file, &w.client_cert, &w.client_key);
    WebhookConfig {
        url,
        endpoint,
        secret,
        events: notify_events(v, "notify.webhook.events", &w.events),
        timeout: v.duration("notify.webhook.timeout", &w.timeout, "10s"),
        retry_every: v.duration("notify.webhook.retry_every", &w.retry_every, "10s"),
        max_retry_every: v.duration("notify.webhook.max_retry_every", &w.max_retry_every, "10m"),
        give_up_after: v.duration("notify.webhook.give_up_after", &w.give_up_after, "3d"),
        tls,
    }
}

/// `[notify.email]`: the relay, the session's TLS, the login and the addresses.
fn email(v: &mut V, e: &RawEmail) -> EmailConfig {
    let smtp_host = e.smtp_host.clone().unwrap_or_else(|| "127.0.0.1".into());
    let helo = e.helo.clone().unwrap_or_else(|| "localhost".into());
    if helo.is_empty()
        || !helo
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-[]:".contains(c))
    {
        v.err(
            "notify.email.helo",
            format!("{helo:?} is not a host name"),
            Some("the name this machine gives the relay, e.g. \"pbx.example.com\""),
        );
    }
    let from = e.from.clone().unwrap_or_default();
    if from.parse::<lettre::Address>().is_err() {
        v.err(
            "notify.email.from",
            format!("{from:?} is not an address"),
            Some("e.g. \"perezvon@example.com\""),
        );
    }
    let to = e.to.clone().map(OneOrMany::into_vec).unwrap_or_default();
    if to.is_empty() {
        v.err("notify.email.to", "no recipients", None);
    }
    for (i, t) in to.iter().enumerate() {
        if t.parse::<lettre::Address>().is_err() {
            v.err(
                format!("notify.email.to[{i}]"),
                format!("{t:?} is not an address"),
                None,
            );
        }
    }
    let local = is_loopback_host(&smtp_host);
    let tls = match e.tls.as_deref() {
        None if local => SmtpTls::None,
        None => SmtpTls::StartTls,
        Some("none") => {
            if !local {
                v.err(
                    "notify.email.tls",
                    format!("\"none\" to {smtp_host}: plain SMTP would carry the mail and the password readable by anyone on the way"),
                    Some("use \"starttls\" (port 587) or \"tls\" (port 465); plain SMTP is only for a relay on this machine (127.0.0.1, ::1, localhost)"),
                );
            }
            SmtpTls::None
        }
        Some("starttls") => SmtpTls::StartTls,
        Some("tls") => SmtpTls::Tls,
        Some(other) => {
            v.err(
                "notify.email.tls",
                format!("unknown mode {other:?}"),
                Some("none (a relay on this machine), starttls or tls"),
            );
            SmtpTls::StartTls
        }
    };
    let ca = e.ca_file.as_ref().and_then(|p| {
        let p = v.resolve_path(p);
        if tls == SmtpTls::None {
            v.err(
                "notify.email.ca_file",
                "set, but the session is plain (tls = \"none\")",
                Some("set tls = \"starttls\" or \"tls\", or drop ca_file"),
            );
            return None;
        }
        match std::fs::read(&p) {
            Ok(pem)
                if memchr::memmem::find(&pem, b"-----BEGIN CERTIFICATE-----").is_some()
                    && lettre::transport::smtp::client::Certificate::from_pem(&pem).is_ok() =>
            {
                Some((p, pem))
            }
            Ok(_) => {
                v.err(
                    "notify.email.ca_file",
                    format!("{} holds no PEM certificate", p.display()),
                    Some("the relay's CA certificate, \"-----BEGIN CERTIFICATE-----\" ..."),
                );
                None
            }
            Err(err) => {
                v.err(
                    "notify.email.ca_file",
                    format!("cannot read {}: {err}", p.display()),
                    None,
                );
                None
            }
        }
    });
    let password = v.optional_secret_named(
        "notify.email",
        "password",
        &None,
        &e.password_file,
        &e.password_env,
    );
    let auth = match (&e.username, password) {
        (None, None) => None,
        (Some(u), Some(p)) => {
            if u.is_empty() || u.contains(['\r', '\n', '\0']) {
                v.err(
                    "notify.email.username",
                    "empty or has a control character",
                    None,
                );
            }
            Some((u.clone(), p))
        }
        (Some(_), None) => {
            if e.password_file.is_none() && e.password_env.is_none() {
                v.err(
                    "notify.email.username",
                    "set, but there is no password",
                    Some("add password_file or password_env"),
                );
            }
            None
        }
        (None, Some(_)) => {
            v.err(
                "notify.email.username",
                "missing: a password is set",
                Some("the account name at the relay, e.g. \"perezvon@example.com\""),
            );
            None
        }
    };
    // The usual mix-up: each side waits for the other to speak first until the timeout.
    match (tls, e.smtp_port) {
        (SmtpTls::StartTls, Some(465)) => v.warn(
            "notify.email.smtp_port",
            "465 is the implicit-TLS port, but tls = \"starttls\"",
            Some("tls = \"tls\" for port 465, or port 587 for starttls"),
        ),
        (SmtpTls::Tls, Some(p @ (25 | 587))) => v.warn(
            "notify.email.smtp_port",
            format!("{p} is a STARTTLS port, but tls = \"tls\" (TLS from the first byte)"),
            Some("tls = \"starttls\" for ports 25 and 587, or port 465 for tls"),
        ),
        _ => {}
    }
    EmailConfig {
        smtp_host,
        smtp_port: match e.smtp_port {
            None => tls.default_port(),
            Some(p @ 1..=65535) => p as u16,
            Some(p) => {
                v.err(
                    "notify.email.smtp_port",
                    format!("{p} is not a TCP port"),
                    None,
                );
                tls.default_port()
            }
        },
        from,
        to,
        events: notify_events(v, "notify.email.events", &e.events),
        timeout: v.duration("notify.email.timeout", &e.timeout, "30s"),
        helo,
        tls,
        ca,
        auth,
        retry_every: v.duration("notify.email.retry_every", &e.retry_every, "1m"),
        max_retry_every: v.duration("notify.email.max_retry_every", &e.max_retry_every, "30m"),
        give_up_after: v.duration("notify.email.give_up_after", &e.give_up_after, "3d"),
    }
}

/// A URL standing in for one that failed validation (the problem is reported already).
fn placeholder_url() -> reqwest::Url {
    // A constant that parses.
    reqwest::Url::parse("http://127.0.0.1/").expect("a constant URL")
}

fn bitrix24(v: &mut V, b: &RawBitrix24) -> Bitrix24Config {
    const P: &str = "notify.bitrix24";
    let mut url = v.required_secret(
        P,
        "webhook_url",
        &b.webhook_url,
        &b.webhook_url_file,
        &b.webhook_url_env,
    );
    if !url.expose().is_empty() {
        let before = v.problems.len();
        // Never quoted: the URL holds the token.
        if let Some(u) = v.http_url(&format!("{P}.webhook_url"), Some(url.expose()), false) {
            let segments: Vec<&str> = u
                .path_segments()
                .map(|s| s.filter(|x| !x.is_empty()).collect())
                .unwrap_or_default();
            if u.query().is_some() || segments.len() < 3 || segments[segments.len() - 3] != "rest" {
                v.err(
                    format!("{P}.webhook_url"),
                    "not an inbound webhook URL",
                    Some("copy it from Bitrix24: Developer resources > Other > Inbound webhook, like https://portal.bitrix24.ru/rest/1/abc123/"),
                );
            } else if !url.expose().ends_with('/') {
                url = Secret::new(format!("{}/", url.expose()));
            }
        }
        if v.problems.len() > before {
            url = Secret::default();
        }
    }
    let source_id = b.source_id.clone().unwrap_or_else(|| "CALL".into());
    if source_id.is_empty()
        || !source_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        v.err(
            format!("{P}.source_id"),
            format!("{source_id:?} is not a source id"),
            Some("CALL, WEB, ... (CRM > Settings > Sources)"),
        );
    }
    let responsible_id = positive_id(v, &format!("{P}.responsible_id"), b.responsible_id);
    let tls = v.tls_files(P, &b.ca_file, &None, &None);
    Bitrix24Config {
        webhook_url: url,
        responsible_id,
        source_id,
        channel: v.channel(
            P,
            &b.events,
            &b.language,
            &b.timeout,
            &b.retry_every,
            &b.max_retry_every,
            &b.give_up_after,
            tls,
        ),
    }
}

fn positive_id(v: &mut V, key: &str, raw: Option<i64>) -> Option<i64> {
    match raw {
        Some(id) if id < 1 => {
            v.err(
                key,
                format!("{id} is not a user id"),
                Some("a positive number"),
            );
            None
        }
        other => other,
    }
}

fn amocrm(v: &mut V, a: &RawAmoCrm) -> AmoCrmConfig {
    const P: &str = "notify.amocrm";
    let mut base_url = v
        .http_url(&format!("{P}.base_url"), a.base_url.as_deref(), true)
        .unwrap_or_else(placeholder_url);
    if base_url.path() != "/" || base_url.query().is_some() {
        v.err(
            format!("{P}.base_url"),
            "must be the account's address without a path",
            Some("e.g. \"https://example.amocrm.ru\""),
        );
    }
    base_url.set_path("");
    let token = v.required_secret(P, "token", &a.token, &a.token_file, &a.token_env);
    let task_type_id = a.task_type_id.unwrap_or(1);
    if task_type_id < 1 {
        v.err(
            format!("{P}.task_type_id"),
            format!("{task_type_id} is not a task type"),
            Some("1 = call, 2 = meeting"),
        );
    }
    let source_name = a.source_name.clone().unwrap_or_else(|| "perezvon".into());
    if source_name.is_empty() {
        v.err(format!("{P}.source_name"), "empty", None);
    }
    let tls = v.tls_files(P, &a.ca_file, &None, &None);
    AmoCrmConfig {
        base_url,
        token,
        responsible_user_id: positive_id(
            v,
            &format!("{P}.responsible_user_id"),
            a.responsible_user_id,
        ),
        task_type_id,
        task_due: v.duration(&format!("{P}.task_due"), &a.task_due, "1h"),
        source_name,
        pipeline_id: positive_id(v, &format!("{P}.pipeline_id"), a.pipeline_id),
        channel: v.channel(
            P,
            &a.events,
            &a.language,
            &a.timeout,
            &a.retry_every,
            &a.max_retry_every,
            &a.give_up_after,
            tls,
        ),
    }
}

fn telegram(v: &mut V, t: &RawTelegram) -> TelegramConfig {
    const P: &str = "notify.telegram";
    let bot_token = v.required_secret(
        P,
        "bot_token",
        &t.bot_token,
        &t.bot_token_file,
        &t.bot_token_env,
    );
    if !bot_token.expose().is_empty()
        && !bot_token
            .expose()
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ":_-".contains(c))
    {
        v.err(
            format!("{P}.bot_token"),
            "not a bot token",
            Some("the token @BotFather gave, like 123456:ABC-DEF..."),
        );
    }
    let chat_id = match &t.chat_id {
        Some(RawChatId::Id(id)) => serde_json::json!(id),
        Some(RawChatId::Name(n)) if n.parse::<i64>().is_ok() => {
            serde_json::json!(n.parse::<i64>().unwrap_or_default())
        }
        Some(RawChatId::Name(n))
            if n.starts_with('@')
                && n.len() > 1
                && n[1..]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_') =>
        {
            serde_json::json!(n)
        }
        Some(RawChatId::Name(n)) => {
            v.err(
                format!("{P}.chat_id"),
                format!("{n:?} is not a chat id"),
                Some("a number like -1001234567890, or @channelname"),
            );
            serde_json::Value::Null
        }
        None => {
            v.err(
                format!("{P}.chat_id"),
                "missing",
                Some("docs/INTEGRATIONS.md shows how to find it"),
            );
            serde_json::Value::Null
        }
    };
    let api_url = v
        .http_url(
            &format!("{P}.api_url"),
            Some(t.api_url.as_deref().unwrap_or("https://api.telegram.org")),
            true,
        )
        .unwrap_or_else(placeholder_url);
    let tls = v.tls_files(P, &t.ca_file, &None, &None);
    TelegramConfig {
        bot_token,
        chat_id,
        api_url,
        channel: v.channel(
            P,
            &t.events,
            &t.language,
            &t.timeout,
            &t.retry_every,
            &t.max_retry_every,
            &t.give_up_after,
            tls,
        ),
    }
}

fn http_notifier(v: &mut V, i: usize, h: &RawHttpNotifier) -> Option<HttpNotifierConfig> {
    let p = format!("notify.http[{i}]");
    let k = |f: &str| format!("{p}.{f}");
    let name = h.name.clone().unwrap_or_default();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    {
        v.err(
            k("name"),
            if name.is_empty() {
                "missing".to_string()
            } else {
                format!("{name:?} is not a name")
            },
            Some("lowercase letters, digits, - and _, e.g. \"sms\""),
        );
    }
    let method = match h
        .method
        .as_deref()
        .unwrap_or("POST")
        .to_ascii_uppercase()
        .as_str()
    {
        "POST" => reqwest::Method::POST,
        "PUT" => reqwest::Method::PUT,
        "GET" => reqwest::Method::GET,
        other => {
            v.err(
                k("method"),
                format!("unsupported method {other:?}"),
                Some("POST, PUT or GET"),
            );
            reqwest::Method::POST
        }
    };
    let content_type = h
        .content_type
        .clone()
        .unwrap_or_else(|| "application/json".into());
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let body_kind = if essence == "application/json" || essence.ends_with("+json") {
        BodyKind::Json
    } else if essence == "application/x-www-form-urlencoded" {
        BodyKind::Form
    } else {
        BodyKind::Text
    };
    if content_type.contains(['\r', '\n']) || !essence.contains('/') {
        v.err(
            k("content_type"),
            format!("{content_type:?} is not a media type"),
            Some("application/json, application/x-www-form-urlencoded or text/plain"),
        );
    }
    // Placeholders are checked by rendering the templates with sample values.
    let url_raw = h.url.clone().unwrap_or_default();
    let sample = crate::notify::template::Values::sample();
    let url_ok = match crate::notify::template::render(
        &url_raw,
        &sample,
        crate::notify::template::Escape::Url,
    ) {
        Ok(u) => v.http_url(&k("url"), Some(&u), false).is_some(),
        Err(e) => {
            v.err(k("url"), e, Some(crate::notify::template::HINT));
            false
        }
    };
    if h.body.is_some() && method == reqwest::Method::GET {
        v.err(
            k("body"),
            "a GET request has no body",
            Some("put the values in the URL, or use POST"),
        );
    }
    if let Some(body) = &h.body {
        match crate::notify::template::render(
            body,
            &sample,
            crate::notify::template::Escape::for_body(body_kind),
        ) {
            Ok(b) if body_kind == BodyKind::Json => {
                if let Err(e) = serde_json::from_str::<serde_json::Value>(&b) {
                    v.err(
                        k("body"),
                        format!("not JSON once filled in: {e}"),
                        Some("quote the placeholders: {\"to\": \"{number}\"}"),
                    );
                }
            }
            Ok(_) => {}
            Err(e) => v.err(k("body"), e, Some(crate::notify::template::HINT)),
        }
    }
    let mut headers = Vec::new();
    for (name, value) in h.headers.iter().flatten() {
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            v.err(k("headers"), format!("{name:?} is not a header name"), None);
        } else if reqwest::header::HeaderValue::from_str(value).is_err() {
            // The value may be an API key: never quoted.
            v.err(
                k("headers"),
                format!("the value of {name:?} is not a valid header value"),
                Some("one line of visible ASCII"),
            );
        } else if name.eq_ignore_ascii_case("content-type") {
            v.err(
                k("headers"),
                "Content-Type is set by content_type",
                Some("use content_type"),
            );
        } else {
            headers.push((name.clone(), Secret::new(value.clone())));
        }
    }
    let tls = v.tls_files(&p, &h.ca_file, &h.client_cert, &h.client_key);
    let channel = v.channel(
        &p,
        &h.events,
        &h.language,
        &h.timeout,
        &h.retry_every,
        &h.max_retry_every,
        &h.give_up_after,
        tls,
    );
    url_ok.then_some(HttpNotifierConfig {
        name,
        method,
        url: Secret::new(url_raw),
        headers,
        content_type,
        body_kind,
        body: h.body.clone(),
        channel,
    })
}
