//! Real-SIP call flows the captures do not show, as event sequences built from Asterisk's
//! documented semantics (app_dial, main/pickup.c, main/bridge.c transfers, the dial masquerade
//! datastore of main/stasis_channels.c) with the channel naming of the PJSIP lab
//! (`fixtures/asterisk-22-pjsip/pjsip.toml`): trunk `PJSIP/provider-…`, phones `PJSIP/2XX-…`,
//! outbound trunk `PJSIP/provider-out-…`. `docs/CALL-FLOWS.md` says how each flow is judged;
//! every section there has its test here.

use std::path::Path;

use perezvon::ami::Message;
use perezvon::calls::record::{
    CallRecord, CallbackOutcome, Direction, LostAt, ResolvedBy, Status, Timestamp, UnknownReason,
};
use perezvon::calls::Tracker;
use perezvon::config::Config;
use perezvon::daemon::ingest::Pipeline;
use perezvon::store::Store;

const T0: i64 = 1_800_000_000;

fn pjsip() -> Config {
    Config::load(Path::new("fixtures/asterisk-22-pjsip/pjsip.toml")).unwrap()
}

/// A channel as AMI names it.
#[derive(Debug, Clone)]
struct Ch {
    name: String,
    uid: String,
    linked: String,
}

/// A fake PJSIP PBX: builds events in Asterisk's order and feeds them to a tracker.
struct Pbx {
    t: Tracker,
    out: Vec<CallRecord>,
    now: f64,
    seq: u32,
    /// Every message sent, for a replay through the pipeline.
    sent: Vec<Message>,
    /// `timestampevents = no` and nothing recorded the arrival: no clock at all.
    untimed: bool,
}

impl Pbx {
    fn new() -> Pbx {
        Pbx::with(&pjsip())
    }

    fn with(cfg: &Config) -> Pbx {
        Pbx {
            t: Tracker::new("pjsip", cfg),
            out: Vec::new(),
            now: 0.0,
            seq: 0,
            sent: Vec::new(),
            untimed: false,
        }
    }

    /// A PBX with `timestampevents = no` replayed without arrival times: every event at the
    /// epoch, as replay sees such a stream.
    fn untimed(cfg: &Config) -> Pbx {
        Pbx {
            untimed: true,
            ..Pbx::with(cfg)
        }
    }

    fn at(&mut self, secs: f64) -> &mut Self {
        self.now = secs;
        self
    }

    fn send(&mut self, pairs: Vec<(String, String)>) {
        let ts = format!("{:.6}", T0 as f64 + self.now);
        let mut p: Vec<(String, String)> = vec![];
        let mut it = pairs.into_iter();
        if let Some(first) = it.next() {
            p.push(first);
        }
        if !self.untimed {
            p.push(("Timestamp".into(), ts));
        }
        p.extend(it);
        let m = Message::from_pairs(&p);
        let now = if self.untimed {
            Timestamp::UNIX_EPOCH
        } else {
            Timestamp::from_microsecond(((T0 as f64 + self.now) * 1e6) as i64).unwrap()
        };
        self.t.handle(&m, now, &mut self.out);
        self.sent.push(m);
    }

    /// An event with `ch`'s snapshot (prefix `""`) and more headers.
    fn ev(&mut self, event: &str, ch: &Ch, extra: &[(&str, &str)]) {
        let mut p = vec![("Event".to_string(), event.to_string())];
        p.extend(snapshot("", ch));
        p.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self.send(p);
    }

    fn next_uid(&mut self) -> (u32, String) {
        self.seq += 1;
        (self.seq, format!("{T0}.{}", self.seq))
    }

    fn newchannel(&mut self, name: String, linked: Option<&str>, f: &[(&str, &str)]) -> Ch {
        let (_, uid) = self.next_uid();
        let ch = Ch {
            name,
            linked: linked.map_or(uid.clone(), str::to_string),
            uid,
        };
        self.ev("Newchannel", &ch, f);
        ch
    }

    /// An inbound call on the provider trunk: state Ring, the DID, the caller in Newchannel.
    fn trunk(&mut self, did: &str, caller: &str) -> Ch {
        let name = format!("PJSIP/provider-{:08x}", self.seq + 1);
        self.newchannel(
            name,
            None,
            &[
                ("ChannelState", "4"),
                ("ChannelStateDesc", "Ring"),
                ("CallerIDNum", caller),
                ("Context", "from-trunk"),
                ("Exten", did),
            ],
        )
    }

    /// A phone leg dialled for `linked`: created in the endpoint's context, `Exten: s`.
    fn phone(&mut self, ext: &str, linked: Option<&str>) -> Ch {
        let name = format!("PJSIP/{ext}-{:08x}", self.seq + 1);
        self.newchannel(
            name,
            linked,
            &[
                ("ChannelState", "0"),
                ("CallerIDNum", ext),
                ("Context", "from-internal"),
                ("Exten", "s"),
            ],
        )
    }

    /// An outbound trunk leg (the provider-out endpoint's context is from-trunk).
    fn outside(&mut self, linked: &str) -> Ch {
        let name = format!("PJSIP/provider-out-{:08x}", self.seq + 1);
        self.newchannel(
            name,
            Some(linked),
            &[
                ("ChannelState", "0"),
                ("CallerIDNum", "<unknown>"),
                ("Context", "from-trunk"),
                ("Exten", "s"),
            ],
        )
    }

    /// A Local channel pair `Local/<exten>@<ctx>-N;1/;2`, linked.
    fn local(&mut self, exten: &str, ctx: &str, linked: &str) -> (Ch, Ch) {
        let base = format!("Local/{exten}@{ctx}-{:08x}", self.seq + 1);
        let f = [("Context", ctx), ("Exten", exten)];
        let one = self.newchannel(format!("{base};1"), Some(linked), &f);
        let two = self.newchannel(format!("{base};2"), Some(linked), &f);
        let mut p = vec![("Event".to_string(), "LocalBridge".to_string())];
        p.extend(snapshot("LocalOne", &one));
        p.extend(snapshot("LocalTwo", &two));
        p.push(("LocalOptimization".into(), "No".into()));
        self.send(p);
        (one, two)
    }

    fn exten(&mut self, ch: &Ch, ctx: &str, exten: &str, app: &str, data: &str) {
        self.ev(
            "Newexten",
            ch,
            &[
                ("Context", ctx),
                ("Exten", exten),
                ("Application", app),
                ("AppData", data),
            ],
        );
    }

    fn state(&mut self, ch: &Ch, state: &str) {
        let desc = match state {
            "4" => "Ring",
            "5" => "Ringing",
            "6" => "Up",
            "7" => "Busy",
            _ => "Down",
        };
        self.ev(
            "Newstate",
            ch,
            &[("ChannelState", state), ("ChannelStateDesc", desc)],
        );
    }

    fn dial_event(&mut self, event: &str, from: &Ch, to: &Ch, extra: &[(&str, &str)]) {
        let mut p = vec![("Event".to_string(), event.to_string())];
        p.extend(snapshot("", from));
        p.extend(snapshot("Dest", to));
        p.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self.send(p);
    }

    /// `from` dials `to`; the phone rings (180).
    fn dial(&mut self, from: &Ch, to: &Ch, dialstring: &str) {
        self.dial_event("DialBegin", from, to, &[("DialString", dialstring)]);
        self.state(to, "5");
        self.dial_event("DialState", from, to, &[("DialStatus", "RINGING")]);
    }

    fn dial_end(&mut self, from: &Ch, to: &Ch, status: &str) {
        self.dial_event("DialEnd", from, to, &[("DialStatus", status)]);
    }

    fn bridge(&mut self, event: &str, ch: &Ch, bridge: &str) {
        self.ev(
            event,
            ch,
            &[("BridgeUniqueid", bridge), ("BridgeType", "basic")],
        );
    }

    /// `to` answers `from`'s dial: `to` Up, DialEnd ANSWER, the caller Up, both bridged.
    fn answer(&mut self, from: &Ch, to: &Ch, bridge: &str) {
        self.state(to, "6");
        self.dial_end(from, to, "ANSWER");
        self.state(from, "6");
        self.send(vec![
            ("Event".into(), "BridgeCreate".into()),
            ("BridgeUniqueid".into(), bridge.into()),
        ]);
        self.bridge("BridgeEnter", to, bridge);
        self.bridge("BridgeEnter", from, bridge);
    }

    fn hangup(&mut self, ch: &Ch, cause: &str) {
        self.ev("Hangup", ch, &[("Cause", cause)]);
    }

    /// `who` sends BYE in a two-party bridge; the PBX hangs up the other side.
    fn bye(&mut self, who: &Ch, other: &Ch, bridge: &str) {
        self.ev("HangupRequest", who, &[("Cause", "16")]);
        self.bridge("BridgeLeave", who, bridge);
        self.hangup(who, "16");
        self.bridge("BridgeLeave", other, bridge);
        self.ev("SoftHangupRequest", other, &[("Cause", "16")]);
        self.hangup(other, "16");
    }

    /// The caller CANCELs while `ringing` still ring.
    fn cancel(&mut self, caller: &Ch, ringing: &[&Ch]) {
        self.ev("HangupRequest", caller, &[("Cause", "127")]);
        for r in ringing {
            self.dial_end(caller, r, "CANCEL");
        }
        self.ev("SoftHangupRequest", caller, &[("Cause", "16")]);
        for r in ringing {
            self.hangup(r, "127");
        }
        self.hangup(caller, "127");
    }

    /// The caller hangs up (BYE) on an answered channel nobody is bridged with (IVR, queue).
    fn caller_bye(&mut self, caller: &Ch) {
        self.ev("HangupRequest", caller, &[]);
        self.ev("SoftHangupRequest", caller, &[("Cause", "16")]);
        self.hangup(caller, "0");
    }

    /// The one record of the call whose Linkedid `ch` started with.
    fn record(&self, ch: &Ch) -> &CallRecord {
        let v: Vec<&CallRecord> = self
            .out
            .iter()
            .filter(|r| r.linkedid == ch.linked)
            .collect();
        assert_eq!(v.len(), 1, "records of {}: {:?}", ch.linked, self.out);
        v[0]
    }
}

fn snapshot(prefix: &str, ch: &Ch) -> Vec<(String, String)> {
    vec![
        (format!("{prefix}Channel"), ch.name.clone()),
        (format!("{prefix}Uniqueid"), ch.uid.clone()),
        (format!("{prefix}Linkedid"), ch.linked.clone()),
    ]
}

/// The caller channel of an inbound call as the lab routes a DID: `users,<ext>` dials one phone.
fn call_user(p: &mut Pbx, ext: &str, caller: &str) -> (Ch, Ch) {
    let t = p.trunk(&format!("749511102{}", &ext[1..]), caller);
    p.exten(&t, "users", ext, "Dial", &format!("PJSIP/{ext},20,t"));
    let a = p.phone(ext, Some(&t.linked));
    p.dial(&t, &a, ext);
    (t, a)
}

fn assert_miss(r: &CallRecord, lost_at: LostAt, hangup_by: &str) {
    assert_eq!(r.direction, Direction::Inbound, "{r:?}");
    assert_eq!(r.status, Status::Missed, "{r:?}");
    assert!(r.missed && !r.ignored, "{r:?}");
    assert_eq!(r.lost_at, Some(lost_at), "{r:?}");
    assert_eq!(r.hangup_by.as_deref(), Some(hangup_by), "{r:?}");
}

fn assert_answered(r: &CallRecord, agent: &str, talk: f64) {
    assert_eq!(r.direction, Direction::Inbound, "{r:?}");
    assert_eq!(r.status, Status::Answered, "{r:?}");
    assert!(!r.missed && r.lost_at.is_none(), "{r:?}");
    assert_eq!(r.agent.as_deref(), Some(agent), "{r:?}");
    assert_eq!(r.talk_secs, talk, "{r:?}");
}

// ---------------------------------------------------------------------------------------------
// Call pickup
// ---------------------------------------------------------------------------------------------

/// `picker` picks up the ringing `target` of `caller`'s dial (Pickup/PickupChan, a BLF key):
/// `ast_do_pickup` answers the picker and masquerades it into the ringing channel's place. A
/// masquerade swaps names, Uniqueids and Linkedids, so the picker keeps its own identity and now
/// carries the caller's Linkedid; the dial masquerade datastore reports the swap as a
/// DialEnd CANCEL of the target and a DialBegin of the picker, then the Dial sees the answer.
fn pickup(p: &mut Pbx, caller: &Ch, target: &Ch, picker: &Ch, app: (&str, &str)) -> Ch {
    pickup_ordered(p, caller, target, picker, app, false)
}

/// [`pickup`], with the `Pickup` event before the Dial's answer or (`event_last`) after the
/// bridge: the picker's thread publishes it while the caller's Dial bridges, so both orders
/// occur.
fn pickup_ordered(
    p: &mut Pbx,
    caller: &Ch,
    target: &Ch,
    picker: &Ch,
    app: (&str, &str),
    event_last: bool,
) -> Ch {
    p.exten(picker, "from-internal", "*8", app.0, app.1);
    p.state(picker, "6");
    let mut ev = vec![("Event".to_string(), "Pickup".to_string())];
    ev.extend(snapshot("", picker));
    ev.extend(snapshot("Target", target));
    if !event_last {
        p.send(ev.clone());
    }
    let moved = Ch {
        linked: caller.linked.clone(),
        ..picker.clone()
    };
    p.dial_end(caller, target, "CANCEL");
    p.dial_event("DialBegin", caller, &moved, &[("DialString", "201")]);
    p.dial_end(caller, &moved, "ANSWER");
    p.state(caller, "6");
    p.send(vec![
        ("Event".into(), "BridgeCreate".into()),
        ("BridgeUniqueid".into(), "B-pickup".into()),
    ]);
    p.bridge("BridgeEnter", &moved, "B-pickup");
    p.bridge("BridgeEnter", caller, "B-pickup");
    if event_last {
        p.send(ev);
    }
    // The ringing channel's identity is the zombie now: it goes.
    let zombie = Ch {
        linked: picker.linked.clone(),
        ..target.clone()
    };
    p.hangup(&zombie, "26");
    moved
}

#[test]
fn directed_pickup_is_answered_by_the_one_who_picked_up() {
    let mut p = Pbx::new();
    let (t, a201) = call_user(&mut p, "201", "+79161234567");
    p.at(4.0);
    let picker = p.phone("202", None);
    let moved = pickup(&mut p, &t, &a201, &picker, ("PickupChan", "PJSIP/201"));
    p.at(34.0).bye(&moved, &t, "B-pickup");
    let r = p.record(&t);
    assert_answered(r, "202", 30.0);
    assert_eq!(r.wait_secs, 4.0);
    assert_eq!(r.hangup_by.as_deref(), Some("agent"));
    assert_eq!(p.t.live_calls(), 0);
    // The picker's own call (its Linkedid before the masquerade) is an internal one.
    assert_eq!(p.record(&picker).direction, Direction::Internal);
}

#[test]
fn group_pickup_of_a_ring_group_is_answered_by_the_picker() {
    let mut p = Pbx::new();
    let t = p.trunk("74951110003", "+79161234567");
    p.exten(&t, "group-in", "600", "Dial", "PJSIP/201&PJSIP/202,20,t");
    let a = p.phone("201", Some(&t.linked));
    let b = p.phone("202", Some(&t.linked));
    p.dial(&t, &a, "201");
    p.dial(&t, &b, "202");
    p.at(5.0);
    let picker = p.phone("203", None);
    let moved = pickup(&mut p, &t, &a, &picker, ("Pickup", ""));
    // The other member stops ringing: answered elsewhere.
    p.dial_end(&t, &b, "CANCEL");
    p.hangup(&b, "26");
    p.at(25.0).bye(&t, &moved, "B-pickup");
    let r = p.record(&t);
    assert_answered(r, "203", 20.0);
    assert_eq!(r.hangup_by.as_deref(), Some("caller"));
}

#[test]
fn a_pickup_from_a_phone_agent_channels_does_not_name_is_still_a_person() {
    // The reception's phone is not an agent channel; picking up makes it the one who answered,
    // whichever order the Pickup event and the bridge come in.
    for event_last in [false, true] {
        let mut p = Pbx::new();
        let (t, a201) = call_user(&mut p, "201", "+79161234567");
        p.at(4.0);
        let picker = p.phone("reception", None);
        let moved = pickup_ordered(
            &mut p,
            &t,
            &a201,
            &picker,
            ("PickupChan", "PJSIP/201"),
            event_last,
        );
        p.at(24.0).bye(&t, &moved, "B-pickup");
        let r = p.record(&t);
        assert_answered(r, "reception", 20.0);
        assert_eq!(
            r.hangup_by.as_deref(),
            Some("caller"),
            "event last: {event_last}"
        );
    }
}

#[test]
fn a_pickup_with_a_short_talk_is_a_short_talk_miss() {
    let mut p = Pbx::new();
    let (t, a201) = call_user(&mut p, "201", "+79161234567");
    p.at(4.0);
    let picker = p.phone("202", None);
    let moved = pickup(&mut p, &t, &a201, &picker, ("PickupChan", "PJSIP/201"));
    p.at(6.0).bye(&moved, &t, "B-pickup");
    let r = p.record(&t);
    assert_miss(r, LostAt::User, "agent");
    assert_eq!(r.talk_secs, 2.0);
    assert_eq!(r.agent.as_deref(), Some("202"));
}

// ---------------------------------------------------------------------------------------------
// Transfers
// ---------------------------------------------------------------------------------------------

/// An answered call to 201, 4 s of talk, then 201's phone REFERs it blind to `exten`: the
/// transferee (the trunk) leaves the bridge and runs `exten@from-internal` itself.
fn blind_from_201(p: &mut Pbx, exten: &str) -> (Ch, Ch) {
    let (t, a) = call_user(p, "201", "+79161234567");
    p.at(2.0).answer(&t, &a, "B1");
    p.at(6.0);
    let mut ev = vec![
        ("Event".to_string(), "BlindTransfer".to_string()),
        ("Result".to_string(), "Success".to_string()),
    ];
    ev.extend(snapshot("Transferer", &a));
    ev.extend(snapshot("Transferee", &t));
    ev.extend([
        ("BridgeUniqueid".to_string(), "B1".to_string()),
        ("IsExternal".to_string(), "No".to_string()),
        ("Context".to_string(), "from-internal".to_string()),
        ("Extension".to_string(), exten.to_string()),
    ]);
    p.send(ev);
    p.bridge("BridgeLeave", &t, "B1");
    p.bridge("BridgeLeave", &a, "B1");
    p.ev("SoftHangupRequest", &a, &[("Cause", "16")]);
    p.hangup(&a, "16");
    (t, a)
}

#[test]
fn blind_transfer_to_a_person_who_answers() {
    let mut p = Pbx::new();
    let (t, _) = blind_from_201(&mut p, "202");
    p.exten(&t, "from-internal", "202", "Dial", "PJSIP/202");
    let b = p.phone("202", Some(&t.linked));
    p.dial(&t, &b, "202");
    p.at(9.0).answer(&t, &b, "B2");
    p.at(21.0).bye(&b, &t, "B2");
    let r = p.record(&t);
    assert_answered(r, "202", 16.0);
    assert_eq!(r.hangup_by.as_deref(), Some("agent"));
}

#[test]
fn blind_transfer_to_a_person_who_does_not_answer_after_a_short_talk() {
    let mut p = Pbx::new();
    let (t, _) = blind_from_201(&mut p, "202");
    p.exten(&t, "from-internal", "202", "Dial", "PJSIP/202,20");
    let b = p.phone("202", Some(&t.linked));
    p.dial(&t, &b, "202");
    p.at(16.0).cancel(&t, &[&b]);
    let r = p.record(&t);
    // 4 s with 201 is below min_talk; the caller was lost ringing at 202 alone.
    assert_miss(r, LostAt::User, "caller");
    assert_eq!(r.talk_secs, 4.0);
    assert_eq!(r.agent.as_deref(), Some("201"));
}

#[test]
fn blind_transfer_to_a_queue_nobody_answers() {
    let mut p = Pbx::new();
    let (t, _) = blind_from_201(&mut p, "sales");
    p.exten(&t, "from-internal", "sales", "Queue", "sales,t,,,60");
    p.ev(
        "QueueCallerJoin",
        &t,
        &[("Queue", "sales"), ("Position", "1")],
    );
    let m = p.phone("202", Some(&t.linked));
    p.dial(&t, &m, "PJSIP/202");
    p.at(20.0);
    p.ev("HangupRequest", &t, &[]);
    p.dial_end(&t, &m, "CANCEL");
    p.hangup(&m, "0");
    p.ev("QueueCallerAbandon", &t, &[("Queue", "sales")]);
    p.hangup(&t, "0");
    assert_miss(p.record(&t), LostAt::Queue, "caller");
}

#[test]
fn blind_transfer_to_voicemail() {
    let mut p = Pbx::new();
    let (t, _) = blind_from_201(&mut p, "*202");
    p.exten(&t, "from-internal", "*202", "VoiceMail", "202@default,u");
    p.at(30.0).caller_bye(&t);
    assert_miss(p.record(&t), LostAt::Voicemail, "caller");
}

#[test]
fn blind_transfer_to_an_outside_number() {
    // Answered out there: a conversation with the outside person.
    let mut p = Pbx::new();
    let (t, _) = blind_from_201(&mut p, "89031234567");
    p.exten(
        &t,
        "from-internal",
        "89031234567",
        "Dial",
        "PJSIP/89031234567@provider-out",
    );
    let e = p.outside(&t.linked);
    p.dial(&t, &e, "89031234567@provider-out");
    p.at(10.0).answer(&t, &e, "B2");
    p.at(40.0).bye(&t, &e, "B2");
    let r = p.record(&t);
    assert_answered(r, "89031234567", 34.0);
    assert_eq!(r.hangup_by.as_deref(), Some("caller"));

    // Not answered: lost at external.
    let mut p = Pbx::new();
    let (t, _) = blind_from_201(&mut p, "89031234567");
    p.exten(
        &t,
        "from-internal",
        "89031234567",
        "Dial",
        "PJSIP/89031234567@provider-out",
    );
    let e = p.outside(&t.linked);
    p.dial(&t, &e, "89031234567@provider-out");
    p.at(30.0).cancel(&t, &[&e]);
    assert_miss(p.record(&t), LostAt::External, "caller");
}

/// An answered call to 201 (2 s to answer), 201 holds it and calls `consult` from the phone: a
/// separate call with its own Linkedid. Returns (trunk, 201's leg, 201's consultation leg).
fn consult_from_201(p: &mut Pbx, consult: &str, app: &str, data: &str) -> (Ch, Ch, Ch) {
    let (t, a) = call_user(p, "201", "+79161234567");
    p.at(2.0).answer(&t, &a, "B1");
    p.at(5.0);
    p.ev("Hold", &a, &[]);
    p.ev("MusicOnHoldStart", &t, &[("Class", "default")]);
    let c = p.newchannel(
        format!("PJSIP/201-{:08x}", 0xc0),
        None,
        &[
            ("ChannelState", "4"),
            ("CallerIDNum", "201"),
            ("Context", "from-internal"),
            ("Exten", consult),
        ],
    );
    p.exten(&c, "from-internal", consult, app, data);
    (t, a, c)
}

fn attended_transfer(p: &mut Pbx, t: &Ch, a: &Ch, c: &Ch, dest: &[(&str, &str)]) {
    let mut ev = vec![
        ("Event".to_string(), "AttendedTransfer".to_string()),
        ("Result".to_string(), "Success".to_string()),
    ];
    ev.extend(snapshot("OrigTransferer", a));
    ev.extend(snapshot("SecondTransferer", c));
    ev.extend(snapshot("Transferee", t));
    ev.push(("IsExternal".into(), "Yes".into()));
    ev.extend(dest.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    p.send(ev);
}

#[test]
fn attended_transfer_to_a_person() {
    let mut p = Pbx::new();
    let (t, a, c) = consult_from_201(&mut p, "202", "Dial", "PJSIP/202");
    let b = p.phone("202", Some(&c.linked));
    p.dial(&c, &b, "202");
    p.at(8.0).answer(&c, &b, "B2");
    // REFER with Replaces at 12 s: the bridges are swapped, 202 moves in with the caller (and
    // takes the caller's Linkedid), 201's two legs go.
    p.at(12.0);
    let moved = Ch {
        linked: t.linked.clone(),
        ..b.clone()
    };
    p.bridge("BridgeLeave", &b, "B2");
    p.bridge("BridgeEnter", &moved, "B1");
    attended_transfer(
        &mut p,
        &t,
        &a,
        &c,
        &[("DestType", "Bridge"), ("DestBridgeUniqueid", "B1")],
    );
    p.bridge("BridgeLeave", &a, "B1");
    p.hangup(&a, "16");
    p.bridge("BridgeLeave", &c, "B2");
    p.hangup(&c, "16");
    p.ev("MusicOnHoldStop", &t, &[]);
    p.at(30.0).bye(&t, &moved, "B1");
    let r = p.record(&t);
    // 201 from 2 to 12 s (hold included: the caller is still in 201's bridge), 202 from 12 to 30.
    assert_answered(r, "202", 28.0);
    assert_eq!(r.hangup_by.as_deref(), Some("caller"));
    assert_eq!(p.record(&c).direction, Direction::Internal);
    assert_eq!(p.t.live_calls(), 0);
}

/// 201 consulted an application (a queue, voicemail) and completes the transfer: the caller is
/// masqueraded into the consultation channel's place in that application, with no dialplan
/// step of its own; AttendedTransfer says `DestType: App`, `DestApp: …`.
fn attended_into_app(p: &mut Pbx, app: &str, data: &str) -> Ch {
    let (t, a, c) = consult_from_201(p, "app", app, data);
    p.state(&c, "6");
    p.at(6.0);
    p.bridge("BridgeLeave", &t, "B1");
    attended_transfer(p, &t, &a, &c, &[("DestType", "App"), ("DestApp", app)]);
    p.bridge("BridgeLeave", &a, "B1");
    p.hangup(&a, "16");
    p.hangup(&c, "16");
    t
}

#[test]
fn attended_transfer_into_a_queue_after_a_short_talk() {
    let mut p = Pbx::new();
    let t = attended_into_app(&mut p, "Queue", "sales");
    let m = p.phone("203", Some(&t.linked));
    p.dial(&t, &m, "PJSIP/203");
    p.at(30.0);
    p.ev("HangupRequest", &t, &[]);
    p.dial_end(&t, &m, "CANCEL");
    p.hangup(&m, "0");
    p.ev("QueueCallerAbandon", &t, &[("Queue", "sales")]);
    p.hangup(&t, "0");
    let r = p.record(&t);
    assert_miss(r, LostAt::Queue, "caller");
    assert_eq!(r.talk_secs, 4.0);
}

#[test]
fn attended_transfer_into_voicemail_after_a_short_talk() {
    let mut p = Pbx::new();
    let t = attended_into_app(&mut p, "VoiceMail", "202@default");
    p.at(25.0).caller_bye(&t);
    assert_miss(p.record(&t), LostAt::Voicemail, "caller");
}

#[test]
fn attended_transfer_to_an_outside_number() {
    let mut p = Pbx::new();
    let (t, a, c) = consult_from_201(
        &mut p,
        "89031234567",
        "Dial",
        "PJSIP/89031234567@provider-out",
    );
    let e = p.outside(&c.linked);
    p.dial(&c, &e, "89031234567@provider-out");
    p.at(9.0).answer(&c, &e, "B2");
    p.at(11.0);
    // This time the caller moves into the consultation's bridge.
    p.bridge("BridgeLeave", &t, "B1");
    let moved_t = t.clone();
    p.bridge("BridgeEnter", &moved_t, "B2");
    attended_transfer(
        &mut p,
        &t,
        &a,
        &c,
        &[("DestType", "Bridge"), ("DestBridgeUniqueid", "B2")],
    );
    p.bridge("BridgeLeave", &a, "B1");
    p.hangup(&a, "16");
    p.bridge("BridgeLeave", &c, "B2");
    p.hangup(&c, "16");
    p.at(71.0).bye(&e, &t, "B2");
    let r = p.record(&t);
    assert_answered(r, "89031234567", 69.0);
    assert_eq!(r.hangup_by.as_deref(), Some("external"));
}

// ---------------------------------------------------------------------------------------------
// Hunt / follow-me / groups
// ---------------------------------------------------------------------------------------------

/// `[hunt]`: Dial(PJSIP/201,10), Dial(PJSIP/202,10), Dial(PJSIP/203,10), one after another.
/// Returns the trunk and the legs rung so far; `answer_at` = the step a person answers.
fn hunt(p: &mut Pbx, steps: &[&str], caller_gives_up_at: usize) -> (Ch, Vec<Ch>) {
    let t = p.trunk("74951110005", "+79161234567");
    p.exten(&t, "from-trunk", "74951110005", "Answer", "");
    p.state(&t, "6");
    let mut legs = Vec::new();
    for (i, ext) in steps.iter().enumerate() {
        p.at(10.0 * i as f64);
        p.exten(&t, "hunt", "s", "Dial", &format!("PJSIP/{ext},10"));
        let leg = p.phone(ext, Some(&t.linked));
        p.dial(&t, &leg, ext);
        if i == caller_gives_up_at {
            p.at(10.0 * i as f64 + 5.0);
            p.ev("HangupRequest", &t, &[]);
            p.dial_end(&t, &leg, "CANCEL");
            p.hangup(&leg, "0");
            p.hangup(&t, "0");
            legs.push(leg);
            return (t, legs);
        }
        p.at(10.0 * i as f64 + 10.0);
        p.dial_end(&t, &leg, "NOANSWER");
        p.hangup(&leg, "19");
        p.exten(&t, "hunt", "s", "Playback", "please-hold");
        legs.push(leg);
    }
    (t, legs)
}

#[test]
fn a_hunt_sequence_nobody_answers_is_lost_at_group() {
    let mut p = Pbx::new();
    let (t, _) = hunt(&mut p, &["201", "202", "203"], 2);
    let r = p.record(&t);
    assert_miss(r, LostAt::Group, "caller");
    assert_eq!(r.agent.as_deref(), Some("203"), "the last one rung");
    // Given up while the second step rang: two people offered already.
    let mut p = Pbx::new();
    let (t, _) = hunt(&mut p, &["201", "202", "203"], 1);
    assert_miss(p.record(&t), LostAt::Group, "caller");
}

#[test]
fn one_persons_number_dialled_again_is_still_user() {
    let mut p = Pbx::new();
    let (t, _) = hunt(&mut p, &["201", "201"], 1);
    assert_miss(p.record(&t), LostAt::User, "caller");
}

#[test]
fn two_outside_numbers_one_after_another_are_a_group() {
    // Both legs are `PJSIP/provider-out-…`: the numbers dialled tell them apart.
    let mut p = Pbx::new();
    let t = p.trunk("74951110005", "+79161234567");
    for (i, n) in ["89031234567", "89051234567"].iter().enumerate() {
        p.at(10.0 * i as f64);
        p.exten(
            &t,
            "hunt",
            "s",
            "Dial",
            &format!("PJSIP/{n}@provider-out,10"),
        );
        let e = p.outside(&t.linked);
        p.dial(&t, &e, &format!("{n}@provider-out"));
        p.at(10.0 * i as f64 + 10.0);
        p.dial_end(&t, &e, "NOANSWER");
        p.hangup(&e, "19");
    }
    p.at(21.0);
    p.ev("HangupRequest", &t, &[("Cause", "127")]);
    p.hangup(&t, "127");
    assert_miss(p.record(&t), LostAt::Group, "caller");
    // One of them twice is still one outside number.
    let mut p = Pbx::new();
    let t = p.trunk("74951110005", "+79161234567");
    for i in 0..2 {
        p.at(10.0 * i as f64);
        p.exten(&t, "hunt", "s", "Dial", "PJSIP/89031234567@provider-out,10");
        let e = p.outside(&t.linked);
        p.dial(&t, &e, "89031234567@provider-out");
        p.at(10.0 * i as f64 + 10.0);
        p.dial_end(&t, &e, "NOANSWER");
        p.hangup(&e, "19");
    }
    p.at(21.0);
    p.ev("HangupRequest", &t, &[("Cause", "127")]);
    p.hangup(&t, "127");
    assert_miss(p.record(&t), LostAt::External, "caller");
}

#[test]
fn an_ivr_between_two_single_dials_starts_a_new_sequence() {
    let mut p = Pbx::new();
    let t = p.trunk("74951110000", "+79161234567");
    p.exten(&t, "ivr-main", "s", "Answer", "");
    p.state(&t, "6");
    p.exten(&t, "ivr-main", "0", "Dial", "PJSIP/201,10");
    let a = p.phone("201", Some(&t.linked));
    p.dial(&t, &a, "201");
    p.at(10.0).dial_end(&t, &a, "NOANSWER");
    p.hangup(&a, "19");
    p.exten(&t, "ivr-main", "s", "BackGround", "basic-pbx-ivr-main");
    p.exten(&t, "ivr-main", "2", "Dial", "PJSIP/202,10");
    let b = p.phone("202", Some(&t.linked));
    p.dial(&t, &b, "202");
    p.at(15.0);
    p.ev("HangupRequest", &t, &[]);
    p.dial_end(&t, &b, "CANCEL");
    p.hangup(&b, "0");
    p.hangup(&t, "0");
    assert_miss(p.record(&t), LostAt::User, "caller");
}

#[test]
fn a_hunt_answered_at_its_second_step_is_answered() {
    let mut p = Pbx::new();
    let t = p.trunk("74951110005", "+79161234567");
    p.exten(&t, "hunt", "s", "Dial", "PJSIP/201,10");
    let a = p.phone("201", Some(&t.linked));
    p.dial(&t, &a, "201");
    p.at(10.0).dial_end(&t, &a, "NOANSWER");
    p.hangup(&a, "19");
    p.exten(&t, "hunt", "s", "Dial", "PJSIP/202,10");
    let b = p.phone("202", Some(&t.linked));
    p.dial(&t, &b, "202");
    p.at(13.0).answer(&t, &b, "B1");
    p.at(53.0).bye(&b, &t, "B1");
    let r = p.record(&t);
    assert_answered(r, "202", 40.0);
    assert_eq!(r.wait_secs, 13.0);
}

#[test]
fn follow_me_nobody_answers_is_lost_at_group() {
    // FollowMe(201): app_followme rings each step's numbers through Local channels of its own
    // and reports them as dials of the caller.
    let mut p = Pbx::new();
    let t = p.trunk("74951110201", "+79161234567");
    p.exten(&t, "users", "201", "FollowMe", "201,a");
    p.state(&t, "6");
    let (l1, l2) = p.local("201", "followme-sub", &t.linked);
    p.dial(&t, &l1, "201@followme-sub");
    p.exten(&l2, "followme-sub", "201", "Dial", "PJSIP/201,10");
    let a = p.phone("201", Some(&t.linked));
    p.dial(&l2, &a, "201");
    p.at(10.0).dial_end(&t, &l1, "NOANSWER");
    p.hangup(&a, "0");
    p.hangup(&l2, "0");
    p.hangup(&l1, "0");
    let (m1, m2) = p.local("89031234567", "followme-sub", &t.linked);
    p.dial(&t, &m1, "89031234567@followme-sub");
    p.exten(
        &m2,
        "followme-sub",
        "89031234567",
        "Dial",
        "PJSIP/89031234567@provider-out,20",
    );
    let e = p.outside(&t.linked);
    p.dial(&m2, &e, "89031234567@provider-out");
    p.at(20.0);
    p.ev("HangupRequest", &t, &[]);
    p.dial_end(&t, &m1, "CANCEL");
    for c in [&e, &m2, &m1, &t] {
        p.hangup(c, "0");
    }
    assert_miss(p.record(&t), LostAt::Group, "caller");
}

// ---------------------------------------------------------------------------------------------
// Forwarding over the outbound trunk
// ---------------------------------------------------------------------------------------------

#[test]
fn a_line_forwarded_in_the_dialplan_to_a_mobile() {
    // The director's DID dials the mobile through provider-out; nobody answers.
    let mut p = Pbx::new();
    let t = p.trunk("74951110004", "+79161230000");
    p.exten(
        &t,
        "users",
        "204",
        "Dial",
        "PJSIP/89031234567@provider-out,30",
    );
    let e = p.outside(&t.linked);
    p.dial(&t, &e, "89031234567@provider-out");
    p.at(12.0).cancel(&t, &[&e]);
    let r = p.record(&t);
    assert_miss(r, LostAt::External, "caller");
    assert_eq!(r.wait_secs, 12.0);

    // Answered by the mobile: a conversation with the outside person.
    let mut p = Pbx::new();
    let t = p.trunk("74951110004", "+79161230000");
    p.exten(
        &t,
        "users",
        "204",
        "Dial",
        "PJSIP/89031234567@provider-out,30",
    );
    let e = p.outside(&t.linked);
    p.dial(&t, &e, "89031234567@provider-out");
    p.at(5.0).answer(&t, &e, "B1");
    p.at(65.0).bye(&e, &t, "B1");
    let r = p.record(&t);
    assert_answered(r, "89031234567", 60.0);
    assert_eq!(r.hangup_by.as_deref(), Some("external"));
}

/// 201's phone answers the INVITE with 302 to the mobile: Dial follows the forward through
/// `Local/<number>@<201's context>` (PJSIP `redirect_method = user`), whose `;2` dials the
/// outbound trunk.
fn forwarded_by_302(p: &mut Pbx) -> (Ch, Ch, Ch, Ch) {
    let (t, a) = call_user(p, "201", "+79161234567");
    p.at(1.0);
    p.dial_event(
        "DialEnd",
        &t,
        &a,
        &[("DialStatus", "CANCEL"), ("Forward", "89031234567")],
    );
    let (x1, x2) = p.local("89031234567", "from-internal", &t.linked);
    p.dial_event(
        "DialBegin",
        &t,
        &x1,
        &[("DialString", "89031234567@from-internal")],
    );
    p.hangup(&a, "16");
    p.exten(
        &x2,
        "from-internal",
        "89031234567",
        "Dial",
        "PJSIP/89031234567@provider-out",
    );
    let e = p.outside(&t.linked);
    p.dial(&x2, &e, "89031234567@provider-out");
    (t, x1, x2, e)
}

#[test]
fn a_302_forward_to_the_outbound_trunk_nobody_answers_is_lost_at_external() {
    let mut p = Pbx::new();
    let (t, x1, x2, e) = forwarded_by_302(&mut p);
    p.at(20.0);
    p.ev("HangupRequest", &t, &[("Cause", "127")]);
    p.dial_end(&t, &x1, "CANCEL");
    p.dial_end(&x2, &e, "CANCEL");
    for c in [&e, &x2, &x1, &t] {
        p.hangup(c, "127");
    }
    let r = p.record(&t);
    assert_miss(r, LostAt::External, "caller");
    assert_eq!(r.wait_secs, 20.0);
}

#[test]
fn a_302_forward_answered_by_the_mobile_is_answered() {
    let mut p = Pbx::new();
    let (t, x1, x2, e) = forwarded_by_302(&mut p);
    p.at(6.0).answer(&x2, &e, "B2");
    p.state(&x1, "6");
    p.dial_end(&t, &x1, "ANSWER");
    p.state(&t, "6");
    p.bridge("BridgeEnter", &x1, "B1");
    p.bridge("BridgeEnter", &t, "B1");
    p.at(36.0);
    p.ev("HangupRequest", &t, &[]);
    p.bridge("BridgeLeave", &t, "B1");
    p.hangup(&t, "16");
    p.bridge("BridgeLeave", &x1, "B1");
    p.hangup(&x1, "16");
    p.bridge("BridgeLeave", &x2, "B2");
    p.hangup(&x2, "16");
    p.bridge("BridgeLeave", &e, "B2");
    p.hangup(&e, "16");
    let r = p.record(&t);
    assert_answered(r, "89031234567", 30.0);
    assert_eq!(r.hangup_by.as_deref(), Some("caller"));
}

// ---------------------------------------------------------------------------------------------
// Early media
// ---------------------------------------------------------------------------------------------

#[test]
fn early_media_is_not_an_answer() {
    // The mobile's network plays a message in 183 Session Progress (DialState PROGRESS); the
    // trunk gets the media with Progress() and stays in state Ring. No bridge, no answer.
    let mut p = Pbx::new();
    let t = p.trunk("74951110004", "+79161230000");
    p.exten(
        &t,
        "users",
        "204",
        "Dial",
        "PJSIP/89031234567@provider-out,30",
    );
    let e = p.outside(&t.linked);
    p.dial_event(
        "DialBegin",
        &t,
        &e,
        &[("DialString", "89031234567@provider-out")],
    );
    p.at(1.0);
    p.dial_event("DialState", &t, &e, &[("DialStatus", "PROGRESS")]);
    p.state(&e, "4");
    p.at(25.0).cancel(&t, &[&e]);
    let r = p.record(&t);
    assert_miss(r, LostAt::External, "caller");
    assert_eq!(r.answered_at, None);
    assert_eq!(r.talk_secs, 0.0);
    assert_eq!(r.wait_secs, 25.0);

    // The PBX's own early media: Progress() and an announcement without answering.
    let mut p = Pbx::new();
    let t = p.trunk("74951110009", "+79161230000");
    p.exten(&t, "closed", "s", "Progress", "");
    p.exten(&t, "closed", "s", "Playback", "closed,noanswer");
    p.at(8.0);
    p.ev("HangupRequest", &t, &[("Cause", "127")]);
    p.hangup(&t, "127");
    let r = p.record(&t);
    assert_miss(r, LostAt::Ivr, "caller");
    assert_eq!(r.answered_at, None);
}

// ---------------------------------------------------------------------------------------------
// Caller IDs
// ---------------------------------------------------------------------------------------------

#[test]
fn withheld_caller_ids_are_misses_nobody_calls_back() {
    for cid in [
        "anonymous",
        "Anonymous",
        "<unknown>",
        "",
        "Restricted",
        "unavailable",
    ] {
        let mut p = Pbx::new();
        let t = p.trunk("74951110001", cid);
        p.exten(&t, "queue-in", "sales", "Answer", "");
        p.state(&t, "6");
        p.exten(&t, "queue-in", "sales", "Queue", "sales,t,,,60");
        p.ev("QueueCallerJoin", &t, &[("Queue", "sales")]);
        p.at(20.0).caller_bye(&t);
        let r = p.record(&t);
        assert_miss(r, LostAt::Queue, "caller");
        assert_eq!(r.caller_normalized, None, "{cid:?}");
        assert!(p.t.live_customers().next().is_none());
    }
}

/// Feeds a built call through the pipeline (tracker -> store, with resolution).
fn stored(pipeline: &mut Pipeline, p: &Pbx) -> Vec<CallRecord> {
    let mut out = Vec::new();
    for m in &p.sent {
        let now = perezvon::daemon::ingest::event_time(m, Timestamp::UNIX_EPOCH);
        out.extend(pipeline.feed("pjsip", m, now).unwrap());
    }
    out
}

#[test]
fn a_customer_calling_in_national_then_international_format_is_one_customer() {
    for (first, again) in [
        ("+79161234567", "89161234567"),
        ("89161234567", "79161234567"),
        ("+442071234567", "810442071234567"),
    ] {
        let mut pipeline = Pipeline::new(&pjsip(), Store::open_in_memory().unwrap());
        // A miss in the queue ...
        let mut p = Pbx::new();
        let t = p.trunk("74951110001", first);
        p.exten(&t, "queue-in", "sales", "Queue", "sales");
        p.state(&t, "6");
        p.at(20.0).caller_bye(&t);
        let miss = stored(&mut pipeline, &p);
        assert_eq!(miss.len(), 1);
        assert_eq!(miss[0].status, Status::Missed);
        // ... and the same customer again a minute later, answered by 202.
        let mut p = Pbx::new();
        p.seq = 100;
        p.at(60.0);
        let (t2, a) = call_user(&mut p, "202", again);
        p.at(62.0).answer(&t2, &a, "B1");
        p.at(92.0).bye(&a, &t2, "B1");
        let answered = stored(&mut pipeline, &p);
        assert_eq!(answered[0].caller_normalized, miss[0].caller_normalized);
        let m = pipeline
            .store()
            .get_call("pjsip", &miss[0].linkedid)
            .unwrap()
            .unwrap();
        assert_eq!(
            m.resolved_by,
            Some(ResolvedBy::Caller),
            "{first} then {again}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Callbacks
// ---------------------------------------------------------------------------------------------

fn or(p: &mut Pbx, success: bool, reason: &str, ch: Option<&Ch>, requested: &str) {
    p.send(vec![
        ("Event".into(), "OriginateResponse".into()),
        ("ActionID".into(), "pzv-1-1-0000beef".into()),
        (
            "Response".into(),
            if success { "Success" } else { "Failure" }.into(),
        ),
        (
            "Channel".into(),
            ch.map_or(requested.to_string(), |c| c.name.clone()),
        ),
        ("Reason".into(), reason.into()),
        (
            "Uniqueid".into(),
            ch.map_or("<unknown>".to_string(), |c| c.uid.clone()),
        ),
    ]);
}

fn origin_dial(p: &mut Pbx, event: &str, to: &Ch, extra: &[(&str, &str)]) {
    let mut ev = vec![("Event".to_string(), event.to_string())];
    ev.extend(snapshot("Dest", to));
    ev.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    p.send(ev);
}

fn marker(p: &mut Pbx, ch: &Ch) {
    p.ev(
        "VarSet",
        ch,
        &[("Variable", "CALLBACK_ID"), ("Value", "pzv-1-1-0000beef")],
    );
}

/// Agent-first on PJSIP: Originate `Channel: PJSIP/201`, `Application: Dial`,
/// `Data: PJSIP/89161234567@provider-out,30`, `ChannelId: pzv-…-c`.
fn agent_first(p: &mut Pbx, agent: &str, customer: &str, talk: f64) -> Ch {
    let a = Ch {
        name: "PJSIP/201-00000040".into(),
        uid: "pzv-1-1-0000beef-c".into(),
        linked: "pzv-1-1-0000beef-c".into(),
    };
    p.ev(
        "Newchannel",
        &a,
        &[
            ("ChannelState", "0"),
            ("Context", "from-internal"),
            ("Exten", "s"),
        ],
    );
    marker(p, &a);
    origin_dial(p, "DialBegin", &a, &[("DialString", "201")]);
    p.state(&a, "5");
    match agent {
        "answers" => {}
        "busy" => {
            p.at(0.1);
            p.ev("HangupRequest", &a, &[("Cause", "17")]);
            origin_dial(p, "DialEnd", &a, &[("DialStatus", "BUSY")]);
            or(p, false, "0", None, "PJSIP/201");
            p.hangup(&a, "17");
            return a;
        }
        _ => {
            p.at(30.0);
            p.ev("HangupRequest", &a, &[("Cause", "19")]);
            or(p, false, "3", None, "PJSIP/201");
            p.hangup(&a, "19");
            return a;
        }
    }
    p.at(3.0).state(&a, "6");
    origin_dial(p, "DialEnd", &a, &[("DialStatus", "ANSWER")]);
    or(p, true, "4", Some(&a), "PJSIP/201");
    let c = p.outside(&a.linked);
    p.dial(&a, &c, "89161234567@provider-out");
    match customer {
        "answers" => {
            p.at(8.0).answer(&a, &c, "B1");
            p.at(8.0 + talk).bye(&c, &a, "B1");
        }
        "busy" => {
            p.at(4.0);
            p.ev("HangupRequest", &c, &[("Cause", "17")]);
            p.dial_end(&a, &c, "BUSY");
            p.hangup(&c, "17");
            p.at(5.0).hangup(&a, "16");
        }
        "declines" => {
            p.at(4.0);
            p.ev("HangupRequest", &c, &[("Cause", "21")]);
            p.dial_end(&a, &c, "NOANSWER");
            p.hangup(&c, "21");
            p.at(5.0).hangup(&a, "16");
        }
        _ => {
            p.at(33.0);
            p.dial_end(&a, &c, "NOANSWER");
            p.hangup(&c, "19");
            p.hangup(&a, "16");
        }
    }
    a
}

#[test]
fn agent_first_callbacks_on_pjsip() {
    for (agent, customer, talk, want) in [
        ("answers", "answers", 40.0, CallbackOutcome::Connected),
        ("answers", "answers", 3.0, CallbackOutcome::TooShort),
        ("answers", "busy", 0.0, CallbackOutcome::Busy),
        ("answers", "no_answer", 0.0, CallbackOutcome::NoAnswer),
        ("answers", "declines", 0.0, CallbackOutcome::Failed),
        ("no_answer", "-", 0.0, CallbackOutcome::AgentMissed),
        // The agent's phone answers 486: Failure with Reason 0, busy only on the channel.
        ("busy", "-", 0.0, CallbackOutcome::AgentMissed),
    ] {
        let mut p = Pbx::new();
        let a = agent_first(&mut p, agent, customer, talk);
        let r = p.record(&a);
        assert_eq!(r.direction, Direction::Callback, "{r:?}");
        assert_eq!(r.callback_id.as_deref(), Some("pzv-1-1-0000beef"));
        assert_eq!(
            r.callback_outcome,
            Some(want),
            "agent {agent}, customer {customer}: {r:?}"
        );
        if agent == "answers" {
            assert_eq!(r.callee_normalized.as_deref(), Some("79161234567"), "{r:?}");
        }
        if want == CallbackOutcome::Connected {
            assert_eq!(r.talk_secs, talk);
            assert_eq!(r.agent.as_deref(), Some("201"));
            assert_eq!(
                r.hangup_by.as_deref(),
                Some("caller"),
                "the customer hung up"
            );
        }
        assert_eq!(p.t.live_calls(), 0);
    }
}

/// Customer-first on PJSIP, as the lab's callbacks: the customer through provider-out, then
/// `callback,201` dials the agent.
fn customer_first(p: &mut Pbx, customer: &str, agent: &str, talk: f64) -> Ch {
    let c = Ch {
        name: "PJSIP/provider-out-00000050".into(),
        uid: "pzv-1-1-0000beef-c".into(),
        linked: "pzv-1-1-0000beef-c".into(),
    };
    p.ev(
        "Newchannel",
        &c,
        &[
            ("ChannelState", "0"),
            ("Context", "from-trunk"),
            ("Exten", "s"),
        ],
    );
    marker(p, &c);
    origin_dial(
        p,
        "DialBegin",
        &c,
        &[("DialString", "89161234567@provider-out")],
    );
    match customer {
        "busy" => {
            p.ev("HangupRequest", &c, &[("Cause", "17")]);
            origin_dial(p, "DialEnd", &c, &[("DialStatus", "BUSY")]);
            or(p, false, "0", None, "PJSIP/89161234567@provider-out");
            p.hangup(&c, "17");
            return c;
        }
        "unavailable" => {
            // 480 Temporarily Unavailable: a phone that is off.
            p.ev("HangupRequest", &c, &[("Cause", "19")]);
            origin_dial(p, "DialEnd", &c, &[("DialStatus", "NOANSWER")]);
            or(p, false, "0", None, "PJSIP/89161234567@provider-out");
            p.hangup(&c, "19");
            return c;
        }
        "congestion" => {
            p.ev("HangupRequest", &c, &[("Cause", "34")]);
            origin_dial(p, "DialEnd", &c, &[("DialStatus", "CONGESTION")]);
            or(p, false, "0", None, "PJSIP/89161234567@provider-out");
            p.hangup(&c, "34");
            return c;
        }
        "no_answer" => {
            p.state(&c, "5");
            p.at(20.0);
            p.ev("HangupRequest", &c, &[("Cause", "19")]);
            or(p, false, "3", None, "PJSIP/89161234567@provider-out");
            p.hangup(&c, "19");
            return c;
        }
        _ => {}
    }
    p.state(&c, "5");
    p.at(3.0).state(&c, "6");
    or(p, true, "4", Some(&c), "");
    origin_dial(p, "DialEnd", &c, &[("DialStatus", "ANSWER")]);
    p.exten(&c, "callback", "201", "Dial", "PJSIP/201,15,t");
    let a = p.phone("201", Some(&c.linked));
    p.dial(&c, &a, "201");
    if agent == "answers" {
        p.at(5.0).answer(&c, &a, "B1");
        p.at(5.0 + talk).bye(&a, &c, "B1");
    } else {
        p.at(20.0).dial_end(&c, &a, "NOANSWER");
        p.hangup(&a, "0");
        p.exten(&c, "callback", "201", "Playback", "im-sorry");
        p.ev("SoftHangupRequest", &c, &[("Cause", "16")]);
        p.hangup(&c, "16");
    }
    c
}

#[test]
fn customer_first_callbacks_on_pjsip() {
    for (customer, agent, talk, want) in [
        ("answers", "answers", 30.0, CallbackOutcome::Connected),
        ("answers", "answers", 2.0, CallbackOutcome::TooShort),
        ("answers", "no_answer", 0.0, CallbackOutcome::AgentMissed),
        ("busy", "-", 0.0, CallbackOutcome::Busy),
        ("unavailable", "-", 0.0, CallbackOutcome::NoAnswer),
        ("congestion", "-", 0.0, CallbackOutcome::Failed),
        ("no_answer", "-", 0.0, CallbackOutcome::NoAnswer),
    ] {
        let mut p = Pbx::new();
        let c = customer_first(&mut p, customer, agent, talk);
        let r = p.record(&c);
        assert_eq!(r.direction, Direction::Callback, "{r:?}");
        assert_eq!(
            r.callback_outcome,
            Some(want),
            "customer {customer}, agent {agent}: {r:?}"
        );
        assert_eq!(r.callee_normalized.as_deref(), Some("79161234567"), "{r:?}");
        assert_eq!(p.t.live_calls(), 0);
    }
}

#[test]
fn min_talk_zero_makes_no_callback_nobody_took_connected() {
    let mut cfg = pjsip();
    cfg.calls.min_talk = std::time::Duration::ZERO;
    let mut p = Pbx::with(&cfg);
    let c = customer_first(&mut p, "answers", "no_answer", 0.0);
    assert_eq!(
        p.record(&c).callback_outcome,
        Some(CallbackOutcome::AgentMissed)
    );
    let mut p = Pbx::with(&cfg);
    let c = customer_first(&mut p, "answers", "answers", 2.0);
    assert_eq!(
        p.record(&c).callback_outcome,
        Some(CallbackOutcome::Connected)
    );
    // An inbound call that nobody took stays a miss at min_talk 0.
    let mut p = Pbx::with(&cfg);
    let (t, a) = call_user(&mut p, "201", "+79161234567");
    p.at(10.0).cancel(&t, &[&a]);
    let r = p.record(&t);
    assert_miss(r, LostAt::User, "caller");
}

/// `timestampevents = no` without recorded arrival times: the durations are unknown, and no
/// rule that needs one judges from 0. A call nobody took is a miss (nothing shows it was a quick
/// accidental one); a call a person took is answered only when any talk counts.
#[test]
fn a_stream_without_a_clock_judges_nothing_from_durations() {
    for min_talk in [0, 6, 60] {
        let mut cfg = pjsip();
        cfg.calls.min_talk = std::time::Duration::from_secs(min_talk);
        // A caller who gives up at once (would be accidental with a clock).
        let mut p = Pbx::untimed(&cfg);
        let (t, a) = call_user(&mut p, "201", "+79161234567");
        p.at(1.0).cancel(&t, &[&a]);
        let r = p.record(&t);
        assert_miss(r, LostAt::User, "caller");
        assert_eq!(r.unknown_reason, None, "{r:?}");
        // With a clock the same call is accidental.
        let mut p = Pbx::with(&cfg);
        let (t, a) = call_user(&mut p, "201", "+79161234567");
        p.at(1.0).cancel(&t, &[&a]);
        assert_eq!(p.record(&t).status, Status::Ignored);

        // A person answers.
        let mut p = Pbx::untimed(&cfg);
        let (t, a) = call_user(&mut p, "201", "+79161234567");
        p.at(5.0).answer(&t, &a, "b1");
        p.at(7.0).bye(&a, &t, "b1");
        let r = p.record(&t);
        if min_talk == 0 {
            assert_eq!(r.status, Status::Answered, "{r:?}");
            assert!(!r.missed, "{r:?}");
        } else {
            assert_eq!(r.status, Status::Unknown, "{r:?}");
            assert_eq!(r.unknown_reason, Some(UnknownReason::NoClock), "{r:?}");
            assert!(!r.wants_callback(), "{r:?}");
        }
    }
}
