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

/// A calling window: one or more `"HH:MM-HH:MM"` ranges, sorted, not overlapping.
fn window(v: &mut V, key: &str, raw: Vec<String>) -> Vec<DayRange> {
    let mut out = Vec::new();
    if raw.is_empty() {
        v.err(key, "empty window", Some("e.g. \"09:00-21:00\""));
    }
    for (i, r) in raw.iter().enumerate() {
        match parse_range(r) {
            Some(d) => out.push(d),
            None => v.err(
                if raw.len() == 1 {
                    key.to_string()
                } else {
                    format!("{key}[{i}]")
                },
                format!("invalid range {r:?}"),
                Some("\"HH:MM-HH:MM\", start before end, e.g. \"09:00-21:00\""),
            ),
        }
    }
    out.sort_by_key(|r| r.start_min);
    if out.windows(2).any(|w| w[1].start_min < w[0].end_min) {
        v.err(key, "ranges overlap", None);
    }
    out
}

/// `customer_zones`: digit prefixes of normalised numbers -> IANA zones, longest first.
fn customer_zones(
    v: &mut V,
    raw: Option<&BTreeMap<String, String>>,
) -> Vec<(String, jiff::tz::TimeZone, String)> {
    let mut out = Vec::new();
    for (prefix, zone) in raw.into_iter().flatten() {
        let key = format!("callback.customer_zones.{prefix}");
        if prefix.is_empty() || prefix.len() > 15 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            v.err(
                &key,
                format!("{prefix:?} is not a number prefix"),
                Some("digits of the normalised number, country code first, e.g. \"7914\""),
            );
            continue;
        }
        match jiff::tz::TimeZone::get(zone) {
            Ok(tz) => out.push((prefix.clone(), tz, zone.clone())),
            Err(_) => v.err(
                &key,
                format!("unknown time zone {zone:?}"),
                Some("an IANA name like \"Asia/Vladivostok\""),
            ),
        }
    }
    out.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
    out
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

    let storage = validate_storage(v, &raw.storage, &raw.web);
    let cluster = validate_cluster(v, &raw.cluster);

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
        request: request_settings(v, cb),
        max_per_number_24h: cb
            .max_per_number_24h
            .map(|n| v.positive("callback.max_per_number_24h", Some(n), 3, 1000) as u32),
        max_per_number_day: cb
            .max_per_number_day
            .map(|n| v.positive("callback.max_per_number_day", Some(n), 3, 1000) as u32),
        customer_hours: cb
            .customer_hours
            .clone()
            .map(|w| window(v, "callback.customer_hours", w.into_vec())),
        customer_hours_weekend: cb
            .customer_hours_weekend
            .clone()
            .map(|w| window(v, "callback.customer_hours_weekend", w.into_vec())),
        customer_unknown_region: match cb.customer_unknown_region.as_deref() {
            None | Some("all_zones") => UnknownRegion::AllZones,
            Some("business_zone") => UnknownRegion::BusinessZone,
            Some(other) => {
                v.err(
                    "callback.customer_unknown_region",
                    format!("unknown rule {other:?}"),
                    Some("\"all_zones\" (the window must hold in every zone of the country) or \"business_zone\""),
                );
                UnknownRegion::AllZones
            }
        },
        customer_unknown_country: match cb.customer_unknown_country.as_deref() {
            None | Some("business_zone") => UnknownCountry::BusinessZone,
            Some("never") => UnknownCountry::Never,
            Some(other) => {
                v.err(
                    "callback.customer_unknown_country",
                    format!("unknown rule {other:?}"),
                    Some("\"business_zone\" or \"never\""),
                );
                UnknownCountry::BusinessZone
            }
        },
        customer_zones: customer_zones(v, cb.customer_zones.as_ref()),
        expire_after: cb
            .expire_after
            .as_ref()
            .map(|_| v.duration("callback.expire_after", &cb.expire_after, "3d")),
        expire_at_close: cb.expire_at_close.unwrap_or(false),
        queue_reserve: match cb.queue_reserve {
            None => 0,
            Some(n) if (0..=1000).contains(&n) => n as u32,
            Some(n) => {
                v.err(
                    "callback.queue_reserve",
                    format!("must be between 0 and 1000, got {n}"),
                    Some("agents of each queue kept free for inbound callers"),
                );
                0
            }
        },
        queue_reserves: cb
            .queue_reserves
            .iter()
            .flatten()
            .filter_map(|(q, n)| {
                if !(0..=1000).contains(n) {
                    v.err(
                        format!("callback.queue_reserves.{q}"),
                        format!("must be between 0 and 1000, got {n}"),
                        None,
                    );
                    return None;
                }
                Some((q.clone(), *n as u32))
            })
            .collect(),
    };
    if callback.customer_hours.is_none() {
        for (key, set) in [
            (
                "callback.customer_hours_weekend",
                cb.customer_hours_weekend.is_some(),
            ),
            ("callback.customer_zones", cb.customer_zones.is_some()),
            (
                "callback.customer_unknown_region",
                cb.customer_unknown_region.is_some(),
            ),
            (
                "callback.customer_unknown_country",
                cb.customer_unknown_country.is_some(),
            ),
        ] {
            if set {
                v.warn(
                    key,
                    "has no effect without callback.customer_hours",
                    Some("set customer_hours = \"09:00-21:00\" to call within the customer's own hours"),
                );
            }
        }
    }
    if let (Some(a), Some(b)) = (callback.max_per_number_24h, callback.max_per_number_day) {
        if b > a {
            v.warn(
                "callback.max_per_number_day",
                format!("{b} per day can never be reached under max_per_number_24h = {a}"),
                None,
            );
        }
    }
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
    let events = notify_events;
    let webhook = raw.notify.webhook.as_ref().map(|w| {
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
            events: events(v, "notify.webhook.events", &w.events),
            timeout: v.duration("notify.webhook.timeout", &w.timeout, "10s"),
            retry_every: v.duration("notify.webhook.retry_every", &w.retry_every, "10s"),
            max_retry_every: v.duration(
                "notify.webhook.max_retry_every",
                &w.max_retry_every,
                "10m",
            ),
            give_up_after: v.duration("notify.webhook.give_up_after", &w.give_up_after, "3d"),
            tls,
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

    let bitrix24 = raw.notify.bitrix24.as_ref().map(|b| bitrix24(v, b));
    let amocrm = raw.notify.amocrm.as_ref().map(|a| amocrm(v, a));
    let telegram = raw.notify.telegram.as_ref().map(|t| telegram(v, t));
    let mut http: Vec<HttpNotifierConfig> = Vec::new();
    for (i, h) in raw.notify.http.iter().flatten().enumerate() {
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

    let web = web(v, &raw.web);
    // [backfill]
    let bf = &raw.backfill;
    let backfill_timezone = match bf.timezone.as_deref() {
        None => hours.timezone.clone(),
        Some(name) => match jiff::tz::TimeZone::get(name) {
            Ok(tz) => tz,
            Err(_) => {
                v.err(
                    "backfill.timezone",
                    format!("unknown time zone {name:?}"),
                    Some("an IANA name like \"Europe/Moscow\" or \"UTC\" (usegmtime = yes)"),
                );
                jiff::tz::TimeZone::UTC
            }
        },
    };
    if let Some(name) = &bf.server {
        if !asterisk.is_empty() && !asterisk.iter().any(|a| a.name == *name) {
            v.err(
                "backfill.server",
                format!("no [[asterisk]] server is named {name:?}"),
                Some("the name of the server whose CDR and queue_log these are"),
            );
        }
    }
    for (key, path) in [
        ("backfill.cdr", &bf.cdr),
        ("backfill.queue_log", &bf.queue_log),
    ] {
        if path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            v.err(key, "is empty", Some("a file path, or leave the key out"));
        }
    }
    let backfill = BackfillConfig {
        cdr: bf
            .cdr
            .as_deref()
            .filter(|p| !p.as_os_str().is_empty())
            .map(|p| v.resolve_path(p)),
        queue_log: bf
            .queue_log
            .as_deref()
            .filter(|p| !p.as_os_str().is_empty())
            .map(|p| v.resolve_path(p)),
        server: bf.server.clone(),
        timezone: backfill_timezone,
        max_gap: v.duration("backfill.max_gap", &bf.max_gap, "7d"),
        per_server: raw
            .asterisk
            .iter()
            .zip(&asterisk)
            .filter(|(r, _)| r.backfill_cdr.is_some() || r.backfill_queue_log.is_some())
            .map(|(r, a)| {
                (
                    a.name.clone(),
                    r.backfill_cdr.as_deref().map(|p| v.resolve_path(p)),
                    r.backfill_queue_log.as_deref().map(|p| v.resolve_path(p)),
                )
            })
            .collect(),
        first_server: asterisk.first().map(|a| a.name.clone()),
    };
    let report = report(v, &raw.report, raw.notify.email.is_some());

    Config {
        asterisk,
        pbx,
        calls,
        storage,
        cluster,
        callback,
        hours,
        notify: NotifyConfig {
            webhook,
            email,
            bitrix24,
            amocrm,
            telegram,
            http,
        },
        metrics,
        log: LogConfig { level, json },
        web,
        backfill,
        report,
        warnings: Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// [web]: the console.
// ---------------------------------------------------------------------------------------------

/// A `[[web.users]]` name: what a person types at the login form.
fn valid_user_name(n: &str) -> bool {
    !n.is_empty()
        && n.chars().count() <= 64
        && n.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

fn web(v: &mut V, raw: &RawWeb) -> WebConfig {
    let listen = raw
        .listen
        .as_deref()
        .and_then(|s| match s.parse::<std::net::SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                v.err(
                    "web.listen",
                    format!("{s:?} is not host:port"),
                    Some("e.g. \"127.0.0.1:8088\""),
                );
                None
            }
        });
    let session_ttl = v.duration("web.session_ttl", &raw.session_ttl, "12h");
    if !(Duration::from_secs(60)..=Duration::from_secs(30 * 86_400)).contains(&session_ttl) {
        v.err(
            "web.session_ttl",
            "must be between 1 minute and 30 days",
            Some("e.g. \"12h\" (a working day)"),
        );
    }
    let secret_file = raw.secret_file.as_ref().map(|p| v.resolve_path(p));
    if let Some(p) = &secret_file {
        // Read at load, so a wrong path is a configuration error, not a console that is
        // silently off after a restart.
        match std::fs::read(p) {
            Ok(b) if b.len() < 32 => v.err(
                "web.secret_file",
                format!("{} holds {} bytes; the key needs at least 32", p.display(), b.len()),
                Some("head -c 32 /dev/urandom > FILE; chmod 600 FILE"),
            ),
            Ok(_) => {
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    if std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o004 != 0) {
                        v.warn(
                            "web.secret_file",
                            format!("{} is world-readable: anyone who reads it can forge a console session", p.display()),
                            Some("chmod 600 it (owned by the perezvon user)"),
                        );
                    }
                }
            }
            Err(e) => v.err(
                "web.secret_file",
                format!("cannot read {}: {e}", p.display()),
                Some("remove the key to use console.key beside the database, created at the first start"),
            ),
        }
    }
    let mut users: Vec<WebUser> = Vec::new();
    for (i, u) in raw.users.iter().flatten().enumerate() {
        let key = |k: &str| format!("web.users[{i}].{k}");
        let name = u.name.clone().unwrap_or_default();
        if name.is_empty() {
            v.err(
                key("name"),
                "missing",
                Some("the login name, e.g. \"olga\""),
            );
        } else if !valid_user_name(&name) {
            v.err(
                key("name"),
                format!("{name:?} is not a login name"),
                Some("up to 64 letters, digits and . _ - @"),
            );
        } else if users.iter().any(|x| x.name == name) {
            v.err(
                key("name"),
                format!("duplicate user {name:?}"),
                Some("every [[web.users]] needs its own name"),
            );
        }
        let hash = u.password_hash.clone().unwrap_or_default();
        if hash.is_empty() {
            v.err(
                key("password_hash"),
                "missing",
                Some("print one with: echo -n PASSWORD | perezvon passwd"),
            );
        } else {
            match argon2::PasswordHash::new(&hash) {
                Ok(h) if h.algorithm.as_str().starts_with("argon2") && h.hash.is_some() => {}
                _ => v.err(
                    key("password_hash"),
                    "not an argon2 password hash",
                    Some("it starts with $argon2id$; print one with: echo -n PASSWORD | perezvon passwd"),
                ),
            }
        }
        let role = match u.role.as_deref().unwrap_or("viewer") {
            "viewer" => WebRole::Viewer,
            "supervisor" => WebRole::Supervisor,
            other => {
                v.err(
                    key("role"),
                    format!("unknown role {other:?}"),
                    Some("viewer (looks) or supervisor (also calls back, cancels, retries)"),
                );
                WebRole::Viewer
            }
        };
        users.push(WebUser {
            name,
            password_hash: hash,
            role,
        });
    }
    if listen.is_some() && users.is_empty() {
        v.err(
            "web.users",
            "the console is on (web.listen) but has no users",
            Some("add a [[web.users]] with name, password_hash and role"),
        );
    }
    if let Some(a) = listen {
        if !a.ip().is_loopback() && !raw.https.unwrap_or(false) {
            v.warn(
                "web.listen",
                format!("the console listens on {a} over plain HTTP: passwords and sessions cross the network in clear"),
                Some("listen on 127.0.0.1 behind a TLS proxy and set web.https = true"),
            );
        }
    }
    WebConfig {
        listen,
        secret_file,
        session_ttl,
        https: raw.https.unwrap_or(false),
        users,
    }
}

// --- [report] (the reporting work) ---------------------------------------------------------

/// `[report]` and `[report.email]`; `relay` says whether `[notify.email]` is configured (the
/// scheduled report is sent through it).
fn report(v: &mut V, r: &RawReport, relay: bool) -> ReportConfig {
    let service_level = v.duration("report.service_level", &r.service_level, "20s");
    let service_level = if service_level.is_zero() || service_level > Duration::from_secs(3600) {
        v.err(
            "report.service_level",
            format!(
                "{} is out of range",
                humantime::format_duration(service_level)
            ),
            Some("between 1s and 1h; call centres usually use \"20s\""),
        );
        Duration::from_secs(20)
    } else {
        service_level
    };
    let email = r.email.as_ref().map(|e| {
        let to = e.to.clone().unwrap_or_default();
        if to.is_empty() {
            v.err(
                "report.email.to",
                "no recipients",
                Some("to = [\"manager@example.com\"]"),
            );
        }
        for (i, t) in to.iter().enumerate() {
            if t.parse::<lettre::Address>().is_err() {
                v.err(
                    format!("report.email.to[{i}]"),
                    format!("{t:?} is not an e-mail address"),
                    None,
                );
            }
        }
        let daily = e.daily.as_deref().and_then(|d| {
            let m = parse_hhmm(d, false);
            if m.is_none() {
                v.err(
                    "report.email.daily",
                    format!("{d:?} is not a time of day"),
                    Some("HH:MM, e.g. \"08:00\""),
                );
            }
            m
        });
        let weekly = e.weekly.as_deref().and_then(|w| {
            let parsed = w
                .trim()
                .split_once(' ')
                .and_then(|(d, t)| Some((weekday(d)?, parse_hhmm(t, false)?)));
            if parsed.is_none() {
                v.err(
                    "report.email.weekly",
                    format!("{w:?} is not a weekday and a time"),
                    Some("e.g. \"mon 08:00\" (mon, tue, wed, thu, fri, sat, sun)"),
                );
            }
            parsed
        });
        if e.daily.is_none() && e.weekly.is_none() {
            v.err(
                "report.email",
                "neither daily nor weekly is set",
                Some("daily = \"08:00\" mails yesterday's report, weekly = \"mon 08:00\" last week's"),
            );
        }
        if !relay {
            v.err(
                "report.email",
                "needs [notify.email]",
                Some("the report is sent through the relay of [notify.email] (smtp_host, from, tls)"),
            );
        }
        let lang = match e.lang.as_deref() {
            None => crate::lang::Lang::En,
            Some(l) => crate::lang::Lang::parse(l).unwrap_or_else(|| {
                v.err(
                    "report.email.lang",
                    format!("{l:?} is not a language of the report"),
                    Some("\"en\" or \"ru\""),
                );
                crate::lang::Lang::En
            }),
        };
        ReportEmailConfig {
            to,
            daily,
            weekly,
            lang,
        }
    });
    ReportConfig {
        service_level,
        email,
    }
}

/// `mon`..`sun`, or the full English name, any case.
fn weekday(s: &str) -> Option<jiff::civil::Weekday> {
    use jiff::civil::Weekday as W;
    let s = s.trim().to_ascii_lowercase();
    let all = [
        ("monday", W::Monday),
        ("tuesday", W::Tuesday),
        ("wednesday", W::Wednesday),
        ("thursday", W::Thursday),
        ("friday", W::Friday),
        ("saturday", W::Saturday),
        ("sunday", W::Sunday),
    ];
    all.iter()
        .find(|(name, _)| s.len() >= 3 && name.starts_with(s.as_str()))
        .map(|(_, d)| *d)
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

// --- issue 14 (request): requested and owned callbacks, announcement, dispositions, DNC ---

/// A sound name for Playback()/Queue()/Dial(A()): a path under the sounds directory, no
/// extension, nothing the application arguments or the wire would split on.
fn sound_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 200
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '.' | '&'))
        && !s.contains("..")
}

fn request_settings(v: &mut V, cb: &RawCallback) -> crate::config::RequestSettings {
    let d = crate::config::RequestSettings::default();
    let owner_wait = cb
        .owner_wait
        .as_ref()
        .map(|_| v.duration("callback.owner_wait", &cb.owner_wait, "10m"))
        .filter(|w| !w.is_zero());
    let owner_endpoint = cb.owner_endpoint.clone().unwrap_or(d.owner_endpoint);
    if !owner_endpoint.contains("{agent}") || !wire_ok(&owner_endpoint) {
        v.err(
            "callback.owner_endpoint",
            format!("{owner_endpoint:?} must name the agent's endpoint with {{agent}}"),
            Some("e.g. \"PJSIP/{agent}\""),
        );
    }
    let mut sound = |key: &str, raw: &Option<String>| -> Option<String> {
        let s = raw.clone()?;
        if !sound_ok(&s) {
            v.err(
                key,
                format!("{s:?} is not a sound name"),
                Some("a file under the sounds directory without extension, e.g. \"perezvon/missed-caller\""),
            );
        }
        Some(s)
    };
    let announce = sound("callback.announce", &cb.announce);
    let customer_prompt = sound("callback.customer_prompt", &cb.customer_prompt);
    let agent_caller_name = cb.agent_caller_name.clone();
    if let Some(n) = &agent_caller_name {
        if n.is_empty() || n.len() > 80 || !wire_ok(n) {
            v.err(
                "callback.agent_caller_name",
                format!("{n:?} is not a usable caller name (1-80 characters, one line)"),
                Some("e.g. \"{number} missed {count}x\""),
            );
        }
    }
    let dnc_file = cb.dnc_file.as_ref().map(std::path::PathBuf::from);
    if let Some(p) = &dnc_file {
        if p.as_os_str().is_empty() {
            v.err("callback.dnc_file", "empty path", None);
        }
    }
    crate::config::RequestSettings {
        owner_wait,
        owner_endpoint,
        announce,
        customer_prompt,
        agent_caller_name,
        dnc_file,
        call_later_after: v.duration("callback.call_later_after", &cb.call_later_after, "2h"),
    }
}

/// One line, no comma (Asterisk splits application arguments and Variable values on it).
fn wire_ok(s: &str) -> bool {
    !s.is_empty() && !s.contains(['\r', '\n', ',', '"']) && s.len() < 200
}

/// `[storage]`: the SQLite file or the PostgreSQL URL, and retention.
fn validate_storage(v: &mut V, raw: &RawStorage, web: &RawWeb) -> StorageConfig {
    let database = raw
        .database
        .as_deref()
        .map(|p| v.resolve_path(p))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATABASE));
    let url = match (&raw.url, &raw.url_file) {
        (Some(u), None) => Some(u.trim().to_string()),
        (None, Some(p)) => {
            let p = v.resolve_path(p);
            match std::fs::read_to_string(&p) {
                Ok(s) => Some(s.trim().to_string()),
                Err(e) => {
                    v.err(
                        "storage.url_file",
                        format!("cannot read {}: {e}", p.display()),
                        Some("a file holding one postgres:// URL"),
                    );
                    None
                }
            }
        }
        (Some(_), Some(_)) => {
            v.err(
                "storage.url",
                "url and url_file are exclusive",
                Some("keep the URL with its password in url_file only"),
            );
            None
        }
        (None, None) => None,
    };
    let location = match url {
        Some(u) => {
            if raw.database.is_some() {
                v.err(
                    "storage.database",
                    "database (SQLite) and url (PostgreSQL) are exclusive",
                    Some("keep one of them"),
                );
            }
            match crate::store::Location::parse(&u) {
                crate::store::Location::Postgres(_) if crate::store::pg_config(&u).is_ok() => {
                    crate::store::Location::Postgres(u)
                }
                crate::store::Location::Postgres(_) => {
                    let why = crate::store::pg_config(&u).err().unwrap_or_default();
                    v.err(
                        "storage.url",
                        format!("not a PostgreSQL URL perezvon can use: {why}"),
                        Some("e.g. postgres://perezvon@/perezvon?host=/run/postgresql"),
                    );
                    crate::store::Location::Sqlite(database.clone())
                }
                crate::store::Location::Sqlite(_) => {
                    v.err(
                        "storage.url",
                        "must start with postgres:// or postgresql://",
                        Some("for SQLite set storage.database instead"),
                    );
                    crate::store::Location::Sqlite(database.clone())
                }
            }
        }
        None => crate::store::Location::Sqlite(database.clone()),
    };
    if location.is_postgres() && web.listen.is_some() && web.secret_file.is_none() {
        v.err(
            "web.secret_file",
            "is required with storage.url: there is no directory beside a PostgreSQL database for console.key",
            Some("head -c 32 /dev/urandom > /etc/perezvon/console.key; the same file on every node"),
        );
    }
    let keep_calls = raw
        .keep_calls
        .as_ref()
        .map(|_| v.duration("storage.keep_calls", &raw.keep_calls, "400d"));
    if keep_calls.is_some_and(|d| d < Duration::from_secs(86_400)) {
        v.err(
            "storage.keep_calls",
            "must be at least 1d",
            Some("calls younger than this are kept; write it like \"400d\""),
        );
    }
    StorageConfig {
        database: location.as_arg(),
        location,
        keep_calls,
    }
}

/// `[cluster]`: the node's name (default: the host name) and the lease TTL.
fn validate_cluster(v: &mut V, raw: &RawCluster) -> ClusterConfig {
    let node_id = match &raw.node_id {
        Some(n) => {
            let n = n.trim().to_string();
            if n.is_empty()
                || n.len() > 64
                || !n
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            {
                v.err(
                    "cluster.node_id",
                    "must be 1-64 characters of letters, digits, '.', '-' or '_'",
                    Some("unique per node, e.g. \"node-a\""),
                );
            }
            n
        }
        None => default_node_id(),
    };
    let lease_ttl = v.duration("cluster.lease_ttl", &raw.lease_ttl, "6s");
    if !(Duration::from_secs(2)..=Duration::from_secs(120)).contains(&lease_ttl) {
        v.err(
            "cluster.lease_ttl",
            "must be between 2s and 2m",
            Some("leases are renewed every second; a dead node's servers move after this long"),
        );
    }
    ClusterConfig { node_id, lease_ttl }
}

/// The host name (the kernel's), else "perezvon".
pub(crate) fn default_node_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "perezvon".to_string())
}
