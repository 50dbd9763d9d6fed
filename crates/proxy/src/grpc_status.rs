//! gRPC statuses of HTTP streams, as Envoy's `Grpc::Utility` derives them.

/// The gRPC status Envoy maps an HTTP status to (`Grpc::Utility::httpToGrpcStatus`).
pub fn grpc_status_of(http_status: u16) -> u32 {
    match http_status {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502 | 503 | 504 => 14,
        _ => 2,
    }
}
