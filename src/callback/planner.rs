//! The callback policy as pure functions: which misses become tasks, which tasks are due at an
//! instant, what an attempt's outcome does to its task, which calls cancel a task.
//!
//! Nothing here awaits, reads a clock or touches SQLite: the dialer passes `now` and the open
//! tasks, and carries out what comes back. That is what lets the tests cross midnight, a DST
//! change and a holiday, and the bench decide among 100 000 tasks, without a PBX.
//!
//! Rules (issue 4):
//! - One task per normalised number; a repeated miss raises `missed_count`, and the most-missed
//!   numbers are called first (then the longest waiting).
//! - A miss qualifies when the tracker marked it `missed` (never `ignored`), its `lost_at` is one
//!   of `callback.lost_at`, and its number is a [`DialNumber`] (digits, allow-list, deny-list);
//!   withheld and anonymous callers are skipped.
//! - First attempt `delay` after the miss; at most `max_attempts`; attempt n+1 waits
//!   `retry_every * retry_backoff^(n-1)` after attempt n; nothing after `give_up_after` from the
//!   last miss.
//! - Only while open. Misses that waited for an opening are let through gradually over `spread`
//!   (a quota growing linearly from the opening), so the first minutes don't flood the agents.
//! - `max_concurrent` in-flight attempts overall and `max_concurrent_per_target` per target;
//!   a task in flight is never due again (one attempt per number at a time).
//! - A task whose customer is on a live call with the PBX is not started; it waits, unchanged,
//!   for the call to end ([`due_avoiding`]).
//! - After `agent_missed`, the next attempt goes to `fallback_queue` (when set), after `delay`
//!   rather than the full spacing: the customer has just answered once.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::guard::Context;
use super::hours::Hours;
use super::originate::{DialNumber, Rejected};
use super::request::{Routing, TaskKind};
use crate::calls::record::{CallRecord, CallbackOutcome, Direction, LostAt, Status};
use crate::config::{CallbackConfig, Target};
use crate::number::{KindGuard, NumberPlan};

/// A task's life: `pending` (waiting for its next attempt) <-> `in_progress` (an attempt is in
/// flight) -> `done` | `given_up` | `cancelled` | `expired`; and `in_progress` -> `unknown` when
/// the attempt's outcome could not be known (it may have reached the customer), which waits for
/// an explicit `callbacks retry` (or a new miss of the number) and is never dialled by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskState {
    Pending,
    InProgress,
    Done,
    GivenUp,
    Cancelled,
    /// The callback is no longer useful (`expire_after`, `expire_at_close`, `give_up_after`).
    Expired,
    /// The last attempt's outcome is unknown: not dialled again without an explicit retry.
    Unknown,
}

impl TaskState {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::InProgress => "in_progress",
            TaskState::Done => "done",
            TaskState::GivenUp => "given_up",
            TaskState::Cancelled => "cancelled",
            TaskState::Expired => "expired",
            TaskState::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<TaskState> {
        [
            TaskState::Pending,
            TaskState::InProgress,
            TaskState::Done,
            TaskState::GivenUp,
            TaskState::Cancelled,
            TaskState::Expired,
            TaskState::Unknown,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }

    /// Not closed: the number's one task (`unknown` included: it is not dialled, but a new
    /// miss of the number reopens it rather than starting a second task).
    pub fn is_open(self) -> bool {
        matches!(
            self,
            TaskState::Pending | TaskState::InProgress | TaskState::Unknown
        )
    }
}

/// How an attempt ended: a [`CallbackOutcome`], or `unknown` when perezvon lost sight of it
/// (crash or restart mid-attempt, or no outcome within its deadline).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttemptOutcome {
    Call(CallbackOutcome),
    Unknown,
}

impl AttemptOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Call(o) => o.as_str(),
            AttemptOutcome::Unknown => "unknown",
        }
    }
    pub fn parse(s: &str) -> Option<AttemptOutcome> {
        if s == "unknown" {
            Some(AttemptOutcome::Unknown)
        } else {
            CallbackOutcome::parse(s).map(AttemptOutcome::Call)
        }
    }
}

/// One callback task as the planner sees it (a row of `callback_tasks`).
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub id: i64,
    /// Normalised; re-validated into a [`DialNumber`] before every Originate.
    pub number: String,
    pub state: TaskState,
    /// The `[[asterisk]]` the miss was seen on.
    pub server: String,
    pub missed_count: u32,
    /// Attempts made so far.
    pub attempts: u32,
    /// Attempts allowed in total (`max_attempts`, raised by `callbacks retry`).
    pub attempt_budget: u32,
    pub lost_at: Option<LostAt>,
    pub first_missed_at: Timestamp,
    pub last_missed_at: Timestamp,
    /// Not before this instant (delay, spacing).
    pub next_attempt_at: Timestamp,
    /// Not at or after this instant (`give_up_after` from the last miss).
    pub give_up_at: Timestamp,
    pub last_attempt_at: Option<Timestamp>,
    pub last_outcome: Option<AttemptOutcome>,
    /// The next attempt goes to `fallback_queue` (an agent did not take the previous one).
    pub use_fallback: bool,
    /// Kind, owner and place in line (issue 14: requested and owned callbacks).
    pub routing: Routing,
}

/// The policy of `[callback]`, in the planner's terms.
#[derive(Debug, Clone)]
pub struct Policy {
    pub lost_at: Vec<LostAt>,
    pub allow: Vec<regex::Regex>,
    pub deny: Vec<regex::Regex>,
    /// `callback.allow_kinds`/`allow_countries`, checked after `allow` and `deny`.
    pub kind_guard: KindGuard,
    pub delay: Duration,
    pub max_attempts: u32,
    pub retry_every: Duration,
    /// Spacing after a `busy` outcome; `None`: the normal spacing.
    pub retry_busy: Option<Duration>,
    pub retry_backoff: f64,
    pub give_up_after: Duration,
    pub max_concurrent: u32,
    pub max_concurrent_per_target: u32,
    pub spread: Duration,
    pub target: Target,
    pub fallback: Option<Target>,
    /// `calls.min_talk`: an outbound call at least this long resolves a miss.
    pub min_talk: Duration,
    /// Issue 14: owned callbacks and the do-not-call list.
    pub request: RequestPolicy,
}

/// The part of the policy for requested and owned callbacks and the do-not-call list.
#[derive(Debug, Clone)]
pub struct RequestPolicy {
    /// `callback.owner_wait`; `None`: owned callbacks are off (no owner is assigned).
    pub owner_wait: Option<Duration>,
    /// `callback.owner_endpoint`, with `{agent}`.
    pub owner_endpoint: String,
    /// The do-not-call list (database and `callback.dnc_file`), normalised numbers. Checked
    /// where the allow-list is: a listed number cannot become a [`DialNumber`].
    pub dnc: std::sync::Arc<HashSet<String>>,
}

impl Default for RequestPolicy {
    fn default() -> RequestPolicy {
        RequestPolicy {
            owner_wait: None,
            owner_endpoint: "PJSIP/{agent}".into(),
            dnc: Default::default(),
        }
    }
}

impl Policy {
    pub fn from_config(cb: &CallbackConfig, min_talk: Duration) -> Policy {
        Policy {
            lost_at: cb.lost_at.iter().filter_map(|l| LostAt::parse(l)).collect(),
            allow: cb.allow.clone(),
            deny: cb.deny.clone(),
            kind_guard: cb.kind_guard.clone(),
            delay: cb.delay,
            max_attempts: cb.max_attempts,
            retry_every: cb.retry_every,
            retry_busy: cb.retry_busy_every,
            retry_backoff: cb.retry_backoff,
            give_up_after: cb.give_up_after,
            max_concurrent: cb.max_concurrent,
            max_concurrent_per_target: cb.max_concurrent_per_target,
            spread: cb.spread,
            target: cb.target.clone(),
            fallback: cb.fallback_queue.clone().map(Target::Queue),
            min_talk,
            request: RequestPolicy {
                owner_wait: cb.request.owner_wait,
                owner_endpoint: cb.request.owner_endpoint.clone(),
                dnc: Default::default(),
            },
        }
    }

    /// Where a task's attempt at `now` goes: its owner's endpoint while the task is still
    /// theirs (owned callbacks), else [`Policy::target_of`].
    pub fn target_at(&self, t: &Task, now: Timestamp) -> std::borrow::Cow<'_, Target> {
        match t.routing.owner_at(now) {
            Some(agent) => std::borrow::Cow::Owned(self.owner_target(agent)),
            None => std::borrow::Cow::Borrowed(self.target_of(t)),
        }
    }

    /// The endpoint of an owner (`owner_endpoint` with `{agent}`).
    pub fn owner_target(&self, agent: &str) -> Target {
        Target::Endpoint(self.request.owner_endpoint.replace("{agent}", agent))
    }

    /// The queue whose waiting callers hold a requested task back: the queue the caller asked
    /// from, else the target's queue. `None` for a missed-call task, or when neither is a queue.
    pub fn hold_queue<'a>(&'a self, t: &'a Task) -> Option<&'a str> {
        if t.routing.kind != TaskKind::Requested {
            return None;
        }
        t.routing.queue.as_deref().or(match &self.target {
            Target::Queue(q) => Some(q.as_str()),
            _ => None,
        })
    }

    /// Where a task's next (or current) attempt goes.
    pub fn target_of(&self, t: &Task) -> &Target {
        match (&self.fallback, t.use_fallback) {
            (Some(f), true) => f,
            _ => &self.target,
        }
    }

    /// Waiting time after the n-th attempt (n >= 1).
    pub fn spacing(&self, attempts_made: u32) -> Duration {
        let exp = attempts_made.saturating_sub(1).min(30) as i32;
        let secs = self.retry_every.as_secs_f64() * self.retry_backoff.powi(exp);
        // Capped at a year so a silly backoff cannot overflow the timestamp arithmetic.
        Duration::from_secs_f64(secs.min(365.0 * 86400.0))
    }

    /// Validates a number for dialling under this policy.
    pub fn dial_number(&self, normalized: &str) -> Result<DialNumber, Rejected> {
        DialNumber::check_consented(
            normalized,
            &self.allow,
            &self.deny,
            &self.kind_guard,
            &self.request.dnc,
        )
    }
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

/// Why a call does not become (or feed) a task.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Skip {
    #[error("not a missed inbound call")]
    NotAMiss,
    #[error("accidental call (ignored)")]
    Ignored,
    #[error("already resolved")]
    Resolved,
    #[error("lost at {0:?}, not one of callback.lost_at")]
    LostAt(Option<LostAt>),
    #[error("caller number withheld")]
    Withheld,
    #[error("number refused: {0}")]
    Number(Rejected),
}

/// Decides whether a call record is a miss to call back, and validates its number.
pub fn admit(rec: &CallRecord, policy: &Policy) -> Result<DialNumber, Skip> {
    if rec.ignored || rec.status == Status::Ignored {
        return Err(Skip::Ignored);
    }
    if rec.direction != Direction::Inbound || rec.status != Status::Missed {
        return Err(Skip::NotAMiss);
    }
    if rec.resolved_by.is_some() {
        return Err(Skip::Resolved);
    }
    match rec.lost_at {
        Some(l) if policy.lost_at.contains(&l) => {}
        other => return Err(Skip::LostAt(other)),
    }
    // Trust the tracker's normalisation only as far as re-checking it: the caller string may be
    // anything a trunk delivered.
    let normalized = match rec.caller_normalized.as_deref() {
        Some(n) if !n.is_empty() => n,
        _ => return Err(Skip::Withheld),
    };
    if matches!(
        NumberPlan::default().normalize(normalized),
        Err(crate::number::NotANumber::Withheld)
    ) {
        return Err(Skip::Withheld);
    }
    policy.dial_number(normalized).map_err(Skip::Number)
}

/// What a qualifying miss does to the tasks.
// A short-lived value, returned once per miss: boxing the task would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum MissPlan {
    /// A new pending task.
    Create(Task),
    /// The number already has an open task: count the miss, push the give-up horizon.
    Bump {
        id: i64,
        missed_count: u32,
        last_missed_at: Timestamp,
        give_up_at: Timestamp,
    },
}

/// Plans a qualifying miss. `existing` is the number's open task, if any. The new task's `id`
/// is 0 until the store assigns one.
pub fn on_miss(
    existing: Option<&Task>,
    number: &DialNumber,
    rec: &CallRecord,
    policy: &Policy,
) -> MissPlan {
    let missed_at = rec.ended_at;
    match existing {
        Some(t) => {
            let last = t.last_missed_at.max(missed_at);
            MissPlan::Bump {
                id: t.id,
                missed_count: t.missed_count.saturating_add(1),
                last_missed_at: last,
                give_up_at: add(last, policy.give_up_after),
            }
        }
        None => MissPlan::Create(Task {
            id: 0,
            number: number.as_str().to_string(),
            state: TaskState::Pending,
            server: rec.server.clone(),
            missed_count: 1,
            attempts: 0,
            attempt_budget: policy.max_attempts,
            lost_at: rec.lost_at,
            first_missed_at: missed_at,
            last_missed_at: missed_at,
            next_attempt_at: add(missed_at, policy.delay),
            give_up_at: add(missed_at, policy.give_up_after),
            last_attempt_at: None,
            last_outcome: None,
            use_fallback: false,
            routing: Default::default(),
        }),
    }
}

/// When a new task for this miss would make its first attempt (`delay` after the miss).
pub fn first_attempt_at(rec: &CallRecord, policy: &Policy) -> Timestamp {
    add(rec.ended_at, policy.delay)
}

/// What an attempt's outcome does to its task.
#[derive(Debug, Clone, PartialEq)]
pub struct AfterOutcome {
    pub state: TaskState,
    pub next_attempt_at: Timestamp,
    pub use_fallback: bool,
    /// Why a task was closed: `connected`, `max_attempts`, `give_up_after`.
    pub close_reason: Option<&'static str>,
}

/// Applies an outcome to a task whose attempt (already counted in `task.attempts`) just ended.
pub fn after_outcome(
    task: &Task,
    outcome: AttemptOutcome,
    now: Timestamp,
    policy: &Policy,
) -> AfterOutcome {
    let close = |state, reason| AfterOutcome {
        state,
        next_attempt_at: task.next_attempt_at,
        use_fallback: task.use_fallback,
        close_reason: Some(reason),
    };
    if outcome == AttemptOutcome::Call(CallbackOutcome::Connected) {
        return close(TaskState::Done, "connected");
    }
    if task.attempts >= task.attempt_budget {
        return close(TaskState::GivenUp, "max_attempts");
    }
    if outcome == AttemptOutcome::Unknown {
        // The call may have reached the customer (perezvon crashed or lost the link while it
        // was up): dialling again by itself could ring someone who was just served. An operator
        // decides (`callbacks retry`), or the customer does by calling again.
        return AfterOutcome {
            state: TaskState::Unknown,
            next_attempt_at: task.next_attempt_at,
            use_fallback: task.use_fallback,
            close_reason: Some("outcome_unknown"),
        };
    }
    let to_fallback = outcome == AttemptOutcome::Call(CallbackOutcome::AgentMissed)
        && policy.fallback.is_some()
        && !task.use_fallback;
    let busy = outcome == AttemptOutcome::Call(CallbackOutcome::Busy);
    let wait = match (to_fallback, busy, policy.retry_busy) {
        (true, _, _) => policy.delay,
        // The busy schedule: the customer is on another call, not unreachable.
        (false, true, Some(d)) => d,
        _ => policy.spacing(task.attempts),
    };
    // Spacing counts from the attempt's start (a crash that loses the outcome cannot shorten
    // it); the quick fallback counts from now, when the customer has just hung up.
    let next = if to_fallback {
        add(now, wait)
    } else {
        add(task.last_attempt_at.unwrap_or(now), wait)
    };
    if next >= task.give_up_at {
        return close(TaskState::GivenUp, "give_up_after");
    }
    AfterOutcome {
        state: TaskState::Pending,
        next_attempt_at: next,
        use_fallback: task.use_fallback || to_fallback,
        close_reason: None,
    }
}

/// What a caller's request ("press 1") does to the tasks.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum RequestPlan {
    /// A new requested task, due at once (the caller is waiting for it).
    Create(Task),
    /// The number has an open task already: it becomes requested, keeps its id and counts,
    /// takes the caller's place in line and is due now.
    Requeue {
        id: i64,
        queue: Option<String>,
        joined_at: Option<Timestamp>,
        due_at: Timestamp,
    },
}

/// Plans a caller's request for a callback to `number` at `now`. `existing` is the number's open
/// task. The caller joined `queue` at `joined_at` (their place); a requested task is due at
/// once, within working hours, and tried only when no caller waits in that queue and the target
/// has a free person (the dialer asks; [`Policy::hold_queue`]).
pub fn on_request(
    existing: Option<&Task>,
    number: &DialNumber,
    server: &str,
    queue: Option<&str>,
    joined_at: Option<Timestamp>,
    now: Timestamp,
    policy: &Policy,
) -> RequestPlan {
    match existing {
        Some(t) => RequestPlan::Requeue {
            id: t.id,
            queue: queue.map(str::to_string),
            joined_at,
            due_at: now,
        },
        None => RequestPlan::Create(Task {
            id: 0,
            number: number.as_str().to_string(),
            state: TaskState::Pending,
            server: server.to_string(),
            missed_count: 1,
            attempts: 0,
            attempt_budget: policy.max_attempts,
            lost_at: queue.map(|_| LostAt::Queue),
            first_missed_at: now,
            last_missed_at: now,
            next_attempt_at: now,
            give_up_at: add(now, policy.give_up_after),
            last_attempt_at: None,
            last_outcome: None,
            use_fallback: false,
            routing: Routing {
                kind: TaskKind::Requested,
                queue: queue.map(str::to_string),
                joined_at: Some(joined_at.unwrap_or(now)),
                ..Routing::default()
            },
        }),
    }
}

/// The owner of a new task, with owned callbacks on (`owner_wait`): the agent who last talked
/// with the customer (`last_agent`, from the call records), else the person whose own number
/// the customer called (`direct`: the miss was lost at `user`). Attempts wait for them until
/// `since + owner_wait`.
pub fn owner_for(
    last_agent: Option<&str>,
    direct: Option<&str>,
    since: Timestamp,
    policy: &Policy,
) -> Option<(String, Timestamp)> {
    let wait = policy.request.owner_wait?;
    let person = |a: &&str| {
        // Only what can be put into an endpoint name: digits, letters, `_`, `-`, `.`; and not a
        // phone number (7+ digits: an outside party a forward reached is no owner).
        let digits = a.bytes().filter(u8::is_ascii_digit).count();
        !a.is_empty()
            && a.len() <= 40
            && a.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            && !(digits >= 7
                && a.trim_start_matches('+')
                    .bytes()
                    .all(|b| b.is_ascii_digit()))
    };
    let agent = last_agent.filter(person).or(direct.filter(person))?;
    Some((agent.to_string(), add(since, wait)))
}

/// An attempt that went to the task's owner (it was theirs when the attempt started) and did
/// not connect: after one missed attempt the group takes the task. Returns the verdict to
/// apply and whether the owner is released. The next attempt goes to the main target (not
/// `fallback_queue`: that is for the group missing it), and after `agent_missed` it comes
/// after `delay`, the customer having just answered.
pub fn after_owner_attempt(
    task: &Task,
    outcome: AttemptOutcome,
    after: AfterOutcome,
    now: Timestamp,
    policy: &Policy,
) -> (AfterOutcome, bool) {
    let owners = task.routing.owner.is_some()
        && task
            .last_attempt_at
            .is_some_and(|a| task.routing.owner_at(a).is_some());
    if !owners
        || matches!(
            outcome,
            AttemptOutcome::Call(CallbackOutcome::Connected) | AttemptOutcome::Unknown
        )
    {
        return (after, false);
    }
    let mut after = after;
    after.use_fallback = task.use_fallback;
    if after.state == TaskState::Pending
        && outcome == AttemptOutcome::Call(CallbackOutcome::AgentMissed)
    {
        let soon = add(now, policy.delay);
        if soon < task.give_up_at {
            after.next_attempt_at = soon;
        }
    }
    (after, true)
}

/// A task chosen to be dialled now.
#[derive(Debug, Clone, PartialEq)]
pub struct DueTask {
    pub id: i64,
    pub target: Target,
}

/// Priority key, smallest first: requested callbacks before missed calls, requested ones in
/// the order their callers joined the queue (they keep their place in line); then the most
/// missed, then the longest waiting, then the oldest task; the last field is the task's index.
/// Precomputed so selection compares plain integers.
type Key = (u8, u32, i64, i64, u32);

fn key(t: &Task, i: usize) -> Key {
    match t.routing.kind {
        TaskKind::Requested => (
            0,
            0,
            t.routing
                .joined_at
                .unwrap_or(t.first_missed_at)
                .as_microsecond(),
            t.id,
            i as u32,
        ),
        TaskKind::Missed => (
            1,
            u32::MAX - t.missed_count,
            t.next_attempt_at.as_microsecond(),
            t.id,
            i as u32,
        ),
    }
}

/// The `cap` smallest keys seen, in a bounded max-heap: O(n log cap) worst case, and one
/// comparison per key once the heap is full (the usual case: `cap` is a concurrency limit).
struct Best {
    cap: usize,
    heap: std::collections::BinaryHeap<Key>,
    /// Candidates offered, kept or not.
    seen: usize,
}

impl Best {
    fn new(cap: usize) -> Best {
        Best {
            cap,
            heap: std::collections::BinaryHeap::with_capacity(cap.min(1024) + 1),
            seen: 0,
        }
    }

    fn offer(&mut self, k: Key) {
        self.seen += 1;
        if self.heap.len() < self.cap {
            self.heap.push(k);
        } else if self.heap.peek().is_some_and(|top| k < *top) {
            self.heap.pop();
            self.heap.push(k);
        }
    }

    /// The `k` best, sorted.
    fn take(self, k: usize) -> Vec<Key> {
        let mut v = self.heap.into_sorted_vec();
        v.truncate(k);
        v
    }
}

/// Which pending tasks to dial at `now`, best first, within every cap. `tasks` are the open
/// tasks (pending and in progress); in-progress ones count against the caps. Same as
/// [`due_avoiding`] with no customer on a live call.
pub fn due(tasks: &[Task], now: Timestamp, hours: &Hours, policy: &Policy) -> Vec<DueTask> {
    due_avoiding(tasks, now, hours, policy, &HashSet::new())
}

/// [`due`], leaving out the tasks whose number is in `live`: customers on a call with the PBX
/// right now (they called again, or an agent is calling them). Ringing them would reach someone
/// who is already talking to us. Such a task is simply not chosen: it stays pending, uses no
/// attempt, keeps its spacing and its place, and the next tick considers it again. It does
/// not count against the opening's spread either (it is not a candidate this tick).
pub fn due_avoiding(
    tasks: &[Task],
    now: Timestamp,
    hours: &Hours,
    policy: &Policy,
    live: &HashSet<String>,
) -> Vec<DueTask> {
    let ctx = Context::default().live(live);
    due_guarded(tasks, now, hours, policy, &ctx)
}

/// [`due`] under every guard of issue 14 (`ctx`): customers on a live call, numbers over
/// their budget, customers outside their own calling window. A task a guard holds back is left
/// out exactly like one whose customer is on a call: it stays pending, keeps its spacing and
/// its place, uses no attempt and is not given up for it; the next tick considers it again
/// (the budget frees, the customer's morning comes).
pub fn due_guarded(
    tasks: &[Task],
    now: Timestamp,
    hours: &Hours,
    policy: &Policy,
    ctx: &Context<'_>,
) -> Vec<DueTask> {
    if !hours.is_open(now) {
        return Vec::new();
    }
    // Capacity left, overall and per target key.
    let mut in_flight = 0u32;
    let mut by_target: HashMap<String, u32> = HashMap::new();
    for t in tasks.iter().filter(|t| t.state == TaskState::InProgress) {
        in_flight += 1;
        *by_target.entry(policy.target_at(t, now).key()).or_default() += 1;
    }
    let global_left = policy.max_concurrent.saturating_sub(in_flight) as usize;
    if global_left == 0 {
        return Vec::new();
    }

    // The spread window: misses that were ready before the opening get a quota that grows
    // linearly over `spread`. Attempts already started in this window use it up.
    let opened = hours.opened_at(now);
    let window = opened.filter(|o| now < add(*o, policy.spread));
    let waited = |t: &Task| window.is_some_and(|o| t.next_attempt_at < o);
    let mut waited_started = 0usize;
    if let Some(o) = window {
        waited_started = tasks
            .iter()
            .filter(|t| {
                t.last_attempt_at.is_some_and(|a| a >= o) && add(t.last_missed_at, policy.delay) < o
            })
            .count();
    }

    // Candidates, bucketed by (target, waited): each bucket contributes at most its caps' worth,
    // so keeping the best few per bucket is exact and avoids sorting everything.
    let main_key = policy.target.key();
    let fb_key = policy.fallback.as_ref().map(Target::key);
    let target_left = |key: &str| -> usize {
        policy
            .max_concurrent_per_target
            .saturating_sub(by_target.get(key).copied().unwrap_or(0)) as usize
    };
    let bucket_key = |b: usize| -> &str {
        if b >= 2 {
            fb_key.as_deref().unwrap_or(&main_key)
        } else {
            &main_key
        }
    };
    let mut buckets: [Best; 4] =
        std::array::from_fn(|b| Best::new(global_left.min(target_left(bucket_key(b)))));
    // Tasks still waiting for their owner go to per-owner endpoints, outside the buckets: a
    // few, with their own per-target caps in the merge below.
    let mut owned: Vec<Key> = Vec::new();
    for (i, t) in tasks.iter().enumerate() {
        if t.state != TaskState::Pending
            || t.next_attempt_at > now
            || now >= t.give_up_at
            || t.attempts >= t.attempt_budget
            || ctx.holds(t.number.as_str())
        {
            continue;
        }
        if t.routing.owner.is_some() && t.routing.owner_at(now).is_some() {
            owned.push(key(t, i));
            continue;
        }
        let fb = usize::from(t.use_fallback && policy.fallback.is_some());
        let w = usize::from(waited(t));
        buckets[fb * 2 + w].offer(key(t, i));
    }
    let waited_total = waited_started + buckets[1].seen + buckets[3].seen;
    let quota = match (window, opened) {
        (Some(_), Some(o)) if policy.spread > Duration::ZERO => {
            let elapsed = now.duration_since(o).as_secs_f64().max(0.0);
            let frac = (elapsed / policy.spread.as_secs_f64()).min(1.0);
            // At least one at the opening itself, so a single waiting miss is not delayed.
            let allowed = ((waited_total as f64) * frac).ceil().max(1.0) as usize;
            allowed.saturating_sub(waited_started)
        }
        _ => usize::MAX,
    };
    let buckets: Vec<Vec<Key>> = buckets
        .into_iter()
        .enumerate()
        .map(|(b, best)| best.take(if b % 2 == 1 { quota } else { usize::MAX }))
        .collect();

    // Merge and pick greedily within the caps.
    let mut cand: Vec<(Key, usize)> = Vec::new();
    for (b, v) in buckets.iter().enumerate() {
        cand.extend(v.iter().map(|&k| (k, b)));
    }
    // Owned tasks are not spread (bucket 4 is even): their owner is one person, capped below.
    cand.extend(owned.into_iter().map(|k| (k, 4)));
    cand.sort_unstable();
    let mut out = Vec::new();
    let mut quota_left = quota;
    for (k, b) in cand {
        if out.len() >= global_left {
            break;
        }
        let t = &tasks[k.4 as usize];
        let target = policy.target_at(t, now);
        let key = target.key();
        let used = by_target.entry(key).or_default();
        if *used >= policy.max_concurrent_per_target {
            continue;
        }
        if b % 2 == 1 {
            if quota_left == 0 {
                continue;
            }
            quota_left -= 1;
        }
        *used += 1;
        out.push(DueTask {
            id: t.id,
            target: target.into_owned(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::record::ResolvedBy;
    use crate::config::{parse_range, DayRange};
    use crate::test_support::inbound_miss;
    use jiff::tz::TimeZone;

    fn policy() -> Policy {
        Policy {
            lost_at: LostAt::ALL.to_vec(),
            allow: vec![regex::Regex::new("^(?:7\\d{10})$").unwrap()],
            deny: vec![regex::Regex::new("^(?:7800\\d{7})$").unwrap()],
            kind_guard: KindGuard::default(),
            delay: Duration::from_secs(60),
            max_attempts: 3,
            retry_every: Duration::from_secs(600),
            retry_busy: None,
            retry_backoff: 2.0,
            give_up_after: Duration::from_secs(24 * 3600),
            max_concurrent: 2,
            max_concurrent_per_target: 2,
            spread: Duration::from_secs(0),
            target: Target::Queue("sales".into()),
            fallback: None,
            min_talk: Duration::from_secs(6),
            request: Default::default(),
        }
    }

    fn r(s: &str) -> DayRange {
        parse_range(s).unwrap()
    }

    /// Moscow, weekdays 09-13 + 14-18; 2026-12-31 holiday.
    fn hours() -> Hours {
        crate::test_support::moscow_weekdays(&[jiff::civil::date(2026, 12, 31)], &[])
    }

    /// A Moscow local time.
    fn msk(s: &str) -> Timestamp {
        s.parse::<jiff::civil::DateTime>()
            .unwrap()
            .to_zoned(TimeZone::get("Europe/Moscow").unwrap())
            .unwrap()
            .timestamp()
    }

    fn miss(number: &str, at: Timestamp) -> CallRecord {
        CallRecord {
            linkedid: format!("l-{number}-{}", at.as_second()),
            caller: Some(number.into()),
            caller_normalized: Some(number.into()),
            ..inbound_miss("", at - SignedDuration::from_secs(10), 10.0)
        }
    }

    fn task(id: i64, number: &str, at: Timestamp, p: &Policy) -> Task {
        let rec = miss(number, at);
        let n = admit(&rec, p).unwrap();
        match on_miss(None, &n, &rec, p) {
            MissPlan::Create(mut t) => {
                t.id = id;
                t
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn admission_rules() {
        let p = policy();
        assert!(admit(&miss("79161234567", msk("2026-12-21T10:00:00")), &p).is_ok());
        let t = msk("2026-12-21T10:00:00");
        let mut m = miss("79161234567", t);
        m.ignored = true;
        m.status = Status::Ignored;
        assert_eq!(admit(&m, &p), Err(Skip::Ignored));
        let mut m = miss("79161234567", t);
        m.caller_normalized = None;
        assert_eq!(admit(&m, &p), Err(Skip::Withheld));
        let mut m = miss("anonymous", t);
        m.caller_normalized = Some("anonymous".into());
        assert_eq!(admit(&m, &p), Err(Skip::Withheld));
        for (n, why) in [
            ("7916123\r\n4567", Rejected::NotDigits),
            ("79161234abc", Rejected::NotDigits),
            ("49301234567", Rejected::NotAllowed),
            ("78001234567", Rejected::Denied),
        ] {
            assert_eq!(admit(&miss(n, t), &p), Err(Skip::Number(why)), "{n:?}");
        }
        let mut m = miss("79161234567", t);
        m.lost_at = Some(LostAt::Ivr);
        let mut p2 = policy();
        p2.lost_at = vec![LostAt::Queue];
        assert_eq!(admit(&m, &p2), Err(Skip::LostAt(Some(LostAt::Ivr))));
        let mut m = miss("79161234567", t);
        m.resolved_by = Some(ResolvedBy::Caller);
        assert_eq!(admit(&m, &p), Err(Skip::Resolved));
        let mut m = miss("79161234567", t);
        m.status = Status::Answered;
        assert_eq!(admit(&m, &p), Err(Skip::NotAMiss));
    }

    #[test]
    fn allow_kinds_and_countries_apply_on_top_of_the_regex_lists() {
        use crate::number::NumberKind;
        let p = Policy {
            allow: vec![regex::Regex::new("^\\d+$").unwrap()],
            kind_guard: KindGuard {
                kinds: vec![NumberKind::Mobile, NumberKind::FixedLine],
                countries: vec!["RU".into(), "KZ".into()],
            },
            ..policy()
        };
        for ok in ["79161234567", "74951234567", "78121234567", "77012345678"] {
            assert!(p.dial_number(ok).is_ok(), "{ok}");
        }
        for (n, why) in [
            ("78091234567", Rejected::Kind(NumberKind::PremiumRate)),
            ("78001234567", Rejected::Denied),
            ("447911123456", Rejected::Country),
            ("12025550123", Rejected::Country),
            ("8823451234567", Rejected::Kind(NumberKind::Voip)),
            ("201", Rejected::NotValid),
        ] {
            assert_eq!(p.dial_number(n), Err(why), "{n}");
        }
        // The regex list stays on top: the guard does not widen it.
        let narrow = Policy {
            allow: vec![regex::Regex::new("^79\\d{9}$").unwrap()],
            ..p
        };
        assert_eq!(narrow.dial_number("74951234567"), Err(Rejected::NotAllowed));
    }

    #[test]
    fn the_policy_takes_allow_kinds_and_countries_from_the_config() {
        let c = crate::config::Config::from_toml(
            "[callback]\nallow = [\"^7\\\\d{10}$\"]\nallow_kinds = [\"mobile\"]\nallow_countries = [\"KZ\"]\n",
        )
        .unwrap();
        let p = Policy::from_config(&c.callback, Duration::from_secs(6));
        assert!(p.dial_number("77012345678").is_ok());
        assert_eq!(p.dial_number("79161234567"), Err(Rejected::Country));
        assert_eq!(
            p.dial_number("77172123456"),
            Err(Rejected::Kind(crate::number::NumberKind::FixedLine))
        );
    }

    #[test]
    fn dedupe_raises_count_and_priority() {
        let p = policy();
        let t0 = msk("2026-12-21T10:00:00");
        let a = task(1, "79161111111", t0, &p);
        let b = task(2, "79162222222", t0 - SignedDuration::from_secs(30), &p);
        // Second miss of number a: a bump, not a new task.
        let rec = miss("79161111111", t0 + SignedDuration::from_secs(5));
        let n = admit(&rec, &p).unwrap();
        let MissPlan::Bump {
            id, missed_count, ..
        } = on_miss(Some(&a), &n, &rec, &p)
        else {
            panic!("expected a bump");
        };
        assert_eq!((id, missed_count), (1, 2));
        let mut a = a;
        a.missed_count = missed_count;
        let mut p1 = policy();
        p1.max_concurrent = 1;
        let now = t0 + SignedDuration::from_secs(120);
        let d = due(&[b.clone(), a.clone()], now, &hours(), &p1);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].id, 1, "most missed first although b waited longer");
    }

    #[test]
    fn delay_and_only_while_open() {
        let p = policy();
        let h = hours();
        // Miss at 10:00 Monday: due from 10:01.
        let t = task(1, "79161234567", msk("2026-12-21T10:00:00"), &p);
        assert!(due(std::slice::from_ref(&t), msk("2026-12-21T10:00:59"), &h, &p).is_empty());
        assert_eq!(
            due(std::slice::from_ref(&t), msk("2026-12-21T10:01:00"), &h, &p).len(),
            1
        );
        // Lunch break: not due at 13:30, due at 14:00.
        assert!(due(std::slice::from_ref(&t), msk("2026-12-21T13:30:00"), &h, &p).is_empty());
        assert_eq!(
            due(std::slice::from_ref(&t), msk("2026-12-21T14:00:00"), &h, &p).len(),
            1
        );
        // Midnight and weekend: a Friday 23:50 miss waits for Monday 09:00.
        let t = task(2, "79161234567", msk("2026-12-25T23:50:00"), &p);
        assert!(due(std::slice::from_ref(&t), msk("2026-12-26T00:01:00"), &h, &p).is_empty());
        assert!(due(std::slice::from_ref(&t), msk("2026-12-27T12:00:00"), &h, &p).is_empty());
        // (Given up after 24 h, so Monday is too late: give_up_after is from the miss.)
        assert!(due(std::slice::from_ref(&t), msk("2026-12-28T09:00:00"), &h, &p).is_empty());
        let mut p3 = policy();
        p3.give_up_after = Duration::from_secs(7 * 86400);
        let t = task(3, "79161234567", msk("2026-12-25T23:50:00"), &p3);
        assert_eq!(
            due(
                std::slice::from_ref(&t),
                msk("2026-12-28T09:00:00"),
                &h,
                &p3
            )
            .len(),
            1
        );
        // Holiday: closed all day.
        let t = task(4, "79161234567", msk("2026-12-30T20:00:00"), &p3);
        assert!(due(
            std::slice::from_ref(&t),
            msk("2026-12-31T10:00:00"),
            &h,
            &p3
        )
        .is_empty());
        assert_eq!(
            due(
                std::slice::from_ref(&t),
                msk("2027-01-01T09:00:00"),
                &h,
                &p3
            )
            .len(),
            1
        );
    }

    #[test]
    fn dst_change_keeps_local_opening() {
        // Europe/Berlin, opening 09:00 on 2026-03-30 (CEST, UTC+2) = 07:00 UTC.
        let wd = vec![r("09:00-18:00")];
        let h = Hours::new(
            TimeZone::get("Europe/Berlin").unwrap(),
            std::array::from_fn(|_| wd.clone()),
            [],
            [],
        );
        let mut p = policy();
        p.give_up_after = Duration::from_secs(3 * 86400);
        let t = task(
            1,
            "79161234567",
            "2026-03-28T20:00:00Z".parse().unwrap(),
            &p,
        );
        let ts = std::slice::from_ref(&t);
        assert!(due(ts, "2026-03-29T06:59:00Z".parse().unwrap(), &h, &p).is_empty());
        assert_eq!(
            due(ts, "2026-03-29T07:00:00Z".parse().unwrap(), &h, &p).len(),
            1
        );
    }

    #[test]
    fn spacing_backoff_and_give_up() {
        let p = policy();
        let t0 = msk("2026-12-21T10:00:00");
        let mut t = task(1, "79161234567", t0, &p);
        // Attempt 1 at 10:01: no answer -> next at 10:11 (retry_every 10m).
        let a1 = t0 + SignedDuration::from_secs(60);
        t.attempts = 1;
        t.last_attempt_at = Some(a1);
        let o = after_outcome(
            &t,
            AttemptOutcome::Call(CallbackOutcome::NoAnswer),
            a1 + SignedDuration::from_secs(20),
            &p,
        );
        assert_eq!(o.state, TaskState::Pending);
        assert_eq!(o.next_attempt_at, a1 + SignedDuration::from_secs(600));
        // Attempt 2: spacing doubles to 20m.
        t.attempts = 2;
        let a2 = o.next_attempt_at;
        t.last_attempt_at = Some(a2);
        let o = after_outcome(&t, AttemptOutcome::Call(CallbackOutcome::NoAnswer), a2, &p);
        assert_eq!(o.next_attempt_at, a2 + SignedDuration::from_secs(1200));
        // Attempt 3 of 3: given up.
        t.attempts = 3;
        let o = after_outcome(&t, AttemptOutcome::Call(CallbackOutcome::Busy), a2, &p);
        assert_eq!(
            (o.state, o.close_reason),
            (TaskState::GivenUp, Some("max_attempts"))
        );
        // Connected: done.
        t.attempts = 1;
        let o = after_outcome(&t, AttemptOutcome::Call(CallbackOutcome::Connected), a2, &p);
        assert_eq!(o.state, TaskState::Done);
        // The next attempt would fall after give_up_at: given up.
        t.give_up_at = a1 + SignedDuration::from_secs(300);
        t.last_attempt_at = Some(a1);
        let o = after_outcome(&t, AttemptOutcome::Call(CallbackOutcome::NoAnswer), a1, &p);
        assert_eq!(o.close_reason, Some("give_up_after"));
        // And a pending task past its give-up instant is never due.
        let t = task(2, "79161234567", t0, &p);
        assert!(due(
            std::slice::from_ref(&t),
            t0 + SignedDuration::from_secs(86400),
            &hours(),
            &p
        )
        .is_empty());
    }

    #[test]
    fn an_unknown_outcome_is_never_redialled_by_itself() {
        let p = policy();
        let t0 = msk("2026-12-21T10:00:00");
        let mut t = task(1, "79161234567", t0, &p);
        t.attempts = 1;
        t.last_attempt_at = Some(t0 + SignedDuration::from_secs(60));
        let o = after_outcome(
            &t,
            AttemptOutcome::Unknown,
            t0 + SignedDuration::from_secs(90),
            &p,
        );
        assert_eq!(
            (o.state, o.close_reason),
            (TaskState::Unknown, Some("outcome_unknown"))
        );
        assert!(o.state.is_open(), "the number keeps its one task");
        // Never due, however long it waits.
        t.state = o.state;
        for h in [1, 5, 23] {
            let now = t0 + SignedDuration::from_hours(h);
            assert!(due(std::slice::from_ref(&t), now, &hours(), &p).is_empty());
        }
        // The last allowed attempt of unknown fate: given up, as any other last attempt.
        t.state = TaskState::InProgress;
        t.attempts = 3;
        let o = after_outcome(&t, AttemptOutcome::Unknown, t0, &p);
        assert_eq!(o.state, TaskState::GivenUp);
        // States round-trip through their names.
        for s in [TaskState::Expired, TaskState::Unknown] {
            assert_eq!(TaskState::parse(s.as_str()), Some(s));
        }
        assert!(!TaskState::Expired.is_open());
    }

    fn guard_rules() -> crate::callback::guard::Rules {
        crate::callback::guard::Rules {
            max_per_number_24h: Some(3),
            max_per_number_day: Some(2),
            business_zone: Some(TimeZone::get("Europe/Moscow").unwrap()),
            ..Default::default()
        }
    }

    #[test]
    fn a_number_over_budget_waits_for_its_budget_not_given_up() {
        use crate::callback::guard::{AttemptLog, Context};
        let p = policy();
        let h = hours();
        let t0 = msk("2026-12-21T10:00:00");
        let ts = vec![
            task(1, "79160000001", t0, &p),
            task(2, "79160000002", t0, &p),
        ];
        let r = guard_rules();
        // Number 1 was called twice today already (by earlier tasks, other servers).
        let log = AttemptLog::from_starts([
            ("79160000001".to_string(), msk("2026-12-21T09:00:00")),
            ("79160000001".to_string(), msk("2026-12-21T09:30:00")),
            ("79160000002".to_string(), msk("2026-12-21T09:30:00")),
        ]);
        let now = t0 + SignedDuration::from_secs(120);
        let over = log.over_budget(now, &r);
        assert_eq!(over.len(), 1);
        let b = over["79160000001"];
        assert_eq!(
            (b.rule, b.frees_at),
            ("max_per_number_day", msk("2026-12-22T00:00:00"))
        );
        let ctx = Context::default().over_budget(&over);
        let ids = |d: Vec<DueTask>| d.into_iter().map(|x| x.id).collect::<Vec<_>>();
        assert_eq!(ids(due_guarded(&ts, now, &h, &p, &ctx)), vec![2]);
        // The task itself is untouched: pending, same spacing, no attempt used.
        assert_eq!((ts[0].state, ts[0].attempts), (TaskState::Pending, 0));
        // Next morning the day's budget is fresh; the rolling 24 h still has room (2 of 3).
        let next = msk("2026-12-22T09:00:00");
        let mut p2 = p.clone();
        p2.give_up_after = Duration::from_secs(3 * 86400);
        let ts2: Vec<Task> = ts
            .iter()
            .map(|t| Task {
                give_up_at: t0 + SignedDuration::from_hours(72),
                ..t.clone()
            })
            .collect();
        let over = log.over_budget(next, &r);
        assert!(over.is_empty());
        let ctx = Context::default().over_budget(&over);
        assert_eq!(ids(due_guarded(&ts2, next, &h, &p2, &ctx)), vec![1, 2]);
        // Why it waited, as `callbacks list` says.
        let w = crate::callback::guard::why_waiting(&ts[0], now, &h, &r, log.starts("79160000001"));
        assert_eq!(w.code(), "over_budget");
        assert_eq!(w.until(), Some(msk("2026-12-22T00:00:00")));
    }

    #[test]
    fn the_customers_own_clock_holds_back_their_night() {
        use crate::callback::guard::{Context, CustomerHours};
        use crate::config::{UnknownCountry, UnknownRegion};
        let mut p = policy();
        p.max_concurrent = 10;
        p.max_concurrent_per_target = 10;
        p.give_up_after = Duration::from_secs(3 * 86400);
        let h = hours();
        let c = CustomerHours {
            weekdays: vec![r("09:00-21:00")],
            weekend: vec![r("10:00-20:00")],
            unknown_region: UnknownRegion::AllZones,
            unknown_country: UnknownCountry::BusinessZone,
            overrides: Vec::new(),
            business_zone: TimeZone::get("Europe/Moscow").unwrap(),
        };
        let t0 = msk("2026-12-21T08:00:00");
        // Moscow, Vladivostok (UTC+10), Kamchatka (UTC+12), Kaliningrad (UTC+2) landlines.
        let ts = vec![
            task(1, "74951234567", t0, &p),
            task(2, "74232123456", t0, &p),
            task(3, "74152123456", t0, &p),
            task(4, "74012123456", t0, &p),
        ];
        let ids = |now: Timestamp| {
            let clock = c.open_mask(now);
            let ctx = Context::default().customer(Some((&c, &clock)));
            let mut v: Vec<i64> = due_guarded(&ts, now, &h, &p, &ctx)
                .into_iter()
                .map(|d| d.id)
                .collect();
            v.sort();
            v
        };
        // 09:00 Moscow: 08:00 in Kaliningrad (too early), 16:00 Vladivostok, 18:00 Kamchatka.
        assert_eq!(ids(msk("2026-12-21T09:00:00")), vec![1, 2, 3]);
        // 10:00 Moscow: Kaliningrad wakes up.
        assert_eq!(ids(msk("2026-12-21T10:00:00")), vec![1, 2, 3, 4]);
        // 17:00 Moscow: midnight in Vladivostok, 02:00 in Kamchatka.
        assert_eq!(ids(msk("2026-12-21T17:00:00")), vec![1, 4]);
        // Never 07:00 their time because it is 10:00 in Moscow: a Kamchatka customer at
        // Moscow's opening the next day is at 18:00, fine; Vladivostok is at 16:00.
        let w = crate::callback::guard::why_waiting(
            &ts[1],
            msk("2026-12-21T17:00:00"),
            &h,
            &crate::callback::guard::Rules {
                customer: Some(c.clone()),
                ..Default::default()
            },
            &[],
        );
        assert_eq!(w.code(), "customer_night");
        assert_eq!(w.until(), Some(msk("2026-12-22T02:00:00")));
        // The tasks waited untouched.
        assert!(ts
            .iter()
            .all(|t| t.attempts == 0 && t.state == TaskState::Pending));
    }

    #[test]
    fn callbacks_no_longer_useful_expire() {
        use crate::callback::guard::{expired, Rules};
        let p = policy();
        let h = hours();
        let t0 = msk("2026-12-21T10:00:00");
        let mut ts = vec![
            task(1, "79160000001", t0, &p),
            task(2, "79160000002", msk("2026-12-21T19:00:00"), &p),
        ];
        for t in &mut ts {
            t.give_up_at = t0 + SignedDuration::from_hours(24 * 30);
        }
        // No expiry rule: nothing expires (give_up_at is far).
        assert!(expired(
            &ts,
            t0 + SignedDuration::from_hours(48),
            &h,
            &p,
            &Rules::default()
        )
        .is_empty());
        // expire_after 3d from the first miss.
        let r = Rules {
            expire_after: Some(Duration::from_secs(3 * 86400)),
            ..Rules::default()
        };
        assert!(expired(&ts, t0 + SignedDuration::from_hours(71), &h, &p, &r).is_empty());
        assert_eq!(
            expired(&ts, t0 + SignedDuration::from_hours(72), &h, &p, &r),
            vec![(1, "expire_after")]
        );
        // expire_at_close: the 10:00 miss expires at Monday's 18:00 close; the 19:00 miss fell
        // due after it, so Tuesday's close is its deadline.
        let r = Rules {
            expire_at_close: true,
            ..Rules::default()
        };
        assert!(expired(&ts, msk("2026-12-21T17:59:59"), &h, &p, &r).is_empty());
        assert_eq!(
            expired(&ts, msk("2026-12-21T18:00:00"), &h, &p, &r),
            vec![(1, "closing")]
        );
        assert_eq!(
            expired(&ts, msk("2026-12-22T18:00:00"), &h, &p, &r),
            vec![(1, "closing"), (2, "closing")]
        );
        // A pending task past its give-up instant expires too (it would never be dialled).
        let mut t = ts[0].clone();
        t.give_up_at = t0 + SignedDuration::from_hours(1);
        assert_eq!(
            expired(
                std::slice::from_ref(&t),
                t0 + SignedDuration::from_hours(1),
                &h,
                &p,
                &Rules::default()
            ),
            vec![(1, "give_up_after")]
        );
        // Only pending tasks: one in flight or of unknown outcome is not expired under it.
        t.state = TaskState::Unknown;
        assert!(expired(
            std::slice::from_ref(&t),
            t0 + SignedDuration::from_hours(100),
            &h,
            &p,
            &r
        )
        .is_empty());
    }

    #[test]
    fn agent_missed_goes_to_fallback_soon() {
        let mut p = policy();
        p.fallback = Some(Target::Queue("support".into()));
        let t0 = msk("2026-12-21T10:00:00");
        let mut t = task(1, "79161234567", t0, &p);
        t.attempts = 1;
        t.last_attempt_at = Some(t0 + SignedDuration::from_secs(60));
        let now = t0 + SignedDuration::from_secs(100);
        let o = after_outcome(
            &t,
            AttemptOutcome::Call(CallbackOutcome::AgentMissed),
            now,
            &p,
        );
        assert!(o.use_fallback);
        assert_eq!(o.next_attempt_at, now + SignedDuration::from_secs(60));
        t.use_fallback = true;
        t.next_attempt_at = o.next_attempt_at;
        let d = due(std::slice::from_ref(&t), o.next_attempt_at, &hours(), &p);
        assert_eq!(d[0].target, Target::Queue("support".into()));
    }

    #[test]
    fn customers_on_a_live_call_are_not_dialled() {
        let mut p = policy();
        p.max_concurrent = 2;
        p.max_concurrent_per_target = 2;
        let t0 = msk("2026-12-21T10:00:00");
        let now = t0 + SignedDuration::from_secs(120);
        let mut ts: Vec<Task> = (0..4)
            .map(|i| task(i + 1, &format!("7916000000{i}"), t0, &p))
            .collect();
        // Task 1 is the most missed: first in line, unless its customer is on a call.
        ts[0].missed_count = 3;
        let h = hours();
        let ids = |d: Vec<DueTask>| d.into_iter().map(|x| x.id).collect::<Vec<_>>();
        assert_eq!(ids(due(&ts, now, &h, &p)), vec![1, 2]);
        let none = HashSet::new();
        assert_eq!(ids(due_avoiding(&ts, now, &h, &p, &none)), vec![1, 2]);
        // Customer 1 is talking to us: skipped, the next two take the slots (cap still 2).
        let live: HashSet<String> = ["79160000000".to_string(), "79990000000".to_string()].into();
        assert_eq!(ids(due_avoiding(&ts, now, &h, &p, &live)), vec![2, 3]);
        // The task itself is untouched: once the call ends it is first again.
        assert_eq!(ts[0].attempts, 0);
        assert_eq!(ts[0].next_attempt_at, t0 + SignedDuration::from_secs(60));
        assert_eq!(ids(due_avoiding(&ts, now, &h, &p, &none)), vec![1, 2]);
        // In-flight attempts still count against the caps while others are live.
        ts[3].state = TaskState::InProgress;
        assert_eq!(ids(due_avoiding(&ts, now, &h, &p, &live)), vec![2]);
        // Everyone pending is on a call: nothing due.
        let all: HashSet<String> = ts.iter().map(|t| t.number.clone()).collect();
        assert!(due_avoiding(&ts, now, &h, &p, &all).is_empty());
    }

    #[test]
    fn concurrency_caps_and_one_in_flight_per_number() {
        let mut p = policy();
        p.max_concurrent = 3;
        p.max_concurrent_per_target = 2;
        p.fallback = Some(Target::Queue("support".into()));
        let t0 = msk("2026-12-21T10:00:00");
        let now = t0 + SignedDuration::from_secs(120);
        let mut ts: Vec<Task> = (0..6)
            .map(|i| task(i + 1, &format!("7916000000{i}"), t0, &p))
            .collect();
        // Two on the fallback queue.
        ts[4].use_fallback = true;
        ts[5].use_fallback = true;
        let d = due(&ts, now, &hours(), &p);
        assert_eq!(d.len(), 3, "global cap");
        let sales = d.iter().filter(|x| x.target == p.target).count();
        assert!(sales <= 2, "per-target cap");
        // One sales attempt in flight: at most one more to sales.
        ts[0].state = TaskState::InProgress;
        let d = due(&ts, now, &hours(), &p);
        assert!(
            d.iter().all(|x| x.id != 1),
            "in-flight task is not due again"
        );
        assert_eq!(d.iter().filter(|x| x.target == p.target).count(), 1);
        // Everything in flight: nothing due.
        for t in ts.iter_mut().take(3) {
            t.state = TaskState::InProgress;
        }
        assert!(due(&ts, now, &hours(), &p).is_empty());
    }

    #[test]
    fn spread_over_the_opening() {
        let mut p = policy();
        p.max_concurrent = 100;
        p.max_concurrent_per_target = 100;
        p.spread = Duration::from_secs(600);
        p.give_up_after = Duration::from_secs(3 * 86400);
        let h = hours();
        // Ten misses overnight.
        let ts: Vec<Task> = (0..10)
            .map(|i| {
                task(
                    i + 1,
                    &format!("7916000000{i}"),
                    msk("2026-12-21T20:00:00"),
                    &p,
                )
            })
            .collect();
        let open = msk("2026-12-22T09:00:00");
        assert_eq!(due(&ts, open, &h, &p).len(), 1, "one at the opening");
        assert_eq!(
            due(&ts, open + SignedDuration::from_secs(300), &h, &p).len(),
            5
        );
        assert_eq!(
            due(&ts, open + SignedDuration::from_secs(600), &h, &p).len(),
            10
        );
        // Started ones use the quota up.
        let mut ts2 = ts.clone();
        for t in ts2.iter_mut().take(5) {
            t.state = TaskState::Pending;
            t.attempts = 1;
            t.last_attempt_at = Some(open + SignedDuration::from_secs(60));
            t.next_attempt_at = open + SignedDuration::from_secs(3600);
        }
        assert_eq!(
            due(&ts2, open + SignedDuration::from_secs(300), &h, &p).len(),
            0
        );
        assert_eq!(
            due(&ts2, open + SignedDuration::from_secs(420), &h, &p).len(),
            2
        );
        // A miss during open hours is not held back by the spread.
        let fresh = task(99, "79169999999", open + SignedDuration::from_secs(10), &p);
        let d = due(
            &[ts2.clone(), vec![fresh]].concat(),
            open + SignedDuration::from_secs(120),
            &h,
            &p,
        );
        assert!(d.iter().any(|x| x.id == 99));
    }

    #[test]
    fn a_busy_customer_is_retried_on_the_busy_schedule() {
        let mut p = policy();
        let t0 = msk("2026-12-21T10:00:00");
        let mut t = Task {
            attempts: 1,
            last_attempt_at: Some(t0),
            ..task(1, "79161234567", t0, &p)
        };
        // Without a busy schedule: the normal spacing (10 min).
        let busy = AttemptOutcome::Call(CallbackOutcome::Busy);
        let o = after_outcome(&t, busy, t0 + SignedDuration::from_secs(20), &p);
        assert_eq!(o.next_attempt_at, t0 + SignedDuration::from_mins(10));
        // With one: soon, from the attempt's start, whatever the backoff; other outcomes keep
        // the normal spacing.
        p.retry_busy = Some(Duration::from_secs(120));
        t.attempts = 2;
        let o = after_outcome(&t, busy, t0 + SignedDuration::from_secs(20), &p);
        assert_eq!(o.state, TaskState::Pending);
        assert_eq!(o.next_attempt_at, t0 + SignedDuration::from_mins(2));
        let no_answer = AttemptOutcome::Call(CallbackOutcome::NoAnswer);
        let o = after_outcome(&t, no_answer, t0 + SignedDuration::from_secs(20), &p);
        assert_eq!(o.next_attempt_at, t0 + SignedDuration::from_mins(20));
    }

    #[test]
    fn bounded_selection_matches_a_full_sort() {
        let mut p = policy();
        p.fallback = Some(Target::Queue("support".into()));
        let h = hours();
        let now = msk("2026-12-21T11:00:00");
        let mut rng = fastrand::Rng::with_seed(42);
        for round in 0..50 {
            p.max_concurrent = rng.u32(1..20);
            p.max_concurrent_per_target = rng.u32(1..15);
            let tasks: Vec<Task> = (0..rng.usize(0..300))
                .map(|i| {
                    let mut t = task(
                        i as i64 + 1,
                        "79161234567",
                        now - SignedDuration::from_secs(3600),
                        &p,
                    );
                    t.missed_count = rng.u32(1..4);
                    t.next_attempt_at = now + SignedDuration::from_secs(rng.i64(-3000..600));
                    t.use_fallback = rng.bool();
                    if rng.u8(..) < 20 {
                        t.state = TaskState::InProgress;
                    }
                    t
                })
                .collect();
            // Reference: sort every eligible task, pick greedily within the caps.
            let in_flight: Vec<&Task> = tasks
                .iter()
                .filter(|t| t.state == TaskState::InProgress)
                .collect();
            let mut used: HashMap<String, u32> = HashMap::new();
            for t in &in_flight {
                *used.entry(p.target_of(t).key()).or_default() += 1;
            }
            let mut eligible: Vec<&Task> = tasks
                .iter()
                .filter(|t| t.state == TaskState::Pending && t.next_attempt_at <= now)
                .collect();
            eligible.sort_by_key(|t| (u32::MAX - t.missed_count, t.next_attempt_at, t.id));
            let mut want = Vec::new();
            let left = p.max_concurrent.saturating_sub(in_flight.len() as u32) as usize;
            for t in eligible {
                if want.len() >= left {
                    break;
                }
                let u = used.entry(p.target_of(t).key()).or_default();
                if *u < p.max_concurrent_per_target {
                    *u += 1;
                    want.push(t.id);
                }
            }
            let got: Vec<i64> = due(&tasks, now, &h, &p).iter().map(|d| d.id).collect();
            assert_eq!(got, want, "round {round}");
        }
    }
}

#[cfg(test)]
#[path = "planner_request_tests.rs"]
mod request_tests;
