//! The manager's report: one model ([`Report`], serialisable as JSON) that `perezvon report`,
//! the scheduled e-mail ([`mail`]) and the web console all show. Exact definitions of every
//! figure: docs/REPORT.md.
//!
//! [`Report::compute`] is pure: it takes what the store gathered for a period ([`Inputs`]: the
//! rollup of [`tally`] sums, the calls of the period's edges, the callback counts, the lists),
//! the [`Settings`] (zone, working hours, service level) and the period, and returns the report.
//! [`Report::load`] gathers those from the store (fast over years of calls); [`Report::build`] /
//! [`Report::build_with`] from calls in memory, counted the same way. The renderers turn a
//! report into text ([`text`]), CSV ([`csv`]) or one self-contained HTML page ([`html`]);
//! [`missed`] formats the `perezvon missed` list. The figures are those of the onlinePBX study of
//! missed calls and of Asternic / QueueMetrics: per queue, agent and DID, service level, speed of
//! answer, abandon rate, open vs after hours, the wait funnel, who resolved the misses and how
//! fast, what the callbacks achieved, and the previous period beside the current one.
//!
//! Counting rules, so the numbers add up the same way everywhere:
//! - Only inbound calls count. `ignored` (accidental: the caller hung up within `min_wait`) and
//!   `unknown` (perezvon lost sight of the call) are counted on their own lines and are neither
//!   in the total nor in the misses: neither is a customer the PBX failed.
//! - "Inbound" in shares = answered + missed. A call belongs to the period it started in; local
//!   times (hour, weekday, weekend, open hours) are those of its start in the configured time
//!   zone; Saturday and Sunday are the weekend.
//! - Bucket edges are lower-inclusive: a wait of exactly 10 s is in "10-30 s", a reaction of
//!   exactly 5 min in "5-15 m", of exactly 24 h in ">24 h".
//! - Reaction time is from the end of the missed call to the start of the resolving call
//!   (`resolved_at`); a resolving call that began while the miss was still ringing counts as 0.

pub mod csv;
pub mod html;
pub mod mail;
pub mod missed;
pub mod tally;
pub mod text;

use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::Serialize;

use crate::callback::hours::Hours;
use crate::calls::record::{CallRecord, Direction, LostAt};
use crate::store::report::CallbackCounts;
use crate::store::rollup::{RepeatNumber, Rollup, RollupQuery};
use crate::store::Store;
use tally::{Head, Tally, SLOT_SECS};

/// The wait funnel's buckets (the study's): upper bounds (exclusive, seconds) and labels.
pub const WAIT_BUCKETS: [(f64, &str); 6] = tally::WAIT_FUNNEL;

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
    /// Counted inbound calls without a number (withheld, anonymous): in `total`.
    pub withheld: u64,
    /// Misses without a number: in `missed`, but nobody can call them back.
    pub withheld_missed: u64,
    /// Misses that have a number: the ones a callback can resolve.
    pub callable_missed: u64,
}

/// The headline figures of a set of calls: weekdays or weekends, open or after hours, one
/// queue, agent or DID, the previous period.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Split {
    /// Counted inbound calls: answered + missed.
    pub inbound: u64,
    pub answered: u64,
    pub missed: u64,
    /// missed / inbound.
    pub missed_share: f64,
    /// Answered within the service level threshold / inbound.
    pub service_level: f64,
    /// Average wait of the answered calls (average speed of answer); `None` when none.
    pub asa_secs: Option<f64>,
    /// Misses the caller hung up on (`hangup_by = caller`).
    pub abandoned: u64,
    /// abandoned / inbound.
    pub abandon_rate: f64,
    /// Misses without a number to call back.
    pub withheld_missed: u64,
    /// Average conversation of the answered calls; `None` when none.
    pub avg_talk_secs: Option<f64>,
    /// Accidental calls (apart from `inbound`).
    pub ignored: u64,
}

/// One queue, agent or DID and its figures. `name` is `null` for the calls that had none
/// (never in a queue, no agent rung, no DID).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Breakdown {
    pub name: Option<String>,
    #[serde(flatten)]
    pub figures: Split,
}

/// Service level, speed of answer and abandons of the whole period.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ServiceLevel {
    /// `report.service_level`: answered within this many seconds counts as in service.
    pub threshold_secs: f64,
    /// Counted inbound calls (the denominator).
    pub offered: u64,
    pub answered_within: u64,
    /// answered_within / offered.
    pub share: f64,
    /// Average speed of answer: mean wait of the answered calls.
    pub asa_secs: Option<f64>,
    pub abandoned: u64,
    pub abandon_rate: f64,
}

/// The period before, of the same length, and how the current one differs from it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Previous {
    pub from: Timestamp,
    pub to: Timestamp,
    #[serde(flatten)]
    pub figures: Split,
    pub resolved_share: f64,
    pub change: Change,
}

/// Current minus previous (shares in fractions: 0.05 is five percentage points).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Change {
    pub inbound: i64,
    pub missed: i64,
    pub missed_share: f64,
    pub service_level: f64,
    pub asa_secs: Option<f64>,
    pub abandon_rate: f64,
    pub resolved_share: f64,
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
    /// Tasks that reached the customer (`done`), by the time from the first miss to then.
    pub reached_after: Vec<Bucket>,
    pub reached_after_avg_secs: Option<f64>,
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
    /// Calls that started in `[from, to)`.
    pub from: Timestamp,
    pub to: Timestamp,
    pub inbound: Inbound,
    pub service_level: ServiceLevel,
    pub weekdays: Split,
    pub weekends: Split,
    /// Calls that started while the working-hours schedule (`[hours]`) was open.
    pub open_hours: Split,
    pub after_hours: Split,
    /// Missed calls by how long the caller waited before the call ended (the wait funnel).
    pub waits: Vec<Bucket>,
    /// Answered calls by how long the caller waited for a person.
    pub answered_waits: Vec<Bucket>,
    /// Mean wait of the missed calls.
    pub wait_avg_secs: Option<f64>,
    /// Missed calls by where the caller was lost; `unknown` when the verdict has none.
    pub lost_at: Vec<Bucket>,
    /// Missed calls by who resolved them: caller, agent, callback, nobody.
    pub resolved_by: Vec<Bucket>,
    pub reaction: Vec<ReactionRow>,
    /// Mean time from the end of a miss to the start of the call that resolved it.
    pub reaction_avg_secs: Option<f64>,
    pub callbacks: Callbacks,
    /// Per queue (the last queue the caller joined), most calls first.
    pub by_queue: Vec<Breakdown>,
    /// Per agent (who talked longest; for a miss, who was rung last), most calls first.
    pub by_agent: Vec<Breakdown>,
    /// Per DID (the number the customer dialled), most calls first.
    pub by_did: Vec<Breakdown>,
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
    /// The period of the same length just before this one.
    pub previous: Option<Previous>,
}

/// What a report is computed with: the zone, the schedule and the service level threshold.
#[derive(Debug, Clone)]
pub struct Settings {
    pub tz_name: String,
    pub hours: Hours,
    pub service_level_secs: f64,
}

impl Settings {
    pub fn from_config(cfg: &crate::config::Config) -> Settings {
        Settings {
            tz_name: cfg.hours.timezone_name.clone(),
            hours: Hours::from_config(&cfg.hours),
            service_level_secs: cfg.report.service_level.as_secs_f64(),
        }
    }

    /// Always open, 20 s: what a report without a configuration assumes.
    pub fn plain(tz: &TimeZone, tz_name: &str) -> Settings {
        Settings {
            tz_name: tz_name.to_string(),
            hours: Hours::always(tz.clone()),
            service_level_secs: DEFAULT_SERVICE_LEVEL_SECS,
        }
    }

    pub fn tz(&self) -> &TimeZone {
        self.hours.time_zone()
    }
}

/// `report.service_level` when not set.
pub const DEFAULT_SERVICE_LEVEL_SECS: f64 = 20.0;

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

/// `YYYY-MM-DD HH:MM` in `tz`.
pub fn local_minute(t: Timestamp, tz: &TimeZone) -> String {
    t.to_zoned(tz.clone())
        .strftime("%Y-%m-%d %H:%M")
        .to_string()
}

/// What the store gave for a period: the input of [`Report::compute`].
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub rollup: &'a Rollup,
    /// The previous period's rollup (no breakdowns needed) and its bounds.
    pub previous: Option<(&'a Rollup, Timestamp, Timestamp)>,
    pub callbacks: &'a CallbackCounts,
    pub repeat: &'a [RepeatNumber],
    /// The newest unresolved misses, newest first.
    pub unresolved: &'a [CallRecord],
}

/// The quarter hours (slot numbers, sorted) that start in `[from - 15 min, to)` and inside which
/// the schedule opens or closes (an edge not on a quarter hour, such as 09:10): the report
/// counts those from their calls, so "open hours" is exact to the second.
pub fn split_slots(hours: &Hours, from: Timestamp, to: Timestamp) -> Vec<i64> {
    let tz = hours.time_zone();
    let (Ok(mut date), Ok(last)) = (
        from.to_zoned(tz.clone()).date().yesterday(),
        to.to_zoned(tz.clone()).date().tomorrow(),
    ) else {
        return Vec::new();
    };
    let (lo, hi) = (
        from.as_second().div_euclid(SLOT_SECS) - 1,
        to.as_second().div_euclid(SLOT_SECS),
    );
    let mut out = Vec::new();
    while date <= last {
        for (s, e) in hours.stretches(date) {
            for x in [s, e] {
                let secs = x.as_second();
                if x.subsec_nanosecond() != 0 || secs.rem_euclid(SLOT_SECS) != 0 {
                    let slot = secs.div_euclid(SLOT_SECS);
                    if (lo..=hi).contains(&slot) {
                        out.push(slot);
                    }
                }
            }
        }
        match date.tomorrow() {
            Ok(d) => date = d,
            Err(_) => break,
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

fn u(x: i64) -> u64 {
    x.max(0) as u64
}

/// The mean, to the microsecond: the times are the PBX's (milliseconds at best), and the
/// engines sum floating point in different orders (SQLite compensates, PostgreSQL does not),
/// so more digits would only show which engine added them up.
fn avg(sum: f64, n: i64) -> Option<f64> {
    (n > 0 && sum.is_finite()).then(|| micros(sum / n as f64))
}

/// `x` rounded to six decimals.
pub fn micros(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// The headline figures of a [`Head`].
pub fn figures(h: &Head) -> Split {
    let inbound = u(h.inbound);
    Split {
        inbound,
        answered: u(h.answered),
        missed: u(h.missed),
        missed_share: ratio(u(h.missed), inbound),
        service_level: ratio(u(h.sl_hits), inbound),
        asa_secs: avg(h.answer_wait_sum, h.answered),
        abandoned: u(h.abandoned),
        abandon_rate: ratio(u(h.abandoned), inbound),
        withheld_missed: u(h.withheld_missed),
        avg_talk_secs: avg(h.talk_sum, h.answered),
        ignored: u(h.ignored),
    }
}

fn breakdown(mut m: std::collections::HashMap<String, Head>) -> Vec<Breakdown> {
    let mut v: Vec<Breakdown> = m
        .drain()
        .filter(|(_, h)| h.inbound > 0 || h.ignored > 0 || h.unknown > 0)
        .map(|(k, h)| Breakdown {
            name: (!k.is_empty()).then_some(k),
            figures: figures(&h),
        })
        .collect();
    v.sort_by(|a, b| {
        (b.figures.inbound, b.figures.ignored, &a.name).cmp(&(
            a.figures.inbound,
            a.figures.ignored,
            &b.name,
        ))
    });
    v
}

fn resolved_share(t: &Tally) -> f64 {
    ratio(u(t.detail.resolved.iter().sum()), u(t.head.missed))
}

/// The time figures of a period: everything but the breakdowns.
struct Times {
    total: Tally,
    weekdays: Head,
    weekends: Head,
    open: Head,
    after: Head,
    by_hour: Vec<Slot>,
    by_weekday: Vec<Slot>,
    by_day: Vec<Slot>,
}

fn times(rollup: &Rollup, hours: &Hours, from: Timestamp, to: Timestamp) -> Times {
    let tz = hours.time_zone();
    let (by_day, day_index) = days_of(from, to, tz);
    let mut t = Times {
        total: Tally::default(),
        weekdays: Head::default(),
        weekends: Head::default(),
        open: Head::default(),
        after: Head::default(),
        by_hour: (0..24)
            .map(|h| Slot {
                label: format!("{h:02}"),
                inbound: 0,
                missed: 0,
            })
            .collect(),
        by_weekday: WEEKDAYS
            .iter()
            .map(|d| Slot {
                label: d.to_string(),
                inbound: 0,
                missed: 0,
            })
            .collect(),
        by_day,
    };
    let mut fold = |start: Timestamp, tally: &Tally| {
        let local = start.to_zoned(tz.clone());
        let day = local.weekday().to_monday_zero_offset() as usize;
        let hour = local.hour().clamp(0, 23) as usize;
        t.total.merge(tally);
        let h = &tally.head;
        if day >= 5 {
            &mut t.weekends
        } else {
            &mut t.weekdays
        }
        .merge(h);
        if hours.is_open(start) {
            &mut t.open
        } else {
            &mut t.after
        }
        .merge(h);
        let (inb, mis) = (u(h.inbound), u(h.missed));
        for slot in [&mut t.by_hour[hour], &mut t.by_weekday[day]]
            .into_iter()
            .chain(day_index.get(&local.date()).map(|&i| &mut t.by_day[i]))
        {
            slot.inbound += inb;
            slot.missed += mis;
        }
    };
    for (slot, tally) in &rollup.slots {
        let start = Timestamp::from_second(slot * SLOT_SECS).unwrap_or(Timestamp::UNIX_EPOCH);
        fold(start, tally);
    }
    for c in rollup.edge_calls.iter().chain(&rollup.split_calls) {
        let mut tally = Tally::default();
        tally.add(c, rollup.service_level_secs);
        fold(c.started_at, &tally);
    }
    t
}

impl Report {
    /// [`Report::build_with`] with no schedule (always open) and a 20 s service level.
    pub fn build(
        records: &[CallRecord],
        callbacks: &CallbackCounts,
        tz: &TimeZone,
        tz_name: &str,
        from: Timestamp,
        now: Timestamp,
    ) -> Report {
        Report::build_with(records, callbacks, &Settings::plain(tz, tz_name), from, now)
    }

    /// The report of calls held in memory (a demo, a replay): the inbound records that started
    /// in `[from, to)` are counted exactly as the store's rollup counts them. No previous period.
    pub fn build_with(
        records: &[CallRecord],
        callbacks: &CallbackCounts,
        s: &Settings,
        from: Timestamp,
        to: Timestamp,
    ) -> Report {
        let calls: Vec<CallRecord> = records
            .iter()
            .filter(|r| r.direction == Direction::Inbound)
            .filter(|r| r.started_at >= from && r.started_at < to)
            .cloned()
            .collect();
        let (repeat, unresolved) = misses_in_memory(&calls);
        let rollup = Rollup {
            edge_calls: calls,
            service_level_secs: s.service_level_secs,
            ..Rollup::default()
        };
        let inputs = Inputs {
            rollup: &rollup,
            previous: None,
            callbacks,
            repeat: &repeat,
            unresolved: &unresolved,
        };
        Report::compute(&inputs, s, from, to)
    }

    /// The report of the calls that started in `[from, to)`, read from the store through its
    /// rollup, with the previous period of the same length. Folds the calls stored since the
    /// last report into the rollup first, or rebuilds it when it counted another service level
    /// threshold than `s` (once).
    pub fn load(
        store: &Store,
        s: &Settings,
        from: Timestamp,
        to: Timestamp,
    ) -> crate::store::Result<Report> {
        if !store.set_report_service_level(s.service_level_secs)? {
            // A reader that cannot write (a read-only copy, a manager's account) reads the
            // calls not folded yet one by one instead: slower, the same figures.
            if let Err(e) = store.fold_report_rollup() {
                if !e.is_read_only() {
                    return Err(e);
                }
            }
        }
        let split = split_slots(&s.hours, from, to);
        let rollup = store.report_rollup(&RollupQuery {
            from,
            to,
            split_slots: &split,
            breakdowns: true,
        })?;
        let len = to.duration_since(from);
        let prev_from = from
            .checked_sub(len)
            .ok()
            .filter(|p| *p >= Timestamp::UNIX_EPOCH);
        let previous = match prev_from {
            Some(pf) if len.is_positive() => {
                let split = split_slots(&s.hours, pf, from);
                Some((
                    store.report_rollup(&RollupQuery {
                        from: pf,
                        to: from,
                        split_slots: &split,
                        breakdowns: false,
                    })?,
                    pf,
                ))
            }
            _ => None,
        };
        let callbacks = store.callback_counts(from, to)?;
        let repeat = store.repeat_missed_numbers(from, to, REPEAT_CALLERS)?;
        let unresolved = store.recent_unresolved_misses(from, to, RECENT_UNRESOLVED)?;
        let inputs = Inputs {
            rollup: &rollup,
            previous: previous.as_ref().map(|(r, pf)| (r, *pf, from)),
            callbacks: &callbacks,
            repeat: &repeat,
            unresolved: &unresolved,
        };
        Ok(Report::compute(&inputs, s, from, to))
    }

    /// The pure part: figures from what the store (or [`Report::build_with`]) gathered.
    pub fn compute(inp: &Inputs<'_>, s: &Settings, from: Timestamp, to: Timestamp) -> Report {
        let tz = s.tz();
        let r = inp.rollup;
        let t = times(r, &s.hours, from, to);
        let (h, d) = (&t.total.head, &t.total.detail);

        let mut queues: std::collections::HashMap<String, Head> =
            r.queues.iter().cloned().collect();
        let mut agents: std::collections::HashMap<String, Head> =
            r.agents.iter().cloned().collect();
        let mut dids: std::collections::HashMap<String, Head> = r.dids.iter().cloned().collect();
        for c in &r.edge_calls {
            let key = |k: &Option<String>| k.clone().unwrap_or_default();
            for (m, k) in [
                (&mut queues, key(&c.queue)),
                (&mut agents, key(&c.agent)),
                (&mut dids, key(&c.callee)),
            ] {
                m.entry(k).or_default().add(c, r.service_level_secs, 1);
            }
        }

        let resolved_total: i64 = d.resolved.iter().sum();
        let inbound = Inbound {
            total: u(h.inbound),
            answered: u(h.answered),
            missed: u(h.missed),
            missed_share: ratio(u(h.missed), u(h.inbound)),
            resolved: u(resolved_total),
            resolved_share: ratio(u(resolved_total), u(h.missed)),
            ignored: u(h.ignored),
            unknown: u(h.unknown),
            withheld: u(h.withheld),
            withheld_missed: u(h.withheld_missed),
            callable_missed: u(h.missed - h.withheld_missed),
        };
        let buckets = |labels: &mut dyn Iterator<Item = &str>, counts: &[i64]| -> Vec<Bucket> {
            labels
                .zip(counts)
                .map(|(l, n)| Bucket {
                    label: l.to_string(),
                    count: u(*n),
                })
                .collect()
        };
        let waits = buckets(&mut WAIT_BUCKETS.iter().map(|b| b.1), &d.missed_waits);
        let answered_waits = buckets(&mut WAIT_BUCKETS.iter().map(|b| b.1), &d.answered_waits);
        let lost_at = buckets(
            &mut LostAt::ALL.iter().map(|l| l.as_str()).chain(["unknown"]),
            &d.lost_at,
        );
        let nobody = h.missed - resolved_total;
        let resolved_by = buckets(
            &mut ["caller", "agent", "callback", "nobody"].into_iter(),
            &[d.resolved[0], d.resolved[1], d.resolved[2], nobody],
        );
        let reaction = REACTION_BUCKETS
            .iter()
            .enumerate()
            .map(|(i, (_, l))| {
                let (c, a, b) = (
                    u(d.reaction[0][i]),
                    u(d.reaction[1][i]),
                    u(d.reaction[2][i]),
                );
                ReactionRow {
                    label: l.to_string(),
                    caller: c,
                    agent: a,
                    callback: b,
                    total: c + a + b,
                }
            })
            .collect();
        let headline = figures(h);
        let previous = inp.previous.map(|(pr, pf, pt)| {
            let p = times(pr, &s.hours, pf, pt);
            let pfig = figures(&p.total.head);
            let prs = resolved_share(&p.total);
            Previous {
                from: pf,
                to: pt,
                change: Change {
                    inbound: headline.inbound as i64 - pfig.inbound as i64,
                    missed: headline.missed as i64 - pfig.missed as i64,
                    missed_share: headline.missed_share - pfig.missed_share,
                    service_level: headline.service_level - pfig.service_level,
                    asa_secs: headline.asa_secs.zip(pfig.asa_secs).map(|(a, b)| a - b),
                    abandon_rate: headline.abandon_rate - pfig.abandon_rate,
                    resolved_share: inbound.resolved_share - prs,
                },
                figures: pfig,
                resolved_share: prs,
            }
        });

        Report {
            timezone: s.tz_name.clone(),
            from,
            to,
            service_level: ServiceLevel {
                threshold_secs: r.service_level_secs,
                offered: u(h.inbound),
                answered_within: u(h.sl_hits),
                share: headline.service_level,
                asa_secs: headline.asa_secs,
                abandoned: headline.abandoned,
                abandon_rate: headline.abandon_rate,
            },
            inbound,
            weekdays: figures(&t.weekdays),
            weekends: figures(&t.weekends),
            open_hours: figures(&t.open),
            after_hours: figures(&t.after),
            waits,
            answered_waits,
            wait_avg_secs: avg(h.miss_wait_sum, h.missed),
            lost_at,
            resolved_by,
            reaction,
            reaction_avg_secs: avg(d.reaction_sum, d.reaction_n),
            callbacks: Callbacks::from_counts(inp.callbacks),
            by_queue: breakdown(queues),
            by_agent: breakdown(agents),
            by_did: breakdown(dids),
            by_hour: t.by_hour,
            by_weekday: t.by_weekday,
            by_day: t.by_day,
            repeat_callers: inp
                .repeat
                .iter()
                .map(|n| RepeatCaller {
                    caller: n.caller.clone(),
                    caller_normalized: n.normalized.clone(),
                    misses: n.misses,
                    unresolved: n.unresolved,
                    last: local_minute(n.last, tz),
                })
                .collect(),
            recent_unresolved: inp
                .unresolved
                .iter()
                .map(|r| RecentMiss {
                    when: local_minute(r.started_at, tz),
                    caller: r.caller.clone(),
                    lost_at: r.lost_at,
                    wait_secs: r.wait_secs,
                })
                .collect(),
            previous,
        }
    }
}

/// What the store's list queries return, from calls in memory: numbers missed at least twice
/// (most misses first, then the newest, then the number) and the newest unresolved misses.
fn misses_in_memory(calls: &[CallRecord]) -> (Vec<RepeatNumber>, Vec<CallRecord>) {
    let mut per: std::collections::HashMap<&str, (u64, u64, &CallRecord)> =
        std::collections::HashMap::new();
    let mut unresolved: Vec<&CallRecord> = Vec::new();
    for r in calls.iter().filter(|r| r.is_counted_miss()) {
        if r.resolved_by.is_none() {
            unresolved.push(r);
        }
        if let Some(n) = r.caller_normalized.as_deref().filter(|n| !n.is_empty()) {
            let e = per.entry(n).or_insert((0, 0, r));
            e.0 += 1;
            e.1 += u64::from(r.resolved_by.is_none());
            if r.started_at > e.2.started_at {
                e.2 = r;
            }
        }
    }
    let mut repeat: Vec<(&str, (u64, u64, &CallRecord))> =
        per.into_iter().filter(|(_, v)| v.0 >= 2).collect();
    repeat.sort_by(|a, b| (b.1 .0, b.1 .2.started_at, a.0).cmp(&(a.1 .0, a.1 .2.started_at, b.0)));
    unresolved.sort_by_key(|r| std::cmp::Reverse(r.started_at));
    (
        repeat
            .into_iter()
            .take(REPEAT_CALLERS)
            .map(|(n, (misses, unresolved, last))| RepeatNumber {
                normalized: n.to_string(),
                caller: last.caller.clone(),
                misses,
                unresolved,
                last: last.started_at,
            })
            .collect(),
        unresolved
            .into_iter()
            .take(RECENT_UNRESOLVED)
            .cloned()
            .collect(),
    )
}

/// The local days from `from` to just before `to`, as empty slots and an index by date; none
/// when there are more than [`MAX_DAYS`].
fn days_of(
    from: Timestamp,
    to: Timestamp,
    tz: &TimeZone,
) -> (
    Vec<Slot>,
    std::collections::HashMap<jiff::civil::Date, usize>,
) {
    let end = if to > from {
        to.checked_sub(jiff::SignedDuration::from_micros(1))
            .unwrap_or(to)
    } else {
        to
    };
    let (first, last) = (
        from.to_zoned(tz.clone()).date(),
        end.to_zoned(tz.clone()).date(),
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
            reached_after: REACTION_BUCKETS
                .iter()
                .zip(c.reached_after)
                .map(|((_, l), count)| Bucket {
                    label: l.to_string(),
                    count,
                })
                .collect(),
            reached_after_avg_secs: {
                let n: u64 = c.reached_after.iter().sum();
                (n > 0).then(|| micros(c.reached_after_sum / n as f64))
            },
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
