//! End to end: `daemon::run` against the lab AMI server (127.0.0.1:0) that plays recorded inbound
//! calls and answers Originates by replaying the `callback_*` captures with this Originate's ids.
//!
//! Timeouts are generous upper bounds (the lab plays real call timing, ~5-20 s per call); no
//! assertion depends on the machine being fast.

use std::path::Path;
use std::time::Duration;

use perezvon::callback::planner::{AttemptOutcome, TaskState};
use perezvon::calls::record::{CallRecord, CallbackOutcome, Direction, Status};
use perezvon::config::Config;
use perezvon::daemon::dialer::DialerEvent;
use perezvon::daemon::{self, RunOptions};
use perezvon::demo::lab::{self, Capture, LabOptions, LabOutcome};
use perezvon::store::Store;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(90);

/// A lab server that plays one capture and answers Originates by `script`, and its stop token.
async fn lab_playing(
    name: &'static str,
    script: fn(&str, u32) -> LabOutcome,
) -> (lab::Lab, CancellationToken) {
    let stop = CancellationToken::new();
    let lab = lab::start(
        LabOptions {
            traffic: lab::traffic_timeline(&[capture(name)], Duration::ZERO),
            script,
        },
        stop.clone(),
    )
    .await
    .unwrap();
    (lab, stop)
}

fn config(port: u16, hours: &str, delay: &str, retry_every: &str) -> Config {
    let all = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ]
    .iter()
    .map(|d| format!("{d} = {hours}\n"))
    .collect::<String>();
    Config::from_toml(&format!(
        r#"
[[asterisk]]
name = "lab"
host = "127.0.0.1"
port = {port}
username = "perezvon"
secret = "lab"
reconnect_max = "1s"

[pbx]
country_code = "7"
inbound_contexts = ["from-trunk"]
trunk_channels = ["Local/*@from-trunk-*;2"]
agent_channels = ["Local/2??@agent-sim-*", "Local/2??@agent-phone-*"]
external_channels = ["Local/*@external-sim-*", "Local/*@customer-sim-*"]

[calls]
min_talk = "6s"
min_wait = "3s"

[callback]
enabled = true
dial_template = "Local/{{national}}@customer-sim"
caller_id = "74951110000"
target = {{ context = "callback", exten = "201" }}
delay = "{delay}"
max_attempts = 2
retry_every = "{retry_every}"
give_up_after = "1h"
allow = ["^7\\d{{10}}$"]
marker_variable = "PEREZVON_CALLBACK_ID"

[hours]
timezone = "UTC"
{all}"#
    ))
    .unwrap()
}

fn capture(name: &'static str) -> Capture {
    let bytes: &'static [u8] = match name {
        "ivr_abandon" => include_bytes!("../fixtures/asterisk-22/ivr_abandon.ami"),
        "resolved_by_caller_callback" => {
            include_bytes!("../fixtures/asterisk-22/resolved_by_caller_callback.ami")
        }
        other => panic!("no capture {other}"),
    };
    Capture { name, bytes }
}

struct Running {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), daemon::DaemonError>>,
    events: mpsc::Receiver<DialerEvent>,
    records: mpsc::Receiver<CallRecord>,
}

fn start(cfg: Config, db: &Path) -> Running {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    let stop = CancellationToken::new();
    let (etx, events) = mpsc::channel(256);
    let (rtx, records) = mpsc::channel(256);
    let task = tokio::spawn(daemon::run_with(
        cfg,
        db.to_path_buf(),
        stop.clone(),
        RunOptions {
            clock: None,
            dialer_events: Some(etx),
            records: Some(rtx),
            ..RunOptions::default()
        },
    ));
    Running {
        stop,
        task,
        events,
        records,
    }
}

impl Running {
    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("daemon stops")
            .expect("no panic")
            .expect("clean stop");
    }

    async fn next_event(&mut self, what: &str, f: impl Fn(&DialerEvent) -> bool) -> DialerEvent {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let e = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("no {what} within {WAIT:?}"))
                .expect("dialer events open");
            if f(&e) {
                return e;
            }
        }
    }

    async fn next_record(&mut self, what: &str, f: impl Fn(&CallRecord) -> bool) -> CallRecord {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let r = tokio::time::timeout_at(deadline, self.records.recv())
                .await
                .unwrap_or_else(|_| panic!("no {what} within {WAIT:?}"))
                .expect("records open");
            if f(&r) {
                return r;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_call_gets_one_originate_and_connects() {
    let (lab, stop_lab) = lab_playing("ivr_abandon", |_, _| LabOutcome::Connected).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("perezvon.db");
    let mut d = start(
        config(lab.addr.port(), r#"["00:00-24:00"]"#, "1s", "10m"),
        &db,
    );
    let miss = d
        .next_record("missed call", |r| r.direction == Direction::Inbound)
        .await;
    assert_eq!(miss.status, Status::Missed, "{miss:?}");
    assert_eq!(miss.caller_normalized.as_deref(), Some("79031112233"));
    let started = d
        .next_event("attempt", |e| {
            matches!(e, DialerEvent::AttemptStarted { .. })
        })
        .await;
    let DialerEvent::AttemptStarted { callback_id, .. } = started else {
        unreachable!()
    };
    let closed = d
        .next_event("task closed", |e| {
            matches!(e, DialerEvent::TaskClosed { .. })
        })
        .await;
    assert!(
        matches!(&closed, DialerEvent::TaskClosed { state: TaskState::Done, reason, .. } if reason == "connected"),
        "{closed:?}"
    );
    d.stop().await;
    stop_lab.cancel();

    // Exactly one Originate, with the exact headers.
    let log = lab.log.lock().unwrap();
    assert_eq!(log.originates.len(), 1);
    let o = &log.originates[0];
    let got: Vec<(String, String)> = o
        .headers()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect();
    let s = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(
        got,
        vec![
            s("Action", "Originate"),
            s("ActionID", &callback_id),
            s("Channel", "Local/89031112233@customer-sim"),
            s("Context", "callback"),
            s("Exten", "201"),
            s("Priority", "1"),
            s("CallerID", "\"Callback\" <74951110000>"),
            s("Timeout", "30000"),
            s("Async", "true"),
            s("ChannelId", &format!("{callback_id}-c")),
            s("OtherChannelId", &format!("{callback_id}-d")),
            s("Variable", &format!("PEREZVON_CALLBACK_ID={callback_id}")),
        ]
    );
    let store = Store::open(&db).unwrap();
    let a = store.attempt(&callback_id).unwrap().unwrap();
    assert_eq!(
        a.outcome,
        Some(AttemptOutcome::Call(CallbackOutcome::Connected))
    );
    assert!(a.answered_at.is_some());
    // The miss is resolved by the callback in the calls table (the pipeline's resolution).
    let call = store.get_call("lab", &miss.linkedid).unwrap().unwrap();
    assert!(call.resolved_by.is_some(), "{call:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_dialled_outside_the_hours() {
    let (lab, stop_lab) = lab_playing("ivr_abandon", |_, _| LabOutcome::Connected).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("perezvon.db");
    let mut d = start(config(lab.addr.port(), "[]", "1s", "10m"), &db);
    d.next_record("missed call", |r| r.direction == Direction::Inbound)
        .await;
    d.next_event("task", |e| matches!(e, DialerEvent::TaskCreated { .. }))
        .await;
    // Several dialer ticks past the delay.
    tokio::time::sleep(Duration::from_secs(4)).await;
    d.stop().await;
    stop_lab.cancel();
    assert!(lab.log.lock().unwrap().originates.is_empty());
    let store = Store::open(&db).unwrap();
    let open = store.open_tasks().unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].state, TaskState::Pending);
    assert_eq!(open[0].attempts, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_calling_back_cancels_the_pending_task() {
    let (lab, stop_lab) =
        lab_playing("resolved_by_caller_callback", |_, _| LabOutcome::Connected).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("perezvon.db");
    // A long delay: the task is still pending when the customer calls again.
    let mut d = start(
        config(lab.addr.port(), r#"["00:00-24:00"]"#, "10m", "10m"),
        &db,
    );
    let created = d
        .next_event("task", |e| matches!(e, DialerEvent::TaskCreated { .. }))
        .await;
    let DialerEvent::TaskCreated { task_id, number } = created else {
        unreachable!()
    };
    assert_eq!(number, "79165550101");
    let closed = d
        .next_event("cancel", |e| matches!(e, DialerEvent::TaskClosed { .. }))
        .await;
    assert_eq!(
        closed,
        DialerEvent::TaskClosed {
            task_id,
            number,
            state: TaskState::Cancelled,
            reason: "resolved_by_caller".into()
        }
    );
    d.stop().await;
    stop_lab.cancel();
    assert!(lab.log.lock().unwrap().originates.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_callback_while_the_customer_is_calling_again() {
    // c1 is missed (ends at ~10 s); the same customer calls again at 13 s and talks until
    // ~27 s. With an 8 s delay the task falls due at ~18 s, in the middle of that call: the
    // dialer must wait, and the conversation then cancels the task. Margins of several seconds
    // on each side, so a slow machine does not change the story.
    let (lab, stop_lab) =
        lab_playing("resolved_by_caller_callback", |_, _| LabOutcome::Connected).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("perezvon.db");
    let mut d = start(
        config(lab.addr.port(), r#"["00:00-24:00"]"#, "8s", "10m"),
        &db,
    );
    let created = d
        .next_event("task", |e| matches!(e, DialerEvent::TaskCreated { .. }))
        .await;
    let DialerEvent::TaskCreated { task_id, number } = created else {
        unreachable!()
    };
    assert_eq!(number, "79165550101");
    // The next dialer event is the cancellation, not an attempt.
    let next = d.next_event("cancel", |_| true).await;
    assert_eq!(
        next,
        DialerEvent::TaskClosed {
            task_id,
            number,
            state: TaskState::Cancelled,
            reason: "resolved_by_caller".into()
        }
    );
    let again = d
        .next_record("second call", |r| r.status == Status::Answered)
        .await;
    assert_eq!(again.caller_normalized.as_deref(), Some("79165550101"));
    d.stop().await;
    stop_lab.cancel();
    assert!(lab.log.lock().unwrap().originates.is_empty());
    let store = Store::open(&db).unwrap();
    let t = &store.list_tasks(true, 10).unwrap()[0];
    assert_eq!(t.task.attempts, 0);
    assert!(store.attempts_of(task_id).unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_attempt_is_unknown_and_waits_for_an_explicit_retry() {
    // The first attempt is a long one (customer answers, agent rings 15 s).
    let (lab, stop_lab) = lab_playing("ivr_abandon", |_, attempt| {
        if attempt == 1 {
            LabOutcome::AgentMissed
        } else {
            LabOutcome::Connected
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("perezvon.db");
    let cfg = config(lab.addr.port(), r#"["00:00-24:00"]"#, "1s", "8s");
    let mut d = start(cfg.clone(), &db);
    d.next_event("attempt", |e| {
        matches!(e, DialerEvent::AttemptStarted { .. })
    })
    .await;
    // Kill it while the attempt is in flight: the future is dropped mid-flight, nothing is
    // settled (what a SIGKILL leaves in the database).
    // (The supervisor and dialer tasks it spawned live on, cut off from it; their token is
    // cancelled at the end of the test.)
    d.task.abort();
    let _ = d.task.await;
    let killed = d.stop;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let store = Store::open(&db).unwrap();
    let open = store.unfinished_attempts().unwrap();
    assert_eq!(
        open.len(),
        1,
        "the attempt is on disk, without outcome: {:?}",
        store.attempts_of(1).unwrap()
    );
    let first = open[0].clone();

    // Restart at once. The lab shows no channel of the attempt (its call cannot be adopted):
    // its outcome is unknown, and the task waits for an operator (issue 14), never dialled
    // again by itself, not even after its spacing (8 s).
    let mut d = start(cfg, &db);
    let ended = d
        .next_event("the attempt settled", |e| {
            matches!(e, DialerEvent::AttemptEnded { .. })
        })
        .await;
    assert!(
        matches!(
            ended,
            DialerEvent::AttemptEnded {
                outcome: AttemptOutcome::Unknown,
                ..
            }
        ),
        "{ended:?}"
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        lab.log.lock().unwrap().originates.len(),
        1,
        "re-dialled by itself"
    );
    let row = store.task(first.task_id).unwrap().unwrap();
    assert_eq!(row.task.state, TaskState::Unknown);
    assert_eq!(row.close_reason.as_deref(), Some("outcome_unknown"));
    // `perezvon callbacks retry` (another connection) is the explicit retry.
    store
        .retry_task(
            first.task_id,
            jiff::Timestamp::now(),
            1,
            jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1),
        )
        .unwrap();
    d.next_event("second attempt", |e| {
        matches!(e, DialerEvent::AttemptStarted { .. })
    })
    .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while lab.log.lock().unwrap().originates.len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "second Originate never arrived"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    d.stop().await;
    killed.cancel();
    stop_lab.cancel();
    let attempts = store.attempts_of(first.task_id).unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].outcome, Some(AttemptOutcome::Unknown));
    assert_eq!(lab.log.lock().unwrap().originates.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_lab_outcome_is_classified() {
    // One task, five attempts, each answered by a different callback capture.
    fn script(_: &str, attempt: u32) -> LabOutcome {
        match attempt {
            1 => LabOutcome::NoAnswer,
            2 => LabOutcome::Busy,
            3 => LabOutcome::Failed,
            4 => LabOutcome::AgentMissed,
            _ => LabOutcome::Connected,
        }
    }
    let (lab, stop_lab) = lab_playing("ivr_abandon", script).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("perezvon.db");
    let mut cfg = config(lab.addr.port(), r#"["00:00-24:00"]"#, "1s", "1s");
    cfg.callback.max_attempts = 5;
    let mut d = start(cfg, &db);
    let mut outcomes = Vec::new();
    while outcomes.len() < 5 {
        let e = d
            .next_event("attempt end", |e| {
                matches!(e, DialerEvent::AttemptEnded { .. })
            })
            .await;
        if let DialerEvent::AttemptEnded { outcome, .. } = e {
            outcomes.push(outcome);
        }
    }
    d.stop().await;
    stop_lab.cancel();
    let c = AttemptOutcome::Call;
    assert_eq!(
        outcomes,
        vec![
            c(CallbackOutcome::NoAnswer),
            c(CallbackOutcome::Busy),
            c(CallbackOutcome::Failed),
            c(CallbackOutcome::AgentMissed),
            c(CallbackOutcome::Connected),
        ]
    );
    let store = Store::open(&db).unwrap();
    let t = &store.list_tasks(true, 10).unwrap()[0];
    assert_eq!(t.task.state, TaskState::Done);
    assert_eq!(t.task.attempts, 5);
}
