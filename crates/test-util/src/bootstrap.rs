//! Bootstraps for integration tests in the shape most of them need: one listener whose
//! HTTP connection manager routes to a few clusters. Addresses and ports are
//! placeholders; [`crate::rewrite_bootstrap`] moves listeners and admin to fresh
//! loopback ports and points cluster endpoints at the test's backends.
//!
//! ```
//! use ferry_test_util::bootstrap::HcmBootstrap;
//! let yaml = HcmBootstrap::new()
//!     .hcm("max_request_headers_kb: 1")
//!     .route(r#"match: {prefix: "/"}
//! route: {cluster: backend, timeout: 1s}"#)
//!     .cluster("backend", "")
//!     .yaml();
//! assert!(yaml.contains("timeout: 1s"));
//! ```

/// A bootstrap with one HCM listener, built up field by field.
#[derive(Debug, Clone)]
pub struct HcmBootstrap {
    listener: String,
    hcm: Vec<String>,
    routes: Vec<String>,
    clusters: Vec<String>,
    admin: bool,
}

impl Default for HcmBootstrap {
    fn default() -> Self {
        Self::new()
    }
}

impl HcmBootstrap {
    /// Listener `main`, HCM `stat_prefix: ingress`, no routes or clusters yet, an admin
    /// endpoint.
    pub fn new() -> Self {
        HcmBootstrap {
            listener: "main".into(),
            hcm: Vec::new(),
            routes: Vec::new(),
            clusters: Vec::new(),
            admin: true,
        }
    }

    /// Names the listener.
    pub fn listener_name(mut self, name: &str) -> Self {
        self.listener = name.into();
        self
    }

    /// Adds fields to the HCM's `typed_config` (block YAML; indentation is adjusted).
    pub fn hcm(mut self, yaml: &str) -> Self {
        self.hcm.push(indent(yaml, 10));
        self
    }

    /// Adds a route to the one virtual host (`domains: ["*"]`): its fields as block
    /// YAML, e.g. `match: {prefix: "/ws"}` and `route: {cluster: ws}` on two lines.
    /// Without any, every request goes to the first cluster.
    pub fn route(mut self, yaml: &str) -> Self {
        self.routes.push(list_item(yaml, 14));
        self
    }

    /// Adds a STATIC cluster `name` with one endpoint (a placeholder address) and
    /// `extra` fields (block YAML, may be empty).
    pub fn cluster(self, name: &str, extra: &str) -> Self {
        let mut yaml = format!("name: {name}\ntype: STATIC\n");
        if !extra.trim().is_empty() {
            yaml.push_str(&dedent(extra));
            yaml.push('\n');
        }
        yaml.push_str(&format!(
            "load_assignment:\n  cluster_name: {name}\n  endpoints:\n  - lb_endpoints:\n    - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: 1}}}}}}"
        ));
        self.cluster_yaml(&yaml)
    }

    /// Adds a cluster written out whole (block YAML, starting with its `name`).
    pub fn cluster_yaml(mut self, yaml: &str) -> Self {
        self.clusters.push(list_item(yaml, 2));
        self
    }

    /// Leaves out the admin endpoint.
    pub fn without_admin(mut self) -> Self {
        self.admin = false;
        self
    }

    /// The bootstrap YAML.
    pub fn yaml(&self) -> String {
        let mut out = format!(
            r#"static_resources:
  listeners:
  - name: {}
    address: {{socket_address: {{address: 127.0.0.1, port_value: 1}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
"#,
            self.listener
        );
        for h in &self.hcm {
            out.push_str(h);
        }
        out.push_str(
            r#"          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
"#,
        );
        if self.routes.is_empty() {
            let first = self
                .clusters
                .first()
                .and_then(|c| c.trim_start().strip_prefix("- name: "))
                .and_then(|rest| rest.lines().next())
                .unwrap_or("backend");
            out.push_str(&list_item(
                &format!("match: {{prefix: \"/\"}}\nroute: {{cluster: {first}}}"),
                14,
            ));
        }
        for r in &self.routes {
            out.push_str(r);
        }
        out.push_str(
            r#"          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"#,
        );
        if !self.clusters.is_empty() {
            out.push_str("  clusters:\n");
        }
        for c in &self.clusters {
            out.push_str(c);
        }
        if self.admin {
            out.push_str(
                "admin:\n  address: {socket_address: {address: 127.0.0.1, port_value: 1}}\n",
            );
        }
        out
    }
}

/// `yaml` without the indentation its lines share, and without blank lines around it.
fn dedent(yaml: &str) -> String {
    let lines: Vec<&str> = yaml.trim_matches('\n').lines().collect();
    let common = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    lines
        .iter()
        .map(|l| l.get(common..).unwrap_or("").trim_end())
        .collect::<Vec<_>>()
        .join("\n")
}

/// `yaml` indented by `n` spaces, one line each, ending in a newline.
fn indent(yaml: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    dedent(yaml)
        .lines()
        .map(|l| format!("{pad}{l}\n"))
        .collect()
}

/// `yaml` as one item of a block list at indentation `n`.
fn list_item(yaml: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    dedent(yaml)
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                format!("{pad}- {l}\n")
            } else {
                format!("{pad}  {l}\n")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_valid_yaml_with_defaults() {
        let y = HcmBootstrap::new().cluster("backend", "").yaml();
        let v: serde_yaml::Value = serde_yaml::from_str(&y).unwrap_or_else(|e| panic!("{e}\n{y}"));
        let route = &v["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"]["route_config"]["virtual_hosts"][0]["routes"][0];
        assert_eq!(route["route"]["cluster"], "backend", "{y}");
        assert_eq!(v["static_resources"]["clusters"][0]["type"], "STATIC");
    }

    #[test]
    fn extra_fields_land_in_their_places() {
        let y = HcmBootstrap::new()
            .hcm("codec_type: AUTO\nmax_request_headers_kb: 1")
            .route("match: {prefix: \"/ws\"}\nroute: {cluster: ws}")
            .cluster(
                "ws",
                "
                connect_timeout: 1s
                typed_extension_protocol_options:
                  x: {}",
            )
            .without_admin()
            .yaml();
        let v: serde_yaml::Value = serde_yaml::from_str(&y).unwrap_or_else(|e| panic!("{e}\n{y}"));
        let hcm = &v["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"];
        assert_eq!(hcm["max_request_headers_kb"], 1, "{y}");
        assert_eq!(
            hcm["route_config"]["virtual_hosts"][0]["routes"][0]["match"]["prefix"],
            "/ws"
        );
        let c = &v["static_resources"]["clusters"][0];
        assert_eq!(c["connect_timeout"], "1s", "{y}");
        assert!(
            c["typed_extension_protocol_options"]["x"].is_mapping(),
            "{y}"
        );
        assert!(v.get("admin").is_none());
    }
}
