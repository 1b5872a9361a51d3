//! Keeps one `[[asterisk]]` server connected, forever, and tells the consumer about every gap.
//!
//! Why reconnect outside the connection: a `Connection` is one TCP session and knows nothing of
//! retries; this loop owns the policy. Capped exponential backoff with jitter (so a PBX restart
//! does not see every perezvon reconnect in the same millisecond); a refused login waits the full
//! cap each time and says why at `error` level, so a wrong secret is neither a retry storm nor a
//! silent loop.
//!
//! The consumer sees a bounded channel of [`LinkEvent`]s: `Up`, then that session's messages, then
//! exactly one `Down`. Back-pressure, never a lossy broadcast: when the consumer is slow, reading
//! the socket waits (Asterisk buffers, then TCP does). After `Up`, the consumer should re-read live
//! state (`CoreShowChannels`) instead of guessing what happened in the gap.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::client::{AmiError, AmiHandle, Connection};
use super::message::Message;
use crate::config::AsteriskConfig;

/// How many actions may queue for the connection task.
const REQUEST_QUEUE: usize = 256;
/// First retry delay after a failure (before jitter).
const BACKOFF_BASE: Duration = Duration::from_millis(250);
/// A session that lasted this long resets the backoff; a shorter one counts as a failure, so a
/// server that accepts and drops at once is not hammered.
const STABLE: Duration = Duration::from_secs(10);
/// How long the final `Down` may wait for a consumer that is itself shutting down.
const LAST_WORDS: Duration = Duration::from_secs(1);

/// What the consumer of one server's stream receives.
#[derive(Debug, Clone)]
pub enum LinkEvent {
    /// Logged in; messages of this session follow.
    Up {
        server: Arc<str>,
        at: jiff::Timestamp,
    },
    /// The session ended (exactly once per `Up`). Anything may have happened in the gap.
    Down {
        server: Arc<str>,
        at: jiff::Timestamp,
        reason: String,
    },
    /// An event (or an unsolicited response) as decoded, with the time it was read.
    Message {
        server: Arc<str>,
        msg: Message,
        received_at: jiff::Timestamp,
    },
}

impl LinkEvent {
    pub fn server(&self) -> &str {
        match self {
            LinkEvent::Up { server, .. }
            | LinkEvent::Down { server, .. }
            | LinkEvent::Message { server, .. } => server,
        }
    }
}

/// Starts the supervisor for one server. The handle stays valid across reconnects; the task
/// ends when `shutdown` is cancelled or the consumer drops its receiver.
pub fn spawn(
    cfg: AsteriskConfig,
    events: mpsc::Sender<LinkEvent>,
    shutdown: CancellationToken,
) -> (AmiHandle, JoinHandle<()>) {
    spawn_with_tap(cfg, events, shutdown, None)
}

/// [`spawn`], plus a raw tap that receives every byte read from Asterisk exactly as read
/// (banner and login replies included), one chunk per read. `perezvon record` writes it to a
/// file. The tap is waited on like the event channel: a recording never has holes.
pub fn spawn_with_tap(
    cfg: AsteriskConfig,
    events: mpsc::Sender<LinkEvent>,
    shutdown: CancellationToken,
    tap: Option<mpsc::Sender<Bytes>>,
) -> (AmiHandle, JoinHandle<()>) {
    let handle = AmiHandle::new(Arc::from(cfg.name.as_str()), cfg.action_timeout);
    let task = tokio::spawn(supervise(cfg, handle.clone(), events, shutdown, tap));
    (handle, task)
}

/// Starts `cfg`'s supervisor on an existing `handle` and `events` channel once `previous` (the
/// same server's supervisor, being stopped) has ended: a configuration change (`SIGHUP`) is then
/// one more reconnect to the consumer, whose stream stays in order (the old session's `Down`,
/// then the new `Up`) and whose handle (the dialer's, the console's) stays valid.
pub fn respawn_after(
    previous: JoinHandle<()>,
    cfg: AsteriskConfig,
    handle: AmiHandle,
    events: mpsc::Sender<LinkEvent>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let _ = previous.await;
        supervise(cfg, handle, events, shutdown, None).await;
    })
}

async fn supervise(
    cfg: AsteriskConfig,
    handle: AmiHandle,
    events: mpsc::Sender<LinkEvent>,
    shutdown: CancellationToken,
    tap: Option<mpsc::Sender<Bytes>>,
) {
    let server: Arc<str> = Arc::from(cfg.name.as_str());
    let addr = format!("{}:{}", cfg.host, cfg.port);
    let mut failures: u32 = 0;
    loop {
        let opened = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = Connection::open(&cfg, tap.clone()) => r.map(|c| c.count_problems_in(handle.decode_problem_counter())),
        };
        let delay = match opened {
            Ok(conn) => {
                let (tx, rx) = mpsc::channel(REQUEST_QUEUE);
                handle.attach(tx);
                handle.set_last_error(None);
                let since = Instant::now();
                tracing::info!(server = %server, %addr, "AMI link up");
                let up = LinkEvent::Up {
                    server: server.clone(),
                    at: jiff::Timestamp::now(),
                };
                let delivered = tokio::select! {
                    _ = shutdown.cancelled() => false,
                    r = events.send(up) => r.is_ok(),
                };
                if !delivered {
                    // Up never reached the consumer, so no Down is owed.
                    handle.detach();
                    return;
                }
                let result = conn.run(rx, &events, &shutdown).await;
                handle.detach();
                let reason = match &result {
                    Ok(()) => "shutdown".to_string(),
                    Err(e) => e.to_string(),
                };
                if result.is_err() {
                    handle.set_last_error(Some(reason.clone()));
                }
                let down = LinkEvent::Down {
                    server: server.clone(),
                    at: jiff::Timestamp::now(),
                    reason: reason.clone(),
                };
                if shutdown.is_cancelled() || matches!(result, Ok(()) | Err(AmiError::ConsumerGone))
                {
                    let _ = tokio::time::timeout(LAST_WORDS, events.send(down)).await;
                    tracing::info!(server = %server, %reason, "AMI link closed");
                    return;
                }
                if events.send(down).await.is_err() {
                    return;
                }
                if since.elapsed() >= STABLE {
                    failures = 0;
                }
                failures = failures.saturating_add(1);
                let d = backoff(failures, cfg.reconnect_max, fastrand::f64());
                tracing::warn!(server = %server, %addr, %reason, retry_in = ?d, "AMI link down");
                d
            }
            Err(e @ AmiError::AuthFailed { .. }) => {
                handle.set_last_error(Some(e.to_string()));
                failures = failures.saturating_add(1);
                let d = jitter(cfg.reconnect_max, fastrand::f64());
                tracing::error!(server = %server, %addr, error = %e, retry_in = ?d, "AMI login refused; retrying slowly");
                d
            }
            Err(e) => {
                handle.set_last_error(Some(e.to_string()));
                failures = failures.saturating_add(1);
                let d = backoff(failures, cfg.reconnect_max, fastrand::f64());
                tracing::warn!(server = %server, %addr, error = %e, retry_in = ?d, "AMI connect failed");
                d
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// Delay before retry number `failures` (1-based): `BACKOFF_BASE * 2^(failures-1)`, capped at
/// `cap`, with jitter from `r` in `[0, 1)`.
fn backoff(failures: u32, cap: Duration, r: f64) -> Duration {
    let exp = failures.saturating_sub(1).min(30);
    let d = BACKOFF_BASE.saturating_mul(1u32 << exp).min(cap);
    jitter(d, r)
}

/// Somewhere in `[d/2, d)`: spreads many clients' retries without ever waiting longer than `d`.
fn jitter(d: Duration, r: f64) -> Duration {
    d.mul_f64(0.5 + 0.5 * r.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_then_caps_with_jitter_below_the_cap() {
        let cap = Duration::from_secs(60);
        assert_eq!(backoff(1, cap, 1.0), Duration::from_millis(250));
        assert_eq!(backoff(1, cap, 0.0), Duration::from_millis(125));
        assert_eq!(backoff(3, cap, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(9, cap, 1.0), Duration::from_secs(60));
        assert_eq!(backoff(u32::MAX, cap, 1.0), Duration::from_secs(60));
        for f in 1..40 {
            let d = backoff(f, cap, 0.7);
            assert!(d <= cap && d >= Duration::from_millis(125), "{f}: {d:?}");
        }
    }
}
