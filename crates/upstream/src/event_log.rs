//! Envoy's event logs: outlier ejections (`cluster_manager.outlier_detection.event_log_path`,
//! `envoy.data.cluster.v3.OutlierDetectionEvent`) and health check transitions
//! (`HealthCheck.event_log_path` / `event_logger`, `envoy.data.core.v3.HealthCheckEvent`),
//! one JSON object per line, with the fields in Envoy's order (by field number) and
//! its defaults written out.

use crate::log_file::LogFile;
use crate::outlier::EjectionType;
use crate::Host;
use std::fmt::Write;
use std::time::{Duration, SystemTime};

/// A timestamp as proto3 JSON writes it (UTC, whole milliseconds as Envoy's clock
/// gives them, no fraction when it is zero).
pub(crate) fn timestamp(t: SystemTime) -> String {
    let dt: chrono::DateTime<chrono::Utc> = t.into();
    if dt.timestamp_subsec_millis() == 0 {
        dt.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        dt.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
    }
}

fn quoted(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// What an ejection was decided on.
#[derive(Debug, Clone, Copy)]
pub(crate) enum EjectDetail {
    /// A consecutive-error threshold (`eject_consecutive_event`).
    Consecutive,
    /// The success-rate algorithm (`eject_success_rate_event`), in percent.
    SuccessRate {
        host: f64,
        average: f64,
        threshold: f64,
    },
    /// The failure-percentage algorithm (`eject_failure_percentage_event`): the host's
    /// success rate in percent.
    FailurePercentage { host: f64 },
}

fn ejection_type_name(kind: EjectionType) -> &'static str {
    match kind {
        EjectionType::Consecutive5xx => "CONSECUTIVE_5XX",
        EjectionType::ConsecutiveGatewayFailure => "CONSECUTIVE_GATEWAY_FAILURE",
        EjectionType::SuccessRate => "SUCCESS_RATE",
        EjectionType::ConsecutiveLocalOriginFailure => "CONSECUTIVE_LOCAL_ORIGIN_FAILURE",
        EjectionType::SuccessRateLocalOrigin => "SUCCESS_RATE_LOCAL_ORIGIN",
        EjectionType::FailurePercentage => "FAILURE_PERCENTAGE",
        EjectionType::FailurePercentageLocalOrigin => "FAILURE_PERCENTAGE_LOCAL_ORIGIN",
    }
}

/// The outlier event log of one cluster.
#[derive(Debug)]
pub(crate) struct OutlierLog {
    file: LogFile,
    /// The cluster's name, quoted.
    cluster: String,
}

impl OutlierLog {
    pub(crate) fn new(file: LogFile, cluster: &str) -> OutlierLog {
        OutlierLog {
            file,
            cluster: quoted(cluster),
        }
    }

    fn common(&self, kind: Option<EjectionType>, host: &Host, since: Option<Duration>) -> String {
        // An unejection has no type: proto3 JSON writes the enum's default.
        let kind = kind.map_or("CONSECUTIVE_5XX", ejection_type_name);
        let mut line = format!(
            r#"{{"type":"{kind}","timestamp":"{}""#,
            timestamp(SystemTime::now())
        );
        if let Some(s) = since {
            let _ = write!(line, r#","secs_since_last_action":"{}""#, s.as_secs());
        }
        let _ = write!(
            line,
            r#","cluster_name":{},"upstream_url":"{}""#,
            self.cluster, host.address
        );
        line
    }

    /// An ejection decided (`enforced`) or only detected; `since` is the time since the
    /// host's last unejection.
    pub(crate) fn eject(
        &self,
        host: &Host,
        kind: EjectionType,
        enforced: bool,
        num_ejections: u32,
        since: Option<Duration>,
        detail: EjectDetail,
    ) {
        let mut line = self.common(Some(kind), host, since);
        let _ = write!(
            line,
            r#","action":"EJECT","num_ejections":{num_ejections},"enforced":{enforced}"#
        );
        // The event's values are uint32 in the proto: Envoy truncates.
        let _ = match detail {
            EjectDetail::Consecutive => write!(line, r#","eject_consecutive_event":{{}}"#),
            EjectDetail::SuccessRate {
                host,
                average,
                threshold,
            } => write!(
                line,
                r#","eject_success_rate_event":{{"host_success_rate":{},"cluster_average_success_rate":{},"cluster_success_rate_ejection_threshold":{}}}"#,
                host.max(0.0) as u32,
                average.max(0.0) as u32,
                threshold.max(0.0) as u32
            ),
            EjectDetail::FailurePercentage { host } => write!(
                line,
                r#","eject_failure_percentage_event":{{"host_success_rate":{}}}"#,
                host.max(0.0) as u32
            ),
        };
        line.push_str("}\n");
        self.file.write(line);
    }

    /// The host is back; `since` is the time since its ejection.
    pub(crate) fn uneject(&self, host: &Host, num_ejections: u32, since: Option<Duration>) {
        let mut line = self.common(None, host, since);
        let _ = writeln!(
            line,
            r#","action":"UNEJECT","num_ejections":{num_ejections},"enforced":false}}"#
        );
        self.file.write(line);
    }
}

/// Why a health check failed, as the event log names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureType {
    Active,
    Passive,
    Network,
    NetworkTimeout,
}

impl FailureType {
    fn name(self) -> &'static str {
        match self {
            FailureType::Active => "ACTIVE",
            FailureType::Passive => "PASSIVE",
            FailureType::Network => "NETWORK",
            FailureType::NetworkTimeout => "NETWORK_TIMEOUT",
        }
    }
}

/// A health check event of one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HealthEvent {
    /// The host became unhealthy (`eject_unhealthy_event`).
    EjectUnhealthy { failure: FailureType, status: u16 },
    /// The host became healthy (`add_healthy_event`).
    AddHealthy { first_check: bool },
    /// A check failed (`health_check_failure_event`): on the first check, or every one
    /// with `always_log_health_check_failures`.
    Failure {
        failure: FailureType,
        first_check: bool,
        status: u16,
    },
    /// The host said it is degraded (`degraded_healthy_host`).
    Degraded,
    /// The host no longer says it is degraded (`no_longer_degraded_host`).
    NoLongerDegraded,
    /// A check passed without a change (`successful_health_check_event`, with
    /// `always_log_health_check_success`).
    Success,
}

/// The health check event logs of one cluster.
#[derive(Debug)]
pub(crate) struct HealthLog {
    files: Vec<LogFile>,
    /// `health_checker_type`.
    checker: &'static str,
    /// The cluster's name, quoted.
    cluster: String,
}

impl HealthLog {
    /// The logs of a `checker` ("HTTP", "TCP", "GRPC") of `cluster`.
    pub(crate) fn new(files: Vec<LogFile>, checker: &'static str, cluster: &str) -> HealthLog {
        HealthLog {
            files,
            checker,
            cluster: quoted(cluster),
        }
    }

    pub(crate) fn log(&self, host: &Host, event: HealthEvent) {
        let a = host.address;
        let mut line = format!(
            r#"{{"health_checker_type":"{}","host":{{"socket_address":{{"protocol":"TCP","address":"{}","port_value":{},"resolver_name":"","ipv4_compat":false,"network_namespace_filepath":""}}}},"cluster_name":{}"#,
            self.checker,
            a.ip(),
            a.port(),
            self.cluster
        );
        let ts = timestamp(SystemTime::now());
        // Fields by number: the event kinds 4, 5, then timestamp 6, then 7, 8, 9,
        // locality 11 and successful 12.
        match event {
            HealthEvent::EjectUnhealthy { failure, status } => {
                let _ = write!(
                    line,
                    r#","eject_unhealthy_event":{{"failure_type":"{}","http_status_code":{status}}}"#,
                    failure.name()
                );
            }
            HealthEvent::AddHealthy { first_check } => {
                let _ = write!(
                    line,
                    r#","add_healthy_event":{{"first_check":{first_check}}}"#
                );
            }
            _ => {}
        }
        let _ = write!(line, r#","timestamp":"{ts}""#);
        match event {
            HealthEvent::Failure {
                failure,
                first_check,
                status,
            } => {
                let _ = write!(
                    line,
                    r#","health_check_failure_event":{{"failure_type":"{}","first_check":{first_check},"http_status_code":{status}}}"#,
                    failure.name()
                );
            }
            HealthEvent::Degraded => line.push_str(r#","degraded_healthy_host":{}"#),
            HealthEvent::NoLongerDegraded => line.push_str(r#","no_longer_degraded_host":{}"#),
            _ => {}
        }
        let mut parts = host.locality.splitn(3, '/');
        let mut part = || quoted(parts.next().unwrap_or_default());
        let _ = write!(
            line,
            r#","locality":{{"region":{},"zone":{},"sub_zone":{}}}"#,
            part(),
            part(),
            part()
        );
        if event == HealthEvent::Success {
            line.push_str(r#","successful_health_check_event":{}"#);
        }
        line.push_str("}\n");
        for f in &self.files {
            f.write(line.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn timestamps_as_proto3_json() {
        let t = UNIX_EPOCH + Duration::from_millis(1_764_031_352_424);
        assert_eq!(timestamp(t), "2025-11-25T00:42:32.424Z");
        assert_eq!(
            timestamp(UNIX_EPOCH + Duration::from_secs(1_764_031_352)),
            "2025-11-25T00:42:32Z"
        );
    }
}
