//! The aggregation at its edges: bucket boundaries, local time in a non-UTC zone, empty input.

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use super::*;
use crate::calls::record::{CallRecord, CallbackOutcome, Direction, LostAt, ResolvedBy, Status};
use crate::store::report::CallbackCounts;
use crate::test_support::inbound_miss;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// An inbound call that started at `start` (RFC 3339) and waited `wait` seconds.
fn call(id: &str, start: &str, status: Status, wait: f64) -> CallRecord {
    CallRecord {
        status,
        missed: status == Status::Missed,
        ignored: status == Status::Ignored,
        lost_at: (status == Status::Missed).then_some(LostAt::Queue),
        ..inbound_miss(id, ts(start), wait)
    }
}

fn resolved(mut r: CallRecord, by: ResolvedBy, after_secs: f64) -> CallRecord {
    r.resolved_by = Some(by);
    r.resolved_at = Some(r.ended_at + SignedDuration::from_secs_f64(after_secs));
    r
}

fn build(records: &[CallRecord], tz: &TimeZone) -> Report {
    Report::build(
        records,
        &CallbackCounts::default(),
        tz,
        "test",
        ts("2026-11-01T00:00:00Z"),
        ts("2026-12-01T00:00:00Z"),
    )
}

fn counts(b: &[Bucket]) -> Vec<u64> {
    b.iter().map(|b| b.count).collect()
}

#[test]
fn wait_buckets_are_lower_inclusive() {
    let waits = [0.0, 9.99, 10.0, 29.999, 30.0, 59.99, 60.0, 3600.0];
    let records: Vec<_> = waits
        .iter()
        .enumerate()
        .map(|(i, w)| call(&i.to_string(), "2026-11-16T10:00:00Z", Status::Missed, *w))
        .collect();
    let r = build(&records, &TimeZone::UTC);
    assert_eq!(counts(&r.waits), vec![2, 2, 2, 1, 0, 1]);
    assert_eq!(r.waits[1].label, "10-30 s");
    // Garbage from a bad row lands in the first bucket instead of panicking.
    assert_eq!(bucket_index(&WAIT_BUCKETS, f64::NAN), 0);
    assert_eq!(bucket_index(&WAIT_BUCKETS, -5.0), 0);
}

#[test]
fn reaction_buckets_at_their_edges() {
    let edges = [
        (299.0, 0),
        (300.0, 1),
        (899.9, 1),
        (900.0, 2),
        (1800.0, 3),
        (3600.0, 4),
        (7200.0, 5),
        (14400.0, 6),
        (32399.0, 6),
        (32400.0, 7),
        (86399.0, 7),
        (86400.0, 8),
        (10.0 * 86400.0, 8),
    ];
    for (secs, want) in edges {
        assert_eq!(bucket_index(&REACTION_BUCKETS, secs), want, "{secs} s");
    }
    let records = vec![
        resolved(
            call("a", "2026-11-16T10:00:00Z", Status::Missed, 20.0),
            ResolvedBy::Caller,
            299.0,
        ),
        resolved(
            call("b", "2026-11-16T10:00:00Z", Status::Missed, 20.0),
            ResolvedBy::Agent,
            300.0,
        ),
        resolved(
            call("c", "2026-11-16T10:00:00Z", Status::Missed, 20.0),
            ResolvedBy::Callback,
            86400.0,
        ),
        call("d", "2026-11-16T10:00:00Z", Status::Missed, 20.0),
    ];
    let r = build(&records, &TimeZone::UTC);
    assert_eq!((r.reaction[0].caller, r.reaction[0].total), (1, 1));
    assert_eq!((r.reaction[1].agent, r.reaction[1].total), (1, 1));
    assert_eq!(
        (r.reaction[8].callback, r.reaction[8].label.as_str()),
        (1, ">24 h")
    );
    assert_eq!(counts(&r.resolved_by), vec![1, 1, 1, 1]);
    assert_eq!(r.inbound.resolved, 3);
    let avg = r.reaction_avg_secs.unwrap();
    assert!(
        (avg - (299.0 + 300.0 + 86400.0) / 3.0).abs() < 1e-6,
        "{avg}"
    );
    assert_eq!(r.recent_unresolved.len(), 1);
}

#[test]
fn hour_and_weekend_follow_the_configured_zone() {
    let moscow = TimeZone::get("Europe/Moscow").unwrap();
    // Friday 22:30 UTC is Saturday 01:30 in Moscow (UTC+3): a weekend call at hour 01.
    let records = vec![
        call("sat", "2026-11-20T22:30:00Z", Status::Missed, 15.0),
        // Sunday 20:59 UTC = Sunday 23:59 Moscow; Sunday 21:00 UTC = Monday 00:00 Moscow.
        call("sun", "2026-11-22T20:59:00Z", Status::Answered, 5.0),
        call("mon", "2026-11-22T21:00:00Z", Status::Answered, 5.0),
    ];
    let r = build(&records, &moscow);
    assert_eq!(r.by_hour[1].inbound, 1);
    assert_eq!(r.by_hour[1].missed, 1);
    assert_eq!(r.by_hour[23].inbound, 1);
    assert_eq!(r.by_hour[0].inbound, 1);
    assert_eq!(r.by_hour[22].inbound, 0, "UTC hour must not be used");
    assert_eq!(r.by_weekday[5].label, "Sat");
    assert_eq!((r.by_weekday[5].inbound, r.by_weekday[5].missed), (1, 1));
    assert_eq!(r.by_weekday[6].inbound, 1);
    assert_eq!(r.by_weekday[0].inbound, 1);
    assert_eq!((r.weekends.inbound, r.weekends.missed), (2, 1));
    assert_eq!(r.weekends.missed_share, 0.5);
    assert_eq!((r.weekdays.inbound, r.weekdays.missed), (1, 0));
    assert_eq!(r.weekdays.missed_share, 0.0);
    // In UTC the same calls fall on Friday and Sunday, Sunday, Sunday.
    let utc = build(&records, &TimeZone::UTC);
    assert_eq!((utc.weekdays.inbound, utc.weekends.inbound), (1, 2));
    assert_eq!(utc.by_hour[22].inbound, 1);
}

#[test]
fn hour_of_day_follows_daylight_saving_changes() {
    let berlin = TimeZone::get("Europe/Berlin").unwrap();
    // 2026-03-29: clocks go 02:00 -> 03:00 CET -> CEST. 00:30 UTC is 01:30 (UTC+1), 01:30 UTC is
    // 03:30 (UTC+2): no call is ever at hour 02 that day.
    let records = vec![
        call("a", "2026-03-29T00:30:00Z", Status::Missed, 12.0),
        call("b", "2026-03-29T01:30:00Z", Status::Answered, 12.0),
        // Summer: 03:00 in Berlin; in New York (UTC-4) still Sunday evening, 21:00.
        call("c", "2026-06-01T01:00:00Z", Status::Missed, 12.0),
    ];
    let year = |tz: &TimeZone| {
        Report::build(
            &records,
            &CallbackCounts::default(),
            tz,
            "test",
            ts("2026-01-01T00:00:00Z"),
            ts("2027-01-01T00:00:00Z"),
        )
    };
    let r = year(&berlin);
    assert_eq!(
        (
            r.by_hour[1].inbound,
            r.by_hour[2].inbound,
            r.by_hour[3].inbound
        ),
        (1, 0, 2)
    );
    let ny = year(&TimeZone::get("America/New_York").unwrap());
    assert_eq!(ny.by_hour[21].missed, 1);
    assert_eq!(ny.by_weekday[6].missed, 1);
    // The March calls are Saturday evening there: all three are weekend calls, two missed.
    assert_eq!((ny.weekends.inbound, ny.weekends.missed), (3, 2));
}

#[test]
fn days_of_the_period_in_local_time() {
    let moscow = TimeZone::get("Europe/Moscow").unwrap();
    // 21:30 UTC on the 16th is already the 17th in Moscow.
    let records = vec![
        call("a", "2026-11-16T20:59:00Z", Status::Missed, 10.0),
        call("b", "2026-11-16T21:30:00Z", Status::Answered, 10.0),
        call("early", "2026-11-13T10:00:00Z", Status::Answered, 10.0),
    ];
    let r = Report::build(
        &records,
        &CallbackCounts::default(),
        &moscow,
        "Europe/Moscow",
        ts("2026-11-15T21:00:00Z"),
        ts("2026-11-18T09:00:00Z"),
    );
    let days: Vec<(&str, u64, u64)> = r
        .by_day
        .iter()
        .map(|s| (s.label.as_str(), s.inbound, s.missed))
        .collect();
    assert_eq!(
        days,
        vec![("11-16", 1, 1), ("11-17", 1, 0), ("11-18", 0, 0)]
    );
    // A period too long for a bar per day has none, rather than an unreadable chart.
    let long = Report::build(
        &records,
        &CallbackCounts::default(),
        &moscow,
        "Europe/Moscow",
        ts("2026-01-01T00:00:00Z"),
        ts("2026-11-18T09:00:00Z"),
    );
    assert!(long.by_day.is_empty());
    assert_eq!(long.inbound.total, 3);
}

#[test]
fn numbers_missed_more_than_once() {
    let with = |id: &str, start: &str, number: &str, status: Status| {
        let mut r = call(id, start, status, 20.0);
        r.caller = Some(format!("+{number}"));
        r.caller_normalized = Some(number.to_string());
        r
    };
    let records = vec![
        with("a1", "2026-11-16T10:00:00Z", "79160000001", Status::Missed),
        with("a2", "2026-11-16T11:00:00Z", "79160000001", Status::Missed),
        resolved(
            with("a3", "2026-11-16T12:00:00Z", "79160000001", Status::Missed),
            ResolvedBy::Callback,
            60.0,
        ),
        with("b1", "2026-11-16T10:00:00Z", "79160000002", Status::Missed),
        with("b2", "2026-11-16T13:00:00Z", "79160000002", Status::Missed),
        // Answered and accidental calls of the number are not misses.
        with(
            "b3",
            "2026-11-16T14:00:00Z",
            "79160000002",
            Status::Answered,
        ),
        with("b4", "2026-11-16T15:00:00Z", "79160000002", Status::Ignored),
        with("c1", "2026-11-16T10:00:00Z", "79160000003", Status::Missed),
    ];
    let r = build(&records, &TimeZone::UTC);
    let got: Vec<(&str, u64, u64, &str)> = r
        .repeat_callers
        .iter()
        .map(|c| {
            (
                c.caller_normalized.as_str(),
                c.misses,
                c.unresolved,
                c.last.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("79160000001", 3, 2, "2026-11-16 12:00"),
            ("79160000002", 2, 2, "2026-11-16 13:00"),
        ]
    );
}

#[test]
fn ignored_and_unknown_are_counted_apart_from_misses() {
    let mut outbound = call("o", "2026-11-16T10:00:00Z", Status::Missed, 5.0);
    outbound.direction = Direction::Outbound;
    // The tracker marks an accidental call missed *and* ignored.
    let mut accidental = call("i2", "2026-11-16T10:00:00Z", Status::Ignored, 1.0);
    accidental.missed = true;
    let records = vec![
        accidental,
        call("a", "2026-11-16T10:00:00Z", Status::Answered, 5.0),
        call("m", "2026-11-16T10:00:00Z", Status::Missed, 40.0),
        call("i", "2026-11-16T10:00:00Z", Status::Ignored, 1.0),
        call("u", "2026-11-16T10:00:00Z", Status::Unknown, 100.0),
        outbound,
    ];
    let r = build(&records, &TimeZone::UTC);
    assert_eq!(r.inbound.total, 2);
    assert_eq!(r.inbound.answered, 1);
    assert_eq!(r.inbound.missed, 1);
    assert_eq!(r.inbound.missed_share, 0.5);
    assert_eq!(r.inbound.ignored, 2);
    assert_eq!(r.inbound.unknown, 1);
    assert_eq!(counts(&r.waits), vec![0, 0, 1, 0, 0, 0]);
    assert_eq!(r.by_hour[10].inbound, 2);
    assert_eq!(
        r.lost_at.iter().find(|b| b.label == "queue").unwrap().count,
        1
    );
}

#[test]
fn empty_input_gives_zeroes_not_nan() {
    let r = build(&[], &TimeZone::UTC);
    assert_eq!(r.inbound, Inbound::default());
    assert_eq!(r.by_hour.len(), 24);
    assert_eq!(r.by_weekday.len(), 7);
    assert_eq!(r.wait_avg_secs, None);
    assert_eq!(r.service_level.asa_secs, None);
    assert_eq!(r.callbacks.success_rate, 0.0);
    let json = serde_json::to_string(&r).unwrap();
    assert!(
        !json.contains("NaN") && !json.contains("null,\"weekdays"),
        "{json}"
    );
    let text = text::render(&r, &TimeZone::UTC);
    assert!(!text.contains("NaN"), "{text}");
    let html = html::render(&r, &TimeZone::UTC);
    assert!(!html.contains("NaN") && !html.contains("inf"), "{html}");
    assert!(html.contains("No inbound calls in this period"));
    // Seven bar charts, the one by day (the test period is a month), and the three
    // breakdown tables.
    assert_eq!(
        html.matches("Nothing in this period").count(),
        11,
        "every bar chart says so"
    );
}

#[test]
fn callback_rates_from_counts() {
    let counts = CallbackCounts {
        attempts_by_outcome: vec![
            (CallbackOutcome::Connected, 3),
            (CallbackOutcome::NoAnswer, 4),
            (CallbackOutcome::Busy, 1),
        ],
        attempts_pending: 2,
        attempts_unknown: 1,
        tasks_by_state: vec![
            ("done".into(), 3),
            ("given_up".into(), 1),
            ("pending".into(), 5),
        ],
        reached_after: [1, 2, 0, 0, 0, 0, 0, 0, 0],
        reached_after_sum: 900.0,
    };
    let r = Report::build(
        &[],
        &counts,
        &TimeZone::UTC,
        "UTC",
        Timestamp::UNIX_EPOCH,
        Timestamp::UNIX_EPOCH,
    );
    assert_eq!(
        r.callbacks.attempts, 9,
        "unknown counts, still ringing does not"
    );
    assert_eq!(r.callbacks.connected, 3);
    assert_eq!(r.callbacks.success_rate, 3.0 / 9.0);
    assert_eq!((r.callbacks.tasks_done, r.callbacks.tasks_given_up), (3, 1));
    assert_eq!(r.callbacks.task_success_rate, 0.75);
}

#[test]
fn human_durations() {
    assert_eq!(human_secs(9.4), "9 s");
    assert_eq!(human_secs(65.0), "1 m 05 s");
    assert_eq!(human_secs(3600.0), "1 h 00 m");
    assert_eq!(human_secs(90000.0), "1 d 1 h");
    assert_eq!(human_secs(f64::NAN), "0 s");
    assert_eq!(percent(0.125, 8), "12.5 %");
    assert_eq!(percent(0.0, 0), "-");
}

#[test]
fn html_escapes_everything_from_the_database() {
    let mut r = call("x", "2026-11-16T10:00:00Z", Status::Missed, 12.0);
    r.caller = Some("<script>alert('x')</script> & \"co\"".into());
    let report = Report::build(
        &[r],
        &CallbackCounts::default(),
        &TimeZone::UTC,
        "<b>tz</b>",
        ts("2026-11-01T00:00:00Z"),
        ts("2026-12-01T00:00:00Z"),
    );
    let page = html::render(&report, &TimeZone::UTC);
    assert!(!page.contains("<script"), "unescaped caller");
    assert!(!page.contains("<b>tz") && page.contains("&lt;b&gt;tz"));
    assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;co&quot;"));
    assert_eq!(html::esc("a\u{7}b"), "a b");
}
