//! Which AMI privileges perezvon needs and how to tell whether a manager.conf user has them.
//!
//! Asterisk (main/manager.c) checks an action against the user's `write` classes: an action
//! registered with authority `A` may run when `writeperm & A != 0` (or `A == 0`, like Ping).
//! `ListCommands` lists exactly the actions the session may run, one header per action:
//! `Originate: Originate a call. (Priv: originate)`, so a missing one can be named with the class
//! that would allow it. Events are sent when the user's `read` classes include the event's class
//! (the `Privilege:` header of every event, e.g. `call,all`); nothing in AMI reports a user's read
//! classes, so those are judged by the events that actually arrive. All functions are pure.

use std::collections::{BTreeMap, BTreeSet};

use crate::ami::Message;
use crate::config::{AsteriskConfig, Config, Target};

/// An action perezvon sends, with the classes Asterisk registers it under (any one is enough).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeededAction {
    pub action: &'static str,
    /// Asterisk's authority of the action, as `ListCommands` prints it.
    pub classes: &'static [&'static str],
    /// What perezvon uses it for.
    pub why: &'static str,
}

/// The event classes the call tracker reads: channels and bridges (`call`), `Newexten`/`VarSet`
/// (`dialplan`: IVR and the callback marker), queue and agent events (`agent`).
pub const READ_CLASSES: [&str; 3] = ["call", "dialplan", "agent"];

/// The actions `server` must be allowed to run under `cfg`.
pub fn needed_actions(cfg: &Config, server: &AsteriskConfig) -> Vec<NeededAction> {
    let mut v = vec![NeededAction {
        action: "CoreShowChannels",
        classes: &["system", "reporting"],
        why: "re-reads the live calls after a reconnect",
    }];
    let dials_here =
        cfg.callback.enabled && cfg.callback_server().is_some_and(|c| c.name == server.name);
    if dials_here {
        v.push(NeededAction {
            action: "Originate",
            classes: &["originate"],
            why: "places the callbacks",
        });
        // Owned callbacks (issue 14) ask whether the owner's endpoint is free, too.
        if matches!(cfg.callback.target, Target::Endpoint(_))
            || cfg.callback.request.owner_wait.is_some()
        {
            v.push(NeededAction {
                action: "DeviceStateList",
                classes: &["call", "reporting"],
                why: "checks that the callback endpoint is free",
            });
        }
        // QueueStatus (a queue target) and QueueSummary (the queue reserve, issue 14) are
        // registered with authority 0 (apps/app_queue.c): every user may run them.
    }
    v
}

/// The actions of a `ListCommands` response and their classes (`<none>` gives no class).
pub fn parse_list_commands(msg: &Message) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for (name, value) in msg.headers() {
        let name = String::from_utf8_lossy(name);
        if ["Response", "ActionID", "Message", "EventList"]
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h))
        {
            continue;
        }
        let value = String::from_utf8_lossy(value);
        let classes = value
            .rfind("(Priv: ")
            .and_then(|i| value[i + 7..].strip_suffix(')'))
            .map(|p| {
                p.split(',')
                    .map(|c| c.trim().to_ascii_lowercase())
                    .filter(|c| !c.is_empty() && c != "<none>")
                    .collect()
            })
            .unwrap_or_default();
        out.insert(name.to_ascii_lowercase(), classes);
    }
    out
}

/// The needed actions `ListCommands` did not list.
pub fn missing_actions<'a>(
    needed: &'a [NeededAction],
    allowed: &BTreeMap<String, Vec<String>>,
) -> Vec<&'a NeededAction> {
    needed
        .iter()
        .filter(|n| !allowed.contains_key(&n.action.to_ascii_lowercase()))
        .collect()
}

/// The event classes of the `Privilege:` headers of `events` (`all` left out).
pub fn classes_seen<'a>(events: impl IntoIterator<Item = &'a Message>) -> BTreeSet<String> {
    events
        .into_iter()
        .filter_map(|m| m.get_str("Privilege"))
        .flat_map(|p| {
            p.split(',')
                .map(|c| c.trim().to_ascii_lowercase())
                .filter(|c| !c.is_empty() && c != "all")
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The `write = ...` line that allows the missing actions: for each, its first class, plus the
/// classes the user already has for the rest (so the line can replace the old one).
pub fn write_line(
    needed: &[NeededAction],
    allowed: &BTreeMap<String, Vec<String>>,
) -> Option<String> {
    let missing = missing_actions(needed, allowed);
    if missing.is_empty() {
        return None;
    }
    let mut classes: Vec<&str> = Vec::new();
    for n in needed {
        // For allowed actions, keep a class the user evidently has; for missing ones add one.
        let class = n.classes[0];
        if !classes.contains(&class) {
            classes.push(class);
        }
    }
    Some(format!("write = {}", classes.join(",")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(lines: &[(&str, &str)]) -> Message {
        let mut pairs = vec![("Response", "Success"), ("ActionID", "x")];
        pairs.extend_from_slice(lines);
        Message::from_pairs(&pairs)
    }

    #[test]
    fn list_commands_is_read_as_asterisk_prints_it() {
        let m = list(&[
            ("WaitEvent", "Wait for an event to occur. (Priv: <none>)"),
            ("Originate", "Originate a call. (Priv: originate)"),
            (
                "Status",
                "List channel status. (Priv: system,call,reporting)",
            ),
            ("Odd", "A synopsis (with parentheses) here. (Priv: call)"),
        ]);
        let a = parse_list_commands(&m);
        assert_eq!(a["waitevent"], Vec::<String>::new());
        assert_eq!(a["originate"], ["originate"]);
        assert_eq!(a["status"], ["system", "call", "reporting"]);
        assert_eq!(a["odd"], ["call"]);
        assert!(!a.contains_key("response") && !a.contains_key("actionid"));
    }

    #[test]
    fn missing_actions_name_their_class() {
        let needed = [
            NeededAction {
                action: "CoreShowChannels",
                classes: &["system", "reporting"],
                why: "",
            },
            NeededAction {
                action: "Originate",
                classes: &["originate"],
                why: "",
            },
        ];
        let allowed = parse_list_commands(&list(&[(
            "CoreShowChannels",
            "List currently active channels. (Priv: system,reporting)",
        )]));
        let missing = missing_actions(&needed, &allowed);
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].action, "Originate");
        assert_eq!(
            write_line(&needed, &allowed).as_deref(),
            Some("write = system,originate")
        );
        let all = parse_list_commands(&list(&[
            ("CoreShowChannels", "x (Priv: system,reporting)"),
            ("Originate", "y (Priv: originate)"),
        ]));
        assert_eq!(write_line(&needed, &all), None);
    }

    #[test]
    fn owned_callbacks_need_device_state_list() {
        let cfg = Config::from_toml(
            "[[asterisk]]\nname = \"p\"\nusername = \"u\"\nsecret = \"s3cret-value\"\n\
             [callback]\nenabled = true\ncaller_id = \"74951110000\"\nowner_wait = \"10m\"\n",
        )
        .unwrap();
        let names: Vec<&str> = needed_actions(&cfg, &cfg.asterisk[0])
            .iter()
            .map(|a| a.action)
            .collect();
        assert!(names.contains(&"DeviceStateList"), "{names:?}");
    }

    #[test]
    fn classes_come_from_privilege_headers() {
        let a = Message::from_pairs(&[("Event", "Newchannel"), ("Privilege", "call,all")]);
        let b = Message::from_pairs(&[("Event", "FullyBooted"), ("Privilege", "system,all")]);
        let c = Message::from_pairs(&[("Event", "Odd")]);
        let seen = classes_seen([&a, &b, &c]);
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["call", "system"]);
    }
}

/// What one login told about a user's privileges.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The `ListCommands` actions and their classes.
    pub allowed: BTreeMap<String, Vec<String>>,
    /// Event classes seen while listening.
    pub seen: BTreeSet<String>,
}

/// Logs in with `cfg` (the daemon's client and login), runs `ListCommands`, listens to events
/// for `listen`, then closes the connection.
pub async fn probe(
    cfg: &AsteriskConfig,
    listen: std::time::Duration,
) -> Result<Probe, crate::ami::AmiError> {
    use crate::ami::client::{AmiHandle, Connection};
    use crate::ami::LinkEvent;
    let conn = Connection::open(cfg, None).await?;
    let handle = AmiHandle::new(std::sync::Arc::from(cfg.name.as_str()), cfg.action_timeout);
    let (req_tx, req_rx) = tokio::sync::mpsc::channel(16);
    handle.attach(req_tx);
    let (ev_tx, mut ev_rx) = tokio::sync::mpsc::channel::<LinkEvent>(4096);
    let stop = tokio_util::sync::CancellationToken::new();
    let session = {
        let stop = stop.clone();
        tokio::spawn(async move { conn.run(req_rx, &ev_tx, &stop).await })
    };
    let listed = handle.send(crate::ami::Action::new("ListCommands")).await;
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + listen;
    while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, ev_rx.recv()).await {
        if let LinkEvent::Message { msg, .. } = ev {
            events.push(msg);
        }
    }
    stop.cancel();
    handle.detach();
    let _ = session.await;
    let listed = listed?;
    Ok(Probe {
        allowed: parse_list_commands(&listed),
        seen: classes_seen(&events),
    })
}
