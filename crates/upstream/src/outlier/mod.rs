//! Outlier detection: passive health checking from the results of real requests, as
//! Envoy's `Outlier::DetectorImpl`.
//!
//! Every attempt through [`crate::Host::send`] (and [`crate::Host::report_timeout`])
//! updates the host's [`monitor::HostMonitor`] with relaxed atomics. A consecutive-error
//! threshold that is reached is posted to the cluster's detector task (as Envoy posts
//! to its main thread), which ejects the host (`/failed_outlier_check`) within
//! `max_ejection_percent` and the `enforcing_*` odds. The task also runs every
//! `interval`: it brings back hosts whose ejection time (`base_ejection_time` × ejections
//! so far, capped at `max_ejection_time`, plus jitter) is over, and runs the success-rate
//! and failure-percentage algorithms on the previous interval's counts.

mod detector;
pub(crate) mod monitor;

pub(crate) use detector::{run, Detector};
pub(crate) use monitor::{HostMonitor, Outcome};

/// Why a host is ejected (Envoy's `OutlierEjectionType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EjectionType {
    /// `consecutive_5xx`.
    Consecutive5xx,
    /// `consecutive_gateway_failure`.
    ConsecutiveGatewayFailure,
    /// `consecutive_local_origin_failure`.
    ConsecutiveLocalOriginFailure,
    /// Success rate below the cluster's threshold.
    SuccessRate,
    /// Local-origin success rate below the cluster's threshold.
    SuccessRateLocalOrigin,
    /// Failure percentage at or above `failure_percentage_threshold`.
    FailurePercentage,
    /// Local-origin failure percentage at or above the threshold.
    FailurePercentageLocalOrigin,
}

/// Maps a `grpc-status` to the HTTP status outlier detection counts (Envoy's
/// `Grpc::Utility::grpcToHttpStatus`).
pub(crate) fn grpc_to_http_status(grpc_status: u32) -> u16 {
    match grpc_status {
        0 => 200,
        1 => 499,
        3 | 9 | 11 => 400,
        4 => 504,
        5 => 404,
        6 | 10 => 409,
        7 => 403,
        8 => 429,
        12 => 501,
        14 => 503,
        16 => 401,
        _ => 500,
    }
}
