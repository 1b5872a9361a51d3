//! `perezvon demo`: the whole product on a machine with no Asterisk.
//!
//! It starts the embedded lab server ([`lab`]) on 127.0.0.1, which plays the bundled real
//! captures and answers Originates the way the lab Asterisk did, then runs the real daemon
//! ([`crate::daemon::run`]) against it over TCP with a temporary database and always-open hours,
//! waits until every callback task has finished, and prints what happened: the missed calls,
//! the callbacks placed and their outcomes, and the report.

pub mod lab;

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{Config, DayRange};
use crate::store::Store;

/// What the demo measured; `perezvon demo` prints it, the tests assert on it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DemoSummary {
    pub inbound: usize,
    pub missed: usize,
    pub resolved: usize,
    pub tasks: usize,
    pub originates: usize,
    /// Callback calls that reached the customer (attempts `connected`).
    pub connected: usize,
    pub open_tasks_left: usize,
    pub database: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot start the embedded AMI server")]
    Lab(#[source] std::io::Error),
    #[error("cannot prepare the demo database {0}")]
    Database(PathBuf, #[source] std::io::Error),
    #[error("the daemon stopped")]
    Daemon(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("cannot set up the web console: {0}")]
    Console(String),
}

/// Demo settings.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Database to fill (default: a fresh file in the temp dir).
    pub db: Option<PathBuf>,
    /// Delay between the start of one recorded scenario and the next.
    pub stagger: Duration,
    /// Give up waiting for callbacks this long after the traffic ended.
    pub settle: Duration,
    /// Print progress lines while it runs.
    pub progress: bool,
    /// Also serve the web console here, with one supervisor `demo` and this password, and keep
    /// running after the calls until Ctrl-C.
    pub web: Option<(std::net::SocketAddr, String)>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            db: None,
            stagger: Duration::from_millis(700),
            settle: Duration::from_secs(120),
            progress: true,
            web: None,
        }
    }
}

/// The daemon's configuration for the demo: the embedded lab PBX ([`Config::embedded_default`]),
/// pointed at the lab server, with callbacks on, always open, and short delays so a demo ends in
/// about a minute.
/// The call of the bundled `queue_abandon` capture, whose caller asks for a callback.
pub const DEMO_REQUEST_LINKEDID: &str = "1795375036.4";

pub fn demo_config(port: u16, db: &Path) -> Config {
    let mut cfg = Config::embedded_default();
    let ami = &mut cfg.asterisk[0];
    ami.host = "127.0.0.1".into();
    ami.port = port;
    ami.ping_interval = Duration::from_secs(5);
    ami.reconnect_max = Duration::from_secs(2);
    cfg.storage.database = db.to_path_buf();
    let cb = &mut cfg.callback;
    cb.enabled = true;
    // perezvon's own marker, as a real deployment sends it (the lab renames what it replays).
    cb.marker_variable = "PEREZVON_CALLBACK_ID".into();
    cb.delay = Duration::from_secs(2);
    cb.max_attempts = 3;
    cb.retry_every = Duration::from_secs(4);
    cb.give_up_after = Duration::from_secs(3600);
    cb.originate_timeout = Duration::from_secs(20);
    cb.max_concurrent = 12;
    cb.max_concurrent_per_target = 12;
    cb.spread = Duration::from_secs(5);
    // Issue 14: owned callbacks go through the customer's own agent first (the lab's people
    // are `Local/20x@agent-sim`), and the agent hears who is calling.
    // A short owner_wait: the demo's calls are seconds apart, not minutes.
    cb.request.owner_wait = Some(Duration::from_secs(20));
    cb.request.owner_endpoint = "Local/{agent}@agent-sim".into();
    cb.request.announce = Some("perezvon/missed-caller".into());
    cb.request.agent_caller_name = Some("{number} missed {count}x".into());
    cfg.hours.week = std::array::from_fn(|_| {
        vec![DayRange {
            start_min: 0,
            end_min: 24 * 60,
        }]
    });
    cfg.log.level = "warn".into();
    cfg
}

fn fresh_db_path() -> PathBuf {
    let stamp = jiff::Timestamp::now().as_millisecond();
    std::env::temp_dir().join(format!("perezvon-demo-{}-{stamp}.db", std::process::id()))
}

/// Runs the demo to its end and returns what happened. Prints progress when asked.
pub async fn run(opts: DemoOptions) -> Result<DemoSummary, DemoError> {
    let shutdown = CancellationToken::new();
    let mut traffic = lab::traffic_timeline(&lab::traffic(), opts.stagger);
    // The caller of `queue_abandon` presses 1 while waiting in sales: a requested callback.
    lab::press_1_in_queue(&mut traffic, DEMO_REQUEST_LINKEDID, Duration::from_secs(3));
    let traffic_len = traffic.last().map(|(at, _)| *at).unwrap_or_default();
    let lab = lab::start(
        lab::LabOptions {
            traffic,
            script: lab::LabOutcome::scripted,
        },
        shutdown.clone(),
    )
    .await
    .map_err(DemoError::Lab)?;
    let db = opts.db.clone().unwrap_or_else(fresh_db_path);
    for suffix in ["", "-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{suffix}", db.display()));
        if p.exists() {
            std::fs::remove_file(&p).map_err(|e| DemoError::Database(p.clone(), e))?;
        }
    }
    let mut cfg = demo_config(lab.addr.port(), &db);
    let key_file = match &opts.web {
        Some((listen, password)) => {
            let hash = crate::console::auth::hash_password(password)
                .map_err(|e| DemoError::Console(e.to_string()))?;
            // The demo's own key, beside its database (never a shared console.key in /tmp).
            let key = PathBuf::from(format!("{}.console-key", db.display()));
            let _ = std::fs::remove_file(&key);
            crate::console::auth::Key::load_or_create(&key, true).map_err(DemoError::Console)?;
            cfg.web.listen = Some(*listen);
            cfg.web.secret_file = Some(key.clone());
            cfg.web.users = vec![crate::config::WebUser {
                name: "demo".into(),
                password_hash: hash,
                role: crate::config::WebRole::Supervisor,
            }];
            println!(
                "web console: http://{listen}/  user: demo  password: {password}  (Ctrl-C ends the demo)"
            );
            Some(key)
        }
        None => None,
    };
    if opts.progress {
        println!(
            "perezvon demo: an embedded Asterisk on {} plays {} recorded scenarios (about {} s of calls),",
            lab.addr,
            lab::traffic().len(),
            traffic_len.as_secs() + 1
        );
        println!(
            "and perezvon calls the missed customers back. Database: {}",
            db.display()
        );
        println!();
    }
    // The daemon's future holds a SQLite connection (not Send): run it beside the monitor in this
    // task rather than spawning it.
    let daemon_done = CancellationToken::new();
    let daemon = {
        let (cfg, db, shutdown, done) = (
            cfg.clone(),
            db.clone(),
            shutdown.clone(),
            daemon_done.clone(),
        );
        async move {
            let r = crate::daemon::run(cfg, db, shutdown).await;
            done.cancel();
            r
        }
    };
    let monitor = monitor(&opts, &lab, &db, daemon_done, shutdown.clone());
    let (result, monitored) = tokio::join!(daemon, monitor);
    if let Some(k) = key_file {
        let _ = std::fs::remove_file(k);
    }
    monitored?;
    if let Err(e) = result {
        return Err(DemoError::Daemon(Box::new(e)));
    }
    let store = Store::open(&db)?;
    let (mut summary, open) = snapshot(&store, &lab)?;
    summary.open_tasks_left = open;
    summary.database = db;
    Ok(summary)
}

/// Prints progress until the traffic is over and every callback task has finished (or `settle`
/// passed), then stops the daemon.
async fn monitor(
    opts: &DemoOptions,
    lab: &lab::Lab,
    db: &Path,
    daemon_done: CancellationToken,
    shutdown: CancellationToken,
) -> Result<(), DemoError> {
    let started = tokio::time::Instant::now();
    let mut traffic_ended_at: Option<tokio::time::Instant> = None;
    let mut last_line = String::new();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if daemon_done.is_cancelled() {
            break;
        }
        if traffic_ended_at.is_none() && lab.traffic_done.is_cancelled() {
            traffic_ended_at = Some(tokio::time::Instant::now());
        }
        // The daemon owns the file; a second connection reads it (WAL allows both).
        let Ok(store) = Store::open(db) else { continue };
        let (s, open) = snapshot(&store, lab)?;
        if opts.progress {
            let line = format!(
                "  {:>3} s  calls ended {:>3}  missed {:>3}  callbacks placed {:>3}  connected {:>3}  open tasks {:>3}",
                started.elapsed().as_secs(),
                s.inbound,
                s.missed,
                s.originates,
                s.connected,
                open
            );
            if line[8..] != *last_line.get(8..).unwrap_or_default() {
                println!("{line}");
                last_line = line;
            }
        }
        if let Some(t) = traffic_ended_at {
            // Done when the traffic is over and no callback is waiting or running.
            if open == 0 && t.elapsed() > Duration::from_secs(3) {
                break;
            }
            if t.elapsed() > opts.settle {
                break;
            }
        }
    }
    if let Some((listen, _)) = &opts.web {
        println!("\nthe calls are over; the console stays up on http://{listen}/ until Ctrl-C");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = daemon_done.cancelled() => {}
        }
    }
    shutdown.cancel();
    Ok(())
}

fn snapshot(store: &Store, lab: &lab::Lab) -> Result<(DemoSummary, usize), DemoError> {
    use crate::callback::planner::AttemptOutcome;
    use crate::calls::record::CallbackOutcome;
    // The one definition of each count (`CallRecord::is_counted_miss`, `resolved_by`, an
    // attempt `connected`), so the demo's lines agree with the report it prints.
    let calls = store.calls_ended_between(jiff::Timestamp::UNIX_EPOCH, jiff::Timestamp::MAX)?;
    let inbound: Vec<_> = calls.iter().filter(|c| c.is_counted_inbound()).collect();
    let tasks = store.list_tasks(true, 100_000)?;
    let open = tasks.iter().filter(|t| t.task.state.is_open()).count();
    let mut connected = 0;
    for t in &tasks {
        connected += store
            .attempts_of(t.task.id)?
            .iter()
            .filter(|a| a.outcome == Some(AttemptOutcome::Call(CallbackOutcome::Connected)))
            .count();
    }
    let originates = lab.log.lock().map(|l| l.originates.len()).unwrap_or(0);
    let s = DemoSummary {
        inbound: inbound.len(),
        missed: inbound.iter().filter(|c| c.is_counted_miss()).count(),
        resolved: inbound
            .iter()
            .filter(|c| c.is_counted_miss() && c.resolved_by.is_some())
            .count(),
        tasks: tasks.len(),
        originates,
        connected,
        open_tasks_left: open,
        database: PathBuf::new(),
    };
    Ok((s, open))
}
