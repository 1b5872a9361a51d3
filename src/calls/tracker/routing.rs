//! Where the caller is being routed, from the caller channel's dialplan steps (`Newexten`):
//! the raw material of `lost_at`.

use super::super::event::Ev;
use super::super::record::LostAt;
use super::{App, Call, Rules};

/// One dialplan step of the caller channel: where the call is being routed.
pub(super) fn step(rules: &Rules, c: &mut Call, ev: &Ev<'_>) {
    let ctx = String::from_utf8_lossy(ev.context);
    if let Some(&cat) = rules.lost_at_contexts.get(ctx.as_ref()) {
        c.routing = Some(cat);
        c.routing_by_context = true;
    } else {
        c.routing_by_context = false;
    }
    let app = ev.application;
    let is = |name: &[u8]| app.eq_ignore_ascii_case(name);
    c.caller_app = if is(b"Dial") {
        App::Dial
    } else if is(b"Queue") {
        App::Queue
    } else {
        App::Other
    };
    if is(b"Busy") || is(b"Congestion") {
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
    } else if is(b"Dial") {
        c.dial_begins = 0;
        let targets = ev.app_data.split(|&b| b == b',').next().unwrap_or(b"");
        c.routing = Some(if targets.contains(&b'&') {
            LostAt::Group
        } else {
            LostAt::User
        });
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
