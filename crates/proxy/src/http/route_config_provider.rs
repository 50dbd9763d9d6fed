//! Route configurations that come by name from RDS (Envoy's
//! `RouteConfigProviderManager`): the latest of each name, and the connection managers
//! that use it, so that an update replaces their route table alone
//! (`HcmRuntime::replace_route_config`) and a connection manager built later starts
//! with the latest.

use crate::http::conn_manager::HcmRuntime;
use ferry_config::dynamic::{ConfigSource, Rds};
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
    /// Where it comes from (the first user's `config_source`).
    source: Option<ConfigSource>,
    /// `http.<stat_prefix>.rds.<name>.*`, under the first user's prefix (as Envoy
    /// shares one subscription between connection managers).
    stats: Option<Arc<RdsStats>>,
}

ferry_stats::stat_group! {
    /// `http.<stat_prefix>.rds.<route_config_name>.*`: a subscription's stats and
    /// the reloads it caused.
    pub struct RdsStats {
        counters: {
            config_reload, update_attempt, update_success, update_rejected, update_failure,
            update_empty, init_fetch_timeout,
        }
        gauges: { config_reload_time_ms, version, update_time }
    }
}

impl RouteConfigProviders {
    /// Registers `hcm` (whose stats are `http.<stat_prefix>.`) as a user of `rds`'s
    /// route configuration, and gives it the latest one of that name if there is one.
    pub fn subscribe(
        &self,
        rds: &Rds,
        hcm: &Arc<HcmRuntime>,
        stat_prefix: &str,
        store: &ferry_stats::Store,
    ) {
        let config = {
            let mut by_name = self.by_name.lock();
            let name = &rds.name;
            let provider = by_name.entry(name.to_string()).or_default();
            provider.users.retain(|u| u.strong_count() > 0);
            provider.users.push(Arc::downgrade(hcm));
            provider.source.get_or_insert_with(|| rds.source.clone());
            if provider.stats.is_none() {
                let stats = Arc::new(RdsStats::default());
                let name = name.replace(':', "_");
                store.register(format!("http.{stat_prefix}.rds.{name}."), &stats);
                provider.stats = Some(stats);
            }
            provider.config.clone()
        };
        if let Some(config) = config {
            hcm.replace_route_config(config);
        }
    }

    /// The stats of `name`'s subscription, once a connection manager uses it.
    pub fn stats(&self, name: &str) -> Option<Arc<RdsStats>> {
        self.by_name.lock().get(name).and_then(|p| p.stats.clone())
    }

    /// A new configuration of `name`: every connection manager using it routes its
    /// next request with it.
    pub fn update(&self, name: &str, config: Arc<RouteConfig>) {
        let (users, stats): (Vec<Arc<HcmRuntime>>, _) = {
            let mut by_name = self.by_name.lock();
            let provider = by_name.entry(name.to_string()).or_default();
            provider.config = Some(config.clone());
            provider.users.retain(|u| u.strong_count() > 0);
            let users = provider.users.iter().filter_map(Weak::upgrade).collect();
            (users, provider.stats.clone())
        };
        for hcm in users {
            hcm.replace_route_config(config.clone());
        }
        if let Some(stats) = stats {
            stats.config_reload.inc();
            // When, in milliseconds since the epoch (as Envoy's gauge).
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
            let now = now.unwrap_or_default().as_millis() as u64;
            stats.config_reload_time_ms.set(now);
        }
    }

    /// Whether a configuration of `name` has come.
    pub fn has(&self, name: &str) -> bool {
        self.by_name
            .lock()
            .get(name)
            .is_some_and(|p| p.config.is_some())
    }

    /// The names some connection manager uses now, with where they come from (what
    /// RDS subscribes to).
    pub fn names_in_use(&self) -> Vec<(String, ConfigSource)> {
        let mut by_name = self.by_name.lock();
        by_name.retain(|_, p| {
            p.users.retain(|u| u.strong_count() > 0);
            !p.users.is_empty() || p.config.is_some()
        });
        let mut names: Vec<(String, ConfigSource)> = by_name
            .iter()
            .filter(|(_, p)| !p.users.is_empty())
            .filter_map(|(n, p)| Some((n.clone(), p.source.clone()?)))
            .collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        names
    }
}
