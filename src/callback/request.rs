//! What callers and agents tell perezvon through the dialplan (issue 14): "call me back"
//! (`PerezvonCallback`), "never call me back" (`PerezvonNoCall`) and an agent's disposition of a
//! callback (`PerezvonDisposition`), all sent with Asterisk's `UserEvent()` application and
//! read here from the AMI `UserEvent` event. Plus the small domain types they feed: a task's
//! kind, its owner, and dispositions.
//!
//! Grammar accepted (header names case-insensitive, as everywhere in AMI):
//! ```text
//! Event: UserEvent
//! UserEvent: PerezvonCallback | PerezvonNoCall | PerezvonDisposition
//! Uniqueid: <channel>            Linkedid: <call>          (the channel snapshot Asterisk adds)
//! CallerIDNum: <caller number>
//! Number: <digits>               optional: the number to call back instead (DTMF), or, for a
//!                                disposition, the customer when no CallbackID is at hand
//! Queue: <queue>                 optional: the queue the caller waited in
//! Joined: <epoch seconds>        optional: when the caller joined it (`${EPOCH}` saved before
//!                                Queue()); default: the Linkedid's epoch part, else the event
//! CallbackID: <pzv-...>          disposition: the callback call (`${PEREZVON_CALLBACK_ID}`);
//!                                without it and without Number: the agent's latest callback
//! Disposition: resolved | call_later | wrong_number | do_not_call
//! Agent: <who>                   disposition: who marked it (`${CALLERID(num)}`)
//! ```
//! Parsing is pure: the dialer normalises the numbers (with the `[pbx]` plan) and puts them
//! through the same toll-fraud guard as any missed caller's.

use crate::ami::Message;
use jiff::Timestamp;

/// Where a task came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TaskKind {
    /// A missed call (the tracker's verdict).
    #[default]
    Missed,
    /// The caller asked for a callback ("press 1").
    Requested,
}

impl TaskKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Missed => "missed",
            TaskKind::Requested => "requested",
        }
    }
    pub fn parse(s: &str) -> Option<TaskKind> {
        [TaskKind::Missed, TaskKind::Requested]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// Who a task belongs to and where the caller waited: what decides its target and its place.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Routing {
    pub kind: TaskKind,
    /// The agent (as the call records name them, e.g. `201`) who last talked with this
    /// customer, or whose own number the customer called: attempts go to them first.
    pub owner: Option<String>,
    /// Until this instant attempts wait for the owner; after it (or once the owner missed an
    /// attempt: it is set to that attempt's end) they go to the group.
    pub owner_until: Option<Timestamp>,
    /// Requested: the queue the caller waited in (no attempt while callers wait there).
    pub queue: Option<String>,
    /// Requested: when the caller first joined the queue (their place in line).
    pub joined_at: Option<Timestamp>,
}

impl Routing {
    /// The owner to call through at `now`, if still theirs.
    pub fn owner_at(&self, now: Timestamp) -> Option<&str> {
        match (&self.owner, self.owner_until) {
            (Some(o), Some(until)) if now < until => Some(o),
            _ => None,
        }
    }
}

/// An agent's verdict on a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Disposition {
    Resolved,
    CallLater,
    WrongNumber,
    DoNotCall,
}

impl Disposition {
    pub const ALL: [Disposition; 4] = [
        Disposition::Resolved,
        Disposition::CallLater,
        Disposition::WrongNumber,
        Disposition::DoNotCall,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Resolved => "resolved",
            Disposition::CallLater => "call_later",
            Disposition::WrongNumber => "wrong_number",
            Disposition::DoNotCall => "do_not_call",
        }
    }
    /// Also accepts `-` for `_` and any case (`call-later`, `DNC` for do_not_call).
    pub fn parse(s: &str) -> Option<Disposition> {
        let s = s.trim().to_ascii_lowercase().replace('-', "_");
        if s == "dnc" {
            return Some(Disposition::DoNotCall);
        }
        Disposition::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

/// A request read from a `UserEvent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserRequest {
    /// "Call me back" (press 1).
    Callback(CallbackRequest),
    /// "Never call me back" (press 9): the caller's number goes on the do-not-call list.
    NoCall { caller: String, linkedid: String },
    /// An agent's disposition of a callback.
    Disposition(DispositionRequest),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackRequest {
    pub uniqueid: String,
    pub linkedid: String,
    /// The caller's number as delivered (`CallerIDNum`).
    pub caller: Option<String>,
    /// The number entered by DTMF, if any (raw: normalised by the dialer).
    pub number: Option<String>,
    pub queue: Option<String>,
    pub joined_at: Option<Timestamp>,
}

impl CallbackRequest {
    /// The number to call back: the one entered, else the caller's.
    pub fn wanted(&self) -> Option<&str> {
        self.number.as_deref().or(self.caller.as_deref())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispositionRequest {
    pub disposition: Disposition,
    pub callback_id: Option<String>,
    pub number: Option<String>,
    pub agent: Option<String>,
}

/// Why a perezvon `UserEvent` could not be used (logged; the event is dropped).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("{0}: no Linkedid")]
    NoLinkedid(&'static str),
    #[error("PerezvonNoCall: no CallerIDNum")]
    NoCaller,
    #[error("PerezvonDisposition: Disposition {0:?} is not resolved, call_later, wrong_number or do_not_call")]
    BadDisposition(String),
    #[error("PerezvonDisposition: none of CallbackID, Number, Agent")]
    NoSubject,
}

/// An AMI header value, trimmed; `None` when absent, empty or an unset dialplan variable.
fn field(m: &Message, name: &str) -> Option<String> {
    let v = m.get_str(name)?;
    let v = v.trim();
    if v.is_empty() || v == "<unknown>" {
        None
    } else {
        Some(v.to_string())
    }
}

/// The epoch seconds a default Asterisk Uniqueid/Linkedid starts with (`1733212345.12`): the
/// moment the call's first channel was created.
fn id_epoch(id: &str) -> Option<Timestamp> {
    let secs: i64 = id.split('.').next()?.parse().ok()?;
    // A `systemname`-prefixed id, or garbage, is not a plausible time.
    (secs > 946_684_800).then(|| Timestamp::from_second(secs).ok())?
}

/// Reads a perezvon `UserEvent`. `Ok(None)`: not one of ours (any other event, or another
/// `UserEvent`).
pub fn parse(m: &Message) -> Result<Option<UserRequest>, RequestError> {
    if !m.is(b"Event", b"UserEvent") {
        return Ok(None);
    }
    let Some(name) = field(m, "UserEvent") else {
        return Ok(None);
    };
    match name.to_ascii_lowercase().as_str() {
        "perezvoncallback" => {
            let linkedid =
                field(m, "Linkedid").ok_or(RequestError::NoLinkedid("PerezvonCallback"))?;
            let joined_at = field(m, "Joined")
                .and_then(|j| j.split('.').next()?.parse::<i64>().ok())
                .and_then(|s| Timestamp::from_second(s).ok())
                .or_else(|| id_epoch(&linkedid));
            Ok(Some(UserRequest::Callback(CallbackRequest {
                uniqueid: field(m, "Uniqueid").unwrap_or_else(|| linkedid.clone()),
                caller: field(m, "CallerIDNum"),
                number: field(m, "Number"),
                queue: field(m, "Queue"),
                joined_at,
                linkedid,
            })))
        }
        "perezvonnocall" => {
            let linkedid =
                field(m, "Linkedid").ok_or(RequestError::NoLinkedid("PerezvonNoCall"))?;
            let caller = field(m, "CallerIDNum").ok_or(RequestError::NoCaller)?;
            Ok(Some(UserRequest::NoCall { caller, linkedid }))
        }
        "perezvondisposition" => {
            let raw = field(m, "Disposition").unwrap_or_default();
            let disposition =
                Disposition::parse(&raw).ok_or(RequestError::BadDisposition(raw.clone()))?;
            let callback_id = field(m, "CallbackID");
            let number = field(m, "Number");
            let agent = field(m, "Agent");
            if callback_id.is_none() && number.is_none() && agent.is_none() {
                return Err(RequestError::NoSubject);
            }
            Ok(Some(UserRequest::Disposition(DispositionRequest {
                disposition,
                callback_id,
                number,
                agent,
            })))
        }
        _ => Ok(None),
    }
}

/// The caller name an agent sees on a callback: `template` with `{number}` (as dialled, with a
/// `+`) and `{count}` (how often the customer was missed) filled, and anything the CallerID
/// header cannot carry (quotes, `<>`, line breaks, commas) dropped.
pub fn agent_caller_name(template: &str, number: &str, missed: u32) -> String {
    template
        .replace("{number}", &format!("+{number}"))
        .replace("{count}", &missed.to_string())
        .chars()
        .filter(|c| !matches!(c, '"' | '<' | '>' | '\r' | '\n' | ',' | '\\'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(pairs: &[(&str, &str)]) -> Message {
        let mut all = vec![("Event", "UserEvent")];
        all.extend_from_slice(pairs);
        Message::from_pairs(&all)
    }

    #[test]
    fn a_callback_request_with_an_entered_number_and_queue() {
        let m = ev(&[
            ("Channel", "PJSIP/trunk-00000001"),
            ("CallerIDNum", "+79161234567"),
            ("Uniqueid", "1764755000.12"),
            ("Linkedid", "1764755000.11"),
            ("UserEvent", "PerezvonCallback"),
            ("Number", "89031234567"),
            ("Queue", "sales"),
            ("Joined", "1764754990"),
        ]);
        let Ok(Some(UserRequest::Callback(r))) = parse(&m) else {
            panic!("{:?}", parse(&m));
        };
        assert_eq!(r.wanted(), Some("89031234567"));
        assert_eq!(r.queue.as_deref(), Some("sales"));
        assert_eq!(r.joined_at.unwrap().as_second(), 1764754990);
        assert_eq!(r.linkedid, "1764755000.11");
    }

    #[test]
    fn joined_defaults_to_the_linkedid_epoch_and_unset_variables_are_absent() {
        let m = ev(&[
            ("CallerIDNum", "79161234567"),
            ("Linkedid", "1764755000.11"),
            ("UserEvent", "perezvoncallback"),
            ("Number", ""),
            ("Joined", ""),
        ]);
        let Ok(Some(UserRequest::Callback(r))) = parse(&m) else {
            panic!()
        };
        assert_eq!(r.wanted(), Some("79161234567"));
        assert_eq!(r.joined_at.unwrap().as_second(), 1764755000);
        // A systemname-prefixed Linkedid has no time in it.
        let m = ev(&[
            ("Linkedid", "pbx1-1764755000.11"),
            ("UserEvent", "PerezvonCallback"),
        ]);
        let Ok(Some(UserRequest::Callback(r))) = parse(&m) else {
            panic!()
        };
        assert_eq!(r.joined_at, None);
        assert_eq!(r.wanted(), None);
    }

    #[test]
    fn dispositions_and_errors() {
        let m = ev(&[
            ("UserEvent", "PerezvonDisposition"),
            ("CallbackID", "pzv-4-1-0000abcd"),
            ("Disposition", "Call-Later"),
            ("Agent", "201"),
        ]);
        assert_eq!(
            parse(&m),
            Ok(Some(UserRequest::Disposition(DispositionRequest {
                disposition: Disposition::CallLater,
                callback_id: Some("pzv-4-1-0000abcd".into()),
                number: None,
                agent: Some("201".into()),
            })))
        );
        let bad = ev(&[
            ("UserEvent", "PerezvonDisposition"),
            ("Number", "79161234567"),
            ("Disposition", "maybe"),
        ]);
        assert_eq!(
            parse(&bad),
            Err(RequestError::BadDisposition("maybe".into()))
        );
        let none = ev(&[("UserEvent", "PerezvonDisposition"), ("Disposition", "dnc")]);
        assert_eq!(parse(&none), Err(RequestError::NoSubject));
        let nocall = ev(&[("UserEvent", "PerezvonNoCall"), ("Linkedid", "1.2")]);
        assert_eq!(parse(&nocall), Err(RequestError::NoCaller));
        let other = ev(&[("UserEvent", "SomethingElse")]);
        assert_eq!(parse(&other), Ok(None));
        let not_user = Message::from_pairs(&[("Event", "Hangup")]);
        assert_eq!(parse(&not_user), Ok(None));
    }

    #[test]
    fn the_agent_caller_name_cannot_break_the_callerid_header() {
        assert_eq!(
            agent_caller_name("{number} missed {count}x", "79161234567", 3),
            "+79161234567 missed 3x"
        );
        assert_eq!(agent_caller_name("\"a\" <b>,\r\n{count}", "1", 1), "a b1");
    }

    #[test]
    fn owner_expires() {
        let t = Timestamp::from_second(1_764_755_000).unwrap();
        let r = Routing {
            owner: Some("201".into()),
            owner_until: Some(t),
            ..Routing::default()
        };
        assert_eq!(
            r.owner_at(t - jiff::SignedDuration::from_secs(1)),
            Some("201")
        );
        assert_eq!(r.owner_at(t), None);
    }
}
