//! Every labelled call of every capture, replayed through the real pipeline (codec -> tracker ->
//! store) with its lab's own config, matches its ground truth in `*.expect.toml`. Two labs: the
//! Local-channel one (`fixtures/asterisk-22`, `lab.toml`) and the real-SIP one
//! (`fixtures/asterisk-22-pjsip`, `pjsip.toml`: PJSIP trunk, phones and outbound trunk).
//!
//! Then every capture again with `calls.min_talk` at 0 s and at 60 s: a call without a person in
//! its bridge stays a miss whatever the threshold, and an answered call becomes a short-talk miss
//! only when its talk is below it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use perezvon::ami::codec::decode_all;
use perezvon::calls::record::{CallRecord, CallbackOutcome, Direction, Status, Timestamp};
use perezvon::config::Config;
use perezvon::daemon::ingest::{event_time, Pipeline};
use perezvon::store::Store;

/// One recorded lab: its captures, its config, the server name its calls are recorded under.
#[derive(Clone, Copy)]
struct Lab {
    dir: &'static str,
    config: &'static str,
    server: &'static str,
    /// At least this many calls across its captures (a guard against a silently empty set).
    min_calls: usize,
}

const LOCAL: Lab = Lab {
    dir: "fixtures/asterisk-22",
    config: "lab.toml",
    server: "lab",
    min_calls: 60,
};

const PJSIP: Lab = Lab {
    dir: "fixtures/asterisk-22-pjsip",
    config: "pjsip.toml",
    server: "lab-pjsip",
    min_calls: 14,
};

const LABS: [Lab; 2] = [LOCAL, PJSIP];

impl Lab {
    fn config(&self) -> Config {
        Config::load(Path::new(self.dir).join(self.config).as_path())
            .unwrap_or_else(|e| panic!("{}/{} is valid: {e:?}", self.dir, self.config))
    }

    fn captures(&self) -> Vec<PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(self.dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "ami"))
            .collect();
        v.sort();
        v
    }

    /// Replays files as one stream, like `perezvon replay`; returns the calls as stored, in
    /// the order they ended.
    fn replay(&self, files: &[PathBuf]) -> Vec<CallRecord> {
        self.replay_with(&self.config(), files)
    }

    fn replay_with(&self, cfg: &Config, files: &[PathBuf]) -> Vec<CallRecord> {
        let mut p = Pipeline::new(cfg, Store::open_in_memory().unwrap());
        let mut order = Vec::new();
        let mut now = Timestamp::UNIX_EPOCH;
        for f in files {
            let (msgs, stats) = decode_all(&std::fs::read(f).unwrap());
            assert_eq!(stats.problems(), 0, "{}", f.display());
            for m in &msgs {
                let t = event_time(m, now);
                if t > now {
                    now = t;
                }
                order.extend(p.feed(self.server, m, now).unwrap());
            }
        }
        order.extend(p.finish(now).unwrap());
        order
            .iter()
            .map(|r| p.store().get_call(&r.server, &r.linkedid).unwrap().unwrap())
            .collect()
    }
}

fn s<'a>(v: &'a toml::Value, k: &str) -> &'a str {
    v.get(k).and_then(|x| x.as_str()).unwrap_or("")
}

fn f(v: &toml::Value, k: &str) -> f64 {
    match v.get(k) {
        Some(toml::Value::Float(x)) => *x,
        Some(toml::Value::Integer(i)) => *i as f64,
        _ => panic!("label {k} missing in {v:?}"),
    }
}

fn check_capture(path: &Path, calls: &[CallRecord], check_resolution: bool) -> Vec<String> {
    let label_path = path.with_extension("expect.toml");
    let labels: toml::Value =
        toml::from_str(&std::fs::read_to_string(&label_path).unwrap()).unwrap();
    let by_id: HashMap<&str, &CallRecord> =
        calls.iter().map(|c| (c.linkedid.as_str(), c)).collect();
    let name = path.file_stem().unwrap().to_string_lossy().to_string();
    let mut errs = Vec::new();
    let mut err = |id: &str, what: String| errs.push(format!("{name} {id}: {what}"));
    let empty = Vec::new();
    let min_wait = 3.0;
    for l in labels
        .get("calls")
        .and_then(|c| c.as_array())
        .unwrap_or(&empty)
    {
        let id = s(l, "id");
        let Some(c) = by_id.get(s(l, "linkedid")) else {
            err(id, format!("no record for linkedid {}", s(l, "linkedid")));
            continue;
        };
        let want_dir = match s(l, "direction") {
            "inbound" => Direction::Inbound,
            "outbound" => Direction::Outbound,
            d => panic!("unknown label direction {d}"),
        };
        if c.direction != want_dir {
            err(
                id,
                format!("direction {:?}, want {want_dir:?}", c.direction),
            );
            continue;
        }
        if (c.talk_secs - f(l, "measured_talk_s")).abs() > 1.0 {
            err(
                id,
                format!(
                    "talk {} vs measured {}",
                    c.talk_secs,
                    f(l, "measured_talk_s")
                ),
            );
        }
        if (c.wait_secs - f(l, "measured_ring_s")).abs() > 1.0 {
            err(
                id,
                format!(
                    "wait {} vs measured {}",
                    c.wait_secs,
                    f(l, "measured_ring_s")
                ),
            );
        }
        if want_dir == Direction::Outbound {
            if c.agent.as_deref() != Some(s(l, "agent")) {
                err(id, format!("agent {:?}, want {}", c.agent, s(l, "agent")));
            }
            if c.callee_normalized.as_deref() != Some(s(l, "callee_normalized")) {
                err(
                    id,
                    format!(
                        "callee {:?}, want {}",
                        c.callee_normalized,
                        s(l, "callee_normalized")
                    ),
                );
            }
            continue;
        }
        let missed = l.get("missed").and_then(|m| m.as_bool()).unwrap();
        if c.missed != missed {
            err(id, format!("missed {}, want {missed}", c.missed));
        }
        // ignored = a miss with no conversation at all where the caller hung up on their own
        // within min_wait, and the PBX did not turn them away (busy).
        let want_ignored = missed
            && f(l, "measured_talk_s") == 0.0
            && s(l, "hangup_by") == "caller"
            && f(l, "measured_ring_s") < min_wait
            && !s(l, "route").to_lowercase().contains("busy");
        if c.ignored != want_ignored {
            err(id, format!("ignored {}, want {want_ignored}", c.ignored));
        }
        let want_lost = if missed {
            Some(s(l, "hangup_place"))
        } else {
            None
        };
        if c.lost_at.map(|x| x.as_str()) != want_lost {
            err(id, format!("lost_at {:?}, want {want_lost:?}", c.lost_at));
        }
        if c.hangup_by.as_deref() != Some(s(l, "hangup_by")) {
            err(
                id,
                format!("hangup_by {:?}, want {}", c.hangup_by, s(l, "hangup_by")),
            );
        }
        let want_caller = s(l, "caller_normalized");
        if c.caller_normalized.as_deref().unwrap_or("") != want_caller {
            err(
                id,
                format!("caller {:?}, want {want_caller:?}", c.caller_normalized),
            );
        }
        if check_resolution {
            let want_res = match (s(l, "resolved_by"), s(l, "resolved_via")) {
                ("" | "none", _) => None,
                (_, "callback_originate") => Some("callback"),
                (r, _) => Some(r),
            };
            if c.resolved_by.map(|r| r.as_str()) != want_res {
                err(
                    id,
                    format!("resolved_by {:?}, want {want_res:?}", c.resolved_by),
                );
            }
            if want_res.is_some() && (c.resolved_at.is_none() || c.resolved_by_linkedid.is_none()) {
                err(
                    id,
                    "resolved without resolved_at / resolved_by_linkedid".into(),
                );
            }
        }
        if !missed {
            let answered_by = s(l, "answered_by");
            if !answered_by.is_empty()
                && !answered_by.starts_with("any")
                && !answered_by.contains(c.agent.as_deref().unwrap_or("?"))
            {
                err(
                    id,
                    format!("agent {:?}, want one of {answered_by}", c.agent),
                );
            }
        }
    }
    for l in labels
        .get("callbacks")
        .and_then(|c| c.as_array())
        .unwrap_or(&empty)
    {
        let id = s(l, "id");
        let Some(c) = by_id.get(s(l, "linkedid")) else {
            err(
                id,
                format!("no record for callback linkedid {}", s(l, "linkedid")),
            );
            continue;
        };
        if c.direction != Direction::Callback {
            err(id, format!("direction {:?}, want callback", c.direction));
        }
        if c.callback_id.as_deref() != Some(s(l, "callback_id")) {
            err(id, format!("callback_id {:?}", c.callback_id));
        }
        let want = match s(l, "expected_outcome") {
            "answered_bridged_agent" => "connected",
            "customer_answered_agent_missed" => "agent_missed",
            o => o,
        };
        if c.callback_outcome.map(|o| o.as_str()) != Some(want) {
            err(id, format!("outcome {:?}, want {want}", c.callback_outcome));
        }
        if (c.talk_secs - f(l, "measured_talk_s")).abs() > 1.0 {
            err(
                id,
                format!(
                    "talk {} vs measured {}",
                    c.talk_secs,
                    f(l, "measured_talk_s")
                ),
            );
        }
        if c.callee_normalized.as_deref() != Some(s(l, "customer_normalized")) {
            err(
                id,
                format!(
                    "customer {:?}, want {}",
                    c.callee_normalized,
                    s(l, "customer_normalized")
                ),
            );
        }
        // By design where labelled, else as measured from the events (`customer` is the
        // callback's caller).
        let want_by = match (s(l, "hangup_by"), s(l, "measured_hangup_by")) {
            ("", "customer") => "caller",
            ("", m) => m,
            (h, _) => h,
        };
        if !want_by.is_empty() && c.hangup_by.as_deref() != Some(want_by) {
            err(id, format!("hangup_by {:?}, want {want_by}", c.hangup_by));
        }
        if l.get("agent").is_some() && c.agent.as_deref() != Some(s(l, "agent")) {
            err(id, format!("agent {:?}, want {}", c.agent, s(l, "agent")));
        }
    }
    let labelled = labels
        .get("calls")
        .and_then(|c| c.as_array())
        .map_or(0, |a| a.len())
        + labels
            .get("callbacks")
            .and_then(|c| c.as_array())
            .map_or(0, |a| a.len());
    if calls.len() != labelled {
        errs.push(format!(
            "{name}: {} records for {labelled} labelled calls",
            calls.len()
        ));
    }
    errs
}

#[test]
fn every_labelled_call_of_every_capture_matches() {
    for lab in LABS {
        let mut errs = Vec::new();
        let mut n = 0;
        for p in lab.captures() {
            let calls = lab.replay(std::slice::from_ref(&p));
            n += calls.len();
            errs.extend(check_capture(&p, &calls, true));
        }
        assert!(n >= lab.min_calls, "{}: only {n} calls replayed", lab.dir);
        assert!(
            errs.is_empty(),
            "{}: {} mismatches:\n{}",
            lab.dir,
            errs.len(),
            errs.join("\n")
        );
    }
}

#[test]
fn all_captures_as_one_stream_give_the_same_verdicts() {
    for lab in LABS {
        // In recording order, one continuous stream, as `perezvon replay fixtures/*.ami` would.
        let mut files = lab.captures();
        let first_ts = |p: &PathBuf| {
            let (m, _) = decode_all(&std::fs::read(p).unwrap());
            m.iter()
                .find_map(|m| m.get_str("Timestamp").map(|t| t.to_string()))
                .unwrap_or_default()
        };
        files.sort_by_key(first_ts);
        let all = lab.replay(&files);
        let mut errs = Vec::new();
        for p in &files {
            // Resolution may legitimately reach across captures (the lab reuses numbers).
            errs.extend(
                check_capture(p, &all, false)
                    .into_iter()
                    .filter(|e| !e.contains("records for")),
            );
        }
        assert!(errs.is_empty(), "{}: {}", lab.dir, errs.join("\n"));
        let single: usize = files
            .iter()
            .map(|p| lab.replay(std::slice::from_ref(p)).len())
            .sum();
        assert_eq!(all.len(), single, "{}", lab.dir);
    }
}

/// Every capture of both labs with `calls.min_talk` at `min_talk`: what must hold against the
/// labels (which are judged at 6 s).
fn check_min_talk(min_talk: Duration) -> Vec<String> {
    let limit = min_talk.as_secs_f64();
    let mut errs = Vec::new();
    for lab in LABS {
        let mut cfg = lab.config();
        cfg.calls.min_talk = min_talk;
        for p in lab.captures() {
            let calls = lab.replay_with(&cfg, std::slice::from_ref(&p));
            let labels: toml::Value =
                toml::from_str(&std::fs::read_to_string(p.with_extension("expect.toml")).unwrap())
                    .unwrap();
            let by_id: HashMap<&str, &CallRecord> =
                calls.iter().map(|c| (c.linkedid.as_str(), c)).collect();
            let name = p.file_stem().unwrap().to_string_lossy().to_string();
            let mut err = |id: &str, what: String| {
                errs.push(format!("min_talk {limit}s {name} {id}: {what}"))
            };
            let empty = Vec::new();
            let arr = |k: &str| {
                labels
                    .get(k)
                    .and_then(|c| c.as_array())
                    .unwrap_or(&empty)
                    .clone()
            };
            for l in arr("calls") {
                let id = s(&l, "id");
                let Some(c) = by_id.get(s(&l, "linkedid")) else {
                    err(id, "no record".into());
                    continue;
                };
                let talk = f(&l, "measured_talk_s");
                if s(&l, "direction") != "inbound" {
                    // Outbound: answered when the person talked at least min_talk.
                    let want = if talk > 0.0 && c.talk_secs >= limit {
                        Status::Answered
                    } else {
                        Status::Missed
                    };
                    if c.status != want {
                        err(id, format!("status {:?}, want {want:?}", c.status));
                    }
                    continue;
                }
                let labelled_miss = l.get("missed").and_then(|m| m.as_bool()).unwrap();
                // A person was in the caller's bridge: the labels measure it as talk.
                let talked = talk > 0.0;
                let want_missed = !talked || c.talk_secs < limit;
                if c.missed != want_missed {
                    err(
                        id,
                        format!(
                            "missed {} (talk {}), want {want_missed} (labelled missed = {labelled_miss})",
                            c.missed, c.talk_secs
                        ),
                    );
                }
                if c.missed && c.lost_at.is_none() {
                    err(id, "a miss without lost_at".into());
                }
                if labelled_miss
                    && !talked
                    && c.lost_at.map(|x| x.as_str()) != Some(s(&l, "hangup_place"))
                {
                    err(
                        id,
                        format!("lost_at {:?}, want {}", c.lost_at, s(&l, "hangup_place")),
                    );
                }
                if (c.talk_secs - talk).abs() > 1.0 {
                    err(id, format!("talk {} vs measured {talk}", c.talk_secs));
                }
            }
            for l in arr("callbacks") {
                let id = s(&l, "id");
                let Some(c) = by_id.get(s(&l, "linkedid")) else {
                    err(id, "no record".into());
                    continue;
                };
                let labelled = match s(&l, "expected_outcome") {
                    "answered_bridged_agent" => "connected",
                    "customer_answered_agent_missed" => "agent_missed",
                    o => o,
                };
                let want = match labelled {
                    "connected" if c.talk_secs < limit => CallbackOutcome::TooShort,
                    o => CallbackOutcome::parse(o).unwrap(),
                };
                if c.callback_outcome != Some(want) {
                    err(
                        id,
                        format!("outcome {:?}, want {want:?}", c.callback_outcome),
                    );
                }
            }
        }
    }
    errs
}

#[test]
fn no_conversation_is_never_an_answer_even_with_min_talk_zero() {
    let errs = check_min_talk(Duration::ZERO);
    assert!(
        errs.is_empty(),
        "{} mismatches:\n{}",
        errs.len(),
        errs.join("\n")
    );
}

#[test]
fn a_high_min_talk_turns_only_answered_calls_into_short_talk_misses() {
    let errs = check_min_talk(Duration::from_secs(60));
    assert!(
        errs.is_empty(),
        "{} mismatches:\n{}",
        errs.len(),
        errs.join("\n")
    );
}

#[test]
fn live_customers_are_the_union_over_servers() {
    let msgs = |name: &str| {
        decode_all(&std::fs::read(format!("fixtures/asterisk-22/{name}.ami")).unwrap()).0
    };
    let mut p = Pipeline::new(&LOCAL.config(), Store::open_in_memory().unwrap());
    assert!(p.live_customers().is_empty());
    // Feeds `name` on `server` until `number` is live there; returns the rest.
    let until_live = |p: &mut Pipeline, server: &str, name: &str, number: &str| {
        let all = msgs(name);
        let mut rest = all.into_iter();
        for m in rest.by_ref() {
            p.feed(server, &m, event_time(&m, Timestamp::UNIX_EPOCH))
                .unwrap();
            if p.live_customers().contains(number) {
                return rest.collect::<Vec<_>>();
            }
        }
        panic!("{number} never live in {name}");
    };
    let rest_a = until_live(&mut p, "a", "answered_by_agent", "79161234567");
    let rest_b = until_live(&mut p, "b", "ivr_abandon", "79031112233");
    let live = p.live_customers();
    assert!(
        live.contains("79161234567") && live.contains("79031112233"),
        "{live:?}"
    );
    // Each server's calls end: their customers leave the set.
    for m in &rest_a {
        p.feed("a", m, event_time(m, Timestamp::UNIX_EPOCH))
            .unwrap();
    }
    assert!(!p.live_customers().contains("79161234567"));
    for m in &rest_b {
        p.feed("b", m, event_time(m, Timestamp::UNIX_EPOCH))
            .unwrap();
    }
    assert!(p.live_customers().is_empty(), "{:?}", p.live_customers());
}
