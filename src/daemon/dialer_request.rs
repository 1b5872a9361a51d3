//! The dialer's side of issue 14: requested callbacks, "never call me back", dispositions,
//! owners and the do-not-call list. A child of [`super`] (it works on the dialer's own
//! state); the rules themselves are in [`crate::callback::planner`] and [`crate::callback::request`].

use std::collections::HashSet;
use std::sync::Arc;

use super::{Dialer, DialerError, DialerEvent, Originator};
use crate::callback::planner::{self, RequestPlan, Task};
use crate::callback::request::{CallbackRequest, DispositionRequest, UserRequest};
use crate::calls::record::{CallRecord, LostAt};
use crate::store::request::{parse_dnc_file, NewRequest};

/// What the dialer remembers of `callback.dnc_file` between ticks.
#[derive(Debug, Default)]
pub(super) struct DncFile {
    /// Modification time and length when last read; `None`: not read yet (or missing).
    seen: Option<(Option<std::time::SystemTime>, u64)>,
    pub(super) numbers: HashSet<String>,
    missing_logged: bool,
}

impl<O: Originator> Dialer<O> {
    /// Handles a `UserEvent` request seen on `server`.
    pub(super) fn on_user(&mut self, server: &str, req: UserRequest) -> Result<(), DialerError> {
        match req {
            UserRequest::Callback(r) => self.on_callback_request(server, &r),
            UserRequest::NoCall { caller, linkedid } => self.on_no_call(&caller, &linkedid),
            UserRequest::Disposition(d) => self.on_disposition(&d),
        }
    }

    fn on_callback_request(
        &mut self,
        server: &str,
        r: &CallbackRequest,
    ) -> Result<(), DialerError> {
        let now = (self.clock)();
        let Some(raw) = r.wanted() else {
            tracing::warn!(linkedid = %r.linkedid, "callback requested without a number (withheld caller, nothing entered): not called back");
            return Ok(());
        };
        // The entered number goes through the same normalisation and guard as any caller's.
        let normalized = match self.plan.normalize(raw) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(linkedid = %r.linkedid, number = raw, reason = ?e, "requested callback number is not a number: not called back");
                return Ok(());
            }
        };
        let number = match self.policy.dial_number(&normalized) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(linkedid = %r.linkedid, number = %normalized, reason = %e, "requested callback refused");
                return Ok(());
            }
        };
        let fresh = self.store.record_request(&NewRequest {
            server,
            linkedid: &r.linkedid,
            uniqueid: &r.uniqueid,
            number: number.as_str(),
            queue: r.queue.as_deref(),
            joined_at: r.joined_at,
            requested_at: now,
        })?;
        if !fresh {
            tracing::info!(linkedid = %r.linkedid, "callback already requested on this call");
            return Ok(());
        }
        let existing = self.store.open_task_for(number.as_str())?;
        match planner::on_request(
            existing.as_ref(),
            &number,
            server,
            r.queue.as_deref(),
            r.joined_at,
            now,
            &self.policy,
        ) {
            RequestPlan::Create(mut t) => {
                self.assign_owner(&mut t, None)?;
                let id = self.store.create_task(&t)?;
                self.store.link_request(server, &r.linkedid, id)?;
                tracing::info!(task_id = id, number = %number, queue = ?r.queue, "requested callback task created");
                self.refresh(id)?;
                self.emit(DialerEvent::TaskCreated {
                    task_id: id,
                    number: number.to_string(),
                });
            }
            RequestPlan::Requeue {
                id,
                queue,
                joined_at,
                due_at,
            } => {
                self.store
                    .make_requested(id, queue.as_deref(), joined_at, due_at)?;
                self.store.link_request(server, &r.linkedid, id)?;
                tracing::info!(task_id = id, number = %number, "callback requested: open task is now requested");
                self.refresh(id)?;
            }
        }
        Ok(())
    }

    fn on_no_call(&mut self, caller: &str, linkedid: &str) -> Result<(), DialerError> {
        let now = (self.clock)();
        let n = match self.plan.normalize(caller) {
            Ok(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => {
                tracing::warn!(
                    linkedid,
                    caller,
                    "\"never call me back\" from a caller without a usable number: ignored"
                );
                return Ok(());
            }
        };
        let added = self.store.dnc_add(&n, "caller", now)?;
        tracing::info!(
            number = %n,
            linkedid,
            added,
            "caller asked never to be called back: on the do-not-call list"
        );
        self.dnc_changed()?;
        if let Some(t) = self.tasks.iter().find(|t| t.number == n).map(|t| t.id) {
            self.refresh(t)?;
        }
        Ok(())
    }

    fn on_disposition(&mut self, d: &DispositionRequest) -> Result<(), DialerError> {
        let now = (self.clock)();
        let number = d
            .number
            .as_deref()
            .and_then(|n| self.plan.normalize(n).ok());
        let Some(id) = self.store.task_for_disposition(
            d.callback_id.as_deref(),
            number.as_deref(),
            d.agent.as_deref(),
        )?
        else {
            tracing::warn!(callback_id = ?d.callback_id, number = ?d.number, "disposition for no known callback task: ignored");
            return Ok(());
        };
        let later = super::add(now, self.call_later_after);
        match self
            .store
            .set_disposition(id, d.disposition, d.agent.as_deref(), now, later)
        {
            Ok(applied) => {
                tracing::info!(task_id = id, number = %applied.number, disposition = d.disposition.as_str(), agent = ?d.agent, state = applied.state.as_str(), "disposition recorded");
                if d.disposition == crate::callback::request::Disposition::DoNotCall {
                    self.dnc_changed()?;
                }
                self.refresh(id)?;
            }
            // Not a store failure: e.g. call_later while the number has another open task.
            Err(crate::store::StoreError::Invalid(why)) => {
                tracing::warn!(task_id = id, reason = %why, "disposition not applied");
            }
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// Sets a new task's owner (owned callbacks): the agent of the customer's last
    /// conversation, else the person whose own number the missed call went to.
    pub(super) fn assign_owner(
        &self,
        t: &mut Task,
        rec: Option<&CallRecord>,
    ) -> Result<(), DialerError> {
        if self.policy.request.owner_wait.is_none() {
            return Ok(());
        }
        let last = self.store.last_agent_of(&t.number)?;
        let direct = rec
            .filter(|r| r.lost_at == Some(LostAt::User))
            .and_then(|r| r.agent.as_deref());
        if let Some((owner, until)) =
            planner::owner_for(last.as_deref(), direct, t.first_missed_at, &self.policy)
        {
            tracing::info!(number = %t.number, owner = %owner, until = %until, "owned callback");
            t.routing.owner = Some(owner);
            t.routing.owner_until = Some(until);
        }
        Ok(())
    }

    /// Re-reads the database's list and rebuilds the set the guard checks.
    pub(super) fn dnc_changed(&mut self) -> Result<(), DialerError> {
        let mut set: HashSet<String> = self
            .store
            .dnc_list()?
            .into_iter()
            .map(|e| e.number)
            .collect();
        set.extend(self.dnc_file.numbers.iter().cloned());
        self.policy.request.dnc = Arc::new(set);
        Ok(())
    }

    /// Re-reads `callback.dnc_file` when it changed (its modification time or length); a file
    /// that cannot be read keeps the numbers last read (a list never shrinks by accident).
    pub(super) fn check_dnc_file(&mut self) -> Result<(), DialerError> {
        let Some(path) = self.dnc_path.clone() else {
            return Ok(());
        };
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                if !self.dnc_file.missing_logged {
                    tracing::warn!(path = %path.display(), error = %e, "cannot read callback.dnc_file; keeping the numbers read before");
                    self.dnc_file.missing_logged = true;
                }
                return Ok(());
            }
        };
        let stamp = (meta.modified().ok(), meta.len());
        if self.dnc_file.seen == Some(stamp) {
            return Ok(());
        }
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read callback.dnc_file; keeping the numbers read before");
                return Ok(());
            }
        };
        let (numbers, errors) = parse_dnc_file(&text, &self.plan);
        for e in &errors {
            tracing::warn!(path = %path.display(), "callback.dnc_file {e}");
        }
        tracing::info!(path = %path.display(), numbers = numbers.len(), "do-not-call file read");
        self.dnc_file.numbers = numbers;
        self.dnc_file.seen = Some(stamp);
        self.dnc_file.missing_logged = false;
        self.dnc_changed()
    }

    /// The exact answer at dial time: the list as the dialer holds it, plus the database now
    /// (another process may have added the number a moment ago).
    pub(super) fn refresh_dnc_for(&mut self, number: &str) -> Result<(), DialerError> {
        if !self.policy.request.dnc.contains(number) && self.store.dnc_contains(number)? {
            Arc::make_mut(&mut self.policy.request.dnc).insert(number.to_string());
        }
        Ok(())
    }
}
