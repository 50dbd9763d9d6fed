//! The registration every filter declares (HTTP and network alike): its Envoy name,
//! its config type and its config conversion. Each kind of filter adds its own traits
//! (`http/filters/mod.rs`, `network/mod.rs`); `extensions.rs` lists them for loads.

/// Declares a filter's registration, `Factory`: its Envoy name, its config type, and
/// its config converted by the `config::from_any` of the filter's folder into a
/// `$config`. The filter then implements its kind's factory traits for it.
macro_rules! filter_factory {
    (name: $name:literal, config_type: $ty:literal, config: $config:ty $(,)?) => {
        /// This filter's registration.
        pub struct Factory;

        impl ferry_config::filters::FilterFactory for Factory {
            fn name(&self) -> &'static str {
                $name
            }
            fn config_type(&self) -> &'static str {
                $ty
            }
            fn config(
                &self,
                any: &ferry_envoy_api::pb::google::protobuf::Any,
                ctx: &mut ferry_config::Ctx,
            ) -> Option<ferry_config::filters::FilterConfig> {
                let config: $config = config::from_any(any, ctx)?;
                Some(std::sync::Arc::new(config))
            }
        }
    };
}
pub(crate) use filter_factory;
