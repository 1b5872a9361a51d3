//! The queues as Asterisk sees them now: `QueueStatus` (no class needed in manager.conf) asked
//! of every connected server, read into one line per queue for the Now page: callers waiting,
//! the longest wait, agents talking, free, paused, logged in.

use crate::ami::Message;

/// One queue of one server, now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueNow {
    pub server: String,
    pub queue: String,
    /// Callers waiting in the queue (`QueueParams` `Calls`).
    pub waiting: u32,
    /// The longest current wait, seconds (`QueueEntry` `Wait`).
    pub longest_wait_secs: u32,
    /// Members on a call (`InCall: 1`, or a device in use / busy / on hold).
    pub talking: u32,
    /// Members not paused whose device is idle.
    pub free: u32,
    pub paused: u32,
    /// Members whose device is reachable (not `UNAVAILABLE`/`INVALID`).
    pub logged_in: u32,
}

fn num(m: &Message, k: &str) -> u32 {
    m.get_str(k)
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(0)
}

/// The queues of a `QueueStatus` reply's items, in the order Asterisk listed them.
pub fn from_status(server: &str, items: &[Message]) -> Vec<QueueNow> {
    let mut out: Vec<QueueNow> = Vec::new();
    fn slot<'a>(out: &'a mut Vec<QueueNow>, server: &str, q: &str) -> &'a mut QueueNow {
        let i = match out.iter().position(|x| x.queue == q) {
            Some(i) => i,
            None => {
                out.push(QueueNow {
                    server: server.to_string(),
                    queue: q.to_string(),
                    ..QueueNow::default()
                });
                out.len() - 1
            }
        };
        &mut out[i]
    }
    for m in items {
        let Some(q) = m.get_str("Queue").map(|q| q.into_owned()) else {
            continue;
        };
        if m.is(b"Event", b"QueueParams") {
            slot(&mut out, server, &q).waiting = num(m, "Calls");
        } else if m.is(b"Event", b"QueueEntry") {
            let s = slot(&mut out, server, &q);
            s.longest_wait_secs = s.longest_wait_secs.max(num(m, "Wait"));
        } else if m.is(b"Event", b"QueueMember") {
            let s = slot(&mut out, server, &q);
            // AST_DEVICE_*: 1 not in use, 2 in use, 3 busy, 4 invalid, 5 unavailable,
            // 6 ringing, 7 ringing while in use, 8 on hold.
            let status = num(m, "Status");
            let paused = m.get_str("Paused").as_deref() == Some("1");
            let in_call = m.get_str("InCall").as_deref() == Some("1");
            if !matches!(status, 4 | 5) {
                s.logged_in += 1;
            }
            if in_call || matches!(status, 2 | 3 | 7 | 8) {
                s.talking += 1;
            } else if paused {
                s.paused += 1;
            } else if status == 1 {
                s.free += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_status_items_become_one_line_per_queue() {
        let items = vec![
            Message::from_pairs(&[("Event", "QueueParams"), ("Queue", "sales"), ("Calls", "2")]),
            Message::from_pairs(&[
                ("Event", "QueueMember"),
                ("Queue", "sales"),
                ("Status", "1"),
                ("Paused", "0"),
                ("InCall", "0"),
            ]),
            Message::from_pairs(&[
                ("Event", "QueueMember"),
                ("Queue", "sales"),
                ("Status", "2"),
                ("Paused", "0"),
                ("InCall", "1"),
            ]),
            Message::from_pairs(&[
                ("Event", "QueueMember"),
                ("Queue", "sales"),
                ("Status", "1"),
                ("Paused", "1"),
            ]),
            Message::from_pairs(&[
                ("Event", "QueueMember"),
                ("Queue", "sales"),
                ("Status", "5"),
                ("Paused", "0"),
            ]),
            Message::from_pairs(&[("Event", "QueueEntry"), ("Queue", "sales"), ("Wait", "34")]),
            Message::from_pairs(&[("Event", "QueueEntry"), ("Queue", "sales"), ("Wait", "12")]),
            Message::from_pairs(&[
                ("Event", "QueueParams"),
                ("Queue", "support"),
                ("Calls", "junk"),
            ]),
            Message::from_pairs(&[("Event", "QueueStatusComplete")]),
        ];
        let q = from_status("pbx1", &items);
        assert_eq!(
            q[0],
            QueueNow {
                server: "pbx1".into(),
                queue: "sales".into(),
                waiting: 2,
                longest_wait_secs: 34,
                talking: 1,
                free: 1,
                paused: 1,
                logged_in: 3,
            }
        );
        assert_eq!(q[1].queue, "support");
        assert_eq!(q[1].waiting, 0);
        assert_eq!(q.len(), 2);
    }
}
