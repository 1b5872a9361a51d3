//! The report as ONE self-contained HTML page: inline CSS and SVG, no scripts, no external
//! assets, so it can be mailed, archived, or opened from a USB stick on a locked-down PC.
//!
//! Every piece of text that came from the database (caller names, numbers, the time zone name)
//! goes through [`esc`]; the fixed labels do too, so there is one rule and no exceptions to
//! remember. Charts are drawn here by hand: bars, a stacked share bar and a donut are a few
//! dozen lines each, and a chart library would mean JavaScript.

use std::fmt::Write;

use jiff::tz::TimeZone;

use super::{human_secs, local_minute, percent, ratio, Report};
use crate::lang::word;
pub use crate::lang::Lang;

/// The English or the Russian text.
fn tr(lang: Lang, en: &'static str, ru: &'static str) -> &'static str {
    match lang {
        Lang::En => en,
        Lang::Ru => ru,
    }
}

/// Units of durations and bucket labels (`12 s`, `1-2 min`, `30 m-1 h`, `+1.5 pp`) in `lang`:
/// each whole run of letters that is a unit is swapped, anything else stays.
fn units(lang: Lang, s: &str) -> String {
    if lang == Lang::En {
        return s.to_string();
    }
    let mut o = String::with_capacity(s.len() + 8);
    let mut run = String::new();
    let flush = |run: &mut String, o: &mut String| {
        o.push_str(match run.as_str() {
            "s" => "с",
            "m" | "min" => "мин",
            "h" => "ч",
            "d" => "д",
            "pp" => "п.п.",
            other => other,
        });
        run.clear();
    };
    for c in s.chars() {
        if c.is_ascii_alphabetic() {
            run.push(c);
        } else {
            flush(&mut run, &mut o);
            o.push(c);
        }
    }
    flush(&mut run, &mut o);
    o
}

/// One of perezvon's own words (a `lost_at`, an outcome, a task state, a resolver) in `lang`;
/// the English report keeps the plain name.
fn vocab(lang: Lang, w: &str) -> String {
    match lang {
        Lang::En => w.replace('_', " "),
        Lang::Ru => word(lang, w),
    }
}

/// A weekday label of [`super::WEEKDAYS`] in `lang`.
fn weekday(lang: Lang, d: &str) -> String {
    const RU: [&str; 7] = ["Пн", "Вт", "Ср", "Чт", "Пт", "Сб", "Вс"];
    match (lang, super::WEEKDAYS.iter().position(|w| *w == d)) {
        (Lang::Ru, Some(i)) => RU[i].to_string(),
        _ => d.to_string(),
    }
}

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            // Control characters have no business in a page (and some are invalid in XML/SVG).
            c if c.is_control() && c != '\n' && c != '\t' => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

const INBOUND: &str = "#9cb8d9";
const MISSED: &str = "#d64545";
const RESOLVERS: [&str; 4] = ["#3b7dd8", "#e3a008", "#2f9e6e", "#c4cad3"];
const PALETTE: [&str; 8] = [
    "#6c5ce7", "#00a3a3", "#e17055", "#d64545", "#3b7dd8", "#e3a008", "#2f9e6e", "#9aa3ad",
];

const CSS: &str = "
*{box-sizing:border-box}
body{margin:0;background:#f3f5f8;color:#1f2933;font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif}
main{max-width:1120px;margin:0 auto;padding:28px 24px 40px}
header{display:flex;justify-content:space-between;align-items:flex-end;flex-wrap:wrap;gap:8px;margin-bottom:20px}
h1{margin:0;font-size:28px;letter-spacing:-.01em}
h2{margin:0 0 12px;font-size:17px}
.sub{color:#616e7c;font-size:14px}
.kpis{display:grid;grid-template-columns:repeat(auto-fit,minmax(128px,1fr));gap:12px;margin-bottom:16px}
.kpi{background:#fff;border-radius:10px;padding:14px 16px;box-shadow:0 1px 2px rgba(16,24,40,.08)}
.kpi .v{font-size:24px;font-weight:650;line-height:1.15;white-space:nowrap}
.kpi .l{color:#616e7c;font-size:13px}
.kpi.bad .v{color:#c23030}.kpi.good .v{color:#23845a}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(440px,100%),1fr));gap:16px;margin-bottom:16px}
.card{background:#fff;border-radius:10px;padding:16px 18px;box-shadow:0 1px 2px rgba(16,24,40,.08);margin-bottom:16px}
.grid .card{margin-bottom:0}
table{border-collapse:collapse;width:100%;font-size:14px;margin-top:8px}
th,td{padding:5px 8px;border-bottom:1px solid #e4e7eb;text-align:left}
th{color:#616e7c;font-weight:600;font-size:12px;text-transform:uppercase;letter-spacing:.03em}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.legend{display:flex;flex-wrap:wrap;gap:4px 14px;font-size:13px;color:#3e4c59;margin:6px 0 0}
.sw{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:5px;vertical-align:-1px}
.split{display:grid;grid-template-columns:90px 1fr 70px;align-items:center;gap:10px;margin:10px 0}
.track{background:#edf0f3;border-radius:6px;height:18px;overflow:hidden}
.fill{background:#d64545;height:100%}
.empty{color:#7b8794;font-style:italic;padding:20px 0;text-align:center}
footer{color:#7b8794;font-size:12.5px;margin-top:20px}
svg text{font-family:inherit}
@media print{body{background:#fff}main{padding:0}.card,.kpi{box-shadow:none;border:1px solid #e4e7eb;break-inside:avoid}}
";

/// A "nice" axis maximum >= `v`: four gridlines at a step of 1, 2, 2.5 or 5 x 10^k, so they fall
/// on round numbers without wasting half the chart.
fn nice_max(v: u64) -> u64 {
    if v <= 4 {
        return 4;
    }
    let mut unit = 1u64;
    loop {
        // Steps in tenths of `unit`: 1, 2, 2.5, 5 x unit; 2.5 is not a whole number of calls, so
        // the smallest decade uses 3 instead.
        for tenths in [10u64, 20, 25, 50] {
            let tenths = if tenths == 25 && unit < 10 {
                30
            } else {
                tenths
            };
            let step = unit.saturating_mul(tenths) / 10;
            if step.saturating_mul(4) >= v {
                return step.saturating_mul(4);
            }
        }
        if unit > u64::MAX / 100 {
            return v;
        }
        unit *= 10;
    }
}

/// One series of a stacked bar chart.
struct Series<'a> {
    name: &'a str,
    color: &'a str,
    values: Vec<u64>,
}

/// Vertical bars, each stacked from the series in order (bottom first), with a y grid, the
/// total above each bar and the labels below.
fn stacked_bars(
    lang: Lang,
    title: &str,
    labels: &[String],
    series: &[Series<'_>],
    width: u32,
    height: u32,
) -> String {
    let (left, right, top, bottom) = (36.0, 8.0, 16.0, 26.0);
    let pw = width as f64 - left - right;
    let ph = height as f64 - top - bottom;
    let totals: Vec<u64> = (0..labels.len())
        .map(|i| {
            series
                .iter()
                .map(|s| s.values.get(i).copied().unwrap_or(0))
                .sum()
        })
        .collect();
    let max = nice_max(totals.iter().copied().max().unwrap_or(0));
    let mut o = String::new();
    let _ = write!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" role="img" aria-label="{t}"><title>{t}</title>"#,
        t = esc(title)
    );
    if totals.iter().all(|t| *t == 0) {
        // An empty grid looks like a broken chart; say there is nothing to draw.
        let _ = write!(
            o,
            r##"<text x="{x:.1}" y="{y:.1}" font-size="13" font-style="italic" fill="#7b8794" text-anchor="middle">{nothing}</text>"##,
            nothing = tr(lang, "Nothing in this period", "За этот период ничего нет"),
            x = left + pw / 2.0,
            y = top + ph / 2.0
        );
    }
    for g in 0..=4u64 {
        let y = top + ph - ph * g as f64 / 4.0;
        let _ = write!(
            o,
            r##"<line x1="{left}" x2="{x2:.1}" y1="{y:.1}" y2="{y:.1}" stroke="{c}" stroke-width="1"/><text x="{tx}" y="{ty:.1}" font-size="10" fill="#7b8794" text-anchor="end">{v}</text>"##,
            x2 = left + pw,
            c = if g == 0 { "#9aa5b1" } else { "#e4e7eb" },
            tx = left - 5.0,
            ty = y + 3.5,
            v = max * g / 4
        );
    }
    let n = labels.len().max(1) as f64;
    let slot = pw / n;
    // Few bars on a wide chart would be slabs: cap the width.
    let bw = (slot * 0.7).clamp(1.0, 64.0);
    // Thin bars cannot carry every label: show every n-th so that labels ~36 px wide never touch.
    let every = ((36.0 / slot).ceil() as usize).max(1);
    let label_size = if slot < 60.0 { 10 } else { 11 };
    for (i, label) in labels.iter().enumerate() {
        let x = left + slot * i as f64 + (slot - bw) / 2.0;
        let mut y = top + ph;
        for s in series {
            let v = s.values.get(i).copied().unwrap_or(0);
            if v == 0 {
                continue;
            }
            let h = ph * v as f64 / max as f64;
            y -= h;
            let _ = write!(
                o,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{bw:.1}" height="{h:.1}" fill="{c}"><title>{l}: {v} {name}</title></rect>"#,
                c = s.color,
                l = esc(label),
                name = esc(s.name)
            );
        }
        if totals[i] > 0 {
            let _ = write!(
                o,
                r##"<text x="{cx:.1}" y="{ty:.1}" font-size="10" fill="#3e4c59" text-anchor="middle">{v}</text>"##,
                cx = x + bw / 2.0,
                ty = y - 3.0,
                v = totals[i]
            );
        }
        if i % every == 0 {
            let _ = write!(
                o,
                r##"<text x="{cx:.1}" y="{ly:.1}" font-size="{label_size}" fill="#52606d" text-anchor="middle">{l}</text>"##,
                cx = x + bw / 2.0,
                ly = top + ph + 16.0,
                l = esc(label)
            );
        }
    }
    o.push_str("</svg>");
    o
}

fn legend(items: &[(&str, &str)]) -> String {
    let mut o = String::from(r#"<div class="legend">"#);
    for (name, color) in items {
        let _ = write!(
            o,
            r#"<span><span class="sw" style="background:{color}"></span>{}</span>"#,
            esc(name)
        );
    }
    o.push_str("</div>");
    o
}

/// One horizontal bar split into shares, for "where were they lost".
fn share_bar(title: &str, items: &[(String, u64, &str)]) -> String {
    let total: u64 = items.iter().map(|i| i.1).sum();
    let (w, h) = (600.0, 34.0);
    let mut o = String::new();
    let _ = write!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="100%" role="img" aria-label="{t}"><title>{t}</title>"#,
        t = esc(title)
    );
    if total == 0 {
        let _ = write!(
            o,
            r##"<rect x="0" y="4" width="{w}" height="26" rx="6" fill="#edf0f3"/>"##
        );
    }
    let mut x = 0.0;
    for (label, n, color) in items.iter().filter(|i| i.1 > 0) {
        let bw = w * *n as f64 / total as f64;
        let _ = write!(
            o,
            r#"<rect x="{x:.1}" y="4" width="{bw:.1}" height="26" fill="{color}"><title>{l}: {n}</title></rect>"#,
            l = esc(label)
        );
        if bw > 34.0 {
            let _ = write!(
                o,
                r##"<text x="{cx:.1}" y="21.5" font-size="12" fill="#fff" text-anchor="middle">{p:.0}%</text>"##,
                cx = x + bw / 2.0,
                p = ratio(*n, total) * 100.0
            );
        }
        x += bw;
    }
    o.push_str("</svg>");
    o
}

/// A donut of shares with the total in the middle.
fn donut(title: &str, items: &[(String, u64, &str)], centre_label: &str) -> String {
    let total: u64 = items.iter().map(|i| i.1).sum();
    let (r, sw) = (60.0, 26.0);
    // Lengths are in units of pathLength=100: the browser's own perimeter of the circle then
    // matches ours exactly, and the last segment closes the ring without a seam.
    let circ = 100.0;
    let mut o = String::new();
    let _ = write!(
        o,
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 180 180" width="180" height="180" role="img" aria-label="{t}"><title>{t}</title><circle cx="90" cy="90" r="{r}" fill="none" stroke="#edf0f3" stroke-width="{sw}"/>"##,
        t = esc(title)
    );
    let mut offset = 0.0;
    for (label, n, color) in items.iter().filter(|i| i.1 > 0) {
        let len = circ * *n as f64 / total as f64;
        // Start at 12 o'clock and go clockwise: rotate -90 degrees, dash offset walks the ring.
        let _ = write!(
            o,
            r#"<circle cx="90" cy="90" r="{r}" pathLength="100" fill="none" stroke="{color}" stroke-width="{sw}" stroke-dasharray="{len:.2} {rest:.2}" stroke-dashoffset="{off:.2}" transform="rotate(-90 90 90)"><title>{l}: {n}</title></circle>"#,
            rest = circ - len,
            off = -offset,
            l = esc(label)
        );
        offset += len;
    }
    let _ = write!(
        o,
        r##"<text x="90" y="92" font-size="26" font-weight="650" fill="#1f2933" text-anchor="middle">{total}</text><text x="90" y="112" font-size="12" fill="#616e7c" text-anchor="middle">{}</text></svg>"##,
        esc(centre_label)
    );
    o
}

/// A table with a label column and right-aligned number columns.
fn num_table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut o = String::from("<table><thead><tr>");
    for (i, h) in head.iter().enumerate() {
        let _ = write!(
            o,
            "<th{}>{}</th>",
            if i > 0 { r#" class="n""# } else { "" },
            esc(h)
        );
    }
    o.push_str("</tr></thead><tbody>");
    for r in rows {
        o.push_str("<tr>");
        for (i, c) in r.iter().enumerate() {
            let _ = write!(
                o,
                "<td{}>{}</td>",
                if i > 0 { r#" class="n""# } else { "" },
                esc(c)
            );
        }
        o.push_str("</tr>");
    }
    o.push_str("</tbody></table>");
    o
}

fn kpi(o: &mut String, value: &str, label: &str, class: &str) {
    let _ = write!(
        o,
        r#"<div class="kpi {class}"><div class="v">{}</div><div class="l">{}</div></div>"#,
        esc(value),
        esc(label)
    );
}

fn split_row(lang: Lang, o: &mut String, name: &str, s: &super::Split) {
    let _ = write!(
        o,
        r#"<div class="split"><div>{}</div><div class="track"><div class="fill" style="width:{:.1}%"></div></div><div class="n"><b>{}</b></div></div><div class="sub" style="margin:-6px 0 6px 100px">{}</div>"#,
        esc(name),
        s.missed_share * 100.0,
        esc(&percent(s.missed_share, s.inbound)),
        match lang {
            Lang::En => format!("{} missed of {} inbound", s.missed, s.inbound),
            Lang::Ru => format!("пропущено {} из {} входящих", s.missed, s.inbound),
        }
    );
}

/// A duration for a headline card, where there is room for two units at most: `33 s`, `47 m`,
/// `1 h 20 m`, `2 d 3 h`.
fn short_secs(secs: f64) -> String {
    if (60.0..3600.0).contains(&secs) {
        format!("{} m", (secs / 60.0).round() as u64)
    } else {
        human_secs(secs)
    }
}

fn figures_cells(lang: Lang, name: &str, f: &super::Split) -> Vec<String> {
    vec![
        name.to_string(),
        f.inbound.to_string(),
        f.answered.to_string(),
        f.missed.to_string(),
        percent(f.missed_share, f.inbound),
        percent(f.service_level, f.inbound),
        f.asa_secs
            .map(|x| units(lang, &human_secs(x)))
            .unwrap_or_else(|| "-".into()),
        percent(f.abandon_rate, f.inbound),
        f.withheld_missed.to_string(),
    ]
}

/// The columns of a figures table; the first one is the caller's.
fn figures_head(lang: Lang) -> [&'static str; 9] {
    match lang {
        Lang::En => [
            "",
            "inbound",
            "answered",
            "missed",
            "missed share",
            "service level",
            "avg answer",
            "abandoned",
            "withheld missed",
        ],
        Lang::Ru => [
            "",
            "входящие",
            "отвеченные",
            "пропущенные",
            "доля пропущенных",
            "уровень обслуживания",
            "среднее время ответа",
            "брошенные",
            "пропущенные со скрытым номером",
        ],
    }
}

/// The comparison with the previous period, open vs after hours, and the breakdowns.
fn figures_sections(o: &mut String, r: &Report, tz: &TimeZone, lang: Lang) {
    let t = |en, ru| tr(lang, en, ru);
    let _ = write!(
        o,
        r#"<section class="grid"><div class="card"><h2>{}</h2>"#,
        t(
            "Open hours vs after hours",
            "В рабочее время и вне рабочего времени"
        )
    );
    split_row(lang, o, t("open", "рабочее"), &r.open_hours);
    split_row(lang, o, t("after hours", "нерабочее"), &r.after_hours);
    let mut rows = vec![
        figures_cells(lang, t("open hours", "в рабочее время"), &r.open_hours),
        figures_cells(
            lang,
            t("after hours", "вне рабочего времени"),
            &r.after_hours,
        ),
        figures_cells(lang, t("Mon-Fri", "будни"), &r.weekdays),
        figures_cells(lang, t("Sat-Sun", "выходные"), &r.weekends),
    ];
    let mut head = figures_head(lang);
    head[0] = t("calls", "звонки");
    o.push_str(&num_table(&head, &rows));
    let _ = write!(
        o,
        r#"</div><div class="card"><h2>{}</h2>"#,
        t(
            "Against the previous period",
            "В сравнении с предыдущим периодом"
        )
    );
    match &r.previous {
        Some(p) => {
            let ch = &p.change;
            let _ = write!(
                o,
                r#"<div class="sub">{} - {}</div>"#,
                esc(&super::local_minute(p.from, tz)),
                esc(&super::local_minute(p.to, tz))
            );
            rows.clear();
            rows.push(figures_cells(
                lang,
                t("this period", "этот период"),
                &figures_of(r),
            ));
            rows.push(figures_cells(
                lang,
                t("previous", "предыдущий период"),
                &p.figures,
            ));
            o.push_str(&num_table(&head, &rows));
            let pp = |x: f64| units(lang, &format!("{:+.1} pp", x * 100.0));
            let change = vec![
                vec![t("inbound", "входящие").into(), format!("{:+}", ch.inbound)],
                vec![
                    t("missed", "пропущенные").into(),
                    format!("{:+}", ch.missed),
                ],
                vec![
                    t("missed share", "доля пропущенных").into(),
                    pp(ch.missed_share),
                ],
                vec![
                    t("service level", "уровень обслуживания").into(),
                    pp(ch.service_level),
                ],
                vec![
                    t("average speed of answer", "среднее время ответа").into(),
                    ch.asa_secs
                        .map(|s| units(lang, &format!("{s:+.1} s")))
                        .unwrap_or_else(|| "-".into()),
                ],
                vec![
                    t("abandon rate", "доля брошенных").into(),
                    pp(ch.abandon_rate),
                ],
                vec![
                    t("misses resolved", "решённые пропущенные").into(),
                    pp(ch.resolved_share),
                ],
            ];
            o.push_str(&num_table(&[t("change", "изменение"), ""], &change));
        }
        None => {
            let _ = write!(
                o,
                r#"<div class="empty">{}</div>"#,
                t("No previous period.", "Предыдущего периода нет.")
            );
        }
    }
    o.push_str("</div></section>");
    for (title, col, list) in [
        (
            t("By queue", "По очередям"),
            t("queue", "очередь"),
            &r.by_queue,
        ),
        (
            t("By agent", "По операторам"),
            t("agent", "оператор"),
            &r.by_agent,
        ),
        (
            t("By DID (number dialled)", "По номерам (DID)"),
            t("DID", "номер (DID)"),
            &r.by_did,
        ),
    ] {
        let _ = write!(o, r#"<section class="card"><h2>{title}</h2>"#);
        if list.is_empty() {
            let _ = write!(
                o,
                r#"<div class="empty">{}</div>"#,
                t("Nothing in this period.", "За этот период ничего нет.")
            );
        } else {
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|b| {
                    figures_cells(
                        lang,
                        b.name.as_deref().unwrap_or(t("(none)", "(нет)")),
                        &b.figures,
                    )
                })
                .collect();
            let mut head = figures_head(lang);
            head[0] = col;
            o.push_str(&num_table(&head, &rows));
        }
        o.push_str("</section>");
    }
}

/// The whole period's headline figures, as the breakdowns show theirs.
fn figures_of(r: &Report) -> super::Split {
    let i = &r.inbound;
    super::Split {
        inbound: i.total,
        answered: i.answered,
        missed: i.missed,
        missed_share: i.missed_share,
        service_level: r.service_level.share,
        asa_secs: r.service_level.asa_secs,
        abandoned: r.service_level.abandoned,
        abandon_rate: r.service_level.abandon_rate,
        withheld_missed: i.withheld_missed,
        avg_talk_secs: None,
        ignored: i.ignored,
    }
}

/// The report page in English.
pub fn render(r: &Report, tz: &TimeZone) -> String {
    render_in(r, tz, Lang::En)
}

/// The report page in `lang`: every fixed text, unit and perezvon word; numbers, dates and
/// what came from the database stay as they are.
pub fn render_in(r: &Report, tz: &TimeZone, lang: Lang) -> String {
    let t = |en, ru| tr(lang, en, ru);
    let en = lang == Lang::En;
    let short = |x: f64| units(lang, &short_secs(x));
    let i = &r.inbound;
    let mut o = String::with_capacity(64 * 1024);
    let _ = write!(
        o,
        r#"<!DOCTYPE html><html lang="{}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>{} {} - {}</title><style>{CSS}</style></head><body><main>"#,
        lang.code(),
        t("Missed calls", "Пропущенные звонки"),
        esc(&local_minute(r.from, tz)),
        esc(&local_minute(r.to, tz))
    );
    let _ = write!(
        o,
        r#"<header><div><h1>{}</h1><div class="sub">{} &ndash; {} &middot; {} {}</div></div><div class="sub">{}</div></header>"#,
        t("Missed calls", "Пропущенные звонки"),
        esc(&local_minute(r.from, tz)),
        esc(&local_minute(r.to, tz)),
        t("times in", "время:"),
        esc(&r.timezone),
        t("perezvon report", "отчёт perezvon")
    );

    // Headline numbers: what a manager reads first.
    o.push_str(r#"<section class="kpis">"#);
    kpi(
        &mut o,
        &i.total.to_string(),
        t("inbound calls", "входящих звонков"),
        "",
    );
    kpi(
        &mut o,
        &percent(i.missed_share, i.total),
        &if en {
            format!("missed ({} calls)", i.missed)
        } else {
            format!("пропущено ({} звонков)", i.missed)
        },
        if i.missed > 0 { "bad" } else { "" },
    );
    kpi(
        &mut o,
        &percent(i.resolved_share, i.missed),
        &if en {
            format!("of misses resolved ({})", i.resolved)
        } else {
            format!("пропущенных решено ({})", i.resolved)
        },
        if i.missed > 0 && i.resolved == i.missed {
            "good"
        } else {
            ""
        },
    );
    kpi(
        &mut o,
        &(i.missed - i.resolved).to_string(),
        t("still unresolved", "ещё не решено"),
        if i.missed > i.resolved { "bad" } else { "good" },
    );
    let sl = &r.service_level;
    kpi(
        &mut o,
        &percent(sl.share, sl.offered),
        &if en {
            format!(
                "service level: answered within {}",
                human_secs(sl.threshold_secs)
            )
        } else {
            format!(
                "уровень обслуживания: отвечено за {}",
                units(lang, &human_secs(sl.threshold_secs))
            )
        },
        "",
    );
    kpi(
        &mut o,
        &sl.asa_secs.map(short).unwrap_or_else(|| "-".into()),
        t("average speed of answer", "среднее время ответа"),
        "",
    );
    kpi(
        &mut o,
        &percent(sl.abandon_rate, sl.offered),
        &if en {
            format!("abandoned by the caller ({})", sl.abandoned)
        } else {
            format!("брошенные звонящим ({})", sl.abandoned)
        },
        "",
    );
    kpi(
        &mut o,
        &r.wait_avg_secs.map(short).unwrap_or_else(|| "-".into()),
        t(
            "average wait before giving up",
            "среднее ожидание до отказа",
        ),
        "",
    );
    kpi(
        &mut o,
        &r.reaction_avg_secs.map(short).unwrap_or_else(|| "-".into()),
        t("average time to resolve", "среднее время до решения"),
        "",
    );
    kpi(
        &mut o,
        &percent(r.callbacks.success_rate, r.callbacks.attempts),
        &if en {
            format!("callback attempts connected ({})", r.callbacks.attempts)
        } else {
            format!("успешных перезвонов ({})", r.callbacks.attempts)
        },
        "",
    );
    o.push_str("</section>");

    if i.total == 0 && i.ignored == 0 && i.unknown == 0 {
        let _ = write!(
            o,
            r#"<section class="card"><div class="empty">{}</div></section>"#,
            t(
                "No inbound calls in this period.",
                "За этот период входящих звонков нет."
            )
        );
    }

    figures_sections(&mut o, r, tz, lang);

    // Load over the day and the week: bars of inbound with the missed part in red.
    let hour_labels: Vec<String> = r.by_hour.iter().map(|s| s.label.clone()).collect();
    let day_labels: Vec<String> = r
        .by_weekday
        .iter()
        .map(|s| weekday(lang, &s.label))
        .collect();
    let (w_missed, w_answered) = (t("missed", "пропущенные"), t("answered", "отвеченные"));
    let subset = |slots: &[super::Slot]| {
        [
            Series {
                name: w_missed,
                color: MISSED,
                values: slots.iter().map(|s| s.missed).collect(),
            },
            Series {
                name: w_answered,
                color: INBOUND,
                values: slots
                    .iter()
                    .map(|s| s.inbound - s.missed.min(s.inbound))
                    .collect(),
            },
        ]
    };
    let load_legend = legend(&[(w_answered, INBOUND), (w_missed, MISSED)]);
    if r.by_day.len() >= 2 {
        let day_labels: Vec<String> = r.by_day.iter().map(|s| s.label.clone()).collect();
        let _ = write!(
            o,
            r#"<section class="card"><h2>{}</h2>{}{}</section>"#,
            t("Calls by day", "Звонки по дням"),
            stacked_bars(
                lang,
                t(
                    "Inbound and missed calls by day",
                    "Входящие и пропущенные звонки по дням"
                ),
                &day_labels,
                &subset(&r.by_day),
                1040,
                210
            ),
            load_legend
        );
    }
    let _ = write!(
        o,
        r#"<section class="card"><h2>{}</h2>{}{}</section>"#,
        t("Calls by hour of day", "Звонки по часам"),
        stacked_bars(
            lang,
            t(
                "Inbound and missed calls by hour of day",
                "Входящие и пропущенные звонки по часам"
            ),
            &hour_labels,
            &subset(&r.by_hour),
            1040,
            230
        ),
        load_legend
    );
    let _ = write!(
        o,
        r#"<section class="grid"><div class="card"><h2>{}</h2>{}{}</div><div class="card"><h2>{}</h2>"#,
        t("Calls by weekday", "Звонки по дням недели"),
        stacked_bars(
            lang,
            t(
                "Inbound and missed calls by weekday",
                "Входящие и пропущенные звонки по дням недели"
            ),
            &day_labels,
            &subset(&r.by_weekday),
            500,
            220
        ),
        load_legend,
        t("Weekdays vs weekends", "Будни и выходные")
    );
    split_row(lang, &mut o, t("Mon-Fri", "будни"), &r.weekdays);
    split_row(lang, &mut o, t("Sat-Sun", "выходные"), &r.weekends);
    let rows: Vec<Vec<String>> = r
        .by_weekday
        .iter()
        .map(|s| {
            vec![
                weekday(lang, &s.label),
                s.inbound.to_string(),
                s.missed.to_string(),
                percent(ratio(s.missed, s.inbound), s.inbound),
            ]
        })
        .collect();
    o.push_str(&num_table(
        &[
            t("day", "день"),
            t("inbound", "входящие"),
            w_missed,
            t("missed share", "доля пропущенных"),
        ],
        &rows,
    ));
    o.push_str("</div></section>");

    // Why they were missed: how long they waited, and where in the dialplan they gave up.
    let wait_labels: Vec<String> = r.waits.iter().map(|b| units(lang, &b.label)).collect();
    let waits = [Series {
        name: t("missed calls", "пропущенные звонки"),
        color: MISSED,
        values: r.waits.iter().map(|b| b.count).collect(),
    }];
    let _ = write!(
        o,
        r#"<section class="grid"><div class="card"><h2>{}</h2>{}"#,
        t(
            "How long callers waited before giving up",
            "Сколько звонящие ждали, прежде чем положить трубку"
        ),
        stacked_bars(
            lang,
            t(
                "Missed calls by wait before giving up",
                "Пропущенные звонки по времени ожидания"
            ),
            &wait_labels,
            &waits,
            500,
            210
        )
    );
    let rows: Vec<Vec<String>> = r
        .waits
        .iter()
        .map(|b| {
            vec![
                units(lang, &b.label),
                b.count.to_string(),
                percent(ratio(b.count, i.missed), i.missed),
            ]
        })
        .collect();
    let w_share = t("share", "доля");
    o.push_str(&num_table(
        &[t("waited", "ожидание"), w_missed, w_share],
        &rows,
    ));
    let answered = [Series {
        name: t("answered calls", "отвеченные звонки"),
        color: INBOUND,
        values: r.answered_waits.iter().map(|b| b.count).collect(),
    }];
    let _ = write!(
        o,
        r#"<h2>{}</h2>{}"#,
        t(
            "How long answered callers waited",
            "Сколько ждали те, кому ответили"
        ),
        stacked_bars(
            lang,
            t(
                "Answered calls by wait for an answer",
                "Отвеченные звонки по времени ожидания ответа"
            ),
            &wait_labels,
            &answered,
            500,
            190
        )
    );
    let lost: Vec<(String, u64, &str)> = r
        .lost_at
        .iter()
        .zip(PALETTE)
        .map(|(b, c)| (vocab(lang, &b.label), b.count, c))
        .collect();
    let _ = write!(
        o,
        r#"</div><div class="card"><h2>{}</h2>{}"#,
        t("Where callers were lost", "Где теряли звонящих"),
        share_bar(
            t(
                "Missed calls by where the caller was lost",
                "Пропущенные звонки по месту, где звонящий положил трубку"
            ),
            &lost
        )
    );
    let shown: Vec<(&str, &str)> = lost
        .iter()
        .filter(|l| l.1 > 0)
        .map(|l| (l.0.as_str(), l.2))
        .collect();
    o.push_str(&legend(&shown));
    let rows: Vec<Vec<String>> = lost
        .iter()
        .map(|l| {
            vec![
                l.0.clone(),
                l.1.to_string(),
                percent(ratio(l.1, i.missed), i.missed),
            ]
        })
        .collect();
    o.push_str(&num_table(
        &[t("lost at", "где потерян"), w_missed, w_share],
        &rows,
    ));
    o.push_str("</div></section>");

    // What happened next: who got the customer back, and how fast.
    let resolvers: Vec<(String, u64, &str)> = r
        .resolved_by
        .iter()
        .zip(RESOLVERS)
        .map(|(b, c)| (vocab(lang, &b.label), b.count, c))
        .collect();
    let _ = write!(
        o,
        r#"<section class="grid"><div class="card"><h2>{}</h2><div style="display:flex;gap:18px;align-items:center;flex-wrap:wrap">{}<div style="flex:1;min-width:200px">"#,
        t("Who resolved the misses", "Кто решил пропущенные"),
        donut(
            t(
                "Missed calls by who resolved them",
                "Пропущенные звонки по тому, кто их решил"
            ),
            &resolvers,
            t("missed", "пропущено")
        )
    );
    let rows: Vec<Vec<String>> = resolvers
        .iter()
        .map(|(l, n, _)| {
            vec![
                l.clone(),
                n.to_string(),
                percent(ratio(*n, i.missed), i.missed),
            ]
        })
        .collect();
    o.push_str(&legend(
        &resolvers
            .iter()
            .map(|(l, _, c)| (l.as_str(), *c))
            .collect::<Vec<_>>(),
    ));
    o.push_str(&num_table(
        &[t("resolved by", "кто решил"), t("calls", "звонки"), w_share],
        &rows,
    ));
    let reaction_labels: Vec<String> = r.reaction.iter().map(|x| units(lang, &x.label)).collect();
    let (w_callback, w_agent, w_caller) = match lang {
        Lang::En => ("callback", "agent", "caller"),
        Lang::Ru => ("перезвон", "оператор", "перезвонил сам"),
    };
    let reaction = [
        Series {
            name: w_callback,
            color: RESOLVERS[2],
            values: r.reaction.iter().map(|x| x.callback).collect(),
        },
        Series {
            name: w_agent,
            color: RESOLVERS[1],
            values: r.reaction.iter().map(|x| x.agent).collect(),
        },
        Series {
            name: w_caller,
            color: RESOLVERS[0],
            values: r.reaction.iter().map(|x| x.caller).collect(),
        },
    ];
    let _ = write!(
        o,
        r#"</div></div></div><div class="card"><h2>{}</h2>{}{}</div></section>"#,
        t(
            "How fast misses were resolved",
            "Как быстро решали пропущенные"
        ),
        stacked_bars(
            lang,
            t(
                "Resolved misses by time to resolve",
                "Решённые пропущенные по времени до решения"
            ),
            &reaction_labels,
            &reaction,
            500,
            230
        ),
        legend(&[
            (w_caller, RESOLVERS[0]),
            (w_agent, RESOLVERS[1]),
            (w_callback, RESOLVERS[2])
        ])
    );

    // Callbacks.
    let c = &r.callbacks;
    let mut outcome_labels: Vec<String> = c
        .attempts_by_outcome
        .iter()
        .map(|b| vocab(lang, &b.label))
        .collect();
    let mut outcome_counts: Vec<u64> = c.attempts_by_outcome.iter().map(|b| b.count).collect();
    if c.attempts_unknown > 0 {
        outcome_labels.push(vocab(lang, "unknown"));
        outcome_counts.push(c.attempts_unknown);
    }
    let outcomes = [Series {
        name: t("attempts", "попытки"),
        color: RESOLVERS[2],
        values: outcome_counts,
    }];
    let _ = write!(
        o,
        r#"<section class="grid"><div class="card"><h2>{}</h2>{}<div class="sub">{}{}</div></div>"#,
        t(
            "Callback attempts by outcome",
            "Попытки перезвона по результату"
        ),
        stacked_bars(
            lang,
            t(
                "Callback attempts by outcome",
                "Попытки перезвона по результату"
            ),
            &outcome_labels,
            &outcomes,
            500,
            210
        ),
        match lang {
            Lang::En => format!(
                "{} of {} attempts connected ({})",
                c.connected,
                c.attempts,
                esc(&percent(c.success_rate, c.attempts))
            ),
            Lang::Ru => format!(
                "дозвонились в {} из {} попыток ({})",
                c.connected,
                c.attempts,
                esc(&percent(c.success_rate, c.attempts))
            ),
        },
        match (lang, c.attempts_pending) {
            (_, 0) => String::new(),
            (Lang::En, n) => format!("; {n} without an outcome yet"),
            (Lang::Ru, n) => format!("; {n} ещё без результата"),
        }
    );
    let rows: Vec<Vec<String>> = c
        .tasks_by_state
        .iter()
        .map(|b| vec![vocab(lang, &b.label), b.count.to_string()])
        .collect();
    let finished = c.tasks_done + c.tasks_given_up;
    let share = esc(&percent(c.task_success_rate, finished));
    let _ = write!(
        o,
        r#"<div class="card"><h2>{}</h2><div class="sub">{}</div>{}</div></section>"#,
        t("Callback tasks", "Задачи на перезвон"),
        match lang {
            Lang::En => format!(
                "{} of {finished} finished tasks reached the customer ({share})",
                c.tasks_done
            ),
            Lang::Ru => format!(
                "до клиента дозвонились в {} из {finished} завершённых задач ({share})",
                c.tasks_done
            ),
        },
        num_table(&[t("state", "состояние"), t("tasks", "задачи")], &rows)
    );
    let reached_labels: Vec<String> = c
        .reached_after
        .iter()
        .map(|b| units(lang, &b.label))
        .collect();
    let reached = [Series {
        name: t("tasks", "задачи"),
        color: RESOLVERS[2],
        values: c.reached_after.iter().map(|b| b.count).collect(),
    }];
    let _ = write!(
        o,
        r#"<section class="card"><h2>{}</h2>{}<div class="sub">{} {}</div></section>"#,
        t(
            "Time from the miss to reaching the customer by callback",
            "Время от пропущенного до успешного перезвона клиенту"
        ),
        stacked_bars(
            lang,
            t(
                "Reached callback tasks by time from the first miss",
                "Успешные перезвоны по времени от первого пропущенного"
            ),
            &reached_labels,
            &reached,
            1040,
            190
        ),
        t("average", "в среднем"),
        esc(&c
            .reached_after_avg_secs
            .map(|x| units(lang, &human_secs(x)))
            .unwrap_or_else(|| "-".into()))
    );

    // Customers who kept trying: the most annoyed ones.
    if !r.repeat_callers.is_empty() {
        let _ = write!(
            o,
            r#"<section class="card"><h2>{}</h2><table><thead><tr><th>{}</th><th class="n">{}</th><th class="n">{}</th><th class="n">{}</th></tr></thead><tbody>"#,
            t(
                "Numbers missed more than once",
                "Номера, пропущенные не раз"
            ),
            t("caller", "звонящий"),
            t("misses", "пропущено"),
            t("still unresolved", "ещё не решено"),
            t("last miss", "последний пропущенный")
        );
        for c in &r.repeat_callers {
            let _ = write!(
                o,
                r#"<tr><td>{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td></tr>"#,
                esc(c.caller.as_deref().unwrap_or(&c.caller_normalized)),
                c.misses,
                c.unresolved,
                esc(&c.last)
            );
        }
        o.push_str("</tbody></table></section>");
    }

    // Who still waits for a call: the list a supervisor acts on.
    let _ = write!(
        o,
        r#"<section class="card"><h2>{}</h2>"#,
        t(
            "Unresolved misses, newest first",
            "Нерешённые пропущенные, сначала новые"
        )
    );
    if r.recent_unresolved.is_empty() {
        let _ = write!(
            o,
            r#"<div class="empty">{}</div>"#,
            t(
                "Every missed caller has been reached.",
                "Всем пропущенным звонящим дозвонились."
            )
        );
    } else {
        let _ = write!(
            o,
            r#"<table><thead><tr><th>{}</th><th>{}</th><th>{}</th><th class="n">{}</th></tr></thead><tbody>"#,
            t("when", "когда"),
            t("caller", "звонящий"),
            t("lost at", "где потерян"),
            t("waited", "ожидание")
        );
        for m in &r.recent_unresolved {
            let _ = write!(
                o,
                r#"<tr><td>{}</td><td>{}</td><td>{}</td><td class="n">{}</td></tr>"#,
                esc(&m.when),
                esc(m.caller.as_deref().unwrap_or(t("(withheld)", "(скрыт)"))),
                esc(&m
                    .lost_at
                    .map(|l| vocab(lang, l.as_str()))
                    .unwrap_or_else(|| "-".into())),
                esc(&units(lang, &human_secs(m.wait_secs)))
            );
        }
        o.push_str("</tbody></table>");
    }
    o.push_str("</section>");

    let threshold = esc(&units(lang, &human_secs(r.service_level.threshold_secs)));
    let _ = match lang {
        Lang::En => write!(
            o,
            r#"<footer>Inbound = answered + missed. A call is missed when no person talked to the caller for at least the configured minimum. Accidental calls (hung up within seconds: {}) and calls perezvon lost sight of ({}) are not counted. Weekend = Saturday and Sunday; open hours follow the working-hours schedule. Service level = answered within {threshold} / inbound; abandoned = missed calls the caller hung up. Withheld numbers are counted, and apart, since nobody can call them back. Time to resolve runs from the end of the missed call to the start of the call that reached the customer.</footer></main></body></html>"#,
            i.ignored, i.unknown,
        ),
        Lang::Ru => write!(
            o,
            r#"<footer>Входящие = отвеченные + пропущенные. Звонок пропущен, если с звонящим никто не говорил хотя бы заданный минимум. Случайные звонки (трубку положили через несколько секунд: {}) и звонки, которые perezvon потерял из виду ({}), не считаются. Выходные = суббота и воскресенье; рабочее время — по графику работы. Уровень обслуживания = отвеченные за {threshold} / входящие; брошенные = пропущенные звонки, в которых звонящий положил трубку. Звонки со скрытым номером считаются, и отдельно: им нельзя перезвонить. Время до решения отсчитывается от конца пропущенного звонка до начала звонка, в котором дозвонились до клиента.</footer></main></body></html>"#,
            i.ignored, i.unknown,
        ),
    };
    o.push('\n');
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_maximum_is_round_and_tight() {
        for (v, want) in [
            (0, 4),
            (4, 4),
            (5, 8),
            (9, 12),
            (13, 20),
            (23, 40),
            (63, 80),
            (97, 100),
            (101, 200),
            (180, 200),
            (999, 1000),
            (1001, 2000),
        ] {
            assert_eq!(nice_max(v), want, "{v}");
        }
        assert!(nice_max(u64::MAX) >= u64::MAX / 2);
    }

    #[test]
    fn russian_page_is_russian() {
        use crate::calls::record::{LostAt, Status};
        let start: jiff::Timestamp = "2026-11-16T10:00:00Z".parse().unwrap();
        let miss = crate::calls::record::CallRecord {
            status: Status::Missed,
            missed: true,
            lost_at: Some(LostAt::Queue),
            caller: None,
            ..crate::test_support::inbound_miss("x", start, 75.0)
        };
        let r = Report::build(
            &[miss],
            &crate::store::report::CallbackCounts::default(),
            &TimeZone::UTC,
            "UTC",
            "2026-11-01T00:00:00Z".parse().unwrap(),
            "2026-12-01T00:00:00Z".parse().unwrap(),
        );
        let ru = render_in(&r, &TimeZone::UTC, Lang::Ru);
        assert!(ru.starts_with(r#"<!DOCTYPE html><html lang="ru">"#));
        for want in [
            "<h1>Пропущенные звонки</h1>",
            "уровень обслуживания",
            "среднее время ответа",
            "брошенные",
            "В рабочее время и вне рабочего времени",
            "Будни и выходные",
            "По очередям",
            "оператор",
            "номер (DID)",
            "В сравнении с предыдущим периодом",
            "Попытки перезвона по результату",
            "Нерешённые пропущенные, сначала новые",
            ">очередь<",
            ">Пн<",
            "1 мин 15 с",
        ] {
            assert!(ru.contains(want), "no {want:?} in the Russian page");
        }
        for gone in [
            "Missed calls",
            "Calls by hour of day",
            "Weekdays vs weekends",
            "Against the previous period",
            "By queue",
            "Where callers were lost",
            "Who resolved the misses",
            "Callback tasks",
            "Unresolved misses",
            "service level",
            "average speed of answer",
            "Nothing in this period",
            "inbound",
            ">Mon<",
            " min<",
        ] {
            assert!(!ru.contains(gone), "{gone:?} left in the Russian page");
        }
        // English stays English, and `render` is English.
        let en = render(&r, &TimeZone::UTC);
        assert_eq!(en, render_in(&r, &TimeZone::UTC, Lang::En));
        assert!(en.contains("<h1>Missed calls</h1>") && !en.contains("Пропущенные"));
    }

    #[test]
    fn headline_durations_are_short() {
        assert_eq!(short_secs(33.0), "33 s");
        assert_eq!(short_secs(2800.0), "47 m");
        assert_eq!(short_secs(4800.0), "1 h 20 m");
    }
}
