//! History from Asterisk's own records: `cdr_csv`'s `Master.csv` and app_queue's `queue_log`,
//! for `perezvon import` (the time before perezvon ran) and the gap backfill (the time the AMI
//! link was down or perezvon was not running).
//!
//! - [`cdr`], [`queue_log`]: the file formats, every bad line reported with its number.
//! - [`build`]: rows -> calls -> verdicts, with the tracker's own rules (pure).
//! - [`gap`]: the daemon's watermarks and gap reads; [`retention`]: `storage.keep_calls`.
//! - this file: reading the files for a time window (the I/O edge).
//!
//! What the records can and cannot tell is in docs/IMPORT.md.

pub mod build;
pub mod cdr;
pub mod gap;
pub mod queue_log;
pub mod retention;

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use jiff::{SignedDuration, Timestamp};

use crate::config::Config;
use build::HistoryCall;
use cdr::BadLine;

/// Rows this far before a window are read too: a call that began before the window and ended
/// in it has earlier rows (its IVR, a first queue).
const LEAD_IN: SignedDuration = SignedDuration::from_hours(4);
/// How far the PBX's clock may lag perezvon's at the start of a window.
const CLOCK_SLACK: SignedDuration = SignedDuration::from_secs(60);

/// What to read.
#[derive(Debug, Clone)]
pub struct Files<'a> {
    pub cdr: Option<&'a Path>,
    pub queue_log: Option<&'a Path>,
    pub timezone: &'a jiff::tz::TimeZone,
}

/// A file's bad line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProblem {
    pub file: PathBuf,
    pub bad: BadLine,
}

impl std::fmt::Display for FileProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.bad)
    }
}

/// The calls read, and the lines that could not be.
#[derive(Debug, Default)]
pub struct Loaded {
    pub calls: Vec<HistoryCall>,
    pub problems: Vec<FileProblem>,
    pub cdr_rows: usize,
    pub queue_visits: usize,
}

/// A file that cannot be read at all.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}")]
pub struct ReadError {
    pub path: String,
    #[source]
    pub source: std::io::Error,
}

fn open(p: &Path) -> Result<BufReader<File>, ReadError> {
    File::open(p)
        .map(BufReader::new)
        .map_err(|source| ReadError {
            path: p.display().to_string(),
            source,
        })
}

/// Reads the files and decides the calls that ended in `[from, to]` (all of them without a
/// window), for `server`.
pub fn load(
    server: &str,
    cfg: &Config,
    files: &Files<'_>,
    window: Option<(Timestamp, Timestamp)>,
) -> Result<Loaded, ReadError> {
    let lead_from = window.map(|(f, _)| f.checked_sub(LEAD_IN).unwrap_or(f));
    let inside = |start: Timestamp, end: Timestamp| match (window, lead_from) {
        (Some((_, to)), Some(lf)) => end >= lf && start < to,
        _ => true,
    };
    let mut out = Loaded::default();
    let mut rows = Vec::new();
    if let Some(p) = files.cdr {
        let (r, bad) =
            cdr::read(open(p)?, files.timezone, |r| inside(r.start, r.end)).map_err(|source| {
                ReadError {
                    path: p.display().to_string(),
                    source,
                }
            })?;
        out.problems.extend(bad.into_iter().map(|bad| FileProblem {
            file: p.to_path_buf(),
            bad,
        }));
        rows = r;
    }
    let mut visits = Vec::new();
    if let Some(p) = files.queue_log {
        let (v, bad) = queue_log::read(open(p)?, |t| inside(t, t)).map_err(|source| ReadError {
            path: p.display().to_string(),
            source,
        })?;
        out.problems.extend(bad.into_iter().map(|bad| FileProblem {
            file: p.to_path_buf(),
            bad,
        }));
        visits = v;
    }
    out.cdr_rows = rows.len();
    out.queue_visits = visits.len();
    out.calls = build::build(server, cfg, rows, visits);
    if let Some((from, to)) = window {
        // Calls that ended in the window. One still up at its end (the reconnect) is the live
        // tracker's: CoreShowChannels found it and AMI will tell how it ends. A minute of slack
        // before the window covers a PBX clock a little behind perezvon's; calls seen live
        // there are known already and stay as they are.
        let from = from.checked_sub(CLOCK_SLACK).unwrap_or(from);
        out.calls
            .retain(|c| c.record.ended_at >= from && c.record.ended_at <= to);
    }
    Ok(out)
}
