//! The guards of issue 14 as pure functions: the per-number budget, the customer's own clock,
//! the expiry of callbacks no longer useful, and the reserve of agents for inbound callers.
//!
//! Like the planner, nothing here reads a clock, awaits or touches SQLite: the dialer passes
//! `now`, the attempts recorded in the store ([`AttemptLog`]) and what Asterisk said of its
//! queues ([`QueueLoad`]); the planner ([`super::planner::due_guarded`]) leaves out what a guard
//! holds back, and [`why_waiting`] tells `callbacks list` which guard that is.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use super::hours::Hours;
use super::planner::{Policy, Task, TaskState};
use super::zones::{Lookup, ZoneSet, ZoneTable};
use crate::config::{CallbackConfig, DayRange, HoursConfig, UnknownCountry, UnknownRegion};

const DAY: SignedDuration = SignedDuration::from_hours(24);

/// The settings of the guards (`[callback]`), in the planner's terms.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// `max_per_number_24h`: callback calls to one number in any rolling 24 h.
    pub max_per_number_24h: Option<u32>,
    /// `max_per_number_day`: per calendar day in the business's zone.
    pub max_per_number_day: Option<u32>,
    /// The business's zone (`hours.timezone`): where the calendar day of the day cap runs.
    pub business_zone: Option<TimeZone>,
    /// `customer_hours` and friends; `None`: no window in the customer's zone.
    pub customer: Option<CustomerHours>,
    /// `expire_after`: a task older than this (from its first miss) expires.
    pub expire_after: Option<Duration>,
    /// `expire_at_close`: a task not reached by the close of the working day it first fell due
    /// in expires.
    pub expire_at_close: bool,
    /// `queue_reserve`: agents of a queue kept for inbound callers.
    pub queue_reserve: u32,
    /// `queue_reserves`: the same per queue.
    pub queue_reserves: HashMap<String, u32>,
}

impl Rules {
    pub fn from_config(cb: &CallbackConfig, hours: &HoursConfig) -> Rules {
        Rules {
            max_per_number_24h: cb.max_per_number_24h,
            max_per_number_day: cb.max_per_number_day,
            business_zone: Some(hours.timezone.clone()),
            customer: cb.customer_hours.as_ref().map(|w| CustomerHours {
                weekdays: w.clone(),
                weekend: cb
                    .customer_hours_weekend
                    .clone()
                    .unwrap_or_else(|| w.clone()),
                unknown_region: cb.customer_unknown_region,
                unknown_country: cb.customer_unknown_country,
                overrides: cb.customer_zones.clone(),
                business_zone: hours.timezone.clone(),
            }),
            expire_after: cb.expire_after,
            expire_at_close: cb.expire_at_close,
            queue_reserve: cb.queue_reserve,
            queue_reserves: cb.queue_reserves.clone(),
        }
    }

    pub fn has_budget(&self) -> bool {
        self.max_per_number_24h.is_some() || self.max_per_number_day.is_some()
    }

    /// The reserve of a queue.
    pub fn reserve_of(&self, queue: &str) -> u32 {
        self.queue_reserves
            .get(queue)
            .copied()
            .unwrap_or(self.queue_reserve)
    }

    /// How far back the budget looks: a rolling day, or a calendar day (25 h on a DST day).
    pub fn budget_horizon(&self) -> SignedDuration {
        SignedDuration::from_hours(26)
    }
}

/// The start of every callback attempt recorded in the store within the budget's horizon, per
/// number: all tasks, all servers. An attempt counts from when its Originate was sent (its row
/// is committed just before); one taken back unsent is not in the store, so not here.
#[derive(Debug, Clone, Default)]
pub struct AttemptLog {
    by_number: HashMap<String, Vec<Timestamp>>,
}

impl AttemptLog {
    pub fn from_starts(starts: impl IntoIterator<Item = (String, Timestamp)>) -> AttemptLog {
        let mut log = AttemptLog::default();
        for (n, t) in starts {
            log.record(&n, t);
        }
        log
    }

    pub fn record(&mut self, number: &str, at: Timestamp) {
        let v = self.by_number.entry(number.to_string()).or_default();
        let pos = v.partition_point(|t| *t <= at);
        v.insert(pos, at);
    }

    /// Forgets one recorded start (an Originate taken back unsent).
    pub fn forget(&mut self, number: &str, at: Timestamp) {
        if let Some(v) = self.by_number.get_mut(number) {
            if let Some(pos) = v.iter().position(|t| *t == at) {
                v.remove(pos);
            }
            if v.is_empty() {
                self.by_number.remove(number);
            }
        }
    }

    /// Drops what is older than `before`.
    pub fn prune(&mut self, before: Timestamp) {
        self.by_number.retain(|_, v| {
            v.retain(|t| *t >= before);
            !v.is_empty()
        });
    }

    pub fn starts(&self, number: &str) -> &[Timestamp] {
        self.by_number.get(number).map_or(&[], Vec::as_slice)
    }

    /// The numbers over budget at `now`, with the instant their budget frees. Only numbers with
    /// attempts recorded can be over, so this costs the log's size, not the tasks'.
    pub fn over_budget(&self, now: Timestamp, rules: &Rules) -> HashMap<String, Budget> {
        let mut out = HashMap::new();
        if !rules.has_budget() {
            return out;
        }
        let clock = BudgetClock::new(now, rules);
        for (n, v) in &self.by_number {
            if let Some(b) = budget_at(v, &clock, rules) {
                out.insert(n.clone(), b);
            }
        }
        out
    }
}

/// Which cap holds a number back, and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// `max_per_number_24h` or `max_per_number_day`.
    pub rule: &'static str,
    pub used: u32,
    pub cap: u32,
    /// When the next attempt fits the budget again.
    pub frees_at: Timestamp,
}

/// The instants the budget is counted against at `now`, computed once per tick.
#[derive(Debug, Clone, Copy)]
pub struct BudgetClock {
    now: Timestamp,
    /// Attempts after this are in the rolling day.
    from_24h: Timestamp,
    /// Today's local midnight in the business's zone, and tomorrow's.
    day: Option<(Timestamp, Timestamp)>,
}

impl BudgetClock {
    pub fn new(now: Timestamp, rules: &Rules) -> BudgetClock {
        let day = rules.business_zone.as_ref().and_then(|tz| {
            let today = now.to_zoned(tz.clone()).date();
            let start = today.to_zoned(tz.clone()).ok()?.timestamp();
            let end = today
                .tomorrow()
                .ok()?
                .to_zoned(tz.clone())
                .ok()?
                .timestamp();
            Some((start, end))
        });
        BudgetClock {
            now,
            from_24h: now - DAY,
            day,
        }
    }
}

impl Rules {
    /// The caps the store enforces when an attempt begins at `now` (the same budget, checked
    /// again in the attempt's transaction).
    pub fn attempt_caps(&self, now: Timestamp) -> Vec<AttemptCap> {
        let c = BudgetClock::new(now, self);
        let mut out = Vec::new();
        if let Some(cap) = self.max_per_number_24h {
            out.push(AttemptCap {
                after: c.from_24h,
                inclusive: false,
                cap,
                rule: "max_per_number_24h",
            });
        }
        if let (Some(cap), Some((start, _))) = (self.max_per_number_day, c.day) {
            out.push(AttemptCap {
                after: start,
                inclusive: true,
                cap,
                rule: "max_per_number_day",
            });
        }
        out
    }
}

/// Is a number with these attempt starts (sorted) over budget at `now`? When both caps hold it
/// back, the later freeing wins: that is when it may be called.
pub fn budget(starts: &[Timestamp], now: Timestamp, rules: &Rules) -> Option<Budget> {
    budget_at(starts, &BudgetClock::new(now, rules), rules)
}

/// [`budget`] with the tick's clock computed once.
pub fn budget_at(starts: &[Timestamp], c: &BudgetClock, rules: &Rules) -> Option<Budget> {
    let mut out: Option<Budget> = None;
    let mut keep = |b: Budget| {
        if out.is_none_or(|o| b.frees_at > o.frees_at) {
            out = Some(b);
        }
    };
    let hi = starts.partition_point(|t| *t <= c.now);
    if let Some(cap) = rules.max_per_number_24h {
        let lo = starts.partition_point(|t| *t <= c.from_24h);
        let used = hi.saturating_sub(lo) as u32;
        if used >= cap && cap > 0 {
            // The count drops under the cap when the (used - cap + 1)-th oldest leaves.
            let leaving = starts[lo + (used - cap) as usize];
            keep(Budget {
                rule: "max_per_number_24h",
                used,
                cap,
                frees_at: leaving + DAY,
            });
        }
    }
    if let (Some(cap), Some((start, end))) = (rules.max_per_number_day, c.day) {
        let lo = starts.partition_point(|t| *t < start);
        let used = hi.saturating_sub(lo) as u32;
        if used >= cap && cap > 0 {
            keep(Budget {
                rule: "max_per_number_day",
                used,
                cap,
                frees_at: end,
            });
        }
    }
    out
}

/// The calling window in the customer's own zone (`customer_hours`).
#[derive(Debug, Clone)]
pub struct CustomerHours {
    /// Monday to Friday.
    pub weekdays: Vec<DayRange>,
    /// Saturday and Sunday (`customer_hours_weekend`, default the weekday window).
    pub weekend: Vec<DayRange>,
    pub unknown_region: UnknownRegion,
    pub unknown_country: UnknownCountry,
    /// `customer_zones`: prefix -> zone, longest prefix first, checked before the table.
    pub overrides: Vec<(String, TimeZone, String)>,
    pub business_zone: TimeZone,
}

/// Where a customer's clock is read.
#[derive(Debug, Clone, PartialEq)]
pub enum CustomerZone {
    /// Zones of the table (the window must hold in all).
    Table(ZoneSet, &'static str),
    /// A zone given by `customer_zones`, or the business's zone for an unknown country.
    One(TimeZone, String, &'static str),
    /// Not called at all (`customer_unknown_country = "never"`).
    Never,
}

impl CustomerHours {
    fn hours_in(&self, tz: TimeZone) -> Hours {
        let week: [Vec<DayRange>; 7] = std::array::from_fn(|d| {
            if d < 5 {
                self.weekdays.clone()
            } else {
                self.weekend.clone()
            }
        });
        Hours::new(tz, week, [], [])
    }

    /// The zone(s) whose clock decides for this number, and how they were found.
    pub fn zone_of(&self, number: &str) -> CustomerZone {
        if let Some((_, tz, name)) = self
            .overrides
            .iter()
            .find(|(p, _, _)| number.starts_with(p))
        {
            return CustomerZone::One(tz.clone(), name.clone(), "customer_zones");
        }
        match ZoneTable::get().lookup(number) {
            Lookup::Region(s) => CustomerZone::Table(s, "region"),
            Lookup::CountryOnly(s) => match self.unknown_region {
                UnknownRegion::AllZones => CustomerZone::Table(s, "every zone of the country"),
                UnknownRegion::BusinessZone => CustomerZone::One(
                    self.business_zone.clone(),
                    self.business_zone
                        .iana_name()
                        .unwrap_or("business")
                        .to_string(),
                    "region unknown: business zone",
                ),
            },
            Lookup::UnknownCountry => match self.unknown_country {
                UnknownCountry::BusinessZone => CustomerZone::One(
                    self.business_zone.clone(),
                    self.business_zone
                        .iana_name()
                        .unwrap_or("business")
                        .to_string(),
                    "country unknown: business zone",
                ),
                UnknownCountry::Never => CustomerZone::Never,
            },
        }
    }

    /// Which of the table's zones are inside the window at `now`: computed once per tick, so a
    /// task costs a lookup and a mask test.
    pub fn open_mask(&self, now: Timestamp) -> CustomerClock {
        let t = ZoneTable::get();
        let mut open: ZoneSet = 0;
        for i in 0..t.len() {
            if self.hours_in(t.zone(i).clone()).is_open(now) {
                open |= 1 << i;
            }
        }
        let business = self.hours_in(self.business_zone.clone()).is_open(now);
        let overrides = self
            .overrides
            .iter()
            .map(|(_, tz, _)| self.hours_in(tz.clone()).is_open(now))
            .collect();
        CustomerClock {
            open,
            business,
            overrides,
        }
    }

    /// Is it within the window for this number, given the tick's clock?
    pub fn allows(&self, number: &str, clock: &CustomerClock) -> bool {
        if let Some(i) = self
            .overrides
            .iter()
            .position(|(p, _, _)| number.starts_with(p.as_str()))
        {
            return clock.overrides[i];
        }
        match ZoneTable::get().lookup(number) {
            Lookup::Region(s) => s & !clock.open == 0,
            Lookup::CountryOnly(s) => match self.unknown_region {
                UnknownRegion::AllZones => s & !clock.open == 0,
                UnknownRegion::BusinessZone => clock.business,
            },
            Lookup::UnknownCountry => match self.unknown_country {
                UnknownCountry::BusinessZone => clock.business,
                UnknownCountry::Never => false,
            },
        }
    }

    /// When the window next holds for this number (in every zone of its set), at or after
    /// `after`; `None` if never within two weeks (a window that never overlaps in all zones).
    pub fn next_allowed(&self, number: &str, after: Timestamp) -> Option<Timestamp> {
        let hours: Vec<Hours> = match self.zone_of(number) {
            CustomerZone::Never => return None,
            CustomerZone::One(tz, _, _) => vec![self.hours_in(tz)],
            CustomerZone::Table(s, _) => {
                let t = ZoneTable::get();
                (0..t.len())
                    .filter(|i| s & (1 << i) != 0)
                    .map(|i| self.hours_in(t.zone(i).clone()))
                    .collect()
            }
        };
        // Jump to the latest of the zones' next openings until all are open at once.
        let mut at = after;
        let limit = after + SignedDuration::from_hours(24 * 14);
        while at < limit {
            let mut latest = at;
            for h in &hours {
                latest = latest.max(h.next_open(at)?);
            }
            if latest == at {
                return Some(at);
            }
            at = latest;
        }
        None
    }

    /// A customer's local time, for messages: "07:12 Asia/Vladivostok".
    pub fn describe(&self, number: &str, at: Timestamp) -> String {
        match self.zone_of(number) {
            CustomerZone::Never => "country not in the zone table".into(),
            CustomerZone::One(tz, name, _) => {
                format!("{} {name}", at.to_zoned(tz).strftime("%H:%M"))
            }
            CustomerZone::Table(s, how) => {
                let names = ZoneTable::names(s);
                if names.len() == 1 {
                    let tz = TimeZone::get(names[0]).unwrap_or(TimeZone::UTC);
                    format!("{} {}", at.to_zoned(tz).strftime("%H:%M"), names[0])
                } else {
                    format!("{how}: {} zones", names.len())
                }
            }
        }
    }
}

/// [`CustomerHours::open_mask`]: the state of every zone at one instant.
#[derive(Debug, Clone, Default)]
pub struct CustomerClock {
    open: ZoneSet,
    business: bool,
    overrides: Vec<bool>,
}

/// What Asterisk's `QueueSummary` said of one queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueLoad {
    pub queue: String,
    pub logged_in: u32,
    /// Members logged in, not paused and not on a call.
    pub available: u32,
    /// Callers waiting in the queue now.
    pub callers: u32,
}

/// Why a target takes no callback now (fairness to callers waiting inbound).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueBusy {
    pub queue: String,
    pub callers: u32,
    pub available: u32,
    pub reserve: u32,
}

impl std::fmt::Display for QueueBusy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.callers > 0 {
            write!(
                f,
                "queue {} busy: {} caller(s) waiting",
                self.queue, self.callers
            )
        } else {
            write!(
                f,
                "queue {} busy: {} free, {} reserved for inbound",
                self.queue, self.available, self.reserve
            )
        }
    }
}

/// How many callbacks a target may take now, from its free people (`free`, as counted before)
/// and the summaries of the queues it serves (the target queue, or the queues an endpoint is a
/// member of): none while any caller waits in one of them, else at most `available - reserve`
/// of each. `Err` names the queue that holds it back.
pub fn callback_capacity(free: u32, loads: &[QueueLoad], rules: &Rules) -> Result<u32, QueueBusy> {
    let mut n = free;
    for l in loads {
        let reserve = rules.reserve_of(&l.queue);
        let spare = l.available.saturating_sub(reserve);
        if l.callers > 0 || spare == 0 {
            return Err(QueueBusy {
                queue: l.queue.clone(),
                callers: l.callers,
                available: l.available,
                reserve,
            });
        }
        n = n.min(spare);
    }
    Ok(n)
}

/// Why a task has to expire now, if it does: `expire_after` (too old) or `closing` (the working
/// day it was due in has closed), or `give_up_after` (pending past its horizon, never dialled
/// again). `closes` are the working days' closing instants, sorted ([`day_closes`]).
pub fn expiry(
    t: &Task,
    now: Timestamp,
    policy: &Policy,
    rules: &Rules,
    closes: &[Timestamp],
) -> Option<&'static str> {
    Expiry::new(now, policy, rules, closes).of(t)
}

/// [`expiry`] with the per-tick arithmetic done once.
struct Expiry<'a> {
    now: Timestamp,
    /// A task first missed at or before this is too old (`expire_after`).
    too_old: Option<Timestamp>,
    delay: SignedDuration,
    closes: Option<&'a [Timestamp]>,
}

impl<'a> Expiry<'a> {
    fn new(now: Timestamp, policy: &Policy, rules: &Rules, closes: &'a [Timestamp]) -> Self {
        Expiry {
            now,
            too_old: rules.expire_after.map(|max| {
                SignedDuration::try_from(max)
                    .ok()
                    .and_then(|d| now.checked_sub(d).ok())
                    .unwrap_or(Timestamp::MIN)
            }),
            delay: SignedDuration::try_from(policy.delay).unwrap_or(SignedDuration::MAX),
            closes: rules.expire_at_close.then_some(closes),
        }
    }

    #[inline]
    fn of(&self, t: &Task) -> Option<&'static str> {
        if t.state != TaskState::Pending {
            return None;
        }
        if self.too_old.is_some_and(|o| t.first_missed_at <= o) {
            return Some("expire_after");
        }
        if let Some(closes) = self.closes {
            let due0 = t
                .first_missed_at
                .checked_add(self.delay)
                .unwrap_or(Timestamp::MAX);
            // The first working day's close after it fell due.
            let i = closes.partition_point(|c| *c <= due0);
            if closes.get(i).is_some_and(|c| *c <= self.now) {
                return Some("closing");
            }
        }
        if self.now >= t.give_up_at {
            return Some("give_up_after");
        }
        None
    }
}

/// The closing instant of every working day from `from` to `to` (local dates of the business
/// zone), sorted: the end of each day's last range. At most 800 days back from `to`.
pub fn day_closes(hours: &Hours, from: Timestamp, to: Timestamp) -> Vec<Timestamp> {
    let tz = hours.time_zone().clone();
    let mut date = from.to_zoned(tz.clone()).date();
    let last = to.to_zoned(tz.clone()).date();
    if let Ok(earliest) = last.checked_sub(jiff::Span::new().days(800)) {
        date = date.max(earliest);
    }
    let mut out = Vec::new();
    while date <= last {
        if let Some(r) = hours.ranges_on(date).iter().map(|r| r.end_min).max() {
            let (d, m) = if r >= 1440 {
                (date.tomorrow().unwrap_or(date), r - 1440)
            } else {
                (date, r)
            };
            if let Ok(time) = jiff::civil::Time::new((m / 60) as i8, (m % 60) as i8, 0, 0) {
                if let Ok(z) = jiff::civil::DateTime::from_parts(d, time).to_zoned(tz.clone()) {
                    out.push(z.timestamp());
                }
            }
        }
        match date.tomorrow() {
            Ok(d) => date = d,
            Err(_) => break,
        }
    }
    out
}

/// Every pending task that has to expire at `now`, with the reason.
pub fn expired(
    tasks: &[Task],
    now: Timestamp,
    hours: &Hours,
    policy: &Policy,
    rules: &Rules,
) -> Vec<(i64, &'static str)> {
    let closes = if rules.expire_at_close {
        let from = tasks
            .iter()
            .filter(|t| t.state == TaskState::Pending)
            .map(|t| t.first_missed_at)
            .min()
            .unwrap_or(now);
        day_closes(hours, from, now)
    } else {
        Vec::new()
    };
    let e = Expiry::new(now, policy, rules, &closes);
    tasks
        .iter()
        .filter_map(|t| e.of(t).map(|r| (t.id, r)))
        .collect()
}

/// Why a pending task is not being dialled at `now`, for `callbacks list`.
#[derive(Debug, Clone, PartialEq)]
pub enum Wait {
    /// Its spacing (or the delay after the miss) runs until then.
    Spacing(Timestamp),
    /// The business is closed; opens then (`None`: never within two years).
    Closed(Option<Timestamp>),
    /// Over the per-number budget.
    OverBudget(Budget),
    /// Outside the window on the customer's clock; allowed again then.
    CustomerNight {
        local: String,
        until: Option<Timestamp>,
    },
    /// Due now: waits for a slot, a free agent or a queue (see the target state).
    Due,
}

impl Wait {
    /// The short code `callbacks list --format json` prints (`waiting`).
    pub fn code(&self) -> &'static str {
        match self {
            Wait::Spacing(_) => "spacing",
            Wait::Closed(_) => "closed",
            Wait::OverBudget(_) => "over_budget",
            Wait::CustomerNight { .. } => "customer_night",
            Wait::Due => "due",
        }
    }

    /// When the task can be dialled at the earliest, as far as this reason goes.
    pub fn until(&self) -> Option<Timestamp> {
        match self {
            Wait::Spacing(t) => Some(*t),
            Wait::Closed(t) => *t,
            Wait::OverBudget(b) => Some(b.frees_at),
            Wait::CustomerNight { until, .. } => *until,
            Wait::Due => None,
        }
    }
}

/// The first reason, in the planner's order, that a pending task is not dialled at `now`.
pub fn why_waiting(
    t: &Task,
    now: Timestamp,
    hours: &Hours,
    rules: &Rules,
    starts: &[Timestamp],
) -> Wait {
    if t.next_attempt_at > now {
        return Wait::Spacing(t.next_attempt_at);
    }
    if !hours.is_open(now) {
        return Wait::Closed(hours.next_open(now));
    }
    if let Some(b) = budget(starts, now, rules) {
        return Wait::OverBudget(b);
    }
    if let Some(c) = &rules.customer {
        if !c.allows(&t.number, &c.open_mask(now)) {
            return Wait::CustomerNight {
                local: c.describe(&t.number, now),
                until: c.next_allowed(&t.number, now),
            };
        }
    }
    Wait::Due
}

/// The earliest instant at or after `now` when every guard of a pending task lets it through
/// (its spacing, the business's hours, the number's budget, the customer's clock), found by
/// moving to the latest of the reasons' ends until none holds; `None`: never within the search
/// (the hours never open, or the customer's window never meets them).
pub fn earliest_possible(
    t: &Task,
    now: Timestamp,
    hours: &Hours,
    rules: &Rules,
    starts: &[Timestamp],
) -> Option<Timestamp> {
    let mut at = now.max(t.next_attempt_at);
    for _ in 0..16 {
        match why_waiting(t, at, hours, rules, starts) {
            Wait::Due => return Some(at),
            w => at = w.until().filter(|u| *u > at)?,
        }
    }
    None
}

/// The planner's view of the guards at one tick: the numbers held back (customers on a live
/// call, numbers over budget) and the customer window with its clock. Built with
/// [`Context::live`], [`Context::over_budget`] and [`Context::customer`].
///
/// The held numbers are few (hundreds or thousands) and the tasks many (up to 100 000 a tick),
/// so a 65 536-bit filter on a cheap hash of the number answers "not held" for almost every
/// task without touching the hash set; only a filter hit pays for the set's SipHash lookup
/// (which keeps the set immune to crafted caller numbers).
#[derive(Default)]
pub struct Context<'a> {
    filter: Vec<u64>,
    held: HashSet<&'a str>,
    customer: Option<(&'a CustomerHours, &'a CustomerClock)>,
}

const FILTER_WORDS: usize = 1024;

/// FNV-1a over the number's bytes, folded to 16 bits.
#[inline]
fn filter_bit(number: &str) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in number.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    ((h ^ (h >> 32) ^ (h >> 16)) & 0xffff) as usize
}

impl<'a> Context<'a> {
    fn hold(&mut self, number: &'a str) {
        if self.filter.is_empty() {
            self.filter = vec![0; FILTER_WORDS];
        }
        let bit = filter_bit(number);
        self.filter[bit / 64] |= 1 << (bit % 64);
        self.held.insert(number);
    }

    /// Customers on a live call with the PBX.
    pub fn live(mut self, live: &'a HashSet<String>) -> Self {
        for n in live {
            self.hold(n);
        }
        self
    }

    /// Numbers over budget ([`AttemptLog::over_budget`]).
    pub fn over_budget(mut self, over: &'a HashMap<String, Budget>) -> Self {
        for n in over.keys() {
            self.hold(n);
        }
        self
    }

    /// The customer window and its clock at this tick.
    pub fn customer(mut self, c: Option<(&'a CustomerHours, &'a CustomerClock)>) -> Self {
        self.customer = c;
        self
    }

    /// Is this number held back by a guard now?
    #[inline]
    pub fn holds(&self, number: &str) -> bool {
        if !self.filter.is_empty() {
            let bit = filter_bit(number);
            if self.filter[bit / 64] & (1 << (bit % 64)) != 0 && self.held.contains(number) {
                return true;
            }
        }
        if let Some((c, clock)) = self.customer {
            if !c.allows(number, clock) {
                return true;
            }
        }
        false
    }
}

/// A per-number cap the store checks when it begins an attempt: at most `cap` attempts started
/// after `after` (at or after it when `inclusive`).
#[derive(Debug, Clone, Copy)]
pub struct AttemptCap {
    pub after: jiff::Timestamp,
    pub inclusive: bool,
    pub cap: u32,
    /// The setting, for the message (`max_per_number_24h`).
    pub rule: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_range;

    fn msk(s: &str) -> Timestamp {
        s.parse::<jiff::civil::DateTime>()
            .unwrap()
            .to_zoned(TimeZone::get("Europe/Moscow").unwrap())
            .unwrap()
            .timestamp()
    }

    fn rules() -> Rules {
        Rules {
            max_per_number_24h: Some(3),
            max_per_number_day: Some(2),
            business_zone: Some(TimeZone::get("Europe/Moscow").unwrap()),
            ..Rules::default()
        }
    }

    #[test]
    fn rolling_budget_frees_when_the_oldest_leaves() {
        let r = Rules {
            max_per_number_day: None,
            ..rules()
        };
        let s = [
            msk("2026-12-21T10:00:00"),
            msk("2026-12-21T15:00:00"),
            msk("2026-12-22T09:00:00"),
        ];
        // Two in the window: fine.
        assert_eq!(budget(&s[..2], msk("2026-12-21T16:00:00"), &r), None);
        let b = budget(&s, msk("2026-12-22T09:30:00"), &r).unwrap();
        assert_eq!((b.rule, b.used, b.cap), ("max_per_number_24h", 3, 3));
        assert_eq!(b.frees_at, msk("2026-12-22T10:00:00"));
        // At 10:00 the first has left the rolling day.
        assert_eq!(budget(&s, msk("2026-12-22T10:00:00"), &r), None);
        // A cap of 1: the latest must leave.
        let one = Rules {
            max_per_number_24h: Some(1),
            ..r.clone()
        };
        assert_eq!(
            budget(&s, msk("2026-12-22T09:30:00"), &one)
                .unwrap()
                .frees_at,
            msk("2026-12-23T09:00:00")
        );
    }

    #[test]
    fn day_budget_frees_at_local_midnight() {
        let r = Rules {
            max_per_number_24h: None,
            ..rules()
        };
        let s = [msk("2026-12-21T10:00:00"), msk("2026-12-21T17:00:00")];
        let b = budget(&s, msk("2026-12-21T17:30:00"), &r).unwrap();
        assert_eq!(b.rule, "max_per_number_day");
        assert_eq!(b.frees_at, msk("2026-12-22T00:00:00"));
        // The next day counts afresh, although the rolling day would still hold both.
        assert_eq!(budget(&s, msk("2026-12-22T09:00:00"), &r), None);
        // Both caps: the later freeing wins.
        let both = rules();
        let s3 = [
            msk("2026-12-21T22:00:00"),
            msk("2026-12-22T08:00:00"),
            msk("2026-12-22T09:00:00"),
        ];
        let b = budget(&s3, msk("2026-12-22T09:30:00"), &both).unwrap();
        assert_eq!(b.rule, "max_per_number_day");
        assert_eq!(b.frees_at, msk("2026-12-23T00:00:00"));
    }

    fn window() -> CustomerHours {
        CustomerHours {
            weekdays: vec![parse_range("09:00-21:00").unwrap()],
            weekend: vec![parse_range("10:00-20:00").unwrap()],
            unknown_region: UnknownRegion::AllZones,
            unknown_country: UnknownCountry::BusinessZone,
            overrides: Vec::new(),
            business_zone: TimeZone::get("Europe/Moscow").unwrap(),
        }
    }

    #[test]
    fn customer_clock_per_zone() {
        let c = window();
        // 10:00 in Moscow on a Monday is 17:00 in Vladivostok and 08:00 in Kaliningrad... no:
        // Kaliningrad is an hour behind Moscow, 09:00 there.
        let at = msk("2026-12-21T08:30:00");
        let clock = c.open_mask(at);
        assert!(!c.allows("74951234567", &clock), "08:30 in Moscow");
        assert!(c.allows("74232123456", &clock), "15:30 in Vladivostok");
        let at = msk("2026-12-21T14:00:00");
        let clock = c.open_mask(at);
        assert!(c.allows("74951234567", &clock));
        assert!(!c.allows("74152123456", &clock), "23:00 in Kamchatka");
        assert_eq!(
            c.next_allowed("74152123456", at),
            Some(msk("2026-12-22T00:00:00")),
            "09:00 in Kamchatka (UTC+12) is midnight in Moscow"
        );
        // Region unknown: every Russian zone must be in the window (10:00-12:00 Moscow).
        let mobile = "79141234567";
        assert!(!c.allows(mobile, &c.open_mask(msk("2026-12-21T09:59:00"))));
        assert!(c.allows(mobile, &c.open_mask(msk("2026-12-21T10:00:00"))));
        assert!(!c.allows(mobile, &c.open_mask(msk("2026-12-21T12:00:00"))));
        assert_eq!(
            c.next_allowed(mobile, msk("2026-12-21T13:00:00")),
            Some(msk("2026-12-22T10:00:00"))
        );
        // Saturday uses the weekend window in the customer's zone.
        let sat = msk("2026-12-26T09:30:00");
        assert!(!c.allows("74951234567", &c.open_mask(sat)));
        // Unknown country: the business zone; or never.
        let br = "5511912345678";
        assert!(c.allows(br, &c.open_mask(msk("2026-12-21T10:00:00"))));
        let never = CustomerHours {
            unknown_country: UnknownCountry::Never,
            ..window()
        };
        assert!(!never.allows(br, &never.open_mask(msk("2026-12-21T10:00:00"))));
        assert_eq!(never.next_allowed(br, msk("2026-12-21T10:00:00")), None);
        // Business zone for an unknown region.
        let lax = CustomerHours {
            unknown_region: UnknownRegion::BusinessZone,
            ..window()
        };
        assert!(lax.allows(mobile, &lax.open_mask(msk("2026-12-21T09:30:00"))));
        // An operator's prefix wins over the table.
        let own = CustomerHours {
            overrides: vec![(
                "7914".into(),
                TimeZone::get("Asia/Vladivostok").unwrap(),
                "Asia/Vladivostok".into(),
            )],
            ..window()
        };
        assert!(own.allows(mobile, &own.open_mask(msk("2026-12-21T08:00:00"))));
        assert!(!own.allows(mobile, &own.open_mask(msk("2026-12-21T14:30:00"))));
    }

    #[test]
    fn the_earliest_call_meets_the_business_hours_and_the_customers_window() {
        let h = crate::test_support::moscow_weekdays(&[], &[]);
        let r = Rules {
            customer: Some(window()),
            ..rules()
        };
        let task = |n: &str| Task {
            id: 1,
            number: n.into(),
            state: TaskState::Pending,
            server: "lab".into(),
            missed_count: 1,
            attempts: 0,
            attempt_budget: 3,
            lost_at: None,
            first_missed_at: msk("2026-12-21T08:00:00"),
            last_missed_at: msk("2026-12-21T08:00:00"),
            next_attempt_at: msk("2026-12-21T08:01:00"),
            give_up_at: msk("2026-12-31T00:00:00"),
            last_attempt_at: None,
            last_outcome: None,
            use_fallback: false,
            routing: Default::default(),
        };
        // Vladivostok's 09:00-21:00 is 02:00-14:00 in Moscow; Moscow's lunch is 13-14: at 15:00
        // Monday the next chance is Tuesday's opening.
        let vl = task("74232123456");
        let at = msk("2026-12-21T15:00:00");
        assert_eq!(
            earliest_possible(&vl, at, &h, &r, &[]),
            Some(msk("2026-12-22T09:00:00"))
        );
        assert_eq!(why_waiting(&vl, at, &h, &r, &[]).code(), "customer_night");
        // Over budget too: the budget frees at midnight, then the opening.
        let two = [msk("2026-12-21T10:00:00"), msk("2026-12-21T11:00:00")];
        assert_eq!(why_waiting(&vl, at, &h, &r, &two).code(), "over_budget");
        assert_eq!(
            earliest_possible(&vl, at, &h, &r, &two),
            Some(msk("2026-12-22T09:00:00"))
        );
        // New York's 09:00 is 17:00 Moscow in winter (EST): an hour before Moscow's 18:00
        // close; in June (EDT) it is 16:00. The zone's own DST decides.
        let ny = task("12125550123");
        let c = window();
        assert!(!c.allows("12125550123", &c.open_mask(msk("2026-12-21T16:30:00"))));
        assert!(c.allows("12125550123", &c.open_mask(msk("2026-12-21T17:00:00"))));
        assert_eq!(
            earliest_possible(&ny, msk("2026-12-21T10:00:00"), &h, &r, &[]),
            Some(msk("2026-12-21T17:00:00"))
        );
        assert!(c.allows("12125550123", &c.open_mask(msk("2026-06-22T16:00:00"))));
        assert!(!c.allows("12125550123", &c.open_mask(msk("2026-06-22T15:59:00"))));
    }

    #[test]
    fn the_context_holds_exactly_the_live_and_over_budget_numbers() {
        let live: HashSet<String> = (0..500).map(|i| format!("7916{i:07}")).collect();
        let b = Budget {
            rule: "max_per_number_24h",
            used: 3,
            cap: 3,
            frees_at: msk("2026-12-22T10:00:00"),
        };
        let over: HashMap<String, Budget> = (0..500).map(|i| (format!("7926{i:07}"), b)).collect();
        let ctx = Context::default().live(&live).over_budget(&over);
        for i in 0..20_000 {
            let n = format!("7916{i:07}");
            assert_eq!(ctx.holds(&n), i < 500, "{n}");
            let n = format!("7926{i:07}");
            assert_eq!(ctx.holds(&n), i < 500, "{n}");
        }
        assert!(!Context::default().holds("79161234567"));
    }

    #[test]
    fn queue_capacity_keeps_the_reserve_and_yields_to_waiting_callers() {
        let mut r = Rules {
            queue_reserve: 1,
            ..Rules::default()
        };
        let load = |callers, available| QueueLoad {
            queue: "sales".into(),
            logged_in: 3,
            available,
            callers,
        };
        assert_eq!(callback_capacity(3, &[load(0, 3)], &r), Ok(2));
        assert_eq!(callback_capacity(1, &[load(0, 3)], &r), Ok(1));
        let e = callback_capacity(3, &[load(0, 1)], &r).unwrap_err();
        assert_eq!((e.available, e.reserve), (1, 1));
        assert!(e.to_string().contains("reserved for inbound"));
        let e = callback_capacity(3, &[load(2, 3)], &r).unwrap_err();
        assert_eq!(e.callers, 2);
        r.queue_reserves.insert("sales".into(), 0);
        assert_eq!(callback_capacity(3, &[load(0, 1)], &r), Ok(1));
        // No queue behind the target: the free people decide.
        assert_eq!(callback_capacity(2, &[], &r), Ok(2));
    }
}
