//! The report as CSV: one figure a row, `section,name,metric,value`, for a spreadsheet or a
//! script. Shares are fractions (0.25), durations seconds; a figure with no value (an average of
//! nothing) is an empty cell. Values from outside (queue, agent and DID names, numbers) are
//! escaped as `missed --format csv` escapes them, and a cell starting with `=`, `+`, `-` or `@`
//! is prefixed with `'` so that a spreadsheet never runs it as a formula.

use super::{Breakdown, Bucket, Report, Split};

struct Out {
    w: csv::Writer<Vec<u8>>,
}

fn safe(s: &str) -> String {
    let s = super::text::escape_unsafe(s);
    if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.into_owned()
    }
}

impl Out {
    fn row(&mut self, section: &str, name: &str, metric: &str, value: String) -> csv::Result<()> {
        self.w.write_record([section, &safe(name), metric, &value])
    }
    fn n(&mut self, section: &str, name: &str, metric: &str, v: u64) -> csv::Result<()> {
        self.row(section, name, metric, v.to_string())
    }
    fn f(&mut self, section: &str, name: &str, metric: &str, v: f64) -> csv::Result<()> {
        self.row(section, name, metric, format!("{v:.6}"))
    }
    fn o(&mut self, section: &str, name: &str, metric: &str, v: Option<f64>) -> csv::Result<()> {
        self.row(
            section,
            name,
            metric,
            v.map(|v| format!("{v:.3}")).unwrap_or_default(),
        )
    }
    fn split(&mut self, section: &str, name: &str, s: &Split) -> csv::Result<()> {
        self.n(section, name, "inbound", s.inbound)?;
        self.n(section, name, "answered", s.answered)?;
        self.n(section, name, "missed", s.missed)?;
        self.f(section, name, "missed_share", s.missed_share)?;
        self.f(section, name, "service_level", s.service_level)?;
        self.o(section, name, "asa_secs", s.asa_secs)?;
        self.n(section, name, "abandoned", s.abandoned)?;
        self.f(section, name, "abandon_rate", s.abandon_rate)?;
        self.n(section, name, "withheld_missed", s.withheld_missed)?;
        self.o(section, name, "avg_talk_secs", s.avg_talk_secs)?;
        self.n(section, name, "ignored", s.ignored)
    }
    fn buckets(&mut self, section: &str, b: &[Bucket]) -> csv::Result<()> {
        b.iter()
            .try_for_each(|b| self.n(section, &b.label, "count", b.count))
    }
    fn breakdown(&mut self, section: &str, rows: &[Breakdown]) -> csv::Result<()> {
        rows.iter()
            .try_for_each(|b| self.split(section, b.name.as_deref().unwrap_or(""), &b.figures))
    }
}

/// The CSV text of a report.
pub fn render(r: &Report) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let mut o = Out {
        w: csv::Writer::from_writer(Vec::new()),
    };
    o.w.write_record(["section", "name", "metric", "value"])?;
    o.row("period", "", "from", r.from.to_string())?;
    o.row("period", "", "to", r.to.to_string())?;
    o.row("period", "", "timezone", r.timezone.clone())?;
    let i = &r.inbound;
    for (m, v) in [
        ("total", i.total),
        ("answered", i.answered),
        ("missed", i.missed),
        ("resolved", i.resolved),
        ("ignored", i.ignored),
        ("unknown", i.unknown),
        ("withheld", i.withheld),
        ("withheld_missed", i.withheld_missed),
        ("callable_missed", i.callable_missed),
    ] {
        o.n("inbound", "", m, v)?;
    }
    o.f("inbound", "", "missed_share", i.missed_share)?;
    o.f("inbound", "", "resolved_share", i.resolved_share)?;
    let sl = &r.service_level;
    o.f("service_level", "", "threshold_secs", sl.threshold_secs)?;
    o.n("service_level", "", "offered", sl.offered)?;
    o.n("service_level", "", "answered_within", sl.answered_within)?;
    o.f("service_level", "", "share", sl.share)?;
    o.o("service_level", "", "asa_secs", sl.asa_secs)?;
    o.n("service_level", "", "abandoned", sl.abandoned)?;
    o.f("service_level", "", "abandon_rate", sl.abandon_rate)?;
    o.split("open_hours", "", &r.open_hours)?;
    o.split("after_hours", "", &r.after_hours)?;
    o.split("weekdays", "", &r.weekdays)?;
    o.split("weekends", "", &r.weekends)?;
    o.breakdown("by_queue", &r.by_queue)?;
    o.breakdown("by_agent", &r.by_agent)?;
    o.breakdown("by_did", &r.by_did)?;
    o.buckets("missed_waits", &r.waits)?;
    o.buckets("answered_waits", &r.answered_waits)?;
    o.o("missed_waits", "", "avg_secs", r.wait_avg_secs)?;
    o.buckets("lost_at", &r.lost_at)?;
    o.buckets("resolved_by", &r.resolved_by)?;
    for row in &r.reaction {
        o.n("reaction", &row.label, "caller", row.caller)?;
        o.n("reaction", &row.label, "agent", row.agent)?;
        o.n("reaction", &row.label, "callback", row.callback)?;
    }
    o.o("reaction", "", "avg_secs", r.reaction_avg_secs)?;
    let c = &r.callbacks;
    o.n("callbacks", "", "attempts", c.attempts)?;
    o.n("callbacks", "", "connected", c.connected)?;
    o.f("callbacks", "", "success_rate", c.success_rate)?;
    o.n("callbacks", "", "attempts_pending", c.attempts_pending)?;
    for b in &c.attempts_by_outcome {
        o.n("callbacks", &b.label, "attempts", b.count)?;
    }
    for b in &c.tasks_by_state {
        o.n("callback_tasks", &b.label, "tasks", b.count)?;
    }
    o.buckets("callback_reached_after", &c.reached_after)?;
    o.o(
        "callback_reached_after",
        "",
        "avg_secs",
        c.reached_after_avg_secs,
    )?;
    for (section, slots) in [
        ("by_hour", &r.by_hour),
        ("by_weekday", &r.by_weekday),
        ("by_day", &r.by_day),
    ] {
        for s in slots {
            o.n(section, &s.label, "inbound", s.inbound)?;
            o.n(section, &s.label, "missed", s.missed)?;
        }
    }
    if let Some(p) = &r.previous {
        o.row("previous", "", "from", p.from.to_string())?;
        o.row("previous", "", "to", p.to.to_string())?;
        o.split("previous", "", &p.figures)?;
        o.f("previous", "", "resolved_share", p.resolved_share)?;
        let ch = &p.change;
        o.row("change", "", "inbound", ch.inbound.to_string())?;
        o.row("change", "", "missed", ch.missed.to_string())?;
        o.f("change", "", "missed_share", ch.missed_share)?;
        o.f("change", "", "service_level", ch.service_level)?;
        o.o("change", "", "asa_secs", ch.asa_secs)?;
        o.f("change", "", "abandon_rate", ch.abandon_rate)?;
        o.f("change", "", "resolved_share", ch.resolved_share)?;
    }
    let bytes = o.w.into_inner().map_err(|e| e.to_string())?;
    Ok(String::from_utf8(bytes)?)
}
