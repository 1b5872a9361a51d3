//! OriginateResponse Reason codes pinned on the real captures: every recorded callback's
//! OriginateResponse, classified, agrees with its label in `*.expect.toml`.

use perezvon::ami::codec::decode_all;
use perezvon::callback::originate::{classify_response, OriginateResponse, OriginateVerdict};
use perezvon::calls::record::CallbackOutcome;
use perezvon::config::CallbackMode;

#[test]
fn recorded_callbacks_classify_as_labelled() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/asterisk-22");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.starts_with("callback_") && name.ends_with(".expect.toml")) {
            continue;
        }
        let labels: toml::Value = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let capture = dir.join(labels["capture"].as_str().unwrap());
        let (msgs, _) = decode_all(&std::fs::read(&capture).unwrap());
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
            let got = classify_response(CallbackMode::CustomerFirst, or.success, or.reason);
            let want = match expected {
                "answered_bridged_agent" | "customer_answered_agent_missed" => {
                    OriginateVerdict::Answered
                }
                "no_answer" => OriginateVerdict::Final(CallbackOutcome::NoAnswer),
                "busy" => OriginateVerdict::Final(CallbackOutcome::Busy),
                "failed" => OriginateVerdict::Final(CallbackOutcome::Failed),
                other => panic!("{name}: unknown label {other}"),
            };
            assert_eq!(got, want, "{name} {aid} labelled {expected}");
            // Answered callbacks carry the Uniqueid of the originated channel; failures don't.
            assert_eq!(or.uniqueid.is_some(), or.success, "{name} {aid}");
            checked += 1;
        }
    }
    assert_eq!(checked, 7, "six callback captures, one with two attempts");
}
