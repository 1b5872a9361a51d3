//! perezvon: notices every inbound call an Asterisk PBX failed to answer and calls the customer
//! back during working hours.
//!
//! # Layout
//! A pure core with thin I/O edges. Everything under `calls` and `callback::{hours, planner, guard, zones}` takes
//! time as an argument and never touches a socket, a clock or SQLite; the edges feed it and carry
//! out what it returns.
//!
//! - [`ami`]: the Asterisk Manager Interface. `message` (ordered headers over shared bytes),
//!   `codec` (framing + nom parser), `action` (validated requests), `client` (one connection:
//!   login, ActionID correlation, keepalive), `supervisor` (reconnects, LinkUp/LinkDown, the raw
//!   tap that `perezvon record` writes to a file).
//! - [`calls`]: AMI events -> one [`calls::record::CallRecord`] per call. `event` reads an AMI
//!   event in one pass, `tracker` is the per-call state machine, `rules` decides direction /
//!   missed / ignored / lost_at / callback outcome.
//!   Pure: no store, no tokio, time as an argument. Matching later calls to earlier misses (resolution) is SQL in
//!   `store::calls`, so it survives restarts.
//! - [`store`]: SQLite behind typed methods; append-only migrations keyed by `user_version`.
//!   `store::rollup` keeps the report's sums per quarter hour and per queue / agent / DID.
//! - [`callback`]: `hours` (is it open, when does it open), `planner` (which tasks are due now),
//!   `originate` (the Originate action and its outcome),
//!   `request` (press 1 / press 9 / dispositions from the dialplan's `UserEvent`s),
//!   `guard` (per-number budget, the customer's clock, expiry, queue reserve) and `zones` (the
//!   number -> time zone table).
//! - [`history`]: Asterisk's own records (cdr_csv `Master.csv`, `queue_log`) -> verdicts with
//!   the tracker's rules, for `perezvon import` and the gap backfill; the daemon's watermarks
//!   and gap reads (`gap`), retention (`retention`).
//! - [`report`]: the manager's report, one model (`Report::compute` is pure; `Report::load`
//!   reads the store's rollup, `Report::build_with` calls in memory; `tally` holds the counting
//!   rules), rendered by `text`, `csv`, `html` (one self-contained page with inline SVG) and
//!   `missed` (the missed-call list: table/JSON/CSV); `mail` mails it on a schedule.
//! - [`notify`]: webhook (HTTPS), e-mail, Bitrix24, amoCRM, Telegram and templated HTTP (SMS),
//!   delivered from a durable outbox.
//! - [`metrics`]: counters, gauges and histograms (prometheus-client). [`web`]: the HTTP edge
//!   (axum): `/metrics` and `/status`. [`status`]: the `STATUS=` line and the status report.
//! - [`console`]: the web console (`[web]`): login, sessions, CSRF, the Now / To call back /
//!   Missed calls / Report pages, server-sent events; served by the daemon on its own listener.
//! - [`daemon`]: the I/O shells and `perezvon run`: `ingest` (codec -> tracker(s) -> store, also
//!   for `replay`), `dialer` (the loop that feeds the planner, persists tasks and sends
//!   Originates), wiring, signals, sd_notify. [`demo`]: the embedded lab.
//! - [`config`]: raw TOML -> validated [`config::Config`], every problem at once.
//! - [`cli`]: the subcommands; `main.rs` only parses arguments and maps errors to exit codes.
//! - [`number`], [`glob`]: phone-number normalisation, number kinds and countries (libphonenumber
//!   metadata, for the callback guard), and channel-name patterns.

// `perezvon::` paths also inside the crate: the test support shared with the integration tests
// is written against the public API.
#[cfg(test)]
extern crate self as perezvon;

pub mod ami;
pub mod callback;
pub mod calls;
pub mod cli;
pub mod config;
pub mod console;
pub mod daemon;
pub mod demo;
pub mod glob;
pub mod history;
pub mod lang;
pub mod metrics;
pub mod notify;
pub mod number;
pub mod report;
pub mod status;
pub mod store;
pub mod web;

/// The helpers the integration tests share (`tests/support`), for the unit tests too.
#[cfg(test)]
#[path = "../tests/support/mod.rs"]
pub(crate) mod test_support;
