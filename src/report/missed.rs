//! The `perezvon missed` list: one line per missed inbound call, as a table, JSON lines or CSV.
//!
//! All three formats carry the same facts; JSON and CSV use the same field names so a script can
//! switch between them. Times are in the configured time zone (RFC 3339 with the offset in JSON
//! and CSV, so they stay unambiguous).

use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::Serialize;

use super::text::{escape_unsafe, json_escape_unsafe, table, Align};
use super::{human_secs, local_minute};
use crate::store::report::MissedCall;

/// One missed call as `--format json` prints it (one object per line) and CSV orders its columns.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MissedLine {
    pub started_at: String,
    pub ended_at: String,
    pub server: String,
    pub linkedid: String,
    /// The number in its display form ([`crate::number::display`]): `+79161234567`.
    pub number: String,
    /// The caller ID as Asterisk gave it (`89161234567`, `anonymous`).
    pub caller: Option<String>,
    pub caller_normalized: Option<String>,
    pub callee: Option<String>,
    pub agent: Option<String>,
    pub lost_at: Option<&'static str>,
    pub wait_secs: f64,
    pub resolved_by: Option<&'static str>,
    pub resolved_at: Option<String>,
    /// From the end of the missed call to the resolving call.
    pub reaction_secs: Option<f64>,
    pub callback_task_id: Option<i64>,
    pub callback_state: Option<String>,
    pub callback_attempts: Option<i64>,
    pub callback_last_outcome: Option<String>,
    pub callback_next_attempt_at: Option<String>,
}

/// CSV header, the field order of [`MissedLine`].
pub const CSV_HEADER: [&str; 19] = [
    "started_at",
    "ended_at",
    "server",
    "linkedid",
    "number",
    "caller",
    "caller_normalized",
    "callee",
    "agent",
    "lost_at",
    "wait_secs",
    "resolved_by",
    "resolved_at",
    "reaction_secs",
    "callback_task_id",
    "callback_state",
    "callback_attempts",
    "callback_last_outcome",
    "callback_next_attempt_at",
];

fn rfc3339(t: Timestamp, tz: &TimeZone) -> String {
    t.to_zoned(tz.clone())
        .strftime("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

/// Seconds rounded to milliseconds: the store keeps microseconds, nobody needs them here.
fn secs(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

impl MissedLine {
    pub fn new(m: &MissedCall, tz: &TimeZone) -> MissedLine {
        let c = &m.call;
        let reaction = c.resolved_at.map(|at| {
            secs(((at.as_microsecond() - c.ended_at.as_microsecond()) as f64 / 1e6).max(0.0))
        });
        MissedLine {
            started_at: rfc3339(c.started_at, tz),
            ended_at: rfc3339(c.ended_at, tz),
            server: c.server.clone(),
            linkedid: c.linkedid.clone(),
            number: crate::number::display(c.caller_normalized.as_deref(), c.caller.as_deref()),
            caller: c.caller.clone(),
            caller_normalized: c.caller_normalized.clone(),
            callee: c.callee.clone(),
            agent: c.agent.clone(),
            lost_at: c.lost_at.map(|l| l.as_str()),
            wait_secs: secs(c.wait_secs),
            resolved_by: c.resolved_by.map(|r| r.as_str()),
            resolved_at: c.resolved_at.map(|t| rfc3339(t, tz)),
            reaction_secs: reaction,
            callback_task_id: m.task.as_ref().map(|t| t.id),
            callback_state: m.task.as_ref().map(|t| t.state.clone()),
            callback_attempts: m.task.as_ref().map(|t| t.attempts),
            callback_last_outcome: m.task.as_ref().and_then(|t| t.last_outcome.clone()),
            callback_next_attempt_at: m
                .task
                .as_ref()
                .and_then(|t| t.next_attempt_at)
                .map(|t| rfc3339(t, tz)),
        }
    }

    fn csv_fields(&self) -> [String; 19] {
        let o = |s: &Option<String>| s.clone().unwrap_or_default();
        let n = |x: Option<f64>| x.map(|x| x.to_string()).unwrap_or_default();
        [
            self.started_at.clone(),
            self.ended_at.clone(),
            self.server.clone(),
            self.linkedid.clone(),
            self.number.clone(),
            o(&self.caller),
            o(&self.caller_normalized),
            o(&self.callee),
            o(&self.agent),
            self.lost_at.unwrap_or_default().to_string(),
            self.wait_secs.to_string(),
            self.resolved_by.unwrap_or_default().to_string(),
            o(&self.resolved_at),
            n(self.reaction_secs),
            self.callback_task_id
                .map(|x| x.to_string())
                .unwrap_or_default(),
            o(&self.callback_state),
            self.callback_attempts
                .map(|x| x.to_string())
                .unwrap_or_default(),
            o(&self.callback_last_outcome),
            o(&self.callback_next_attempt_at),
        ]
    }
}

/// How a CSV file is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsvDialect {
    /// RFC 4180: `,`, CRLF, no BOM (`--format csv`), for scripts and most spreadsheets.
    Rfc4180,
    /// What Excel with a Russian (or any `;`-list-separator) locale opens by double click:
    /// `;`, CRLF, a UTF-8 byte order mark so Cyrillic is not read as CP1251 (`--format
    /// csv-excel`).
    Excel,
}

/// The text of one cell before CSV quoting (which the `csv` crate does). A value comes from
/// outside (a caller name is whatever the caller's network sends), so:
///
/// * control characters (ESC, NUL, TAB, CR, LF, DEL, C1) and bidirectional overrides are
///   written as visible escapes (`\x1b`, `\u{202e}`, see [`escape_unsafe`]) and never reach a
///   terminal or a spreadsheet; a tab or CR in front of a formula is thereby shown, not trimmed;
/// * a cell starting with `=`, `+`, `-` or `@` is prefixed with `'`, because spreadsheets run
///   such a cell as a formula (`=HYPERLINK(...)`, `@SUM(...)`, `-1+cmd|...`).
///
/// Phone numbers start with `+` in E.164. In [`CsvDialect::Rfc4180`] a cell that is only a
/// sign and digits (`+79161234567`, `-5`, `+1.5`) is data, not a formula, and stays as it is:
/// scripts read the number unchanged. In [`CsvDialect::Excel`] it is prefixed too: Excel would
/// otherwise read `+79161234567` as the number 79161234567 and show `7,92E+10`; as
/// `'+79161234567` it stays a readable number with its `+`. `--format json` keeps every exact
/// value.
pub fn csv_cell(s: &str, dialect: CsvDialect) -> String {
    let s = escape_unsafe(s);
    let formula = s.starts_with(['=', '+', '-', '@']);
    let plain_number = || {
        let rest = &s[1..];
        let (int, frac) = rest.split_once('.').unwrap_or((rest, "0"));
        !int.is_empty()
            && int.bytes().all(|b| b.is_ascii_digit())
            && !frac.is_empty()
            && frac.bytes().all(|b| b.is_ascii_digit())
    };
    if formula && (dialect == CsvDialect::Excel || s.starts_with(['=', '@']) || !plain_number()) {
        format!("'{s}")
    } else {
        s.into_owned()
    }
}

/// The list as CSV with a header line and CRLF line ends (what spreadsheets expect), quoted per
/// RFC 4180 where needed; cells as [`csv_cell`] makes them.
pub fn csv(list: &[MissedCall], tz: &TimeZone, dialect: CsvDialect) -> Result<String, csv::Error> {
    let mut out = Vec::new();
    if dialect == CsvDialect::Excel {
        out.extend_from_slice("\u{feff}".as_bytes());
    }
    let mut w = csv::WriterBuilder::new()
        .delimiter(if dialect == CsvDialect::Excel {
            b';'
        } else {
            b','
        })
        .terminator(csv::Terminator::CRLF)
        .from_writer(out);
    w.write_record(CSV_HEADER)?;
    for m in list {
        let fields = MissedLine::new(m, tz).csv_fields();
        w.write_record(fields.iter().map(|f| csv_cell(f, dialect)))?;
    }
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    // Every cell was a &str: the bytes are UTF-8.
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The list as JSON lines: one object per missed call. Exact values; the characters a terminal
/// could act on are `\u` escapes ([`json_escape_unsafe`]).
pub fn json_lines(list: &[MissedCall], tz: &TimeZone) -> Result<String, serde_json::Error> {
    let mut out = String::new();
    for m in list {
        out.push_str(&json_escape_unsafe(serde_json::to_string(
            &MissedLine::new(m, tz),
        )?));
        out.push('\n');
    }
    Ok(out)
}

/// What the callback column of the table says about a task.
fn callback_cell(m: &MissedCall, tz: &TimeZone) -> String {
    let Some(t) = &m.task else {
        return "-".into();
    };
    let mut s = t.state.replace('_', " ");
    if t.attempts > 0 {
        s.push_str(&format!(
            ", {} attempt{}",
            t.attempts,
            if t.attempts == 1 { "" } else { "s" }
        ));
    }
    if let Some(o) = &t.last_outcome {
        s.push_str(&format!(" ({})", o.replace('_', " ")));
    }
    if matches!(t.state.as_str(), "pending" | "in_progress") {
        if let Some(next) = t.next_attempt_at {
            s.push_str(&format!(", next {}", local_minute(next, tz)));
        }
    }
    s
}

/// The list as an aligned table for a terminal: values escaped and cut to
/// [`super::text::MAX_CELL`] characters by [`table`].
pub fn table_text(list: &[MissedCall], tz: &TimeZone) -> String {
    use Align::{Left as L, Right as R};
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|m| {
            let c = &m.call;
            let resolved = match (c.resolved_by, c.resolved_at) {
                (Some(by), Some(at)) => format!(
                    "{} after {}",
                    by.as_str(),
                    human_secs((at.as_microsecond() - c.ended_at.as_microsecond()) as f64 / 1e6)
                ),
                (Some(by), None) => by.as_str().to_string(),
                (None, _) => "-".into(),
            };
            vec![
                local_minute(c.started_at, tz),
                crate::number::display(c.caller_normalized.as_deref(), c.caller.as_deref()),
                c.lost_at.map(|l| l.as_str()).unwrap_or("-").to_string(),
                human_secs(c.wait_secs),
                resolved,
                callback_cell(m, tz),
            ]
        })
        .collect();
    table(
        &[
            ("when", L),
            ("caller", L),
            ("lost at", L),
            ("waited", R),
            ("resolved", L),
            ("callback", L),
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::CsvDialect::{Excel, Rfc4180};
    use super::*;

    #[test]
    fn formulas_are_neutralised_and_numbers_kept_in_plain_csv() {
        for (cell, plain, excel) in [
            ("+79161234567", "+79161234567", "'+79161234567"),
            ("79161234567", "79161234567", "79161234567"),
            ("-5", "-5", "'-5"),
            ("+1.5", "+1.5", "'+1.5"),
            (
                "=HYPERLINK(\"http://evil/\",\"x\")",
                "'=HYPERLINK(\"http://evil/\",\"x\")",
                "'=HYPERLINK(\"http://evil/\",\"x\")",
            ),
            ("@SUM(A1)", "'@SUM(A1)", "'@SUM(A1)"),
            (
                "+1+cmd|' /C calc'!A0",
                "'+1+cmd|' /C calc'!A0",
                "'+1+cmd|' /C calc'!A0",
            ),
            ("-2+3", "'-2+3", "'-2+3"),
            ("+", "'+", "'+"),
            ("-", "'-", "'-"),
            ("+7 916", "'+7 916", "'+7 916"),
            ("", "", ""),
            ("Иванов", "Иванов", "Иванов"),
        ] {
            assert_eq!(csv_cell(cell, Rfc4180), plain, "{cell}");
            assert_eq!(csv_cell(cell, Excel), excel, "{cell}");
        }
    }

    #[test]
    fn control_and_bidi_characters_are_escapes() {
        assert_eq!(
            csv_cell("\u{1b}[2J\0\u{7f}\u{9b}31m", Rfc4180),
            "\\x1b[2J\\x00\\x7f\\x9b31m"
        );
        assert_eq!(csv_cell("abc\u{202e}fed", Rfc4180), "abc\\u{202e}fed");
        assert_eq!(
            csv_cell("\u{2066}x\u{2069}", Rfc4180),
            "\\u{2066}x\\u{2069}"
        );
        // A leading tab or CR is shown, not trimmed away in front of a formula.
        assert_eq!(csv_cell("\t=1+1", Excel), "\\x09=1+1");
        assert_eq!(csv_cell("\r=1+1", Excel), "\\x0d=1+1");
        assert_eq!(csv_cell("two\r\nlines", Rfc4180), "two\\x0d\\x0alines");
    }
}
