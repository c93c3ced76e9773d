//! Sluice: a tracking-link redirector and attribution appliance. See ARCHITECTURE.md.

pub mod app;
pub mod attribution;
pub mod click;
pub mod config;
pub mod conversions;
pub mod delivery;
pub mod error;
pub mod http;
pub mod keys;
pub mod link;
pub mod metrics;
pub mod pipeline;
pub mod retention;
pub mod scheduling;
pub mod server;
pub mod skan;
pub mod stats;
pub mod store;
pub mod time;
