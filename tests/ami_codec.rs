//! The codec's edge cases as a table (each one also split at every byte and fed in every chunk
//! size), and decode -> encode -> decode as a property.

use bytes::BytesMut;
use perezvon::ami::{codec::decode_all, AmiCodec, DecodeStats, Kind, Message};
use proptest::prelude::*;
use tokio_util::codec::Decoder;

/// A message as comparable text: `Banner: ...` for the banner, else its headers in order.
fn render(m: &Message) -> Vec<(String, String)> {
    if m.kind() == Kind::Banner {
        return vec![(
            "Banner".into(),
            String::from_utf8_lossy(m.raw()).into_owned(),
        )];
    }
    m.headers()
        .map(|(n, v)| {
            (
                String::from_utf8_lossy(n).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect()
}

fn feed(codec: &mut AmiCodec, buf: &mut BytesMut, bytes: &[u8], out: &mut Vec<Message>) {
    buf.extend_from_slice(bytes);
    while let Some(m) = codec.decode(buf).unwrap() {
        out.push(m);
    }
}

fn finish(
    mut codec: AmiCodec,
    mut buf: BytesMut,
    mut out: Vec<Message>,
) -> (Vec<Message>, DecodeStats) {
    while let Some(m) = codec.decode_eof(&mut buf).unwrap() {
        out.push(m);
    }
    (out, codec.stats())
}

/// Decodes `input` whole, split in two at every byte, and in every chunk size: all must agree.
fn decode_every_way(input: &[u8], max: usize) -> (Vec<Message>, DecodeStats) {
    let whole = {
        let mut c = AmiCodec::with_max_message(max);
        let mut b = BytesMut::new();
        let mut out = Vec::new();
        feed(&mut c, &mut b, input, &mut out);
        finish(c, b, out)
    };
    for at in 0..=input.len() {
        let mut c = AmiCodec::with_max_message(max);
        let mut b = BytesMut::new();
        let mut out = Vec::new();
        feed(&mut c, &mut b, &input[..at], &mut out);
        feed(&mut c, &mut b, &input[at..], &mut out);
        let got = finish(c, b, out);
        assert_eq!(got.0, whole.0, "split at {at}");
        assert_eq!(got.1, whole.1, "split at {at}");
    }
    for chunk in 1..=input.len().max(1) {
        let mut c = AmiCodec::with_max_message(max);
        let mut b = BytesMut::new();
        let mut out = Vec::new();
        for piece in input.chunks(chunk) {
            feed(&mut c, &mut b, piece, &mut out);
        }
        let got = finish(c, b, out);
        assert_eq!(got.0, whole.0, "chunk {chunk}");
        assert_eq!(got.1, whole.1, "chunk {chunk}");
    }
    whole
}

struct Case {
    name: &'static str,
    input: Vec<u8>,
    max: usize,
    want: Vec<Vec<(&'static str, &'static str)>>,
    malformed: u64,
    empty: u64,
    oversized: u64,
}

fn case(name: &'static str, input: &[u8], want: Vec<Vec<(&'static str, &'static str)>>) -> Case {
    Case {
        name,
        input: input.to_vec(),
        max: 1024 * 1024,
        want,
        malformed: 0,
        empty: 0,
        oversized: 0,
    }
}

#[test]
fn edge_case_table() {
    let mut big = b"Event: Small\r\n\r\nEvent: Big\r\n".to_vec();
    for i in 0..40 {
        big.extend_from_slice(format!("Variable: v{i}=xxxxxxxxxxxxxxxx\r\n").as_bytes());
    }
    big.extend_from_slice(b"\r\nEvent: Next\r\n\r\n");
    let cases = vec![
        case(
            "banner, then the login reply",
            b"Asterisk Call Manager/11.0.0\r\nResponse: Success\r\nActionID: l1\r\nMessage: Authentication accepted\r\n\r\n",
            vec![
                vec![("Banner", "Asterisk Call Manager/11.0.0")],
                vec![("Response", "Success"), ("ActionID", "l1"), ("Message", "Authentication accepted")],
            ],
        ),
        case(
            "banner with a bare LF",
            b"Asterisk Call Manager/2.10.4\nEvent: A\n\n",
            vec![vec![("Banner", "Asterisk Call Manager/2.10.4")], vec![("Event", "A")]],
        ),
        case(
            "bare LF line ends",
            b"Event: A\nK: v\n\nEvent: B\n\n",
            vec![vec![("Event", "A"), ("K", "v")], vec![("Event", "B")]],
        ),
        case(
            "CRLF then LF terminator (CoreShowChannelMap)",
            b"Event: CoreShowChannelMap\r\nChannel: PJSIP/1\r\nConnectedChannels: PJSIP/2\r\n\nEvent: B\r\n\r\n",
            vec![
                vec![("Event", "CoreShowChannelMap"), ("Channel", "PJSIP/1"), ("ConnectedChannels", "PJSIP/2")],
                vec![("Event", "B")],
            ],
        ),
        case(
            "extra blank lines between and before messages",
            b"\r\n\r\nEvent: A\r\n\r\n\r\n\n\r\n\r\nEvent: B\r\n\r\n\r\n",
            vec![vec![("Event", "A")], vec![("Event", "B")]],
        ),
        case(
            "empty value with and without a space",
            b"Event: RTCPSent\r\nReportBlock:\r\nAccountCode: \r\nX:y\r\n\r\n",
            vec![vec![("Event", "RTCPSent"), ("ReportBlock", ""), ("AccountCode", ""), ("X", "y")]],
        ),
        case(
            "value with colons and a second space kept",
            b"Event: X\r\nTime: 12:34:56\r\nPad:  two\r\n\r\n",
            vec![vec![("Event", "X"), ("Time", "12:34:56"), ("Pad", " two")]],
        ),
        case(
            "ChanVariable, Asterisk 11 and 12+ forms",
            b"Event: Hangup\r\nChanVariable(SIP/100-0001): FOO=bar\r\nChanVariable: BAZ=q=x\r\n\r\n",
            vec![vec![("Event", "Hangup"), ("ChanVariable(SIP/100-0001)", "FOO=bar"), ("ChanVariable", "BAZ=q=x")]],
        ),
        case(
            "legacy Follows body with blank lines up to --END COMMAND--",
            b"Response: Follows\r\nPrivilege: Command\r\nActionID: 7\r\nChannel  Location\r\n\r\nSIP/1  s@default:1\r\n--END COMMAND--\r\n\r\nEvent: After\r\n\r\n",
            vec![
                vec![
                    ("Response", "Follows"),
                    ("Privilege", "Command"),
                    ("ActionID", "7"),
                    ("Output", "Channel  Location"),
                    ("Output", ""),
                    ("Output", "SIP/1  s@default:1"),
                ],
                vec![("Event", "After")],
            ],
        ),
        case(
            "legacy Follows with the end marker on the last output line",
            b"Response: Follows\r\nActionID: 8\r\nlast line--END COMMAND--\r\n\r\n",
            vec![vec![("Response", "Follows"), ("ActionID", "8"), ("Output", "last line")]],
        ),
        case(
            "Asterisk 14+ Output headers",
            b"Response: Success\r\nActionID: 9\r\nMessage: Command output follows\r\nOutput: Channel  Location\r\nOutput: \r\nOutput: 1 active channel\r\n\r\n",
            vec![vec![
                ("Response", "Success"),
                ("ActionID", "9"),
                ("Message", "Command output follows"),
                ("Output", "Channel  Location"),
                ("Output", ""),
                ("Output", "1 active channel"),
            ]],
        ),
        Case {
            malformed: 2,
            ..case(
                "lines without a colon are skipped and counted",
                b"Event: A\r\ngarbage\r\nK: v\r\n--END SMS EVENT--\r\n\r\n",
                vec![vec![("Event", "A"), ("K", "v")]],
            )
        },
        Case {
            malformed: 1,
            empty: 1,
            ..case(
                "a frame of garbage only",
                b"garbage\r\n\r\nEvent: B\r\n\r\n",
                vec![vec![("Event", "B")]],
            )
        },
        Case {
            max: 256,
            oversized: 1,
            ..case(
                "oversized message skipped, the stream goes on",
                &big,
                vec![vec![("Event", "Small")], vec![("Event", "Next")]],
            )
        },
        case(
            "OriginateResponse has Event and Response",
            b"Event: OriginateResponse\r\nActionID: cb-1\r\nResponse: Failure\r\n\r\n",
            vec![vec![("Event", "OriginateResponse"), ("ActionID", "cb-1"), ("Response", "Failure")]],
        ),
    ];
    for c in cases {
        let (msgs, stats) = decode_every_way(&c.input, c.max);
        let got: Vec<_> = msgs.iter().map(render).collect();
        let want: Vec<Vec<(String, String)>> = c
            .want
            .iter()
            .map(|m| {
                m.iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect()
            })
            .collect();
        assert_eq!(got, want, "{}", c.name);
        assert_eq!(
            (
                stats.malformed_lines,
                stats.empty_messages,
                stats.oversized,
                stats.truncated
            ),
            (c.malformed, c.empty, c.oversized, 0),
            "{}: {stats:?}",
            c.name
        );
        assert_eq!(stats.bytes, c.input.len() as u64, "{}", c.name);
    }
}

#[test]
fn kinds_and_lookups_on_decoded_messages() {
    let (m, _) = decode_all(
        b"Asterisk Call Manager/11.0.0\r\nResponse: Success\r\nActionID: 1\r\n\r\n\
Event: Hangup\r\nUniqueID: 17.1\r\nCallerIDName: \xcf\xe5\xf2\xff\r\nChanVariable(SIP/1): A=1\r\nChanVariable: B=2\r\n\r\n\
Action: Ping\r\n\r\nFoo: bar\r\n\r\n",
    );
    let kinds: Vec<_> = m.iter().map(|m| m.kind()).collect();
    assert_eq!(
        kinds,
        [
            Kind::Banner,
            Kind::Response,
            Kind::Event,
            Kind::Action,
            Kind::Unknown
        ]
    );
    assert_eq!(m[2].get(b"Uniqueid"), Some(&b"17.1"[..]));
    assert_eq!(m[2].get_str("CallerIDName").unwrap().chars().count(), 4);
    let vars: Vec<_> = m[2].chan_variables().collect();
    assert_eq!(
        vars,
        [
            (Some(&b"SIP/1"[..]), &b"A"[..], &b"1"[..]),
            (None, &b"B"[..], &b"2"[..])
        ]
    );
}

/// Header names: what Asterisk uses (letters, digits, `-`, `_`, `(...)` for ChanVariable).
fn name() -> impl Strategy<Value = Vec<u8>> {
    "[A-Za-z][A-Za-z0-9_()/-]{0,15}".prop_map(String::into_bytes)
}

/// Values: any bytes but LF (cp1251, colons, stray CR, leading spaces included).
fn value() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>().prop_filter("no LF", |b| *b != b'\n'), 0..40)
}

fn message() -> impl Strategy<Value = Vec<(Vec<u8>, Vec<u8>)>> {
    (value(), proptest::collection::vec((name(), value()), 0..12)).prop_map(|(ev, rest)| {
        let mut h = vec![(b"Event".to_vec(), ev)];
        h.extend(rest);
        h
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn decode_encode_decode_round_trip(
        msgs in proptest::collection::vec(message(), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let originals: Vec<Message> = msgs.iter().map(|h| Message::from_pairs(h)).collect();
        let mut stream = Vec::new();
        for m in &originals {
            stream.extend_from_slice(&m.to_bytes());
        }
        let (decoded, stats) = decode_all(&stream);
        prop_assert_eq!(stats.problems(), 0);
        prop_assert_eq!(decoded.len(), originals.len());
        for (d, o) in decoded.iter().zip(&originals) {
            prop_assert_eq!(render(d), render(o));
            prop_assert_eq!(d.kind(), Kind::Event);
        }
        // Encode what was decoded: the same bytes, and decoding them again gives the same.
        let mut again = Vec::new();
        for m in &decoded {
            again.extend_from_slice(&m.to_bytes());
        }
        prop_assert_eq!(&again, &stream);
        // And a cut anywhere changes nothing.
        let at = cut.index(stream.len() + 1);
        let mut c = AmiCodec::new();
        let mut b = BytesMut::new();
        let mut out = Vec::new();
        feed(&mut c, &mut b, &stream[..at], &mut out);
        feed(&mut c, &mut b, &stream[at..], &mut out);
        let (split, _) = finish(c, b, out);
        prop_assert_eq!(split, decoded);
    }
}
