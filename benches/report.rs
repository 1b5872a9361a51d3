//! The report over a year of a busy call centre, from SQLite: 5 000 000 inbound calls (about
//! 13 700 a day, heavier in working hours) in a database file built once and cached under
//! `target/bench-data/` (the build takes a few minutes; delete the file to rebuild it). The
//! timed path is what `perezvon report --from .. --to .. --format json` runs: `Report::load`
//! (rollup, breakdowns, previous period, callback counts, lists) and the JSON. Also the
//! in-memory aggregation over a month (100 000 calls) and the HTML render, as before.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use jiff::{tz::TimeZone, SignedDuration, Timestamp};
use perezvon::calls::record::{CallRecord, LostAt, ResolvedBy, Status};
use perezvon::report::{html, Report, Settings};
use perezvon::store::report::CallbackCounts;
use perezvon::store::Store;

#[path = "../tests/support/mod.rs"]
mod support;

const BIG: usize = 5_000_000;
/// 2025-12-01T00:00:00+03:00: the year's first second in Moscow.
const YEAR_START: i64 = 1_764_536_400;

fn month(n: usize) -> Vec<CallRecord> {
    let mut rng = fastrand::Rng::with_seed(1);
    let start = Timestamp::from_second(1_793_000_000).unwrap_or(Timestamp::UNIX_EPOCH);
    (0..n)
        .map(|i| {
            let t = start + SignedDuration::from_secs((i as i64) * 26);
            call(&mut rng, i, t)
        })
        .collect()
}

/// One call of a busy centre: 8 queues, 60 agents, 10 DIDs, 15 % missed, 3 % withheld.
fn call(rng: &mut fastrand::Rng, i: usize, t: Timestamp) -> CallRecord {
    let missed = rng.u32(0..100) < 15;
    let wait = rng.f64() * if missed { 240.0 } else { 60.0 };
    let withheld = rng.u32(0..100) < 3;
    let number = format!("7916{:07}", rng.u32(0..2_000_000));
    CallRecord {
        server: "pbx".into(),
        caller: (!withheld).then(|| format!("+{number}")),
        caller_normalized: (!withheld).then_some(number),
        callee: Some(format!("74951110{:03}", rng.u32(0..10))),
        callee_normalized: None,
        status: if missed {
            Status::Missed
        } else {
            Status::Answered
        },
        missed,
        talk_secs: if missed { 0.0 } else { rng.f64() * 400.0 },
        agent: Some(format!("{}", 200 + rng.u32(0..60))),
        queue: (rng.u32(0..10) < 8).then(|| format!("q{}", rng.u32(0..8))),
        lost_at: missed.then(|| LostAt::ALL[rng.usize(0..7)]),
        hangup_by: Some(if rng.bool() { "caller" } else { "agent" }.into()),
        resolved_by: (missed && rng.bool()).then_some(ResolvedBy::Callback),
        resolved_at: Some(t + SignedDuration::from_secs(rng.i64(60..90_000))),
        ..support::inbound_miss(&format!("{i}"), t, wait)
    }
}

/// The cached year database, built on first use.
fn year_db() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    let dir = target.join("bench-data");
    let path = dir.join(format!("report-{BIG}-v3.db"));
    if path.exists() {
        return path;
    }
    std::fs::create_dir_all(&dir).expect("create target/bench-data");
    let partial = path.with_extension("partial");
    let _ = std::fs::remove_file(&partial);
    let started = Instant::now();
    let store = Store::open(&partial).expect("create the bench database");
    let mut rng = fastrand::Rng::with_seed(5);
    // Calls spread over the year, denser in the working day: a call every 6.3 s on average.
    let mut t = YEAR_START as f64;
    store.begin_batch().expect("begin");
    for i in 0..BIG {
        let hour = ((t as i64 + 3 * 3600) / 3600) % 24;
        let gap = if (8..20).contains(&hour) { 4.0 } else { 16.0 };
        t += rng.f64() * gap;
        let at = Timestamp::from_microsecond((t * 1e6) as i64).unwrap_or(Timestamp::UNIX_EPOCH);
        store.insert_call(&call(&mut rng, i, at)).expect("insert");
        if i % 100_000 == 99_999 {
            store.commit_batch().expect("commit");
            store.begin_batch().expect("begin");
            eprintln!("report bench: {} calls written", i + 1);
        }
    }
    store.commit_batch().expect("commit");
    // What the first report after the upgrade does once: fold every stored call in.
    let fold = Instant::now();
    store.fold_report_rollup().expect("fold");
    eprintln!(
        "report bench: folded {BIG} calls into the rollup in {:.1} s",
        fold.elapsed().as_secs_f64()
    );
    drop(store);
    std::fs::rename(&partial, &path).expect("keep the bench database");
    eprintln!(
        "report bench: built {} in {:.0} s",
        path.display(),
        started.elapsed().as_secs_f64()
    );
    path
}

/// Moscow, weekdays 09:00-13:00 and 14:00-18:00, 20 s service level.
fn settings(tz: &TimeZone) -> Settings {
    let mut s = Settings::plain(tz, "Europe/Moscow");
    s.hours = support::moscow_weekdays(&[], &[]);
    s
}

fn bench(c: &mut Criterion) {
    let tz = TimeZone::get("Europe/Moscow").unwrap_or(TimeZone::UTC);
    let records = month(100_000);
    let (from, now) = (records[0].started_at, records[records.len() - 1].ended_at);
    let counts = CallbackCounts::default();
    c.bench_function("report_build_100k_calls", |b| {
        b.iter(|| Report::build(&records, &counts, &tz, "Europe/Moscow", from, now))
    });
    let report = Report::build(&records, &counts, &tz, "Europe/Moscow", from, now);
    c.bench_function("report_html_render", |b| {
        b.iter(|| html::render(&report, &tz))
    });

    let store = Store::open(&year_db()).expect("open the bench database");
    let s = settings(&tz);
    let year = (
        Timestamp::from_second(YEAR_START).unwrap_or(Timestamp::UNIX_EPOCH),
        Timestamp::from_second(YEAR_START + 365 * 86_400).unwrap_or(Timestamp::UNIX_EPOCH),
    );
    // A period that is not whole hours: the edges are read from the calls.
    let ragged = (
        year.0 + SignedDuration::from_secs(1234),
        year.1 - SignedDuration::from_secs(777),
    );
    let mut g = c.benchmark_group("report_5m_calls");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.bench_function("year_json", |b| {
        b.iter(|| {
            let r = Report::load(&store, &s, year.0, year.1).expect("report");
            serde_json::to_string(&r).expect("json")
        })
    });
    g.bench_function("year_ragged_edges", |b| {
        b.iter(|| Report::load(&store, &s, ragged.0, ragged.1).expect("report"))
    });
    g.bench_function("one_week", |b| {
        let week = (year.1 - SignedDuration::from_hours(7 * 24), year.1);
        b.iter(|| Report::load(&store, &s, week.0, week.1).expect("report"))
    });
    g.finish();
    let r = Report::load(&store, &s, year.0, year.1).expect("report");
    eprintln!(
        "report bench: the year holds {} inbound calls, {} queues, {} agents, {} DIDs",
        r.inbound.total,
        r.by_queue.len(),
        r.by_agent.len(),
        r.by_did.len()
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
