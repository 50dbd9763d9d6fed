//! Loopback ports for tests, and rewriting a bootstrap onto them.
//!
//! A scenario's bootstrap is written with any addresses; before a proxy starts,
//! every listener and the admin endpoint are moved to `127.0.0.1` and a fresh
//! port, and cluster endpoints are pointed at the test's backends.

use std::collections::{BTreeMap, HashSet};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Mutex, OnceLock};

use anyhow::{bail, Context};
use serde_yaml::{Mapping, Value};

/// Ports this process already handed out; the kernel may reuse a port once its
/// probe socket is closed, and two proxies of one test must not get the same one.
fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A free TCP port on 127.0.0.1 that this process has not handed out before.
///
/// Ports come from below the kernel's ephemeral range: a port picked by binding port 0
/// and released can be taken by any outgoing connection's ephemeral port before the
/// proxy binds it, which made proxies fail with "address in use" now and then.
pub fn try_free_port() -> std::io::Result<u16> {
    let (low, high) = candidate_range();
    let span = u64::from(high - low);
    let mut next = random_seed() % span;
    for _ in 0..512 {
        let port = low + (next % span) as u16;
        next = next
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407)
            >> 11;
        let mut seen = handed_out().lock().unwrap_or_else(|e| e.into_inner());
        if seen.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            seen.insert(port);
            return Ok(port);
        }
    }
    Err(std::io::Error::other("no unused port after 512 tries"))
}

/// Ports below the ephemeral range (`ip_local_port_range`), above the well-known ones.
fn candidate_range() -> (u16, u16) {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|v| v.parse::<u16>().ok())
        })
        .unwrap_or(32768);
    if ephemeral_low > 12_000 {
        (10_000, ephemeral_low)
    } else {
        // An unusual range: fall back to above it.
        (61_000, 65_000)
    }
}

fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish()
}

/// A free TCP port on 127.0.0.1 (bound on port 0, read, released).
///
/// Panics when the loopback interface cannot be bound: a test cannot run then.
pub fn free_port() -> u16 {
    match try_free_port() {
        Ok(port) => port,
        Err(e) => panic!("cannot find a free port on 127.0.0.1: {e}"),
    }
}

/// A bootstrap moved onto fresh loopback ports.
#[derive(Debug, Clone)]
pub struct Rewritten {
    /// The rewritten bootstrap, as YAML.
    pub yaml: String,
    /// The admin port (an admin block is added when the template has none).
    pub admin_port: u16,
    /// One port per `static_resources.listeners[*]`, in order.
    pub listener_ports: Vec<u16>,
}

/// Rewrites a bootstrap onto 127.0.0.1 and fresh ports.
///
/// - every `static_resources.listeners[*].address.socket_address` gets
///   `127.0.0.1` and a fresh port;
/// - `admin.address.socket_address` likewise; an admin block is added if absent
///   (readiness is checked on its `/ready`);
/// - cluster endpoints (`load_assignment.endpoints[*].lb_endpoints[*].endpoint.address`
///   and the legacy v2 `hosts[*]`) are remapped through `endpoints`, keyed by
///   the cluster's name (all its endpoints) or by `host:port` (that endpoint).
///   Endpoints with no entry are left as written.
pub fn rewrite_bootstrap(
    template: &str,
    endpoints: &BTreeMap<String, SocketAddr>,
) -> anyhow::Result<Rewritten> {
    let mut root: Value = serde_yaml::from_str(template).context("bootstrap is not YAML")?;
    let Some(root_map) = root.as_mapping_mut() else {
        bail!("bootstrap must be a YAML mapping");
    };

    let mut listener_ports = Vec::new();
    if let Some(listeners) = root_map
        .get_mut("static_resources")
        .and_then(|s| s.get_mut("listeners"))
        .and_then(Value::as_sequence_mut)
    {
        for (i, listener) in listeners.iter_mut().enumerate() {
            let Some(sa) = listener
                .get_mut("address")
                .and_then(|a| a.get_mut("socket_address"))
            else {
                bail!("static_resources.listeners[{i}].address.socket_address is missing");
            };
            let port = try_free_port()?;
            set_socket_address(sa, "127.0.0.1", port)?;
            listener_ports.push(port);
        }
    }

    let admin_port = try_free_port()?;
    let admin = root_map
        .entry(Value::from("admin"))
        .or_insert_with(|| Value::Mapping(Mapping::new()));
    let Some(admin) = admin.as_mapping_mut() else {
        bail!("admin must be a mapping");
    };
    let mut sa = Mapping::new();
    sa.insert("address".into(), "127.0.0.1".into());
    sa.insert("port_value".into(), admin_port.into());
    let mut address = Mapping::new();
    address.insert("socket_address".into(), Value::Mapping(sa));
    admin.insert("address".into(), Value::Mapping(address));

    if let Some(clusters) = root_map
        .get_mut("static_resources")
        .and_then(|s| s.get_mut("clusters"))
        .and_then(Value::as_sequence_mut)
    {
        for cluster in clusters.iter_mut() {
            let name = cluster
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            for sa in cluster_socket_addresses(cluster) {
                let key = format!(
                    "{}:{}",
                    sa.get("address")
                        .and_then(Value::as_str)
                        .unwrap_or_default(),
                    sa.get("port_value")
                        .and_then(Value::as_u64)
                        .unwrap_or_default()
                );
                if let Some(to) = endpoints.get(&name).or_else(|| endpoints.get(&key)) {
                    set_socket_address(sa, &to.ip().to_string(), to.port())?;
                }
            }
        }
    }

    let yaml = serde_yaml::to_string(&root).context("cannot write bootstrap")?;
    Ok(Rewritten {
        yaml,
        admin_port,
        listener_ports,
    })
}

/// Reads the listener and admin ports of an already rewritten bootstrap:
/// `(admin_port, listener_ports)`.
pub fn ports_of(yaml: &str) -> anyhow::Result<(u16, Vec<u16>)> {
    let root: Value = serde_yaml::from_str(yaml).context("bootstrap is not YAML")?;
    let port_of = |v: Option<&Value>| {
        v.and_then(|a| a.get("socket_address"))
            .and_then(|s| s.get("port_value"))
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
    };
    let Some(admin) = port_of(root.get("admin").and_then(|a| a.get("address"))) else {
        bail!("admin.address.socket_address.port_value is missing");
    };
    let mut listeners = Vec::new();
    if let Some(seq) = root
        .get("static_resources")
        .and_then(|s| s.get("listeners"))
        .and_then(Value::as_sequence)
    {
        for (i, l) in seq.iter().enumerate() {
            let Some(port) = port_of(l.get("address")) else {
                bail!(
                    "static_resources.listeners[{i}].address.socket_address.port_value is missing"
                );
            };
            listeners.push(port);
        }
    }
    Ok((admin, listeners))
}

fn set_socket_address(sa: &mut Value, address: &str, port: u16) -> anyhow::Result<()> {
    let Some(map) = sa.as_mapping_mut() else {
        bail!("socket_address must be a mapping");
    };
    map.insert("address".into(), address.into());
    map.insert("port_value".into(), port.into());
    Ok(())
}

/// Every endpoint `socket_address` of a cluster, v3 and legacy v2 shapes.
fn cluster_socket_addresses(cluster: &mut Value) -> Vec<&mut Value> {
    let mut out = Vec::new();
    let Some(map) = cluster.as_mapping_mut() else {
        return out;
    };
    for (key, value) in map.iter_mut() {
        match key.as_str() {
            Some("load_assignment") => {
                let Some(localities) = value.get_mut("endpoints").and_then(Value::as_sequence_mut)
                else {
                    continue;
                };
                for locality in localities {
                    let Some(lbs) = locality
                        .get_mut("lb_endpoints")
                        .and_then(Value::as_sequence_mut)
                    else {
                        continue;
                    };
                    for lb in lbs {
                        if let Some(sa) = lb
                            .get_mut("endpoint")
                            .and_then(|e| e.get_mut("address"))
                            .and_then(|a| a.get_mut("socket_address"))
                        {
                            out.push(sa);
                        }
                    }
                }
            }
            Some("hosts") => {
                if let Some(hosts) = value.as_sequence_mut() {
                    for host in hosts {
                        if let Some(sa) = host.get_mut("socket_address") {
                            out.push(sa);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = r#"
static_resources:
  listeners:
  - name: a
    address: {socket_address: {address: 0.0.0.0, port_value: 80}}
  - name: b
    address: {socket_address: {address: 0.0.0.0, port_value: 81}}
  clusters:
  - name: svc
    load_assignment:
      cluster_name: svc
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: svc.local, port_value: 8080}}}
  - name: legacy
    hosts: [{socket_address: {address: old, port_value: 9}}]
  - name: untouched
    hosts: [{socket_address: {address: keep, port_value: 7}}]
"#;

    #[test]
    fn rewrites_listeners_admin_and_mapped_endpoints() -> anyhow::Result<()> {
        let mut map = BTreeMap::new();
        map.insert("svc".to_owned(), "127.0.0.1:1111".parse()?);
        map.insert("old:9".to_owned(), "127.0.0.1:2222".parse()?);
        let r = rewrite_bootstrap(TEMPLATE, &map)?;
        assert_eq!(r.listener_ports.len(), 2);
        assert_ne!(r.listener_ports[0], r.listener_ports[1]);
        assert_eq!(ports_of(&r.yaml)?, (r.admin_port, r.listener_ports.clone()));
        assert!(r.yaml.contains("port_value: 1111"), "{}", r.yaml);
        assert!(r.yaml.contains("port_value: 2222"), "{}", r.yaml);
        assert!(r.yaml.contains("address: keep"), "{}", r.yaml);
        assert!(!r.yaml.contains("0.0.0.0"), "{}", r.yaml);
        Ok(())
    }

    #[test]
    fn free_ports_are_not_repeated() {
        let a = free_port();
        let b = free_port();
        assert_ne!(a, b);
    }
}
