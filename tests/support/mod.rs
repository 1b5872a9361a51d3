//! What the tests share: the library's unit tests (as `crate::test_support`), the integration
//! tests (`mod support;`) and the benches (`#[path]`). Each user takes what it needs.
#![allow(dead_code)]

pub mod pg;

use jiff::civil::Date;
use perezvon::callback::hours::Hours;
use perezvon::calls::record::{CallRecord, Direction, LostAt, Status, Timestamp};
use perezvon::config::parse_range;
use rusqlite::types::Value;

/// For tests: an inbound call from +79161234567 to 74951110001 that nobody answered, lost in a
/// queue after `wait_secs`, the caller hanging up. Tests change what they are about with
/// `CallRecord { status, ..inbound_miss(..) }`.
pub fn inbound_miss(linkedid: &str, started_at: Timestamp, wait_secs: f64) -> CallRecord {
    CallRecord {
        server: "lab".into(),
        linkedid: linkedid.into(),
        direction: Direction::Inbound,
        caller: Some("+79161234567".into()),
        caller_normalized: Some("79161234567".into()),
        callee: Some("74951110001".into()),
        callee_normalized: Some("74951110001".into()),
        started_at,
        ended_at: started_at + jiff::SignedDuration::from_secs_f64(wait_secs),
        answered_at: None,
        wait_secs,
        talk_secs: 0.0,
        agent: None,
        status: Status::Missed,
        missed: true,
        ignored: false,
        lost_at: Some(LostAt::Queue),
        hangup_by: Some("caller".into()),
        resolved_by: None,
        resolved_at: None,
        resolved_by_linkedid: None,
        callback_id: None,
        callback_outcome: None,
        unknown_reason: None,
        queue: None,
    }
}

/// Inserts a row naming only the columns the reports read; other NOT NULL columns without a
/// default get a zero value, so the dialer can add columns without breaking the reports' tests.
pub fn insert_row(c: &rusqlite::Connection, table: &str, values: &[(&str, Value)]) -> i64 {
    let mut stmt = c
        .prepare(&format!(
            "SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info('{table}')"
        ))
        .unwrap();
    let info: Vec<(String, String, bool, Option<String>, i64)> = stmt
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    let (mut cols, mut vals) = (Vec::new(), Vec::new());
    for (name, ty, notnull, default, pk) in info {
        if let Some((_, v)) = values.iter().find(|(c, _)| *c == name) {
            cols.push(name);
            vals.push(v.clone());
        } else if notnull && default.is_none() && pk == 0 {
            cols.push(name);
            vals.push(match ty.as_str() {
                "TEXT" => Value::Text(String::new()),
                "REAL" => Value::Real(0.0),
                _ => Value::Integer(0),
            });
        }
    }
    let marks: Vec<String> = (1..=cols.len()).map(|i| format!("?{i}")).collect();
    c.execute(
        &format!(
            "INSERT INTO {table} ({}) VALUES ({})",
            cols.join(", "),
            marks.join(", ")
        ),
        rusqlite::params_from_iter(vals),
    )
    .unwrap();
    c.last_insert_rowid()
}

/// [`insert_row`] on either engine: a row of `table` with `values`, every other NOT NULL
/// column without a default filled with an empty value of its type; returns its `id`.
pub fn insert_row_in(
    s: &perezvon::store::Store,
    table: &str,
    values: &[(&str, perezvon::store::db::Value)],
) -> i64 {
    use perezvon::store::db::{params, Value as V};
    let db = s.db();
    let info: Vec<(String, String, bool, bool)> = if db.is_postgres() {
        db.query_map(
            "SELECT column_name::text, data_type::text, is_nullable = 'NO', \
             column_default IS NOT NULL OR is_identity = 'YES' \
             FROM information_schema.columns WHERE table_name = ?1 ORDER BY ordinal_position",
            params![table],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
    } else {
        db.query_map(
            "SELECT name, type, \"notnull\", dflt_value IS NOT NULL OR pk > 0 FROM pragma_table_info(?1)",
            params![table],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
    }
    .unwrap();
    let (mut cols, mut vals) = (Vec::new(), Vec::new());
    for (name, ty, notnull, has_default) in info {
        if let Some((_, v)) = values.iter().find(|(c, _)| *c == name) {
            cols.push(name);
            vals.push(v.clone());
        } else if notnull && !has_default {
            cols.push(name);
            vals.push(match ty.to_ascii_uppercase().as_str() {
                "TEXT" => V::Text(String::new()),
                "REAL" | "DOUBLE PRECISION" => V::Real(0.0),
                _ => V::Int(0),
            });
        }
    }
    let marks: Vec<String> = (1..=cols.len()).map(|i| format!("?{i}")).collect();
    let refs: Vec<&dyn perezvon::store::db::ToValue> = vals
        .iter()
        .map(|v| v as &dyn perezvon::store::db::ToValue)
        .collect();
    db.query_row(
        &format!(
            "INSERT INTO {table} ({}) VALUES ({}) RETURNING id",
            cols.join(", "),
            marks.join(", ")
        ),
        &refs,
        |r| r.get(0),
    )
    .unwrap()
}

/// Working hours in Moscow: weekdays 09:00-13:00 and 14:00-18:00, weekends closed, with these
/// holidays and extra working days.
pub fn moscow_weekdays(holidays: &[Date], workdays: &[Date]) -> Hours {
    let wd = vec![
        parse_range("09:00-13:00").unwrap(),
        parse_range("14:00-18:00").unwrap(),
    ];
    Hours::new(
        jiff::tz::TimeZone::get("Europe/Moscow").unwrap(),
        [
            wd.clone(),
            wd.clone(),
            wd.clone(),
            wd.clone(),
            wd,
            vec![],
            vec![],
        ],
        holidays.iter().copied(),
        workdays.iter().copied(),
    )
}
