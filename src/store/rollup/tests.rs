use std::collections::BTreeMap;

use super::*;
use crate::calls::record::{Direction, LostAt, ResolvedBy, Status};
use crate::report::tally::slot_of;
use crate::test_support::inbound_miss;

const T0: i64 = 1_795_000_000;

/// Random calls over two days: every status, direction, wait bucket, resolver and key.
fn random_calls(n: usize, seed: u64) -> Vec<CallRecord> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..n)
        .map(|i| {
            let start = jiff::Timestamp::from_microsecond(
                (T0 + rng.i64(0..2 * 86_400)) * 1_000_000 + rng.i64(0..1_000_000),
            )
            .unwrap();
            let status = [
                Status::Answered,
                Status::Missed,
                Status::Ignored,
                Status::Unknown,
            ][rng.usize(0..4)];
            let direction = if rng.u8(0..10) == 0 {
                Direction::Outbound
            } else {
                Direction::Inbound
            };
            let number = (rng.u8(0..8) != 0).then(|| format!("7916000{:04}", rng.u32(0..30)));
            let resolved = rng.bool();
            CallRecord {
                direction,
                status,
                missed: status == Status::Missed || (status == Status::Ignored && rng.bool()),
                ignored: status == Status::Ignored,
                caller: number.clone(),
                caller_normalized: if rng.u8(0..10) == 0 {
                    Some(String::new())
                } else {
                    number
                },
                callee: (rng.u8(0..5) != 0).then(|| format!("749511100{}", rng.u8(0..4))),
                agent: (rng.u8(0..4) != 0).then(|| format!("20{}", rng.u8(0..6))),
                queue: (rng.bool()).then(|| ["sales", "support"][rng.usize(0..2)].to_string()),
                lost_at: (rng.u8(0..5) != 0).then(|| LostAt::ALL[rng.usize(0..7)]),
                hangup_by: [None, Some("caller"), Some("agent")][rng.usize(0..3)].map(Into::into),
                talk_secs: rng.f64() * 300.0,
                resolved_by: resolved.then(|| {
                    [ResolvedBy::Caller, ResolvedBy::Agent, ResolvedBy::Callback][rng.usize(0..3)]
                }),
                resolved_at: (resolved && rng.u8(0..5) != 0).then(|| {
                    start + jiff::SignedDuration::from_secs_f64(rng.f64() * 100_000.0 - 50.0)
                }),
                ..inbound_miss(
                    &format!("c{i}"),
                    start,
                    [0.0, 10.0, 19.5, 20.0, 45.0, 90.0, 150.0, 400.0][rng.usize(0..8)] + rng.f64(),
                )
            }
        })
        .collect()
}

fn all_calls(s: &Store) -> Vec<CallRecord> {
    s.calls_ended_between(jiff::Timestamp::UNIX_EPOCH, f64_to_ts(4e9))
        .unwrap()
}

/// The slot table as Rust computes it from the stored calls.
fn expected_slots(calls: &[CallRecord], sl: f64) -> BTreeMap<i64, Tally> {
    let mut m: BTreeMap<i64, Tally> = BTreeMap::new();
    for c in calls.iter().filter(|c| c.direction == Direction::Inbound) {
        m.entry(slot_of(ts_to_f64(c.started_at), SLOT_SECS))
            .or_default()
            .add(c, sl);
    }
    m
}

fn stored_slots(s: &Store) -> BTreeMap<i64, Tally> {
    let q = RollupQuery {
        from: f64_to_ts((T0 - 7200) as f64),
        to: f64_to_ts((T0 + 3 * 86_400) as f64),
        split_slots: &[],
        breakdowns: true,
    };
    let r = s.report_rollup(&q).unwrap();
    assert!(
        r.edge_calls.is_empty(),
        "the period is whole hours and everything is folded"
    );
    r.slots
        .into_iter()
        .filter(|(_, t)| *t != Tally::default())
        .collect()
}

fn close(a: &BTreeMap<i64, Tally>, b: &BTreeMap<i64, Tally>) {
    assert_eq!(a.len(), b.len());
    for ((sa, ta), (sb, tb)) in a.iter().zip(b) {
        assert_eq!(sa, sb);
        let round = |t: &Tally| {
            let mut t = *t;
            for x in [
                &mut t.head.answer_wait_sum,
                &mut t.head.miss_wait_sum,
                &mut t.head.talk_sum,
                &mut t.detail.reaction_sum,
            ] {
                *x = (*x * 1000.0).round();
            }
            t
        };
        assert_eq!(round(ta), round(tb), "slot {sa}");
    }
}

#[test]
fn triggers_agree_with_the_rust_tally() {
    crate::test_support::pg::each_engine(|db| triggers_agree_with_the_rust_tally_on(&db.open()));
}

fn triggers_agree_with_the_rust_tally_on(s: &Store) {
    for c in random_calls(600, 7) {
        s.record_call(&c, std::time::Duration::from_secs(86_400))
            .unwrap();
    }
    let calls = all_calls(s);
    assert!(calls.iter().any(|c| c.resolved_by.is_some()));
    // Nothing is in the rollup until a reader folds it in: the calls are read one by one.
    let before = s
        .report_rollup(&RollupQuery {
            from: f64_to_ts((T0 - 7200) as f64),
            to: f64_to_ts((T0 + 3 * 86_400) as f64),
            split_slots: &[],
            breakdowns: true,
        })
        .unwrap();
    assert!(before.slots.iter().all(|(_, t)| *t == Tally::default()));
    assert_eq!(
        before.edge_calls.len(),
        calls
            .iter()
            .filter(|c| c.direction == Direction::Inbound)
            .count()
    );
    assert!(s.fold_report_rollup().unwrap() > 0);
    assert_eq!(s.fold_report_rollup().unwrap(), 0);
    close(&stored_slots(s), &expected_slots(&calls, 20.0));

    // An update of what the report reads, and deletes (retention, forget), are followed.
    s.db.batch(
        "UPDATE calls SET resolved_by = 'agent', resolved_at = started_at + 500 WHERE id % 7 = 0; \
             UPDATE calls SET queue = 'vip', wait_secs = wait_secs + 30 WHERE id % 11 = 0; \
             DELETE FROM calls WHERE id % 5 = 0; UPDATE calls SET dialer_pending = 1;",
    )
    .unwrap();
    let calls = all_calls(s);
    close(&stored_slots(s), &expected_slots(&calls, 20.0));

    // New calls wait for the next fold; a call that reuses the id of a deleted newest row
    // (rowids restart from the maximum) is counted at once by the insert trigger.
    // (PostgreSQL's identity never reuses an id.)
    if !s.db.is_postgres() {
        let newest: i64 =
            s.db.query_row("SELECT MAX(id) FROM calls", params![], |r| r.get(0))
                .unwrap();
        s.db.execute("DELETE FROM calls WHERE id = ?1", params![newest])
            .unwrap();
        let mut reuse = random_calls(1, 99).remove(0);
        reuse.linkedid = "reused".into();
        reuse.direction = Direction::Inbound;
        s.insert_call(&reuse).unwrap();
        let id: i64 =
            s.db.query_row(
                "SELECT id FROM calls WHERE linkedid = 'reused'",
                params![],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(id, newest, "the id was reused");
        close(&stored_slots(s), &expected_slots(&all_calls(s), 20.0));
    }
    for c in random_calls(50, 11) {
        let c = CallRecord {
            linkedid: format!("late-{}", c.linkedid),
            ..c
        };
        s.insert_call(&c).unwrap();
    }
    // (A retention-style delete above may have freed the newest id too: one of these can be
    // counted by the insert trigger, the rest by the fold.)
    assert!(s.fold_report_rollup().unwrap() >= 49);
    let calls = all_calls(s);
    close(&stored_slots(s), &expected_slots(&calls, 20.0));

    // The breakdowns hold the same calls, by key.
    let q = RollupQuery {
        from: f64_to_ts((T0 - 7200) as f64),
        to: f64_to_ts((T0 + 3 * 86_400) as f64),
        split_slots: &[],
        breakdowns: true,
    };
    let r = s.report_rollup(&q).unwrap();
    let mut by_queue: BTreeMap<String, Head> = BTreeMap::new();
    for c in &calls {
        by_queue
            .entry(c.queue.clone().unwrap_or_default())
            .or_default()
            .add(c, 20.0, 1);
    }
    let got: BTreeMap<String, (i64, i64, i64, i64)> = r
        .queues
        .iter()
        .map(|(k, h)| {
            (
                k.clone(),
                (h.inbound, h.missed, h.sl_hits, h.withheld_missed),
            )
        })
        .collect();
    let want: BTreeMap<String, (i64, i64, i64, i64)> = by_queue
        .iter()
        .map(|(k, h)| {
            (
                k.clone(),
                (h.inbound, h.missed, h.sl_hits, h.withheld_missed),
            )
        })
        .collect();
    assert_eq!(got, want);
    assert!(want.contains_key("vip"));
    let agents: i64 = r.agents.iter().map(|(_, h)| h.inbound).sum();
    let dids: i64 = r.dids.iter().map(|(_, h)| h.inbound).sum();
    let total: i64 = by_queue.values().map(|h| h.inbound).sum();
    assert_eq!((agents, dids), (total, total));

    // Another threshold rebuilds the rollup with it.
    assert!(s.set_report_service_level(45.0).unwrap());
    assert!(!s.set_report_service_level(45.0).unwrap());
    close(&stored_slots(s), &expected_slots(&calls, 45.0));
    assert!(s.set_report_service_level(f64::NAN).is_err());
}

#[test]
fn partial_hours_and_split_slots_are_read_from_the_calls() {
    crate::test_support::pg::each_engine(|db| {
        partial_hours_and_split_slots_are_read_from_the_calls_on(&db.open())
    });
}

fn partial_hours_and_split_slots_are_read_from_the_calls_on(s: &Store) {
    for c in random_calls(400, 3) {
        s.insert_call(&c).unwrap();
    }
    s.fold_report_rollup().unwrap();
    let calls = all_calls(s);
    // A period with ragged ends, and two quarter hours to split.
    let (from, to) = (T0 as f64 + 1234.5, T0 as f64 + 86_400.0 + 777.0);
    let split: Vec<i64> = vec![
        slot_of(T0 as f64 + 7200.0, SLOT_SECS),
        slot_of(T0 as f64 + 40_000.0, SLOT_SECS),
    ];
    let q = RollupQuery {
        from: f64_to_ts(from),
        to: f64_to_ts(to),
        split_slots: &split,
        breakdowns: true,
    };
    let r = s.report_rollup(&q).unwrap();
    assert!(!r.edge_calls.is_empty() && !r.split_calls.is_empty());
    let mut got = Tally::default();
    r.slots.iter().for_each(|(_, t)| got.merge(t));
    r.edge_calls
        .iter()
        .chain(&r.split_calls)
        .for_each(|c| got.add(c, 20.0));
    let mut want = Tally::default();
    calls
        .iter()
        .filter(|c| (from..to).contains(&ts_to_f64(c.started_at)))
        .for_each(|c| want.add(c, 20.0));
    assert_eq!(got.head.inbound, want.head.inbound);
    assert_eq!(got.head.missed, want.head.missed);
    assert_eq!(got.detail.reaction, want.detail.reaction);
    // Breakdowns + edges cover the same calls (split calls are in the breakdowns already).
    let mut q_in: i64 = r.queues.iter().map(|(_, h)| h.inbound).sum();
    let mut edge = Head::default();
    r.edge_calls.iter().for_each(|c| edge.add(c, 20.0, 1));
    q_in += edge.inbound;
    assert_eq!(q_in, want.head.inbound);
    // Calls stored after the last fold are read one by one: the same figures, unfolded.
    for c in random_calls(30, 21) {
        let c = CallRecord {
            linkedid: format!("new-{}", c.linkedid),
            ..c
        };
        s.insert_call(&c).unwrap();
    }
    let r2 = s.report_rollup(&q).unwrap();
    let mut got2 = Tally::default();
    r2.slots.iter().for_each(|(_, t)| got2.merge(t));
    r2.edge_calls
        .iter()
        .chain(&r2.split_calls)
        .for_each(|c| got2.add(c, 20.0));
    let mut want2 = Tally::default();
    all_calls(s)
        .iter()
        .filter(|c| (from..to).contains(&ts_to_f64(c.started_at)))
        .for_each(|c| want2.add(c, 20.0));
    assert_eq!(got2.head.inbound, want2.head.inbound);
    assert_eq!(got2.detail.missed_waits, want2.detail.missed_waits);
    // A period shorter than an hour is all edge.
    let short = RollupQuery {
        from: f64_to_ts(from),
        to: f64_to_ts(from + 600.0),
        split_slots: &[],
        breakdowns: true,
    };
    let r = s.report_rollup(&short).unwrap();
    assert!(r.slots.is_empty() && r.queues.is_empty());
}

#[test]
fn repeat_and_unresolved_lists() {
    crate::test_support::pg::each_engine(|db| repeat_and_unresolved_lists_on(&db.open()));
}

fn repeat_and_unresolved_lists_on(s: &Store) {
    let t = |x: i64| jiff::Timestamp::from_second(T0 + x).unwrap();
    let mut a = inbound_miss("a", t(0), 20.0);
    a.caller = Some("+79161234567".into());
    a.caller_normalized = Some("79161234567".into());
    let mut b = a.clone();
    b.linkedid = "b".into();
    b.started_at = t(100);
    b.ended_at = t(120);
    b.caller = Some("89161234567".into());
    let mut c = b.clone();
    c.linkedid = "c".into();
    c.started_at = t(200);
    c.ended_at = t(220);
    c.resolved_by = Some(ResolvedBy::Caller);
    for r in [&a, &b, &c] {
        s.insert_call(r).unwrap();
    }
    let rep = s.repeat_missed_numbers(t(-10), t(1000), 10).unwrap();
    assert_eq!(rep.len(), 1);
    assert_eq!((rep[0].misses, rep[0].unresolved), (3, 2));
    // A long period takes the other index, to the same answer.
    let long = s
        .repeat_missed_numbers(t(-100 * 86_400), t(1000), 10)
        .unwrap();
    assert_eq!(long, rep);
    let open = s.recent_unresolved_misses(t(-10), t(1000), 10).unwrap();
    let ids: Vec<&str> = open.iter().map(|c| c.linkedid.as_str()).collect();
    assert_eq!(ids, ["b", "a"]);
}
