//! Stage 1 of the configuration: exactly what serde reads from TOML. Unknown keys are errors
//! (`deny_unknown_fields`); every value is optional here so that stage 2 can report every
//! missing or wrong key at once.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub asterisk: Vec<RawAsterisk>,
    #[serde(default)]
    pub pbx: RawPbx,
    #[serde(default)]
    pub calls: RawCalls,
    #[serde(default)]
    pub storage: RawStorage,
    #[serde(default)]
    pub callback: RawCallback,
    #[serde(default)]
    pub hours: RawHours,
    #[serde(default)]
    pub notify: RawNotify,
    #[serde(default)]
    pub metrics: RawMetrics,
    #[serde(default)]
    pub log: RawLog,
    /// `[web]`: the web console (off unless `listen` is set).
    #[serde(default)]
    pub web: RawWeb,
    /// `[backfill]`: Asterisk's own records, read after a gap in the AMI stream.
    #[serde(default)]
    pub backfill: RawBackfill,
    #[serde(default)]
    pub report: RawReport,
    /// `[cluster]`: this node's name and its server leases (several nodes on one PostgreSQL).
    #[serde(default)]
    pub cluster: RawCluster,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    pub node_id: Option<String>,
    pub lease_ttl: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAsterisk {
    pub name: Option<String>,
    pub host: Option<String>,
    pub port: Option<i64>,
    pub username: Option<String>,
    pub secret: Option<String>,
    pub secret_file: Option<PathBuf>,
    pub secret_env: Option<String>,
    /// `md5` (default) or `plain`.
    pub auth: Option<String>,
    /// `Events:` at login: `on` (default), `off`, or a class list like `call,agent,dialplan`.
    pub events: Option<String>,
    pub connect_timeout: Option<String>,
    pub action_timeout: Option<String>,
    pub ping_interval: Option<String>,
    pub max_message: Option<i64>,
    pub reconnect_max: Option<String>,
    // --- the backfill work: this server's own records (override `[backfill]`) ---
    /// This server's cdr_csv file, read after a gap in its AMI stream.
    pub backfill_cdr: Option<PathBuf>,
    /// This server's queue_log.
    pub backfill_queue_log: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPbx {
    pub country_code: Option<String>,
    pub national_prefix: Option<String>,
    pub national_length: Option<i64>,
    pub international_prefix: Option<String>,
    pub inbound_contexts: Option<Vec<String>>,
    pub trunk_channels: Option<Vec<String>>,
    pub agent_channels: Option<Vec<String>>,
    pub external_channels: Option<Vec<String>>,
    pub lost_at_contexts: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCalls {
    pub min_talk: Option<String>,
    pub min_wait: Option<String>,
    pub resolve_within: Option<String>,
    pub max_call_duration: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStorage {
    pub database: Option<PathBuf>,
    /// `postgres://...`: PostgreSQL instead of the SQLite `database`.
    pub url: Option<String>,
    /// A file holding the `postgres://` URL (with its password), instead of `url`.
    pub url_file: Option<PathBuf>,
    /// Retention: calls (and closed tasks) older than this are deleted (`"400d"`).
    pub keep_calls: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCallback {
    pub enabled: Option<bool>,
    pub mode: Option<String>,
    pub server: Option<String>,
    pub dial_template: Option<String>,
    pub caller_id: Option<String>,
    pub caller_name: Option<String>,
    pub target: Option<RawTarget>,
    pub delay: Option<String>,
    pub max_attempts: Option<i64>,
    pub retry_every: Option<String>,
    pub retry_busy_every: Option<String>,
    pub retry_backoff: Option<f64>,
    pub give_up_after: Option<String>,
    pub originate_timeout: Option<String>,
    pub max_concurrent: Option<i64>,
    pub max_concurrent_per_target: Option<i64>,
    pub require_free_agent: Option<bool>,
    pub spread: Option<String>,
    pub lost_at: Option<Vec<String>>,
    pub allow: Option<Vec<String>>,
    pub deny: Option<Vec<String>>,
    pub allow_kinds: Option<Vec<String>>,
    pub allow_countries: Option<Vec<String>>,
    pub marker_variable: Option<String>,
    /// agent-first with a queue target: the context the queue is dialled in
    /// (`Local/<queue>@<agent_context>`; FreePBX: `from-internal`).
    pub agent_context: Option<String>,
    // --- issue 14 (request): requested and owned callbacks, announcement, dispositions, DNC ---
    /// Owned callbacks: how long attempts wait for the customer's own agent before the group.
    pub owner_wait: Option<String>,
    /// The owner's endpoint, `{agent}` replaced by the agent of the call records.
    pub owner_endpoint: Option<String>,
    /// Sound the agent hears before the bridge.
    pub announce: Option<String>,
    /// Sound the customer hears when they answer (agent-first).
    pub customer_prompt: Option<String>,
    /// The caller name an agent sees: `{number}`, `{count}`.
    pub agent_caller_name: Option<String>,
    /// Do-not-call list file, one number per line, re-read when it changes.
    pub dnc_file: Option<String>,
    /// A `call_later` disposition: the next attempt this long after it.
    pub call_later_after: Option<String>,
    // --- guard (issue 14): budget, customer's clock, expiry, queue reserve ---
    /// Callback calls to one number in any rolling 24 h, all tasks and servers.
    pub max_per_number_24h: Option<i64>,
    /// Callback calls to one number per calendar day in `hours.timezone`.
    pub max_per_number_day: Option<i64>,
    /// The calling window on the customer's own clock, e.g. "09:00-21:00".
    pub customer_hours: Option<OneOrMany>,
    /// The same for Saturday and Sunday (default: `customer_hours`).
    pub customer_hours_weekend: Option<OneOrMany>,
    /// "all_zones" (default) or "business_zone": a number whose region is unknown.
    pub customer_unknown_region: Option<String>,
    /// "business_zone" (default) or "never": a country the zone table does not cover.
    pub customer_unknown_country: Option<String>,
    /// Number prefix -> IANA zone, before the built-in table.
    pub customer_zones: Option<BTreeMap<String, String>>,
    /// A task older than this (from its first miss) expires.
    pub expire_after: Option<String>,
    /// A task not reached by the close of the working day it fell due in expires.
    pub expire_at_close: Option<bool>,
    /// Agents of each queue kept free for inbound callers.
    pub queue_reserve: Option<i64>,
    /// Per-queue reserve, overriding `queue_reserve`.
    pub queue_reserves: Option<BTreeMap<String, i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    pub context: Option<String>,
    pub exten: Option<String>,
    pub priority: Option<i64>,
    pub queue: Option<String>,
    pub endpoint: Option<String>,
    /// Fallback tried after an agent did not take a callback (a queue or group).
    pub fallback_queue: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHours {
    pub timezone: Option<String>,
    pub monday: Option<Vec<String>>,
    pub tuesday: Option<Vec<String>>,
    pub wednesday: Option<Vec<String>>,
    pub thursday: Option<Vec<String>>,
    pub friday: Option<Vec<String>>,
    pub saturday: Option<Vec<String>>,
    pub sunday: Option<Vec<String>>,
    pub holidays: Option<Vec<String>>,
    pub workdays: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotify {
    pub webhook: Option<RawWebhook>,
    pub email: Option<RawEmail>,
    pub bitrix24: Option<RawBitrix24>,
    pub amocrm: Option<RawAmoCrm>,
    pub telegram: Option<RawTelegram>,
    /// `[[notify.http]]`: generic HTTP template notifiers (SMS gateways), one per entry.
    pub http: Option<Vec<RawHttpNotifier>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    pub url: Option<String>,
    pub secret: Option<String>,
    pub secret_file: Option<PathBuf>,
    pub secret_env: Option<String>,
    pub events: Option<Vec<String>>,
    pub timeout: Option<String>,
    pub retry_every: Option<String>,
    pub max_retry_every: Option<String>,
    pub give_up_after: Option<String>,
    /// An extra trust anchor (PEM) besides the system roots.
    pub ca_file: Option<PathBuf>,
    /// A client certificate chain (PEM) for mutual TLS, with `client_key`.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

/// Bitrix24 through an inbound webhook (`https://portal.bitrix24.ru/rest/1/abc123/`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBitrix24 {
    /// The inbound webhook URL: it holds the token, so it is a secret.
    pub webhook_url: Option<String>,
    pub webhook_url_file: Option<PathBuf>,
    pub webhook_url_env: Option<String>,
    pub responsible_id: Option<i64>,
    /// `SOURCE_ID` of created leads (default `CALL`).
    pub source_id: Option<String>,
    pub language: Option<String>,
    pub events: Option<Vec<String>>,
    pub timeout: Option<String>,
    pub retry_every: Option<String>,
    pub max_retry_every: Option<String>,
    pub give_up_after: Option<String>,
    pub ca_file: Option<PathBuf>,
}

/// amoCRM API v4 with a long-lived token.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAmoCrm {
    pub base_url: Option<String>,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    pub token_env: Option<String>,
    pub responsible_user_id: Option<i64>,
    /// Task type of created tasks (1 = call back).
    pub task_type_id: Option<i64>,
    /// A task is due this long after the miss.
    pub task_due: Option<String>,
    /// `source_name` of unsorted leads.
    pub source_name: Option<String>,
    pub pipeline_id: Option<i64>,
    pub language: Option<String>,
    pub events: Option<Vec<String>>,
    pub timeout: Option<String>,
    pub retry_every: Option<String>,
    pub max_retry_every: Option<String>,
    pub give_up_after: Option<String>,
    pub ca_file: Option<PathBuf>,
}

/// A Telegram bot posting to one chat.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelegram {
    pub bot_token: Option<String>,
    pub bot_token_file: Option<PathBuf>,
    pub bot_token_env: Option<String>,
    /// A numeric chat id (`-1001234567890`) or `@channelname`.
    pub chat_id: Option<RawChatId>,
    pub api_url: Option<String>,
    pub language: Option<String>,
    pub events: Option<Vec<String>>,
    pub timeout: Option<String>,
    pub retry_every: Option<String>,
    pub max_retry_every: Option<String>,
    pub give_up_after: Option<String>,
    pub ca_file: Option<PathBuf>,
}

/// A chat id is written as a number or a string.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawChatId {
    Id(i64),
    Name(String),
}

/// One `[[notify.http]]` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttpNotifier {
    pub name: Option<String>,
    pub method: Option<String>,
    pub url: Option<String>,
    /// Header values may hold API keys: they are secrets.
    pub headers: Option<BTreeMap<String, String>>,
    pub content_type: Option<String>,
    pub body: Option<String>,
    pub language: Option<String>,
    pub events: Option<Vec<String>>,
    pub timeout: Option<String>,
    pub retry_every: Option<String>,
    pub max_retry_every: Option<String>,
    pub give_up_after: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEmail {
    pub smtp_host: Option<String>,
    pub smtp_port: Option<i64>,
    pub from: Option<String>,
    pub to: Option<OneOrMany>,
    pub events: Option<Vec<String>>,
    pub timeout: Option<String>,
    pub helo: Option<String>,
    pub tls: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    pub retry_every: Option<String>,
    pub max_retry_every: Option<String>,
    pub give_up_after: Option<String>,
}

/// A list that may also be written as one string (`to = "a@x"` or `to = ["a@x", "b@y"]`).
#[derive(Debug, Clone)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(s.to_string()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<OneOrMany, A::Error> {
                let mut v = Vec::new();
                while let Some(s) = a.next_element::<String>()? {
                    v.push(s);
                }
                Ok(OneOrMany::Many(v))
            }
        }
        d.deserialize_any(V)
    }
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub enabled: Option<bool>,
    pub listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub level: Option<String>,
    pub format: Option<String>,
}

/// `[web]`: the web console.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWeb {
    /// `host:port`; the console is off without it.
    pub listen: Option<String>,
    /// The key that signs session cookies (at least 32 bytes); default: `console.key` beside
    /// the database, generated at the first start.
    pub secret_file: Option<PathBuf>,
    pub session_ttl: Option<String>,
    /// The console is reached over HTTPS (a TLS proxy in front): cookies get `Secure`, and HSTS.
    pub https: Option<bool>,
    /// `[[web.users]]`.
    pub users: Option<Vec<RawWebUser>>,
}

/// One `[[web.users]]` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebUser {
    pub name: Option<String>,
    /// `$argon2id$...`, as `perezvon passwd` prints it.
    pub password_hash: Option<String>,
    /// `viewer` (default) or `supervisor`.
    pub role: Option<String>,
}

/// `[backfill]`: where the PBX writes its CDR and queue_log (the history work).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackfill {
    /// `cdr_csv` output, e.g. `/var/log/asterisk/cdr-csv/Master.csv`.
    pub cdr: Option<PathBuf>,
    /// app_queue's log, e.g. `/var/log/asterisk/queue_log`.
    pub queue_log: Option<PathBuf>,
    /// The `[[asterisk]]` server these files belong to (default: the first).
    pub server: Option<String>,
    /// The zone of the CDR's dates (`usegmtime = no`: the PBX host's zone; default: hours.timezone).
    pub timezone: Option<String>,
    /// Gaps longer than this are backfilled only for their last part (default `"7d"`).
    pub max_gap: Option<String>,
}

/// `[report]`: the manager's report (`perezvon report`, the scheduled e-mail).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReport {
    pub service_level: Option<String>,
    pub email: Option<RawReportEmail>,
}

/// `[report.email]`: the report mailed on a schedule, through `[notify.email]`'s relay.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReportEmail {
    pub to: Option<Vec<String>>,
    pub daily: Option<String>,
    pub weekly: Option<String>,
    pub lang: Option<String>,
}
