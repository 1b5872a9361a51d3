//! Call records for the integration tests and benches (the library's unit tests have the same
//! helper, `calls::record::inbound_miss`, behind `cfg(test)`).

use perezvon::calls::record::{CallRecord, Direction, LostAt, Status, Timestamp};

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
    }
}
