//! The many-servers bench (issue 11), run the way a user runs perezvon: the release
//! `perezvon run --config F` binary following N `[[asterisk]]` servers of `examples/ami_farm`
//! and storing in a throw-away PostgreSQL.
//!
//! 1. Starts PostgreSQL as the tests do (`tests/support/pg.rs`: `initdb` into a temporary
//!    directory as `nobody` through `setpriv`, a unix socket only, `fsync=on`).
//! 2. Starts the farm (`--servers`, `--rate` events/s per server, `--secs`) and writes a
//!    configuration with one `[[asterisk]]` per listener, the lab's `[pbx]`/`[calls]`,
//!    `[storage] url` and `[metrics]`.
//! 3. Runs `perezvon run --config F` and samples every second its CPU (utime+stime of
//!    `/proc/<pid>/stat`, as a share of one core), VmRSS and VmHWM (`/proc/<pid>/status`), the
//!    farm's and PostgreSQL's CPU, and `/metrics` (events received, verdicts observed).
//! 4. When the farm has ended its last call, waits until the verdicts in PostgreSQL reach the
//!    calls the farm ended (or stop growing for `--settle` seconds), scrapes
//!    `perezvon_verdict_latency_seconds` (hangup -> verdict committed; the percentiles are
//!    bucket upper bounds), stops perezvon with SIGTERM and prints a summary (also written to
//!    `<out>/summary.txt`, the samples to `<out>/samples.csv`).
//!
//! ```text
//! cargo build --release --examples --bins
//! target/release/examples/bench_servers --servers 200 --rate 5000 --secs 60
//! ```
//!
//! Run it from the repository root (the farm reads `fixtures/asterisk-22`). As root it needs
//! `setpriv` (util-linux) and PostgreSQL's binaries (`/usr/lib/postgresql/*/bin`, or
//! `PEREZVON_PG_BIN`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;

#[path = "../tests/support/pg.rs"]
#[allow(dead_code)]
mod pg;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 200)]
    servers: usize,
    /// Events per second per server (the farm's steady state).
    #[arg(long, default_value_t = 5000.0)]
    rate: f64,
    /// Seconds during which the farm starts calls.
    #[arg(long, default_value_t = 60.0)]
    secs: f64,
    /// Divides the recorded spacing of the calls' events (the farm's --time-scale).
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// Worker threads of the farm.
    #[arg(long, default_value_t = 2)]
    farm_threads: usize,
    /// After the farm's last call: wait at most this long for the verdicts to stop growing.
    #[arg(long, default_value_t = 60.0)]
    settle: f64,
    #[arg(long, default_value = "target/release/perezvon")]
    perezvon: PathBuf,
    #[arg(long, default_value = "target/release/examples/ami_farm")]
    farm: PathBuf,
    /// Logs, configuration, samples and summary.
    #[arg(long, default_value = "target/bench-servers")]
    out: PathBuf,
    /// Port of perezvon's /metrics.
    #[arg(long, default_value_t = 19271)]
    metrics_port: u16,
    /// A diagnosis, not the product: once perezvon has created its schema, add an index on
    /// `calls (resolved_by_linkedid)`, which the notifications observer's per-verdict
    /// `misses_resolved_by` query otherwise answers with a sequential scan of `calls`.
    #[arg(long)]
    index_resolved_by: bool,
    /// perezvon's [log] level.
    #[arg(long, default_value = "info")]
    log_level: String,
}

fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime+stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields after the comm start at field 3 (state): utime is field 14, stime 15.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn ppid(pid: u32) -> Option<u32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// VmRSS and VmHWM in KiB.
fn memory(pid: u32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let get = |k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((get("VmRSS:")?, get("VmHWM:")?))
}

/// The postmaster and its children (backends, checkpointer, WAL writer...).
fn pg_cpu_ticks(postmaster: u32) -> u64 {
    let mut total = cpu_ticks(postmaster).unwrap_or(0);
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if ppid(pid) == Some(postmaster) {
            total += cpu_ticks(pid).unwrap_or(0);
        }
    }
    total
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    let i = body.find("\r\n\r\n")?;
    let (head, rest) = body.split_at(i + 4);
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        // De-chunk.
        let mut out = String::new();
        let mut r = rest;
        while let Some(j) = r.find("\r\n") {
            let n = usize::from_str_radix(r[..j].trim(), 16).ok()?;
            if n == 0 {
                break;
            }
            out.push_str(r.get(j + 2..j + 2 + n)?);
            r = r.get(j + 2 + n + 2..)?;
        }
        return Some(out);
    }
    Some(rest.to_string())
}

/// Sum of every sample of `name` (all label sets), e.g. a per-server counter.
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.starts_with(name)
                && l[name.len()..]
                    .chars()
                    .next()
                    .is_some_and(|c| c == '{' || c == ' ')
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn metric_max(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.starts_with(name)
                && l[name.len()..]
                    .chars()
                    .next()
                    .is_some_and(|c| c == '{' || c == ' ')
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, f64::max)
}

/// (upper bound, cumulative count) of a histogram.
fn buckets(text: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    let mut v: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (le, tail) = rest.split_once('"')?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, tail.rsplit(' ').next()?.parse().ok()?))
        })
        .collect();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    v
}

/// The upper bound of the bucket holding quantile `q`.
fn quantile(b: &[(f64, f64)], q: f64) -> f64 {
    let total = b.last().map_or(0.0, |x| x.1);
    if total == 0.0 {
        return f64::NAN;
    }
    b.iter()
        .find(|(_, n)| *n >= q * total)
        .map_or(f64::INFINITY, |x| x.0)
}

/// Differences of two scrapes' buckets (a window of the run).
fn bucket_diff(later: &[(f64, f64)], earlier: &[(f64, f64)]) -> Vec<(f64, f64)> {
    later
        .iter()
        .map(|(le, n)| {
            let e = earlier.iter().find(|(l, _)| l == le).map_or(0.0, |x| x.1);
            (*le, n - e)
        })
        .collect()
}

fn psql(pg: &pg::TestPg, db: &str, sql: &str) -> String {
    let bin = pg::pg_bin_dir()
        .map(|d| d.join("psql"))
        .unwrap_or_else(|| PathBuf::from("psql"));
    let out = Command::new(bin)
        .arg("-h")
        .arg(&pg.socket_dir)
        .arg("-p")
        .arg(pg.port.to_string())
        .args([
            "-U", "perezvon", "-d", db, "-X", "-q", "-t", "-A", "-c", sql,
        ])
        .output()
        .expect("run psql");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn config_text(ports: &[u16], url: &str, metrics_port: u16, log_level: &str) -> String {
    let mut s = String::new();
    for (i, p) in ports.iter().enumerate() {
        s.push_str(&format!(
            "[[asterisk]]\nname = \"pbx{:03}\"\nhost = \"127.0.0.1\"\nport = {p}\n\
             username = \"perezvon\"\nsecret = \"bench\"\n\n",
            i + 1
        ));
    }
    s.push_str(&format!(
        r#"[pbx]
country_code = "7"
inbound_contexts = ["from-trunk"]
trunk_channels = ["Local/*@from-trunk-*;2"]
agent_channels = ["Local/2??@agent-sim-*", "Local/2??@agent-phone-*"]
external_channels = ["Local/*@external-sim-*", "Local/*@customer-sim-*"]

[calls]
min_talk = "6s"
min_wait = "3s"

[callback]
marker_variable = "CALLBACK_ID"

[storage]
url = {url:?}

[metrics]
enabled = true
listen = "127.0.0.1:{metrics_port}"

[log]
level = {log_level:?}
"#
    ));
    s
}

#[derive(Clone, Default)]
struct Sample {
    t: f64,
    cpu: f64,
    rss_kib: u64,
    hwm_kib: u64,
    farm_cpu: f64,
    pg_cpu: f64,
    events: f64,
    verdicts: f64,
    queued: f64,
}

fn kill(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status();
}

fn wait_file(p: &Path, secs: u64) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if p.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = Args::parse();
    std::fs::create_dir_all(&a.out)?;
    let out = std::fs::canonicalize(&a.out)?;
    for p in [&a.perezvon, &a.farm] {
        if !p.exists() {
            return Err(format!(
                "{} missing: cargo build --release --examples --bins",
                p.display()
            )
            .into());
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!("bench: load average at start {}", load.trim());

    // 1. PostgreSQL.
    let pg = pg::server().ok_or("no PostgreSQL (see above)")?;
    // Checkpoints every 256 MB of WAL rather than 1 GB: the machine's disk is shared.
    pg.psql("ALTER SYSTEM SET max_wal_size = '256MB'");
    pg.psql("SELECT pg_reload_conf()");
    let db = format!("bench{}", std::process::id());
    pg.psql(&format!("CREATE DATABASE {db}"));
    let url = pg.url(&db);
    let postmaster: u32 = std::fs::read_to_string(
        pg.socket_dir
            .parent()
            .map(|r| r.join("data/postmaster.pid"))
            .unwrap_or_default(),
    )?
    .lines()
    .next()
    .and_then(|l| l.trim().parse().ok())
    .ok_or("no postmaster.pid")?;
    eprintln!(
        "bench: PostgreSQL {} (postmaster {postmaster}), fsync={}",
        url,
        pg.psql("SHOW fsync")
    );

    // 2. The farm.
    let ports_file = out.join("ports");
    let stats_file = out.join("farm-per-server.txt");
    let _ = std::fs::remove_file(&ports_file);
    let farm_cmd = format!(
        "{} --servers {} --rate {} --secs {} --time-scale {} --threads {} --ports-file {} --stats-file {}",
        a.farm.display(),
        a.servers,
        a.rate,
        a.secs,
        a.time_scale,
        a.farm_threads,
        ports_file.display(),
        stats_file.display()
    );
    eprintln!("bench: {farm_cmd}");
    let mut farm = Command::new(&a.farm)
        .args(["--servers", &a.servers.to_string()])
        .args(["--rate", &a.rate.to_string()])
        .args(["--secs", &a.secs.to_string()])
        .args(["--time-scale", &a.time_scale.to_string()])
        .args(["--threads", &a.farm_threads.to_string()])
        .arg("--ports-file")
        .arg(&ports_file)
        .arg("--stats-file")
        .arg(&stats_file)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(out.join("farm.log"))?)
        .spawn()?;
    let farm_pid = farm.id();
    let farm_done: Arc<Mutex<Option<(String, Instant)>>> = Arc::new(Mutex::new(None));
    {
        let stdout = farm.stdout.take().ok_or("farm stdout")?;
        let done = farm_done.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("FARM_DONE") {
                    *done.lock().unwrap() = Some((line, Instant::now()));
                }
            }
        });
    }
    if !wait_file(&ports_file, 60) {
        kill(farm_pid, "KILL");
        return Err("the farm wrote no ports".into());
    }
    let ports: Vec<u16> = std::fs::read_to_string(&ports_file)?
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();

    // 3. perezvon.
    let config = out.join("perezvon.toml");
    std::fs::write(
        &config,
        config_text(&ports, &url, a.metrics_port, &a.log_level),
    )?;
    // It holds the (fake) secrets: readable by its owner only, as check-config wants.
    std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let run_cmd = format!("{} run --config {}", a.perezvon.display(), config.display());
    eprintln!("bench: {run_cmd}");
    let t0 = Instant::now();
    let mut daemon: Child = Command::new(&a.perezvon)
        .arg("run")
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(out.join("perezvon.log"))?)
        .spawn()?;
    let pid = daemon.id();
    let tck = clk_tck();
    if a.index_resolved_by {
        let end = Instant::now() + Duration::from_secs(60);
        while Instant::now() < end
            && psql(pg, &db, "SELECT to_regclass('calls') IS NOT NULL") != "t"
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        psql(
            pg,
            &db,
            "CREATE INDEX IF NOT EXISTS bench_calls_resolved_by_linkedid ON calls (resolved_by_linkedid)",
        );
        eprintln!("bench: added index calls (resolved_by_linkedid) (--index-resolved-by)");
    }

    let mut samples: Vec<Sample> = Vec::new();
    let mut first_scrape: Option<String> = None;
    let mut steady_scrape: Option<(f64, String)> = None;
    let mut last_scrape = String::new();
    let mut done_at: Option<(String, f64)> = None;
    let mut expected: Option<u64> = None;
    let mut last_growth = (0u64, Instant::now());
    let mut stored = 0u64;
    let mut exited = None;
    let base = (
        cpu_ticks(pid).unwrap_or(0),
        cpu_ticks(farm_pid).unwrap_or(0),
        pg_cpu_ticks(postmaster),
    );
    let mut prev = (Instant::now(), base.0, base.1, base.2);
    loop {
        std::thread::sleep(Duration::from_secs(1));
        if let Ok(Some(st)) = daemon.try_wait() {
            exited = Some(st);
            break;
        }
        let now = Instant::now();
        let (c, f, p) = (
            cpu_ticks(pid).unwrap_or(prev.1),
            cpu_ticks(farm_pid).unwrap_or(prev.2),
            pg_cpu_ticks(postmaster),
        );
        let dt = now.duration_since(prev.0).as_secs_f64();
        let (rss, hwm) = memory(pid).unwrap_or((0, 0));
        let text = http_get(a.metrics_port, "/metrics").unwrap_or_default();
        let s = Sample {
            t: t0.elapsed().as_secs_f64(),
            cpu: (c - prev.1) as f64 / tck / dt,
            rss_kib: rss,
            hwm_kib: hwm,
            farm_cpu: (f - prev.2) as f64 / tck / dt,
            pg_cpu: p.saturating_sub(prev.3) as f64 / tck / dt,
            events: metric_sum(&text, "perezvon_ami_events_received_total"),
            verdicts: metric_sum(&text, "perezvon_verdict_latency_seconds_count"),
            queued: metric_sum(&text, "perezvon_ami_queued_events"),
        };
        prev = (now, c, f, p);
        if !text.is_empty() {
            if first_scrape.is_none() && s.events > 0.0 {
                first_scrape = Some(text.clone());
            }
            // The window's start: the farm's first calls have ended (steady state).
            if steady_scrape.is_none() && s.t >= 35.0_f64.min(a.secs / 2.0) {
                steady_scrape = Some((s.t, text.clone()));
            }
            last_scrape = text;
        }
        let n = samples.len();
        if n.is_multiple_of(5) {
            eprintln!(
                "bench: {:>6.1} s cpu {:>5.1} %  rss {:>6.1} MB  farm {:>5.1} %  pg {:>5.1} %  events {:.0}  verdicts {:.0}  queued {:.0}",
                s.t,
                s.cpu * 100.0,
                s.rss_kib as f64 / 1024.0,
                s.farm_cpu * 100.0,
                s.pg_cpu * 100.0,
                s.events,
                s.verdicts,
                s.queued
            );
        }
        samples.push(s);
        if done_at.is_none() {
            if let Some((line, _)) = farm_done.lock().unwrap().clone() {
                eprintln!("bench: {line}");
                expected = line
                    .split_whitespace()
                    .find_map(|kv| kv.strip_prefix("calls="))
                    .and_then(|v| v.parse().ok());
                done_at = Some((line, t0.elapsed().as_secs_f64()));
                last_growth = (0, Instant::now());
            }
        }
        if done_at.is_some() {
            stored = psql(pg, &db, "SELECT count(*) FROM calls")
                .parse()
                .unwrap_or(0);
            if stored != last_growth.0 {
                last_growth = (stored, Instant::now());
            }
            let reached = expected.is_some_and(|e| stored >= e);
            if reached || last_growth.1.elapsed() > Duration::from_secs_f64(a.settle) {
                // One more second so the metrics follow the last commit.
                std::thread::sleep(Duration::from_secs(1));
                if let Some(t) = http_get(a.metrics_port, "/metrics") {
                    last_scrape = t;
                }
                break;
            }
        }
    }
    let end_t = t0.elapsed().as_secs_f64();
    if done_at.is_none() {
        stored = psql(pg, &db, "SELECT count(*) FROM calls")
            .parse()
            .unwrap_or(0);
    }

    // 4. The end.
    let by_server = psql(
        pg,
        &db,
        "SELECT server, count(*) FROM calls GROUP BY server ORDER BY server",
    );
    let by_status = psql(
        pg,
        &db,
        "SELECT direction || '/' || status, count(*) FROM calls GROUP BY 1 ORDER BY 1",
    );
    let commits: f64 = psql(
        pg,
        &db,
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
    )
    .parse()
    .unwrap_or(0.0);
    let mut stop_secs = None;
    if exited.is_none() {
        let t = Instant::now();
        kill(pid, "TERM");
        let end = Instant::now() + Duration::from_secs(30);
        while Instant::now() < end {
            if let Ok(Some(st)) = daemon.try_wait() {
                exited = Some(st);
                stop_secs = Some(t.elapsed().as_secs_f64());
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if exited.is_none() {
            kill(pid, "KILL");
            let _ = daemon.wait();
        }
    }
    kill(farm_pid, "TERM");
    let _ = farm.wait();

    // Per-server check: the farm's calls against the stored verdicts.
    let farm_per: BTreeMap<usize, (u64, u64)> = std::fs::read_to_string(&stats_file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace().map(|x| x.parse::<u64>().ok());
            Some((f.next()?? as usize, (f.next()??, f.next()??)))
        })
        .collect();
    let stored_per: BTreeMap<String, u64> = by_server
        .lines()
        .filter_map(|l| {
            let (s, n) = l.split_once('|')?;
            Some((s.to_string(), n.parse().ok()?))
        })
        .collect();
    let mut short = Vec::new();
    for (i, (_, calls)) in &farm_per {
        let name = format!("pbx{:03}", i + 1);
        let got = stored_per.get(&name).copied().unwrap_or(0);
        if got != *calls {
            short.push(format!("{name}: farm {calls}, stored {got}"));
        }
    }

    let mut csv =
        String::from("t,cpu_share,rss_kib,hwm_kib,farm_cpu,pg_cpu,events,verdicts,queued\n");
    for s in &samples {
        csv.push_str(&format!(
            "{:.1},{:.3},{},{},{:.3},{:.3},{},{},{}\n",
            s.t, s.cpu, s.rss_kib, s.hwm_kib, s.farm_cpu, s.pg_cpu, s.events, s.verdicts, s.queued
        ));
    }
    std::fs::write(out.join("samples.csv"), csv)?;

    let farm_line = done_at.as_ref().map(|d| d.0.clone()).unwrap_or_default();
    let farm_events: f64 = farm_line
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("events="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    // The steady window: from the steady scrape to the farm's end of starts.
    let win_end = a.secs + 3.0;
    let in_win: Vec<&Sample> = samples
        .iter()
        .filter(|s| steady_scrape.as_ref().is_some_and(|(t, _)| s.t >= *t) && s.t <= win_end)
        .collect();
    let mean = |f: &dyn Fn(&Sample) -> f64, v: &[&Sample]| {
        if v.is_empty() {
            f64::NAN
        } else {
            v.iter().map(|s| f(s)).sum::<f64>() / v.len() as f64
        }
    };
    let win_rate = match (in_win.first(), in_win.last()) {
        (Some(a), Some(b)) if b.t > a.t => (b.events - a.events) / (b.t - a.t),
        _ => f64::NAN,
    };
    let win_verdicts = match (in_win.first(), in_win.last()) {
        (Some(a), Some(b)) if b.t > a.t => (b.verdicts - a.verdicts) / (b.t - a.t),
        _ => f64::NAN,
    };
    let peak10 = samples
        .windows(11)
        .map(|w| (w[10].events - w[0].events) / (w[10].t - w[0].t))
        .fold(0.0, f64::max);
    let all_cpu = mean(&|s| s.cpu, &samples.iter().collect::<Vec<_>>());
    let max_cpu = samples.iter().map(|s| s.cpu).fold(0.0, f64::max);
    let max_rss = samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    let hwm = samples.iter().map(|s| s.hwm_kib).max().unwrap_or(0);
    let hist = buckets(&last_scrape, "perezvon_verdict_latency_seconds");
    let win_hist = steady_scrape
        .as_ref()
        .map(|(_, t)| bucket_diff(&hist, &buckets(t, "perezvon_verdict_latency_seconds")))
        .unwrap_or_default();
    // Every login's FullyBooted is an event too.
    let logins: f64 = farm_line
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("logins="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let events_recv = metric_sum(&last_scrape, "perezvon_ami_events_received_total") - logins;
    let reconnects = metric_sum(&last_scrape, "perezvon_ami_reconnects_total");
    let decode = metric_sum(&last_scrape, "perezvon_ami_decode_problems_total");
    let links_up = metric_sum(&last_scrape, "perezvon_ami_link_up");
    let max_lag = metric_max(&last_scrape, "perezvon_ami_event_lag_seconds");
    let held = metric_sum(&last_scrape, "perezvon_held_verdicts");
    let log = std::fs::read_to_string(out.join("perezvon.log")).unwrap_or_default();
    let warns = log.lines().filter(|l| l.contains("WARN")).count();
    let errors = log.lines().filter(|l| l.contains("ERROR")).count();
    let panics = log.lines().filter(|l| l.contains("panicked")).count();
    // The disk is shared: a full one makes PostgreSQL refuse writes (perezvon holds them).
    let disk_full = log
        .lines()
        .filter(|l| l.contains("No space left on device"))
        .count();
    let df = Command::new("df")
        .args(["-h", "--output=avail"])
        .arg(&pg.socket_dir)
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .last()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_default();
    let load_end = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let uptime = Command::new("uptime")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let expected = expected.unwrap_or(0);
    let mut sum = String::new();
    let w = &mut sum;
    use std::fmt::Write as _;
    let _ = writeln!(
        w,
        "servers {}  rate {} events/s/server (target {} events/s)  secs {}  time-scale {}",
        a.servers,
        a.rate,
        a.rate * a.servers as f64,
        a.secs,
        a.time_scale
    );
    let _ = writeln!(w, "farm:     {farm_cmd}");
    let _ = writeln!(w, "perezvon: {run_cmd}");
    let _ = writeln!(w, "farm end: {farm_line}");
    let _ = writeln!(
        w,
        "load:     start {}  end {}  ({uptime})",
        load.trim(),
        load_end.trim()
    );
    let _ = writeln!(
        w,
        "events:   farm sent {farm_events:.0}, perezvon received {events_recv:.0} ({}, FullyBooted not counted); \
         steady window {:.0}-{:.0} s: {win_rate:.0} events/s, {win_verdicts:.0} verdicts/s; best 10 s {peak10:.0} events/s",
        if (events_recv - farm_events).abs() < 0.5 { "all".to_string() } else { format!("{:+.0}", events_recv - farm_events) },
        in_win.first().map_or(f64::NAN, |s| s.t),
        in_win.last().map_or(f64::NAN, |s| s.t),
    );
    let _ = writeln!(
        w,
        "cpu:      perezvon {:.1} % of one core over the run (steady window {:.1} %, max 1 s {:.1} %); farm {:.1} %, PostgreSQL {:.1} % (steady window)",
        all_cpu * 100.0,
        mean(&|s| s.cpu, &in_win) * 100.0,
        max_cpu * 100.0,
        mean(&|s| s.farm_cpu, &in_win) * 100.0,
        mean(&|s| s.pg_cpu, &in_win) * 100.0
    );
    let _ = writeln!(
        w,
        "memory:   VmRSS max {:.1} MB, VmHWM {:.1} MB",
        max_rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    let _ = writeln!(
        w,
        "latency:  hangup -> verdict committed (bucket upper bounds): whole run p50 <= {} s, p99 <= {} s over {:.0} verdicts; steady window p50 <= {} s, p99 <= {} s",
        quantile(&hist, 0.5),
        quantile(&hist, 0.99),
        hist.last().map_or(0.0, |x| x.1),
        quantile(&win_hist, 0.5),
        quantile(&win_hist, 0.99),
    );
    let _ = writeln!(
        w,
        "buckets:  {}",
        hist.iter()
            .map(|(le, n)| format!("{le}:{n:.0}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let _ = writeln!(
        w,
        "verdicts: farm ended {expected} calls, PostgreSQL has {stored} ({}) {:.1} s after the farm's last call; servers short: {}",
        if done_at.is_none() {
            "the farm had not finished: no check".to_string()
        } else if stored == expected { "none lost".to_string() } else { format!("{:+}", stored as i64 - expected as i64) },
        done_at.as_ref().map_or(f64::NAN, |d| end_t - d.1),
        if short.is_empty() { "none".to_string() } else { format!("{} ({})", short.len(), short.iter().take(5).cloned().collect::<Vec<_>>().join("; ")) }
    );
    let _ = writeln!(
        w,
        "kinds:    {}; PostgreSQL transactions committed in the database {commits:.0} ({:.2} per verdict)",
        by_status.replace('\n', ", "),
        commits / stored.max(1) as f64
    );
    let _ = writeln!(
        w,
        "health:   links up at end {links_up:.0}/{}, reconnects {reconnects:.0}, decode problems {decode:.0}, max event lag {max_lag:.1} s, held verdicts {held:.0}; log: {warns} WARN, {errors} ERROR, {panics} panics, {disk_full} lines with a full disk (free now {df}); exit {}",
        a.servers,
        match (exited, stop_secs) {
            (Some(st), Some(s)) => format!("{st} {s:.1} s after SIGTERM"),
            (Some(st), None) => format!("{st} BEFORE the end"),
            _ => "none (killed)".to_string(),
        }
    );
    print!("{sum}");
    std::fs::write(out.join("summary.txt"), &sum)?;
    Ok(())
}
