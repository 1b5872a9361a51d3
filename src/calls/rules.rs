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

/// Whether the call's times are real. A replayed stream with no clock at all (no `Timestamp`
/// headers, no arrival times kept by `perezvon record`) leaves every event at the epoch: its
/// durations are unknown, not 0, and no rule may judge from them. Live, the clock is the
/// arrival time and always known.
fn clocked(c: &Call) -> bool {
    c.started > 0
}

/// A conversation of at least `min_talk`. No conversation is never one, whatever the
/// threshold (`min_talk = "0s"` does not make a call nobody took answered). `None`: a person
/// answered but the talk is of unknown length and the threshold is above zero.
fn talked_for(rules: &Rules, c: &Call) -> Option<bool> {
    if c.answered_at.is_none() {
        Some(false)
    } else if rules.min_talk <= 0 {
        Some(true)
    } else if !clocked(c) {
        None
    } else {
        Some(c.talk >= rules.min_talk)
    }
}

fn talked(rules: &Rules, c: &Call) -> bool {
    talked_for(rules, c) == Some(true)
}

/// What a leg that never answered says about why: its dial's `DialEnd` status and its
/// `Hangup` cause. `None` when neither tells.
fn unanswered(dial: Option<OriginDial>, cause: u32) -> Option<OriginDial> {
    // The hangup cause is the more precise of the two: a dial status is derived from it
    // (`ast_hangup_cause_to_dial_status` turns anything unknown into NOANSWER).
    let by_cause = match cause {
        // user busy (SIP 486, 600)
        17 => Some(OriginDial::Busy),
        // no user response, no answer (408, 480, 483), subscriber absent (phone off)
        18..=20 => Some(OriginDial::NoAnswer),
        // not defined, normal clearing, answered elsewhere, normal unspecified: says nothing
        0 | 16 | 26 | 31 => None,
        // unallocated, no route, rejected (401/403/603), number changed, out of order,
        // invalid format, congestion (503), interworking (4xx), ...
        _ => Some(OriginDial::Failed),
    };
    match (by_cause, dial) {
        (Some(c), _) => Some(c),
        (None, Some(OriginDial::Answer)) => None,
        (None, d) => d,
    }
}

/// How a callback ended. What the channels did decides: a person in the customer's bridge,
/// the customer's leg answering, its dial's end and its hangup cause. The OriginateResponse
/// `Reason` is only a hint for when the channels say nothing: with real SIP a busy customer
/// gives `Failure` with Reason 0, not 5 (the cause of the dial is lost on the way).
pub(crate) fn callback_outcome(rules: &Rules, c: &Call) -> CallbackOutcome {
    use CallbackOutcome as O;
    if c.answered_at.is_some() {
        return if talked(rules, c) {
            O::Connected
        } else {
            O::TooShort
        };
    }
    let agent_first =
        c.agent_first || !matches!(c.first_kind, ChanKind::External | ChanKind::Trunk);
    let first_answered = c.caller_up
        || c.origin_dial == Some(OriginDial::Answer)
        || matches!(c.originate, Some((true, _)));
    if agent_first {
        if c.agent_first {
            // The agent side answered and dialled the customer (now the caller channel).
            let answered = c.caller_up || c.customer_dial == Some(OriginDial::Answer);
            if answered {
                return O::AgentMissed;
            }
            return match unanswered(c.customer_dial, c.caller_cause) {
                Some(OriginDial::Busy) => O::Busy,
                Some(OriginDial::Failed) => O::Failed,
                _ => O::NoAnswer,
            };
        }
        // The customer was never dialled. The agent side answered and still no customer leg:
        // the customer's channel could not be created.
        if first_answered {
            return O::Failed;
        }
        // Nobody on the agent side took it: busy or no answer is a missed agent; a failure
        // (congestion, unavailable, rejected) is the network's.
        return match unanswered(c.origin_dial, c.caller_cause) {
            Some(OriginDial::Busy | OriginDial::NoAnswer) => O::AgentMissed,
            Some(_) => O::Failed,
            None => match c.originate {
                Some((false, 1 | 3 | 5)) => O::AgentMissed,
                _ => O::Failed,
            },
        };
    }
    // Customer-first: the first channel is the customer.
    if first_answered {
        return O::AgentMissed;
    }
    match unanswered(c.origin_dial, c.caller_cause) {
        Some(OriginDial::Busy) => O::Busy,
        Some(OriginDial::NoAnswer) => O::NoAnswer,
        Some(_) => O::Failed,
        // Reason = the last control frame: 3 ringing (timeout), 1 hangup, 5 busy, 8 congestion,
        // 0 the channel never came up or the cause was lost.
        None => match c.originate {
            Some((false, 1 | 3)) => O::NoAnswer,
            Some((false, 5)) => O::Busy,
            _ => O::Failed,
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
    let talked = talked(rules, c);
    // A person answered on a stream without a clock: answered or a short talk cannot be told.
    let unknown = unknown.or(talked_for(rules, c)
        .is_none()
        .then_some(UnknownReason::NoClock));
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
        queue: match dir {
            Direction::Inbound => c.queue.as_deref().map(str::to_string),
            _ => None,
        },
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
            // Without a clock nothing shows it was quick: a miss.
            let ignored = c.answered_at.is_none()
                && c.ender == Some(Ender::Caller)
                && !c.turned_away
                && clocked(c)
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
