//! The glue the daemon uses: stored verdicts and finished attempts become outbox rows, through
//! the writers' calls and through the observer channels, never twice.

use std::sync::Arc;
use std::time::Duration;

use perezvon::callback::planner::{AfterOutcome, AttemptOutcome, Task, TaskState};
use perezvon::calls::record::{CallRecord, CallbackOutcome, LostAt, Status};
use perezvon::config::Config;
use perezvon::daemon::dialer::DialerEvent;
use perezvon::metrics::Metrics;
use perezvon::notify;
use perezvon::store::tasks::NewAttempt;
use perezvon::store::Store;
use tokio_util::sync::CancellationToken;

mod support;

fn t(s: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_800_000_000 + s).unwrap()
}

fn cfg() -> Config {
    Config::from_toml("[notify.webhook]\nurl = \"http://127.0.0.1:9/hook\"\n").unwrap()
}

fn call(linkedid: &str, start: i64, status: Status) -> CallRecord {
    let answered = status == Status::Answered;
    CallRecord {
        server: "pbx1".into(),
        caller: Some("89161234567".into()),
        answered_at: answered.then(|| t(start + 5)),
        wait_secs: if answered { 5.0 } else { 40.0 },
        talk_secs: if answered { 35.0 } else { 0.0 },
        agent: Some("201".into()),
        status,
        missed: status == Status::Missed,
        lost_at: (status == Status::Missed).then_some(LostAt::Queue),
        ..support::inbound_miss(linkedid, t(start), 40.0)
    }
}

fn event_ids(store: &Store) -> Vec<String> {
    let mut ids: Vec<String> = store
        .due_notifications(t(1_000_000), 100)
        .unwrap()
        .into_iter()
        .map(|i| i.event_id)
        .collect();
    ids.sort();
    ids
}

#[test]
fn a_miss_and_the_call_that_resolves_it() {
    let store = Store::open_in_memory().unwrap();
    let cfg = cfg();
    let week = Duration::from_secs(7 * 86400);
    let miss = store
        .record_call(&call("1.1", 0, Status::Missed), week)
        .unwrap();
    assert_eq!(
        notify::enqueue_recorded(&store, &cfg, &miss, t(50)).unwrap(),
        1
    );
    let back = store
        .record_call(&call("2.2", 600, Status::Answered), week)
        .unwrap();
    assert_eq!(
        back.resolved.len(),
        1,
        "the answered call resolves the miss"
    );
    assert_eq!(
        notify::enqueue_recorded(&store, &cfg, &back, t(650)).unwrap(),
        1
    );
    // Again (a replay): nothing new.
    assert_eq!(
        notify::enqueue_recorded(&store, &cfg, &back, t(651)).unwrap(),
        0
    );
    assert_eq!(event_ids(&store), ["missed:pbx1:1.1", "resolved:pbx1:1.1"]);
    let resolved = store
        .due_notifications(t(1_000_000), 100)
        .unwrap()
        .into_iter()
        .find(|i| i.kind == "resolved")
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&resolved.payload).unwrap();
    assert_eq!(v["resolved_by"], "caller");
    assert_eq!(v["resolved_by_linkedid"], "2.2");
}

fn task(number: &str) -> Task {
    Task {
        id: 0,
        number: number.into(),
        state: TaskState::Pending,
        server: "pbx1".into(),
        missed_count: 1,
        attempts: 0,
        attempt_budget: 3,
        lost_at: Some(LostAt::Queue),
        first_missed_at: t(0),
        last_missed_at: t(0),
        next_attempt_at: t(60),
        give_up_at: t(86_400),
        last_attempt_at: None,
        last_outcome: None,
        use_fallback: false,
        routing: Default::default(),
    }
}

fn attempt(store: &mut Store, task_id: i64, cb: &str, outcome: AttemptOutcome, after: TaskState) {
    store
        .begin_attempt(&NewAttempt {
            task_id,
            attempt_no: 1,
            callback_id: cb,
            number: "79161234567",
            target: "queue:sales",
            started_at: t(100),
        })
        .unwrap();
    store
        .finish_attempt(
            cb,
            outcome,
            t(130),
            Some(20.0),
            None,
            &AfterOutcome {
                state: after,
                next_attempt_at: t(700),
                use_fallback: false,
                close_reason: None,
            },
        )
        .unwrap();
}

#[test]
fn a_finished_attempt_becomes_a_callback_event() {
    let mut store = Store::open_in_memory().unwrap();
    let cfg = cfg();
    let id = store.create_task(&task("79161234567")).unwrap();
    attempt(
        &mut store,
        id,
        "cb-1",
        AttemptOutcome::Call(CallbackOutcome::NoAnswer),
        TaskState::Pending,
    );
    assert_eq!(
        notify::enqueue_attempt_outcome(&store, &cfg, "cb-1", t(131)).unwrap(),
        1
    );
    assert_eq!(
        notify::enqueue_attempt_outcome(&store, &cfg, "cb-1", t(132)).unwrap(),
        0
    );
    assert_eq!(
        notify::enqueue_attempt_outcome(&store, &cfg, "no-such", t(132)).unwrap(),
        0
    );
    let item = store.due_notifications(t(1_000_000), 10).unwrap().remove(0);
    let v: serde_json::Value = serde_json::from_str(&item.payload).unwrap();
    assert_eq!(item.event_id, "callback:cb-1");
    assert_eq!(v["callback"]["outcome"], "no_answer");
    assert_eq!(v["callback"]["attempt"], 1);
    assert_eq!(v["callback"]["max_attempts"], 3);
    assert_eq!(v["callback"]["task_state"], "pending");
    assert_eq!(v["callback"]["talk_secs"], 20.0);
    assert!(v["callback"]["next_attempt_at"].is_string());
    assert_eq!(v["server"], "pbx1");
    assert_eq!(v["number_e164"], "+79161234567");

    // An attempt whose outcome is unknown (a crash mid-call) is no event.
    let id2 = store.create_task(&task("79031234567")).unwrap();
    attempt(
        &mut store,
        id2,
        "cb-2",
        AttemptOutcome::Unknown,
        TaskState::Pending,
    );
    assert_eq!(
        notify::enqueue_attempt_outcome(&store, &cfg, "cb-2", t(140)).unwrap(),
        0
    );
}

#[tokio::test]
async fn the_observer_counts_and_enqueues() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("perezvon.db");
    let mut store = Store::open(&db).unwrap();
    let cfg = Arc::new(cfg());
    let week = Duration::from_secs(7 * 86400);
    let miss = store
        .record_call(&call("1.1", 0, Status::Missed), week)
        .unwrap();
    let back = store
        .record_call(&call("2.2", 600, Status::Answered), week)
        .unwrap();
    let id = store.create_task(&task("79161234567")).unwrap();
    attempt(
        &mut store,
        id,
        "cb-9",
        AttemptOutcome::Call(CallbackOutcome::Connected),
        TaskState::Done,
    );

    let metrics = Arc::new(Metrics::default());
    let (rec_tx, rec_rx) = tokio::sync::mpsc::channel(16);
    let (dial_tx, dial_rx) = tokio::sync::mpsc::channel(16);
    let observer = tokio::spawn(notify::run_observer(
        cfg,
        db,
        metrics.clone(),
        rec_rx,
        dial_rx,
        CancellationToken::new(),
    ));
    rec_tx.send(miss.record).await.unwrap();
    rec_tx.send(back.record).await.unwrap();
    dial_tx
        .send(DialerEvent::AttemptEnded {
            task_id: id,
            number: "79161234567".into(),
            callback_id: "cb-9".into(),
            outcome: AttemptOutcome::Call(CallbackOutcome::Connected),
            originated_at: jiff::Timestamp::now(),
            ended_at: jiff::Timestamp::now(),
        })
        .await
        .unwrap();
    drop(rec_tx);
    drop(dial_tx);
    tokio::time::timeout(Duration::from_secs(60), observer)
        .await
        .expect("the observer ends when its channels close")
        .unwrap()
        .unwrap();
    assert_eq!(
        event_ids(&store),
        ["callback:cb-9", "missed:pbx1:1.1", "resolved:pbx1:1.1"]
    );
    let text = metrics.render();
    assert!(
        text.contains("perezvon_missed_calls_total{lost_at=\"queue\"} 1\n"),
        "{text}"
    );
    assert!(text.contains("perezvon_calls_total{direction=\"inbound\",status=\"answered\"} 1\n"));
    assert!(text.contains("perezvon_callbacks_total{outcome=\"connected\"} 1\n"));
}

/// Regression: the dialer's events reach the observer without back-pressure; a callback outcome
/// lost in a crash (or an overflow) must still be announced by the start-up catch-up, once.
#[test]
fn catch_up_announces_finished_attempts_once() {
    let mut store = Store::open_in_memory().unwrap();
    let cfg = cfg();
    let id = store.create_task(&task("79161234567")).unwrap();
    attempt(
        &mut store,
        id,
        "cb-9",
        AttemptOutcome::Call(CallbackOutcome::Connected),
        TaskState::Done,
    );
    // The attempt ended at t(130); a restart at t(200) looks an hour back.
    assert_eq!(
        notify::catch_up(&store, &cfg, t(200 - 3600), t(200)).unwrap(),
        1
    );
    assert_eq!(
        notify::catch_up(&store, &cfg, t(200 - 3600), t(200)).unwrap(),
        0
    );
    assert_eq!(event_ids(&store), vec!["callback:cb-9".to_string()]);
    // Attempts that ended before the window are not re-announced.
    let mut other = Store::open_in_memory().unwrap();
    let id = other.create_task(&task("79161234567")).unwrap();
    attempt(
        &mut other,
        id,
        "cb-10",
        AttemptOutcome::Call(CallbackOutcome::Connected),
        TaskState::Done,
    );
    assert_eq!(notify::catch_up(&other, &cfg, t(131), t(200)).unwrap(), 0);
    assert_eq!(notify::catch_up(&other, &cfg, t(129), t(200)).unwrap(), 1);
}
