//! Plain-text rendering: aligned tables for a terminal, and the report as text sections.

use std::fmt::Write;

use super::{human_secs, local_minute, percent, Report};

/// Column alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A table of text cells, aligned on display width (characters, so Cyrillic names line up).
pub fn table(header: &[(&str, Align)], rows: &[Vec<String>]) -> String {
    let clean = |s: &str| -> String {
        // A cell from the database must not break the layout or smuggle terminal escapes.
        s.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
    };
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| clean(c)).collect())
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

/// The report as text sections, for a terminal or an e-mail.
pub fn render(r: &Report, tz: &jiff::tz::TimeZone) -> String {
    use Align::{Left as L, Right as R};
    let mut o = String::new();
    let i = &r.inbound;
    let _ = writeln!(
        o,
        "Missed calls report {} - {} ({})\n",
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
            "Median wait of a missed caller".into(),
            r.wait_median_secs
                .map(human_secs)
                .unwrap_or_else(|| "-".into()),
            String::new(),
        ],
        vec![
            "Median time to resolve a miss".into(),
            r.reaction_median_secs
                .map(human_secs)
                .unwrap_or_else(|| "-".into()),
            String::new(),
        ],
    ];
    o.push_str(&table(
        &[("Summary", L), ("calls", R), ("share", R)],
        &summary,
    ));

    let _ = writeln!(o, "\nWeekdays and weekends");
    let split = vec![
        vec![
            "Mon-Fri".into(),
            r.weekdays.inbound.to_string(),
            r.weekdays.missed.to_string(),
            percent(r.weekdays.missed_share, r.weekdays.inbound),
        ],
        vec![
            "Sat-Sun".into(),
            r.weekends.inbound.to_string(),
            r.weekends.missed.to_string(),
            percent(r.weekends.missed_share, r.weekends.inbound),
        ],
    ];
    o.push_str(&table(
        &[
            ("days", L),
            ("inbound", R),
            ("missed", R),
            ("missed share", R),
        ],
        &split,
    ));

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
