//! Issue 14's guards end to end: the dialer over perezvon's real AMI client against the lab
//! server (`demo::lab`, on 127.0.0.1:0), with a controllable clock for the dialer. What reaches
//! the server as an Originate, and when, under the per-number budget, the customer's own clock,
//! the queue reserve (QueueSummary) and expiry.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use perezvon::ami::{self, AmiHandle, LinkEvent};
use perezvon::callback::originate::OriginateResponse;
use perezvon::callback::planner::TaskState;
use perezvon::calls::record::CallRecord;
use perezvon::config::Config;
use perezvon::daemon::dialer::{Clock, Dialer, DialerInput};
use perezvon::demo::lab::{self, Lab, LabOptions, LabOutcome, LabQueue};
use perezvon::store::Store;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

mod support;

fn msk(s: &str) -> Timestamp {
    s.parse::<jiff::civil::DateTime>()
        .unwrap()
        .to_zoned(jiff::tz::TimeZone::get("Europe/Moscow").unwrap())
        .unwrap()
        .timestamp()
}

struct Rig {
    lab: Lab,
    stop: CancellationToken,
    d: Dialer<AmiHandle>,
    responses: mpsc::Receiver<OriginateResponse>,
    now: Arc<Mutex<Timestamp>>,
    /// Misses fed so far (each gets its own linkedid).
    fed: u32,
}

/// A lab server, perezvon's AMI client logged in to it, and a dialer at `start` (Moscow time,
/// open around the clock unless `extra` says otherwise).
async fn rig(extra: &str, script: fn(&str, u32) -> LabOutcome, start: Timestamp) -> Rig {
    let stop = CancellationToken::new();
    let lab = lab::start(
        LabOptions {
            traffic: Vec::new(),
            script,
        },
        stop.clone(),
    )
    .await
    .unwrap();
    let all = r#"["00:00-24:00"]"#;
    let days: String = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ]
    .iter()
    .map(|d| format!("{d} = {all}\n"))
    .collect();
    let cfg = Config::from_toml(&format!(
        r#"
[[asterisk]]
name = "lab"
port = {port}
username = "u"
secret = "s"
# A loaded machine (CI, parallel tests) must not turn a slow answer into a failed Originate.
action_timeout = "30s"

[callback]
enabled = true
dial_template = "Local/{{national}}@customer-sim"
caller_id = "74951110000"
{target}
delay = "1m"
max_attempts = 5
retry_every = "1m"
give_up_after = "7d"
max_concurrent = 4
max_concurrent_per_target = 4
spread = "0s"
allow = ["^7\\d{{10}}$"]
{extra}

[hours]
timezone = "Europe/Moscow"
{days}
"#,
        port = lab.addr.port(),
        target = if extra.contains("target =") {
            ""
        } else {
            "target = { queue = \"sales\" }"
        },
    ))
    .unwrap();
    let (tx, mut rx) = mpsc::channel(1024);
    let (handle, _task) = ami::spawn(cfg.asterisk[0].clone(), tx, stop.clone());
    let (rtx, responses) = mpsc::channel(64);
    let (up_tx, up_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut up = Some(up_tx);
        while let Some(e) = rx.recv().await {
            match e {
                LinkEvent::Up { .. } => {
                    if let Some(u) = up.take() {
                        let _ = u.send(());
                    }
                }
                LinkEvent::Message { msg, .. } => {
                    if let Some(r) = OriginateResponse::parse(&msg) {
                        let _ = rtx.send(r).await;
                    }
                }
                _ => {}
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(30), up_rx)
        .await
        .expect("login to the lab")
        .unwrap();
    let now = Arc::new(Mutex::new(start));
    let c = now.clone();
    let clock: Clock = Arc::new(move || *c.lock().unwrap());
    let mut d = Dialer::new(&cfg, Store::open_in_memory().unwrap(), handle, clock, None);
    d.recover().unwrap();
    Rig {
        lab,
        stop,
        d,
        responses,
        now,
        fed: 0,
    }
}

impl Rig {
    fn set(&self, t: Timestamp) {
        *self.now.lock().unwrap() = t;
    }

    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap()
    }

    /// A call from `number` missed just now.
    async fn missed(&mut self, number: &str) {
        self.fed += 1;
        let at = self.now();
        let rec = CallRecord {
            caller: Some(number.into()),
            caller_normalized: Some(number.into()),
            ..support::inbound_miss(
                &format!("{}.{}", at.as_second(), self.fed),
                at - SignedDuration::from_secs(10),
                10.0,
            )
        };
        self.d
            .handle(DialerInput::Record(Box::new(rec)))
            .await
            .unwrap();
    }

    fn originates(&self) -> Vec<String> {
        self.lab
            .log
            .lock()
            .unwrap()
            .originates
            .iter()
            .map(|m| m.get_str("Channel").unwrap_or_default().into_owned())
            .collect()
    }

    /// One tick at `t`; every Originate it sent is answered by the lab and its
    /// OriginateResponse handed to the dialer.
    async fn tick_at(&mut self, t: Timestamp) {
        self.set(t);
        let before = self.originates().len();
        self.d.tick().await.unwrap();
        let sent = self.originates().len() - before;
        for _ in 0..sent {
            let r = tokio::time::timeout(Duration::from_secs(30), self.responses.recv())
                .await
                .expect("an OriginateResponse from the lab")
                .unwrap();
            self.d.handle(DialerInput::Response(r)).await.unwrap();
        }
    }

    fn task_of(&self, number: &str) -> perezvon::store::tasks::TaskRow {
        self.d
            .store()
            .list_tasks(true, 100)
            .unwrap()
            .into_iter()
            .find(|r| r.task.number == number)
            .unwrap()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_number_budget_holds_across_tasks_and_frees_after_24_hours() {
    let t0 = msk("2026-12-21T10:00:00");
    let mut r = rig("max_per_number_24h = 2", |_, _| LabOutcome::Busy, t0).await;
    let n = "79261112233";
    r.missed(n).await;
    // Busy twice, a minute apart.
    r.tick_at(msk("2026-12-21T10:01:00")).await;
    r.tick_at(msk("2026-12-21T10:02:00")).await;
    assert_eq!(r.originates().len(), 2);
    // Over budget: never a third call the same rolling day, however often the spacing allows.
    for m in [3, 10, 60, 600, 1439] {
        r.tick_at(t0 + SignedDuration::from_mins(m)).await;
    }
    assert_eq!(r.originates().len(), 2, "{:?}", r.originates());
    let t = r.task_of(n);
    assert_eq!((t.task.state, t.task.attempts), (TaskState::Pending, 2));
    // Another task for the number (the first one cancelled, a new miss): the budget is the
    // number's, not the task's.
    r.d.store()
        .close_task(t.task.id, TaskState::Cancelled, "test", r.now())
        .unwrap();
    r.tick_at(msk("2026-12-21T20:00:00")).await;
    r.missed(n).await;
    r.tick_at(msk("2026-12-21T20:05:00")).await;
    r.tick_at(msk("2026-12-22T10:00:59")).await;
    assert_eq!(r.originates().len(), 2);
    // 24 h after the first attempt the budget has room for one.
    r.tick_at(msk("2026-12-22T10:01:00")).await;
    assert_eq!(r.originates().len(), 3);
    r.tick_at(msk("2026-12-22T10:01:30")).await;
    r.tick_at(msk("2026-12-22T10:02:00")).await;
    assert_eq!(r.originates().len(), 4);
    r.tick_at(msk("2026-12-22T10:30:00")).await;
    assert_eq!(r.originates().len(), 4);
    assert!(r.originates().iter().all(|c| c.contains("89261112233")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_calendar_day_cap_frees_at_midnight_in_the_business_zone() {
    let t0 = msk("2026-12-21T23:40:00");
    let mut r = rig("max_per_number_day = 1", |_, _| LabOutcome::Busy, t0).await;
    r.missed("79261112233").await;
    r.tick_at(msk("2026-12-21T23:41:00")).await;
    r.tick_at(msk("2026-12-21T23:59:59")).await;
    assert_eq!(r.originates().len(), 1);
    r.tick_at(msk("2026-12-22T00:00:00")).await;
    assert_eq!(r.originates().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_at_night_on_the_customers_clock() {
    // Open around the clock in Moscow; the customers may be called 09:00-21:00 their time.
    let t0 = msk("2026-12-21T14:00:00");
    let mut r = rig(
        "customer_hours = \"09:00-21:00\"",
        |_, _| LabOutcome::Busy,
        t0,
    )
    .await;
    let moscow = "74951234567";
    let kamchatka = "74152123456"; // UTC+12: 23:00 when it is 14:00 in Moscow
    let vladivostok = "74232123456"; // UTC+10: 21:00
    r.missed(moscow).await;
    r.missed(kamchatka).await;
    r.missed(vladivostok).await;
    r.tick_at(msk("2026-12-21T14:01:00")).await;
    assert_eq!(r.originates(), vec!["Local/84951234567@customer-sim"]);
    // All evening and night in Moscow: Kamchatka and Vladivostok are asleep.
    for t in [
        "2026-12-21T18:00:00",
        "2026-12-21T23:00:00",
        "2026-12-21T23:59:00",
    ] {
        r.tick_at(msk(t)).await;
    }
    assert!(
        r.originates()
            .iter()
            .all(|c| !c.contains("4152123456") && !c.contains("4232123456")),
        "{:?}",
        r.originates()
    );
    // 00:00 Moscow = 09:00 in Kamchatka; Vladivostok (07:00) still waits, until 02:00 Moscow.
    r.tick_at(msk("2026-12-22T00:00:00")).await;
    assert!(r.originates().iter().any(|c| c.contains("84152123456")));
    assert!(!r.originates().iter().any(|c| c.contains("84232123456")));
    r.tick_at(msk("2026-12-22T01:59:00")).await;
    assert!(!r.originates().iter().any(|c| c.contains("84232123456")));
    r.tick_at(msk("2026-12-22T02:00:00")).await;
    assert!(r.originates().iter().any(|c| c.contains("84232123456")));
    // The tasks that waited were never counted for it.
    assert_eq!(r.task_of(vladivostok).task.attempts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_leave_the_reserve_and_yield_to_callers_waiting_in_the_queue() {
    let t0 = msk("2026-12-21T10:00:00");
    let mut r = rig("queue_reserve = 1", |_, _| LabOutcome::Busy, t0).await;
    let set = |r: &Rig, available, callers| {
        r.lab
            .queues
            .lock()
            .unwrap()
            .insert("sales".into(), LabQueue { available, callers });
    };
    // One agent free: the reserve keeps it for inbound callers.
    set(&r, 1, 0);
    r.missed("79261112233").await;
    r.tick_at(msk("2026-12-21T10:01:00")).await;
    assert!(r.originates().is_empty());
    let held = r.d.store().held_back_targets().unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].0, "queue:sales");
    assert!(held[0].2.contains("reserved for inbound"), "{held:?}");
    // Three free but two callers waiting in the queue: they come first.
    set(&r, 3, 2);
    r.tick_at(msk("2026-12-21T10:02:00")).await;
    assert!(r.originates().is_empty());
    let held = r.d.store().held_back_targets().unwrap();
    assert!(held[0].2.contains("2 caller(s) waiting"), "{held:?}");
    // Nobody waiting, two free, one reserved: one callback.
    set(&r, 2, 0);
    r.missed("79261112244").await;
    r.tick_at(msk("2026-12-21T10:03:00")).await;
    assert_eq!(r.originates().len(), 1);
    assert!(r.d.store().held_back_targets().unwrap().is_empty());
    // The task that waited is untouched: no attempt counted while the queue was busy.
    let first = r.task_of("79261112233");
    let second = r.task_of("79261112244");
    assert_eq!(first.task.attempts + second.task.attempts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_queue_reserve_overrides_the_default() {
    let t0 = msk("2026-12-21T10:00:00");
    let mut r = rig(
        "queue_reserve = 2\nqueue_reserves = { sales = 0 }",
        |_, _| LabOutcome::Busy,
        t0,
    )
    .await;
    r.lab.queues.lock().unwrap().insert(
        "sales".into(),
        LabQueue {
            available: 1,
            callers: 0,
        },
    );
    r.missed("79261112233").await;
    r.tick_at(msk("2026-12-21T10:01:00")).await;
    assert_eq!(r.originates().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_no_longer_useful_expires_and_is_never_dialled() {
    let t0 = msk("2026-12-21T10:00:00");
    let mut r = rig("expire_after = \"2h\"", |_, _| LabOutcome::Busy, t0).await;
    // The queue is never free for callbacks meanwhile.
    r.lab.queues.lock().unwrap().insert(
        "sales".into(),
        LabQueue {
            available: 3,
            callers: 4,
        },
    );
    r.missed("79261112233").await;
    r.tick_at(msk("2026-12-21T11:59:59")).await;
    assert_eq!(r.task_of("79261112233").task.state, TaskState::Pending);
    r.tick_at(msk("2026-12-21T12:00:00")).await;
    let t = r.task_of("79261112233");
    assert_eq!(t.task.state, TaskState::Expired);
    assert_eq!(t.close_reason.as_deref(), Some("expire_after"));
    // The queue frees up: nothing to dial any more.
    r.lab.queues.lock().unwrap().clear();
    r.tick_at(msk("2026-12-21T12:01:00")).await;
    assert!(r.originates().is_empty());
    // A new miss starts a new task.
    r.missed("79261112233").await;
    r.tick_at(msk("2026-12-21T12:02:00")).await;
    assert_eq!(r.originates().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_who_is_a_queue_member_serves_its_waiting_callers_first() {
    // The target is one agent's phone; the lab's QueueStatus lists PJSIP/201 as a member of
    // sales, so sales' waiting callers come first.
    let t0 = msk("2026-12-21T10:00:00");
    let mut r = rig(
        "target = { endpoint = \"PJSIP/201\" }",
        |_, _| LabOutcome::Busy,
        t0,
    )
    .await;
    r.lab.queues.lock().unwrap().insert(
        "sales".into(),
        LabQueue {
            available: 3,
            callers: 1,
        },
    );
    r.missed("79261112233").await;
    r.tick_at(msk("2026-12-21T10:01:00")).await;
    assert!(r.originates().is_empty());
    let held = r.d.store().held_back_targets().unwrap();
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0].0, "PJSIP/201");
    assert!(
        held[0].2.contains("queue sales busy: 1 caller(s) waiting"),
        "{held:?}"
    );
    r.lab.queues.lock().unwrap().clear();
    r.tick_at(msk("2026-12-21T10:02:00")).await;
    assert_eq!(r.originates().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_waiting_for_the_customers_morning_expires_by_the_sweep() {
    let t0 = msk("2026-12-21T14:00:00");
    let mut r = rig(
        "customer_hours = \"09:00-21:00\"\nexpire_after = \"1h\"",
        |_, _| LabOutcome::Busy,
        t0,
    )
    .await;
    let kamchatka = "74152123456"; // 23:00 there
    r.missed(kamchatka).await;
    r.tick_at(msk("2026-12-21T14:30:00")).await;
    assert_eq!(r.task_of(kamchatka).task.state, TaskState::Pending);
    // Never due (the customer's night), so only the sweep (every 10 s) can expire it.
    r.tick_at(msk("2026-12-21T15:00:05")).await;
    let t = r.task_of(kamchatka);
    assert_eq!(
        (t.task.state, t.close_reason.as_deref()),
        (TaskState::Expired, Some("expire_after"))
    );
    r.tick_at(msk("2026-12-22T00:00:00")).await;
    assert!(r.originates().is_empty());
}
