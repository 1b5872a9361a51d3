//! CDR rows and queue_log visits -> one verdict per call. Pure: no clock, no files, no SQL.
//!
//! A call's rows are found by its `linkedid` (`newcdrcolumns = yes`) or, in the standard
//! columns, by the channels they share: a row names its channel and the channel it talked to
//! (`dstchannel`), the two halves of a Local channel (`;1`, `;2`) are one, and a channel name
//! only joins rows that overlap in time (Asterisk restarts its channel sequence numbers). The
//! call's linkedid is the smallest uniqueid of its rows, as on AMI (the first channel's), so a
//! call recorded live and the same call in the CDR have one key.
//!
//! The verdict is `calls::rules::verdict`, the tracker's own, fed with a call state
//! rebuilt from the rows: where the caller went (`lastapp`/`lastdata`/`dcontext` of the caller's
//! rows, through the tracker's routing steps), who answered and for how long (rows whose other
//! side is a person, from the moment that person's own leg answered), and from `queue_log` the
//! exact wait and talk of queue calls.

use std::collections::HashMap;

use jiff::Timestamp;

use super::cdr::CdrRow;
use super::queue_log::{Exit, QueueVisit};
use crate::calls::event::Ev;
use crate::calls::record::{CallRecord, Direction};
use crate::calls::rules;
use crate::calls::tracker::routing;
use crate::calls::tracker::{dialled_number, person_name, App, Call, ChanKind, Ender, Rules};
use crate::config::Config;

/// One call rebuilt from history.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryCall {
    pub record: CallRecord,
    /// The queue the caller was in last, if any.
    pub queue: Option<String>,
    /// What it was decided from: `cdr`, `queue_log` or `cdr+queue_log`.
    pub origin: &'static str,
}

/// Rows of one channel name further apart than this are different channels.
const SAME_CHANNEL_SLACK_SECS: i64 = 5;

fn us(t: Timestamp) -> i64 {
    t.as_microsecond()
}

/// The name both halves of a Local channel share.
fn base(name: &str) -> &str {
    if name.starts_with("Local/") && (name.ends_with(";1") || name.ends_with(";2")) {
        &name[..name.len() - 2]
    } else {
        name
    }
}

/// `1796197837.43` -> (1796197837, 43): uniqueids order as their creation.
fn uid_order(u: &str) -> (i64, i64) {
    let (a, b) = u.split_once('.').unwrap_or((u, "0"));
    (a.parse().unwrap_or(i64::MAX), b.parse().unwrap_or(i64::MAX))
}

struct Dsu(Vec<usize>);

impl Dsu {
    fn find(&mut self, mut i: usize) -> usize {
        while self.0[i] != i {
            self.0[i] = self.0[self.0[i]];
            i = self.0[i];
        }
        i
    }
    fn union(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        if a != b {
            self.0[a.max(b)] = a.min(b);
        }
    }
}

/// Rows grouped into calls, each group sorted by start.
pub fn group(mut rows: Vec<CdrRow>) -> Vec<Vec<CdrRow>> {
    rows.sort_by_key(|a| (a.start, a.line));
    let mut dsu = Dsu((0..rows.len()).collect());
    let mut by_linkedid: HashMap<&str, usize> = HashMap::new();
    // Channel base name -> (row, latest end seen) while that channel lives.
    let mut by_name: HashMap<&str, (usize, i64)> = HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        if let Some(l) = r.linkedid.as_deref() {
            match by_linkedid.get(l) {
                Some(&j) => dsu.union(i, j),
                None => {
                    by_linkedid.insert(l, i);
                }
            }
            continue;
        }
        for name in [r.channel.as_str(), r.dstchannel.as_str()] {
            if name.is_empty() {
                continue;
            }
            let key = base(name);
            let start = r.start.as_second();
            let end = r.end.as_second();
            match by_name.get_mut(key) {
                Some((j, last_end)) if start <= *last_end + SAME_CHANNEL_SLACK_SECS => {
                    let j = *j;
                    *last_end = (*last_end).max(end);
                    dsu.union(i, j);
                }
                _ => {
                    by_name.insert(key, (i, end));
                }
            }
        }
    }
    let mut groups: HashMap<usize, Vec<usize>> = HashMap::new();
    for i in 0..rows.len() {
        let root = dsu.find(i);
        groups.entry(root).or_default().push(i);
    }
    let mut order: Vec<(usize, Vec<usize>)> = groups.into_iter().collect();
    order.sort_by_key(|(root, _)| *root);
    let mut slots: Vec<Option<CdrRow>> = rows.into_iter().map(Some).collect();
    order
        .into_iter()
        .map(|(_, idx)| idx.into_iter().filter_map(|i| slots[i].take()).collect())
        .collect()
}

fn blank_call(linkedid: &str, started: i64) -> Call {
    Call::opened(
        linkedid.into(),
        started,
        "".into(),
        false,
        ChanKind::Other,
        false,
        0,
    )
}

/// The history's verdicts: CDR groups (with their queue visits), then the queue visits no CDR
/// row names (a queue_log read alone), in order of start.
pub fn build(
    server: &str,
    cfg: &Config,
    rows: Vec<CdrRow>,
    visits: Vec<QueueVisit>,
) -> Vec<HistoryCall> {
    let rules = Rules::from_config(cfg);
    let mut visits_by_callid: HashMap<String, Vec<QueueVisit>> = HashMap::new();
    for v in visits {
        visits_by_callid
            .entry(v.callid.clone())
            .or_default()
            .push(v);
    }
    let mut out = Vec::new();
    for rows in group(rows) {
        let mut mine = Vec::new();
        for r in &rows {
            if let Some(v) = visits_by_callid.remove(&r.uniqueid) {
                mine.extend(v);
            }
        }
        if let Some(c) = from_cdr(server, &rules, &rows, &mine) {
            out.push(c);
        }
    }
    let mut rest: Vec<Vec<QueueVisit>> = visits_by_callid.into_values().collect();
    rest.sort_by_key(|v| v.iter().map(|x| x.entered).min());
    for v in rest {
        if let Some(c) = from_queue_log(server, &rules, v) {
            out.push(c);
        }
    }
    out.sort_by_key(|c| c.record.started_at);
    out
}

fn answered_at_of(rows: &[CdrRow], name: &str) -> Option<Option<Timestamp>> {
    // The person's own leg: the channel itself, or the other half of its Local pair.
    let own: Vec<&CdrRow> = rows
        .iter()
        .filter(|r| r.channel == name || base(&r.channel) == base(name))
        .filter(|r| r.dstchannel.is_empty() || base(&r.dstchannel) != base(name))
        .collect();
    if own.is_empty() {
        return None;
    }
    Some(own.iter().filter_map(|r| r.answer).min())
}

fn from_cdr(
    server: &str,
    rules: &Rules,
    rows: &[CdrRow],
    visits: &[QueueVisit],
) -> Option<HistoryCall> {
    let first = rows.iter().min_by_key(|r| uid_order(&r.uniqueid))?;
    let linkedid = rows
        .iter()
        .find_map(|r| r.linkedid.clone())
        .unwrap_or_else(|| first.uniqueid.clone());
    let started = rows.iter().map(|r| us(r.start)).min()?;
    let ended = rows.iter().map(|r| r.end).max()?;
    let kind = |n: &str| rules.kind_of(n);
    let person = |k: ChanKind| matches!(k, ChanKind::Agent | ChanKind::External);
    let mut c = blank_call(&linkedid, started);

    // The caller: a trunk channel, else a channel that was in an inbound context.
    let caller_chan = rows
        .iter()
        .find(|r| kind(&r.channel) == ChanKind::Trunk)
        .or_else(|| {
            rows.iter()
                .find(|r| rules.inbound_contexts.contains(&r.dcontext) && !person(kind(&r.channel)))
        })
        .map(|r| r.channel.clone());

    let mut queue = None;
    if let Some(caller) = caller_chan.as_deref() {
        let mine: Vec<&CdrRow> = rows.iter().filter(|r| r.channel == caller).collect();
        c.first_inbound = true;
        c.first_kind = ChanKind::Trunk;
        c.caller_is_trunk = kind(caller) == ChanKind::Trunk;
        c.caller_num = mine
            .first()
            .map(|r| r.src.as_str())
            .filter(|s| !s.is_empty())
            .map(Into::into);
        // The DID: where an inbound context was entered, else the Local trunk's extension.
        c.did = rows
            .iter()
            .find(|r| rules.inbound_contexts.contains(&r.dcontext) && !r.dst.is_empty())
            .map(|r| r.dst.as_str().into())
            .or_else(|| {
                caller
                    .starts_with("Local/")
                    .then(|| dialled_number(caller.as_bytes()))
                    .flatten()
            });
        for r in &mine {
            let ev = Ev {
                context: r.dcontext.as_bytes(),
                exten: r.dst.as_bytes(),
                application: r.lastapp.as_bytes(),
                app_data: r.lastdata.as_bytes(),
                ..Ev::default()
            };
            routing::step(rules, &mut c, &ev);
            if r.lastapp.eq_ignore_ascii_case("Queue") {
                let q = r.lastdata.split(',').next().unwrap_or("").trim();
                queue = Some(if q.is_empty() {
                    r.dst.clone()
                } else {
                    q.to_string()
                });
            }
            if !r.dstchannel.is_empty() && r.lastapp.eq_ignore_ascii_case("Dial") {
                let k = kind(&r.dstchannel);
                if person(k) || k == ChanKind::Other {
                    routing::offered(
                        &mut c,
                        person_name(r.dstchannel.as_bytes()),
                        k == ChanKind::External,
                    );
                }
            }
            if !r.dstchannel.is_empty() && person(kind(&r.dstchannel)) {
                c.last_rung = Some(person_name(r.dstchannel.as_bytes()));
            }
        }
        c.caller_gone = mine.iter().map(|r| us(r.end)).max();
        c.caller_up = mine.iter().any(|r| r.answer.is_some());
    } else {
        // Placed by a person (or an Originate to an outside number, answered by a person).
        match kind(&first.channel) {
            ChanKind::Agent => {
                let out = rows.iter().find(|r| {
                    r.channel == first.channel
                        && matches!(kind(&r.dstchannel), ChanKind::External | ChanKind::Trunk)
                })?;
                c.caller_person = Some(person_name(first.channel.as_bytes()));
                c.caller_num = (!first.src.is_empty()).then(|| first.src.as_str().into());
                c.dialled = out
                    .dst
                    .bytes()
                    .any(|b| b.is_ascii_digit())
                    .then(|| out.dst.as_str().into())
                    .or_else(|| dialled_number(out.dstchannel.as_bytes()));
            }
            ChanKind::External => {
                let agent = rows.iter().find(|r| {
                    base(&r.channel) == base(&first.channel)
                        && kind(&r.dstchannel) == ChanKind::Agent
                })?;
                c.caller_person = Some(person_name(agent.dstchannel.as_bytes()));
                c.dialled = dialled_number(first.channel.as_bytes());
            }
            _ => return None,
        }
        c.first_kind = ChanKind::Agent;
        c.saw_outside = true;
    }

    // Conversations: a row between a person and someone who is not one, from the moment the
    // person's own leg answered.
    let mut talks: Vec<(Box<str>, i64, i64)> = Vec::new();
    for r in rows.iter().filter(|r| r.answered()) {
        let (ka, kb) = (kind(&r.channel), kind(&r.dstchannel));
        let who = if person(kb) && !person(ka) {
            &r.dstchannel
        } else if person(ka) && !person(kb) && !r.dstchannel.is_empty() {
            &r.channel
        } else if c.caller_person.is_some() && person(ka) && person(kb) {
            // Outbound: the agent's leg towards the outside number.
            &r.dstchannel
        } else {
            continue;
        };
        if base(&r.dstchannel) == base(&r.channel) {
            continue;
        }
        if caller_chan.is_some() && !visits.is_empty() && r.lastapp.eq_ignore_ascii_case("Queue") {
            // queue_log tells this queue's conversation exactly (or that nobody took it).
            continue;
        }
        let from = match answered_at_of(rows, who) {
            Some(None) => continue,
            Some(Some(a)) => a.max(r.answer.unwrap_or(a)),
            None => r.answer.unwrap_or(r.start),
        };
        let talk = (us(r.end) - us(from)).max(0);
        talks.push((person_name(who.as_bytes()), us(from), talk));
    }
    for v in visits {
        if let Some((at, member, _)) = &v.connected {
            let talk = v.calltime.unwrap_or(0).max(0) * 1_000_000;
            // The channel's name of the member when the CDR has it, as on AMI.
            let name = rows
                .iter()
                .filter(|r| r.lastapp.eq_ignore_ascii_case("Queue") && r.answered())
                .filter(|r| person(kind(&r.dstchannel)))
                .filter(|r| answered_at_of(rows, &r.dstchannel) != Some(None))
                .map(|r| person_name(r.dstchannel.as_bytes()))
                .next()
                .unwrap_or_else(|| member.as_str().into());
            talks.push((name, us(*at), talk));
        }
        if let Some(q) = Some(v.queue.clone()).filter(|q| !q.is_empty()) {
            queue = Some(q);
        }
    }
    for (who, at, talk) in &talks {
        c.answered_at = Some(c.answered_at.map_or(*at, |a: i64| a.min(*at)));
        c.talk += talk;
        match c.persons.iter_mut().find(|p| p.0 == *who) {
            Some(p) => p.1 += talk,
            None => c.persons.push((who.clone(), *talk)),
        }
    }
    c.ender = ender(&c, rows, caller_chan.as_deref(), visits);
    let mut rec = rules::verdict(server, rules, &c, ended, None);
    if rec.direction == Direction::Internal {
        return None;
    }
    let queue = queue.filter(|_| caller_chan.is_some());
    // The report's per-queue figures read `calls.queue`: imported calls count there too
    // (marked imported in the report's note).
    if rec.queue.is_none() {
        rec.queue = queue.clone();
    }
    Some(HistoryCall {
        record: rec,
        queue,
        origin: if visits.is_empty() {
            "cdr"
        } else {
            "cdr+queue_log"
        },
    })
}

/// Who hung up, as far as history tells: queue_log says it for queue calls; the CDR does
/// not record it. A caller nobody answered who left before the PBX ended the call hung up
/// themselves (the PBX does not drop a ringing call); a dialplan `Hangup()` is the system.
fn ender(c: &Call, rows: &[CdrRow], caller: Option<&str>, visits: &[QueueVisit]) -> Option<Ender> {
    let caller = caller?;
    if let Some((_, exit)) = visits.iter().filter_map(|v| v.exit).max_by_key(|(t, _)| *t) {
        return Some(match exit {
            Exit::Completed { by_caller: true } | Exit::Abandoned | Exit::Key => Ender::Caller,
            Exit::Completed { by_caller: false } => Ender::Agent,
            Exit::Transferred => return None,
            Exit::Timeout => Ender::System,
        });
    }
    if c.answered_at.is_some() {
        return None;
    }
    let last = rows
        .iter()
        .filter(|r| r.channel == caller)
        .max_by_key(|r| (r.end, r.start))?;
    if last.lastapp.eq_ignore_ascii_case("Hangup") && last.answer.is_some() {
        Some(Ender::System)
    } else {
        Some(Ender::Caller)
    }
}

/// A call known only from queue_log: from the queue entry (the time before it, in an IVR,
/// is not known) to its exit.
fn from_queue_log(server: &str, rules: &Rules, mut visits: Vec<QueueVisit>) -> Option<HistoryCall> {
    visits.sort_by_key(|v| v.entered);
    let first = visits.first()?;
    let last = visits.last()?;
    // Still waiting or talking when the log ends: nothing to judge.
    let (exit_at, exit) = last.exit?;
    let mut c = blank_call(&first.callid, us(first.entered));
    c.first_inbound = true;
    c.first_kind = ChanKind::Trunk;
    c.caller_num = first.caller.as_deref().map(Into::into);
    c.routing = Some(crate::calls::record::LostAt::Queue);
    c.caller_app = App::Queue;
    for v in &visits {
        if let Some((at, member, _)) = &v.connected {
            let talk = v.calltime.unwrap_or(0).max(0) * 1_000_000;
            c.answered_at = Some(c.answered_at.map_or(us(*at), |a: i64| a.min(us(*at))));
            c.talk += talk;
            c.persons.push((member.as_str().into(), talk));
        }
        if let Some(r) = v.rung.last() {
            c.last_rung = Some(r.as_str().into());
        }
    }
    let ended = match (exit, last.connected.as_ref(), last.calltime) {
        (Exit::Completed { .. } | Exit::Transferred, Some((at, _, _)), Some(t)) => {
            (*at + jiff::SignedDuration::from_secs(t)).max(exit_at)
        }
        _ => exit_at,
    };
    c.caller_gone = Some(us(ended));
    c.ender = ender(&c, &[], Some(""), &visits);
    let mut rec = rules::verdict(server, rules, &c, ended, None);
    if rec.queue.is_none() && !last.queue.is_empty() {
        rec.queue = Some(last.queue.clone());
    }
    Some(HistoryCall {
        record: rec,
        queue: Some(last.queue.clone()),
        origin: "queue_log",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::record::{LostAt, Status};

    /// A FreePBX-style PBX: a SIP trunk, PJSIP phones, one cdr_csv row per CDR.
    fn cfg() -> Config {
        Config::from_toml_in(
            r#"
[pbx]
country_code = "7"
inbound_contexts = ["from-pstn"]
trunk_channels = ["PJSIP/provider-*"]
agent_channels = ["PJSIP/2??-*"]
external_channels = ["PJSIP/provider-*;out"]
[calls]
min_talk = "6s"
min_wait = "3s"
"#,
            "test",
            None,
        )
        .unwrap()
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    #[allow(clippy::too_many_arguments)]
    fn row(
        uid: &str,
        chan: &str,
        dst_chan: &str,
        (ctx, dst, app, data): (&str, &str, &str, &str),
        start: i64,
        answer: Option<i64>,
        end: i64,
        disp: &str,
    ) -> CdrRow {
        CdrRow {
            line: 1,
            src: "+79161234567".into(),
            dst: dst.into(),
            dcontext: ctx.into(),
            clid: "\"\" <+79161234567>".into(),
            channel: chan.into(),
            dstchannel: dst_chan.into(),
            lastapp: app.into(),
            lastdata: data.into(),
            start: at(start),
            answer: answer.map(at),
            end: at(end),
            duration: end - start,
            billsec: answer.map_or(0, |a| end - a),
            disposition: disp.into(),
            uniqueid: uid.into(),
            linkedid: None,
        }
    }

    fn one(rows: Vec<CdrRow>, visits: Vec<QueueVisit>) -> HistoryCall {
        let mut v = build("pbx", &cfg(), rows, visits);
        assert_eq!(v.len(), 1, "{v:#?}");
        v.remove(0)
    }

    const TRUNK: &str = "PJSIP/provider-00000001";

    #[test]
    fn a_queue_answer_with_a_short_talk_is_a_miss_and_a_long_one_is_answered() {
        // The queue answers the trunk at once; the agent picks up at 20 s. The CDR's billsec
        // (from the queue's answer) would say 24 s of talk; the agent's talk is 4 s.
        let q = ("from-queue", "400", "Queue", "sales,t,,,300");
        let short = one(
            vec![row(
                "1.1",
                TRUNK,
                "PJSIP/201-00000002",
                q,
                0,
                Some(0),
                24,
                "ANSWERED",
            )],
            vec![],
        );
        // Without its own row, the agent's answer is the row's: the CDR cannot tell the queue
        // wait from the talk (queue_log can, below).
        assert_eq!(short.record.status, Status::Answered);
        let visit = QueueVisit {
            callid: "1.1".into(),
            queue: "sales".into(),
            entered: at(0),
            caller: Some("+79161234567".into()),
            connected: Some((at(20), "Ivan Petrov".into(), 20)),
            exit: Some((at(24), Exit::Completed { by_caller: true })),
            calltime: Some(4),
            waittime: None,
            rung: vec![],
        };
        let exact = one(
            vec![row(
                "1.1",
                TRUNK,
                "PJSIP/201-00000002",
                q,
                0,
                Some(0),
                24,
                "ANSWERED",
            )],
            vec![visit.clone()],
        );
        assert!(exact.record.is_counted_miss(), "{:?}", exact.record);
        assert_eq!(exact.record.lost_at, Some(LostAt::Queue));
        assert_eq!(exact.record.agent.as_deref(), Some("201"));
        assert_eq!(exact.record.wait_secs, 20.0);
        assert_eq!(exact.record.hangup_by.as_deref(), Some("caller"));
        assert_eq!(exact.origin, "cdr+queue_log");
        assert_eq!(exact.queue.as_deref(), Some("sales"));
        let long = one(
            vec![row(
                "1.1",
                TRUNK,
                "PJSIP/201-00000002",
                q,
                0,
                Some(0),
                60,
                "ANSWERED",
            )],
            vec![QueueVisit {
                calltime: Some(40),
                exit: Some((at(60), Exit::Completed { by_caller: false })),
                ..visit
            }],
        );
        assert_eq!(long.record.status, Status::Answered);
        assert_eq!(long.record.talk_secs, 40.0);
    }

    #[test]
    fn voicemail_busy_and_a_hunt() {
        let vm = one(
            vec![
                row(
                    "1.1",
                    TRUNK,
                    "PJSIP/201-00000002",
                    ("from-did-direct", "201", "Dial", "PJSIP/201,20"),
                    0,
                    None,
                    20,
                    "NO ANSWER",
                ),
                row(
                    "1.1",
                    TRUNK,
                    "",
                    ("ext-local", "vmu201", "VoiceMail", "201@default,u"),
                    20,
                    Some(20),
                    40,
                    "ANSWERED",
                ),
            ],
            vec![],
        );
        assert!(vm.record.is_counted_miss());
        assert_eq!(vm.record.lost_at, Some(LostAt::Voicemail));
        assert_eq!(vm.record.agent.as_deref(), Some("201"));
        let busy = one(
            vec![row(
                "1.1",
                TRUNK,
                "",
                ("from-pstn", "74951110001", "Busy", "20"),
                0,
                None,
                1,
                "BUSY",
            )],
            vec![],
        );
        // Turned away within min_wait: a real miss, not an accidental call.
        assert!(busy.record.is_counted_miss(), "{:?}", busy.record);
        assert_eq!(busy.record.callee.as_deref(), Some("74951110001"));
        let hunt = one(
            vec![
                row(
                    "1.1",
                    TRUNK,
                    "PJSIP/201-00000002",
                    ("hunt", "600", "Dial", "PJSIP/201,10"),
                    0,
                    None,
                    10,
                    "NO ANSWER",
                ),
                row(
                    "1.1",
                    TRUNK,
                    "PJSIP/202-00000003",
                    ("hunt", "600", "Dial", "PJSIP/202,10"),
                    10,
                    None,
                    20,
                    "NO ANSWER",
                ),
            ],
            vec![],
        );
        assert_eq!(hunt.record.lost_at, Some(LostAt::Group));
        let quick = one(
            vec![row(
                "1.1",
                TRUNK,
                "PJSIP/201-00000002",
                ("from-did-direct", "201", "Dial", "PJSIP/201,20"),
                0,
                None,
                2,
                "NO ANSWER",
            )],
            vec![],
        );
        assert!(quick.record.ignored, "hung up within min_wait: accidental");
    }

    #[test]
    fn an_outbound_call_and_restarted_channel_numbers() {
        // Agent 201 calls the customer out of the trunk; billsec 30.
        let mut out = row(
            "5.1",
            "PJSIP/201-00000001",
            "PJSIP/provider-00000002",
            (
                "from-internal",
                "89161234567",
                "Dial",
                "PJSIP/89161234567@provider",
            ),
            0,
            Some(5),
            35,
            "ANSWERED",
        );
        out.src = "201".into();
        let o = one(vec![out.clone()], vec![]);
        assert_eq!(o.record.direction, Direction::Outbound);
        assert_eq!(o.record.callee_normalized.as_deref(), Some("79161234567"));
        assert_eq!(o.record.status, Status::Answered);
        assert_eq!(o.record.agent.as_deref(), Some("201"));
        // Asterisk restarted: the same channel names a day later are another call.
        let mut again = out;
        again.uniqueid = "9.1".into();
        again.start = at(86_400);
        again.answer = Some(at(86_405));
        again.end = at(86_435);
        let mut first = row(
            "5.1",
            "PJSIP/201-00000001",
            "PJSIP/provider-00000002",
            ("from-internal", "89161234567", "Dial", "x"),
            0,
            Some(5),
            35,
            "ANSWERED",
        );
        first.src = "201".into();
        assert_eq!(build("pbx", &cfg(), vec![first, again], vec![]).len(), 2);
    }

    #[test]
    fn newcdrcolumns_group_by_linkedid_and_internal_calls_are_left_out() {
        let mut a = row(
            "7.1",
            TRUNK,
            "",
            ("ivr", "s", "BackGround", "welcome"),
            0,
            Some(0),
            9,
            "ANSWERED",
        );
        a.linkedid = Some("7.1".into());
        let mut b = row(
            "7.5",
            "PJSIP/201-00000009",
            "",
            ("from-internal", "s", "Hangup", ""),
            3,
            Some(3),
            4,
            "ANSWERED",
        );
        b.linkedid = Some("7.1".into());
        let v = build("pbx", &cfg(), vec![a, b], vec![]);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].record.linkedid, "7.1");
        assert_eq!(v[0].record.lost_at, Some(LostAt::Ivr));
        let internal = row(
            "8.1",
            "PJSIP/201-0000000a",
            "PJSIP/202-0000000b",
            ("from-internal", "202", "Dial", "PJSIP/202"),
            0,
            Some(2),
            30,
            "ANSWERED",
        );
        assert!(build("pbx", &cfg(), vec![internal], vec![]).is_empty());
    }

    #[test]
    fn a_queue_visit_still_open_when_the_log_ends_is_not_judged() {
        let v = QueueVisit {
            callid: "1.1".into(),
            queue: "sales".into(),
            entered: at(0),
            caller: Some("+79161234567".into()),
            connected: None,
            exit: None,
            calltime: None,
            waittime: None,
            rung: vec![],
        };
        assert!(build("pbx", &cfg(), vec![], vec![v]).is_empty());
    }
}
