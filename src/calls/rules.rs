//! The verdict on an ended call: direction, missed / ignored, lost_at, who hung up, callback
//! outcome. Pure functions of the call's state (issue 3 defines every rule here).

use super::record::{
    CallRecord, CallbackOutcome, Direction, LostAt, Status, Timestamp, UnknownReason,
};
use super::tracker::{Call, ChanKind, Ender, OriginDial, Rules};

fn ts(us: i64) -> Timestamp {
    Timestamp::from_microsecond(us).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn secs(us: i64) -> f64 {
    // Rounded to the millisecond: the record shows seconds, not timer noise.
    (us.max(0) as f64 / 1000.0).round() / 1000.0
}

/// The call's direction. The callback marker wins: an originated customer leg on the provider
/// trunk looks inbound until its marker arrives.
pub(crate) fn direction(c: &Call) -> Direction {
    if c.marker.is_some() {
        Direction::Callback
    } else if c.first_inbound {
        Direction::Inbound
    } else if c.saw_outside {
        Direction::Outbound
    } else {
        Direction::Internal
    }
}

/// How a callback ended, from the OriginateResponse and what followed it.
pub(crate) fn callback_outcome(rules: &Rules, c: &Call) -> CallbackOutcome {
    let answered = |c: &Call| {
        if c.talk >= rules.min_talk {
            CallbackOutcome::Connected
        } else if c.answered_at.is_some() {
            CallbackOutcome::TooShort
        } else {
            CallbackOutcome::AgentMissed
        }
    };
    if c.agent_first || !matches!(c.first_kind, ChanKind::External | ChanKind::Trunk) {
        // Agent-first: the Originate reports the agent side; the customer leg comes later.
        return match c.originate {
            Some((false, 1 | 3 | 5)) => CallbackOutcome::AgentMissed,
            Some((false, _)) => CallbackOutcome::Failed,
            _ if c.talk >= rules.min_talk => CallbackOutcome::Connected,
            _ if c.answered_at.is_some() => CallbackOutcome::TooShort,
            _ if !c.agent_first => CallbackOutcome::Failed,
            _ => match c.customer_dial {
                Some(OriginDial::Busy) => CallbackOutcome::Busy,
                Some(OriginDial::Failed) => CallbackOutcome::Failed,
                Some(OriginDial::Answer) => CallbackOutcome::AgentMissed,
                _ if c.caller_up => CallbackOutcome::AgentMissed,
                _ => CallbackOutcome::NoAnswer,
            },
        };
    }
    match c.originate {
        // Reason = the last control frame: 3 ringing (timeout), 1 hangup, 5 busy, 8 congestion,
        // 0 the channel never came up.
        Some((false, 1 | 3)) => CallbackOutcome::NoAnswer,
        Some((false, 5)) => CallbackOutcome::Busy,
        Some((false, _)) => CallbackOutcome::Failed,
        Some((true, _)) => answered(c),
        // No response seen: read what the channels did.
        None if c.caller_up || c.origin_dial == Some(OriginDial::Answer) => answered(c),
        None => match (c.origin_dial, c.caller_cause) {
            (Some(OriginDial::Busy), _) | (_, 17) => CallbackOutcome::Busy,
            (Some(OriginDial::NoAnswer), _) | (_, 18 | 19) => CallbackOutcome::NoAnswer,
            _ => CallbackOutcome::Failed,
        },
    }
}

/// The full record.
pub(crate) fn verdict(
    server: &str,
    rules: &Rules,
    c: &Call,
    ended_at: Timestamp,
    unknown: Option<UnknownReason>,
) -> CallRecord {
    let dir = direction(c);
    let end_us = ended_at.as_microsecond();
    let caller_end = c.caller_gone.unwrap_or(end_us);
    let wait = c.answered_at.unwrap_or(caller_end) - c.started;
    let talked = c.talk >= rules.min_talk;
    let talker = c
        .persons
        .iter()
        .filter(|p| p.1 > 0)
        .max_by_key(|p| p.1)
        .or_else(|| c.persons.last())
        .map(|p| p.0.to_string())
        .or_else(|| c.last_rung.as_deref().map(str::to_string));
    // On a call a person placed, the agent is that person, not whom they talked to.
    let agent = match dir {
        Direction::Outbound | Direction::Internal => c
            .caller_person
            .as_deref()
            .map(str::to_string)
            .or_else(|| c.caller_num.as_deref().map(str::to_string))
            .or(talker),
        _ => talker,
    };
    let (customer, callee) = match dir {
        Direction::Inbound => (c.caller_num.as_deref(), c.did.as_deref()),
        Direction::Callback => (c.caller_num.as_deref(), c.origin_number.as_deref()),
        Direction::Outbound | Direction::Internal => {
            (c.caller_num.as_deref(), c.dialled.as_deref())
        }
    };
    let norm = |n: Option<&str>| n.and_then(|n| rules.numbers.normalize(n).ok());
    let hangup_by = c.ender.map(|e| {
        match (e, dir) {
            (Ender::Caller, Direction::Outbound | Direction::Internal) => "agent",
            (Ender::Caller, _) => "caller",
            (Ender::Agent, _) => "agent",
            (Ender::External, _) => "external",
            (Ender::System, _) => "system",
        }
        .to_string()
    });
    let mut r = CallRecord {
        server: server.to_string(),
        linkedid: c.linkedid.to_string(),
        direction: dir,
        caller: customer.map(str::to_string),
        caller_normalized: norm(customer),
        callee: callee.map(str::to_string),
        callee_normalized: norm(callee),
        started_at: ts(c.started),
        ended_at,
        answered_at: c.answered_at.map(ts),
        wait_secs: secs(wait),
        talk_secs: secs(c.talk),
        agent,
        status: if talked {
            Status::Answered
        } else {
            Status::Missed
        },
        missed: false,
        ignored: false,
        lost_at: None,
        hangup_by,
        resolved_by: None,
        resolved_at: None,
        resolved_by_linkedid: None,
        callback_id: c.marker.as_deref().map(str::to_string),
        callback_outcome: None,
        unknown_reason: unknown,
    };
    if unknown.is_some() {
        r.status = Status::Unknown;
        r.hangup_by = None;
        return r;
    }
    match dir {
        Direction::Inbound if !talked => {
            // An accidental call: nobody talked, the caller hung up on their own, quickly, and
            // the PBX did not turn them away (busy, congestion, unknown number are real misses).
            let ignored = c.answered_at.is_none()
                && c.ender == Some(Ender::Caller)
                && !c.turned_away
                && caller_end - c.started < rules.min_wait;
            r.missed = true;
            r.ignored = ignored;
            r.status = if ignored {
                Status::Ignored
            } else {
                Status::Missed
            };
            r.lost_at = Some(lost_at(c));
        }
        Direction::Callback => r.callback_outcome = Some(callback_outcome(rules, c)),
        _ => {}
    }
    r
}

/// Where a missed caller was: the last routing step, or what the hangup cause says.
fn lost_at(c: &Call) -> LostAt {
    match c.routing {
        Some(l) => l,
        // Unallocated / invalid number format, before any dialplan step.
        None if matches!(c.caller_cause, 1 | 3 | 28) => LostAt::InvalidNumber,
        None => LostAt::Ivr,
    }
}
