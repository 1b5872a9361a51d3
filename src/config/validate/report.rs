//! `[report]`: the reporting work.

use super::*;

// --- [report] (the reporting work) ---------------------------------------------------------

/// `[report]` and `[report.email]`; `relay` says whether `[notify.email]` is configured (the
/// scheduled report is sent through it).
pub(super) fn report(v: &mut V, r: &RawReport, relay: bool) -> ReportConfig {
    let service_level = v.duration("report.service_level", &r.service_level, "20s");
    let service_level = if service_level.is_zero() || service_level > Duration::from_secs(3600) {
        v.err(
            "report.service_level",
            format!(
                "{} is out of range",
                humantime::format_duration(service_level)
            ),
            Some("between 1s and 1h; call centres usually use \"20s\""),
        );
        Duration::from_secs(20)
    } else {
        service_level
    };
    let email = r.email.as_ref().map(|e| {
        let to = e.to.clone().unwrap_or_default();
        if to.is_empty() {
            v.err(
                "report.email.to",
                "no recipients",
                Some("to = [\"manager@example.com\"]"),
            );
        }
        for (i, t) in to.iter().enumerate() {
            if t.parse::<lettre::Address>().is_err() {
                v.err(
                    format!("report.email.to[{i}]"),
                    format!("{t:?} is not an e-mail address"),
                    None,
                );
            }
        }
        let daily = e.daily.as_deref().and_then(|d| {
            let m = parse_hhmm(d, false);
            if m.is_none() {
                v.err(
                    "report.email.daily",
                    format!("{d:?} is not a time of day"),
                    Some("HH:MM, e.g. \"08:00\""),
                );
            }
            m
        });
        let weekly = e.weekly.as_deref().and_then(|w| {
            let parsed = w
                .trim()
                .split_once(' ')
                .and_then(|(d, t)| Some((weekday(d)?, parse_hhmm(t, false)?)));
            if parsed.is_none() {
                v.err(
                    "report.email.weekly",
                    format!("{w:?} is not a weekday and a time"),
                    Some("e.g. \"mon 08:00\" (mon, tue, wed, thu, fri, sat, sun)"),
                );
            }
            parsed
        });
        if e.daily.is_none() && e.weekly.is_none() {
            v.err(
                "report.email",
                "neither daily nor weekly is set",
                Some("daily = \"08:00\" mails yesterday's report, weekly = \"mon 08:00\" last week's"),
            );
        }
        if !relay {
            v.err(
                "report.email",
                "needs [notify.email]",
                Some("the report is sent through the relay of [notify.email] (smtp_host, from, tls)"),
            );
        }
        let lang = match e.lang.as_deref() {
            None => crate::lang::Lang::En,
            Some(l) => crate::lang::Lang::parse(l).unwrap_or_else(|| {
                v.err(
                    "report.email.lang",
                    format!("{l:?} is not a language of the report"),
                    Some("\"en\" or \"ru\""),
                );
                crate::lang::Lang::En
            }),
        };
        ReportEmailConfig {
            to,
            daily,
            weekly,
            lang,
        }
    });
    ReportConfig {
        service_level,
        email,
    }
}

/// `mon`..`sun`, or the full English name, any case.
fn weekday(s: &str) -> Option<jiff::civil::Weekday> {
    use jiff::civil::Weekday as W;
    let s = s.trim().to_ascii_lowercase();
    let all = [
        ("monday", W::Monday),
        ("tuesday", W::Tuesday),
        ("wednesday", W::Wednesday),
        ("thursday", W::Thursday),
        ("friday", W::Friday),
        ("saturday", W::Saturday),
        ("sunday", W::Sunday),
    ];
    all.iter()
        .find(|(name, _)| s.len() >= 3 && name.starts_with(s.as_str()))
        .map(|(_, d)| *d)
}
