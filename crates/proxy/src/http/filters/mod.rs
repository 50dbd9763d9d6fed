//! The HTTP filters ferry implements, one folder each: `config.rs` converts the
//! filter's Envoy config, `mod.rs` runs it. They are registered here, one line each, by
//! their Envoy name and config type ([`HTTP_FILTERS`]). The filter manager
//! (`http/filter_manager.rs`) runs them. The router is registered here too, as the
//! terminal filter, but it is no stream filter: it is the terminal step of every stream
//! (`http/router/`), and the connection manager reads its config.

pub mod fault;
pub mod health_check;
pub mod local_ratelimit;

pub use crate::http::filter_manager::Env;
use crate::http::filter_manager::HttpFilter;
use ferry_config::filters::{Filter, FilterConfig};
use std::sync::Arc;

/// An HTTP filter as registered: its config conversion (Envoy name, config type) and
/// how its runtime is built from the converted config.
pub trait HttpFilterFactory: ferry_config::filters::HttpFilterFactory {
    /// Builds the filter of `http_filters[index]` (None: `config` is not this filter's).
    fn build(
        &self,
        name: &str,
        index: usize,
        config: &FilterConfig,
        env: &Env<'_>,
    ) -> Option<Arc<dyn HttpFilter>>;
}

/// Every HTTP filter, by Envoy name and config type.
pub static HTTP_FILTERS: &[&dyn HttpFilterFactory] = &[
    &fault::Factory,
    &local_ratelimit::Factory,
    &health_check::Factory,
    &crate::http::router::Factory,
];

/// The registered filter whose config type is `config_type`.
pub fn factory(config_type: &str) -> Option<&'static dyn HttpFilterFactory> {
    HTTP_FILTERS
        .iter()
        .copied()
        .find(|f| f.config_type() == config_type)
}

/// Builds the filter of `http_filters[index]`.
pub fn build(f: &Filter, index: usize, env: &Env<'_>) -> Option<Arc<dyn HttpFilter>> {
    factory(f.config_type)?.build(&f.name, index, &f.config, env)
}

/// Registers an HTTP filter whose config converts with `config::from_any` (also its
/// per-route config when `per_route` is true) and whose runtime is built by `build`.
macro_rules! http_filter_factory {
    (
        name: $name:literal,
        config_type: $ty:literal,
        config: $config:ty,
        per_route: $per_route:tt,
        build: $build:expr $(,)?
    ) => {
        crate::filter_factory::filter_factory! { name: $name, config_type: $ty, config: $config }

        impl ferry_config::filters::HttpFilterFactory for Factory {
            crate::http::filters::http_filter_factory!(@per_route $per_route);
        }

        impl crate::http::filters::HttpFilterFactory for Factory {
            fn build(
                &self,
                name: &str,
                index: usize,
                config: &ferry_config::filters::FilterConfig,
                env: &crate::http::filters::Env<'_>,
            ) -> Option<std::sync::Arc<dyn crate::http::filter_manager::HttpFilter>> {
                let config: std::sync::Arc<$config> = config.clone().downcast().ok()?;
                let build = $build;
                Some(build(name, index, config, env))
            }
        }
    };
    // A per-route config is converted as the filter's own; without one, the trait's
    // default refuses it.
    (@per_route true) => {
        fn per_route_config(
            &self,
            any: &ferry_envoy_api::pb::google::protobuf::Any,
            ctx: &mut ferry_config::Ctx,
        ) -> Option<ferry_config::filters::FilterConfig> {
            ferry_config::filters::FilterFactory::config(self, any, ctx)
        }
    };
    (@per_route false) => {};
}
pub(crate) use http_filter_factory;
