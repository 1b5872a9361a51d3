//! The dialer loop against a fake Originator and a controllable clock: what is persisted, what
//! is sent, and when — including a crash in the middle of an attempt.

use std::sync::{Arc, Mutex};

use jiff::{SignedDuration, Timestamp};
use perezvon::callback::originate::{OriginateRequest, OriginateResponse};
use perezvon::callback::planner::{AttemptOutcome, TaskState};
use perezvon::calls::record::{CallRecord, CallbackOutcome, Direction, Status};
use perezvon::config::{Config, Target};
use perezvon::daemon::dialer::{
    Clock, Dialer, DialerEvent, DialerInput, OriginateError, Originator,
};
use perezvon::store::Store;

mod support;

#[derive(Clone, Default)]
struct Fake {
    sent: Arc<Mutex<Vec<OriginateRequest>>>,
    busy_agents: Arc<Mutex<bool>>,
    /// Free people reported when not busy (default 1).
    free: Arc<Mutex<Option<u32>>>,
    reject: Arc<Mutex<bool>>,
    /// The link is down: `is_up` says so and Originates are not sent.
    down: Arc<Mutex<bool>>,
    /// Drop the link after this many Originates were sent.
    drop_after: Arc<Mutex<Option<usize>>>,
}

impl Originator for Fake {
    async fn originate(&self, req: &OriginateRequest) -> Result<(), OriginateError> {
        if *self.down.lock().unwrap() {
            return Err(OriginateError::NotSent("not connected".into()));
        }
        self.sent.lock().unwrap().push(req.clone());
        if let Some(n) = *self.drop_after.lock().unwrap() {
            if self.sent.lock().unwrap().len() >= n {
                *self.down.lock().unwrap() = true;
            }
        }
        if *self.reject.lock().unwrap() {
            return Err(OriginateError::Rejected("Originate failed".into()));
        }
        Ok(())
    }
    async fn free_agents(&self, _t: &Target) -> Result<u32, OriginateError> {
        Ok(if *self.busy_agents.lock().unwrap() {
            0
        } else {
            self.free.lock().unwrap().unwrap_or(1)
        })
    }
    fn is_up(&self) -> bool {
        !*self.down.lock().unwrap()
    }
}

impl Fake {
    fn sent(&self) -> Vec<OriginateRequest> {
        self.sent.lock().unwrap().clone()
    }
}

/// Open Monday to Friday 09-18 Moscow; 2026-12-21 is a Monday.
const CONFIG: &str = r#"
[[asterisk]]
name = "lab"
username = "perezvon"
secret = "x"

[callback]
enabled = true
dial_template = "Local/{national}@customer-sim"
caller_id = "74951110000"
target = { context = "callback", exten = "201" }
delay = "1m"
max_attempts = 2
retry_every = "10m"
give_up_after = "24h"
allow = ["^79\\d{9}$"]
marker_variable = "CALLBACK_ID"

[hours]
timezone = "Europe/Moscow"
"#;

fn msk(s: &str) -> Timestamp {
    s.parse::<jiff::civil::DateTime>()
        .unwrap()
        .to_zoned(jiff::tz::TimeZone::get("Europe/Moscow").unwrap())
        .unwrap()
        .timestamp()
}

struct TestClock(Arc<Mutex<Timestamp>>);

impl TestClock {
    fn new(t: Timestamp) -> TestClock {
        TestClock(Arc::new(Mutex::new(t)))
    }
    fn clock(&self) -> Clock {
        let c = self.0.clone();
        Arc::new(move || *c.lock().unwrap())
    }
    fn set(&self, t: Timestamp) {
        *self.0.lock().unwrap() = t;
    }
    fn advance(&self, secs: i64) {
        let mut g = self.0.lock().unwrap();
        *g += SignedDuration::from_secs(secs);
    }
}

fn miss(number: &str, at: Timestamp) -> CallRecord {
    CallRecord {
        caller: Some(number.into()),
        caller_normalized: Some(number.into()),
        ..support::inbound_miss(
            &format!("{}.1", at.as_second()),
            at - SignedDuration::from_secs(10),
            10.0,
        )
    }
}

/// Hands the dialer a call from `number` missed just now.
async fn missed_now(d: &mut Dialer<Fake>, number: &str, clock: &TestClock) {
    d.handle(DialerInput::Record(Box::new(miss(number, clock.clock()()))))
        .await
        .unwrap();
}

fn response(action_id: &str, success: bool, reason: i64) -> DialerInput {
    DialerInput::Response(OriginateResponse {
        action_id: action_id.into(),
        success,
        reason: Some(reason),
        uniqueid: success.then(|| format!("{action_id}-c")),
    })
}

fn dialer(
    cfg: &Config,
    store: Store,
    fake: &Fake,
    clock: &TestClock,
) -> (Dialer<Fake>, tokio::sync::mpsc::Receiver<DialerEvent>) {
    let (tx, rx) = tokio::sync::mpsc::channel(100);
    let mut d = Dialer::new(cfg, store, fake.clone(), clock.clock(), Some(tx));
    d.recover().unwrap();
    (d, rx)
}

#[tokio::test]
async fn miss_to_originate_with_exact_headers_then_busy_then_connected() {
    let cfg = Config::from_toml(CONFIG).unwrap();
    let clock = TestClock::new(msk("2026-12-21T10:00:00"));
    let fake = Fake::default();
    let (mut d, mut events) = dialer(&cfg, Store::open_in_memory().unwrap(), &fake, &clock);

    missed_now(&mut d, "79261112233", &clock).await;
    assert_eq!(d.tasks().len(), 1);
    // Within the delay: nothing.
    clock.advance(59);
    d.tick().await.unwrap();
    assert!(fake.sent().is_empty());
    clock.advance(1);
    d.tick().await.unwrap();
    d.tick().await.unwrap();
    let sent = fake.sent();
    assert_eq!(sent.len(), 1, "one Originate, not one per tick");
    let req = &sent[0];
    let cb = req.ids.callback_id.clone();
    let got: Vec<(&str, &str)> = req
        .headers()
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .collect();
    let channel_id = format!("{cb}-c");
    let other_id = format!("{cb}-d");
    let var = format!("CALLBACK_ID={cb}");
    assert_eq!(
        got,
        vec![
            ("Action", "Originate"),
            ("ActionID", cb.as_str()),
            ("Channel", "Local/89261112233@customer-sim"),
            ("Context", "callback"),
            ("Exten", "201"),
            ("Priority", "1"),
            ("CallerID", "\"Callback\" <74951110000>"),
            ("Timeout", "30000"),
            ("Async", "true"),
            ("ChannelId", channel_id.as_str()),
            ("OtherChannelId", other_id.as_str()),
            ("Variable", var.as_str()),
        ]
    );
    // The attempt was on disk before the send.
    let a = d.store().attempt(&cb).unwrap().unwrap();
    assert_eq!(a.ended_at, None);
    assert_eq!(d.tasks()[0].state, TaskState::InProgress);

    // Someone else's OriginateResponse is ignored; ours (busy) ends the attempt.
    d.handle(response("cb-other-session", false, 5))
        .await
        .unwrap();
    assert_eq!(d.tasks()[0].state, TaskState::InProgress);
    clock.advance(3);
    d.handle(response(&cb, false, 5)).await.unwrap();
    let t = d.tasks()[0].clone();
    assert_eq!(t.state, TaskState::Pending);
    assert_eq!(
        t.last_outcome,
        Some(AttemptOutcome::Call(CallbackOutcome::Busy))
    );
    assert_eq!(t.next_attempt_at, msk("2026-12-21T10:11:00"));
    // Not before the spacing.
    clock.set(msk("2026-12-21T10:10:59"));
    d.tick().await.unwrap();
    assert_eq!(fake.sent().len(), 1);
    clock.set(msk("2026-12-21T10:11:00"));
    d.tick().await.unwrap();
    let sent = fake.sent();
    assert_eq!(sent.len(), 2);
    let cb2 = sent[1].ids.callback_id.clone();
    assert_ne!(cb, cb2);
    // Answered, then the tracker's record says connected: task done.
    d.handle(response(&cb2, true, 4)).await.unwrap();
    let mut rec = miss("79261112233", clock.clock()());
    rec.direction = Direction::Callback;
    rec.status = Status::Answered;
    rec.missed = false;
    rec.talk_secs = 40.0;
    rec.callback_id = Some(cb2.clone());
    rec.callback_outcome = Some(CallbackOutcome::Connected);
    d.handle(DialerInput::Record(Box::new(rec))).await.unwrap();
    assert!(d.tasks().is_empty());
    let all = d.store().list_tasks(true, 10).unwrap();
    assert_eq!(all[0].task.state, TaskState::Done);
    assert_eq!(all[0].close_reason.as_deref(), Some("connected"));

    let mut kinds = Vec::new();
    while let Ok(e) = events.try_recv() {
        kinds.push(match e {
            DialerEvent::TaskCreated { .. } => "created",
            DialerEvent::AttemptStarted { .. } => "started",
            DialerEvent::AttemptEnded { .. } => "ended",
            DialerEvent::TaskClosed { .. } => "closed",
        });
    }
    assert_eq!(
        kinds,
        ["created", "started", "ended", "started", "ended", "closed"]
    );
}

#[tokio::test]
async fn nothing_outside_hours_and_nothing_without_a_free_agent() {
    let cfg = Config::from_toml(CONFIG).unwrap();
    // Sunday evening (give_up_after is 24 h: Monday morning is still in time).
    let clock = TestClock::new(msk("2026-12-20T20:00:00"));
    let fake = Fake::default();
    let (mut d, _ev) = dialer(&cfg, Store::open_in_memory().unwrap(), &fake, &clock);
    missed_now(&mut d, "79261112233", &clock).await;
    for _ in 0..12 {
        clock.advance(1000);
        d.tick().await.unwrap();
    }
    assert!(fake.sent().is_empty(), "weekend: closed");
    // Monday 09:00, but every agent is busy.
    *fake.busy_agents.lock().unwrap() = true;
    clock.set(msk("2026-12-21T09:00:00"));
    d.tick().await.unwrap();
    assert!(fake.sent().is_empty(), "no free agent");
    *fake.busy_agents.lock().unwrap() = false;
    d.tick().await.unwrap();
    assert_eq!(fake.sent().len(), 1);
}

#[tokio::test]
async fn customer_calling_back_cancels_the_task() {
    let cfg = Config::from_toml(CONFIG).unwrap();
    let clock = TestClock::new(msk("2026-12-21T10:00:00"));
    let fake = Fake::default();
    let (mut d, _ev) = dialer(&cfg, Store::open_in_memory().unwrap(), &fake, &clock);
    // The verdicts are stored (as the pipeline does) before the dialer hears of them.
    let within = std::time::Duration::from_secs(7 * 86400);
    let first = miss("79261112233", clock.clock()());
    d.store().record_call_marked(&first, within, true).unwrap();
    d.handle(DialerInput::Record(Box::new(first)))
        .await
        .unwrap();
    // Same number missed again: one task, count 2.
    clock.advance(30);
    let second = miss("79261112233", clock.clock()());
    d.store().record_call_marked(&second, within, true).unwrap();
    d.handle(DialerInput::Record(Box::new(second)))
        .await
        .unwrap();
    assert_eq!(d.tasks().len(), 1);
    assert_eq!(d.tasks()[0].missed_count, 2);
    // A call that talks but resolves no miss (it began before the misses) leaves the task.
    let mut earlier = miss(
        "79261112233",
        clock.clock()() - SignedDuration::from_secs(3600),
    );
    earlier.linkedid = "earlier".into();
    earlier.status = Status::Answered;
    earlier.missed = false;
    earlier.lost_at = None;
    earlier.talk_secs = 60.0;
    d.store()
        .record_call_marked(&earlier, within, true)
        .unwrap();
    d.handle(DialerInput::Record(Box::new(earlier)))
        .await
        .unwrap();
    assert_eq!(d.tasks().len(), 1, "the report still says unresolved");
    // The customer calls again and talks.
    clock.advance(30);
    let mut again = miss("79261112233", clock.clock()());
    again.linkedid = "again".into();
    again.status = Status::Answered;
    again.missed = false;
    again.lost_at = None;
    again.talk_secs = 60.0;
    d.store().record_call_marked(&again, within, true).unwrap();
    d.handle(DialerInput::Record(Box::new(again)))
        .await
        .unwrap();
    assert!(d.tasks().is_empty());
    let all = d.store().list_tasks(true, 10).unwrap();
    assert_eq!(all[0].task.state, TaskState::Cancelled);
    assert_eq!(all[0].close_reason.as_deref(), Some("resolved_by_caller"));
    clock.advance(3600);
    d.tick().await.unwrap();
    assert!(fake.sent().is_empty());
}

#[tokio::test]
async fn no_callback_while_the_customer_is_on_a_call_with_us() {
    let cfg = Config::from_toml(CONFIG).unwrap();
    let clock = TestClock::new(msk("2026-12-21T10:00:00"));
    let fake = Fake::default();
    let (mut d, _ev) = dialer(&cfg, Store::open_in_memory().unwrap(), &fake, &clock);
    missed_now(&mut d, "79261112233", &clock).await;
    let due_at = d.tasks()[0].next_attempt_at;
    // The customer called again and is in the queue when the task falls due.
    d.handle(DialerInput::LiveCustomers(
        ["79261112233".to_string()].into(),
    ))
    .await
    .unwrap();
    for _ in 0..5 {
        clock.advance(60);
        d.tick().await.unwrap();
    }
    assert!(
        fake.sent().is_empty(),
        "no Originate while the number is live"
    );
    // Still pending, no attempt used, its time unchanged.
    let t = &d.tasks()[0];
    assert_eq!(
        (t.state, t.attempts, t.next_attempt_at),
        (TaskState::Pending, 0, due_at)
    );
    let stored = d.store().list_tasks(true, 10).unwrap();
    assert_eq!(stored[0].task.attempts, 0);
    // Other customers are not held up by it.
    missed_now(&mut d, "79261114455", &clock).await;
    clock.advance(60);
    d.tick().await.unwrap();
    let channels = || -> Vec<String> {
        fake.sent()
            .iter()
            .filter_map(|r| r.headers().iter().find(|(k, _)| *k == "Channel"))
            .map(|(_, v)| v.clone())
            .collect()
    };
    assert_eq!(channels(), vec!["Local/89261114455@customer-sim"]);
    // That attempt ends (busy), so the caps leave room again.
    let cb = fake.sent()[0].ids.callback_id.clone();
    d.handle(response(&cb, false, 5)).await.unwrap();
    // The call ended (missed again, say): the next tick dials the first customer.
    d.handle(DialerInput::LiveCustomers(Default::default()))
        .await
        .unwrap();
    clock.advance(1);
    d.tick().await.unwrap();
    assert_eq!(
        channels(),
        vec![
            "Local/89261114455@customer-sim",
            "Local/89261112233@customer-sim"
        ]
    );
}

#[tokio::test]
async fn bad_numbers_never_reach_an_originate() {
    let cfg = Config::from_toml(CONFIG).unwrap();
    let clock = TestClock::new(msk("2026-12-21T10:00:00"));
    let fake = Fake::default();
    let store = Store::open_in_memory().unwrap();
    let (mut d, _ev) = dialer(&cfg, store, &fake, &clock);
    for n in [
        "7926111\r\n2233",
        "7926111\nAction: Originate",
        "79261abc233",
        "+79261112233",
        "74951112233", // a Moscow landline: outside the mobile allow-list
        "49301234567",
        "anonymous",
    ] {
        missed_now(&mut d, n, &clock).await;
    }
    let mut withheld = miss("x", clock.clock()());
    withheld.caller_normalized = None;
    d.handle(DialerInput::Record(Box::new(withheld)))
        .await
        .unwrap();
    assert!(d.tasks().is_empty());
    clock.advance(3600);
    d.tick().await.unwrap();
    assert!(fake.sent().is_empty());
}

#[tokio::test]
async fn a_number_written_to_the_database_is_revalidated_before_dialling() {
    // A task smuggled into the database (older allow-list, manual edit) is refused at dial time.
    let cfg = Config::from_toml(CONFIG).unwrap();
    let clock = TestClock::new(msk("2026-12-21T10:00:00"));
    let fake = Fake::default();
    let store = Store::open_in_memory().unwrap();
    let (mut d0, _e) = dialer(&cfg, Store::open_in_memory().unwrap(), &fake, &clock);
    missed_now(&mut d0, "79261112233", &clock).await;
    let mut t = d0.tasks()[0].clone();
    t.number = "7926\r\nAction: Logoff".into();
    store.create_task(&t).unwrap();
    let (mut d, _ev) = dialer(&cfg, store, &fake, &clock);
    clock.advance(120);
    d.tick().await.unwrap();
    assert!(fake.sent().is_empty());
    let all = d.store().list_tasks(true, 10).unwrap();
    assert_eq!(all[0].close_reason.as_deref(), Some("number_refused"));
}

#[tokio::test]
async fn crash_mid_attempt_then_restart_is_unknown_until_retried() {
    let cfg = Config::from_toml(CONFIG).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("perezvon.db");
    let clock = TestClock::new(msk("2026-12-21T10:00:00"));
    let fake = Fake::default();
    {
        let (mut d, _ev) = dialer(&cfg, Store::open(&db).unwrap(), &fake, &clock);
        missed_now(&mut d, "79261112233", &clock).await;
        clock.advance(60);
        d.tick().await.unwrap();
        assert_eq!(fake.sent().len(), 1);
        // The process dies here: no outcome ever recorded.
    }
    clock.advance(30);
    let (mut d, _ev) = dialer(&cfg, Store::open(&db).unwrap(), &fake, &clock);
    // The attempt may be a call still up: adopted, its task stays in progress, nothing dials.
    assert_eq!(d.tasks()[0].state, TaskState::InProgress);
    assert_eq!(d.in_flight(), 1);
    clock.advance(5);
    d.tick().await.unwrap();
    assert_eq!(fake.sent().len(), 1);
    // The live channels are read after the link comes up: its call is not among them.
    d.handle(DialerInput::Reconciled(Some(Default::default())))
        .await
        .unwrap();
    // Its outcome is unknown (it may have reached the customer): the task says so and is
    // never dialled again by itself (issue 14).
    let t = d.tasks()[0].clone();
    assert_eq!(t.state, TaskState::Unknown);
    assert_eq!(t.last_outcome, Some(AttemptOutcome::Unknown));
    let row = d.store().task(t.id).unwrap().unwrap();
    assert_eq!(row.close_reason.as_deref(), Some("outcome_unknown"));
    assert_eq!(row.closed_at, None);
    for _ in 0..60 {
        clock.advance(59);
        d.tick().await.unwrap();
    }
    assert_eq!(
        fake.sent().len(),
        1,
        "an unknown task is not re-dialled by itself"
    );
    // An explicit `callbacks retry` (another connection, as the CLI does) makes it pending.
    let now = clock.clock()();
    Store::open(&db)
        .unwrap()
        .retry_task(t.id, now, 1, now + SignedDuration::from_hours(24))
        .unwrap();
    clock.advance(6);
    d.tick().await.unwrap();
    assert_eq!(fake.sent().len(), 2);
    // Attempt 2 of 2 rejected by Asterisk: given up.
    *fake.reject.lock().unwrap() = true;
    assert_eq!(d.tasks()[0].state, TaskState::InProgress);
    let cb = fake.sent()[1].ids.callback_id.clone();
    d.handle(response(&cb, false, 3)).await.unwrap();
    assert!(d.tasks().is_empty());
    let all = d.store().list_tasks(true, 10).unwrap();
    assert_eq!(all[0].task.state, TaskState::GivenUp);
    assert_eq!(all[0].close_reason.as_deref(), Some("max_attempts"));
    assert_eq!(d.store().attempts_of(all[0].task.id).unwrap().len(), 2);
}

#[tokio::test]
async fn attempt_without_any_outcome_is_unknown_until_a_new_miss() {
    let cfg = Config::from_toml(CONFIG).unwrap();
    let clock = TestClock::new(msk("2026-12-21T10:00:00"));
    let fake = Fake::default();
    let (mut d, _ev) = dialer(&cfg, Store::open_in_memory().unwrap(), &fake, &clock);
    missed_now(&mut d, "79261112233", &clock).await;
    clock.advance(60);
    d.tick().await.unwrap();
    // originate_timeout 30 s + 30 s grace.
    clock.advance(59);
    d.tick().await.unwrap();
    assert_eq!(d.tasks()[0].state, TaskState::InProgress);
    clock.advance(1);
    d.tick().await.unwrap();
    assert_eq!(d.tasks()[0].state, TaskState::Unknown);
    assert_eq!(d.tasks()[0].last_outcome, Some(AttemptOutcome::Unknown));
    // A new miss of the number is the customer asking again: the task is reopened with a fresh
    // round of attempts, `delay` after that miss.
    clock.advance(600);
    missed_now(&mut d, "79261112233", &clock).await;
    let t = d.tasks()[0].clone();
    assert_eq!((t.state, t.missed_count), (TaskState::Pending, 2));
    assert_eq!(
        t.next_attempt_at,
        clock.clock()() + SignedDuration::from_secs(60)
    );
    assert_eq!(t.attempt_budget, t.attempts + 2);
    clock.advance(60);
    d.tick().await.unwrap();
    assert_eq!(fake.sent().len(), 2);
}

#[tokio::test]
async fn cli_cancel_in_another_connection_is_seen() {
    let cfg = Config::from_toml(CONFIG).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("perezvon.db");
    let clock = TestClock::new(msk("2026-12-21T10:00:00"));
    let fake = Fake::default();
    let (mut d, _ev) = dialer(&cfg, Store::open(&db).unwrap(), &fake, &clock);
    missed_now(&mut d, "79261112233", &clock).await;
    let id = d.tasks()[0].id;
    let other = Store::open(&db).unwrap();
    assert!(other
        .close_task(id, TaskState::Cancelled, "cli", clock.clock()())
        .unwrap());
    clock.advance(120);
    d.tick().await.unwrap();
    assert!(fake.sent().is_empty());
    assert!(d.tasks().is_empty());
}

#[tokio::test]
async fn free_people_bound_the_attempts_of_a_tick() {
    let mut cfg = Config::from_toml(CONFIG).unwrap();
    cfg.callback.max_concurrent = 10;
    cfg.callback.max_concurrent_per_target = 10;
    let clock = TestClock::new(msk("2026-12-21T10:00:00"));
    let fake = Fake::default();
    *fake.free.lock().unwrap() = Some(2);
    let (mut d, _ev) = dialer(&cfg, Store::open_in_memory().unwrap(), &fake, &clock);
    for n in ["79261110001", "79261110002", "79261110003"] {
        missed_now(&mut d, n, &clock).await;
    }
    assert_eq!(d.tasks().len(), 3);
    clock.advance(60);
    d.tick().await.unwrap();
    assert_eq!(
        fake.sent().len(),
        2,
        "two free people, two attempts: {:?}",
        d.tasks()
    );
    // Those two are in flight and will need both people: nothing more while they last.
    d.tick().await.unwrap();
    assert_eq!(fake.sent().len(), 2);
    let cb = fake.sent()[0].ids.callback_id.clone();
    d.handle(response(&cb, false, 3)).await.unwrap();
    d.tick().await.unwrap();
    assert_eq!(fake.sent().len(), 3, "one person free again");
}

/// Config with up to 10 attempts at once and no free-agent check (the batch tests).
fn batch_config() -> Config {
    let toml = CONFIG.replace(
        "[callback]\n",
        "[callback]\nmax_concurrent = 10\nmax_concurrent_per_target = 10\nrequire_free_agent = false\n",
    );
    Config::from_toml(&toml).unwrap()
}

#[tokio::test]
async fn a_link_drop_during_a_batch_burns_no_attempt() {
    let cfg = batch_config();
    let clock = TestClock::new(msk("2026-12-21T10:00:00"));
    let fake = Fake::default();
    let (mut d, _ev) = dialer(&cfg, Store::open_in_memory().unwrap(), &fake, &clock);
    for i in 0..10 {
        missed_now(&mut d, &format!("7926111{i:04}"), &clock).await;
        clock.advance(1);
    }
    // The link drops after the third Originate: the fourth finds it down, the rest wait.
    *fake.drop_after.lock().unwrap() = Some(3);
    clock.advance(60);
    d.tick().await.unwrap();
    assert_eq!(fake.sent().len(), 3);
    let tasks = d.store().list_tasks(true, 100).unwrap();
    let counted: u32 = tasks.iter().map(|t| t.task.attempts).sum();
    assert_eq!(counted, 3, "only the Originates that left count");
    for t in &tasks {
        let attempts = d.store().attempts_of(t.task.id).unwrap();
        assert!(
            attempts.iter().all(|a| a.outcome.is_none()),
            "nothing burned as failed: {attempts:?}"
        );
        if attempts.is_empty() {
            assert_eq!(t.task.state, TaskState::Pending);
            assert_eq!(t.task.last_attempt_at, None);
        }
    }
    // While down, ticks start nothing and judge nothing.
    for _ in 0..5 {
        clock.advance(60);
        d.tick().await.unwrap();
    }
    assert_eq!(fake.sent().len(), 3);
    // Back up: the seven that waited go out, each counted once.
    *fake.drop_after.lock().unwrap() = None;
    *fake.down.lock().unwrap() = false;
    d.tick().await.unwrap();
    assert_eq!(fake.sent().len(), 10);
    let counted: u32 = d
        .store()
        .list_tasks(true, 100)
        .unwrap()
        .iter()
        .map(|t| t.task.attempts)
        .sum();
    assert_eq!(counted, 10);
}

#[tokio::test]
async fn a_restart_during_a_connected_callback_adopts_it_and_keeps_its_outcome() {
    let cfg = Config::from_toml(CONFIG).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("perezvon.db");
    let clock = TestClock::new(msk("2026-12-21T10:00:00"));
    let fake = Fake::default();
    let cb = {
        let (mut d, _ev) = dialer(&cfg, Store::open(&db).unwrap(), &fake, &clock);
        missed_now(&mut d, "79261112233", &clock).await;
        clock.advance(60);
        d.tick().await.unwrap();
        let cb = fake.sent()[0].ids.callback_id.clone();
        d.handle(response(&cb, true, 4)).await.unwrap();
        cb
        // SIGTERM (or a crash) here, the customer talking to the agent.
    };
    clock.advance(20);
    let (mut d, _ev) = dialer(&cfg, Store::open(&db).unwrap(), &fake, &clock);
    // The new session's snapshot lists the call: it is still in progress.
    d.handle(DialerInput::Reconciled(Some(
        [cb.clone()].into_iter().collect(),
    )))
    .await
    .unwrap();
    d.handle(DialerInput::LiveCallbacks(
        [cb.clone()].into_iter().collect(),
    ))
    .await
    .unwrap();
    // A long conversation: past every short deadline, nothing is re-dialled or judged.
    for _ in 0..30 {
        clock.advance(60);
        d.tick().await.unwrap();
    }
    assert_eq!(
        fake.sent().len(),
        1,
        "never dialled during the conversation"
    );
    assert_eq!(d.tasks()[0].state, TaskState::InProgress);
    // The call ends: its record carries the real outcome.
    let mut rec = miss("79261112233", clock.clock()());
    rec.linkedid = format!("{cb}-c");
    rec.direction = Direction::Callback;
    rec.status = Status::Answered;
    rec.missed = false;
    rec.callback_id = Some(cb.clone());
    rec.callback_outcome = Some(CallbackOutcome::Connected);
    rec.talk_secs = 1800.0;
    d.handle(DialerInput::Record(Box::new(rec))).await.unwrap();
    assert!(d.tasks().is_empty());
    let all = d.store().list_tasks(true, 10).unwrap();
    assert_eq!(all[0].task.state, TaskState::Done);
    let attempts = d.store().attempts_of(all[0].task.id).unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(
        attempts[0].outcome,
        Some(AttemptOutcome::Call(CallbackOutcome::Connected))
    );
}

#[tokio::test]
async fn an_attempt_whose_call_is_up_is_never_timed_out_as_unknown() {
    let cfg = Config::from_toml(CONFIG).unwrap();
    let clock = TestClock::new(msk("2026-12-21T10:00:00"));
    let fake = Fake::default();
    let (mut d, _ev) = dialer(&cfg, Store::open_in_memory().unwrap(), &fake, &clock);
    missed_now(&mut d, "79261112233", &clock).await;
    clock.advance(60);
    d.tick().await.unwrap();
    let cb = fake.sent()[0].ids.callback_id.clone();
    // The OriginateResponse was lost (link cut), but the call is live.
    d.handle(DialerInput::LiveCallbacks(
        [cb.clone()].into_iter().collect(),
    ))
    .await
    .unwrap();
    for _ in 0..10 {
        clock.advance(60);
        d.tick().await.unwrap();
    }
    assert_eq!(d.in_flight(), 1);
    assert_eq!(d.tasks()[0].state, TaskState::InProgress);
    assert_eq!(fake.sent().len(), 1);
}

#[tokio::test]
async fn a_stored_miss_the_dialer_never_saw_gets_its_task_at_start_up() {
    let cfg = Config::from_toml(CONFIG).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("perezvon.db");
    let clock = TestClock::new(msk("2026-12-21T10:00:00"));
    let store = Store::open(&db).unwrap();
    // Committed by the pipeline, marked for the dialer; the process died before the dialer
    // saw it.
    let rec = miss("79261112233", clock.clock()());
    store
        .record_call_marked(&rec, std::time::Duration::from_secs(86400), true)
        .unwrap();
    assert_eq!(store.dialer_backlog().unwrap(), 1);
    let fake = Fake::default();
    let (mut d, _ev) = dialer(&cfg, Store::open(&db).unwrap(), &fake, &clock);
    assert_eq!(d.tasks().len(), 1);
    assert_eq!(d.tasks()[0].number, "79261112233");
    assert_eq!(d.store().dialer_backlog().unwrap(), 0);
    // The message that was in flight arrives late: not a second miss.
    d.handle(DialerInput::Record(Box::new(rec))).await.unwrap();
    assert_eq!(d.tasks()[0].missed_count, 1);
    // A restart acts on nothing twice.
    drop(d);
    let (d, _ev) = dialer(&cfg, Store::open(&db).unwrap(), &fake, &clock);
    assert_eq!(d.tasks()[0].missed_count, 1);
}

/// A callback record of attempt `cb` the tracker would emit, with `outcome`.
fn callback_record(cb: &str, number: &str, at: Timestamp, outcome: CallbackOutcome) -> CallRecord {
    let mut rec = miss(number, at);
    rec.direction = Direction::Callback;
    rec.missed = false;
    rec.lost_at = None;
    rec.callback_id = Some(cb.into());
    rec.callback_outcome = Some(outcome);
    rec
}

#[tokio::test]
async fn a_sip_busy_failure_zero_waits_for_the_record_which_says_busy() {
    let cfg = Config::from_toml(CONFIG).unwrap();
    let clock = TestClock::new(msk("2026-12-21T10:00:00"));
    let fake = Fake::default();
    let (mut d, _events) = dialer(&cfg, Store::open_in_memory().unwrap(), &fake, &clock);
    missed_now(&mut d, "79261112255", &clock).await;
    clock.advance(60);
    d.tick().await.unwrap();
    let cb = fake.sent()[0].ids.callback_id.clone();
    // Failure/0: the Reason says nothing; the attempt stays open for the record.
    d.handle(response(&cb, false, 0)).await.unwrap();
    assert_eq!(d.tasks()[0].state, TaskState::InProgress);
    assert_eq!(d.in_flight(), 1);
    let a = d.store().attempt(&cb).unwrap().unwrap();
    assert_eq!(a.answered_at, None, "not answered");
    // The tracker's record of the call (DialEnd BUSY, Hangup Cause 17): busy.
    let rec = callback_record(&cb, "79261112255", clock.clock()(), CallbackOutcome::Busy);
    d.handle(DialerInput::Record(Box::new(rec))).await.unwrap();
    assert_eq!(d.in_flight(), 0);
    let t = d.tasks()[0].clone();
    assert_eq!(t.state, TaskState::Pending);
    assert_eq!(
        t.last_outcome,
        Some(AttemptOutcome::Call(CallbackOutcome::Busy))
    );
}

#[tokio::test]
async fn a_failure_zero_with_no_channel_at_all_fails_after_a_short_wait() {
    let cfg = Config::from_toml(CONFIG).unwrap();
    let clock = TestClock::new(msk("2026-12-21T10:00:00"));
    let fake = Fake::default();
    let (mut d, _events) = dialer(&cfg, Store::open_in_memory().unwrap(), &fake, &clock);
    missed_now(&mut d, "79261112255", &clock).await;
    clock.advance(60);
    d.tick().await.unwrap();
    let cb = fake.sent()[0].ids.callback_id.clone();
    d.handle(response(&cb, false, 0)).await.unwrap();
    // No record comes (the endpoint does not exist: no channel was created).
    clock.advance(29);
    d.tick().await.unwrap();
    assert_eq!(d.in_flight(), 1);
    clock.advance(1);
    d.tick().await.unwrap();
    assert_eq!(d.in_flight(), 0);
    assert_eq!(
        d.tasks()[0].last_outcome,
        Some(AttemptOutcome::Call(CallbackOutcome::Failed))
    );
    // A late record still settles nothing twice (the attempt is over).
    let rec = callback_record(&cb, "79261112255", clock.clock()(), CallbackOutcome::Busy);
    d.handle(DialerInput::Record(Box::new(rec))).await.unwrap();
    assert_eq!(
        d.tasks()[0].last_outcome,
        Some(AttemptOutcome::Call(CallbackOutcome::Failed))
    );
}

#[tokio::test]
async fn a_late_record_settles_an_unknown_attempt_with_its_real_outcome() {
    let cfg = Config::from_toml(CONFIG).unwrap();
    let clock = TestClock::new(msk("2026-12-21T10:00:00"));
    let fake = Fake::default();
    let (mut d, _ev) = dialer(&cfg, Store::open_in_memory().unwrap(), &fake, &clock);
    missed_now(&mut d, "79261112233", &clock).await;
    clock.advance(60);
    d.tick().await.unwrap();
    let cb = fake.sent()[0].ids.callback_id.clone();
    // No response within the deadline: unknown.
    clock.advance(60);
    d.tick().await.unwrap();
    assert_eq!(d.tasks()[0].state, TaskState::Unknown);
    // The tracker's record of the call arrives late: the customer was busy. The task need
    // not wait for an operator: pending, spaced from the attempt's start (10:01 + 10 min).
    let rec = callback_record(&cb, "79261112233", clock.clock()(), CallbackOutcome::Busy);
    d.handle(DialerInput::Record(Box::new(rec))).await.unwrap();
    let t = d.tasks()[0].clone();
    assert_eq!(t.state, TaskState::Pending);
    assert_eq!(
        t.last_outcome,
        Some(AttemptOutcome::Call(CallbackOutcome::Busy))
    );
    assert_eq!(t.next_attempt_at, msk("2026-12-21T10:11:00"));
    let a = d.store().attempt(&cb).unwrap().unwrap();
    assert_eq!(a.outcome, Some(AttemptOutcome::Call(CallbackOutcome::Busy)));
    // A duplicate of the record changes nothing.
    let rec = callback_record(
        &cb,
        "79261112233",
        clock.clock()(),
        CallbackOutcome::NoAnswer,
    );
    d.handle(DialerInput::Record(Box::new(rec))).await.unwrap();
    assert_eq!(
        d.tasks()[0].last_outcome,
        Some(AttemptOutcome::Call(CallbackOutcome::Busy))
    );
    clock.set(msk("2026-12-21T10:11:00"));
    d.tick().await.unwrap();
    assert_eq!(fake.sent().len(), 2);
}
