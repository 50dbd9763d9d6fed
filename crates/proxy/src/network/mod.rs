//! Network filters: the terminal filter of a filter chain.

pub mod hcm;
pub mod tcp_proxy;
