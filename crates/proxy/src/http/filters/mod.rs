//! The HTTP filters ferry implements, each in a file of its own, registered here by
//! the kind of config that names them (the Envoy name and type URL are matched in
//! `ferry_config::filters`). The filter manager (`http/filter_manager.rs`) runs them;
//! the router is not among them: it is the terminal step of every stream.

pub mod fault;
pub mod health_check;
pub mod local_ratelimit;

pub use crate::http::filter_manager::Env;
use crate::http::filter_manager::HttpFilter;
use ferry_config::filters::{HttpFilter as FilterConfig, HttpFilterConfig};
use std::sync::Arc;

/// Builds the filter of `http_filters[index]`: the one place where a filter's kind is
/// turned into the code that runs it.
pub fn build(f: &FilterConfig, index: usize, env: &Env<'_>) -> Arc<dyn HttpFilter> {
    match &f.config {
        HttpFilterConfig::Fault(c) => Arc::new(fault::FaultFilter::new(&f.name, c.clone(), env)),
        HttpFilterConfig::LocalRateLimit(c) => Arc::new(
            local_ratelimit::LocalRateLimitFilter::new(&f.name, index, c.clone(), env),
        ),
        HttpFilterConfig::HealthCheck(c) => Arc::new(health_check::HealthCheckFilter::new(
            &f.name,
            c.clone(),
            env,
        )),
    }
}
