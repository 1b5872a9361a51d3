//! Chaos: three real `perezvon run` nodes on one PostgreSQL, a farm of 50 fake Asterisk servers
//! (`tests/fault_support`), missed calls fed across the farm while the driver kills a node
//! (`kill -9`, then a restart), pauses one longer than the lease TTL (`SIGSTOP`/`SIGCONT`), cuts
//! one's database connections (`pg_terminate_backend` on its `application_name`, repeatedly) and
//! restarts fake servers (link cut, connections refused for a while). Loopback only; it stops
//! by itself.
//!
//! After it, every figure is printed on a line of its own (`chaos: name=value`) and the test
//! fails on any violation:
//!
//! | figure | must be |
//! |---|---|
//! | `overlapping_calls`: two callback calls to one number up at once, across every fake ([Originate received, callback call's last event)) | 0 |
//! | `double_channel_ids`: a ChannelId originated twice | 0 |
//! | `verdicts_missing`: a miss the driver placed, heard by some node, without its row in `calls` (unique (server, linkedid)) | 0 |
//! | `verdicts_double`: more than one row for one (server, linkedid) | 0 |
//! | `failover_p99_ms`: from the kill/stop of a node to the moment another node holds each of its servers' leases (`server_leases`, polled every 100 ms on database time) | <= lease TTL + 1 s: a goal, printed (`failover_goal_met`); it fails the run only with `PEREZVON_CHAOS_STRICT=1`, since a time on a loaded machine is a figure, not a verdict. A server never taken over does fail it. |
//! | `lease_epoch_regressions`: a server's lease epoch going down, or its owner changing without a new epoch | 0 |
//!
//! Short form (the default, CI): about 75 s of chaos, three to four minutes in all (the farm
//! must go quiet after it: every task dialled). Long form:
//! `PEREZVON_CHAOS_SECS=600 cargo test --release --test chaos -- --nocapture`.
//! `PEREZVON_CHAOS_SEED=<n>` replays the same choices (printed at the start);
//! `PEREZVON_CHAOS_KEEP=1` keeps the directory (configurations, node logs).
//! `PEREZVON_CHAOS_ENGINE=sqlite` runs the same driver with the three nodes on one SQLite file,
//! where there are no leases: every node owns every server, and the test fails for want of a
//! lease to measure failover by (the one file serialises the dialers, so no overlap was seen
//! there). The judges themselves are tested on made-up logs at the end of this file.
//!
//! Without PostgreSQL installed the test prints `chaos: skipped` and passes (under `CI=true`
//! it fails: `tests/support/pg.rs`).

mod fault_support;
mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fault_support::{CallHandle, Daemon, Fake, OriginateLog, Outcome, Plan, Script};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const SERVERS: usize = 50;
const NODES: [&str; 3] = ["node-a", "node-b", "node-c"];
const LEASE_TTL: Duration = Duration::from_secs(3);
/// The failover goal: a dead node's servers are held by another within this.
const FAILOVER_GOAL: Duration = Duration::from_secs(4);
/// A miss every this long, on a random server of the farm.
const FEED_EVERY: Duration = Duration::from_millis(250);
/// The share (percent) of misses from a number that already missed once.
const REPEAT_PERCENT: u32 = 12;

fn chaos_secs() -> u64 {
    std::env::var("PEREZVON_CHAOS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(75)
}

/// How the farm answers Originates: most customers answer at once; numbers ending in 3 are
/// busy at the first attempt, numbers ending in 7 do not answer it (10 s of ringing); every
/// second attempt is answered.
fn script() -> Script {
    Box::new(|number: &str, attempt: u32| {
        let outcome = match (attempt, number.chars().last()) {
            (1, Some('3')) => Outcome::Busy,
            (1, Some('7')) => Outcome::NoAnswer,
            _ => Outcome::Connected,
        };
        Plan {
            outcome,
            hold: false,
        }
    })
}

fn server_name(i: usize) -> String {
    format!("pbx{i:02}")
}

/// One `[[asterisk]]` file of `servers.d`.
fn server_file(name: &str, port: u16) -> String {
    format!(
        r#"[[asterisk]]
name = "{name}"
host = "127.0.0.1"
port = {port}
username = "perezvon"
secret = "chaos"
connect_timeout = "2s"
action_timeout = "5s"
ping_interval = "2s"
reconnect_max = "1s"
"#
    )
}

/// A node's main file: the lab PBX's rules (as `fault_support::config_text`), always open,
/// callbacks at once, the farm from `servers.d`, the shared PostgreSQL, its own node id and
/// metrics port.
fn node_config(node: &str, store: &Store, metrics_port: u16) -> String {
    let storage = match store {
        Store::Postgres { url, .. } => format!("url = {url:?}"),
        Store::Sqlite(path) => format!("database = {:?}", path.display().to_string()),
    };
    let days: String = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ]
    .iter()
    .map(|d| format!("{d} = [\"00:00-24:00\"]\n"))
    .collect();
    let ttl = LEASE_TTL.as_secs();
    let marker = fault_support::MARKER;
    format!(
        r#"servers_dir = "servers.d"

[pbx]
country_code = "7"
inbound_contexts = ["from-trunk"]
trunk_channels = ["Local/*@from-trunk-*;2"]
agent_channels = ["Local/2??@agent-sim-*", "Local/2??@agent-phone-*"]
external_channels = ["Local/*@external-sim-*", "Local/*@customer-sim-*"]

[calls]
min_talk = "6s"
min_wait = "3s"
max_call_duration = "1m"

[storage]
{storage}

[cluster]
node_id = "{node}"
lease_ttl = "{ttl}s"

[callback]
enabled = true
dial_template = "Local/{{national}}@customer-sim"
caller_id = "74951110000"
delay = "1s"
max_attempts = 2
retry_every = "5s"
give_up_after = "1h"
max_concurrent = 100
max_concurrent_per_target = 100
require_free_agent = false
allow = ["^79\\d{{9}}$"]
marker_variable = "{marker}"
target = {{ context = "callback", exten = "201" }}

[hours]
timezone = "UTC"
{days}
[metrics]
enabled = true
listen = "127.0.0.1:{metrics_port}"

[log]
level = "info"
"#
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ---------------------------------------------------------------------------------------------
// The database side: leases polled every 100 ms, backends cut, verdicts counted
// ---------------------------------------------------------------------------------------------

/// The nodes' database: the test PostgreSQL, or (`PEREZVON_CHAOS_ENGINE=sqlite`, a check of
/// the harness itself) one SQLite file shared by the three nodes, where there are no leases:
/// every node owns every server and the figures must show it.
enum Store {
    Postgres {
        url: String,
        admin: tokio_postgres::Client,
    },
    Sqlite(PathBuf),
}

async fn connect(url: &str, name: &str) -> tokio_postgres::Client {
    let mut cfg = perezvon::store::pg_config(url).expect("the test URL parses");
    cfg.application_name(name);
    let (client, conn) = cfg
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect to the test PostgreSQL");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// One row of `server_leases`.
#[derive(Debug, Clone, PartialEq)]
struct Lease {
    owner: String,
    epoch: i64,
    expires_at: f64,
}

/// One poll of `server_leases`: when (test clock), the database's clock, every row.
struct Snapshot {
    at: Instant,
    db_now: f64,
    leases: HashMap<String, Lease>,
}

impl Snapshot {
    /// The live holder of `server`'s lease at this poll.
    fn holder(&self, server: &str) -> Option<&str> {
        self.leases
            .get(server)
            .filter(|l| l.expires_at > self.db_now)
            .map(|l| l.owner.as_str())
    }

    fn held_by(&self, node: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .leases
            .keys()
            .filter(|s| self.holder(s) == Some(node))
            .cloned()
            .collect();
        v.sort();
        v
    }
}

#[derive(Default)]
struct LeaseLog {
    snapshots: Vec<Snapshot>,
    /// The last error of a poll (the table missing: no lease manager yet).
    last_error: Option<String>,
    failed_polls: u32,
}

type Leases = Arc<Mutex<LeaseLog>>;

fn lease_log(l: &Leases) -> std::sync::MutexGuard<'_, LeaseLog> {
    l.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn poll_leases(url: String, log: Leases, stop: CancellationToken) {
    let client = connect(&url, "chaos-lease-poller").await;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while !stop.is_cancelled() {
        tick.tick().await;
        let rows = client
            .query(
                "SELECT server, owner, epoch, expires_at::float8, \
                 extract(epoch FROM clock_timestamp())::float8 FROM server_leases",
                &[],
            )
            .await;
        let at = Instant::now();
        let mut l = lease_log(&log);
        match rows {
            Ok(rows) => {
                let mut leases = HashMap::new();
                let mut db_now = None;
                for r in &rows {
                    db_now = Some(r.get::<_, f64>(4));
                    leases.insert(
                        r.get::<_, String>(0),
                        Lease {
                            owner: r.get::<_, Option<String>>(1).unwrap_or_default(),
                            epoch: r.get(2),
                            expires_at: r.get(3),
                        },
                    );
                }
                let db_now = db_now.unwrap_or(0.0);
                l.snapshots.push(Snapshot { at, db_now, leases });
            }
            Err(e) => {
                l.failed_polls += 1;
                l.last_error = Some(perezvon::store::error_chain(&e));
            }
        }
    }
}

/// Terminates every backend of `node` (`application_name` `perezvon <node_id> ...`); returns
/// how many.
async fn cut_backends(client: &tokio_postgres::Client, node: &str) -> u64 {
    let pattern = format!("perezvon%{node}%");
    match client
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name LIKE $1 AND pid <> pg_backend_pid()",
            &[&pattern],
        )
        .await
    {
        Ok(rows) => rows.iter().filter(|r| r.get::<_, bool>(0)).count() as u64,
        Err(e) => {
            eprintln!("chaos: pg_terminate_backend: {e}");
            0
        }
    }
}

/// Work left for the dialers: tasks pending or in progress, verdicts not acted on yet.
async fn open_tasks(store: &Store) -> Result<i64, String> {
    const SQL: &str =
        "SELECT (SELECT count(*) FROM callback_tasks WHERE state IN ('pending', 'in_progress')) \
         + (SELECT count(*) FROM calls WHERE dialer_pending <> 0)";
    match store {
        Store::Postgres { admin, .. } => admin
            .query_one(SQL, &[])
            .await
            .map(|r| r.get::<_, i64>(0))
            .map_err(|e| perezvon::store::error_chain(&e)),
        Store::Sqlite(path) => fault_support::db(path)
            .ok_or("no database file")?
            .query_row(SQL, [], |r| r.get(0))
            .map_err(|e| e.to_string()),
    }
}

/// The state of the latest task of each number, and what the verdicts of each inbound caller
/// say (status, missed, lost_at, resolved_by, dialer_pending), for the numbers never called.
async fn task_states(store: &Store) -> HashMap<String, String> {
    const SQL: &str = "SELECT number, 'task ' || state FROM callback_tasks \
        UNION ALL SELECT caller_normalized, 'verdict ' || server || ' ' || status \
        || ' missed=' || missed || ' lost_at=' || COALESCE(lost_at, '-') \
        || ' resolved_by=' || COALESCE(resolved_by, '-') || ' dialer_pending=' || dialer_pending \
        || ' unknown_reason=' || COALESCE(unknown_reason, '-') \
        FROM calls WHERE direction = 'inbound' AND caller_normalized IS NOT NULL";
    let rows: Vec<(String, String)> = match store {
        Store::Postgres { admin, .. } => match admin.query(SQL, &[]).await {
            Ok(rows) => rows.iter().map(|r| (r.get(0), r.get(1))).collect(),
            Err(e) => {
                eprintln!("chaos: task states: {}", perezvon::store::error_chain(&e));
                Vec::new()
            }
        },
        Store::Sqlite(path) => fault_support::db(path)
            .and_then(|c| {
                let mut st = c.prepare(SQL).ok()?;
                let rows = st
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                    .ok()?
                    .filter_map(Result::ok)
                    .collect();
                Some(rows)
            })
            .unwrap_or_default(),
    };
    let mut out: HashMap<String, String> = HashMap::new();
    for (number, what) in rows {
        let e = out.entry(number).or_default();
        if !e.is_empty() {
            e.push_str("; ");
        }
        e.push_str(&what);
    }
    out
}

/// The inbound verdicts by status (`missed`, `unknown`, ...).
async fn verdict_statuses(store: &Store) -> BTreeMap<String, i64> {
    const SQL: &str =
        "SELECT status, count(*) FROM calls WHERE direction = 'inbound' GROUP BY status";
    match store {
        Store::Postgres { admin, .. } => admin
            .query(SQL, &[])
            .await
            .map(|rows| rows.iter().map(|r| (r.get(0), r.get(1))).collect())
            .unwrap_or_default(),
        Store::Sqlite(path) => fault_support::db(path)
            .and_then(|c| {
                let mut st = c.prepare(SQL).ok()?;
                let rows = st
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                    .ok()?
                    .filter_map(Result::ok)
                    .collect();
                Some(rows)
            })
            .unwrap_or_default(),
    }
}

/// The application names connected to the database now (to show how nodes name theirs).
async fn application_names(client: &tokio_postgres::Client) -> Vec<String> {
    client
        .query(
            "SELECT DISTINCT application_name FROM pg_stat_activity \
             WHERE datname = current_database() ORDER BY 1",
            &[],
        )
        .await
        .map(|rows| rows.iter().map(|r| r.get::<_, String>(0)).collect())
        .unwrap_or_default()
}

/// Rows of `calls` per (server, linkedid).
async fn verdicts(store: &Store) -> Result<HashMap<(String, String), i64>, String> {
    const SQL: &str = "SELECT server, linkedid, count(*) FROM calls GROUP BY server, linkedid";
    let client = match store {
        Store::Postgres { admin, .. } => admin,
        Store::Sqlite(path) => {
            let c = fault_support::db(path).ok_or("no database file")?;
            let mut st = c.prepare(SQL).map_err(|e| e.to_string())?;
            let rows = st
                .query_map([], |r| Ok(((r.get(0)?, r.get(1)?), r.get::<_, i64>(2)?)))
                .map_err(|e| e.to_string())?;
            return rows.collect::<Result<_, _>>().map_err(|e| e.to_string());
        }
    };
    let rows = client
        .query(SQL, &[])
        .await
        .map_err(|e| perezvon::store::error_chain(&e))?;
    Ok(rows
        .iter()
        .map(|r| ((r.get(0), r.get(1)), r.get::<_, i64>(2)))
        .collect())
}

// ---------------------------------------------------------------------------------------------
// The nodes
// ---------------------------------------------------------------------------------------------

struct Node {
    name: &'static str,
    daemon: Daemon,
    /// SIGSTOPped now (not to be taken for dead).
    stopped: bool,
    /// Killed by the driver, to be restarted by it.
    down: bool,
    /// Exits the driver did not cause (restarted at once, as systemd's Restart=always would).
    unexpected_exits: Vec<String>,
}

/// The last `n` lines of a node's log that are not backtrace frames.
fn digest(d: &Daemon, n: usize) -> String {
    let text = d.log_tail(4000);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            let frame = t
                .split_once(": ")
                .is_some_and(|(i, _)| !i.is_empty() && i.chars().all(|c| c.is_ascii_digit()));
            !(frame || t.starts_with("at ") || t.starts_with("note: Some details"))
        })
        .collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -{sig} {pid}");
}

/// Restarts nodes that exited on their own, and notes it.
fn supervise(nodes: &mut [Node], t0: Instant) {
    for n in nodes.iter_mut() {
        if n.down || n.stopped {
            continue;
        }
        if let Some(st) = n.daemon.exited() {
            let line = format!(
                "{} exited by itself at {:.1}s ({st}); restarted",
                n.name,
                t0.elapsed().as_secs_f64()
            );
            eprintln!("chaos: {line}\n{}", digest(&n.daemon, 15));
            n.unexpected_exits.push(line);
            n.daemon.kill9();
            n.daemon.restart();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The driver's record
// ---------------------------------------------------------------------------------------------

/// A miss the feeder placed.
struct Fed {
    server: usize,
    number: String,
    handle: CallHandle,
}

/// A node made unavailable, for the failover figure.
#[derive(Debug, Clone)]
struct Fault {
    kind: &'static str,
    node: &'static str,
    at: Instant,
    /// Whether the failover goal applies (kill and stop; a cut database may recover in time).
    judged: bool,
}

#[derive(Default)]
struct Feed {
    fed: Vec<Fed>,
}

async fn feeder(fakes: Vec<Fake>, feed: Arc<Mutex<Feed>>, stop: CancellationToken, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed ^ 0x5eed);
    // 7955<run-specific>: distinct numbers within a run, on the allow-list.
    let prefix = 10 + seed % 90;
    let mut once: Vec<String> = Vec::new();
    let mut next = 0u32;
    let mut tick = tokio::time::interval(FEED_EVERY);
    while !stop.is_cancelled() {
        tick.tick().await;
        let number = if !once.is_empty() && rng.u32(0..100) < REPEAT_PERCENT {
            once.swap_remove(rng.usize(0..once.len()))
        } else {
            next += 1;
            let n = format!("7955{prefix:02}{next:05}");
            once.push(n.clone());
            n
        };
        let server = rng.usize(0..fakes.len());
        let handle = fakes[server].miss(&number);
        feed.lock().unwrap().fed.push(Fed {
            server,
            number,
            handle,
        });
    }
}

/// Waits until `until`, restarting nodes that exit by themselves.
async fn calm(nodes: &mut [Node], t0: Instant, until: Instant) {
    while Instant::now() < until {
        supervise(nodes, t0);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// The node to break in round `round`: every third round the owner of the callback server's
/// lease (`pbx00`: the one node that dials), otherwise the nodes in turn, skipping one that holds
/// no lease while another does (breaking it would show nothing).
fn victim(leases: &Leases, nodes: &[Node], round: usize) -> usize {
    let l = lease_log(leases);
    let Some(s) = l.snapshots.last() else {
        return round % nodes.len();
    };
    if round.is_multiple_of(3) {
        if let Some(i) = s
            .holder(&server_name(0))
            .and_then(|h| nodes.iter().position(|n| n.name == h))
        {
            return i;
        }
    }
    (0..nodes.len())
        .map(|k| (round + k) % nodes.len())
        .find(|&i| !s.held_by(nodes[i].name).is_empty())
        .unwrap_or(round % nodes.len())
}

// ---------------------------------------------------------------------------------------------
// Judging
// ---------------------------------------------------------------------------------------------

/// Callback calls to one number up at once, across the farm: intervals [Originate received,
/// the call's last event); a call still up is taken to last until `end`. Times are shown from
/// `t0`.
fn overlapping_calls(originates: &[OriginateLog], t0: Instant, end: Instant) -> Vec<String> {
    let mut by_number: BTreeMap<&str, Vec<&OriginateLog>> = BTreeMap::new();
    for o in originates {
        by_number.entry(o.number.as_str()).or_default().push(o);
    }
    let mut overlaps = Vec::new();
    for (number, mut calls) in by_number {
        calls.sort_by_key(|o| o.received);
        let mut up: Option<&OriginateLog> = None;
        for o in calls {
            if let Some(u) = up {
                let u_end = u.ended.unwrap_or(end);
                if o.received < u_end {
                    overlaps.push(format!(
                        "{number}: {} on {} at {:.1}s while {} on {} was up ({:.1}s-{})",
                        o.channel_id,
                        o.server,
                        (o.received - t0).as_secs_f64(),
                        u.channel_id,
                        u.server,
                        (u.received - t0).as_secs_f64(),
                        u.ended
                            .map(|e| format!("{:.1}s", (e - t0).as_secs_f64()))
                            .unwrap_or_else(|| "never ended".into()),
                    ));
                }
                if o.ended.unwrap_or(end) <= u_end {
                    continue;
                }
            }
            up = Some(o);
        }
    }
    overlaps
}

/// ChannelIds originated more than once (anywhere in the farm), and how many Originates had
/// none.
fn double_channel_ids(originates: &[OriginateLog], t0: Instant) -> (Vec<String>, usize) {
    let mut channel_ids: HashMap<&str, Vec<&OriginateLog>> = HashMap::new();
    let mut without_channel_id = 0;
    for o in originates {
        if o.channel_id.is_empty() {
            without_channel_id += 1;
        } else {
            channel_ids
                .entry(o.channel_id.as_str())
                .or_default()
                .push(o);
        }
    }
    let mut doubles: Vec<String> = channel_ids
        .iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|(id, v)| {
            let at: Vec<String> = v
                .iter()
                .map(|o| format!("{} at {:.1}s", o.server, (o.received - t0).as_secs_f64()))
                .collect();
            format!("{id} to {}: {}", v[0].number, at.join(", "))
        })
        .collect();
    doubles.sort();
    (doubles, without_channel_id)
}

/// The failover figures of the faults, from the lease polls.
#[derive(Debug, Default)]
struct Failovers {
    /// Kill/stop: from the fault to the first poll showing another node holding the server.
    samples: Vec<Duration>,
    /// Servers of a killed/stopped node that no other node held before the end.
    never: Vec<String>,
    /// Database cuts (not judged): servers moved within 10 s, of those held.
    db_cut_moved: (usize, usize),
}

/// For each fault, the servers the node held at the last poll before it, and when another
/// node first held each.
fn failovers(snapshots: &[Snapshot], faults: &[Fault]) -> Failovers {
    let mut failovers: Vec<Duration> = Vec::new();
    let mut never: Vec<String> = Vec::new();
    let mut db_cut_moved = (0usize, 0usize);
    for f in faults {
        let Some(before) = snapshots.iter().rev().find(|s| s.at <= f.at) else {
            continue;
        };
        for server in before.held_by(f.node) {
            let taken = snapshots
                .iter()
                .find(|s| s.at > f.at && s.holder(&server).is_some_and(|h| h != f.node));
            if !f.judged {
                db_cut_moved.1 += 1;
                db_cut_moved.0 +=
                    usize::from(taken.is_some_and(|s| s.at - f.at < Duration::from_secs(10)));
                continue;
            }
            match taken {
                Some(s) => {
                    let d = s.at - f.at;
                    if d > FAILOVER_GOAL {
                        eprintln!(
                            "chaos:   slow failover: {server} of {} after {}: {} ms, to {}",
                            f.node,
                            f.kind,
                            d.as_millis(),
                            s.holder(&server).unwrap_or("?")
                        );
                    }
                    failovers.push(d)
                }
                None => never.push(format!("{server} of {} after {}", f.node, f.kind)),
            }
        }
    }
    failovers.sort();
    Failovers {
        samples: failovers,
        never,
        db_cut_moved,
    }
}

/// Per server, an epoch going down, or the owner changing without a new epoch.
fn epoch_regressions(snapshots: &[Snapshot]) -> Vec<String> {
    let mut regressions = Vec::new();
    let mut last: HashMap<&str, &Lease> = HashMap::new();
    for s in snapshots {
        for (server, l) in &s.leases {
            if let Some(p) = last.get(server.as_str()) {
                if l.epoch < p.epoch || (l.owner != p.owner && l.epoch == p.epoch) {
                    regressions.push(format!(
                        "{server}: {} epoch {} -> {} epoch {}",
                        p.owner, p.epoch, l.owner, l.epoch
                    ));
                }
            }
            last.insert(server, l);
        }
    }
    regressions
}

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_fifty_servers_kill_stop_cut() {
    let sqlite = std::env::var("PEREZVON_CHAOS_ENGINE").is_ok_and(|v| v == "sqlite");
    let url = if sqlite {
        None
    } else {
        let Some(url) = support::pg::fresh_url() else {
            eprintln!("chaos: skipped (no PostgreSQL)");
            return;
        };
        Some(url)
    };
    let seed = std::env::var("PEREZVON_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    let secs = chaos_secs();
    eprintln!(
        "chaos: seed={seed} secs={secs} servers={SERVERS} nodes={}",
        NODES.len()
    );
    let mut rng = fastrand::Rng::with_seed(seed);

    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().to_path_buf();
    let keep = std::env::var("PEREZVON_CHAOS_KEEP").is_ok_and(|v| v == "1");
    let _tmp = if keep {
        eprintln!("chaos: keeping {}", tmp.keep().display());
        None
    } else {
        Some(tmp)
    };

    let store = match &url {
        Some(url) => Store::Postgres {
            url: url.clone(),
            admin: connect(url, "chaos-driver").await,
        },
        None => Store::Sqlite(dir.join("perezvon.db")),
    };
    eprintln!(
        "chaos: engine={}",
        if sqlite {
            "sqlite (no leases)"
        } else {
            "postgres"
        }
    );

    // The farm.
    let mut fakes = Vec::new();
    std::fs::create_dir_all(dir.join("servers.d")).unwrap();
    for i in 0..SERVERS {
        let name = server_name(i);
        let fake = Fake::start_named(&name, script()).await;
        let file = dir.join("servers.d").join(format!("{name}.toml"));
        std::fs::write(&file, server_file(&name, fake.port())).unwrap();
        // It holds a secret: not world-readable (perezvon warns otherwise).
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
        fakes.push(fake);
    }

    // The nodes.
    let mut nodes: Vec<Node> = NODES
        .iter()
        .map(|&name| {
            let config = dir.join(format!("{name}.toml"));
            std::fs::write(&config, node_config(name, &store, free_port())).unwrap();
            Node {
                name,
                daemon: Daemon::start(&config, &dir.join(format!("{name}.log"))),
                stopped: false,
                down: false,
                unexpected_exits: Vec::new(),
            }
        })
        .collect();
    let t0 = Instant::now();
    let mut all_sessions = false;
    while t0.elapsed() < Duration::from_secs(40) {
        supervise(&mut nodes, t0);
        let exits: usize = nodes.iter().map(|n| n.unexpected_exits.len()).sum();
        if exits >= 2 * NODES.len() {
            let tails: Vec<String> = nodes
                .iter()
                .map(|n| format!("---- {} ----\n{}", n.name, digest(&n.daemon, 25)))
                .collect();
            panic!(
                "chaos: the nodes cannot start ({exits} exits before the chaos began)\n{}",
                tails.join("\n")
            );
        }
        if fakes.iter().all(|f| f.sessions() >= NODES.len()) {
            all_sessions = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sessions: usize = fakes.iter().map(Fake::sessions).sum();
    eprintln!(
        "chaos: sessions_at_start={sessions}/{} after {:.1}s{}",
        SERVERS * NODES.len(),
        t0.elapsed().as_secs_f64(),
        if all_sessions { "" } else { " (not all)" }
    );
    supervise(&mut nodes, t0);

    let leases: Leases = Arc::default();
    let stop_poll = CancellationToken::new();
    let poller = match &store {
        Store::Postgres { url, .. } => Some(tokio::spawn(poll_leases(
            url.clone(),
            leases.clone(),
            stop_poll.clone(),
        ))),
        Store::Sqlite(_) => {
            lease_log(&leases).last_error = Some("SQLite: no leases".into());
            None
        }
    };
    // Let the nodes settle on their leases before the first fault (bounded: none may exist).
    fault_support::wait_for(Duration::from_secs(10), || {
        lease_log(&leases)
            .snapshots
            .last()
            .is_some_and(|s| (0..SERVERS).all(|i| s.holder(&server_name(i)).is_some()))
    })
    .await;

    let feed: Arc<Mutex<Feed>> = Arc::default();
    let stop_feed = CancellationToken::new();
    let feeding = tokio::spawn(feeder(fakes.clone(), feed.clone(), stop_feed.clone(), seed));

    // The chaos: one fault after another, a calm gap before each, until the time is up.
    let chaos_start = Instant::now();
    let chaos_end = chaos_start + Duration::from_secs(secs);
    let gap = Duration::from_secs(6);
    let mut faults: Vec<Fault> = Vec::new();
    let mut backends_cut = 0u64;
    let mut fake_cuts = 0u32;
    let mut round = 0usize;
    'chaos: loop {
        for step in 0..4 {
            if Instant::now() + gap + Duration::from_secs(8) > chaos_end {
                break 'chaos;
            }
            calm(&mut nodes, t0, Instant::now() + gap).await;
            let victim = victim(&leases, &nodes, round);
            round += 1;
            let node = nodes[victim].name;
            let held = lease_log(&leases)
                .snapshots
                .last()
                .map(|s| s.held_by(node).len())
                .unwrap_or(0);
            let at = Instant::now();
            let t = (at - chaos_start).as_secs_f64();
            match step {
                0 => {
                    eprintln!("chaos: {t:.1}s kill -9 {node} (holding {held} leases)");
                    nodes[victim].daemon.kill9();
                    nodes[victim].down = true;
                    faults.push(Fault {
                        kind: "kill",
                        node,
                        at,
                        judged: true,
                    });
                    calm(&mut nodes, t0, at + LEASE_TTL + Duration::from_secs(3)).await;
                    nodes[victim].daemon.restart();
                    nodes[victim].down = false;
                }
                1 => {
                    let pid = nodes[victim].daemon.pid().expect("running");
                    eprintln!("chaos: {t:.1}s SIGSTOP {node} (holding {held} leases)");
                    nodes[victim].stopped = true;
                    signal(pid, "STOP");
                    faults.push(Fault {
                        kind: "stop",
                        node,
                        at,
                        judged: true,
                    });
                    calm(&mut nodes, t0, at + LEASE_TTL + Duration::from_secs(3)).await;
                    signal(pid, "CONT");
                    nodes[victim].stopped = false;
                }
                2 => {
                    eprintln!(
                        "chaos: {t:.1}s database cut of {node} for 5s (holding {held} leases)"
                    );
                    faults.push(Fault {
                        kind: "db-cut",
                        node,
                        at,
                        judged: false,
                    });
                    let until = at + Duration::from_secs(5);
                    while Instant::now() < until {
                        if let Store::Postgres { admin, .. } = &store {
                            backends_cut += cut_backends(admin, node).await;
                        }
                        supervise(&mut nodes, t0);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
                _ => {
                    let mut picked: Vec<usize> = (0..SERVERS).collect();
                    rng.shuffle(&mut picked);
                    picked.truncate(5);
                    eprintln!(
                        "chaos: {t:.1}s restart of fake servers {:?} (links cut, refused 3s)",
                        picked.iter().map(|&i| server_name(i)).collect::<Vec<_>>()
                    );
                    for i in picked {
                        fakes[i].cut_link(Duration::from_secs(3));
                        fake_cuts += 1;
                        tokio::time::sleep(Duration::from_millis(400)).await;
                    }
                }
            }
        }
    }
    calm(&mut nodes, t0, chaos_end).await;
    stop_feed.cancel();
    let _ = feeding.await;
    let fed_total = feed.lock().unwrap().fed.len();
    eprintln!(
        "chaos: {:.1}s feeding stopped ({fed_total} misses); waiting for the farm to go quiet",
        chaos_start.elapsed().as_secs_f64()
    );

    // Quiet: no task left to dial, no call up on any fake and no Originate for 12 s (retries
    // come 5 s apart), at most 120 s.
    let quiet_deadline = Instant::now() + Duration::from_secs(120);
    loop {
        supervise(&mut nodes, t0);
        if open_tasks(&store).await.unwrap_or(0) > 0 && Instant::now() < quiet_deadline {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        let live: usize = fakes.iter().map(Fake::live_calls).sum();
        let last_originate = fakes
            .iter()
            .flat_map(|f| f.originates().into_iter().map(|o| o.received))
            .max();
        let idle = last_originate.is_none_or(|t| t.elapsed() > Duration::from_secs(12));
        if (live == 0 && idle) || Instant::now() > quiet_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The verdicts: every heard miss must have its row; give the writers up to 20 s.
    // When each number's misses began, seconds into the chaos (for the lists below).
    let fed_at: HashMap<String, Vec<String>> = {
        let f = feed.lock().unwrap();
        let mut m: HashMap<String, Vec<String>> = HashMap::new();
        for x in &f.fed {
            let call = &fakes[x.server].calls()[x.handle.index];
            m.entry(x.number.clone()).or_default().push(format!(
                "{:.1}s",
                (call.started - chaos_start).as_secs_f64()
            ));
        }
        m
    };
    let fed_snapshot: Vec<(usize, String, String, u32)> = {
        let f = feed.lock().unwrap();
        f.fed
            .iter()
            .map(|m| {
                let call = &fakes[m.server].calls()[m.handle.index];
                (
                    m.server,
                    m.number.clone(),
                    m.handle.linkedid.clone(),
                    call.unheard,
                )
            })
            .collect()
    };
    let mut rows: HashMap<(String, String), i64> = HashMap::new();
    let mut verdict_error;
    let verdict_deadline = Instant::now() + Duration::from_secs(20);
    loop {
        verdict_error = match verdicts(&store).await {
            Ok(r) => {
                rows = r;
                None
            }
            Err(e) => Some(e),
        };
        let missing = fed_snapshot
            .iter()
            .filter(|(s, _, l, unheard)| {
                *unheard == 0 && !rows.contains_key(&(server_name(*s), l.clone()))
            })
            .count();
        if missing == 0 || Instant::now() > verdict_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let states = task_states(&store).await;
    let statuses = verdict_statuses(&store).await;
    let names = match &store {
        Store::Postgres { admin, .. } => application_names(admin).await,
        Store::Sqlite(_) => Vec::new(),
    };

    stop_poll.cancel();
    if let Some(p) = poller {
        let _ = p.await;
    }
    for n in nodes.iter_mut() {
        if n.stopped {
            if let Some(pid) = n.daemon.pid() {
                signal(pid, "CONT");
            }
        }
        n.daemon.term(Duration::from_secs(10)).await;
    }

    // ---- Judging ----
    let end = Instant::now();
    let originates: Vec<OriginateLog> = fakes.iter().flat_map(Fake::originates).collect();

    let overlaps = overlapping_calls(&originates, t0, end);
    let (doubles, without_channel_id) = double_channel_ids(&originates, t0);

    // Verdicts. Each miss the driver placed must have exactly one row in `calls` for its
    // (server, linkedid). The exception is a miss some of whose events no node heard: the fake
    // counts, per call, the events it sent while no session at all was logged in (its link
    // cut and refused, or every node down); Asterisk does not keep AMI events for absent
    // listeners, so nobody can be held to such a call (`misses_unheard`, not a violation).
    let mut missing = Vec::new();
    let mut unheard = 0usize;
    for (s, number, linkedid, unheard_events) in &fed_snapshot {
        let key = (server_name(*s), linkedid.clone());
        if rows.contains_key(&key) {
            continue;
        }
        if *unheard_events > 0 {
            unheard += 1;
        } else {
            missing.push(format!("{} {linkedid} from {number}", key.0));
        }
    }
    let fed_keys: HashSet<(String, String)> = fed_snapshot
        .iter()
        .map(|(s, _, l, _)| (server_name(*s), l.clone()))
        .collect();
    let double_verdicts: Vec<String> = rows
        .iter()
        .filter(|(_, &n)| n > 1)
        .map(|((s, l), n)| {
            let ours = if fed_keys.contains(&(s.clone(), l.clone())) {
                "a fed miss"
            } else {
                "a callback"
            };
            format!("{s} {l}: {n} rows ({ours})")
        })
        .collect();

    let log = lease_log(&leases);
    let Failovers {
        samples: failovers,
        never,
        db_cut_moved,
    } = failovers(&log.snapshots, &faults);
    let p50 = percentile(&failovers, 0.50);
    let p99 = percentile(&failovers, 0.99);
    let max = failovers.last().copied().unwrap_or_default();
    let regressions = epoch_regressions(&log.snapshots);
    let lease_table =
        !log.snapshots.is_empty() && log.snapshots.iter().any(|s| !s.leases.is_empty());

    // Numbers whose miss has its verdict but that were never called back, with their task's
    // state (shown, not judged: the test asks for at most one callback per attempt).
    let called: HashSet<&str> = originates.iter().map(|o| o.number.as_str()).collect();
    let uncalled: Vec<String> = fed_snapshot
        .iter()
        .filter(|(s, n, l, _)| {
            rows.contains_key(&(server_name(*s), l.clone())) && !called.contains(n.as_str())
        })
        .map(|(_, n, _, _)| n.as_str())
        .collect::<std::collections::BTreeSet<&str>>()
        .into_iter()
        .map(|n| {
            let st = states.get(n).map_or("no task", String::as_str);
            let at = fed_at.get(n).map(|v| v.join(",")).unwrap_or_default();
            format!("{n} (missed at {at}): {st}")
        })
        .collect();

    // ---- Figures ----
    let exits: Vec<String> = nodes
        .iter()
        .flat_map(|n| n.unexpected_exits.iter().cloned())
        .collect();
    let connected = fakes
        .iter()
        .flat_map(Fake::calls)
        .filter(|c| c.kind == fault_support::CallKind::Callback(Outcome::Connected))
        .count();
    let distinct_numbers: HashSet<&str> =
        fed_snapshot.iter().map(|(_, n, _, _)| n.as_str()).collect();
    eprintln!("chaos: ---- figures (seed {seed}, {secs}s of chaos) ----");
    eprintln!("chaos: misses_fed={fed_total}");
    eprintln!("chaos: distinct_numbers={}", distinct_numbers.len());
    eprintln!("chaos: callbacks_placed={}", originates.len());
    eprintln!("chaos: callbacks_connected={connected}");
    eprintln!("chaos: faults={}", faults.len());
    for f in &faults {
        eprintln!(
            "chaos:   {} {} at {:.1}s",
            f.kind,
            f.node,
            (f.at - chaos_start).as_secs_f64()
        );
    }
    eprintln!("chaos: fake_link_cuts={fake_cuts}");
    eprintln!("chaos: db_backends_terminated={backends_cut}");
    eprintln!("chaos: db_application_names={names:?}");
    eprintln!("chaos: node_unexpected_exits={}", exits.len());
    eprintln!("chaos: overlapping_calls={}", overlaps.len());
    eprintln!("chaos: double_channel_ids={}", doubles.len());
    eprintln!("chaos: originates_without_channel_id={without_channel_id}");
    eprintln!("chaos: verdicts_missing={}", missing.len());
    eprintln!("chaos: verdicts_double={}", double_verdicts.len());
    eprintln!("chaos: misses_unheard={unheard}");
    eprintln!("chaos: inbound_verdict_statuses={statuses:?}");
    eprintln!("chaos: numbers_without_callback={}", uncalled.len());
    if let Some(e) = &verdict_error {
        eprintln!("chaos: verdicts_query_error={e}");
    }
    eprintln!(
        "chaos: lease_polls={} lease_poll_errors={}{}",
        log.snapshots.len(),
        log.failed_polls,
        log.last_error
            .as_deref()
            .map(|e| format!(" (last: {e})"))
            .unwrap_or_default()
    );
    eprintln!("chaos: failover_samples={}", failovers.len());
    eprintln!("chaos: failover_p50_ms={}", p50.as_millis());
    eprintln!("chaos: failover_p99_ms={}", p99.as_millis());
    eprintln!("chaos: failover_max_ms={}", max.as_millis());
    eprintln!("chaos: failover_goal_ms={}", FAILOVER_GOAL.as_millis());
    eprintln!("chaos: failover_never={}", never.len());
    eprintln!(
        "chaos: db_cut_servers_moved={}/{}",
        db_cut_moved.0, db_cut_moved.1
    );
    eprintln!("chaos: lease_epoch_regressions={}", regressions.len());
    for (label, items) in [
        ("overlapping calls", &overlaps),
        ("ChannelIds originated twice", &doubles),
        ("misses without a verdict", &missing),
        ("double verdicts", &double_verdicts),
        ("servers never failed over", &never),
        ("lease epoch regressions", &regressions),
        ("unexpected node exits", &exits),
        (
            "numbers with a verdict but no callback (not judged)",
            &uncalled,
        ),
    ] {
        if !items.is_empty() {
            eprintln!("chaos: {label} (first 15 of {}):", items.len());
            for i in items.iter().take(15) {
                eprintln!("chaos:   {i}");
            }
        }
    }

    // ---- Verdict ----
    let mut violations = Vec::new();
    if !overlaps.is_empty() {
        violations.push(format!(
            "{} overlapping calls to one number",
            overlaps.len()
        ));
    }
    if !doubles.is_empty() {
        violations.push(format!("{} ChannelIds originated twice", doubles.len()));
    }
    if let Some(e) = verdict_error {
        violations.push(format!("table calls unreadable: {e}"));
    }
    if !missing.is_empty() {
        violations.push(format!("{} misses without a verdict", missing.len()));
    }
    if !double_verdicts.is_empty() {
        violations.push(format!(
            "{} (server, linkedid) with more than one verdict",
            double_verdicts.len()
        ));
    }
    if !lease_table {
        violations.push(format!(
            "no lease was ever seen in server_leases ({}): failover cannot be measured",
            log.last_error.as_deref().unwrap_or("the table is empty")
        ));
    } else if failovers.is_empty() && never.is_empty() {
        violations.push("no failover sample: no killed or stopped node held a lease".into());
    }
    if !never.is_empty() {
        violations.push(format!(
            "{} servers never taken over after a kill/stop",
            never.len()
        ));
    }
    // A time goal is a figure, not a test verdict (timing on a loaded machine is noise; the
    // long run's figures are in BENCHMARKS.md): it fails the run only when asked to.
    eprintln!(
        "chaos: failover_goal_met={}",
        if p99 <= FAILOVER_GOAL { "yes" } else { "no" }
    );
    if p99 > FAILOVER_GOAL && std::env::var_os("PEREZVON_CHAOS_STRICT").is_some() {
        violations.push(format!(
            "failover p99 {} ms over the goal {} ms (lease TTL + 1 s)",
            p99.as_millis(),
            FAILOVER_GOAL.as_millis()
        ));
    }
    if !regressions.is_empty() {
        violations.push(format!("{} lease epoch regressions", regressions.len()));
    }
    drop(log);
    if !violations.is_empty() {
        for n in &nodes {
            eprintln!(
                "chaos: ---- {} log (last lines) ----\n{}",
                n.name,
                digest(&n.daemon, 25)
            );
        }
        panic!("chaos (seed {seed}): {}", violations.join("; "));
    }
}

// ---------------------------------------------------------------------------------------------
// The judges, on made-up logs (so a quiet run means a quiet product, not a blind judge)
// ---------------------------------------------------------------------------------------------

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn originate(number: &str, id: &str, t0: Instant, from: u64, to: Option<u64>) -> OriginateLog {
    OriginateLog {
        server: "pbx00".into(),
        action_id: format!("cb-{id}"),
        channel_id: id.into(),
        number: number.into(),
        received: t0 + ms(from),
        unanswered: false,
        ended: to.map(|t| t0 + ms(t)),
    }
}

#[test]
fn overlapping_calls_are_found_touching_ones_are_not() {
    let t0 = Instant::now();
    let end = t0 + ms(100_000);
    let logs = vec![
        originate("79550000001", "a", t0, 0, Some(5_000)),
        // Starts as the first ends: no overlap.
        originate("79550000001", "b", t0, 5_000, Some(9_000)),
        // Starts while b is up.
        originate("79550000001", "c", t0, 8_000, Some(12_000)),
        // Another number at the same time: no overlap.
        originate("79550000002", "d", t0, 8_000, Some(12_000)),
        // A call never ended overlaps everything after it.
        originate("79550000003", "e", t0, 1_000, None),
        originate("79550000003", "f", t0, 50_000, Some(51_000)),
        // Inside a long call, then another one after the short one ended: both overlap the long.
        originate("79550000004", "g", t0, 0, Some(30_000)),
        originate("79550000004", "h", t0, 1_000, Some(2_000)),
        originate("79550000004", "i", t0, 3_000, Some(4_000)),
    ];
    let found = overlapping_calls(&logs, t0, end);
    assert_eq!(found.len(), 4, "{found:#?}");
    assert!(found[0].contains(" c on pbx00") && found[0].contains("while b"));
    assert!(found
        .iter()
        .any(|f| f.contains("while e") && f.contains("never ended")));
    assert_eq!(found.iter().filter(|f| f.contains("while g")).count(), 2);
}

#[test]
fn a_channel_id_originated_twice_is_found() {
    let t0 = Instant::now();
    let mut logs = vec![
        originate("79550000001", "x", t0, 0, Some(1_000)),
        originate("79550000002", "y", t0, 0, Some(1_000)),
        originate("79550000001", "x", t0, 2_000, Some(3_000)),
        originate("79550000003", "", t0, 0, Some(1_000)),
    ];
    logs[2].server = "pbx07".into();
    let (doubles, without) = double_channel_ids(&logs, t0);
    assert_eq!(without, 1);
    assert_eq!(doubles.len(), 1, "{doubles:?}");
    assert!(doubles[0].starts_with("x to 79550000001") && doubles[0].contains("pbx07 at 2.0s"));
}

fn snapshot(at: Instant, db_now: f64, rows: &[(&str, &str, i64, f64)]) -> Snapshot {
    Snapshot {
        at,
        db_now,
        leases: rows
            .iter()
            .map(|(s, o, e, x)| {
                (
                    s.to_string(),
                    Lease {
                        owner: o.to_string(),
                        epoch: *e,
                        expires_at: *x,
                    },
                )
            })
            .collect(),
    }
}

#[test]
fn failover_is_measured_from_the_fault_to_another_live_holder() {
    let t0 = Instant::now();
    let snaps = vec![
        snapshot(
            t0,
            1000.0,
            &[
                ("s1", "node-a", 1, 1003.0),
                ("s2", "node-a", 1, 1003.0),
                ("s3", "node-b", 1, 1003.0),
            ],
        ),
        // Expired but not yet taken: not held by anyone.
        snapshot(
            t0 + ms(3_100),
            1003.1,
            &[
                ("s1", "node-a", 1, 1003.0),
                ("s2", "node-a", 1, 1003.0),
                ("s3", "node-b", 2, 1006.0),
            ],
        ),
        snapshot(
            t0 + ms(3_500),
            1003.5,
            &[
                ("s1", "node-c", 2, 1006.5),
                ("s2", "node-a", 1, 1003.0),
                ("s3", "node-b", 2, 1006.0),
            ],
        ),
    ];
    let faults = vec![
        Fault {
            kind: "kill",
            node: "node-a",
            at: t0 + ms(50),
            judged: true,
        },
        Fault {
            kind: "db-cut",
            node: "node-b",
            at: t0 + ms(60),
            judged: false,
        },
    ];
    let f = failovers(&snaps, &faults);
    assert_eq!(f.samples, vec![ms(3_450)]);
    assert_eq!(f.never, vec!["s2 of node-a after kill".to_string()]);
    assert_eq!(f.db_cut_moved, (0, 1));
    assert!(epoch_regressions(&snaps).is_empty());
}

#[test]
fn an_owner_change_without_a_new_epoch_is_a_regression() {
    let t0 = Instant::now();
    let snaps = vec![
        snapshot(t0, 1.0, &[("s1", "node-a", 4, 9.0)]),
        snapshot(t0 + ms(100), 1.1, &[("s1", "node-b", 4, 9.0)]),
        snapshot(t0 + ms(200), 1.2, &[("s1", "node-b", 3, 9.0)]),
    ];
    assert_eq!(epoch_regressions(&snaps).len(), 2);
}

#[test]
fn percentiles_take_the_nearest_rank() {
    let v: Vec<Duration> = (1..=100).map(ms).collect();
    assert_eq!(percentile(&v, 0.50), ms(50));
    assert_eq!(percentile(&v, 0.99), ms(99));
    assert_eq!(percentile(&[ms(7)], 0.99), ms(7));
    assert_eq!(percentile(&[], 0.99), Duration::ZERO);
}
