//! What ferry implements of Envoy's API, declared where it is implemented.
//!
//! Every converter destructures the message it converts with [`fields!`](crate::fields):
//! the pattern names every field of the message (a field added by a newer `envoy-types`
//! is a compile error until someone decides), split into the fields the converter
//! accepts and the ones it refuses. A refused field that is set is reported right
//! there, with its path. Each declaration is also registered (by `inventory`), so
//! `ferry support` and `docs/envoy-compat.md` list exactly what the converters accept.

use crate::Ctx;
use std::collections::{BTreeMap, HashMap};

/// One message type as a converter declares it.
#[derive(Debug)]
pub struct Message {
    /// The message's full name (`<T as prost::Name>::full_name`).
    pub full_name: fn() -> String,
    /// The fields the converter accepts, in declaration order.
    pub accepted: &'static [Field],
    /// The extension whose config this message is (`envoy.filters.http.fault`), when
    /// it is one (reached through an `Any`).
    pub extension: Option<&'static str>,
}

/// An accepted field of a [`Message`].
#[derive(Debug)]
pub struct Field {
    /// The field as the Rust struct names it (a oneof: the oneof's name).
    pub rust: &'static str,
    /// For a oneof: the members (proto field names) that are accepted.
    pub members: &'static [&'static str],
}

impl Field {
    /// The proto field names this entry accepts.
    pub fn names(&self) -> Vec<&'static str> {
        if self.members.is_empty() {
            vec![proto_name(self.rust)]
        } else {
            self.members.to_vec()
        }
    }
}

inventory::collect!(Message);

/// The proto name of a field from its Rust name (`r#type` → `type`).
pub fn proto_name(rust: &'static str) -> &'static str {
    rust.strip_prefix("r#").unwrap_or(rust)
}

/// Every declared message with its accepted fields (proto names), merged over the
/// places that declare it.
pub fn accepted() -> &'static BTreeMap<String, Vec<&'static str>> {
    static ACCEPTED: std::sync::OnceLock<BTreeMap<String, Vec<&'static str>>> =
        std::sync::OnceLock::new();
    ACCEPTED.get_or_init(|| {
        let mut out: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
        for m in inventory::iter::<Message> {
            let fields = out.entry((m.full_name)()).or_default();
            for f in m.accepted {
                for n in f.names() {
                    if !fields.contains(&n) {
                        fields.push(n);
                    }
                }
            }
        }
        out
    })
}

/// The extensions the converters declare: `(name, config type)`, sorted by name.
pub fn extensions() -> Vec<(&'static str, String)> {
    let mut out: Vec<(&'static str, String)> = inventory::iter::<Message>
        .into_iter()
        .filter_map(|m| Some((m.extension?, (m.full_name)())))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The config type of an extension element's `typed_config` when it is one of `known`;
/// otherwise reports "<name> is not supported" at the element (`ctx`'s path).
pub fn known_type<'a>(
    ctx: &mut Ctx,
    name: &str,
    any: &'a ferry_envoy_api::pb::google::protobuf::Any,
    known: &[&str],
) -> Option<&'a str> {
    let ty = crate::any::type_name(any);
    if known.contains(&ty) {
        return Some(ty);
    }
    refuse_extension_type(ctx, name, any);
    None
}

/// Reports an extension that no converter implements, at the element that names it
/// (`name`: the element's name or map key; empty: the config type stands for it).
pub fn refuse_extension_type(
    ctx: &mut Ctx,
    name: &str,
    any: &ferry_envoy_api::pb::google::protobuf::Any,
) {
    let what = if name.is_empty() {
        crate::any::type_name(any)
    } else {
        name
    };
    ctx.error(format!("{what} is not supported"));
}

/// The declarations of each message, one list of accepted names per place (for the
/// check that the places agree).
pub fn declarations() -> HashMap<String, Vec<Vec<&'static str>>> {
    let mut out: HashMap<String, Vec<Vec<&'static str>>> = HashMap::new();
    for m in inventory::iter::<Message> {
        let names = m.accepted.iter().flat_map(Field::names).collect();
        out.entry((m.full_name)()).or_default().push(names);
    }
    out
}

/// Whether a field holds a value (proto3: anything but the default).
pub trait IsSet {
    /// True if set.
    fn is_set(&self) -> bool;
}

impl<T> IsSet for Option<T> {
    fn is_set(&self) -> bool {
        self.is_some()
    }
}

impl<T> IsSet for Vec<T> {
    fn is_set(&self) -> bool {
        !self.is_empty()
    }
}

impl<K, V, S> IsSet for HashMap<K, V, S> {
    fn is_set(&self) -> bool {
        !self.is_empty()
    }
}

impl IsSet for String {
    fn is_set(&self) -> bool {
        !self.is_empty()
    }
}

impl IsSet for bool {
    fn is_set(&self) -> bool {
        *self
    }
}

macro_rules! numbers_are_set_when_nonzero {
    ($($t:ty),*) => {$(
        impl IsSet for $t {
            fn is_set(&self) -> bool {
                *self != 0 as $t
            }
        }
    )*};
}
numbers_are_set_when_nonzero!(i32, i64, u32, u64, f32, f64);

/// Reports a refused field that is set.
pub fn refuse(ctx: &mut Ctx, rust: &'static str, value: &impl IsSet) {
    if value.is_set() {
        ctx.error_at(proto_name(rust), "field is not supported");
    }
}

/// Reports a oneof member that is set but not among the `accepted` ones.
pub fn refuse_members<T: std::fmt::Debug>(ctx: &mut Ctx, value: &Option<T>, accepted: &[&str]) {
    if let Some(v) = value {
        let variant = variant_name(v);
        if !accepted.iter().any(|m| upper_camel(m) == variant) {
            ctx.error_at(&oneof_member(v), "field is not supported");
        }
    }
}

/// Reports a refused oneof that is set, at the member that is set.
pub fn refuse_oneof<T: std::fmt::Debug>(ctx: &mut Ctx, value: &Option<T>) {
    if let Some(v) = value {
        ctx.error_at(&oneof_member(v), "field is not supported");
    }
}

/// The variant a oneof value holds, as prost names it: the member's name in upper camel
/// case.
fn variant_name<T: std::fmt::Debug>(value: &T) -> String {
    let debug = format!("{value:?}");
    debug
        .split(['(', ' ', '{'])
        .next()
        .unwrap_or_default()
        .to_string()
}

/// A member's name as prost names its variant (`port_value` → `PortValue`).
fn upper_camel(member: &str) -> String {
    member
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|h| h.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The proto name of the member a oneof value holds (for error paths; a digit after an
/// underscore, as in `rfc_3986`, comes back without the underscore).
pub fn oneof_member<T: std::fmt::Debug>(value: &T) -> String {
    let variant = variant_name(value);
    let mut out = String::new();
    for (i, c) in variant.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// An element that names an extension (`{name, typed_config}`).
pub trait Extension {
    /// The extension's `name`.
    fn extension_name(&self) -> &str;
}

/// A (singular) field holding an extension element; repeated ones are refused as any
/// other field.
pub trait Extensions {
    /// The extension's name, if the field is set.
    fn first_name(&self) -> Option<&str>;
}

impl<T: Extension> Extensions for Option<T> {
    fn first_name(&self) -> Option<&str> {
        self.as_ref().map(Extension::extension_name)
    }
}

/// Reports a refused field of extensions that is set, naming the extension.
pub fn refuse_extension(ctx: &mut Ctx, rust: &'static str, value: &impl Extensions) {
    if let Some(name) = value.first_name() {
        let message = if name.is_empty() {
            "field is not supported".to_string()
        } else {
            format!("{name} is not supported")
        };
        ctx.error_at(proto_name(rust), message);
    }
}

macro_rules! extension_elements {
    ($($t:path),* $(,)?) => {$(
        impl Extension for $t {
            fn extension_name(&self) -> &str {
                &self.name
            }
        }
    )*};
}
use ferry_envoy_api::pb::envoy::config as envoy_config;
extension_elements!(
    envoy_config::core::v3::TransportSocket,
    envoy_config::core::v3::TypedExtensionConfig,
    envoy_config::listener::v3::ListenerFilter,
    envoy_config::listener::v3::Filter,
    envoy_config::accesslog::v3::AccessLog,
    envoy_config::route::v3::retry_policy::RetryPriority,
);

/// Destructures a message exhaustively, declaring what its converter accepts and
/// refusing the rest (reported at `ctx`'s path when set):
///
/// ```ignore
/// fields!(ctx, m => pb::Cluster {
///     name, connect_timeout, cluster_discovery_type: ["type"],
/// } refused {
///     alt_stat_name,
/// } refused_oneofs {
///     lb_config,
/// } refused_extensions {
///     transport_socket,
/// });
/// ```
///
/// Accepted fields are not bound: the converter reads them from the message. A oneof
/// lists the members it accepts; a member set that is not listed is refused here. The
/// config of an extension names it: `fields!(ctx, &f => pb::HttpFault as
/// "envoy.filters.http.fault" { ... })`.
#[macro_export]
macro_rules! fields {
    (
        $ctx:expr, $msg:expr => $($ty:ident)::+ $(as $extension:literal)? {
            $($f:ident $(: $members:tt)?),* $(,)?
        }
        $(refused { $($r:ident),* $(,)? })?
        $(refused_oneofs { $($o:ident),* $(,)? })?
        $(refused_extensions { $($e:ident),* $(,)? })?
    ) => {
        // Envoy's deprecated fields are declared as any other.
        #[allow(deprecated)]
        let $($ty)::+ {
            $($f: _,)*
            $($($r,)*)?
            $($($o,)*)?
            $($($e,)*)?
        } = $msg;
        let _ = &$ctx;
        $($($crate::support::refuse_members($ctx, &($msg).$f, &$members);)?)*
        $($($crate::support::refuse($ctx, stringify!($r), $r);)*)?
        $($($crate::support::refuse_oneof($ctx, $o);)*)?
        $($($crate::support::refuse_extension($ctx, stringify!($e), $e);)*)?
        $crate::support::inventory::submit! {
            $crate::support::Message {
                full_name: <$($ty)::+ as ::prost::Name>::full_name,
                extension: $crate::fields!(@extension $($extension)?),
                accepted: &[$($crate::support::Field {
                    rust: stringify!($f),
                    members: $crate::fields!(@members $($members)?),
                }),*],
            }
        }
    };
    (@extension) => { None };
    (@extension $extension:literal) => { Some($extension) };
    (@members) => { &[] };
    (@members $members:tt) => { &$members };
}

#[doc(hidden)]
pub use inventory;

/// The accepted fields of every message, for `ferry support` and
/// `docs/envoy-compat.md`: one line per message, `- `name`: `field`, ...`.
pub fn field_list() -> String {
    let all: BTreeMap<String, Vec<&'static str>> = accepted().clone();
    let pool = ferry_envoy_api::pool();
    let mut out = String::new();
    for (message, mut fields) in all {
        // In the order Envoy's API declares them.
        if let Some(desc) = pool.get_message_by_name(&message) {
            let order: Vec<String> = desc.fields().map(|f| f.name().to_string()).collect();
            fields.sort_by_key(|f| order.iter().position(|o| o == f));
        }
        let fields: Vec<String> = fields.iter().map(|f| format!("`{f}`")).collect();
        let fields = if fields.is_empty() {
            "(no fields)".to_string()
        } else {
            fields.join(", ")
        };
        out.push_str(&format!("- `{message}`: {fields}\n"));
    }
    out
}

/// The supported extensions, as rows of a Markdown table (`| name | config type |`).
pub fn extension_table() -> String {
    let mut out = String::new();
    for (name, config_type) in extensions() {
        out.push_str(&format!("| `{name}` | `{config_type}` |\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// Oneof members are told from prost's variant names.
    #[test]
    fn oneof_members_are_named_from_their_variants() {
        #[derive(Debug)]
        #[allow(dead_code)]
        enum Specifier {
            PortValue(u32),
            Http2ProtocolOptions { x: u8 },
            NormalizePathRfc3986(u8),
        }
        assert_eq!(oneof_member(&Specifier::PortValue(1)), "port_value");
        assert_eq!(
            oneof_member(&Specifier::Http2ProtocolOptions { x: 1 }),
            "http2_protocol_options"
        );
        let mut ctx = Ctx::default();
        for accepted in [
            ["port_value"],
            ["http2_protocol_options"],
            ["normalize_path_rfc_3986"],
        ] {
            refuse_members(&mut ctx, &Some(Specifier::PortValue(1)), &accepted);
            refuse_members(
                &mut ctx,
                &Some(Specifier::Http2ProtocolOptions { x: 1 }),
                &accepted,
            );
            refuse_members(
                &mut ctx,
                &Some(Specifier::NormalizePathRfc3986(1)),
                &accepted,
            );
        }
        let refused: Vec<String> = ctx.errors.iter().map(|e| e.path.clone()).collect();
        assert_eq!(
            refused,
            [
                "http2_protocol_options",
                "normalize_path_rfc3986",
                "port_value",
                "normalize_path_rfc3986",
                "port_value",
                "http2_protocol_options"
            ]
        );
    }

    /// A declared message refuses what it does not accept, with the field's path, and
    /// registers what it accepts.
    #[test]
    fn declared_messages_refuse_and_register() {
        let chain = "filter_chains: [{filters: [{name: envoy.filters.network.http_connection_manager, typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager, stat_prefix: h, route_config: {}, http_filters: [{name: envoy.filters.http.router, typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}]}}]}]";
        let yaml = format!("static_resources:\n  listeners:\n  - address: {{socket_address: {{address: 127.0.0.1, port_value: 1, resolver_name: x}}}}\n    {chain}\n  - address: {{socket_address: {{address: 127.0.0.1, named_port: http}}}}\n    {chain}\n");
        let err = crate::filters::testing::load(&yaml, ferry_envoy_api::Format::Yaml)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "static_resources.listeners[0].address.socket_address.resolver_name: field is not supported\nstatic_resources.listeners[1].address.socket_address.named_port: field is not supported"
        );
        let fields = &accepted()["envoy.config.core.v3.SocketAddress"];
        assert_eq!(
            fields,
            &["protocol", "address", "port_value", "ipv4_compat"]
        );
    }
}
