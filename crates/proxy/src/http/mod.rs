//! HTTP: the per-stream path from request headers to the response body's last byte.

pub mod attempts;
pub mod body;
pub mod conn_manager;
pub mod connection;
pub mod filter_manager;
pub mod filters;
pub mod headers;
pub mod local_reply;
pub mod mirror;
pub mod replay;
pub mod request_headers;
pub mod retry;
pub mod route_config_provider;
pub mod route_match;
pub mod route_table;
pub mod router;
pub mod stream;
pub mod timeouts;
pub mod upgrade;
