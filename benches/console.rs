//! The web console's hot paths: checking a session cookie (every request), the Missed calls
//! query over a month of a busy centre on disk, and rendering the To call back page and the
//! live part of the Now page (sent to every viewer on each change).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use jiff::{tz::TimeZone, SignedDuration, Timestamp};
use perezvon::callback::planner::{Task, TaskState};
use perezvon::calls::record::{LostAt, Status};
use perezvon::config::{WebRole, WebUser};
use perezvon::console::auth::{Key, Session};
use perezvon::console::i18n::Lang;
use perezvon::console::pages::{self, Ctx, OpenTask};
use perezvon::console::NowData;
use perezvon::store::console::MissedFilter;
use perezvon::store::tasks::TaskRow;
use perezvon::store::Store;

#[path = "../tests/support/mod.rs"]
mod support;

const CALLS: usize = 100_000;

fn bench(c: &mut Criterion) {
    // A session among 20 users.
    let key = Key::random().unwrap();
    let users: Vec<WebUser> = (0..20)
        .map(|i| WebUser {
            name: format!("user{i}"),
            password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA{i}"),
            role: WebRole::Supervisor,
        })
        .collect();
    let now = Timestamp::now().as_second();
    let cookie = Session::new("user19", now, Duration::from_secs(3600))
        .unwrap()
        .encode(&key, &users[19]);
    c.bench_function("console_session_check", |b| {
        b.iter(|| Session::decode(&cookie, &key, &users, now).is_some())
    });

    // A month: 100 000 inbound calls, 15 % missed, on disk.
    let dir = tempfile::tempdir().unwrap();
    let st = Store::open(&dir.path().join("bench.db")).unwrap();
    let mut rng = fastrand::Rng::with_seed(7);
    let start = Timestamp::from_second(1_793_000_000).unwrap();
    st.begin_batch().unwrap();
    for i in 0..CALLS {
        let t = start + SignedDuration::from_secs((i as i64) * 26);
        let missed = rng.u32(0..100) < 15;
        let n = format!("7916{:07}", rng.u32(0..10_000_000));
        st.insert_call(&perezvon::calls::record::CallRecord {
            caller: Some(format!("+{n}")),
            caller_normalized: Some(n),
            status: if missed {
                Status::Missed
            } else {
                Status::Answered
            },
            missed,
            lost_at: missed.then(|| LostAt::ALL[rng.usize(0..7)]),
            ..support::inbound_miss(&format!("{i}"), t, rng.f64() * 90.0)
        })
        .unwrap();
    }
    st.commit_batch().unwrap();
    let end = start + SignedDuration::from_secs(CALLS as i64 * 26);
    let week = MissedFilter {
        from: end - SignedDuration::from_hours(24 * 7),
        to: end,
        limit: 500,
        ..MissedFilter::default()
    };
    c.bench_function("console_missed_500_of_a_week_in_100k_calls", |b| {
        b.iter(|| st.console_missed(&week).unwrap().0.len())
    });
    let narrow = MissedFilter {
        from: start,
        to: end,
        lost_at: Some(LostAt::Voicemail),
        did: Some("74951110001".into()),
        resolved: Some(false),
        limit: 500,
        ..MissedFilter::default()
    };
    c.bench_function("console_missed_filtered_month_100k_calls", |b| {
        b.iter(|| st.console_missed(&narrow).unwrap().0.len())
    });

    // The To call back page with 1 000 open tasks.
    let tz = TimeZone::get("Europe/Moscow").unwrap_or(TimeZone::UTC);
    let ctx = Ctx {
        lang: Lang::Ru,
        user: "olga".into(),
        role: WebRole::Supervisor,
        csrf: "token".into(),
        tz: tz.clone(),
        here: "/callbacks".into(),
    };
    let open: Vec<OpenTask> = (0..1000)
        .map(|i| OpenTask {
            row: TaskRow {
                task: Task {
                    id: i,
                    number: format!("7916{i:07}"),
                    state: TaskState::Pending,
                    server: "pbx".into(),
                    missed_count: 1,
                    attempts: 1,
                    attempt_budget: 3,
                    lost_at: Some(LostAt::Queue),
                    first_missed_at: start,
                    last_missed_at: start,
                    next_attempt_at: start,
                    give_up_at: end,
                    last_attempt_at: None,
                    last_outcome: None,
                    use_fallback: false,
                    routing: Default::default(),
                },
                closed_at: None,
                close_reason: None,
                disposition: None,
                disposition_at: None,
                disposition_by: None,
            },
            next_possible: Some(start),
        })
        .collect();
    c.bench_function("console_callbacks_page_1000_tasks", |b| {
        b.iter(|| pages::callbacks(&ctx, &open, &[], None).len())
    });

    // The live part of the Now page: 10 latest misses, the counters.
    let (recent, _) = st
        .console_missed(&MissedFilter { limit: 10, ..week })
        .unwrap();
    let data = NowData {
        recent,
        ..NowData::default()
    };
    c.bench_function("console_now_fragment", |b| {
        b.iter(|| pages::live_fragment(&data, Lang::En, &tz).len())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
