//! Route configurations that come by name from RDS (Envoy's
//! `RouteConfigProviderManager`): the latest of each name, and the connection managers
//! that use it, so that an update replaces their route table alone
//! (`HcmRuntime::replace_route_config`) and a connection manager built later starts
//! with the latest.

use crate::http::conn_manager::HcmRuntime;
use ferry_config::route::RouteConfig;
use std::collections::HashMap;
use std::sync::{Arc, Weak};

/// The route configurations from RDS, by name.
#[derive(Debug, Default)]
pub struct RouteConfigProviders {
    by_name: parking_lot::Mutex<HashMap<String, Provider>>,
}

#[derive(Debug, Default)]
struct Provider {
    config: Option<Arc<RouteConfig>>,
    users: Vec<Weak<HcmRuntime>>,
}

impl RouteConfigProviders {
    /// Registers `hcm` as a user of `name`, and gives it the latest configuration of
    /// that name if there is one.
    pub fn subscribe(&self, name: &str, hcm: &Arc<HcmRuntime>) {
        let config = {
            let mut by_name = self.by_name.lock();
            let provider = by_name.entry(name.to_string()).or_default();
            provider.users.retain(|u| u.strong_count() > 0);
            provider.users.push(Arc::downgrade(hcm));
            provider.config.clone()
        };
        if let Some(config) = config {
            hcm.replace_route_config(config);
        }
    }

    /// A new configuration of `name`: every connection manager using it routes its
    /// next request with it.
    pub fn update(&self, name: &str, config: Arc<RouteConfig>) {
        let users: Vec<Arc<HcmRuntime>> = {
            let mut by_name = self.by_name.lock();
            let provider = by_name.entry(name.to_string()).or_default();
            provider.config = Some(config.clone());
            provider.users.retain(|u| u.strong_count() > 0);
            provider.users.iter().filter_map(Weak::upgrade).collect()
        };
        for hcm in users {
            hcm.replace_route_config(config.clone());
        }
    }

    /// Whether a configuration of `name` has come.
    pub fn has(&self, name: &str) -> bool {
        self.by_name
            .lock()
            .get(name)
            .is_some_and(|p| p.config.is_some())
    }

    /// The names some connection manager uses now (what RDS subscribes to).
    pub fn names_in_use(&self) -> Vec<String> {
        let mut by_name = self.by_name.lock();
        by_name.retain(|_, p| {
            p.users.retain(|u| u.strong_count() > 0);
            !p.users.is_empty() || p.config.is_some()
        });
        let mut names: Vec<String> = by_name
            .iter()
            .filter(|(_, p)| !p.users.is_empty())
            .map(|(n, _)| n.clone())
            .collect();
        names.sort();
        names
    }
}
