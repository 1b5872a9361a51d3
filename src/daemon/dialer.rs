//! The dialer: the thin async edge around [`planner`]. It consumes call records and
//! OriginateResponses, keeps tasks and attempts in SQLite, and sends Originates through an
//! [`Originator`] (the AMI handle in production, a fake in tests).
//!
//! Durability, in the order things happen for one attempt:
//! 1. the attempt row is committed and its task marked `in_progress` ([`Store::begin_attempt`]);
//! 2. the Originate is sent;
//! 3. the outcome (OriginateResponse failure, or the tracker's record of the callback call) ends
//!    the attempt and applies the planner's verdict, in one transaction.
//!
//! A crash between 1 and 3 leaves an attempt without outcome. At start-up such attempts are
//! adopted, not guessed at: their task stays `in_progress`, and the callback server's live
//! channels (read after the LinkUp) settle them: a call whose Linkedid is the attempt's
//! `ChannelId` is tracked to its real outcome, an absent one is `unknown`, and only then does the
//! spacing start, *from the attempt's start*. The database adds a unique index so two unfinished
//! attempts for one number cannot exist at all.
//!
//! Tasks come from stored verdicts, not from messages: every verdict the pipeline commits is
//! marked `dialer_pending`, and the dialer acts on whatever is still marked at start-up (and
//! every 10 s), so a committed miss always gets its task.
//!
//! The in-memory task list mirrors the open tasks; other processes (`perezvon callbacks cancel`)
//! change the database, and `PRAGMA data_version` tells the dialer when to re-read it.

#[path = "dialer_request.rs"]
mod requests;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::callback::guard::{self, AttemptLog, QueueLoad, Rules};
use crate::callback::hours::Hours;
use crate::callback::originate::{
    outcome_from_record, read_response, CallbackIds, OriginateRequest, OriginateResponse,
    OriginateSettings, ResponseVerdict,
};
use crate::callback::planner::{self, AttemptOutcome, MissPlan, Policy, Task, TaskState};
use crate::calls::record::{CallRecord, CallbackOutcome, Direction, ResolvedBy, Status};
use crate::config::{CallbackMode, Config, Target};
use crate::store::tasks::NewAttempt;
use crate::store::{Store, StoreError};

/// How often the dialer looks for due tasks and expired attempts.
pub const TICK: Duration = Duration::from_secs(1);
/// Time allowed after `originate_timeout` for the OriginateResponse to arrive.
const RESPONSE_GRACE: Duration = Duration::from_secs(30);
/// Time allowed after `calls.max_call_duration` for the tracker's record of an answered callback.
const RECORD_GRACE: Duration = Duration::from_secs(120);
/// At most one full re-read of the open tasks per this period. `data_version` also moves on
/// every call verdict the pipeline commits, and re-reading 100 000 tasks each second would be
/// waste; a stale view is safe meanwhile, because starting an attempt re-checks the task's state
/// in SQL ([`Store::begin_attempt`]).
const RELOAD_EVERY: SignedDuration = SignedDuration::from_secs(5);

/// Why an Originate (or an agent check) did not go through.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OriginateError {
    /// Asterisk answered `Response: Error`: the attempt failed.
    #[error("rejected by Asterisk: {0}")]
    Rejected(String),
    /// Not sent (link down): nothing happened on the PBX.
    #[error("not sent: {0}")]
    NotSent(String),
    /// Sent, but no reply (timeout, link lost): the call may be live.
    #[error("no reply: {0}")]
    NoReply(String),
}

/// The AMI side of the dialer. Implemented for the AMI handle; tests use fakes.
pub trait Originator: Send + Sync {
    /// Sends the Originate (Async: the reply only says it was queued).
    fn originate(
        &self,
        req: &OriginateRequest,
    ) -> impl Future<Output = Result<(), OriginateError>> + Send;
    /// How many people of the target are free right now (QueueStatus members / DeviceStateList
    /// for an endpoint; `u32::MAX` for a dialplan target, which is the PBX's business)?
    fn free_agents(
        &self,
        target: &Target,
    ) -> impl Future<Output = Result<u32, OriginateError>> + Send;
    /// Is the link up? Attempts are not started while it is down.
    fn is_up(&self) -> bool;
    /// How many callers wait in `queue` right now (QueueStatus)? A requested callback is not
    /// started while any do: it must not jump ahead of them. The default (a fake, an embedder
    /// without queues) says none.
    fn queue_callers(
        &self,
        queue: &str,
    ) -> impl Future<Output = Result<u32, OriginateError>> + Send {
        let _ = queue;
        async { Ok(0) }
    }

    /// What `QueueSummary` says of the queues behind a target: the target queue, or every
    /// queue an endpoint is a member of (none for a dialplan target). Callbacks yield to the
    /// callers waiting there and leave `queue_reserve` agents free for them. The default, for
    /// originators without queues (tests), is no queue.
    fn queue_loads(
        &self,
        _target: &Target,
    ) -> impl Future<Output = Result<Vec<QueueLoad>, OriginateError>> + Send {
        async { Ok(Vec::new()) }
    }
}

/// What the dialer consumes.
#[derive(Debug, Clone)]
pub enum DialerInput {
    /// A call verdict from the tracker (misses, resolutions, callback calls).
    Record(Box<CallRecord>),
    /// An OriginateResponse seen on the event stream (broadcast: most are not ours).
    Response(OriginateResponse),
    /// The normalised numbers of customers on a live call with the PBX now (the whole set,
    /// replacing the previous one). Their tasks wait: a customer who called again, or whom an
    /// agent is calling, must not get a callback in the middle of that call.
    LiveCustomers(HashSet<String>),
    /// The callback ids of perezvon's callback calls live now, on every server (the whole set).
    /// An attempt whose call is in it is in progress, whatever its deadline says.
    LiveCallbacks(HashSet<String>),
    /// The callback server's live channels were just read (CoreShowChannels after a start-up
    /// or a reconnect) and these callback ids are among them. Attempts whose fate was unknown
    /// (adopted from a previous run, or in flight while the link was down) and whose call is not
    /// there ended unseen: they are settled as `unknown` now, and only then does the spacing
    /// start.
    ///
    /// `None`: the list could not be read; nothing is settled, but the dialer may go on.
    /// Either way, with [`Dialer::require_sync`], no attempt starts after a start-up or a link
    /// loss before this arrives (send [`DialerInput::LiveCustomers`] first).
    Reconciled(Option<HashSet<String>>),
    /// A caller or an agent spoke through the dialplan (`UserEvent`, issue 14): a requested
    /// callback, "never call me back", or a disposition. `server` is where it was seen.
    User {
        server: String,
        request: crate::callback::request::UserRequest,
    },
}

/// What the dialer reports, for notifications and metrics (the daemon decides who listens).
#[derive(Debug, Clone, PartialEq)]
pub enum DialerEvent {
    TaskCreated {
        task_id: i64,
        number: String,
    },
    AttemptStarted {
        task_id: i64,
        number: String,
        callback_id: String,
        attempt_no: u32,
        target: String,
    },
    AttemptEnded {
        task_id: i64,
        number: String,
        callback_id: String,
        outcome: AttemptOutcome,
        /// When the attempt's Originate was sent (its start as recorded).
        originated_at: Timestamp,
        /// When its outcome was committed.
        ended_at: Timestamp,
    },
    TaskClosed {
        task_id: i64,
        number: String,
        state: TaskState,
        reason: String,
    },
}

/// Where the dialer reads the time. Production: the system clock.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// A dialer failure that stops it (the database went away).
#[derive(Debug, thiserror::Error)]
pub enum DialerError {
    #[error("callback store")]
    Store(#[from] StoreError),
}

/// An attempt on its way.
#[derive(Debug, Clone)]
struct InFlight {
    task_id: i64,
    number: String,
    /// Past this instant without an outcome the attempt ends as `unknown`.
    deadline: Timestamp,
    answered: bool,
    /// Its fate is unknown until the live channels are read: adopted from a previous run, or in
    /// flight while the link was down (events may have been lost).
    unsure: bool,
    /// When the attempt started: past its longest possible life it is over, link or not.
    started: Timestamp,
    /// A response that named no outcome (`Failure/0`) is waiting for the tracker's record of
    /// the call; past the deadline without one (no channel was ever created) this is the outcome.
    fallback: Option<CallbackOutcome>,
}

/// How often every pending task is checked for expiry (`expire_after`, `expire_at_close`, past
/// `give_up_after`); a task about to be dialled is checked at that moment too.
const SWEEP_EVERY: SignedDuration = SignedDuration::from_secs(10);
/// How often the stored verdicts not yet acted on are looked for (besides start-up): the
/// backstop for a verdict whose message was lost or whose handling failed.
const BACKLOG_EVERY: SignedDuration = SignedDuration::from_secs(10);
/// Verdicts read from the backlog per query.
const BACKLOG_BATCH: usize = 500;
/// Inputs whose handling failed (a store error), retried at each tick, at most.
const MAX_RETRY_INPUTS: usize = 10_000;

pub(super) fn add(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

/// The dialer. Build with [`Dialer::new`], run with [`Dialer::run`].
pub struct Dialer<O> {
    store: Store,
    policy: Policy,
    hours: Hours,
    settings: OriginateSettings,
    mode: CallbackMode,
    enabled: bool,
    require_free_agent: bool,
    originate_timeout: Duration,
    max_call: Duration,
    min_talk_secs: f64,
    originator: O,
    clock: Clock,
    events: Option<mpsc::Sender<DialerEvent>>,
    tasks: Vec<Task>,
    index: HashMap<i64, usize>,
    in_flight: HashMap<String, InFlight>,
    /// Customers on a live call (the latest [`DialerInput::LiveCustomers`]).
    live: HashSet<String>,
    data_version: i64,
    last_reload: Timestamp,
    /// Callback ids of the callback calls live now (the latest [`DialerInput::LiveCallbacks`]).
    live_callbacks: HashSet<String>,
    /// When the stored backlog was last read.
    last_backlog: Timestamp,
    /// Inputs to handle again after a store error, oldest first.
    retry: std::collections::VecDeque<DialerInput>,
    /// The link was seen down at the last tick.
    link_was_down: bool,
    /// Attempts start only once the live channels were read since the last start-up or link
    /// loss (see [`Dialer::require_sync`]).
    synced: bool,
    require_sync: bool,
    /// Issue 14: the `[pbx]` plan (entered and listed numbers are normalised with it), the
    /// do-not-call file and the `call_later` spacing.
    plan: crate::number::NumberPlan,
    dnc_path: Option<std::path::PathBuf>,
    dnc_file: requests::DncFile,
    call_later_after: Duration,
    /// Budget, customer's clock, expiry, queue reserve (issue 14).
    rules: Rules,
    /// Attempt starts within the budget's horizon, all tasks and servers (from the store).
    attempt_log: AttemptLog,
    /// Why each target was last held back (`None`: it was not), as recorded in the store.
    target_state: HashMap<String, Option<String>>,
    /// When every pending task was last checked for expiry.
    last_sweep: Timestamp,
    /// Several nodes (leases): this node dials only while it owns the callback server's lease
    /// (`None`: one node, always).
    lease: Option<LeaseGate>,
}

/// The dialer's share of the leases: the callback server's, and the epoch it last acted with.
struct LeaseGate {
    ownership: crate::daemon::ownership::Ownership,
    server: String,
    /// The epoch the dialer has adopted the server's attempts with (`None`: not owned).
    epoch: Option<i64>,
}

/// An attempt committed longer ago than this is not originated any more (the node was paused
/// between the commit and the send): the node that owns the server next settles it from the
/// live channels, as any attempt of unknown fate.
const SEND_DEADLINE: std::time::Duration = std::time::Duration::from_secs(2);

impl<O: Originator> Dialer<O> {
    /// A dialer over `store`. `events` receives [`DialerEvent`]s when given.
    pub fn new(
        cfg: &Config,
        store: Store,
        originator: O,
        clock: Clock,
        events: Option<mpsc::Sender<DialerEvent>>,
    ) -> Dialer<O> {
        Dialer {
            store,
            policy: Policy::from_config(&cfg.callback, cfg.calls.min_talk),
            hours: Hours::from_config(&cfg.hours),
            settings: OriginateSettings::from_config(&cfg.callback, &cfg.pbx.numbers),
            mode: cfg.callback.mode,
            enabled: cfg.callback.enabled,
            require_free_agent: cfg.callback.require_free_agent,
            originate_timeout: cfg.callback.originate_timeout,
            max_call: cfg.calls.max_call_duration,
            min_talk_secs: cfg.calls.min_talk.as_secs_f64(),
            originator,
            clock,
            events,
            tasks: Vec::new(),
            index: HashMap::new(),
            in_flight: HashMap::new(),
            live: HashSet::new(),
            data_version: 0,
            last_reload: Timestamp::UNIX_EPOCH,
            live_callbacks: HashSet::new(),
            last_backlog: Timestamp::UNIX_EPOCH,
            retry: std::collections::VecDeque::new(),
            link_was_down: false,
            synced: false,
            require_sync: false,
            plan: cfg.pbx.numbers.clone(),
            dnc_path: cfg.callback.request.dnc_file.clone(),
            dnc_file: requests::DncFile::default(),
            call_later_after: cfg.callback.request.call_later_after,
            rules: Rules::from_config(&cfg.callback, &cfg.hours),
            attempt_log: AttemptLog::default(),
            target_state: HashMap::new(),
            last_sweep: Timestamp::UNIX_EPOCH,
            lease: None,
        }
    }

    /// Several nodes: dial only while `ownership` holds `server`'s lease (the callback server).
    /// On every new epoch the dialer adopts the attempts of unknown fate from the store and waits
    /// for the live channels before it dials ([`DialerInput::Reconciled`]).
    pub fn leased(
        mut self,
        ownership: crate::daemon::ownership::Ownership,
        server: &str,
    ) -> Dialer<O> {
        self.lease = Some(LeaseGate {
            ownership,
            server: server.to_string(),
            epoch: None,
        });
        self
    }

    /// Whether this node may dial now; applies a change of lease first: a lost one drops the
    /// attempts in flight from memory (the next owner adopts them from the store), a new one
    /// adopts them and waits for the live channels.
    fn check_lease(&mut self) -> Result<bool, DialerError> {
        let Some(g) = &mut self.lease else {
            return Ok(true);
        };
        let now = std::time::Instant::now();
        let epoch = g.ownership.owns(&g.server, now);
        if epoch == g.epoch {
            return Ok(epoch.is_some());
        }
        let server = g.server.clone();
        g.epoch = epoch;
        match epoch {
            None => {
                tracing::warn!(server = %server, attempts = self.in_flight.len(), "callback server's lease lost: this node stops dialling");
                self.in_flight.clear();
                self.retry.clear();
                self.synced = false;
                Ok(false)
            }
            Some(e) => {
                tracing::info!(server = %server, epoch = e, "callback server's lease held: adopting its attempts");
                self.in_flight.clear();
                self.synced = false;
                self.recover()?;
                Ok(true)
            }
        }
    }

    /// Starts no attempt after start-up or a link loss until [`DialerInput::Reconciled`] says
    /// the live channels were read: until then a customer talking to us may not be known to be
    /// on a call. The daemon sets it; tests that drive the dialer by hand need not.
    pub fn require_sync(mut self) -> Dialer<O> {
        self.require_sync = true;
        self
    }

    /// The longest an attempt's call can last: ringing, then the longest call.
    fn longest_life(&self) -> Duration {
        self.originate_timeout + RESPONSE_GRACE + self.max_call + RECORD_GRACE
    }

    /// Attempts in flight (tests, status).
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The open tasks as the dialer sees them (tests, status).
    pub fn tasks(&self) -> &[Task] {
        &self.tasks
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    fn emit(&self, e: DialerEvent) {
        if let Some(tx) = &self.events {
            // Observers must not stall dialling: a full channel drops the event (and says so).
            if tx.try_send(e).is_err() {
                tracing::debug!("dialer event dropped: observer is slow or gone");
            }
        }
    }

    /// Adopts the attempts a previous run left without outcome, loads the open tasks and acts
    /// on every stored verdict not acted on yet.
    ///
    /// An unfinished attempt may be a call still up on Asterisk (a restart for an upgrade in
    /// the middle of a conversation): it is not guessed at. It stays in flight, its task stays
    /// `in_progress` (so nothing dials the number), and it is settled by what the live channels
    /// show once the link is up ([`DialerInput::Reconciled`]): its call's record when the call
    /// ends, `unknown` when its call is gone, or `unknown` after its longest possible life.
    pub fn recover(&mut self) -> Result<(), DialerError> {
        for a in self.store.unfinished_attempts()? {
            let deadline = add(a.started_at, self.longest_life());
            tracing::info!(
                callback_id = %a.callback_id,
                number = %a.number,
                answered = a.answered_at.is_some(),
                "attempt without outcome from a previous run: adopted until the live channels are read"
            );
            self.in_flight.insert(
                a.callback_id.clone(),
                InFlight {
                    task_id: a.task_id,
                    number: a.number.clone(),
                    deadline,
                    answered: a.answered_at.is_some(),
                    unsure: true,
                    started: a.started_at,
                    fallback: None,
                },
            );
        }
        self.reload()?;
        self.backlog()?;
        Ok(())
    }

    /// Acts on the stored verdicts the dialer has not acted on yet (`calls.dialer_pending`):
    /// at start-up, and every 10 s as a backstop.
    pub fn backlog(&mut self) -> Result<usize, DialerError> {
        let mut n = 0;
        loop {
            let batch = self.store.dialer_pending_calls(BACKLOG_BATCH)?;
            let last = batch.len() < BACKLOG_BATCH;
            for (_, rec) in batch {
                self.on_record(&rec, true)?;
                self.store.dialer_done(&rec.server, &rec.linkedid)?;
                n += 1;
            }
            if last {
                break;
            }
        }
        if n > 0 {
            tracing::info!(
                verdicts = n,
                "acted on stored verdicts the dialer had not seen"
            );
        }
        self.last_backlog = (self.clock)();
        Ok(n)
    }

    fn reload(&mut self) -> Result<(), DialerError> {
        self.check_dnc_file()?;
        self.dnc_changed()?;
        self.tasks = self.store.open_tasks()?;
        self.index = self
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id, i))
            .collect();
        let now = (self.clock)();
        if self.rules.has_budget() {
            // Re-read, not kept: another perezvon on the same database (another server) dials
            // too, and the budget is per number across all of them.
            let since = now - self.rules.budget_horizon();
            self.attempt_log = AttemptLog::from_starts(self.store.attempt_starts_since(since)?);
        }
        self.data_version = self.store.data_version()?;
        self.last_reload = now;
        Ok(())
    }

    /// Re-reads one task after a write of ours: keeps it if open, drops it if closed.
    fn refresh(&mut self, id: i64) -> Result<(), DialerError> {
        let row = self.store.task(id)?;
        let open = row.map(|r| r.task).filter(|t| t.state.is_open());
        match (self.index.get(&id).copied(), open) {
            (Some(i), Some(t)) => self.tasks[i] = t,
            (None, Some(t)) => {
                self.index.insert(id, self.tasks.len());
                self.tasks.push(t);
            }
            (Some(i), None) => {
                self.index.remove(&id);
                self.tasks.swap_remove(i);
                if let Some(moved) = self.tasks.get(i) {
                    self.index.insert(moved.id, i);
                }
            }
            (None, None) => {}
        }
        Ok(())
    }

    /// Handles one input.
    pub async fn handle(&mut self, input: DialerInput) -> Result<(), DialerError> {
        // Another node dials: its verdicts stay marked for that node's backlog, its responses
        // and its callers' requests reach that node through its own session.
        if !self.check_lease()? && !matches!(input, DialerInput::LiveCustomers(_)) {
            return Ok(());
        }
        match input {
            DialerInput::Record(r) => {
                // Acted on once: the backlog may have taken it already (or the store has no row
                // for it: a test or an embedder feeding records directly).
                match self.store.dialer_pending(&r.server, &r.linkedid)? {
                    Some(false) => Ok(()),
                    Some(true) => {
                        self.on_record(&r, false)?;
                        self.store.dialer_done(&r.server, &r.linkedid)?;
                        Ok(())
                    }
                    None => self.on_record(&r, false),
                }
            }
            DialerInput::Response(r) => self.on_response(&r),
            DialerInput::LiveCustomers(live) => {
                self.on_live(live);
                Ok(())
            }
            DialerInput::LiveCallbacks(live) => {
                self.live_callbacks = live;
                Ok(())
            }
            DialerInput::Reconciled(live) => {
                self.synced = true;
                match live {
                    Some(live) => self.on_reconciled(&live),
                    None => Ok(()),
                }
            }
            DialerInput::User { server, request } => self.on_user(&server, request),
        }
    }

    /// Settles the attempts of unknown fate whose call is not among the live channels.
    fn on_reconciled(&mut self, live: &HashSet<String>) -> Result<(), DialerError> {
        let now = (self.clock)();
        let mut gone = Vec::new();
        for (cb, f) in self.in_flight.iter_mut() {
            if !f.unsure {
                continue;
            }
            if live.contains(cb) {
                // Its call is up: tracked to its real outcome from here on.
                f.unsure = false;
                f.answered = true;
                f.deadline = add(now, self.max_call + RECORD_GRACE);
                tracing::info!(callback_id = %cb, number = %f.number, "callback call still up: adopted");
            } else {
                gone.push((cb.clone(), f.clone()));
            }
        }
        for (cb, f) in gone {
            tracing::warn!(callback_id = %cb, number = %f.number, "callback call ended while perezvon could not see it: outcome unknown");
            self.finish(
                &cb,
                &f,
                AttemptOutcome::Unknown,
                now,
                None,
                Some("call ended unseen (restart or link loss)"),
            )?;
        }
        self.live_callbacks.extend(live.iter().cloned());
        Ok(())
    }

    fn on_record(&mut self, rec: &CallRecord, from_backlog: bool) -> Result<(), DialerError> {
        let now = (self.clock)();
        // 1. The record of one of our callbacks: the attempt's final outcome.
        if let Some(cb) = rec.callback_id.as_deref() {
            if let Some(f) = self.in_flight.get(cb).cloned() {
                // The tracker lost sight of the call (link down, silence): it may still connect;
                // a late record can still close the task as done.
                let outcome = if rec.status == Status::Unknown && rec.callback_outcome.is_none() {
                    AttemptOutcome::Unknown
                } else {
                    AttemptOutcome::Call(outcome_from_record(self.mode, rec, self.min_talk_secs))
                };
                let detail = rec.unknown_reason.map(|r| format!("tracker: {r:?}"));
                self.finish(cb, &f, outcome, now, Some(rec.talk_secs), detail.as_deref())?;
                return Ok(());
            }
            // A late record for an attempt already closed (e.g. as unknown after a restart): a
            // connection still closes the task.
            if let Some(a) = self.store.attempt(cb)? {
                let o = outcome_from_record(self.mode, rec, self.min_talk_secs);
                if o == CallbackOutcome::Connected {
                    self.close(a.task_id, &a.number, TaskState::Done, "connected", now)?;
                } else if a.outcome == Some(AttemptOutcome::Unknown)
                    && !(rec.status == Status::Unknown && rec.callback_outcome.is_none())
                {
                    // The outcome is known after all: the task need not wait for an operator.
                    self.settle_late(cb, a.task_id, o, now)?;
                }
                return Ok(());
            }
        }
        // 2. A call that resolved misses (the store decided, in the verdict's transaction, by
        //    `CallRecord::resolves_as` within `calls.resolve_within`) cancels their task: the
        //    report and the task always agree on "resolved".
        if let Some((by, number)) = rec.resolves_as() {
            if self
                .store
                .misses_resolved_by(&rec.server, &rec.linkedid)?
                .is_empty()
            {
                return Ok(());
            }
            if let Some(t) = self.store.open_task_for(number)? {
                if self.store.unresolved_misses(number, t.first_missed_at)? > 0 {
                    // A miss of this task came after the resolving call began: still owed.
                    tracing::info!(
                        task_id = t.id,
                        number,
                        "call resolved earlier misses; a later one is still owed a callback"
                    );
                    return Ok(());
                }
                let reason = match by {
                    ResolvedBy::Caller => "resolved_by_caller",
                    ResolvedBy::Callback => "resolved_by_callback",
                    ResolvedBy::Agent => "resolved_by_agent",
                };
                let number = number.to_string();
                self.close(t.id, &number, TaskState::Cancelled, reason, now)?;
            }
            return Ok(());
        }
        // 3. A miss to call back.
        match planner::admit(rec, &self.policy) {
            Ok(number) => {
                if self.store.requested_by_call(&rec.server, &rec.linkedid)? {
                    // The caller asked for a callback on this very call: that request is its
                    // task (one task per number), not another missed-call one.
                    tracing::info!(linkedid = %rec.linkedid, "miss of a call that requested a callback: the requested task stands");
                    return Ok(());
                }
                let existing = self.store.open_task_for(number.as_str())?;
                if from_backlog
                    && existing
                        .as_ref()
                        .is_some_and(|t| t.last_missed_at >= rec.ended_at)
                {
                    // This miss is counted already: acted on just before a crash, which came
                    // before its mark was cleared.
                    return Ok(());
                }
                match planner::on_miss(existing.as_ref(), &number, rec, &self.policy) {
                    MissPlan::Create(mut t) => {
                        self.assign_owner(&mut t, Some(rec))?;
                        let id = self.store.create_task(&t)?;
                        tracing::info!(task_id = id, number = %number, next_attempt_at = %t.next_attempt_at, "callback task created");
                        self.refresh(id)?;
                        self.emit(DialerEvent::TaskCreated {
                            task_id: id,
                            number: number.to_string(),
                        });
                    }
                    MissPlan::Bump {
                        id,
                        missed_count,
                        last_missed_at,
                        give_up_at,
                    } => {
                        self.store
                            .bump_task(id, missed_count, last_missed_at, give_up_at)?;
                        tracing::info!(task_id = id, number = %number, missed_count, "repeated miss");
                        if existing
                            .as_ref()
                            .is_some_and(|t| t.state == TaskState::Unknown)
                        {
                            // The customer called again and was missed again: whatever the
                            // unknown attempt did, they want a call now. A fresh round, as a new
                            // task would get.
                            let next = planner::first_attempt_at(rec, &self.policy);
                            match self.store.retry_task(
                                id,
                                next,
                                self.policy.max_attempts,
                                give_up_at,
                            ) {
                                Ok(()) => {
                                    tracing::info!(task_id = id, number = %number, "task of unknown outcome reopened by a new miss")
                                }
                                Err(StoreError::Invalid(why)) => {
                                    tracing::warn!(task_id = id, reason = %why, "task of unknown outcome not reopened")
                                }
                                Err(e) => return Err(e.into()),
                            }
                        }
                        self.refresh(id)?;
                    }
                }
            }
            Err(skip) => {
                if rec.direction == Direction::Inbound && rec.missed {
                    tracing::info!(linkedid = %rec.linkedid, reason = %skip, "miss not called back");
                }
            }
        }
        Ok(())
    }

    fn on_live(&mut self, live: HashSet<String>) {
        // Say so for the tasks it holds back (once, when their customer's call begins), so an
        // operator asking "why no callback yet" finds the answer in the log.
        if live.iter().any(|n| !self.live.contains(n)) {
            for t in self.tasks.iter().filter(|t| {
                t.state == TaskState::Pending
                    && live.contains(&t.number)
                    && !self.live.contains(&t.number)
            }) {
                tracing::info!(task_id = t.id, number = %t.number, "customer is on a call with the PBX: callback waits");
            }
        }
        self.live = live;
    }

    fn on_response(&mut self, r: &OriginateResponse) -> Result<(), DialerError> {
        // Broadcast to every session: only our ActionIDs (= callback ids) matter.
        let Some(f) = self.in_flight.get(&r.action_id).cloned() else {
            return Ok(());
        };
        let now = (self.clock)();
        match read_response(self.mode, r.success, r.reason) {
            ResponseVerdict::Answered => {
                self.store
                    .attempt_answered(&r.action_id, now, r.uniqueid.as_deref())?;
                if let Some(f) = self.in_flight.get_mut(&r.action_id) {
                    f.answered = true;
                    f.deadline = add(now, self.max_call + RECORD_GRACE);
                }
                tracing::info!(callback_id = %r.action_id, "callback answered, waiting for the call's end");
            }
            ResponseVerdict::AwaitRecord { fallback } => {
                // The Reason does not say what happened (a busy SIP customer is `Failure/0`):
                // the tracker's record of the call, due as soon as its channels are gone, does.
                if let Some(f) = self.in_flight.get_mut(&r.action_id) {
                    f.fallback = Some(fallback);
                    f.deadline = add(now, RESPONSE_GRACE);
                }
                tracing::info!(callback_id = %r.action_id, reason = ?r.reason, "callback not answered; its channels will tell why");
            }
            ResponseVerdict::Final(o) => {
                let detail = format!("OriginateResponse reason {:?}", r.reason);
                self.finish(
                    &r.action_id,
                    &f,
                    AttemptOutcome::Call(o),
                    now,
                    None,
                    Some(&detail),
                )?;
            }
        }
        Ok(())
    }

    fn finish(
        &mut self,
        callback_id: &str,
        f: &InFlight,
        outcome: AttemptOutcome,
        now: Timestamp,
        talk_secs: Option<f64>,
        detail: Option<&str>,
    ) -> Result<(), DialerError> {
        // Out of `in_flight` only once the outcome is committed: a store error leaves the
        // attempt in flight, and the input that brought the outcome is retried.
        let task = match self.index.get(&f.task_id) {
            Some(&i) => self.tasks[i].clone(),
            None => match self.store.task(f.task_id)? {
                Some(r) => r.task,
                None => {
                    self.in_flight.remove(callback_id);
                    return Ok(());
                }
            },
        };
        let after = planner::after_outcome(&task, outcome, now, &self.policy);
        let (after, release_owner) =
            planner::after_owner_attempt(&task, outcome, after, now, &self.policy);
        if release_owner {
            // Before the attempt ends: a retry after a store error finds it released already.
            self.store.release_owner(task.id, now)?;
            tracing::info!(task_id = task.id, owner = ?task.routing.owner, "the owner did not take the callback: the group takes it");
        }
        let ended =
            self.store
                .finish_attempt(callback_id, outcome, now, talk_secs, detail, &after)?;
        self.in_flight.remove(callback_id);
        if !ended {
            return Ok(());
        }
        tracing::info!(callback_id, number = %f.number, outcome = outcome.as_str(), state = after.state.as_str(), "callback attempt ended");
        self.emit(DialerEvent::AttemptEnded {
            task_id: f.task_id,
            number: f.number.clone(),
            callback_id: callback_id.to_string(),
            outcome,
            originated_at: f.started,
            ended_at: now,
        });
        if let Some(reason) = after.close_reason.filter(|_| !after.state.is_open()) {
            self.emit(DialerEvent::TaskClosed {
                task_id: f.task_id,
                number: f.number.clone(),
                state: after.state,
                reason: reason.to_string(),
            });
        }
        self.refresh(f.task_id)
    }

    fn close(
        &mut self,
        id: i64,
        number: &str,
        state: TaskState,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), DialerError> {
        if self.store.close_task(id, state, reason, now)? {
            tracing::info!(
                task_id = id,
                number,
                state = state.as_str(),
                reason,
                "callback task closed"
            );
            self.emit(DialerEvent::TaskClosed {
                task_id: id,
                number: number.to_string(),
                state,
                reason: reason.to_string(),
            });
        }
        self.refresh(id)
    }

    /// One tick: pick up external changes, expire attempts, start the due ones.
    pub async fn tick(&mut self) -> Result<(), DialerError> {
        if !self.check_lease()? {
            return Ok(());
        }
        let now = (self.clock)();
        if now.duration_since(self.last_reload) >= RELOAD_EVERY
            && self.store.data_version()? != self.data_version
        {
            self.reload()?;
        }
        // Inputs a store error interrupted, in order.
        for _ in 0..self.retry.len() {
            let Some(input) = self.retry.pop_front() else {
                break;
            };
            if let Err(e) = Box::pin(self.handle(input.clone())).await {
                tracing::warn!(error = %crate::store::error_chain(&e), "dialer input still failing; retrying");
                self.retry.push_front(input);
                return Ok(());
            }
        }
        // Several nodes: verdicts of servers another node owns reach this one only through the
        // store, so their backlog is read more often.
        let backlog_every = if self.lease.is_some() {
            SignedDuration::from_secs(2)
        } else {
            BACKLOG_EVERY
        };
        if now.duration_since(self.last_backlog) >= backlog_every {
            self.backlog()?;
        }
        self.check_dnc_file()?;
        let up = self.originator.is_up();
        if !up && !self.link_was_down {
            // Events of these attempts may be lost while the link is down: reconcile them with
            // the live channels when it is back.
            for f in self.in_flight.values_mut() {
                f.unsure = true;
            }
        }
        self.link_was_down = !up;
        if !up {
            self.synced = false;
        }
        let expired: Vec<(String, InFlight)> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.deadline <= now)
            .map(|(k, f)| (k.clone(), f.clone()))
            .collect();
        for (cb, mut f) in expired {
            if self.live_callbacks.contains(&cb) {
                // No response or record yet, but its call is up: never guessed as not reached.
                f.deadline = add(now, self.max_call + RECORD_GRACE);
                f.answered = true;
                self.in_flight.insert(cb, f);
                continue;
            }
            if !up && now < add(f.started, self.longest_life()) {
                // Not judged while the link is down: the reconnect's channel list decides.
                continue;
            }
            if let Some(o) = f.fallback {
                // No channel was ever created (no record comes): the Reason's reading stands.
                let detail = "OriginateResponse without an outcome, no record of the call";
                self.finish(&cb, &f, AttemptOutcome::Call(o), now, None, Some(detail))?;
                continue;
            }
            let detail = if f.answered {
                "no record of the answered callback call"
            } else {
                "no OriginateResponse"
            };
            tracing::warn!(callback_id = %cb, detail, "callback attempt timed out");
            self.finish(&cb, &f, AttemptOutcome::Unknown, now, None, Some(detail))?;
        }
        if !self.enabled {
            return Ok(());
        }
        // Callbacks no longer useful expire whether or not the link is up. The sweep reads every
        // task, so it runs every few seconds; a task due meanwhile is checked on its own before
        // it is dialled (below), so none is dialled past its expiry.
        if now.duration_since(self.last_sweep) >= SWEEP_EVERY || now < self.last_sweep {
            for (id, reason) in
                guard::expired(&self.tasks, now, &self.hours, &self.policy, &self.rules)
            {
                let Some(&i) = self.index.get(&id) else {
                    continue;
                };
                let number = self.tasks[i].number.clone();
                self.close(id, &number, TaskState::Expired, reason, now)?;
            }
            self.last_sweep = now;
        }
        if !up {
            return Ok(());
        }
        if self.require_sync && !self.synced {
            tracing::debug!("live channels not read yet: due callbacks wait");
            return Ok(());
        }
        let over_budget = if self.rules.has_budget() {
            self.attempt_log.prune(now - self.rules.budget_horizon());
            self.attempt_log.over_budget(now, &self.rules)
        } else {
            HashMap::new()
        };
        let clock = self.rules.customer.as_ref().map(|c| c.open_mask(now));
        let ctx = guard::Context::default()
            .live(&self.live)
            .over_budget(&over_budget)
            .customer(self.rules.customer.as_ref().zip(clock.as_ref()));
        let due = planner::due_guarded(&self.tasks, now, &self.hours, &self.policy, &ctx);
        if due.is_empty() {
            return Ok(());
        }
        // Free people per target, asked once per tick, less the attempts already in flight to it
        // (a customer ringing now needs one of them when they answer).
        let mut free: HashMap<String, u32> = HashMap::new();
        // Requested callbacks wait while callers wait in their queue (asked once per tick).
        let mut waiting: HashMap<String, u32> = HashMap::new();
        for d in due {
            if let Some(&i) = self.index.get(&d.id) {
                let t = &self.tasks[i];
                let closes = if self.rules.expire_at_close {
                    guard::day_closes(&self.hours, t.first_missed_at, now)
                } else {
                    Vec::new()
                };
                if let Some(reason) = guard::expiry(t, now, &self.policy, &self.rules, &closes) {
                    let number = t.number.clone();
                    self.close(d.id, &number, TaskState::Expired, reason, now)?;
                    continue;
                }
            }
            let key = d.target.key();
            let hold = self
                .index
                .get(&d.id)
                .and_then(|&i| self.policy.hold_queue(&self.tasks[i]))
                .map(str::to_string);
            if let Some(q) = hold.as_deref() {
                if !waiting.contains_key(q) {
                    let n = match self.originator.queue_callers(q).await {
                        Ok(n) => n,
                        Err(e) => {
                            // Unknown: assume callers wait rather than jump ahead of them.
                            tracing::warn!(queue = q, error = %e, "cannot read the queue's waiting callers");
                            u32::MAX
                        }
                    };
                    waiting.insert(q.to_string(), n);
                }
                if waiting.get(q).copied().unwrap_or(0) > 0 {
                    tracing::debug!(
                        queue = q,
                        task_id = d.id,
                        "callers wait in the queue: requested callback waits"
                    );
                    continue;
                }
            }
            // A requested callback always needs a free person: the caller was promised one.
            if self.require_free_agent || hold.is_some() {
                if !free.contains_key(&key) {
                    let n = match self.originator.free_agents(&d.target).await {
                        Ok(n) => n,
                        Err(e) => {
                            tracing::warn!(target = %key, error = %e, "cannot check for a free agent");
                            0
                        }
                    };
                    let busy = self
                        .tasks
                        .iter()
                        .filter(|t| {
                            t.state == TaskState::InProgress
                                && self.policy.target_at(t, now).key() == key
                        })
                        .count() as u32;
                    // Fairness: callers waiting in the target's queues come first, and each
                    // queue keeps its reserve of agents for them.
                    let (cap, held) = match self.originator.queue_loads(&d.target).await {
                        Ok(loads) => match guard::callback_capacity(n, &loads, &self.rules) {
                            Ok(c) => (c, None),
                            Err(busy) => (0, Some(busy.to_string())),
                        },
                        // Never free an agent on a guess: the callback waits for a summary.
                        Err(e) => {
                            tracing::warn!(target = %key, error = %e, "cannot read the queue summary; callback waits");
                            (0, Some(format!("queue summary unreadable: {e}")))
                        }
                    };
                    if let Some(why) = &held {
                        tracing::debug!(target = %key, reason = %why, "callbacks wait for inbound callers");
                    }
                    self.note_target(&key, now, held);
                    free.insert(key.clone(), cap.saturating_sub(busy));
                }
                match free.get_mut(&key) {
                    Some(n) if *n > 0 => *n -= 1,
                    _ => {
                        tracing::debug!(target = %key, "no free agent: callback waits");
                        continue;
                    }
                }
            }
            if !self.originator.is_up() {
                // The link dropped during the batch: the rest wait, nothing counted.
                tracing::info!("AMI link down: due callbacks wait for it");
                break;
            }
            self.start(d.id, &d.target, now).await?;
        }
        Ok(())
    }

    /// Applies the real outcome of an attempt settled as `unknown`, when a record of its call
    /// arrives late and the task is still `unknown` with that attempt as its last.
    fn settle_late(
        &mut self,
        callback_id: &str,
        task_id: i64,
        outcome: CallbackOutcome,
        now: Timestamp,
    ) -> Result<(), DialerError> {
        let Some(row) = self.store.task(task_id)? else {
            return Ok(());
        };
        if row.task.state != TaskState::Unknown
            || self
                .store
                .attempts_of(task_id)?
                .last()
                .is_none_or(|l| l.callback_id != callback_id)
        {
            return Ok(());
        }
        let outcome = AttemptOutcome::Call(outcome);
        let after = planner::after_outcome(&row.task, outcome, now, &self.policy);
        if self.store.settle_unknown(
            callback_id,
            outcome,
            now,
            "late record of the call",
            &after,
        )? {
            tracing::info!(
                callback_id,
                task_id,
                outcome = outcome.as_str(),
                state = after.state.as_str(),
                "late record: outcome of an unknown attempt known"
            );
        }
        self.refresh(task_id)
    }

    /// Records in the store why a target is held back, when that changes (for `callbacks list`).
    fn note_target(&mut self, key: &str, now: Timestamp, held: Option<String>) {
        if self.target_state.get(key) == Some(&held) {
            return;
        }
        match self.store.set_target_state(key, now, held.as_deref()) {
            Ok(()) => {
                if let Some(why) = &held {
                    tracing::info!(target = %key, reason = %why, "callbacks to this target wait");
                }
                self.target_state.insert(key.to_string(), held);
            }
            // Only the list's explanation is stale: dialling goes on.
            Err(e) => {
                tracing::warn!(error = %crate::store::error_chain(&e), "cannot record the target's state")
            }
        }
    }

    async fn start(&mut self, id: i64, target: &Target, now: Timestamp) -> Result<(), DialerError> {
        let Some(&i) = self.index.get(&id) else {
            return Ok(());
        };
        let task = self.tasks[i].clone();
        self.refresh_dnc_for(&task.number)?;
        // Re-validated at every attempt: the allow-list (or the do-not-call list) may have
        // changed since the miss.
        let number = match self.policy.dial_number(&task.number) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(task_id = id, number = %task.number, reason = %e, "number refused, task cancelled");
                let reason = if e == crate::callback::originate::Rejected::DoNotCall {
                    "do_not_call"
                } else {
                    "number_refused"
                };
                return self.close(id, &task.number, TaskState::Cancelled, reason, now);
            }
        };
        let attempt_no = task.attempts + 1;
        let ids = CallbackIds::new(id, attempt_no, fastrand::u32(..));
        let req = match OriginateRequest::build_for(
            &self.settings,
            &number,
            target,
            ids,
            task.missed_count,
        ) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(task_id = id, error = %e, "cannot build the Originate; task given up");
                return self.close(
                    id,
                    &task.number,
                    TaskState::GivenUp,
                    "originate_invalid",
                    now,
                );
            }
        };
        let cb = req.ids.callback_id.clone();
        // The budget again, in the attempt's own transaction: another perezvon on the database
        // (another server) may have called the number since this one last read the attempts.
        let caps = self.rules.attempt_caps(now);
        let committed = std::time::Instant::now();
        if let Err(e) = self.store.begin_attempt_capped(
            &NewAttempt {
                task_id: id,
                attempt_no,
                callback_id: &cb,
                number: number.as_str(),
                target: &req.target_key,
                started_at: now,
            },
            &caps,
        ) {
            // Someone else changed the task (CLI) or holds the number: re-read and move on.
            tracing::warn!(task_id = id, error = %e, "attempt not started");
            return self.reload();
        }
        self.attempt_log.record(number.as_str(), now);
        self.refresh(id)?;
        let f = InFlight {
            task_id: id,
            number: task.number.clone(),
            deadline: add(now, self.originate_timeout + RESPONSE_GRACE),
            answered: false,
            unsure: false,
            started: now,
            fallback: None,
        };
        self.in_flight.insert(cb.clone(), f.clone());
        // A short send deadline: a node paused between the commit and here, or that lost the
        // lease meanwhile, must not dial; the attempt stays of unknown fate for the owner.
        if self.lease.is_some() && (committed.elapsed() > SEND_DEADLINE || !self.check_lease()?) {
            tracing::warn!(task_id = id, callback_id = %cb, "attempt committed but not originated: the lease or the send deadline ran out");
            self.in_flight.remove(&cb);
            return Ok(());
        }
        tracing::info!(task_id = id, callback_id = %cb, number = %number, attempt_no, target = %req.target_key, "originating callback");
        let result = self.originator.originate(&req).await;
        if let Err(OriginateError::NotSent(why)) = &result {
            // Nothing reached the PBX (the link dropped): the attempt never happened. It is
            // taken back, uncounted, and the task waits for the link as it was.
            self.in_flight.remove(&cb);
            self.attempt_log.forget(number.as_str(), now);
            tracing::info!(task_id = id, callback_id = %cb, reason = %why, "Originate not sent: attempt taken back, task waits for the link");
            if let Err(e) = self.store.abandon_attempt(&cb) {
                // The row stays unfinished: the next start adopts it and settles it as unknown.
                tracing::error!(callback_id = %cb, error = %crate::store::error_chain(&e), "cannot take back an attempt that was not sent");
            }
            return self.refresh(id);
        }
        self.emit(DialerEvent::AttemptStarted {
            task_id: id,
            number: task.number.clone(),
            callback_id: cb.clone(),
            attempt_no,
            target: req.target_key.clone(),
        });
        match result {
            Ok(()) => Ok(()),
            Err(e) => {
                // The OriginateResponse may have been handled while we waited.
                if !self.in_flight.contains_key(&cb) {
                    return Ok(());
                }
                tracing::warn!(callback_id = %cb, error = %e, "Originate failed");
                match e {
                    OriginateError::Rejected(_) | OriginateError::NotSent(_) => {
                        let detail = e.to_string();
                        let outcome = AttemptOutcome::Call(CallbackOutcome::Failed);
                        self.finish(&cb, &f, outcome, (self.clock)(), None, Some(&detail))
                    }
                    // Sent, no reply: the call may be ringing. The channels decide (or the
                    // response, or the deadline), never a guess now.
                    OriginateError::NoReply(_) => {
                        if let Some(f) = self.in_flight.get_mut(&cb) {
                            f.unsure = true;
                        }
                        Ok(())
                    }
                }
            }
        }
    }

    /// Handles an input; a store error keeps it for the next tick (bounded: past the bound a
    /// verdict is dropped here, and the backlog of stored verdicts picks it up).
    async fn handle_or_hold(&mut self, input: DialerInput) {
        if !self.retry.is_empty() {
            self.hold(input);
            return;
        }
        match self.handle(input.clone()).await {
            Ok(()) => {}
            // The lease went to another node mid-write: that node acts on it from the store.
            Err(DialerError::Store(e @ StoreError::Fenced { .. })) => {
                tracing::warn!(error = %e, "callback write fenced off: another node owns the server now");
            }
            Err(e) => {
                tracing::error!(error = %crate::store::error_chain(&e), "callback store failed; the input is retried");
                self.hold(input);
            }
        }
    }

    fn hold(&mut self, input: DialerInput) {
        if self.retry.len() >= MAX_RETRY_INPUTS {
            if let Some(pos) = self
                .retry
                .iter()
                .position(|i| matches!(i, DialerInput::Record(_)))
            {
                self.retry.remove(pos);
            }
        }
        self.retry.push_back(input);
    }

    /// Runs until `shutdown`: inputs as they come, a tick every [`TICK`]. On shutdown, attempts
    /// in flight stay recorded (without outcome) for the next start to settle.
    pub async fn run(
        mut self,
        mut inputs: mpsc::Receiver<DialerInput>,
        shutdown: CancellationToken,
    ) -> Result<(), DialerError> {
        // A store that fails at start-up (a lock held for a while) is retried; nothing is
        // dialled before recovery has run.
        let mut wait = Duration::from_secs(1);
        loop {
            match self.recover() {
                Ok(()) => break,
                Err(e) => {
                    tracing::error!(error = %crate::store::error_chain(&e), "callback recovery failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(wait) => {}
                    }
                    wait = (wait * 2).min(Duration::from_secs(30));
                }
            }
        }
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                input = inputs.recv() => match input {
                    Some(i) => self.handle_or_hold(i).await,
                    None => break,
                },
                _ = tick.tick() => {
                    if let Err(e) = self.tick().await {
                        // Nothing is dialled without its attempt committed; the next tick
                        // tries again.
                        tracing::error!(error = %crate::store::error_chain(&e), "callback tick failed; retrying");
                    }
                }
            }
        }
        // Drain what is already queued (records of calls that ended before the signal).
        while let Ok(i) = inputs.try_recv() {
            self.handle_or_hold(i).await;
        }
        if !self.in_flight.is_empty() {
            tracing::info!(
                attempts = self.in_flight.len(),
                "stopping with callback attempts in flight; they are recorded and settled at the next start"
            );
        }
        Ok(())
    }
}

/// Production: Originates and agent checks over the AMI link of `callback.server`.
impl Originator for crate::ami::AmiHandle {
    async fn originate(&self, req: &OriginateRequest) -> Result<(), OriginateError> {
        use crate::ami::AmiError;
        match self.send(req.to_action()).await {
            Ok(_) => Ok(()),
            Err(AmiError::Rejected { message, .. }) => Err(OriginateError::Rejected(message)),
            Err(e @ (AmiError::NotConnected | AmiError::Invalid(_) | AmiError::Shutdown)) => {
                Err(OriginateError::NotSent(e.to_string()))
            }
            Err(e) => Err(OriginateError::NoReply(e.to_string())),
        }
    }

    async fn free_agents(&self, target: &Target) -> Result<u32, OriginateError> {
        use crate::ami::Action;
        use crate::callback::originate::{device_is_free, queue_free_members};
        let list = |a: Action| async move {
            self.send_list(a)
                .await
                .map(|(_, items)| items)
                .map_err(|e| OriginateError::NoReply(e.to_string()))
        };
        match target {
            // A dialplan target is the PBX's business: assume someone is there.
            Target::Dialplan { .. } => Ok(u32::MAX),
            Target::Queue(q) => {
                let items = list(Action::new("QueueStatus").header("Queue", q)).await?;
                Ok(queue_free_members(&items, q))
            }
            Target::Endpoint(e) => {
                let items = list(Action::new("DeviceStateList")).await?;
                Ok(u32::from(device_is_free(&items, e)))
            }
        }
    }

    fn is_up(&self) -> bool {
        crate::ami::AmiHandle::is_up(self)
    }

    async fn queue_callers(&self, queue: &str) -> Result<u32, OriginateError> {
        use crate::callback::originate::queue_waiting_callers;
        let (_, items) = self
            .send_list(crate::ami::Action::new("QueueStatus").header("Queue", queue))
            .await
            .map_err(|e| OriginateError::NoReply(e.to_string()))?;
        Ok(queue_waiting_callers(&items, queue))
    }

    async fn queue_loads(&self, target: &Target) -> Result<Vec<QueueLoad>, OriginateError> {
        use crate::ami::Action;
        use crate::callback::originate::{queue_summaries, queues_of_member};
        let list = |a: Action| async move {
            self.send_list(a)
                .await
                .map(|(_, items)| items)
                .map_err(|e| OriginateError::NoReply(e.to_string()))
        };
        let queues = match target {
            Target::Dialplan { .. } => return Ok(Vec::new()),
            Target::Queue(q) => vec![q.clone()],
            // An agent who is a member of queues serves their callers too.
            Target::Endpoint(e) => queues_of_member(&list(Action::new("QueueStatus")).await?, e),
        };
        let mut out = Vec::new();
        for q in queues {
            let items = list(Action::new("QueueSummary").header("Queue", &q)).await?;
            let mut loads = queue_summaries(&items);
            loads.retain(|l| l.queue == q);
            if loads.is_empty() {
                // Asterisk lists nothing for a queue it does not know: nobody to take it.
                loads.push(QueueLoad {
                    queue: q,
                    logged_in: 0,
                    available: 0,
                    callers: 0,
                });
            }
            out.extend(loads);
        }
        Ok(out)
    }
}
