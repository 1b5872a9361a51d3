//! app_queue's `queue_log` (`/var/log/asterisk/queue_log`): one line per queue event,
//! `epoch|callid|queue|agent|event|data...`. The call id is the Uniqueid of the caller's channel
//! in the queue. Read here into one [`QueueVisit`] per (call id, queue).
//!
//! The events that matter (Asterisk 22, `apps/app_queue.c`), with their data fields:
//! `ENTERQUEUE|url|callerid|position`, `CONNECT|holdtime|bridged uniqueid|ringtime`,
//! `COMPLETECALLER|holdtime|calltime|origposition` (and `COMPLETEAGENT`),
//! `ABANDON|position|origposition|waittime`, `EXITWITHTIMEOUT|position|origposition|waittime`,
//! `EXITWITHKEY|key|position|origposition|waittime`, `EXITEMPTY|position|origposition|waittime`,
//! `RINGNOANSWER|ringtime ms`, `RINGCANCELED|ringtime ms`,
//! `TRANSFER|extension|context|holdtime|calltime|origposition`,
//! `BLINDTRANSFER|extension|context|holdtime|calltime|origposition`,
//! `ATTENDEDTRANSFER|method|data|holdtime|calltime|origposition`. Member and queue events
//! (`ADDMEMBER`, `PAUSE`, `CONFIGRELOAD`, ...) say nothing about calls and are skipped.

use std::collections::HashMap;
use std::io::BufRead;

use jiff::Timestamp;

pub use super::cdr::BadLine;

/// How a caller left the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// A member took the call; it ended with the caller (`COMPLETECALLER`) or the member
    /// (`COMPLETEAGENT`) hanging up, or a transfer.
    Completed {
        by_caller: bool,
    },
    Transferred,
    /// The caller hung up while waiting.
    Abandoned,
    /// `EXITWITHTIMEOUT`, `EXITEMPTY`: the queue gave up on the caller (they went on in the
    /// dialplan: voicemail, another queue, a hangup).
    Timeout,
    /// `EXITWITHKEY`: the caller pressed a key to leave.
    Key,
}

/// One caller's stay in one queue.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueVisit {
    pub callid: String,
    pub queue: String,
    pub entered: Timestamp,
    /// ENTERQUEUE's caller id, as the PBX had it.
    pub caller: Option<String>,
    /// CONNECT: when, to whom (the member name), after how long a wait.
    pub connected: Option<(Timestamp, String, i64)>,
    pub exit: Option<(Timestamp, Exit)>,
    /// COMPLETE*/TRANSFER: seconds of conversation with the member.
    pub calltime: Option<i64>,
    /// ABANDON/EXIT*: seconds waited.
    pub waittime: Option<i64>,
    /// Members rung without an answer (RINGNOANSWER, RINGCANCELED), in order.
    pub rung: Vec<String>,
}

impl QueueVisit {
    /// When the visit ended, if the log says.
    pub fn ended(&self) -> Option<Timestamp> {
        self.exit.map(|(t, _)| t)
    }
}

/// The visits of a file (in order of entry) and its bad lines. `keep` filters by entry time.
pub fn read(
    input: impl BufRead,
    mut keep: impl FnMut(Timestamp) -> bool,
) -> std::io::Result<(Vec<QueueVisit>, Vec<BadLine>)> {
    let mut visits: Vec<QueueVisit> = Vec::new();
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    let mut bad = Vec::new();
    let mut lines = input.split(b'\n');
    let mut no = 0u64;
    while let Some(line) = lines.next().transpose()? {
        no += 1;
        let line = String::from_utf8_lossy(&line);
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('|').collect();
        if f.len() < 5 {
            bad.push(BadLine {
                line: no,
                message: format!(
                    "{} fields, a queue_log line has at least 5 (time|callid|queue|agent|event)",
                    f.len()
                ),
            });
            continue;
        }
        let Some(at) = parse_time(f[0]) else {
            bad.push(BadLine {
                line: no,
                message: format!("time {:?} is not seconds since the epoch", f[0]),
            });
            continue;
        };
        let (callid, queue, agent, event) = (f[1], f[2], f[3], f[4]);
        let data = |i: usize| f.get(5 + i).copied().unwrap_or("");
        let num = |i: usize| data(i).trim().parse::<i64>().ok();
        if callid == "NONE" || callid.is_empty() {
            continue;
        }
        let key = (callid.to_string(), queue.to_string());
        if event == "ENTERQUEUE" {
            if !keep(at) {
                continue;
            }
            let caller = Some(data(1).to_string()).filter(|c| !c.is_empty());
            index.insert(key, visits.len());
            visits.push(QueueVisit {
                callid: callid.to_string(),
                queue: queue.to_string(),
                entered: at,
                caller,
                connected: None,
                exit: None,
                calltime: None,
                waittime: None,
                rung: Vec::new(),
            });
            continue;
        }
        // Events of a visit whose ENTERQUEUE is outside the window (or was rotated away).
        let Some(&i) = index.get(&key) else { continue };
        let v = &mut visits[i];
        match event {
            "CONNECT" => v.connected = Some((at, agent.to_string(), num(0).unwrap_or(0))),
            "COMPLETECALLER" | "COMPLETEAGENT" => {
                v.exit = Some((
                    at,
                    Exit::Completed {
                        by_caller: event == "COMPLETECALLER",
                    },
                ));
                v.calltime = num(1);
            }
            "TRANSFER" | "BLINDTRANSFER" | "ATTENDEDTRANSFER" => {
                v.exit = Some((at, Exit::Transferred));
                v.calltime = num(3);
            }
            "ABANDON" => {
                v.exit = Some((at, Exit::Abandoned));
                v.waittime = num(2);
            }
            "EXITWITHTIMEOUT" | "EXITEMPTY" => {
                v.exit = Some((at, Exit::Timeout));
                v.waittime = num(2);
            }
            "EXITWITHKEY" => {
                v.exit = Some((at, Exit::Key));
                v.waittime = num(3);
            }
            "RINGNOANSWER" | "RINGCANCELED" if agent != "NONE" => v.rung.push(agent.to_string()),
            _ => {}
        }
    }
    Ok((visits, bad))
}

fn parse_time(s: &str) -> Option<Timestamp> {
    let s = s.trim();
    // Whole seconds; some builds log `1796197837.123456`.
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let us = frac
        .chars()
        .chain(std::iter::repeat('0'))
        .take(6)
        .collect::<String>()
        .parse::<i64>()
        .ok()?;
    Timestamp::from_microsecond(secs.checked_mul(1_000_000)?.checked_add(us)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &str) -> (Vec<QueueVisit>, Vec<BadLine>) {
        read(text.as_bytes(), |_| true).unwrap()
    }

    #[test]
    fn a_connected_call_and_an_abandon() {
        let (v, bad) = all("1796197834|NONE|NONE|NONE|CONFIGRELOAD|\n\
             1796197844|1796197841.81|sales|NONE|ENTERQUEUE||+79160000019|2\n\
             1796197846|1796197841.81|sales|Maria Ivanova|CONNECT|2|1796197844.118|2\n\
             1796197849|1796197841.81|sales|Maria Ivanova|COMPLETEAGENT|2|3|2\n\
             1796197845|1796197842.89|sales|NONE|ENTERQUEUE||89160000022|3\n\
             1796197847|1796197842.89|sales|Ivan Petrov|RINGCANCELED|2057\n\
             1796197847|1796197842.89|sales|NONE|ABANDON|1|3|2\n");
        assert!(bad.is_empty());
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].caller.as_deref(), Some("+79160000019"));
        assert_eq!(v[0].calltime, Some(3));
        assert_eq!(v[0].connected.as_ref().unwrap().1, "Maria Ivanova");
        assert_eq!(v[0].exit.unwrap().1, Exit::Completed { by_caller: false });
        assert_eq!(v[1].exit.unwrap().1, Exit::Abandoned);
        assert_eq!(v[1].waittime, Some(2));
        assert_eq!(v[1].rung, ["Ivan Petrov"]);
    }

    #[test]
    fn bad_lines_have_numbers_and_never_panic() {
        let (v, bad) = all("x|y\nnot-a-time|1.2|q|NONE|ENTERQUEUE||1|1\n\u{0}\u{ff}|||||\n1.5|1.2|q|NONE|ENTERQUEUE||1|1\n");
        assert_eq!(v.len(), 1);
        let lines: Vec<u64> = bad.iter().map(|b| b.line).collect();
        assert_eq!(lines, [1, 2, 3]);
        assert!(bad[1]
            .to_string()
            .starts_with("line 2: time \"not-a-time\""));
    }
}
