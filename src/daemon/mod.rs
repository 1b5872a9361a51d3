//! `perezvon run`: the wiring. AMI supervisors -> pipeline (trackers + the one writer of the
//! calls table) -> dialer, plus systemd notification and graceful shutdown.
//!
//! ```text
//!  [[asterisk]] ──supervisor──> LinkEvent ──┐
//!  [[asterisk]] ──supervisor──> LinkEvent ──┴─> ingest loop ── Pipeline::feed ──> calls table
//!                                               │   OriginateResponse        │ CallRecords
//!                                               └──────────────> dialer <────┘ (tasks, attempts)
//!                                                                  │ Originate (AmiHandle)
//! ```
//! - The ingest loop is the only writer of `calls`; the dialer has its own connection for
//!   `callback_tasks`/`callback_attempts` (SQLite WAL lets them commit independently).
//! - After every LinkUp the ingest loop asks for `CoreShowChannels` (in a side task, so the event
//!   stream keeps flowing while the list arrives) and hands the items to `resync`.
//! - Every second (the tracker tick) the ingest loop tells the dialer which customers are on a
//!   live call ([`Pipeline::live_customers`]), when that changed: their callbacks wait.
//! - `READY=1` goes to systemd once the configuration and the database are up — not gated on
//!   Asterisk, which reconnects on its own; `WATCHDOG=1` every half `WATCHDOG_USEC` while the
//!   ingest loop turns.
//! - Shutdown (the token, cancelled by SIGTERM/SIGINT in `run`): supervisors stop, the events
//!   already received are processed and committed, the dialer drains its queue; attempts still
//!   in flight stay recorded without outcome and are settled at the next start.
//!
//! Hook points for the lead: [`RunOptions::dialer_events`] receives every [`DialerEvent`]
//! (notifications, metrics); [`RunOptions::records`] every committed [`CallRecord`].

pub mod dialer;
pub mod ingest;
pub mod leases;
pub mod ownership;
pub mod servers;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::ami::{Action, AmiHandle, LinkEvent, Message};
use crate::callback::originate::OriginateResponse;
use crate::calls::record::CallRecord;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};
use dialer::{Clock, Dialer, DialerError, DialerEvent, DialerInput};
use ingest::Pipeline;
use ownership::Ownership;
use servers::Servers;

/// How often live calls are checked for silence when no event arrives.
const TRACKER_TICK: Duration = Duration::from_secs(1);
/// Events handled in one ingest turn at most (see `Ingest::link_turn`): a bound on the time a
/// verdict waits for its group's commit and on the time other inputs wait for the loop.
const TURN_EVENTS: usize = 2048;
/// How long shutdown waits for the supervisors and the dialer.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot open the database")]
    Store(#[source] StoreError),
    #[error("writing call verdicts failed")]
    Pipeline(#[source] StoreError),
    #[error("callback dialer failed")]
    Dialer(#[source] DialerError),
}

/// Optional wiring for embedders (the demo, tests, notifications, metrics).
#[derive(Default)]
pub struct RunOptions {
    /// The dialer's clock (default: the system clock).
    pub clock: Option<Clock>,
    /// Receives every dialer event (task created, attempt started/ended, task closed).
    pub dialer_events: Option<mpsc::Sender<DialerEvent>>,
    /// Receives every call verdict once committed.
    pub records: Option<mpsc::Sender<CallRecord>>,
    /// The metrics registry to update (default: a new one, served when `[metrics] enabled`).
    pub metrics: Option<Arc<Metrics>>,
    /// Which servers this node acts on (default: [`Ownership::everything`]). Verdicts of a
    /// server not owned are tracked and kept, and written once it is.
    pub ownership: Option<Ownership>,
    /// New configurations to apply (SIGHUP: `perezvon run` loads the file again and sends the
    /// result; a refused one is logged and changes nothing). See the ingest loop's `reload`.
    pub reload: Option<mpsc::Receiver<Result<Config, crate::config::ConfigError>>>,
}

/// Runs the daemon until `shutdown` is cancelled. The future is `Send`: spawn it.
pub async fn run(cfg: Config, db: PathBuf, shutdown: CancellationToken) -> Result<(), DaemonError> {
    run_with(cfg, db, shutdown, RunOptions::default()).await
}

/// [`run`] with hooks. The steps, in order: open the stores, read the status, start the
/// observers (notifications, metrics, report mail, retention), tell systemd, start the
/// servers, the console and the dialer, run the ingest loop, shut down.
pub async fn run_with(
    cfg: Config,
    db: PathBuf,
    shutdown: CancellationToken,
    mut opts: RunOptions,
) -> Result<(), DaemonError> {
    let (mut calls_store, mut tasks_store) = open_stores(&db, &cfg.cluster.node_id)?;
    // Several nodes share a PostgreSQL through leases (one alone takes them all in a second).
    let location = crate::store::Location::parse(&db.to_string_lossy());
    let ownership = match &opts.ownership {
        Some(o) => o.clone(),
        None if location.is_postgres() => Ownership::leased(),
        None => Ownership::everything(),
    };
    let leases = match (&location, &opts.ownership) {
        (crate::store::Location::Postgres(url), None) => {
            let fence = Arc::new(leases::LeaseFence {
                ownership: ownership.clone(),
                node: cfg.cluster.node_id.clone(),
            });
            calls_store.set_fence(fence.clone());
            tasks_store.set_fence(fence);
            if let Some(cb) = cfg.callback_server() {
                tasks_store.fence_attempts_by(&cb.name);
            }
            Some(leases::Leases::start(
                url,
                &cfg.cluster.node_id,
                cfg.cluster.lease_ttl,
                cfg.asterisk.iter().map(|a| a.name.clone()).collect(),
                ownership.clone(),
            ))
        }
        _ => None,
    };
    let metrics = opts
        .metrics
        .clone()
        .unwrap_or_else(|| Arc::new(Metrics::new(cfg.asterisk.iter().map(|a| a.name.as_str()))));
    let shared_cfg = Arc::new(cfg.clone());
    let services = shutdown.child_token();
    let started_at = jiff::Timestamp::now();
    let (today, in_flight) = initial_status(&cfg, &db, &metrics, started_at);
    let observers = start_observers(&shared_cfg, &db, &metrics, &services, &opts, in_flight);
    start_web_and_jobs(&shared_cfg, &db, &metrics, &services, started_at);
    tracing::info!(database = %db.display(), servers = cfg.asterisk.len(), callbacks = cfg.callback.enabled, node = %cfg.cluster.node_id, "perezvon started");
    sd_notify(&format!(
        "READY=1\nSTATUS=connecting to Asterisk; {}",
        crate::status::line_from(&metrics, started_at)
    ));
    let watchdog = start_watchdog(&shutdown);

    let mut servers = Servers::start(&cfg.asterisk, shutdown.child_token());
    start_console(&shared_cfg, &db, &metrics, &services, &servers);
    let dialer = start_dialer(
        &cfg,
        tasks_store,
        &servers,
        &opts,
        &observers,
        leases.as_ref().map(|_| ownership.clone()),
    );

    // With callbacks on, every stored verdict is marked for the dialer in its own transaction
    // (the dialer acts on what is still marked at start-up: a miss never loses its task).
    let dialing = cfg.callback.enabled && cfg.callback_server().is_some();
    let pipeline = Pipeline::new(&cfg, calls_store)
        .for_dialer(dialing)
        .hold_up_to(crate::daemon::ingest::MAX_HELD_VERDICTS)
        .gated_by(ownership.clone());
    let (gaps, gap_rx) = crate::history::gap::Gaps::new(shared_cfg.clone());
    let (resync_tx, resync_rx) = mpsc::channel::<Resynced>(16);
    let mut ingest = Ingest {
        pipeline,
        dial_tx: dialer.tx.clone(),
        records_tx: opts.records.clone(),
        observer_tx: observers.records_tx.clone(),
        metrics: metrics.clone(),
        callback_server: cfg.callback_server().map(|a| a.name.clone()),
        held: HashMap::new(),
        dialing: dialer.task.is_some(),
        status: Status::default(),
        servers: HashMap::new(),
        today,
        cfg: shared_cfg.clone(),
        gaps,
        generation: 0,
        resync_tx,
        live_sent: HashSet::new(),
        live_callbacks_sent: HashSet::new(),
        ownership,
        dialer_epoch: None,
        lease_servers: leases.as_ref().map(|l| l.servers.clone()),
    };
    let inputs = LoopInputs {
        shutdown: shutdown.clone(),
        dialer_done: dialer.done.clone(),
        resync_rx,
        gap_rx,
        reload_rx: opts.reload.take(),
    };
    let result = ingest.run(&mut servers, inputs).await;
    let result = ingest.finish(&mut servers, result).await;
    drop(ingest);
    let result = stop_dialer(dialer, result).await;
    if let Some(l) = leases {
        // Handed over at once rather than after a TTL.
        let _ = tokio::task::spawn_blocking(move || l.stop()).await;
    }
    observers.stop(&services).await;
    if let Some(w) = watchdog {
        w.abort();
    }
    tracing::info!("perezvon stopped");
    result
}

/// Two connections: one for the ingest loop (the only writer of `calls`), one for the dialer;
/// on PostgreSQL named after the node (`application_name`), so an operator sees whose they are.
fn open_stores(db: &std::path::Path, node: &str) -> Result<(Store, Store), DaemonError> {
    let location = crate::store::Location::parse(&db.to_string_lossy());
    let calls_store = Store::open_named(&location, &format!("perezvon {node} ingest"))
        .map_err(DaemonError::Store)?;
    calls_store.check_writable().map_err(DaemonError::Store)?;
    let tasks_store = Store::open_named(&location, &format!("perezvon {node} dialer"))
        .map_err(DaemonError::Store)?;
    Ok((calls_store, tasks_store))
}

/// What STATUS= and /status say from the first second: the queue and today's calls as stored
/// (the gauges are kept up to date from here on). Returns today's count and the attempts in
/// flight.
fn initial_status(
    cfg: &Config,
    db: &std::path::Path,
    metrics: &Metrics,
    started_at: jiff::Timestamp,
) -> (Today, HashSet<String>) {
    let mut in_flight: HashSet<String> = HashSet::new();
    let mut today = Today::new(started_at, &cfg.hours.timezone);
    match Store::open(db).and_then(|st| {
        let tasks = st.open_tasks()?.len() as u64;
        let attempts = st.unfinished_attempts()?;
        let calls = st.calls_ended_between(today.start, started_at)?.len() as u64;
        Ok((tasks, attempts, calls))
    }) {
        Ok((tasks, attempts, calls)) => {
            metrics.set_pending_callback_tasks(tasks);
            in_flight.extend(attempts.into_iter().map(|a| a.callback_id));
            metrics.set_attempts_in_flight(in_flight.len() as u64);
            today.count = calls;
            metrics.set_calls_today(calls);
        }
        Err(e) => {
            tracing::warn!(error = %crate::store::error_chain(&e), "cannot read the callback queue for the status");
        }
    }
    (today, in_flight)
}

/// The notifications observer (its own connection), the outbox delivery and the fan-out of the
/// dialer's events.
struct Observers {
    records_tx: mpsc::Sender<CallRecord>,
    dialer_events_tx: mpsc::Sender<DialerEvent>,
    observer: tokio::task::JoinHandle<Result<(), StoreError>>,
    delivery: Option<tokio::task::JoinHandle<Result<(), StoreError>>>,
    fanout: tokio::task::JoinHandle<()>,
}

/// Notifications and metrics watch the verdicts and the dialer through an observer on its own
/// connection. Verdicts reach it with back-pressure (never dropped); the outbox it fills is
/// drained by `run_delivery`, which also re-enqueues the last hour's verdicts after a crash.
fn start_observers(
    cfg: &Arc<Config>,
    db: &std::path::Path,
    metrics: &Arc<Metrics>,
    services: &CancellationToken,
    opts: &RunOptions,
    mut in_flight: HashSet<String>,
) -> Observers {
    let (obs_records_tx, obs_records_rx) = mpsc::channel::<CallRecord>(4096);
    let (obs_dialer_tx, obs_dialer_rx) = mpsc::channel::<DialerEvent>(4096);
    let observer = tokio::spawn(crate::notify::observe::run_observer(
        cfg.clone(),
        db.to_path_buf(),
        metrics.clone(),
        obs_records_rx,
        obs_dialer_rx,
        services.clone(),
    ));
    let delivery = (cfg.notify.webhook.is_some() || cfg.notify.email.is_some()).then(|| {
        tokio::spawn(crate::notify::run_delivery(
            cfg.clone(),
            db.to_path_buf(),
            metrics.clone(),
            services.clone(),
        ))
    });
    // The dialer's events go to the observer and to an embedder's hook, if any.
    let (dialer_events_tx, mut dialer_events_rx) = mpsc::channel::<DialerEvent>(4096);
    let hook = opts.dialer_events.clone();
    let fanout_metrics = metrics.clone();
    let fanout = tokio::spawn(async move {
        while let Some(e) = dialer_events_rx.recv().await {
            // Attempts in flight and Originate → outcome, from the times the dialer recorded.
            match &e {
                DialerEvent::AttemptStarted { callback_id, .. } => {
                    in_flight.insert(callback_id.clone());
                    fanout_metrics.set_attempts_in_flight(in_flight.len() as u64);
                }
                DialerEvent::AttemptEnded {
                    callback_id,
                    originated_at,
                    ended_at,
                    ..
                } => {
                    in_flight.remove(callback_id);
                    fanout_metrics.set_attempts_in_flight(in_flight.len() as u64);
                    fanout_metrics
                        .observe_callback_latency(seconds_between(*originated_at, *ended_at));
                }
                _ => {}
            }
            if let Some(h) = &hook {
                let _ = h.try_send(e.clone());
            }
            let _ = obs_dialer_tx.send(e).await;
        }
    });
    Observers {
        records_tx: obs_records_tx,
        dialer_events_tx,
        observer,
        delivery,
        fanout,
    }
}

impl Observers {
    /// Last: the observer gets every verdict and attempt outcome of this run before it stops.
    async fn stop(self, services: &CancellationToken) {
        drop(self.dialer_events_tx);
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, self.fanout).await;
        drop(self.records_tx);
        match tokio::time::timeout(SHUTDOWN_GRACE, self.observer).await {
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "notifications observer failed"),
            Err(_) => tracing::warn!("notifications observer did not stop within the grace period"),
            _ => {}
        }
        services.cancel();
        if let Some(d) = self.delivery {
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, d).await;
        }
    }
}

/// `/metrics` + `/status`, the scheduled report e-mail and retention.
fn start_web_and_jobs(
    cfg: &Arc<Config>,
    db: &std::path::Path,
    metrics: &Arc<Metrics>,
    services: &CancellationToken,
    started_at: jiff::Timestamp,
) {
    if cfg.metrics.enabled {
        let (listen, stop) = (cfg.metrics.listen, services.clone());
        let router = crate::web::router(
            metrics.clone(),
            Some(crate::web::StatusSource {
                db: db.to_path_buf(),
                timezone: cfg.hours.timezone.clone(),
                started_at,
            }),
        );
        tokio::spawn(async move {
            // A port in use must not stop call tracking: say so loudly and go on without metrics.
            if let Err(e) = crate::web::serve_router(listen, router, stop).await {
                tracing::error!(error = %e, "metrics endpoint disabled");
            }
        });
    }
    // The scheduled report e-mail (`[report.email]`, through `[notify.email]`).
    if cfg.report.email.is_some() && cfg.notify.email.is_some() {
        tokio::spawn(crate::report::mail::run(
            cfg.clone(),
            db.to_path_buf(),
            services.clone(),
        ));
    }
    if let Some(keep) = cfg.storage.keep_calls {
        tokio::spawn(crate::history::retention::run(
            keep,
            db.to_path_buf(),
            services.clone(),
        ));
    }
}

/// `WATCHDOG=1` every half `WATCHDOG_USEC`, when systemd asks for it.
fn start_watchdog(shutdown: &CancellationToken) -> Option<tokio::task::JoinHandle<()>> {
    watchdog_interval().map(|every| {
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let mut t = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = t.tick() => sd_notify("WATCHDOG=1"),
                }
            }
        })
    })
}

/// The web console, once the AMI connections exist (it asks them for their queues).
fn start_console(
    cfg: &Arc<Config>,
    db: &std::path::Path,
    metrics: &Arc<Metrics>,
    services: &CancellationToken,
    servers: &Servers,
) {
    if cfg.web.listen.is_none() {
        return;
    }
    let (c, d, m, stop) = (
        cfg.clone(),
        db.to_path_buf(),
        metrics.clone(),
        services.clone(),
    );
    let handles: Vec<AmiHandle> = servers.handles().cloned().collect();
    tokio::spawn(async move {
        // Like the metrics: a console that cannot start must not stop call tracking.
        if let Err(e) = crate::console::serve(c, d, m, handles, stop).await {
            tracing::error!(error = %e, "web console disabled");
        }
    });
}

/// The dialer's task and its input.
struct DialerTask {
    tx: mpsc::Sender<DialerInput>,
    stop: CancellationToken,
    /// Cancelled when the dialer's task ends: before shutdown that is a failure to stop on.
    done: CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<(), DialerError>>>,
}

/// The dialer, on its own task and connection, when callbacks are on and their server exists.
fn start_dialer(
    cfg: &Config,
    tasks_store: Store,
    servers: &Servers,
    opts: &RunOptions,
    observers: &Observers,
    leased: Option<Ownership>,
) -> DialerTask {
    let (tx, rx) = mpsc::channel::<DialerInput>(4096);
    let stop = CancellationToken::new();
    let done = CancellationToken::new();
    let handle = cfg
        .callback_server()
        .and_then(|a| servers.handle(&a.name))
        .cloned();
    // With callbacks off no tasks are created: turning them on later must not dial a backlog.
    let task = handle.filter(|_| cfg.callback.enabled).map(|h| {
        let clock: Clock = opts
            .clock
            .clone()
            .unwrap_or_else(|| Arc::new(jiff::Timestamp::now));
        let d = Dialer::new(
            cfg,
            tasks_store,
            h,
            clock,
            Some(observers.dialer_events_tx.clone()),
        )
        .require_sync();
        let d = match (leased, cfg.callback_server()) {
            (Some(o), Some(cb)) => d.leased(o, &cb.name),
            _ => d,
        };
        let (done, stop) = (done.clone(), stop.clone());
        tokio::spawn(async move {
            let r = d.run(rx, stop).await;
            done.cancel();
            r
        })
    });
    DialerTask {
        tx,
        stop,
        done,
        task,
    }
}

/// The dialer drains its queue, then stops; its error is the run's when nothing failed first.
async fn stop_dialer(
    dialer: DialerTask,
    mut result: Result<(), DaemonError>,
) -> Result<(), DaemonError> {
    drop(dialer.tx);
    dialer.stop.cancel();
    if let Some(t) = dialer.task {
        match tokio::time::timeout(SHUTDOWN_GRACE, t).await {
            Ok(Ok(Err(e))) if result.is_ok() => result = Err(DaemonError::Dialer(e)),
            Ok(Err(join)) => tracing::error!(error = %join, "dialer task panicked"),
            Err(_) => tracing::warn!("dialer did not stop within the grace period"),
            _ => {}
        }
    }
    result
}

/// What the ingest loop waits on besides the servers.
struct LoopInputs {
    shutdown: CancellationToken,
    dialer_done: CancellationToken,
    resync_rx: mpsc::Receiver<Resynced>,
    gap_rx: mpsc::Receiver<crate::history::gap::GapRead>,
    reload_rx: Option<mpsc::Receiver<Result<Config, crate::config::ConfigError>>>,
}

/// One turn of the ingest loop.
enum Step {
    Stop,
    Link(LinkEvent),
    Resynced(Resynced),
    Gap(crate::history::gap::GapRead),
    Reload(Box<Result<Config, crate::config::ConfigError>>),
    OwnershipChanged,
    Tick,
}

/// The CoreShowChannels snapshot of one session (`None` when it could not be read).
struct Resynced {
    server: String,
    generation: u64,
    items: Option<Vec<Message>>,
}

/// What the reconnect's CoreShowChannels gave.
enum Snapshot<'a> {
    /// The live channels: reconcile with them.
    Items(&'a [Message]),
    /// It could not be read: calls of earlier sessions cannot be reconciled.
    Failed,
    /// The link dropped (or we stop) before it came: the next session's snapshot will do.
    Superseded,
}

/// What systemd's `STATUS=` says ([`crate::status::line_from`] the metrics), sent when it
/// changes: at every link change and, for the counters, at the tracker's tick.
#[derive(Default)]
struct Status {
    sent: String,
}

impl Status {
    fn notify(&mut self, metrics: &Metrics) {
        let line = crate::status::line_from(metrics, jiff::Timestamp::now());
        if line != self.sent {
            sd_notify(&format!("STATUS={line}"));
            self.sent = line;
        }
    }
}

/// Calls ended today (in `hours.timezone`) whose verdict is stored.
struct Today {
    date: jiff::civil::Date,
    start: jiff::Timestamp,
    count: u64,
}

impl Today {
    fn new(now: jiff::Timestamp, tz: &jiff::tz::TimeZone) -> Today {
        let (start, date) = crate::status::today_start(now, tz);
        Today {
            date,
            start,
            count: 0,
        }
    }

    /// A new day began: the count starts again. True when the count changed.
    fn roll(&mut self, now: jiff::Timestamp, tz: &jiff::tz::TimeZone) -> bool {
        let (start, date) = crate::status::today_start(now, tz);
        if date == self.date {
            return false;
        }
        *self = Today {
            date,
            start,
            count: 0,
        };
        true
    }

    /// Counts a committed verdict when its call ended today.
    fn record(&mut self, ended_at: jiff::Timestamp) -> bool {
        if ended_at >= self.start {
            self.count += 1;
            return true;
        }
        false
    }
}

/// `to - from` in seconds, for the latency histograms (negative when clocks disagree).
fn seconds_between(from: jiff::Timestamp, to: jiff::Timestamp) -> f64 {
    (to.as_microsecond() - from.as_microsecond()) as f64 / 1e6
}

/// The `Timestamp` header Asterisk adds to events with `timestampevents = yes`.
fn sent_at(msg: &Message) -> Option<f64> {
    std::str::from_utf8(msg.get(b"Timestamp")?)
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The ingest loop's state.
struct Ingest {
    pipeline: Pipeline,
    dial_tx: mpsc::Sender<DialerInput>,
    records_tx: Option<mpsc::Sender<CallRecord>>,
    observer_tx: mpsc::Sender<CallRecord>,
    metrics: Arc<Metrics>,
    callback_server: Option<String>,
    /// Per server: events held until the snapshot of session `generation` is applied.
    held: HashMap<String, (u64, Vec<(Message, jiff::Timestamp)>)>,
    /// A dialer runs (it is told of reconciled snapshots).
    dialing: bool,
    status: Status,
    /// Per-server metric handles, so an event updates atomics without the registry's lock.
    servers: HashMap<String, Arc<crate::metrics::ServerMetrics>>,
    today: Today,
    /// The configuration running (its `[[asterisk]]` list follows SIGHUP; the rest does not).
    cfg: Arc<Config>,
    /// History (the backfill work): watermarks and gap reads.
    gaps: crate::history::gap::Gaps,
    /// Bumped at every LinkUp: a snapshot of an older session is not applied.
    generation: u64,
    resync_tx: mpsc::Sender<Resynced>,
    /// Customers and callback calls live, as last told to the dialer (only while there is one).
    live_sent: HashSet<String>,
    live_callbacks_sent: HashSet<String>,
    ownership: Ownership,
    /// The epoch of the callback server's lease the dialer was last told about.
    dialer_epoch: Option<i64>,
    /// The servers the lease manager follows (several nodes), updated by a reload.
    lease_servers: Option<leases::ServerList>,
}

impl Ingest {
    /// Several nodes: this node just took the callback server's lease. Its session was up all
    /// along (a standby tracks calls too), so the live channels it knows settle the attempts
    /// the previous owner left of unknown fate; while the link is down or resynchronising,
    /// the resync after the LinkUp does it instead.
    async fn took_callback_server(&mut self, servers: &Servers) {
        let Some(cb) = self.callback_server.clone() else {
            return;
        };
        let epoch = self.ownership.owns(&cb, std::time::Instant::now());
        if epoch == self.dialer_epoch {
            return;
        }
        self.dialer_epoch = epoch;
        let up = servers.handle(&cb).is_some_and(|h| h.is_up());
        if epoch.is_some() && up && !self.held.contains_key(&cb) {
            let live = self.pipeline.live_callbacks();
            self.tell_dialer_synced(&cb, Some(live)).await;
        }
    }

    async fn message(
        &mut self,
        server: &str,
        msg: &Message,
        received_at: jiff::Timestamp,
    ) -> Result<(), DaemonError> {
        match self.servers.get(server) {
            Some(m) => m.event_at(received_at, sent_at(msg)),
            None => {
                let m = self.metrics.server(server);
                m.event_at(received_at, sent_at(msg));
                self.servers.insert(server.to_string(), m);
            }
        }
        // OriginateResponse is broadcast to every session; only the server we originate on can
        // carry ours, and the dialer matches by ActionID. Never held: the dialer needs no resync.
        if self.callback_server.as_deref() == Some(server) {
            if let Some(r) = OriginateResponse::parse(msg) {
                send(&self.dial_tx, DialerInput::Response(r)).await;
            }
        }
        // Issue 14: a caller's or an agent's request through the dialplan (UserEvent), from any
        // server. Not held either: it is not part of the tracker's state.
        match crate::callback::request::parse(msg) {
            Ok(Some(request)) => {
                send(
                    &self.dial_tx,
                    DialerInput::User {
                        server: server.to_string(),
                        request,
                    },
                )
                .await;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(server, error = %e, "perezvon UserEvent not understood"),
        }
        if let Some((_, held)) = self.held.get_mut(server) {
            held.push((msg.clone(), received_at));
            return Ok(());
        }
        let r = self.pipeline.feed(server, msg, received_at);
        self.forward(r).await
    }

    /// Applies a snapshot (if any), then the events held since the LinkUp, in order.
    async fn release(&mut self, server: &str, snapshot: Snapshot<'_>) -> Result<(), DaemonError> {
        let Some((_, held)) = self.held.remove(server) else {
            return Ok(());
        };
        match snapshot {
            Snapshot::Items(items) => {
                let r = self.pipeline.resync(server, items, jiff::Timestamp::now());
                self.forward(r).await?;
                let live = self.pipeline.live_callbacks();
                self.tell_dialer_synced(server, Some(live)).await;
            }
            Snapshot::Failed => {
                let r = self
                    .pipeline
                    .give_up_previous_sessions(server, jiff::Timestamp::now());
                self.forward(r).await?;
                self.tell_dialer_synced(server, None).await;
            }
            Snapshot::Superseded => {}
        }
        for (msg, at) in held {
            let r = self.pipeline.feed(server, &msg, at);
            self.forward(r).await?;
        }
        Ok(())
    }

    /// The callback server's live channels were applied: the dialer learns who is on a call
    /// first, then settles attempts of unknown fate against `live` (if the list was read) and
    /// may start attempts again.
    async fn tell_dialer_synced(&mut self, server: &str, live: Option<HashSet<String>>) {
        if !self.dialing || self.callback_server.as_deref() != Some(server) {
            return;
        }
        let customers = self.pipeline.live_customers();
        send(&self.dial_tx, DialerInput::LiveCustomers(customers)).await;
        send(&self.dial_tx, DialerInput::Reconciled(live)).await;
    }

    /// Stores the verdicts of a gap read from the CDR/queue_log and hands them on like live
    /// ones (dialer, notifications); their verdict latency is not observed (hours, by nature).
    /// A failure is logged: the next reconnect, or `perezvon backfill`, tries again.
    async fn backfilled(&mut self, g: crate::history::gap::GapRead) {
        let cfg = self.cfg.clone();
        let loaded = match g.result {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(server = %g.server, error = %crate::store::error_chain(&e), "backfill: cannot read Asterisk's records");
                return;
            }
        };
        for p in loaded.problems.iter().take(5) {
            tracing::warn!(problem = %p, "backfill: skipped a bad line");
        }
        let now = jiff::Timestamp::now();
        let since = self
            .dialing
            .then(|| jiff::SignedDuration::try_from(cfg.callback.give_up_after).ok())
            .flatten()
            .and_then(|d| now.checked_sub(d).ok());
        let stored = match self.pipeline.store().record_history(
            &loaded.calls,
            crate::store::history::Source::Backfilled,
            cfg.calls.resolve_within,
            since,
        ) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(server = %g.server, error = %crate::store::error_chain(&e), "backfill: cannot store the gap's calls");
                return;
            }
        };
        let missed = stored.stored.iter().filter(|r| r.is_counted_miss()).count();
        tracing::info!(
            server = %g.server,
            from = %g.from,
            to = %g.to,
            calls = stored.stored.len(),
            missed,
            replaced_unknown = stored.upgraded,
            already_known = stored.known,
            bad_lines = loaded.problems.len(),
            "backfilled the AMI gap"
        );
        for rec in stored.stored {
            if self.today.record(rec.ended_at) {
                self.metrics.set_calls_today(self.today.count);
            }
            if let Some(tx) = &self.records_tx {
                let _ = tx.try_send(rec.clone());
            }
            let _ = self.observer_tx.send(rec.clone()).await;
            send(&self.dial_tx, DialerInput::Record(Box::new(rec))).await;
        }
    }

    /// Logs, metrics and STATUS follow the verdicts held for a failing database.
    fn report_held(&mut self) {
        let n = self.pipeline.held().map_or(0, |h| h.count);
        self.metrics.set_held_verdicts(n);
    }

    async fn forward(&mut self, r: Result<Vec<CallRecord>, StoreError>) -> Result<(), DaemonError> {
        let records = r.map_err(DaemonError::Pipeline)?;
        let committed = jiff::Timestamp::now();
        for rec in records {
            self.metrics
                .observe_verdict_latency(seconds_between(rec.ended_at, committed));
            if self.today.record(rec.ended_at) {
                self.metrics.set_calls_today(self.today.count);
            }
            if let Some(tx) = &self.records_tx {
                let _ = tx.try_send(rec.clone());
            }
            // Back-pressure, not a drop: every verdict is announced.
            let _ = self.observer_tx.send(rec.clone()).await;
            send(&self.dial_tx, DialerInput::Record(Box::new(rec))).await;
        }
        Ok(())
    }
}

/// The loop and its steps.
impl Ingest {
    /// Until shutdown, a stopped dialer or a verdict that cannot be stored.
    async fn run(&mut self, servers: &mut Servers, mut inp: LoopInputs) -> Result<(), DaemonError> {
        let mut tick = tokio::time::interval(TRACKER_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut owned_rx = self.ownership.subscribe();
        self.show_ownership();
        loop {
            let step = tokio::select! {
                _ = inp.shutdown.cancelled() => Step::Stop,
                _ = inp.dialer_done.cancelled() => {
                    // Its error (if any) is collected later; systemd restarts us on the non-zero exit.
                    tracing::error!("the callback dialer stopped; shutting down");
                    Step::Stop
                }
                ev = servers.recv() => Step::Link(ev),
                Some(r) = inp.resync_rx.recv() => Step::Resynced(r),
                Some(g) = inp.gap_rx.recv() => Step::Gap(g),
                Some(c) = recv_reload(&mut inp.reload_rx) => Step::Reload(Box::new(c)),
                Ok(()) = owned_rx.changed() => Step::OwnershipChanged,
                _ = tick.tick() => Step::Tick,
            };
            let r = match step {
                Step::Stop => return Ok(()),
                Step::Link(ev) => self.link_turn(servers, ev).await,
                Step::Resynced(r) => self.resynced(r).await,
                Step::Gap(g) => {
                    self.backfilled(g).await;
                    Ok(())
                }
                Step::Reload(c) => {
                    self.reload(servers, *c);
                    Ok(())
                }
                Step::OwnershipChanged => {
                    self.show_ownership();
                    let r = self.pipeline.flush_unowned();
                    let r = self.forward(r).await;
                    self.took_callback_server(servers).await;
                    r
                }
                Step::Tick => self.tick(servers).await,
            };
            if let Err(e) = r {
                tracing::error!(error = %e, "stopping: cannot store call verdicts");
                return Err(e);
            }
        }
    }

    /// Group commit: `ev` and the events already queued behind it (at most [`TURN_EVENTS`],
    /// fairly across servers) are handled with their verdicts staged, then committed in one
    /// transaction and handed on (dialer, outbox, metrics) only once committed. Under load a
    /// node pays one commit per turn instead of one per verdict; when idle a turn is one
    /// event and nothing waits.
    async fn link_turn(&mut self, servers: &mut Servers, ev: LinkEvent) -> Result<(), DaemonError> {
        use futures::FutureExt;
        self.pipeline.begin_group();
        let mut r = self.link_event(servers, ev).await;
        let mut n = 1;
        while r.is_ok() && n < TURN_EVENTS && self.pipeline.staged() < ingest::GROUP_LIMIT {
            let Some(ev) = servers.recv().now_or_never() else {
                break;
            };
            r = self.link_event(servers, ev).await;
            n += 1;
        }
        let committed = self.pipeline.end_group();
        let f = self.forward(committed).await;
        r.and(f)
    }

    async fn link_event(&mut self, servers: &Servers, ev: LinkEvent) -> Result<(), DaemonError> {
        match ev {
            LinkEvent::Up { server, at } => {
                tracing::info!(server = %server, "AMI link up");
                self.metrics.server(&server).set_link(true, at);
                self.status.notify(&self.metrics);
                self.pipeline.link_up(&server, at);
                self.gaps.link_up(self.pipeline.store(), &server, at);
                self.generation += 1;
                if let Some(h) = servers.handle(&server).cloned() {
                    self.held
                        .insert(server.to_string(), (self.generation, Vec::new()));
                    let tx = self.resync_tx.clone();
                    let server = server.to_string();
                    let generation = self.generation;
                    // In a side task, so the event stream keeps flowing while the list arrives.
                    tokio::spawn(async move {
                        let items = match h.send_list(Action::new("CoreShowChannels")).await {
                            Ok((_, items)) => Some(items),
                            Err(e) => {
                                tracing::warn!(server = %server, error = %e, "CoreShowChannels after reconnect failed");
                                None
                            }
                        };
                        let _ = tx
                            .send(Resynced {
                                server,
                                generation,
                                items,
                            })
                            .await;
                    });
                }
                Ok(())
            }
            LinkEvent::Down { server, at, reason } => {
                tracing::warn!(server = %server, reason = %reason, "AMI link down");
                let m = self.metrics.server(&server);
                m.set_link(false, at);
                m.reconnected();
                // Calls in flight are kept: the reconnect's snapshot reconciles them.
                let r = self.release(&server, Snapshot::Superseded).await;
                self.pipeline.link_down(&server, at);
                self.gaps.link_down(self.pipeline.store(), &server, at);
                self.status.notify(&self.metrics);
                r
            }
            LinkEvent::Message {
                server,
                msg,
                received_at,
            } => self.message(&server, &msg, received_at).await,
        }
    }

    async fn resynced(&mut self, r: Resynced) -> Result<(), DaemonError> {
        if self
            .held
            .get(&r.server)
            .is_none_or(|(g, _)| *g != r.generation)
        {
            return Ok(());
        }
        if let Some(items) = &r.items {
            tracing::info!(server = %r.server, channels = items.len(), "resynchronised live channels");
        }
        let snapshot = match &r.items {
            Some(items) => Snapshot::Items(items),
            None => Snapshot::Failed,
        };
        let done = self.release(&r.server, snapshot).await;
        self.gaps.synced(&r.server);
        done
    }

    /// Every second: silence expiry, the dialer's view of live calls, gauges, STATUS=.
    async fn tick(&mut self, servers: &Servers) -> Result<(), DaemonError> {
        let now = jiff::Timestamp::now();
        self.gaps.tick(self.pipeline.store(), now);
        for h in servers.handles() {
            self.metrics
                .server(h.server())
                .set_decode_problems(h.decode_problems());
        }
        for (name, n) in servers.queue_lengths() {
            if servers.handle(&name).is_some() {
                self.metrics.server(&name).set_queued(n);
            }
        }
        self.show_ownership();
        let r = self.pipeline.tick(now);
        let mut r = self.forward(r).await;
        // A lease renewed without a new epoch wakes nobody: what waits is written here too.
        if r.is_ok() && self.pipeline.unowned() > 0 {
            let f = self.pipeline.flush_unowned();
            r = self.forward(f).await;
        }
        // After the tick's verdicts, so a call that just ended is no longer live.
        // Once a second and only on change: up to a second stale, which is fine for
        // "do not ring someone who is talking to us", and nothing on the event path.
        if self.dialing {
            let live = self.pipeline.live_customers();
            if live != self.live_sent {
                self.live_sent = live.clone();
                send(&self.dial_tx, DialerInput::LiveCustomers(live)).await;
            }
            let live = self.pipeline.live_callbacks();
            if live != self.live_callbacks_sent {
                self.live_callbacks_sent = live.clone();
                send(&self.dial_tx, DialerInput::LiveCallbacks(live)).await;
            }
        }
        self.report_held();
        self.metrics
            .set_calls_in_progress(self.pipeline.live_calls());
        if self.today.roll(now, &self.cfg.hours.timezone) {
            self.metrics.set_calls_today(self.today.count);
        }
        self.status.notify(&self.metrics);
        r
    }

    /// The owned gauge of every server, from the ownership now.
    fn show_ownership(&mut self) {
        let now = std::time::Instant::now();
        for name in self.cfg.asterisk.iter().map(|a| a.name.as_str()) {
            self.metrics
                .server(name)
                .set_owned(self.ownership.owns(name, now).is_some());
        }
    }

    /// SIGHUP: a new configuration. Servers are diffed by name (new ones start, removed ones
    /// stop, changed ones restart; the others and their calls are not touched). Other sections
    /// need a restart, and are said to. A configuration that does not validate changes nothing.
    fn reload(&mut self, servers: &mut Servers, new: Result<Config, crate::config::ConfigError>) {
        let new = match new {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "reload refused: the configuration does not validate; the running one stays");
                return;
            }
        };
        let changed = sections_needing_restart(&self.cfg, &new);
        if !changed.is_empty() {
            tracing::warn!(sections = %changed.join(", "), "reload: these sections changed and take effect at the next restart");
        }
        if let Some(cb) = &self.callback_server {
            if !new.asterisk.iter().any(|a| &a.name == cb) {
                tracing::warn!(server = %cb, "reload: the callback server is no longer configured; the dialer keeps its link until the next restart");
            }
        }
        let applied = servers.apply(&new.asterisk);
        for name in &applied.stopped {
            self.held.remove(name);
            self.metrics.forget_server(name);
            self.servers.remove(name);
        }
        for name in &applied.started {
            self.metrics.server(name);
        }
        tracing::info!(
            started = ?applied.started,
            stopped = ?applied.stopped,
            restarted = ?applied.restarted,
            servers = servers.names().count(),
            "reloaded the server list"
        );
        if let Some(l) = &self.lease_servers {
            *l.lock().unwrap_or_else(|p| p.into_inner()) =
                new.asterisk.iter().map(|a| a.name.clone()).collect();
        }
        let mut cfg = (*self.cfg).clone();
        cfg.asterisk = new.asterisk;
        self.cfg = Arc::new(cfg);
        self.show_ownership();
        self.status.notify(&self.metrics);
    }

    /// Shutdown: stop the links, finish what was already read, then the supervisors.
    async fn finish(
        &mut self,
        servers: &mut Servers,
        mut result: Result<(), DaemonError>,
    ) -> Result<(), DaemonError> {
        sd_notify("STOPPING=1");
        self.gaps
            .save_up(self.pipeline.store(), jiff::Timestamp::now());
        servers.cancel();
        if result.is_ok() {
            let names: Vec<String> = self.held.keys().cloned().collect();
            for server in names {
                if let Err(e) = self.release(&server, Snapshot::Superseded).await {
                    result = Err(e);
                }
            }
        }
        if result.is_ok() {
            self.pipeline.begin_group();
            while let Some(ev) = servers.try_recv() {
                let r = match ev {
                    LinkEvent::Message {
                        server,
                        msg,
                        received_at,
                    } => self.message(&server, &msg, received_at).await,
                    _ => Ok(()),
                };
                if let Err(e) = r {
                    result = Err(e);
                    break;
                }
            }
            let r = self.pipeline.end_group();
            if let Err(e) = self.forward(r).await {
                result = Err(e);
            }
        }
        if let Some(h) = self.pipeline.held() {
            // One last try; what still fails is lost with the process, and said so.
            let r = self.pipeline.retry_held(jiff::Timestamp::now());
            let _ = self.forward(r).await;
            if let Some(h) = self.pipeline.held().filter(|_| h.count > 0) {
                tracing::error!(held = h.count, error = %h.error, "stopping with call verdicts the database refused; they are lost");
            }
        }
        if self.pipeline.unowned() > 0 {
            tracing::info!(
                kept = self.pipeline.unowned(),
                "stopping with verdicts of servers this node did not own (their owner writes them)"
            );
        }
        servers.stop(SHUTDOWN_GRACE).await;
        result
    }
}

/// The next configuration to apply, or pending forever without a reload source.
async fn recv_reload(
    rx: &mut Option<mpsc::Receiver<Result<Config, crate::config::ConfigError>>>,
) -> Option<Result<Config, crate::config::ConfigError>> {
    match rx {
        Some(r) => match r.recv().await {
            Some(c) => Some(c),
            None => {
                *rx = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}

/// The sections other than `[[asterisk]]` that differ (they are read once, at start).
fn sections_needing_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let d = |x: &dyn std::fmt::Debug| format!("{x:?}");
    let pairs: [(&'static str, String, String); 12] = [
        ("pbx", d(&old.pbx), d(&new.pbx)),
        ("calls", d(&old.calls), d(&new.calls)),
        ("storage", d(&old.storage), d(&new.storage)),
        ("callback", d(&old.callback), d(&new.callback)),
        ("hours", d(&old.hours), d(&new.hours)),
        ("notify", d(&old.notify), d(&new.notify)),
        ("metrics", d(&old.metrics), d(&new.metrics)),
        ("log", d(&old.log), d(&new.log)),
        ("web", d(&old.web), d(&new.web)),
        ("backfill", d(&old.backfill), d(&new.backfill)),
        ("report", d(&old.report), d(&new.report)),
        ("cluster", d(&old.cluster), d(&new.cluster)),
    ];
    pairs
        .into_iter()
        .filter(|(_, a, b)| a != b)
        .map(|(n, _, _)| n)
        .collect()
}

/// Back-pressure: a busy dialer slows ingest down rather than losing a verdict. A closed channel
/// means callbacks are off (or the dialer stopped); verdicts are stored anyway.
async fn send(tx: &mpsc::Sender<DialerInput>, input: DialerInput) {
    let _ = tx.send(input).await;
}

/// `WATCHDOG_USEC` / 2, when systemd asked for pings (and `WATCHDOG_PID`, if set, is ours).
fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.trim().parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// Sends a state line to systemd (`sd_notify(3)`) when `$NOTIFY_SOCKET` is set; a few lines of
/// std instead of a crate. Failures are logged, never fatal: systemd may not be there.
pub fn sd_notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = notify_to(&path, state) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

#[cfg(unix)]
fn notify_to(path: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::UnixDatagram;
    let sock = UnixDatagram::unbound()?;
    let bytes = path.as_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        // An abstract socket (systemd uses them in containers).
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(state.as_bytes(), &addr)?;
            return Ok(());
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = name;
            return Err(std::io::Error::other("abstract sockets are Linux-only"));
        }
    }
    sock.send_to(state.as_bytes(), std::path::Path::new(path))?;
    Ok(())
}

#[cfg(not(unix))]
fn notify_to(_path: &std::ffi::OsStr, _state: &str) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The demo and tests spawn the daemon on a multi-threaded runtime.
    #[allow(dead_code)]
    fn run_is_send(cfg: Config) {
        fn send<T: Send>(_: T) {}
        send(run(cfg, PathBuf::new(), CancellationToken::new()));
    }

    #[test]
    fn notify_reaches_a_socket() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("notify.sock");
        let server = std::os::unix::net::UnixDatagram::bind(&p).unwrap();
        notify_to(p.as_os_str(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }
}
