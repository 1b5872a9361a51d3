//! `perezvon replay`: recorded AMI captures through the daemon's codec -> tracker -> store
//! pipeline, then one verdict per call, in the order the calls ended.
//!
//! Several files are one continuous stream, in order. Every file is read before anything is
//! processed, so a missing one fails the command without partial output. Malformed content inside
//! a stream is skipped by the codec, counted, and reported on stderr; the exit code stays 0.

use std::io::Write;
use std::path::PathBuf;

use crate::ami::codec::decode_all;
use crate::calls::pipeline::{event_time, Pipeline};
use crate::calls::record::{CallRecord, Timestamp};
use crate::config::Config;
use crate::store::{Store, StoreError};

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

pub fn run(args: &ReplayArgs) -> CmdResult {
    let cfg = match &args.config {
        Some(p) => Config::load(p).map_err(|e| ReplayError::ConfigFile {
            path: p.clone(),
            source: Box::new(e),
        })?,
        None => Config::embedded_default(),
    };
    let mut inputs = Vec::with_capacity(args.captures.len());
    for p in &args.captures {
        let bytes = std::fs::read(p).map_err(|source| ReplayError::Read {
            path: p.clone(),
            source,
        })?;
        inputs.push((p.clone(), bytes));
    }
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
    let mut pipeline = Pipeline::new(&cfg, store).report_duplicates(true);
    let mut order: Vec<(String, String)> = Vec::new();
    let mut now = Timestamp::UNIX_EPOCH;
    let mut problems = Vec::new();
    for (path, bytes) in &inputs {
        let (messages, stats) = decode_all(bytes);
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
        for msg in &messages {
            // Messages without a Timestamp (FullyBooted, responses) arrive "now": the stream's
            // latest time.
            let t = event_time(msg, now);
            if t > now {
                now = t;
            }
            for r in pipeline
                .feed(&server, msg, now)
                .map_err(ReplayError::Store)?
            {
                order.push((r.server, r.linkedid));
            }
        }
    }
    for r in pipeline.finish(now).map_err(ReplayError::Store)? {
        order.push((r.server, r.linkedid));
    }
    // Read back from the store: resolutions applied after a miss ended are included.
    let mut calls = Vec::with_capacity(order.len());
    for (s, l) in &order {
        if let Some(r) = pipeline
            .store()
            .get_call(s, l)
            .map_err(ReplayError::Store)?
        {
            calls.push(r);
        }
    }
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::new(stdout.lock());
    match args.format.as_str() {
        "table" => write_table(&mut w, &calls),
        _ => write_jsonl(&mut w, &calls),
    }
    .and_then(|_| w.flush())
    .map_err(ReplayError::Output)?;
    for p in &problems {
        eprintln!("perezvon: {p}");
    }
    Ok(0)
}

fn write_jsonl(w: &mut impl Write, calls: &[CallRecord]) -> std::io::Result<()> {
    for c in calls {
        let line = serde_json::to_string(c).map_err(std::io::Error::other)?;
        w.write_all(crate::report::text::json_escape_unsafe(line).as_bytes())?;
        w.write_all(b"\n")?;
    }
    Ok(())
}

fn write_table(w: &mut impl Write, calls: &[CallRecord]) -> std::io::Result<()> {
    use crate::report::text::{cell, MAX_CELL};
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
    )?;
    for c in calls {
        let ended = c.ended_at.strftime("%Y-%m-%d %H:%M:%S").to_string();
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
            "{:<19}  {:<8}  {:<14}  {:<12}  {:>6.1}  {:>6.1}  {:<11}  {:<8}  {:<14}  {:<8}  {}",
            ended,
            dir,
            cell(c.caller.as_deref()),
            cell(c.callee.as_deref()),
            c.wait_secs,
            c.talk_secs,
            cell(c.agent.as_deref()),
            status,
            c.lost_at.map_or("-", |l| l.as_str()),
            c.resolved_by.map_or("-", |r| r.as_str()),
            cell(Some(&callback))
        )?;
    }
    Ok(())
}
