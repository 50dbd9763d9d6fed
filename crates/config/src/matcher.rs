//! Matchers shared by routes, retry policies, access-log filters, rate limit actions
//! and the stats matcher: Envoy's `StringMatcher` and `HeaderMatcher`, and regexes
//! compiled as Envoy matches them.

use crate::Ctx;
use ferry_envoy_api::pb::envoy::config::route::v3 as pb;
use ferry_envoy_api::pb::envoy::r#type::matcher::v3 as matcher;

/// `HeaderMatcher`.
#[derive(Debug, Clone)]
pub struct HeaderMatcher {
    /// Lower-cased header name (`:method`, `:path`, `:authority`, `:scheme` allowed).
    pub name: String,
    /// The match.
    pub kind: HeaderMatchKind,
    /// `invert_match`.
    pub invert: bool,
}

/// How a header value is matched.
#[derive(Debug, Clone)]
pub enum HeaderMatchKind {
    /// `present_match` (or no specifier: presence).
    Present(bool),
    /// `range_match`: an integer value in [start, end).
    Range(i64, i64),
    /// A string match (`exact_match`, `prefix_match`, ..., `string_match`).
    String(StringMatcher),
}

/// `StringMatcher`.
#[derive(Debug, Clone)]
pub enum StringMatcher {
    /// `exact` (ignore_case).
    Exact(String, bool),
    /// `prefix` (ignore_case).
    Prefix(String, bool),
    /// `suffix` (ignore_case).
    Suffix(String, bool),
    /// `contains` (ignore_case).
    Contains(String, bool),
    /// `safe_regex` (whole value).
    Regex(regex::Regex),
}

impl StringMatcher {
    /// Whether `value` matches.
    pub fn matches(&self, value: &str) -> bool {
        fn lower(s: &str, ic: bool) -> std::borrow::Cow<'_, str> {
            if ic {
                std::borrow::Cow::Owned(s.to_ascii_lowercase())
            } else {
                std::borrow::Cow::Borrowed(s)
            }
        }
        match self {
            StringMatcher::Exact(s, ic) => {
                if *ic {
                    value.eq_ignore_ascii_case(s)
                } else {
                    value == s
                }
            }
            StringMatcher::Prefix(s, ic) => lower(value, *ic).starts_with(s.as_str()),
            StringMatcher::Suffix(s, ic) => lower(value, *ic).ends_with(s.as_str()),
            StringMatcher::Contains(s, ic) => lower(value, *ic).contains(s.as_str()),
            StringMatcher::Regex(r) => r.is_match(value),
        }
    }
}

/// Compiles an Envoy regex (RE2 syntax; Envoy matches the whole input).
pub fn full_regex(re: &str, ctx: &mut Ctx) -> Option<regex::Regex> {
    match regex::Regex::new(&format!("^(?:{re})$")) {
        Ok(r) => Some(r),
        Err(e) => {
            ctx.error(format!("invalid regex {re:?}: {}", regex_error(&e)));
            None
        }
    }
}

/// The last line of a regex error (the crate's message spans lines).
fn regex_error(e: &regex::Error) -> String {
    let s = e.to_string();
    s.lines().last().unwrap_or_default().trim().to_string()
}

/// Compiles a regex for search-and-replace (not anchored).
pub(crate) fn search_regex(re: &str, ctx: &mut Ctx) -> Option<regex::Regex> {
    match regex::Regex::new(re) {
        Ok(r) => Some(r),
        Err(e) => {
            ctx.error(format!("invalid regex {re:?}: {}", regex_error(&e)));
            None
        }
    }
}

/// Declares a `RegexMatcher`'s fields (and its `google_re2`'s); ctx is at the matcher.
fn regex_fields(m: &matcher::RegexMatcher, ctx: &mut Ctx) {
    use matcher::regex_matcher::EngineType;
    crate::fields!(ctx, m => matcher::RegexMatcher {
        engine_type: ["google_re2"], regex,
    });
    if let Some(EngineType::GoogleRe2(g)) = &m.engine_type {
        ctx.at("google_re2", |ctx| {
            crate::fields!(ctx, g => matcher::regex_matcher::GoogleRe2 {
                max_program_size,
            });
        });
    }
}

/// Converts a `RegexMatcher` that matches the whole input (`safe_regex`): errors in
/// the regex are reported at its `regex`.
pub(crate) fn regex_matcher(m: &matcher::RegexMatcher, ctx: &mut Ctx) -> Option<regex::Regex> {
    regex_fields(m, ctx);
    ctx.at("regex", |c| full_regex(&m.regex, c))
}

/// Converts the `RegexMatcher` of a search and replace (not anchored): errors in the
/// regex are reported at the matcher itself.
pub(crate) fn search_regex_matcher(
    m: &matcher::RegexMatcher,
    ctx: &mut Ctx,
) -> Option<regex::Regex> {
    regex_fields(m, ctx);
    search_regex(&m.regex, ctx)
}

/// Converts a `StringMatcher`.
pub fn string_matcher(m: &matcher::StringMatcher, ctx: &mut Ctx) -> Option<StringMatcher> {
    use matcher::string_matcher::MatchPattern as P;
    crate::fields!(ctx, m => matcher::StringMatcher {
        match_pattern: ["exact", "prefix", "suffix", "safe_regex", "contains"], ignore_case,
    });
    let ic = m.ignore_case;
    let low = |s: &String| {
        if ic {
            s.to_ascii_lowercase()
        } else {
            s.clone()
        }
    };
    Some(match &m.match_pattern {
        Some(P::Exact(s)) => StringMatcher::Exact(s.clone(), ic),
        Some(P::Prefix(s)) => StringMatcher::Prefix(low(s), ic),
        Some(P::Suffix(s)) => StringMatcher::Suffix(low(s), ic),
        Some(P::Contains(s)) => StringMatcher::Contains(low(s), ic),
        // `ignore_case` has no effect on `safe_regex` (Envoy).
        Some(P::SafeRegex(r)) => {
            StringMatcher::Regex(ctx.at("safe_regex", |c| regex_matcher(r, c))?)
        }
        // Refused by `fields!`.
        Some(P::Custom(_)) => return None,
        None => {
            ctx.error("a match pattern is required");
            return None;
        }
    })
}

/// Converts a `HeaderMatcher`.
pub fn header_matcher(h: &pb::HeaderMatcher, ctx: &mut Ctx) -> Option<HeaderMatcher> {
    use pb::header_matcher::HeaderMatchSpecifier as H;
    crate::fields!(ctx, h => pb::HeaderMatcher {
        name,
        header_match_specifier: [
            "exact_match", "safe_regex_match", "range_match", "present_match", "prefix_match",
            "suffix_match", "contains_match", "string_match"
        ],
        invert_match,
    } refused {
        treat_missing_header_as_empty,
    });
    let kind = match &h.header_match_specifier {
        None => HeaderMatchKind::Present(true),
        Some(H::PresentMatch(b)) => HeaderMatchKind::Present(*b),
        Some(H::ExactMatch(s)) => HeaderMatchKind::String(StringMatcher::Exact(s.clone(), false)),
        Some(H::PrefixMatch(s)) => HeaderMatchKind::String(StringMatcher::Prefix(s.clone(), false)),
        Some(H::SuffixMatch(s)) => HeaderMatchKind::String(StringMatcher::Suffix(s.clone(), false)),
        Some(H::ContainsMatch(s)) => {
            HeaderMatchKind::String(StringMatcher::Contains(s.clone(), false))
        }
        Some(H::SafeRegexMatch(r)) => HeaderMatchKind::String(StringMatcher::Regex(
            ctx.at("safe_regex_match", |c| regex_matcher(r, c))?,
        )),
        Some(H::RangeMatch(r)) => {
            ctx.at("range_match", |c| crate::util::int64_range_fields(r, c));
            if r.start >= r.end {
                ctx.error_at("range_match", "start must be less than end");
            }
            HeaderMatchKind::Range(r.start, r.end)
        }
        Some(H::StringMatch(s)) => {
            HeaderMatchKind::String(ctx.at("string_match", |c| string_matcher(s, c))?)
        }
    };
    if h.name.is_empty() {
        ctx.error_at("name", "is required");
    }
    Some(HeaderMatcher {
        name: h.name.to_ascii_lowercase(),
        kind,
        invert: h.invert_match,
    })
}
