//! Span contexts as they travel in request headers: W3C Trace Context (`traceparent`,
//! `tracestate`) and B3 (`x-b3-*` and the single `b3` header), read and written as
//! Envoy's tracers do.

use http::{HeaderMap, HeaderName, HeaderValue};

pub(crate) const TRACEPARENT: &str = "traceparent";
pub(crate) const TRACESTATE: &str = "tracestate";
const B3: &str = "b3";
const X_B3_TRACE_ID: &str = "x-b3-traceid";
const X_B3_SPAN_ID: &str = "x-b3-spanid";
const X_B3_PARENT_SPAN_ID: &str = "x-b3-parentspanid";
const X_B3_SAMPLED: &str = "x-b3-sampled";
const X_B3_FLAGS: &str = "x-b3-flags";

/// A trace and span id pair with the sampling flag: what a span passes to its children.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpanContext {
    /// High 64 bits of a 128-bit trace id (0 for a 64-bit id).
    pub trace_id_high: u64,
    /// Low 64 bits of the trace id.
    pub trace_id: u64,
    /// The span id.
    pub span_id: u64,
    /// The parent span id (B3 only; 0: none).
    pub parent_id: u64,
    /// The sampling decision travelling with the context (None: the receiver decides).
    pub sampled: Option<bool>,
}

impl SpanContext {
    /// The trace id in hex: 32 digits for a 128-bit id (or `wide`), else 16.
    pub fn trace_id_hex(&self, wide: bool) -> String {
        if self.trace_id_high != 0 || wide {
            format!("{:016x}{:016x}", self.trace_id_high, self.trace_id)
        } else {
            format!("{:016x}", self.trace_id)
        }
    }
}

/// Where an incoming B3 context came from (so that it is written back the same way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum B3Format {
    /// `x-b3-traceid`, `x-b3-spanid`...
    Multi,
    /// `b3: {trace}-{span}-{sampled}-{parent}`.
    Single,
}

fn hex_u64(s: &str) -> Option<u64> {
    (!s.is_empty() && s.len() <= 16)
        .then(|| u64::from_str_radix(s, 16).ok())
        .flatten()
}

/// A 16- or 32-digit hex trace id as (high, low).
fn trace_id(s: &str) -> Option<(u64, u64)> {
    match s.len() {
        16 => Some((0, hex_u64(s)?)),
        32 => Some((hex_u64(&s[..16])?, hex_u64(&s[16..])?)),
        _ => None,
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn sampled_flag(s: &str) -> Option<bool> {
    match s {
        "1" | "true" | "d" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

/// Whether the request carries any B3 header.
pub fn has_b3(h: &HeaderMap) -> bool {
    h.contains_key(B3) || h.contains_key(X_B3_TRACE_ID) || h.contains_key(X_B3_SAMPLED)
}

/// The sampling decision of B3 headers, when they carry one (`x-b3-sampled`,
/// `x-b3-flags: 1` for debug, or the single header's sampling field).
pub fn b3_sampled(h: &HeaderMap) -> Option<bool> {
    if let Some(single) = header(h, B3) {
        let parts: Vec<&str> = single.split('-').collect();
        return match parts.as_slice() {
            [flag] => sampled_flag(flag),
            [_, _, flag, ..] => sampled_flag(flag),
            _ => None,
        };
    }
    if header(h, X_B3_FLAGS) == Some("1") {
        return Some(true);
    }
    header(h, X_B3_SAMPLED).and_then(sampled_flag)
}

/// A B3 context (trace and span ids present and valid), with its format.
pub fn extract_b3(h: &HeaderMap) -> Option<(SpanContext, B3Format)> {
    let sampled = b3_sampled(h);
    if let Some(single) = header(h, B3) {
        let mut parts = single.split('-');
        let (trace_high, trace_low) = trace_id(parts.next()?)?;
        let span_id = hex_u64(parts.next()?)?;
        let _sampling = parts.next();
        let parent_id = match parts.next() {
            Some(p) => hex_u64(p)?,
            None => 0,
        };
        return Some((
            SpanContext {
                trace_id_high: trace_high,
                trace_id: trace_low,
                span_id,
                parent_id,
                sampled,
            },
            B3Format::Single,
        ));
    }
    let (trace_high, trace_low) = trace_id(header(h, X_B3_TRACE_ID)?)?;
    let span_id = hex_u64(header(h, X_B3_SPAN_ID)?)?;
    let parent_id = match header(h, X_B3_PARENT_SPAN_ID) {
        Some(p) => hex_u64(p)?,
        None => 0,
    };
    Some((
        SpanContext {
            trace_id_high: trace_high,
            trace_id: trace_low,
            span_id,
            parent_id,
            sampled,
        },
        B3Format::Multi,
    ))
}

/// A W3C `traceparent` (version 00 layout; all-zero ids are invalid).
pub fn extract_w3c(h: &HeaderMap) -> Option<SpanContext> {
    let v = header(h, TRACEPARENT)?;
    let parts: Vec<&str> = v.split('-').collect();
    let [version, trace, span, flags, ..] = parts.as_slice() else {
        return None;
    };
    if version.len() != 2 || *version == "ff" || trace.len() != 32 || span.len() != 16 {
        return None;
    }
    if version == &"00" && parts.len() != 4 {
        return None;
    }
    let (hi, lo) = trace_id(trace)?;
    let span_id = hex_u64(span)?;
    let flags = u8::from_str_radix(flags, 16)
        .ok()
        .filter(|_| flags.len() == 2)?;
    if (hi == 0 && lo == 0) || span_id == 0 {
        return None;
    }
    Some(SpanContext {
        trace_id_high: hi,
        trace_id: lo,
        span_id,
        parent_id: 0,
        sampled: Some(flags & 1 == 1),
    })
}

fn set(h: &mut HeaderMap, name: &'static str, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        h.insert(HeaderName::from_static(name), v);
    }
}

/// Writes `ctx` as B3, in `format`; a 128-bit trace id (or `wide`) is written in full.
pub fn inject_b3(h: &mut HeaderMap, ctx: &SpanContext, format: B3Format, wide: bool) {
    let sampled = if ctx.sampled.unwrap_or(false) {
        "1"
    } else {
        "0"
    };
    match format {
        B3Format::Single => {
            let mut v = format!("{}-{:016x}-{sampled}", ctx.trace_id_hex(wide), ctx.span_id);
            if ctx.parent_id != 0 {
                v.push_str(&format!("-{:016x}", ctx.parent_id));
            }
            set(h, B3, v);
        }
        B3Format::Multi => {
            set(h, X_B3_TRACE_ID, ctx.trace_id_hex(wide));
            set(h, X_B3_SPAN_ID, format!("{:016x}", ctx.span_id));
            if ctx.parent_id != 0 {
                set(h, X_B3_PARENT_SPAN_ID, format!("{:016x}", ctx.parent_id));
            }
            h.insert(
                HeaderName::from_static(X_B3_SAMPLED),
                HeaderValue::from_static(sampled),
            );
        }
    }
}

/// Writes `ctx` as a W3C `traceparent` (the trace id always in 32 digits).
pub fn inject_w3c(h: &mut HeaderMap, ctx: &SpanContext) {
    let flags = if ctx.sampled.unwrap_or(false) {
        "01"
    } else {
        "00"
    };
    set(
        h,
        TRACEPARENT,
        format!(
            "00-{:016x}{:016x}-{:016x}-{flags}",
            ctx.trace_id_high, ctx.trace_id, ctx.span_id
        ),
    );
}

/// A random non-zero id.
pub fn random_id() -> u64 {
    loop {
        let v: u64 = rand::random();
        if v != 0 {
            return v;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn w3c_round_trip() {
        let h = headers(&[(
            TRACEPARENT,
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )]);
        let c = extract_w3c(&h).unwrap();
        assert_eq!(c.trace_id_high, 0x0af7651916cd43dd);
        assert_eq!(c.span_id, 0xb7ad6b7169203331);
        assert_eq!(c.sampled, Some(true));
        let mut out = HeaderMap::new();
        inject_w3c(&mut out, &c);
        assert_eq!(out[TRACEPARENT], h[TRACEPARENT]);
        for bad in [
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x",
            "00-0af7651916cd43dd-b7ad6b7169203331-01",
        ] {
            assert!(
                extract_w3c(&headers(&[(TRACEPARENT, bad)])).is_none(),
                "{bad}"
            );
        }
    }

    #[test]
    fn b3_multi_and_single() {
        let h = headers(&[
            (X_B3_TRACE_ID, "0000000000000001000000000000000a"),
            (X_B3_SPAN_ID, "000000000000000b"),
            (X_B3_PARENT_SPAN_ID, "000000000000000c"),
            (X_B3_SAMPLED, "1"),
        ]);
        let (c, f) = extract_b3(&h).unwrap();
        assert_eq!(f, B3Format::Multi);
        assert_eq!(
            (c.trace_id_high, c.trace_id, c.span_id, c.parent_id),
            (1, 10, 11, 12)
        );
        let mut out = HeaderMap::new();
        inject_b3(&mut out, &c, f, false);
        for k in [
            X_B3_TRACE_ID,
            X_B3_SPAN_ID,
            X_B3_PARENT_SPAN_ID,
            X_B3_SAMPLED,
        ] {
            assert_eq!(out[k], h[k]);
        }
        let single = "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90";
        let h = headers(&[(B3, single)]);
        let (c, f) = extract_b3(&h).unwrap();
        assert_eq!(f, B3Format::Single);
        let mut out = HeaderMap::new();
        inject_b3(&mut out, &c, f, false);
        assert_eq!(out[B3], single);
        assert_eq!(b3_sampled(&headers(&[(B3, "0")])), Some(false));
        assert_eq!(b3_sampled(&headers(&[(X_B3_FLAGS, "1")])), Some(true));
        assert!(extract_b3(&headers(&[(X_B3_TRACE_ID, "xyz")])).is_none());
    }
}
