//! The validated runtime model of the proxy.
//!
//! Envoy's v3 API (decoded by `ferry-envoy-api`) is translated once into the immutable
//! values defined here. Two passes, both collecting every problem rather than the first:
//! 1. [`support`] walks the decoded message reflectively and names every field or
//!    extension that is set but that ferry does not implement (never silently ignored);
//! 2. the `from_*` functions convert the typed messages into the model, checking values
//!    (enum values we do not implement, missing required fields, bad regexes...).
//!
//! Rule: if ferry accepts a config written for Envoy, it behaves as Envoy does.

// Deprecated Envoy fields that Envoy still honours are honoured here too.
#![allow(deprecated)]

pub mod access_log;
pub mod access_log_filter;
pub mod any;
pub mod bootstrap;
pub mod circuit_breaker;
pub mod cluster;
pub mod dynamic;
mod error;
pub mod filters;
pub mod format;
pub mod fraction;
pub mod grpc_service;
pub mod hcm;
pub mod health_check;
pub mod listener;
pub mod matcher;
pub mod otel_access_log;
pub mod outlier;
pub mod response_flag;
pub mod retry;
pub mod route;
pub mod stats;
pub mod support;
pub mod trace;
pub mod util;

pub use bootstrap::{load, load_with, Bootstrap, Loaded};
pub use error::{ConfigError, ConfigErrors, Ctx};
/// The decoding layer, for callers that merge documents before loading them.
pub use ferry_envoy_api as envoy_api;
pub use ferry_envoy_api::{Format, Warning};
pub use response_flag::{ResponseFlag, ResponseFlags};
pub use util::{AppendAction, HeaderMutations, HeaderToAdd};
