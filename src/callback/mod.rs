//! Calling missed customers back.
//!
//! - [`hours`]: is the centre open at an instant, when does it open next (pure).
//! - [`planner`]: which misses become tasks, which tasks are due now, what an outcome does to a
//!   task (pure; time is an argument).
//! - [`originate`]: the validated number, the Originate action, OriginateResponse -> outcome.
//! - [`request`]: what callers and agents say through the dialplan (`UserEvent`: press 1, press
//!   9, dispositions), task kinds and owners (pure; issue 14).
//! - [`guard`]: the per-number budget, the customer's clock, expiry and the queue reserve (pure).
//! - [`zones`]: which time zone(s) a number is in (the table behind `customer_hours`).

pub mod guard;
pub mod hours;
pub mod originate;
pub mod planner;
pub mod request;
pub mod zones;
