//! The scheduled report e-mail (`[report.email]`): yesterday's report every day at a set time,
//! last week's (Monday to Sunday) on a set weekday, as an HTML page with its charts inline,
//! through `[notify.email]`'s relay.
//!
//! The schedule is pure ([`latest_due`], [`next_due`]: local times of `hours.timezone`, so
//! "08:00" stays 08:00 across DST changes). [`send_due`] mails what is due at `now` and not
//! mailed yet (a `report_mail_sent` row per kind and period, so a restart never mails twice and
//! a daemon that was down at 08:00 but is back by 20:00 still sends the day's mail:
//! [`CATCH_UP`]). [`run`] is the daemon's loop around it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ReportEmailConfig};
use crate::notify::email::{self, ReportMail};
use crate::store::Store;

/// How late a scheduled mail is still sent (the daemon was down or the relay refused).
pub const CATCH_UP: SignedDuration = SignedDuration::from_hours(12);

/// The loop wakes at least this often, so a clock change or a DST jump is noticed.
const MAX_SLEEP: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Daily,
    Weekly,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Daily => "daily",
            Kind::Weekly => "weekly",
        }
    }
}

/// One scheduled mail: when, and the period `[from, to)` it reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    pub kind: Kind,
    pub at: Timestamp,
    pub from: Timestamp,
    pub to: Timestamp,
}

fn midnight(d: Date, tz: &TimeZone) -> Option<Timestamp> {
    d.to_zoned(tz.clone()).ok().map(|z| z.timestamp())
}

fn at_minute(d: Date, minute: u16, tz: &TimeZone) -> Option<Timestamp> {
    let t = jiff::civil::Time::new((minute / 60) as i8, (minute % 60) as i8, 0, 0).ok()?;
    tz.to_ambiguous_zoned(d.to_datetime(t))
        .compatible()
        .ok()
        .map(|z| z.timestamp())
}

fn days(d: Date, n: i64) -> Option<Date> {
    d.checked_add(jiff::Span::new().days(n)).ok()
}

/// The mails scheduled on local date `d`.
fn on_date(cfg: &ReportEmailConfig, tz: &TimeZone, d: Date) -> Vec<Due> {
    let mut out = Vec::new();
    if let Some(m) = cfg.daily {
        if let (Some(at), Some(from), Some(to)) = (
            at_minute(d, m, tz),
            days(d, -1).and_then(|y| midnight(y, tz)),
            midnight(d, tz),
        ) {
            out.push(Due {
                kind: Kind::Daily,
                at,
                from,
                to,
            });
        }
    }
    if let Some((wd, m)) = cfg.weekly {
        if d.weekday() == wd {
            let monday = days(d, -i64::from(d.weekday().to_monday_zero_offset()));
            if let (Some(at), Some(from), Some(to)) = (
                at_minute(d, m, tz),
                monday
                    .and_then(|m| days(m, -7))
                    .and_then(|m| midnight(m, tz)),
                monday.and_then(|m| midnight(m, tz)),
            ) {
                out.push(Due {
                    kind: Kind::Weekly,
                    at,
                    from,
                    to,
                });
            }
        }
    }
    out
}

/// For each kind, the latest scheduled mail at or before `now`.
pub fn latest_due(cfg: &ReportEmailConfig, tz: &TimeZone, now: Timestamp) -> Vec<Due> {
    let today = now.to_zoned(tz.clone()).date();
    let mut out: Vec<Due> = Vec::new();
    for back in 0..8 {
        let Some(d) = days(today, -back) else { break };
        for due in on_date(cfg, tz, d) {
            if due.at <= now && !out.iter().any(|o| o.kind == due.kind) {
                out.push(due);
            }
        }
    }
    out
}

/// The first scheduled mail after `now`.
pub fn next_due(cfg: &ReportEmailConfig, tz: &TimeZone, now: Timestamp) -> Option<Timestamp> {
    let today = now.to_zoned(tz.clone()).date();
    (0..9)
        .filter_map(|k| days(today, k))
        .flat_map(|d| on_date(cfg, tz, d))
        .map(|d| d.at)
        .filter(|at| *at > now)
        .min()
}

/// Why a scheduled mail was not sent.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("report: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("sending the report: {0}")]
    Send(String),
}

/// The mail of one report.
pub fn compose(cfg: &Config, due: &Due, report: &super::Report) -> ReportMail {
    let tz = &cfg.hours.timezone;
    let first = due.from.to_zoned(tz.clone()).date();
    let last = due
        .to
        .checked_sub(SignedDuration::from_secs(1))
        .unwrap_or(due.to)
        .to_zoned(tz.clone())
        .date();
    let period = if first == last {
        first.to_string()
    } else {
        format!("{first} - {last}")
    };
    let i = &report.inbound;
    ReportMail {
        to: cfg
            .report
            .email
            .as_ref()
            .map(|e| e.to.clone())
            .unwrap_or_default(),
        subject: format!(
            "Calls report {period}: {} inbound, {} missed ({}), service level {}",
            i.total,
            i.missed,
            super::percent(i.missed_share, i.total),
            super::percent(report.service_level.share, report.service_level.offered)
        ),
        text: super::text::render(report, tz),
        html: super::html::render_in(
            report,
            tz,
            cfg.report
                .email
                .as_ref()
                .map(|e| e.lang)
                .unwrap_or_default(),
        ),
        id: format!("report-{}-{first}", due.kind.as_str()),
        date: due
            .at
            .to_zoned(tz.clone())
            .strftime("%a, %d %b %Y %H:%M:%S %z")
            .to_string(),
    }
}

/// Mails every report due at `now` (within [`CATCH_UP`]) that was not mailed yet; returns
/// those it mailed. Stops at the first failure (the caller retries later).
pub async fn send_due(cfg: &Config, db: &Path, now: Timestamp) -> Result<Vec<Due>, MailError> {
    let (Some(sched), Some(relay)) = (&cfg.report.email, &cfg.notify.email) else {
        return Ok(Vec::new());
    };
    let mut sent = Vec::new();
    for due in latest_due(sched, &cfg.hours.timezone, now) {
        if now.duration_since(due.at) > CATCH_UP {
            continue;
        }
        let (c, path) = (cfg.clone(), db.to_path_buf());
        // The report reads SQLite (up to a second on a year of a busy centre): not on the
        // runtime's threads.
        let built = tokio::task::spawn_blocking(move || -> Result<_, MailError> {
            let store = Store::open(&path)?;
            if store.report_mail_sent(due.kind.as_str(), due.from)? {
                return Ok(None);
            }
            let report =
                super::Report::load(&store, &super::Settings::from_config(&c), due.from, due.to)?;
            Ok(Some(compose(&c, &due, &report)))
        })
        .await
        .map_err(|e| MailError::Send(format!("report task failed: {e}")))??;
        let Some(mail) = built else { continue };
        email::send_report(relay, &mail)
            .await
            .map_err(|e| MailError::Send(e.chain()))?;
        Store::open(db)?.mark_report_mail_sent(due.kind.as_str(), due.from, now)?;
        tracing::info!(kind = due.kind.as_str(), period_start = %due.from, recipients = mail.to.len(), "report mailed");
        sent.push(due);
    }
    Ok(sent)
}

/// The daemon's loop: mail what is due, sleep until the next mail (or a retry after
/// `notify.email.retry_every` when sending failed), until `shutdown`.
pub async fn run(cfg: Arc<Config>, db: PathBuf, shutdown: CancellationToken) {
    let Some(sched) = cfg.report.email.clone() else {
        return;
    };
    let retry = cfg
        .notify
        .email
        .as_ref()
        .map(|e| e.retry_every)
        .unwrap_or(Duration::from_secs(60));
    loop {
        let now = Timestamp::now();
        let wait = match send_due(&cfg, &db, now).await {
            Ok(_) => next_due(&sched, &cfg.hours.timezone, now)
                .map(|t| t.duration_since(now).unsigned_abs())
                .unwrap_or(MAX_SLEEP),
            Err(e) => {
                tracing::warn!(error = %e, retry_in = %humantime::format_duration(retry), "scheduled report not mailed yet");
                retry
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait.clamp(Duration::from_secs(1), MAX_SLEEP)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::Weekday;

    fn cfg(daily: Option<u16>, weekly: Option<(Weekday, u16)>) -> ReportEmailConfig {
        ReportEmailConfig {
            to: vec!["boss@example.com".into()],
            daily,
            weekly,
            lang: crate::lang::Lang::En,
        }
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn daily_reports_yesterday_in_local_time() {
        let tz = TimeZone::get("Europe/Moscow").unwrap();
        let c = cfg(Some(8 * 60), None);
        // 2026-12-03 07:59 Moscow: the latest is the 2nd's mail (reporting the 1st).
        let due = latest_due(&c, &tz, ts("2026-12-03T04:59:00Z"));
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].at, ts("2026-12-02T05:00:00Z"));
        assert_eq!(
            (due[0].from, due[0].to),
            (ts("2026-11-30T21:00:00Z"), ts("2026-12-01T21:00:00Z"))
        );
        assert_eq!(
            next_due(&c, &tz, ts("2026-12-03T04:59:00Z")),
            Some(ts("2026-12-03T05:00:00Z"))
        );
        // At 08:00 exactly, that day's mail is due.
        let due = latest_due(&c, &tz, ts("2026-12-03T05:00:00Z"));
        assert_eq!(due[0].from, ts("2026-12-01T21:00:00Z"));
    }

    #[test]
    fn weekly_reports_the_last_whole_week_and_dst_keeps_the_wall_time() {
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        // Wednesday 09:30: Monday..Sunday of the week before.
        let c = cfg(None, Some((Weekday::Wednesday, 9 * 60 + 30)));
        let due = latest_due(&c, &berlin, ts("2026-03-26T12:00:00Z"));
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].kind, Kind::Weekly);
        assert_eq!(due[0].at, ts("2026-03-25T08:30:00Z"));
        assert_eq!(
            (due[0].from, due[0].to),
            (ts("2026-03-15T23:00:00Z"), ts("2026-03-22T23:00:00Z"))
        );
        // After the clocks move (29 March), 09:30 is 07:30 UTC.
        assert_eq!(
            next_due(&c, &berlin, ts("2026-03-26T12:00:00Z")),
            Some(ts("2026-04-01T07:30:00Z"))
        );
        // Both kinds at once.
        let both = cfg(Some(7 * 60), Some((Weekday::Wednesday, 9 * 60 + 30)));
        assert_eq!(
            latest_due(&both, &berlin, ts("2026-03-26T12:00:00Z")).len(),
            2
        );
    }
}
