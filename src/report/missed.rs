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

/// One CSV field, quoted per RFC 4180 when it needs to be. A caller name comes from outside, so
/// control characters (ESC, NUL, CR, LF, DEL, C1) and bidirectional overrides are written as
/// visible escapes (`\x1b`, `\u{202e}`, see [`escape_unsafe`]) and never reach a terminal or a
/// spreadsheet, and a leading `=` or `@` is prefixed with `'` because spreadsheets run such a
/// cell as a formula. `--format json` keeps the exact value.
pub fn csv_field(s: &str) -> String {
    let s = escape_unsafe(s);
    let s = if s.starts_with(['=', '@']) {
        format!("'{s}")
    } else {
        s.into_owned()
    };
    if s.contains([',', '"', '\r', '\n']) || s.starts_with(' ') || s.ends_with(' ') {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// The list as CSV with a header line, CRLF line ends (what spreadsheets expect).
pub fn csv(list: &[MissedCall], tz: &TimeZone) -> String {
    let mut out = CSV_HEADER.join(",");
    out.push_str("\r\n");
    for m in list {
        let fields = MissedLine::new(m, tz).csv_fields();
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
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
    use super::csv_field;

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        assert_eq!(csv_field("+79161234567"), "+79161234567");
        assert_eq!(csv_field(""), "");
        assert_eq!(csv_field("Ivanov, Ivan"), "\"Ivanov, Ivan\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\r\nlines"), "two\\x0d\\x0alines");
        assert_eq!(csv_field(" padded"), "\" padded\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(csv_field("@SUM(A1),x"), "\"'@SUM(A1),x\"");
    }

    #[test]
    fn csv_fields_show_control_and_bidi_characters_as_escapes() {
        assert_eq!(
            csv_field("\u{1b}[2J\0\u{7f}\u{9b}31m"),
            "\\x1b[2J\\x00\\x7f\\x9b31m"
        );
        assert_eq!(csv_field("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(csv_field("\u{2066}x\u{2069}"), "\\u{2066}x\\u{2069}");
        // A leading tab is shown, not trimmed away in front of a formula.
        assert_eq!(csv_field("\t=1+1"), "\\x09=1+1");
        assert_eq!(csv_field("Иванов"), "Иванов");
    }
}
