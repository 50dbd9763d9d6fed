//! HTTP: the per-stream path from request headers to the response body's last byte.

pub mod body;
pub mod headers;
pub mod local_reply;
pub mod route_match;
pub mod router;
pub mod upgrade;
