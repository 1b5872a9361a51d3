//! `perezvon replay`: recorded AMI captures through the daemon's codec -> tracker -> store
//! pipeline, then one verdict per call, in the order the calls ended.
//!
//! Several files (and `-`, standard input) are one continuous stream, in order. Every file is
//! opened before anything is processed, so a missing one fails the command without partial
//! output. Malformed content inside a stream is skipped by the codec, counted, and reported on
//! stderr; the exit code stays 0.
//!
//! # Streaming
//! Each input is decoded through a bounded buffer ([`ReadDecoder`]): memory does not grow with
//! the file. A verdict is printed once it can no longer change, read back from the store so
//! that resolutions applied after a miss ended are included: at once for a call that is not an
//! open miss, and for an open miss once no later call can resolve it any more (the stream is
//! past its end + `calls.resolve_within` and its customer is on no live call), else at the end.
//! Only the keys of the verdicts waiting to be printed are kept (a few dozen bytes each). The
//! output is flushed whenever replay is about to wait for input, so `-` fed by a slow pipe shows
//! each verdict as it becomes final.
//!
//! # Time
//! An event's `Timestamp` header is its time, as in the daemon. A message without one (a
//! response, `FullyBooted`, every event of a PBX with `timestampevents = no`) takes its arrival
//! time when `perezvon record` kept it in `FILE.ami.times` beside the capture (found by
//! itself; see [`super::record`]), else the stream's latest time. A stream with neither has no
//! clock at all: replay says so once on stderr, and prints the durations and times of the calls
//! it could not time as `null` (`-` in the table), never as 0 and the Unix epoch.

use std::collections::{HashSet, VecDeque};
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};

use crate::ami::codec::ReadDecoder;
use crate::ami::Kind;
use crate::calls::event::parse_ts;
use crate::calls::record::{CallRecord, Timestamp};
use crate::config::Config;
use crate::daemon::ingest::Pipeline;
use crate::store::{Store, StoreError};

use super::record::{times_path, ArrivalTimes};
use super::{CmdResult, ReplayArgs};

/// Why replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot read capture {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot load configuration {path}")]
    ConfigFile {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("storing verdicts failed")]
    Store(#[from] StoreError),
    #[error("cannot write the output")]
    Output(#[source] std::io::Error),
}

/// The name that stands for standard input.
const STDIN: &str = "-";

/// One capture, opened.
struct Input {
    path: PathBuf,
    reader: Box<dyn Read>,
    /// A regular file: reading never waits, so the batch need not be committed before a read.
    regular: bool,
    /// What `perezvon record` kept beside it, if anything.
    times: Option<(PathBuf, ArrivalTimes<Box<dyn BufRead>>)>,
}

/// Standard input redirected from a file (`< capture.ami`) never makes a read wait.
fn stdin_is_a_file() -> bool {
    use std::os::fd::AsFd;
    std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map(std::fs::File::from)
        .and_then(|f| f.metadata())
        .is_ok_and(|m| m.is_file())
}

fn open_inputs(paths: &[PathBuf]) -> Result<Vec<Input>, ReplayError> {
    let mut inputs = Vec::with_capacity(paths.len());
    let mut stdin_taken = false;
    for p in paths {
        if p.as_os_str() == STDIN {
            if std::mem::replace(&mut stdin_taken, true) {
                return Err(ReplayError::Read {
                    path: p.clone(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        "standard input (-) can be replayed only once",
                    ),
                });
            }
            inputs.push(Input {
                path: p.clone(),
                reader: Box::new(std::io::stdin()),
                regular: stdin_is_a_file(),
                times: None,
            });
            continue;
        }
        let read_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ReplayError::Read { path, source }
        };
        let file = std::fs::File::open(p).map_err(read_err(p))?;
        // A named pipe or a device can make a read wait: treated like standard input.
        let regular = file.metadata().map_err(read_err(p))?.is_file();
        let tp = times_path(p);
        let times = match std::fs::File::open(&tp) {
            Ok(f) => {
                let r: Box<dyn BufRead> = Box::new(std::io::BufReader::with_capacity(64 * 1024, f));
                Some((tp, ArrivalTimes::new(r)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(read_err(&tp)(e)),
        };
        inputs.push(Input {
            path: p.clone(),
            reader: Box::new(file),
            regular,
            times,
        });
    }
    Ok(inputs)
}

/// A verdict waiting to be printed (see the module docs).
struct Waiting {
    linkedid: Box<str>,
    ended_us: i64,
    /// The customer of an open miss: a later call may still resolve it.
    open_miss: Option<Box<str>>,
}

/// Prints verdicts in the order the calls ended, each once it is final.
struct Printer<W: Write> {
    out: W,
    table: bool,
    server: String,
    waiting: VecDeque<Waiting>,
    resolve_within_us: i64,
}

impl<W: Write> Printer<W> {
    fn push(&mut self, r: &CallRecord) {
        let open_miss = (r.wants_callback())
            .then(|| r.customer().filter(|n| !n.is_empty()).map(Box::from))
            .flatten();
        self.waiting.push_back(Waiting {
            linkedid: r.linkedid.as_str().into(),
            ended_us: r.ended_at.as_microsecond(),
            open_miss,
        });
    }

    /// Prints every waiting verdict that is final at stream time `now_us` (all when `now_us`
    /// is `None`: the input ended).
    fn drain(&mut self, pipeline: &Pipeline, now_us: Option<i64>) -> Result<(), ReplayError> {
        let mut live: Option<HashSet<String>> = None;
        while let Some(w) = self.waiting.front() {
            let done = match (&w.open_miss, now_us) {
                (None, _) | (_, None) => true,
                (Some(n), Some(now)) => {
                    now > w.ended_us.saturating_add(self.resolve_within_us)
                        && !live
                            .get_or_insert_with(|| pipeline.live_customers())
                            .contains(&**n)
                }
            };
            if !done {
                break;
            }
            let w = self.waiting.pop_front().expect("front exists");
            if let Some(r) = pipeline.store().get_call(&self.server, &w.linkedid)? {
                self.write(&r).map_err(ReplayError::Output)?;
            }
        }
        Ok(())
    }

    fn write(&mut self, r: &CallRecord) -> std::io::Result<()> {
        // The placeholder of a stream without any clock: no call really ends at the epoch.
        let untimed = r.ended_at == Timestamp::UNIX_EPOCH;
        if self.table {
            write_row(&mut self.out, r, untimed)
        } else {
            write_json(&mut self.out, r, untimed)
        }
    }
}

pub fn run(args: &ReplayArgs) -> CmdResult {
    let cfg = match &args.config {
        Some(p) => Config::load(p).map_err(|e| ReplayError::ConfigFile {
            path: p.clone(),
            source: Box::new(e),
        })?,
        None => Config::embedded_default(),
    };
    let inputs = open_inputs(&args.captures)?;
    let store = match &args.db {
        Some(p) => Store::open(p).map_err(ReplayError::Store)?,
        None => Store::open_in_memory().map_err(ReplayError::Store)?,
    };
    let server = cfg
        .asterisk
        .first()
        .map(|a| a.name.clone())
        .unwrap_or_else(|| "replay".to_string());
    // Into an existing database, calls already there are printed as stored.
    let pipeline = Pipeline::new(&cfg, store).report_duplicates(true);
    let stdout = std::io::stdout();
    let out = std::io::BufWriter::with_capacity(256 * 1024, stdout.lock());
    let mut printer = Printer {
        out,
        table: args.format == "table",
        server: server.clone(),
        waiting: VecDeque::new(),
        resolve_within_us: i64::try_from(cfg.calls.resolve_within.as_micros()).unwrap_or(i64::MAX),
    };
    if printer.table {
        write_header(&mut printer.out).map_err(ReplayError::Output)?;
    }
    let problems = replay(inputs, pipeline, &server, &mut printer)?;
    printer.out.flush().map_err(ReplayError::Output)?;
    for p in &problems {
        eprintln!("perezvon: {p}");
    }
    Ok(0)
}

/// Verdicts stored in one transaction before replay commits and prints them.
const BATCH: usize = 1000;

/// Runs every input through the pipeline, printing verdicts as they become final. Returns the
/// problems to report once the output is complete.
///
/// Verdicts are stored in batches ([`Store::begin_batch`]): one commit per [`BATCH`] verdicts,
/// before a read that may wait (standard input, a pipe) and at the end. A verdict is printed
/// only once its batch committed, so whatever replay printed is in the database even if it is
/// killed; whatever it stored before an error is committed before the error is returned.
fn replay<W: Write>(
    inputs: Vec<Input>,
    mut pipeline: Pipeline,
    server: &str,
    printer: &mut Printer<W>,
) -> Result<Vec<String>, ReplayError> {
    pipeline.store().begin_batch()?;
    let mut batch = Batch::default();
    let run = replay_batched(inputs, &mut pipeline, server, printer, &mut batch);
    let committed = pipeline.store().commit_batch();
    let problems = run?;
    committed?;
    printer.drain(&pipeline, None)?;
    Ok(problems)
}

/// The open batch: how many verdicts it holds, and the stream time of the last check for
/// misses that became final.
#[derive(Default)]
struct Batch {
    verdicts: usize,
    last_drain: i64,
    /// The stream time of the latest message.
    last_us: i64,
}

impl Batch {
    /// Commits the open batch and prints what became final by stream time `us`.
    fn commit<W: Write>(
        &mut self,
        pipeline: &Pipeline,
        printer: &mut Printer<W>,
        us: i64,
    ) -> Result<(), ReplayError> {
        let store = pipeline.store();
        store.commit_batch()?;
        store.begin_batch()?;
        self.verdicts = 0;
        self.last_drain = us;
        printer.drain(pipeline, Some(us))
    }
}

fn replay_batched<W: Write>(
    inputs: Vec<Input>,
    pipeline: &mut Pipeline,
    server: &str,
    printer: &mut Printer<W>,
    batch: &mut Batch,
) -> Result<Vec<String>, ReplayError> {
    let mut now = Timestamp::UNIX_EPOCH;
    let mut problems = Vec::new();
    let mut warned_untimed = false;
    for Input {
        path,
        reader,
        regular,
        mut times,
    } in inputs
    {
        let mut dec = ReadDecoder::new(reader);
        loop {
            let next = match dec.next_buffered() {
                Some(m) => Ok(Some(m)),
                None => {
                    // About to wait for input (a pipe may be slow): what is final goes out.
                    if !regular {
                        if batch.verdicts > 0 {
                            batch.commit(pipeline, printer, batch.last_us)?;
                        }
                        printer.out.flush().map_err(ReplayError::Output)?;
                    }
                    dec.next_message()
                }
            };
            let (msg, end) = match next {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(source) => return Err(ReplayError::Read { path, source }),
            };
            // The arrival of the read that completed the message: when the daemon could have
            // decoded it.
            let arrival = match &mut times {
                Some((tp, t)) => {
                    t.at(end.saturating_sub(1))
                        .map_err(|source| ReplayError::Read {
                            path: tp.clone(),
                            source,
                        })?
                }
                None => None,
            };
            // The message's own time, looked up once.
            let stamp = msg
                .get(b"Timestamp")
                .and_then(parse_ts)
                .and_then(|us| Timestamp::from_microsecond(us).ok());
            if !warned_untimed
                && arrival.is_none()
                && stamp.is_none()
                && msg.kind() == Kind::Event
                // Sent at login, before any call: even a stamping Asterisk leaves it bare.
                && msg.event() != Some(b"FullyBooted")
            {
                warned_untimed = true;
                let beside = if path.as_os_str() == STDIN {
                    "standard input has none".to_string()
                } else {
                    format!("no {}", times_path(&path).display())
                };
                eprintln!(
                    "perezvon: {}: the events carry no Timestamp (Asterisk timestampevents = no) and no \
                     arrival times were recorded beside it ({beside}): wait and talk times are unknown \
                     (printed as null); no verdict is judged from them (a call nobody took is missed, \
                     never accidental; one a person took is unknown unless calls.min_talk is 0). \
                     Record with `perezvon record` to keep arrival times, or set timestampevents = yes.",
                    path.display(),
                );
            }
            let t = stamp.or(arrival).unwrap_or(now);
            if t > now {
                now = t;
            }
            let ended = pipeline
                .feed_at(server, &msg, t, now)
                .map_err(ReplayError::Store)?;
            for r in &ended {
                printer.push(r);
            }
            batch.verdicts += ended.len();
            // This message's time, not the latest: after an older capture follows a newer one,
            // its misses are judged final by its own clock.
            let us = t.as_microsecond();
            batch.last_us = us;
            if batch.verdicts >= BATCH {
                batch.commit(pipeline, printer, us)?;
            } else if batch.verdicts == 0
                && (!ended.is_empty() || us.abs_diff(batch.last_drain) >= 1_000_000)
            {
                batch.last_drain = us;
                printer.drain(pipeline, Some(us))?;
            }
        }
        let stats = dec.stats();
        if stats.problems() > 0 {
            problems.push(format!(
                "{}: skipped {} malformed line(s), {} empty, {} oversized, {} truncated message(s)",
                path.display(),
                stats.malformed_lines,
                stats.empty_messages,
                stats.oversized,
                stats.truncated
            ));
        }
        if let Some((tp, t)) = &times {
            if let Some(p) = t.problem(stats.bytes) {
                problems.push(format!("{}: {p}", tp.display()));
            }
        }
    }
    for r in &pipeline.finish(now).map_err(ReplayError::Store)? {
        printer.push(r);
    }
    Ok(problems)
}

fn write_json(w: &mut impl Write, c: &CallRecord, untimed: bool) -> std::io::Result<()> {
    let mut line = serde_json::to_string(c).map_err(std::io::Error::other)?;
    if untimed {
        // No clock: the durations and times are unknown, not 0 at the epoch.
        for k in [
            "started_at",
            "ended_at",
            "answered_at",
            "wait_secs",
            "talk_secs",
        ] {
            line = null_field(&line, k);
        }
    }
    w.write_all(crate::report::text::json_escape_unsafe(line).as_bytes())?;
    w.write_all(b"\n")
}

/// `json` (a flat object as serde_json writes it, field order kept) with the value of `key`
/// replaced by `null`. Only numbers, `null` and timestamps (no `,` or `}` in them) are
/// replaced; a `"` inside a string value is always escaped, so `,"key":` is never inside one.
fn null_field(json: &str, key: &str) -> String {
    let pat = format!("\"{key}\":");
    let found = json
        .match_indices(&pat)
        .find(|(i, _)| matches!(json.as_bytes().get(i.wrapping_sub(1)), Some(b'{' | b',')));
    let Some((i, _)) = found else {
        return json.to_string();
    };
    let start = i + pat.len();
    let end = json[start..]
        .find([',', '}'])
        .map_or(json.len(), |e| start + e);
    format!("{}null{}", &json[..start], &json[end..])
}

fn write_header(w: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        w,
        "{:<19}  {:<8}  {:<14}  {:<12}  {:>6}  {:>6}  {:<11}  {:<8}  {:<14}  {:<8}  callback",
        "ended (UTC)",
        "dir",
        "caller",
        "callee",
        "wait",
        "talk",
        "agent",
        "status",
        "lost_at",
        "resolved",
    )
}

fn write_row(w: &mut impl Write, c: &CallRecord, untimed: bool) -> std::io::Result<()> {
    use crate::report::text::{cell, MAX_CELL};
    let (ended, wait, talk) = if untimed {
        ("-".to_string(), "-".to_string(), "-".to_string())
    } else {
        (
            c.ended_at.strftime("%Y-%m-%d %H:%M:%S").to_string(),
            format!("{:.1}", c.wait_secs),
            format!("{:.1}", c.talk_secs),
        )
    };
    let dir = serde_json::to_value(c.direction)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let status = serde_json::to_value(c.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let callback = match (&c.callback_id, c.callback_outcome) {
        (Some(id), Some(o)) => format!("{id} {}", o.as_str()),
        (Some(id), None) => id.clone(),
        _ => String::new(),
    };
    // Values from the capture: escaped and cut like every table's cells.
    let cell = |s: Option<&str>| cell(s.unwrap_or("-"), MAX_CELL);
    writeln!(
        w,
        "{:<19}  {:<8}  {:<14}  {:<12}  {:>6}  {:>6}  {:<11}  {:<8}  {:<14}  {:<8}  {}",
        ended,
        dir,
        cell(c.caller.as_deref()),
        cell(c.callee.as_deref()),
        wait,
        talk,
        cell(c.agent.as_deref()),
        status,
        c.lost_at.map_or("-", |l| l.as_str()),
        c.resolved_by.map_or("-", |r| r.as_str()),
        cell(Some(&callback))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_field_keeps_order_and_other_fields() {
        let j = r#"{"caller":"a\",\"wait_secs\":1","wait_secs":0.0,"ended_at":"1970-01-01T00:00:00Z","talk_secs":0.0}"#;
        let j = null_field(j, "wait_secs");
        let j = null_field(&j, "ended_at");
        let j = null_field(&j, "talk_secs");
        assert_eq!(
            j,
            r#"{"caller":"a\",\"wait_secs\":1","wait_secs":null,"ended_at":null,"talk_secs":null}"#
        );
        assert_eq!(null_field(r#"{"x":1}"#, "y"), r#"{"x":1}"#);
    }
}
