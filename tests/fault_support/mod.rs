//! Support for `tests/fault_injection.rs` and `tests/chaos.rs`: a fake Asterisk (AMI over TCP on 127.0.0.1:0) that
//! plays synthetic calls built from the lab captures, keeps live channels across link cuts and
//! answers `CoreShowChannels` with them, logs every `Originate`; plus a runner for the real
//! `perezvon` binary and the SQLite queries the cases judge by.
//!
//! Calls are the recorded event sequences of `fixtures/asterisk-22` with fresh identities
//! (Uniqueid/Linkedid, bridge ids, Local channel counters), the customer's number replaced,
//! and `Timestamp` set to the wall clock at the moment each event is sent (the daemon runs
//! live). A call may stop at its *hold point* (the first hangup step after the conversation
//! began) until the test releases it: that is how a call is kept up across a restart or a cut.
//! Events sent while no session is logged in are lost, as with Asterisk; the channel table is
//! kept either way.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use perezvon::ami::codec::decode_all;
use perezvon::ami::{Kind, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------------------------------------
// Templates: recorded calls
// ---------------------------------------------------------------------------------------------

static IVR_ABANDON: &[u8] = include_bytes!("../../fixtures/asterisk-22/ivr_abandon.ami");
static ANSWERED_BY_AGENT: &[u8] =
    include_bytes!("../../fixtures/asterisk-22/answered_by_agent.ami");
static CB_SUCCESS: &[u8] =
    include_bytes!("../../fixtures/asterisk-22/callback_originate_success.ami");
static CB_NO_ANSWER: &[u8] =
    include_bytes!("../../fixtures/asterisk-22/callback_originate_no_answer.ami");
static CB_BUSY: &[u8] = include_bytes!("../../fixtures/asterisk-22/callback_originate_busy.ami");

/// The marker variable of the lab (`lab.toml`), as in the captures.
pub const MARKER: &str = "CALLBACK_ID";

#[derive(Clone)]
struct Timed {
    at: Duration,
    msg: Message,
}

/// One recorded call, ready to be instantiated.
struct Template {
    events: Vec<Timed>,
    /// The customer's number as recorded (replaced by the instance's).
    number: String,
    /// Index of the first teardown event after the conversation began.
    hold: Option<usize>,
    /// Callbacks: the recorded ActionID and marker value.
    action_id: Option<String>,
    marker_value: Option<String>,
}

/// Events with a Timestamp, offsets from the first; session noise left out.
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

/// The first teardown step after the conversation began (the two-party BridgeEnter).
fn hold_point(events: &[Timed]) -> Option<usize> {
    let talk = events
        .iter()
        .position(|t| t.msg.is(b"Event", b"BridgeEnter") && t.msg.is(b"BridgeNumChannels", b"2"))?;
    events[talk + 1..]
        .iter()
        .position(|t| {
            let e = t.msg.event().unwrap_or_default();
            matches!(
                e,
                b"SoftHangupRequest" | b"HangupRequest" | b"Hangup" | b"BridgeLeave"
            ) || (e == b"Newexten" && t.msg.is(b"Application", b"Hangup"))
        })
        .map(|i| i + talk + 1)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}

/// `Local/89261112233@customer-sim` -> `89261112233`.
pub fn dialled_number(channel: &str) -> String {
    let after = channel.split_once('/').map_or(channel, |(_, r)| r);
    after
        .split(['@', '/'])
        .next()
        .unwrap_or_default()
        .to_string()
}

/// `89261112233` -> `79261112233` (the lab's numbering: national prefix 8, country code 7).
pub fn normalized(dialled: &str) -> String {
    match dialled.strip_prefix('8') {
        Some(rest) if rest.len() == 10 => format!("7{rest}"),
        _ => dialled.trim_start_matches('+').to_string(),
    }
}

fn inbound_template(bytes: &[u8], recorded_caller: &str) -> Template {
    let events = timeline(bytes);
    let hold = hold_point(&events);
    Template {
        events,
        number: recorded_caller.to_string(),
        hold,
        action_id: None,
        marker_value: None,
    }
}

/// The callback part of a `callback_*` capture: from the customer leg's Newchannel on.
fn callback_template(bytes: &[u8]) -> Template {
    let all = timeline(bytes);
    let first = all
        .iter()
        .position(|t| {
            t.msg
                .get(b"Channel")
                .is_some_and(|c| contains(c, b"customer-sim"))
        })
        .expect("a callback capture has a customer leg");
    let action_id = all[first..]
        .iter()
        .find(|t| {
            t.msg.is(b"Event", b"OriginateResponse")
                && t.msg
                    .get(b"ActionID")
                    .is_some_and(|a| a.starts_with(b"cb-"))
        })
        .and_then(|t| t.msg.get_str("ActionID").map(|s| s.into_owned()));
    let base = all[first].at;
    let events: Vec<Timed> = all[first..]
        .iter()
        .take_while(|t| {
            let other_or = t.msg.is(b"Event", b"OriginateResponse")
                && t.msg.get(b"ActionID").is_some_and(|a| {
                    a.starts_with(b"cb-") && Some(a) != action_id.as_deref().map(str::as_bytes)
                });
            !other_or
        })
        .map(|t| Timed {
            at: t.at - base,
            msg: t.msg.clone(),
        })
        .collect();
    let number = events[0]
        .msg
        .get_str("Channel")
        .map(|c| dialled_number(&c))
        .unwrap_or_default();
    let marker_value = events
        .iter()
        .find(|t| t.msg.is(b"Event", b"VarSet") && t.msg.is(b"Variable", MARKER.as_bytes()))
        .and_then(|t| t.msg.get_str("Value").map(|s| s.into_owned()));
    let hold = hold_point(&events);
    Template {
        events,
        number,
        hold,
        action_id,
        marker_value,
    }
}

fn templates() -> &'static HashMap<&'static str, Template> {
    static T: OnceLock<HashMap<&'static str, Template>> = OnceLock::new();
    T.get_or_init(|| {
        let mut m = HashMap::new();
        m.insert("miss", inbound_template(IVR_ABANDON, "79031112233"));
        m.insert(
            "answered",
            inbound_template(ANSWERED_BY_AGENT, "79161234567"),
        );
        m.insert("cb-connected", callback_template(CB_SUCCESS));
        m.insert("cb-no-answer", callback_template(CB_NO_ANSWER));
        m.insert("cb-busy", callback_template(CB_BUSY));
        for (name, t) in &m {
            assert!(!t.events.is_empty(), "template {name} is empty");
        }
        assert!(m["answered"].hold.is_some() && m["cb-connected"].hold.is_some());
        m
    })
}

/// How the fake answers an Originate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Customer answers, agent 201 answers, they talk (`callback_originate_success`).
    Connected,
    /// Rings 10 s, OriginateResponse Failure/3 (`callback_originate_no_answer`).
    NoAnswer,
    /// OriginateResponse Failure/5 at once (`callback_originate_busy`).
    Busy,
}

/// The fake's answer to one Originate: its outcome, and whether the call stops at its hold
/// point (connected only) until the test releases it.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub outcome: Outcome,
    pub hold: bool,
}

/// Picks the plan from the customer's normalised number and the fake's count of Originates to
/// it (1 = first).
pub type Script = Box<dyn Fn(&str, u32) -> Plan + Send + Sync>;

// ---------------------------------------------------------------------------------------------
// The fake server
// ---------------------------------------------------------------------------------------------

/// Every Originate received, as the fake saw it.
#[derive(Debug, Clone)]
pub struct OriginateLog {
    /// The fake's name ([`Fake::start_named`]; `"fake"` otherwise).
    pub server: String,
    pub action_id: String,
    pub channel_id: String,
    /// Normalised customer number.
    pub number: String,
    pub received: Instant,
    /// Received while cutting the link (read from the socket, not answered).
    pub unanswered: bool,
    /// When the callback call it placed sent its last event (`None`: still up).
    pub ended: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// An inbound call nobody took (IVR abandon).
    Miss,
    /// An inbound call answered by agent 201.
    Answered,
    /// A callback placed by an Originate.
    Callback(Outcome),
}

/// Every call the fake played.
#[derive(Debug, Clone)]
pub struct CallLog {
    pub number: String,
    pub kind: CallKind,
    /// The Originate that created it (callbacks).
    pub origin: Option<String>,
    pub linkedid: String,
    pub started: Instant,
    /// When its last event was sent.
    pub ended: Option<Instant>,
    /// Events of this call sent while no session was logged in (nobody heard them).
    pub unheard: u32,
}

/// A call in progress, for the test to wait on and release.
#[derive(Clone)]
pub struct CallHandle {
    pub index: usize,
    pub number: String,
    pub linkedid: String,
    /// Cancelled when the call reached its hold point.
    pub held: CancellationToken,
    /// Cancel to let a held call go on to its end.
    pub release: CancellationToken,
    /// Cancelled when the call's last event was sent.
    pub done: CancellationToken,
}

/// A live channel, for CoreShowChannels.
struct Chan {
    uniqueid: String,
    snapshot: Vec<(String, String)>,
    bridge: String,
    app: String,
    app_data: String,
    created: Instant,
}

const SNAPSHOT: &[&str] = &[
    "Channel",
    "ChannelState",
    "ChannelStateDesc",
    "CallerIDNum",
    "CallerIDName",
    "ConnectedLineNum",
    "ConnectedLineName",
    "Language",
    "AccountCode",
    "Context",
    "Exten",
    "Priority",
    "Uniqueid",
    "Linkedid",
];

struct SessionRef {
    id: u64,
    tx: mpsc::UnboundedSender<Bytes>,
    cut: CancellationToken,
}

#[derive(Default)]
struct State {
    sessions: Vec<SessionRef>,
    refuse_until: Option<Instant>,
    channels: Vec<Chan>,
    originates: Vec<OriginateLog>,
    calls: Vec<CallLog>,
    handles: Vec<CallHandle>,
    logins: u32,
    /// CoreShowChannels answered.
    resyncs: u32,
    /// Cut the link when the n-th Originate arrives (1-based), refusing reconnects this long.
    cut_on_originate: Option<(usize, Duration)>,
    cuts: u32,
    refused: u32,
    /// Asterisk's cdr_csv, when the test asked for it ([`Fake::write_cdr`]).
    cdr: Option<CdrWriter>,
}

struct Inner {
    name: String,
    state: Mutex<State>,
    ids: AtomicU64,
    script: Script,
    epoch: u64,
}

/// The fake Asterisk. Clones share one server.
#[derive(Clone)]
pub struct Fake {
    inner: Arc<Inner>,
    pub addr: SocketAddr,
}

impl Fake {
    pub async fn start(script: Script) -> Fake {
        Fake::start_named("fake", script).await
    }

    /// [`Fake::start`], the fake's Originate log naming it `name` (a farm of fakes).
    pub async fn start_named(name: &str, script: Script) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(Inner {
            name: name.to_string(),
            state: Mutex::new(State::default()),
            ids: AtomicU64::new(1),
            script,
            epoch: jiff::Timestamp::now().as_second() as u64,
        });
        let acc = inner.clone();
        tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let refuse = {
                    let mut st = acc.lock();
                    let r = st.refuse_until.is_some_and(|u| Instant::now() < u);
                    if r {
                        st.refused += 1;
                    }
                    r
                };
                if refuse {
                    // Connection accepted and dropped at once: no banner, no login.
                    drop(sock);
                    continue;
                }
                tokio::spawn(session(acc.clone(), sock));
            }
        });
        Fake { inner, addr }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The name given at [`Fake::start_named`].
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Plays an inbound call nobody answers (IVR abandon, ~5 s) from `+<number>`.
    pub fn miss(&self, number: &str) -> CallHandle {
        self.inner
            .play_inbound("miss", CallKind::Miss, number, false)
    }

    /// Plays an inbound call answered by agent 201 after 3 s; with `hold`, the conversation
    /// lasts until released.
    pub fn answered(&self, number: &str, hold: bool) -> CallHandle {
        self.inner
            .play_inbound("answered", CallKind::Answered, number, hold)
    }

    /// Cuts every session now and refuses connections for `refuse`.
    pub fn cut_link(&self, refuse: Duration) {
        self.inner.lock().cut_all(refuse);
    }

    /// Cuts the link when the n-th Originate (1-based, counted over the fake's life) arrives:
    /// that Originate is read (and its call played) but never answered.
    pub fn cut_on_originate(&self, n: usize, refuse: Duration) {
        self.inner.lock().cut_on_originate = Some((n, refuse));
    }

    pub fn logins(&self) -> u32 {
        self.inner.lock().logins
    }

    /// From now on, writes a cdr_csv row (Master.csv columns with uniqueid and userfield,
    /// dates in UTC) to `path` for every channel of every call played, at its hangup, whether
    /// a session is logged in or not: Asterisk's own record of what perezvon may have missed.
    pub fn write_cdr(&self, path: &Path) {
        self.inner.lock().cdr = Some(CdrWriter {
            path: path.to_path_buf(),
            chans: HashMap::new(),
        });
    }

    pub fn resyncs(&self) -> u32 {
        self.inner.lock().resyncs
    }

    pub fn cuts(&self) -> u32 {
        self.inner.lock().cuts
    }

    pub fn refused(&self) -> u32 {
        self.inner.lock().refused
    }

    pub fn sessions(&self) -> usize {
        self.inner.lock().sessions.len()
    }

    pub fn originates(&self) -> Vec<OriginateLog> {
        self.inner.lock().originates.clone()
    }

    pub fn calls(&self) -> Vec<CallLog> {
        self.inner.lock().calls.clone()
    }

    pub fn live_channels(&self) -> usize {
        self.inner.lock().channels.len()
    }

    /// Calls whose last event has not been sent yet.
    pub fn live_calls(&self) -> usize {
        self.inner
            .lock()
            .calls
            .iter()
            .filter(|c| c.ended.is_none())
            .count()
    }

    /// The handle of the latest call to or from `number`, if any.
    pub fn handle_of(&self, number: &str, kind: impl Fn(CallKind) -> bool) -> Option<CallHandle> {
        let st = self.inner.lock();
        st.handles
            .iter()
            .rev()
            .find(|h| h.number == number && kind(st.calls[h.index].kind))
            .cloned()
    }

    /// Originates received while a call of the same customer (another callback, or a call of
    /// their own) was up on the fake, one line each.
    pub fn originates_while_up(&self) -> Vec<String> {
        self.originates_during(|_| true)
    }

    /// [`Fake::originates_while_up`], counting only calls of the kinds `kind` accepts.
    pub fn originates_during(&self, kind: impl Fn(CallKind) -> bool) -> Vec<String> {
        let st = self.inner.lock();
        let mut out = Vec::new();
        for o in &st.originates {
            for c in &st.calls {
                if c.number != o.number
                    || c.origin.as_deref() == Some(o.action_id.as_str())
                    || !kind(c.kind)
                {
                    continue;
                }
                let up = c.started <= o.received && c.ended.is_none_or(|e| o.received <= e);
                if up {
                    out.push(format!(
                        "Originate {} to {} while its {:?} call {} was up",
                        o.action_id, o.number, c.kind, c.linkedid
                    ));
                }
            }
        }
        out
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn next(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }

    fn fresh_uniqueid(&self) -> String {
        format!("{}.{}", self.epoch, 10_000 + self.next())
    }

    /// Sends an event to every logged-in session (stamped now) and keeps the channel table.
    /// Returns whether a session was there to hear it.
    fn emit(&self, msg: &Message) -> bool {
        let ts = {
            let t = jiff::Timestamp::now();
            format!("{}.{:06}", t.as_second(), t.subsec_microsecond())
        };
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = msg
            .headers()
            .map(|(n, v)| {
                let v = if n.eq_ignore_ascii_case(b"Timestamp") {
                    ts.as_bytes().to_vec()
                } else {
                    v.to_vec()
                };
                (n.to_vec(), v)
            })
            .collect();
        let m = Message::from_pairs(&pairs);
        let bytes = m.to_bytes();
        let mut st = self.lock();
        st.track(&m);
        for s in &st.sessions {
            let _ = s.tx.send(bytes.clone());
        }
        !st.sessions.is_empty()
    }

    fn play_inbound(
        self: &Arc<Self>,
        template: &str,
        kind: CallKind,
        number: &str,
        hold: bool,
    ) -> CallHandle {
        let t = &templates()[template];
        let mut rw = Rewrite::new(self);
        rw.collect_ids(&t.events);
        rw.subs.push((t.number.clone(), number.to_string()));
        let events = rw.apply(&t.events);
        self.start_call(events, t.hold.filter(|_| hold), number, kind, None)
    }

    /// Plays the callback call of the Originate `originate` (the `index`-th of the log).
    fn play_callback(self: &Arc<Self>, originate: &Action, index: usize, number: &str, plan: Plan) {
        let name = match plan.outcome {
            Outcome::Connected => "cb-connected",
            Outcome::NoAnswer => "cb-no-answer",
            Outcome::Busy => "cb-busy",
        };
        let t = &templates()[name];
        let mut rw = Rewrite::new(self);
        rw.collect_ids(&t.events);
        // The customer legs take the ids the Originate asked for.
        for ev in &t.events {
            if !ev.msg.is(b"Event", b"Newchannel") {
                continue;
            }
            let (Some(c), Some(u)) = (ev.msg.get(b"Channel"), ev.msg.get(b"Uniqueid")) else {
                continue;
            };
            if !contains(c, b"customer-sim") {
                continue;
            }
            let want = if c.ends_with(b";1") {
                originate.get("ChannelId")
            } else {
                originate.get("OtherChannelId")
            };
            if let Some(w) = want {
                rw.ids.insert(u.to_vec(), w.as_bytes().to_vec());
            }
        }
        let action_id = originate.get("ActionID").unwrap_or_default().to_string();
        if let Some(recorded) = &t.action_id {
            rw.action = Some((recorded.clone(), action_id.clone()));
        }
        if let Some((name, value)) = originate.all("Variable").find_map(|v| {
            v.split_once('=')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        }) {
            rw.marker_name = Some(name);
            if let Some(recorded) = &t.marker_value {
                rw.subs.push((recorded.clone(), value));
            }
        }
        let dialled = format!("8{}", &number[1..]);
        rw.subs.push((t.number.clone(), dialled));
        let events = rw.apply(&t.events);
        self.start_call(
            events,
            t.hold.filter(|_| plan.hold),
            number,
            CallKind::Callback(plan.outcome),
            Some((action_id, index)),
        );
    }

    fn start_call(
        self: &Arc<Self>,
        events: Vec<Timed>,
        hold: Option<usize>,
        number: &str,
        kind: CallKind,
        origin: Option<(String, usize)>,
    ) -> CallHandle {
        let originate = origin.as_ref().map(|(_, i)| *i);
        let origin = origin.map(|(a, _)| a);
        let linkedid = events
            .first()
            .and_then(|t| t.msg.get_str("Linkedid").map(|s| s.into_owned()))
            .unwrap_or_default();
        let handle = {
            let mut st = self.lock();
            st.calls.push(CallLog {
                number: number.to_string(),
                kind,
                origin,
                linkedid: linkedid.clone(),
                started: Instant::now(),
                ended: None,
                unheard: 0,
            });
            let h = CallHandle {
                index: st.calls.len() - 1,
                number: number.to_string(),
                linkedid,
                held: CancellationToken::new(),
                release: CancellationToken::new(),
                done: CancellationToken::new(),
            };
            st.handles.push(h.clone());
            h
        };
        let inner = self.clone();
        let h = handle.clone();
        tokio::spawn(async move {
            let mut base = Instant::now();
            for (i, t) in events.iter().enumerate() {
                if hold == Some(i) {
                    h.held.cancel();
                    h.release.cancelled().await;
                    base = Instant::now()
                        .checked_sub(t.at)
                        .unwrap_or_else(Instant::now);
                }
                tokio::time::sleep_until(base + t.at).await;
                if !inner.emit(&t.msg) {
                    inner.lock().calls[h.index].unheard += 1;
                }
            }
            {
                let mut st = inner.lock();
                let now = Instant::now();
                st.calls[h.index].ended = Some(now);
                if let Some(i) = originate {
                    st.originates[i].ended = Some(now);
                }
            }
            h.done.cancel();
        });
        handle
    }
}

impl State {
    fn cut_all(&mut self, refuse: Duration) {
        for s in self.sessions.drain(..) {
            s.cut.cancel();
        }
        self.refuse_until = Some(Instant::now() + refuse);
        self.cuts += 1;
    }

    /// Keeps the table of live channels as Asterisk would, from the events sent.
    fn track(&mut self, m: &Message) {
        if let Some(w) = self.cdr.as_mut() {
            w.track(m);
        }
        let (Some(ev), Some(uid)) = (m.event(), m.get_str("Uniqueid")) else {
            return;
        };
        if m.get(b"Channel").is_none() {
            return;
        }
        let uid = uid.into_owned();
        let snap = |m: &Message| -> Vec<(String, String)> {
            SNAPSHOT
                .iter()
                .map(|k| (k.to_string(), m.get_str(k).unwrap_or_default().into_owned()))
                .collect()
        };
        match ev {
            b"Newchannel" => self.channels.push(Chan {
                uniqueid: uid,
                snapshot: snap(m),
                bridge: String::new(),
                app: String::new(),
                app_data: String::new(),
                created: Instant::now(),
            }),
            b"Hangup" => self.channels.retain(|c| c.uniqueid != uid),
            _ => {
                let Some(c) = self.channels.iter_mut().find(|c| c.uniqueid == uid) else {
                    return;
                };
                // Only events carrying a whole channel snapshot (not OriginateResponse).
                if m.get(b"ChannelState").is_some() {
                    c.snapshot = snap(m);
                }
                match ev {
                    b"Newexten" => {
                        c.app = m.get_str("Application").unwrap_or_default().into_owned();
                        c.app_data = m.get_str("AppData").unwrap_or_default().into_owned();
                    }
                    b"BridgeEnter" => {
                        c.bridge = m.get_str("BridgeUniqueid").unwrap_or_default().into_owned();
                    }
                    b"BridgeLeave" => c.bridge.clear(),
                    _ => {}
                }
            }
        }
    }

    /// The CoreShowChannels reply: the list start, one item per live channel, the end.
    fn core_show_channels(&self, action_id: &str) -> Vec<u8> {
        let mut out = encode(&[
            ("Response", "Success"),
            ("ActionID", action_id),
            ("EventList", "start"),
            ("Message", "Channels will follow"),
        ]);
        for c in &self.channels {
            let secs = c.created.elapsed().as_secs();
            let duration = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
            let mut pairs: Vec<(&str, &str)> =
                vec![("Event", "CoreShowChannel"), ("ActionID", action_id)];
            for (k, v) in &c.snapshot {
                pairs.push((k, v));
            }
            pairs.extend_from_slice(&[
                ("BridgeId", c.bridge.as_str()),
                ("Application", c.app.as_str()),
                ("ApplicationData", c.app_data.as_str()),
                ("Duration", duration.as_str()),
            ]);
            out.extend_from_slice(&encode(&pairs));
        }
        let n = self.channels.len().to_string();
        out.extend_from_slice(&encode(&[
            ("Event", "CoreShowChannelsComplete"),
            ("ActionID", action_id),
            ("EventList", "Complete"),
            ("ListItems", n.as_str()),
        ]));
        out
    }
}

/// One channel's CDR as cdr_csv would write it: one row per channel, with the last
/// dialplan step, the first answer and the last channel it dialled.
struct CdrChan {
    channel: String,
    src: String,
    clid: String,
    dst: String,
    dcontext: String,
    lastapp: String,
    lastdata: String,
    dstchannel: String,
    start: jiff::Timestamp,
    answer: Option<jiff::Timestamp>,
}

struct CdrWriter {
    path: PathBuf,
    chans: HashMap<String, CdrChan>,
}

impl CdrWriter {
    fn track(&mut self, m: &Message) {
        let get = |k: &str| m.get_str(k).unwrap_or_default().into_owned();
        let now = jiff::Timestamp::now();
        let (Some(ev), Some(uid)) = (m.event(), m.get_str("Uniqueid")) else {
            return;
        };
        let uid = uid.into_owned();
        // cdr_csv writes the caller id the channel has at the end.
        let cid = get("CallerIDNum");
        if !cid.is_empty() && cid != "<unknown>" {
            if let Some(c) = self.chans.get_mut(&uid) {
                c.clid = format!("\"\" <{cid}>");
                c.src = cid;
            }
        }
        match ev {
            b"Newchannel" => {
                let src = get("CallerIDNum");
                self.chans.insert(
                    uid,
                    CdrChan {
                        channel: get("Channel"),
                        clid: format!(
                            "\"{}\" <{src}>",
                            get("CallerIDName").replace("<unknown>", "")
                        ),
                        src,
                        dst: get("Exten"),
                        dcontext: get("Context"),
                        lastapp: String::new(),
                        lastdata: String::new(),
                        dstchannel: String::new(),
                        start: now,
                        answer: None,
                    },
                );
            }
            b"Newexten" => {
                if let Some(c) = self.chans.get_mut(&uid) {
                    c.dst = get("Exten");
                    c.dcontext = get("Context");
                    c.lastapp = get("Application");
                    c.lastdata = get("AppData");
                }
            }
            b"Newstate" if get("ChannelState") == "6" => {
                if let Some(c) = self.chans.get_mut(&uid) {
                    c.answer.get_or_insert(now);
                }
            }
            b"DialBegin" if m.get(b"Channel").is_some() => {
                if let Some(c) = self.chans.get_mut(&uid) {
                    c.dstchannel = get("DestChannel");
                }
            }
            b"Hangup" => {
                if let Some(c) = self.chans.remove(&uid) {
                    self.write(&uid, &c, now);
                }
            }
            _ => {}
        }
    }

    fn write(&self, uid: &str, c: &CdrChan, end: jiff::Timestamp) {
        let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        let date = |t: jiff::Timestamp| {
            q(&t.to_zoned(jiff::tz::TimeZone::UTC)
                .strftime("%Y-%m-%d %H:%M:%S")
                .to_string())
        };
        let secs = |a: jiff::Timestamp| (end.as_second() - a.as_second()).max(0);
        let row = [
            q(""),
            q(&c.src),
            q(&c.dst),
            q(&c.dcontext),
            q(&c.clid),
            q(&c.channel),
            q(&c.dstchannel),
            q(&c.lastapp),
            q(&c.lastdata),
            date(c.start),
            c.answer.map(date).unwrap_or_default(),
            date(end),
            secs(c.start).to_string(),
            c.answer.map_or(0, secs).to_string(),
            q(if c.answer.is_some() {
                "ANSWERED"
            } else {
                "NO ANSWER"
            }),
            q("DOCUMENTATION"),
            q(uid),
            q(""),
        ]
        .join(",");
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .unwrap();
        writeln!(f, "{row}").unwrap();
    }
}

/// Fresh identities for one call instance.
struct Rewrite<'a> {
    inner: &'a Inner,
    ids: HashMap<Vec<u8>, Vec<u8>>,
    counters: HashMap<String, String>,
    /// Substring replacements (number, marker value), in order.
    subs: Vec<(String, String)>,
    action: Option<(String, String)>,
    marker_name: Option<String>,
}

impl<'a> Rewrite<'a> {
    fn new(inner: &'a Inner) -> Rewrite<'a> {
        Rewrite {
            inner,
            ids: HashMap::new(),
            counters: HashMap::new(),
            subs: Vec::new(),
            action: None,
            marker_name: None,
        }
    }

    fn collect_ids(&mut self, events: &[Timed]) {
        for t in events {
            for (n, v) in t.msg.headers() {
                let n = n.to_ascii_lowercase();
                let bridge = n == b"bridgeuniqueid";
                let is_id = bridge || n.ends_with(b"uniqueid") || n.ends_with(b"linkedid");
                if !is_id || v.is_empty() || v == b"<unknown>" || self.ids.contains_key(v) {
                    continue;
                }
                let fresh = if bridge {
                    let k = self.inner.next();
                    format!("fa{k:06x}-0000-4000-8000-{k:012x}")
                } else {
                    self.inner.fresh_uniqueid()
                };
                self.ids.insert(v.to_vec(), fresh.into_bytes());
            }
        }
    }

    /// `...-0000001a;1` -> a fresh counter, the same for both halves.
    fn rename_counters(&mut self, s: &str) -> String {
        let b = s.as_bytes();
        let mut out = String::with_capacity(s.len());
        let mut last = 0;
        for i in 9..b.len() {
            if b[i] == b';' && b[i - 9] == b'-' && b[i - 8..i].iter().all(u8::is_ascii_hexdigit) {
                out.push_str(&s[last..i - 8]);
                let old = &s[i - 8..i];
                let inner = self.inner;
                let new = self
                    .counters
                    .entry(old.to_string())
                    .or_insert_with(|| format!("{:08x}", 0x1000 + inner.next()));
                out.push_str(new);
                last = i;
            }
        }
        out.push_str(&s[last..]);
        out
    }

    fn apply(&mut self, events: &[Timed]) -> Vec<Timed> {
        let mut out = Vec::with_capacity(events.len());
        for t in events {
            let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
            for (n, v) in t.msg.headers() {
                let value = if let Some(fresh) = self.ids.get(v) {
                    fresh.clone()
                } else if n.eq_ignore_ascii_case(b"ActionID")
                    && self.action.as_ref().is_some_and(|(r, _)| r.as_bytes() == v)
                {
                    self.action
                        .as_ref()
                        .map(|(_, a)| a.clone().into_bytes())
                        .unwrap_or_default()
                } else if n.eq_ignore_ascii_case(b"Variable")
                    && v == MARKER.as_bytes()
                    && self.marker_name.is_some()
                {
                    self.marker_name.clone().unwrap_or_default().into_bytes()
                } else if n.eq_ignore_ascii_case(b"Timestamp") {
                    v.to_vec()
                } else {
                    let mut s = String::from_utf8_lossy(v).into_owned();
                    for (from, to) in &self.subs {
                        if s.contains(from.as_str()) {
                            s = s.replace(from.as_str(), to);
                        }
                    }
                    if s.contains(';') {
                        s = self.rename_counters(&s);
                    }
                    s.into_bytes()
                };
                pairs.push((n.to_vec(), value));
            }
            out.push(Timed {
                at: t.at,
                msg: Message::from_pairs(&pairs),
            });
        }
        out
    }
}

/// An action as received: headers in order.
struct Action(Vec<(String, String)>);

impl Action {
    fn parse(raw: &[u8]) -> Action {
        let text = String::from_utf8_lossy(raw);
        Action(
            text.split("\r\n")
                .filter(|l| !l.is_empty())
                .filter_map(|l| {
                    l.split_once(':')
                        .map(|(k, v)| (k.trim().to_string(), v.trim_start().to_string()))
                })
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn encode(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut s = String::new();
    for (k, v) in pairs {
        s.push_str(k);
        s.push_str(": ");
        s.push_str(v);
        s.push_str("\r\n");
    }
    s.push_str("\r\n");
    s.into_bytes()
}

struct Session {
    id: u64,
    tx: mpsc::UnboundedSender<Bytes>,
    cut: CancellationToken,
    logged_in: bool,
}

impl Session {
    fn send(&self, bytes: Vec<u8>) {
        if !self.cut.is_cancelled() {
            let _ = self.tx.send(Bytes::from(bytes));
        }
    }
}

async fn session(inner: Arc<Inner>, sock: TcpStream) {
    let _ = sock.set_nodelay(true);
    let (mut rd, mut wr) = sock.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
    let cut = CancellationToken::new();
    let stop_writer = cut.clone();
    let writer = tokio::spawn(async move {
        loop {
            tokio::select! {
                biased;
                _ = stop_writer.cancelled() => break,
                b = rx.recv() => match b {
                    Some(b) => if wr.write_all(&b).await.is_err() { break },
                    None => break,
                },
            }
        }
    });
    let mut s = Session {
        id: inner.next(),
        tx,
        cut: cut.clone(),
        logged_in: false,
    };
    s.send(b"Asterisk Call Manager/11.0.0\r\n".to_vec());
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        tokio::select! {
            _ = cut.cancelled() => {
                // What the client already sent has reached this host: read it (an Originate
                // in it is a call Asterisk places) but answer nothing.
                let mut tmp = vec![0u8; 64 * 1024];
                while let Ok(n) = rd.try_read(&mut tmp) {
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&tmp[..n]);
                }
                process(&inner, &mut buf, &mut s);
                break;
            }
            r = rd.read_buf(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if !process(&inner, &mut buf, &mut s) {
                        break;
                    }
                }
            },
        }
    }
    {
        let mut st = inner.lock();
        st.sessions.retain(|x| x.id != s.id);
    }
    if cut.is_cancelled() {
        writer.abort();
    } else {
        // A normal end (Logoff, EOF): let what is queued go out first.
        drop(s);
        let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
    }
}

/// Handles every complete action in `buf`. False: close the session.
fn process(inner: &Arc<Inner>, buf: &mut BytesMut, s: &mut Session) -> bool {
    while let Some(i) = memchr::memmem::find(buf, b"\r\n\r\n") {
        let raw = buf.split_to(i + 4);
        let a = Action::parse(&raw);
        if !handle(inner, &a, s) {
            return false;
        }
    }
    true
}

fn handle(inner: &Arc<Inner>, a: &Action, s: &mut Session) -> bool {
    let name = a.get("Action").unwrap_or_default().to_ascii_lowercase();
    let id = a.get("ActionID").unwrap_or_default().to_string();
    let ok = |extra: &[(&str, &str)]| {
        let mut p = vec![("Response", "Success"), ("ActionID", id.as_str())];
        p.extend_from_slice(extra);
        encode(&p)
    };
    match name.as_str() {
        "challenge" => s.send(ok(&[("Challenge", "406985235")])),
        "login" => {
            s.send(ok(&[("Message", "Authentication accepted")]));
            s.send(encode(&[
                ("Event", "FullyBooted"),
                ("Privilege", "system,all"),
                ("Uptime", "3600"),
                ("LastReload", "3600"),
                ("Status", "Fully Booted"),
            ]));
            s.logged_in = true;
            let mut st = inner.lock();
            st.logins += 1;
            if !s.cut.is_cancelled() {
                st.sessions.push(SessionRef {
                    id: s.id,
                    tx: s.tx.clone(),
                    cut: s.cut.clone(),
                });
            }
        }
        _ if !s.logged_in => s.send(encode(&[
            ("Response", "Error"),
            ("ActionID", id.as_str()),
            ("Message", "Permission denied"),
        ])),
        "ping" => {
            let t = jiff::Timestamp::now();
            let ts = format!("{}.{:06}", t.as_second(), t.subsec_microsecond());
            s.send(ok(&[("Ping", "Pong"), ("Timestamp", ts.as_str())]));
        }
        "events" => s.send(ok(&[("Events", "On")])),
        "logoff" => {
            s.send(encode(&[
                ("Response", "Goodbye"),
                ("ActionID", id.as_str()),
                ("Message", "Thanks for all the fish."),
            ]));
            return false;
        }
        "coreshowchannels" => {
            // Under the lock: no event can slip between the list and the stream after it.
            let mut st = inner.lock();
            if !s.cut.is_cancelled() {
                let reply = st.core_show_channels(&id);
                let _ = s.tx.send(Bytes::from(reply));
                st.resyncs += 1;
            }
        }
        "queuestatus" => {
            let queue = a.get("Queue").unwrap_or("sales").to_string();
            let mut out = ok(&[
                ("EventList", "start"),
                ("Message", "Queue status will follow"),
            ]);
            for m in ["201", "202", "203"] {
                let iface = format!("Local/{m}@agent-sim/n");
                out.extend(encode(&[
                    ("Event", "QueueMember"),
                    ("ActionID", id.as_str()),
                    ("Queue", queue.as_str()),
                    ("Name", iface.as_str()),
                    ("Location", iface.as_str()),
                    ("StateInterface", iface.as_str()),
                    ("Membership", "static"),
                    ("Penalty", "0"),
                    ("CallsTaken", "0"),
                    ("InCall", "0"),
                    ("Status", "1"),
                    ("Paused", "0"),
                ]));
            }
            out.extend(encode(&[
                ("Event", "QueueStatusComplete"),
                ("ActionID", id.as_str()),
                ("EventList", "Complete"),
                ("ListItems", "3"),
            ]));
            s.send(out);
        }
        "devicestatelist" => {
            let mut out = ok(&[
                ("EventList", "start"),
                ("Message", "Device State Changes will follow"),
            ]);
            for m in ["201", "202", "203"] {
                let dev = format!("Local/{m}@agent-sim");
                out.extend(encode(&[
                    ("Event", "DeviceStateChange"),
                    ("ActionID", id.as_str()),
                    ("Device", dev.as_str()),
                    ("State", "NOT_INUSE"),
                ]));
            }
            out.extend(encode(&[
                ("Event", "DeviceStateListComplete"),
                ("ActionID", id.as_str()),
                ("EventList", "Complete"),
                ("ListItems", "3"),
            ]));
            s.send(out);
        }
        "originate" => on_originate(inner, a, s),
        _ => s.send(encode(&[
            ("Response", "Error"),
            ("ActionID", id.as_str()),
            ("Message", "Invalid/unknown command"),
        ])),
    }
    true
}

fn on_originate(inner: &Arc<Inner>, a: &Action, s: &Session) {
    let action_id = a.get("ActionID").unwrap_or_default().to_string();
    let number = normalized(&dialled_number(a.get("Channel").unwrap_or_default()));
    let (attempt, cut_now, index) = {
        let mut st = inner.lock();
        let unanswered = s.cut.is_cancelled();
        st.originates.push(OriginateLog {
            server: inner.name.clone(),
            action_id: action_id.clone(),
            channel_id: a.get("ChannelId").unwrap_or_default().to_string(),
            number: number.clone(),
            received: Instant::now(),
            unanswered,
            ended: None,
        });
        let n = st.originates.len();
        let attempt = st.originates.iter().filter(|o| o.number == number).count() as u32;
        let cut_now = match st.cut_on_originate {
            Some((k, refuse)) if k == n => {
                st.cut_on_originate = None;
                st.cut_all(refuse);
                st.originates[n - 1].unanswered = true;
                true
            }
            _ => false,
        };
        (attempt, cut_now, n - 1)
    };
    if !cut_now {
        s.send(encode(&[
            ("Response", "Success"),
            ("ActionID", action_id.as_str()),
            ("Message", "Originate successfully queued"),
        ]));
    }
    let plan = (inner.script)(&number, attempt);
    inner.play_callback(a, index, &number, plan);
}

// ---------------------------------------------------------------------------------------------
// The daemon under test
// ---------------------------------------------------------------------------------------------

/// Settings of one case's configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub port: u16,
    pub db: PathBuf,
    pub delay: &'static str,
    pub retry_every: &'static str,
    pub max_attempts: u32,
    pub max_concurrent: u32,
}

/// The lab PBX's configuration (`fixtures/asterisk-22/lab.toml`) pointed at the fake, always
/// open, callbacks on.
pub fn config_text(s: &Settings) -> String {
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
    .map(|d| format!("{d} = [\"00:00-24:00\"]\n"))
    .collect();
    format!(
        r#"
[[asterisk]]
name = "fake"
host = "127.0.0.1"
port = {port}
username = "perezvon"
secret = "fault-injection"
connect_timeout = "2s"
action_timeout = "5s"
ping_interval = "5s"
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
max_call_duration = "1m"

[storage]
database = {db:?}

[callback]
enabled = true
server = "fake"
dial_template = "Local/{{national}}@customer-sim"
caller_id = "74951110000"
delay = "{delay}"
max_attempts = {max_attempts}
retry_every = "{retry_every}"
give_up_after = "1h"
max_concurrent = {max_concurrent}
max_concurrent_per_target = {max_concurrent}
require_free_agent = false
allow = ["^79\\d{{9}}$"]
marker_variable = "{MARKER}"
target = {{ context = "callback", exten = "201" }}

[hours]
timezone = "UTC"
{days}
[log]
level = "info"
"#,
        port = s.port,
        db = s.db.display().to_string(),
        delay = s.delay,
        retry_every = s.retry_every,
        max_attempts = s.max_attempts,
        max_concurrent = s.max_concurrent,
    )
}

/// The real binary, `perezvon run --config F`, stderr appended to a log file.
pub struct Daemon {
    child: Option<Child>,
    config: PathBuf,
    pub log: PathBuf,
    pub starts: u32,
}

impl Daemon {
    pub fn start(config: &Path, log: &Path) -> Daemon {
        let mut d = Daemon {
            child: None,
            config: config.to_path_buf(),
            log: log.to_path_buf(),
            starts: 0,
        };
        d.spawn();
        d
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "the daemon is already running");
        self.starts += 1;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        use std::io::Write as _;
        let _ = writeln!(f, "===== fault_injection: start #{} =====", self.starts);
        let child = Command::new(env!("CARGO_BIN_EXE_perezvon"))
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(f))
            .spawn()
            .expect("start perezvon");
        self.child = Some(child);
    }

    pub fn restart(&mut self) {
        self.spawn();
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL (`Child::kill`), and reaped.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits up to `wait` for the exit (SIGKILL after that).
    pub async fn term(&mut self, wait: Duration) -> Option<ExitStatus> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let deadline = Instant::now() + wait;
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                eprintln!("perezvon did not stop within {wait:?} of SIGTERM: killed");
                let _ = c.kill();
                let _ = c.wait();
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The exit status, if the process ended on its own.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    pub fn running(&mut self) -> bool {
        self.child.is_some() && self.exited().is_none()
    }

    /// The last `n` lines of the daemon's log (colour codes removed).
    pub fn log_tail(&self, n: usize) -> String {
        let text = strip_ansi(&std::fs::read_to_string(&self.log).unwrap_or_default());
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    pub fn log_contains(&self, needle: &str) -> bool {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .contains(needle)
    }
}

/// `text` without ANSI colour sequences (`ESC [ ... m`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

// ---------------------------------------------------------------------------------------------
// Waiting and judging
// ---------------------------------------------------------------------------------------------

/// Polls `f` every 100 ms until it holds or `timeout` passes; returns whether it held.
pub async fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A read-mostly connection to the daemon's database (none while the file does not exist).
pub fn db(path: &Path) -> Option<rusqlite::Connection> {
    if !path.exists() {
        return None;
    }
    let c = rusqlite::Connection::open(path).ok()?;
    c.busy_timeout(Duration::from_secs(10)).ok()?;
    Some(c)
}

fn count(path: &Path, sql: &str) -> i64 {
    db(path)
        .and_then(|c| c.query_row(sql, [], |r| r.get::<_, i64>(0)).ok())
        .unwrap_or(0)
}

pub fn calls_count(path: &Path) -> i64 {
    count(path, "SELECT COUNT(*) FROM calls")
}

/// Stored misses that qualify for a callback (what `planner::admit` takes: inbound, missed,
/// not ignored, not resolved, lost somewhere, an allowed number) without any task for their
/// number. Every case uses each number for one miss at most.
pub fn misses_without_task(path: &Path) -> Vec<String> {
    let Some(c) = db(path) else {
        return Vec::new();
    };
    let sql = "SELECT DISTINCT c.caller_normalized FROM calls c \
        WHERE c.direction = 'inbound' AND c.status = 'missed' AND c.missed = 1 AND c.ignored = 0 \
        AND c.resolved_by IS NULL AND c.lost_at IS NOT NULL \
        AND c.caller_normalized GLOB '79[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]' \
        AND NOT EXISTS (SELECT 1 FROM callback_tasks t WHERE t.number = c.caller_normalized)";
    let Ok(mut st) = c.prepare(sql) else {
        return Vec::new();
    };
    st.query_map([], |r| r.get::<_, String>(0))
        .map(|rows| rows.filter_map(Result::ok).collect())
        .unwrap_or_default()
}

/// Stored misses (inbound, status missed) of these numbers.
pub fn stored_misses(path: &Path, numbers: &[String]) -> usize {
    let Some(c) = db(path) else {
        return 0;
    };
    numbers
        .iter()
        .filter(|n| {
            c.query_row(
                "SELECT COUNT(*) FROM calls WHERE direction = 'inbound' AND status = 'missed' \
                 AND caller_normalized = ?1",
                [n.as_str()],
                |r| r.get::<_, i64>(0),
            )
            .unwrap_or(0)
                > 0
        })
        .count()
}

/// One row of `callback_attempts`.
#[derive(Debug, Clone)]
pub struct AttemptRow {
    pub callback_id: String,
    pub task_id: i64,
    pub number: String,
    pub outcome: Option<String>,
    pub detail: Option<String>,
    pub ended: bool,
}

pub fn attempts(path: &Path) -> Vec<AttemptRow> {
    let Some(c) = db(path) else {
        return Vec::new();
    };
    let Ok(mut st) = c.prepare(
        "SELECT callback_id, task_id, number, outcome, detail, ended_at IS NOT NULL \
         FROM callback_attempts ORDER BY id",
    ) else {
        return Vec::new();
    };
    st.query_map([], |r| {
        Ok(AttemptRow {
            callback_id: r.get(0)?,
            task_id: r.get(1)?,
            number: r.get(2)?,
            outcome: r.get(3)?,
            detail: r.get(4)?,
            ended: r.get(5)?,
        })
    })
    .map(|rows| rows.filter_map(Result::ok).collect())
    .unwrap_or_default()
}

/// A task's state, attempts and close reason.
#[derive(Debug, Clone)]
pub struct TaskRow {
    pub id: i64,
    pub number: String,
    pub state: String,
    pub attempts: i64,
    pub close_reason: Option<String>,
}

pub fn tasks(path: &Path) -> Vec<TaskRow> {
    let Some(c) = db(path) else {
        return Vec::new();
    };
    let Ok(mut st) = c.prepare(
        "SELECT id, number, state, attempts, close_reason FROM callback_tasks ORDER BY id",
    ) else {
        return Vec::new();
    };
    st.query_map([], |r| {
        Ok(TaskRow {
            id: r.get(0)?,
            number: r.get(1)?,
            state: r.get(2)?,
            attempts: r.get(3)?,
            close_reason: r.get(4)?,
        })
    })
    .map(|rows| rows.filter_map(Result::ok).collect())
    .unwrap_or_default()
}

/// A stored call by Linkedid: (direction, status, talk seconds).
pub fn call_by_linkedid(path: &Path, linkedid: &str) -> Option<(String, String, f64)> {
    db(path)?
        .query_row(
            "SELECT direction, status, talk_secs FROM calls WHERE linkedid = ?1",
            [linkedid],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .ok()
}

/// Numbers with more attempts than the policy allows.
pub fn attempts_over_policy(path: &Path, max_attempts: u32) -> Vec<(String, usize)> {
    let mut per: HashMap<String, usize> = HashMap::new();
    for a in attempts(path) {
        *per.entry(a.number).or_default() += 1;
    }
    let mut over: Vec<(String, usize)> = per
        .into_iter()
        .filter(|(_, n)| *n > max_attempts as usize)
        .collect();
    over.sort();
    over
}

/// The figures of one case, printed, then asserted to be zero.
pub struct Figures {
    case: &'static str,
    rows: Vec<(&'static str, usize, Vec<String>)>,
    notes: Vec<String>,
}

impl Figures {
    pub fn new(case: &'static str) -> Figures {
        Figures {
            case,
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// A figure that must be 0, with what makes it up.
    pub fn zero(&mut self, label: &'static str, items: Vec<String>) -> &mut Self {
        self.rows.push((label, items.len(), items));
        self
    }

    /// A line for the reader (not asserted).
    pub fn note(&mut self, s: impl Into<String>) -> &mut Self {
        self.notes.push(s.into());
        self
    }

    /// Prints every figure, then fails (with the daemon's log tail) if one is not 0.
    pub fn check(&self, daemon: &Daemon) {
        println!("---- {} ----", self.case);
        for n in &self.notes {
            println!("  {n}");
        }
        for (label, n, _) in &self.rows {
            println!("{label}: {n}");
        }
        let bad: Vec<_> = self.rows.iter().filter(|(_, n, _)| *n > 0).collect();
        if bad.is_empty() {
            return;
        }
        for (label, _, items) in &bad {
            println!("  {label}:");
            for i in items.iter().take(20) {
                println!("    {i}");
            }
        }
        println!(
            "---- perezvon log (last lines) ----\n{}",
            daemon.log_tail(80)
        );
        let summary: Vec<String> = bad.iter().map(|(l, n, _)| format!("{l}: {n}")).collect();
        panic!("{}: {}", self.case, summary.join(", "));
    }
}
