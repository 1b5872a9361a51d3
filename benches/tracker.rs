//! Codec + tracker throughput, memory per live call, and hangup -> committed verdict latency.
//!
//! `cargo bench --bench tracker` (add `-- quick` for a short run). Prints the three figures of
//! issue 3's benchmark; docs/bench-tracker.md records them.
//!
//! The stream is built from the real captures: N copies of each, every id (`Uniqueid`,
//! `Linkedid`, `DestUniqueid`, `LocalOne/TwoUniqueid`, `BridgeUniqueid`) made unique per copy, the
//! copies interleaved message by message so thousands of calls are live at once.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use perezvon::ami::codec::decode_all;
use perezvon::ami::{AmiCodec, Message};
use perezvon::calls::record::Timestamp;
use perezvon::calls::Tracker;
use perezvon::config::Config;
use perezvon::daemon::ingest::{event_time, Pipeline};
use perezvon::store::Store;
use tokio_util::codec::Decoder;

/// Counts live heap bytes, to measure memory per live call.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        System.realloc(p, l, new)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn lab() -> Config {
    Config::load(std::path::Path::new("fixtures/asterisk-22/lab.toml")).expect("lab.toml")
}

fn captures() -> Vec<Vec<Message>> {
    let mut paths: Vec<_> = std::fs::read_dir("fixtures/asterisk-22")
        .expect("fixtures")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "ami"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let (m, _) = decode_all(&std::fs::read(p).expect("capture"));
            // Events only: banner/login/FullyBooted belong to a session, not to calls.
            m.into_iter()
                .filter(|m| m.event().is_some() && m.get(b"Timestamp").is_some())
                .collect()
        })
        .collect()
}

fn is_id(name: &[u8]) -> bool {
    let n = name.to_ascii_lowercase();
    n.ends_with(b"niqueid") || n.ends_with(b"inkedid") || n == b"bridgeid"
}

/// The message with every id prefixed by `k-`.
fn unique(m: &Message, k: usize) -> Message {
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = m
        .headers()
        .map(|(n, v)| {
            let v = if is_id(n) && !v.is_empty() && v != b"<unknown>" {
                let mut x = format!("{k}-").into_bytes();
                x.extend_from_slice(v);
                x
            } else {
                v.to_vec()
            };
            (n.to_vec(), v)
        })
        .collect();
    Message::from_pairs(&pairs)
}

/// `copies` copies of every capture, interleaved one message at a time, as wire bytes.
fn build_stream(caps: &[Vec<Message>], copies: usize) -> (Vec<u8>, usize) {
    let mut per_copy: Vec<Vec<Message>> = Vec::new();
    for k in 0..copies {
        let mut s = Vec::new();
        for (ci, c) in caps.iter().enumerate() {
            s.extend(c.iter().map(|m| unique(m, k * 100 + ci)));
        }
        per_copy.push(s);
    }
    let mut out = BytesMut::new();
    let mut n = 0;
    let longest = per_copy.iter().map(Vec::len).max().unwrap_or(0);
    for i in 0..longest {
        for s in &per_copy {
            if let Some(m) = s.get(i) {
                m.write_to(&mut out);
                n += 1;
            }
        }
    }
    (out.to_vec(), n)
}

fn throughput(cfg: &Config, stream: &[u8], events: usize, rounds: usize) -> (f64, usize, f64) {
    let mut best = f64::MAX;
    let mut calls = 0;
    let mut peak_per_call = 0.0;
    for round in 0..rounds {
        let mut buf = BytesMut::from(stream);
        let mut codec = AmiCodec::new();
        let mut tracker = Tracker::new("bench", cfg);
        let mut out = Vec::with_capacity(64);
        let now = Timestamp::UNIX_EPOCH;
        let base = LIVE.load(Ordering::Relaxed);
        let mut seen = 0usize;
        let mut peak_live = 0usize;
        let mut peak_bytes = 0isize;
        let mut peak_chans = 0usize;
        let start = Instant::now();
        while let Ok(Some(m)) = codec.decode(&mut buf) {
            tracker.handle(&m, now, &mut out);
            calls += out.len();
            out.clear();
            seen += 1;
            // Sample memory now and then (the first round only: it costs a little).
            if round == 0 && seen.is_multiple_of(4096) && tracker.live_calls() > peak_live {
                peak_live = tracker.live_calls();
                peak_bytes = LIVE.load(Ordering::Relaxed) - base;
                peak_chans = tracker.live_channels();
            }
        }
        let el = start.elapsed().as_secs_f64();
        best = best.min(el);
        if round == 0 && peak_live > 0 {
            peak_per_call = peak_bytes as f64 / peak_live as f64;
            println!(
                "memory: {peak_live} live calls, {peak_chans} live channels at the peak sample, {:.0} KiB of tracker state",
                peak_bytes as f64 / 1024.0
            );
        }
        assert_eq!(seen, events);
    }
    (events as f64 / best, calls / rounds, peak_per_call)
}

/// The daemon's once-a-second snapshot of the customers on a live call (for the dialer), taken
/// when the most calls are live: its cost per snapshot.
fn live_snapshot(cfg: &Config, stream: &[u8]) {
    let mut buf = BytesMut::from(stream);
    let mut codec = AmiCodec::new();
    let mut tracker = Tracker::new("bench", cfg);
    let mut out = Vec::with_capacity(64);
    let mut peak = 0usize;
    let mut best_at = 0usize;
    let mut msgs = Vec::new();
    while let Ok(Some(m)) = codec.decode(&mut buf) {
        msgs.push(m);
    }
    // Find the moment with the most live calls, then replay up to it.
    for (i, m) in msgs.iter().enumerate() {
        tracker.handle(m, Timestamp::UNIX_EPOCH, &mut out);
        out.clear();
        if tracker.live_calls() > peak {
            peak = tracker.live_calls();
            best_at = i;
        }
    }
    let mut tracker = Tracker::new("bench", cfg);
    for m in &msgs[..=best_at.min(msgs.len().saturating_sub(1))] {
        tracker.handle(m, Timestamp::UNIX_EPOCH, &mut out);
        out.clear();
    }
    let rounds = 200;
    let start = Instant::now();
    let mut n = 0;
    for _ in 0..rounds {
        let set: std::collections::HashSet<String> = tracker.live_customers().collect();
        n = set.len();
    }
    let each = start.elapsed().as_secs_f64() / rounds as f64;
    println!(
        "live customers snapshot: {} live calls, {n} distinct numbers: {:.0} µs per snapshot (once a second)",
        tracker.live_calls(),
        each * 1e6
    );
}

fn latency(cfg: &Config, caps: &[Vec<Message>], seconds: f64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("bench.db")).expect("store");
    let mut pipeline = Pipeline::new(cfg, store);
    // Calls per copy of all captures, to pace at 1000 calls/s.
    let calls_per_copy = {
        let mut t = Tracker::new("count", cfg);
        let mut out = Vec::new();
        for c in caps {
            for m in c {
                t.handle(m, Timestamp::UNIX_EPOCH, &mut out);
            }
        }
        out.len()
    };
    let copies = ((1000.0 * seconds) / calls_per_copy as f64).ceil() as usize;
    let mut msgs = Vec::new();
    for k in 0..copies {
        for (ci, c) in caps.iter().enumerate() {
            msgs.extend(c.iter().map(|m| unique(m, 1_000_000 + k * 100 + ci)));
        }
    }
    let per_event = Duration::from_secs_f64(seconds / msgs.len() as f64);
    let mut lat = Vec::new();
    let start = Instant::now();
    for (i, m) in msgs.iter().enumerate() {
        let due = start + per_event * i as u32;
        let now = Instant::now();
        if now < due {
            std::thread::sleep(due - now);
        }
        let t = event_time(m, Timestamp::UNIX_EPOCH);
        let ended = pipeline.feed("bench", m, t).expect("feed");
        if !ended.is_empty() {
            // From when the hangup was due to arrive to its verdict being committed.
            let l = Instant::now().saturating_duration_since(due);
            lat.extend(std::iter::repeat_n(l, ended.len()));
        }
    }
    let wall = start.elapsed().as_secs_f64();
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    println!(
        "latency: {} verdicts committed in {:.1} s ({:.0} calls/s), SQLite on disk (WAL): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        lat.len(),
        wall,
        lat.len() as f64 / wall,
        p(0.5).as_secs_f64() * 1e3,
        p(0.99).as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    let cfg = lab();
    let caps = captures();
    let copies = if quick { 8 } else { 64 };
    let (stream, events) = build_stream(&caps, copies);
    println!(
        "stream: {copies} interleaved copies of all {} captures: {events} events, {:.1} MB",
        caps.len(),
        stream.len() as f64 / 1e6
    );
    let (eps, calls, per_call) = throughput(&cfg, &stream, events, if quick { 1 } else { 3 });
    println!(
        "throughput: codec + tracker, one core: {:.2} M events/s ({calls} calls per pass)",
        eps / 1e6
    );
    println!("memory per live call: {:.0} bytes", per_call);
    live_snapshot(&cfg, &stream);
    latency(&cfg, &caps, if quick { 2.0 } else { 10.0 });
}
