//! Glue between the daemon's writers and the outbox/metrics.
//!
//! The durable way: the writer of a verdict or of an attempt's outcome calls [`enqueue_recorded`]
//! / [`enqueue_attempt_outcome`] on its own connection right after its commit. [`run_observer`]
//! is the zero-touch way for the daemon's observer channels (`RunOptions::records`,
//! `RunOptions::dialer_events`): it updates the metrics and enqueues the same events. Those
//! channels drop on overflow, so the observer alone is best-effort; enqueueing is idempotent, so
//! using both never sends an event twice.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{enqueue_callback_outcome, enqueue_for_record, enqueue_resolved, CallbackEvent};
use crate::callback::planner::{AttemptOutcome, TaskState};
use crate::calls::record::{CallRecord, Timestamp};
use crate::config::Config;
use crate::daemon::dialer::DialerEvent;
use crate::metrics::Metrics;
use crate::store::calls::Recorded;
use crate::store::{Store, StoreError};

/// Enqueues everything a stored verdict announces: `missed` for an inbound miss, `resolved` for
/// the miss itself when it was stored already resolved, and `resolved` for every earlier miss this
/// call resolved.
pub fn enqueue_recorded(
    store: &Store,
    cfg: &Config,
    rec: &Recorded,
    now: Timestamp,
) -> Result<usize, StoreError> {
    let mut n = enqueue_for_record(store, cfg, &rec.record, now)?;
    if rec.record.missed {
        n += enqueue_resolved(store, cfg, &rec.record, now)?;
    }
    for r in &rec.resolved {
        if let Some(miss) = store.get_call(&r.server, &r.linkedid)? {
            n += enqueue_resolved(store, cfg, &miss, now)?;
        }
    }
    Ok(n)
}

/// Enqueues `callback` for a finished attempt, read back from the store by its callback id.
/// An attempt without a known outcome (a crash mid-call) is no event.
pub fn enqueue_attempt_outcome(
    store: &Store,
    cfg: &Config,
    callback_id: &str,
    now: Timestamp,
) -> Result<usize, StoreError> {
    let Some(a) = store.attempt(callback_id)? else {
        return Ok(0);
    };
    let Some(AttemptOutcome::Call(outcome)) = a.outcome else {
        return Ok(0);
    };
    let task = store.task(a.task_id)?.map(|t| t.task);
    let state = task.as_ref().map(|t| t.state);
    let event = CallbackEvent {
        server: task.as_ref().map(|t| t.server.clone()).unwrap_or_default(),
        callback_id: a.callback_id.clone(),
        task_id: a.task_id,
        number: a.number.clone(),
        attempt: a.attempt_no,
        max_attempts: task.as_ref().map_or(a.attempt_no, |t| t.attempt_budget),
        outcome,
        started_at: a.started_at,
        ended_at: a.ended_at.unwrap_or(now),
        talk_secs: a.talk_secs.unwrap_or(0.0),
        agent: None,
        task_state: state.map_or("unknown", TaskState::as_str).to_string(),
        next_attempt_at: match (state, &task) {
            (Some(TaskState::Pending), Some(t)) => Some(t.next_attempt_at),
            _ => None,
        },
    };
    enqueue_callback_outcome(store, cfg, &event, now)
}

/// Consumes the daemon's observer channels until both close or `shutdown`: counts verdicts and
/// callback outcomes in `metrics` and enqueues their notifications on its own connection.
pub async fn run_observer(
    cfg: Arc<Config>,
    db: PathBuf,
    metrics: Arc<Metrics>,
    mut records: mpsc::Receiver<CallRecord>,
    mut dialer: mpsc::Receiver<DialerEvent>,
    shutdown: CancellationToken,
) -> Result<(), StoreError> {
    let store = crate::store::Store::open_named(
        &crate::store::Location::parse(&db.to_string_lossy()),
        &format!("perezvon {} notify", cfg.cluster.node_id),
    )?;
    let (mut records_open, mut dialer_open) = (true, true);
    while records_open || dialer_open {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            r = records.recv(), if records_open => match r {
                Some(rec) => {
                    metrics.record_call(&rec);
                    let now = Timestamp::now();
                    let result = enqueue_for_record(&store, &cfg, &rec, now).and_then(|n| {
                        // The record does not list the earlier misses it resolved: find them.
                        let mut n = n;
                        for miss in store.misses_resolved_by(&rec.server, &rec.linkedid)? {
                            n += enqueue_resolved(&store, &cfg, &miss, now)?;
                        }
                        if rec.missed {
                            n += enqueue_resolved(&store, &cfg, &rec, now)?;
                        }
                        Ok(n)
                    });
                    if let Err(e) = result {
                        tracing::warn!(error = %e, linkedid = %rec.linkedid, "notify: cannot enqueue");
                    }
                }
                None => records_open = false,
            },
            e = dialer.recv(), if dialer_open => match e {
                Some(DialerEvent::AttemptEnded { callback_id, outcome, .. }) => {
                    if let AttemptOutcome::Call(o) = outcome {
                        metrics.record_callback(o);
                    }
                    if let Err(e) = enqueue_attempt_outcome(&store, &cfg, &callback_id, Timestamp::now()) {
                        tracing::warn!(error = %e, callback_id = %callback_id, "notify: cannot enqueue");
                    }
                }
                Some(_) => {
                    if let Ok(n) = store.open_tasks() {
                        metrics.set_pending_callback_tasks(n.len() as u64);
                    }
                }
                None => dialer_open = false,
            },
        }
    }
    Ok(())
}
