//! Weir's integration tests, gathered in one binary so that the gateway
//! and wasmtime are linked once: each module is one concern, run against
//! the real gateway (in this process or as the `weir` binary) on loopback,
//! with real upstreams and plugins built from this tree.
//!
//! `sighup.rs` beside this folder is the one test kept in a binary of its
//! own: it signals its whole process.

mod common;

mod ai;
mod check;
mod configmap_reload;
mod dashboard;
mod examples;
mod faults;
mod gateway;
mod hostile;
mod languages;
mod observe;
mod overload;
mod probes;
mod reload;
mod resilience;
mod security;
mod shared_state;
mod sigterm;
mod soak;
mod status;
mod traces;
mod usage_postgres;
