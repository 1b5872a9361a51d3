//! The lab's CDR and queue_log (one run recorded three ways, fixtures/asterisk-22-cdr/) against
//! the labels of the same calls: what history can decide, and how close it comes to AMI.

use std::collections::HashMap;
use std::path::Path;

use perezvon::config::Config;
use perezvon::history::{self, Files};

const DIR: &str = "fixtures/asterisk-22-cdr";

#[derive(Debug, serde::Deserialize)]
struct Expect {
    #[serde(default)]
    calls: Vec<Label>,
}

#[derive(Debug, serde::Deserialize)]
struct Label {
    id: String,
    direction: String,
    linkedid: String,
    #[serde(default)]
    missed: Option<bool>,
    #[serde(default)]
    hangup_place: Option<String>,
    #[serde(default)]
    resolved_by: Option<String>,
}

fn labels() -> Vec<Label> {
    let mut out = Vec::new();
    for s in [
        "mixed_concurrent",
        "resolved_by_caller_callback",
        "callback_originate_success",
    ] {
        let text = std::fs::read_to_string(format!("{DIR}/{s}.expect.toml")).unwrap();
        let e: Expect = toml::from_str(&text).unwrap();
        out.extend(e.calls);
    }
    out
}

fn load(cdr: bool, qlog: bool) -> Vec<perezvon::history::build::HistoryCall> {
    let cfg = Config::embedded_default();
    let cdr_path = Path::new(DIR).join("Master.csv");
    let q_path = Path::new(DIR).join("queue_log");
    let files = Files {
        cdr: cdr.then_some(cdr_path.as_path()),
        queue_log: qlog.then_some(q_path.as_path()),
        timezone: &jiff::tz::TimeZone::UTC,
    };
    let l = history::load("lab", &cfg, &files, None).unwrap();
    assert!(l.problems.is_empty(), "{:?}", l.problems);
    l.calls
}

fn compare(calls: &[perezvon::history::build::HistoryCall]) -> Vec<String> {
    let by_id: HashMap<&str, &perezvon::calls::record::CallRecord> = calls
        .iter()
        .map(|c| (c.record.linkedid.as_str(), &c.record))
        .collect();
    let mut wrong = Vec::new();
    for l in labels() {
        let Some(r) = by_id.get(l.linkedid.as_str()) else {
            wrong.push(format!("{} ({}): not found", l.id, l.linkedid));
            continue;
        };
        if l.direction == "inbound" {
            let missed = r.is_counted_miss() || r.ignored;
            if Some(missed) != l.missed {
                wrong.push(format!(
                    "{} ({}): missed {missed}, label {:?}: {r:?}",
                    l.id, l.linkedid, l.missed
                ));
            } else if missed {
                let at = r.lost_at.map(|x| x.as_str().to_string());
                if at != l.hangup_place {
                    wrong.push(format!(
                        "{}: lost_at {at:?}, label {:?}",
                        l.id, l.hangup_place
                    ));
                }
            }
        } else if format!("{:?}", r.direction).to_lowercase() != l.direction {
            wrong.push(format!(
                "{}: direction {:?}, label {}",
                l.id, r.direction, l.direction
            ));
        }
        let _ = &l.resolved_by;
    }
    wrong
}

#[test]
fn cdr_with_queue_log_decides_every_lab_call_like_ami() {
    let calls = load(true, true);
    let wrong = compare(&calls);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn cdr_alone() {
    let calls = load(true, false);
    let wrong = compare(&calls);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
