//! Pure domain logic: no I/O, no SQL, no HTTP. Tested directly.

pub mod alert_rules;
pub mod alerts;
pub mod analytics;
pub mod anomaly;
pub mod capture;
pub mod catalog;
pub mod cohorts;
pub mod csv_import;
pub mod demo;
pub mod events;
pub mod forecast;
pub mod health;
pub mod identity;
pub mod ingest;
pub mod ingest_arrow;
pub mod nab;
pub mod net;
pub mod notify;
pub mod roles;
pub mod saas_metrics;
pub mod saved_insights;
pub mod schedule;
pub mod throttle;
pub mod timebucket;
pub mod url;
