//! `perezvon run`: load the configuration, start logging, run [`crate::daemon`] until SIGTERM or
//! SIGINT.

use std::io::Write as _;
use std::path::PathBuf;

use clap::Args;
use tokio_util::sync::CancellationToken;

use super::{CmdResult, DEFAULT_CONFIG};
use crate::config::{Config, EXIT_CONFIG};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Configuration file [default: /etc/perezvon/perezvon.toml].
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Database: a SQLite file or a postgres:// URL [default: storage.database or storage.url of the configuration].
    #[arg(long)]
    pub db: Option<PathBuf>,
}

pub fn run(args: &RunArgs) -> CmdResult {
    let path = args.config.clone().unwrap_or_else(|| DEFAULT_CONFIG.into());
    // Not `Config::load`: a daemon with no [[asterisk]] server would watch nothing.
    let cfg = match Config::load_for_daemon(&path) {
        Ok(c) => c,
        Err(e) => {
            let mut err = std::io::stderr().lock();
            writeln!(err, "{e}")?;
            return Ok(EXIT_CONFIG);
        }
    };
    init_logging(&cfg);
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    let db = args
        .db
        .clone()
        .unwrap_or_else(|| cfg.storage.database.clone());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let shutdown = CancellationToken::new();
        spawn_signal_handler(shutdown.clone())?;
        let opts = crate::daemon::RunOptions {
            reload: Some(spawn_reload_handler(path.clone())?),
            ..Default::default()
        };
        match crate::daemon::run_with(cfg, db, shutdown, opts).await {
            Ok(()) => Ok::<i32, Box<dyn std::error::Error + Send + Sync>>(0),
            // A database that can never work as it is: restarting will not help (78, not 1,
            // so systemd's RestartPreventExitStatus stops the loop).
            Err(crate::daemon::DaemonError::Store(e)) if e.is_permanent() => {
                let msg = crate::store::error_chain(&e);
                tracing::error!(error = %msg, "the database cannot be used");
                eprintln!("perezvon: the database cannot be used: {msg}");
                Ok(EXIT_CONFIG)
            }
            Err(e) => Err(e.into()),
        }
    })
}

/// Logs to stderr (journald adds the time), level from `[log] level`, `RUST_LOG` overriding;
/// `[log] format = "json"` writes one JSON object per line for log shippers.
fn init_logging(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cfg.log.level));
    // Colour only for a person at a terminal: journald and log files get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = if cfg.log.json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

/// `SIGHUP` (systemd's `ExecReload`): the configuration file is read again (with its
/// `servers_dir`) and handed to the daemon, which adds and removes `[[asterisk]]` servers
/// without touching the others; one that does not validate is logged and changes nothing.
fn spawn_reload_handler(
    path: PathBuf,
) -> std::io::Result<tokio::sync::mpsc::Receiver<Result<Config, crate::config::ConfigError>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = signal(SignalKind::hangup())?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                tracing::info!(config = %path.display(), "SIGHUP: reloading the configuration");
                let p = path.clone();
                let loaded = tokio::task::spawn_blocking(move || Config::load_for_daemon(&p)).await;
                if let Ok(c) = loaded {
                    if tx.send(c).await.is_err() {
                        break;
                    }
                }
            }
        });
    }
    #[cfg(not(unix))]
    {
        let _ = (path, &tx);
    }
    Ok(rx)
}

fn spawn_signal_handler(shutdown: CancellationToken) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                _ = int.recv() => tracing::info!("SIGINT: shutting down"),
            }
            shutdown.cancel();
        });
    }
    #[cfg(not(unix))]
    {
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            shutdown.cancel();
        });
    }
    Ok(())
}
