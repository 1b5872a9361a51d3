//! Re-reading live channels after a reconnect (`CoreShowChannels`).

use std::collections::HashMap;

use crate::ami::Message;

use super::super::event::{parse_u32, Ev};
use super::super::record::{CallRecord, LostAt, Timestamp};
use super::{ts_to_us, App, Tracker, NONE};

impl Tracker {
    /// The `CoreShowChannel` items of a CoreShowChannels after a reconnect: calls that are
    /// live on Asterisk are tracked from here on. Tracked calls none of whose channels is listed
    /// ended while we were away: `unknown`.
    pub fn resync(&mut self, channels: &[Message], now: Timestamp, out: &mut Vec<CallRecord>) {
        let t = ts_to_us(now);
        let items: Vec<Ev<'_>> = channels
            .iter()
            .filter_map(Ev::parse)
            .filter(|e| !e.uniqueid.is_empty() && !e.linkedid.is_empty())
            .collect();
        let listed: std::collections::HashSet<&[u8]> = items.iter().map(|e| e.uniqueid).collect();
        // Calls tracked across the gap may have lost events: like a resynced call, they can
        // still prove an answer but never a miss. Calls begun in this session are complete
        // (the list may be older than them: the stream keeps flowing while it is read).
        let session = self.session;
        for id in self.calls.ids() {
            if let Some(c) = self.calls.get_mut(id) {
                if c.session != session {
                    c.resynced = true;
                }
            }
        }
        // Channels we track that Asterisk no longer has: their hangups were lost.
        for cid in self.chans.ids() {
            let gone = self.chans.get(cid).is_some_and(|c| {
                !listed.contains(&c.uid[..])
                    && self
                        .calls
                        .get(c.call)
                        .is_some_and(|call| call.session != session)
            });
            if gone {
                self.drop_channel(cid, t, true, out);
            }
        }
        // Oldest first, so a call's first channel is created first.
        let mut items = items;
        // Within one age, a call's own first channel (Uniqueid = Linkedid) before the others.
        items.sort_by_key(|e| {
            (
                std::cmp::Reverse(parse_duration(e.duration).unwrap_or(0)),
                e.uniqueid != e.linkedid,
            )
        });
        let mut names: HashMap<Vec<u8>, u32> = HashMap::new();
        let mut touched = Vec::new();
        for e in &items {
            if self.chan_ids.contains_key(e.uniqueid)
                || self.ended.iter().any(|l| **l == *e.linkedid)
                || self.unknown_hangups.iter().any(|u| **u == *e.uniqueid)
            {
                continue;
            }
            let started = t - parse_duration(e.duration).unwrap_or(0) * 1_000_000;
            let Some(cid) = self.add_channel(e, started, true) else {
                continue;
            };
            names.insert(e.channel.to_vec(), cid);
            let call = self.chans.get(cid).map_or(NONE, |c| c.call);
            if let Some(c) = self.calls.get_mut(call) {
                c.last_event = t;
                if c.marker.is_none() {
                    // One of perezvon's callbacks: the Originate's ChannelId is the call's
                    // Linkedid. Its marker variable is not in the list; its id is.
                    c.marker = callback_id_of(e.linkedid).map(Into::into);
                }
                if cid == c.caller {
                    c.caller_up |= parse_u32(e.state) == Some(6);
                    match e.application {
                        a if a.eq_ignore_ascii_case(b"Queue") => {
                            c.caller_app = App::Queue;
                            c.routing = Some(LostAt::Queue);
                        }
                        a if a.eq_ignore_ascii_case(b"VoiceMail") => {
                            c.routing = Some(LostAt::Voicemail)
                        }
                        a if a.eq_ignore_ascii_case(b"Dial")
                            || a.eq_ignore_ascii_case(b"FollowMe") =>
                        {
                            c.caller_app = App::Dial
                        }
                        _ => {}
                    }
                }
            }
            if !e.bridge.is_empty() {
                self.enter_bridge(cid, e.bridge);
            }
            touched.push(call);
        }
        // Pair Local halves by name: the LocalBridge events are long gone.
        for (name, &cid) in &names {
            if name.ends_with(b";1") {
                let mut other = name.clone();
                let n = other.len();
                other[n - 1] = b'2';
                if let Some(&pid) = names.get(&other) {
                    self.pair(cid, pid);
                }
            }
        }
        touched.sort_unstable();
        touched.dedup();
        for call in touched {
            self.refresh(call, t, NONE);
        }
        self.resync_pending = false;
        self.unknown_hangups.clear();
    }
}

/// The callback id in a perezvon `ChannelId` (`pzv-<task>-<attempt>-<nonce>-c`, see
/// `callback::originate::CallbackIds`), if `linkedid` is one.
pub(crate) fn callback_id_of(linkedid: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(linkedid).ok()?;
    let id = s.strip_suffix("-c")?;
    let mut parts = id.strip_prefix("pzv-")?.split('-');
    let (task, attempt, nonce) = (parts.next()?, parts.next()?, parts.next()?);
    let digits = |p: &str| !p.is_empty() && p.len() <= 19 && p.bytes().all(|b| b.is_ascii_digit());
    (parts.next().is_none()
        && digits(task)
        && digits(attempt)
        && nonce.len() == 8
        && nonce.bytes().all(|b| b.is_ascii_hexdigit()))
    .then_some(id)
}

/// `HH:MM:SS` (CoreShowChannel `Duration`) -> seconds.
fn parse_duration(v: &[u8]) -> Option<i64> {
    let mut total: i64 = 0;
    let mut parts = 0;
    for p in v.split(|&b| b == b':') {
        total = total * 60 + i64::from(parse_u32(p)?);
        parts += 1;
    }
    (parts > 0 && parts <= 3).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_ids_from_channel_ids() {
        assert_eq!(
            callback_id_of(b"pzv-12-3-0000beef-c"),
            Some("pzv-12-3-0000beef")
        );
        for bad in [
            &b"pzv-12-3-0000beef-d"[..],
            b"pzv-12-3-0000beef",
            b"pzv-x-3-0000beef-c",
            b"pzv-12-3-beef-c",
            b"pzv-12-3-0000beef-1-c",
            b"1733140000.42",
            b"\xff",
        ] {
            assert_eq!(callback_id_of(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration(b"01:02:03"), Some(3723));
        assert_eq!(parse_duration(b"00:00:07"), Some(7));
        assert_eq!(parse_duration(b"x"), None);
        assert_eq!(parse_duration(b""), None);
    }
}
