//! `perezvon replay` end to end (codec, tracker, SQLite on disk, JSONL out) on a big capture:
//! peak RSS and events/s, measured with `/usr/bin/time -v` on the real binary, pinned to one core.
//!
//! `cargo bench --bench replay` (`PEREZVON_BENCH_EVENTS=N`, default 1 000 000; `-- quick` for
//! 100 000). The capture is built once under `target/bench-replay/` from the real captures:
//! every call of every fixture again and again, each copy with fresh ids (`Uniqueid`,
//! `Linkedid`, `DestUniqueid`, `BridgeUniqueid`, ...) and its `Timestamp`s shifted so that a new
//! capture starts every 2 s of stream time and the whole stream is in time order (about 10
//! calls live at once, the same callers calling again: resolutions happen). Then, three runs of
//! each, the figures of the best and the range:
//!
//! ```text
//! /usr/bin/time -v taskset -c 0 perezvon replay --config fixtures/asterisk-22/lab.toml \
//!     --db target/bench-replay/replay.db --format jsonl target/bench-replay/capture-1000000.ami \
//!     > target/bench-replay/out.jsonl
//! ```
//!
//! the same without `--db` (the in-memory store), and with the capture on standard input (`-`).
//! `PEREZVON_BENCH_BIN=path` measures another build the same way (an older perezvon, a branch).

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use perezvon::ami::codec::decode_all;
use perezvon::ami::Message;
use perezvon::calls::record::Timestamp;
use perezvon::daemon::ingest::event_time;

const LAB: &str = "fixtures/asterisk-22/lab.toml";

/// The binary measured: this build's, or `PEREZVON_BENCH_BIN`.
fn bin() -> String {
    std::env::var("PEREZVON_BENCH_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_perezvon").to_string())
}
/// A new copy of a capture starts this often (µs of stream time).
const SPACING_US: i64 = 2_000_000;
/// Where the copies start: 2026-01-05 09:00 UTC, a Monday morning.
const BASE_US: i64 = 1_767_603_600_000_000;

/// Every capture's stamped events, with their times.
fn captures() -> Vec<Vec<(i64, Message)>> {
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
                .map(|m| (event_time(&m, Timestamp::UNIX_EPOCH).as_microsecond(), m))
                .collect()
        })
        .collect()
}

fn is_id(name: &[u8]) -> bool {
    let n = name.to_ascii_lowercase();
    n.ends_with(b"niqueid") || n.ends_with(b"inkedid") || n == b"bridgeid"
}

/// Writes the capture (at least `events` events) to `path`; returns the events written.
fn build(path: &Path, events: usize) -> usize {
    let caps = captures();
    // (time, copy, capture, index) of every event, in time order.
    let mut order: Vec<(i64, u32, u16, u32)> = Vec::with_capacity(events + 8192);
    let mut slot = 0u32;
    'fill: loop {
        for (ci, c) in caps.iter().enumerate() {
            let start = c.first().map_or(0, |e| e.0);
            let shift = BASE_US + i64::from(slot) * SPACING_US - start;
            for (i, (t, _)) in c.iter().enumerate() {
                order.push((t + shift, slot, ci as u16, i as u32));
            }
            slot += 1;
            if order.len() >= events {
                break 'fill;
            }
        }
    }
    order.sort_unstable();
    let tmp = path.with_extension("tmp");
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp).expect("create"));
    w.write_all(b"Asterisk Call Manager/11.0.0\r\n").unwrap();
    for &(t, slot, ci, i) in &order {
        let m = &caps[usize::from(ci)][i as usize].1;
        for (name, value) in m.headers() {
            w.write_all(name).unwrap();
            w.write_all(b": ").unwrap();
            if name.eq_ignore_ascii_case(b"Timestamp") {
                write!(w, "{}.{:06}", t / 1_000_000, t % 1_000_000).unwrap();
            } else {
                if is_id(name) && !value.is_empty() && value != b"<unknown>" {
                    write!(w, "{slot}-").unwrap();
                }
                w.write_all(value).unwrap();
            }
            w.write_all(b"\r\n").unwrap();
        }
        w.write_all(b"\r\n").unwrap();
    }
    w.flush().unwrap();
    drop(w);
    std::fs::rename(&tmp, path).unwrap();
    order.len()
}

/// What `/usr/bin/time -v` reported for one run.
#[derive(Debug, Clone, Copy)]
struct Run {
    wall: f64,
    user: f64,
    sys: f64,
    rss_kib: u64,
}

fn field<'a>(report: &'a str, name: &str) -> &'a str {
    report
        .lines()
        .find_map(|l| l.trim().strip_prefix(name))
        .map(|v| v.trim_start_matches(':').trim())
        .unwrap_or_else(|| panic!("no {name:?} in\n{report}"))
}

/// `h:mm:ss` or `m:ss.ss` to seconds.
fn clock(s: &str) -> f64 {
    s.split(':')
        .fold(0.0, |acc, p| acc * 60.0 + p.parse::<f64>().unwrap())
}

/// One run of `perezvon replay ARGS` under `/usr/bin/time -v`, stdout to `out`; `None` (and
/// what it said) when it failed (an older build without `-`, say).
fn run(args: &[&str], stdin: Option<&Path>, out: &Path) -> Option<Run> {
    let mut cmd = Command::new("/usr/bin/time");
    cmd.arg("-v");
    if Path::new("/usr/bin/taskset").exists() {
        cmd.args(["taskset", "-c", "0"]);
    }
    cmd.arg(bin()).arg("replay").args(args);
    cmd.stdout(std::fs::File::create(out).unwrap());
    cmd.stdin(match stdin {
        Some(p) => Stdio::from(std::fs::File::open(p).unwrap()),
        None => Stdio::null(),
    });
    let o = cmd.output().expect("/usr/bin/time");
    let report = String::from_utf8_lossy(&o.stderr);
    if !o.status.success() {
        let last = report
            .lines()
            .find(|l| l.contains("perezvon"))
            .unwrap_or("");
        println!("  failed: {last}");
        return None;
    }
    Some(Run {
        wall: clock(field(
            &report,
            "Elapsed (wall clock) time (h:mm:ss or m:ss)",
        )),
        user: field(&report, "User time (seconds)").parse().unwrap(),
        sys: field(&report, "System time (seconds)").parse().unwrap(),
        rss_kib: field(&report, "Maximum resident set size (kbytes)")
            .parse()
            .unwrap(),
    })
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    let events: usize = std::env::var("PEREZVON_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 100_000 } else { 1_000_000 });
    let rounds = if quick { 1 } else { 3 };
    let dir = PathBuf::from("target/bench-replay");
    std::fs::create_dir_all(&dir).unwrap();
    let capture = dir.join(format!("capture-{events}.ami"));
    let count = dir.join(format!("capture-{events}.events"));
    let n: usize = match std::fs::read_to_string(&count) {
        Ok(s) if capture.exists() => s.trim().parse().unwrap(),
        _ => {
            let n = build(&capture, events);
            std::fs::write(&count, n.to_string()).unwrap();
            n
        }
    };
    let size = std::fs::metadata(&capture).unwrap().len();
    println!("binary: {}", bin());
    println!(
        "capture: {} ({n} events, {:.1} MB)",
        capture.display(),
        size as f64 / 1e6
    );
    let db = dir.join("replay.db");
    let out = dir.join("out.jsonl");
    let cap = capture.to_str().unwrap();
    let dbs = db.to_str().unwrap();
    let variants: [(&str, Vec<&str>, Option<&Path>, bool); 3] = [
        (
            "--db on disk",
            vec!["--config", LAB, "--db", dbs, "--format", "jsonl", cap],
            None,
            true,
        ),
        (
            "in-memory store",
            vec!["--config", LAB, "--format", "jsonl", cap],
            None,
            false,
        ),
        (
            "--db on disk, capture on stdin",
            vec!["--config", LAB, "--db", dbs, "--format", "jsonl", "-"],
            Some(capture.as_path()),
            true,
        ),
    ];
    for (what, args, stdin, fresh_db) in &variants {
        let shown = match stdin {
            Some(p) => format!("{} < {}", args.join(" "), p.display()),
            None => args.join(" "),
        };
        println!(
            "command: /usr/bin/time -v taskset -c 0 perezvon replay {shown} > {}",
            out.display()
        );
        let mut runs = Vec::new();
        for _ in 0..rounds {
            if *fresh_db {
                for ext in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{dbs}{ext}"));
                }
            }
            runs.extend(run(args, *stdin, &out));
        }
        if runs.is_empty() {
            continue;
        }
        let verdicts = std::fs::read_to_string(&out).unwrap().lines().count();
        let best = runs
            .iter()
            .copied()
            .min_by(|a, b| a.wall.total_cmp(&b.wall))
            .unwrap();
        let eps = |r: &Run| n as f64 / r.wall / 1e6;
        let (lo, hi) = runs.iter().fold((f64::MAX, 0f64), |(lo, hi), r| {
            (lo.min(eps(r)), hi.max(eps(r)))
        });
        let rss_max = runs.iter().map(|r| r.rss_kib).max().unwrap();
        println!(
            "  {what}: {:.2} M events/s ({:.2} s wall, {:.2} s user, {:.2} s sys; {} runs {:.2}-{:.2} M/s), \
             peak RSS {:.1} MB (max of runs {:.1} MB), {verdicts} verdicts",
            eps(&best),
            best.wall,
            best.user,
            best.sys,
            runs.len(),
            lo,
            hi,
            best.rss_kib as f64 / 1024.0,
            rss_max as f64 / 1024.0
        );
    }
}
