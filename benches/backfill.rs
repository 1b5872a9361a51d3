//! History import: a day of a busy centre's cdr_csv (20 000 inbound calls through a queue, a
//! tenth of them abandoned, ~3 rows each, PJSIP names) read, grouped and judged; then stored.
//!
//! `cargo bench --bench backfill -- --warm-up-time 1 --measurement-time 3`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use jiff::tz::TimeZone;
use perezvon::config::Config;
use perezvon::history::{build, cdr};
use perezvon::store::history::Source;
use perezvon::store::Store;

const CALLS: usize = 20_000;

fn cfg() -> Config {
    Config::from_toml_in(
        r#"
[pbx]
country_code = "7"
inbound_contexts = ["from-pstn"]
trunk_channels = ["PJSIP/provider-*"]
agent_channels = ["PJSIP/2??-*"]
"#,
        "bench",
        None,
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// cdr_csv text: per call, a row per agent rung, the answering one last.
fn day() -> String {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut out = String::new();
    let date = |s: i64| {
        let t =
            jiff::Timestamp::from_second(1_796_170_000 + s).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        t.to_zoned(TimeZone::UTC)
            .strftime("%Y-%m-%d %H:%M:%S")
            .to_string()
    };
    let mut chan = 0u32;
    for i in 0..CALLS {
        let t0 = (i as i64) * 4;
        let caller = format!("+7916{:07}", rng.u32(0..10_000_000));
        chan += 1;
        let trunk = format!("PJSIP/provider-{chan:08x}");
        let uid = format!("1796170000.{i}");
        let abandoned = rng.u32(0..10) == 0;
        let rung = rng.u32(1..3);
        for k in 0..rung {
            chan += 1;
            let last = k + 1 == rung;
            let answered = last && !abandoned;
            let start = t0 + 5 + (k as i64) * 15;
            let end = if answered {
                start + 60 + rng.i64(0..200)
            } else {
                start + 15
            };
            out.push_str(&format!(
                "\"\",\"{caller}\",\"sales\",\"from-queue\",\"\"\"\" <{caller}>\",\"{trunk}\",\"PJSIP/2{:02}-{chan:08x}\",\"Queue\",\"sales,t,,,300\",\"{}\",\"{}\",\"{}\",{},{},\"{}\",\"DOCUMENTATION\",\"{uid}\",\"\"\n",
                rng.u32(0..40),
                date(start),
                date(t0 + 5),
                date(end),
                end - start,
                end - t0 - 5,
                if answered { "ANSWERED" } else { "NO ANSWER" },
            ));
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let cfg = cfg();
    let text = day();
    let (rows, bad) = cdr::read(text.as_bytes(), &TimeZone::UTC, |_| true).unwrap_or_default();
    assert!(bad.is_empty(), "{bad:?}");
    let mut g = c.benchmark_group("backfill");
    g.sample_size(10);
    g.throughput(Throughput::Elements(CALLS as u64));
    g.bench_function("read cdr_csv (a day: 20 000 calls)", |b| {
        b.iter(|| cdr::read(text.as_bytes(), &TimeZone::UTC, |_| true).map(|r| r.0.len()))
    });
    g.bench_function("group and judge (20 000 calls)", |b| {
        b.iter_batched(
            || rows.clone(),
            |rows| build::build("pbx", &cfg, rows, Vec::new()).len(),
            BatchSize::LargeInput,
        )
    });
    let calls = build::build("pbx", &cfg, rows.clone(), Vec::new());
    assert_eq!(calls.len(), CALLS);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut n = 0;
    g.bench_function("store in SQLite on disk (20 000 calls)", |b| {
        b.iter_batched(
            || {
                n += 1;
                Store::open(&dir.path().join(format!("b{n}.db"))).unwrap_or_else(|e| panic!("{e}"))
            },
            |s| {
                s.record_history(
                    &calls,
                    Source::Imported,
                    std::time::Duration::from_secs(7 * 86_400),
                    None,
                )
                .map(|r| r.stored.len())
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
