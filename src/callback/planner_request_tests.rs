//! Planner rules of issue 14 (requested and owned callbacks, the do-not-call list), time as an
//! argument.

use super::*;
use crate::test_support::inbound_miss;
use jiff::tz::TimeZone;

fn policy() -> Policy {
    Policy {
        lost_at: LostAt::ALL.to_vec(),
        allow: vec![regex::Regex::new("^(?:7\\d{10})$").unwrap()],
        deny: vec![],
        kind_guard: KindGuard::default(),
        delay: Duration::from_secs(60),
        max_attempts: 3,
        retry_every: Duration::from_secs(600),
        retry_busy: None,
        retry_backoff: 1.0,
        give_up_after: Duration::from_secs(24 * 3600),
        max_concurrent: 10,
        max_concurrent_per_target: 10,
        spread: Duration::from_secs(0),
        target: Target::Queue("sales".into()),
        fallback: None,
        min_talk: Duration::from_secs(6),
        request: RequestPolicy {
            owner_wait: Some(Duration::from_secs(600)),
            ..RequestPolicy::default()
        },
    }
}

fn hours() -> Hours {
    crate::test_support::moscow_weekdays(&[], &[])
}

fn msk(s: &str) -> Timestamp {
    s.parse::<jiff::civil::DateTime>()
        .unwrap()
        .to_zoned(TimeZone::get("Europe/Moscow").unwrap())
        .unwrap()
        .timestamp()
}

fn secs(n: i64) -> SignedDuration {
    SignedDuration::from_secs(n)
}

fn missed(id: i64, number: &str, at: Timestamp, count: u32, p: &Policy) -> Task {
    let rec = CallRecord {
        caller: Some(number.into()),
        caller_normalized: Some(number.into()),
        ..inbound_miss(&format!("l{id}"), at - secs(10), 10.0)
    };
    let n = admit(&rec, p).unwrap();
    let MissPlan::Create(mut t) = on_miss(None, &n, &rec, p) else {
        panic!()
    };
    t.id = id;
    t.missed_count = count;
    t
}

fn requested(id: i64, number: &str, now: Timestamp, joined: Timestamp, p: &Policy) -> Task {
    let n = p.dial_number(number).unwrap();
    let RequestPlan::Create(mut t) =
        on_request(None, &n, "pbx", Some("sales"), Some(joined), now, p)
    else {
        panic!()
    };
    t.id = id;
    t
}

#[test]
fn a_requested_callback_is_due_at_once_and_keeps_the_callers_place() {
    let p = policy();
    let t0 = msk("2026-12-21T10:00:00");
    // A much-missed customer waiting since 09:30, and two callers who asked for a callback:
    // the one who joined the queue first (09:50) is called first, even though they asked later.
    let m = missed(1, "79160000001", msk("2026-12-21T09:30:00"), 5, &p);
    let late = requested(2, "79160000002", t0, msk("2026-12-21T09:55:00"), &p);
    let early = requested(
        3,
        "79160000003",
        t0 + secs(30),
        msk("2026-12-21T09:50:00"),
        &p,
    );
    assert_eq!(
        early.next_attempt_at,
        t0 + secs(30),
        "no delay for a request"
    );
    assert_eq!(early.routing.kind, TaskKind::Requested);
    let now = t0 + secs(30);
    let d = due(&[m.clone(), late.clone(), early.clone()], now, &hours(), &p);
    let ids: Vec<i64> = d.iter().map(|d| d.id).collect();
    assert_eq!(ids, [3, 2, 1]);
    // With one slot, the earliest joiner gets it.
    let one = Policy {
        max_concurrent: 1,
        ..p.clone()
    };
    assert_eq!(due(&[m, late, early.clone()], now, &hours(), &one)[0].id, 3);
    // Outside working hours a request waits like any task.
    let night = msk("2026-12-21T20:00:00");
    let mut e = early;
    e.next_attempt_at = night;
    e.give_up_at = night + secs(86_400);
    assert!(due(&[e], night, &hours(), &p).is_empty());
}

#[test]
fn a_request_on_an_open_task_requeues_it_and_the_hold_queue_is_the_callers() {
    let p = policy();
    let t0 = msk("2026-12-21T10:00:00");
    let m = missed(1, "79160000001", t0 - secs(600), 1, &p);
    let n = p.dial_number("79160000001").unwrap();
    let plan = on_request(
        Some(&m),
        &n,
        "pbx",
        Some("support"),
        Some(t0 - secs(90)),
        t0,
        &p,
    );
    assert_eq!(
        plan,
        RequestPlan::Requeue {
            id: 1,
            queue: Some("support".into()),
            joined_at: Some(t0 - secs(90)),
            due_at: t0,
        }
    );
    let r = requested(2, "79160000002", t0, t0 - secs(60), &p);
    assert_eq!(p.hold_queue(&r), Some("sales"));
    assert_eq!(
        p.hold_queue(&m),
        None,
        "a missed-call task is not held by waiting callers"
    );
    let mut no_queue = r.clone();
    no_queue.routing.queue = None;
    assert_eq!(p.hold_queue(&no_queue), Some("sales"), "the target's queue");
    let ep = Policy {
        target: Target::Endpoint("PJSIP/201".into()),
        ..p.clone()
    };
    assert_eq!(ep.hold_queue(&no_queue), None);
}

#[test]
fn an_owned_task_goes_to_its_owner_until_owner_wait_then_to_the_group() {
    let p = policy();
    let t0 = msk("2026-12-21T10:00:00");
    let mut t = missed(1, "79160000001", t0, 1, &p);
    let (owner, until) = owner_for(Some("201"), Some("305"), t0, &p).unwrap();
    assert_eq!((owner.as_str(), until), ("201", t0 + secs(600)));
    t.routing.owner = Some(owner);
    t.routing.owner_until = Some(until);
    let at = t0 + secs(120);
    let d = due(std::slice::from_ref(&t), at, &hours(), &p);
    assert_eq!(d[0].target, Target::Endpoint("PJSIP/201".into()));
    // At owner_wait the group takes it.
    let d = due(std::slice::from_ref(&t), until, &hours(), &p);
    assert_eq!(d[0].target, Target::Queue("sales".into()));
    // Owners have their own per-target cap: two tasks of agent 201, cap 1.
    let capped = Policy {
        max_concurrent_per_target: 1,
        ..p.clone()
    };
    let mut t2 = missed(2, "79160000002", t0, 1, &p);
    t2.routing = t.routing.clone();
    let d = due(&[t.clone(), t2], at, &hours(), &capped);
    assert_eq!(d.len(), 1);
    // The direct number's user when nobody talked with them yet; nobody when owned callbacks
    // are off, or the agent name could not be an endpoint.
    assert_eq!(owner_for(None, Some("305"), t0, &p).unwrap().0, "305");
    let off = Policy {
        request: RequestPolicy::default(),
        ..p.clone()
    };
    assert_eq!(owner_for(Some("201"), None, t0, &off), None);
    assert_eq!(owner_for(Some("20 1&x"), None, t0, &p), None);
    // An outside party (a forward to a mobile) is no owner; the direct user still is.
    assert_eq!(owner_for(Some("89031234567"), None, t0, &p), None);
    assert_eq!(
        owner_for(Some("89031234567"), Some("305"), t0, &p)
            .unwrap()
            .0,
        "305"
    );
}

#[test]
fn one_missed_attempt_of_the_owner_hands_the_task_to_the_group_soon() {
    let mut p = policy();
    p.fallback = Some(Target::Queue("support".into()));
    let t0 = msk("2026-12-21T10:00:00");
    let mut t = missed(1, "79160000001", t0, 1, &p);
    t.routing.owner = Some("201".into());
    t.routing.owner_until = Some(t0 + secs(600));
    t.attempts = 1;
    t.last_attempt_at = Some(t0 + secs(60));
    let now = t0 + secs(100);
    let o = AttemptOutcome::Call(CallbackOutcome::AgentMissed);
    let after = after_outcome(&t, o, now, &p);
    let (after, release) = after_owner_attempt(&t, o, after, now, &p);
    assert!(release);
    assert!(!after.use_fallback, "the group, not the fallback queue");
    assert_eq!(after.next_attempt_at, now + secs(60));
    // The customer did not answer: still released (one missed attempt), normal spacing.
    let o = AttemptOutcome::Call(CallbackOutcome::NoAnswer);
    let (after, release) = after_owner_attempt(&t, o, after_outcome(&t, o, now, &p), now, &p);
    assert!(release);
    assert_eq!(after.next_attempt_at, t0 + secs(660));
    // Connected, or an unknown fate: nothing to hand over.
    for o in [
        AttemptOutcome::Call(CallbackOutcome::Connected),
        AttemptOutcome::Unknown,
    ] {
        assert!(!after_owner_attempt(&t, o, after_outcome(&t, o, now, &p), now, &p).1);
    }
    // An attempt that went to the group (owner time over) releases nothing.
    t.last_attempt_at = Some(t0 + secs(700));
    let o = AttemptOutcome::Call(CallbackOutcome::AgentMissed);
    assert!(!after_owner_attempt(&t, o, after_outcome(&t, o, now, &p), now, &p).1);
}

#[test]
fn a_number_on_the_dnc_list_is_never_admitted_nor_dialled() {
    let mut p = policy();
    p.request.dnc = std::sync::Arc::new(["79160000001".to_string()].into());
    assert_eq!(p.dial_number("79160000001"), Err(Rejected::DoNotCall));
    let rec = CallRecord {
        caller: Some("79160000001".into()),
        caller_normalized: Some("79160000001".into()),
        ..inbound_miss("l", msk("2026-12-21T10:00:00"), 10.0)
    };
    assert_eq!(admit(&rec, &p), Err(Skip::Number(Rejected::DoNotCall)));
    assert!(p.dial_number("79160000002").is_ok());
}
