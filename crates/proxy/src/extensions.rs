//! The filters this proxy has, as a config load sees them: the HTTP filters of
//! `http/filters/` and the network filters of `network/`, each registered in its list
//! there by Envoy name and config type. Loading a bootstrap through [`load`]
//! converts every filter's config with the filter's own code.

use ferry_config::filters::{Extensions, HttpFilterFactory, NetworkFilterFactory};
use ferry_config::{ConfigErrors, Format, Loaded};

/// The registry of this proxy's filters.
#[derive(Debug)]
pub struct Registry;

/// This proxy's filters.
pub static EXTENSIONS: Registry = Registry;

impl Extensions for Registry {
    fn http_filter(&self, config_type: &str) -> Option<&'static dyn HttpFilterFactory> {
        let f = crate::http::filters::factory(config_type)?;
        Some(f)
    }

    fn network_filter(&self, config_type: &str) -> Option<&'static dyn NetworkFilterFactory> {
        let f = crate::network::factory(config_type)?;
        Some(f)
    }
}

/// Decodes and validates a bootstrap with this proxy's filters.
pub fn load(text: &str, format: Format) -> Result<Loaded, ConfigErrors> {
    ferry_config::load_with(text, format, &EXTENSIONS)
}
