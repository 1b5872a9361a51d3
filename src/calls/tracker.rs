//! The per-call state machine: AMI events in, one [`CallRecord`] per ended call out.
//!
//! Pure: no clock, no I/O. Every entry point takes `now` (arrival time); an event's own
//! `Timestamp` header is preferred when present, so replaying a capture gives the same verdicts
//! as the live stream did.
//!
//! # Model
//! - A **call** is every channel created with one `Linkedid`. It ends when its last channel
//!   hangs up; its state is then dropped.
//! - Channels are linked into a graph: two channels in one bridge are neighbours, and so are the
//!   `;1`/`;2` halves of a Local channel (`LocalBridge`). The call's **caller channel** is the trunk
//!   channel of an inbound call (`pbx.trunk_channels`), else its first channel. The caller is **in
//!   conversation** while the graph connects it to a *person* (an `agent_channels` or outside
//!   `external_channels`/trunk channel) that is not one of the caller's own Local halves. That is
//!   re-evaluated only on bridge, Local pairing and hangup events, and timed with event timestamps.
//! - Routing (where a missed caller was lost) is read from the caller channel's dialplan steps
//!   (`Newexten`) and its dials; the verdict itself is computed in `calls::rules`.

use std::collections::{HashMap, VecDeque};

use crate::ami::Message;
use crate::config::Config;
use crate::glob::any_match;
use crate::number::NumberPlan;

use super::event::{is_unknown, parse_u32, Ev, Kind};
use super::record::{CallRecord, Direction, LostAt, Timestamp, UnknownReason};
use super::rules;
use super::slab::{FxMap, Slab, NONE};

mod resync;
pub(crate) mod routing;

use routing::step;

/// At most this many calls are tracked at once; beyond it the longest-silent call is given up
/// (as `unknown`) so a runaway stream cannot exhaust memory.
pub const MAX_CALLS: usize = 100_000;
/// At most this many channels per call; more are not tracked (a real call has a dozen).
pub const MAX_CHANNELS_PER_CALL: u32 = 256;
/// Linkedids of calls already ended, remembered so a resync does not revive them.
const ENDED_MEMORY: usize = 4096;
/// Breadth of the conversation search; a real call graph is far smaller.
const MAX_VISIT: usize = 64;

/// What a channel is, from its name (config globs), decided once at `Newchannel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChanKind {
    Other,
    /// A provider trunk channel: the caller of an inbound call, an outside party otherwise.
    Trunk,
    /// A person of the PBX.
    Agent,
    /// An outside number reached through the outbound trunk.
    External,
}

/// Who ended the call (the first hangup request on the caller channel says it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ender {
    /// The caller channel's own side (the customer on inbound and callback calls).
    Caller,
    Agent,
    External,
    /// The PBX: dialplan `Hangup()`, an announcement ending, a timeout.
    System,
}

/// The dialplan application the caller channel is running, as far as routing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum App {
    None,
    /// `Dial` or `FollowMe`: the caller is being offered to people.
    Dial,
    Queue,
    /// `Busy()` / `Congestion()`: the dialplan is turning the caller away.
    TurnAway,
    Other,
}

/// How the dial towards an Originate's first channel ended (the `DialEnd` without `Channel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OriginDial {
    Answer,
    Busy,
    Failed,
    NoAnswer,
}

#[derive(Debug)]
pub(crate) struct Chan {
    uid: Box<[u8]>,
    call: u32,
    partner: u32,
    bridge: u32,
    kind: ChanKind,
    /// Short name of a person channel (`201`, `89031234567`), for `agent`.
    person: Option<Box<str>>,
}

/// Everything known about one live call. Read by [`super::rules`] when it ends.
#[derive(Debug)]
pub(crate) struct Call {
    pub(crate) linkedid: Box<str>,
    pub(crate) live: u32,
    pub(crate) started: i64,
    pub(crate) last_event: i64,
    pub(crate) first: u32,
    /// Name of the first channel (an Originate's failure names only the requested channel).
    pub(crate) first_name: Box<str>,
    /// The first channel started in an inbound context or is a trunk.
    pub(crate) first_inbound: bool,
    pub(crate) first_kind: ChanKind,
    /// A callback whose first leg is the agent side: the customer is dialled once a person
    /// answered, and the conversation is judged from the customer's leg.
    pub(crate) agent_first: bool,
    /// How the dial towards the customer leg of an agent-first callback ended.
    pub(crate) customer_dial: Option<OriginDial>,
    pub(crate) caller: u32,
    pub(crate) caller_is_trunk: bool,
    pub(crate) caller_num: Option<Box<str>>,
    /// The caller channel's person name, when a person placed the call (outbound, internal).
    pub(crate) caller_person: Option<Box<str>>,
    pub(crate) did: Option<Box<str>>,
    /// The last queue the caller joined (`QueueCallerJoin`'s `Queue`), for the report.
    pub(crate) queue: Option<Box<str>>,
    /// The outside number (outbound) or extension (internal) a person dialled.
    pub(crate) dialled: Option<Box<str>>,
    /// The number an Originate dialled (callback customer).
    pub(crate) origin_number: Option<Box<str>>,
    pub(crate) marker: Option<Box<str>>,
    /// OriginateResponse: (success, reason).
    pub(crate) originate: Option<(bool, u32)>,
    pub(crate) origin_dial: Option<OriginDial>,
    pub(crate) routing: Option<LostAt>,
    /// The routing came from `pbx.lost_at_contexts`: dial details do not override it.
    pub(crate) routing_by_context: bool,
    pub(crate) caller_app: App,
    /// The person (or number) the current sequence of dials offered the caller to first, and
    /// whether it offered them to anyone else too (in parallel, one after another, a hunt or
    /// follow-me): `user` or `external` versus `group` (see `routing`).
    pub(crate) offered: Option<Box<str>>,
    pub(crate) offered_many: bool,
    /// The dial just ended for a callee without ending the dial: forwarded (`DialEnd` with
    /// `Forward`, SIP 302) or picked up from another phone (the pickup's masquerade reports a
    /// `DialEnd CANCEL` and a `DialBegin` of the picker). The next dial replaces that callee.
    pub(crate) replacing: bool,
    /// The PBX turned the caller away (busy, congestion, unknown number).
    pub(crate) turned_away: bool,
    pub(crate) connected_since: Option<i64>,
    pub(crate) current_person: u32,
    pub(crate) talk: i64,
    /// When the caller first had a person in their bridge: whether there was a conversation
    /// at all, apart from how long it was (`talk` may be 0 and still a conversation).
    pub(crate) answered_at: Option<i64>,
    /// Talk time per person, for `agent` (bounded to a few entries).
    pub(crate) persons: Vec<(Box<str>, i64)>,
    pub(crate) last_rung: Option<Box<str>>,
    pub(crate) saw_outside: bool,
    pub(crate) ender: Option<Ender>,
    /// The conversation just ended because the person's side left.
    pub(crate) person_drop: Option<Ender>,
    pub(crate) caller_gone: Option<i64>,
    pub(crate) caller_cause: u32,
    pub(crate) caller_up: bool,
    /// First seen in a CoreShowChannels resync, or tracked across a link gap: events may be
    /// missing, so it can prove an answer but never a miss.
    pub(crate) resynced: bool,
    /// The AMI session (count of `link_up`s) the call was first seen in.
    pub(crate) session: u32,
}

impl Call {
    /// A call at its first channel (`t`, microseconds): nothing routed, answered or ended yet.
    /// The tracker opens calls with it, and the history import (`history::build`) too.
    pub(crate) fn opened(
        linkedid: Box<str>,
        t: i64,
        first_name: Box<str>,
        first_inbound: bool,
        first_kind: ChanKind,
        resynced: bool,
        session: u32,
    ) -> Call {
        Call {
            linkedid,
            live: 0,
            started: t,
            last_event: t,
            first: NONE,
            first_name,
            first_inbound,
            first_kind,
            agent_first: false,
            customer_dial: None,
            caller: NONE,
            caller_is_trunk: false,
            caller_num: None,
            caller_person: None,
            did: None,
            queue: None,
            dialled: None,
            origin_number: None,
            marker: None,
            originate: None,
            origin_dial: None,
            routing: None,
            routing_by_context: false,
            caller_app: App::None,
            offered: None,
            offered_many: false,
            replacing: false,
            turned_away: false,
            connected_since: None,
            current_person: NONE,
            talk: 0,
            answered_at: None,
            persons: Vec::new(),
            last_rung: None,
            saw_outside: false,
            ender: None,
            person_drop: None,
            caller_gone: None,
            caller_cause: 0,
            caller_up: false,
            resynced,
            session,
        }
    }
}

#[derive(Debug)]
struct Bridge {
    key: Box<[u8]>,
    members: Vec<u32>,
}

/// The config the tracker reads, prepared once.
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    pub(crate) inbound_contexts: Vec<String>,
    pub(crate) trunk: Vec<String>,
    pub(crate) agent: Vec<String>,
    pub(crate) external: Vec<String>,
    pub(crate) lost_at_contexts: HashMap<String, LostAt>,
    pub(crate) marker: String,
    pub(crate) min_talk: i64,
    pub(crate) min_wait: i64,
    pub(crate) max_call: i64,
    pub(crate) numbers: NumberPlan,
}

/// The tracker of one Asterisk server.
#[derive(Debug)]
pub struct Tracker {
    server: String,
    rules: Rules,
    chans: Slab<Chan>,
    chan_ids: FxMap<Box<[u8]>, u32>,
    calls: Slab<Call>,
    call_ids: FxMap<Box<[u8]>, u32>,
    /// Members of each bridge, and its `BridgeUniqueid` (to forget it when it empties).
    bridges: Slab<Bridge>,
    bridge_ids: FxMap<Box<[u8]>, u32>,
    ended: VecDeque<Box<[u8]>>,
    /// Latest event time seen (µs): the reference for a restart check and silence.
    last_event: i64,
    /// Count of `link_up`s: calls of an earlier session may have lost events in the gap.
    session: u32,
    /// Between `link_up` and `resync`: hangups of channels we do not know, so a resync list
    /// taken before them does not revive those channels.
    resync_pending: bool,
    unknown_hangups: VecDeque<Box<[u8]>>,
    /// Scratch buffers reused by the conversation search.
    scratch_stack: Vec<u32>,
    scratch_seen: Vec<u32>,
}

fn us_to_ts(us: i64) -> Timestamp {
    Timestamp::from_microsecond(us).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn ts_to_us(t: Timestamp) -> i64 {
    t.as_microsecond()
}

fn text(v: &[u8]) -> Box<str> {
    String::from_utf8_lossy(v).into()
}

/// `Local/201@agent-sim-00000001;1` -> `201`; `PJSIP/201-0000001a` -> `201`.
pub(crate) fn person_name(channel: &[u8]) -> Box<str> {
    let rest = match memchr::memchr(b'/', channel) {
        Some(i) => &channel[i + 1..],
        None => channel,
    };
    let end = memchr::memchr(b'@', rest).unwrap_or_else(|| {
        // Strip `;N` and the `-XXXXXXXX` sequence suffix.
        let r = match memchr::memrchr(b';', rest) {
            Some(i) => &rest[..i],
            None => rest,
        };
        memchr::memrchr(b'-', r).unwrap_or(r.len())
    });
    text(&rest[..end])
}

/// The number in a dial string or requested channel: `Local/8926...@customer-sim`,
/// `PJSIP/8926...@provider`, `8926...@customer-sim/n` -> `8926...`.
pub(crate) fn dialled_number(s: &[u8]) -> Option<Box<str>> {
    let s = match memchr::memchr(b'@', s) {
        Some(i) => &s[..i],
        None => s,
    };
    let s = match memchr::memrchr(b'/', s) {
        Some(i) => &s[i + 1..],
        None => s,
    };
    let digits = s.iter().filter(|c| c.is_ascii_digit()).count();
    let ok = digits >= 3
        && s.iter()
            .all(|c| c.is_ascii_digit() || matches!(c, b'+' | b'*' | b'#'));
    ok.then(|| text(s))
}

impl Rules {
    pub(crate) fn from_config(cfg: &Config) -> Rules {
        let lost_at_contexts = cfg
            .pbx
            .lost_at_contexts
            .iter()
            .filter_map(|(ctx, cat)| LostAt::parse(cat).map(|l| (ctx.clone(), l)))
            .collect();
        let us = |d: std::time::Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        Rules {
            inbound_contexts: cfg.pbx.inbound_contexts.clone(),
            trunk: cfg.pbx.trunk_channels.clone(),
            agent: cfg.pbx.agent_channels.clone(),
            external: cfg.pbx.external_channels.clone(),
            lost_at_contexts,
            marker: cfg
                .callback
                .marker_variable
                .trim_start_matches('_')
                .to_string(),
            min_talk: us(cfg.calls.min_talk),
            min_wait: us(cfg.calls.min_wait),
            max_call: us(cfg.calls.max_call_duration).max(1),
            numbers: cfg.pbx.numbers.clone(),
        }
    }

    pub(crate) fn kind_of(&self, name: &str) -> ChanKind {
        // External first: an outside leg may also match a broad agent pattern like `PJSIP/*`.
        if any_match(&self.external, name) {
            ChanKind::External
        } else if any_match(&self.trunk, name) {
            ChanKind::Trunk
        } else if any_match(&self.agent, name) {
            ChanKind::Agent
        } else {
            ChanKind::Other
        }
    }
}

impl Tracker {
    pub fn new(server: &str, cfg: &Config) -> Tracker {
        Tracker {
            server: server.to_string(),
            rules: Rules::from_config(cfg),
            chans: Slab::default(),
            chan_ids: FxMap::default(),
            calls: Slab::default(),
            call_ids: FxMap::default(),
            bridges: Slab::default(),
            bridge_ids: FxMap::default(),
            ended: VecDeque::new(),
            last_event: i64::MIN,
            session: 0,
            resync_pending: false,
            unknown_hangups: VecDeque::new(),
            scratch_stack: Vec::new(),
            scratch_seen: Vec::new(),
        }
    }

    /// Calls being tracked now.
    pub fn live_calls(&self) -> usize {
        self.calls.len()
    }

    /// The normalised numbers of the customers on a live call now: the caller of an inbound
    /// call, the dialled number of an outbound call or callback. Internal calls have none, nor
    /// do withheld numbers. A number may appear more than once.
    ///
    /// Computed on demand (one normalisation per live call) rather than maintained per event:
    /// the daemon asks once a second, and the event path stays free of it.
    pub fn live_customers(&self) -> impl Iterator<Item = String> + '_ {
        self.calls.values().filter_map(|c| {
            let raw = match rules::direction(c) {
                Direction::Inbound => c.caller_num.as_deref(),
                Direction::Callback => c.origin_number.as_deref(),
                Direction::Outbound => c.dialled.as_deref(),
                Direction::Internal => None,
            }?;
            self.rules.numbers.normalize(raw).ok()
        })
    }

    /// Channels being tracked now.
    pub fn live_channels(&self) -> usize {
        self.chans.len()
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    /// Feeds one message. `now` is its arrival time; the event's `Timestamp` header wins.
    pub fn handle(&mut self, msg: &Message, now: Timestamp, out: &mut Vec<CallRecord>) {
        let Some(ev) = Ev::parse(msg) else { return };
        if let Some(ts) = ev.ts {
            // Every timestamped event moves the clock a restart check compares against.
            self.last_event = self.last_event.max(ts);
        }
        if ev.kind == Kind::Other {
            return;
        }
        let t = ev.ts.unwrap_or_else(|| ts_to_us(now));
        match ev.kind {
            Kind::Newchannel => self.on_newchannel(&ev, t, out),
            Kind::FullyBooted => self.on_fully_booted(&ev, t, out),
            Kind::LocalBridge => self.on_local_bridge(&ev, t),
            Kind::OriginateResponse => self.on_originate_response(&ev),
            Kind::DialBegin | Kind::DialEnd if ev.channel.is_empty() => self.on_origin_dial(&ev),
            Kind::BlindTransfer | Kind::AttendedTransfer => self.on_transfer(&ev),
            Kind::Pickup => self.on_pickup(&ev, t),
            Kind::CoreShowChannel | Kind::Other => {}
            _ => self.on_channel_event(&ev, t, out),
        }
    }

    /// The AMI link dropped. Nothing is judged: the calls in flight may well still be up on
    /// Asterisk (a link cut ends no call), and their customers stay "on a call" for the
    /// dialer. The reconnect's CoreShowChannels ([`Tracker::resync`]) tells which of them ended
    /// meanwhile (`unknown`, never a miss); a link that stays down hands them to the silence
    /// rule (`calls.max_call_duration`). Events of the next session are complete only for calls
    /// that begin in it, so the calls tracked now can prove an answer from here on, never a miss.
    pub fn link_down(&mut self, now: Timestamp) {
        let _ = now;
        self.mark_partial();
    }

    /// The link is back (a new AMI session). `FullyBooted` and the resync follow; calls
    /// already tracked belong to the previous session from here on (partial: see
    /// [`Tracker::link_down`], which a silent TCP death never reported).
    pub fn link_up(&mut self, now: Timestamp) {
        let _ = now;
        self.mark_partial();
        self.session = self.session.wrapping_add(1);
        self.resync_pending = true;
        self.unknown_hangups.clear();
    }

    /// No CoreShowChannels could be read after a reconnect: the calls of earlier sessions cannot
    /// be reconciled and end now as `unknown` (an answer already seen still counts).
    pub fn give_up_previous_sessions(&mut self, now: Timestamp, out: &mut Vec<CallRecord>) {
        let t = ts_to_us(now);
        let session = self.session;
        let mut ids: Vec<u32> = self
            .calls
            .ids()
            .into_iter()
            .filter(|&id| self.calls.get(id).is_some_and(|c| c.session != session))
            .collect();
        ids.sort_by_key(|&id| self.calls.get(id).map_or(0, |c| c.started));
        for id in ids {
            self.end_call(id, t, Some(UnknownReason::LinkDown), out);
        }
        self.resync_pending = false;
        self.unknown_hangups.clear();
    }

    /// The perezvon callback ids of the callback calls live now (their `ChannelId`s are known
    /// to the dialer): an attempt whose call is here is still in progress, whatever timed out.
    pub fn live_callbacks(&self) -> impl Iterator<Item = &str> + '_ {
        self.calls.values().filter_map(|c| c.marker.as_deref())
    }

    fn mark_partial(&mut self) {
        for id in self.calls.ids() {
            if let Some(c) = self.calls.get_mut(id) {
                c.resynced = true;
            }
        }
    }

    /// The input ended (a replayed capture): calls still live end as `unknown`.
    pub fn end_of_input(&mut self, now: Timestamp, out: &mut Vec<CallRecord>) {
        let t = ts_to_us(now).max(self.last_event);
        self.end_all(t, UnknownReason::EndOfInput, out);
    }

    /// Calls silent for `calls.max_call_duration` end as `unknown`.
    pub fn tick(&mut self, now: Timestamp, out: &mut Vec<CallRecord>) {
        let t = ts_to_us(now);
        for id in self.calls.ids() {
            let silent = self
                .calls
                .get(id)
                .is_some_and(|c| t.saturating_sub(c.last_event) > self.rules.max_call);
            if silent {
                self.end_call(id, t, Some(UnknownReason::Silent), out);
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Events
    // -----------------------------------------------------------------------------------------

    fn on_newchannel(&mut self, ev: &Ev<'_>, t: i64, out: &mut Vec<CallRecord>) {
        if ev.uniqueid.is_empty() || self.chan_ids.contains_key(ev.uniqueid) {
            return;
        }
        if !self.call_ids.contains_key(ev.linkedid) && self.calls.len() >= MAX_CALLS {
            self.evict_oldest(t, out);
        }
        if let Some(cid) = self.add_channel(ev, t, false) {
            let call = self.chans.get(cid).map_or(NONE, |c| c.call);
            if let Some(c) = self.calls.get_mut(call) {
                c.last_event = t;
            }
        }
    }

    /// Creates a channel (and its call if it is the first). `None` when it is not tracked.
    fn add_channel(&mut self, ev: &Ev<'_>, t: i64, resynced: bool) -> Option<u32> {
        let linkedid = if ev.linkedid.is_empty() {
            ev.uniqueid
        } else {
            ev.linkedid
        };
        let name = String::from_utf8_lossy(ev.channel);
        let kind = self.rules.kind_of(&name);
        let call = match self.call_ids.get(linkedid) {
            Some(&id) => id,
            None => {
                // A channel listed by CoreShowChannels is where it is now, not where it
                // started: only the trunk rule can tell there.
                let ctx = String::from_utf8_lossy(ev.context);
                let first_inbound = kind == ChanKind::Trunk
                    || (!resynced && self.rules.inbound_contexts.iter().any(|c| *c == ctx));
                let id = self.calls.insert(Call::opened(
                    text(linkedid),
                    t,
                    name.as_ref().into(),
                    first_inbound,
                    kind,
                    resynced,
                    self.session,
                ));
                self.call_ids.insert(linkedid.into(), id);
                id
            }
        };
        let c = self.calls.get_mut(call)?;
        if c.live >= MAX_CHANNELS_PER_CALL {
            return None;
        }
        let person = matches!(kind, ChanKind::Agent | ChanKind::External | ChanKind::Trunk)
            .then(|| person_name(ev.channel));
        let caller_person = person.clone();
        let cid = self.chans.insert(Chan {
            uid: ev.uniqueid.into(),
            call,
            partner: NONE,
            bridge: NONE,
            kind,
            person,
        });
        self.chan_ids.insert(ev.uniqueid.into(), cid);
        c.live += 1;
        c.started = c.started.min(t);
        let is_first = c.first == NONE || ev.uniqueid == linkedid;
        if is_first && c.first == NONE {
            c.first = cid;
            c.caller = cid;
            c.caller_is_trunk = kind == ChanKind::Trunk;
            c.first_name = name.as_ref().into();
            c.caller_person = caller_person;
            set_number(&mut c.caller_num, ev.caller_num);
            if kind == ChanKind::Trunk && !is_unknown(ev.exten) && ev.exten != b"s" {
                c.did = Some(text(ev.exten));
            }
            if let Some(n) = dialled_number(ev.exten) {
                c.origin_number.get_or_insert(n);
            }
        } else if kind == ChanKind::Trunk
            && !c.caller_is_trunk
            && (c.first_inbound
                || (resynced && c.marker.is_none() && local_halves(&c.first_name, &name)))
        {
            c.first_inbound = true;
            // The lab's handset `;1` came first; the trunk channel is the real caller.
            c.caller = cid;
            c.caller_is_trunk = true;
            c.caller_person = None;
            c.routing = None;
            set_number(&mut c.caller_num, ev.caller_num);
            if !is_unknown(ev.exten) && ev.exten != b"s" {
                c.did = Some(text(ev.exten));
            }
        } else if matches!(kind, ChanKind::External | ChanKind::Trunk) {
            c.saw_outside = true;
            if c.marker.is_some()
                && !c.agent_first
                && !matches!(c.first_kind, ChanKind::External | ChanKind::Trunk)
            {
                // Agent-first callback: the customer leg appears now. What happened on the
                // agent side until here (a queue member bridged with the Local agent leg) is
                // not a conversation with the customer.
                c.agent_first = true;
                c.caller = cid;
                c.caller_up = false;
                c.connected_since = None;
                c.current_person = NONE;
                c.answered_at = None;
                c.talk = 0;
                c.persons.clear();
                c.ender = None;
                c.person_drop = None;
            }
        }
        Some(cid)
    }

    fn on_fully_booted(&mut self, ev: &Ev<'_>, t: i64, out: &mut Vec<CallRecord>) {
        // Every session starts with FullyBooted. If Asterisk has been up for less time than we
        // were away, it restarted in between: the calls we knew are gone.
        let Some(uptime) = parse_u32(ev.uptime) else {
            return;
        };
        if self.calls.len() == 0 || self.last_event == i64::MIN {
            return;
        }
        let gap = t - self.last_event;
        if i64::from(uptime) * 1_000_000 + 1_000_000 < gap {
            self.end_all(t, UnknownReason::AsteriskRestarted, out);
        }
    }

    fn on_local_bridge(&mut self, ev: &Ev<'_>, t: i64) {
        let (Some(&a), Some(&b)) = (
            self.chan_ids.get(ev.local_one),
            self.chan_ids.get(ev.local_two),
        ) else {
            return;
        };
        self.pair(a, b);
        if let Some(c) = self.chans.get(a) {
            let call = c.call;
            self.refresh(call, t, NONE);
        }
    }

    fn pair(&mut self, a: u32, b: u32) {
        if let Some(c) = self.chans.get_mut(a) {
            c.partner = b;
        }
        if let Some(c) = self.chans.get_mut(b) {
            c.partner = a;
        }
    }

    fn on_originate_response(&mut self, ev: &Ev<'_>) {
        let success = ev.response.eq_ignore_ascii_case(b"Success");
        let reason = parse_u32(ev.reason).unwrap_or(0);
        let mut call = NONE;
        if !is_unknown(ev.uniqueid) {
            if let Some(c) = self
                .chan_ids
                .get(ev.uniqueid)
                .and_then(|&id| self.chans.get(id))
            {
                call = c.call;
            }
        }
        if call == NONE && !ev.action_id.is_empty() {
            // perezvon's dialer uses the callback id (the marker's value) as the ActionID.
            for id in self.calls.ids() {
                if self.calls.get(id).is_some_and(|c| {
                    c.originate.is_none()
                        && c.marker.as_deref().map(str::as_bytes) == Some(ev.action_id)
                }) {
                    call = id;
                }
            }
        }
        if call == NONE && !ev.channel.is_empty() {
            // On failure the Channel is the requested one: `Local/8926...@customer-sim` for a
            // created `Local/8926...@customer-sim-00000047;1`.
            let want = ev.channel;
            for id in self.calls.ids() {
                let Some(c) = self.calls.get(id) else {
                    continue;
                };
                let n = c.first_name.as_bytes();
                let matches = n == want
                    || (n.len() > want.len() && n.starts_with(want) && n[want.len()] == b'-');
                if matches && c.originate.is_none() {
                    call = id;
                }
            }
        }
        if call == NONE {
            // A trunk channel's name does not contain the requested string: if exactly one
            // callback is waiting for its response, it is this one.
            let mut waiting = self.calls.ids().into_iter().filter(|&id| {
                self.calls
                    .get(id)
                    .is_some_and(|c| c.marker.is_some() && c.originate.is_none())
            });
            if let (Some(id), None) = (waiting.next(), waiting.next()) {
                call = id;
            }
        }
        if let Some(c) = self.calls.get_mut(call) {
            c.originate = Some((success, reason));
            if let Some(n) = dialled_number(ev.channel) {
                c.origin_number.get_or_insert(n);
            }
        }
    }

    /// `DialBegin`/`DialEnd` with no `Channel`: an Originate dialling its first channel.
    fn on_origin_dial(&mut self, ev: &Ev<'_>) {
        let Some(c) = self
            .chan_ids
            .get(ev.dest_uniqueid)
            .and_then(|&id| self.chans.get(id))
        else {
            return;
        };
        let (cid, call) = (self.chan_ids[ev.dest_uniqueid], c.call);
        let Some(c) = self.calls.get_mut(call) else {
            return;
        };
        if c.first != cid {
            return;
        }
        if ev.kind == Kind::DialBegin {
            if let Some(n) = dialled_number(ev.dial_string) {
                c.origin_number = Some(n);
            }
        } else {
            c.origin_dial = Some(origin_dial(ev.dial_status));
        }
    }

    fn on_channel_event(&mut self, ev: &Ev<'_>, t: i64, out: &mut Vec<CallRecord>) {
        let Some(&cid) = self.chan_ids.get(ev.uniqueid) else {
            if self.resync_pending && ev.kind == Kind::Hangup && !ev.uniqueid.is_empty() {
                if self.unknown_hangups.len() >= ENDED_MEMORY {
                    self.unknown_hangups.pop_front();
                }
                self.unknown_hangups.push_back(ev.uniqueid.into());
            }
            return;
        };
        let Some(ch) = self.chans.get(cid) else {
            return;
        };
        let call = ch.call;
        let Some(c) = self.calls.get_mut(call) else {
            return;
        };
        c.last_event = c.last_event.max(t);
        let is_caller = c.caller == cid;
        match ev.kind {
            Kind::NewCallerid if is_caller && c.caller_gone.is_none() => {
                set_number(&mut c.caller_num, ev.caller_num)
            }
            Kind::Newstate if is_caller => match parse_u32(ev.state) {
                Some(6) => c.caller_up = true,
                Some(7) => c.turned_away = true,
                _ => {}
            },
            Kind::Newexten if is_caller => {
                c.person_drop = None;
                step(&self.rules, c, ev);
            }
            Kind::QueueCallerJoin | Kind::QueueCallerLeave
                if is_caller && !c.routing_by_context =>
            {
                c.routing = Some(LostAt::Queue);
                c.caller_app = App::Queue;
                if ev.kind == Kind::QueueCallerJoin && !ev.queue.is_empty() {
                    c.queue = Some(text(ev.queue));
                }
            }
            Kind::VarSet => {
                let var = trim_underscores(ev.variable);
                if !ev.value.is_empty()
                    && var.eq_ignore_ascii_case(self.rules.marker.as_bytes())
                    && c.marker.is_none()
                {
                    c.marker = Some(text(ev.value));
                }
            }
            Kind::DialBegin => self.on_dial_begin(cid, call, is_caller, ev),
            Kind::DialEnd => {
                if c.agent_first && self.chan_ids.get(ev.dest_uniqueid) == Some(&c.caller) {
                    c.customer_dial = Some(origin_dial(ev.dial_status));
                }
                let caller_side =
                    is_caller || self.chans.get(c.caller).is_some_and(|x| x.partner == cid);
                let turned = [&b"BUSY"[..], b"CONGESTION", b"CHANUNAVAIL"]
                    .iter()
                    .any(|s| ev.dial_status.eq_ignore_ascii_case(s));
                if caller_side && c.caller_app == App::Dial && turned {
                    c.turned_away = true;
                }
                let cancel = ev.dial_status.eq_ignore_ascii_case(b"CANCEL");
                if caller_side && (!ev.forward.is_empty() || cancel) {
                    c.replacing = true;
                }
            }
            Kind::BridgeEnter if !ev.bridge.is_empty() => {
                self.enter_bridge(cid, ev.bridge);
                self.refresh_around(cid, call, t);
            }
            Kind::BridgeLeave => {
                let members = self.leave_bridge(cid);
                self.refresh(call, t, cid);
                for m in members {
                    if let Some(other) = self.chans.get(m).map(|x| x.call) {
                        if other != call {
                            self.refresh(other, t, cid);
                        }
                    }
                }
            }
            Kind::HangupRequest | Kind::SoftHangupRequest if is_caller && c.ender.is_none() => {
                // Busy()/Congestion() on an unanswered SIP channel sends 486/503 and the
                // session ends with that cause: the PBX's hangup, not the caller's BYE/CANCEL
                // (which carry no cause, 16 or 127).
                let rejected =
                    c.caller_app == App::TurnAway && matches!(parse_u32(ev.cause), Some(17 | 34));
                c.ender = Some(if rejected {
                    Ender::System
                } else if ev.kind == Kind::HangupRequest {
                    Ender::Caller
                } else {
                    c.person_drop.unwrap_or(Ender::System)
                });
            }
            Kind::Hangup => {
                if is_caller {
                    c.caller_gone = Some(t);
                    c.caller_cause = parse_u32(ev.cause).unwrap_or(0);
                    if c.ender.is_none() {
                        // No hangup request at all: on a callback's customer leg that never
                        // answered, the PBX gave up ringing it (the Originate's timeout).
                        let timed_out = c.marker.is_some() && !c.caller_up;
                        c.ender = Some(c.person_drop.unwrap_or(if timed_out {
                            Ender::System
                        } else {
                            Ender::Caller
                        }));
                    }
                }
                self.drop_channel(cid, t, false, out);
            }
            _ => {}
        }
    }

    fn on_dial_begin(&mut self, cid: u32, call: u32, is_caller: bool, ev: &Ev<'_>) {
        // An outside leg is named after its trunk (`PJSIP/provider-out-0000001c`): the person
        // is the number it dials.
        if let Some(d) = self
            .chan_ids
            .get(ev.dest_uniqueid)
            .and_then(|&d| self.chans.get_mut(d))
        {
            if d.kind == ChanKind::External {
                if let Some(n) = dialled_number(ev.dial_string) {
                    d.person = Some(n);
                }
            }
        }
        let dest = self
            .chan_ids
            .get(ev.dest_uniqueid)
            .and_then(|&d| self.chans.get(d));
        let dest_kind = dest.map_or(ChanKind::Other, |d| d.kind);
        let dest_person = dest.and_then(|d| d.person.clone());
        let src_kind = self.chans.get(cid).map_or(ChanKind::Other, |c| c.kind);
        let caller_partner = self
            .calls
            .get(call)
            .and_then(|c| self.chans.get(c.caller))
            .map(|x| x.partner);
        let Some(c) = self.calls.get_mut(call) else {
            return;
        };
        if dest_kind == ChanKind::Agent {
            if let Some(p) = &dest_person {
                c.last_rung = Some(p.clone());
            }
        }
        if c.agent_first && self.chan_ids.get(ev.dest_uniqueid) == Some(&c.caller) {
            if let Some(n) = dialled_number(ev.dial_string) {
                c.origin_number = Some(n);
            }
        }
        let caller_side = is_caller || caller_partner == Some(cid);
        let outside = matches!(dest_kind, ChanKind::External | ChanKind::Trunk);
        if !caller_side {
            if src_kind == ChanKind::Other && outside {
                routing::offered_downstream(c);
            }
            return;
        }
        if c.dialled.is_none() && (outside || dest_kind == ChanKind::Agent) {
            c.dialled = dialled_number(ev.exten)
                .filter(|_| ev.exten != b"s")
                .or_else(|| dialled_number(ev.dial_string));
        }
        if c.caller_app == App::Dial && !c.routing_by_context {
            // Who: the person, or the number an outside leg dials, else the channel's name.
            let who = dest_person.unwrap_or_else(|| person_name(ev.dest_channel));
            routing::offered(c, who, outside);
        }
    }

    /// Someone picked up a ringing call from their phone (Pickup, PickupChan, a BLF key): a
    /// person, whether or not `agent_channels` names their phone. Their channel takes the
    /// ringing one's place and is bridged with the caller.
    fn on_pickup(&mut self, ev: &Ev<'_>, t: i64) {
        let Some(&cid) = self.chan_ids.get(ev.uniqueid) else {
            return;
        };
        let Some(ch) = self.chans.get_mut(cid) else {
            return;
        };
        if ch.kind == ChanKind::Other {
            ch.kind = ChanKind::Agent;
            ch.person = Some(person_name(ev.channel));
            // It may be bridged already (the event races the Dial's answer).
            let call = ch.call;
            self.refresh_around(cid, call, t);
        }
    }

    /// A blind or attended transfer of one of our callers: a new routing leg begins.
    fn on_transfer(&mut self, ev: &Ev<'_>) {
        if !ev.result.eq_ignore_ascii_case(b"Success") {
            return;
        }
        let Some((cid, call)) = self
            .chan_ids
            .get(ev.transferee)
            .and_then(|&id| self.chans.get(id).map(|c| (id, c.call)))
        else {
            return;
        };
        let partner = self.chans.get(cid).map_or(NONE, |c| c.partner);
        let Some(c) = self.calls.get_mut(call) else {
            return;
        };
        if c.caller != cid && c.caller != partner {
            return;
        }
        routing::transferred(c, ev);
    }

    // -----------------------------------------------------------------------------------------
    // Graph
    // -----------------------------------------------------------------------------------------

    fn enter_bridge(&mut self, cid: u32, bridge: &[u8]) {
        // A missed BridgeLeave must not leave the channel in two bridges.
        self.leave_bridge(cid);
        let bid = match self.bridge_ids.get(bridge) {
            Some(&b) => b,
            None => {
                let b = self.bridges.insert(Bridge {
                    key: bridge.into(),
                    members: Vec::new(),
                });
                self.bridge_ids.insert(bridge.into(), b);
                b
            }
        };
        if let Some(m) = self.bridges.get_mut(bid).map(|b| &mut b.members) {
            if m.len() < MAX_VISIT && !m.contains(&cid) {
                m.push(cid);
            }
        }
        if let Some(c) = self.chans.get_mut(cid) {
            c.bridge = bid;
        }
    }

    /// Removes the channel from its bridge; returns the members left behind.
    fn leave_bridge(&mut self, cid: u32) -> Vec<u32> {
        let Some(bid) = self
            .chans
            .get_mut(cid)
            .map(|c| std::mem::replace(&mut c.bridge, NONE))
        else {
            return Vec::new();
        };
        let Some(m) = self.bridges.get_mut(bid).map(|b| &mut b.members) else {
            return Vec::new();
        };
        m.retain(|&x| x != cid);
        if m.is_empty() {
            if let Some(b) = self.bridges.remove(bid) {
                self.bridge_ids.remove(&b.key);
            }
            Vec::new()
        } else {
            m.clone()
        }
    }

    /// Re-evaluates the calls of every channel sharing the bridge `cid` just entered.
    fn refresh_around(&mut self, cid: u32, call: u32, t: i64) {
        self.refresh(call, t, NONE);
        let bid = self.chans.get(cid).map_or(NONE, |c| c.bridge);
        let others: Vec<u32> = self
            .bridges
            .get(bid)
            .map(|b| {
                b.members
                    .iter()
                    .filter_map(|&x| self.chans.get(x).map(|c| c.call))
                    .filter(|&c| c != call)
                    .collect()
            })
            .unwrap_or_default();
        for o in others {
            self.refresh(o, t, NONE);
        }
    }

    /// Is the caller of `call` connected to a person now? Updates talk time. `trigger` is the
    /// channel whose leaving prompted this (to tell "the person left" from "the caller left").
    fn refresh(&mut self, call: u32, t: i64, trigger: u32) {
        let Some(c) = self.calls.get(call) else {
            return;
        };
        let (caller, gone, current) = (c.caller, c.caller_gone.is_some(), c.current_person);
        let found = if gone { NONE } else { self.find_person(caller) };
        let caller_partner = self.chans.get(caller).map_or(NONE, |x| x.partner);
        let found_person = self.chans.get(found).and_then(|x| x.person.clone());
        let prev_kind = self.chans.get(current).map(|x| x.kind);
        let Some(c) = self.calls.get_mut(call) else {
            return;
        };
        match (c.connected_since, found != NONE) {
            (None, true) => {
                c.connected_since = Some(t);
                c.answered_at.get_or_insert(t);
                c.current_person = found;
                c.person_drop = None;
                add_person(c, found_person);
            }
            (Some(since), false) => {
                let d = (t - since).max(0);
                c.talk += d;
                bump_person(c, d);
                c.connected_since = None;
                c.current_person = NONE;
                let caller_left = trigger == caller
                    || trigger == caller_partner
                    || trigger == NONE && c.caller_gone.is_some();
                if !caller_left {
                    c.person_drop = Some(match prev_kind {
                        Some(ChanKind::Agent) => Ender::Agent,
                        _ => Ender::External,
                    });
                }
            }
            (Some(since), true) if found != c.current_person => {
                // Handed over to another person without a gap (a transfer).
                let d = (t - since).max(0);
                c.talk += d;
                bump_person(c, d);
                c.connected_since = Some(t);
                c.current_person = found;
                add_person(c, found_person);
            }
            _ => {}
        }
    }

    /// Breadth-first over bridges and Local pairs from the caller; the first person reached that
    /// is not the caller's own Local half.
    fn find_person(&mut self, caller: u32) -> u32 {
        let Some(cc) = self.chans.get(caller) else {
            return NONE;
        };
        let own = cc.partner;
        let mut stack = std::mem::take(&mut self.scratch_stack);
        let mut seen = std::mem::take(&mut self.scratch_seen);
        stack.clear();
        seen.clear();
        stack.push(caller);
        seen.push(caller);
        if own != NONE {
            stack.push(own);
            seen.push(own);
        }
        let mut found = NONE;
        'search: while let Some(x) = stack.pop() {
            let Some(ch) = self.chans.get(x) else {
                continue;
            };
            let members = self
                .bridges
                .get(ch.bridge)
                .map(|b| b.members.as_slice())
                .unwrap_or(&[]);
            for &n in members.iter().chain(std::iter::once(&ch.partner)) {
                if n == NONE || seen.contains(&n) || seen.len() >= MAX_VISIT {
                    continue;
                }
                seen.push(n);
                match self.chans.get(n).map(|c| c.kind) {
                    Some(ChanKind::Agent | ChanKind::External | ChanKind::Trunk) => {
                        found = n;
                        break 'search;
                    }
                    Some(ChanKind::Other) => stack.push(n),
                    None => {}
                }
            }
        }
        self.scratch_stack = stack;
        self.scratch_seen = seen;
        found
    }

    // -----------------------------------------------------------------------------------------
    // Ending
    // -----------------------------------------------------------------------------------------

    /// A channel is gone. When it was its call's last, the call ends.
    fn drop_channel(&mut self, cid: u32, t: i64, lost: bool, out: &mut Vec<CallRecord>) {
        let members = self.leave_bridge(cid);
        let Some(ch) = self.chans.remove(cid) else {
            return;
        };
        self.chan_ids.remove(&ch.uid);
        if let Some(p) = self.chans.get_mut(ch.partner) {
            if p.partner == cid {
                p.partner = NONE;
            }
        }
        let call = ch.call;
        self.refresh(call, t, cid);
        for m in members {
            if let Some(other) = self.chans.get(m).map(|x| x.call) {
                if other != call {
                    self.refresh(other, t, cid);
                }
            }
        }
        let Some(c) = self.calls.get_mut(call) else {
            return;
        };
        c.live = c.live.saturating_sub(1);
        if lost {
            c.resynced = true;
            if c.caller == cid {
                c.caller_gone.get_or_insert(t);
            }
        }
        if c.live == 0 {
            let reason = (lost || c.resynced).then_some(UnknownReason::LinkDown);
            self.end_call(call, t, reason, out);
        }
    }

    fn end_all(&mut self, t: i64, reason: UnknownReason, out: &mut Vec<CallRecord>) {
        let mut ids = self.calls.ids();
        // Deterministic order: by start time.
        ids.sort_by_key(|&id| self.calls.get(id).map_or(0, |c| c.started));
        // Everything goes: forget channels first so each call's end need not look for them.
        self.chans.clear();
        self.chan_ids.clear();
        self.bridges.clear();
        self.bridge_ids.clear();
        for id in ids {
            if let Some(c) = self.calls.get_mut(id) {
                c.live = 0;
            }
            self.end_call(id, t, Some(reason), out);
        }
    }

    fn evict_oldest(&mut self, t: i64, out: &mut Vec<CallRecord>) {
        let oldest = self
            .calls
            .ids()
            .into_iter()
            .min_by_key(|&id| self.calls.get(id).map_or(i64::MAX, |c| c.last_event));
        if let Some(id) = oldest {
            self.end_call(id, t, Some(UnknownReason::Silent), out);
        }
    }

    /// Emits the call's record and drops all its state. `unknown` = no verdict possible
    /// (a resynced call becomes one only if nothing proves it answered).
    fn end_call(
        &mut self,
        id: u32,
        t: i64,
        unknown: Option<UnknownReason>,
        out: &mut Vec<CallRecord>,
    ) {
        // Close an open conversation at the end time.
        if let Some(c) = self.calls.get_mut(id) {
            if let Some(since) = c.connected_since.take() {
                let d = (t - since).max(0);
                c.talk += d;
                bump_person(c, d);
            }
        }
        let Some(c) = self.calls.remove(id) else {
            return;
        };
        self.call_ids.remove(c.linkedid.as_bytes());
        // Channels still tracked for this call (eviction, silence) go with it. A call normally
        // ends with its last channel, so this scan is the rare path.
        let scan = if c.live > 0 {
            self.chans.ids()
        } else {
            Vec::new()
        };
        for cid in scan {
            if self.chans.get(cid).is_some_and(|x| x.call == id) {
                self.leave_bridge(cid);
                if let Some(ch) = self.chans.remove(cid) {
                    self.chan_ids.remove(&ch.uid);
                }
            }
        }
        if self.ended.len() >= ENDED_MEMORY {
            self.ended.pop_front();
        }
        self.ended.push_back(c.linkedid.as_bytes().into());
        let unknown = match unknown {
            // A call seen only partly may still prove an answer; it never proves a miss.
            Some(UnknownReason::LinkDown)
                if c.resynced && c.answered_at.is_some() && c.talk >= self.rules.min_talk =>
            {
                None
            }
            u => u,
        };
        out.push(rules::verdict(
            &self.server,
            &self.rules,
            &c,
            us_to_ts(t),
            unknown,
        ));
    }
}

/// `X;1` and `X;2`: the two halves of one Local channel.
fn local_halves(a: &str, b: &str) -> bool {
    match (a.strip_suffix(";1"), b.strip_suffix(";2")) {
        (Some(x), Some(y)) => x == y,
        _ => match (a.strip_suffix(";2"), b.strip_suffix(";1")) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        },
    }
}

fn origin_dial(status: &[u8]) -> OriginDial {
    match status {
        s if s.eq_ignore_ascii_case(b"ANSWER") => OriginDial::Answer,
        s if s.eq_ignore_ascii_case(b"BUSY") => OriginDial::Busy,
        s if s.eq_ignore_ascii_case(b"CONGESTION") || s.eq_ignore_ascii_case(b"CHANUNAVAIL") => {
            OriginDial::Failed
        }
        _ => OriginDial::NoAnswer,
    }
}

fn trim_underscores(v: &[u8]) -> &[u8] {
    let n = v.iter().take_while(|&&b| b == b'_').count();
    &v[n..]
}

fn set_number(slot: &mut Option<Box<str>>, v: &[u8]) {
    if !is_unknown(v) {
        *slot = Some(text(v));
    }
}

/// Makes `name` the current person: it moves to the end of the list, which
/// [`bump_person`] credits.
fn add_person(c: &mut Call, name: Option<Box<str>>) {
    let Some(name) = name else { return };
    if let Some(i) = c.persons.iter().position(|p| p.0 == name) {
        let p = c.persons.remove(i);
        c.persons.push(p);
    } else {
        if c.persons.len() >= 8 {
            // Keep the longest talkers.
            if let Some(i) = c
                .persons
                .iter()
                .enumerate()
                .min_by_key(|(_, p)| p.1)
                .map(|(i, _)| i)
            {
                c.persons.remove(i);
            }
        }
        c.persons.push((name, 0));
    }
}

fn bump_person(c: &mut Call, d: i64) {
    if let Some(last) = c.persons.last_mut() {
        last.1 += d;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn person_names() {
        for (chan, want) in [
            ("Local/201@agent-sim-00000001;1", "201"),
            ("Local/201@from-queue-0000000a;2", "201"),
            ("PJSIP/201-0000001a", "201"),
            ("SIP/office-201-0000001a", "office-201"),
            ("Local/89031234567@external-sim-00000003;1", "89031234567"),
            ("weird", "weird"),
            ("", ""),
        ] {
            assert_eq!(&*person_name(chan.as_bytes()), want, "{chan}");
        }
    }

    #[test]
    fn dialled_numbers() {
        for (s, want) in [
            ("89261112233@customer-sim", Some("89261112233")),
            ("Local/+79261112288@customer-sim", Some("+79261112288")),
            ("PJSIP/89261112233@provider", Some("89261112233")),
            ("89165550202@external-sim/n", Some("89165550202")),
            ("201@agent-sim/n", Some("201")),
            ("PJSIP/provider-0000001a", None),
            ("s", None),
            ("", None),
        ] {
            assert_eq!(dialled_number(s.as_bytes()).as_deref(), want, "{s}");
        }
    }
}
