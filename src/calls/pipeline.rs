//! codec -> tracker(s) -> store: what `replay` and the daemon share.
//!
//! One [`Tracker`] per `[[asterisk]]` server, one [`Store`]. Every ended call is committed (with
//! the resolutions it causes) before [`Pipeline::feed`] returns it, so a verdict the caller has
//! seen survives a crash. A call the store already had (replay, a call re-read after a
//! restart) is not returned again unless [`Pipeline::report_duplicates`] asks for it. The pipeline reads no clock: arrival time is an argument, and silence
//! expiry runs from event time, at most once per second of it.

use std::time::Duration;

use crate::ami::Message;
use crate::config::Config;
use crate::store::calls::Resolution;
use crate::store::{Store, StoreError};

use super::event::parse_ts;
use super::record::{CallRecord, Timestamp};
use super::tracker::Tracker;

/// Resolutions kept for [`Pipeline::take_resolutions`] at most.
const MAX_PENDING_RESOLUTIONS: usize = 4096;

/// The shared pipeline.
#[derive(Debug)]
pub struct Pipeline {
    cfg: Config,
    store: Store,
    trackers: Vec<Tracker>,
    resolve_within: Duration,
    /// Event time of the last silence check (µs).
    last_tick: i64,
    /// Resolutions caused by recorded calls, until [`Pipeline::take_resolutions`] (bounded:
    /// the oldest are dropped if nobody takes them; they are in the store either way).
    resolutions: std::collections::VecDeque<Resolution>,
    /// Also return calls the store already had (as stored): `replay` into an existing database.
    report_duplicates: bool,
    scratch: Vec<CallRecord>,
}

/// The time a message was produced: its `Timestamp` header, else `arrival`.
pub fn event_time(msg: &Message, arrival: Timestamp) -> Timestamp {
    msg.get(b"Timestamp")
        .and_then(parse_ts)
        .and_then(|us| Timestamp::from_microsecond(us).ok())
        .unwrap_or(arrival)
}

impl Pipeline {
    pub fn new(cfg: &Config, store: Store) -> Pipeline {
        Pipeline {
            cfg: cfg.clone(),
            resolve_within: cfg.calls.resolve_within,
            store,
            trackers: Vec::new(),
            last_tick: i64::MIN,
            resolutions: std::collections::VecDeque::new(),
            report_duplicates: false,
            scratch: Vec::new(),
        }
    }

    /// Makes `feed` and friends also return calls that were already stored (the stored
    /// version). Off by default: the daemon must not act twice on one verdict.
    pub fn report_duplicates(mut self, yes: bool) -> Pipeline {
        self.report_duplicates = yes;
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The tracker of `server`, created on first use.
    pub fn tracker(&mut self, server: &str) -> &mut Tracker {
        // A handful of servers at most: a scan beats hashing the name on every event.
        let i = match self.trackers.iter().position(|t| t.server() == server) {
            Some(i) => i,
            None => {
                self.trackers.push(Tracker::new(server, &self.cfg));
                self.trackers.len() - 1
            }
        };
        &mut self.trackers[i]
    }

    /// Calls being tracked on every server.
    pub fn live_calls(&self) -> usize {
        self.trackers.iter().map(Tracker::live_calls).sum()
    }

    /// The normalised numbers of customers on a live call on any server (see
    /// [`Tracker::live_customers`]). The dialer does not ring them meanwhile.
    pub fn live_customers(&self) -> std::collections::HashSet<String> {
        self.trackers
            .iter()
            .flat_map(Tracker::live_customers)
            .collect()
    }

    /// Feeds one message from `server`. Returns the calls that ended, as stored (committed).
    pub fn feed(
        &mut self,
        server: &str,
        msg: &Message,
        now: Timestamp,
    ) -> Result<Vec<CallRecord>, StoreError> {
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        let t = event_time(msg, now);
        self.tracker(server).handle(msg, now, &mut out);
        let us = t.as_microsecond();
        if us >= self.last_tick.saturating_add(1_000_000) {
            self.last_tick = us;
            for tr in self.trackers.iter_mut() {
                tr.tick(t, &mut out);
            }
        } else if us.saturating_add(3_600_000_000) < self.last_tick {
            // Time went far back (older captures replayed after newer ones): start over.
            // Small inversions (servers' clocks, Asterisk's own microsecond jitter) are ignored,
            // or every event would scan every call.
            self.last_tick = us;
        }
        let r = self.commit(&out);
        self.scratch = out;
        r
    }

    /// The AMI link to `server` dropped.
    pub fn link_down(
        &mut self,
        server: &str,
        now: Timestamp,
    ) -> Result<Vec<CallRecord>, StoreError> {
        let mut out = Vec::new();
        self.tracker(server).link_down(now, &mut out);
        self.commit(&out)
    }

    pub fn link_up(&mut self, server: &str, now: Timestamp) {
        self.tracker(server).link_up(now);
    }

    /// CoreShowChannel items read after a reconnect.
    pub fn resync(
        &mut self,
        server: &str,
        channels: &[Message],
        now: Timestamp,
    ) -> Result<Vec<CallRecord>, StoreError> {
        let mut out = Vec::new();
        self.tracker(server).resync(channels, now, &mut out);
        self.commit(&out)
    }

    /// Silence expiry on every server (the daemon calls it from a timer).
    pub fn tick(&mut self, now: Timestamp) -> Result<Vec<CallRecord>, StoreError> {
        let mut out = Vec::new();
        for tr in self.trackers.iter_mut() {
            tr.tick(now, &mut out);
        }
        self.commit(&out)
    }

    /// The input ended (replay): calls still live end as `unknown` (end of input).
    pub fn finish(&mut self, now: Timestamp) -> Result<Vec<CallRecord>, StoreError> {
        let mut out = Vec::new();
        for tr in self.trackers.iter_mut() {
            tr.end_of_input(now, &mut out);
        }
        self.commit(&out)
    }

    /// Resolutions of earlier misses since the last call (for notifications).
    pub fn take_resolutions(&mut self) -> Vec<Resolution> {
        self.resolutions.drain(..).collect()
    }

    fn commit(&mut self, ended: &[CallRecord]) -> Result<Vec<CallRecord>, StoreError> {
        let mut stored = Vec::with_capacity(ended.len());
        for r in ended {
            let rec = self.store.record_call(r, self.resolve_within)?;
            for res in rec.resolved {
                if self.resolutions.len() >= MAX_PENDING_RESOLUTIONS {
                    self.resolutions.pop_front();
                }
                self.resolutions.push_back(res);
            }
            if rec.inserted {
                stored.push(rec.record);
            } else if self.report_duplicates {
                if let Some(old) = self.store.get_call(&r.server, &r.linkedid)? {
                    stored.push(old);
                }
            }
        }
        Ok(stored)
    }
}
