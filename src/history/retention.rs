//! `storage.keep_calls`: the daemon prunes old calls, closed tasks and their attempts at start
//! and then daily, on its own connection in a blocking task (see
//! [`crate::store::Store::prune_before`] for what goes and what never does).

use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::store::Store;

const EVERY: Duration = Duration::from_secs(86_400);

/// Prunes once now, then every day until `stop`.
pub async fn run(keep: Duration, db: PathBuf, stop: CancellationToken) {
    loop {
        let path = db.clone();
        let r = tokio::task::spawn_blocking(move || {
            let now = jiff::Timestamp::now();
            let keep = jiff::SignedDuration::try_from(keep).unwrap_or(jiff::SignedDuration::MAX);
            let before = now.checked_sub(keep).unwrap_or(jiff::Timestamp::MIN);
            Store::open(&path).and_then(|s| s.prune_before(before))
        })
        .await;
        match r {
            Ok(Ok(p)) if p.total() > 0 => tracing::info!(
                calls = p.calls,
                tasks = p.tasks,
                attempts = p.attempts,
                notifications = p.notifications,
                crm_links = p.crm_links,
                "retention: pruned data older than storage.keep_calls"
            ),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %crate::store::error_chain(&e), "retention failed; retrying tomorrow")
            }
            Err(e) => tracing::warn!(error = %e, "retention task failed"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(EVERY) => {}
        }
    }
}
