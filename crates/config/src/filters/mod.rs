//! HTTP filters (`http_filters`), their per-route configs (`typed_per_filter_config`)
//! and network filters, converted by the filters themselves.
//!
//! A filter's config conversion lives with its runtime, in the filter's own folder of the
//! proxy (`proxy/src/http/filters/<name>/`), and is registered there by its Envoy name and
//! config type (`proxy/src/http/filters/mod.rs`). This crate knows filters only through
//! [`HttpFilterFactory`]: the registry a load is given ([`Ctx::extensions`]) turns each
//! `typed_config` into a [`FilterConfig`] that only the filter reads.

pub mod rate_limit_actions;

use crate::any::{type_name, unpack};
use crate::Ctx;
use ferry_envoy_api::pb::google::protobuf::Any;
use std::sync::Arc;

/// A filter's converted config: opaque here, read back by the filter that made it.
pub type FilterConfig = Arc<dyn std::any::Any + Send + Sync>;

/// How one filter's config is converted: what HTTP and network filter factories share.
pub trait FilterFactory: Send + Sync {
    /// The filter's Envoy name (`envoy.filters.http.fault`).
    fn name(&self) -> &'static str;
    /// Its config's type (`envoy.extensions.filters.http.fault.v3.HTTPFault`).
    fn config_type(&self) -> &'static str;
    /// Converts `typed_config` (errors go to `ctx`).
    fn config(&self, any: &Any, ctx: &mut Ctx) -> Option<FilterConfig>;
}

/// How one HTTP filter's config is converted (Envoy's `NamedHttpFilterConfigFactory`).
pub trait HttpFilterFactory: FilterFactory {
    /// Whether it ends the chain (the router).
    fn terminal(&self) -> bool {
        false
    }
    /// Converts a route's `typed_per_filter_config` for this filter.
    fn per_route_config(&self, any: &Any, ctx: &mut Ctx) -> Option<FilterConfig> {
        let _ = any;
        ctx.error(format!("{} takes no per-route config", self.name()));
        None
    }
}

/// How one network filter's config is converted (Envoy's
/// `NamedNetworkFilterConfigFactory`): a read filter before the terminal one
/// (`envoy.filters.network.local_ratelimit`) or a terminal filter
/// (`envoy.filters.network.tcp_proxy`). The HTTP connection manager is not one of them:
/// its config is this crate's model (`hcm.rs`).
pub trait NetworkFilterFactory: FilterFactory {
    /// Whether it ends the chain.
    fn terminal(&self) -> bool;
    /// The clusters `config` sends to, which must exist.
    fn clusters(&self, config: &FilterConfig) -> Vec<String> {
        let _ = config;
        Vec::new()
    }
}

/// The filters a load knows, by config type.
pub trait Extensions: Send + Sync {
    /// The HTTP filter whose config type is `config_type`.
    fn http_filter(&self, config_type: &str) -> Option<&'static dyn HttpFilterFactory>;
    /// The network filter whose config type is `config_type`.
    fn network_filter(&self, config_type: &str) -> Option<&'static dyn NetworkFilterFactory>;
}

/// No filters (a load of clusters alone, or a test of the model).
#[derive(Debug)]
pub struct NoExtensions;

impl Extensions for NoExtensions {
    fn http_filter(&self, _: &str) -> Option<&'static dyn HttpFilterFactory> {
        None
    }
    fn network_filter(&self, _: &str) -> Option<&'static dyn NetworkFilterFactory> {
        None
    }
}

/// A filter of a chain (HTTP or network): its name (routes name their per-filter
/// configs by it), its config type and its converted config.
#[derive(Clone)]
pub struct Filter {
    /// `name`.
    pub name: String,
    /// The config's type (which filter this is).
    pub config_type: &'static str,
    /// The converted `typed_config`.
    pub config: FilterConfig,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter")
            .field("name", &self.name)
            .field("config_type", &self.config_type)
            .finish_non_exhaustive()
    }
}

/// Converts a filter's `typed_config` with its factory, found by config type among the
/// HTTP filters or the network filters (`ctx` is at the filter; a filter ferry does not
/// have is reported there).
pub fn filter(
    name: &str,
    any: &Any,
    factory: Option<&dyn FilterFactory>,
    ctx: &mut Ctx,
) -> Option<Filter> {
    let Some(factory) = factory else {
        crate::support::refuse_extension_type(ctx, name, any);
        return None;
    };
    let config = ctx.at("typed_config", |ctx| factory.config(any, ctx))?;
    Some(Filter {
        name: name.to_string(),
        config_type: factory.config_type(),
        config,
    })
}

/// An HTTP filter ([`filter`] among the HTTP filters).
pub fn http_filter(name: &str, any: &Any, ctx: &mut Ctx) -> Option<Filter> {
    let factory = ctx.extensions.http_filter(type_name(any));
    filter(name, any, factory.map(|f| f as &dyn FilterFactory), ctx)
}

/// A network filter ([`filter`] among the network filters).
pub fn network_filter(name: &str, any: &Any, ctx: &mut Ctx) -> Option<Filter> {
    let factory = ctx.extensions.network_filter(type_name(any));
    filter(name, any, factory.map(|f| f as &dyn FilterFactory), ctx)
}

/// A per-route filter config (`typed_per_filter_config`), by filter name.
#[derive(Clone)]
pub enum PerRoute {
    /// Replaces the filter's config on this route.
    Config(FilterConfig),
    /// `envoy.config.route.v3.FilterConfig` with `disabled: true`: the filter does not
    /// run on this route.
    Disabled,
}

impl std::fmt::Debug for PerRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PerRoute::Config(_) => f.write_str("Config(..)"),
            PerRoute::Disabled => f.write_str("Disabled"),
        }
    }
}

const FILTER_CONFIG: &str = "envoy.config.route.v3.FilterConfig";

/// Converts `typed_per_filter_config` (sorted by filter name, for stable lookups).
pub fn per_route(
    map: &std::collections::HashMap<String, Any>,
    ctx: &mut Ctx,
) -> Vec<(String, PerRoute)> {
    let mut out: Vec<(String, PerRoute)> = Vec::new();
    for (name, any) in map {
        ctx.at(format!("typed_per_filter_config[{name}]"), |ctx| {
            // The FilterConfig wrapper: `disabled`, or the config it holds.
            let wrapped;
            let any = if type_name(any) == FILTER_CONFIG {
                let fc: ferry_envoy_api::pb::envoy::config::route::v3::FilterConfig =
                    unpack(any, ctx)?;
                crate::fields!(ctx, &fc => ferry_envoy_api::pb::envoy::config::route::v3::FilterConfig as "envoy.config.route.v3.FilterConfig" {
                    config, is_optional, disabled,
                });
                if fc.disabled {
                    out.push((name.clone(), PerRoute::Disabled));
                    return Some(());
                }
                wrapped = fc.config?;
                &wrapped
            } else {
                any
            };
            let Some(factory) = ctx.extensions.http_filter(type_name(any)) else {
                crate::support::refuse_extension_type(ctx, name, any);
                return None;
            };
            let config = factory.per_route_config(any, ctx)?;
            out.push((name.clone(), PerRoute::Config(config)));
            Some(())
        });
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// A registry for this crate's tests: the router alone (its config unread), so that
/// connection managers load without the proxy's filters.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    struct Router;

    impl FilterFactory for Router {
        fn name(&self) -> &'static str {
            "envoy.filters.http.router"
        }
        fn config_type(&self) -> &'static str {
            "envoy.extensions.filters.http.router.v3.Router"
        }
        fn config(&self, _: &Any, _: &mut Ctx) -> Option<FilterConfig> {
            Some(Arc::new(()))
        }
    }

    impl HttpFilterFactory for Router {
        fn terminal(&self) -> bool {
            true
        }
    }

    struct RouterOnly;

    impl Extensions for RouterOnly {
        fn http_filter(&self, config_type: &str) -> Option<&'static dyn HttpFilterFactory> {
            (config_type == Router.config_type()).then_some(&Router as &dyn HttpFilterFactory)
        }
        fn network_filter(&self, _: &str) -> Option<&'static dyn NetworkFilterFactory> {
            None
        }
    }

    /// Loads a bootstrap whose connection managers have the router alone.
    pub(crate) fn load(
        text: &str,
        format: crate::Format,
    ) -> Result<crate::Loaded, crate::ConfigErrors> {
        crate::load_with(text, format, &RouterOnly)
    }
}
