//! Statistics over stored verdicts, for the people who run the call centre.
//!
//! [`Report::build`] is pure: it takes the inbound records of a period, the callback counts the
//! store gathered, a time zone and `now`, and returns a [`Report`] (serialisable as JSON). The
//! renderers turn a report into text ([`text`]) or one self-contained HTML page ([`html`]);
//! [`missed`] formats the `perezvon missed` list. The model is the published onlinePBX study of
//! missed calls: share missed, weekdays vs weekends, how long callers waited before giving up,
//! where they were lost, who resolved the miss and how fast, and the load by hour and weekday.
//!
//! Counting rules, so the numbers add up the same way everywhere:
//! - Only inbound calls count. `ignored` (accidental: the caller hung up within `min_wait`) and
//!   `unknown` (perezvon lost sight of the call) are counted on their own lines and are neither
//!   in the total nor in the misses: neither is a customer the PBX failed.
//! - "Inbound" in shares = answered + missed. Local times (hour, weekday, weekend) are those of
//!   the call's start in the configured time zone; Saturday and Sunday are the weekend.
//! - Bucket edges are lower-inclusive: a wait of exactly 10 s is in "10-30 s", a reaction of
//!   exactly 5 min in "5-15 m", of exactly 24 h in ">24 h".
//! - Reaction time is from the end of the missed call to the start of the resolving call
//!   (`resolved_at`); a resolving call that began while the miss was still ringing counts as 0.

pub mod html;
pub mod missed;
pub mod tally;
pub mod text;

use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::Serialize;

use crate::calls::record::{CallRecord, Direction, LostAt, ResolvedBy, Status};
use crate::store::report::CallbackCounts;

/// Upper bounds (exclusive, seconds) and labels of the wait buckets; the last is open.
pub const WAIT_BUCKETS: [(f64, &str); 4] = [
    (10.0, "<10 s"),
    (30.0, "10-30 s"),
    (60.0, "30-60 s"),
    (f64::INFINITY, ">1 min"),
];

/// Upper bounds (exclusive, seconds) and labels of the reaction-time buckets.
pub const REACTION_BUCKETS: [(f64, &str); 9] = [
    (300.0, "<5 m"),
    (900.0, "5-15 m"),
    (1800.0, "15-30 m"),
    (3600.0, "30 m-1 h"),
    (7200.0, "1-2 h"),
    (14400.0, "2-4 h"),
    (32400.0, "4-9 h"),
    (86400.0, "9-24 h"),
    (f64::INFINITY, ">24 h"),
];

pub const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// The longest period that gets a bar per day.
pub const MAX_DAYS: usize = 92;

/// How many repeatedly missed numbers the report lists.
pub const REPEAT_CALLERS: usize = 10;

/// How many unresolved misses the report lists by name.
pub const RECENT_UNRESOLVED: usize = 20;

/// One labelled count.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bucket {
    pub label: String,
    pub count: u64,
}

/// Inbound calls of the period.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Inbound {
    /// Answered + missed.
    pub total: u64,
    pub answered: u64,
    pub missed: u64,
    /// missed / total; 0 when there were no calls.
    pub missed_share: f64,
    /// Misses somebody resolved (caller, agent or callback).
    pub resolved: u64,
    /// resolved / missed; 0 when nothing was missed.
    pub resolved_share: f64,
    /// Accidental calls, not counted in `total`.
    pub ignored: u64,
    /// Calls perezvon lost sight of, not counted in `total`.
    pub unknown: u64,
}

/// Inbound and missed for a set of days (weekdays or weekends).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Split {
    pub inbound: u64,
    pub missed: u64,
    pub missed_share: f64,
}

/// Inbound and missed in one hour of the day or on one weekday.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Slot {
    pub label: String,
    pub inbound: u64,
    pub missed: u64,
}

/// Resolved misses in one reaction-time bucket, by who resolved them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReactionRow {
    pub label: String,
    pub caller: u64,
    pub agent: u64,
    pub callback: u64,
    pub total: u64,
}

/// What perezvon's callbacks achieved.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Callbacks {
    /// Finished attempts: those with an outcome, plus `attempts_unknown`.
    pub attempts: u64,
    pub attempts_by_outcome: Vec<Bucket>,
    /// Attempts still running (no outcome yet); not in `attempts`.
    pub attempts_pending: u64,
    /// Attempts whose outcome was lost (perezvon restarted mid-call); counted as not connected.
    pub attempts_unknown: u64,
    pub connected: u64,
    /// connected / attempts; 0 when there were none.
    pub success_rate: f64,
    pub tasks_by_state: Vec<Bucket>,
    pub tasks_done: u64,
    pub tasks_given_up: u64,
    /// done / (done + given up): of the finished tasks, how many reached the customer.
    pub task_success_rate: f64,
}

/// An unresolved miss, as the report lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecentMiss {
    /// Local time of the call's start, `YYYY-MM-DD HH:MM`.
    pub when: String,
    pub caller: Option<String>,
    pub lost_at: Option<LostAt>,
    pub wait_secs: f64,
}

/// A number the PBX missed more than once in the period: a customer who kept trying.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RepeatCaller {
    /// As delivered on the newest miss.
    pub caller: Option<String>,
    pub caller_normalized: String,
    pub misses: u64,
    /// Of those misses, how many nobody has resolved.
    pub unresolved: u64,
    /// Local time of the newest miss, `YYYY-MM-DD HH:MM`.
    pub last: String,
}

/// The statistics of one period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub timezone: String,
    pub from: Timestamp,
    pub to: Timestamp,
    pub inbound: Inbound,
    pub weekdays: Split,
    pub weekends: Split,
    /// Missed calls by how long the caller waited before the call ended.
    pub waits: Vec<Bucket>,
    pub wait_median_secs: Option<f64>,
    /// Missed calls by where the caller was lost; `unknown` when the verdict has none.
    pub lost_at: Vec<Bucket>,
    /// Missed calls by who resolved them: caller, agent, callback, nobody.
    pub resolved_by: Vec<Bucket>,
    pub reaction: Vec<ReactionRow>,
    pub reaction_median_secs: Option<f64>,
    pub callbacks: Callbacks,
    /// 24 rows, `00` to `23`.
    pub by_hour: Vec<Slot>,
    /// 7 rows, Monday first.
    pub by_weekday: Vec<Slot>,
    /// One row per local day of the period (`MM-DD`), oldest first; empty when the period spans
    /// more than [`MAX_DAYS`] days (a bar per day stops being readable).
    pub by_day: Vec<Slot>,
    /// Numbers missed at least twice, most misses first, at most [`REPEAT_CALLERS`].
    pub repeat_callers: Vec<RepeatCaller>,
    /// The newest unresolved misses, at most [`RECENT_UNRESOLVED`].
    pub recent_unresolved: Vec<RecentMiss>,
}

/// `n / d`, or 0 when there is nothing to divide (never NaN in a report).
pub fn ratio(n: u64, d: u64) -> f64 {
    if d == 0 {
        0.0
    } else {
        n as f64 / d as f64
    }
}

/// Index of the bucket `secs` falls in: bounds are exclusive upper edges.
pub fn bucket_index(bounds: &[(f64, &str)], secs: f64) -> usize {
    let secs = if secs.is_finite() { secs.max(0.0) } else { 0.0 };
    bounds
        .iter()
        .position(|(upper, _)| secs < *upper)
        .unwrap_or(bounds.len().saturating_sub(1))
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

/// How a report counts one inbound record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Answered,
    Missed,
    Ignored,
    Unknown,
}

/// True when a record is a miss the reports count ([`CallRecord::is_counted_miss`]).
pub fn is_miss(r: &CallRecord) -> bool {
    r.is_counted_miss()
}

fn kind(r: &CallRecord) -> Kind {
    if r.is_counted_miss() {
        Kind::Missed
    } else if r.is_counted_inbound() {
        Kind::Answered
    } else if r.status == Status::Unknown && !r.ignored {
        Kind::Unknown
    } else {
        Kind::Ignored
    }
}

/// `YYYY-MM-DD HH:MM` in `tz`.
pub fn local_minute(t: Timestamp, tz: &TimeZone) -> String {
    t.to_zoned(tz.clone())
        .strftime("%Y-%m-%d %H:%M")
        .to_string()
}

impl Report {
    /// Aggregates the records of the period `[from, now)`. Records of other directions are
    /// skipped, so the store's whole period can be passed as it is.
    pub fn build(
        records: &[CallRecord],
        callbacks: &CallbackCounts,
        tz: &TimeZone,
        tz_name: &str,
        from: Timestamp,
        now: Timestamp,
    ) -> Report {
        let mut inbound = Inbound::default();
        let (mut weekdays, mut weekends) = (Split::default(), Split::default());
        let mut waits = vec![0u64; WAIT_BUCKETS.len()];
        let mut wait_list = Vec::new();
        let mut lost = vec![0u64; LostAt::ALL.len() + 1];
        let mut resolved = [0u64; 4];
        let mut reaction: Vec<ReactionRow> = REACTION_BUCKETS
            .iter()
            .map(|(_, l)| ReactionRow {
                label: l.to_string(),
                caller: 0,
                agent: 0,
                callback: 0,
                total: 0,
            })
            .collect();
        let mut reaction_list = Vec::new();
        let mut by_hour: Vec<Slot> = (0..24)
            .map(|h| Slot {
                label: format!("{h:02}"),
                inbound: 0,
                missed: 0,
            })
            .collect();
        let mut by_weekday: Vec<Slot> = WEEKDAYS
            .iter()
            .map(|d| Slot {
                label: d.to_string(),
                inbound: 0,
                missed: 0,
            })
            .collect();
        let (mut by_day, day_index) = days_of(from, now, tz);
        let mut unresolved: Vec<&CallRecord> = Vec::new();
        // Per normalised number: misses, unresolved misses, the newest miss.
        let mut per_number: std::collections::HashMap<&str, (u64, u64, &CallRecord)> =
            std::collections::HashMap::new();

        for r in records.iter().filter(|r| r.direction == Direction::Inbound) {
            let k = kind(r);
            match k {
                Kind::Ignored => {
                    inbound.ignored += 1;
                    continue;
                }
                Kind::Unknown => {
                    inbound.unknown += 1;
                    continue;
                }
                Kind::Answered => inbound.answered += 1,
                Kind::Missed => inbound.missed += 1,
            }
            let missed = k == Kind::Missed;
            let local = r.started_at.to_zoned(tz.clone());
            let day = local.weekday().to_monday_zero_offset() as usize;
            let hour = local.hour().clamp(0, 23) as usize;
            let split = if day >= 5 {
                &mut weekends
            } else {
                &mut weekdays
            };
            split.inbound += 1;
            by_hour[hour].inbound += 1;
            by_weekday[day].inbound += 1;
            // A call that started before the period (and ended in it) has no day bar.
            let date_slot = day_index.get(&local.date()).copied();
            if let Some(i) = date_slot {
                by_day[i].inbound += 1;
            }
            if !missed {
                continue;
            }
            split.missed += 1;
            by_hour[hour].missed += 1;
            by_weekday[day].missed += 1;
            if let Some(i) = date_slot {
                by_day[i].missed += 1;
            }

            if let Some(n) = r.caller_normalized.as_deref() {
                let e = per_number.entry(n).or_insert((0, 0, r));
                e.0 += 1;
                e.1 += u64::from(r.resolved_by.is_none());
                if r.started_at > e.2.started_at {
                    e.2 = r;
                }
            }
            waits[bucket_index(&WAIT_BUCKETS, r.wait_secs)] += 1;
            wait_list.push(r.wait_secs);
            let li = r
                .lost_at
                .and_then(|l| LostAt::ALL.iter().position(|x| *x == l))
                .unwrap_or(LostAt::ALL.len());
            lost[li] += 1;

            match (r.resolved_by, r.resolved_at) {
                (Some(by), at) => {
                    inbound.resolved += 1;
                    resolved[match by {
                        ResolvedBy::Caller => 0,
                        ResolvedBy::Agent => 1,
                        ResolvedBy::Callback => 2,
                    }] += 1;
                    // A resolution without its time is counted as resolved but cannot be timed.
                    if let Some(at) = at {
                        let secs = (at.as_microsecond() - r.ended_at.as_microsecond()) as f64 / 1e6;
                        let secs = secs.max(0.0);
                        reaction_list.push(secs);
                        let row = &mut reaction[bucket_index(&REACTION_BUCKETS, secs)];
                        row.total += 1;
                        match by {
                            ResolvedBy::Caller => row.caller += 1,
                            ResolvedBy::Agent => row.agent += 1,
                            ResolvedBy::Callback => row.callback += 1,
                        }
                    }
                }
                (None, _) => {
                    resolved[3] += 1;
                    unresolved.push(r);
                }
            }
        }

        inbound.total = inbound.answered + inbound.missed;
        inbound.missed_share = ratio(inbound.missed, inbound.total);
        inbound.resolved_share = ratio(inbound.resolved, inbound.missed);
        for s in [&mut weekdays, &mut weekends] {
            s.missed_share = ratio(s.missed, s.inbound);
        }

        let lost_at = LostAt::ALL
            .iter()
            .map(|l| l.as_str())
            .chain(["unknown"])
            .zip(lost)
            .map(|(l, count)| Bucket {
                label: l.to_string(),
                count,
            })
            .collect();
        let resolved_by = ["caller", "agent", "callback", "nobody"]
            .iter()
            .zip(resolved)
            .map(|(l, count)| Bucket {
                label: l.to_string(),
                count,
            })
            .collect();

        let mut repeat: Vec<(&str, (u64, u64, &CallRecord))> = per_number
            .into_iter()
            .filter(|(_, (misses, _, _))| *misses >= 2)
            .collect();
        repeat.sort_by(|a, b| {
            (b.1 .0, b.1 .2.started_at, a.0).cmp(&(a.1 .0, a.1 .2.started_at, b.0))
        });
        let repeat_callers = repeat
            .into_iter()
            .take(REPEAT_CALLERS)
            .map(|(n, (misses, unresolved, last))| RepeatCaller {
                caller: last.caller.clone(),
                caller_normalized: n.to_string(),
                misses,
                unresolved,
                last: local_minute(last.started_at, tz),
            })
            .collect();

        unresolved.sort_by_key(|r| std::cmp::Reverse(r.started_at));
        let recent_unresolved = unresolved
            .into_iter()
            .take(RECENT_UNRESOLVED)
            .map(|r| RecentMiss {
                when: local_minute(r.started_at, tz),
                caller: r.caller.clone(),
                lost_at: r.lost_at,
                wait_secs: r.wait_secs,
            })
            .collect();

        Report {
            timezone: tz_name.to_string(),
            from,
            to: now,
            inbound,
            weekdays,
            weekends,
            waits: WAIT_BUCKETS
                .iter()
                .zip(waits)
                .map(|((_, l), count)| Bucket {
                    label: l.to_string(),
                    count,
                })
                .collect(),
            wait_median_secs: median(wait_list),
            lost_at,
            resolved_by,
            reaction,
            reaction_median_secs: median(reaction_list),
            callbacks: Callbacks::from_counts(callbacks),
            by_hour,
            by_weekday,
            by_day,
            repeat_callers,
            recent_unresolved,
        }
    }
}

/// The local days from `from` to `now`, as empty slots and an index by date; none when there
/// are more than [`MAX_DAYS`].
fn days_of(
    from: Timestamp,
    now: Timestamp,
    tz: &TimeZone,
) -> (
    Vec<Slot>,
    std::collections::HashMap<jiff::civil::Date, usize>,
) {
    let (first, last) = (
        from.to_zoned(tz.clone()).date(),
        now.to_zoned(tz.clone()).date(),
    );
    let mut slots = Vec::new();
    let mut index = std::collections::HashMap::new();
    let mut d = first;
    while d <= last {
        if slots.len() == MAX_DAYS {
            return (Vec::new(), std::collections::HashMap::new());
        }
        index.insert(d, slots.len());
        slots.push(Slot {
            label: d.strftime("%m-%d").to_string(),
            inbound: 0,
            missed: 0,
        });
        match d.tomorrow() {
            Ok(next) => d = next,
            Err(_) => break,
        }
    }
    (slots, index)
}

impl Callbacks {
    fn from_counts(c: &CallbackCounts) -> Callbacks {
        let attempts =
            c.attempts_by_outcome.iter().map(|(_, n)| n).sum::<u64>() + c.attempts_unknown;
        let connected = c
            .attempts_by_outcome
            .iter()
            .filter(|(o, _)| *o == crate::calls::record::CallbackOutcome::Connected)
            .map(|(_, n)| n)
            .sum();
        let state = |s: &str| {
            c.tasks_by_state
                .iter()
                .filter(|(k, _)| k == s)
                .map(|(_, n)| n)
                .sum::<u64>()
        };
        let (done, given_up) = (state("done"), state("given_up"));
        Callbacks {
            attempts,
            attempts_by_outcome: c
                .attempts_by_outcome
                .iter()
                .map(|(o, n)| Bucket {
                    label: o.as_str().to_string(),
                    count: *n,
                })
                .collect(),
            attempts_pending: c.attempts_pending,
            attempts_unknown: c.attempts_unknown,
            connected,
            success_rate: ratio(connected, attempts),
            tasks_by_state: c
                .tasks_by_state
                .iter()
                .map(|(s, n)| Bucket {
                    label: s.clone(),
                    count: *n,
                })
                .collect(),
            tasks_done: done,
            tasks_given_up: given_up,
            task_success_rate: ratio(done, done + given_up),
        }
    }
}

/// A duration for people: `42 s`, `3 m 05 s`, `1 h 20 m`, `2 d 3 h`.
pub fn human_secs(secs: f64) -> String {
    let s = if secs.is_finite() {
        secs.max(0.0).round() as u64
    } else {
        0
    };
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} m {:02} s", s / 60, s % 60),
        3600..=86399 => format!("{} h {:02} m", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86400, s % 86400 / 3600),
    }
}

/// A share as a percentage for people: `12.5 %`, or `-` when there was nothing to count.
pub fn percent(share: f64, of: u64) -> String {
    if of == 0 {
        "-".into()
    } else {
        format!("{:.1} %", share * 100.0)
    }
}

#[cfg(test)]
mod tests;
