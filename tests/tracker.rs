//! The tracker alone: time as an argument, interleavings, link loss, restarts, resync, silence.
//! The capture-based tests run on both labs: Local channels (`fixtures/asterisk-22`) and real
//! SIP (`fixtures/asterisk-22-pjsip`).

use std::path::Path;

use perezvon::ami::codec::decode_all;
use perezvon::ami::Message;
use perezvon::calls::record::{CallRecord, Direction, LostAt, Status, Timestamp, UnknownReason};
use perezvon::calls::Tracker;
use perezvon::config::Config;

fn lab() -> Config {
    Config::load(Path::new("fixtures/asterisk-22/lab.toml")).unwrap()
}

fn capture(name: &str) -> Vec<Message> {
    LOCAL.capture(name)
}

/// A recorded lab: where its captures are and its config.
#[derive(Clone, Copy)]
struct Lab {
    dir: &'static str,
    config: &'static str,
}

const LOCAL: Lab = Lab {
    dir: "fixtures/asterisk-22",
    config: "lab.toml",
};
const PJSIP: Lab = Lab {
    dir: "fixtures/asterisk-22-pjsip",
    config: "pjsip.toml",
};

impl Lab {
    fn config(&self) -> Config {
        Config::load(&Path::new(self.dir).join(self.config)).unwrap()
    }
    fn capture(&self, name: &str) -> Vec<Message> {
        let (m, _) = decode_all(&std::fs::read(format!("{}/{name}.ami", self.dir)).unwrap());
        m
    }
}

fn ts_of(m: &Message) -> Option<Timestamp> {
    let s = m.get_str("Timestamp")?;
    let secs: f64 = s.parse().ok()?;
    Timestamp::from_microsecond((secs * 1e6) as i64).ok()
}

/// Feeds messages; `now` follows the stream's timestamps.
fn feed(t: &mut Tracker, msgs: &[Message], now: &mut Timestamp) -> Vec<CallRecord> {
    let mut out = Vec::new();
    for m in msgs {
        if let Some(x) = ts_of(m) {
            *now = x;
        }
        t.handle(m, *now, &mut out);
    }
    out
}

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

/// A channel event without a Timestamp header: the time is the `now` argument.
fn ev(event: &str, chan: &str, uid: &str, extra: &[(&str, &str)]) -> Message {
    let mut pairs: Vec<(&str, &str)> = vec![
        ("Event", event),
        ("Channel", chan),
        ("Uniqueid", uid),
        ("Linkedid", "L1"),
    ];
    pairs.extend_from_slice(extra);
    Message::from_pairs(&pairs)
}

const TRUNK: &str = "Local/74951110001@from-trunk-00000001;2";

fn queue_call(t: &mut Tracker, hangup_after: i64) -> Vec<CallRecord> {
    let mut out = Vec::new();
    let newchan = ev(
        "Newchannel",
        TRUNK,
        "L1",
        &[
            ("ChannelState", "4"),
            ("Context", "from-trunk"),
            ("Exten", "74951110001"),
            ("CallerIDNum", "89161234567"),
        ],
    );
    t.handle(&newchan, at(0), &mut out);
    let queue = ev(
        "Newexten",
        TRUNK,
        "L1",
        &[
            ("Context", "queue-in"),
            ("Application", "Queue"),
            ("AppData", "sales"),
        ],
    );
    t.handle(&queue, at(0), &mut out);
    t.handle(
        &ev("HangupRequest", TRUNK, "L1", &[("Cause", "16")]),
        at(hangup_after),
        &mut out,
    );
    assert!(out.is_empty());
    t.handle(
        &ev("Hangup", TRUNK, "L1", &[("Cause", "16")]),
        at(hangup_after),
        &mut out,
    );
    out
}

#[test]
fn time_comes_from_the_argument_when_events_have_no_timestamp() {
    let cfg = lab();
    let mut t = Tracker::new("lab", &cfg);
    let out = queue_call(&mut t, 10);
    assert_eq!(out.len(), 1);
    let r = &out[0];
    assert_eq!(r.direction, Direction::Inbound);
    assert_eq!(r.status, Status::Missed);
    assert_eq!(r.lost_at, Some(LostAt::Queue));
    assert_eq!(r.wait_secs, 10.0);
    assert_eq!(r.caller_normalized.as_deref(), Some("79161234567"));
    assert_eq!(r.hangup_by.as_deref(), Some("caller"));
    assert_eq!(t.live_calls(), 0);

    // The same call, the caller gone after 2 s: an accidental call (min_wait 3 s).
    let mut t = Tracker::new("lab", &cfg);
    let out = queue_call(&mut t, 2);
    assert_eq!(out[0].status, Status::Ignored);
    assert!(out[0].missed && out[0].ignored);
}

#[test]
fn silent_calls_expire_as_unknown() {
    let cfg = lab();
    let mut t = Tracker::new("lab", &cfg);
    let mut out = Vec::new();
    let newchan = ev("Newchannel", TRUNK, "L1", &[("Context", "from-trunk")]);
    t.handle(&newchan, at(0), &mut out);
    t.tick(at(3600), &mut out);
    assert!(out.is_empty(), "an hour is within max_call_duration (4 h)");
    t.tick(at(4 * 3600 + 1), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].status, Status::Unknown);
    assert_eq!(out[0].unknown_reason, Some(UnknownReason::Silent));
    assert!(!out[0].missed);
    assert_eq!(t.live_calls(), 0);
}

/// Splits a capture at the first event at or after `secs` into the call.
fn split(msgs: &[Message], secs: f64) -> (Vec<Message>, Vec<Message>) {
    let t0 = msgs.iter().find_map(ts_of).unwrap();
    let cut = msgs
        .iter()
        .position(|m| {
            ts_of(m)
                .is_some_and(|t| (t.as_microsecond() - t0.as_microsecond()) as f64 / 1e6 >= secs)
        })
        .unwrap();
    (msgs[..cut].to_vec(), msgs[cut..].to_vec())
}

#[test]
fn link_loss_judges_nothing_and_the_snapshot_decides() {
    for (lab, name, secs) in [LOCAL, PJSIP].into_iter().flat_map(|l| {
        [
            (l, "queue_abandon", 5.0),
            (l, "answered_by_agent", 8.0),
            (l, "ringgroup_no_answer", 3.0),
        ]
    }) {
        let cfg = lab.config();
        let name = format!("{}/{name}", lab.dir);
        let msgs = lab.capture(name.rsplit('/').next().unwrap());
        let (before, after) = split(&msgs, secs);
        let mut t = Tracker::new("lab", &cfg);
        let mut now = Timestamp::UNIX_EPOCH;
        assert!(feed(&mut t, &before, &mut now).is_empty(), "{name}");
        let live = t.live_customers().count();
        // The cut itself ends nothing: the call may well still be up on Asterisk, and its
        // customer stays "on a call" for the dialer.
        t.link_down(now);
        assert_eq!(t.live_calls(), 1, "{name}");
        assert_eq!(t.live_customers().count(), live, "{name}");
        // Back, and the call is gone from the live channels: it ended unseen, `unknown`.
        t.link_up(now);
        let mut out = Vec::new();
        t.resync(&[], now, &mut out);
        assert_eq!(out.len(), 1, "{name}");
        assert_eq!(out[0].status, Status::Unknown, "{name}");
        assert_eq!(out[0].unknown_reason, Some(UnknownReason::LinkDown));
        assert!(!out[0].missed && out[0].lost_at.is_none(), "{name}");
        assert_eq!(t.live_calls(), 0);
        // Whatever arrives for those channels later is not a new call.
        assert!(feed(&mut t, &after, &mut now).is_empty(), "{name}");
        assert_eq!(t.live_calls(), 0);
    }
}

#[test]
fn a_call_across_a_link_cut_can_prove_an_answer_never_a_miss() {
    for (lab, name, secs, answered) in [LOCAL, PJSIP].into_iter().flat_map(|l| {
        [
            (l, "queue_abandon", 5.0, false),
            (l, "answered_by_agent", 3.0, true),
        ]
    }) {
        let cfg = lab.config();
        let msgs = lab.capture(name);
        let (before, after) = split(&msgs, secs);
        let mut t = Tracker::new("lab", &cfg);
        let mut now = Timestamp::UNIX_EPOCH;
        assert!(feed(&mut t, &before, &mut now).is_empty(), "{name}");
        t.link_down(now);
        // No snapshot could be read after the reconnect: the events that follow are complete
        // only for new calls, so this one may prove an answer but never a miss.
        t.link_up(now);
        let out = feed(&mut t, &after, &mut now);
        assert_eq!(out.len(), 1, "{name}");
        if answered {
            assert_eq!(out[0].status, Status::Answered, "{name}");
        } else {
            assert_eq!(out[0].status, Status::Unknown, "{name}");
            assert!(!out[0].missed, "{name}");
        }
    }
}

#[test]
fn without_a_snapshot_calls_of_earlier_sessions_end_unknown() {
    let cfg = lab();
    let msgs = capture("queue_abandon");
    let (before, _) = split(&msgs, 5.0);
    let mut t = Tracker::new("lab", &cfg);
    let mut now = Timestamp::UNIX_EPOCH;
    assert!(feed(&mut t, &before, &mut now).is_empty());
    t.link_down(now);
    t.link_up(now);
    let mut out = Vec::new();
    t.give_up_previous_sessions(now, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].status, Status::Unknown);
    assert_eq!(t.live_calls(), 0);
}

fn fully_booted(uptime: &str) -> Message {
    Message::from_pairs(&[
        ("Event", "FullyBooted"),
        ("Privilege", "system,all"),
        ("Uptime", uptime),
        ("Status", "Fully Booted"),
    ])
}

#[test]
fn a_reconnect_that_finds_asterisk_restarted_ends_earlier_calls_as_unknown() {
    let cfg = lab();
    let msgs = capture("queue_abandon");
    let (before, _) = split(&msgs, 5.0);
    let mut t = Tracker::new("lab", &cfg);
    let mut now = Timestamp::UNIX_EPOCH;
    feed(&mut t, &before, &mut now);
    let mut out = Vec::new();
    // A new session 60 s later whose Asterisk has been up for 20 s: it restarted meanwhile.
    let later = now + jiff::SignedDuration::from_secs(60);
    t.handle(&fully_booted("20"), later, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].status, Status::Unknown);
    assert_eq!(
        out[0].unknown_reason,
        Some(UnknownReason::AsteriskRestarted)
    );
    assert!(!out[0].missed);
}

#[test]
fn a_reconnect_to_the_same_asterisk_keeps_tracking() {
    let cfg = lab();
    let msgs = capture("queue_abandon");
    let (before, after) = split(&msgs, 5.0);
    let mut t = Tracker::new("lab", &cfg);
    let mut now = Timestamp::UNIX_EPOCH;
    feed(&mut t, &before, &mut now);
    let mut out = Vec::new();
    // Uptime longer than the gap: the same Asterisk, our calls are still its calls.
    t.handle(
        &fully_booted("3600"),
        now + jiff::SignedDuration::from_secs(1),
        &mut out,
    );
    assert!(out.is_empty());
    let out = feed(&mut t, &after, &mut now);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].status, Status::Missed);
    assert_eq!(out[0].lost_at, Some(LostAt::Queue));
}

/// A live channel's snapshot fields, its bridge, its creation time.
type Live = (Vec<(String, String)>, Option<String>, Timestamp);

/// CoreShowChannel items describing the live channels of a capture at a moment.
fn core_show_channels(before: &[Message], now: Timestamp) -> Vec<Message> {
    use std::collections::BTreeMap;
    // uniqueid -> (fields, bridge)
    let mut live: BTreeMap<String, Live> = BTreeMap::new();
    for m in before {
        let ev = m.get_str("Event").unwrap_or_default().to_string();
        let Some(uid) = m.get_str("Uniqueid").map(|u| u.to_string()) else {
            continue;
        };
        match ev.as_str() {
            "Newchannel" => {
                let f = [
                    "Channel",
                    "ChannelState",
                    "CallerIDNum",
                    "Context",
                    "Exten",
                    "Uniqueid",
                    "Linkedid",
                ]
                .iter()
                .map(|k| (k.to_string(), m.get_str(k).unwrap_or_default().to_string()))
                .collect();
                live.insert(uid, (f, None, ts_of(m).unwrap()));
            }
            "Hangup" => {
                live.remove(&uid);
            }
            "BridgeEnter" => {
                if let Some(e) = live.get_mut(&uid) {
                    e.1 = m.get_str("BridgeUniqueid").map(|b| b.to_string());
                }
            }
            "BridgeLeave" => {
                if let Some(e) = live.get_mut(&uid) {
                    e.1 = None;
                }
            }
            _ => {}
        }
    }
    live.into_values()
        .map(|(f, bridge, born)| {
            let mut pairs = vec![("Event".to_string(), "CoreShowChannel".to_string())];
            pairs.push(("ActionID".into(), "resync-1".into()));
            pairs.extend(f);
            pairs.push(("BridgeId".into(), bridge.unwrap_or_default()));
            let d = now.as_second() - born.as_second();
            pairs.push((
                "Duration".into(),
                format!("{:02}:{:02}:{:02}", d / 3600, d / 60 % 60, d % 60),
            ));
            Message::from_pairs(&pairs)
        })
        .collect()
}

#[test]
fn resync_after_a_reconnect_keeps_tracking_live_calls() {
    // The Local lab has T1, T2, A201, A201b live; real SIP one trunk and one phone channel.
    for (lab, live) in [(LOCAL, 4), (PJSIP, 2)] {
        resync_keeps_tracking(lab, live);
    }
}

fn resync_keeps_tracking(lab: Lab, live: usize) {
    let cfg = lab.config();
    let capture = |name| lab.capture(name);
    // The tracker starts mid-call (fresh process or after a link loss): only what
    // CoreShowChannels says. The call was in conversation for 2 s already.
    let msgs = capture("answered_by_agent");
    let (before, after) = split(&msgs, 5.0);
    let now = ts_of(before.last().unwrap()).unwrap();
    let items = core_show_channels(&before, now);
    assert_eq!(items.len(), live, "{}", lab.dir);
    let mut t = Tracker::new("lab", &cfg);
    let mut out = Vec::new();
    t.resync(&items, now, &mut out);
    assert!(out.is_empty());
    assert_eq!(t.live_calls(), 1);
    let mut now2 = now;
    let out = feed(&mut t, &after, &mut now2);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].status, Status::Answered, "{:?}", out[0]);
    assert!(out[0].talk_secs > 6.0);

    // A queued caller seen only from the resync and then hanging up: its beginning is unknown,
    // so no miss is invented.
    let msgs = capture("queue_abandon");
    let (before, after) = split(&msgs, 5.0);
    let now = ts_of(before.last().unwrap()).unwrap();
    let items = core_show_channels(&before, now);
    let mut t = Tracker::new("lab", &cfg);
    let mut out = Vec::new();
    t.resync(&items, now, &mut out);
    let mut now2 = now;
    let out = feed(&mut t, &after, &mut now2);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].status, Status::Unknown);
    assert!(!out[0].missed);
}

#[test]
fn a_resync_list_older_than_new_calls_does_not_end_them() {
    // The daemon reads CoreShowChannels while the stream flows: a call that started after the
    // list was taken is tracked from its Newchannel and must survive the (older) list.
    let cfg = lab();
    let msgs = capture("queue_abandon");
    let (before, after) = split(&msgs, 5.0);
    let mut t = Tracker::new("lab", &cfg);
    let mut now = Timestamp::UNIX_EPOCH;
    t.link_up(now);
    feed(&mut t, &before, &mut now);
    let mut out = Vec::new();
    t.resync(&[], now, &mut out);
    assert!(out.is_empty());
    let out = feed(&mut t, &after, &mut now);
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].status,
        Status::Missed,
        "a complete call keeps its verdict"
    );
}

#[test]
fn resync_ends_calls_asterisk_no_longer_has() {
    let cfg = lab();
    let msgs = capture("queue_abandon");
    let (before, _) = split(&msgs, 5.0);
    let mut t = Tracker::new("lab", &cfg);
    let mut now = Timestamp::UNIX_EPOCH;
    feed(&mut t, &before, &mut now);
    let mut out = Vec::new();
    // No link_down was seen (a silent TCP death): the new session's list lacks the call.
    t.link_up(now);
    t.resync(&[], now, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].status, Status::Unknown);
    assert_eq!(t.live_calls(), 0);
}

fn key(r: &CallRecord) -> String {
    format!(
        "{} {:?} {:?} {:?} {} {} {:?} {:?} {:?} {:?} {:?}",
        r.linkedid,
        r.unknown_reason,
        r.direction,
        r.status,
        r.wait_secs,
        r.talk_secs,
        r.lost_at,
        r.agent,
        r.hangup_by,
        r.callback_outcome,
        r.caller
    )
}

#[test]
fn the_same_calls_interleaved_differently_give_the_same_verdicts() {
    interleaved(
        LOCAL,
        &[
            "queue_abandon",
            "answered_by_agent",
            "blind_transfer_answered",
            "attended_transfer_answered",
            "callback_originate_busy",
            "callback_originate_success",
            "voicemail",
        ],
    );
    interleaved(
        PJSIP,
        &[
            "queue_abandon",
            "answered_by_agent",
            "agent_busy",
            "queue_ringall_one_answers",
            "callback_originate_busy",
            "callback_originate_success",
            "voicemail",
        ],
    );
}

fn interleaved(lab: Lab, names: &[&str]) {
    let cfg = lab.config();
    let streams: Vec<Vec<Message>> = names.iter().map(|n| lab.capture(n)).collect();
    let mut want: Vec<String> = Vec::new();
    for s in &streams {
        let mut t = Tracker::new("lab", &cfg);
        let mut now = Timestamp::UNIX_EPOCH;
        want.extend(feed(&mut t, s, &mut now).iter().map(key));
    }
    want.sort();
    assert_eq!(want.len(), 9);
    for seed in 0..20u64 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut pos = vec![0usize; streams.len()];
        let mut merged = Vec::new();
        loop {
            let open: Vec<usize> = (0..streams.len())
                .filter(|&i| pos[i] < streams[i].len())
                .collect();
            if open.is_empty() {
                break;
            }
            let i = open[rng.usize(..open.len())];
            // Take a random run from that stream, keeping its own order.
            let n = rng.usize(1..=8).min(streams[i].len() - pos[i]);
            merged.extend_from_slice(&streams[i][pos[i]..pos[i] + n]);
            pos[i] += n;
        }
        let mut t = Tracker::new("lab", &cfg);
        let mut now = Timestamp::UNIX_EPOCH;
        let mut got: Vec<String> = feed(&mut t, &merged, &mut now).iter().map(key).collect();
        got.sort();
        assert_eq!(got, want, "seed {seed}");
        assert_eq!(t.live_calls(), 0);
    }
}

#[test]
fn garbage_never_panics_and_is_not_a_call() {
    let cfg = lab();
    let mut t = Tracker::new("lab", &cfg);
    let mut out = Vec::new();
    let msgs = [
        Message::from_pairs(&[("Event", "Hangup"), ("Uniqueid", "nope")]),
        Message::from_pairs(&[("Event", "Newchannel")]),
        Message::from_pairs(&[
            ("Event", "BridgeEnter"),
            ("Uniqueid", ""),
            ("BridgeUniqueid", "b"),
        ]),
        Message::from_pairs(&[
            ("Event", "LocalBridge"),
            ("LocalOneUniqueid", "x"),
            ("LocalTwoUniqueid", "x"),
        ]),
        Message::from_pairs(&[
            ("Event", "OriginateResponse"),
            ("Response", "Failure"),
            ("Reason", "99999999999"),
        ]),
        Message::from_pairs(&[("Event", "FullyBooted"), ("Uptime", "-5")]),
        Message::from_pairs(&[
            ("Event", "Newchannel"),
            ("Timestamp", "garbage"),
            ("Uniqueid", "\u{fffd}"),
        ]),
        Message::from_pairs(&[("Response", "Success")]),
    ];
    for m in &msgs {
        t.handle(m, at(0), &mut out);
    }
    t.tick(at(10 * 3600), &mut out);
    t.end_of_input(at(10 * 3600), &mut out);
    assert!(out.iter().all(|r| r.status == Status::Unknown));
    assert_eq!(t.live_calls(), 0);
}

/// A PJSIP PBX: agents `PJSIP/2xx`, the provider trunk for outside legs.
fn pjsip() -> Config {
    Config::from_toml(
        r#"
[pbx]
inbound_contexts = ["from-trunk"]
trunk_channels = ["PJSIP/provider-*"]
agent_channels = ["PJSIP/2*"]
external_channels = ["PJSIP/provider-*"]
"#,
    )
    .unwrap()
}

fn cev(event: &str, chan: &str, uid: &str, linked: &str, extra: &[(&str, &str)]) -> Message {
    let mut pairs: Vec<(&str, &str)> = vec![
        ("Event", event),
        ("Channel", chan),
        ("Uniqueid", uid),
        ("Linkedid", linked),
    ];
    pairs.extend_from_slice(extra);
    Message::from_pairs(&pairs)
}

fn or(response: &str, reason: &str, uid: &str, channel: &str, action: &str) -> Message {
    Message::from_pairs(&[
        ("Event", "OriginateResponse"),
        ("ActionID", action),
        ("Response", response),
        ("Channel", channel),
        ("Reason", reason),
        ("Uniqueid", uid),
    ])
}

/// Agent-first callback: the agent's phone rings first, then the customer is dialled.
fn agent_first(customer: &str) -> Vec<CallRecord> {
    let cfg = pjsip();
    let mut t = Tracker::new("pbx", &cfg);
    let mut out = Vec::new();
    let (a, b, l) = ("PJSIP/201-00000001", "PJSIP/provider-00000002", "cb-c");
    let marker = [("Variable", "PEREZVON_CALLBACK_ID"), ("Value", "pzv-1-1-0")];
    t.handle(
        &cev("Newchannel", a, "cb-c", l, &[("Context", "from-internal")]),
        at(0),
        &mut out,
    );
    t.handle(&cev("VarSet", a, "cb-c", l, &marker), at(0), &mut out);
    t.handle(
        &cev("Newstate", a, "cb-c", l, &[("ChannelState", "6")]),
        at(3),
        &mut out,
    );
    t.handle(&or("Success", "4", "cb-c", a, "pzv-1-1-0"), at(3), &mut out);
    t.handle(
        &cev("Newchannel", b, "cb-d", l, &[("Context", "from-internal")]),
        at(3),
        &mut out,
    );
    let dial = [
        ("DestUniqueid", "cb-d"),
        ("DialString", "89161234567@provider"),
    ];
    t.handle(&cev("DialBegin", a, "cb-c", l, &dial), at(3), &mut out);
    match customer {
        "answers" => {
            let end = [("DestUniqueid", "cb-d"), ("DialStatus", "ANSWER")];
            t.handle(&cev("DialEnd", a, "cb-c", l, &end), at(8), &mut out);
            let br = [("BridgeUniqueid", "x")];
            t.handle(&cev("BridgeEnter", b, "cb-d", l, &br), at(8), &mut out);
            t.handle(&cev("BridgeEnter", a, "cb-c", l, &br), at(8), &mut out);
            t.handle(&cev("HangupRequest", b, "cb-d", l, &[]), at(38), &mut out);
            t.handle(&cev("BridgeLeave", b, "cb-d", l, &br), at(38), &mut out);
            t.handle(
                &cev("Hangup", b, "cb-d", l, &[("Cause", "16")]),
                at(38),
                &mut out,
            );
            t.handle(&cev("BridgeLeave", a, "cb-c", l, &br), at(38), &mut out);
        }
        _ => {
            let end = [("DestUniqueid", "cb-d"), ("DialStatus", "BUSY")];
            t.handle(&cev("DialEnd", a, "cb-c", l, &end), at(4), &mut out);
            t.handle(
                &cev("Hangup", b, "cb-d", l, &[("Cause", "17")]),
                at(4),
                &mut out,
            );
        }
    }
    t.handle(
        &cev("Hangup", a, "cb-c", l, &[("Cause", "16")]),
        at(40),
        &mut out,
    );
    out
}

#[test]
fn agent_first_callbacks_are_judged_from_the_customer_leg() {
    let r = agent_first("answers");
    assert_eq!(r.len(), 1);
    let r = &r[0];
    assert_eq!(r.direction, Direction::Callback);
    assert_eq!(r.callback_id.as_deref(), Some("pzv-1-1-0"));
    assert_eq!(r.callee_normalized.as_deref(), Some("79161234567"), "{r:?}");
    assert_eq!(r.talk_secs, 30.0);
    assert_eq!(r.callback_outcome.map(|o| o.as_str()), Some("connected"));
    assert_eq!(r.agent.as_deref(), Some("201"));
    let r = agent_first("busy");
    assert_eq!(r[0].callback_outcome.map(|o| o.as_str()), Some("busy"));
}

#[test]
fn a_failed_originate_is_matched_by_its_action_id() {
    // Two callbacks ringing on the provider trunk; the second fails (no answer). Its
    // OriginateResponse names only the requested channel and has no Uniqueid.
    let cfg = pjsip();
    let mut t = Tracker::new("pbx", &cfg);
    let mut out = Vec::new();
    for (n, uid) in [("1", "u1"), ("2", "u2")] {
        let chan = format!("PJSIP/provider-0000000{n}");
        let id = format!("pzv-{n}-1-0");
        let marker = [("Variable", "PEREZVON_CALLBACK_ID"), ("Value", id.as_str())];
        t.handle(
            &cev("Newchannel", &chan, uid, uid, &[("Context", "from-trunk")]),
            at(0),
            &mut out,
        );
        t.handle(&cev("VarSet", &chan, uid, uid, &marker), at(0), &mut out);
    }
    t.handle(
        &or(
            "Failure",
            "3",
            "<unknown>",
            "PJSIP/89161234567@provider",
            "pzv-2-1-0",
        ),
        at(20),
        &mut out,
    );
    t.handle(
        &cev(
            "Hangup",
            "PJSIP/provider-00000002",
            "u2",
            "u2",
            &[("Cause", "19")],
        ),
        at(20),
        &mut out,
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].linkedid, "u2");
    assert_eq!(
        out[0].callback_outcome.map(|o| o.as_str()),
        Some("no_answer")
    );
    // The first one is still waiting for its own response.
    t.handle(
        &or(
            "Failure",
            "5",
            "<unknown>",
            "PJSIP/89161234568@provider",
            "pzv-1-1-0",
        ),
        at(21),
        &mut out,
    );
    t.handle(
        &cev(
            "Hangup",
            "PJSIP/provider-00000001",
            "u1",
            "u1",
            &[("Cause", "17")],
        ),
        at(21),
        &mut out,
    );
    assert_eq!(out[1].callback_outcome.map(|o| o.as_str()), Some("busy"));
}

#[test]
fn lost_at_contexts_override_what_the_dialplan_steps_say() {
    // ivr_abandon: the caller hangs up in the menu of context `ivr-main`.
    let mut cfg = lab();
    cfg.pbx
        .lost_at_contexts
        .insert("ivr-main".into(), "voicemail".into());
    let mut t = Tracker::new("lab", &cfg);
    let mut now = Timestamp::UNIX_EPOCH;
    let out = feed(&mut t, &capture("ivr_abandon"), &mut now);
    assert_eq!(out[0].lost_at, Some(LostAt::Voicemail));
    let mut t = Tracker::new("lab", &lab());
    let out = feed(&mut t, &capture("ivr_abandon"), &mut now);
    assert_eq!(out[0].lost_at, Some(LostAt::Ivr));
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    const EVENTS: [&str; 14] = [
        "Newchannel",
        "Newchannel",
        "Newstate",
        "NewCallerid",
        "Newexten",
        "VarSet",
        "DialBegin",
        "DialEnd",
        "BridgeEnter",
        "BridgeLeave",
        "LocalBridge",
        "SoftHangupRequest",
        "Hangup",
        "OriginateResponse",
    ];
    const CHANS: [&str; 6] = [
        "Local/74951110001@from-trunk-00000001;2",
        "Local/74951110001@from-trunk-00000001;1",
        "Local/201@agent-sim-00000002;1",
        "Local/201@agent-sim-00000002;2",
        "Local/89031234567@external-sim-00000003;1",
        "PJSIP/x-00000004",
    ];
    const APPS: [&str; 6] = [
        "Queue",
        "Dial",
        "VoiceMail",
        "BackGround",
        "Busy",
        "Playback",
    ];

    fn msg(e: usize, a: usize, b: usize, x: usize) -> Message {
        let uid = format!("u{a}");
        let other = format!("u{b}");
        let link = format!("u{}", a % 3);
        let bridge = format!("b{}", x % 3);
        let ev = EVENTS[e % EVENTS.len()];
        let chan = CHANS[a % CHANS.len()];
        let mut p: Vec<(&str, String)> = vec![
            ("Event", ev.into()),
            ("Channel", chan.into()),
            ("Uniqueid", uid.clone()),
            ("Linkedid", link),
            (
                "Context",
                if x.is_multiple_of(2) {
                    "from-trunk".into()
                } else {
                    "queue-in".into()
                },
            ),
            ("ChannelState", (x % 8).to_string()),
            ("CallerIDNum", format!("8916000000{x}")),
        ];
        match ev {
            "Newexten" => {
                p.push(("Application", APPS[x % APPS.len()].into()));
                p.push(("AppData", "201&202,20".into()));
            }
            "VarSet" => {
                p.push(("Variable", "CALLBACK_ID".into()));
                p.push(("Value", format!("cb-{x}")));
            }
            "DialBegin" | "DialEnd" => {
                if x.is_multiple_of(4) {
                    p.retain(|(k, _)| !matches!(*k, "Channel" | "Uniqueid"));
                }
                p.push(("DestUniqueid", other.clone()));
                p.push(("DialStatus", ["ANSWER", "BUSY", "NOANSWER"][x % 3].into()));
                p.push(("DialString", "89161234567@provider".into()));
            }
            "BridgeEnter" | "BridgeLeave" => p.push(("BridgeUniqueid", bridge)),
            "LocalBridge" => {
                p.push(("LocalOneUniqueid", uid));
                p.push(("LocalTwoUniqueid", other));
            }
            "OriginateResponse" => {
                p.push((
                    "Response",
                    if x.is_multiple_of(2) {
                        "Success"
                    } else {
                        "Failure"
                    }
                    .into(),
                ));
                p.push(("Reason", (x % 9).to_string()));
                p.push(("ActionID", format!("cb-{x}")));
            }
            _ => p.push(("Cause", (x % 20).to_string())),
        }
        Message::from_pairs(&p)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn any_event_sequence_is_handled_and_memory_returns_to_zero(
            seq in proptest::collection::vec((0usize..14, 0usize..8, 0usize..8, 0usize..12, 0i64..5), 0..120)
        ) {
            let cfg = lab();
            let mut t = Tracker::new("lab", &cfg);
            let mut out = Vec::new();
            let mut secs = 0;
            for (e, a, b, x, dt) in seq {
                secs += dt;
                t.handle(&msg(e, a, b, x), at(secs), &mut out);
                if x == 11 {
                    t.tick(at(secs), &mut out);
                }
            }
            for r in &out {
                prop_assert!(r.wait_secs >= 0.0 && r.talk_secs >= 0.0);
                prop_assert!(r.talk_secs <= (r.ended_at.as_second() - r.started_at.as_second()) as f64 + 1.0);
                prop_assert!(!(r.missed && r.direction != Direction::Inbound));
            }
            t.link_down(at(secs + 1));
            t.end_of_input(at(secs + 1), &mut out);
            prop_assert_eq!(t.live_calls(), 0);
            prop_assert_eq!(t.live_channels(), 0);
        }
    }
}

/// A FreePBX-shaped PBX: PJSIP trunk, queue members as `Local/<ext>@from-queue/n`, phones PJSIP.
fn freepbx() -> Config {
    Config::from_toml(
        r#"
[pbx]
inbound_contexts = ["from-pstn"]
trunk_channels = ["PJSIP/provider-*"]
agent_channels = ["PJSIP/2*", "Local/*@from-queue*"]
external_channels = []
"#,
    )
    .unwrap()
}

#[test]
fn freepbx_queue_with_local_members_and_local_optimization() {
    let cfg = freepbx();
    let mut t = Tracker::new("pbx", &cfg);
    let mut out = Vec::new();
    let l = "T";
    let trunk = "PJSIP/provider-00000001";
    let (m1, m2, phone) = (
        "Local/201@from-queue-00000002;1",
        "Local/201@from-queue-00000002;2",
        "PJSIP/201-00000003",
    );
    let mut h = |m: Message, s: i64| t.handle(&m, at(s), &mut out);
    h(
        cev(
            "Newchannel",
            trunk,
            "T",
            l,
            &[
                ("Context", "from-pstn"),
                ("Exten", "74951110001"),
                ("CallerIDNum", "+79161234567"),
            ],
        ),
        0,
    );
    h(
        cev(
            "Newexten",
            trunk,
            "T",
            l,
            &[
                ("Context", "ext-queues"),
                ("Application", "Queue"),
                ("AppData", "400"),
            ],
        ),
        1,
    );
    h(
        cev("Newchannel", m1, "M1", l, &[("Context", "from-queue")]),
        1,
    );
    h(
        cev("Newchannel", m2, "M2", l, &[("Context", "from-queue")]),
        1,
    );
    h(
        Message::from_pairs(&[
            ("Event", "LocalBridge"),
            ("LocalOneUniqueid", "M1"),
            ("LocalTwoUniqueid", "M2"),
        ]),
        1,
    );
    h(
        cev("DialBegin", trunk, "T", l, &[("DestUniqueid", "M1")]),
        1,
    );
    h(
        cev("Newchannel", phone, "P", l, &[("Context", "from-internal")]),
        1,
    );
    h(cev("DialBegin", m2, "M2", l, &[("DestUniqueid", "P")]), 1);
    // The phone answers at 5 s: M2 + phone in B2, then trunk + M1 in B1.
    for (c, u, b) in [
        (phone, "P", "B2"),
        (m2, "M2", "B2"),
        (m1, "M1", "B1"),
        (trunk, "T", "B1"),
    ] {
        h(cev("BridgeEnter", c, u, l, &[("BridgeUniqueid", b)]), 5);
    }
    // Local channel optimisation at 6 s: the phone moves into B1, the Local pair leaves and dies.
    h(
        cev("BridgeLeave", phone, "P", l, &[("BridgeUniqueid", "B2")]),
        6,
    );
    h(
        cev("BridgeEnter", phone, "P", l, &[("BridgeUniqueid", "B1")]),
        6,
    );
    h(
        cev("BridgeLeave", m1, "M1", l, &[("BridgeUniqueid", "B1")]),
        6,
    );
    h(
        cev("BridgeLeave", m2, "M2", l, &[("BridgeUniqueid", "B2")]),
        6,
    );
    h(cev("Hangup", m1, "M1", l, &[("Cause", "16")]), 6);
    h(cev("Hangup", m2, "M2", l, &[("Cause", "16")]), 6);
    // The customer hangs up at 65 s.
    h(cev("HangupRequest", trunk, "T", l, &[("Cause", "16")]), 65);
    h(
        cev("BridgeLeave", trunk, "T", l, &[("BridgeUniqueid", "B1")]),
        65,
    );
    h(cev("Hangup", trunk, "T", l, &[("Cause", "16")]), 65);
    h(
        cev("BridgeLeave", phone, "P", l, &[("BridgeUniqueid", "B1")]),
        65,
    );
    h(cev("Hangup", phone, "P", l, &[("Cause", "16")]), 65);
    assert_eq!(out.len(), 1);
    let r = &out[0];
    assert_eq!(r.direction, Direction::Inbound);
    assert_eq!(r.status, Status::Answered);
    assert_eq!(r.wait_secs, 5.0);
    assert_eq!(r.talk_secs, 60.0, "no gap across the optimisation");
    assert_eq!(r.agent.as_deref(), Some("201"));
    assert_eq!(r.hangup_by.as_deref(), Some("caller"));
    assert_eq!(r.callee.as_deref(), Some("74951110001"));
    assert_eq!(t.live_channels(), 0);
}

/// Replays a capture event by event, collecting every number `live_customers` reported while
/// the call was up; returns them with the records.
fn live_during(name: &str) -> (std::collections::BTreeSet<String>, Vec<CallRecord>) {
    let mut t = Tracker::new("lab", &lab());
    let mut now = at(0);
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for m in capture(name) {
        if let Some(x) = ts_of(&m) {
            now = x;
        }
        t.handle(&m, now, &mut out);
        seen.extend(t.live_customers());
    }
    t.end_of_input(now, &mut out);
    assert_eq!(
        t.live_customers().count(),
        0,
        "{name}: nothing live at the end"
    );
    (seen, out)
}

#[test]
fn live_customers_name_the_customer_while_the_call_is_up() {
    // Inbound: the caller.
    let (seen, out) = live_during("answered_by_agent");
    let rec = out
        .iter()
        .find(|r| r.direction == Direction::Inbound)
        .expect("an inbound record");
    let caller = rec.caller_normalized.clone().expect("caller number");
    assert!(seen.contains(&caller), "{seen:?} lacks {caller}");
    // Outbound placed by an agent: the dialled customer, never the agent's extension.
    let (seen, out) = live_during("resolved_by_agent_outbound");
    for r in out.iter().filter(|r| r.direction == Direction::Outbound) {
        let callee = r.callee_normalized.clone().expect("callee number");
        assert!(seen.contains(&callee), "{seen:?} lacks {callee}");
    }
    assert!(
        out.iter().any(|r| r.direction == Direction::Outbound),
        "the capture has an outbound call"
    );
    for n in &seen {
        assert!(n.len() > 6, "{n}: an extension is not a customer");
    }
    // Withheld callers give no number.
    let (seen, _) = live_during("anonymous_caller");
    assert!(seen.is_empty(), "{seen:?}");
}

/// CoreShowChannels as Asterisk gives it: each channel where it is *now* (the context of its
/// latest dialplan step), not where it started.
fn core_show_channels_now(before: &[Message], now: Timestamp) -> Vec<Message> {
    // (uniqueid, header) -> its latest value.
    let mut now_of: std::collections::HashMap<(String, &str), String> = Default::default();
    for m in before {
        let Some(u) = m.get_str("Uniqueid").map(|u| u.to_string()) else {
            continue;
        };
        let fields: &[&str] = match m.get_str("Event").as_deref() {
            Some("Newexten") => &["Context"],
            Some("NewCallerid") => &["CallerIDNum"],
            Some("Newstate") => &["ChannelState"],
            _ => &[],
        };
        for f in fields {
            if let Some(v) = m.get_str(f) {
                now_of.insert((u.clone(), f), v.to_string());
            }
        }
    }
    core_show_channels(before, now)
        .into_iter()
        .map(|m| {
            let uid = m.get_str("Uniqueid").unwrap_or_default().to_string();
            let pairs: Vec<(String, String)> = m
                .headers()
                .map(|(k, v)| {
                    let k = String::from_utf8_lossy(k).to_string();
                    let v = match now_of.get(&(uid.clone(), k.as_str())) {
                        Some(c) => c.clone(),
                        None => String::from_utf8_lossy(v).to_string(),
                    };
                    (k, v)
                })
                .collect();
            Message::from_pairs(&pairs)
        })
        .collect()
}

/// Every header value equal to `from` becomes `to` (a capture's Linkedid as a perezvon
/// ChannelId).
fn rename(msgs: &[Message], from: &str, to: &str) -> Vec<Message> {
    msgs.iter()
        .map(|m| {
            let pairs: Vec<(Vec<u8>, Vec<u8>)> = m
                .headers()
                .map(|(k, v)| {
                    let v = if v == from.as_bytes() {
                        to.as_bytes().to_vec()
                    } else {
                        v.to_vec()
                    };
                    (k.to_vec(), v)
                })
                .collect();
            Message::from_pairs(&pairs)
        })
        .collect()
}

#[test]
fn a_restart_mid_conversation_adopts_an_inbound_call_as_inbound() {
    for lab in [LOCAL, PJSIP] {
        adopts_inbound(lab);
    }
}

fn adopts_inbound(lab: Lab) {
    // Channels listed where they are now (the agent's and the queue's contexts): the trunk
    // rule, not the current context, says the call came in.
    let cfg = lab.config();
    let msgs = lab.capture("answered_by_agent");
    let (before, after) = split(&msgs, 8.0);
    let now = ts_of(before.last().unwrap()).unwrap();
    let items = core_show_channels_now(&before, now);
    assert!(
        items
            .iter()
            .all(|m| m.get_str("Context").as_deref() != Some("from-trunk")),
        "the snapshot shows current contexts"
    );
    let mut t = Tracker::new("lab", &cfg);
    let mut out = Vec::new();
    t.link_up(now);
    t.resync(&items, now, &mut out);
    assert!(out.is_empty());
    assert_eq!(
        t.live_customers().collect::<Vec<_>>(),
        vec!["79161234567".to_string()],
        "the caller is on a call with us: no callback meanwhile"
    );
    let mut now2 = now;
    let out = feed(&mut t, &after, &mut now2);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].direction, Direction::Inbound, "{:?}", out[0]);
    assert_eq!(out[0].status, Status::Answered);
}

#[test]
fn a_callback_still_up_after_a_restart_is_recognised_by_its_channel_id() {
    // The capture's callback call and when its customer is talking to agent 201.
    for (lab, linkedid, secs) in [
        (LOCAL, "1795375278.98", 16.0),
        (PJSIP, "1795378435.22", 20.0),
    ] {
        callback_adopted(lab, linkedid, secs);
    }
}

fn callback_adopted(lab: Lab, linkedid: &str, secs: f64) {
    let cfg = lab.config();
    // The capture's callback call, as if perezvon had originated it with ChannelId.
    let msgs = rename(
        &lab.capture("callback_originate_success"),
        linkedid,
        "pzv-7-1-0000abcd-c",
    );
    let t0 = msgs.iter().find_map(ts_of).unwrap();
    let (before, after) = split(&msgs, secs);
    let now = ts_of(before.last().unwrap()).unwrap();
    assert!(now.as_second() - t0.as_second() >= secs as i64 - 1);
    let items = core_show_channels_now(&before, now);
    assert!(items
        .iter()
        .any(|m| m.get_str("Linkedid").as_deref() == Some("pzv-7-1-0000abcd-c")));
    let mut t = Tracker::new("lab", &cfg);
    let mut out = Vec::new();
    t.link_up(now);
    t.resync(&items, now, &mut out);
    assert!(out.is_empty());
    assert_eq!(
        t.live_callbacks().collect::<Vec<_>>(),
        vec!["pzv-7-1-0000abcd"]
    );
    if lab.dir == LOCAL.dir {
        // A Local customer channel is named after the number. A PJSIP one is named after the
        // trunk (`PJSIP/provider-out-…`), and nothing CoreShowChannels lists carries the
        // number: the dialer knows it from the attempt (one unfinished attempt per number).
        assert!(t.live_customers().any(|n| n == "79261112233"));
    }
    let mut now2 = now;
    let out = feed(&mut t, &after, &mut now2);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].direction, Direction::Callback, "{:?}", out[0]);
    assert_eq!(out[0].callback_id.as_deref(), Some("pzv-7-1-0000abcd"));
}
