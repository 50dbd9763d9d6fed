//! Envoy's response flags (`%RESPONSE_FLAGS%`, `%RESPONSE_FLAGS_LONG%`,
//! `response_flag_filter`, the `response_flags` span tag): one enum with Envoy's short
//! and long names, and the ordered set a stream records them in.

macro_rules! response_flags {
    ($($(#[$doc:meta])* $variant:ident = $short:literal, $long:literal;)*) => {
        /// One of Envoy's response flags (`StreamInfo::CoreResponseFlag`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum ResponseFlag {
            $($(#[$doc])* $variant,)*
        }

        impl ResponseFlag {
            /// Every flag, in Envoy's order.
            pub const ALL: &'static [ResponseFlag] = &[$(ResponseFlag::$variant,)*];

            /// The short name (`%RESPONSE_FLAGS%`): `UH`, `NR`...
            pub fn short(self) -> &'static str {
                match self {
                    $(ResponseFlag::$variant => $short,)*
                }
            }

            /// The long name (`%RESPONSE_FLAGS_LONG%`): `NoHealthyUpstream`...
            pub fn long(self) -> &'static str {
                match self {
                    $(ResponseFlag::$variant => $long,)*
                }
            }

            /// The flag whose short name is `short`.
            pub fn from_short(short: &str) -> Option<ResponseFlag> {
                match short {
                    $($short => Some(ResponseFlag::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

response_flags! {
    /// The local health check failed.
    FailedLocalHealthCheck = "LH", "FailedLocalHealthCheck";
    /// No healthy upstream host.
    NoHealthyUpstream = "UH", "NoHealthyUpstream";
    /// The upstream request timed out.
    UpstreamRequestTimeout = "UT", "UpstreamRequestTimeout";
    /// The stream was reset locally.
    LocalReset = "LR", "LocalReset";
    /// The upstream reset the stream.
    UpstreamRemoteReset = "UR", "UpstreamRemoteReset";
    /// Connecting upstream failed.
    UpstreamConnectionFailure = "UF", "UpstreamConnectionFailure";
    /// The upstream connection closed.
    UpstreamConnectionTermination = "UC", "UpstreamConnectionTermination";
    /// A circuit breaker overflowed.
    UpstreamOverflow = "UO", "UpstreamOverflow";
    /// No route matched.
    NoRouteFound = "NR", "NoRouteFound";
    /// The fault filter delayed the request.
    DelayInjected = "DI", "DelayInjected";
    /// The fault filter aborted the request.
    FaultInjected = "FI", "FaultInjected";
    /// A rate limit refused the request.
    RateLimited = "RL", "RateLimited";
    /// External authorization refused the request.
    UnauthorizedExternalService = "UAEX", "UnauthorizedExternalService";
    /// The rate limit service failed.
    RateLimitServiceError = "RLSE", "RateLimitServiceError";
    /// The downstream connection closed.
    DownstreamConnectionTermination = "DC", "DownstreamConnectionTermination";
    /// Retries were exhausted.
    UpstreamRetryLimitExceeded = "URX", "UpstreamRetryLimitExceeded";
    /// The stream idle timeout fired.
    StreamIdleTimeout = "SI", "StreamIdleTimeout";
    /// The request had invalid `x-envoy-*` headers.
    InvalidEnvoyRequestHeaders = "IH", "InvalidEnvoyRequestHeaders";
    /// The downstream spoke malformed HTTP.
    DownstreamProtocolError = "DPE", "DownstreamProtocolError";
    /// The upstream stream reached its max duration.
    UpstreamMaxStreamDurationReached = "UMSDR", "UpstreamMaxStreamDurationReached";
    /// Served from a cache filter.
    ResponseFromCacheFilter = "RFCF", "ResponseFromCacheFilter";
    /// A filter's config was not found (ECDS).
    NoFilterConfigFound = "NFCF", "NoFilterConfigFound";
    /// The stream's max duration was reached.
    DurationTimeout = "DT", "DurationTimeout";
    /// The upstream spoke malformed HTTP.
    UpstreamProtocolError = "UPE", "UpstreamProtocolError";
    /// The route's cluster does not exist.
    NoClusterFound = "NC", "NoClusterFound";
    /// The overload manager ended the stream.
    OverloadManagerTerminated = "OM", "OverloadManagerTerminated";
    /// DNS resolution failed.
    DnsResolutionFailed = "DF", "DnsResolutionFailed";
    /// Dropped by drop overload.
    DropOverload = "DO", "DropOverload";
    /// The downstream reset the stream.
    DownstreamRemoteReset = "DR", "DownstreamRemoteReset";
    /// Dropped by unconditional drop overload.
    UnconditionalDropOverload = "UDO", "UnconditionalDropOverload";
}

/// The flags a stream set, each once, in the order they were set (as Envoy 1.40 keeps
/// and prints them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseFlags {
    /// Which flags are set (bit `flag as u8`): membership without a scan.
    bits: u32,
    order: Vec<ResponseFlag>,
}

impl ResponseFlags {
    /// Sets `flag` (a flag already set keeps its place).
    pub fn set(&mut self, flag: ResponseFlag) {
        let bit = 1u32 << (flag as u8);
        if self.bits & bit == 0 {
            self.bits |= bit;
            self.order.push(flag);
        }
    }

    /// Whether `flag` is set.
    pub fn has(&self, flag: ResponseFlag) -> bool {
        self.bits & (1u32 << (flag as u8)) != 0
    }

    /// Whether no flag is set.
    pub fn is_empty(&self) -> bool {
        self.bits == 0
    }

    /// The flags in the order they were set.
    pub fn iter(&self) -> impl Iterator<Item = ResponseFlag> + '_ {
        self.order.iter().copied()
    }

    /// Envoy's rendering: short (or long) names joined by commas; `None` when empty.
    pub fn render(&self, long: bool) -> Option<String> {
        if self.is_empty() {
            return None;
        }
        let names: Vec<&str> = self
            .iter()
            .map(|f| if long { f.long() } else { f.short() })
            .collect();
        Some(names.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_round_trips_by_its_short_name_and_fits_the_bitset() {
        assert!(ResponseFlag::ALL.len() <= 32);
        for f in ResponseFlag::ALL {
            assert_eq!(ResponseFlag::from_short(f.short()), Some(*f));
        }
        assert_eq!(ResponseFlag::UpstreamRetryLimitExceeded.short(), "URX");
        assert_eq!(
            ResponseFlag::UpstreamRetryLimitExceeded.long(),
            "UpstreamRetryLimitExceeded"
        );
        assert_eq!(ResponseFlag::from_short("XX"), None);
    }

    #[test]
    fn flags_keep_their_order_and_are_set_once() {
        let mut f = ResponseFlags::default();
        assert_eq!(f.render(false), None);
        f.set(ResponseFlag::UpstreamOverflow);
        f.set(ResponseFlag::UpstreamRetryLimitExceeded);
        f.set(ResponseFlag::UpstreamOverflow);
        assert!(f.has(ResponseFlag::UpstreamOverflow));
        assert!(!f.has(ResponseFlag::NoRouteFound));
        assert_eq!(f.render(false).as_deref(), Some("UO,URX"));
        assert_eq!(
            f.render(true).as_deref(),
            Some("UpstreamOverflow,UpstreamRetryLimitExceeded")
        );
    }
}
