//! codec -> tracker(s) -> store: what `replay` and the daemon share.
//!
//! One [`Tracker`] per `[[asterisk]]` server, one [`Store`]. Every ended call is committed (with
//! the resolutions it causes) before [`Pipeline::feed`] returns it, so a verdict the caller has
//! seen survives a crash. A call the store already had (replay, a call re-read after a
//! restart) is not returned again unless [`Pipeline::report_duplicates`] asks for it. The
//! pipeline reads no clock: arrival time is an argument, and silence expiry runs from event
//! time, at most once per second of it.
//!
//! Group commit: between [`Pipeline::begin_group`] and [`Pipeline::end_group`] verdicts are
//! staged, and `end_group` commits them in one transaction and returns them then. The daemon
//! groups the events already queued when it wakes, so the rule holds (nothing is handed on
//! before it is committed) at one commit per turn instead of one per verdict.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::ami::Message;
use crate::config::Config;
use crate::daemon::ownership::Ownership;
use crate::store::calls::{Resolution, Written};
use crate::store::{Store, StoreError};

use crate::calls::event::parse_ts;
use crate::calls::record::{CallRecord, Timestamp};
use crate::calls::tracker::Tracker;

/// Resolutions kept for [`Pipeline::take_resolutions`] at most.
const MAX_PENDING_RESOLUTIONS: usize = 4096;
/// Verdicts held in memory at most while the store refuses writes (disk full, a lock held
/// past the busy timeout). Past it the pipeline gives up with [`StoreError::HeldFull`]: the
/// daemon stops rather than drop a verdict. A busy centre ends a few calls a second, so this
/// is hours of outage.
pub const MAX_HELD_VERDICTS: usize = 100_000;
/// Verdicts of a server this node does not own, kept per server at most, and for at most
/// [`UNOWNED_KEEP`] of call time: written when the node gains the server's lease (the owner
/// that lost it may not have written them), ignored by the store if the owner did.
pub const MAX_UNOWNED_VERDICTS: usize = 10_000;
/// How far back (call end time, newest kept verdict minus oldest) unowned verdicts are kept.
pub const UNOWNED_KEEP: Duration = Duration::from_secs(10 * 60);
/// Verdicts written in one transaction at most (a group, held verdicts retried).
pub const GROUP_LIMIT: usize = 1000;
/// Retry spacing for a failing store: 1 s, doubling, at most this.
const MAX_RETRY_SECS: i64 = 30;

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
    /// Mark stored verdicts for the dialer (`calls.dialer_pending`): the daemon with callbacks
    /// on. The dialer clears the mark once it acted on the verdict, so a crash in between
    /// loses nothing (the dialer picks up what is still marked at start-up).
    for_dialer: bool,
    /// Hold up to this many verdicts the store refuses and retry them (the daemon) instead of
    /// failing at once (0: replay).
    hold_limit: usize,
    /// Verdicts the store refused, oldest first, retried before any newer one is written.
    held: std::collections::VecDeque<CallRecord>,
    /// While holding: the first failure of this outage, the next retry (µs of event time),
    /// the current spacing (s) and the last error.
    outage: Option<Outage>,
    /// Which servers' verdicts this node writes (the daemon: leases; replay: every server).
    ownership: Ownership,
    /// Per server not owned: its finished verdicts, oldest first (see [`MAX_UNOWNED_VERDICTS`]).
    unowned: HashMap<String, VecDeque<CallRecord>>,
    /// While a group is open ([`Pipeline::begin_group`]): the verdicts it staged, in order.
    group: Option<Vec<CallRecord>>,
}

#[derive(Debug)]
struct Outage {
    since: Timestamp,
    retry_at: i64,
    spacing: i64,
    error: String,
}

/// The store's state as the pipeline sees it (logs, metrics, STATUS).
#[derive(Debug, Clone, PartialEq)]
pub struct HeldVerdicts {
    /// Verdicts waiting for the store.
    pub count: usize,
    /// Since when writes fail.
    pub since: Timestamp,
    /// The last store error.
    pub error: String,
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
            for_dialer: false,
            hold_limit: 0,
            held: std::collections::VecDeque::new(),
            outage: None,
            ownership: Ownership::everything(),
            unowned: HashMap::new(),
            group: None,
        }
    }

    /// Group commit: from now until [`Pipeline::end_group`] the verdicts of this node's
    /// servers are staged instead of committed one transaction each, and the calls that
    /// return them return nothing. The daemon opens a group for the events already queued
    /// when it wakes, so a busy node pays one commit per turn rather than one per verdict.
    pub fn begin_group(&mut self) {
        self.group.get_or_insert_with(Vec::new);
    }

    /// Verdicts staged by the open group.
    pub fn staged(&self) -> usize {
        self.group.as_ref().map_or(0, Vec::len)
    }

    /// Closes the group: its verdicts are committed in one transaction (after those held), as
    /// [`Pipeline::feed`] would have, and returned as stored. A store failure holds them.
    pub fn end_group(&mut self) -> Result<Vec<CallRecord>, StoreError> {
        match self.group.take() {
            Some(staged) if !staged.is_empty() => self.commit_owned(&staged),
            _ => Ok(Vec::new()),
        }
    }

    /// Writes the verdicts of a server only while `ownership` says this node owns it; the
    /// others are tracked all the same and kept (bounded) until [`Pipeline::flush_unowned`]
    /// finds the server owned.
    pub fn gated_by(mut self, ownership: Ownership) -> Pipeline {
        self.ownership = ownership;
        self
    }

    /// Verdicts kept for servers this node does not own, all servers.
    pub fn unowned(&self) -> usize {
        self.unowned.values().map(VecDeque::len).sum()
    }

    /// Commits the kept verdicts of every server owned now (after a grant). Returns those
    /// committed (a verdict the previous owner wrote is not returned again).
    pub fn flush_unowned(&mut self) -> Result<Vec<CallRecord>, StoreError> {
        let now = Instant::now();
        let owned: Vec<String> = self
            .unowned
            .keys()
            .filter(|s| self.ownership.owns(s, now).is_some())
            .cloned()
            .collect();
        let mut ready = Vec::new();
        for s in owned {
            if let Some(q) = self.unowned.remove(&s) {
                ready.extend(q);
            }
        }
        if ready.is_empty() {
            return Ok(ready);
        }
        self.commit_owned(&ready)
    }

    /// Keeps `r` of a server not owned, within the bounds.
    fn keep_unowned(&mut self, r: CallRecord) {
        let q = self.unowned.entry(r.server.clone()).or_default();
        let newest = r.ended_at;
        q.push_back(r);
        let keep = jiff::SignedDuration::try_from(UNOWNED_KEEP).unwrap_or_default();
        while q.len() > MAX_UNOWNED_VERDICTS
            || q.front()
                .is_some_and(|o| newest.duration_since(o.ended_at) > keep)
        {
            q.pop_front();
        }
    }

    /// Marks every stored verdict for the dialer (see `calls.dialer_pending`).
    pub fn for_dialer(mut self, yes: bool) -> Pipeline {
        self.for_dialer = yes;
        self
    }

    /// Holds up to `limit` verdicts the store refuses (disk full, a lock held past the busy
    /// timeout) and retries them with backoff instead of failing at once. The daemon uses
    /// [`MAX_HELD_VERDICTS`].
    pub fn hold_up_to(mut self, limit: usize) -> Pipeline {
        self.hold_limit = limit;
        self
    }

    /// Retries the held verdicts now, whatever the backoff says (shutdown).
    pub fn retry_held(&mut self, now: Timestamp) -> Result<Vec<CallRecord>, StoreError> {
        if let Some(o) = self.outage.as_mut() {
            o.retry_at = i64::MIN;
        }
        let stored = self.flush_held(now);
        self.check_held(stored)
    }

    /// Verdicts held because the store fails, if any.
    pub fn held(&self) -> Option<HeldVerdicts> {
        self.outage.as_ref().map(|o| HeldVerdicts {
            count: self.held.len(),
            since: o.since,
            error: o.error.clone(),
        })
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
        let t = event_time(msg, now);
        self.feed_at(server, msg, t, now)
    }

    /// [`Pipeline::feed`] for a caller that has the message's own time `t` already (its
    /// `event_time`): the `Timestamp` header is not looked up again.
    pub fn feed_at(
        &mut self,
        server: &str,
        msg: &Message,
        t: Timestamp,
        now: Timestamp,
    ) -> Result<Vec<CallRecord>, StoreError> {
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
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

    /// The AMI link to `server` dropped: nothing is judged (see [`Tracker::link_down`]).
    pub fn link_down(&mut self, server: &str, now: Timestamp) {
        self.tracker(server).link_down(now);
    }

    /// No CoreShowChannels after a reconnect: calls of earlier sessions end as `unknown`.
    pub fn give_up_previous_sessions(
        &mut self,
        server: &str,
        now: Timestamp,
    ) -> Result<Vec<CallRecord>, StoreError> {
        let mut out = Vec::new();
        self.tracker(server)
            .give_up_previous_sessions(now, &mut out);
        self.commit(&out)
    }

    /// The callback ids of perezvon's callback calls live on any server.
    pub fn live_callbacks(&self) -> std::collections::HashSet<String> {
        self.trackers
            .iter()
            .flat_map(Tracker::live_callbacks)
            .map(str::to_string)
            .collect()
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
        if out.is_empty() && !self.held.is_empty() {
            let stored = self.flush_held(now);
            return self.check_held(stored);
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

    /// Commits `ended` after the verdicts already held. A store failure holds the rest (in
    /// order) and returns what was committed; they are retried by [`Pipeline::tick`] (and by
    /// the next commit once the retry is due). Only a full queue is an error.
    fn commit(&mut self, ended: &[CallRecord]) -> Result<Vec<CallRecord>, StoreError> {
        if self.ownership.is_leased() && !ended.is_empty() {
            let now = Instant::now();
            let (mine, theirs): (Vec<CallRecord>, Vec<CallRecord>) = ended
                .iter()
                .cloned()
                .partition(|r| self.ownership.owns(&r.server, now).is_some());
            for r in theirs {
                self.keep_unowned(r);
            }
            return self.commit_owned(&mine);
        }
        self.commit_owned(ended)
    }

    /// [`Pipeline::commit`] of verdicts this node may write.
    fn commit_owned(&mut self, ended: &[CallRecord]) -> Result<Vec<CallRecord>, StoreError> {
        if let Some(g) = self.group.as_mut() {
            g.extend_from_slice(ended);
            return Ok(Vec::new());
        }
        if ended.is_empty() && self.held.is_empty() {
            return Ok(Vec::new());
        }
        if self.outage.is_none() && self.held.is_empty() {
            let mut stored = Vec::with_capacity(ended.len());
            return match self.write(ended, &mut stored) {
                None => Ok(stored),
                Some((_, e)) if self.hold_limit == 0 => Err(e),
                Some((i, e)) => {
                    self.held.extend(ended[i..].iter().cloned());
                    self.start_outage(e, ended[i].ended_at);
                    self.check_held(stored)
                }
            };
        }
        self.held.extend(ended.iter().cloned());
        let now = ended
            .iter()
            .map(|r| r.ended_at)
            .max()
            .unwrap_or(Timestamp::UNIX_EPOCH);
        let stored = self.flush_held(now);
        self.check_held(stored)
    }

    fn check_held(&self, stored: Vec<CallRecord>) -> Result<Vec<CallRecord>, StoreError> {
        if self.held.len() > self.hold_limit {
            let error = self.outage.as_ref().map_or("", |o| o.error.as_str());
            return Err(StoreError::HeldFull {
                count: self.held.len(),
                error: error.to_string(),
            });
        }
        Ok(stored)
    }

    fn start_outage(&mut self, e: StoreError, now: Timestamp) {
        let error = crate::store::error_chain(&e);
        tracing::error!(error = %error, held = self.held.len(), "cannot store call verdicts: holding them and retrying");
        let us = now.as_microsecond();
        self.outage = Some(Outage {
            since: now,
            retry_at: us.saturating_add(1_000_000),
            spacing: 1,
            error,
        });
    }

    /// Retries the held verdicts when the retry is due at `now`. Returns those committed.
    fn flush_held(&mut self, now: Timestamp) -> Vec<CallRecord> {
        let mut stored = Vec::new();
        let us = now.as_microsecond();
        if let Some(o) = &self.outage {
            if us < o.retry_at {
                return stored;
            }
        }
        // In transactions of at most GROUP_LIMIT verdicts: hours of outage can be held.
        while !self.held.is_empty() {
            let n = self.held.len().min(GROUP_LIMIT);
            let recs: Vec<CallRecord> = self.held.drain(..n).collect();
            if let Some((i, e)) = self.write(&recs, &mut stored) {
                for r in recs.into_iter().skip(i).rev() {
                    self.held.push_front(r);
                }
                let error = crate::store::error_chain(&e);
                let o = self.outage.get_or_insert(Outage {
                    since: now,
                    retry_at: us,
                    spacing: 1,
                    error: String::new(),
                });
                o.spacing = (o.spacing * 2).min(MAX_RETRY_SECS);
                o.retry_at = us.saturating_add(o.spacing * 1_000_000);
                if o.error != error {
                    tracing::error!(error = %error, held = self.held.len(), "store still failing");
                }
                o.error = error;
                return stored;
            }
        }
        if let Some(o) = self.outage.take() {
            tracing::warn!(since = %o.since, committed = stored.len(), "store writes work again: held verdicts committed");
        }
        stored
    }

    /// Writes `recs` in one transaction ([`Store::record_calls`]) and takes in what was
    /// committed: stored verdicts into `stored`, their resolutions, and a verdict fenced off
    /// (the lease went to another node between the gate and the commit) kept as any unowned
    /// one. Returns the index of the first verdict not written and why, if any.
    fn write(
        &mut self,
        recs: &[CallRecord],
        stored: &mut Vec<CallRecord>,
    ) -> Option<(usize, StoreError)> {
        let batch = self
            .store
            .record_calls(recs, self.resolve_within, self.for_dialer);
        let written = batch.written.len();
        for (i, (r, w)) in recs.iter().zip(batch.written).enumerate() {
            let rec = match w {
                Written::Fenced => {
                    self.keep_unowned(r.clone());
                    continue;
                }
                Written::Recorded(rec) => *rec,
            };
            for res in rec.resolved {
                if self.resolutions.len() >= MAX_PENDING_RESOLUTIONS {
                    self.resolutions.pop_front();
                }
                self.resolutions.push_back(res);
            }
            if rec.inserted {
                stored.push(rec.record);
            } else if self.report_duplicates {
                match self.store.get_call(&r.server, &r.linkedid) {
                    Ok(Some(old)) => stored.push(old),
                    Ok(None) => {}
                    // `replay` only (it stops at any error): the verdicts from here on are
                    // committed, and written again (as duplicates) if retried.
                    Err(e) => return Some((i, e)),
                }
            }
        }
        batch.failed.map(|e| (written, e))
    }
}
