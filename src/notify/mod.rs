//! Notifications: tell a CRM, a chat bot or a manager's mailbox about missed calls, resolutions
//! and callback outcomes, without ever losing one.
//!
//! Three events: `missed` (a miss was recorded), `resolved` (an earlier miss was resolved: by
//! whom and how fast), `callback` (a callback attempt ended). The daemon *enqueues* an event on
//! its own store connection right after storing the verdict ([`enqueue_for_record`],
//! [`enqueue_resolved`], [`enqueue_callback_outcome`]): one row per configured channel in the
//! SQLite outbox, with a deterministic event id, so a replay or restart never duplicates one.
//! [`run_delivery`] is the edge that drains the outbox: its own connection, one delivery at a
//! time, capped exponential backoff with jitter, give-up after `give_up_after`. A receiver that
//! is down only delays events. Delivery is at-least-once (a receiver can time out after it
//! processed a request): receivers dedupe on the event id (`Idempotency-Key`).
//!
//! - [`webhook`]: JSON POST over HTTPS, HMAC-signed (docs/WEBHOOK.md).
//! - [`email`]: SMTP through lettre (STARTTLS, implicit TLS, AUTH; plain only to a local relay).
//! - [`bitrix24`], [`amocrm`]: leads, tasks and comments in a CRM (docs/INTEGRATIONS.md); the
//!   entity found or created for a number is remembered (`store::crm`) for its later events.
//! - [`telegram`]: a bot message; [`generic`]: `[[notify.http]]` templates (SMS gateways).
//! - [`http`]: the shared HTTPS client (rustls, system roots + `ca_file`, client certificates);
//!   [`text`]: the Russian/English texts; [`template`]: placeholder filling.
//! - [`observe`]: glue for the daemon's writers and observer channels.
//!
//! # Wiring in the daemon
//! ```text
//! let metrics = Arc::new(Metrics::new(cfg.asterisk.iter().map(|a| a.name.as_str())));
//! tokio::spawn(notify::run_delivery(cfg.clone(), cfg.storage.database.clone(), metrics.clone(), shutdown.clone()));
//! if cfg.metrics.enabled { tokio::spawn(metrics::serve(cfg.metrics.listen, metrics.clone(), shutdown.clone())); }
//! // Durable: the calls writer (Pipeline::commit), right after Store::record_call:
//! notify::enqueue_recorded(&store, &cfg, &recorded, now)?;
//! // ... and the dialer, right after finishing an attempt:
//! notify::enqueue_attempt_outcome(&store, &cfg, &callback_id, now)?;
//! // Metrics (and best-effort notifications) from the observer channels of daemon::RunOptions:
//! tokio::spawn(notify::run_observer(cfg, db, metrics, records_rx, dialer_events_rx, shutdown));
//! ```

pub mod amocrm;
pub mod bitrix24;
pub mod email;
pub mod generic;
pub mod http;
pub mod observe;
pub mod telegram;
pub mod template;
pub mod text;
pub mod webhook;

pub use observe::{enqueue_attempt_outcome, enqueue_recorded, run_observer};

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::calls::record::{CallRecord, CallbackOutcome, Direction, Status, Timestamp};
use crate::config::{Config, NotifyConfig, TlsFiles};
use crate::metrics::Metrics;
use crate::store::crm::CrmLink;
use crate::store::outbox::{NewNotification, OutboxItem};
use crate::store::{Store, StoreError};

/// Version of the payload layout; bumped only for incompatible changes.
pub const PAYLOAD_SCHEMA: u32 = 1;

/// Why one delivery attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("cannot connect to {addr}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("connection failed")]
    Io(#[source] std::io::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("rejected: {0}")]
    Rejected(String),
    /// An HTTP request failed before an answer (connect, TLS, timeout); the text has no URL.
    #[error("request failed: {0}")]
    Http(String),
    /// The receiver asked to slow down: retried, no sooner than `after` when it said so.
    #[error("rate limited: {why}")]
    RateLimited {
        why: String,
        after: Option<Duration>,
    },
    /// Retrying cannot help (the channel was removed from the config, the payload is corrupt).
    #[error("undeliverable: {0}")]
    Permanent(String),
}

impl DeliveryError {
    /// The message with its causes, as stored in `last_error` and logged.
    pub fn chain(&self) -> String {
        let mut s = self.to_string();
        let mut src = std::error::Error::source(self);
        while let Some(e) = src {
            s.push_str(": ");
            s.push_str(&e.to_string());
            src = e.source();
        }
        s
    }
}

/// The outcome of one callback attempt, as the dialer reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallbackEvent {
    pub server: String,
    /// The marker value of the attempt (unique per attempt).
    pub callback_id: String,
    pub task_id: i64,
    /// The customer, normalised (`79161234567`).
    pub number: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub max_attempts: u32,
    pub outcome: CallbackOutcome,
    pub started_at: Timestamp,
    pub ended_at: Timestamp,
    pub talk_secs: f64,
    /// The person who talked to the customer, when connected.
    pub agent: Option<String>,
    /// The task after this attempt: `pending` (another attempt follows), `done`, `given_up`.
    pub task_state: String,
    pub next_attempt_at: Option<Timestamp>,
}

fn e164(number: Option<&str>) -> Value {
    match number {
        Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => json!(format!("+{n}")),
        _ => Value::Null,
    }
}

/// The `missed` payload.
pub fn missed_payload(r: &CallRecord) -> Value {
    json!({
        "schema": PAYLOAD_SCHEMA,
        "event": "missed",
        "id": missed_id(r),
        "occurred_at": r.ended_at,
        "server": r.server,
        "number": r.customer(),
        "number_e164": e164(r.customer()),
        "call": r,
    })
}

fn missed_id(r: &CallRecord) -> String {
    format!("missed:{}:{}", r.server, r.linkedid)
}

/// The `resolved` payload; `r` is the missed call with its resolution filled in.
pub fn resolved_payload(r: &CallRecord) -> Value {
    let reaction = r
        .resolved_at
        .map(|at| (at.as_millisecond() - r.ended_at.as_millisecond()) as f64 / 1000.0);
    json!({
        "schema": PAYLOAD_SCHEMA,
        "event": "resolved",
        "id": format!("resolved:{}:{}", r.server, r.linkedid),
        "occurred_at": r.resolved_at.unwrap_or(r.ended_at),
        "server": r.server,
        "number": r.customer(),
        "number_e164": e164(r.customer()),
        "resolved_by": r.resolved_by,
        "resolved_at": r.resolved_at,
        "reaction_secs": reaction,
        "resolved_by_linkedid": r.resolved_by_linkedid,
        "call": r,
    })
}

/// The `callback` payload.
pub fn callback_payload(e: &CallbackEvent) -> Value {
    json!({
        "schema": PAYLOAD_SCHEMA,
        "event": "callback",
        "id": format!("callback:{}", e.callback_id),
        "occurred_at": e.ended_at,
        "server": e.server,
        "number": e.number,
        "number_e164": e164(Some(&e.number)),
        "callback": e,
    })
}

/// Writes one outbox row per channel that wants `kind`. Returns how many rows were added.
fn enqueue(
    store: &Store,
    notify: &NotifyConfig,
    kind: &str,
    payload: &Value,
    now: Timestamp,
) -> Result<usize, StoreError> {
    let id = payload["id"].as_str().unwrap_or_default().to_string();
    let body = payload.to_string();
    let mut n = 0;
    for (channel, events) in notify.channels() {
        if events.iter().any(|e| e == kind)
            && store.enqueue_notification(
                &NewNotification {
                    event_id: &id,
                    channel: &channel,
                    kind,
                    payload: &body,
                },
                now,
            )?
        {
            n += 1;
        }
    }
    Ok(n)
}

/// Enqueues `missed` for a stored verdict that is an inbound miss; other verdicts are no event.
pub fn enqueue_for_record(
    store: &Store,
    cfg: &Config,
    r: &CallRecord,
    now: Timestamp,
) -> Result<usize, StoreError> {
    if r.direction != Direction::Inbound || r.status != Status::Missed {
        return Ok(0);
    }
    enqueue(store, &cfg.notify, "missed", &missed_payload(r), now)
}

/// Enqueues `resolved` for a missed call whose `resolved_by`/`resolved_at` were just set.
pub fn enqueue_resolved(
    store: &Store,
    cfg: &Config,
    missed: &CallRecord,
    now: Timestamp,
) -> Result<usize, StoreError> {
    if missed.resolved_by.is_none() {
        return Ok(0);
    }
    enqueue(
        store,
        &cfg.notify,
        "resolved",
        &resolved_payload(missed),
        now,
    )
}

/// Enqueues `callback` for a finished attempt.
pub fn enqueue_callback_outcome(
    store: &Store,
    cfg: &Config,
    e: &CallbackEvent,
    now: Timestamp,
) -> Result<usize, StoreError> {
    enqueue(store, &cfg.notify, "callback", &callback_payload(e), now)
}

/// Re-enqueues the events of calls that ended in `[since, now]`: closes the window between a
/// verdict being stored and its events being enqueued (a crash there would otherwise lose them).
/// Enqueueing is idempotent, so events already queued or delivered are not repeated. Returns how
/// many rows were added.
pub fn catch_up(
    store: &Store,
    cfg: &Config,
    since: Timestamp,
    now: Timestamp,
) -> Result<usize, StoreError> {
    if !cfg.notify.any() {
        return Ok(0);
    }
    // A call's end is stamped by Asterisk's clock: allow it to run a little ahead of ours.
    let until = now
        .checked_add(jiff::SignedDuration::from_mins(5))
        .unwrap_or(Timestamp::MAX);
    let mut n = 0;
    for r in store.calls_ended_between(since, until)? {
        n += enqueue_for_record(store, cfg, &r, now)?;
        if r.missed {
            n += enqueue_resolved(store, cfg, &r, now)?;
        }
    }
    // Callback outcomes too: the dialer's events reach the observer without back-pressure (the
    // dialer must never stall), so one lost in a crash or an overflow is re-announced here.
    for a in store.attempts_ended_between(since, until)? {
        n += observe::enqueue_attempt_outcome(store, cfg, &a.callback_id, now)?;
    }
    Ok(n)
}

/// Retry spacing of one channel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub retry_every: Duration,
    pub max_retry_every: Duration,
    pub give_up_after: Duration,
}

/// What to do with a row after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AfterFailure {
    RetryAt(Timestamp),
    GiveUp,
}

/// The delay after the `failures`-th consecutive failure: `retry_every * 2^(failures-1)`, capped,
/// stretched by `jitter` (e.g. 0.9..1.1) so many rows failing together do not retry together.
pub fn backoff(policy: &RetryPolicy, failures: u32, jitter: f64) -> Duration {
    let exp = failures.saturating_sub(1).min(30);
    let base = policy
        .retry_every
        .saturating_mul(1u32 << exp)
        .min(policy.max_retry_every);
    base.mul_f64(jitter.clamp(0.5, 1.5))
}

/// Pure decision after a failure at `now` of a row created at `created_at` that has now failed
/// `failures` times.
pub fn after_failure(
    policy: &RetryPolicy,
    created_at: Timestamp,
    failures: u32,
    now: Timestamp,
    jitter: f64,
) -> AfterFailure {
    after_failure_at_least(policy, created_at, failures, now, jitter, None)
}

/// [`after_failure`] for a receiver that said when to come back (`Retry-After`, Telegram's
/// `retry_after`): the retry is no sooner than `at_least` from `now`, still within the deadline.
pub fn after_failure_at_least(
    policy: &RetryPolicy,
    created_at: Timestamp,
    failures: u32,
    now: Timestamp,
    jitter: f64,
    at_least: Option<Duration>,
) -> AfterFailure {
    let deadline = created_at
        .checked_add(policy.give_up_after)
        .unwrap_or(Timestamp::MAX);
    if now >= deadline {
        return AfterFailure::GiveUp;
    }
    let wait = backoff(policy, failures, jitter).max(at_least.unwrap_or_default());
    let next = now.checked_add(wait).unwrap_or(Timestamp::MAX);
    // The last attempt is made at the deadline rather than never.
    AfterFailure::RetryAt(next.min(deadline))
}

/// The retry policy and timeout of a channel, if it is configured.
fn channel_policy(cfg: &NotifyConfig, channel: &str) -> Option<(RetryPolicy, Duration)> {
    match channel {
        "webhook" => cfg.webhook.as_ref().map(|w| {
            (
                RetryPolicy {
                    retry_every: w.retry_every,
                    max_retry_every: w.max_retry_every,
                    give_up_after: w.give_up_after,
                },
                w.timeout,
            )
        }),
        "email" => cfg.email.as_ref().map(|e| {
            (
                RetryPolicy {
                    retry_every: e.retry_every,
                    max_retry_every: e.max_retry_every,
                    give_up_after: e.give_up_after,
                },
                e.timeout,
            )
        }),
        _ => common_of(cfg, channel).map(|c| {
            (
                RetryPolicy {
                    retry_every: c.retry_every,
                    max_retry_every: c.max_retry_every,
                    give_up_after: c.give_up_after,
                },
                c.timeout,
            )
        }),
    }
}

/// The shared settings of a CRM/messenger/template channel.
fn common_of<'a>(cfg: &'a NotifyConfig, channel: &str) -> Option<&'a crate::config::ChannelConfig> {
    match channel {
        bitrix24::CHANNEL => cfg.bitrix24.as_ref().map(|b| &b.channel),
        amocrm::CHANNEL => cfg.amocrm.as_ref().map(|a| &a.channel),
        "telegram" => cfg.telegram.as_ref().map(|t| &t.channel),
        other => {
            let name = other.strip_prefix("http:")?;
            cfg.http.iter().find(|h| h.name == name).map(|h| &h.channel)
        }
    }
}

/// The TLS settings of an HTTP channel; `None` for e-mail and unknown channels.
fn channel_tls<'a>(cfg: &'a NotifyConfig, channel: &str) -> Option<&'a TlsFiles> {
    match channel {
        "webhook" => cfg.webhook.as_ref().map(|w| &w.tls),
        "email" => None,
        other => common_of(cfg, other).map(|c| &c.tls),
    }
}

/// The metrics label of a channel: every `[[notify.http]]` counts as `http`.
fn metric_channel(channel: &str) -> &str {
    if channel.starts_with("http:") {
        "http"
    } else {
        channel
    }
}

/// The digits of an outbox row's customer number, which the CRM links are keyed by.
fn row_number(item: &OutboxItem) -> Option<String> {
    let v: Value = serde_json::from_str(&item.payload).ok()?;
    let n = v["number"].as_str()?;
    let digits: String = n.chars().filter(char::is_ascii_digit).collect();
    (!digits.is_empty()).then_some(digits)
}

/// Renders the mail for an outbox row (pure).
pub fn render_mail(cfg: &Config, item: &OutboxItem, now: Timestamp) -> Result<email::Mail, String> {
    let v: Value =
        serde_json::from_str(&item.payload).map_err(|e| format!("corrupt payload: {e}"))?;
    let tz = &cfg.hours.timezone;
    let local = |v: &Value| -> String {
        v.as_str()
            .and_then(|s| s.parse::<Timestamp>().ok())
            .map(|t| {
                t.to_zoned(tz.clone())
                    .strftime("%Y-%m-%d %H:%M:%S %Z")
                    .to_string()
            })
            .unwrap_or_else(|| "?".into())
    };
    let text = |v: &Value| -> String {
        match v {
            Value::String(s) => s.clone(),
            Value::Null => "-".into(),
            other => other.to_string(),
        }
    };
    let secs = |v: &Value| -> String {
        v.as_f64()
            .map(|s| {
                humantime::format_duration(Duration::from_secs(s.max(0.0).round() as u64))
                    .to_string()
            })
            .unwrap_or_else(|| "-".into())
    };
    let number = match (&v["number_e164"], &v["call"]["caller"]) {
        (Value::String(n), _) => n.clone(),
        (_, Value::String(c)) => c.clone(),
        _ => "an unknown number".into(),
    };
    let call = &v["call"];
    let (subject, body) = match item.kind.as_str() {
        "missed" => (
            format!(
                "Missed call from {number} (lost at {})",
                call["lost_at"].as_str().unwrap_or("unknown")
            ),
            format!(
                "Missed call\n\nNumber:   {number}\nDialled:  {}\nEnded:    {}\nWaited:   {}\nLost at:  {}\nAgent:    {}\nServer:   {} (linkedid {})\n",
                text(&call["callee"]),
                local(&call["ended_at"]),
                secs(&call["wait_secs"]),
                text(&call["lost_at"]),
                text(&call["agent"]),
                text(&v["server"]),
                text(&call["linkedid"]),
            ),
        ),
        "resolved" => (
            format!(
                "Resolved: {number} by {} after {}",
                text(&v["resolved_by"]),
                secs(&v["reaction_secs"])
            ),
            format!(
                "Missed call resolved\n\nNumber:      {number}\nMissed at:   {}\nResolved by: {}\nResolved at: {}\nReaction:    {}\nServer:      {} (linkedid {})\n",
                local(&call["ended_at"]),
                text(&v["resolved_by"]),
                local(&v["resolved_at"]),
                secs(&v["reaction_secs"]),
                text(&v["server"]),
                text(&call["linkedid"]),
            ),
        ),
        "callback" => {
            let cb = &v["callback"];
            (
                format!(
                    "Callback to {number}: {} (attempt {} of {})",
                    text(&cb["outcome"]),
                    text(&cb["attempt"]),
                    text(&cb["max_attempts"])
                ),
                format!(
                    "Callback attempt\n\nNumber:     {number}\nOutcome:    {}\nAttempt:    {} of {}\nStarted:    {}\nTalked:     {}\nAgent:      {}\nTask:       {} (next attempt {})\nServer:     {}\n",
                    text(&cb["outcome"]),
                    text(&cb["attempt"]),
                    text(&cb["max_attempts"]),
                    local(&cb["started_at"]),
                    secs(&cb["talk_secs"]),
                    text(&cb["agent"]),
                    text(&cb["task_state"]),
                    if cb["next_attempt_at"].is_null() { "-".into() } else { local(&cb["next_attempt_at"]) },
                    text(&v["server"]),
                ),
            )
        }
        other => return Err(format!("unknown event kind {other:?}")),
    };
    Ok(email::Mail {
        subject,
        body,
        event_id: item.event_id.clone(),
        kind: item.kind.clone(),
        date: now
            .to_zoned(tz.clone())
            .strftime("%a, %d %b %Y %H:%M:%S %z")
            .to_string(),
    })
}

/// One attempt at one row. `client` is the channel's HTTPS client, `link` the CRM entity known
/// for the row's number; a CRM channel returns the entity to remember when it found or created one.
async fn deliver(
    cfg: &Config,
    client: Option<&reqwest::Client>,
    item: &OutboxItem,
    link: Option<&CrmLink>,
    now: Timestamp,
) -> Result<Option<CrmLink>, DeliveryError> {
    let Some((_, timeout)) = channel_policy(&cfg.notify, &item.channel) else {
        return Err(DeliveryError::Permanent(format!(
            "channel {:?} is no longer configured",
            item.channel
        )));
    };
    let gone = || DeliveryError::Permanent(format!("{} not configured", item.channel));
    let need_client = || client.ok_or_else(|| DeliveryError::Http("no HTTPS client".into()));
    let values = |lang| -> Result<text::Values, DeliveryError> {
        let v: Value = serde_json::from_str(&item.payload)
            .map_err(|e| DeliveryError::Permanent(format!("corrupt payload: {e}")))?;
        Ok(text::Values::of(&item.kind, &v, &cfg.hours.timezone, lang))
    };
    let attempt = async {
        match item.channel.as_str() {
            "webhook" => {
                let w = cfg.notify.webhook.as_ref().ok_or_else(gone)?;
                webhook::post(
                    need_client()?,
                    w,
                    &webhook::Request {
                        event_id: &item.event_id,
                        kind: &item.kind,
                        body: &item.payload,
                        attempt: item.attempts.saturating_add(1),
                        timestamp: now.as_second(),
                    },
                )
                .await
                .map(|_| None)
            }
            "email" => {
                let e = cfg.notify.email.as_ref().ok_or_else(gone)?;
                let mail = render_mail(cfg, item, now).map_err(DeliveryError::Permanent)?;
                email::send(e, &mail).await.map(|()| None)
            }
            bitrix24::CHANNEL => {
                let b = cfg.notify.bitrix24.as_ref().ok_or_else(gone)?;
                let v = values(b.channel.language)?;
                bitrix24::deliver(need_client()?, b, &item.kind, &item.event_id, &v, link, now)
                    .await
            }
            amocrm::CHANNEL => {
                let a = cfg.notify.amocrm.as_ref().ok_or_else(gone)?;
                let v = values(a.channel.language)?;
                amocrm::deliver(need_client()?, a, &item.kind, &item.event_id, &v, link, now).await
            }
            "telegram" => {
                let t = cfg.notify.telegram.as_ref().ok_or_else(gone)?;
                let v = values(t.channel.language)?;
                telegram::send(need_client()?, t, v.get("text").unwrap_or(""))
                    .await
                    .map(|()| None)
            }
            other => {
                let name = other.strip_prefix("http:").ok_or_else(gone)?;
                let h = cfg
                    .notify
                    .http
                    .iter()
                    .find(|h| h.name == name)
                    .ok_or_else(gone)?;
                let v = values(h.channel.language)?;
                generic::send(need_client()?, h, &v).await.map(|()| None)
            }
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(DeliveryError::Timeout(timeout)),
    }
}

/// Drains the outbox until `shutdown`: the daemon spawns this with its database path. Each
/// configured channel gets its own loop and connection, so a hanging webhook receiver does not
/// hold back e-mail. Returns an error only when the database cannot be opened; later store errors
/// are logged and retried.
pub async fn run_delivery(
    cfg: Arc<Config>,
    db: PathBuf,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> Result<(), StoreError> {
    let location = crate::store::Location::parse(&db.to_string_lossy());
    let name = format!("perezvon {} delivery", cfg.cluster.node_id);
    let store = Store::open_named(&location, &name)?;
    let start = Timestamp::now();
    // Events of verdicts stored just before a crash, never enqueued: the last hour is the window
    // a restart can leave; older calls are not re-announced (a receiver would see them as new).
    if let Ok(since) = start.checked_sub(jiff::SignedDuration::from_hours(1)) {
        match catch_up(&store, &cfg, since, start) {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                events = n,
                "notify: enqueued events missed before a restart"
            ),
            Err(e) => tracing::warn!(error = %e, "notify: cannot catch up on recent calls"),
        }
    }
    let channels: Vec<String> = cfg.notify.channels().into_iter().map(|(c, _)| c).collect();
    let keep: Vec<&str> = channels.iter().map(String::as_str).collect();
    match store.give_up_channels_except(&keep, start, "channel no longer configured") {
        Ok(0) => {}
        Ok(n) => tracing::warn!(
            events = n,
            "notify: gave up events of channels removed from the configuration"
        ),
        Err(e) => tracing::warn!(error = %e, "notify: cannot clean up removed channels"),
    }
    if let Ok(c) = store.outbox_counts() {
        metrics.set_outbox_pending(c.pending);
    }
    let mut stores = vec![store];
    for _ in 1..channels.len() {
        stores.push(Store::open_named(&location, &name)?);
    }
    let loops = channels.into_iter().zip(stores).map(|(channel, store)| {
        channel_loop(
            cfg.clone(),
            store,
            channel,
            metrics.clone(),
            shutdown.clone(),
        )
    });
    futures::future::join_all(loops).await;
    Ok(())
}

/// Delivers one channel's rows until `shutdown`.
async fn channel_loop(
    cfg: Arc<Config>,
    store: Store,
    channel: String,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let channel = channel.as_str();
    // One client per channel: its connections are reused, its trust store is loaded once.
    let client = channel_tls(&cfg.notify, channel).and_then(|tls| {
        let timeout = channel_policy(&cfg.notify, channel).map_or(Duration::from_secs(10), |p| p.1);
        match http::client(tls, timeout) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(channel, error = %e, "notify: cannot set up the HTTPS client");
                None
            }
        }
    });
    // Polling covers rows enqueued by the daemon's other connection; a short floor keeps the
    // loop responsive to a retry due soon, the ceiling bounds the delay of a fresh event.
    const POLL_MAX: Duration = Duration::from_secs(1);
    const POLL_MIN: Duration = Duration::from_millis(10);
    const BATCH: usize = 32;
    // Delivered and given-up rows are kept a while for `last_error` forensics, then pruned.
    const KEEP: jiff::SignedDuration = jiff::SignedDuration::from_hours(30 * 24);
    let mut next_prune = Timestamp::now();
    while !shutdown.is_cancelled() {
        let now = Timestamp::now();
        if now >= next_prune {
            if let Ok(before) = now.checked_sub(KEEP) {
                if let Err(e) = store.prune_outbox(before) {
                    tracing::warn!(error = %e, "notify: cannot prune the outbox");
                }
            }
            next_prune = now
                .checked_add(jiff::SignedDuration::from_hours(1))
                .unwrap_or(Timestamp::MAX);
        }
        let due = match store.due_notifications_on(Some(channel), now, BATCH) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, channel, "notify: cannot read the outbox");
                sleep_or_cancel(Duration::from_secs(5), &shutdown).await;
                continue;
            }
        };
        for item in &due {
            let crm = channel == bitrix24::CHANNEL || channel == amocrm::CHANNEL;
            let link = match row_number(item).filter(|_| crm) {
                Some(n) => match store.crm_link(channel, &n) {
                    Ok(l) => l,
                    Err(e) => {
                        // Without the link a second lead could be created: try again later.
                        tracing::warn!(error = %e, channel, "notify: cannot read the CRM link");
                        continue;
                    }
                },
                None => None,
            };
            // An outcome before its miss reached the CRM would find no entity to land on.
            if crm && item.kind != "missed" && link.is_none() {
                let waiting = row_number(item)
                    .map(|n| store.missed_pending_for(channel, &n))
                    .transpose();
                if !matches!(waiting, Ok(None | Some(false))) {
                    let e = DeliveryError::Rejected(
                        "waiting for the missed event of this number".into(),
                    );
                    record_result(&cfg, &store, &metrics, item, Err(e));
                    continue;
                }
            }
            let result = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = deliver(&cfg, client.as_ref(), item, link.as_ref(), Timestamp::now()) => r,
            };
            let result = result.map(|new_link| {
                if let Some(l) = new_link {
                    if let Err(e) = store.save_crm_link(&l) {
                        tracing::warn!(error = %e, channel, "notify: cannot save the CRM link");
                    }
                }
            });
            record_result(&cfg, &store, &metrics, item, result);
        }
        if let Ok(c) = store.outbox_counts() {
            metrics.set_outbox_pending(c.pending);
        }
        if due.len() == BATCH {
            continue;
        }
        let wait = match store.next_notification_at_on(Some(channel)) {
            Ok(Some(at)) => {
                let ms = (at.as_millisecond() - Timestamp::now().as_millisecond()).max(0);
                Duration::from_millis(ms as u64).clamp(POLL_MIN, POLL_MAX)
            }
            _ => POLL_MAX,
        };
        sleep_or_cancel(wait, &shutdown).await;
    }
}

/// Stores the outcome of one attempt: delivered, retry later, or given up.
fn record_result(
    cfg: &Config,
    store: &Store,
    metrics: &Metrics,
    item: &OutboxItem,
    result: Result<(), DeliveryError>,
) {
    let done = Timestamp::now();
    let stored = match result {
        Ok(()) => {
            metrics.notification_delivered(metric_channel(&item.channel));
            tracing::info!(event = %item.event_id, channel = %item.channel, "notification delivered");
            store.mark_notification_delivered(item.id, done)
        }
        Err(e) => {
            metrics.notification_failed(metric_channel(&item.channel));
            let why = e.chain();
            let decision = match (&e, channel_policy(&cfg.notify, &item.channel)) {
                (DeliveryError::Permanent(_), _) | (_, None) => AfterFailure::GiveUp,
                (_, Some((policy, _))) => after_failure_at_least(
                    &policy,
                    item.created_at,
                    item.attempts.saturating_add(1),
                    done,
                    0.9 + fastrand::f64() * 0.2,
                    match &e {
                        DeliveryError::RateLimited { after, .. } => *after,
                        _ => None,
                    },
                ),
            };
            match decision {
                AfterFailure::RetryAt(at) => {
                    tracing::warn!(event = %item.event_id, channel = %item.channel, error = %why, retry_at = %at, "notification failed");
                    store.reschedule_notification(item.id, at, &why)
                }
                AfterFailure::GiveUp => {
                    metrics.notification_given_up(metric_channel(&item.channel));
                    tracing::error!(event = %item.event_id, channel = %item.channel, error = %why, "notification given up");
                    store.give_up_notification(item.id, done, &why)
                }
            }
        }
    };
    if let Err(e) = stored {
        tracing::warn!(error = %e, event = %item.event_id, "notify: cannot record a delivery result");
    }
}

async fn sleep_or_cancel(d: Duration, shutdown: &CancellationToken) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(d) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    const POLICY: RetryPolicy = RetryPolicy {
        retry_every: Duration::from_secs(10),
        max_retry_every: Duration::from_secs(600),
        give_up_after: Duration::from_secs(3 * 86400),
    };

    #[test]
    fn catch_up_enqueues_recent_misses_once() {
        let cfg = Config::from_toml("[notify.webhook]\nurl = \"http://127.0.0.1:9/\"\n").unwrap();
        let store = Store::open_in_memory().unwrap();
        let now = ts(10_000);
        let call = |id: &str, ended: i64, status: Status| CallRecord {
            server: "s".into(),
            caller: None,
            callee: None,
            callee_normalized: None,
            status,
            missed: status == Status::Missed,
            lost_at: None,
            hangup_by: None,
            ..crate::test_support::inbound_miss(id, ts(ended - 30), 30.0)
        };
        store
            .insert_call(&call("recent", 9_500, Status::Missed))
            .unwrap();
        store
            .insert_call(&call("answered", 9_600, Status::Answered))
            .unwrap();
        store
            .insert_call(&call("old", 1_000, Status::Missed))
            .unwrap();
        // The daemon already enqueued one of them before the crash.
        let mut resolved = call("resolved", 9_700, Status::Missed);
        resolved.resolved_by = Some(crate::calls::record::ResolvedBy::Caller);
        resolved.resolved_at = Some(ts(9_800));
        store.insert_call(&resolved).unwrap();
        enqueue_for_record(&store, &cfg, &resolved, now).unwrap();

        assert_eq!(catch_up(&store, &cfg, ts(10_000 - 3600), now).unwrap(), 2);
        assert_eq!(catch_up(&store, &cfg, ts(10_000 - 3600), now).unwrap(), 0);
        let ids: Vec<String> = store
            .due_notifications(now, 10)
            .unwrap()
            .into_iter()
            .map(|i| i.event_id)
            .collect();
        assert_eq!(
            ids,
            [
                "missed:s:resolved",
                "missed:s:recent",
                "resolved:s:resolved"
            ]
        );
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let d: Vec<u64> = (1..=9)
            .map(|n| backoff(&POLICY, n, 1.0).as_secs())
            .collect();
        assert_eq!(d, [10, 20, 40, 80, 160, 320, 600, 600, 600]);
        assert_eq!(backoff(&POLICY, u32::MAX, 1.0).as_secs(), 600);
        assert_eq!(backoff(&POLICY, 1, 1.1).as_millis(), 11_000);
    }

    #[test]
    fn gives_up_after_the_deadline_with_a_last_try_at_it() {
        let created = ts(0);
        assert_eq!(
            after_failure(&POLICY, created, 1, ts(5), 1.0),
            AfterFailure::RetryAt(ts(15))
        );
        let deadline = 3 * 86400;
        assert_eq!(
            after_failure(&POLICY, created, 50, ts(deadline - 60), 1.0),
            AfterFailure::RetryAt(ts(deadline))
        );
        assert_eq!(
            after_failure(&POLICY, created, 51, ts(deadline), 1.0),
            AfterFailure::GiveUp
        );
    }
}
