//! Call verdicts. Owner: the call-tracking work. One row per (server, linkedid).

/// Version 1: the calls table.
pub const SCHEMA_V1: &str = "
CREATE TABLE calls (
    id INTEGER PRIMARY KEY,
    server TEXT NOT NULL,
    linkedid TEXT NOT NULL,
    direction TEXT NOT NULL,
    status TEXT NOT NULL,
    caller TEXT,
    caller_normalized TEXT,
    callee TEXT,
    callee_normalized TEXT,
    started_at REAL NOT NULL,
    ended_at REAL NOT NULL,
    answered_at REAL,
    wait_secs REAL NOT NULL,
    talk_secs REAL NOT NULL,
    agent TEXT,
    missed INTEGER NOT NULL,
    ignored INTEGER NOT NULL,
    lost_at TEXT,
    hangup_by TEXT,
    resolved_by TEXT,
    resolved_at REAL,
    resolved_by_linkedid TEXT,
    callback_id TEXT,
    callback_outcome TEXT,
    unknown_reason TEXT,
    UNIQUE (server, linkedid)
);
CREATE INDEX calls_ended_at ON calls (ended_at);
CREATE INDEX calls_unresolved_misses ON calls (caller_normalized, ended_at) WHERE missed = 1 AND resolved_by IS NULL;
";
