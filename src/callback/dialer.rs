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
//! A crash between 1 and 3 leaves an attempt without outcome. At start-up such attempts are closed
//! as `unknown` and their task waits the full spacing *from the attempt's start*: a number is
//! never dialled twice within the spacing, across restarts too. The database adds a unique index
//! so two unfinished attempts for one number cannot exist at all.
//!
//! The in-memory task list mirrors the open tasks; other processes (`perezvon callbacks cancel`)
//! change the database, and `PRAGMA data_version` tells the dialer when to re-read it.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::hours::Hours;
use super::originate::{
    classify_response, outcome_from_record, CallbackIds, OriginateRequest, OriginateResponse,
    OriginateSettings, OriginateVerdict,
};
use super::planner::{self, AttemptOutcome, MissPlan, Policy, Task, TaskState};
use crate::calls::record::{CallRecord, CallbackOutcome, Direction, Status};
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
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
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
}

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
        }
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

    /// Closes attempts a previous run left without outcome, then loads the open tasks.
    pub fn recover(&mut self) -> Result<(), DialerError> {
        let now = (self.clock)();
        for a in self.store.unfinished_attempts()? {
            let Some(row) = self.store.task(a.task_id)? else {
                continue;
            };
            let mut task = row.task;
            // Spacing counts from the lost attempt's start.
            task.last_attempt_at = Some(a.started_at);
            let after = planner::after_outcome(&task, AttemptOutcome::Unknown, now, &self.policy);
            tracing::warn!(
                callback_id = %a.callback_id,
                number = %a.number,
                next_attempt_at = %after.next_attempt_at,
                "attempt without outcome from a previous run: counted as unknown"
            );
            self.store.finish_attempt(
                &a.callback_id,
                AttemptOutcome::Unknown,
                now,
                None,
                Some("perezvon restarted during the attempt"),
                &after,
            )?;
        }
        self.reload()?;
        Ok(())
    }

    fn reload(&mut self) -> Result<(), DialerError> {
        self.tasks = self.store.open_tasks()?;
        self.index = self
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id, i))
            .collect();
        self.data_version = self.store.data_version()?;
        self.last_reload = (self.clock)();
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
        match input {
            DialerInput::Record(r) => self.on_record(&r),
            DialerInput::Response(r) => self.on_response(&r),
            DialerInput::LiveCustomers(live) => {
                self.on_live(live);
                Ok(())
            }
        }
    }

    fn on_record(&mut self, rec: &CallRecord) -> Result<(), DialerError> {
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
                if outcome_from_record(self.mode, rec, self.min_talk_secs)
                    == CallbackOutcome::Connected
                {
                    self.close(a.task_id, &a.number, TaskState::Done, "connected", now)?;
                }
                return Ok(());
            }
        }
        // 2. A call that resolves a miss another way cancels the number's task.
        if let Some(number) = planner::resolves(rec, &self.policy) {
            if let Some(t) = self.store.open_task_for(&number)? {
                let reason = match rec.direction {
                    Direction::Inbound => "resolved_by_caller",
                    Direction::Callback => "resolved_by_callback",
                    _ => "resolved_by_agent",
                };
                self.close(t.id, &number, TaskState::Cancelled, reason, now)?;
            }
            return Ok(());
        }
        // 3. A miss to call back.
        match planner::admit(rec, &self.policy) {
            Ok(number) => {
                let existing = self.store.open_task_for(number.as_str())?;
                match planner::on_miss(existing.as_ref(), &number, rec, &self.policy) {
                    MissPlan::Create(t) => {
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
        match classify_response(self.mode, r.success, r.reason) {
            OriginateVerdict::Answered => {
                self.store
                    .attempt_answered(&r.action_id, now, r.uniqueid.as_deref())?;
                if let Some(f) = self.in_flight.get_mut(&r.action_id) {
                    f.answered = true;
                    f.deadline = add(now, self.max_call + RECORD_GRACE);
                }
                tracing::info!(callback_id = %r.action_id, "callback answered, waiting for the call's end");
            }
            OriginateVerdict::Final(o) => {
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
        self.in_flight.remove(callback_id);
        let task = match self.index.get(&f.task_id) {
            Some(&i) => self.tasks[i].clone(),
            None => match self.store.task(f.task_id)? {
                Some(r) => r.task,
                None => return Ok(()),
            },
        };
        let after = planner::after_outcome(&task, outcome, now, &self.policy);
        let ended =
            self.store
                .finish_attempt(callback_id, outcome, now, talk_secs, detail, &after)?;
        if !ended {
            return Ok(());
        }
        tracing::info!(callback_id, number = %f.number, outcome = outcome.as_str(), state = after.state.as_str(), "callback attempt ended");
        self.emit(DialerEvent::AttemptEnded {
            task_id: f.task_id,
            number: f.number.clone(),
            callback_id: callback_id.to_string(),
            outcome,
        });
        if let Some(reason) = after.close_reason {
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
        let now = (self.clock)();
        if now.duration_since(self.last_reload) >= RELOAD_EVERY
            && self.store.data_version()? != self.data_version
        {
            self.reload()?;
        }
        let expired: Vec<(String, InFlight)> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.deadline <= now)
            .map(|(k, f)| (k.clone(), f.clone()))
            .collect();
        for (cb, f) in expired {
            let detail = if f.answered {
                "no record of the answered callback call"
            } else {
                "no OriginateResponse"
            };
            tracing::warn!(callback_id = %cb, detail, "callback attempt timed out");
            self.finish(&cb, &f, AttemptOutcome::Unknown, now, None, Some(detail))?;
        }
        if !self.enabled || !self.originator.is_up() {
            return Ok(());
        }
        let due = planner::due_avoiding(&self.tasks, now, &self.hours, &self.policy, &self.live);
        if due.is_empty() {
            return Ok(());
        }
        // Free people per target, asked once per tick, less the attempts already in flight to it
        // (a customer ringing now needs one of them when they answer).
        let mut free: HashMap<String, u32> = HashMap::new();
        for d in due {
            let key = d.target.key();
            if self.require_free_agent {
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
                                && self.policy.target_of(t).key() == key
                        })
                        .count() as u32;
                    free.insert(key.clone(), n.saturating_sub(busy));
                }
                match free.get_mut(&key) {
                    Some(n) if *n > 0 => *n -= 1,
                    _ => {
                        tracing::debug!(target = %key, "no free agent: callback waits");
                        continue;
                    }
                }
            }
            self.start(d.id, &d.target, now).await?;
        }
        Ok(())
    }

    async fn start(&mut self, id: i64, target: &Target, now: Timestamp) -> Result<(), DialerError> {
        let Some(&i) = self.index.get(&id) else {
            return Ok(());
        };
        let task = self.tasks[i].clone();
        // Re-validated at every attempt: the allow-list may have changed since the miss.
        let number = match self.policy.dial_number(&task.number) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(task_id = id, number = %task.number, reason = %e, "number refused, task cancelled");
                return self.close(
                    id,
                    &task.number,
                    TaskState::Cancelled,
                    "number_refused",
                    now,
                );
            }
        };
        let attempt_no = task.attempts + 1;
        let ids = CallbackIds::new(id, attempt_no, fastrand::u32(..));
        let req = match OriginateRequest::build(&self.settings, &number, target, ids) {
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
        if let Err(e) = self.store.begin_attempt(&NewAttempt {
            task_id: id,
            attempt_no,
            callback_id: &cb,
            number: number.as_str(),
            target: &req.target_key,
            started_at: now,
        }) {
            // Someone else changed the task (CLI) or holds the number: re-read and move on.
            tracing::warn!(task_id = id, error = %e, "attempt not started");
            return self.reload();
        }
        self.refresh(id)?;
        let f = InFlight {
            task_id: id,
            number: task.number.clone(),
            deadline: add(now, self.originate_timeout + RESPONSE_GRACE),
            answered: false,
        };
        self.in_flight.insert(cb.clone(), f.clone());
        tracing::info!(task_id = id, callback_id = %cb, number = %number, attempt_no, target = %req.target_key, "originating callback");
        self.emit(DialerEvent::AttemptStarted {
            task_id: id,
            number: task.number.clone(),
            callback_id: cb.clone(),
            attempt_no,
            target: req.target_key.clone(),
        });
        match self.originator.originate(&req).await {
            Ok(()) => Ok(()),
            Err(e) => {
                // The OriginateResponse may have been handled while we waited.
                if !self.in_flight.contains_key(&cb) {
                    return Ok(());
                }
                let outcome = match e {
                    OriginateError::Rejected(_) | OriginateError::NotSent(_) => {
                        AttemptOutcome::Call(CallbackOutcome::Failed)
                    }
                    OriginateError::NoReply(_) => AttemptOutcome::Unknown,
                };
                tracing::warn!(callback_id = %cb, error = %e, "Originate failed");
                let detail = e.to_string();
                self.finish(&cb, &f, outcome, (self.clock)(), None, Some(&detail))
            }
        }
    }

    /// Runs until `shutdown`: inputs as they come, a tick every [`TICK`]. On shutdown, attempts
    /// in flight stay recorded (without outcome) for the next start to settle.
    pub async fn run(
        mut self,
        mut inputs: mpsc::Receiver<DialerInput>,
        shutdown: CancellationToken,
    ) -> Result<(), DialerError> {
        self.recover()?;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                input = inputs.recv() => match input {
                    Some(i) => self.handle(i).await?,
                    None => break,
                },
                _ = tick.tick() => self.tick().await?,
            }
        }
        // Drain what is already queued (records of calls that ended before the signal).
        while let Ok(i) = inputs.try_recv() {
            self.handle(i).await?;
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
        use super::originate::{device_is_free, queue_free_members};
        use crate::ami::Action;
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
}
