//! Counters, gauges and histograms of the daemon, exposed in the OpenMetrics text format through
//! the `prometheus-client` crate; the HTTP edge that serves them is [`crate::web`].
//!
//! [`Metrics`] holds `prometheus-client` handles, each an atomic: the hot paths (every AMI event,
//! every verdict) update one with a relaxed `fetch_add` and never take a lock. Labelled series
//! with a fixed set of labels (direction × status, lost-at, outcome, channel × result) are created
//! once in [`Metrics::new`] and kept; per-server handles ([`ServerMetrics`]) are looked up once
//! per connection. The two latency histograms are [`AtomicHistogram`]s (the crate's own
//! `Histogram` takes a lock per observation). What is computed at scrape time (seconds since the
//! last event, the process's memory, CPU and descriptors) comes from [`prometheus_client`]
//! collectors. [`Metrics::render`] is pure.
//!
//! Sample names (the contract of dashboards and alerts; docs/operations.md lists them):
//! `perezvon_build_info`, `perezvon_missed_calls_total{lost_at}`,
//! `perezvon_calls_total{direction,status}`, `perezvon_callbacks_total{outcome}`,
//! `perezvon_ami_link_up{server}`, `perezvon_ami_events_received_total{server}`,
//! `perezvon_ami_decode_problems_total{server}`, `perezvon_ami_reconnects_total{server}`, `perezvon_ami_owned{server}` (1 while this node writes
//! the server's verdicts), `perezvon_ami_queued_events{server}` (events waiting in the server's own
//! queue for the ingest loop),
//! `perezvon_ami_seconds_since_last_event{server}`, `perezvon_ami_event_lag_seconds{server}`,
//! `perezvon_callback_tasks_pending`, `perezvon_callback_attempts_in_flight`,
//! `perezvon_calls_in_progress`, `perezvon_calls_today`, `perezvon_outbox_pending`,
//! `perezvon_held_verdicts`, `perezvon_notifications_total{channel,result}`,
//! `perezvon_verdict_latency_seconds` (histogram: hangup → verdict committed),
//! `perezvon_callback_outcome_latency_seconds` (histogram: Originate → outcome) and the
//! `process_*` family of the Prometheus client conventions.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelValue, EncodeMetric, LabelValueEncoder, MetricEncoder,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use crate::calls::record::{CallRecord, CallbackOutcome, Direction, LostAt, Status};

pub use crate::web::{serve, serve_on};

/// The Content-Type of [`Metrics::render`]'s text (what `prometheus-client` writes).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

const DIRECTIONS: [Direction; 4] = [
    Direction::Inbound,
    Direction::Outbound,
    Direction::Internal,
    Direction::Callback,
];
const STATUSES: [Status; 4] = [
    Status::Answered,
    Status::Missed,
    Status::Ignored,
    Status::Unknown,
];
/// Notification channels, in the order of the counters (every `[[notify.http]]` is `http`).
pub const CHANNELS: [&str; 6] = ["webhook", "email", "bitrix24", "amocrm", "telegram", "http"];
const RESULTS: [&str; 3] = ["delivered", "failed", "given_up"];

/// Upper bounds (seconds) of hangup → verdict committed: the tracker settles most calls at
/// once, some after a short grace for late events.
pub const VERDICT_BUCKETS: [f64; 13] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
/// Upper bounds (seconds) of Originate → outcome: ringing time plus the talk of a connected call.
pub const CALLBACK_BUCKETS: [f64; 13] = [
    1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 300.0, 900.0,
];

fn direction_str(d: Direction) -> &'static str {
    match d {
        Direction::Inbound => "inbound",
        Direction::Outbound => "outbound",
        Direction::Internal => "internal",
        Direction::Callback => "callback",
    }
}

fn status_str(s: Status) -> &'static str {
    match s {
        Status::Answered => "answered",
        Status::Missed => "missed",
        Status::Ignored => "ignored",
        Status::Unknown => "unknown",
    }
}

/// A label value escaped as the text format wants (`prometheus-client` writes values verbatim,
/// and a server name comes from the configuration).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LabelValue(pub String);

impl EncodeLabelValue for LabelValue {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(&escape_label(&self.0))
    }
}

type Labels = Vec<(&'static str, LabelValue)>;

fn labels(pairs: &[(&'static str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (*k, LabelValue((*v).to_string())))
        .collect()
}

/// Milliseconds since the Unix epoch, the unit of the timestamps kept in atomics.
fn millis(t: jiff::Timestamp) -> i64 {
    t.as_millisecond()
}

/// Counters of one `[[asterisk]]` server.
#[derive(Debug)]
pub struct ServerMetrics {
    link_up: Gauge,
    events: Counter,
    decode_problems: Counter,
    reconnects: Counter,
    owned: Gauge,
    queued: Gauge,
    /// When the link last went up or down (Unix ms; 0: not yet).
    link_changed_ms: AtomicI64,
    /// When the last event arrived (Unix ms; 0: none yet).
    last_event_ms: AtomicI64,
    /// Arrival minus the event's own `Timestamp` header, in ms (`i64::MIN`: unknown).
    lag_ms: AtomicI64,
}

impl ServerMetrics {
    pub fn set_link_up(&self, up: bool) {
        self.set_link(up, jiff::Timestamp::now());
    }
    /// The link went up or down at `at`.
    pub fn set_link(&self, up: bool, at: jiff::Timestamp) {
        self.link_up.set(i64::from(up));
        self.link_changed_ms.store(millis(at), Relaxed);
    }
    pub fn event_received(&self) {
        self.events.inc();
    }
    /// One event, received at `at`; `sent_at` is the event's `Timestamp` header when Asterisk
    /// sends one (`timestampevents = yes` in manager.conf).
    pub fn event_at(&self, at: jiff::Timestamp, sent_at: Option<f64>) {
        self.events.inc();
        let at_ms = millis(at);
        self.last_event_ms.store(at_ms, Relaxed);
        if let Some(sent) = sent_at.filter(|s| s.is_finite() && *s > 0.0) {
            self.lag_ms.store(at_ms - (sent * 1000.0) as i64, Relaxed);
        }
    }
    pub fn events_received(&self, n: u64) {
        self.events.inc_by(n);
    }
    /// Messages the codec skipped (oversized, malformed).
    pub fn decode_problems(&self, n: u64) {
        self.decode_problems.inc_by(n);
    }
    /// Sets the running total of skipped input (the AMI handle keeps the count).
    pub fn set_decode_problems(&self, total: u64) {
        self.decode_problems.inner().store(total, Relaxed);
    }
    pub fn reconnected(&self) {
        self.reconnects.inc();
    }
    /// Whether this node owns the server now (writes its verdicts; `daemon::ownership`).
    pub fn set_owned(&self, owned: bool) {
        self.owned.set(i64::from(owned));
    }
    /// Events waiting in the server's queue for the ingest loop.
    pub fn set_queued(&self, n: usize) {
        self.queued.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// What a status page shows of this server, as of `now`.
    pub fn snapshot(&self, name: &str, now: jiff::Timestamp) -> ServerSnapshot {
        let changed = self.link_changed_ms.load(Relaxed);
        let last = self.last_event_ms.load(Relaxed);
        let lag = self.lag_ms.load(Relaxed);
        let ts = |ms: i64| {
            (ms > 0)
                .then(|| jiff::Timestamp::from_millisecond(ms).ok())
                .flatten()
        };
        ServerSnapshot {
            name: name.to_string(),
            link_up: self.link_up.get() == 1,
            link_since: ts(changed),
            events: self.events.get(),
            reconnects: self.reconnects.get(),
            decode_problems: self.decode_problems.get(),
            owned: self.owned.get() == 1,
            queued: u64::try_from(self.queued.get()).unwrap_or(0),
            last_event_at: ts(last),
            seconds_since_last_event: (last > 0)
                .then(|| (millis(now) - last).max(0) as f64 / 1000.0),
            lag_seconds: (lag != i64::MIN).then(|| lag as f64 / 1000.0),
            owner: None,
        }
    }
}

/// One server as [`ServerMetrics::snapshot`] saw it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ServerSnapshot {
    pub name: String,
    pub link_up: bool,
    /// When the link last went up or down (`None`: no attempt finished yet).
    pub link_since: Option<jiff::Timestamp>,
    pub events: u64,
    pub reconnects: u64,
    pub decode_problems: u64,
    /// This node owns the server (writes its verdicts).
    #[serde(default)]
    pub owned: bool,
    /// Events waiting in the server's own queue.
    #[serde(default)]
    pub queued: u64,
    pub last_event_at: Option<jiff::Timestamp>,
    pub seconds_since_last_event: Option<f64>,
    /// Arrival minus the event's `Timestamp` header of the last event that had one.
    pub lag_seconds: Option<f64>,
    /// The node holding the server's lease (several nodes; filled by `perezvon status` from
    /// the database).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

impl ServerSnapshot {
    /// A configured server nothing is known of (the daemon is not running).
    pub fn unseen(name: &str) -> ServerSnapshot {
        ServerSnapshot {
            name: name.to_string(),
            link_up: false,
            link_since: None,
            events: 0,
            reconnects: 0,
            decode_problems: 0,
            owned: false,
            queued: 0,
            last_event_at: None,
            seconds_since_last_event: None,
            lag_seconds: None,
            owner: None,
        }
    }
}

/// A histogram on atomics: one relaxed `fetch_add` per bucket and count, a CAS loop for the sum.
/// Exported through `prometheus-client` like its own `Histogram`, without that one's lock.
#[derive(Debug)]
pub struct AtomicHistogram {
    bounds: Box<[f64]>,
    /// Per bucket (not cumulative); the last is `+Inf`.
    counts: Box<[AtomicU64]>,
    count: AtomicU64,
    /// The sum's `f64` bits.
    sum: AtomicU64,
}

impl AtomicHistogram {
    /// `bounds` must be finite and increasing; `+Inf` is added.
    pub fn new(bounds: &[f64]) -> AtomicHistogram {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]));
        AtomicHistogram {
            bounds: bounds.into(),
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// Counts one value; NaN is ignored, a negative value (clocks disagree) counts as 0.
    pub fn observe(&self, v: f64) {
        if v.is_nan() {
            return;
        }
        let v = v.max(0.0);
        let i = self.bounds.partition_point(|b| *b < v);
        self.counts[i].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
        let _ = self.sum.fetch_update(Relaxed, Relaxed, |bits| {
            Some((f64::from_bits(bits) + v).to_bits())
        });
    }

    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    pub fn sum(&self) -> f64 {
        f64::from_bits(self.sum.load(Relaxed))
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> = self
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::MAX))
            .zip(self.counts.iter().map(|c| c.load(Relaxed)))
            .collect();
        // The count as the buckets' sum: a scrape racing an observation stays consistent.
        let count = buckets.iter().map(|(_, n)| n).sum();
        encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            self.sum(),
            count,
            &buckets,
            None,
        )
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// An `Arc` so the registry and [`Metrics`] share one histogram.
#[derive(Debug, Clone)]
struct SharedHistogram(Arc<AtomicHistogram>);

impl TypedMetric for SharedHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for SharedHistogram {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }
    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

type Servers = Arc<RwLock<BTreeMap<String, Arc<ServerMetrics>>>>;

/// Per-server families, kept to create a new server's handles.
#[derive(Debug, Default)]
struct ServerFamilies {
    link_up: Family<Labels, Gauge>,
    events: Family<Labels, Counter>,
    decode_problems: Family<Labels, Counter>,
    reconnects: Family<Labels, Counter>,
    owned: Family<Labels, Gauge>,
    queued: Family<Labels, Gauge>,
}

/// The registry. Share it as `Arc<Metrics>`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Missed calls by `LostAt::ALL` index; the last slot counts misses without a category.
    missed: Vec<Counter>,
    calls: Vec<[Counter; 4]>,
    callbacks: Vec<Counter>,
    families: ServerFamilies,
    servers: Servers,
    pending_tasks: Gauge,
    attempts_in_flight: Gauge,
    calls_in_progress: Gauge,
    calls_today: Gauge,
    outbox_pending: Gauge,
    held_verdicts: Gauge,
    notifications: Vec<[Counter; 3]>,
    verdict_latency: Arc<AtomicHistogram>,
    callback_latency: Arc<AtomicHistogram>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new([])
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Metrics {
    /// A registry with the given servers present from the start (their link shows as down until
    /// it comes up, rather than being absent).
    pub fn new<'a>(servers: impl IntoIterator<Item = &'a str>) -> Metrics {
        let mut r = Registry::default();

        let build: Family<Labels, Gauge> = Family::default();
        build
            .get_or_create(&labels(&[("version", env!("CARGO_PKG_VERSION"))]))
            .set(1);
        r.register(
            "perezvon_build_info",
            "Always 1; the version label says which perezvon is running",
            build,
        );

        let fam: Family<Labels, Counter> = Family::default();
        let missed = LostAt::ALL
            .iter()
            .map(|l| l.as_str())
            .chain(["unknown"])
            .map(|l| fam.get_or_create(&labels(&[("lost_at", l)])).clone())
            .collect();
        // Counters get their `_total` from the crate: the samples keep their names.
        r.register(
            "perezvon_missed_calls",
            "Missed inbound calls, by where the caller was lost",
            fam,
        );

        let fam: Family<Labels, Counter> = Family::default();
        let calls = DIRECTIONS
            .iter()
            .map(|d| {
                STATUSES.map(|s| {
                    fam.get_or_create(&labels(&[
                        ("direction", direction_str(*d)),
                        ("status", status_str(s)),
                    ]))
                    .clone()
                })
            })
            .collect();
        r.register(
            "perezvon_calls",
            "Calls whose verdict was stored, by direction and status",
            fam,
        );

        let fam: Family<Labels, Counter> = Family::default();
        let callbacks = CallbackOutcome::ALL
            .iter()
            .map(|o| {
                fam.get_or_create(&labels(&[("outcome", o.as_str())]))
                    .clone()
            })
            .collect();
        r.register(
            "perezvon_callbacks",
            "Callback attempts that ended, by outcome",
            fam,
        );

        let families = ServerFamilies::default();
        r.register(
            "perezvon_ami_link_up",
            "1 while the AMI connection to the server is logged in, else 0",
            families.link_up.clone(),
        );
        r.register(
            "perezvon_ami_events_received",
            "AMI events received from the server",
            families.events.clone(),
        );
        r.register(
            "perezvon_ami_decode_problems",
            "AMI messages skipped as malformed or oversized",
            families.decode_problems.clone(),
        );
        r.register(
            "perezvon_ami_reconnects",
            "Reconnections to the server after a lost or failed link",
            families.reconnects.clone(),
        );
        r.register(
            "perezvon_ami_owned",
            "1 while this node owns the server (writes its verdicts, dials its callbacks)",
            families.owned.clone(),
        );
        r.register(
            "perezvon_ami_queued_events",
            "AMI events waiting in the server's own queue for the ingest loop",
            families.queued.clone(),
        );
        let servers_map: Servers = Arc::default();
        r.register_collector(Box::new(ServerClock(servers_map.clone())));

        let gauge = |r: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            r.register(name, help, g.clone());
            g
        };
        let pending_tasks = gauge(
            &mut r,
            "perezvon_callback_tasks_pending",
            "Callback tasks waiting for an attempt or in progress",
        );
        let attempts_in_flight = gauge(
            &mut r,
            "perezvon_callback_attempts_in_flight",
            "Callback attempts originated whose outcome is not known yet",
        );
        let calls_in_progress = gauge(
            &mut r,
            "perezvon_calls_in_progress",
            "Calls being followed on the AMI links now",
        );
        let calls_today = gauge(
            &mut r,
            "perezvon_calls_today",
            "Calls ended today (hours.timezone) whose verdict is stored",
        );
        let outbox_pending = gauge(
            &mut r,
            "perezvon_outbox_pending",
            "Notifications waiting for delivery",
        );
        let held_verdicts = gauge(
            &mut r,
            "perezvon_held_verdicts",
            "Call verdicts held in memory because database writes fail (retried with backoff)",
        );

        let fam: Family<Labels, Counter> = Family::default();
        let notifications = CHANNELS
            .iter()
            .map(|c| {
                RESULTS.map(|res| {
                    fam.get_or_create(&labels(&[("channel", c), ("result", res)]))
                        .clone()
                })
            })
            .collect();
        r.register(
            "perezvon_notifications",
            "Notification delivery attempts, by channel and result",
            fam,
        );

        let verdict_latency = Arc::new(AtomicHistogram::new(&VERDICT_BUCKETS));
        r.register(
            "perezvon_verdict_latency_seconds",
            "From a call's hangup to its verdict committed to the database",
            SharedHistogram(verdict_latency.clone()),
        );
        let callback_latency = Arc::new(AtomicHistogram::new(&CALLBACK_BUCKETS));
        r.register(
            "perezvon_callback_outcome_latency_seconds",
            "From a callback's Originate to its outcome committed",
            SharedHistogram(callback_latency.clone()),
        );
        r.register_collector(Box::new(ProcessCollector));

        let m = Metrics {
            registry: r,
            missed,
            calls,
            callbacks,
            families,
            servers: servers_map,
            pending_tasks,
            attempts_in_flight,
            calls_in_progress,
            calls_today,
            outbox_pending,
            held_verdicts,
            notifications,
            verdict_latency,
            callback_latency,
        };
        for s in servers {
            m.server(s);
        }
        m
    }

    /// The handle of one server; created on first use. Keep it: updates through it take no lock.
    pub fn server(&self, name: &str) -> Arc<ServerMetrics> {
        if let Some(s) = self
            .servers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            return s.clone();
        }
        let l = labels(&[("server", name)]);
        let f = &self.families;
        self.servers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(ServerMetrics {
                    link_up: f.link_up.get_or_create(&l).clone(),
                    events: f.events.get_or_create(&l).clone(),
                    decode_problems: f.decode_problems.get_or_create(&l).clone(),
                    reconnects: f.reconnects.get_or_create(&l).clone(),
                    // Until told otherwise (one node owns every server).
                    owned: {
                        let g = f.owned.get_or_create(&l).clone();
                        g.set(1);
                        g
                    },
                    queued: f.queued.get_or_create(&l).clone(),
                    link_changed_ms: AtomicI64::new(0),
                    last_event_ms: AtomicI64::new(0),
                    lag_ms: AtomicI64::new(i64::MIN),
                })
            })
            .clone()
    }

    /// A server left the configuration (SIGHUP): no longer listed or exported.
    pub fn forget_server(&self, name: &str) {
        self.servers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        let l = labels(&[("server", name)]);
        let f = &self.families;
        f.link_up.remove(&l);
        f.events.remove(&l);
        f.decode_problems.remove(&l);
        f.reconnects.remove(&l);
        f.owned.remove(&l);
        f.queued.remove(&l);
    }

    /// Every server's status as of `now`, in name order.
    pub fn servers(&self, now: jiff::Timestamp) -> Vec<ServerSnapshot> {
        self.servers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(name, s)| s.snapshot(name, now))
            .collect()
    }

    /// Counts a stored verdict.
    pub fn record_call(&self, r: &CallRecord) {
        let d = DIRECTIONS
            .iter()
            .position(|x| *x == r.direction)
            .unwrap_or(0);
        let s = STATUSES.iter().position(|x| *x == r.status).unwrap_or(3);
        self.calls[d][s].inc();
        if r.status == Status::Missed {
            let i = r
                .lost_at
                .and_then(|l| LostAt::ALL.iter().position(|x| *x == l))
                .unwrap_or(LostAt::ALL.len());
            self.missed[i].inc();
        }
    }

    /// A verdict was committed `secs` after its call's hangup.
    pub fn observe_verdict_latency(&self, secs: f64) {
        self.verdict_latency.observe(secs);
    }

    /// A callback's outcome was committed `secs` after its Originate.
    pub fn observe_callback_latency(&self, secs: f64) {
        self.callback_latency.observe(secs);
    }

    pub fn verdict_latency(&self) -> &AtomicHistogram {
        &self.verdict_latency
    }

    pub fn callback_latency(&self) -> &AtomicHistogram {
        &self.callback_latency
    }

    pub fn record_callback(&self, outcome: CallbackOutcome) {
        let i = CallbackOutcome::ALL
            .iter()
            .position(|x| *x == outcome)
            .unwrap_or(0);
        self.callbacks[i].inc();
    }

    pub fn set_pending_callback_tasks(&self, n: u64) {
        self.pending_tasks.set(to_i64(n));
    }
    pub fn pending_callback_tasks(&self) -> u64 {
        self.pending_tasks.get().max(0) as u64
    }

    pub fn set_attempts_in_flight(&self, n: u64) {
        self.attempts_in_flight.set(to_i64(n));
    }
    pub fn attempts_in_flight(&self) -> u64 {
        self.attempts_in_flight.get().max(0) as u64
    }

    pub fn set_calls_in_progress(&self, n: usize) {
        self.calls_in_progress.set(to_i64(n as u64));
    }
    pub fn calls_in_progress(&self) -> u64 {
        self.calls_in_progress.get().max(0) as u64
    }

    pub fn set_calls_today(&self, n: u64) {
        self.calls_today.set(to_i64(n));
    }
    pub fn calls_today(&self) -> u64 {
        self.calls_today.get().max(0) as u64
    }

    pub fn set_outbox_pending(&self, n: u64) {
        self.outbox_pending.set(to_i64(n));
    }

    /// Verdicts held in memory because the database refuses writes (0 when it works).
    pub fn set_held_verdicts(&self, n: usize) {
        self.held_verdicts.set(to_i64(n as u64));
    }
    pub fn held_verdicts(&self) -> u64 {
        self.held_verdicts.get().max(0) as u64
    }

    fn notification(&self, channel: &str, result: usize) {
        if let Some(c) = CHANNELS.iter().position(|x| *x == channel) {
            self.notifications[c][result].inc();
        }
    }
    pub fn notification_delivered(&self, channel: &str) {
        self.notification(channel, 0);
    }
    pub fn notification_failed(&self, channel: &str) {
        self.notification(channel, 1);
    }
    pub fn notification_given_up(&self, channel: &str) {
        self.notification(channel, 2);
    }

    /// The exposition text (OpenMetrics 1.0, [`CONTENT_TYPE`]), ending in `# EOF`.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        // Writing to a String cannot fail; a collector's error would leave a partial text.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "metrics: encoding failed");
        }
        out
    }
}

/// Per server, computed at scrape time: seconds since the last event and the event lag.
#[derive(Debug)]
struct ServerClock(Servers);

impl Collector for ServerClock {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let now = jiff::Timestamp::now();
        let snaps: Vec<ServerSnapshot> = self
            .0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(n, s)| s.snapshot(n, now))
            .collect();
        type Pick = fn(&ServerSnapshot) -> Option<f64>;
        let gauges: [(&str, &str, Pick); 2] = [
            (
                "perezvon_ami_seconds_since_last_event",
                "Seconds since the last AMI event from the server (absent before the first).",
                |s| s.seconds_since_last_event,
            ),
            (
                "perezvon_ami_event_lag_seconds",
                "Arrival minus the Timestamp header of the last event that had one \
                 (manager.conf timestampevents = yes).",
                |s| s.lag_seconds,
            ),
        ];
        for (name, help, pick) in gauges {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for s in &snaps {
                if let Some(v) = pick(s) {
                    let l = labels(&[("server", &s.name)]);
                    family.encode_family(&l)?.encode_gauge(&v)?;
                }
            }
        }
        Ok(())
    }
}

/// `process_*` metrics read from `/proc/self` at scrape time (Linux; elsewhere none).
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(p) = ProcessStats::read() else {
            return Ok(());
        };
        encoder
            .encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                None,
                MetricType::Counter,
            )?
            .encode_counter::<prometheus_client::encoding::NoLabelSet, _, f64>(
                &p.cpu_seconds,
                None,
            )?;
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                p.resident_bytes as f64,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                p.virtual_bytes as f64,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch in seconds.",
                p.start_time_seconds,
            ),
        ];
        for (name, help, v) in gauges {
            encoder
                .encode_descriptor(name, help, None, MetricType::Gauge)?
                .encode_gauge(&v)?;
        }
        if let Some(n) = p.open_fds {
            encoder
                .encode_descriptor(
                    "process_open_fds",
                    "Number of open file descriptors.",
                    None,
                    MetricType::Gauge,
                )?
                .encode_gauge(&(n as i64))?;
        }
        if let Some(n) = p.max_fds {
            encoder
                .encode_descriptor(
                    "process_max_fds",
                    "Maximum number of open file descriptors.",
                    None,
                    MetricType::Gauge,
                )?
                .encode_gauge(&(n as i64))?;
        }
        Ok(())
    }
}

/// What `/proc` says about this process.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub start_time_seconds: f64,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
}

/// `USER_HZ`: the unit of the times in `/proc/<pid>/stat`, 100 on every Linux architecture
/// (the kernel converts from its internal `HZ` for this interface).
const USER_HZ: f64 = 100.0;
/// The page size of the `rss` field. 4 KiB on the hosts we run on; the `VmRSS` line of
/// `/proc/self/status` (in kB, page size independent) is preferred when present.
const PAGE_SIZE: u64 = 4096;

impl ProcessStats {
    /// Reads `/proc/self` (`None` where there is no procfs).
    pub fn read() -> Option<ProcessStats> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let boot = std::fs::read_to_string("/proc/stat").ok()?;
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let mut p = ProcessStats::parse(&stat, &boot, &status, &limits)?;
        p.open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count().saturating_sub(1) as u64); // the directory's own descriptor
        Some(p)
    }

    /// Parses `/proc/self/stat`, `/proc/stat` (for `btime`), `/proc/self/status` (`VmRSS`) and
    /// `/proc/self/limits` (`Max open files`). `None` when `stat` or `btime` is malformed.
    pub fn parse(stat: &str, proc_stat: &str, status: &str, limits: &str) -> Option<ProcessStats> {
        // The command name is in parentheses and may itself contain spaces and ')'.
        let rest = &stat[stat.rfind(')')? + 1..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        // `rest` starts at field 3 (state): field n is f[n - 3].
        let field = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
        let (utime, stime) = (field(14)?, field(15)?);
        let start_ticks = field(22)?;
        let vsize = field(23)?;
        let rss_pages = field(24)?;
        let btime: u64 = proc_stat
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()?;
        let rss_kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok());
        let max_fds = limits
            .lines()
            .find_map(|l| l.strip_prefix("Max open files"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok());
        Some(ProcessStats {
            cpu_seconds: (utime + stime) as f64 / USER_HZ,
            resident_bytes: rss_kb.map_or(rss_pages * PAGE_SIZE, |kb| kb * 1024),
            virtual_bytes: vsize,
            start_time_seconds: btime as f64 + start_ticks as f64 / USER_HZ,
            open_fds: None,
            max_fds,
        })
    }
}

/// Label values escape `\`, `"` and line feeds (the text formats).
pub fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(escape_label(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label("x\ny"), "x\\ny");
    }

    #[test]
    fn servers_are_registered_once() {
        let m = Metrics::new(["a", "b"]);
        let a = m.server("a");
        a.event_received();
        m.server("a").event_received();
        assert_eq!(a.events.get(), 2);
        assert!(m
            .render()
            .contains("perezvon_ami_link_up{server=\"b\"} 0\n"));
    }

    #[test]
    fn histogram_buckets_are_upper_bounds() {
        let h = AtomicHistogram::new(&[1.0, 2.0]);
        for v in [0.5, 1.0, 1.5, 3.0, -1.0, f64::NAN] {
            h.observe(v);
        }
        let loads: Vec<u64> = h.counts.iter().map(|c| c.load(Relaxed)).collect();
        // 0.5, 1.0 and -1.0 (as 0) ≤ 1; 1.5 ≤ 2; 3.0 in +Inf; NaN ignored.
        assert_eq!(loads, [3, 1, 1]);
        assert_eq!(h.count(), 5);
        assert!((h.sum() - 6.0).abs() < 1e-9);
    }

    #[test]
    fn proc_stat_parses_with_odd_command_names() {
        let stat = "4242 (perezvon) run) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 \
                    9 0 360000 123456789 2500 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 \
                    1 0 0 0 0 0";
        let p = ProcessStats::parse(
            stat,
            "cpu  1 2 3\nbtime 1800000000\n",
            "Name:\tperezvon\nVmRSS:\t   10240 kB\n",
            "Limit  Soft Limit  Hard Limit  Units\nMax open files            1024                 524288               files\n",
        )
        .unwrap();
        assert_eq!(p.cpu_seconds, 3.0);
        assert_eq!(p.virtual_bytes, 123_456_789);
        assert_eq!(p.resident_bytes, 10240 * 1024);
        assert_eq!(p.start_time_seconds, 1_800_003_600.0);
        assert_eq!(p.max_fds, Some(1024));
        // Without VmRSS, pages.
        let p = ProcessStats::parse(stat, "btime 1800000000\n", "", "").unwrap();
        assert_eq!(p.resident_bytes, 2500 * 4096);
        assert_eq!(p.max_fds, None);
        assert!(ProcessStats::parse("garbage", "btime 1\n", "", "").is_none());
        assert!(ProcessStats::parse(stat, "no btime\n", "", "").is_none());
    }
}
