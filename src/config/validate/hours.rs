//! `[hours]`: the business hours, holidays and working days.

use super::*;

/// `[hours]`: the time zone, each weekday's ranges, holidays and extra working days.
pub(super) fn hours(v: &mut V, h: &RawHours) -> HoursConfig {
    let timezone_name = h.timezone.clone().unwrap_or_else(|| "UTC".into());
    let timezone = match jiff::tz::TimeZone::get(&timezone_name) {
        Ok(tz) => tz,
        Err(_) => {
            v.err(
                "hours.timezone",
                format!("unknown time zone {timezone_name:?}"),
                Some("an IANA name like \"Europe/Moscow\""),
            );
            jiff::tz::TimeZone::UTC
        }
    };
    let days = [
        ("monday", &h.monday),
        ("tuesday", &h.tuesday),
        ("wednesday", &h.wednesday),
        ("thursday", &h.thursday),
        ("friday", &h.friday),
        ("saturday", &h.saturday),
        ("sunday", &h.sunday),
    ];
    let mut week: [Vec<DayRange>; 7] = Default::default();
    for (d, (name, ranges)) in days.iter().enumerate() {
        let default: &[&str] = if d < 5 { &["09:00-18:00"] } else { &[] };
        let ranges: Vec<String> = match ranges {
            Some(r) => (*r).clone(),
            None => default.iter().map(|s| s.to_string()).collect(),
        };
        let mut parsed: Vec<DayRange> = Vec::new();
        for (i, r) in ranges.iter().enumerate() {
            match parse_range(r) {
                Some(dr) => parsed.push(dr),
                None => v.err(
                    format!("hours.{name}[{i}]"),
                    format!("invalid range {r:?}"),
                    Some("\"HH:MM-HH:MM\", start before end, \"00:00-24:00\" for all day"),
                ),
            }
        }
        parsed.sort_by_key(|r| r.start_min);
        if parsed.windows(2).any(|w| w[1].start_min < w[0].end_min) {
            v.err(
                format!("hours.{name}"),
                "ranges overlap",
                Some("list separate ranges, e.g. [\"09:00-13:00\", \"14:00-18:00\"]"),
            );
        }
        week[d] = parsed;
    }
    let dates = |v: &mut V, key: &str, raw: &Option<Vec<String>>| -> Vec<jiff::civil::Date> {
        let mut out = Vec::new();
        for (i, s) in raw.iter().flatten().enumerate() {
            match s.parse::<jiff::civil::Date>() {
                Ok(d) => out.push(d),
                Err(_) => v.err(
                    format!("{key}[{i}]"),
                    format!("invalid date {s:?}"),
                    Some("YYYY-MM-DD"),
                ),
            }
        }
        out
    };
    HoursConfig {
        timezone,
        timezone_name,
        week,
        holidays: dates(v, "hours.holidays", &h.holidays),
        workdays: dates(v, "hours.workdays", &h.workdays),
    }
}
