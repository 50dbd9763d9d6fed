//! gRPC health checks: `grpc.health.v1.Health/Check` over HTTP/2; the host passes when
//! the call ends with `grpc-status: 0` and the answer is `SERVING`.

use super::http::{add_header, Conn, USER_AGENT};
use super::session::Failure;
use super::Verdict;
use bytes::{BufMut, Bytes, BytesMut};
use ferry_config::health_check::GrpcHealthCheck;
use http::{header, Request};
use http_body_util::{BodyExt, Full, Limited};
use prost::Message;
use std::net::SocketAddr;

/// `grpc.health.v1.HealthCheckRequest`.
#[derive(Clone, PartialEq, Message)]
struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    service: String,
}

/// `grpc.health.v1.HealthCheckResponse`.
#[derive(Clone, PartialEq, Message)]
struct HealthCheckResponse {
    /// `ServingStatus`: 1 is `SERVING`.
    #[prost(int32, tag = "1")]
    status: i32,
}

const SERVING: i32 = 1;
/// The most a health answer may take (it is a few bytes).
const MAX_RESPONSE: usize = 64 * 1024;

/// One host's gRPC checker.
pub(crate) struct GrpcProbe {
    config: GrpcHealthCheck,
    authority: String,
    addr: SocketAddr,
    reuse: bool,
    conn: Option<Conn>,
}

impl GrpcProbe {
    pub(crate) fn new(
        config: GrpcHealthCheck,
        cluster_name: &str,
        addr: SocketAddr,
        reuse: bool,
    ) -> GrpcProbe {
        let authority = config
            .authority
            .clone()
            .unwrap_or_else(|| cluster_name.to_string());
        GrpcProbe {
            config,
            authority,
            addr,
            reuse,
            conn: None,
        }
    }

    /// Drops the connection (after a timeout).
    pub(crate) fn reset(&mut self) {
        self.conn = None;
    }

    fn request(&self) -> Request<Full<Bytes>> {
        let msg = HealthCheckRequest {
            service: self.config.service_name.clone(),
        }
        .encode_to_vec();
        let mut frame = BytesMut::with_capacity(5 + msg.len());
        frame.put_u8(0);
        frame.put_u32(msg.len() as u32);
        frame.put_slice(&msg);
        let mut req = Request::new(Full::new(frame.freeze()));
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = http::Uri::from_static("/grpc.health.v1.Health/Check");
        let h = req.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/grpc"),
        );
        h.insert(header::TE, header::HeaderValue::from_static("trailers"));
        h.insert(
            header::USER_AGENT,
            header::HeaderValue::from_static(USER_AGENT),
        );
        for (name, value, action) in &self.config.initial_metadata {
            add_header(h, name, value, *action);
        }
        req
    }

    pub(crate) async fn check(&mut self) -> Verdict {
        let network = Verdict::failed(Failure::Network);
        let failed = Verdict::failed(Failure::Active);
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => match Conn::open(self.addr, true).await {
                Some(c) => c,
                None => return network,
            },
        };
        let resp = match conn.send(self.request(), &self.authority).await {
            Ok(r) => r,
            Err(_) => return network,
        };
        let (parts, body) = resp.into_parts();
        let collected = match Limited::new(body, MAX_RESPONSE).collect().await {
            Ok(c) => c,
            Err(e) => {
                // A reset stream is a network failure; an oversized answer a wrong one.
                return if e.is::<hyper::Error>() {
                    network
                } else {
                    failed
                };
            }
        };
        if self.reuse {
            self.conn = Some(conn);
        }
        if parts.status != http::StatusCode::OK {
            return failed;
        }
        let trailers = collected.trailers().cloned();
        let grpc_status = trailers
            .as_ref()
            .and_then(|t| t.get("grpc-status"))
            .or_else(|| parts.headers.get("grpc-status"))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u32>().ok());
        if grpc_status != Some(0) {
            return failed;
        }
        let data = collected.to_bytes();
        let serving = data.len() >= 5 && data[0] == 0 && {
            let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
            data.get(5..5 + len)
                .and_then(|m| HealthCheckResponse::decode(m).ok())
                .is_some_and(|r| r.status == SERVING)
        };
        if serving {
            Verdict::Healthy { degraded: false }
        } else {
            failed
        }
    }
}
