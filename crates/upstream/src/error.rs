//! Upstream errors and their mapping to Envoy response flags (one place).

use ferry_config::ResponseFlag;

/// Why an upstream request or connection failed, classified once where it happens.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The TCP connection could not be established (Envoy flag `UF`).
    #[error("upstream connect error: {0}")]
    ConnectFailure(std::io::Error),
    /// The TCP connection was not established within `connect_timeout` (`UF`).
    #[error("upstream connect timeout")]
    ConnectTimeout,
    /// The upstream connection closed before the response headers (`UC`).
    #[error("upstream reset before response: connection termination: {0}")]
    ConnectionTermination(String),
    /// The upstream reset the stream before the response headers (`UR`).
    #[error("upstream reset before response: remote reset: {message}")]
    RemoteReset {
        /// HTTP/2 `REFUSED_STREAM`: the upstream did not process the request
        /// (`retry_on: refused-stream`).
        refused: bool,
        /// What the codec said.
        message: String,
    },
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

impl UpstreamError {
    /// The Envoy response flag for this error: `UF`, `UC`, `UR` or `UO`.
    pub fn response_flag(&self) -> ResponseFlag {
        match self {
            UpstreamError::ConnectFailure(_) | UpstreamError::ConnectTimeout => {
                ResponseFlag::UpstreamConnectionFailure
            }
            UpstreamError::ConnectionTermination(_) => ResponseFlag::UpstreamConnectionTermination,
            UpstreamError::RemoteReset { .. }
            | UpstreamError::Protocol(_)
            | UpstreamError::RequestBody(_) => ResponseFlag::UpstreamRemoteReset,
            UpstreamError::Overflow(_) => ResponseFlag::UpstreamOverflow,
        }
    }

    /// Whether the host had a part in the failure (a retry policy may retry it):
    /// not when a circuit breaker refused the request or the client's body failed.
    pub fn is_upstream_failure(&self) -> bool {
        !matches!(
            self,
            UpstreamError::Overflow(_) | UpstreamError::RequestBody(_)
        )
    }

    /// The same error again, for each of the requests that shared a failed attempt.
    pub(crate) fn duplicate(&self) -> Self {
        match self {
            UpstreamError::ConnectFailure(e) => {
                UpstreamError::ConnectFailure(std::io::Error::new(e.kind(), e.to_string()))
            }
            UpstreamError::ConnectTimeout => UpstreamError::ConnectTimeout,
            UpstreamError::ConnectionTermination(m) => {
                UpstreamError::ConnectionTermination(m.clone())
            }
            UpstreamError::RemoteReset { refused, message } => UpstreamError::RemoteReset {
                refused: *refused,
                message: message.clone(),
            },
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
            UpstreamError::ConnectionTermination(e.to_string())
        } else {
            // The chain says why (h2: "stream error received: refused stream ...").
            let mut message = e.to_string();
            let mut refused = false;
            let mut src = std::error::Error::source(e);
            while let Some(s) = src {
                if let Some(h2) = s.downcast_ref::<h2::Error>() {
                    refused |= h2.reason() == Some(h2::Reason::REFUSED_STREAM);
                }
                message.push_str(": ");
                message.push_str(&s.to_string());
                src = s.source();
            }
            UpstreamError::RemoteReset { refused, message }
        }
    }

    /// Whether the upstream refused the stream before processing it (HTTP/2
    /// REFUSED_STREAM), which `retry_on: refused-stream` retries.
    pub fn is_refused_stream(&self) -> bool {
        matches!(self, UpstreamError::RemoteReset { refused: true, .. })
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
        let uf = ResponseFlag::UpstreamConnectionFailure;
        assert_eq!(UpstreamError::ConnectFailure(refused).response_flag(), uf);
        assert_eq!(UpstreamError::ConnectTimeout.response_flag(), uf);
        let uc = UpstreamError::ConnectionTermination("x".into());
        assert_eq!(
            uc.response_flag(),
            ResponseFlag::UpstreamConnectionTermination
        );
        let ur = UpstreamError::RemoteReset {
            refused: false,
            message: "x".into(),
        };
        assert_eq!(ur.response_flag(), ResponseFlag::UpstreamRemoteReset);
        assert!(!ur.is_refused_stream());
        let overflow = UpstreamError::Overflow(crate::circuit_breaker::Resource::Requests);
        assert_eq!(overflow.response_flag(), ResponseFlag::UpstreamOverflow);
        assert!(!overflow.is_upstream_failure());
        assert!(ur.is_upstream_failure());
    }
}
