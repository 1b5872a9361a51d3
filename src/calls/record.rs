//! The verdict on one call: what the tracker emits when a call ends, what the store keeps, what
//! reports, notifications and the dialer read. Enums serialise as the lowercase strings of the
//! `replay --format jsonl` contract.

use serde::{Deserialize, Serialize};

/// Seconds since the Unix epoch with microseconds, as AMI's `Timestamp` header carries it.
pub type Timestamp = jiff::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From outside into the PBX.
    Inbound,
    /// A person dialled an outside number.
    Outbound,
    /// Between people of the PBX.
    Internal,
    /// Placed by perezvon (carries the marker variable).
    Callback,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The caller had a conversation of at least `min_talk`.
    Answered,
    /// No conversation, or a too short one. Called back.
    Missed,
    /// Accidental: no conversation and the caller hung up within `min_wait`. Never called back.
    Ignored,
    /// perezvon lost sight of the call (link down, Asterisk restart, silent too long): no verdict.
    Unknown,
}

/// Where a missed caller was when the call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum LostAt {
    /// A menu, a greeting, an announcement: the PBX answered, nobody was offered the call yet.
    Ivr,
    Voicemail,
    /// An unknown number or an invalid menu choice.
    InvalidNumber,
    Queue,
    /// Offered to several people, at once (a ring group) or one after another (a hunt, a
    /// follow-me), and reached by nobody.
    Group,
    /// Offered to one outside number (a forward over the outbound trunk).
    External,
    /// Offered to one person's own number (also when they forwarded it or someone picked up).
    User,
}

impl LostAt {
    pub const ALL: [LostAt; 7] = [
        LostAt::Ivr,
        LostAt::Voicemail,
        LostAt::InvalidNumber,
        LostAt::Queue,
        LostAt::Group,
        LostAt::External,
        LostAt::User,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LostAt::Ivr => "ivr",
            LostAt::Voicemail => "voicemail",
            LostAt::InvalidNumber => "invalid_number",
            LostAt::Queue => "queue",
            LostAt::Group => "group",
            LostAt::External => "external",
            LostAt::User => "user",
        }
    }

    pub fn parse(s: &str) -> Option<LostAt> {
        LostAt::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResolvedBy {
    /// The customer called again and talked to a person.
    Caller,
    /// A person of the PBX called the customer and talked.
    Agent,
    /// perezvon's callback connected.
    Callback,
}

impl ResolvedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            ResolvedBy::Caller => "caller",
            ResolvedBy::Agent => "agent",
            ResolvedBy::Callback => "callback",
        }
    }
    pub fn parse(s: &str) -> Option<ResolvedBy> {
        [ResolvedBy::Caller, ResolvedBy::Agent, ResolvedBy::Callback]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// How one callback attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallbackOutcome {
    /// Customer and a person talked for at least `min_talk`.
    Connected,
    /// The customer did not answer (OriginateResponse Failure/3, or 1).
    NoAnswer,
    /// The customer was busy (Failure/5).
    Busy,
    /// The channel could not be set up or the network refused it (Failure/0, /8, an error).
    Failed,
    /// The customer answered but no person took the call.
    AgentMissed,
    /// Customer and a person talked, but for less than `min_talk`.
    TooShort,
}

impl CallbackOutcome {
    pub const ALL: [CallbackOutcome; 6] = [
        CallbackOutcome::Connected,
        CallbackOutcome::NoAnswer,
        CallbackOutcome::Busy,
        CallbackOutcome::Failed,
        CallbackOutcome::AgentMissed,
        CallbackOutcome::TooShort,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CallbackOutcome::Connected => "connected",
            CallbackOutcome::NoAnswer => "no_answer",
            CallbackOutcome::Busy => "busy",
            CallbackOutcome::Failed => "failed",
            CallbackOutcome::AgentMissed => "agent_missed",
            CallbackOutcome::TooShort => "too_short",
        }
    }
    pub fn parse(s: &str) -> Option<CallbackOutcome> {
        CallbackOutcome::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

/// Why a call ended without a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownReason {
    LinkDown,
    AsteriskRestarted,
    Silent,
    /// The input (a replayed capture) ended while the call was live.
    EndOfInput,
    /// A person answered, but the stream has no clock (no `Timestamp`, no recorded arrival
    /// times): whether the talk reached `calls.min_talk` cannot be told.
    NoClock,
}

/// One call's verdict. Field names are the `replay --format jsonl` contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// `[[asterisk]]` name the call was seen on.
    pub server: String,
    pub linkedid: String,
    pub direction: Direction,
    /// The caller's number as delivered (inbound: the customer; outbound: the agent's extension).
    pub caller: Option<String>,
    /// Normalised (`79161234567`); `None` when withheld or not a number.
    pub caller_normalized: Option<String>,
    /// The dialled number / DID (inbound) or the customer (outbound, callback).
    pub callee: Option<String>,
    pub callee_normalized: Option<String>,
    pub started_at: Timestamp,
    pub ended_at: Timestamp,
    /// When a person first answered (conversation began).
    pub answered_at: Option<Timestamp>,
    pub wait_secs: f64,
    pub talk_secs: f64,
    /// The person who talked longest (or was last rung, for a miss), e.g. `201`; on outbound
    /// and internal calls the person who placed the call.
    pub agent: Option<String>,
    /// Inbound: answered / missed / ignored / unknown. Other directions: `answered` when a
    /// conversation of at least `min_talk` took place, `missed` when not (no callback implied:
    /// only inbound misses are called back), `unknown` when the call was lost sight of.
    pub status: Status,
    /// Inbound only (false for other directions): no conversation or a too short one.
    pub missed: bool,
    /// Inbound only: an accidental call (a miss that is never called back).
    pub ignored: bool,
    pub lost_at: Option<LostAt>,
    /// Who ended the call: `caller` (the customer: the inbound caller or the callback's
    /// customer), `agent` (a person of the PBX, also the placer of an outbound call),
    /// `external` (an outside party reached through the trunk), `system` (the PBX: dialplan
    /// hangup after an announcement, a timeout); `None` when unknown.
    pub hangup_by: Option<String>,
    pub resolved_by: Option<ResolvedBy>,
    pub resolved_at: Option<Timestamp>,
    /// The linkedid of the call that resolved this miss.
    pub resolved_by_linkedid: Option<String>,
    pub callback_id: Option<String>,
    pub callback_outcome: Option<CallbackOutcome>,
    pub unknown_reason: Option<UnknownReason>,
    /// Inbound: the last queue the caller joined (`QueueCallerJoin`), `None` when the call never
    /// reached a queue. Left out of JSON when `None`, so records of calls without a queue read
    /// as they always did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
}

impl CallRecord {
    /// The number to match resolutions on: the customer of the call.
    pub fn customer(&self) -> Option<&str> {
        match self.direction {
            Direction::Inbound => self.caller_normalized.as_deref(),
            Direction::Outbound | Direction::Callback => self.callee_normalized.as_deref(),
            Direction::Internal => None,
        }
    }

    /// An inbound call the statistics count: **the** definition, used by the report, `missed`,
    /// the demo and the console. Accidental calls (`ignored`: the caller hung up within
    /// `calls.min_wait`) and calls perezvon lost sight of (`unknown`) are counted apart.
    pub fn is_counted_inbound(&self) -> bool {
        self.direction == Direction::Inbound
            && !self.ignored
            && !matches!(self.status, Status::Ignored | Status::Unknown)
    }

    /// A missed call: **the** definition of "missed" the statistics use. The tracker marks an
    /// accidental call `missed` *and* `ignored`, so `missed` alone is not enough.
    pub fn is_counted_miss(&self) -> bool {
        self.is_counted_inbound() && (self.missed || self.status == Status::Missed)
    }

    /// How this call resolves earlier misses of its customer, if it does: **the** definition of
    /// "resolved", used by the store (which applies it within `calls.resolve_within`), and
    /// through the store by the dialer, the reports and notifications. The customer called in
    /// and talked (`caller`: status `answered`, i.e. a conversation of at least `min_talk`), a
    /// person of the PBX called them and talked (`agent`), or perezvon's callback reached them
    /// (`callback`: [`CallRecord::reached`]).
    pub fn resolves_as(&self) -> Option<(ResolvedBy, &str)> {
        let n = self.customer().filter(|n| !n.is_empty())?;
        match self.direction {
            Direction::Inbound if self.status == Status::Answered => Some((ResolvedBy::Caller, n)),
            Direction::Outbound if self.status == Status::Answered => Some((ResolvedBy::Agent, n)),
            Direction::Callback if self.reached() => Some((ResolvedBy::Callback, n)),
            _ => None,
        }
    }

    /// A callback that reached the customer: **the** definition of "reached" (outcome
    /// `connected`: a conversation of at least `min_talk` with a person).
    pub fn reached(&self) -> bool {
        self.direction == Direction::Callback
            && self.callback_outcome == Some(CallbackOutcome::Connected)
    }

    /// True when a callback should be considered for this call.
    pub fn wants_callback(&self) -> bool {
        self.direction == Direction::Inbound
            && self.status == Status::Missed
            && self.resolved_by.is_none()
    }
}
