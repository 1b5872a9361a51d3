//! Stage 2 of the configuration: raw values -> validated [`Config`], collecting every problem
//! with its key path instead of stopping at the first.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::number::{classify, is_known_country, KindGuard, NumberKind, NumberPlan};

/// Collects problems while validating.
pub(super) struct V {
    pub(super) problems: Vec<Problem>,
    pub(super) warnings: Vec<Problem>,
    pub(super) base_dir: Option<PathBuf>,
}

impl V {
    fn err(&mut self, key: impl Into<String>, message: impl Into<String>, hint: Option<&str>) {
        self.problems.push(Problem {
            key: key.into(),
            message: message.into(),
            hint: hint.map(str::to_string),
        });
    }

    fn warn(&mut self, key: impl Into<String>, message: impl Into<String>, hint: Option<&str>) {
        self.warnings.push(Problem {
            key: key.into(),
            message: message.into(),
            hint: hint.map(str::to_string),
        });
    }

    fn duration(&mut self, key: &str, raw: &Option<String>, default: &str) -> Duration {
        let s = raw.as_deref().unwrap_or(default);
        match humantime::parse_duration(s) {
            Ok(d) => d,
            Err(e) => {
                self.err(
                    key,
                    format!("invalid duration {s:?}: {e}"),
                    Some("write it like \"90s\", \"10m\", \"1h 30m\" or \"7d\""),
                );
                humantime::parse_duration(default).unwrap_or_default()
            }
        }
    }

    fn positive(&mut self, key: &str, raw: Option<i64>, default: i64, max: i64) -> i64 {
        let v = raw.unwrap_or(default);
        if v < 1 || v > max {
            self.err(key, format!("must be between 1 and {max}, got {v}"), None);
            default
        } else {
            v
        }
    }

    fn globs(&mut self, key: &str, raw: &Option<Vec<String>>, default: &[&str]) -> Vec<String> {
        let v: Vec<String> = match raw {
            Some(v) => v.clone(),
            None => default.iter().map(|s| s.to_string()).collect(),
        };
        for (i, p) in v.iter().enumerate() {
            if p.is_empty() {
                self.err(
                    format!("{key}[{i}]"),
                    "empty pattern",
                    Some("use \"*\" to match everything"),
                );
            }
        }
        v
    }

    fn regexes(
        &mut self,
        key: &str,
        raw: &Option<Vec<String>>,
        default: &[&str],
    ) -> Vec<regex::Regex> {
        let v: Vec<String> = match raw {
            Some(v) => v.clone(),
            None => default.iter().map(|s| s.to_string()).collect(),
        };
        let mut out = Vec::new();
        for (i, p) in v.iter().enumerate() {
            // Anchor so "7916" cannot accidentally allow "879160000000000".
            let anchored = format!("^(?:{})$", p.trim_start_matches('^').trim_end_matches('$'));
            match regex::Regex::new(&anchored) {
                Ok(r) => out.push(r),
                Err(e) => self.err(
                    format!("{key}[{i}]"),
                    format!(
                        "invalid regex {p:?}: {}",
                        e.to_string().lines().last().unwrap_or("")
                    ),
                    Some("patterns are regexes over the normalised number, e.g. \"^79\\\\d{9}$\""),
                ),
            }
        }
        out
    }

    /// An optional secret from exactly one of `secret`, `secret_file`, `secret_env` under `prefix`.
    fn optional_secret(
        &mut self,
        prefix: &str,
        secret: &Option<String>,
        file: &Option<PathBuf>,
        env: &Option<String>,
    ) -> Option<Secret> {
        self.optional_secret_named(prefix, "secret", secret, file, env)
    }

    /// [`V::optional_secret`] for keys named `{name}`, `{name}_file`, `{name}_env`.
    fn optional_secret_named(
        &mut self,
        prefix: &str,
        name: &str,
        secret: &Option<String>,
        file: &Option<PathBuf>,
        env: &Option<String>,
    ) -> Option<Secret> {
        let k = |f: &str| format!("{prefix}.{}", f.replacen("secret", name, 1));
        match (secret, file, env) {
            (None, None, None) => None,
            (Some(s), None, None) => Some(Secret::new(s.clone())),
            (None, Some(p), None) => {
                let p = self.resolve_path(p);
                match std::fs::read_to_string(&p) {
                    Ok(s) => {
                        #[cfg(unix)]
                        {
                            use std::os::unix::fs::PermissionsExt;
                            if std::fs::metadata(&p)
                                .is_ok_and(|m| m.permissions().mode() & 0o004 != 0)
                            {
                                self.warn(
                                    k("secret_file"),
                                    format!("{} is world-readable", p.display()),
                                    Some("chmod 640 it"),
                                );
                            }
                        }
                        Some(Secret::new(s.trim_end_matches(['\r', '\n']).to_string()))
                    }
                    Err(e) => {
                        self.err(
                            k("secret_file"),
                            format!("cannot read {}: {e}", p.display()),
                            None,
                        );
                        None
                    }
                }
            }
            (None, None, Some(var)) => match std::env::var(var) {
                Ok(s) => Some(Secret::new(s)),
                Err(_) => {
                    self.err(
                        k("secret_env"),
                        format!("environment variable {var:?} is not set"),
                        Some("set it in the unit's Environment= or EnvironmentFile="),
                    );
                    None
                }
            },
            _ => {
                self.err(
                    k("secret"),
                    format!("{name}, {name}_file and {name}_env are exclusive"),
                    Some("keep one"),
                );
                None
            }
        }
    }

    fn resolve_path(&self, p: &Path) -> PathBuf {
        match &self.base_dir {
            Some(base) if p.is_relative() => base.join(p),
            _ => p.to_path_buf(),
        }
    }
}

/// A relay on this machine: the only place plain SMTP may go.
fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `callback.allow_kinds` and `callback.allow_countries`, each value checked.
fn kind_guard(v: &mut V, cb: &RawCallback) -> KindGuard {
    let mut g = KindGuard::default();
    for (i, k) in cb.allow_kinds.iter().flatten().enumerate() {
        match NumberKind::parse(k) {
            Some(kind) => g.kinds.push(kind),
            None => v.err(
                format!("callback.allow_kinds[{i}]"),
                format!("unknown kind {k:?}"),
                Some("mobile, fixed_line, fixed_line_or_mobile, toll_free, premium_rate, shared_cost, personal_number, voip, pager, uan or voicemail"),
            ),
        }
    }
    if cb.allow_kinds.as_ref().is_some_and(|k| k.is_empty()) {
        v.err(
            "callback.allow_kinds",
            "empty: no number would be dialled",
            Some("e.g. [\"mobile\", \"fixed_line\"], or drop the key to allow every kind"),
        );
    }
    for (i, c) in cb.allow_countries.iter().flatten().enumerate() {
        if is_known_country(c) {
            g.countries.push(c.clone());
        } else {
            v.err(
                format!("callback.allow_countries[{i}]"),
                format!("{c:?} is not a country code with a numbering plan"),
                Some("ISO 3166 two upper-case letters, e.g. \"RU\", \"KZ\", \"BY\""),
            );
        }
    }
    if cb.allow_countries.as_ref().is_some_and(|c| c.is_empty()) {
        v.err(
            "callback.allow_countries",
            "empty: no number would be dialled",
            Some("e.g. [\"RU\"], or drop the key to allow every country"),
        );
    }
    for costly in [NumberKind::PremiumRate, NumberKind::SharedCost] {
        if g.kinds.contains(&costly) {
            v.warn(
                "callback.allow_kinds",
                format!("admits {costly} numbers: each callback there is billed at a premium"),
                Some("keep mobile and fixed_line"),
            );
        }
    }
    g
}

/// Numbers no business's callbacks should reach, whatever its country: abroad on three
/// continents, a satellite network, a one-digit "number". An allow-list that admits all of them
/// admits every number.
const FRAUD_PROBES: [&str; 4] = ["447911123456", "12025550123", "8823451234567", "3"];
/// Premium-rate and international examples an allow-list is warned about when it admits them.
const COSTLY_PROBES: [(&str, &str); 3] = [
    ("78091234567", "Russian premium-rate 8-809"),
    ("37491234567", "Armenia"),
    ("882345123456", "satellite (+882)"),
];

/// The toll-fraud guard must guard: refuse an empty allow-list and one that admits every
/// number (probed with numbers abroad), warn about costly numbers it admits. A number is
/// admitted when it passes the regex lists and `allow_kinds`/`allow_countries` both, as the
/// dialer checks it.
fn check_toll_fraud_guard(
    v: &mut V,
    allow: &[regex::Regex],
    deny: &[regex::Regex],
    kinds: &KindGuard,
) {
    let admits = |n: &str| {
        allow.iter().any(|r| r.is_match(n))
            && !deny.iter().any(|r| r.is_match(n))
            && kinds.check(n).is_ok()
    };
    if allow.is_empty() {
        v.err(
            "callback.allow",
            "empty: callbacks are on but no number may be dialled",
            Some("list the numbers you call back, e.g. [\"^79\\\\d{9}$\"] for Russian mobiles"),
        );
        return;
    }
    if FRAUD_PROBES.iter().all(|n| admits(n)) {
        v.err(
            "callback.allow",
            "admits every number (it lets perezvon dial +44 7911 123456, +1 202 555 0123, satellite +882 and \"3\"): a caller ID is whatever the caller sends, so this is an open door to toll fraud",
            Some("allow only the numbers you call back, e.g. [\"^79\\\\d{9}$\"] for Russian mobiles, [\"^7\\\\d{10}$\"] for all of Russia, or set allow_kinds and allow_countries"),
        );
        return;
    }
    for (n, what) in COSTLY_PROBES {
        if admits(n) {
            // What libphonenumber's metadata says the number is, when it knows it.
            let kind = classify(n).map_or(String::new(), |c| {
                format!(
                    ", {} of {}",
                    c.kind,
                    c.country.as_deref().unwrap_or("no country")
                )
            });
            v.warn(
                "callback.allow",
                format!("admits {n} ({what}{kind}): callbacks there may be costly"),
                Some("narrow the pattern, add the prefix to callback.deny, or set callback.allow_kinds = [\"mobile\", \"fixed_line\"] and callback.allow_countries"),
            );
        }
    }
}

fn parse_hhmm(s: &str, allow_24: bool) -> Option<u16> {
    let (h, m) = s.trim().split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let h: u16 = h.parse().ok()?;
    let m: u16 = m.parse().ok()?;
    if m >= 60 || h > 24 || (h == 24 && (m != 0 || !allow_24)) {
        return None;
    }
    Some(h * 60 + m)
}

/// Parses `"09:00-13:00"`; `"00:00-24:00"` is the whole day.
pub fn parse_range(s: &str) -> Option<DayRange> {
    let (a, b) = s.split_once('-')?;
    let start_min = parse_hhmm(a, false)?;
    let end_min = parse_hhmm(b, true)?;
    (start_min < end_min).then_some(DayRange { start_min, end_min })
}

/// Whether a key holds a secret whose value must never be quoted in a message: the last path
/// segment names a secret, password or token (`secret_file` and `secret_env` hold a path and a
/// variable name, not the secret).
pub fn is_secret_key(key: &str) -> bool {
    let last = key.rsplit('.').next().unwrap_or(key);
    let last = last.split('[').next().unwrap_or(last).to_ascii_lowercase();
    ["secret", "password", "passwd", "token"]
        .iter()
        .any(|w| last.contains(w))
        && !last.ends_with("_file")
        && !last.ends_with("_env")
}

/// Every value under a secret key of the file (as toml/serde would print it in a message), longest
/// first, so [`toml_problem`] can cut them out of any message.
pub(super) fn secret_values(table: &toml::Table) -> Vec<String> {
    fn leaves(v: &toml::Value, out: &mut Vec<String>) {
        match v {
            toml::Value::String(s) => out.push(s.clone()),
            toml::Value::Integer(i) => out.push(i.to_string()),
            toml::Value::Float(f) => out.push(f.to_string()),
            toml::Value::Datetime(d) => out.push(d.to_string()),
            toml::Value::Boolean(_) => {}
            toml::Value::Array(a) => a.iter().for_each(|x| leaves(x, out)),
            toml::Value::Table(t) => t.values().for_each(|x| leaves(x, out)),
        }
    }
    fn walk(t: &toml::Table, out: &mut Vec<String>) {
        for (k, v) in t {
            if is_secret_key(k) {
                leaves(v, out);
            } else if let toml::Value::Table(t) = v {
                walk(t, out);
            } else if let toml::Value::Array(a) = v {
                for x in a {
                    if let toml::Value::Table(t) = x {
                        walk(t, out);
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(table, &mut out);
    out.retain(|s| !s.is_empty());
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

/// `msg` without any secret: a quoted or backticked part (serde quotes the offending value as
/// `` `84512397123` `` or `"..."`) becomes `***` when it holds one of `secrets` or, when the message
/// is about a secret key, when it names anything at all; a longer secret is cut out anywhere.
fn redact(msg: &str, secret_key: bool, secrets: &[String]) -> String {
    let mut out = msg.to_string();
    for s in secrets.iter().filter(|s| s.chars().count() >= 6) {
        out = out.replace(s.as_str(), "***");
    }
    let hide = |inner: &str| {
        (secret_key && inner.chars().any(char::is_alphanumeric))
            || secrets.iter().any(|s| inner.contains(s.as_str()))
    };
    let mut res = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(i) = rest.find(['`', '"']) {
        let q = if rest.as_bytes()[i] == b'`' { '`' } else { '"' };
        res.push_str(&rest[..=i]);
        let after = &rest[i + 1..];
        match after.find(q) {
            Some(j) => {
                let inner = &after[..j];
                res.push_str(if hide(inner) { "***" } else { inner });
                res.push(q);
                rest = &after[j + 1..];
            }
            None => {
                // An unpaired quote: what follows may be the value.
                res.push_str(if hide(after) { "***" } else { after });
                rest = "";
            }
        }
    }
    res.push_str(rest);
    res
}

/// The problem of a file without any `[[asterisk]]` server (`run` and `check-config` only).
pub(super) fn no_server_problem() -> Problem {
    Problem {
        key: "asterisk".into(),
        message: "no server, perezvon would watch nothing".into(),
        hint: Some(
            "add an [[asterisk]] section with host, username and secret; see config.example.toml"
                .into(),
        ),
    }
}

/// A problem of a table that has no source text left (unknown keys were removed from it): it is
/// serialised again and parsed from that text so the problem still names its key (without a
/// line: the line of the rewritten text is not the line of the file).
pub(super) fn table_problem(
    e: &toml::de::Error,
    table: &toml::Table,
    secrets: &[String],
) -> Problem {
    if let Ok(text) = toml::to_string(table) {
        if let Err(e2) = toml::from_str::<RawConfig>(&text) {
            let mut p = toml_problem(&e2, &text, secrets);
            if let Some(i) = p.key.find(" (line ") {
                p.key.truncate(i);
                return p;
            }
        }
    }
    toml_problem(e, "", secrets)
}

/// A problem of toml or serde. The value at fault is never quoted when its key holds a secret,
/// nor is any value of a secret key of the file (`secrets`, from [`secret_values`]).
pub(super) fn toml_problem(e: &toml::de::Error, text: &str, secrets: &[String]) -> Problem {
    // toml's message is the first line of its Display; the rest repeats the source line (which
    // is never shown: it may hold a secret).
    let msg = e.message().trim().replace('\n', "; ");
    let (key, line, column) = match e.span().filter(|_| !text.is_empty()) {
        Some(span) => {
            let (k, l) = schema::key_at(text, span.start);
            let at = span.start.min(text.len());
            let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
            (k, l, text[line_start..at].chars().count() + 1)
        }
        None => (None, None, 0),
    };
    let secret_key = key.as_deref().is_some_and(is_secret_key);
    let msg = redact(&msg, secret_key, secrets);
    let key = match (key, line) {
        (Some(k), Some(l)) => format!("{k} (line {l})"),
        (None, Some(l)) => format!("line {l}, column {column}"),
        (Some(k), None) => k,
        (None, None) => "(toml)".into(),
    };
    let hint = if msg.contains("unknown field") {
        Some("see config.example.toml for every key".to_string())
    } else if msg.contains("invalid type: map, expected a sequence") {
        Some("servers are [[asterisk]] sections (double brackets), one per server".to_string())
    } else if msg.contains("expected a sequence") {
        Some("a list in brackets, e.g. [\"PJSIP/*\"] or [] for none".to_string())
    } else if secret_key && msg.contains("invalid type") {
        Some("a secret is a quoted string, even when it is all digits".to_string())
    } else if msg.contains("invalid type") {
        Some("durations and names are quoted strings, numbers and booleans are not".to_string())
    } else {
        Some("the file is not valid TOML; check quotes and brackets".to_string())
    };
    Problem {
        key,
        message: msg,
        hint,
    }
}

pub(super) fn validate(raw: RawConfig, v: &mut V) -> Config {
    // [[asterisk]]
    let mut asterisk = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (i, a) in raw.asterisk.iter().enumerate() {
        let k = |f: &str| format!("asterisk[{i}].{f}");
        let name = a.name.clone().unwrap_or_else(|| {
            if i == 0 {
                "default".into()
            } else {
                format!("asterisk{i}")
            }
        });
        if !names.insert(name.clone()) {
            v.err(
                k("name"),
                format!("duplicate server name {name:?}"),
                Some("every [[asterisk]] needs its own name"),
            );
        }
        let host = a.host.clone().unwrap_or_else(|| "127.0.0.1".into());
        let port = match a.port.unwrap_or(5038) {
            p @ 1..=65535 => p as u16,
            p => {
                v.err(
                    k("port"),
                    format!("{p} is not a TCP port"),
                    Some("AMI listens on 5038 by default"),
                );
                5038
            }
        };
        let username = match &a.username {
            Some(u) if !u.is_empty() && !u.contains(['\r', '\n']) => u.clone(),
            Some(_) => {
                v.err(k("username"), "must be a non-empty single line", None);
                String::new()
            }
            None => {
                v.err(
                    k("username"),
                    "missing",
                    Some("the [user] section name in manager.conf"),
                );
                String::new()
            }
        };
        let sources = [
            a.secret.is_some(),
            a.secret_file.is_some(),
            a.secret_env.is_some(),
        ];
        let secret = match sources.iter().filter(|x| **x).count() {
            0 => {
                v.err(
                    k("secret"),
                    "missing",
                    Some("set one of secret, secret_file or secret_env"),
                );
                Secret::default()
            }
            1 => {
                if let Some(s) = &a.secret {
                    Secret::new(s.clone())
                } else if let Some(p) = &a.secret_file {
                    let p = v.resolve_path(p);
                    match std::fs::read_to_string(&p) {
                        Ok(s) => {
                            #[cfg(unix)]
                            {
                                use std::os::unix::fs::PermissionsExt;
                                if let Ok(m) = std::fs::metadata(&p) {
                                    if m.permissions().mode() & 0o004 != 0 {
                                        v.warn(
                                            k("secret_file"),
                                            format!("{} is world-readable", p.display()),
                                            Some("chmod 640 it"),
                                        );
                                    }
                                }
                            }
                            Secret::new(s.trim_end_matches(['\r', '\n']).to_string())
                        }
                        Err(e) => {
                            v.err(
                                k("secret_file"),
                                format!("cannot read {}: {e}", p.display()),
                                None,
                            );
                            Secret::default()
                        }
                    }
                } else {
                    let var = a.secret_env.clone().unwrap_or_default();
                    match std::env::var(&var) {
                        Ok(s) => Secret::new(s),
                        Err(_) => {
                            v.err(
                                k("secret_env"),
                                format!("environment variable {var:?} is not set"),
                                Some("set it in the unit's Environment= or EnvironmentFile="),
                            );
                            Secret::default()
                        }
                    }
                }
            }
            _ => {
                v.err(
                    k("secret"),
                    "secret, secret_file and secret_env are exclusive",
                    Some("keep one"),
                );
                Secret::default()
            }
        };
        if secret.expose().contains(['\r', '\n']) {
            v.err(k("secret"), "contains a line break", None);
        }
        let auth = match a.auth.as_deref().unwrap_or("md5") {
            "md5" => AuthType::Md5,
            "plain" => AuthType::Plain,
            other => {
                v.err(
                    k("auth"),
                    format!("unknown auth {other:?}"),
                    Some("md5 or plain"),
                );
                AuthType::Md5
            }
        };
        let events = a.events.clone().unwrap_or_else(|| "on".into());
        if events.is_empty() || events.contains(['\r', '\n']) {
            v.err(
                k("events"),
                "must be on, off or a list of classes",
                Some("e.g. \"call,agent,dialplan\""),
            );
        }
        let max_message = v.positive(
            &k("max_message"),
            a.max_message,
            1024 * 1024,
            64 * 1024 * 1024,
        ) as usize;
        asterisk.push(AsteriskConfig {
            name,
            host,
            port,
            username,
            secret,
            auth,
            events,
            connect_timeout: v.duration(&k("connect_timeout"), &a.connect_timeout, "5s"),
            action_timeout: v.duration(&k("action_timeout"), &a.action_timeout, "10s"),
            ping_interval: v.duration(&k("ping_interval"), &a.ping_interval, "15s"),
            max_message,
            reconnect_max: v.duration(&k("reconnect_max"), &a.reconnect_max, "60s"),
        });
    }

    // [pbx]
    let p = &raw.pbx;
    let digits = |v: &mut V, key: &str, s: &Option<String>, d: &str| -> String {
        let s = s.clone().unwrap_or_else(|| d.to_string());
        if !s.chars().all(|c| c.is_ascii_digit()) {
            v.err(key, format!("{s:?} must be digits only"), None);
        }
        s
    };
    let country_code = digits(v, "pbx.country_code", &p.country_code, "7");
    if country_code.is_empty() {
        v.err(
            "pbx.country_code",
            "must not be empty",
            Some("e.g. \"7\" for Russia, \"49\" for Germany"),
        );
    }
    let numbers = NumberPlan {
        country_code,
        national_prefix: digits(v, "pbx.national_prefix", &p.national_prefix, "8"),
        national_length: match p.national_length.unwrap_or(10) {
            n @ 0..=15 => n as usize,
            n => {
                v.err(
                    "pbx.national_length",
                    format!("{n} is not a plausible length"),
                    Some("0..15; 0 = unknown"),
                );
                10
            }
        },
        international_prefix: digits(
            v,
            "pbx.international_prefix",
            &p.international_prefix,
            "810",
        ),
    };
    let mut lost_at_contexts = BTreeMap::new();
    for (ctx, cat) in p.lost_at_contexts.clone().unwrap_or_default() {
        if LOST_AT.contains(&cat.as_str()) {
            lost_at_contexts.insert(ctx, cat);
        } else {
            v.err(
                format!("pbx.lost_at_contexts.{ctx}"),
                format!("unknown category {cat:?}"),
                Some("one of ivr, voicemail, invalid_number, queue, group, external, user"),
            );
        }
    }
    let pbx = PbxConfig {
        numbers,
        inbound_contexts: v.globs(
            "pbx.inbound_contexts",
            &p.inbound_contexts,
            &["from-trunk", "from-pstn", "from-external"],
        ),
        trunk_channels: v.globs("pbx.trunk_channels", &p.trunk_channels, &[]),
        agent_channels: v.globs(
            "pbx.agent_channels",
            &p.agent_channels,
            &["PJSIP/*", "SIP/*", "IAX2/*", "Local/*@from-queue*"],
        ),
        external_channels: v.globs("pbx.external_channels", &p.external_channels, &[]),
        lost_at_contexts,
    };

    // [calls]
    let c = &raw.calls;
    let calls = CallsConfig {
        min_talk: v.duration("calls.min_talk", &c.min_talk, "6s"),
        min_wait: v.duration("calls.min_wait", &c.min_wait, "3s"),
        resolve_within: v.duration("calls.resolve_within", &c.resolve_within, "7d"),
        max_call_duration: v.duration("calls.max_call_duration", &c.max_call_duration, "4h"),
    };
    if calls.max_call_duration < Duration::from_secs(60) {
        v.err(
            "calls.max_call_duration",
            "must be at least 1m",
            Some("calls silent for this long are ended as unknown"),
        );
    }

    // [storage]
    let storage = StorageConfig {
        database: raw
            .storage
            .database
            .as_deref()
            .map(|p| v.resolve_path(p))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATABASE)),
    };

    // [callback]
    let cb = &raw.callback;
    let mode = match cb.mode.as_deref().unwrap_or("customer-first") {
        "customer-first" => CallbackMode::CustomerFirst,
        "agent-first" => CallbackMode::AgentFirst,
        other => {
            v.err(
                "callback.mode",
                format!("unknown mode {other:?}"),
                Some("customer-first or agent-first"),
            );
            CallbackMode::CustomerFirst
        }
    };
    let dial_template = cb
        .dial_template
        .clone()
        .unwrap_or_else(|| "PJSIP/{number}@provider".into());
    if !["{number}", "{e164}", "{national}"]
        .iter()
        .any(|p| dial_template.contains(p))
    {
        v.err(
            "callback.dial_template",
            "does not contain {number}, {e164} or {national}",
            Some("e.g. \"PJSIP/{national}@provider\""),
        );
    }
    if dial_template.contains(['\r', '\n']) {
        v.err("callback.dial_template", "contains a line break", None);
    }
    let target = match &cb.target {
        None => Target::Queue("sales".into()),
        Some(t) => {
            let n = [
                t.context.is_some() || t.exten.is_some(),
                t.queue.is_some(),
                t.endpoint.is_some(),
            ]
            .iter()
            .filter(|x| **x)
            .count();
            if n != 1 {
                v.err(
                    "callback.target",
                    "set exactly one of {context, exten}, queue or endpoint",
                    Some("e.g. target = { queue = \"sales\" }"),
                );
                Target::Queue("sales".into())
            } else if let Some(q) = &t.queue {
                Target::Queue(q.clone())
            } else if let Some(e) = &t.endpoint {
                Target::Endpoint(e.clone())
            } else {
                match (&t.context, &t.exten) {
                    (Some(c), Some(e)) => Target::Dialplan {
                        context: c.clone(),
                        exten: e.clone(),
                        priority: t.priority.unwrap_or(1).clamp(1, i64::from(u32::MAX)) as u32,
                    },
                    _ => {
                        v.err("callback.target", "context and exten go together", None);
                        Target::Queue("sales".into())
                    }
                }
            }
        }
    };
    let wire_ok = |s: &str| !s.is_empty() && !s.contains(['\r', '\n', ',']) && s.len() < 200;
    match &target {
        Target::Dialplan { context, exten, .. } if !(wire_ok(context) && wire_ok(exten)) => v.err(
            "callback.target",
            "context/exten must be short single-line names without commas",
            None,
        ),
        Target::Queue(q) | Target::Endpoint(q) if !wire_ok(q) => v.err(
            "callback.target",
            "must be a short single-line name without commas",
            None,
        ),
        _ => {}
    }
    let caller_id = cb.caller_id.clone().unwrap_or_default();
    if !caller_id.chars().all(|c| c.is_ascii_digit() || c == '+') || caller_id.len() > 32 {
        v.err(
            "callback.caller_id",
            format!("{caller_id:?} must be a phone number"),
            Some("digits and an optional leading +"),
        );
    }
    let caller_name = cb.caller_name.clone().unwrap_or_else(|| "Callback".into());
    if caller_name.contains(['\r', '\n', '"', '<', '>']) || caller_name.len() > 64 {
        v.err(
            "callback.caller_name",
            "must be a short name without quotes, angle brackets or line breaks",
            None,
        );
    }
    let lost_at = cb
        .lost_at
        .clone()
        .unwrap_or_else(|| LOST_AT.iter().map(|s| s.to_string()).collect());
    for (i, l) in lost_at.iter().enumerate() {
        if !LOST_AT.contains(&l.as_str()) {
            v.err(
                format!("callback.lost_at[{i}]"),
                format!("unknown category {l:?}"),
                Some("one of ivr, voicemail, invalid_number, queue, group, external, user"),
            );
        }
    }
    let marker_variable = cb
        .marker_variable
        .clone()
        .unwrap_or_else(|| "PEREZVON_CALLBACK_ID".into());
    if marker_variable.is_empty()
        || !marker_variable
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        v.err(
            "callback.marker_variable",
            format!("{marker_variable:?} is not a channel variable name"),
            Some("letters, digits and _"),
        );
    }
    let agent_context = cb
        .agent_context
        .clone()
        .unwrap_or_else(|| "from-internal".into());
    if !wire_ok(&agent_context) || agent_context.contains(['@', '/']) {
        v.err(
            "callback.agent_context",
            format!("{agent_context:?} is not a dialplan context name"),
            Some("e.g. \"from-internal\""),
        );
    }
    let retry_backoff = cb.retry_backoff.unwrap_or(1.0);
    if !(1.0..=10.0).contains(&retry_backoff) {
        v.err(
            "callback.retry_backoff",
            format!("{retry_backoff} must be between 1.0 and 10.0"),
            Some("1.0 = fixed spacing, 2.0 = doubling"),
        );
    }
    let callback = CallbackConfig {
        enabled: cb.enabled.unwrap_or(false),
        mode,
        server: cb.server.clone(),
        dial_template,
        caller_id,
        caller_name,
        target,
        fallback_queue: cb.target.as_ref().and_then(|t| t.fallback_queue.clone()),
        delay: v.duration("callback.delay", &cb.delay, "1m"),
        max_attempts: v.positive("callback.max_attempts", cb.max_attempts, 3, 100) as u32,
        retry_every: v.duration("callback.retry_every", &cb.retry_every, "10m"),
        retry_busy_every: cb
            .retry_busy_every
            .as_ref()
            .map(|_| v.duration("callback.retry_busy_every", &cb.retry_busy_every, "5m")),
        retry_backoff,
        give_up_after: v.duration("callback.give_up_after", &cb.give_up_after, "24h"),
        originate_timeout: v.duration("callback.originate_timeout", &cb.originate_timeout, "30s"),
        max_concurrent: v.positive("callback.max_concurrent", cb.max_concurrent, 2, 1000) as u32,
        max_concurrent_per_target: v.positive(
            "callback.max_concurrent_per_target",
            cb.max_concurrent_per_target,
            1,
            1000,
        ) as u32,
        require_free_agent: cb.require_free_agent.unwrap_or(true),
        spread: v.duration("callback.spread", &cb.spread, "15m"),
        lost_at,
        // National mobile numbers of the default country (Russia): the toll-fraud guard.
        allow: v.regexes("callback.allow", &cb.allow, &["^79\\d{9}$"]),
        deny: v.regexes("callback.deny", &cb.deny, &[]),
        kind_guard: kind_guard(v, cb),
        marker_variable,
        agent_context,
    };
    if let Some(s) = &callback.server {
        if !asterisk.iter().any(|a| &a.name == s) {
            v.err(
                "callback.server",
                format!("no [[asterisk]] named {s:?}"),
                None,
            );
        }
    }
    if callback.enabled && asterisk.is_empty() {
        v.err(
            "callback.enabled",
            "callbacks need an [[asterisk]] server",
            None,
        );
    }
    if callback.enabled {
        check_toll_fraud_guard(v, &callback.allow, &callback.deny, &callback.kind_guard);
    }
    if callback.enabled && callback.caller_id.is_empty() {
        v.err(
            "callback.caller_id",
            "missing",
            Some("the number customers see, e.g. your main line"),
        );
    }

    // [hours]
    let h = &raw.hours;
    let timezone_name = h.timezone.clone().unwrap_or_else(|| "UTC".into());
    let timezone = match jiff::tz::TimeZone::get(&timezone_name) {
        Ok(tz) => tz,
        Err(_) => {
            v.err(
                "hours.timezone",
                format!("unknown time zone {timezone_name:?}"),
                Some("an IANA name like \"Europe/Moscow\""),
            );
            jiff::tz::TimeZone::UTC
        }
    };
    let days = [
        ("monday", &h.monday),
        ("tuesday", &h.tuesday),
        ("wednesday", &h.wednesday),
        ("thursday", &h.thursday),
        ("friday", &h.friday),
        ("saturday", &h.saturday),
        ("sunday", &h.sunday),
    ];
    let mut week: [Vec<DayRange>; 7] = Default::default();
    for (d, (name, ranges)) in days.iter().enumerate() {
        let default: &[&str] = if d < 5 { &["09:00-18:00"] } else { &[] };
        let ranges: Vec<String> = match ranges {
            Some(r) => (*r).clone(),
            None => default.iter().map(|s| s.to_string()).collect(),
        };
        let mut parsed: Vec<DayRange> = Vec::new();
        for (i, r) in ranges.iter().enumerate() {
            match parse_range(r) {
                Some(dr) => parsed.push(dr),
                None => v.err(
                    format!("hours.{name}[{i}]"),
                    format!("invalid range {r:?}"),
                    Some("\"HH:MM-HH:MM\", start before end, \"00:00-24:00\" for all day"),
                ),
            }
        }
        parsed.sort_by_key(|r| r.start_min);
        if parsed.windows(2).any(|w| w[1].start_min < w[0].end_min) {
            v.err(
                format!("hours.{name}"),
                "ranges overlap",
                Some("list separate ranges, e.g. [\"09:00-13:00\", \"14:00-18:00\"]"),
            );
        }
        week[d] = parsed;
    }
    let dates = |v: &mut V, key: &str, raw: &Option<Vec<String>>| -> Vec<jiff::civil::Date> {
        let mut out = Vec::new();
        for (i, s) in raw.iter().flatten().enumerate() {
            match s.parse::<jiff::civil::Date>() {
                Ok(d) => out.push(d),
                Err(_) => v.err(
                    format!("{key}[{i}]"),
                    format!("invalid date {s:?}"),
                    Some("YYYY-MM-DD"),
                ),
            }
        }
        out
    };
    let hours = HoursConfig {
        timezone,
        timezone_name,
        week,
        holidays: dates(v, "hours.holidays", &h.holidays),
        workdays: dates(v, "hours.workdays", &h.workdays),
    };

    // [notify]
    let events = |v: &mut V, key: &str, raw: &Option<Vec<String>>| -> Vec<String> {
        let e = raw
            .clone()
            .unwrap_or_else(|| NOTIFY_EVENTS.iter().map(|s| s.to_string()).collect());
        for (i, x) in e.iter().enumerate() {
            if !NOTIFY_EVENTS.contains(&x.as_str()) {
                v.err(
                    format!("{key}[{i}]"),
                    format!("unknown event {x:?}"),
                    Some("missed, resolved or callback"),
                );
            }
        }
        e
    };
    let webhook = raw.notify.webhook.as_ref().map(|w| {
        let url = w.url.clone().unwrap_or_default();
        let endpoint = match HttpUrl::parse(&url) {
            Ok(u) => u,
            Err(e) => {
                v.err(
                    "notify.webhook.url",
                    if url.is_empty() { "missing".to_string() } else { e },
                    Some("perezvon posts plain HTTP, e.g. \"http://127.0.0.1:8080/hook\"; put a TLS-terminating proxy (nginx, stunnel) in front of an https receiver"),
                );
                HttpUrl { host: String::new(), port: 80, path: "/".into() }
            }
        };
        let secret = v.optional_secret(
            "notify.webhook",
            &w.secret,
            &w.secret_file,
            &w.secret_env,
        );
        WebhookConfig {
            url,
            endpoint,
            secret,
            events: events(v, "notify.webhook.events", &w.events),
            timeout: v.duration("notify.webhook.timeout", &w.timeout, "10s"),
            retry_every: v.duration("notify.webhook.retry_every", &w.retry_every, "10s"),
            max_retry_every: v.duration("notify.webhook.max_retry_every", &w.max_retry_every, "10m"),
            give_up_after: v.duration("notify.webhook.give_up_after", &w.give_up_after, "3d"),
        }
    });
    let email = raw.notify.email.as_ref().map(|e| {
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
                        && lettre::transport::smtp::client::Certificate::from_pem(&pem)
                            .is_ok() =>
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
            events: events(v, "notify.email.events", &e.events),
            timeout: v.duration("notify.email.timeout", &e.timeout, "30s"),
            helo,
            tls,
            ca,
            auth,
            retry_every: v.duration("notify.email.retry_every", &e.retry_every, "1m"),
            max_retry_every: v.duration("notify.email.max_retry_every", &e.max_retry_every, "30m"),
            give_up_after: v.duration("notify.email.give_up_after", &e.give_up_after, "3d"),
        }
    });

    // [metrics]
    let listen_s = raw
        .metrics
        .listen
        .clone()
        .unwrap_or_else(|| "127.0.0.1:9271".into());
    let listen = match listen_s.parse() {
        Ok(a) => a,
        Err(_) => {
            v.err(
                "metrics.listen",
                format!("{listen_s:?} is not host:port"),
                Some("e.g. \"127.0.0.1:9271\""),
            );
            std::net::SocketAddr::from(([127, 0, 0, 1], 9271))
        }
    };
    let metrics = MetricsConfig {
        enabled: raw.metrics.enabled.unwrap_or(false),
        listen,
    };

    let level = raw.log.level.clone().unwrap_or_else(|| "info".into());
    if !["error", "warn", "info", "debug", "trace"].contains(&level.as_str()) {
        v.err(
            "log.level",
            format!("unknown level {level:?}"),
            Some("error, warn, info, debug or trace"),
        );
    }
    let json = match raw.log.format.as_deref().unwrap_or("text") {
        "text" => false,
        "json" => true,
        other => {
            v.err(
                "log.format",
                format!("unknown format {other:?}"),
                Some("text or json"),
            );
            false
        }
    };

    Config {
        asterisk,
        pbx,
        calls,
        storage,
        callback,
        hours,
        notify: NotifyConfig { webhook, email },
        metrics,
        log: LogConfig { level, json },
        warnings: Vec::new(),
    }
}
