//! Stage 2 of the configuration: raw values -> validated [`Config`], collecting every problem
//! with its key path instead of stopping at the first.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::number::{classify, is_known_country, KindGuard, NumberKind, NumberPlan};

mod asterisk;
mod backfill;
mod callback;
mod calls;
mod cluster;
mod hours;
mod log;
mod metrics;
mod notify;
mod pbx;
mod report;
mod storage;
mod web;

use asterisk::asterisk;
use backfill::backfill;
use callback::{callback, enabled_callback};
use calls::calls;
use cluster::validate_cluster;
use hours::hours;
use log::log;
use metrics::metrics;
use notify::notify;
use pbx::pbx;
use report::report;
use storage::validate_storage;
use web::web;

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

    /// An optional secret from exactly one of `<name>`, `<name>_file`, `<name>_env` under `prefix`.
    fn optional_secret_named(
        &mut self,
        prefix: &str,
        name: &str,
        secret: &Option<String>,
        file: &Option<PathBuf>,
        env: &Option<String>,
    ) -> Option<Secret> {
        let k = |f: &str| format!("{prefix}.{name}{f}");
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
                                    k("_file"),
                                    format!("{} is world-readable", p.display()),
                                    Some("chmod 640 it"),
                                );
                            }
                        }
                        Some(Secret::new(s.trim_end_matches(['\r', '\n']).to_string()))
                    }
                    Err(e) => {
                        self.err(
                            k("_file"),
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
                        k("_env"),
                        format!("environment variable {var:?} is not set"),
                        Some("set it in the unit's Environment= or EnvironmentFile="),
                    );
                    None
                }
            },
            _ => {
                self.err(
                    k(""),
                    format!("{name}, {name}_file and {name}_env are exclusive"),
                    Some("keep one"),
                );
                None
            }
        }
    }

    /// A required secret: like [`V::optional_secret_named`], missing is a problem.
    fn required_secret(
        &mut self,
        prefix: &str,
        name: &str,
        secret: &Option<String>,
        file: &Option<PathBuf>,
        env: &Option<String>,
    ) -> Secret {
        let before = self.problems.len();
        match self.optional_secret_named(prefix, name, secret, file, env) {
            Some(s) if s.expose().is_empty() => {
                self.err(format!("{prefix}.{name}"), "empty", None);
                Secret::default()
            }
            Some(s) if s.expose().contains(['\r', '\n']) => {
                self.err(format!("{prefix}.{name}"), "contains a line break", None);
                Secret::default()
            }
            Some(s) => s,
            None => {
                if self.problems.len() == before {
                    self.err(
                        format!("{prefix}.{name}"),
                        "missing",
                        Some(&format!("set one of {name}, {name}_file or {name}_env")),
                    );
                }
                Secret::default()
            }
        }
    }

    /// An `https://` URL, or `http://` to a loopback host (a receiver on this machine). The URL
    /// is quoted in a problem only when `quote` (a URL may hold a token).
    fn http_url(&mut self, key: &str, raw: Option<&str>, quote: bool) -> Option<reqwest::Url> {
        let Some(s) = raw.filter(|s| !s.is_empty()) else {
            self.err(key, "missing", None);
            return None;
        };
        let shown = if quote {
            format!("{s:?}")
        } else {
            "the URL".to_string()
        };
        let url = match reqwest::Url::parse(s) {
            Ok(u) => u,
            Err(e) => {
                self.err(
                    key,
                    format!("{shown} is not a URL: {e}"),
                    Some("e.g. \"https://crm.example.com/hooks/perezvon\""),
                );
                return None;
            }
        };
        if !url.username().is_empty() || url.password().is_some() {
            self.err(
                key,
                format!("{shown}: credentials in the URL are not supported"),
                Some("use a secret or a header instead"),
            );
            return None;
        }
        match url.scheme() {
            "https" => Some(url),
            "http" if is_loopback(&url) => Some(url),
            "http" => {
                self.err(
                    key,
                    format!("{shown}: plain http:// is allowed only to a loopback host (127.0.0.1, ::1, localhost)"),
                    Some("use https://; add ca_file when the receiver's certificate is from a private CA"),
                );
                None
            }
            other => {
                self.err(
                    key,
                    format!("{shown}: unsupported scheme {other:?}"),
                    Some("https:// (or http:// to 127.0.0.1)"),
                );
                None
            }
        }
    }

    /// `ca_file`, `client_cert` and `client_key` under `prefix`: read, parsed as PEM, and tried
    /// on a TLS client, so a wrong file is reported now with its key.
    fn tls_files(
        &mut self,
        prefix: &str,
        ca_file: &Option<PathBuf>,
        client_cert: &Option<PathBuf>,
        client_key: &Option<PathBuf>,
    ) -> TlsFiles {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let k = |f: &str| format!("{prefix}.{f}");
        let read = |v: &mut V, key: &str, p: &Path| -> Option<Vec<u8>> {
            let p = v.resolve_path(p);
            match std::fs::read(&p) {
                Ok(b) => Some(b),
                Err(e) => {
                    v.err(key, format!("cannot read {}: {e}", p.display()), None);
                    None
                }
            }
        };
        let certs = |v: &mut V, key: &str, pem: &[u8]| -> bool {
            let mut n = 0;
            for c in CertificateDer::pem_slice_iter(pem) {
                if let Err(e) = c {
                    v.err(key, format!("not a PEM certificate file: {e}"), None);
                    return false;
                }
                n += 1;
            }
            if n == 0 {
                v.err(
                    key,
                    "no certificate in the file",
                    Some("a PEM file with -----BEGIN CERTIFICATE----- blocks"),
                );
            }
            n > 0
        };
        let mut tls = TlsFiles::default();
        if let Some(p) = ca_file {
            if let Some(pem) = read(self, &k("ca_file"), p) {
                if certs(self, &k("ca_file"), &pem) {
                    tls.ca_pem = Some(pem);
                }
            }
        }
        match (client_cert, client_key) {
            (None, None) => {}
            (Some(c), Some(key)) => {
                let cert = read(self, &k("client_cert"), c);
                let keyb = read(self, &k("client_key"), key);
                if let (Some(cert), Some(keyb)) = (cert, keyb) {
                    let cert_ok = certs(self, &k("client_cert"), &cert);
                    let key_ok = match PrivateKeyDer::from_pem_slice(&keyb) {
                        Ok(_) => true,
                        Err(_) => {
                            // Never quote the key file's content.
                            self.err(
                                k("client_key"),
                                "no PEM private key in the file",
                                Some("a PKCS#8, PKCS#1 or SEC1 key in PEM, without a passphrase"),
                            );
                            false
                        }
                    };
                    if cert_ok && key_ok {
                        let mut pem = cert;
                        if !pem.ends_with(b"\n") {
                            pem.push(b'\n');
                        }
                        pem.extend_from_slice(&keyb);
                        tls.identity_pem = String::from_utf8(pem).ok().map(Secret::new);
                        if tls.identity_pem.is_none() {
                            self.err(k("client_cert"), "the PEM files are not text", None);
                        }
                    }
                }
            }
            (Some(_), None) => self.err(
                k("client_key"),
                "missing",
                Some("client_cert needs its client_key"),
            ),
            (None, Some(_)) => self.err(
                k("client_cert"),
                "missing",
                Some("client_key needs its client_cert"),
            ),
        }
        if tls != TlsFiles::default() {
            if let Err(e) = crate::notify::http::client(&tls, Duration::from_secs(10)) {
                let key = if tls.identity_pem.is_some() {
                    "client_cert"
                } else {
                    "ca_file"
                };
                self.err(
                    k(key),
                    format!("not usable for TLS: {e}"),
                    Some("check that the key belongs to the certificate"),
                );
                tls = TlsFiles::default();
            }
        }
        tls
    }

    /// The keys every HTTP notifier shares.
    #[allow(clippy::too_many_arguments)]
    fn channel(
        &mut self,
        prefix: &str,
        events: &Option<Vec<String>>,
        language: &Option<String>,
        timeout: &Option<String>,
        retry_every: &Option<String>,
        max_retry_every: &Option<String>,
        give_up_after: &Option<String>,
        tls: TlsFiles,
    ) -> ChannelConfig {
        let k = |f: &str| format!("{prefix}.{f}");
        let language = match language.as_deref().unwrap_or("ru") {
            "ru" => Language::Ru,
            "en" => Language::En,
            other => {
                self.err(
                    k("language"),
                    format!("unknown language {other:?}"),
                    Some("ru or en"),
                );
                Language::Ru
            }
        };
        ChannelConfig {
            events: notify_events(self, &k("events"), events),
            language,
            timeout: self.duration(&k("timeout"), timeout, "10s"),
            retry_every: self.duration(&k("retry_every"), retry_every, "30s"),
            max_retry_every: self.duration(&k("max_retry_every"), max_retry_every, "15m"),
            give_up_after: self.duration(&k("give_up_after"), give_up_after, "3d"),
            tls,
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

/// Whether a URL's host is this machine (plain http:// is allowed only there).
fn is_loopback(url: &reqwest::Url) -> bool {
    url.host_str().is_some_and(is_loopback_host)
}

/// The `events` list of a channel: default all, each one known.
fn notify_events(v: &mut V, key: &str, raw: &Option<Vec<String>>) -> Vec<String> {
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
    (["secret", "password", "passwd", "token"]
        .iter()
        .any(|w| last.contains(w))
        // A Bitrix24 inbound webhook URL holds its token; header values hold API keys.
        || last == "webhook_url"
        || last == "headers")
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

/// Every section in turn, then what one section needs of another. The order is the order of
/// the problems in the report.
pub(super) fn validate(raw: RawConfig, v: &mut V) -> Config {
    let asterisk = asterisk(v, &raw.asterisk);
    let pbx = pbx(v, &raw.pbx);
    let calls = calls(v, &raw.calls);
    let storage = validate_storage(v, &raw.storage, &raw.web);
    let cluster = validate_cluster(v, &raw.cluster);
    let callback = callback(v, &raw.callback);
    callback_against_servers(v, &callback, &asterisk);
    enabled_callback(v, &callback);
    let hours = hours(v, &raw.hours);
    let notify = notify(v, &raw.notify);
    let metrics = metrics(v, &raw.metrics);
    let log = log(v, &raw.log);
    let web = web(v, &raw.web);
    let backfill = backfill(v, &raw.backfill, &raw.asterisk, &asterisk, &hours.timezone);
    let report = report(v, &raw.report, raw.notify.email.is_some());

    Config {
        asterisk,
        pbx,
        calls,
        storage,
        cluster,
        callback,
        hours,
        notify,
        metrics,
        log,
        web,
        backfill,
        report,
        warnings: Vec::new(),
    }
}

/// Cross-section: `callback.server` names an `[[asterisk]]` server, and enabled callbacks have
/// one to be placed on.
fn callback_against_servers(v: &mut V, callback: &CallbackConfig, asterisk: &[AsteriskConfig]) {
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
}
