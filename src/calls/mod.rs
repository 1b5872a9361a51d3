//! From AMI events to one verdict per call.

pub mod record;

pub use record::CallRecord;
