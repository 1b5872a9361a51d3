//! The planner deciding the due set among 100 000 open tasks (goal: < 10 ms).
//!
//! `cargo bench --bench planner`. Three shapes: every task due (the worst case: selection among
//! 100 000 candidates), most tasks waiting for their spacing (the common case), and the opening
//! of the day with the spread quota active; and every task due under a 24/7 schedule.

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use jiff::{SignedDuration, Timestamp};
use perezvon::callback::guard;
use perezvon::callback::hours::Hours;
use perezvon::callback::planner::{due, due_avoiding, due_guarded, Policy, Task, TaskState};
use perezvon::callback::request::{Routing, TaskKind};
use perezvon::calls::record::LostAt;
use perezvon::config::Target;

#[path = "../tests/support/mod.rs"]
mod support;

const N: usize = 100_000;

fn policy() -> Policy {
    Policy {
        lost_at: LostAt::ALL.to_vec(),
        allow: vec![regex::Regex::new("^(?:79\\d{9})$").unwrap()],
        deny: vec![],
        kind_guard: perezvon::number::KindGuard::default(),
        delay: Duration::from_secs(60),
        max_attempts: 3,
        retry_every: Duration::from_secs(600),
        retry_busy: None,
        retry_backoff: 1.5,
        give_up_after: Duration::from_secs(3 * 86400),
        max_concurrent: 50,
        max_concurrent_per_target: 30,
        spread: Duration::from_secs(900),
        target: Target::Queue("sales".into()),
        fallback: Some(Target::Queue("support".into())),
        min_talk: Duration::from_secs(6),
        request: Default::default(),
    }
}

fn hours() -> Hours {
    support::moscow_weekdays(&[], &[])
}

/// `due_share` of the tasks are ready at `now`; the rest wait for a later attempt.
fn tasks(now: Timestamp, ready_from: Timestamp, due_share: f64) -> Vec<Task> {
    let mut rng = fastrand::Rng::with_seed(7);
    (0..N)
        .map(|i| {
            let ready = rng.f64() < due_share;
            let next = if ready {
                ready_from + SignedDuration::from_secs(rng.i64(0..3600))
            } else {
                now + SignedDuration::from_secs(rng.i64(1..36_000))
            };
            Task {
                id: i as i64 + 1,
                number: format!("79{:09}", i),
                state: if i % 5000 == 0 {
                    TaskState::InProgress
                } else {
                    TaskState::Pending
                },
                server: "pbx".into(),
                missed_count: 1 + rng.u32(0..4),
                attempts: rng.u32(0..3),
                attempt_budget: 3,
                lost_at: Some(LostAt::Queue),
                first_missed_at: ready_from,
                last_missed_at: ready_from,
                next_attempt_at: next,
                give_up_at: now + SignedDuration::from_secs(86_400),
                last_attempt_at: None,
                last_outcome: None,
                use_fallback: rng.bool(),
                // Issue 14's rules on: 2 % requested (ordered by the time they joined the
                // queue), 5 % owned by one of 20 agents, half of those still theirs.
                routing: Routing {
                    kind: if i % 50 == 0 {
                        TaskKind::Requested
                    } else {
                        TaskKind::Missed
                    },
                    owner: (i % 20 == 1).then(|| format!("{}", 200 + i % 400 / 20)),
                    owner_until: (i % 20 == 1).then(|| {
                        now + SignedDuration::from_secs(if i % 40 == 1 { 600 } else { -600 })
                    }),
                    queue: (i % 50 == 0).then(|| "sales".to_string()),
                    joined_at: (i % 50 == 0)
                        .then(|| ready_from - SignedDuration::from_secs(rng.i64(0..600))),
                },
            }
        })
        .collect()
}

fn at(s: &str) -> Timestamp {
    s.parse::<jiff::civil::DateTime>()
        .unwrap()
        .to_zoned(jiff::tz::TimeZone::get("Europe/Moscow").unwrap())
        .unwrap()
        .timestamp()
}

fn bench(c: &mut Criterion) {
    let p = policy();
    let h = hours();
    // Monday mid-morning, long after the opening.
    let now = at("2026-12-21T11:30:00");
    let ready_from = now - SignedDuration::from_secs(7200);
    let all_due = tasks(now, ready_from, 1.0);
    let tenth_due = tasks(now, ready_from, 0.1);
    // Monday 09:05: the night's misses are spread.
    let opening = at("2026-12-21T09:05:00");
    let night = tasks(opening, at("2026-12-20T20:00:00"), 1.0);
    assert!(!due(&all_due, now, &h, &p).is_empty());
    assert!(!due(&night, opening, &h, &p).is_empty());

    let mut g = c.benchmark_group("planner_due_100k");
    g.bench_function("all_due", |b| {
        b.iter(|| due(black_box(&all_due), now, &h, &p))
    });
    g.bench_function("tenth_due", |b| {
        b.iter(|| due(black_box(&tenth_due), now, &h, &p))
    });
    g.bench_function("opening_spread", |b| {
        b.iter(|| due(black_box(&night), opening, &h, &p))
    });
    // A 24/7 schedule: the opening lies in the past, found by walking back a week of days.
    let always = Hours::always(jiff::tz::TimeZone::get("Europe/Moscow").unwrap());
    g.bench_function("all_due_24x7", |b| {
        b.iter(|| due(black_box(&all_due), now, &always, &p))
    });
    // 1 000 customers on a live call (a busy PBX): every task's number is looked up.
    let live: std::collections::HashSet<String> = all_due
        .iter()
        .step_by(100)
        .map(|t| t.number.clone())
        .collect();
    assert!(!due_avoiding(&all_due, now, &h, &p, &live).is_empty());
    g.bench_function("all_due_1k_live", |b| {
        b.iter(|| due_avoiding(black_box(&all_due), now, &h, &p, &live))
    });
    // The same tasks without issue 14's rules (no requested, no owned): what the new rules cost,
    // measured in the same run (a shared machine's load moves both alike).
    let plain: Vec<Task> = all_due
        .iter()
        .cloned()
        .map(|mut t| {
            t.routing = Routing::default();
            t
        })
        .collect();
    g.bench_function("all_due_rules_off", |b| {
        b.iter(|| due(black_box(&plain), now, &h, &p))
    });

    // Issue 14, every rule on: 1 000 customers on a call, a per-number budget over a log of
    // 20 000 attempts (1 000 numbers over it), the customer's clock (a quarter each in Moscow,
    // Vladivostok, Kamchatka and mobiles of unknown region: at 12:30 Moscow time Kamchatka is
    // past 21:00, which holds back the unknown-region mobiles too), expiry (expire_after and
    // expire_at_close) and the give-up sweep. What the dialer does per tick is timed whole:
    // building the guards' context (over-budget set, zone clock) + the due set; the expiry
    // sweep (every 10 s) apart.
    let noon = at("2026-12-21T12:30:00");
    let guarded: Vec<Task> = tasks(noon, noon - SignedDuration::from_secs(7200), 1.0)
        .into_iter()
        .enumerate()
        .map(|(i, mut t)| {
            let prefix = ["7495", "7423", "7415", "7914"][i % 4];
            t.number = format!("{prefix}{:07}", i);
            t
        })
        .collect();
    let rules = guard::Rules {
        max_per_number_24h: Some(3),
        max_per_number_day: Some(2),
        business_zone: Some(jiff::tz::TimeZone::get("Europe/Moscow").unwrap()),
        customer: Some(guard::CustomerHours {
            weekdays: vec![perezvon::config::parse_range("09:00-21:00").unwrap()],
            weekend: vec![perezvon::config::parse_range("10:00-20:00").unwrap()],
            unknown_region: perezvon::config::UnknownRegion::AllZones,
            unknown_country: perezvon::config::UnknownCountry::BusinessZone,
            overrides: Vec::new(),
            business_zone: jiff::tz::TimeZone::get("Europe/Moscow").unwrap(),
        }),
        expire_after: Some(Duration::from_secs(3 * 86400)),
        expire_at_close: true,
        ..guard::Rules::default()
    };
    // 20 000 attempts in the last 20 hours: 1 000 numbers with 2 today (over the day cap),
    // 18 000 numbers with one.
    let mut log = guard::AttemptLog::default();
    for (i, t) in guarded.iter().enumerate().take(19_000) {
        let n = if i < 1000 { 2 } else { 1 };
        for k in 0..n {
            log.record(&t.number, noon - SignedDuration::from_mins(10 + k * 60));
        }
    }
    let glive: std::collections::HashSet<String> = guarded
        .iter()
        .skip(50)
        .step_by(100)
        .map(|t| t.number.clone())
        .collect();
    // The expiry sweep runs every 10 s, not every tick (a task about to be dialled is checked on
    // its own): it is timed apart, below.
    let tick = || {
        let over = log.over_budget(noon, &rules);
        let clock = rules.customer.as_ref().map(|c| c.open_mask(noon));
        let ctx = guard::Context::default()
            .live(&glive)
            .over_budget(&over)
            .customer(rules.customer.as_ref().zip(clock.as_ref()));
        due_guarded(black_box(&guarded), noon, &h, &p, &ctx)
    };
    let d = tick();
    assert!(!d.is_empty());
    assert!(d.len() <= 30);
    g.bench_function("all_due_all_guards_tick", |b| b.iter(tick));
    g.bench_function("all_guards_context_only", |b| {
        b.iter(|| {
            let over = log.over_budget(noon, &rules);
            let clock = rules.customer.as_ref().map(|c| c.open_mask(noon));
            (over.len(), clock.is_some())
        })
    });
    g.bench_function("expiry_sweep_only", |b| {
        b.iter(|| guard::expired(black_box(&guarded), noon, &h, &p, &rules))
    });
    g.bench_function("all_due_all_guards_due_only", |b| {
        let over = log.over_budget(noon, &rules);
        let clock = rules.customer.as_ref().map(|c| c.open_mask(noon));
        let ctx = guard::Context::default()
            .live(&glive)
            .over_budget(&over)
            .customer(rules.customer.as_ref().zip(clock.as_ref()));
        b.iter(|| due_guarded(black_box(&guarded), noon, &h, &p, &ctx))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
