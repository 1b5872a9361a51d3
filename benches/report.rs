//! Report aggregation and rendering over a month of a busy call centre (100 000 inbound calls).

use criterion::{criterion_group, criterion_main, Criterion};
use jiff::{tz::TimeZone, SignedDuration, Timestamp};
use perezvon::calls::record::{CallRecord, LostAt, ResolvedBy, Status};
use perezvon::report::{html, Report};
use perezvon::store::report::CallbackCounts;

#[path = "../tests/support/mod.rs"]
mod support;

fn month(n: usize) -> Vec<CallRecord> {
    let mut rng = fastrand::Rng::with_seed(1);
    let start = Timestamp::from_second(1_793_000_000).unwrap_or(Timestamp::UNIX_EPOCH);
    (0..n)
        .map(|i| {
            let t = start + SignedDuration::from_secs((i as i64) * 26);
            let missed = rng.u32(0..100) < 15;
            let wait = rng.f64() * 90.0;
            CallRecord {
                server: "pbx".into(),
                caller: Some(format!("+7916{:07}", rng.u32(0..10_000_000))),
                caller_normalized: None,
                callee: None,
                callee_normalized: None,
                status: if missed {
                    Status::Missed
                } else {
                    Status::Answered
                },
                missed,
                lost_at: missed.then(|| LostAt::ALL[rng.usize(0..7)]),
                hangup_by: None,
                resolved_by: (missed && rng.bool()).then_some(ResolvedBy::Callback),
                resolved_at: Some(t + SignedDuration::from_secs(rng.i64(60..90_000))),
                ..support::inbound_miss(&format!("{i}"), t, wait)
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let records = month(100_000);
    let tz = TimeZone::get("Europe/Moscow").unwrap_or(TimeZone::UTC);
    let (from, now) = (records[0].started_at, records[records.len() - 1].ended_at);
    let counts = CallbackCounts::default();
    c.bench_function("report_build_100k_calls", |b| {
        b.iter(|| Report::build(&records, &counts, &tz, "Europe/Moscow", from, now))
    });
    let report = Report::build(&records, &counts, &tz, "Europe/Moscow", from, now);
    c.bench_function("report_html_render", |b| {
        b.iter(|| html::render(&report, &tz))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
