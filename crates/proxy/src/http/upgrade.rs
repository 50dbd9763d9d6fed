//! HTTP/1.1 upgrades (WebSocket): the upgrade request goes upstream on a connection of
//! its own; after `101 Switching Protocols` both sides become a byte pipe.

use ferry_upstream::{Body, Cluster, Host, UpstreamError};
use http_body_util::{BodyExt, Empty};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::time::Duration;

/// Why an upgrade request got no upstream response.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// The route timeout elapsed before the upstream answered (UT).
    #[error("upstream request timeout")]
    Timeout,
    /// Connecting or talking to the upstream failed.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
}

/// Sends the upgrade request and, on 101, splices downstream and upstream.
pub async fn proxy(
    cluster: &Cluster,
    host: &Host,
    req: http::Request<()>,
    downstream: OnUpgrade,
    timeout: Option<Duration>,
) -> Result<http::Response<Body>, UpgradeError> {
    let (stream, admission) = host.connect_tcp(cluster).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| UpstreamError::Protocol(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let (parts, ()) = req.into_parts();
    let req = http::Request::from_parts(parts, Empty::<bytes::Bytes>::new());
    let send = sender.send_request(req);
    let mut resp = match timeout {
        Some(t) => tokio::time::timeout(t, send)
            .await
            .map_err(|_| UpgradeError::Timeout)?,
        None => send.await,
    }
    .map_err(|e| UpstreamError::RemoteReset {
        refused: false,
        message: e.to_string(),
    })?;
    if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
        let upstream = hyper::upgrade::on(&mut resp);
        // The tunnel counts against max_connections while it is open.
        tokio::spawn(async move {
            let _admission = admission;
            let (Ok(down), Ok(up)) = (downstream.await, upstream.await) else {
                return;
            };
            let mut down = TokioIo::new(down);
            let mut up = TokioIo::new(up);
            let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
        });
    }
    let (parts, body) = resp.into_parts();
    Ok(http::Response::from_parts(
        parts,
        body.map_err(|e| Box::new(e) as ferry_upstream::BoxError)
            .boxed(),
    ))
}
