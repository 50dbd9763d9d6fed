//! Upstream errors and their mapping to Envoy response flags (one place).

/// Why an upstream request or connection failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The TCP connection could not be established (Envoy flag `UF`).
    #[error("upstream connect error: {0}")]
    ConnectFailure(std::io::Error),
    /// The TCP connection was not established within `connect_timeout` (`UF`).
    #[error("upstream connect timeout")]
    ConnectTimeout,
    /// The upstream connection or stream went away before the response headers.
    /// The message starts with [`CONNECTION_TERMINATED`] when the connection closed
    /// (`UC`); otherwise the stream was reset (`UR`).
    #[error("upstream reset before response: {0}")]
    ResetBeforeResponse(String),
    /// The upstream spoke something we could not understand, or the request could not be sent.
    #[error("upstream protocol error: {0}")]
    Protocol(String),
    /// The request could not be sent: its body failed (the client's side: a malformed
    /// or aborted body). Not the host's fault; not retried.
    #[error("request body error: {0}")]
    RequestBody(String),
    /// A circuit breaker refused the request (`UO`).
    #[error("upstream overflow: {0:?} limit reached")]
    Overflow(crate::circuit_breaker::Resource),
}

/// Prefix of a [`UpstreamError::ResetBeforeResponse`] message meaning the connection closed (`UC`).
pub const CONNECTION_TERMINATED: &str = "connection termination";

impl UpstreamError {
    /// The Envoy response flag for this error: `UF`, `UC` or `UR`.
    pub fn response_flag(&self) -> &'static str {
        match self {
            UpstreamError::ConnectFailure(_) | UpstreamError::ConnectTimeout => "UF",
            UpstreamError::ResetBeforeResponse(m) if m.starts_with(CONNECTION_TERMINATED) => "UC",
            UpstreamError::ResetBeforeResponse(_)
            | UpstreamError::Protocol(_)
            | UpstreamError::RequestBody(_) => "UR",
            UpstreamError::Overflow(_) => "UO",
        }
    }

    /// The same error again, for each of the requests that shared a failed attempt.
    pub(crate) fn duplicate(&self) -> Self {
        match self {
            UpstreamError::ConnectFailure(e) => {
                UpstreamError::ConnectFailure(std::io::Error::new(e.kind(), e.to_string()))
            }
            UpstreamError::ConnectTimeout => UpstreamError::ConnectTimeout,
            UpstreamError::ResetBeforeResponse(m) => UpstreamError::ResetBeforeResponse(m.clone()),
            UpstreamError::Protocol(m) => UpstreamError::Protocol(m.clone()),
            UpstreamError::RequestBody(m) => UpstreamError::RequestBody(m.clone()),
            UpstreamError::Overflow(r) => UpstreamError::Overflow(*r),
        }
    }

    /// Classifies a hyper client error that happened after the request was handed to a connection.
    pub(crate) fn from_hyper(e: &hyper::Error) -> Self {
        if e.is_user() {
            UpstreamError::RequestBody(e.to_string())
        } else if e.is_parse() || e.is_parse_status() {
            UpstreamError::Protocol(e.to_string())
        } else if e.is_incomplete_message() || e.is_canceled() || e.is_closed() || io_source(e) {
            UpstreamError::ResetBeforeResponse(format!("{CONNECTION_TERMINATED}: {e}"))
        } else {
            // The chain says why (h2: "stream error received: refused stream ...").
            let mut msg = format!("remote reset: {e}");
            let mut src = std::error::Error::source(e);
            while let Some(s) = src {
                msg.push_str(": ");
                msg.push_str(&s.to_string());
                src = s.source();
            }
            UpstreamError::ResetBeforeResponse(msg)
        }
    }

    /// Whether the upstream refused the stream before processing it (HTTP/2
    /// REFUSED_STREAM), which `retry_on: refused-stream` retries.
    pub fn is_refused_stream(&self) -> bool {
        matches!(self, UpstreamError::ResetBeforeResponse(m) if m.contains("refused stream"))
    }
}

fn io_source(e: &hyper::Error) -> bool {
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        if s.is::<std::io::Error>() {
            return true;
        }
        src = s.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(UpstreamError::ConnectFailure(refused).response_flag(), "UF");
        assert_eq!(UpstreamError::ConnectTimeout.response_flag(), "UF");
        let uc = UpstreamError::ResetBeforeResponse(format!("{CONNECTION_TERMINATED}: x"));
        assert_eq!(uc.response_flag(), "UC");
        let ur = UpstreamError::ResetBeforeResponse("remote reset: x".into());
        assert_eq!(ur.response_flag(), "UR");
    }
}
