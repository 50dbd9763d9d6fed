//! Network filters: the terminal filter of a filter chain.

mod h1_guard;
pub mod hcm;
pub mod tcp_proxy;
