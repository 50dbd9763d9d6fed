//! Envoy's host health flags (`Host::HealthFlag`), their admin names and what they make
//! of a host: healthy, degraded or unhealthy, and whether it is excluded from load
//! balancing and from the panic and priority-load arithmetic.

/// The host fails active health checking (also set until its first check passes).
pub const FAILED_ACTIVE_HC: u32 = 0x01;
/// The host was ejected by outlier detection.
pub const FAILED_OUTLIER_CHECK: u32 = 0x02;
/// The endpoint's `health_status` is `UNHEALTHY` or `TIMEOUT`.
pub const FAILED_EDS_HEALTH: u32 = 0x04;
/// An active health check answered with `x-envoy-degraded`.
pub const DEGRADED_ACTIVE_HC: u32 = 0x08;
/// The endpoint's `health_status` is `DEGRADED`.
pub const DEGRADED_EDS_HEALTH: u32 = 0x10;
/// The host is waiting for its first active health check
/// (`ignore_new_hosts_until_first_hc`).
pub const PENDING_ACTIVE_HC: u32 = 0x40;
/// A response carried `x-envoy-immediate-health-check-fail`.
pub const EXCLUDED_VIA_IMMEDIATE_HC_FAIL: u32 = 0x80;
/// The last active health check timed out.
pub const ACTIVE_HC_TIMEOUT: u32 = 0x100;
/// The endpoint's `health_status` is `DRAINING`.
pub const EDS_STATUS_DRAINING: u32 = 0x200;

/// Flags in Envoy's admin order with their names.
const NAMES: [(u32, &str); 9] = [
    (FAILED_ACTIVE_HC, "/failed_active_hc"),
    (FAILED_OUTLIER_CHECK, "/failed_outlier_check"),
    (FAILED_EDS_HEALTH, "/failed_eds_health"),
    (DEGRADED_ACTIVE_HC, "/degraded_active_hc"),
    (DEGRADED_EDS_HEALTH, "/degraded_eds_health"),
    (PENDING_ACTIVE_HC, "/pending_active_hc"),
    (
        EXCLUDED_VIA_IMMEDIATE_HC_FAIL,
        "/excluded_via_immediate_hc_fail",
    ),
    (ACTIVE_HC_TIMEOUT, "/active_hc_timeout"),
    (EDS_STATUS_DRAINING, "/eds_status_draining"),
];

const UNHEALTHY: u32 =
    FAILED_ACTIVE_HC | FAILED_OUTLIER_CHECK | FAILED_EDS_HEALTH | EDS_STATUS_DRAINING;
const DEGRADED: u32 = DEGRADED_ACTIVE_HC | DEGRADED_EDS_HEALTH;
const EXCLUDED: u32 = PENDING_ACTIVE_HC | EXCLUDED_VIA_IMMEDIATE_HC_FAIL | EDS_STATUS_DRAINING;

/// A host's coarse health (Envoy's `Host::coarseHealth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coarse {
    /// Takes traffic.
    Healthy,
    /// Takes traffic only when the healthy hosts are not enough.
    Degraded,
    /// Takes traffic only in panic mode.
    Unhealthy,
}

/// The coarse health of a host with `flags`.
pub fn coarse(flags: u32) -> Coarse {
    if flags & UNHEALTHY != 0 {
        Coarse::Unhealthy
    } else if flags & DEGRADED != 0 {
        Coarse::Degraded
    } else {
        Coarse::Healthy
    }
}

/// Whether a host with `flags` is left out of the priority and panic arithmetic.
pub fn excluded(flags: u32) -> bool {
    flags & EXCLUDED != 0
}

/// The admin `/clusters` rendering: `healthy`, or the set flags joined (`/a/b`).
pub fn describe(flags: u32) -> String {
    let s: String = NAMES
        .iter()
        .filter(|(f, _)| flags & f != 0)
        .map(|(_, n)| *n)
        .collect();
    if s.is_empty() {
        "healthy".to_string()
    } else {
        s
    }
}

/// The flags an endpoint's EDS `health_status` sets.
pub fn from_eds(health: ferry_config::cluster::EndpointHealth) -> u32 {
    use ferry_config::cluster::EndpointHealth as E;
    match health {
        E::Healthy => 0,
        E::Unhealthy => FAILED_EDS_HEALTH,
        E::Draining => EDS_STATUS_DRAINING,
        E::Degraded => DEGRADED_EDS_HEALTH,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_classes_follow_envoy() {
        assert_eq!(describe(0), "healthy");
        assert_eq!(
            describe(FAILED_ACTIVE_HC | FAILED_EDS_HEALTH),
            "/failed_active_hc/failed_eds_health"
        );
        assert_eq!(
            describe(EDS_STATUS_DRAINING | FAILED_ACTIVE_HC),
            "/failed_active_hc/eds_status_draining"
        );
        assert_eq!(coarse(DEGRADED_EDS_HEALTH), Coarse::Degraded);
        assert_eq!(
            coarse(DEGRADED_EDS_HEALTH | FAILED_OUTLIER_CHECK),
            Coarse::Unhealthy
        );
        assert_eq!(coarse(ACTIVE_HC_TIMEOUT), Coarse::Healthy);
        assert!(excluded(EDS_STATUS_DRAINING) && !excluded(FAILED_ACTIVE_HC));
    }
}
