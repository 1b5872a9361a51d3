//! `[calls]`: when a call counts as answered, missed or over.

use super::*;

/// `[calls]`: the talk and wait thresholds, how long a miss may be resolved, the longest call.
pub(super) fn calls(v: &mut V, c: &RawCalls) -> CallsConfig {
    let calls = CallsConfig {
        min_talk: v.duration("calls.min_talk", &c.min_talk, "6s"),
        min_wait: v.duration("calls.min_wait", &c.min_wait, "3s"),
        resolve_within: v.duration("calls.resolve_within", &c.resolve_within, "7d"),
        max_call_duration: v.duration("calls.max_call_duration", &c.max_call_duration, "4h"),
    };
    if calls.max_call_duration < Duration::from_secs(60) {
        v.err(
            "calls.max_call_duration",
            "must be at least 1m",
            Some("calls silent for this long are ended as unknown"),
        );
    }
    calls
}
