//! OriginateResponse Reason codes pinned on the real captures of both labs (Local channels and
//! real SIP): every recorded callback's OriginateResponse, read as the dialer reads it, and then
//! the tracker's record of the call where the response leaves the outcome open, agree with its
//! label in `*.expect.toml`.

use std::path::Path;

use perezvon::ami::codec::decode_all;
use perezvon::callback::originate::{
    classify_response, outcome_from_record, read_response, OriginateResponse, OriginateVerdict,
    ResponseVerdict,
};
use perezvon::calls::record::{CallRecord, CallbackOutcome, Timestamp};
use perezvon::calls::Tracker;
use perezvon::config::{CallbackMode, Config};

/// (directory, config, callback attempts labelled there)
const LABS: [(&str, &str, usize); 2] = [
    ("fixtures/asterisk-22", "lab.toml", 7),
    ("fixtures/asterisk-22-pjsip", "pjsip.toml", 3),
];

fn records(cfg: &Config, msgs: &[perezvon::ami::Message]) -> Vec<CallRecord> {
    let mut t = Tracker::new("lab", cfg);
    let mut out = Vec::new();
    let mut now = Timestamp::UNIX_EPOCH;
    for m in msgs {
        now = perezvon::daemon::ingest::event_time(m, now);
        t.handle(m, now, &mut out);
    }
    t.end_of_input(now, &mut out);
    out
}

#[test]
fn recorded_callbacks_classify_as_labelled() {
    for (dir, config, want_checked) in LABS {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let cfg = Config::load(&dir.join(config)).unwrap();
        let min_talk = cfg.calls.min_talk.as_secs_f64();
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if !(name.starts_with("callback_") && name.ends_with(".expect.toml")) {
                continue;
            }
            let labels: toml::Value =
                toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let capture = dir.join(labels["capture"].as_str().unwrap());
            let (msgs, _) = decode_all(&std::fs::read(&capture).unwrap());
            let recs = records(&cfg, &msgs);
            for cb in labels["callbacks"].as_array().unwrap() {
                let aid = cb["originate_action_id"].as_str().unwrap();
                let expected = cb["expected_outcome"].as_str().unwrap();
                let or = msgs
                    .iter()
                    .filter_map(OriginateResponse::parse)
                    .find(|r| r.action_id == aid)
                    .unwrap_or_else(|| panic!("{name}: no OriginateResponse for {aid}"));
                assert_eq!(
                    or.reason,
                    cb["originate_reason"].as_integer(),
                    "{name} {aid}"
                );
                let want = match expected {
                    "answered_bridged_agent" => CallbackOutcome::Connected,
                    "customer_answered_agent_missed" => CallbackOutcome::AgentMissed,
                    o => CallbackOutcome::parse(o)
                        .unwrap_or_else(|| panic!("{name}: unknown label {o}")),
                };
                let rec = recs
                    .iter()
                    .find(|r| r.linkedid == cb["linkedid"].as_str().unwrap())
                    .unwrap_or_else(|| panic!("{name} {aid}: no record of the callback call"));
                // What the dialer concludes: a final Reason ends the attempt at once, anything
                // else waits for the tracker's record of the call.
                let got = match read_response(CallbackMode::CustomerFirst, or.success, or.reason) {
                    ResponseVerdict::Final(o) => o,
                    ResponseVerdict::Answered | ResponseVerdict::AwaitRecord { .. } => {
                        outcome_from_record(CallbackMode::CustomerFirst, rec, min_talk)
                    }
                };
                assert_eq!(got, want, "{name} {aid} labelled {expected}");
                // The record agrees with the response whenever the response is final.
                assert_eq!(rec.callback_outcome, Some(want), "{name} {aid}");
                // Answered means answered, in the two-way view too.
                let answered = matches!(
                    classify_response(CallbackMode::CustomerFirst, or.success, or.reason),
                    OriginateVerdict::Answered
                );
                assert_eq!(
                    answered,
                    matches!(
                        want,
                        CallbackOutcome::Connected | CallbackOutcome::AgentMissed
                    ),
                    "{name} {aid}"
                );
                // Answered callbacks carry the Uniqueid of the originated channel; failures don't.
                assert_eq!(or.uniqueid.is_some(), or.success, "{name} {aid}");
                checked += 1;
            }
        }
        assert_eq!(checked, want_checked, "{}", dir.display());
    }
}

#[test]
fn a_busy_sip_customer_is_busy_though_the_reason_is_zero() {
    // callback_originate_busy (PJSIP): OriginateResponse Failure/0; the customer leg's DialEnd
    // BUSY and Hangup Cause 17 say busy.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/asterisk-22-pjsip");
    let cfg = Config::load(&dir.join("pjsip.toml")).unwrap();
    let (msgs, _) = decode_all(&std::fs::read(dir.join("callback_originate_busy.ami")).unwrap());
    let or = msgs
        .iter()
        .find_map(OriginateResponse::parse)
        .expect("the callback's response");
    assert_eq!((or.success, or.reason), (false, Some(0)));
    assert_eq!(
        read_response(CallbackMode::CustomerFirst, or.success, or.reason),
        ResponseVerdict::AwaitRecord {
            fallback: CallbackOutcome::Failed
        }
    );
    let recs = records(&cfg, &msgs);
    let cb = recs
        .iter()
        .find(|r| r.callback_id.is_some())
        .expect("a callback record");
    assert_eq!(cb.callback_outcome, Some(CallbackOutcome::Busy));
    // The record follows the response within the same millisecond: the dialer's wait is short.
    let or_at = msgs
        .iter()
        .find(|m| OriginateResponse::parse(m).is_some())
        .and_then(|m| m.get_str("Timestamp").map(|t| t.parse::<f64>().unwrap()))
        .unwrap();
    let end = cb.ended_at.as_microsecond() as f64 / 1e6;
    assert!(end - or_at < 0.1, "record {end} vs response {or_at}");
}
