//! Issue 14 through the dialer loop, against a fake Originator and a controllable clock:
//! requested callbacks (press 1), owned callbacks, dispositions and the do-not-call list.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jiff::{SignedDuration, Timestamp};
use perezvon::ami::Message;
use perezvon::callback::originate::{OriginateRequest, OriginateResponse};
use perezvon::callback::planner::TaskState;
use perezvon::callback::request::{self, Disposition, TaskKind};
use perezvon::calls::record::{CallRecord, Direction, LostAt, Status};
use perezvon::config::{Config, Target};
use perezvon::daemon::dialer::{Clock, Dialer, DialerInput, OriginateError, Originator};
use perezvon::store::Store;

mod support;

#[derive(Clone, Default)]
struct Fake {
    sent: Arc<Mutex<Vec<OriginateRequest>>>,
    /// Free people per target key (default 1).
    free: Arc<Mutex<HashMap<String, u32>>>,
    /// Callers waiting per queue (default 0).
    waiting: Arc<Mutex<HashMap<String, u32>>>,
}

impl Originator for Fake {
    async fn originate(&self, req: &OriginateRequest) -> Result<(), OriginateError> {
        self.sent.lock().unwrap().push(req.clone());
        Ok(())
    }
    async fn free_agents(&self, t: &Target) -> Result<u32, OriginateError> {
        Ok(self
            .free
            .lock()
            .unwrap()
            .get(&t.key())
            .copied()
            .unwrap_or(1))
    }
    fn is_up(&self) -> bool {
        true
    }
    async fn queue_callers(&self, queue: &str) -> Result<u32, OriginateError> {
        Ok(self
            .waiting
            .lock()
            .unwrap()
            .get(queue)
            .copied()
            .unwrap_or(0))
    }
}

impl Fake {
    fn sent(&self) -> Vec<OriginateRequest> {
        self.sent.lock().unwrap().clone()
    }
    fn header(req: &OriginateRequest, name: &str) -> String {
        req.headers()
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }
}

const CONFIG: &str = r#"
[[asterisk]]
name = "lab"
username = "perezvon"
secret = "x"

[callback]
enabled = true
dial_template = "Local/{national}@customer-sim"
caller_id = "74951110000"
target = { queue = "sales" }
delay = "1m"
max_attempts = 3
retry_every = "10m"
allow = ["^79\\d{9}$"]
owner_wait = "10m"
owner_endpoint = "PJSIP/{agent}"
announce = "perezvon/missed-caller"
agent_caller_name = "{number} missed {count}x"

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
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap()
    }
    fn advance(&self, secs: i64) {
        *self.0.lock().unwrap() += SignedDuration::from_secs(secs);
    }
}

fn dialer(cfg: &Config, store: Store, fake: &Fake, clock: &TestClock) -> Dialer<Fake> {
    let mut d = Dialer::new(cfg, store, fake.clone(), clock.clock(), None);
    d.recover().unwrap();
    d
}

/// The `UserEvent` Asterisk sends for `UserEvent(PerezvonCallback,...)` on the caller's channel.
fn user_event(name: &str, linkedid: &str, caller: &str, extra: &[(&str, &str)]) -> DialerInput {
    let mut pairs = vec![
        ("Event", "UserEvent"),
        ("Channel", "PJSIP/trunk-00000007"),
        ("CallerIDNum", caller),
        ("Uniqueid", linkedid),
        ("Linkedid", linkedid),
        ("UserEvent", name),
    ];
    pairs.extend_from_slice(extra);
    let m = Message::from_pairs(&pairs);
    DialerInput::User {
        server: "lab".into(),
        request: request::parse(&m).unwrap().unwrap(),
    }
}

fn miss(linkedid: &str, number: &str, at: Timestamp) -> CallRecord {
    CallRecord {
        caller: Some(format!("+{number}")),
        caller_normalized: Some(number.into()),
        ..support::inbound_miss(linkedid, at - SignedDuration::from_secs(30), 30.0)
    }
}

#[tokio::test]
async fn press_1_makes_one_requested_task_that_waits_for_the_queue_and_a_free_person() {
    let cfg = Config::from_toml(CONFIG).unwrap();
    let clock = TestClock::new(msk("2026-12-21T10:00:00"));
    let fake = Fake::default();
    fake.waiting.lock().unwrap().insert("sales".into(), 2);
    let mut d = dialer(&cfg, Store::open_in_memory().unwrap(), &fake, &clock);
    let joined = (clock.now() - SignedDuration::from_secs(120))
        .as_second()
        .to_string();
    d.handle(user_event(
        "PerezvonCallback",
        "1766300000.5",
        "+79161234567",
        &[("Queue", "sales"), ("Joined", &joined)],
    ))
    .await
    .unwrap();
    // The same call then ends as a miss in the queue: no second task, no count.
    d.handle(DialerInput::Record(Box::new(miss(
        "1766300000.5",
        "79161234567",
        clock.now(),
    ))))
    .await
    .unwrap();
    let tasks = d.store().list_tasks(true, 10).unwrap();
    assert_eq!(tasks.len(), 1);
    let t = &tasks[0].task;
    assert_eq!(t.routing.kind, TaskKind::Requested);
    assert_eq!(t.missed_count, 1);
    assert_eq!(t.routing.queue.as_deref(), Some("sales"));
    assert_eq!(t.routing.joined_at.unwrap().as_second().to_string(), joined);

    // Callers wait in sales: the request does not jump ahead of them.
    d.tick().await.unwrap();
    assert!(fake.sent().is_empty());
    // The queue empties, but nobody is free.
    fake.waiting.lock().unwrap().insert("sales".into(), 0);
    fake.free.lock().unwrap().insert("queue:sales".into(), 0);
    clock.advance(1);
    d.tick().await.unwrap();
    assert!(fake.sent().is_empty(), "no free person");
    fake.free.lock().unwrap().clear();
    clock.advance(1);
    d.tick().await.unwrap();
    let sent = fake.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].number.as_str(), "79161234567");
    assert_eq!(
        Fake::header(&sent[0], "Data"),
        "sales,,,perezvon/missed-caller"
    );
}

#[tokio::test]
async fn a_number_entered_by_dtmf_is_normalised_and_guarded() {
    let cfg = Config::from_toml(CONFIG).unwrap();
    let clock = TestClock::new(msk("2026-12-21T10:00:00"));
    let fake = Fake::default();
    let mut d = dialer(&cfg, Store::open_in_memory().unwrap(), &fake, &clock);
    // A national number typed on the keypad: normalised like any caller's.
    d.handle(user_event(
        "PerezvonCallback",
        "1766300000.1",
        "+74951234567",
        &[("Number", "89031234567")],
    ))
    .await
    .unwrap();
    // A premium number, and one abroad: refused by the toll-fraud guard.
    for (id, n) in [
        ("1766300000.2", "88091234567"),
        ("1766300000.3", "0044791112345"),
    ] {
        d.handle(user_event(
            "PerezvonCallback",
            id,
            "+74951234567",
            &[("Number", n)],
        ))
        .await
        .unwrap();
    }
    let tasks = d.store().list_tasks(true, 10).unwrap();
    let numbers: Vec<&str> = tasks.iter().map(|r| r.task.number.as_str()).collect();
    assert_eq!(numbers, ["79031234567"]);
    d.tick().await.unwrap();
    assert_eq!(fake.sent()[0].number.as_str(), "79031234567");
}

#[tokio::test]
async fn press_9_and_the_cli_list_keep_a_number_from_any_originate() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let cfg = Config::from_toml(CONFIG).unwrap();
    let clock = TestClock::new(msk("2026-12-21T10:00:00"));
    let fake = Fake::default();
    let mut d = dialer(&cfg, Store::open(&db).unwrap(), &fake, &clock);
    // Press 9 during a call: the caller's later miss makes no task.
    d.handle(user_event(
        "PerezvonNoCall",
        "1766300000.9",
        "+79161234567",
        &[],
    ))
    .await
    .unwrap();
    d.handle(DialerInput::Record(Box::new(miss(
        "1766300000.9",
        "79161234567",
        clock.now(),
    ))))
    .await
    .unwrap();
    assert!(d.store().list_tasks(true, 10).unwrap().is_empty());
    // A task exists, and another process (`perezvon dnc add`) lists its number just before it
    // falls due: the dial-time check refuses it and cancels the task.
    d.handle(DialerInput::Record(Box::new(miss(
        "1766300001.1",
        "79162223344",
        clock.now(),
    ))))
    .await
    .unwrap();
    let mut other = Store::open(&db).unwrap();
    other.dnc_add("79162223344", "cli", clock.now()).unwrap();
    // A third number is listed behind the dialer's back (plain SQL, no task cancelled): only
    // the dial-time check can see it.
    d.handle(DialerInput::Record(Box::new(miss(
        "1766300001.2",
        "79165556677",
        clock.now(),
    ))))
    .await
    .unwrap();
    clock.advance(120);
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute(
        "INSERT INTO dnc (number, source, added_at) VALUES ('79165556677', 'test', 0)",
        [],
    )
    .unwrap();
    d.tick().await.unwrap();
    assert!(fake.sent().is_empty(), "{:?}", fake.sent());
    let rows = d.store().list_tasks(true, 10).unwrap();
    assert!(rows.iter().all(|r| r.task.state == TaskState::Cancelled
        && r.close_reason.as_deref() == Some("do_not_call")));
    assert_eq!(rows.len(), 2);
}

#[tokio::test]
async fn the_dnc_file_is_read_and_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dnc.txt");
    std::fs::write(&file, "# never\n+7 916 123-45-67\n").unwrap();
    let cfg = Config::from_toml(&format!("{CONFIG}\n",).replace(
        "owner_wait = \"10m\"",
        &format!(
            "owner_wait = \"10m\"\ndnc_file = {:?}",
            file.display().to_string()
        ),
    ))
    .unwrap();
    let clock = TestClock::new(msk("2026-12-21T10:00:00"));
    let fake = Fake::default();
    let mut d = dialer(&cfg, Store::open_in_memory().unwrap(), &fake, &clock);
    d.handle(DialerInput::Record(Box::new(miss(
        "1.1",
        "79161234567",
        clock.now(),
    ))))
    .await
    .unwrap();
    d.handle(DialerInput::Record(Box::new(miss(
        "1.2",
        "79167654321",
        clock.now(),
    ))))
    .await
    .unwrap();
    // The second number is added to the file later; the next tick reads it again.
    std::fs::write(
        &file,
        "# never\n+7 916 123-45-67\n89167654321\nnot a number\n",
    )
    .unwrap();
    clock.advance(120);
    d.tick().await.unwrap();
    assert!(fake.sent().is_empty(), "{:?}", fake.sent());
    assert_eq!(d.store().list_tasks(false, 10).unwrap().len(), 0);
}

/// An answered inbound call of `number` talked by `agent`.
fn conversation(linkedid: &str, number: &str, agent: &str, at: Timestamp) -> CallRecord {
    CallRecord {
        status: Status::Answered,
        missed: false,
        answered_at: Some(at + SignedDuration::from_secs(5)),
        talk_secs: 120.0,
        agent: Some(agent.into()),
        lost_at: None,
        ..miss(linkedid, number, at + SignedDuration::from_secs(130))
    }
}

#[tokio::test]
async fn an_owned_callback_goes_to_the_last_agent_then_to_the_group() {
    let cfg = Config::from_toml(CONFIG).unwrap();
    let clock = TestClock::new(msk("2026-12-21T10:00:00"));
    let fake = Fake::default();
    let store = Store::open_in_memory().unwrap();
    store
        .record_call(
            &conversation("0.1", "79161234567", "202", msk("2026-12-18T15:00:00")),
            std::time::Duration::from_secs(3600),
        )
        .unwrap();
    let mut d = dialer(&cfg, store, &fake, &clock);
    d.handle(DialerInput::Record(Box::new(miss(
        "1.1",
        "79161234567",
        clock.now(),
    ))))
    .await
    .unwrap();
    let t = d.store().list_tasks(false, 1).unwrap()[0].task.clone();
    assert_eq!(t.routing.owner.as_deref(), Some("202"));
    // Agent 202 is busy: the task waits for them (not the group) while it is theirs.
    fake.free.lock().unwrap().insert("PJSIP/202".into(), 0);
    clock.advance(61);
    d.tick().await.unwrap();
    assert!(fake.sent().is_empty());
    // Free now: called through them, with the announcement and the caller name.
    fake.free.lock().unwrap().clear();
    clock.advance(1);
    d.tick().await.unwrap();
    let sent = fake.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        Fake::header(&sent[0], "Data"),
        "PJSIP/202,30,A(perezvon/missed-caller)"
    );
    assert!(sent[0]
        .headers()
        .iter()
        .any(|(k, v)| *k == "Variable" && v == "PEREZVON_CALLER_NAME=+79161234567 missed 1x"));
    // The customer answers, 202 does not take it: the group gets it after `delay`.
    let cb = sent[0].ids.callback_id.clone();
    d.handle(DialerInput::Response(OriginateResponse {
        action_id: cb.clone(),
        success: true,
        reason: Some(4),
        uniqueid: Some(format!("{cb}-c")),
    }))
    .await
    .unwrap();
    let rec = CallRecord {
        direction: Direction::Callback,
        status: Status::Missed,
        missed: false,
        caller: None,
        caller_normalized: None,
        callee: Some("79161234567".into()),
        callee_normalized: Some("79161234567".into()),
        answered_at: None,
        callback_id: Some(cb.clone()),
        callback_outcome: Some(perezvon::calls::record::CallbackOutcome::AgentMissed),
        lost_at: Some(LostAt::User),
        linkedid: format!("{cb}-c"),
        ..miss(
            "x",
            "79161234567",
            clock.now() + SignedDuration::from_secs(20),
        )
    };
    clock.advance(30);
    d.handle(DialerInput::Record(Box::new(rec))).await.unwrap();
    let t = d.store().task(t.id).unwrap().unwrap().task;
    assert_eq!(t.state, TaskState::Pending);
    assert!(t.routing.owner_at(clock.now()).is_none(), "released");
    clock.advance(61);
    d.tick().await.unwrap();
    let sent = fake.sent();
    assert_eq!(sent.len(), 2);
    assert_eq!(Fake::header(&sent[1], "Application"), "Queue");
    assert_eq!(
        Fake::header(&sent[1], "Data"),
        "sales,,,perezvon/missed-caller"
    );
}

#[tokio::test]
async fn the_user_whose_direct_number_was_called_owns_the_callback_until_owner_wait() {
    let cfg = Config::from_toml(CONFIG).unwrap();
    let clock = TestClock::new(msk("2026-12-21T10:00:00"));
    let fake = Fake::default();
    fake.free.lock().unwrap().insert("PJSIP/305".into(), 0);
    let mut d = dialer(&cfg, Store::open_in_memory().unwrap(), &fake, &clock);
    let rec = CallRecord {
        lost_at: Some(LostAt::User),
        agent: Some("305".into()),
        ..miss("1.1", "79161234567", clock.now())
    };
    d.handle(DialerInput::Record(Box::new(rec))).await.unwrap();
    clock.advance(61);
    d.tick().await.unwrap();
    assert!(fake.sent().is_empty(), "305 is busy and the task is theirs");
    // Ten minutes after the miss the group takes it.
    clock.advance(600);
    d.tick().await.unwrap();
    assert_eq!(Fake::header(&fake.sent()[0], "Application"), "Queue");
}

#[tokio::test]
async fn an_agent_disposition_by_feature_code_closes_reschedules_or_lists() {
    let cfg = Config::from_toml(CONFIG).unwrap();
    let clock = TestClock::new(msk("2026-12-21T10:00:00"));
    let fake = Fake::default();
    let mut d = dialer(&cfg, Store::open_in_memory().unwrap(), &fake, &clock);
    d.handle(DialerInput::Record(Box::new(miss(
        "1.1",
        "79161234567",
        clock.now(),
    ))))
    .await
    .unwrap();
    clock.advance(61);
    d.tick().await.unwrap();
    let cb = fake.sent()[0].ids.callback_id.clone();
    // During the call the agent presses the "call later" code (runs on the customer channel,
    // which carries the marker variable).
    d.handle(user_event(
        "PerezvonDisposition",
        "9.9",
        "201",
        &[
            ("CallbackID", &cb),
            ("Disposition", "call_later"),
            ("Agent", "201"),
        ],
    ))
    .await
    .unwrap();
    let row = d
        .store()
        .task_for_disposition(Some(&cb), None, None)
        .unwrap()
        .unwrap();
    let row = d.store().task(row).unwrap().unwrap();
    assert_eq!(row.disposition, Some(Disposition::CallLater));
    assert_eq!(row.disposition_by.as_deref(), Some("201"));
    // After the call 201 dials the "resolved" code: no id, no number, perezvon finds 201's
    // latest callback in the call records.
    let talked = CallRecord {
        direction: Direction::Callback,
        status: Status::Answered,
        missed: false,
        caller: None,
        caller_normalized: None,
        callee: Some("79161234567".into()),
        callee_normalized: Some("79161234567".into()),
        answered_at: Some(clock.now()),
        talk_secs: 60.0,
        agent: Some("201".into()),
        callback_id: Some(cb.clone()),
        callback_outcome: Some(perezvon::calls::record::CallbackOutcome::Connected),
        linkedid: format!("{cb}-c"),
        ..miss(
            "x",
            "79161234567",
            clock.now() + SignedDuration::from_secs(70),
        )
    };
    d.store()
        .record_call(&talked, std::time::Duration::from_secs(3600))
        .unwrap();
    d.handle(user_event(
        "PerezvonDisposition",
        "9.11",
        "201",
        &[("Disposition", "resolved"), ("Agent", "201")],
    ))
    .await
    .unwrap();
    let r = d.store().task(row.task.id).unwrap().unwrap();
    assert_eq!(r.disposition, Some(Disposition::Resolved));
    assert_eq!(r.task.state, TaskState::Done);
    // Then "do not call" by number from a phone.
    d.handle(user_event(
        "PerezvonDisposition",
        "9.10",
        "201",
        &[
            ("Number", "+7 916 123-45-67"),
            ("Disposition", "do_not_call"),
        ],
    ))
    .await
    .unwrap();
    assert!(d.store().dnc_contains("79161234567").unwrap());
    let row = d.store().task(row.task.id).unwrap().unwrap();
    // A closed task stays closed; the number is on the list for any later miss.
    assert_eq!(row.task.state, TaskState::Done);
    assert_eq!(row.disposition, Some(Disposition::DoNotCall));
    d.handle(DialerInput::Record(Box::new(miss(
        "2.1",
        "79161234567",
        clock.now(),
    ))))
    .await
    .unwrap();
    assert!(d.store().list_tasks(false, 10).unwrap().is_empty());
}
