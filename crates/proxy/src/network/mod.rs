//! Network filters: the terminal filter of a filter chain.

mod h1_guard;
pub mod hcm;
pub mod local_ratelimit;
pub mod tcp_proxy;
