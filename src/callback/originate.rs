//! The Originate action and what comes back from it.
//!
//! Owns the one guarantee the toll-fraud guard rests on: the only way to put a customer number
//! into an Originate is a [`DialNumber`], and the only way to make one is [`DialNumber::check`]:
//! digits only, a plausible length, matching the allow-list and none of the deny-list. A number
//! with CR/LF, letters, a `+` in the middle or outside the allow-list is a type error away from
//! the wire, whatever its source (a tracker record, the database, the CLI).
//!
//! Shape of a callback (lab-verified for customer-first, `fixtures/asterisk-22/callback_*`):
//! ```text
//! Action: Originate
//! ActionID: <callback id>
//! Channel: <dial_template with the number>          customer-first: the customer
//! Context/Exten/Priority  or  Application/Data      where the answered customer goes
//! CallerID: "<caller_name>" <caller_id>
//! Timeout: <originate_timeout ms>
//! Async: true
//! ChannelId: <callback id>-c                        Uniqueid (= Linkedid) of the callback
//! OtherChannelId: <callback id>-d                   the Local ;2, when the channel is Local
//! Variable: <marker_variable>=<callback id>
//! ```
//! Agent-first swaps the sides: the Channel is the agent side (the endpoint, `Local/<queue>@
//! <agent_context>`, or `Local/<exten>@<context>`), and once a person answers it runs
//! `Dial(<customer dial string>,<timeout>)`. OriginateResponse then reports the *agent* leg.
//!
//! Outcome mapping is pinned on the captures of both labs (AMI.md §4, §5i;
//! `fixtures/asterisk-22-pjsip`): Reason 4 = answered (the only Success), 3 = still ringing at
//! Timeout, 1 = hung up before answer, 5 = busy, 8 = congestion, 0 = no control frame: the
//! channel was never set up, *or* a real SIP failure whose cause did not reach the Reason (a
//! busy customer's 486 is `Failure/0`). A Reason that does not name the outcome waits for the
//! tracker's record of the call ([`ResponseVerdict::AwaitRecord`]), which reads the channels.

use std::fmt;

use crate::ami::Message;
use crate::calls::record::{CallRecord, CallbackOutcome};
use crate::config::{CallbackConfig, CallbackMode, Target};
use crate::number::{KindGuard, KindRefusal, NumberKind, NumberPlan};

/// Asterisk reads an action line into `char inbuf[1025]`: keep every line, CRLF included, below.
const MAX_LINE: usize = 1024;

/// A customer number that may be dialled: international digits without `+`, 3..=15 of them,
/// allowed by `callback.allow`, not denied by `callback.deny`, and of a kind and country
/// `callback.allow_kinds`/`allow_countries` admit when they are set.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct DialNumber(String);

/// Why a number may not be dialled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("not a number: only digits may be dialled")]
    NotDigits,
    #[error("implausible length (3 to 15 digits)")]
    Length,
    #[error("outside callback.allow (toll-fraud guard)")]
    NotAllowed,
    #[error("matches callback.deny")]
    Denied,
    #[error("not a valid number of any numbering plan (callback.allow_kinds/allow_countries)")]
    NotValid,
    #[error("a {0} number, outside callback.allow_kinds (toll-fraud guard)")]
    Kind(NumberKind),
    #[error("outside callback.allow_countries (toll-fraud guard)")]
    Country,
    /// On the do-not-call list (`perezvon dnc`, `callback.dnc_file`, "press 9", a disposition).
    #[error("on the do-not-call list")]
    DoNotCall,
}

impl DialNumber {
    /// Validates a normalised number (`79161234567`) against the regex lists.
    pub fn check(
        normalized: &str,
        allow: &[regex::Regex],
        deny: &[regex::Regex],
    ) -> Result<DialNumber, Rejected> {
        Self::check_guarded(normalized, allow, deny, &KindGuard::default())
    }

    /// Validates a normalised number against the regex lists, then against
    /// `callback.allow_kinds`/`allow_countries`: it must pass both.
    pub fn check_guarded(
        normalized: &str,
        allow: &[regex::Regex],
        deny: &[regex::Regex],
        kinds: &KindGuard,
    ) -> Result<DialNumber, Rejected> {
        if !normalized.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Rejected::NotDigits);
        }
        if !(3..=15).contains(&normalized.len()) {
            return Err(Rejected::Length);
        }
        // An empty allow-list allows nothing: the guard fails closed.
        if !allow.iter().any(|r| r.is_match(normalized)) {
            return Err(Rejected::NotAllowed);
        }
        if deny.iter().any(|r| r.is_match(normalized)) {
            return Err(Rejected::Denied);
        }
        kinds.check(normalized).map_err(|r| match r {
            KindRefusal::Invalid => Rejected::NotValid,
            KindRefusal::Kind(k) => Rejected::Kind(k),
            KindRefusal::Country => Rejected::Country,
        })?;
        Ok(DialNumber(normalized.to_string()))
    }

    /// [`DialNumber::check_guarded`], and not on the do-not-call list `dnc` (normalised
    /// numbers): what every Originate's number goes through.
    pub fn check_consented(
        normalized: &str,
        allow: &[regex::Regex],
        deny: &[regex::Regex],
        kinds: &KindGuard,
        dnc: &std::collections::HashSet<String>,
    ) -> Result<DialNumber, Rejected> {
        let n = Self::check_guarded(normalized, allow, deny, kinds)?;
        if dnc.contains(n.as_str()) {
            return Err(Rejected::DoNotCall);
        }
        Ok(n)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for DialNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DialNumber({})", self.0)
    }
}

impl fmt::Display for DialNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The identifiers of one attempt. All derive from the callback id, so an OriginateResponse
/// (ActionID), the channels (Uniqueid/Linkedid) and the marker variable all lead to the attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackIds {
    /// `pzv-<task>-<attempt>-<nonce>`: the marker variable's value and the ActionID.
    pub callback_id: String,
    pub channel_id: String,
    pub other_channel_id: String,
}

impl CallbackIds {
    /// `nonce` keeps ids unique when a database is re-created while Asterisk still remembers
    /// old Uniqueids (ChannelId must not collide with a live channel).
    pub fn new(task_id: i64, attempt_no: u32, nonce: u32) -> CallbackIds {
        let callback_id = format!("pzv-{task_id}-{attempt_no}-{nonce:08x}");
        CallbackIds {
            channel_id: format!("{callback_id}-c"),
            other_channel_id: format!("{callback_id}-d"),
            callback_id,
        }
    }

    /// The ActionID of the Originate (equal to the callback id: it is already unique).
    pub fn action_id(&self) -> &str {
        &self.callback_id
    }
}

/// The part of `[callback]` an Originate is built from.
#[derive(Debug, Clone)]
pub struct OriginateSettings {
    pub mode: CallbackMode,
    pub dial_template: String,
    pub caller_id: String,
    pub caller_name: String,
    pub originate_timeout_ms: u64,
    pub marker_variable: String,
    /// Context a queue is dialled in for agent-first (`Local/<queue>@<agent_context>`).
    pub agent_context: String,
    pub numbers: NumberPlan,
    /// Issue 14: what the agent hears and sees, what the customer hears.
    pub announce: Announce,
}

/// `callback.announce`, `customer_prompt` and `agent_caller_name`: the agent hears a short
/// announcement before the bridge and sees the customer's number and "missed N×"; the customer
/// may hear a prompt. How each reaches Asterisk (stock applications, no dialplan needed):
///
/// | target | customer-first | agent-first |
/// |---|---|---|
/// | queue | `Queue(<q>,,,<announce>)`: announceoverride, played to the member | `Dial(<customer>,<t>,A(<prompt>:<announce>))` |
/// | endpoint | `Dial(<e>,<t>,A(<announce>:<prompt>))` | same as queue |
/// | dialplan | variables only (below) | same as queue |
///
/// `Dial`'s `A(x:y)` plays x to the called party and y to the caller (Asterisk 19+). Every
/// Originate also carries `PEREZVON_ANNOUNCE`, `PEREZVON_CUSTOMER_PROMPT`,
/// `PEREZVON_CALLER_NAME` and `PEREZVON_MISSED` (when set) for a dialplan target. The caller
/// name: agent-first, it is the CallerID name of the Originate (the agent leg); customer-first,
/// the customer leg carries `caller_name` (what the customer sees), so the agent's display needs
/// a dialplan target that sets `CALLERID(name)=${PEREZVON_CALLER_NAME}` before `Queue()`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Announce {
    pub announce: Option<String>,
    pub customer_prompt: Option<String>,
    /// With `{number}` and `{count}`.
    pub agent_caller_name: Option<String>,
}

impl Announce {
    /// `A(x:y)` for Dial, `x` to the called party and `y` to the caller; `None` when neither.
    fn dial_option(called: Option<&str>, caller: Option<&str>) -> Option<String> {
        match (called, caller) {
            (None, None) => None,
            (Some(x), None) => Some(format!("A({x})")),
            (x, Some(y)) => Some(format!("A({}:{y})", x.unwrap_or(""))),
        }
    }
}

impl OriginateSettings {
    pub fn from_config(cb: &CallbackConfig, numbers: &NumberPlan) -> OriginateSettings {
        OriginateSettings {
            mode: cb.mode,
            dial_template: cb.dial_template.clone(),
            caller_id: cb.caller_id.clone(),
            caller_name: cb.caller_name.clone(),
            originate_timeout_ms: cb.originate_timeout.as_millis().min(u128::from(u32::MAX)) as u64,
            marker_variable: cb.marker_variable.clone(),
            agent_context: cb.agent_context.clone(),
            numbers: numbers.clone(),
            announce: Announce {
                announce: cb.request.announce.clone(),
                customer_prompt: cb.request.customer_prompt.clone(),
                agent_caller_name: cb.request.agent_caller_name.clone(),
            },
        }
    }

    /// The customer's dial string: the template with `{number}`, `{e164}`, `{national}` filled.
    pub fn dial_string(&self, n: &DialNumber) -> String {
        self.dial_template
            .replace("{number}", n.as_str())
            .replace("{e164}", &self.numbers.e164(n.as_str()))
            .replace("{national}", &self.numbers.national(n.as_str()))
    }
}

/// Why an Originate could not be built (the configuration let through something the wire
/// cannot carry; the attempt fails rather than sending a broken action).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("header {0} would contain a line break")]
    LineBreak(&'static str),
    #[error("header {0} would be {1} bytes, Asterisk reads at most {MAX_LINE}")]
    TooLong(&'static str, usize),
    #[error("variable value would contain a comma (Asterisk splits Variable values on commas)")]
    CommaInVariable,
}

/// A ready-to-send Originate: validated headers in wire order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginateRequest {
    pub ids: CallbackIds,
    pub number: DialNumber,
    /// Where the answered call goes ([`Target::key`]), for concurrency and the attempt row.
    pub target_key: String,
    headers: Vec<(&'static str, String)>,
}

impl OriginateRequest {
    pub fn build(
        s: &OriginateSettings,
        number: &DialNumber,
        target: &Target,
        ids: CallbackIds,
    ) -> Result<OriginateRequest, BuildError> {
        Self::build_for(s, number, target, ids, 1)
    }

    /// [`OriginateRequest::build`] for a customer missed `missed` times (the agent's caller
    /// name says so, see [`Announce`]).
    pub fn build_for(
        s: &OriginateSettings,
        number: &DialNumber,
        target: &Target,
        ids: CallbackIds,
        missed: u32,
    ) -> Result<OriginateRequest, BuildError> {
        let an = &s.announce;
        let agent_name = an
            .agent_caller_name
            .as_deref()
            .map(|t| super::request::agent_caller_name(t, number.as_str(), missed));
        let customer = s.dial_string(number);
        let timeout_secs = s.originate_timeout_ms.div_ceil(1000).max(1);
        let mut h: Vec<(&'static str, String)> = Vec::with_capacity(13);
        h.push(("Action", "Originate".into()));
        h.push(("ActionID", ids.action_id().to_string()));
        match s.mode {
            CallbackMode::CustomerFirst => {
                h.push(("Channel", customer));
                match target {
                    Target::Dialplan {
                        context,
                        exten,
                        priority,
                    } => {
                        h.push(("Context", context.clone()));
                        h.push(("Exten", exten.clone()));
                        h.push(("Priority", priority.to_string()));
                    }
                    // Stock Queue()/Dial() as the application: no dialplan needed on the PBX.
                    Target::Queue(q) => {
                        h.push(("Application", "Queue".into()));
                        // Queue(queuename,options,URL,announceoverride): played to the member.
                        h.push((
                            "Data",
                            match &an.announce {
                                Some(a) => format!("{q},,,{a}"),
                                None => q.clone(),
                            },
                        ));
                    }
                    Target::Endpoint(e) => {
                        h.push(("Application", "Dial".into()));
                        let opt = Announce::dial_option(
                            an.announce.as_deref(),
                            an.customer_prompt.as_deref(),
                        );
                        h.push((
                            "Data",
                            match opt {
                                Some(o) => format!("{e},{timeout_secs},{o}"),
                                None => format!("{e},{timeout_secs}"),
                            },
                        ));
                    }
                }
            }
            CallbackMode::AgentFirst => {
                let agent = match target {
                    Target::Dialplan { context, exten, .. } => format!("Local/{exten}@{context}"),
                    Target::Queue(q) => format!("Local/{q}@{}", s.agent_context),
                    Target::Endpoint(e) => e.clone(),
                };
                h.push(("Channel", agent));
                h.push(("Application", "Dial".into()));
                // The customer is the called party here, the agent the caller.
                let opt =
                    Announce::dial_option(an.customer_prompt.as_deref(), an.announce.as_deref());
                h.push((
                    "Data",
                    match opt {
                        Some(o) => format!("{customer},{timeout_secs},{o}"),
                        None => format!("{customer},{timeout_secs}"),
                    },
                ));
            }
        }
        // Agent-first, the originated channel is the agent's: its CallerID is what they see.
        let shown_name = match (s.mode, &agent_name) {
            (CallbackMode::AgentFirst, Some(n)) => n.as_str(),
            _ => s.caller_name.as_str(),
        };
        h.push(("CallerID", format!("\"{shown_name}\" <{}>", s.caller_id)));
        h.push(("Timeout", s.originate_timeout_ms.to_string()));
        h.push(("Async", "true".into()));
        h.push(("ChannelId", ids.channel_id.clone()));
        h.push(("OtherChannelId", ids.other_channel_id.clone()));
        if ids.callback_id.contains(',') {
            return Err(BuildError::CommaInVariable);
        }
        h.push((
            "Variable",
            format!("{}={}", s.marker_variable, ids.callback_id),
        ));
        let vars = [
            ("PEREZVON_ANNOUNCE", an.announce.clone()),
            ("PEREZVON_CUSTOMER_PROMPT", an.customer_prompt.clone()),
            ("PEREZVON_CALLER_NAME", agent_name),
            (
                "PEREZVON_MISSED",
                an.agent_caller_name.as_ref().map(|_| missed.to_string()),
            ),
        ];
        for (name, value) in vars {
            if let Some(v) = value {
                if v.contains(',') {
                    return Err(BuildError::CommaInVariable);
                }
                h.push(("Variable", format!("{name}={v}")));
            }
        }
        for (k, v) in &h {
            if v.contains(['\r', '\n']) {
                return Err(BuildError::LineBreak(k));
            }
            let line = k.len() + 2 + v.len() + 2;
            if line >= MAX_LINE {
                return Err(BuildError::TooLong(k, line));
            }
        }
        Ok(OriginateRequest {
            ids,
            number: number.clone(),
            target_key: target.key(),
            headers: h,
        })
    }

    /// The headers in wire order, `Action: Originate` first.
    pub fn headers(&self) -> &[(&'static str, String)] {
        &self.headers
    }

    /// The action for the AMI client (which re-checks every line before it reaches the wire).
    pub fn to_action(&self) -> crate::ami::Action {
        let mut a = crate::ami::Action::new("Originate");
        for (k, v) in &self.headers {
            match *k {
                "Action" => {}
                "ActionID" => a = a.action_id(v),
                "Variable" => match v.split_once('=') {
                    Some((n, val)) => a = a.variable(n, val),
                    None => a = a.header(k, v),
                },
                _ => a = a.header(k, v),
            }
        }
        a
    }

    /// The action as an AMI message (for fakes, logs and tests).
    pub fn to_message(&self) -> Message {
        Message::from_pairs(&self.headers)
    }
}

/// An `OriginateResponse` event, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginateResponse {
    pub action_id: String,
    pub success: bool,
    /// The last control frame (§4); `None` when the header is missing or not a number.
    pub reason: Option<i64>,
    /// The originated channel's Uniqueid; `None` on failure (`<unknown>`).
    pub uniqueid: Option<String>,
}

impl OriginateResponse {
    /// `Some` for an `Event: OriginateResponse` with an ActionID.
    pub fn parse(m: &Message) -> Option<OriginateResponse> {
        if !m.is(b"Event", b"OriginateResponse") {
            return None;
        }
        let action_id = m.get_str("ActionID")?.into_owned();
        Some(OriginateResponse {
            action_id,
            success: m.is(b"Response", b"Success"),
            reason: m.get_str("Reason").and_then(|r| r.trim().parse().ok()),
            uniqueid: m
                .get_str("Uniqueid")
                .filter(|u| !u.is_empty() && u != "<unknown>")
                .map(|u| u.into_owned()),
        })
    }
}

/// What an OriginateResponse says about an attempt.
///
/// Asterisk's `Reason` is the last control frame the first leg sent (`pbx_dial_reason`,
/// main/pbx.c), and it often does not say what happened: with real SIP a busy customer (486)
/// comes back as `Failure` with Reason 0 (the dial's cause is lost), exactly like a channel that
/// could not be created at all. Only the channels tell those apart (the customer leg's
/// `DialEnd BUSY`, `Hangup Cause: 17`), and the tracker's record of the callback call reads them:
/// that record, not the Reason, gives the outcome. See [`ResponseVerdict`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseVerdict {
    /// The first leg answered; the final outcome comes from the tracker's callback record.
    Answered,
    /// The Reason names the outcome (1/3 ringing or hung up, 5 busy, 8 congestion): the
    /// attempt is over.
    Final(CallbackOutcome),
    /// The Reason does not say what happened (0, or a code that names no outcome): wait for the
    /// tracker's record of the call, which it emits for every originated channel, failed ones
    /// included, as soon as the channels are gone (normally within milliseconds of the
    /// response). `fallback` is what the Reason suggests, for when no record comes because no
    /// channel was ever created (an unknown endpoint, a trunk that is down).
    AwaitRecord { fallback: CallbackOutcome },
}

/// Maps an OriginateResponse to a verdict. In customer-first the first leg is the customer; in
/// agent-first it is the agent side, so "did not answer" there means no person took it.
pub fn read_response(mode: CallbackMode, success: bool, reason: Option<i64>) -> ResponseVerdict {
    use CallbackOutcome as O;
    if success || reason == Some(4) {
        return ResponseVerdict::Answered;
    }
    match (mode, reason) {
        (CallbackMode::CustomerFirst, Some(1 | 3)) => ResponseVerdict::Final(O::NoAnswer),
        (CallbackMode::CustomerFirst, Some(5)) => ResponseVerdict::Final(O::Busy),
        (CallbackMode::AgentFirst, Some(1 | 3 | 5)) => ResponseVerdict::Final(O::AgentMissed),
        // Congestion: the network refused the call.
        (_, Some(8)) => ResponseVerdict::Final(O::Failed),
        // 0 = "no frame": never set up, or a SIP failure whose cause was lost (busy!).
        _ => ResponseVerdict::AwaitRecord {
            fallback: O::Failed,
        },
    }
}

/// The two-way view of [`read_response`] the dialer uses today: an attempt answered, or over.
/// It cannot wait for the tracker's record, so [`ResponseVerdict::AwaitRecord`] becomes its
/// `fallback` here (a busy SIP customer is counted `failed`); a dialer that handles
/// `AwaitRecord` should call [`read_response`] instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginateVerdict {
    /// The first leg answered; the final outcome comes from the tracker's callback record.
    Answered,
    /// The attempt is over.
    Final(CallbackOutcome),
}

/// [`read_response`] without the wait for the record (see [`OriginateVerdict`]).
pub fn classify_response(
    mode: CallbackMode,
    success: bool,
    reason: Option<i64>,
) -> OriginateVerdict {
    match read_response(mode, success, reason) {
        ResponseVerdict::Answered => OriginateVerdict::Answered,
        ResponseVerdict::Final(o) | ResponseVerdict::AwaitRecord { fallback: o } => {
            OriginateVerdict::Final(o)
        }
    }
}

/// The final outcome of an attempt, from the tracker's record of the callback call. The
/// tracker's own classification wins (it reads what the channels did); without one, the
/// conversation decides: a person answered (`answered_at`) and talked at least `min_talk`.
/// No conversation is never `connected`, not even with `min_talk` at 0.
pub fn outcome_from_record(
    mode: CallbackMode,
    rec: &CallRecord,
    min_talk_secs: f64,
) -> CallbackOutcome {
    if let Some(o) = rec.callback_outcome {
        return o;
    }
    let conversation = rec.answered_at.is_some();
    if conversation && rec.talk_secs >= min_talk_secs {
        CallbackOutcome::Connected
    } else if conversation {
        CallbackOutcome::TooShort
    } else {
        match mode {
            CallbackMode::CustomerFirst => CallbackOutcome::AgentMissed,
            // The agent answered and the customer never did.
            CallbackMode::AgentFirst => CallbackOutcome::NoAnswer,
        }
    }
}

/// QueueStatus reply items: how many members of the queue are free (not paused, device not in
/// use)? `Status: 1` is AST_DEVICE_NOT_INUSE.
pub fn queue_free_members(items: &[Message], queue: &str) -> u32 {
    items
        .iter()
        .filter(|m| {
            m.is(b"Event", b"QueueMember")
                && m.get_str("Queue").is_none_or(|q| q == queue)
                && m.get_str("Paused").as_deref() != Some("1")
                && m.get_str("Status").as_deref() == Some("1")
        })
        .count() as u32
}

/// QueueStatus reply items: how many callers wait in the queue? `QueueParams`' `Calls`, or, when
/// that is missing, the `QueueEntry` items (one per waiting caller).
pub fn queue_waiting_callers(items: &[Message], queue: &str) -> u32 {
    let of_queue = |m: &&Message| m.get_str("Queue").is_none_or(|q| q == queue);
    let params = items
        .iter()
        .filter(|m| m.is(b"Event", b"QueueParams"))
        .filter(of_queue)
        .find_map(|m| {
            m.get_str("Calls")
                .and_then(|c| c.trim().parse::<u32>().ok())
        });
    params.unwrap_or_else(|| {
        items
            .iter()
            .filter(|m| m.is(b"Event", b"QueueEntry"))
            .filter(of_queue)
            .count() as u32
    })
}

/// QueueSummary reply items (`Event: QueueSummary`: Queue, LoggedIn, Available, Callers, ...):
/// the load of each queue listed. A missing or non-numeric count reads as 0 available and, for
/// callers, as one waiting: an unreadable summary must not free agents for callbacks.
pub fn queue_summaries(items: &[Message]) -> Vec<crate::callback::guard::QueueLoad> {
    let num = |m: &Message, k: &str| m.get_str(k).and_then(|v| v.trim().parse::<u32>().ok());
    items
        .iter()
        .filter(|m| m.is(b"Event", b"QueueSummary"))
        .filter_map(|m| {
            Some(crate::callback::guard::QueueLoad {
                queue: m.get_str("Queue")?.into_owned(),
                logged_in: num(m, "LoggedIn").unwrap_or(0),
                available: num(m, "Available").unwrap_or(0),
                callers: num(m, "Callers").unwrap_or(1),
            })
        })
        .collect()
}

/// QueueStatus reply items: the queues `device` (e.g. `PJSIP/201`) is a member of, by its
/// interface or its state interface.
pub fn queues_of_member(items: &[Message], device: &str) -> Vec<String> {
    let mut out: Vec<String> = items
        .iter()
        .filter(|m| m.is(b"Event", b"QueueMember"))
        .filter(|m| {
            ["Location", "Interface", "StateInterface"]
                .iter()
                .any(|k| m.get_str(k).is_some_and(|v| v.eq_ignore_ascii_case(device)))
        })
        .filter_map(|m| m.get_str("Queue").map(|q| q.into_owned()))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// DeviceStateList reply items: is `device` (e.g. `PJSIP/201`) idle?
pub fn device_is_free(items: &[Message], device: &str) -> bool {
    items.iter().any(|m| {
        m.is(b"Event", b"DeviceStateChange")
            && m.get_str("Device")
                .is_some_and(|d| d.eq_ignore_ascii_case(device))
            && m.get_str("State").as_deref() == Some("NOT_INUSE")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn allow() -> Vec<regex::Regex> {
        vec![regex::Regex::new("^(?:7\\d{10})$").unwrap()]
    }

    fn settings(mode: CallbackMode) -> OriginateSettings {
        OriginateSettings {
            mode,
            dial_template: "Local/{national}@customer-sim".into(),
            caller_id: "74951110000".into(),
            caller_name: "Callback".into(),
            originate_timeout_ms: 20_000,
            marker_variable: "CALLBACK_ID".into(),
            agent_context: "from-internal".into(),
            numbers: NumberPlan::default(),
            announce: Announce::default(),
        }
    }

    #[test]
    fn only_clean_allowed_digits_become_dial_numbers() {
        let deny = vec![regex::Regex::new("^(?:7916000\\d{4})$").unwrap()];
        assert!(DialNumber::check("79161234567", &allow(), &deny).is_ok());
        for (n, why) in [
            ("7916123456\r\n", Rejected::NotDigits),
            ("7916123\nAction: Originate", Rejected::NotDigits),
            ("7916abc4567", Rejected::NotDigits),
            ("+79161234567", Rejected::NotDigits),
            ("", Rejected::Length),
            ("12", Rejected::Length),
            ("4930123456", Rejected::NotAllowed),
            ("79160001234", Rejected::Denied),
        ] {
            assert_eq!(DialNumber::check(n, &allow(), &deny), Err(why), "{n:?}");
        }
        assert_eq!(
            DialNumber::check("79161234567", &[], &[]),
            Err(Rejected::NotAllowed)
        );
    }

    #[test]
    fn customer_first_dialplan_headers_exact() {
        let n = DialNumber::check("79261112233", &allow(), &[]).unwrap();
        let t = Target::Dialplan {
            context: "callback".into(),
            exten: "201".into(),
            priority: 1,
        };
        let req = OriginateRequest::build(
            &settings(CallbackMode::CustomerFirst),
            &n,
            &t,
            CallbackIds::new(42, 1, 0xabc),
        )
        .unwrap();
        let got: Vec<(&str, &str)> = req
            .headers()
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("Action", "Originate"),
                ("ActionID", "pzv-42-1-00000abc"),
                ("Channel", "Local/89261112233@customer-sim"),
                ("Context", "callback"),
                ("Exten", "201"),
                ("Priority", "1"),
                ("CallerID", "\"Callback\" <74951110000>"),
                ("Timeout", "20000"),
                ("Async", "true"),
                ("ChannelId", "pzv-42-1-00000abc-c"),
                ("OtherChannelId", "pzv-42-1-00000abc-d"),
                ("Variable", "CALLBACK_ID=pzv-42-1-00000abc"),
            ]
        );
        assert_eq!(req.target_key, "201@callback");
    }

    #[test]
    fn queue_endpoint_and_agent_first() {
        let n = DialNumber::check("79161234567", &allow(), &[]).unwrap();
        let mut s = settings(CallbackMode::CustomerFirst);
        s.dial_template = "PJSIP/{e164}@provider".into();
        let ids = CallbackIds::new(1, 2, 3);
        let q =
            OriginateRequest::build(&s, &n, &Target::Queue("sales".into()), ids.clone()).unwrap();
        let h = q.to_message();
        assert_eq!(h.get_str("Channel").unwrap(), "PJSIP/+79161234567@provider");
        assert_eq!(h.get_str("Application").unwrap(), "Queue");
        assert_eq!(h.get_str("Data").unwrap(), "sales");
        assert!(h.get(b"Context").is_none());
        let e = OriginateRequest::build(&s, &n, &Target::Endpoint("PJSIP/201".into()), ids.clone())
            .unwrap()
            .to_message();
        assert_eq!(e.get_str("Application").unwrap(), "Dial");
        assert_eq!(e.get_str("Data").unwrap(), "PJSIP/201,20");

        s.mode = CallbackMode::AgentFirst;
        s.dial_template = "PJSIP/{number}@provider".into();
        let a = OriginateRequest::build(&s, &n, &Target::Queue("sales".into()), ids.clone())
            .unwrap()
            .to_message();
        assert_eq!(a.get_str("Channel").unwrap(), "Local/sales@from-internal");
        assert_eq!(a.get_str("Application").unwrap(), "Dial");
        assert_eq!(a.get_str("Data").unwrap(), "PJSIP/79161234567@provider,20");
        let a = OriginateRequest::build(&s, &n, &Target::Endpoint("PJSIP/201".into()), ids)
            .unwrap()
            .to_message();
        assert_eq!(a.get_str("Channel").unwrap(), "PJSIP/201");
    }

    #[test]
    fn action_encodes_the_same_headers() {
        let n = DialNumber::check("79261112233", &allow(), &[]).unwrap();
        let req = OriginateRequest::build(
            &settings(CallbackMode::CustomerFirst),
            &n,
            &Target::Queue("sales".into()),
            CallbackIds::new(7, 1, 1),
        )
        .unwrap();
        let wire = req.to_action().encode().unwrap();
        let mut expect = String::new();
        for (k, v) in req.headers() {
            expect.push_str(&format!("{k}: {v}\r\n"));
        }
        expect.push_str("\r\n");
        assert_eq!(String::from_utf8_lossy(&wire), expect);
    }

    #[test]
    fn wire_limits_are_enforced() {
        let n = DialNumber::check("79161234567", &allow(), &[]).unwrap();
        let mut s = settings(CallbackMode::CustomerFirst);
        s.dial_template = format!("Local/{{number}}@{}", "x".repeat(1100));
        let r = OriginateRequest::build(
            &s,
            &n,
            &Target::Queue("q".into()),
            CallbackIds::new(1, 1, 1),
        );
        assert!(matches!(r, Err(BuildError::TooLong("Channel", _))));
        let mut s = settings(CallbackMode::CustomerFirst);
        s.caller_name = "a\r\nAction: Logoff".into();
        let r = OriginateRequest::build(
            &s,
            &n,
            &Target::Queue("q".into()),
            CallbackIds::new(1, 1, 1),
        );
        assert_eq!(r, Err(BuildError::LineBreak("CallerID")));
    }

    #[test]
    fn reasons_that_name_no_outcome_wait_for_the_channels() {
        use CallbackOutcome as O;
        use ResponseVerdict::*;
        for mode in [CallbackMode::CustomerFirst, CallbackMode::AgentFirst] {
            for reason in [Some(0), None, Some(2), Some(99)] {
                assert_eq!(
                    read_response(mode, false, reason),
                    AwaitRecord {
                        fallback: O::Failed
                    },
                    "{mode:?} {reason:?}"
                );
            }
            assert_eq!(read_response(mode, true, Some(4)), Answered);
            assert_eq!(read_response(mode, false, Some(8)), Final(O::Failed));
        }
        let c = CallbackMode::CustomerFirst;
        assert_eq!(read_response(c, false, Some(5)), Final(O::Busy));
        assert_eq!(read_response(c, false, Some(3)), Final(O::NoAnswer));
        let a = CallbackMode::AgentFirst;
        assert_eq!(read_response(a, false, Some(5)), Final(O::AgentMissed));
    }

    #[test]
    fn no_conversation_is_never_connected_even_with_min_talk_zero() {
        let mut r = crate::test_support::inbound_miss(
            "L1",
            crate::calls::record::Timestamp::from_second(1_800_000_000).unwrap(),
            10.0,
        );
        r.direction = crate::calls::record::Direction::Callback;
        r.callback_outcome = None;
        for mode in [CallbackMode::CustomerFirst, CallbackMode::AgentFirst] {
            assert_ne!(
                outcome_from_record(mode, &r, 0.0),
                CallbackOutcome::Connected
            );
        }
        r.answered_at = Some(r.started_at);
        assert_eq!(
            outcome_from_record(CallbackMode::CustomerFirst, &r, 0.0),
            CallbackOutcome::Connected,
            "a conversation of 0 s is one at min_talk 0"
        );
        assert_eq!(
            outcome_from_record(CallbackMode::CustomerFirst, &r, 6.0),
            CallbackOutcome::TooShort
        );
    }

    #[test]
    fn reasons_pinned_on_captures() {
        use CallbackOutcome as O;
        use OriginateVerdict::*;
        let c = CallbackMode::CustomerFirst;
        assert_eq!(classify_response(c, true, Some(4)), Answered);
        assert_eq!(classify_response(c, false, Some(3)), Final(O::NoAnswer));
        assert_eq!(classify_response(c, false, Some(1)), Final(O::NoAnswer));
        assert_eq!(classify_response(c, false, Some(5)), Final(O::Busy));
        assert_eq!(classify_response(c, false, Some(8)), Final(O::Failed));
        assert_eq!(classify_response(c, false, Some(0)), Final(O::Failed));
        assert_eq!(classify_response(c, false, None), Final(O::Failed));
        let a = CallbackMode::AgentFirst;
        assert_eq!(classify_response(a, false, Some(3)), Final(O::AgentMissed));
        assert_eq!(classify_response(a, false, Some(8)), Final(O::Failed));
    }

    #[test]
    fn parses_originate_response_from_capture_shape() {
        let m = Message::from_pairs(&[
            ("Event", "OriginateResponse"),
            ("Privilege", "call,all"),
            ("ActionID", "cb-callback_originate_busy-cb1"),
            ("Response", "Failure"),
            ("Channel", "Local/89261112255@customer-sim"),
            ("Reason", "5"),
            ("Uniqueid", "<unknown>"),
        ]);
        let r = OriginateResponse::parse(&m).unwrap();
        assert_eq!(r.action_id, "cb-callback_originate_busy-cb1");
        assert!(!r.success);
        assert_eq!(r.reason, Some(5));
        assert_eq!(r.uniqueid, None);
    }

    #[test]
    fn free_agents() {
        let member = |paused: &str, status: &str| {
            Message::from_pairs(&[
                ("Event", "QueueMember"),
                ("Queue", "sales"),
                ("Paused", paused),
                ("Status", status),
            ])
        };
        assert_eq!(
            0,
            queue_free_members(&[member("1", "1"), member("0", "2")], "sales")
        );
        assert_eq!(
            1,
            queue_free_members(&[member("0", "2"), member("0", "1")], "sales")
        );
        let dev = Message::from_pairs(&[
            ("Event", "DeviceStateChange"),
            ("Device", "PJSIP/201"),
            ("State", "NOT_INUSE"),
        ]);
        assert!(device_is_free(std::slice::from_ref(&dev), "PJSIP/201"));
        assert!(!device_is_free(&[dev], "PJSIP/202"));
    }

    #[test]
    fn settings_from_embedded_config() {
        let c = Config::embedded_default();
        let s = OriginateSettings::from_config(&c.callback, &c.pbx.numbers);
        let n = DialNumber::check("79261112233", &c.callback.allow, &c.callback.deny).unwrap();
        assert_eq!(s.dial_string(&n), "Local/89261112233@customer-sim");
    }

    #[test]
    fn the_agent_hears_the_announcement_and_sees_the_missed_count() {
        let cfg = Config::from_toml(
            "[callback]\ncaller_id = \"74951110000\"\nannounce = \"perezvon/missed-caller\"\n\
             customer_prompt = \"perezvon/connecting\"\nagent_caller_name = \"{number} missed {count}x\"\n",
        )
        .unwrap();
        let mut s = OriginateSettings::from_config(&cfg.callback, &cfg.pbx.numbers);
        let n = DialNumber::check("79161234567", &allow(), &[]).unwrap();
        let ids = CallbackIds::new(7, 1, 1);
        let get = |r: &OriginateRequest, k: &str| -> Vec<String> {
            r.headers()
                .iter()
                .filter(|(h, _)| *h == k)
                .map(|(_, v)| v.clone())
                .collect()
        };
        let q = OriginateRequest::build_for(&s, &n, &Target::Queue("sales".into()), ids.clone(), 3)
            .unwrap();
        assert_eq!(get(&q, "Data"), ["sales,,,perezvon/missed-caller"]);
        // Customer-first: the customer sees our caller_name; the name is a variable.
        assert!(get(&q, "CallerID")[0].ends_with("<74951110000>"));
        let vars = get(&q, "Variable");
        assert!(
            vars.contains(&"PEREZVON_CALLER_NAME=+79161234567 missed 3x".to_string()),
            "{vars:?}"
        );
        assert!(vars.contains(&"PEREZVON_MISSED=3".to_string()));
        assert!(vars.contains(&"PEREZVON_ANNOUNCE=perezvon/missed-caller".to_string()));
        let e = OriginateRequest::build_for(
            &s,
            &n,
            &Target::Endpoint("PJSIP/201".into()),
            ids.clone(),
            3,
        )
        .unwrap();
        assert_eq!(
            get(&e, "Data"),
            ["PJSIP/201,30,A(perezvon/missed-caller:perezvon/connecting)"]
        );
        s.mode = CallbackMode::AgentFirst;
        let a = OriginateRequest::build_for(&s, &n, &Target::Endpoint("PJSIP/201".into()), ids, 2)
            .unwrap();
        assert_eq!(get(&a, "Channel"), ["PJSIP/201"]);
        assert!(get(&a, "Data")[0].ends_with(",30,A(perezvon/connecting:perezvon/missed-caller)"));
        assert_eq!(
            get(&a, "CallerID"),
            ["\"+79161234567 missed 2x\" <74951110000>"]
        );
    }

    #[test]
    fn no_announcement_keeps_the_stock_originate() {
        let cfg = Config::from_toml("[callback]\ncaller_id = \"74951110000\"\n").unwrap();
        let s = OriginateSettings::from_config(&cfg.callback, &cfg.pbx.numbers);
        let n = DialNumber::check("79161234567", &allow(), &[]).unwrap();
        let r = OriginateRequest::build_for(
            &s,
            &n,
            &Target::Queue("sales".into()),
            CallbackIds::new(1, 1, 1),
            5,
        )
        .unwrap();
        assert_eq!(
            r.headers().iter().filter(|(k, _)| *k == "Variable").count(),
            1
        );
        assert!(r
            .headers()
            .iter()
            .any(|(k, v)| *k == "Data" && v == "sales"));
    }

    #[test]
    fn waiting_callers_from_queue_status() {
        let params =
            Message::from_pairs(&[("Event", "QueueParams"), ("Queue", "sales"), ("Calls", "2")]);
        let entry = Message::from_pairs(&[("Event", "QueueEntry"), ("Queue", "sales")]);
        assert_eq!(
            queue_waiting_callers(std::slice::from_ref(&params), "sales"),
            2
        );
        assert_eq!(queue_waiting_callers(&[params], "support"), 0);
        assert_eq!(queue_waiting_callers(&[entry.clone(), entry], "sales"), 2);
    }

    #[test]
    fn a_number_on_the_dnc_list_cannot_become_a_dial_number() {
        let dnc: std::collections::HashSet<String> = ["79161234567".to_string()].into();
        assert_eq!(
            DialNumber::check_consented("79161234567", &allow(), &[], &KindGuard::default(), &dnc),
            Err(Rejected::DoNotCall)
        );
        assert!(DialNumber::check_consented(
            "79161234568",
            &allow(),
            &[],
            &KindGuard::default(),
            &dnc
        )
        .is_ok());
    }

    #[test]
    fn queue_summary_and_memberships_are_read() {
        let items = vec![
            Message::from_pairs(&[
                ("Event", "QueueSummary"),
                ("Queue", "sales"),
                ("LoggedIn", "3"),
                ("Available", "2"),
                ("Callers", "1"),
                ("HoldTime", "12"),
            ]),
            Message::from_pairs(&[
                ("Event", "QueueSummary"),
                ("Queue", "support"),
                ("LoggedIn", "2"),
                ("Available", "x"),
            ]),
            Message::from_pairs(&[("Event", "QueueSummaryComplete"), ("ListItems", "2")]),
        ];
        let l = queue_summaries(&items);
        assert_eq!(l.len(), 2);
        assert_eq!(
            (l[0].queue.as_str(), l[0].available, l[0].callers),
            ("sales", 2, 1)
        );
        // Unreadable counts never free an agent: 0 available, one caller assumed waiting.
        assert_eq!((l[1].available, l[1].callers), (0, 1));
        let status = vec![
            Message::from_pairs(&[
                ("Event", "QueueMember"),
                ("Queue", "sales"),
                ("Location", "PJSIP/201"),
                ("StateInterface", "PJSIP/201"),
            ]),
            Message::from_pairs(&[
                ("Event", "QueueMember"),
                ("Queue", "vip"),
                ("Location", "Local/201@agents/n"),
                ("StateInterface", "pjsip/201"),
            ]),
            Message::from_pairs(&[
                ("Event", "QueueMember"),
                ("Queue", "support"),
                ("Location", "PJSIP/202"),
            ]),
        ];
        assert_eq!(queues_of_member(&status, "PJSIP/201"), ["sales", "vip"]);
        assert!(queues_of_member(&status, "PJSIP/299").is_empty());
    }
}
