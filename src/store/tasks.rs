//! Callback tasks and attempts. Owner: the dialer work.

/// Version 2: callback tasks (one open task per number) and attempts.
pub const SCHEMA_V2: &str = "
CREATE TABLE callback_tasks (
    id INTEGER PRIMARY KEY,
    number TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'in_progress', 'done', 'given_up', 'cancelled')),
    server TEXT NOT NULL,
    missed_count INTEGER NOT NULL DEFAULT 1,
    attempts INTEGER NOT NULL DEFAULT 0,
    lost_at TEXT,
    first_missed_at REAL NOT NULL,
    last_missed_at REAL NOT NULL,
    next_attempt_at REAL,
    last_attempt_at REAL,
    last_outcome TEXT,
    closed_at REAL,
    close_reason TEXT
);
CREATE UNIQUE INDEX callback_tasks_one_open_per_number ON callback_tasks (number) WHERE state IN ('pending', 'in_progress');
CREATE TABLE callback_attempts (
    id INTEGER PRIMARY KEY,
    task_id INTEGER NOT NULL REFERENCES callback_tasks (id),
    callback_id TEXT NOT NULL UNIQUE,
    action_id TEXT NOT NULL,
    target TEXT NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL,
    outcome TEXT,
    talk_secs REAL,
    detail TEXT
);
CREATE INDEX callback_attempts_task ON callback_attempts (task_id);
";
