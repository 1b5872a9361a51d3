//! AMI message -> the few fields the tracker reads, in one pass over the headers.
//!
//! Why one pass: an event carries 15-25 headers and the tracker needs up to a dozen of them;
//! looking each up with [`Message::get`] would scan the header list a dozen times. [`Ev::parse`]
//! walks it once and keeps borrowed slices, so parsing copies and allocates nothing.

use crate::ami::Message;

/// The events the tracker acts on. Everything else is `Other` and costs one lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kind {
    Newchannel,
    Newstate,
    NewCallerid,
    Newexten,
    VarSet,
    DialBegin,
    DialEnd,
    BridgeEnter,
    BridgeLeave,
    LocalBridge,
    HangupRequest,
    SoftHangupRequest,
    Hangup,
    QueueCallerJoin,
    /// `QueueCallerLeave` / `QueueCallerAbandon`: the caller was in a queue (also one it was
    /// moved into by an attended transfer, which shows no dialplan step).
    QueueCallerLeave,
    BlindTransfer,
    AttendedTransfer,
    /// A call picked up from another phone: `Channel` is the one who picked it up.
    Pickup,
    OriginateResponse,
    FullyBooted,
    CoreShowChannel,
    #[default]
    Other,
}

impl Kind {
    fn from_name(n: &[u8]) -> Kind {
        // Exact names: Asterisk never varies their case.
        match n {
            b"VarSet" => Kind::VarSet,
            b"Newexten" => Kind::Newexten,
            b"Newchannel" => Kind::Newchannel,
            b"Newstate" => Kind::Newstate,
            b"NewCallerid" => Kind::NewCallerid,
            b"DialBegin" => Kind::DialBegin,
            b"DialEnd" => Kind::DialEnd,
            b"BridgeEnter" => Kind::BridgeEnter,
            b"BridgeLeave" => Kind::BridgeLeave,
            b"LocalBridge" => Kind::LocalBridge,
            b"HangupRequest" => Kind::HangupRequest,
            b"SoftHangupRequest" => Kind::SoftHangupRequest,
            b"Hangup" => Kind::Hangup,
            b"QueueCallerJoin" => Kind::QueueCallerJoin,
            b"QueueCallerLeave" | b"QueueCallerAbandon" => Kind::QueueCallerLeave,
            b"BlindTransfer" => Kind::BlindTransfer,
            b"AttendedTransfer" => Kind::AttendedTransfer,
            b"Pickup" => Kind::Pickup,
            b"OriginateResponse" => Kind::OriginateResponse,
            b"FullyBooted" => Kind::FullyBooted,
            b"CoreShowChannel" => Kind::CoreShowChannel,
            _ => Kind::Other,
        }
    }
}

/// The fields of one event the tracker may read. Empty slice = header absent or empty.
/// `Ev::default()` is an `Other` event with every header absent.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ev<'a> {
    pub kind: Kind,
    /// `Timestamp` in microseconds since the epoch, when present and well-formed.
    pub ts: Option<i64>,
    pub channel: &'a [u8],
    pub uniqueid: &'a [u8],
    pub linkedid: &'a [u8],
    pub state: &'a [u8],
    pub caller_num: &'a [u8],
    pub context: &'a [u8],
    pub exten: &'a [u8],
    pub application: &'a [u8],
    pub app_data: &'a [u8],
    pub dest_channel: &'a [u8],
    pub dest_uniqueid: &'a [u8],
    pub dial_status: &'a [u8],
    pub dial_string: &'a [u8],
    /// DialEnd `Forward`: the callee forwarded the call (SIP 302) to this target.
    pub forward: &'a [u8],
    pub cause: &'a [u8],
    pub bridge: &'a [u8],
    pub variable: &'a [u8],
    pub value: &'a [u8],
    pub local_one: &'a [u8],
    pub local_two: &'a [u8],
    pub response: &'a [u8],
    pub reason: &'a [u8],
    pub uptime: &'a [u8],
    pub duration: &'a [u8],
    pub action_id: &'a [u8],
    /// BlindTransfer / AttendedTransfer: the party being transferred.
    pub transferee: &'a [u8],
    /// AttendedTransfer: `Bridge`, `App`, `Link`, `Threeway`, `Fail`; with `App`, `DestApp`.
    pub dest_type: &'a [u8],
    pub dest_app: &'a [u8],
    /// Transfers: `Success`, `Fail`, `Invalid`, `Not Permitted`.
    pub result: &'a [u8],
    /// `Queue` of the queue events: the queue's name.
    pub queue: &'a [u8],
}

impl<'a> Ev<'a> {
    /// Reads an event; `None` for anything that is not an event.
    pub fn parse(msg: &'a Message) -> Option<Ev<'a>> {
        let mut ev = Ev {
            kind: Kind::Other,
            ts: None,
            channel: b"",
            uniqueid: b"",
            linkedid: b"",
            state: b"",
            caller_num: b"",
            context: b"",
            exten: b"",
            application: b"",
            app_data: b"",
            dest_channel: b"",
            dest_uniqueid: b"",
            dial_status: b"",
            dial_string: b"",
            forward: b"",
            cause: b"",
            bridge: b"",
            variable: b"",
            value: b"",
            local_one: b"",
            local_two: b"",
            response: b"",
            reason: b"",
            uptime: b"",
            duration: b"",
            action_id: b"",
            transferee: b"",
            dest_type: b"",
            dest_app: b"",
            result: b"",
            queue: b"",
        };
        let mut is_event = false;
        for (name, value) in msg.headers() {
            // Dispatch on length first: most header names are rejected without a byte compare.
            let slot: &mut &'a [u8] = match name.len() {
                5 if eq(name, b"Exten") => &mut ev.exten,
                5 if eq(name, b"Event") => {
                    is_event = true;
                    ev.kind = Kind::from_name(value);
                    if ev.kind == Kind::Other {
                        // Only its time matters (it moves the tracker's clock).
                        ev.ts = msg.get(b"Timestamp").and_then(parse_ts);
                        return Some(ev);
                    }
                    continue;
                }
                5 if eq(name, b"Cause") => &mut ev.cause,
                5 if eq(name, b"Value") => &mut ev.value,
                5 if eq(name, b"Queue") => &mut ev.queue,
                6 if eq(name, b"Reason") => &mut ev.reason,
                6 if eq(name, b"Uptime") => &mut ev.uptime,
                6 if eq(name, b"Result") => &mut ev.result,
                7 if eq(name, b"Channel") => &mut ev.channel,
                7 if eq(name, b"Context") => &mut ev.context,
                7 if eq(name, b"AppData") => &mut ev.app_data,
                7 if eq(name, b"Forward") => &mut ev.forward,
                7 if eq(name, b"DestApp") => &mut ev.dest_app,
                8 if eq(name, b"Uniqueid") => &mut ev.uniqueid,
                8 if eq(name, b"Linkedid") => &mut ev.linkedid,
                8 if eq(name, b"Variable") => &mut ev.variable,
                8 if eq(name, b"Response") => &mut ev.response,
                8 if eq(name, b"Duration") => &mut ev.duration,
                8 if eq(name, b"ActionID") => &mut ev.action_id,
                8 if eq(name, b"DestType") => &mut ev.dest_type,
                // CoreShowChannel names the bridge `BridgeId`.
                8 if eq(name, b"BridgeId") => &mut ev.bridge,
                9 if eq(name, b"Timestamp") => {
                    ev.ts = parse_ts(value);
                    continue;
                }
                10 if eq(name, b"DialStatus") => &mut ev.dial_status,
                10 if eq(name, b"DialString") => &mut ev.dial_string,
                11 if eq(name, b"CallerIDNum") => &mut ev.caller_num,
                11 if eq(name, b"Application") => &mut ev.application,
                11 if eq(name, b"DestChannel") => &mut ev.dest_channel,
                12 if eq(name, b"ChannelState") => &mut ev.state,
                12 if eq(name, b"DestUniqueid") => &mut ev.dest_uniqueid,
                14 if eq(name, b"BridgeUniqueid") => &mut ev.bridge,
                15 if eq(name, b"ApplicationData") => &mut ev.app_data,
                16 if eq(name, b"LocalOneUniqueid") => &mut ev.local_one,
                16 if eq(name, b"LocalTwoUniqueid") => &mut ev.local_two,
                18 if eq(name, b"TransfereeUniqueid") => &mut ev.transferee,
                _ => continue,
            };
            // The first occurrence wins (AMI does not repeat these; a hostile stream might).
            if slot.is_empty() {
                *slot = value;
            }
        }
        is_event.then_some(ev)
    }
}

#[inline]
fn eq(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// `1795375019.530492` -> microseconds. Anything else (negative, garbage, absurdly large) -> None.
pub fn parse_ts(v: &[u8]) -> Option<i64> {
    let (int, frac) = match memchr::memchr(b'.', v) {
        Some(i) => (&v[..i], &v[i + 1..]),
        None => (v, &b""[..]),
    };
    if frac.len() > 9 {
        return None;
    }
    let secs = i64::try_from(decimal(int, 12)?).ok()?;
    let mut us: i64 = 0;
    for i in 0..6 {
        let d = match frac.get(i) {
            Some(c) if c.is_ascii_digit() => i64::from(c - b'0'),
            Some(_) => return None,
            None => 0,
        };
        us = us * 10 + d;
    }
    if frac[frac.len().min(6)..]
        .iter()
        .any(|c| !c.is_ascii_digit())
    {
        return None;
    }
    Some(secs * 1_000_000 + us)
}

/// Parses a small unsigned decimal (`Cause`, `Reason`, `Uptime`, `ChannelState`).
pub fn parse_u32(v: &[u8]) -> Option<u32> {
    u32::try_from(decimal(v, 9)?).ok()
}

/// `v` as an unsigned decimal of 1 to `max_digits` ASCII digits (at most 19: no overflow).
fn decimal(v: &[u8], max_digits: usize) -> Option<u64> {
    if v.is_empty() || v.len() > max_digits {
        return None;
    }
    v.iter().try_fold(0u64, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + u64::from(c - b'0'))
    })
}

/// A caller-ID value that carries no number (`<unknown>`, empty).
pub fn is_unknown(v: &[u8]) -> bool {
    v.is_empty() || v.eq_ignore_ascii_case(b"<unknown>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(parse_ts(b"1795375019.530492"), Some(1_795_375_019_530_492));
        assert_eq!(parse_ts(b"1795375019.5"), Some(1_795_375_019_500_000));
        assert_eq!(parse_ts(b"1795375019"), Some(1_795_375_019_000_000));
        assert_eq!(parse_ts(b"1795375019.1234567"), Some(1_795_375_019_123_456));
        for bad in [&b""[..], b"x", b"-1.0", b"1.x", b"99999999999999999", b".5"] {
            assert_eq!(parse_ts(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn small_decimals() {
        assert_eq!(parse_u32(b"0"), Some(0));
        assert_eq!(parse_u32(b"16"), Some(16));
        assert_eq!(parse_u32(b"999999999"), Some(999_999_999));
        for bad in [&b""[..], b"1000000000", b"4x", b"-1", b" 1"] {
            assert_eq!(parse_u32(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn one_pass_reads_the_fields() {
        let m = Message::from_pairs(&[
            ("Event", "DialBegin"),
            ("Timestamp", "1795375019.302000"),
            ("Channel", "Local/74951110201@from-trunk-00000000;2"),
            ("Uniqueid", "1795375019.1"),
            ("Linkedid", "1795375019.0"),
            ("DestChannel", "Local/201@agent-sim-00000001;1"),
            ("DestUniqueid", "1795375019.2"),
            ("DialString", "201@agent-sim/n"),
        ]);
        let e = Ev::parse(&m).unwrap();
        assert_eq!(e.kind, Kind::DialBegin);
        assert_eq!(e.ts, Some(1_795_375_019_302_000));
        assert_eq!(e.uniqueid, b"1795375019.1");
        assert_eq!(e.dest_uniqueid, b"1795375019.2");
        assert_eq!(e.dial_string, b"201@agent-sim/n");
        let r = Message::from_pairs(&[("Response", "Success")]);
        assert!(Ev::parse(&r).is_none());
        let o = Message::from_pairs(&[("Event", "DeviceStateChange"), ("Device", "x")]);
        assert_eq!(Ev::parse(&o).unwrap().kind, Kind::Other);
    }
}
