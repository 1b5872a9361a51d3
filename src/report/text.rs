//! Plain-text rendering: aligned tables for a terminal, and the report as text sections.

use std::fmt::Write;

use super::{human_secs, local_minute, percent, Report};

/// Column alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// At most this many characters in a table cell: a longer value (a hostile 100 KB caller ID)
/// is cut and ends in `…`, so a table's width stays bounded.
pub const MAX_CELL: usize = 64;

/// Whether `c` must not reach a terminal as it is: the C0 controls (ESC, NUL, CR, LF, TAB...),
/// DEL, the C1 controls (U+0080-U+009F, CSI among them), the bidirectional formatting
/// characters that make a terminal show text in another order than it is (U+202A-U+202E,
/// U+2066-U+2069 and the marks U+200E, U+200F, U+061C), and the line and paragraph separators.
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{061C}'
                | '\u{2028}'
                | '\u{2029}'
        )
}

/// Appends `c`, or its visible escape when it is unsafe: `\x1b` below U+0100 (C0, DEL, C1),
/// `\u{202e}` above.
fn push_safe(c: char, out: &mut String) {
    if !is_unsafe_char(c) {
        out.push(c);
    } else if (c as u32) < 0x100 {
        let _ = write!(out, "\\x{:02x}", c as u32);
    } else {
        let _ = write!(out, "\\u{{{:04x}}}", c as u32);
    }
}

/// `s` with every [unsafe](is_unsafe_char) character written as a visible escape (`\x1b`,
/// `\u{202e}`): what `missed --format csv` and every table print of a value from outside.
pub fn escape_unsafe(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(is_unsafe_char) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        push_safe(c, &mut out);
    }
    std::borrow::Cow::Owned(out)
}

/// `s` escaped as [`escape_unsafe`] does and cut to at most `max` characters, the last of them
/// `…` when cut (an escape is never cut in half). Reads no more of `s` than it needs.
pub fn cell(s: &str, max: usize) -> String {
    let mut out = String::new();
    let mut width = 0;
    // Length of `out` when it last left room for the `…`.
    let mut fits = 0;
    let mut unit = String::new();
    for c in s.chars() {
        unit.clear();
        push_safe(c, &mut unit);
        let w = unit.chars().count();
        if width + w > max {
            out.truncate(fits);
            out.push('…');
            return out;
        }
        out.push_str(&unit);
        width += w;
        if width < max {
            fits = out.len();
        }
    }
    out
}

/// JSON text (as serde_json writes it) with DEL, the C1 controls, the bidirectional formatting
/// characters and the line separators written as `\uXXXX` too (serde_json escapes only C0):
/// the same value for a JSON reader, nothing a terminal acts on. Those characters only occur
/// inside JSON strings, so the result is valid JSON.
pub fn json_escape_unsafe(json: String) -> String {
    if !json.chars().any(is_unsafe_char) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 8);
    for c in json.chars() {
        if is_unsafe_char(c) && !matches!(c, '\n' | '\r' | '\t') {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// A table of text cells, aligned on display width (characters, so Cyrillic names line up).
/// Every cell goes through [`cell`]: no terminal escape gets through, and no cell is wider than
/// [`MAX_CELL`].
pub fn table(header: &[(&str, Align)], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| cell(c, MAX_CELL)).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|(h, _)| h.chars().count()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate().take(widths.len()) {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: Vec<&str>| {
        let mut l = String::new();
        for (i, (c, (_, align))) in cells.iter().zip(header).enumerate() {
            if i > 0 {
                l.push_str("  ");
            }
            let pad = widths[i].saturating_sub(c.chars().count());
            match align {
                Align::Left => {
                    l.push_str(c);
                    l.push_str(&" ".repeat(pad));
                }
                Align::Right => {
                    l.push_str(&" ".repeat(pad));
                    l.push_str(c);
                }
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut out, header.iter().map(|(h, _)| *h).collect());
    line(
        &mut out,
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect(),
    );
    for r in &rows {
        line(&mut out, r.iter().map(String::as_str).collect());
    }
    out
}

fn secs_or_dash(s: Option<f64>) -> String {
    s.map(human_secs).unwrap_or_else(|| "-".into())
}

fn figures_header(first: &str) -> Vec<(&str, Align)> {
    use Align::{Left as L, Right as R};
    vec![
        (first, L),
        ("inbound", R),
        ("answered", R),
        ("missed", R),
        ("missed %", R),
        ("SL", R),
        ("ASA", R),
        ("abandoned %", R),
        ("withheld missed", R),
        ("accidental", R),
    ]
}

fn figures_row(name: &str, f: &super::Split) -> Vec<String> {
    vec![
        name.to_string(),
        f.inbound.to_string(),
        f.answered.to_string(),
        f.missed.to_string(),
        percent(f.missed_share, f.inbound),
        percent(f.service_level, f.inbound),
        secs_or_dash(f.asa_secs),
        percent(f.abandon_rate, f.inbound),
        f.withheld_missed.to_string(),
        f.ignored.to_string(),
    ]
}

/// The report as text sections, for a terminal or an e-mail.
pub fn render(r: &Report, tz: &jiff::tz::TimeZone) -> String {
    use Align::{Left as L, Right as R};
    let mut o = String::new();
    let i = &r.inbound;
    let _ = writeln!(
        o,
        "Calls report {} - {} ({})\n",
        local_minute(r.from, tz),
        local_minute(r.to, tz),
        r.timezone
    );
    let summary = vec![
        vec!["Inbound calls".into(), i.total.to_string(), String::new()],
        vec![
            "Answered".into(),
            i.answered.to_string(),
            percent(1.0 - i.missed_share, i.total),
        ],
        vec![
            "Missed".into(),
            i.missed.to_string(),
            percent(i.missed_share, i.total),
        ],
        vec![
            "  resolved".into(),
            i.resolved.to_string(),
            percent(i.resolved_share, i.missed),
        ],
        vec![
            "  still unresolved".into(),
            (i.missed - i.resolved).to_string(),
            percent(1.0 - i.resolved_share, i.missed),
        ],
        vec![
            "Accidental (not counted)".into(),
            i.ignored.to_string(),
            String::new(),
        ],
        vec![
            "Unknown (not counted)".into(),
            i.unknown.to_string(),
            String::new(),
        ],
        vec![
            "Withheld numbers (in the total)".into(),
            i.withheld.to_string(),
            String::new(),
        ],
        vec![
            "  missed, cannot be called back".into(),
            i.withheld_missed.to_string(),
            percent(super::ratio(i.withheld_missed, i.missed), i.missed),
        ],
        vec![
            format!(
                "Service level (answered within {})",
                human_secs(r.service_level.threshold_secs)
            ),
            r.service_level.answered_within.to_string(),
            percent(r.service_level.share, r.service_level.offered),
        ],
        vec![
            "Average speed of answer".into(),
            secs_or_dash(r.service_level.asa_secs),
            String::new(),
        ],
        vec![
            "Abandoned (the caller hung up)".into(),
            r.service_level.abandoned.to_string(),
            percent(r.service_level.abandon_rate, i.total),
        ],
        vec![
            "Average wait of a missed caller".into(),
            secs_or_dash(r.wait_avg_secs),
            String::new(),
        ],
        vec![
            "Average time to resolve a miss".into(),
            secs_or_dash(r.reaction_avg_secs),
            String::new(),
        ],
    ];
    o.push_str(&table(
        &[("Summary", L), ("calls", R), ("share", R)],
        &summary,
    ));

    let mut rows = vec![
        figures_row("Mon-Fri", &r.weekdays),
        figures_row("Sat-Sun", &r.weekends),
        figures_row("open hours", &r.open_hours),
        figures_row("after hours", &r.after_hours),
    ];
    if let Some(p) = &r.previous {
        rows.push(figures_row("previous period", &p.figures));
    }
    o.push('\n');
    o.push_str(&table(&figures_header("calls"), &rows));
    if let Some(p) = &r.previous {
        let ch = &p.change;
        let _ = writeln!(
            o,
            "Against {} - {}: inbound {:+}, missed {:+}, missed share {:+.1} pp, service level {:+.1} pp, abandon rate {:+.1} pp, resolved {:+.1} pp",
            local_minute(p.from, tz),
            local_minute(p.to, tz),
            ch.inbound,
            ch.missed,
            ch.missed_share * 100.0,
            ch.service_level * 100.0,
            ch.abandon_rate * 100.0,
            ch.resolved_share * 100.0,
        );
    }
    for (title, rows) in [
        ("queue", &r.by_queue),
        ("agent", &r.by_agent),
        ("DID", &r.by_did),
    ] {
        let rows: Vec<Vec<String>> = rows
            .iter()
            .map(|b| figures_row(b.name.as_deref().unwrap_or("(none)"), &b.figures))
            .collect();
        o.push('\n');
        o.push_str(&table(&figures_header(title), &rows));
    }

    let buckets = |title: &str, b: &[super::Bucket], of: u64| {
        let rows: Vec<Vec<String>> = b
            .iter()
            .map(|b| {
                vec![
                    b.label.clone(),
                    b.count.to_string(),
                    percent(super::ratio(b.count, of), of),
                ]
            })
            .collect();
        format!(
            "\n{}",
            table(&[(title, L), ("missed", R), ("share", R)], &rows)
        )
    };
    o.push_str(&buckets("Waited before giving up", &r.waits, i.missed));
    let rows: Vec<Vec<String>> = r
        .answered_waits
        .iter()
        .map(|b| {
            vec![
                b.label.clone(),
                b.count.to_string(),
                percent(super::ratio(b.count, i.answered), i.answered),
            ]
        })
        .collect();
    o.push('\n');
    o.push_str(&table(
        &[("Waited for an answer", L), ("answered", R), ("share", R)],
        &rows,
    ));
    o.push_str(&buckets("Lost at", &r.lost_at, i.missed));
    o.push_str(&buckets("Resolved by", &r.resolved_by, i.missed));

    let rows: Vec<Vec<String>> = r
        .reaction
        .iter()
        .map(|x| {
            vec![
                x.label.clone(),
                x.caller.to_string(),
                x.agent.to_string(),
                x.callback.to_string(),
                x.total.to_string(),
            ]
        })
        .collect();
    o.push('\n');
    o.push_str(&table(
        &[
            ("Resolved within", L),
            ("caller", R),
            ("agent", R),
            ("callback", R),
            ("total", R),
        ],
        &rows,
    ));

    let c = &r.callbacks;
    let _ = writeln!(
        o,
        "\nCallbacks: {} attempts, {} connected ({}); tasks done {}, given up {} ({} reached)",
        c.attempts,
        c.connected,
        percent(c.success_rate, c.attempts),
        c.tasks_done,
        c.tasks_given_up,
        percent(c.task_success_rate, c.tasks_done + c.tasks_given_up)
    );
    let mut rows: Vec<Vec<String>> = c
        .attempts_by_outcome
        .iter()
        .map(|b| vec![b.label.clone(), b.count.to_string()])
        .collect();
    if c.attempts_unknown > 0 {
        rows.push(vec!["unknown".into(), c.attempts_unknown.to_string()]);
    }
    if c.attempts_pending > 0 {
        rows.push(vec![
            "(no outcome yet)".into(),
            c.attempts_pending.to_string(),
        ]);
    }
    o.push_str(&table(&[("attempt outcome", L), ("attempts", R)], &rows));
    let rows: Vec<Vec<String>> = c
        .tasks_by_state
        .iter()
        .map(|b| vec![b.label.clone(), b.count.to_string()])
        .collect();
    o.push('\n');
    o.push_str(&table(&[("task state", L), ("tasks", R)], &rows));
    let rows: Vec<Vec<String>> = c
        .reached_after
        .iter()
        .map(|b| vec![b.label.clone(), b.count.to_string()])
        .collect();
    o.push('\n');
    o.push_str(&table(
        &[("Reached within (from the miss)", L), ("tasks", R)],
        &rows,
    ));
    let _ = writeln!(
        o,
        "Average time from the miss to reaching the customer: {}",
        secs_or_dash(c.reached_after_avg_secs)
    );

    let slots = |title: &str, s: &[super::Slot]| {
        let rows: Vec<Vec<String>> = s
            .iter()
            .map(|x| {
                vec![
                    x.label.clone(),
                    x.inbound.to_string(),
                    x.missed.to_string(),
                    percent(super::ratio(x.missed, x.inbound), x.inbound),
                ]
            })
            .collect();
        format!(
            "\n{}",
            table(
                &[
                    (title, L),
                    ("inbound", R),
                    ("missed", R),
                    ("missed share", R)
                ],
                &rows
            )
        )
    };
    o.push_str(&slots("Hour", &r.by_hour));
    o.push_str(&slots("Weekday", &r.by_weekday));
    if !r.by_day.is_empty() {
        o.push_str(&slots("Day", &r.by_day));
    }

    if !r.repeat_callers.is_empty() {
        let rows: Vec<Vec<String>> = r
            .repeat_callers
            .iter()
            .map(|c| {
                vec![
                    c.caller
                        .clone()
                        .unwrap_or_else(|| c.caller_normalized.clone()),
                    c.misses.to_string(),
                    c.unresolved.to_string(),
                    c.last.clone(),
                ]
            })
            .collect();
        o.push('\n');
        o.push_str(&table(
            &[
                ("Missed more than once", L),
                ("misses", R),
                ("unresolved", R),
                ("last miss", L),
            ],
            &rows,
        ));
    }

    if !r.recent_unresolved.is_empty() {
        let rows: Vec<Vec<String>> = r
            .recent_unresolved
            .iter()
            .map(|m| {
                vec![
                    m.when.clone(),
                    m.caller.clone().unwrap_or_else(|| "(withheld)".into()),
                    m.lost_at.map(|l| l.as_str()).unwrap_or("-").to_string(),
                    human_secs(m.wait_secs),
                ]
            })
            .collect();
        o.push('\n');
        o.push_str(&table(
            &[
                ("Unresolved, newest first", L),
                ("caller", L),
                ("lost at", L),
                ("waited", R),
            ],
            &rows,
        ));
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_escaped_and_cut() {
        assert_eq!(cell("+79161234567", 64), "+79161234567");
        assert_eq!(cell("\u{1b}[31mred\u{7f}", 64), "\\x1b[31mred\\x7f");
        assert_eq!(cell("a\u{202e}b\u{85}", 64), "a\\u{202e}b\\x85");
        assert_eq!(cell(&"x".repeat(10), 10), "x".repeat(10));
        assert_eq!(cell(&"x".repeat(11), 10), format!("{}…", "x".repeat(9)));
        assert_eq!(cell(&"ж".repeat(100_000), 64).chars().count(), 64);
        // An escape is not cut in half: it goes whole or not at all.
        assert_eq!(cell("abcdefg\u{1b}", 10), "abcdefg…");
        assert_eq!(cell("abcdef\u{1b}", 10), "abcdef\\x1b");
    }

    #[test]
    fn table_width_is_bounded_and_has_no_control_bytes() {
        let huge = format!("\u{1b}]0;pwned\u{7}{}", "9".repeat(100_000));
        let t = table(
            &[("caller", Align::Left), ("n", Align::Right)],
            &[vec![huge, "1".into()], vec!["+7916".into(), "2".into()]],
        );
        assert!(t.lines().all(|l| l.chars().count() <= MAX_CELL + 3), "{t}");
        assert!(!t.chars().any(|c| c.is_control() && c != '\n'), "{t:?}");
        assert!(t.contains("\\x1b]0;pwned\\x07999"), "{t}");
    }

    #[test]
    fn json_keeps_the_value_and_escapes_what_a_terminal_acts_on() {
        let v = "a\u{1b}b\u{7f}c\u{9b}d\u{202e}e\u{2028}f";
        let j =
            json_escape_unsafe(serde_json::to_string(&serde_json::json!({ "caller": v })).unwrap());
        assert!(!j.chars().any(is_unsafe_char), "{j:?}");
        assert_eq!(j, r#"{"caller":"a\u001bb\u007fc\u009bd\u202ee\u2028f"}"#);
        let back: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(back["caller"], v);
        let pretty = serde_json::to_string_pretty(&serde_json::json!({ "x": [v] })).unwrap();
        let back: serde_json::Value = serde_json::from_str(&json_escape_unsafe(pretty)).unwrap();
        assert_eq!(back["x"][0], v);
    }
}
