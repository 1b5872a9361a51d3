//! Working hours: is the call centre open at an instant, and when does it open next.
//!
//! Pure: every function takes the instant as an argument. The schedule lives in local civil time
//! of an IANA zone; instants are [`jiff::Timestamp`]s. Converting through the zone (not adding
//! minutes to a UTC midnight) is what keeps "09:00" right on both sides of a DST change:
//! a range start that falls into a spring-forward gap is pushed forward by the gap's length
//! (02:30 in a 02:00->03:00 gap opens at 03:30, as a wall clock that skipped an hour would show),
//! a start in an autumn fold opens at its first occurrence (jiff's "compatible" disambiguation).
//!
//! Day rules, in order: a holiday is closed; an extra working day (`workdays`) uses Monday's
//! ranges; any other date uses its weekday's ranges. `"00:00-24:00"` is the whole day, and a range
//! ending at 24:00 joins one starting at 00:00 the next day into one open stretch.

use std::collections::BTreeSet;

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use jiff::Timestamp;

use crate::config::{DayRange, HoursConfig};

/// How far [`Hours::next_open`] looks ahead before concluding the schedule never opens.
/// Two years covers any list of holidays an admin can write for the coming year.
const LOOKAHEAD_DAYS: i32 = 2 * 366 + 7;

/// A weekly schedule with exceptions, in one time zone.
#[derive(Debug, Clone)]
pub struct Hours {
    tz: TimeZone,
    /// Monday first.
    week: [Vec<DayRange>; 7],
    holidays: BTreeSet<Date>,
    workdays: BTreeSet<Date>,
}

impl Hours {
    pub fn new(
        tz: TimeZone,
        week: [Vec<DayRange>; 7],
        holidays: impl IntoIterator<Item = Date>,
        workdays: impl IntoIterator<Item = Date>,
    ) -> Hours {
        let mut week = week;
        for d in &mut week {
            d.sort_by_key(|r| r.start_min);
        }
        Hours {
            tz,
            week,
            holidays: holidays.into_iter().collect(),
            workdays: workdays.into_iter().collect(),
        }
    }

    pub fn from_config(c: &HoursConfig) -> Hours {
        Hours::new(
            c.timezone.clone(),
            c.week.clone(),
            c.holidays.iter().copied(),
            c.workdays.iter().copied(),
        )
    }

    /// Open all day, every day (tests, `require no schedule`).
    pub fn always(tz: TimeZone) -> Hours {
        let all = vec![DayRange {
            start_min: 0,
            end_min: 1440,
        }];
        Hours::new(tz, std::array::from_fn(|_| all.clone()), [], [])
    }

    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    /// The ranges that apply on a local date.
    pub fn ranges_on(&self, date: Date) -> &[DayRange] {
        if self.holidays.contains(&date) {
            &[]
        } else if self.workdays.contains(&date) {
            &self.week[0]
        } else {
            let wd = date.weekday().to_monday_zero_offset() as usize;
            &self.week[wd]
        }
    }

    /// The instant a local date + minute of day happens (24:00 = next day's 00:00).
    fn instant(&self, date: Date, minute: u16) -> Option<Timestamp> {
        let (date, minute) = if minute >= 1440 {
            (date.tomorrow().ok()?, minute - 1440)
        } else {
            (date, minute)
        };
        let t = Time::new((minute / 60) as i8, (minute % 60) as i8, 0, 0).ok()?;
        let dt = DateTime::from_parts(date, t);
        self.tz
            .to_ambiguous_zoned(dt)
            .compatible()
            .ok()
            .map(|z| z.timestamp())
    }

    /// The open stretches `[start, end)` of one local date, as instants (the report splits its
    /// quarter hours at them).
    pub fn stretches(&self, date: Date) -> impl Iterator<Item = (Timestamp, Timestamp)> + '_ {
        self.ranges_on(date).iter().filter_map(move |r| {
            let s = self.instant(date, r.start_min)?;
            let e = self.instant(date, r.end_min)?;
            (s < e).then_some((s, e))
        })
    }

    /// Is the centre open at `at`?
    pub fn is_open(&self, at: Timestamp) -> bool {
        let date = at.to_zoned(self.tz.clone()).date();
        // The previous date matters only if a range could end after midnight; ours end at 24:00
        // at most, so today's ranges decide. Compare instants rather than wall-clock minutes so
        // a DST jump inside a range cannot shift its end.
        self.stretches(date).any(|(s, e)| s <= at && at < e)
    }

    /// The first instant at or after `after` when the centre is open; `after` itself when open.
    /// `None` when the schedule has no opening within two years (every day closed).
    pub fn next_open(&self, after: Timestamp) -> Option<Timestamp> {
        let mut date = after.to_zoned(self.tz.clone()).date();
        for _ in 0..LOOKAHEAD_DAYS {
            for (s, e) in self.stretches(date) {
                if e > after {
                    return Some(if s > after { s } else { after });
                }
            }
            date = date.tomorrow().ok()?;
        }
        None
    }

    /// When the open stretch containing `at` began, joining stretches that touch across midnight
    /// (Monday 22:00-24:00 + Tuesday 00:00-06:00 opened Monday 22:00). `None` when closed at `at`.
    /// The planner spreads the misses that waited for this opening.
    pub fn opened_at(&self, at: Timestamp) -> Option<Timestamp> {
        let mut date = at.to_zoned(self.tz.clone()).date();
        let (mut start, _) = self.stretches(date).find(|&(s, e)| s <= at && at < e)?;
        // Walk back while the previous stretch ends exactly where this one starts. A week back is
        // enough: an opening older than that is long past any spread window (a 24/7 schedule
        // would otherwise walk two years on every call).
        for _ in 0..8 {
            let same_day = self.stretches(date).find(|&(_, e)| e == start);
            if let Some((s, _)) = same_day {
                start = s;
                continue;
            }
            let prev = date.yesterday().ok()?;
            match self.stretches(prev).find(|&(_, e)| e == start) {
                Some((s, _)) => {
                    start = s;
                    date = prev;
                }
                None => break,
            }
        }
        Some(start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_range;
    use jiff::civil::date;

    fn r(s: &str) -> DayRange {
        parse_range(s).unwrap()
    }

    /// Moscow weekdays 09-13 + 14-18, weekends closed; 2026-12-31 holiday; 2026-12-26 (Sat) worked.
    fn moscow() -> Hours {
        crate::test_support::moscow_weekdays(&[date(2026, 12, 31)], &[date(2026, 12, 26)])
    }

    fn at(h: &Hours, s: &str) -> Timestamp {
        s.parse::<DateTime>()
            .unwrap()
            .to_zoned(h.tz.clone())
            .unwrap()
            .timestamp()
    }

    #[test]
    fn lunch_break_and_edges() {
        let h = moscow();
        // 2026-12-21 is a Monday.
        assert!(!h.is_open(at(&h, "2026-12-21T08:59:59")));
        assert!(h.is_open(at(&h, "2026-12-21T09:00:00")));
        assert!(h.is_open(at(&h, "2026-12-21T12:59:59")));
        assert!(!h.is_open(at(&h, "2026-12-21T13:00:00")));
        assert!(!h.is_open(at(&h, "2026-12-21T13:30:00")));
        assert_eq!(
            h.next_open(at(&h, "2026-12-21T13:30:00")),
            Some(at(&h, "2026-12-21T14:00:00"))
        );
        assert!(!h.is_open(at(&h, "2026-12-21T18:00:00")));
    }

    #[test]
    fn across_midnight_and_weekend() {
        let h = moscow();
        // Friday evening -> Monday morning (2026-12-25 is a Friday; 26th is an extra workday).
        let fri = at(&h, "2026-12-18T19:00:00");
        assert_eq!(h.next_open(fri), Some(at(&h, "2026-12-21T09:00:00")));
        // Just before midnight on a Monday -> Tuesday 09:00.
        assert_eq!(
            h.next_open(at(&h, "2026-12-21T23:59:59")),
            Some(at(&h, "2026-12-22T09:00:00"))
        );
    }

    #[test]
    fn holiday_and_extra_workday() {
        let h = moscow();
        // Saturday 2026-12-26 is worked with Monday's hours.
        assert!(h.is_open(at(&h, "2026-12-26T10:00:00")));
        assert!(!h.is_open(at(&h, "2026-12-26T13:30:00")));
        // Thursday 2026-12-31 is a holiday: next opening is Friday 2027-01-01 09:00.
        assert!(!h.is_open(at(&h, "2026-12-31T10:00:00")));
        assert_eq!(
            h.next_open(at(&h, "2026-12-30T18:00:00")),
            Some(at(&h, "2027-01-01T09:00:00"))
        );
    }

    #[test]
    fn all_day_ranges_join_across_midnight() {
        let all = vec![r("00:00-24:00")];
        let h = Hours::new(
            TimeZone::get("Europe/Moscow").unwrap(),
            [
                all.clone(),
                all.clone(),
                vec![],
                vec![],
                vec![],
                vec![],
                vec![],
            ],
            [],
            [],
        );
        // Monday 2026-12-21 + Tuesday: open through midnight, opened Monday 00:00.
        let t = at(&h, "2026-12-22T00:00:00");
        assert!(h.is_open(t));
        assert!(h.is_open(at(&h, "2026-12-21T23:59:59")));
        assert_eq!(h.opened_at(t), Some(at(&h, "2026-12-21T00:00:00")));
        assert!(!h.is_open(at(&h, "2026-12-23T00:00:00")));
        assert_eq!(
            h.next_open(at(&h, "2026-12-23T05:00:00")),
            Some(at(&h, "2026-12-28T00:00:00"))
        );
    }

    #[test]
    fn dst_changes() {
        // Berlin: 2026-03-29 02:00 -> 03:00 (gap), 2026-10-25 03:00 -> 02:00 (fold). Both Sundays.
        let tz = TimeZone::get("Europe/Berlin").unwrap();
        let sun = vec![r("02:30-04:00")];
        let h = Hours::new(
            tz.clone(),
            [vec![], vec![], vec![], vec![], vec![], vec![], sun],
            [],
            [],
        );
        // 02:30 does not exist on 2026-03-29: the range opens at 03:30 CEST (= 01:30 UTC).
        let sat = "2026-03-28T12:00:00Z".parse::<Timestamp>().unwrap();
        let open = h.next_open(sat).unwrap();
        assert_eq!(open, "2026-03-29T01:30:00Z".parse::<Timestamp>().unwrap());
        assert!(h.is_open(open));
        assert!(!h.is_open("2026-03-29T01:29:59Z".parse().unwrap()));
        // The range ends at 04:00 CEST = 02:00 UTC.
        assert!(!h.is_open("2026-03-29T02:00:00Z".parse().unwrap()));
        // Autumn: 02:30 happens twice; opening is the first one (CEST, 00:30 UTC), and the range
        // lasts until 04:00 CET (03:00 UTC): 2.5 real hours.
        let open = h
            .next_open("2026-10-24T12:00:00Z".parse().unwrap())
            .unwrap();
        assert_eq!(open, "2026-10-25T00:30:00Z".parse::<Timestamp>().unwrap());
        assert!(h.is_open("2026-10-25T02:59:59Z".parse().unwrap()));
        assert!(!h.is_open("2026-10-25T03:00:00Z".parse().unwrap()));
        // A Monday-morning range in UTC offsets of both sides of the change stays at 09:00 local.
        let wd = vec![r("09:00-18:00")];
        let h = Hours::new(tz, std::array::from_fn(|_| wd.clone()), [], []);
        assert_eq!(
            h.next_open("2026-03-29T12:00:00Z".parse().unwrap()),
            Some("2026-03-29T12:00:00Z".parse().unwrap())
        );
        assert_eq!(
            h.next_open("2026-03-29T17:00:00Z".parse().unwrap()),
            Some("2026-03-30T07:00:00Z".parse().unwrap())
        );
        assert_eq!(
            h.next_open("2026-03-28T17:00:00Z".parse().unwrap()),
            Some("2026-03-29T07:00:00Z".parse().unwrap())
        );
    }

    #[test]
    fn never_open() {
        let h = Hours::new(TimeZone::UTC, Default::default(), [], []);
        assert_eq!(h.next_open(Timestamp::UNIX_EPOCH), None);
        assert_eq!(h.opened_at(Timestamp::UNIX_EPOCH), None);
    }

    #[test]
    fn opened_at_after_lunch() {
        let h = moscow();
        assert_eq!(
            h.opened_at(at(&h, "2026-12-21T14:05:00")),
            Some(at(&h, "2026-12-21T14:00:00"))
        );
        assert_eq!(h.opened_at(at(&h, "2026-12-21T13:05:00")), None);
    }
}
