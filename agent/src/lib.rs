//! tokenwatch: tells on-call, before customers notice, that a compute node is
//! about to lose its IAM token.
//!
//! sources (eBPF, logs, /proc) → [`events::Event`] → [`state`] → [`export`].
pub mod agent;
pub mod cli;
pub mod client;
pub mod config;
pub mod diagnose;
pub mod events;
pub mod export;
pub mod format;
pub mod protocol;
pub mod redact;
pub mod sources;
pub mod state;
pub mod statefile;
