//! Pure domain logic: no I/O, no SQL, no HTTP. Tested directly.

pub mod alert_rules;
pub mod alerts;
pub mod catalog;
pub mod demo;
pub mod health;
pub mod ingest;
pub mod notify;
pub mod roles;
pub mod throttle;
pub mod timebucket;
