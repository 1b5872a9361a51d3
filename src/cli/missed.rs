//! `perezvon missed`: the missed inbound calls of a period, newest first.

use std::io::Write;

use super::report::{load_config, open_store, period_start};
use super::{CmdResult, MissedArgs};
use crate::report::missed;

pub fn run(args: &MissedArgs) -> CmdResult {
    let cfg = match load_config(args.config.as_deref(), args.db.as_deref()) {
        Ok(cfg) => cfg,
        Err(code) => return Ok(code),
    };
    let store = open_store(args.db.as_deref(), &cfg)?;
    let now = jiff::Timestamp::now();
    let from = period_start(now, args.since.into())?;
    let list = store.missed_calls(from, now, args.unresolved)?;
    super::history::note_history(&store, from, now);
    let tz = &cfg.hours.timezone;
    let text = match args.format.as_str() {
        "json" => missed::json_lines(&list, tz)?,
        "csv" => missed::csv(&list, tz, missed::CsvDialect::Rfc4180)?,
        "csv-excel" => missed::csv(&list, tz, missed::CsvDialect::Excel)?,
        _ if list.is_empty() => format!(
            "No {}missed calls in the last {}.\n",
            if args.unresolved { "unresolved " } else { "" },
            humantime::format_duration(args.since.into())
        ),
        _ => missed::table_text(&list, tz),
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(0)
}
