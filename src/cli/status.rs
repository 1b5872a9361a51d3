//! `perezvon status`: what the running daemon is doing, like `systemctl status` for perezvon.
//!
//! Asks the daemon's `GET /status` on `[metrics] listen` (so `[metrics] enabled = true` is
//! needed for the live part) and prints the `STATUS=` line, one line per `[[asterisk]]` server,
//! the callback queue and today's counters. When the daemon cannot be reached it says so, prints
//! what the database knows (the queue and today's calls) and exits 3, as `systemctl status` does
//! for a stopped service. Exit codes: 0 the daemon answered, 1 it answered with an error, 3 not
//! reachable, 78 a bad configuration.

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use http_body_util::BodyExt as _;
use serde::Serialize;

use super::{CmdResult, DEFAULT_CONFIG};
use crate::callback::planner::TaskState;
use crate::config::{Config, EXIT_CONFIG};
use crate::status::{self, StatusReport};
use crate::store::Store;
use std::collections::HashMap;

/// The daemon is not running (or not reachable): the LSB code `systemctl status` uses.
pub const EXIT_NOT_RUNNING: i32 = 3;
/// How long the daemon has to answer.
const TIMEOUT: Duration = Duration::from_secs(5);
/// A status answer is a few kB; anything beyond this is not one.
const MAX_ANSWER: usize = 1024 * 1024;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Configuration file [default: /etc/perezvon/perezvon.toml].
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Database (SQLite file or postgres:// URL) read when the daemon does not answer [default: storage.database].
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// `text` (default), or `json`: one object with `node_id`, `servers` (`name`, `state`,
    /// `owner`, `lag_secs`), `callbacks` (`pending`, `in_progress`), and the daemon's whole
    /// answer under `daemon` and `status`.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// The same as `--format json`.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
}

/// What `perezvon status` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

impl StatusArgs {
    fn json(&self) -> bool {
        self.json || self.format == Some(Format::Json)
    }
}

/// One server in `--format json`.
#[derive(Debug, Serialize)]
struct ServerLine {
    name: String,
    /// `connected`, `disconnected`, or `unknown` (the daemon did not answer).
    state: &'static str,
    /// The node acting on the server: the lease holder (several nodes), this node (one node,
    /// running), or `null` (nobody holds it, or not known).
    owner: Option<String>,
    /// Arrival minus the `Timestamp` header of the server's last event.
    lag_secs: Option<f64>,
    events: Option<u64>,
}

/// The callback queue in `--format json`.
#[derive(Debug, Default, Serialize)]
struct Callbacks {
    /// Tasks waiting for their next attempt.
    pending: u64,
    /// Tasks with an attempt on its way.
    in_progress: u64,
    /// Tasks whose last attempt's fate is unknown (they wait for `callbacks retry`).
    unknown: u64,
    /// Attempts originated without an outcome yet.
    in_flight: u64,
}

/// What the database says beyond the daemon's answer: the lease holders and the queue by state.
#[derive(Debug, Default)]
struct StoreView {
    /// Server -> the node holding its lease (several nodes; empty on one node).
    owners: HashMap<String, String>,
    callbacks: Option<Callbacks>,
}

fn store_view(db: &std::path::Path) -> Result<StoreView, String> {
    if !crate::store::may_exist(db) {
        return Err(format!("no database at {}", db.display()));
    }
    let st = Store::open(db).map_err(|e| crate::store::error_chain(&e))?;
    let owners = crate::store::leases::owners(st.db())
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|(s, (node, _))| (s, node))
        .collect();
    let tasks = st.open_tasks().map_err(|e| crate::store::error_chain(&e))?;
    let in_flight = st
        .unfinished_attempts()
        .map_err(|e| crate::store::error_chain(&e))?
        .len() as u64;
    let count = |k: TaskState| tasks.iter().filter(|t| t.state == k).count() as u64;
    Ok(StoreView {
        owners,
        callbacks: Some(Callbacks {
            pending: count(TaskState::Pending),
            in_progress: count(TaskState::InProgress),
            unknown: count(TaskState::Unknown),
            in_flight,
        }),
    })
}

/// Whether the daemon answered, in `--json`.
#[derive(Debug, Serialize)]
struct DaemonState {
    reachable: bool,
    url: Option<String>,
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct JsonOut<'a> {
    node_id: &'a str,
    servers: Vec<ServerLine>,
    callbacks: Callbacks,
    daemon: DaemonState,
    status: &'a StatusReport,
}

pub fn run(args: &StatusArgs) -> CmdResult {
    let path = args.config.clone().unwrap_or_else(|| DEFAULT_CONFIG.into());
    let cfg = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            writeln!(std::io::stderr().lock(), "{e}")?;
            return Ok(EXIT_CONFIG);
        }
    };
    let tz = cfg.hours.timezone.clone();
    let url = cfg
        .metrics
        .enabled
        .then(|| format!("http://{}/status", reachable(cfg.metrics.listen)));
    let asked = match &url {
        Some(_) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(ask(reachable(cfg.metrics.listen)))
        }
        None => Err(Unreachable(
            "the daemon's status needs [metrics] enabled = true (GET /status on metrics.listen)"
                .into(),
        )),
    };
    match asked {
        Ok(mut report) => {
            let daemon = DaemonState {
                reachable: true,
                url,
                error: None,
            };
            let db = args
                .db
                .clone()
                .unwrap_or_else(|| cfg.storage.database.clone());
            // The lease holders are in the database; a database that cannot be read leaves
            // the daemon's own answer as it is.
            let view = store_view(&db).unwrap_or_default();
            let clustered = !view.owners.is_empty();
            for sv in &mut report.servers {
                sv.owner = if clustered {
                    view.owners.get(&sv.name).cloned()
                } else {
                    Some(cfg.cluster.node_id.clone())
                };
            }
            let out = Out {
                cfg: &cfg,
                daemon,
                report: &report,
                callbacks: view.callbacks,
            };
            print_report(args.json(), out, &tz)?;
            Ok(0)
        }
        Err(why) => {
            let (code, what) = match &why {
                Unreachable(w) => (EXIT_NOT_RUNNING, format!("perezvon is not reachable: {w}")),
                Failed(w) => (1, format!("perezvon answered with an error: {w}")),
            };
            let db = args
                .db
                .clone()
                .unwrap_or_else(|| cfg.storage.database.clone());
            let now = jiff::Timestamp::now();
            let mut report = StatusReport {
                version: env!("CARGO_PKG_VERSION").to_string(),
                now,
                started_at: None,
                line: what.clone(),
                servers: Vec::new(),
                calls_in_progress: 0,
                held_verdicts: 0,
                queue: Default::default(),
                today: Default::default(),
            };
            let mut err = what.clone();
            let stored = if crate::store::may_exist(&db) {
                Store::open(&db)
                    .and_then(|st| status::from_store(&st, &tz, now))
                    .map_err(|e| crate::store::error_chain(&e))
            } else {
                Err(format!("no database at {}", db.display()))
            };
            let view = store_view(&db).unwrap_or_default();
            // Not running: in JSON, the configured servers with what the leases say of them.
            report.servers = if !args.json() {
                Vec::new()
            } else {
                cfg.asterisk
                    .iter()
                    .map(|a| crate::metrics::ServerSnapshot {
                        owner: view.owners.get(&a.name).cloned(),
                        ..crate::metrics::ServerSnapshot::unseen(&a.name)
                    })
                    .collect()
            };
            match stored {
                Ok((queue, today)) => {
                    report.queue = queue;
                    report.today = today;
                }
                Err(e) => {
                    err.push_str(&format!("; the database cannot be read: {e}"));
                }
            }
            if args.json() {
                let out = Out {
                    cfg: &cfg,
                    daemon: DaemonState {
                        reachable: false,
                        url,
                        error: Some(err),
                    },
                    report: &report,
                    callbacks: view.callbacks,
                };
                print_report(true, out, &tz)?;
            } else {
                writeln!(std::io::stderr().lock(), "{err}")?;
                let mut text = status::render_text(&report, &tz);
                // The first line repeats the error; the rest is what the database knows.
                if let Some((_, rest)) = text.split_once('\n') {
                    text = format!("from the database {}:\n{rest}", db.display());
                }
                print!("{text}");
            }
            Ok(code)
        }
    }
}

/// What is printed: the daemon's answer (or the database's), and the queue by state.
struct Out<'a> {
    cfg: &'a Config,
    daemon: DaemonState,
    report: &'a StatusReport,
    callbacks: Option<Callbacks>,
}

fn print_report(json: bool, o: Out<'_>, tz: &jiff::tz::TimeZone) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    if !json {
        return write!(out, "{}", status::render_text(o.report, tz));
    }
    let reachable = o.daemon.reachable;
    let servers = o
        .report
        .servers
        .iter()
        .map(|sv| ServerLine {
            name: sv.name.clone(),
            state: match (reachable, sv.link_up) {
                (false, _) => "unknown",
                (true, true) => "connected",
                (true, false) => "disconnected",
            },
            owner: sv.owner.clone(),
            lag_secs: sv.lag_seconds,
            events: reachable.then_some(sv.events),
        })
        .collect();
    let q = &o.report.queue;
    let callbacks = o.callbacks.unwrap_or(Callbacks {
        // The daemon's queue counts pending and in-progress tasks together.
        pending: q.pending.saturating_sub(q.in_flight),
        in_progress: q.in_flight,
        unknown: q.unknown,
        in_flight: q.in_flight,
    });
    let s = serde_json::to_string(&JsonOut {
        node_id: &o.cfg.cluster.node_id,
        servers,
        callbacks,
        daemon: o.daemon,
        status: o.report,
    })
    .map_err(std::io::Error::other)?;
    writeln!(out, "{s}")
}

/// A wildcard listen address is reached on loopback.
fn reachable(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), listen.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), listen.port())
        }
        _ => listen,
    }
}

/// Why there is no report from the daemon.
enum AskError {
    /// Nothing answered (not running, wrong address, firewall).
    Unreachable(String),
    /// Something answered, but not with a status.
    Failed(String),
}
use AskError::{Failed, Unreachable};

/// `GET /status` with hyper's HTTP/1 client over one TCP connection.
async fn ask(addr: SocketAddr) -> Result<StatusReport, AskError> {
    match tokio::time::timeout(TIMEOUT, ask_inner(addr)).await {
        Ok(r) => r,
        Err(_) => Err(Unreachable(format!(
            "no answer from {addr} within {}s",
            TIMEOUT.as_secs()
        ))),
    }
}

async fn ask_inner(addr: SocketAddr) -> Result<StatusReport, AskError> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| Unreachable(format!("cannot connect to {addr}: {e}")))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| Unreachable(format!("{addr}: {e}")))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = hyper::Request::get("/status")
        .header(hyper::header::HOST, addr.to_string())
        .header(hyper::header::ACCEPT, "application/json")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| Failed(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| Unreachable(format!("{addr}: {e}")))?;
    let code = resp.status();
    let body = http_body_util::Limited::new(resp.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map_err(|e| Failed(format!("reading the answer of {addr}: {e}")))?
        .to_bytes();
    if !code.is_success() {
        let text = String::from_utf8_lossy(&body);
        return Err(Failed(format!(
            "{addr}/status: HTTP {code}: {}",
            text.trim()
        )));
    }
    serde_json::from_slice(&body)
        .map_err(|e| Failed(format!("{addr}/status is not a perezvon status: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_are_reached_on_loopback() {
        let a: SocketAddr = "0.0.0.0:9464".parse().unwrap();
        assert_eq!(reachable(a).to_string(), "127.0.0.1:9464");
        let a: SocketAddr = "[::]:9464".parse().unwrap();
        assert_eq!(reachable(a).to_string(), "[::1]:9464");
        let a: SocketAddr = "10.0.0.5:9464".parse().unwrap();
        assert_eq!(reachable(a), a);
    }
}
