//! Helpers for the benchmark harness in `bench/`.
//!
//! Two binaries live here, both only ever bound to or aimed at loopback:
//! - `bench-backend`: the upstream every proxy forwards to (HTTP/1.1 and h2c on one
//!   port; small responses, body echo for the large-body scenario, gRPC unary echo);
//! - `bench-load`: an open-loop, fixed-rate HTTP/1.1 client that measures latency from
//!   each request's *intended* send time, so queueing behind a slow response is counted
//!   (no coordinated omission).
//!
//! Percentile arithmetic is shared and unit-tested here; nothing in this crate asserts
//! on timing.

/// The value at quantile `q` (0.0..=1.0) of `sorted` (ascending), nearest-rank method.
///
/// Returns 0 for an empty slice.
pub fn percentile(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted.len()) - 1;
    sorted[index]
}

/// Frames `message` as one gRPC length-prefixed message (uncompressed).
pub fn grpc_frame(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + message.len());
    out.push(0);
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// Where the body of an HTTP/1.1 response ends, from its head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLength {
    /// `Content-Length: n`.
    Fixed(usize),
    /// `Transfer-Encoding: chunked`: the body ends with the last chunk `0\r\n\r\n`.
    Chunked,
}

/// Parses an HTTP/1.1 response head (`head` ends before the blank line) into its
/// status code and body length. `None` when the status line is not HTTP/1.x.
pub fn parse_response_head(head: &[u8]) -> Option<(u16, BodyLength)> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next()?;
    let mut parts = status_line.splitn(3, ' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status: u16 = parts.next()?.parse().ok()?;
    let mut length = BodyLength::Fixed(0);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = BodyLength::Fixed(value.parse().ok()?);
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            && value.to_ascii_lowercase().contains("chunked")
        {
            length = BodyLength::Chunked;
        }
    }
    Some((status, length))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), 50);
        assert_eq!(percentile(&v, 0.99), 99);
        assert_eq!(percentile(&v, 0.999), 100);
        assert_eq!(percentile(&v, 0.0), 1);
        assert_eq!(percentile(&[], 0.5), 0);
    }

    #[test]
    fn grpc_frame_has_length_prefix() {
        assert_eq!(grpc_frame(b"ab"), vec![0, 0, 0, 0, 2, b'a', b'b']);
    }

    #[test]
    fn response_head_lengths() {
        let head = b"HTTP/1.1 200 OK\r\ncontent-length: 13\r\nserver: x";
        assert_eq!(
            parse_response_head(head),
            Some((200, BodyLength::Fixed(13)))
        );
        let head = b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked";
        assert_eq!(parse_response_head(head), Some((503, BodyLength::Chunked)));
        assert_eq!(parse_response_head(b"SSH-2.0 hi"), None);
    }
}
