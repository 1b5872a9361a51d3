//! `perezvon record`: the raw AMI stream of one server, byte for byte, into a file.
//!
//! Why raw bytes and not decoded messages: a recording is a fixture and a bug report. It must show
//! exactly what Asterisk sent (banner and login reply included, odd line ends and all), so that
//! `replay` and the codec tests see the same bytes the daemon saw. The bytes come from the
//! client's raw tap, so login, keepalive and reconnects are the daemon's own; after a reconnect
//! the new session (its banner first) is appended.
//!
//! # Arrival times: `FILE.ami.times`
//! Asterisk stamps events only with `timestampevents = yes` (its default is `no`). Live,
//! perezvon then times calls by arrival; to replay such a recording the same way, `record`
//! keeps, beside `FILE.ami` (which stays the byte-exact stream), a text file `FILE.ami.times`
//! with one line per read from the socket:
//!
//! ```text
//! # perezvon arrival times v1: <byte offset in the recording> <arrival, microseconds since the Unix epoch>
//! 0 1795375060485624
//! 30 1795375060486001
//! ```
//!
//! A line says that the bytes from its offset up to the next line's offset arrived at that
//! time (the moment the recorder took the chunk from the client, microseconds after the read).
//! Offsets only grow; lines starting with `#` are comments. `perezvon replay FILE.ami` reads
//! `FILE.ami.times` by itself and gives a message the arrival time of the read that completed
//! it, as the daemon would have; an event's own `Timestamp` still wins.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{CmdResult, RecordArgs};
use crate::ami::{self, LinkEvent};
use crate::calls::record::Timestamp;
use crate::config::{AsteriskConfig, Config};

/// The first line of a `.times` file.
pub const TIMES_HEADER: &str = "# perezvon arrival times v1: <byte offset in the recording> <arrival, microseconds since the Unix epoch>\n";

/// Where the arrival times of the recording `ami` are kept: `FILE.ami` -> `FILE.ami.times`.
pub fn times_path(ami: &Path) -> PathBuf {
    let mut s = ami.as_os_str().to_owned();
    s.push(".times");
    PathBuf::from(s)
}

/// Reads a `.times` file (see the module docs) as the recording is read: memory stays constant.
pub struct ArrivalTimes<R> {
    lines: R,
    line: String,
    /// The chunk holding the offset asked last: (start offset, arrival µs).
    cur: Option<(u64, i64)>,
    /// The line after it, read ahead.
    next: Option<(u64, i64)>,
    started: bool,
    /// Lines that could not be read (not two numbers, or an offset going back): skipped.
    pub bad_lines: u64,
    /// The largest offset listed.
    pub last_offset: u64,
}

impl<R: BufRead> ArrivalTimes<R> {
    pub fn new(lines: R) -> ArrivalTimes<R> {
        ArrivalTimes {
            lines,
            line: String::new(),
            cur: None,
            next: None,
            started: false,
            bad_lines: 0,
            last_offset: 0,
        }
    }

    /// The next valid line, if any.
    fn read_line(&mut self) -> std::io::Result<Option<(u64, i64)>> {
        loop {
            self.line.clear();
            if self.lines.read_line(&mut self.line)? == 0 {
                return Ok(None);
            }
            let l = self.line.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let mut it = l.split_ascii_whitespace();
            let parsed = match (it.next(), it.next(), it.next()) {
                (Some(o), Some(t), None) => o.parse::<u64>().ok().zip(t.parse::<i64>().ok()),
                _ => None,
            };
            match parsed {
                Some((o, t)) if !self.started || o >= self.last_offset => {
                    self.started = true;
                    self.last_offset = o;
                    return Ok(Some((o, t)));
                }
                _ => self.bad_lines += 1,
            }
        }
    }

    /// When the byte at `offset` arrived: the time of the chunk holding it; `None` before the
    /// first listed offset. Offsets asked must not go back.
    pub fn at(&mut self, offset: u64) -> std::io::Result<Option<Timestamp>> {
        if self.cur.is_none() && self.next.is_none() {
            self.next = self.read_line()?;
        }
        while let Some(n) = self.next.filter(|n| n.0 <= offset) {
            self.cur = Some(n);
            self.next = self.read_line()?;
        }
        Ok(self
            .cur
            .and_then(|(_, us)| Timestamp::from_microsecond(us).ok()))
    }

    /// What is wrong with the file for a recording of `len` bytes, if anything.
    pub fn problem(&self, len: u64) -> Option<String> {
        if self.last_offset > len {
            return Some(format!(
                "lists byte {} but the recording has {len} bytes: it belongs to another recording",
                self.last_offset
            ));
        }
        (self.bad_lines > 0).then(|| format!("skipped {} unreadable line(s)", self.bad_lines))
    }
}

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
    let times_out = times_path(out);
    let times = match tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&times_out)
        .await
    {
        Ok(f) => f,
        Err(e) => {
            // Only the recording just created: nothing was written to it yet.
            let _ = tokio::fs::remove_file(out).await;
            return Err(format!(
                "cannot create {}: {e} (the arrival times of {}; choose a new file name)",
                times_out.display(),
                out.display()
            )
            .into());
        }
    };
    let mut times = tokio::io::BufWriter::with_capacity(64 * 1024, times);
    let times_err = |e: std::io::Error| format!("write {}: {e}", times_out.display());
    times
        .write_all(TIMES_HEADER.as_bytes())
        .await
        .map_err(times_err)?;
    let mut line = String::with_capacity(48);
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
                    let at = jiff::Timestamp::now().as_microsecond();
                    line.clear();
                    use std::fmt::Write as _;
                    let _ = writeln!(line, "{bytes} {at}");
                    times.write_all(line.as_bytes()).await.map_err(times_err)?;
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
                    times.flush().await.map_err(times_err)?;
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
    times.flush().await.map_err(times_err)?;
    times
        .get_ref()
        .sync_all()
        .await
        .map_err(|e| format!("sync {}: {e}", times_out.display()))?;
    tracing::info!(bytes, messages, out = %out.display(), times = %times_out.display(), "recording saved");
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
    fn arrival_times_by_offset_skipping_bad_lines() {
        let text = format!(
            "{TIMES_HEADER}0 1000000\n\n30 2000000\nnot a line\n30 2500000\n10 9\n100 3000000 x\n200 4000000\n"
        );
        let mut t = ArrivalTimes::new(text.as_bytes());
        let us = |t: &mut ArrivalTimes<&[u8]>, o| t.at(o).unwrap().map(|t| t.as_microsecond());
        assert_eq!(us(&mut t, 0), Some(1_000_000));
        assert_eq!(us(&mut t, 29), Some(1_000_000));
        // Two reads at one offset (an empty one is never tapped, but be lenient): the later.
        assert_eq!(us(&mut t, 30), Some(2_500_000));
        assert_eq!(us(&mut t, 199), Some(2_500_000));
        assert_eq!(us(&mut t, 5000), Some(4_000_000));
        assert_eq!(t.bad_lines, 3);
        assert_eq!(t.problem(10_000).unwrap(), "skipped 3 unreadable line(s)");
        assert!(t.problem(150).unwrap().contains("another recording"));
        let mut late = ArrivalTimes::new(&b"50 7\n"[..]);
        assert_eq!(late.at(10).unwrap(), None);
        assert_eq!(
            times_path(Path::new("/x/a.ami")),
            Path::new("/x/a.ami.times")
        );
    }

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
