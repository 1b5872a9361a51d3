//! `perezvon record`: the raw AMI stream of one server, byte for byte, into a file.
//!
//! Why raw bytes and not decoded messages: a recording is a fixture and a bug report. It must show
//! exactly what Asterisk sent (banner and login reply included, odd line ends and all), so that
//! `replay` and the codec tests see the same bytes the daemon saw. The bytes come from the
//! client's raw tap, so login, keepalive and reconnects are the daemon's own; after a reconnect
//! the new session (its banner first) is appended.

use std::path::Path;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{CmdResult, RecordArgs};
use crate::ami::{self, LinkEvent};
use crate::config::{AsteriskConfig, Config};

pub fn run(args: &RecordArgs) -> CmdResult {
    let cfg = Config::load(&args.config)?;
    let server = pick_server(&cfg, args.server.as_deref())?;
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(record(server, &args.out))
}

fn pick_server(cfg: &Config, name: Option<&str>) -> Result<AsteriskConfig, String> {
    match name {
        Some(n) => cfg
            .asterisk
            .iter()
            .find(|a| a.name == n)
            .cloned()
            .ok_or_else(|| {
                let names: Vec<_> = cfg.asterisk.iter().map(|a| a.name.as_str()).collect();
                format!(
                    "no [[asterisk]] named {n:?} (configured: {})",
                    names.join(", ")
                )
            }),
        None => cfg
            .asterisk
            .first()
            .cloned()
            .ok_or_else(|| "no [[asterisk]] server configured".to_string()),
    }
}

async fn record(cfg: AsteriskConfig, out: &Path) -> CmdResult {
    // Never overwrite: the file may be a fixture or an earlier recording.
    let file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out)
        .await
        .map_err(|e| {
            format!(
                "cannot create {}: {e} (choose a new file name)",
                out.display()
            )
        })?;
    let mut file = tokio::io::BufWriter::with_capacity(256 * 1024, file);
    let (events_tx, mut events) = mpsc::channel::<LinkEvent>(1024);
    let (tap_tx, mut tap) = mpsc::channel::<Bytes>(256);
    let stop = CancellationToken::new();
    tracing::info!(server = %cfg.name, host = %cfg.host, port = cfg.port, out = %out.display(), "recording; Ctrl-C to stop");
    let (_handle, task) = ami::spawn_with_tap(cfg, events_tx, stop.clone(), Some(tap_tx));
    let signal = stop_signal();
    tokio::pin!(signal);
    let (mut bytes, mut messages) = (0u64, 0u64);
    let mut events_open = true;
    loop {
        tokio::select! {
            chunk = tap.recv() => match chunk {
                Some(c) => {
                    file.write_all(&c).await.map_err(|e| format!("write {}: {e}", out.display()))?;
                    bytes += c.len() as u64;
                }
                // The supervisor ended (after the stop signal): every byte read is written.
                None => break,
            },
            ev = events.recv(), if events_open => match ev {
                Some(LinkEvent::Message { .. }) => messages += 1,
                Some(LinkEvent::Up { server, .. }) => tracing::info!(%server, "link up, recording"),
                Some(LinkEvent::Down { server, reason, .. }) => {
                    tracing::warn!(%server, %reason, "link down; the gap will show in the recording");
                    // A Down is a good moment to make what we have durable.
                    file.flush().await.map_err(|e| format!("write {}: {e}", out.display()))?;
                }
                None => events_open = false,
            },
            r = &mut signal, if !stop.is_cancelled() => {
                if let Err(e) = r {
                    tracing::warn!(error = %e, "cannot wait for signals; stopping");
                }
                stop.cancel();
            }
        }
    }
    let _ = task.await;
    file.flush()
        .await
        .map_err(|e| format!("write {}: {e}", out.display()))?;
    file.get_ref()
        .sync_all()
        .await
        .map_err(|e| format!("sync {}: {e}", out.display()))?;
    tracing::info!(bytes, messages, out = %out.display(), "recording saved");
    Ok(0)
}

/// Ctrl-C or SIGTERM (systemd stop).
async fn stop_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_named_or_first_server() {
        let cfg = Config::embedded_default();
        let first = cfg.asterisk[0].name.clone();
        assert_eq!(pick_server(&cfg, None).unwrap().name, first);
        assert_eq!(pick_server(&cfg, Some(&first)).unwrap().name, first);
        let e = pick_server(&cfg, Some("nope")).unwrap_err();
        assert!(e.contains("nope") && e.contains(&first), "{e}");
    }
}
