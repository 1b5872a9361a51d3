//! Issue 14 end to end: the real daemon against the fake AMI server (the embedded lab) playing
//! real Asterisk 22 captures. A caller in the sales queue presses 1 (the lab sends the
//! `UserEvent` the dialplan snippet sends); the requested callback waits while callers wait in
//! the queue (QueueStatus `Calls`), then goes out; a caller of user 202's own number (busy) is
//! called back through 202 (DeviceStateList says 202 is free), with the agent's announcement.

use std::time::Duration;

use perezvon::callback::request::TaskKind;
use perezvon::demo::lab::{self, LabOptions, LabOutcome};
use perezvon::store::Store;
use tokio_util::sync::CancellationToken;

fn originates_to(lab: &lab::Lab, national: &str) -> Vec<perezvon::ami::Message> {
    lab.log
        .lock()
        .unwrap()
        .originates
        .iter()
        .filter(|m| {
            m.get_str("Channel")
                .is_some_and(|c| c.contains(&format!("{national}@")))
        })
        .cloned()
        .collect()
}

async fn until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn press_1_in_the_queue_and_an_owned_callback_through_the_lab() {
    let stop = CancellationToken::new();
    let captures = [
        lab::Capture {
            name: "queue_abandon",
            bytes: include_bytes!("../fixtures/asterisk-22/queue_abandon.ami"),
        },
        lab::Capture {
            name: "agent_busy",
            bytes: include_bytes!("../fixtures/asterisk-22/agent_busy.ami"),
        },
    ];
    let mut traffic = lab::traffic_timeline(&captures, Duration::from_secs(1));
    assert!(lab::press_1_in_queue(
        &mut traffic,
        "1795375036.4",
        Duration::from_secs(3)
    ));
    let lab = lab::start(
        LabOptions {
            traffic,
            script: |_, _| LabOutcome::Connected,
        },
        stop.clone(),
    )
    .await
    .unwrap();
    // Two callers wait in sales: the requested callback must not jump ahead of them.
    lab.log
        .lock()
        .unwrap()
        .queue_callers
        .insert("sales".into(), 2);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let mut cfg = perezvon::demo::demo_config(lab.addr.port(), &db);
    cfg.callback.delay = Duration::from_secs(1);
    // Stock Queue(): the announcement is Queue()'s announceoverride (the lab's own target is
    // a dialplan context, where it would be the PEREZVON_ANNOUNCE variable).
    cfg.callback.target = perezvon::config::Target::Queue("sales".into());
    cfg.callback.request.owner_wait = Some(Duration::from_secs(600));
    cfg.callback.request.owner_endpoint = "Local/{agent}@agent-sim".into();
    cfg.callback.request.announce = Some("perezvon/missed-caller".into());
    cfg.callback.request.agent_caller_name = Some("{number} missed {count}x".into());
    let daemon = tokio::spawn(perezvon::daemon::run(cfg, db.clone(), stop.clone()));

    // The owned callback: 202's own number was called while 202 was busy.
    until("an Originate through 202", 90, || {
        !originates_to(&lab, "89161112233").is_empty()
    })
    .await;
    let o = &originates_to(&lab, "89161112233")[0];
    assert_eq!(o.get_str("Application").as_deref(), Some("Dial"));
    let data = o.get_str("Data").unwrap().into_owned();
    assert!(
        data.starts_with("Local/202@agent-sim,") && data.ends_with(",A(perezvon/missed-caller)"),
        "{data}"
    );

    // The requested one: a task of its own kind, the only task of that number, and nothing
    // dialled while callers wait.
    until("the requested task", 90, || {
        let s = Store::open(&db).unwrap();
        s.list_tasks(true, 100)
            .unwrap()
            .iter()
            .any(|r| r.task.number == "79161234567")
    })
    .await;
    lab.traffic_done.cancelled().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    {
        let s = Store::open(&db).unwrap();
        let tasks: Vec<_> = s
            .list_tasks(true, 100)
            .unwrap()
            .into_iter()
            .filter(|r| r.task.number == "79161234567")
            .collect();
        assert_eq!(tasks.len(), 1, "one task per number: {tasks:?}");
        assert_eq!(tasks[0].task.routing.kind, TaskKind::Requested);
        assert_eq!(tasks[0].task.routing.queue.as_deref(), Some("sales"));
        assert_eq!(
            tasks[0].task.missed_count, 1,
            "the call's own miss is not counted"
        );
    }
    assert!(
        originates_to(&lab, "89161234567").is_empty(),
        "dialled while callers wait in the queue"
    );
    // The queue empties: the requested callback goes out, with the agent's announcement.
    lab.log
        .lock()
        .unwrap()
        .queue_callers
        .insert("sales".into(), 0);
    until("the requested callback", 30, || {
        !originates_to(&lab, "89161234567").is_empty()
    })
    .await;
    let o = &originates_to(&lab, "89161234567")[0];
    assert_eq!(o.get_str("Application").as_deref(), Some("Queue"));
    assert_eq!(
        o.get_str("Data").as_deref(),
        Some("sales,,,perezvon/missed-caller")
    );
    stop.cancel();
    daemon.await.unwrap().unwrap();
}

/// The do-not-call list end to end: one caller presses 9 while waiting in the queue, another
/// number was put on the list with `perezvon dnc add` before the daemon started. Both calls are
/// missed, and neither number ever reaches an Originate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn press_9_and_the_dnc_list_keep_numbers_from_every_originate() {
    let stop = CancellationToken::new();
    let captures = [
        lab::Capture {
            name: "queue_abandon",
            bytes: include_bytes!("../fixtures/asterisk-22/queue_abandon.ami"),
        },
        lab::Capture {
            name: "agent_busy",
            bytes: include_bytes!("../fixtures/asterisk-22/agent_busy.ami"),
        },
    ];
    let mut traffic = lab::traffic_timeline(&captures, Duration::from_secs(1));
    assert!(lab::press_9_in_queue(
        &mut traffic,
        "1795375036.4",
        Duration::from_secs(3)
    ));
    let lab = lab::start(
        LabOptions {
            traffic,
            script: |_, _| LabOutcome::Connected,
        },
        stop.clone(),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_perezvon"))
        .args(["dnc", "add", "--db"])
        .arg(&db)
        .arg("8 (916) 111-22-33")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut cfg = perezvon::demo::demo_config(lab.addr.port(), &db);
    cfg.callback.delay = Duration::from_secs(1);
    let daemon = tokio::spawn(perezvon::daemon::run(cfg, db.clone(), stop.clone()));
    lab.traffic_done.cancelled().await;
    // Both misses are recorded; give the dialer time well past `delay`.
    until("both misses stored", 60, || {
        let s = Store::open(&db).unwrap();
        let calls = s
            .calls_ended_between(jiff::Timestamp::UNIX_EPOCH, jiff::Timestamp::MAX)
            .unwrap();
        calls.iter().filter(|c| c.is_counted_miss()).count() >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(originates_to(&lab, "89161234567").is_empty(), "pressed 9");
    assert!(originates_to(&lab, "89161112233").is_empty(), "dnc add");
    let s = Store::open(&db).unwrap();
    let listed: Vec<String> = s
        .dnc_list()
        .unwrap()
        .into_iter()
        .map(|e| e.number)
        .collect();
    assert_eq!(listed, ["79161112233", "79161234567"]);
    assert!(s.list_tasks(false, 10).unwrap().is_empty());
    stop.cancel();
    daemon.await.unwrap().unwrap();
}

/// An agent's "do not call" feature code end to end: after the missed caller of the lab's
/// queue call was called back, the agent dials the code and the dialplan sends
/// `UserEvent(PerezvonDisposition,Disposition: do_not_call,Number: ...)`. The daemon records
/// the disposition on the number's task, lists the number, and it is never dialled again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agents_do_not_call_feature_code_lists_the_number_through_the_daemon() {
    let stop = CancellationToken::new();
    let captures = [lab::Capture {
        name: "queue_abandon",
        bytes: include_bytes!("../fixtures/asterisk-22/queue_abandon.ami"),
    }];
    let mut traffic = lab::traffic_timeline(&captures, Duration::from_secs(1));
    let end = traffic.last().map(|(at, _)| *at).unwrap_or_default();
    // Any spelling of the number: the daemon normalises it with the [pbx] plan.
    traffic.push((
        end + Duration::from_secs(8),
        perezvon::ami::Message::from_pairs(&[
            ("Event", "UserEvent"),
            ("Channel", "PJSIP/203-000000aa"),
            ("Uniqueid", "1795399999.1"),
            ("Linkedid", "1795399999.1"),
            ("CallerIDNum", "203"),
            ("UserEvent", "PerezvonDisposition"),
            ("Disposition", "do_not_call"),
            ("Number", "+7 (916) 123-45-67"),
            ("Agent", "203"),
        ]),
    ));
    let lab = lab::start(
        LabOptions {
            traffic,
            script: |_, _| LabOutcome::Connected,
        },
        stop.clone(),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let mut cfg = perezvon::demo::demo_config(lab.addr.port(), &db);
    cfg.callback.delay = Duration::from_secs(1);
    let daemon = tokio::spawn(perezvon::daemon::run(cfg, db.clone(), stop.clone()));
    // The lab plays its traffic once the daemon has logged in (the database is open by then).
    tokio::time::timeout(Duration::from_secs(90), lab.traffic_done.cancelled())
        .await
        .expect("the lab's traffic was played to the daemon");
    until("the number on the do-not-call list", 90, || {
        assert!(!daemon.is_finished(), "the daemon stopped");
        Store::open(&db)
            .unwrap()
            .dnc_list()
            .unwrap()
            .iter()
            .any(|e| e.number == "79161234567")
    })
    .await;
    let dialled = originates_to(&lab, "89161234567").len();
    {
        let s = Store::open(&db).unwrap();
        let tasks: Vec<_> = s
            .list_tasks(true, 100)
            .unwrap()
            .into_iter()
            .filter(|r| r.task.number == "79161234567")
            .collect();
        assert_eq!(tasks.len(), 1, "{tasks:?}");
        assert_eq!(
            tasks[0].disposition,
            Some(perezvon::callback::request::Disposition::DoNotCall),
            "{tasks:?}"
        );
        assert!(
            !matches!(
                tasks[0].task.state,
                perezvon::callback::planner::TaskState::Pending
                    | perezvon::callback::planner::TaskState::InProgress
            ),
            "the task is closed: {tasks:?}"
        );
    }
    // Nothing more goes out to that number.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(originates_to(&lab, "89161234567").len(), dialled);
    stop.cancel();
    daemon.await.unwrap().unwrap();
}
