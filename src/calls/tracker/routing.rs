//! Where the caller is being routed, from the caller channel's dialplan steps (`Newexten`),
//! its dials and its transfers: the raw material of `lost_at`.
//!
//! A dial offers the caller to people. One person's own number (a `Dial` of one target, again
//! and again if need be) is `user`, or `external` when that target is outside (a forward over
//! the outbound trunk). Offering them to several people, at once (`Dial(A&B)`) or one after
//! another (a hunt or follow-me: consecutive `Dial` steps, `FollowMe`), is `group`. A step that
//! is not a dial (IVR, queue, voicemail) ends the sequence, and so does a transfer.

use super::super::event::Ev;
use super::super::record::LostAt;
use super::{App, Call, Rules};

/// A dial is part of the current sequence of dials: the caller has not been anywhere else since.
fn in_dial_sequence(c: &Call) -> bool {
    matches!(
        c.routing,
        Some(LostAt::User | LostAt::Group | LostAt::External)
    )
}

fn dial_routing(c: &Call, outside: bool) -> LostAt {
    if c.offered_many {
        LostAt::Group
    } else if outside {
        LostAt::External
    } else {
        LostAt::User
    }
}

/// The caller side dialled `who` (a person's short name, `201`, or a number).
pub(crate) fn offered(c: &mut Call, who: Box<str>, outside: bool) {
    if c.replacing {
        // A forward or a pickup replaces the callee: still one person's number.
        c.replacing = false;
        c.offered = Some(who);
    } else {
        match &c.offered {
            None => c.offered = Some(who),
            Some(first) if **first == *who => {}
            Some(_) => c.offered_many = true,
        }
    }
    c.routing = Some(dial_routing(c, outside));
}

/// A leg further down a Local chain the caller is being dialled through (a forward that runs
/// dialplan, an extension macro) dials an outside number: that is where the caller is offered.
pub(super) fn offered_downstream(c: &mut Call) {
    let conversation = c.answered_at.is_some();
    if c.caller_app == App::Dial && !c.routing_by_context && !conversation && !c.offered_many {
        c.routing = Some(LostAt::External);
    }
}

/// The caller was transferred (blind or attended, successfully): what was offered before is
/// another leg. An attended transfer into an application (the consulted channel was in a
/// queue, in voicemail, still dialling) shows no dialplan step: `DestApp` says where.
pub(super) fn transferred(c: &mut Call, ev: &Ev<'_>) {
    c.offered = None;
    c.offered_many = false;
    c.replacing = false;
    if c.routing_by_context || !ev.dest_type.eq_ignore_ascii_case(b"App") {
        return;
    }
    let is = |name: &[u8]| ev.dest_app.eq_ignore_ascii_case(name);
    if is(b"Queue") {
        c.caller_app = App::Queue;
        c.routing = Some(LostAt::Queue);
    } else if is(b"VoiceMail") {
        c.caller_app = App::Other;
        c.routing = Some(LostAt::Voicemail);
    } else if is(b"Dial") || is(b"FollowMe") {
        c.caller_app = App::Dial;
        c.routing = Some(LostAt::User);
    }
}

/// One dialplan step of the caller channel: where the call is being routed.
pub(crate) fn step(rules: &Rules, c: &mut Call, ev: &Ev<'_>) {
    let ctx = String::from_utf8_lossy(ev.context);
    if let Some(&cat) = rules.lost_at_contexts.get(ctx.as_ref()) {
        c.routing = Some(cat);
        c.routing_by_context = true;
    } else {
        c.routing_by_context = false;
    }
    let app = ev.application;
    let is = |name: &[u8]| app.eq_ignore_ascii_case(name);
    c.caller_app = if is(b"Dial") || is(b"FollowMe") {
        App::Dial
    } else if is(b"Queue") {
        App::Queue
    } else if is(b"Busy") || is(b"Congestion") {
        App::TurnAway
    } else {
        App::Other
    };
    if c.caller_app == App::TurnAway {
        c.turned_away = true;
    }
    if c.routing_by_context {
        return;
    }
    let invalid = ev.exten == b"i"
        || contains_ci(ev.context, b"invalid")
        || ((is(b"Playback") || is(b"BackGround"))
            && (contains_ci(ev.app_data, b"noservice")
                || contains_ci(ev.app_data, b"pbx-invalid")
                || contains_ci(ev.app_data, b"invalid")));
    if invalid {
        c.routing = Some(LostAt::InvalidNumber);
        c.turned_away = true;
        return;
    }
    if is(b"Queue") {
        c.routing = Some(LostAt::Queue);
    } else if is(b"VoiceMail") {
        c.routing = Some(LostAt::Voicemail);
    } else if is(b"Dial") || is(b"FollowMe") {
        if !in_dial_sequence(c) {
            c.offered = None;
            c.offered_many = false;
        }
        c.replacing = false;
        let targets = ev.app_data.split(|&b| b == b',').next().unwrap_or(b"");
        // A follow-me is a sequence by design; `A&B` rings several people at once.
        if is(b"FollowMe") || targets.contains(&b'&') {
            c.offered_many = true;
        }
        let outside = c.routing == Some(LostAt::External) && !c.offered_many;
        c.routing = Some(dial_routing(c, outside));
    } else if is(b"BackGround") || is(b"Read") || is(b"WaitExten") {
        c.routing = Some(LostAt::Ivr);
    } else if c.routing.is_none()
        && !(is(b"NoOp") || is(b"Goto") || is(b"GotoIf") || is(b"Set") || is(b"AppDial2"))
    {
        // Answer, Playback, ... before any routing: the caller is in the menu/greeting.
        c.routing = Some(LostAt::Ivr);
    }
}

fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.len() >= needle.len()
        && hay
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}
