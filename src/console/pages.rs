//! The console's HTML, rendered on the server. Every value that came from outside (numbers,
//! names, database text) goes through [`esc`]; the page carries no inline script (the CSP
//! forbids it), only `/static/console.js` on the Now page.

use std::fmt::Write as _;

use jiff::tz::TimeZone;
use jiff::Timestamp;

use super::i18n::{word, Lang};
use super::NowData;
use crate::callback::planner::TaskState;
use crate::calls::record::{CallRecord, Direction};
use crate::config::WebRole;
use crate::report::html::esc;
use crate::store::report::MissedCall;
use crate::store::tasks::{Attempt, TaskRow};

/// What every page of a logged-in user needs.
pub struct Ctx {
    pub lang: Lang,
    pub user: String,
    pub role: WebRole,
    pub csrf: String,
    pub tz: TimeZone,
    /// The request's path and query, for the language switch to come back to.
    pub here: String,
}

impl Ctx {
    fn t(&self, k: &str) -> &'static str {
        self.lang.t(k)
    }
}

/// `+79161234567`, or the raw caller ID, or "withheld".
pub fn number(normalized: Option<&str>, raw: Option<&str>, lang: Lang) -> String {
    match (normalized, raw) {
        (None, None) => lang.t("missed.withheld").to_string(),
        _ => crate::number::display(normalized, raw),
    }
}

fn at(t: Timestamp, tz: &TimeZone) -> String {
    t.to_zoned(tz.clone())
        .strftime("%Y-%m-%d %H:%M")
        .to_string()
}

fn clock(t: Timestamp, tz: &TimeZone) -> String {
    t.to_zoned(tz.clone()).strftime("%H:%M:%S").to_string()
}

/// A query-string value, percent-encoded.
pub fn q(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            o.push(b as char);
        } else {
            let _ = write!(o, "%{b:02X}");
        }
    }
    o
}

fn head(lang: Lang, title: &str, extra_head: &str) -> String {
    format!(
        r#"<!DOCTYPE html><html lang="{}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>{} · perezvon</title><link rel="stylesheet" href="/static/console.css">{extra_head}</head>"#,
        lang.code(),
        esc(title)
    )
}

/// The page around `body`: the navigation, the language switch, who is logged in.
pub fn layout(c: &Ctx, active: &str, title: &str, body: &str, extra_head: &str) -> String {
    let mut o = head(c.lang, title, extra_head);
    o.push_str(
        r#"<body><nav class="top"><a class="brand" href="/now">perezvon</a><div class="links">"#,
    );
    for (path, key) in [
        ("/now", "nav.now"),
        ("/callbacks", "nav.callbacks"),
        ("/missed", "nav.missed"),
        ("/report", "nav.report"),
    ] {
        let _ = write!(
            o,
            r#"<a href="{path}"{}>{}</a>"#,
            if path == active { r#" class="on""# } else { "" },
            esc(c.t(key))
        );
    }
    o.push_str(r#"</div><div class="me">"#);
    for l in [Lang::Ru, Lang::En] {
        let _ = write!(
            o,
            r#"<a href="/lang?set={}&amp;back={}"{}>{}</a>"#,
            l.code(),
            q(&c.here),
            if l == c.lang { r#" class="on""# } else { "" },
            l.code().to_uppercase()
        );
    }
    let _ = write!(
        o,
        r#"<span>{} ({})</span><form method="post" action="/logout"><input type="hidden" name="csrf" value="{}"><button type="submit">{}</button></form></div></nav><main>"#,
        esc(&c.user),
        esc(c.t(match c.role {
            WebRole::Viewer => "role.viewer",
            WebRole::Supervisor => "role.supervisor",
        })),
        esc(&c.csrf),
        esc(c.t("logout"))
    );
    o.push_str(body);
    o.push_str("</main></body></html>");
    o
}

pub fn login(lang: Lang, message: Option<&str>, user: &str, next: &str) -> String {
    let mut o = head(lang, lang.t("login.title"), "");
    let _ = write!(
        o,
        r#"<body><main class="login"><h1>perezvon</h1><div class="card"><h2>{}</h2>"#,
        esc(lang.t("login.title"))
    );
    if let Some(m) = message {
        let _ = write!(o, r#"<div class="flash bad" role="alert">{}</div>"#, esc(m));
    }
    let _ = write!(
        o,
        r#"<form method="post" action="/login"><input type="hidden" name="next" value="{}"><label>{}<input name="user" id="user" autocomplete="username" required value="{}"></label><label>{}<input name="password" id="password" type="password" autocomplete="current-password" required></label><button class="primary" type="submit" id="login">{}</button></form></div><div class="sub">"#,
        esc(next),
        esc(lang.t("login.user")),
        esc(user),
        esc(lang.t("login.password")),
        esc(lang.t("login.submit"))
    );
    for l in [Lang::Ru, Lang::En] {
        let _ = write!(
            o,
            r#"<a href="/lang?set={}&amp;back=/login">{}</a> "#,
            l.code(),
            l.code().to_uppercase()
        );
    }
    o.push_str("</div></main></body></html>");
    o
}

/// A page that says what went wrong (bad input, a refused action, the database down).
pub fn problem(c: &Ctx, title: &str, detail: &str) -> String {
    layout(
        c,
        "",
        title,
        &format!(
            r#"<h1>{}</h1><div class="flash bad" role="alert">{}</div><p><a href="/now">{}</a></p>"#,
            esc(title),
            esc(detail),
            esc(c.t("nav.now"))
        ),
        "",
    )
}

fn kpi(o: &mut String, value: &str, label: &str, class: &str) {
    let _ = write!(
        o,
        r#"<div class="kpi {class}"><div class="v">{}</div><div class="l">{}</div></div>"#,
        esc(value),
        esc(label)
    );
}

/// The live part of the Now page, sent again over SSE whenever it changes.
pub fn live_fragment(d: &NowData, lang: Lang, tz: &TimeZone) -> String {
    let t = |k| lang.t(k);
    let mut o = String::with_capacity(4096);
    if let Some(e) = &d.error {
        let _ = write!(
            o,
            r#"<div class="flash bad">{}: {}</div>"#,
            esc(t("err.db")),
            esc(e)
        );
    }
    if d.held > 0 {
        let _ = write!(
            o,
            r#"<div class="flash bad">{} ({})</div>"#,
            esc(t("now.held")),
            d.held
        );
    }
    let td = &d.today;
    let _ = write!(
        o,
        r#"<h2>{} <span class="sub">{} · {} {}</span></h2><section class="kpis" id="today">"#,
        esc(t("now.today")),
        esc(&td.date),
        esc(t("now.updated")),
        d.at.map(|x| esc(&clock(x, tz))).unwrap_or_default()
    );
    kpi(
        &mut o,
        &d.calls_in_progress.to_string(),
        t("now.in_progress"),
        "",
    );
    kpi(&mut o, &td.inbound.to_string(), t("now.inbound"), "");
    kpi(&mut o, &td.answered.to_string(), t("now.answered"), "");
    kpi(
        &mut o,
        &td.missed.to_string(),
        t("now.missed"),
        if td.missed > 0 { "bad" } else { "" },
    );
    kpi(
        &mut o,
        &td.unresolved.to_string(),
        t("now.unresolved"),
        if td.unresolved > 0 { "bad" } else { "good" },
    );
    kpi(&mut o, &d.queue.pending.to_string(), t("now.pending"), "");
    kpi(&mut o, &td.callbacks.to_string(), t("now.callbacks"), "");
    kpi(
        &mut o,
        &td.callbacks_connected.to_string(),
        t("now.connected"),
        if td.callbacks_connected > 0 {
            "good"
        } else {
            ""
        },
    );
    o.push_str("</section>");

    let _ = write!(
        o,
        r#"<section class="card" id="queues"><h2>{}</h2>"#,
        esc(t("now.queues"))
    );
    if d.queues.is_empty() {
        let _ = write!(o, r#"<div class="empty">{}</div>"#, esc(t("now.no_queues")));
    } else {
        let cols = [
            "q.queue",
            "q.waiting",
            "q.longest",
            "q.talking",
            "q.free",
            "q.paused",
            "q.logged_in",
        ];
        o.push_str(r#"<table class="cards"><thead><tr>"#);
        for (i, k) in cols.iter().enumerate() {
            let _ = write!(
                o,
                r#"<th{}>{}</th>"#,
                if i > 0 { r#" class="n""# } else { "" },
                esc(t(k))
            );
        }
        o.push_str("</tr></thead><tbody>");
        let many = d.servers.len() > 1;
        for q in &d.queues {
            let name = if many {
                format!("{} ({})", q.queue, q.server)
            } else {
                q.queue.clone()
            };
            let _ = write!(
                o,
                r#"<tr><td data-l="{}"><b>{}</b></td><td data-l="{}" class="n{}">{}</td><td data-l="{}" class="n">{}</td><td data-l="{}" class="n">{}</td><td data-l="{}" class="n">{}</td><td data-l="{}" class="n">{}</td><td data-l="{}" class="n">{}</td></tr>"#,
                esc(t(cols[0])),
                esc(&name),
                esc(t(cols[1])),
                if q.waiting > 0 { " hot" } else { "" },
                q.waiting,
                esc(t(cols[2])),
                if q.waiting > 0 {
                    esc(&dur(lang, f64::from(q.longest_wait_secs)))
                } else {
                    "-".into()
                },
                esc(t(cols[3])),
                q.talking,
                esc(t(cols[4])),
                q.free,
                esc(t(cols[5])),
                q.paused,
                esc(t(cols[6])),
                q.logged_in,
            );
        }
        o.push_str("</tbody></table>");
    }
    o.push_str("</section>");

    o.push_str(r#"<section class="grid"><div class="card"><h2>"#);
    o.push_str(&esc(t("now.servers")));
    o.push_str(r#"</h2><div class="servers">"#);
    for s in &d.servers {
        let (class, state) = match (s.link_up, s.link_since) {
            (true, _) => ("ok", t("now.link_up")),
            (false, Some(_)) => ("bad", t("now.link_down")),
            (false, None) => ("warn", t("now.link_never")),
        };
        let _ = write!(
            o,
            r#"<div class="server"><b>{}</b><span><span class="badge {class}">{}</span> <span class="sub">{}</span></span></div><div class="sub">{} {} · {} {}</div>"#,
            esc(&s.name),
            esc(state),
            s.link_since
                .map(|x| format!("{} {}", t("now.since"), at(x, tz)))
                .map(|x| esc(&x))
                .unwrap_or_default(),
            s.events,
            esc(t("now.events")),
            esc(t("now.in_progress")).to_lowercase(),
            d.in_progress_of(&s.name)
                .map_or("-".to_string(), |n| n.to_string())
        );
    }
    o.push_str("</div></div>");

    let _ = write!(
        o,
        r#"<div class="card"><h2>{}</h2>"#,
        esc(t("now.in_flight"))
    );
    if d.in_flight.is_empty() {
        let _ = write!(
            o,
            r#"<div class="empty">{}</div>"#,
            esc(t("now.none_in_flight"))
        );
    } else {
        let _ = write!(
            o,
            r#"<table class="cards"><thead><tr><th>{}</th><th>{}</th><th class="n">{}</th><th>{}</th></tr></thead><tbody>"#,
            esc(t("col.number")),
            esc(t("col.target")),
            esc(t("col.attempts")),
            esc(t("col.started"))
        );
        for a in &d.in_flight {
            let _ = write!(
                o,
                r#"<tr><td data-l="{}" class="num">{}</td><td data-l="{}">{}</td><td data-l="{}" class="n">{}</td><td data-l="{}">{}</td></tr>"#,
                esc(t("col.number")),
                esc(&number(Some(&a.number), None, lang)),
                esc(t("col.target")),
                esc(&a.target),
                esc(t("col.attempts")),
                a.attempt_no,
                esc(t("col.started")),
                esc(&clock(a.started_at, tz))
            );
        }
        o.push_str("</tbody></table>");
    }
    o.push_str("</div></section>");

    let _ = write!(
        o,
        r#"<section class="card" id="recent"><h2>{}</h2>"#,
        esc(t("now.recent"))
    );
    if d.recent.is_empty() {
        let _ = write!(
            o,
            r#"<div class="empty">{}</div>"#,
            esc(t("now.none_missed"))
        );
    } else {
        missed_table(&mut o, &d.recent, lang, tz, true);
    }
    o.push_str("</section>");
    o
}

pub fn now(c: &Ctx, d: &NowData) -> String {
    let body = format!(
        r#"<h1>{} <span id="live-state" class="badge" data-live="{}" data-stale="{}">…</span></h1><div id="live" data-events="0">{}</div>"#,
        esc(c.t("nav.now")),
        esc(c.t("now.live")),
        esc(c.t("now.stale")),
        live_fragment(d, c.lang, &c.tz)
    );
    layout(
        c,
        "/now",
        c.t("nav.now"),
        &body,
        r#"<script src="/static/console.js" defer></script>"#,
    )
}

fn customer_link(m: &CallRecord, lang: Lang) -> String {
    let shown = esc(&number(
        m.caller_normalized.as_deref(),
        m.caller.as_deref(),
        lang,
    ));
    match m.caller_normalized.as_deref() {
        Some(n) if !n.is_empty() => format!(
            r#"<a class="num" href="/customer?number={}">{shown}</a>"#,
            q(n)
        ),
        _ => format!(r#"<span class="num">{shown}</span>"#),
    }
}

fn missed_table(o: &mut String, rows: &[MissedCall], lang: Lang, tz: &TimeZone, short: bool) {
    let t = |k| lang.t(k);
    let cols = [
        "col.time",
        "col.number",
        "col.did",
        "col.lost_at",
        "col.wait",
        "col.agent",
        "col.resolved",
        "col.callback",
    ];
    o.push_str(r#"<table class="cards missed"><thead><tr>"#);
    for k in cols {
        let _ = write!(o, "<th>{}</th>", esc(t(k)));
    }
    o.push_str("</tr></thead><tbody>");
    for m in rows {
        let c = &m.call;
        let time = if short {
            clock(c.ended_at, tz)
        } else {
            at(c.ended_at, tz)
        };
        let resolved = match (c.resolved_by, c.resolved_at) {
            (Some(by), Some(when)) => format!(
                "{} · {}",
                word(lang, by.as_str()),
                dur(lang, when.duration_since(c.ended_at).as_secs_f64().max(0.0))
            ),
            (Some(by), None) => word(lang, by.as_str()),
            _ => "-".into(),
        };
        let callback = match &m.task {
            Some(task) => format!(
                "#{} {} ({})",
                task.id,
                word(lang, &task.state),
                task.attempts
            ),
            None => "-".into(),
        };
        let _ = write!(
            o,
            r#"<tr><td data-l="{}">{}</td><td data-l="{}">{}</td><td data-l="{}" class="num">{}</td><td data-l="{}">{}</td><td data-l="{}" class="n">{}</td><td data-l="{}">{}</td><td data-l="{}">{}</td><td data-l="{}">{}</td></tr>"#,
            esc(t(cols[0])),
            esc(&time),
            esc(t(cols[1])),
            customer_link(c, lang),
            esc(t(cols[2])),
            esc(c.callee.as_deref().unwrap_or("-")),
            esc(t(cols[3])),
            esc(&c
                .lost_at
                .map(|l| word(lang, l.as_str()))
                .unwrap_or_else(|| "-".into())),
            esc(t(cols[4])),
            esc(&dur(lang, c.wait_secs)),
            esc(t(cols[5])),
            esc(c.agent.as_deref().unwrap_or("-")),
            esc(t(cols[6])),
            esc(&resolved),
            esc(t(cols[7])),
            esc(&callback),
        );
    }
    o.push_str("</tbody></table>");
}

/// A flash message of the To call back page (the key comes from the redirect; unknown keys
/// show nothing, so nothing a link carries is ever reflected).
pub struct Flash {
    pub key: &'static str,
    pub bad: bool,
    pub extra: Option<String>,
}

/// One open task with when its next attempt can really happen.
pub struct OpenTask {
    pub row: TaskRow,
    /// `None`: never (no opening ahead); only meaningful for pending tasks.
    pub next_possible: Option<Timestamp>,
}

fn action(o: &mut String, c: &Ctx, id: i64, what: &str, label: &str, class: &str) {
    let _ = write!(
        o,
        r#"<form method="post" action="/callbacks/{id}/{what}"><input type="hidden" name="csrf" value="{}"><button type="submit" class="{class}" data-action="{what}" data-task="{id}">{}</button></form>"#,
        esc(&c.csrf),
        esc(label)
    );
}

pub fn callbacks(c: &Ctx, open: &[OpenTask], closed: &[TaskRow], flash: Option<Flash>) -> String {
    let t = |k| c.t(k);
    let mut o = format!("<h1>{}</h1>", esc(t("nav.callbacks")));
    if let Some(f) = flash {
        let _ = write!(
            o,
            r#"<div class="flash{}" role="status" id="flash">{}{}</div>"#,
            if f.bad { " bad" } else { "" },
            esc(t(f.key)),
            f.extra.map(|x| format!(" {}", esc(&x))).unwrap_or_default()
        );
    }
    let supervisor = c.role == WebRole::Supervisor;
    if !supervisor {
        let _ = write!(o, r#"<p class="sub">{}</p>"#, esc(t("cb.viewer")));
    }
    let _ = write!(
        o,
        r#"<section class="card"><h2>{} ({})</h2>"#,
        esc(t("cb.open")),
        open.len()
    );
    if open.is_empty() {
        let _ = write!(o, r#"<div class="empty">{}</div>"#, esc(t("cb.none")));
    } else {
        let cols = [
            "col.id",
            "col.number",
            "col.misses",
            "col.since",
            "col.lost_at",
            "col.next",
            "col.attempts",
            "col.last",
        ];
        o.push_str(r#"<table class="cards" id="open-tasks"><thead><tr>"#);
        for k in cols {
            let _ = write!(o, "<th>{}</th>", esc(t(k)));
        }
        if supervisor {
            let _ = write!(o, "<th>{}</th>", esc(t("col.actions")));
        }
        o.push_str("</tr></thead><tbody>");
        for ot in open {
            let task = &ot.row.task;
            let next = match task.state {
                TaskState::InProgress => t("cb.dialling").to_string(),
                _ => ot
                    .next_possible
                    .map(|x| at(x, &c.tz))
                    .unwrap_or_else(|| t("cb.never").to_string()),
            };
            let _ = write!(
                o,
                r#"<tr data-task="{}"><td data-l="{}" class="n">{}</td><td data-l="{}"><a class="num" href="/customer?number={}">{}</a></td><td data-l="{}" class="n">{}</td><td data-l="{}">{}</td><td data-l="{}">{}</td><td data-l="{}">{}</td><td data-l="{}" class="n">{}</td><td data-l="{}">{}</td>"#,
                task.id,
                esc(t(cols[0])),
                task.id,
                esc(t(cols[1])),
                q(&task.number),
                esc(&number(Some(&task.number), None, c.lang)),
                esc(t(cols[2])),
                task.missed_count,
                esc(t(cols[3])),
                esc(&at(task.first_missed_at, &c.tz)),
                esc(t(cols[4])),
                esc(&task
                    .lost_at
                    .map(|l| word(c.lang, l.as_str()))
                    .unwrap_or_else(|| "-".into())),
                esc(t(cols[5])),
                esc(&next),
                esc(t(cols[6])),
                task.attempts,
                esc(t(cols[7])),
                esc(&task
                    .last_outcome
                    .map(|x| word(c.lang, x.as_str()))
                    .unwrap_or_else(|| "-".into())),
            );
            if supervisor {
                let _ = write!(
                    o,
                    r#"<td data-l="{}"><div class="actions">"#,
                    esc(t("col.actions"))
                );
                if task.state == TaskState::Pending {
                    action(&mut o, c, task.id, "call", t("act.call_now"), "primary");
                }
                action(&mut o, c, task.id, "cancel", t("act.cancel"), "danger");
                o.push_str("</div></td>");
            }
            o.push_str("</tr>");
        }
        o.push_str("</tbody></table>");
    }
    o.push_str("</section>");

    if !closed.is_empty() {
        let _ = write!(
            o,
            r#"<section class="card"><h2>{}</h2>"#,
            esc(t("cb.closed"))
        );
        let cols = [
            "col.id",
            "col.number",
            "col.misses",
            "col.state",
            "col.attempts",
            "col.closed",
            "col.reason",
        ];
        o.push_str(r#"<table class="cards" id="closed-tasks"><thead><tr>"#);
        for k in cols {
            let _ = write!(o, "<th>{}</th>", esc(t(k)));
        }
        if supervisor {
            let _ = write!(o, "<th>{}</th>", esc(t("col.actions")));
        }
        o.push_str("</tr></thead><tbody>");
        for r in closed {
            let task = &r.task;
            let _ = write!(
                o,
                r#"<tr data-task="{}"><td data-l="{}" class="n">{}</td><td data-l="{}"><a class="num" href="/customer?number={}">{}</a></td><td data-l="{}" class="n">{}</td><td data-l="{}">{}</td><td data-l="{}" class="n">{}</td><td data-l="{}">{}</td><td data-l="{}">{}</td>"#,
                task.id,
                esc(t(cols[0])),
                task.id,
                esc(t(cols[1])),
                q(&task.number),
                esc(&number(Some(&task.number), None, c.lang)),
                esc(t(cols[2])),
                task.missed_count,
                esc(t(cols[3])),
                esc(&word(c.lang, task.state.as_str())),
                esc(t(cols[4])),
                task.attempts,
                esc(t(cols[5])),
                esc(&r.closed_at.map(|x| at(x, &c.tz)).unwrap_or_default()),
                esc(t(cols[6])),
                esc(r.close_reason.as_deref().unwrap_or("")),
            );
            if supervisor {
                let _ = write!(
                    o,
                    r#"<td data-l="{}"><div class="actions">"#,
                    esc(t("col.actions"))
                );
                action(&mut o, c, task.id, "retry", t("act.retry"), "");
                o.push_str("</div></td>");
            }
            o.push_str("</tr>");
        }
        o.push_str("</tbody></table></section>");
    }
    layout(c, "/callbacks", t("nav.callbacks"), &o, "")
}

/// The Missed calls page's filter values, as typed (shown back in the form).
#[derive(Debug, Default, Clone)]
pub struct MissedForm {
    pub from: String,
    pub to: String,
    pub lost_at: String,
    pub did: String,
    pub agent: String,
    pub state: String,
    pub queue: String,
    /// The database stores queue names: the queue filter is offered.
    pub has_queue: bool,
}

pub fn missed(c: &Ctx, f: &MissedForm, rows: &[MissedCall], more: bool) -> String {
    let t = |k| c.t(k);
    let mut o = format!("<h1>{}</h1>", esc(t("nav.missed")));
    let _ = write!(
        o,
        r#"<section class="card"><form class="filters" method="get" action="/missed"><label>{}<input type="date" name="from" value="{}"></label><label>{}<input type="date" name="to" value="{}"></label><label>{}<select name="lost_at"><option value="">{}</option>"#,
        esc(t("f.from")),
        esc(&f.from),
        esc(t("f.to")),
        esc(&f.to),
        esc(t("f.lost_at")),
        esc(t("f.any"))
    );
    for l in crate::config::LOST_AT {
        let _ = write!(
            o,
            r#"<option value="{l}"{}>{}</option>"#,
            if f.lost_at == l { " selected" } else { "" },
            esc(&word(c.lang, l))
        );
    }
    let _ = write!(
        o,
        r#"</select></label>{}<label>{}<input name="did" value="{}" size="12"></label><label>{}<input name="agent" value="{}" size="8"></label><label>{}<select name="state">"#,
        queue_input(c, f),
        esc(t("f.did")),
        esc(&f.did),
        esc(t("f.agent")),
        esc(&f.agent),
        esc(t("f.state"))
    );
    for (v, k) in [
        ("", "f.any"),
        ("unresolved", "f.unresolved"),
        ("resolved", "f.resolved"),
    ] {
        let _ = write!(
            o,
            r#"<option value="{v}"{}>{}</option>"#,
            if f.state == v { " selected" } else { "" },
            esc(t(k))
        );
    }
    let _ = write!(
        o,
        r#"</select></label><button class="primary" type="submit">{}</button></form></section><section class="card">"#,
        esc(t("f.apply"))
    );
    if rows.is_empty() {
        let _ = write!(o, r#"<div class="empty">{}</div>"#, esc(t("missed.none")));
    } else {
        let _ = write!(
            o,
            r#"<div class="sub">{} {}</div>"#,
            rows.len(),
            esc(t("missed.shown"))
        );
        missed_table(&mut o, rows, c.lang, &c.tz, false);
        if more {
            let _ = write!(o, r#"<div class="flash">{}</div>"#, esc(t("missed.more")));
        }
    }
    o.push_str("</section>");
    layout(c, "/missed", t("nav.missed"), &o, "")
}

pub fn customer(c: &Ctx, normalized: &str, calls: &[CallRecord], attempts: &[Attempt]) -> String {
    let t = |k| c.t(k);
    let shown = number(Some(normalized), None, c.lang);
    let mut o = format!(
        r#"<h1>{}: <span class="num">{}</span></h1><section class="card"><h2>{} ({})</h2>"#,
        esc(t("hist.title")),
        esc(&shown),
        esc(t("hist.calls")),
        calls.len()
    );
    if calls.is_empty() {
        let _ = write!(o, r#"<div class="empty">{}</div>"#, esc(t("hist.none")));
    } else {
        let cols = [
            "col.time",
            "col.direction",
            "col.status",
            "col.lost_at",
            "col.wait",
            "col.talk",
            "col.agent",
            "col.resolved",
        ];
        o.push_str(r#"<table class="cards"><thead><tr>"#);
        for k in cols {
            let _ = write!(o, "<th>{}</th>", esc(t(k)));
        }
        o.push_str("</tr></thead><tbody>");
        for r in calls {
            let status = if r.direction == Direction::Callback {
                r.callback_outcome
                    .map(|x| x.as_str())
                    .unwrap_or(status_str(r))
            } else {
                status_str(r)
            };
            let _ = write!(
                o,
                r#"<tr><td data-l="{}">{}</td><td data-l="{}">{}</td><td data-l="{}">{}</td><td data-l="{}">{}</td><td data-l="{}" class="n">{}</td><td data-l="{}" class="n">{}</td><td data-l="{}">{}</td><td data-l="{}">{}</td></tr>"#,
                esc(t(cols[0])),
                esc(&at(r.started_at, &c.tz)),
                esc(t(cols[1])),
                esc(&word(c.lang, direction_str(r.direction))),
                esc(t(cols[2])),
                esc(&word(c.lang, status)),
                esc(t(cols[3])),
                esc(&r
                    .lost_at
                    .map(|l| word(c.lang, l.as_str()))
                    .unwrap_or_else(|| "-".into())),
                esc(t(cols[4])),
                esc(&dur(c.lang, r.wait_secs)),
                esc(t(cols[5])),
                esc(&dur(c.lang, r.talk_secs)),
                esc(t(cols[6])),
                esc(r.agent.as_deref().unwrap_or("-")),
                esc(t(cols[7])),
                esc(&r
                    .resolved_by
                    .map(|b| word(c.lang, b.as_str()))
                    .unwrap_or_else(|| "-".into())),
            );
        }
        o.push_str("</tbody></table>");
    }
    o.push_str("</section>");
    if !attempts.is_empty() {
        let _ = write!(
            o,
            r#"<section class="card"><h2>{}</h2>"#,
            esc(t("hist.attempts"))
        );
        let cols = [
            "col.started",
            "col.id",
            "col.attempts",
            "col.target",
            "col.last",
        ];
        o.push_str(r#"<table class="cards"><thead><tr>"#);
        for k in cols {
            let _ = write!(o, "<th>{}</th>", esc(t(k)));
        }
        o.push_str("</tr></thead><tbody>");
        for a in attempts {
            let _ = write!(
                o,
                r#"<tr><td data-l="{}">{}</td><td data-l="{}" class="n">{}</td><td data-l="{}" class="n">{}</td><td data-l="{}">{}</td><td data-l="{}">{}</td></tr>"#,
                esc(t(cols[0])),
                esc(&at(a.started_at, &c.tz)),
                esc(t(cols[1])),
                a.task_id,
                esc(t(cols[2])),
                a.attempt_no,
                esc(t(cols[3])),
                esc(&a.target),
                esc(t(cols[4])),
                esc(&a
                    .outcome
                    .map(|x| word(c.lang, x.as_str()))
                    .unwrap_or_else(|| t("cb.dialling").to_string())),
            );
        }
        o.push_str("</tbody></table></section>");
    }
    layout(c, "/missed", &shown, &o, "")
}

/// The Report page: the report's own renderer ([`crate::report::html::render_in`], in the
/// page's language) inside the
/// console, so whatever the report shows, the console shows. Its stylesheet comes along.
pub fn report(c: &Ctx, from: &str, to: &str, rendered: &str) -> String {
    let t = |k| c.t(k);
    let style = between(rendered, "<style>", "</style>").unwrap_or("");
    let inner = between(rendered, "<main>", "</main>")
        .or_else(|| between(rendered, "<body>", "</body>"))
        .unwrap_or(rendered);
    let mut o = String::with_capacity(rendered.len() + 2048);
    let _ = write!(
        o,
        r#"<section class="card"><form class="filters" method="get" action="/report"><label>{}<input type="date" name="from" value="{}" required></label><label>{}<input type="date" name="to" value="{}" required></label><button class="primary" type="submit">{}</button></form></section><div class="report" id="report">{inner}</div>"#,
        esc(t("f.from")),
        esc(from),
        esc(t("f.to")),
        esc(to),
        esc(t("f.apply"))
    );
    // The report's CSS styles its own page; inside the console only its parts are wanted.
    let style = style
        .replace("main{", ".report-unused-main{")
        .replace("body{", ".report-unused-body{");
    layout(
        c,
        "/report",
        t("nav.report"),
        &o,
        &format!("<style>{style}</style>"),
    )
}

fn between<'a>(s: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let a = s.find(open)? + open.len();
    let b = a + s[a..].find(close)?;
    Some(&s[a..b])
}

fn direction_str(d: Direction) -> &'static str {
    match d {
        Direction::Inbound => "inbound",
        Direction::Outbound => "outbound",
        Direction::Internal => "internal",
        Direction::Callback => "callback",
    }
}

fn status_str(r: &CallRecord) -> &'static str {
    use crate::calls::record::Status;
    match r.status {
        Status::Answered => "answered",
        Status::Missed => "missed",
        Status::Ignored => "ignored",
        Status::Unknown => "unknown",
    }
}

/// A duration for people ([`crate::report::human_secs`]), with Russian units in Russian.
pub fn dur(lang: Lang, secs: f64) -> String {
    let en = crate::report::human_secs(secs);
    match lang {
        Lang::En => en,
        Lang::Ru => en
            .split(' ')
            .map(|w| match w {
                "s" => "с",
                "m" => "мин",
                "h" => "ч",
                "d" => "д",
                other => other,
            })
            .collect::<Vec<_>>()
            .join(" "),
    }
}

fn queue_input(c: &Ctx, f: &MissedForm) -> String {
    if !f.has_queue {
        return String::new();
    }
    format!(
        r#"<label>{}<input name="queue" value="{}" size="10"></label>"#,
        esc(c.t("f.queue")),
        esc(&f.queue)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_both_languages() {
        assert_eq!(dur(Lang::En, 42.0), "42 s");
        assert_eq!(dur(Lang::Ru, 42.0), "42 с");
        assert_eq!(dur(Lang::Ru, 250.0), "4 мин 10 с");
        assert_eq!(dur(Lang::Ru, 90_000.0), "1 д 1 ч");
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            q("/missed?from=2026-12-01&x=a b"),
            "%2Fmissed%3Ffrom%3D2026-12-01%26x%3Da%20b"
        );
    }
}
