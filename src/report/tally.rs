//! The report's counters of a set of calls: **the** definitions the report's figures are made
//! of, as sums that add up across calls, slots and hours.
//!
//! The store keeps the same sums per quarter hour and per (queue | agent | DID, hour) in rollup
//! tables kept by SQLite triggers (`store::rollup`), so a year of a busy centre is read in a few
//! hundred thousand rows instead of millions. [`Tally::add`] is the Rust statement of what those
//! triggers add for one call; a store test checks that both agree on random calls, resolutions
//! and deletes. Counters are signed because a trigger subtracts a call it forgets.

use crate::calls::record::{CallRecord, Direction, LostAt, ResolvedBy, Status};

/// Upper bounds (exclusive, seconds) and labels of the wait funnel (the study's buckets).
pub const WAIT_FUNNEL: [(f64, &str); 6] = [
    (10.0, "<10 s"),
    (30.0, "10-30 s"),
    (60.0, "30-60 s"),
    (120.0, "1-2 min"),
    (300.0, "2-5 min"),
    (f64::INFINITY, ">5 min"),
];

/// Width of a slot of the time rollup: a quarter hour, so that local midnights and hours of
/// every time zone in use (offsets are multiples of 15 minutes) fall on slot edges.
pub const SLOT_SECS: i64 = 900;

/// Width of a slot of the queue, agent and DID rollups.
pub const HOUR_SECS: i64 = 3600;

/// The slot of a start time (seconds since the epoch, as the store keeps it): the same
/// truncation SQLite's `CAST(x / 900 AS INTEGER)` does.
pub fn slot_of(started: f64, width: i64) -> i64 {
    (started / width as f64) as i64
}

/// The counters every breakdown has.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Head {
    /// Counted inbound calls: answered + missed (not accidental, not lost sight of).
    pub inbound: i64,
    pub answered: i64,
    pub missed: i64,
    /// Accidental calls (`ignored`): apart from `inbound`.
    pub ignored: i64,
    /// Calls perezvon lost sight of: apart from `inbound`.
    pub unknown: i64,
    /// Counted inbound calls without a number to call back (withheld, anonymous).
    pub withheld: i64,
    pub withheld_missed: i64,
    /// Misses the caller ended (`hangup_by = caller`).
    pub abandoned: i64,
    /// Answered with `wait_secs <= service level`.
    pub sl_hits: i64,
    /// Sum of `wait_secs` of answered calls (speed of answer).
    pub answer_wait_sum: f64,
    /// Sum of `wait_secs` of misses.
    pub miss_wait_sum: f64,
    /// Sum of `talk_secs` of answered calls.
    pub talk_sum: f64,
}

/// The counters only the time rollup has.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Detail {
    /// Answered calls by [`WAIT_FUNNEL`] bucket of their wait.
    pub answered_waits: [i64; 6],
    /// Missed calls by [`WAIT_FUNNEL`] bucket of their wait.
    pub missed_waits: [i64; 6],
    /// Misses by [`LostAt::ALL`], then those without a place.
    pub lost_at: [i64; 8],
    /// Resolved misses by caller, agent, callback.
    pub resolved: [i64; 3],
    /// Timed resolutions by resolver and [`super::REACTION_BUCKETS`] bucket.
    pub reaction: [[i64; 9]; 3],
    pub reaction_n: i64,
    pub reaction_sum: f64,
}

/// Everything the report counts about a set of calls.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tally {
    pub head: Head,
    pub detail: Detail,
}

/// How one stored call counts; `None` for calls that are not inbound.
struct Terms {
    ci: bool,
    miss: bool,
    ans: bool,
}

fn terms(r: &CallRecord) -> Option<Terms> {
    if r.direction != Direction::Inbound {
        return None;
    }
    let ci = !r.ignored && !matches!(r.status, Status::Ignored | Status::Unknown);
    let flagged = r.missed || r.status == Status::Missed;
    Some(Terms {
        ci,
        miss: ci && flagged,
        ans: ci && !flagged,
    })
}

fn b(x: bool) -> i64 {
    i64::from(x)
}

fn wait_bucket(w: f64) -> usize {
    super::bucket_index(&WAIT_FUNNEL, w)
}

impl Head {
    /// Adds one call, as the rollup triggers do (`sign` is 1 to add, -1 to forget).
    pub fn add(&mut self, r: &CallRecord, service_level_secs: f64, sign: i64) {
        let Some(t) = terms(r) else { return };
        let s = sign as f64;
        let wh = r.caller_normalized.as_deref().is_none_or(str::is_empty);
        self.inbound += sign * b(t.ci);
        self.answered += sign * b(t.ans);
        self.missed += sign * b(t.miss);
        // Lost sight of (and not accidental) is `unknown`; every other uncounted call is accidental.
        let unknown = r.status == Status::Unknown && !r.ignored;
        self.ignored += sign * b(!t.ci && !unknown);
        self.unknown += sign * b(unknown);
        self.withheld += sign * b(t.ci && wh);
        self.withheld_missed += sign * b(t.miss && wh);
        self.abandoned += sign * b(t.miss && r.hangup_by.as_deref() == Some("caller"));
        self.sl_hits += sign * b(t.ans && r.wait_secs <= service_level_secs);
        if t.ans {
            self.answer_wait_sum += s * r.wait_secs;
            self.talk_sum += s * r.talk_secs;
        }
        if t.miss {
            self.miss_wait_sum += s * r.wait_secs;
        }
    }

    pub fn merge(&mut self, o: &Head) {
        self.inbound += o.inbound;
        self.answered += o.answered;
        self.missed += o.missed;
        self.ignored += o.ignored;
        self.unknown += o.unknown;
        self.withheld += o.withheld;
        self.withheld_missed += o.withheld_missed;
        self.abandoned += o.abandoned;
        self.sl_hits += o.sl_hits;
        self.answer_wait_sum += o.answer_wait_sum;
        self.miss_wait_sum += o.miss_wait_sum;
        self.talk_sum += o.talk_sum;
    }
}

impl Detail {
    pub fn add(&mut self, r: &CallRecord, sign: i64) {
        let Some(t) = terms(r) else { return };
        if t.ans {
            self.answered_waits[wait_bucket(r.wait_secs)] += sign;
        }
        if !t.miss {
            return;
        }
        self.missed_waits[wait_bucket(r.wait_secs)] += sign;
        let li = r
            .lost_at
            .and_then(|l| LostAt::ALL.iter().position(|x| *x == l))
            .unwrap_or(LostAt::ALL.len());
        self.lost_at[li] += sign;
        let Some(by) = r.resolved_by else { return };
        let who = match by {
            ResolvedBy::Caller => 0,
            ResolvedBy::Agent => 1,
            ResolvedBy::Callback => 2,
        };
        self.resolved[who] += sign;
        if let Some(at) = r.resolved_at {
            let rx = (crate::store::ts_to_f64(at) - crate::store::ts_to_f64(r.ended_at)).max(0.0);
            self.reaction[who][super::bucket_index(&super::REACTION_BUCKETS, rx)] += sign;
            self.reaction_n += sign;
            self.reaction_sum += sign as f64 * rx;
        }
    }

    pub fn merge(&mut self, o: &Detail) {
        let add = |a: &mut [i64], b: &[i64]| a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        add(&mut self.answered_waits, &o.answered_waits);
        add(&mut self.missed_waits, &o.missed_waits);
        add(&mut self.lost_at, &o.lost_at);
        add(&mut self.resolved, &o.resolved);
        for (a, b) in self.reaction.iter_mut().zip(&o.reaction) {
            add(a, b);
        }
        self.reaction_n += o.reaction_n;
        self.reaction_sum += o.reaction_sum;
    }
}

impl Tally {
    pub fn add(&mut self, r: &CallRecord, service_level_secs: f64) {
        self.head.add(r, service_level_secs, 1);
        self.detail.add(r, 1);
    }

    pub fn merge(&mut self, o: &Tally) {
        self.head.merge(&o.head);
        self.detail.merge(&o.detail);
    }
}
