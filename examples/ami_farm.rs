//! A farm of fake Asterisk servers for the many-servers bench (`examples/bench_servers.rs`):
//! N AMI listeners on 127.0.0.1, one per server, each streaming synthetic calls at a set rate.
//!
//! Every listener speaks enough AMI for `perezvon run`: the banner, `Challenge` (MD5) and
//! `Login` (any credentials) answered `Response: Success` plus `FullyBooted`, `Ping` -> `Pong`,
//! `CoreShowChannels` -> an empty list (`EventList: start` ... `CoreShowChannelsComplete`),
//! `Events`, `Logoff`; anything else gets `Response: Error`.
//!
//! The calls are the lab captures (`fixtures/asterisk-22/*.ami`, all but `callback_*`, which
//! answer perezvon's own Originates), pre-rendered once into pieces: literal bytes and slots
//! for the `Timestamp` (the wall clock when the batch is written), the ids (`Uniqueid`,
//! `Linkedid`, `DestUniqueid`, bridge ids, any value equal to one of them), the Local channel
//! counters (`-0000000c;`) and the callers' numbers (the national part of each recorded
//! `caller_normalized`). Each call instance gets fresh ids and numbers and keeps the recorded
//! spacing of its events (`--time-scale` divides it). Calls start at a steady pace computed so
//! that each server sends `--rate` events/s once the first calls end; the templates are used in
//! turn, each server starting at another one. A connection is one tokio task: a timing wheel of
//! `--tick` slots, events of a tick rendered into one buffer, written in batches of up to 256 KiB.
//! When the client reads slower than the schedule, writes wait (TCP back-pressure) and the farm
//! falls behind its schedule instead of dropping anything; the lag is printed.
//!
//! After `--secs` (of the schedule, or of the wall clock when the farm is behind) no call
//! starts; the running ones finish, then the farm prints one line on
//! stdout (`FARM_DONE events=... calls=... ...`) and keeps the sessions open (pings answered)
//! until it is killed or `--linger` has passed. `calls` counts the calls ended, one per
//! distinct Linkedid of each finished instance: each is one verdict for perezvon.
//!
//! ```text
//! cargo run --release --example ami_farm -- --servers 200 --rate 5000 --secs 60 --ports-file /tmp/ports
//! ```

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use perezvon::ami::codec::decode_all;
use perezvon::ami::Kind;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

#[derive(Parser, Clone)]
struct Args {
    /// Number of servers (listeners).
    #[arg(long, default_value_t = 200)]
    servers: usize,
    /// Events per second per server, in the steady state.
    #[arg(long, default_value_t = 5000.0)]
    rate: f64,
    /// Seconds during which calls start (then the running ones finish).
    #[arg(long, default_value_t = 60.0)]
    secs: f64,
    /// First port; 0: each listener takes a free port.
    #[arg(long, default_value_t = 0)]
    base_port: u16,
    /// Writes the ports, one a line, in server order, once every listener is bound.
    #[arg(long)]
    ports_file: Option<PathBuf>,
    /// At the end, writes `<server index> <events> <calls ended>` per server, one a line.
    #[arg(long)]
    stats_file: Option<PathBuf>,
    /// Divides the recorded spacing of events (2: calls last half as long).
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// Scheduler resolution, in milliseconds.
    #[arg(long, default_value_t = 20)]
    tick: u64,
    /// Worker threads of the runtime.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// After the last call ended, keep the sessions this many seconds (0: until killed).
    #[arg(long, default_value_t = 0.0)]
    linger: f64,
    #[arg(long, default_value = "fixtures/asterisk-22")]
    fixtures: PathBuf,
}

// ---------------------------------------------------------------------------------------------
// Templates
// ---------------------------------------------------------------------------------------------

enum Piece {
    Lit(Vec<u8>),
    Ts,
    /// Index into the template's id table.
    Id(u32),
    /// Index into the template's counter table.
    Counter(u32),
    /// Index into the template's caller table.
    Number(u32),
}

struct Event {
    /// Offset from the first event, in ticks.
    at: u64,
    pieces: Vec<Piece>,
}

struct Template {
    name: String,
    events: Vec<Event>,
    /// Per id: true for a bridge id (a UUID), false for a `secs.seq` Uniqueid.
    id_uuid: Vec<bool>,
    counters: u32,
    numbers: u32,
    /// Distinct Linkedids: calls (verdicts) per instance.
    calls: u64,
}

fn is_id_header(name: &[u8]) -> bool {
    let l = name.to_ascii_lowercase();
    l.ends_with(b"uniqueid") || l.ends_with(b"linkedid")
}

/// The national parts (10 digits) of the callers of a capture, from its `.expect.toml`.
fn callers(ami: &Path) -> Vec<String> {
    let expect = ami.with_extension("expect.toml");
    let Ok(text) = std::fs::read_to_string(&expect) else {
        return Vec::new();
    };
    let Ok(v) = text.parse::<toml::Table>() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for c in v
        .get("calls")
        .and_then(|c| c.as_array())
        .into_iter()
        .flatten()
    {
        if let Some(n) = c.get("caller_normalized").and_then(|n| n.as_str()) {
            if n.len() == 11 && n.starts_with('7') && !out.iter().any(|o| o == &n[1..]) {
                out.push(n[1..].to_string());
            }
        }
    }
    out
}

/// Splits a header value into literal text, counters and numbers.
fn value_pieces(
    v: &[u8],
    nums: &[String],
    counters: &mut HashMap<Vec<u8>, u32>,
    out: &mut Vec<Piece>,
) {
    let mut lit = Vec::new();
    let mut i = 0;
    'scan: while i < v.len() {
        // `-0000000c;`: a Local channel counter.
        if v[i] == b'-'
            && i + 9 < v.len()
            && v[i + 9] == b';'
            && v[i + 1..i + 9].iter().all(u8::is_ascii_hexdigit)
        {
            lit.push(b'-');
            out.push(Piece::Lit(std::mem::take(&mut lit)));
            let n = counters.len() as u32;
            let k = *counters.entry(v[i + 1..i + 9].to_vec()).or_insert(n);
            out.push(Piece::Counter(k));
            i += 9;
            continue;
        }
        for (k, n) in nums.iter().enumerate() {
            if v[i..].starts_with(n.as_bytes()) {
                out.push(Piece::Lit(std::mem::take(&mut lit)));
                out.push(Piece::Number(k as u32));
                i += n.len();
                continue 'scan;
            }
        }
        lit.push(v[i]);
        i += 1;
    }
    out.push(Piece::Lit(lit));
}

fn template(path: &Path, tick: f64, time_scale: f64) -> Template {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let nums = callers(path);
    let (msgs, _) = decode_all(&bytes);
    let msgs: Vec<_> = msgs
        .into_iter()
        .filter(|m| m.kind() == Kind::Event && !m.is(b"Event", b"SuccessfulAuth"))
        .filter(|m| m.get(b"Timestamp").is_some())
        .collect();
    // The id table: every value of an id header.
    let mut ids: HashMap<Vec<u8>, u32> = HashMap::new();
    let mut id_uuid = Vec::new();
    let mut linked = std::collections::HashSet::new();
    for m in &msgs {
        for (n, v) in m.headers() {
            if is_id_header(n) && !v.is_empty() && v != b"<unknown>" && !ids.contains_key(v) {
                ids.insert(v.to_vec(), id_uuid.len() as u32);
                id_uuid.push(v.contains(&b'-'));
            }
            if n.eq_ignore_ascii_case(b"Linkedid") && !v.is_empty() {
                linked.insert(v.to_vec());
            }
        }
    }
    let mut counters = HashMap::new();
    let mut t0 = None;
    let mut events = Vec::new();
    for m in &msgs {
        let ts: f64 = m
            .get_str("Timestamp")
            .and_then(|t| t.parse().ok())
            .unwrap_or(0.0);
        let base = *t0.get_or_insert(ts);
        let at = (((ts - base).max(0.0) / time_scale) / tick).round() as u64;
        let mut pieces = Vec::new();
        for (n, v) in m.headers() {
            let mut head = n.to_vec();
            head.extend_from_slice(b": ");
            pieces.push(Piece::Lit(head));
            if n.eq_ignore_ascii_case(b"Timestamp") {
                pieces.push(Piece::Ts);
            } else if let Some(&k) = ids.get(v) {
                pieces.push(Piece::Id(k));
            } else {
                value_pieces(v, &nums, &mut counters, &mut pieces);
            }
            pieces.push(Piece::Lit(b"\r\n".to_vec()));
        }
        pieces.push(Piece::Lit(b"\r\n".to_vec()));
        // Merge adjacent literals.
        let mut merged: Vec<Piece> = Vec::new();
        for p in pieces {
            match (merged.last_mut(), p) {
                (_, Piece::Lit(l)) if l.is_empty() => {}
                (Some(Piece::Lit(a)), Piece::Lit(b)) => a.extend_from_slice(&b),
                (_, p) => merged.push(p),
            }
        }
        events.push(Event { at, pieces: merged });
    }
    Template {
        name: path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        events,
        id_uuid,
        counters: counters.len() as u32,
        numbers: nums.len() as u32,
        calls: linked.len() as u64,
    }
}

fn templates(dir: &Path, tick: f64, time_scale: f64) -> Vec<Template> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "ami"))
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("callback_"))
        })
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| template(p, tick, time_scale))
        .filter(|t| !t.events.is_empty())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Counters
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Totals {
    events: AtomicU64,
    bytes: AtomicU64,
    calls_started: AtomicU64,
    calls_ended: AtomicU64,
    /// Connections whose schedule is over (no call running, none to start).
    finished: AtomicUsize,
    logins: AtomicU64,
    /// Largest lag behind the schedule seen, in ticks.
    max_lag: AtomicU64,
    last_event_ms: AtomicU64,
}

struct Shared {
    args: Args,
    templates: Vec<Template>,
    totals: Totals,
    /// Call instances per tick per server.
    starts_per_tick: f64,
    epoch: u64,
    t0: Instant,
    /// Set once every connection finished.
    done: AtomicBool,
    /// Per server: events sent, calls ended.
    per_server: Vec<(AtomicU64, AtomicU64)>,
}

// ---------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------

struct Inst {
    tpl: u32,
    next: u32,
    /// Tick of its first event.
    base: u64,
    /// First of the ids/counters reserved for it.
    seq0: u64,
    num0: u64,
}

fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut b = [0u8; 20];
    let mut i = b.len();
    loop {
        i -= 1;
        b[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&b[i..]);
}

fn push_hex(out: &mut Vec<u8>, n: u64, width: usize) {
    const H: &[u8; 16] = b"0123456789abcdef";
    for k in (0..width).rev() {
        out.push(H[((n >> (4 * k)) & 15) as usize]);
    }
}

fn render(out: &mut Vec<u8>, t: &Template, ev: &Event, inst: &Inst, epoch: u64, ts: &[u8]) {
    for p in &ev.pieces {
        match p {
            Piece::Lit(l) => out.extend_from_slice(l),
            Piece::Ts => out.extend_from_slice(ts),
            Piece::Id(k) => {
                let seq = inst.seq0 + *k as u64;
                if t.id_uuid[*k as usize] {
                    out.extend_from_slice(b"fa");
                    push_hex(out, seq & 0xff_ffff, 6);
                    out.extend_from_slice(b"-0000-4000-8000-");
                    push_hex(out, seq, 12);
                } else {
                    push_u64(out, epoch);
                    out.push(b'.');
                    push_u64(out, seq);
                }
            }
            Piece::Counter(k) => {
                push_hex(out, inst.seq0 + t.id_uuid.len() as u64 + *k as u64, 8);
            }
            Piece::Number(k) => {
                // 10 national digits: 9 then 9 digits of the instance's number.
                out.push(b'9');
                let n = (inst.num0 + *k as u64) % 1_000_000_000;
                let mut d = [b'0'; 9];
                let mut x = n;
                for i in (0..9).rev() {
                    d[i] = b'0' + (x % 10) as u8;
                    x /= 10;
                }
                out.extend_from_slice(&d);
            }
        }
    }
}

fn now_ts() -> Vec<u8> {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:06}", d.as_secs(), d.subsec_micros()).into_bytes()
}

// ---------------------------------------------------------------------------------------------
// Sessions
// ---------------------------------------------------------------------------------------------

const BATCH: usize = 256 * 1024;

fn encode(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut s = String::new();
    for (k, v) in pairs {
        s.push_str(k);
        s.push_str(": ");
        s.push_str(v);
        s.push_str("\r\n");
    }
    s.push_str("\r\n");
    s.into_bytes()
}

/// Answers every complete action in `buf`; returns the replies and whether a Login was seen.
fn answer(buf: &mut Vec<u8>, out: &mut Vec<u8>, logged_in: &mut bool) -> bool {
    let mut keep = true;
    while let Some(i) = memchr::memmem::find(buf, b"\r\n\r\n") {
        let raw: Vec<u8> = buf.drain(..i + 4).collect();
        let text = String::from_utf8_lossy(&raw);
        let get = |name: &str| {
            text.split("\r\n")
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_default()
        };
        let action = get("Action").to_ascii_lowercase();
        let id = get("ActionID");
        let id = id.as_str();
        match action.as_str() {
            "challenge" => out.extend(encode(&[
                ("Response", "Success"),
                ("ActionID", id),
                ("Challenge", "406985235"),
            ])),
            "login" => {
                out.extend(encode(&[
                    ("Response", "Success"),
                    ("ActionID", id),
                    ("Message", "Authentication accepted"),
                ]));
                out.extend(encode(&[
                    ("Event", "FullyBooted"),
                    ("Privilege", "system,all"),
                    ("Uptime", "3600"),
                    ("LastReload", "3600"),
                    ("Status", "Fully Booted"),
                ]));
                *logged_in = true;
            }
            "ping" => {
                let ts = String::from_utf8(now_ts()).unwrap_or_default();
                out.extend(encode(&[
                    ("Response", "Success"),
                    ("ActionID", id),
                    ("Ping", "Pong"),
                    ("Timestamp", &ts),
                ]));
            }
            "events" => out.extend(encode(&[
                ("Response", "Success"),
                ("ActionID", id),
                ("Events", "On"),
            ])),
            "coreshowchannels" => {
                // The farm keeps no channel table: the daemon connects before the first call.
                out.extend(encode(&[
                    ("Response", "Success"),
                    ("ActionID", id),
                    ("EventList", "start"),
                    ("Message", "Channels will follow"),
                ]));
                out.extend(encode(&[
                    ("Event", "CoreShowChannelsComplete"),
                    ("ActionID", id),
                    ("EventList", "Complete"),
                    ("ListItems", "0"),
                ]));
            }
            "logoff" => {
                out.extend(encode(&[
                    ("Response", "Goodbye"),
                    ("ActionID", id),
                    ("Message", "Thanks for all the fish."),
                ]));
                keep = false;
            }
            _ => out.extend(encode(&[
                ("Response", "Error"),
                ("ActionID", id),
                ("Message", "Invalid/unknown command"),
            ])),
        }
    }
    keep
}

/// Reads what is there without waiting. False: the peer closed.
fn drain_reads(rd: &OwnedReadHalf, buf: &mut Vec<u8>) -> bool {
    let mut tmp = [0u8; 8192];
    loop {
        match rd.try_read(&mut tmp) {
            Ok(0) => return false,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
}

async fn session(shared: Arc<Shared>, index: usize, sock: TcpStream) {
    let _ = sock.set_nodelay(true);
    let (rd, mut wr) = sock.into_split();
    if wr
        .write_all(b"Asterisk Call Manager/11.0.0\r\n")
        .await
        .is_err()
    {
        return;
    }
    let mut inbuf = Vec::new();
    let mut out = Vec::with_capacity(BATCH + 64 * 1024);
    let mut logged_in = false;
    // Login first.
    while !logged_in {
        if rd.readable().await.is_err() || !drain_reads(&rd, &mut inbuf) {
            return;
        }
        let keep = answer(&mut inbuf, &mut out, &mut logged_in);
        if wr.write_all(&out).await.is_err() || !keep {
            return;
        }
        out.clear();
    }
    shared.totals.logins.fetch_add(1, Relaxed);
    if let Err(e) = stream(&shared, index, &rd, &mut wr, &mut inbuf, &mut out).await {
        eprintln!("farm: server {index}: {e}");
    }
}

async fn stream(
    shared: &Shared,
    index: usize,
    rd: &OwnedReadHalf,
    wr: &mut OwnedWriteHalf,
    inbuf: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> std::io::Result<()> {
    let a = &shared.args;
    let tick = Duration::from_millis(a.tick);
    let tpls = &shared.templates;
    let horizon = tpls
        .iter()
        .map(|t| t.events.last().map_or(0, |e| e.at))
        .max()
        .unwrap_or(0);
    let wheel_len = (horizon as usize + 2).next_power_of_two();
    let mut wheel: Vec<Vec<u32>> = vec![Vec::new(); wheel_len];
    let mut insts: Vec<Inst> = Vec::new();
    let mut free: Vec<u32> = Vec::new();
    let end_tick = (a.secs * 1000.0 / a.tick as f64).ceil() as u64;
    let run_for = Duration::from_secs_f64(a.secs);
    let mut start_acc = 0.0f64;
    let mut next_tpl = index % tpls.len();
    let mut active = 0usize;
    let mut seq: u64 = 10_000;
    let mut num_seq: u64 = (index as u64) * 4_000_000;
    let begin = Instant::now();
    let mut tick_no: u64 = 0;
    let mut finished = false;
    let mut ts = now_ts();
    let mut scratch: Vec<u32> = Vec::new();
    loop {
        let now_tick = (begin.elapsed().as_nanos() / tick.as_nanos()) as u64;
        // Render due ticks into the buffer, up to a batch.
        // Calls start while the schedule and the wall clock are both within --secs: a farm
        // held back by a slow reader does not queue more calls than it could start.
        let starting = begin.elapsed() < run_for;
        while !finished && tick_no <= now_tick && out.len() < BATCH {
            if tick_no < end_tick && starting {
                start_acc += shared.starts_per_tick;
                while start_acc >= 1.0 {
                    start_acc -= 1.0;
                    let t = &tpls[next_tpl];
                    let inst = Inst {
                        tpl: next_tpl as u32,
                        next: 0,
                        base: tick_no,
                        seq0: seq,
                        num0: num_seq,
                    };
                    seq += t.id_uuid.len() as u64 + t.counters as u64 + 1;
                    num_seq += t.numbers as u64 + 1;
                    next_tpl = (next_tpl + 1) % tpls.len();
                    let slot = match free.pop() {
                        Some(s) => {
                            insts[s as usize] = inst;
                            s
                        }
                        None => {
                            insts.push(inst);
                            (insts.len() - 1) as u32
                        }
                    };
                    let first = tick_no + t.events[0].at;
                    wheel[(first as usize) & (wheel_len - 1)].push(slot);
                    active += 1;
                    shared.totals.calls_started.fetch_add(t.calls, Relaxed);
                }
            }
            std::mem::swap(
                &mut scratch,
                &mut wheel[(tick_no as usize) & (wheel_len - 1)],
            );
            let mut sent = 0u64;
            for &s in &scratch {
                let inst = &mut insts[s as usize];
                let t = &tpls[inst.tpl as usize];
                while (inst.next as usize) < t.events.len() {
                    let ev = &t.events[inst.next as usize];
                    if inst.base + ev.at > tick_no {
                        break;
                    }
                    render(out, t, ev, inst, shared.epoch, &ts);
                    inst.next += 1;
                    sent += 1;
                }
                if (inst.next as usize) < t.events.len() {
                    let at = inst.base + t.events[inst.next as usize].at;
                    wheel[(at as usize) & (wheel_len - 1)].push(s);
                } else {
                    active -= 1;
                    free.push(s);
                    shared.totals.calls_ended.fetch_add(t.calls, Relaxed);
                    shared.per_server[index].1.fetch_add(t.calls, Relaxed);
                }
            }
            scratch.clear();
            shared.totals.events.fetch_add(sent, Relaxed);
            shared.per_server[index].0.fetch_add(sent, Relaxed);
            tick_no += 1;
            if (tick_no >= end_tick || !starting) && active == 0 {
                finished = true;
                shared.totals.finished.fetch_add(1, Relaxed);
            }
        }
        if !finished {
            let lag = now_tick.saturating_sub(tick_no);
            shared.totals.max_lag.fetch_max(lag, Relaxed);
        }
        // Replies to actions go out with the events.
        if !drain_reads(rd, inbuf) {
            return Ok(());
        }
        if !answer(inbuf, out, &mut true) {
            wr.write_all(out).await?;
            return Ok(());
        }
        if !out.is_empty() {
            shared.totals.bytes.fetch_add(out.len() as u64, Relaxed);
            wr.write_all(out).await?;
            out.clear();
            shared
                .totals
                .last_event_ms
                .fetch_max(shared.t0.elapsed().as_millis() as u64, Relaxed);
            ts = now_ts();
            continue;
        }
        ts = now_ts();
        if finished {
            rd.readable().await?;
            continue;
        }
        // Caught up: wait for the next tick or an action.
        let next = begin + tick * (tick_no as u32);
        tokio::select! {
            _ = tokio::time::sleep_until(next.into()) => {}
            r = rd.readable() => r?,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let tick_secs = args.tick as f64 / 1000.0;
    let tpls = templates(&args.fixtures, tick_secs, args.time_scale);
    assert!(
        !tpls.is_empty(),
        "no templates under {}",
        args.fixtures.display()
    );
    let events_per_round: usize = tpls.iter().map(|t| t.events.len()).sum();
    let calls_per_round: u64 = tpls.iter().map(|t| t.calls).sum();
    let mean_events = events_per_round as f64 / tpls.len() as f64;
    let starts_per_tick = args.rate * tick_secs / mean_events;
    let mean_secs: f64 = tpls
        .iter()
        .map(|t| t.events.last().map_or(0, |e| e.at) as f64 * tick_secs)
        .sum::<f64>()
        / tpls.len() as f64;
    let calls_per_sec = starts_per_tick / tick_secs * calls_per_round as f64 / tpls.len() as f64;
    eprintln!(
        "farm: {} templates ({}), {events_per_round} events and {calls_per_round} calls a round; \
         per server {:.1} instances/s = {calls_per_sec:.1} calls/s, ~{:.0} instances running \
         (mean {mean_secs:.1} s each)",
        tpls.len(),
        tpls.iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(","),
        starts_per_tick / tick_secs,
        starts_per_tick / tick_secs * mean_secs,
    );
    let mut listeners = Vec::new();
    for i in 0..args.servers {
        let port = if args.base_port == 0 {
            0
        } else {
            args.base_port + i as u16
        };
        listeners.push(TcpListener::bind(("127.0.0.1", port)).await?);
    }
    let ports: Vec<u16> = listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<_, _>>()?;
    if let Some(p) = &args.ports_file {
        let tmp = p.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        for port in &ports {
            writeln!(f, "{port}")?;
        }
        drop(f);
        std::fs::rename(&tmp, p)?;
    }
    eprintln!(
        "farm: {} listeners on 127.0.0.1:{}..{}",
        ports.len(),
        ports.first().unwrap_or(&0),
        ports.last().unwrap_or(&0)
    );
    let shared = Arc::new(Shared {
        args: args.clone(),
        templates: tpls,
        totals: Totals::default(),
        starts_per_tick,
        epoch: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs(),
        t0: Instant::now(),
        done: AtomicBool::new(false),
        per_server: (0..args.servers)
            .map(|_| (AtomicU64::new(0), AtomicU64::new(0)))
            .collect(),
    });
    for (i, l) in listeners.into_iter().enumerate() {
        let sh = shared.clone();
        tokio::spawn(async move {
            // One session per listener at a time; a reconnect gets a new schedule.
            loop {
                let Ok((sock, _)) = l.accept().await else {
                    return;
                };
                if sh.done.load(Relaxed) {
                    drop(sock);
                    continue;
                }
                let sh2 = sh.clone();
                tokio::spawn(session(sh2, i, sock));
            }
        });
    }
    // Progress every 5 s; the end once every server finished.
    let t = &shared.totals;
    let mut last = (Instant::now(), 0u64);
    let mut started_at: Option<Instant> = None;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let logins = t.logins.load(Relaxed);
        if started_at.is_none() && logins > 0 {
            started_at = Some(Instant::now());
        }
        let ev = t.events.load(Relaxed);
        if last.0.elapsed() >= Duration::from_secs(5) {
            let secs = last.0.elapsed().as_secs_f64();
            eprintln!(
                "farm: {:>6.1} s  logins {logins}  events {ev}  ({:.0}/s)  calls ended {}  finished {}/{}  max lag {:.2} s",
                shared.t0.elapsed().as_secs_f64(),
                (ev - last.1) as f64 / secs,
                t.calls_ended.load(Relaxed),
                t.finished.load(Relaxed),
                args.servers,
                t.max_lag.load(Relaxed) as f64 * tick_secs,
            );
            last = (Instant::now(), ev);
        }
        if t.finished.load(Relaxed) >= args.servers {
            break;
        }
    }
    shared.done.store(true, Relaxed);
    let streamed = started_at.map_or(0.0, |s| {
        (shared.t0 + Duration::from_millis(t.last_event_ms.load(Relaxed)))
            .saturating_duration_since(s)
            .as_secs_f64()
    });
    let ev = t.events.load(Relaxed);
    println!(
        "FARM_DONE servers={} rate={} secs={} events={ev} calls={} calls_started={} bytes={} logins={} stream_secs={streamed:.1} mean_events_per_sec={:.0} max_lag_secs={:.2}",
        args.servers,
        args.rate,
        args.secs,
        t.calls_ended.load(Relaxed),
        t.calls_started.load(Relaxed),
        t.bytes.load(Relaxed),
        t.logins.load(Relaxed),
        if streamed > 0.0 { ev as f64 / streamed } else { 0.0 },
        t.max_lag.load(Relaxed) as f64 * tick_secs,
    );
    if let Some(p) = &args.stats_file {
        let mut f = std::fs::File::create(p)?;
        for (i, (e, c)) in shared.per_server.iter().enumerate() {
            writeln!(f, "{i} {} {}", e.load(Relaxed), c.load(Relaxed))?;
        }
    }
    let _ = std::io::stdout().flush();
    if args.linger > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(args.linger)).await;
    } else {
        std::future::pending::<()>().await;
    }
    Ok(())
}
