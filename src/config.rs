//! Configuration in two stages: [`RawConfig`] is exactly what serde reads from TOML (unknown keys
//! are errors), [`Config`] is what the program uses, with durations parsed, patterns compiled and
//! secrets resolved. [`Config::from_toml`] reports every problem at once, each as
//! `section.key: what is wrong (hint)`, so an admin fixes the file in one pass.
//!
//! - `raw`: the serde structs (stage 1).
//! - `validate`: stage 2, every check with its key path.
//! - [`schema`]: the key list derived from the serde structs (unknown keys, did-you-mean, and the
//!   test that `config.example.toml` documents every key).
//! - this file: the validated types, loading, and the embedded lab default.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::number::NumberPlan;

mod raw;
pub mod schema;
pub mod servers_d;
#[cfg(test)]
mod tests;
mod validate;

pub use raw::*;
pub use validate::parse_range;
use validate::{toml_problem, validate, V};

/// Exit code for a bad configuration (sysexits `EX_CONFIG`).
pub const EXIT_CONFIG: i32 = 78;

/// One problem found in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted path of the key, e.g. `callback.retry_every` or `asterisk[0].secret`.
    pub key: String,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)?;
        if let Some(h) = &self.hint {
            write!(f, " ({h})")?;
        }
        Ok(())
    }
}

/// Every problem of a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub source_name: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} problem{}",
            self.source_name,
            self.problems.len(),
            if self.problems.len() == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// The AMI secret. Its `Debug` and `Display` print `***`: it never reaches a log line.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    /// The only way to read the secret: at the point of use (Login).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

// ---------------------------------------------------------------------------------------------
// Stage 2: validated.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthType {
    Md5,
    Plain,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AsteriskConfig {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub username: String,
    pub secret: Secret,
    pub auth: AuthType,
    pub events: String,
    pub connect_timeout: Duration,
    pub action_timeout: Duration,
    pub ping_interval: Duration,
    pub max_message: usize,
    pub reconnect_max: Duration,
}

#[derive(Debug, Clone)]
pub struct PbxConfig {
    pub numbers: NumberPlan,
    pub inbound_contexts: Vec<String>,
    pub trunk_channels: Vec<String>,
    pub agent_channels: Vec<String>,
    pub external_channels: Vec<String>,
    /// Context name (exact) -> lost_at category.
    pub lost_at_contexts: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct CallsConfig {
    pub min_talk: Duration,
    pub min_wait: Duration,
    pub resolve_within: Duration,
    pub max_call_duration: Duration,
}

#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// Where the store lives: the SQLite file (`database`) or a PostgreSQL URL (`url`,
    /// `url_file`).
    pub location: crate::store::Location,
    /// What opens the store, as `--db` takes it: the SQLite file (`database`), or the
    /// PostgreSQL URL (`url`, `url_file`) in a path ([`crate::store::Store::open`] tells them
    /// apart). Files kept beside a SQLite database (the console's key) live beside this path.
    pub database: PathBuf,
    /// `storage.keep_calls`: retention of calls and closed tasks; `None` keeps everything.
    pub keep_calls: Option<Duration>,
}

/// `[cluster]`: several perezvon nodes sharing one PostgreSQL (docs/SCALE.md).
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `cluster.node_id`: unique per node (default: the host name).
    pub node_id: String,
    /// `cluster.lease_ttl`: how long a server's lease lives unrenewed (default 6 s).
    pub lease_ttl: Duration,
}

/// `[backfill]`: Asterisk's CDR and queue_log, read after a gap in the AMI stream.
#[derive(Debug, Clone)]
pub struct BackfillConfig {
    pub cdr: Option<PathBuf>,
    pub queue_log: Option<PathBuf>,
    /// The `[[asterisk]]` server the files belong to (default: the first).
    pub server: Option<String>,
    /// The zone of the CDR's dates.
    pub timezone: jiff::tz::TimeZone,
    pub max_gap: Duration,
    /// `[[asterisk]] backfill_cdr` / `backfill_queue_log`: (server, cdr, queue_log).
    pub per_server: Vec<(String, Option<PathBuf>, Option<PathBuf>)>,
    /// The first `[[asterisk]]` name (what `server` defaults to).
    pub first_server: Option<String>,
}

impl BackfillConfig {
    /// Whether anything is configured to backfill from.
    pub fn enabled(&self) -> bool {
        self.cdr.is_some() || self.queue_log.is_some() || !self.per_server.is_empty()
    }

    /// The files of `server`: its own `backfill_cdr`/`backfill_queue_log`, else `[backfill]`
    /// `cdr`/`queue_log` when it is `backfill.server` (default: the first server).
    pub fn files_for(&self, server: &str) -> Option<(Option<&Path>, Option<&Path>)> {
        if let Some((_, c, q)) = self.per_server.iter().find(|(s, _, _)| s == server) {
            return Some((c.as_deref(), q.as_deref()));
        }
        let mine = self.server.as_deref().or(self.first_server.as_deref()) == Some(server);
        (mine && (self.cdr.is_some() || self.queue_log.is_some()))
            .then_some((self.cdr.as_deref(), self.queue_log.as_deref()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackMode {
    CustomerFirst,
    AgentFirst,
}

/// Where an answered callback is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An explicit dialplan location.
    Dialplan {
        context: String,
        exten: String,
        priority: u32,
    },
    /// A queue (or group) by name: `Application: Queue`.
    Queue(String),
    /// One agent endpoint, e.g. `PJSIP/201`: `Application: Dial`.
    Endpoint(String),
}

impl Target {
    /// A short stable name, used for per-target concurrency and in reports.
    pub fn key(&self) -> String {
        match self {
            Target::Dialplan { context, exten, .. } => format!("{exten}@{context}"),
            Target::Queue(q) => format!("queue:{q}"),
            Target::Endpoint(e) => e.clone(),
        }
    }
}

pub const LOST_AT: [&str; 7] = [
    "ivr",
    "voicemail",
    "invalid_number",
    "queue",
    "group",
    "external",
    "user",
];

#[derive(Debug, Clone)]
pub struct CallbackConfig {
    pub enabled: bool,
    pub mode: CallbackMode,
    /// `[[asterisk]]` name to originate on (default: the first).
    pub server: Option<String>,
    pub dial_template: String,
    pub caller_id: String,
    pub caller_name: String,
    pub target: Target,
    pub fallback_queue: Option<String>,
    pub delay: Duration,
    pub max_attempts: u32,
    pub retry_every: Duration,
    /// Spacing after a `busy` outcome (the customer is on another call: try again soon);
    /// `None`: the normal spacing.
    pub retry_busy_every: Option<Duration>,
    pub retry_backoff: f64,
    pub give_up_after: Duration,
    pub originate_timeout: Duration,
    pub max_concurrent: u32,
    pub max_concurrent_per_target: u32,
    pub require_free_agent: bool,
    /// Misses waiting at the opening are spread over this window.
    pub spread: Duration,
    pub lost_at: Vec<String>,
    pub allow: Vec<regex::Regex>,
    pub deny: Vec<regex::Regex>,
    /// `allow_kinds` and `allow_countries`: checked after `allow` and `deny`.
    pub kind_guard: crate::number::KindGuard,
    pub marker_variable: String,
    /// agent-first + queue target: `Local/<queue>@<agent_context>` is rung first.
    pub agent_context: String,
    /// Issue 14 (request): requested and owned callbacks, announcement, dispositions, DNC.
    pub request: RequestSettings,
    // --- guard (issue 14) ---
    /// Callback calls to one number in any rolling 24 h (`None`: no cap).
    pub max_per_number_24h: Option<u32>,
    /// Callback calls to one number per calendar day of `hours.timezone`.
    pub max_per_number_day: Option<u32>,
    /// The window on the customer's clock, Monday to Friday (`None`: no such window).
    pub customer_hours: Option<Vec<DayRange>>,
    /// Saturday and Sunday (`None`: as `customer_hours`).
    pub customer_hours_weekend: Option<Vec<DayRange>>,
    pub customer_unknown_region: UnknownRegion,
    pub customer_unknown_country: UnknownCountry,
    /// `customer_zones`: (prefix, zone, zone name), longest prefix first.
    pub customer_zones: Vec<(String, jiff::tz::TimeZone, String)>,
    pub expire_after: Option<Duration>,
    pub expire_at_close: bool,
    pub queue_reserve: u32,
    pub queue_reserves: std::collections::HashMap<String, u32>,
}

/// The `[callback]` keys of requested and owned callbacks, the agent's announcement,
/// dispositions and the do-not-call list (docs/CALLBACKS.md, "Requested and owned callbacks").
#[derive(Debug, Clone, PartialEq)]
pub struct RequestSettings {
    /// `owner_wait`: attempts wait this long for the customer's own agent; `None`: owned
    /// callbacks are off.
    pub owner_wait: Option<Duration>,
    /// `owner_endpoint`, with `{agent}`.
    pub owner_endpoint: String,
    pub announce: Option<String>,
    pub customer_prompt: Option<String>,
    pub agent_caller_name: Option<String>,
    pub dnc_file: Option<std::path::PathBuf>,
    pub call_later_after: Duration,
}

impl Default for RequestSettings {
    fn default() -> RequestSettings {
        RequestSettings {
            owner_wait: None,
            owner_endpoint: "PJSIP/{agent}".into(),
            announce: None,
            customer_prompt: None,
            agent_caller_name: None,
            dnc_file: None,
            call_later_after: Duration::from_secs(2 * 3600),
        }
    }
}

/// `callback.customer_unknown_region`: a number of a multi-zone country whose region the zone
/// table cannot tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownRegion {
    /// The window must hold in every zone of the country (the conservative default).
    #[default]
    AllZones,
    /// The business's zone (`hours.timezone`).
    BusinessZone,
}

/// `callback.customer_unknown_country`: a country the zone table does not cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownCountry {
    /// The business's zone (`hours.timezone`): the allow-list decides which countries are
    /// dialled at all.
    #[default]
    BusinessZone,
    /// Never called.
    Never,
}

/// A time range within a day, minutes since midnight, `end` up to 1440.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayRange {
    pub start_min: u16,
    pub end_min: u16,
}

#[derive(Debug, Clone)]
pub struct HoursConfig {
    pub timezone: jiff::tz::TimeZone,
    pub timezone_name: String,
    /// Monday first.
    pub week: [Vec<DayRange>; 7],
    pub holidays: Vec<jiff::civil::Date>,
    pub workdays: Vec<jiff::civil::Date>,
}

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub url: String,
    /// `url`, parsed: `https://`, or `http://` to a loopback host.
    pub endpoint: reqwest::Url,
    /// Shared secret for the `X-Perezvon-Signature` HMAC; `None` = unsigned.
    pub secret: Option<Secret>,
    pub events: Vec<String>,
    pub timeout: Duration,
    pub retry_every: Duration,
    pub max_retry_every: Duration,
    pub give_up_after: Duration,
    pub tls: TlsFiles,
}

/// The TLS material of an HTTPS channel, read and checked at load (`ca_file`, `client_cert`,
/// `client_key`): a bad file is a configuration error, never a failure at the first delivery.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificates trusted besides the system roots.
    pub ca_pem: Option<Vec<u8>>,
    /// PEM of the client certificate chain followed by its private key.
    pub identity_pem: Option<Secret>,
}

impl fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsFiles")
            .field("ca_file", &self.ca_pem.is_some())
            .field("client_cert", &self.identity_pem.is_some())
            .finish()
    }
}

/// What every HTTP notifier shares: which events it sends, its language and its retry spacing.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    pub events: Vec<String>,
    pub language: Language,
    pub timeout: Duration,
    pub retry_every: Duration,
    pub max_retry_every: Duration,
    pub give_up_after: Duration,
    pub tls: TlsFiles,
}

/// The language of the texts a notifier writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Language {
    #[default]
    Ru,
    En,
}

/// `[notify.bitrix24]`: leads and timeline comments through an inbound webhook.
#[derive(Debug, Clone)]
pub struct Bitrix24Config {
    /// `https://portal.bitrix24.ru/rest/<user>/<token>/`, always ending in `/`. It holds the token.
    pub webhook_url: Secret,
    /// `ASSIGNED_BY_ID` of leads and the author of comments; `None` = the webhook's user.
    pub responsible_id: Option<i64>,
    pub source_id: String,
    pub channel: ChannelConfig,
}

/// `[notify.amocrm]`: tasks on contacts, or unsorted leads, through API v4.
#[derive(Debug, Clone)]
pub struct AmoCrmConfig {
    /// `https://example.amocrm.ru`, no trailing `/`.
    pub base_url: reqwest::Url,
    pub token: Secret,
    pub responsible_user_id: Option<i64>,
    pub task_type_id: i64,
    pub task_due: Duration,
    pub source_name: String,
    pub pipeline_id: Option<i64>,
    pub channel: ChannelConfig,
}

/// `[notify.telegram]`: a bot message per event.
#[derive(Debug, Clone)]
pub struct TelegramConfig {
    pub bot_token: Secret,
    /// A JSON number or string, as `sendMessage` takes it.
    pub chat_id: serde_json::Value,
    pub api_url: reqwest::Url,
    pub channel: ChannelConfig,
}

/// How a `[[notify.http]]` body is written, and so how placeholders are escaped in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// `application/json`: values are JSON-string escaped (the template quotes them).
    Json,
    /// `application/x-www-form-urlencoded`: values are percent-encoded.
    Form,
    /// Anything else (`text/plain`): values as they are.
    Text,
}

/// One `[[notify.http]]` notifier.
#[derive(Debug, Clone)]
pub struct HttpNotifierConfig {
    pub name: String,
    pub method: reqwest::Method,
    /// The URL template (placeholders are percent-encoded); it may hold an API key.
    pub url: Secret,
    pub headers: Vec<(String, Secret)>,
    pub content_type: String,
    pub body_kind: BodyKind,
    pub body: Option<String>,
    pub channel: ChannelConfig,
}

impl HttpNotifierConfig {
    /// Its outbox channel: `http:<name>`.
    pub fn channel_name(&self) -> String {
        format!("http:{}", self.name)
    }
}

#[derive(Debug, Clone)]
pub struct EmailConfig {
    pub smtp_host: String,
    pub smtp_port: u16,
    pub from: String,
    pub to: Vec<String>,
    pub events: Vec<String>,
    pub timeout: Duration,
    /// The name given in EHLO.
    pub helo: String,
    pub tls: SmtpTls,
    /// PEM certificates (a private relay CA) trusted beside the system store, and their file.
    pub ca: Option<(PathBuf, Vec<u8>)>,
    /// AUTH (PLAIN or LOGIN, whichever the relay offers), when `username` is set.
    pub auth: Option<(String, Secret)>,
    pub retry_every: Duration,
    pub max_retry_every: Duration,
    pub give_up_after: Duration,
}

/// How the SMTP session is protected (`notify.email.tls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain SMTP: only to a relay on this machine (`127.0.0.1`, `::1`, `localhost`).
    None,
    /// Plain connect, then STARTTLS, required (the session stops if the relay does not offer it).
    StartTls,
    /// TLS from the first byte ("SMTPS", usually port 465).
    Tls,
}

impl SmtpTls {
    /// The usual port of each mode: 25 to a local relay, 587 submission, 465 SMTPS.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpTls::None => 25,
            SmtpTls::StartTls => 587,
            SmtpTls::Tls => 465,
        }
    }
}

#[derive(Debug, Clone)]
pub struct NotifyConfig {
    pub webhook: Option<WebhookConfig>,
    pub email: Option<EmailConfig>,
    pub bitrix24: Option<Bitrix24Config>,
    pub amocrm: Option<AmoCrmConfig>,
    pub telegram: Option<TelegramConfig>,
    pub http: Vec<HttpNotifierConfig>,
}

impl NotifyConfig {
    /// Whether any channel is configured.
    pub fn any(&self) -> bool {
        !self.channels().is_empty()
    }

    /// The outbox channel names of the configured channels, with the events each one wants.
    pub fn channels(&self) -> Vec<(String, &[String])> {
        let mut out: Vec<(String, &[String])> = Vec::new();
        if let Some(w) = &self.webhook {
            out.push(("webhook".into(), &w.events));
        }
        if let Some(e) = &self.email {
            out.push(("email".into(), &e.events));
        }
        if let Some(b) = &self.bitrix24 {
            out.push(("bitrix24".into(), &b.channel.events));
        }
        if let Some(a) = &self.amocrm {
            out.push(("amocrm".into(), &a.channel.events));
        }
        if let Some(t) = &self.telegram {
            out.push(("telegram".into(), &t.channel.events));
        }
        for h in &self.http {
            out.push((h.channel_name(), &h.channel.events));
        }
        out
    }
}

#[derive(Debug, Clone)]
pub struct MetricsConfig {
    pub enabled: bool,
    pub listen: std::net::SocketAddr,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub level: String,
    pub json: bool,
}

/// What a console user may do: a `viewer` looks, a `supervisor` also acts on callbacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebRole {
    Viewer,
    Supervisor,
}

impl WebRole {
    pub fn as_str(self) -> &'static str {
        match self {
            WebRole::Viewer => "viewer",
            WebRole::Supervisor => "supervisor",
        }
    }
}

/// One `[[web.users]]` entry.
#[derive(Clone, PartialEq, Eq)]
pub struct WebUser {
    pub name: String,
    /// A PHC string (`$argon2id$v=19$...`), checked to parse at load.
    pub password_hash: String,
    pub role: WebRole,
}

impl fmt::Debug for WebUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The hash is not the password, but nothing gains from it in a log.
        f.debug_struct("WebUser")
            .field("name", &self.name)
            .field("password_hash", &"***")
            .field("role", &self.role)
            .finish()
    }
}

/// `[web]`: the web console.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// `None`: the console is off (the default).
    pub listen: Option<std::net::SocketAddr>,
    /// The session-signing key's file; `None`: `console.key` beside the database.
    pub secret_file: Option<PathBuf>,
    pub session_ttl: Duration,
    /// Reached over HTTPS (a proxy in front): `Secure` cookies and HSTS.
    pub https: bool,
    pub users: Vec<WebUser>,
}

/// `[report]`.
#[derive(Debug, Clone)]
pub struct ReportConfig {
    /// Answered within this counts as in service (`service_level`, default 20 s).
    pub service_level: Duration,
    pub email: Option<ReportEmailConfig>,
}

/// `[report.email]`: when to mail the report, and to whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportEmailConfig {
    pub to: Vec<String>,
    /// Minute of the local day to mail the previous day's report (`daily = "08:00"`).
    pub daily: Option<u16>,
    /// Weekday and minute to mail the previous week's (Monday to Sunday) report
    /// (`weekly = "mon 08:00"`).
    pub weekly: Option<(jiff::civil::Weekday, u16)>,
    /// Language of the mail's HTML part (`lang = "en"` or `"ru"`, default English); the
    /// subject and the plain-text part are English.
    pub lang: crate::lang::Lang,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub asterisk: Vec<AsteriskConfig>,
    pub pbx: PbxConfig,
    pub calls: CallsConfig,
    pub storage: StorageConfig,
    pub callback: CallbackConfig,
    pub hours: HoursConfig,
    pub notify: NotifyConfig,
    pub metrics: MetricsConfig,
    pub log: LogConfig,
    /// `[web]`: the web console.
    pub web: WebConfig,
    pub backfill: BackfillConfig,
    pub report: ReportConfig,
    /// `[cluster]`: this node's identity and lease.
    pub cluster: ClusterConfig,
    /// Non-fatal findings (e.g. a world-readable file holding a secret).
    pub warnings: Vec<Problem>,
}

pub const NOTIFY_EVENTS: [&str; 3] = ["missed", "resolved", "callback"];
const DEFAULT_DATABASE: &str = "/var/lib/perezvon/perezvon.db";

impl Config {
    /// Reads and validates a file. Relative `secret_file`/`database` paths are relative to it.
    ///
    /// A file without any `[[asterisk]]` server is accepted here: the reading commands
    /// (`missed`, `report`, `callbacks`) only need the hours and the database. The commands that
    /// watch a PBX load with [`Config::load_for_daemon`].
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_with(path, false)
    }

    /// [`Config::load`] for `run` and `check-config`: a configuration with no `[[asterisk]]`
    /// server is one more problem (the daemon would watch nothing and exit at once).
    pub fn load_for_daemon(path: &Path) -> Result<Config, ConfigError> {
        Self::load_with(path, true)
    }

    fn load_with(path: &Path, need_server: bool) -> Result<Config, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            source_name: name.clone(),
            problems: vec![Problem {
                key: "(file)".into(),
                message: format!("cannot read: {e}"),
                hint: Some("pass --config with a readable TOML file".into()),
            }],
        })?;
        // `servers_dir`: the servers of a directory of small files join the main list.
        let expanded = servers_d::expand(&text, &name, path.parent())?;
        let mut cfg = Self::parse(
            expanded.as_ref().map_or(&text, |e| &e.text),
            &name,
            path.parent().map(Path::to_path_buf),
            need_server,
        )?;
        if let Some(e) = &expanded {
            for f in &e.files {
                let body = std::fs::read_to_string(f).unwrap_or_default();
                cfg.warnings.extend(world_readable_secret(f, &body));
            }
        }
        cfg.warnings.extend(world_readable_secret(path, &text));
        Ok(cfg)
    }

    /// Validates TOML text (no file system base for relative paths).
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Self::from_toml_in(text, "config", None)
    }

    /// The configuration used when no file is given (`replay`, `demo`): the lab PBX of fixtures/.
    pub fn embedded_default() -> Config {
        match Self::from_toml(EMBEDDED_DEFAULT) {
            Ok(c) => c,
            // The embedded text is tested; reaching this is a build defect, reported loudly.
            Err(e) => panic!("embedded default config is invalid: {e}"),
        }
    }

    pub fn from_toml_in(
        text: &str,
        source_name: &str,
        base_dir: Option<PathBuf>,
    ) -> Result<Config, ConfigError> {
        Self::parse(text, source_name, base_dir, false)
    }

    fn parse(
        text: &str,
        source_name: &str,
        base_dir: Option<PathBuf>,
        need_server: bool,
    ) -> Result<Config, ConfigError> {
        let fail = |problems| ConfigError {
            source_name: source_name.to_string(),
            problems,
        };
        // Syntax first: nothing else can be checked in a file that is not TOML.
        let mut table: toml::Table =
            toml::from_str(text).map_err(|e| fail(vec![toml_problem(&e, text, &[])]))?;
        // Values of secret keys, so no message below can quote one (a type error would).
        let secrets = validate::secret_values(&table);
        let no_server = need_server
            && match table.get("asterisk") {
                None => true,
                Some(toml::Value::Array(a)) => a.is_empty(),
                // `[asterisk]` (single brackets) is a type error of its own.
                Some(_) => false,
            };
        // Unknown keys are collected over the whole file (serde alone stops at the first one),
        // then dropped so the rest of the file is still checked in the same pass.
        let mut problems = schema::unknown_keys(&mut table, text);
        let from_text = problems.is_empty();
        if no_server {
            problems.push(validate::no_server_problem());
        }
        let raw: RawConfig = if from_text {
            // From the text, so a type error carries its line.
            match toml::from_str(text) {
                Ok(raw) => raw,
                Err(e) => {
                    problems.push(toml_problem(&e, text, &secrets));
                    return Err(fail(problems));
                }
            }
        } else {
            match toml::Value::Table(table.clone()).try_into::<RawConfig>() {
                Ok(raw) => raw,
                Err(e) => {
                    problems.push(validate::table_problem(&e, &table, &secrets));
                    return Err(fail(problems));
                }
            }
        };
        let mut v = V {
            problems,
            warnings: Vec::new(),
            base_dir,
        };
        let cfg = validate(raw, &mut v);
        if v.problems.is_empty() {
            Ok(Config {
                warnings: v.warnings,
                ..cfg
            })
        } else {
            Err(ConfigError {
                source_name: source_name.to_string(),
                problems: v.problems,
            })
        }
    }

    /// The `[[asterisk]]` entry callbacks are placed on.
    pub fn callback_server(&self) -> Option<&AsteriskConfig> {
        match &self.callback.server {
            Some(n) => self.asterisk.iter().find(|a| &a.name == n),
            None => self.asterisk.first(),
        }
    }
}

/// The lab PBX of `fixtures/asterisk-22/lab.toml`, used when no `--config` is given to `replay`
/// and as the base of `demo`.
pub const EMBEDDED_DEFAULT: &str = r#"
[[asterisk]]
name = "lab"
host = "127.0.0.1"
port = 5038
username = "listener"
secret = "listener"

[pbx]
country_code = "7"
inbound_contexts = ["from-trunk"]
trunk_channels = ["Local/*@from-trunk-*;2"]
agent_channels = ["Local/2??@agent-sim-*", "Local/2??@agent-phone-*"]
external_channels = ["Local/*@external-sim-*", "Local/*@customer-sim-*"]

[calls]
min_talk = "6s"
min_wait = "3s"

[storage]
database = "perezvon.db"

[callback]
marker_variable = "CALLBACK_ID"
dial_template = "Local/{national}@customer-sim"
caller_id = "74951110000"
target = { context = "callback", exten = "201" }

[hours]
timezone = "Europe/Moscow"
"#;

/// A warning when the file at `path` (whose text is `text`) sets a secret and anyone may read it.
fn world_readable_secret(path: &Path, text: &str) -> Option<Problem> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // `secret = `, `token = `, `bot_token = `, `webhook_url = `, `headers = `, ...
        let holds_secret = text.lines().any(|l| {
            let l = l.trim_start();
            !l.starts_with('#')
                && l.split_once('=').is_some_and(|(k, _)| {
                    let k = k.trim();
                    !k.is_empty() && !k.contains([' ', '[']) && validate::is_secret_key(k)
                })
        });
        let meta = std::fs::metadata(path).ok()?;
        (holds_secret && meta.permissions().mode() & 0o004 != 0).then(|| Problem {
            key: "(file)".into(),
            message: format!("{} holds a secret and is world-readable", path.display()),
            hint: Some("chmod 640 it, or move the secret to secret_file / secret_env".into()),
        })
    }
    #[cfg(not(unix))]
    {
        let _ = (path, text);
        None
    }
}
