//! Filter chain selection, as Envoy does it: criteria are applied in order (destination
//! port, server name, transport protocol, application protocols); at each step, chains
//! that name a matching value beat chains that leave the criterion empty, and chains
//! that name only other values are out.

use ferry_config::listener::FilterChainMatch;

/// What is known about a connection when its chain is chosen.
#[derive(Debug, Clone)]
pub struct ConnectionFacts<'a> {
    /// The local port the connection arrived on.
    pub destination_port: u16,
    /// SNI, when a TLS inspector found one.
    pub server_name: Option<&'a str>,
    /// `raw_buffer` or `tls`.
    pub transport_protocol: &'a str,
    /// ALPN values offered.
    pub application_protocols: &'a [String],
}

/// The index of the most specific matching chain.
pub fn select<'a>(
    chains: impl Iterator<Item = &'a FilterChainMatch>,
    facts: &ConnectionFacts<'_>,
) -> Option<usize> {
    let chains: Vec<&FilterChainMatch> = chains.collect();
    let mut candidates: Vec<usize> = (0..chains.len()).collect();

    // 1. destination port.
    candidates = narrow(&candidates, |i| match chains[i].destination_port {
        Some(p) if p == facts.destination_port => Rank::Specific(0),
        Some(_) => Rank::Out,
        None => Rank::Any,
    });
    // 2. server names: exact beats the longest wildcard.
    candidates = narrow(&candidates, |i| {
        let names = &chains[i].server_names;
        if names.is_empty() {
            return Rank::Any;
        }
        let Some(sni) = facts.server_name else {
            return Rank::Out;
        };
        let sni = sni.to_ascii_lowercase();
        let mut best = Rank::Out;
        for n in names {
            if *n == sni {
                return Rank::Specific(0);
            }
            if let Some(suffix) = n.strip_prefix('*') {
                if sni.ends_with(suffix) {
                    let r = Rank::Specific(usize::MAX - suffix.len());
                    if r < best {
                        best = r;
                    }
                }
            }
        }
        best
    });
    // 3. transport protocol.
    candidates = narrow(&candidates, |i| {
        match chains[i].transport_protocol.as_str() {
            "" => Rank::Any,
            p if p == facts.transport_protocol => Rank::Specific(0),
            _ => Rank::Out,
        }
    });
    // 4. application protocols.
    candidates = narrow(&candidates, |i| {
        let want = &chains[i].application_protocols;
        if want.is_empty() {
            Rank::Any
        } else if want.iter().any(|p| facts.application_protocols.contains(p)) {
            Rank::Specific(0)
        } else {
            Rank::Out
        }
    });
    candidates.first().copied()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    /// Names a matching value; lower is more specific.
    Specific(usize),
    /// Leaves the criterion empty.
    Any,
    /// Names only other values.
    Out,
}

fn narrow(candidates: &[usize], rank: impl Fn(usize) -> Rank) -> Vec<usize> {
    let ranked: Vec<(usize, Rank)> = candidates.iter().map(|&i| (i, rank(i))).collect();
    let Some(best) = ranked
        .iter()
        .map(|(_, r)| *r)
        .filter(|r| *r != Rank::Out)
        .min()
    else {
        return Vec::new();
    };
    ranked
        .into_iter()
        .filter(|(_, r)| *r == best)
        .map(|(i, _)| i)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(port: Option<u16>, names: &[&str], tp: &str) -> FilterChainMatch {
        FilterChainMatch {
            destination_port: port,
            server_names: names.iter().map(|s| s.to_string()).collect(),
            transport_protocol: tp.to_string(),
            application_protocols: vec![],
        }
    }

    fn facts(port: u16, sni: Option<&str>) -> ConnectionFacts<'_> {
        ConnectionFacts {
            destination_port: port,
            server_name: sni,
            transport_protocol: "raw_buffer",
            application_protocols: &[],
        }
    }

    #[test]
    fn port_beats_any() {
        let chains = [m(None, &[], ""), m(Some(80), &[], ""), m(Some(81), &[], "")];
        assert_eq!(select(chains.iter(), &facts(80, None)), Some(1));
        assert_eq!(select(chains.iter(), &facts(90, None)), Some(0));
    }

    #[test]
    fn exact_server_name_beats_wildcard() {
        let chains = [
            m(None, &["*.example.com"], ""),
            m(None, &["a.example.com"], ""),
            m(None, &[], ""),
        ];
        assert_eq!(
            select(chains.iter(), &facts(1, Some("a.example.com"))),
            Some(1)
        );
        assert_eq!(
            select(chains.iter(), &facts(1, Some("b.example.com"))),
            Some(0)
        );
        assert_eq!(select(chains.iter(), &facts(1, None)), Some(2));
    }

    #[test]
    fn transport_protocol_excludes() {
        let chains = [m(None, &[], "tls")];
        assert_eq!(select(chains.iter(), &facts(1, None)), None);
        let chains = [m(None, &[], "tls"), m(None, &[], "raw_buffer")];
        assert_eq!(select(chains.iter(), &facts(1, None)), Some(1));
    }
}
