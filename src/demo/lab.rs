//! An embedded AMI server that behaves like the lab Asterisk of `fixtures/asterisk-22`.
//!
//! It accepts a login (plain or MD5, any credentials), answers the actions perezvon sends (Ping,
//! Events, CoreShowChannels, QueueStatus, QueueSummary, DeviceStateList, ExtensionState,
//! Originate), and plays recorded traffic:
//! the real captures, overlapped so seven minutes of recorded calls pass in about half a minute,
//! each call keeping its real timing (so every verdict is the one Asterisk's timing implies), with
//! `Timestamp` rewritten to the moment each event is sent.
//!
//! An Originate is answered the way the lab answered the recorded callbacks: the events of one of
//! the `callback_*` captures are replayed with fresh channel ids, the requested customer number,
//! the Originate's ActionID, ChannelId/OtherChannelId and marker variable. Which capture is played
//! depends on the number and the attempt, so a demo shows connected callbacks and realistic
//! failures (no answer, busy, agent missed) followed by retries.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use crate::ami::{codec::decode_all, AmiCodec, Kind, Message};

/// A capture bundled into the binary.
pub struct Capture {
    pub name: &'static str,
    pub bytes: &'static [u8],
}

macro_rules! capture {
    ($name:literal) => {
        Capture {
            name: $name,
            bytes: include_bytes!(concat!("../../fixtures/asterisk-22/", $name, ".ami")),
        }
    };
}

/// Inbound traffic played by the demo: every capture whose calls were not placed as callbacks.
pub fn traffic() -> Vec<Capture> {
    vec![
        capture!("mixed_concurrent"),
        capture!("queue_abandon"),
        capture!("answered_by_agent"),
        capture!("ringgroup_no_answer"),
        capture!("short_talk_3s"),
        capture!("ivr_abandon"),
        capture!("voicemail"),
        capture!("invalid_extension"),
        capture!("external_forward_no_answer"),
        capture!("accidental_1s_ring"),
        capture!("agent_busy"),
        capture!("resolved_by_caller_callback"),
        capture!("resolved_by_agent_outbound"),
        capture!("queue_ringall_one_answers"),
        capture!("blind_transfer_answered"),
        capture!("attended_transfer_answered"),
        capture!("anonymous_caller"),
    ]
}

/// How a callback attempt goes in the lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LabOutcome {
    Connected,
    NoAnswer,
    Busy,
    AgentMissed,
    Failed,
}

impl LabOutcome {
    fn capture(self) -> (&'static str, &'static [u8]) {
        macro_rules! raw {
            ($name:literal) => {
                (
                    $name,
                    include_bytes!(concat!("../../fixtures/asterisk-22/", $name, ".ami"))
                        as &[u8],
                )
            };
        }
        match self {
            LabOutcome::Connected => raw!("callback_originate_success"),
            LabOutcome::NoAnswer => raw!("callback_originate_no_answer"),
            LabOutcome::Busy => raw!("callback_originate_busy"),
            LabOutcome::AgentMissed => raw!("callback_customer_answers_agent_misses"),
            LabOutcome::Failed => raw!("callback_originate_failed"),
        }
    }

    /// The default script: most customers answer; some don't pick up, are busy, or the agent
    /// misses them the first time; every retry is answered and connected.
    pub fn scripted(number: &str, attempt: u32) -> LabOutcome {
        if attempt > 1 {
            return LabOutcome::Connected;
        }
        let sum: u32 = number
            .bytes()
            .filter(u8::is_ascii_digit)
            .map(|b| u32::from(b - b'0'))
            .sum();
        match sum % 10 {
            0..=4 => LabOutcome::Connected,
            5 | 6 => LabOutcome::NoAnswer,
            7 => LabOutcome::Busy,
            8 => LabOutcome::AgentMissed,
            _ => LabOutcome::Failed,
        }
    }
}

/// One event of a timeline: when to send it (offset from the start) and what.
#[derive(Clone)]
struct Timed {
    at: Duration,
    msg: Message,
}

/// Recorded events of one capture with their offsets from its first timestamped event.
/// Session noise (banner, login reply, FullyBooted, SuccessfulAuth) is left out.
fn timeline(bytes: &[u8]) -> Vec<Timed> {
    let (msgs, _) = decode_all(bytes);
    let mut t0: Option<f64> = None;
    let mut out = Vec::new();
    for m in msgs {
        if m.kind() != Kind::Event || m.is(b"Event", b"SuccessfulAuth") {
            continue;
        }
        let Some(ts) = m.get_str("Timestamp").and_then(|t| t.parse::<f64>().ok()) else {
            continue;
        };
        let base = *t0.get_or_insert(ts);
        out.push(Timed {
            at: Duration::from_secs_f64((ts - base).max(0.0)),
            msg: m,
        });
    }
    out
}

/// The merged, staggered timeline of all traffic captures.
pub fn traffic_timeline(captures: &[Capture], stagger: Duration) -> Vec<(Duration, Message)> {
    let mut all: Vec<(Duration, usize, Message)> = Vec::new();
    let mut seq = 0;
    for (i, c) in captures.iter().enumerate() {
        let offset = stagger * i as u32;
        for t in timeline(c.bytes) {
            all.push((offset + t.at, seq, t.msg));
            seq += 1;
        }
    }
    // Stable by time, then by original order, so one capture's events never reorder.
    all.sort_by_key(|(at, seq, _)| (*at, *seq));
    all.into_iter().map(|(at, _, m)| (at, m)).collect()
}

/// Makes the caller of call `linkedid` press 1 ("call me back") while waiting in a queue: a
/// `UserEvent(PerezvonCallback,Queue: <q>,Joined: <epoch>)` on their channel, as the dialplan
/// snippet of docs/CALLBACKS.md sends it, `after` their `QueueCallerJoin`. Returns false when
/// the traffic has no such call.
pub fn press_1_in_queue(
    traffic: &mut Vec<(Duration, Message)>,
    linkedid: &str,
    after: Duration,
) -> bool {
    user_event_in_queue(traffic, linkedid, after, "PerezvonCallback", true)
}

/// Makes the caller of call `linkedid` press 9 ("never call me back") while waiting in a
/// queue: `UserEvent(PerezvonNoCall)` on their channel, `after` their `QueueCallerJoin`.
pub fn press_9_in_queue(
    traffic: &mut Vec<(Duration, Message)>,
    linkedid: &str,
    after: Duration,
) -> bool {
    user_event_in_queue(traffic, linkedid, after, "PerezvonNoCall", false)
}

fn user_event_in_queue(
    traffic: &mut Vec<(Duration, Message)>,
    linkedid: &str,
    after: Duration,
    name: &str,
    with_queue: bool,
) -> bool {
    let Some((at, join)) = traffic
        .iter()
        .find(|(_, m)| m.is(b"Event", b"QueueCallerJoin") && m.is(b"Linkedid", linkedid.as_bytes()))
        .cloned()
    else {
        return false;
    };
    let joined = join
        .get_str("Timestamp")
        .and_then(|t| t.split('.').next().map(str::to_string))
        .unwrap_or_default();
    let queue = join.get_str("Queue").unwrap_or_default().into_owned();
    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = vec![(b"Event".to_vec(), b"UserEvent".to_vec())];
    for (n, v) in join.headers() {
        // The channel snapshot Asterisk puts on every channel event.
        if !(n.eq_ignore_ascii_case(b"Event")
            || n.eq_ignore_ascii_case(b"Queue")
            || n.eq_ignore_ascii_case(b"Position")
            || n.eq_ignore_ascii_case(b"Count"))
        {
            pairs.push((n.to_vec(), v.to_vec()));
        }
    }
    pairs.push((b"UserEvent".to_vec(), name.as_bytes().to_vec()));
    if with_queue {
        for (n, v) in [("Queue", queue.as_str()), ("Joined", joined.as_str())] {
            pairs.push((n.as_bytes().to_vec(), v.as_bytes().to_vec()));
        }
    }
    let at = at + after;
    let pos = traffic.partition_point(|(t, _)| *t <= at);
    traffic.insert(pos, (at, Message::from_pairs(&pairs)));
    true
}

/// Copies a message with some header values replaced.
fn rewrite(msg: &Message, f: impl Fn(&[u8], &[u8]) -> Option<Vec<u8>>) -> Message {
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = msg
        .headers()
        .map(|(n, v)| (n.to_vec(), f(n, v).unwrap_or_else(|| v.to_vec())))
        .collect();
    Message::from_pairs(&pairs)
}

fn now_ts() -> String {
    let t = jiff::Timestamp::now();
    format!("{}.{:06}", t.as_second(), t.subsec_microsecond())
}

fn stamp(msg: &Message) -> Message {
    let ts = now_ts();
    rewrite(msg, |n, _| {
        n.eq_ignore_ascii_case(b"Timestamp")
            .then(|| ts.as_bytes().to_vec())
    })
}

/// What the server saw; the demo and tests read it.
#[derive(Debug, Default)]
pub struct LabLog {
    /// Every Originate received, as sent.
    pub originates: Vec<Message>,
    /// The outcome played for each, by ActionID.
    pub outcomes: Vec<(String, LabOutcome)>,
    pub logins: u32,
    /// Callers waiting per queue, as QueueStatus reports them (`QueueParams` `Calls`); a test
    /// sets it to hold requested callbacks back. Absent: 0.
    pub queue_callers: HashMap<String, u32>,
    /// Devices DeviceStateList reports busy (`INUSE`); every other agent device is idle.
    pub busy_devices: Vec<String>,
}

/// Server settings.
pub struct LabOptions {
    /// Traffic to play once, after the first login.
    pub traffic: Vec<(Duration, Message)>,
    /// Picks the outcome of an Originate from the customer number and the attempt for it.
    pub script: fn(&str, u32) -> LabOutcome,
}

/// The state of one lab queue, as QueueSummary and QueueStatus report it. Every queue has
/// three members (`Local/201..203@agent-sim/n`); the first `available` are idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabQueue {
    pub available: u32,
    /// Callers waiting in the queue.
    pub callers: u32,
}

impl Default for LabQueue {
    fn default() -> LabQueue {
        LabQueue {
            available: 3,
            callers: 0,
        }
    }
}

/// A running lab server.
pub struct Lab {
    pub addr: std::net::SocketAddr,
    pub log: Arc<Mutex<LabLog>>,
    /// Queue states by name (a queue not listed: 3 idle members, nobody waiting). Tests change
    /// them while the server runs.
    pub queues: Arc<Mutex<HashMap<String, LabQueue>>>,
    /// Set when the recorded traffic has been played completely.
    pub traffic_done: CancellationToken,
}

struct Shared {
    opts: LabOptions,
    log: Arc<Mutex<LabLog>>,
    traffic_started: std::sync::atomic::AtomicBool,
    traffic_done: CancellationToken,
    /// The traffic waits for this (see [`start_gated`]).
    gate: Option<CancellationToken>,
    ids: AtomicU64,
    attempts: Mutex<HashMap<String, u32>>,
    queues: Arc<Mutex<HashMap<String, LabQueue>>>,
}

impl Shared {
    fn queue(&self, name: &str) -> LabQueue {
        self.queues
            .lock()
            .ok()
            .and_then(|q| q.get(name).copied())
            .unwrap_or_default()
    }
}

/// Binds 127.0.0.1 on an ephemeral port and serves until `shutdown`.
pub async fn start(opts: LabOptions, shutdown: CancellationToken) -> std::io::Result<Lab> {
    start_with_gate(opts, None, shutdown).await
}

/// [`start`], but the traffic is played only once `gate` is cancelled (after the first login
/// as always): a test can first get a browser onto a page, then have the calls arrive.
pub async fn start_gated(
    opts: LabOptions,
    gate: CancellationToken,
    shutdown: CancellationToken,
) -> std::io::Result<Lab> {
    start_with_gate(opts, Some(gate), shutdown).await
}

async fn start_with_gate(
    opts: LabOptions,
    gate: Option<CancellationToken>,
    shutdown: CancellationToken,
) -> std::io::Result<Lab> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let log = Arc::new(Mutex::new(LabLog::default()));
    let traffic_done = CancellationToken::new();
    let queues = Arc::new(Mutex::new(HashMap::new()));
    let shared = Arc::new(Shared {
        opts,
        log: log.clone(),
        traffic_started: false.into(),
        traffic_done: traffic_done.clone(),
        gate,
        ids: AtomicU64::new(1),
        attempts: Mutex::new(HashMap::new()),
        queues: queues.clone(),
    });
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => {
                    let Ok((sock, _)) = accepted else { continue };
                    let shared = shared.clone();
                    let stop = shutdown.clone();
                    tokio::spawn(async move {
                        if let Err(e) = session(sock, shared, stop).await {
                            tracing::debug!(error = %e, "lab session ended");
                        }
                    });
                }
            }
        }
    });
    Ok(Lab {
        addr,
        log,
        queues,
        traffic_done,
    })
}

fn reply(action_id: &[u8], pairs: &[(&str, &str)]) -> Message {
    let mut v: Vec<(Vec<u8>, Vec<u8>)> = vec![(b"Response".to_vec(), b"Success".to_vec())];
    if !action_id.is_empty() {
        v.push((b"ActionID".to_vec(), action_id.to_vec()));
    }
    for (k, val) in pairs {
        v.push((k.as_bytes().to_vec(), val.as_bytes().to_vec()));
    }
    if let Some(first) = pairs.first() {
        if first.0 == "Response" {
            v.remove(0);
        }
    }
    Message::from_pairs(&v)
}

async fn session(
    sock: TcpStream,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let mut framed = Framed::new(sock, AmiCodec::new());
    // The server side never expects a banner; feed the decoder past that state.
    let (tx, mut rx) = mpsc::channel::<Bytes>(1024);
    framed
        .send(Bytes::from_static(b"Asterisk Call Manager/11.0.0\r\n"))
        .await?;
    let (mut sink, mut stream) = framed.split();
    let writer = tokio::spawn(async move {
        while let Some(b) = rx.recv().await {
            if sink.send(b).await.is_err() {
                break;
            }
        }
    });
    let challenge = format!("{}", 100_000_000 + fastrand::u32(..800_000_000));
    let mut logged_in = false;
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => break,
            n = stream.next() => n,
        };
        let Some(Ok(msg)) = next else { break };
        if msg.kind() != Kind::Action {
            continue;
        }
        let id = msg.action_id().unwrap_or_default().to_vec();
        let action = msg
            .get_str("Action")
            .unwrap_or_default()
            .to_ascii_lowercase();
        let send = |m: Message| {
            let tx = tx.clone();
            async move { tx.send(m.to_bytes()).await.is_ok() }
        };
        match action.as_str() {
            "challenge" => {
                send(reply(&id, &[("Challenge", &challenge)])).await;
            }
            "login" => {
                logged_in = true;
                shared.log.lock().map(|mut l| l.logins += 1).ok();
                send(reply(&id, &[("Message", "Authentication accepted")])).await;
                send(Message::from_pairs(&[
                    ("Event", "FullyBooted"),
                    ("Privilege", "system,all"),
                    ("Uptime", "3600"),
                    ("LastReload", "3600"),
                    ("Status", "Fully Booted"),
                ]))
                .await;
                if !shared.traffic_started.swap(true, Ordering::SeqCst) {
                    tokio::spawn(play_traffic(shared.clone(), tx.clone(), shutdown.clone()));
                }
            }
            _ if !logged_in => {
                send(reply(
                    &id,
                    &[("Response", "Error"), ("Message", "Permission denied")],
                ))
                .await;
            }
            "ping" => {
                send(reply(&id, &[("Ping", "Pong"), ("Timestamp", &now_ts())])).await;
            }
            "events" => {
                send(reply(&id, &[("Events", "On")])).await;
            }
            "logoff" => {
                send(reply(
                    &id,
                    &[
                        ("Response", "Goodbye"),
                        ("Message", "Thanks for all the fish."),
                    ],
                ))
                .await;
                break;
            }
            "coreshowchannels" => {
                send(reply(
                    &id,
                    &[("EventList", "start"), ("Message", "Channels will follow")],
                ))
                .await;
                send(Message::from_pairs(&[
                    ("Event", "CoreShowChannelsComplete"),
                    ("ActionID", &String::from_utf8_lossy(&id)),
                    ("EventList", "Complete"),
                    ("ListItems", "0"),
                ]))
                .await;
            }
            "queuestatus" => {
                let queue = msg
                    .get_str("Queue")
                    .map(|q| q.into_owned())
                    .unwrap_or_else(|| "sales".into());
                let aid = String::from_utf8_lossy(&id).into_owned();
                send(reply(
                    &id,
                    &[
                        ("EventList", "start"),
                        ("Message", "Queue status will follow"),
                    ],
                ))
                .await;
                let calls = shared
                    .log
                    .lock()
                    .ok()
                    .and_then(|l| l.queue_callers.get(&queue).copied())
                    .unwrap_or(0)
                    .to_string();
                send(Message::from_pairs(&[
                    ("Event", "QueueParams"),
                    ("Queue", queue.as_str()),
                    ("Max", "0"),
                    ("Strategy", "ringall"),
                    ("Calls", calls.as_str()),
                    ("ActionID", aid.as_str()),
                ]))
                .await;
                let state = shared.queue(&queue);
                for (i, m) in ["201", "202", "203"].into_iter().enumerate() {
                    let iface = format!("Local/{m}@agent-sim/n");
                    // The agent's phone, as a FreePBX member's state interface names it.
                    let phone = format!("PJSIP/{m}");
                    let status = if (i as u32) < state.available {
                        "1"
                    } else {
                        "2"
                    };
                    send(Message::from_pairs(&[
                        ("Event", "QueueMember"),
                        ("Queue", queue.as_str()),
                        ("Name", iface.as_str()),
                        ("Location", iface.as_str()),
                        ("StateInterface", phone.as_str()),
                        ("Membership", "static"),
                        ("Penalty", "0"),
                        ("CallsTaken", "0"),
                        ("InCall", if status == "1" { "0" } else { "1" }),
                        ("Status", status),
                        ("Paused", "0"),
                        ("ActionID", aid.as_str()),
                    ]))
                    .await;
                }
                send(Message::from_pairs(&[
                    ("Event", "QueueStatusComplete"),
                    ("ActionID", aid.as_str()),
                    ("EventList", "Complete"),
                    ("ListItems", "4"),
                ]))
                .await;
            }
            "queuesummary" => {
                let queue = msg
                    .get_str("Queue")
                    .map(|q| q.into_owned())
                    .unwrap_or_else(|| "sales".into());
                let state = shared.queue(&queue);
                let aid = String::from_utf8_lossy(&id).into_owned();
                send(reply(
                    &id,
                    &[
                        ("EventList", "start"),
                        ("Message", "Queue summary will follow"),
                    ],
                ))
                .await;
                send(Message::from_pairs(&[
                    ("Event", "QueueSummary"),
                    ("Queue", queue.as_str()),
                    ("LoggedIn", "3"),
                    ("Available", &state.available.to_string()),
                    ("Callers", &state.callers.to_string()),
                    ("HoldTime", "0"),
                    ("TalkTime", "0"),
                    ("LongestHoldTime", "0"),
                    ("ActionID", aid.as_str()),
                ]))
                .await;
                send(Message::from_pairs(&[
                    ("Event", "QueueSummaryComplete"),
                    ("ActionID", aid.as_str()),
                    ("EventList", "Complete"),
                    ("ListItems", "1"),
                ]))
                .await;
            }
            "extensionstate" => {
                let exten = msg.get_str("Exten").unwrap_or_default().into_owned();
                let context = msg.get_str("Context").unwrap_or_default().into_owned();
                send(reply(
                    &id,
                    &[
                        ("Message", "Extension Status"),
                        ("Exten", &exten),
                        ("Context", &context),
                        ("Hint", &format!("Local/{exten}@agent-sim")),
                        ("Status", "0"),
                        ("StatusText", "Idle"),
                    ],
                ))
                .await;
            }
            "devicestatelist" => {
                // The lab's people, as their phones (PJSIP/20x) and as the queue members'
                // Local channels: idle unless a test made them busy.
                let aid = String::from_utf8_lossy(&id).into_owned();
                send(reply(
                    &id,
                    &[
                        ("EventList", "start"),
                        ("Message", "Device State Changes will follow"),
                    ],
                ))
                .await;
                let busy = shared
                    .log
                    .lock()
                    .map(|l| l.busy_devices.clone())
                    .unwrap_or_default();
                let mut n = 0;
                for m in 201..=209 {
                    for dev in [format!("PJSIP/{m}"), format!("Local/{m}@agent-sim")] {
                        let state = if busy.contains(&dev) {
                            "INUSE"
                        } else {
                            "NOT_INUSE"
                        };
                        send(Message::from_pairs(&[
                            ("Event", "DeviceStateChange"),
                            ("Device", dev.as_str()),
                            ("State", state),
                            ("ActionID", aid.as_str()),
                        ]))
                        .await;
                        n += 1;
                    }
                }
                send(Message::from_pairs(&[
                    ("Event", "DeviceStateListComplete"),
                    ("ActionID", aid.as_str()),
                    ("EventList", "Complete"),
                    ("ListItems", &n.to_string()),
                ]))
                .await;
            }
            "originate" => {
                // Logged before the reply, as Asterisk has the call before it answers: whoever
                // got the reply finds the Originate in the log.
                let outcome = log_originate(&shared, &msg);
                send(reply(&id, &[("Message", "Originate successfully queued")])).await;
                if let Some(outcome) = outcome {
                    let shared = shared.clone();
                    let tx = tx.clone();
                    tokio::spawn(async move { play_callback(shared, msg, outcome, tx).await });
                }
            }
            _ => {
                send(reply(
                    &id,
                    &[
                        ("Response", "Error"),
                        ("Message", "Invalid/unknown command"),
                    ],
                ))
                .await;
            }
        }
    }
    drop(tx);
    writer.abort();
    Ok(())
}

async fn play_traffic(shared: Arc<Shared>, tx: mpsc::Sender<Bytes>, shutdown: CancellationToken) {
    if let Some(gate) = &shared.gate {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = gate.cancelled() => {}
        }
    }
    let start = tokio::time::Instant::now();
    for (at, msg) in &shared.opts.traffic {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep_until(start + *at) => {}
        }
        if tx.send(stamp(msg).to_bytes()).await.is_err() {
            return;
        }
    }
    shared.traffic_done.cancel();
}

/// The number dialled by `Channel: Local/<number>@customer-sim` (or any `Tech/<number>@...`).
fn dialled_number(channel: &str) -> String {
    let after = channel.split_once('/').map_or(channel, |(_, r)| r);
    after
        .split(['@', '/'])
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Counts and logs an Originate, and picks its scripted outcome (`None`: a poisoned lock).
fn log_originate(shared: &Shared, originate: &Message) -> Option<LabOutcome> {
    let action_id = String::from_utf8_lossy(originate.action_id().unwrap_or_default()).into_owned();
    let channel = originate
        .get_str("Channel")
        .unwrap_or_default()
        .into_owned();
    let number = dialled_number(&channel);
    let attempt = {
        let mut a = shared.attempts.lock().ok()?;
        let n = a.entry(number.clone()).or_insert(0);
        *n += 1;
        *n
    };
    let outcome = (shared.opts.script)(&number, attempt);
    if let Ok(mut log) = shared.log.lock() {
        log.originates.push(originate.clone());
        log.outcomes.push((action_id, outcome));
    }
    Some(outcome)
}

/// Replays a recorded callback, rewritten for this Originate.
async fn play_callback(
    shared: Arc<Shared>,
    originate: Message,
    outcome: LabOutcome,
    tx: mpsc::Sender<Bytes>,
) {
    let action_id = String::from_utf8_lossy(originate.action_id().unwrap_or_default()).into_owned();
    let channel = originate
        .get_str("Channel")
        .unwrap_or_default()
        .into_owned();
    let number = dialled_number(&channel);
    let (marker_name, marker_value) = originate
        .get_all(b"Variable")
        .find_map(|v| {
            let s = String::from_utf8_lossy(v);
            s.split_once('=')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        })
        .unwrap_or_default();
    let channel_id = originate.get_str("ChannelId").map(|s| s.into_owned());
    let other_id = originate.get_str("OtherChannelId").map(|s| s.into_owned());

    let (_, bytes) = outcome.capture();
    let events = timeline(bytes);
    // The callback starts at the customer leg's Newchannel; for the capture holding two attempts,
    // it ends where the second begins.
    let Some(first) = events.iter().position(|t| {
        t.msg
            .get(b"Channel")
            .is_some_and(|c| contains(c, b"customer-sim"))
    }) else {
        return;
    };
    let recorded_action = events[first..]
        .iter()
        .find(|t| {
            t.msg.is(b"Event", b"OriginateResponse")
                && t.msg
                    .get(b"ActionID")
                    .is_some_and(|a| a.starts_with(b"cb-"))
        })
        .and_then(|t| t.msg.get_str("ActionID").map(|s| s.into_owned()))
        .unwrap_or_default();
    let recorded_number = events[first]
        .msg
        .get_str("Channel")
        .map(|c| dialled_number(&c))
        .unwrap_or_default();
    // The recorded callback id (the marker's value), replaced by this Originate's wherever it appears.
    let recorded_id = events[first..]
        .iter()
        .find(|t| t.msg.is(b"Event", b"VarSet") && t.msg.is(b"Variable", b"CALLBACK_ID"))
        .and_then(|t| t.msg.get_str("Value").map(|s| s.into_owned()))
        .unwrap_or_default();
    let base = events[first].at;
    let slice: Vec<&Timed> = events[first..]
        .iter()
        .take_while(|t| {
            // Stop at another attempt's OriginateResponse or channel (`no-such-context` in `failed`).
            let aid_other = t.msg.is(b"Event", b"OriginateResponse")
                && t.msg
                    .get(b"ActionID")
                    .is_some_and(|a| a.starts_with(b"cb-") && a != recorded_action.as_bytes());
            let other_ctx = t
                .msg
                .get(b"Channel")
                .is_some_and(|c| contains(c, b"no-such-context"));
            !aid_other && !other_ctx
        })
        .collect();

    // Fresh identities for everything the recording named.
    let mut map: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let stamp_base = jiff::Timestamp::now().as_second();
    for t in &slice {
        for (n, v) in t.msg.headers() {
            let n = n.to_ascii_lowercase();
            let is_id =
                n.ends_with(b"uniqueid") || n.ends_with(b"linkedid") || n == b"bridgeuniqueid";
            if is_id && v != b"<unknown>" && !v.is_empty() && !map.contains_key(v) {
                let fresh = format!(
                    "{stamp_base}.{}",
                    100_000 + shared.ids.fetch_add(1, Ordering::Relaxed)
                );
                map.insert(v.to_vec(), fresh.into_bytes());
            }
        }
    }
    // The customer legs take the ids the Originate asked for.
    for t in &slice {
        if !t.msg.is(b"Event", b"Newchannel") {
            continue;
        }
        let (Some(c), Some(u)) = (t.msg.get(b"Channel"), t.msg.get(b"Uniqueid")) else {
            continue;
        };
        if contains(c, b"customer-sim") {
            let want = if c.ends_with(b";1") {
                &channel_id
            } else {
                &other_id
            };
            if let Some(w) = want {
                map.insert(u.to_vec(), w.clone().into_bytes());
            }
        }
    }
    let suffix = format!(
        "-{:08x}",
        0x1000 + shared.ids.fetch_add(1, Ordering::Relaxed)
    );
    let start = tokio::time::Instant::now();
    for t in slice {
        tokio::time::sleep_until(start + (t.at - base)).await;
        let ts = now_ts();
        let m = rewrite(&t.msg, |n, v| {
            if n.eq_ignore_ascii_case(b"Timestamp") {
                return Some(ts.as_bytes().to_vec());
            }
            if n.eq_ignore_ascii_case(b"ActionID") && v == recorded_action.as_bytes() {
                return Some(action_id.as_bytes().to_vec());
            }
            if let Some(fresh) = map.get(v) {
                return Some(fresh.clone());
            }
            if n.eq_ignore_ascii_case(b"Variable") && v == b"CALLBACK_ID" && !marker_name.is_empty()
            {
                return Some(marker_name.as_bytes().to_vec());
            }
            let mut text = None::<String>;
            if !recorded_id.is_empty()
                && !marker_value.is_empty()
                && contains(v, recorded_id.as_bytes())
            {
                text = Some(String::from_utf8_lossy(v).replace(&recorded_id, &marker_value));
            }
            if !recorded_number.is_empty() && contains(v, recorded_number.as_bytes()) {
                let t = text.unwrap_or_else(|| String::from_utf8_lossy(v).into_owned());
                text = Some(t.replace(&recorded_number, &number));
            }
            if let Some(t) = text {
                return Some(rename_local(&t, &suffix).into_bytes());
            }
            if contains(v, b"Local/") {
                return Some(rename_local(&String::from_utf8_lossy(v), &suffix).into_bytes());
            }
            None
        });
        if tx.send(m.to_bytes()).await.is_err() {
            return;
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}

/// Gives recorded Local channels (`...-00000031;1`) a fresh counter so names never collide with
/// the traffic's channels.
fn rename_local(s: &str, suffix: &str) -> String {
    let Some(semi) = s.rfind(';') else {
        return s.to_string();
    };
    let head = &s[..semi];
    match head.rfind('-') {
        Some(dash)
            if head.len() - dash == 9
                && head[dash + 1..].bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            format!("{}{}{}", &head[..dash], suffix, &s[semi..])
        }
        _ => s.to_string(),
    }
}

/// Encodes messages for a raw write (used by tests driving a lab session by hand).
pub fn encode_all(msgs: &[Message]) -> Bytes {
    let mut b = BytesMut::new();
    for m in msgs {
        m.write_to(&mut b);
    }
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traffic_timeline_keeps_every_event_in_capture_order() {
        let caps = traffic();
        let tl = traffic_timeline(&caps, Duration::from_millis(700));
        let events: usize = caps.iter().map(|c| timeline(c.bytes).len()).sum();
        assert_eq!(tl.len(), events);
        assert!(tl.windows(2).all(|w| w[0].0 <= w[1].0));
        // Half a minute or so, not the seven minutes recorded.
        assert!(
            tl.last().unwrap().0 < Duration::from_secs(60),
            "{:?}",
            tl.last().unwrap().0
        );
    }

    #[test]
    fn local_channel_rename() {
        assert_eq!(
            rename_local("Local/201@agent-sim-00000031;1", "-00001001"),
            "Local/201@agent-sim-00001001;1"
        );
        assert_eq!(
            rename_local("PJSIP/201-00000031", "-00001001"),
            "PJSIP/201-00000031"
        );
        assert_eq!(
            dialled_number("Local/89161234567@customer-sim"),
            "89161234567"
        );
        assert_eq!(dialled_number("PJSIP/89161234567@provider"), "89161234567");
    }

    #[test]
    fn script_covers_every_outcome_and_retries_connect() {
        let mut seen = std::collections::HashSet::new();
        for n in 79_000_000_000u64..79_000_000_020 {
            seen.insert(LabOutcome::scripted(&n.to_string(), 1));
        }
        assert_eq!(seen.len(), 5);
        assert_eq!(
            LabOutcome::scripted("79000000009", 2),
            LabOutcome::Connected
        );
    }
}
