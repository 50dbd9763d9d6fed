//! `GrpcService` with `envoy_grpc`: the cluster a gRPC client of ferry's (OTLP sinks
//! and loggers, the OpenTelemetry tracer) calls, its `:authority` and timeout.

use crate::util::duration;
use crate::Ctx;
use ferry_envoy_api::pb::envoy::config::core::v3 as core;
use std::time::Duration;

/// Where an `envoy_grpc` client sends: a cluster, the `:authority` it names (default
/// the cluster's name, as Envoy), and the call's `timeout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcTarget {
    /// `envoy_grpc.cluster_name`.
    pub cluster: String,
    /// `envoy_grpc.authority` (default: the cluster's name).
    pub authority: String,
    /// `timeout` (None: unset or zero).
    pub timeout: Option<Duration>,
}

/// The target of a `GrpcService` (`envoy_grpc`; `google_grpc` is refused).
pub fn grpc_cluster(
    g: &Option<core::GrpcService>,
    field: &str,
    ctx: &mut Ctx,
) -> Option<GrpcTarget> {
    use core::grpc_service::TargetSpecifier;
    let Some(g) = g else {
        ctx.error_at(field, "is required");
        return None;
    };
    ctx.at(field, |c| {
        crate::fields!(c, g => core::GrpcService {
            target_specifier: ["envoy_grpc"], timeout,
        } refused {
            initial_metadata, retry_policy,
        });
        let e = match &g.target_specifier {
            Some(TargetSpecifier::EnvoyGrpc(e)) => e,
            // Refused by fields! above.
            Some(TargetSpecifier::GoogleGrpc(_)) => return None,
            None => {
                c.error_at("envoy_grpc.cluster_name", "is required");
                return None;
            }
        };
        c.at("envoy_grpc", |c| {
            crate::fields!(c, e => core::grpc_service::EnvoyGrpc {
                cluster_name, authority,
            } refused {
                retry_policy, max_receive_message_length, skip_envoy_headers,
            });
            if e.cluster_name.is_empty() {
                c.error_at("cluster_name", "is required");
            }
        });
        if e.cluster_name.is_empty() {
            return None;
        }
        Some(GrpcTarget {
            cluster: e.cluster_name.clone(),
            authority: if e.authority.is_empty() {
                e.cluster_name.clone()
            } else {
                e.authority.clone()
            },
            timeout: duration(&g.timeout, "timeout", c).filter(|t| !t.is_zero()),
        })
    })
}
