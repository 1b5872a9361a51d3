//! From AMI events to one verdict per call.
//!
//! - [`event`]: one pass over an AMI message for the fields the tracker reads.
//! - [`tracker`]: the per-call state machine ([`Tracker`]): pure, time as an argument.
//! - `rules`: the verdict of an ended call (missed / ignored / lost_at / callback outcome).
//! - [`record`]: the verdict itself ([`CallRecord`]).

pub mod event;
pub mod record;
pub(crate) mod rules;
mod slab;
pub mod tracker;

pub use record::CallRecord;
pub use tracker::Tracker;
