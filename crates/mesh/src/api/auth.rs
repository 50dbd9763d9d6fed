//! Who may call the API. With nothing configured (the default, for an API on
//! loopback) every request is taken, signed or not, as local AWS emulators do. With
//! credentials configured (`--credentials-file`, AWS's shared credentials format),
//! a request must carry an AWS Signature Version 4 that one of them made; with tokens
//! configured (`--token-file`), `Authorization: Bearer <token>` is taken too (the
//! `ferry` commands send it). Refusals have App Mesh's shapes, all 403:
//! `MissingAuthenticationTokenException` (no `Authorization`),
//! `UnrecognizedClientException` (an unknown access key or token),
//! `InvalidSignatureException` (a signature that does not match, or is over 15 minutes
//! old).

use crate::ApiError;
use http::request::Parts;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use ring::{digest, hmac};

/// How far a signature's time may be from the server's.
const MAX_SKEW_SECS: i64 = 15 * 60;

/// An AWS access key.
#[derive(Debug, Clone)]
pub struct Credential {
    /// `aws_access_key_id`.
    pub access_key_id: String,
    /// `aws_secret_access_key`.
    pub secret_access_key: String,
}

/// Who may call.
pub struct Auth {
    credentials: Vec<Credential>,
    /// The tokens, as HMACs under `token_key` (compared in constant time).
    tokens: Vec<hmac::Tag>,
    token_key: hmac::Key,
}

impl Default for Auth {
    fn default() -> Auth {
        Auth::new(Vec::new(), Vec::new())
    }
}

impl Auth {
    /// Takes signatures by `credentials` and the bearer `tokens`; both empty: anyone.
    pub fn new(credentials: Vec<Credential>, tokens: Vec<String>) -> Auth {
        let rng = ring::rand::SystemRandom::new();
        let token_key = hmac::Key::generate(hmac::HMAC_SHA256, &rng)
            .unwrap_or_else(|_| hmac::Key::new(hmac::HMAC_SHA256, b"ferrymesh"));
        let tokens = tokens
            .iter()
            .map(|t| hmac::sign(&token_key, t.as_bytes()))
            .collect();
        Auth {
            credentials,
            tokens,
            token_key,
        }
    }

    /// Whether anything is configured.
    pub fn is_open(&self) -> bool {
        self.credentials.is_empty() && self.tokens.is_empty()
    }

    /// Checks a request (its head and body).
    pub fn check(&self, parts: &Parts, body: &[u8]) -> Result<(), ApiError> {
        if self.is_open() {
            return Ok(());
        }
        let Some(authorization) = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return Err(ApiError::forbidden(
                "MissingAuthenticationTokenException",
                "Missing Authentication Token",
            ));
        };
        let bearer = authorization
            .get(..7)
            .filter(|scheme| scheme.eq_ignore_ascii_case("bearer "))
            .map(|_| &authorization[7..]);
        if let Some(token) = bearer {
            let known = self.tokens.iter().any(|t| {
                hmac::verify(&self.token_key, token.trim().as_bytes(), t.as_ref()).is_ok()
            });
            return if known { Ok(()) } else { Err(unrecognized()) };
        }
        let Some(sig) = authorization.strip_prefix("AWS4-HMAC-SHA256 ") else {
            return Err(unrecognized());
        };
        let sig =
            Signature::parse(sig).ok_or_else(|| invalid("a malformed Authorization header"))?;
        let Some(credential) = self
            .credentials
            .iter()
            .find(|c| c.access_key_id == sig.access_key_id)
        else {
            return Err(unrecognized());
        };
        verify(parts, body, &sig, credential)
    }
}

fn unrecognized() -> ApiError {
    ApiError::forbidden(
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
    )
}

fn invalid(why: &str) -> ApiError {
    ApiError::forbidden(
        "InvalidSignatureException",
        format!(
            "The request signature we calculated does not match the signature you provided: {why}."
        ),
    )
}

/// The members of a SigV4 `Authorization` header.
struct Signature {
    access_key_id: String,
    /// `<date>/<region>/<service>/aws4_request`.
    scope: String,
    date: String,
    signed_headers: Vec<String>,
    signature: Vec<u8>,
}

impl Signature {
    fn parse(s: &str) -> Option<Signature> {
        let (mut credential, mut signed, mut signature) = (None, None, None);
        for part in s.split(',') {
            let (k, v) = part.trim().split_once('=')?;
            match k {
                "Credential" => credential = Some(v),
                "SignedHeaders" => signed = Some(v),
                "Signature" => signature = Some(v),
                _ => {}
            }
        }
        let (access_key_id, scope) = credential?.split_once('/')?;
        let date = scope.split('/').next()?.to_string();
        let eight_digits = date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit());
        if !eight_digits || scope.split('/').count() != 4 || !scope.ends_with("/aws4_request") {
            return None;
        }
        Some(Signature {
            access_key_id: access_key_id.to_string(),
            scope: scope.to_string(),
            date,
            signed_headers: signed?.split(';').map(str::to_string).collect(),
            signature: hex_decode(signature?)?,
        })
    }
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What AWS's URI encoding leaves as it is: `A-Za-z0-9-_.~`.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The same, and `/` (a path's separators).
const UNRESERVED_AND_SLASH: &AsciiSet = &UNRESERVED.remove(b'/');

/// AWS's URI encoding (SigV4's, and what the `ferry` commands put in paths and
/// queries): everything but `A-Za-z0-9-_.~` (and `/` when `keep_slash`), as `%XX`.
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    let set = if keep_slash {
        UNRESERVED_AND_SLASH
    } else {
        UNRESERVED
    };
    utf8_percent_encode(s, set).to_string()
}

/// Checks `sig` against the request as `credential` would have signed it.
fn verify(
    parts: &Parts,
    body: &[u8],
    sig: &Signature,
    credential: &Credential,
) -> Result<(), ApiError> {
    let header = |name: &str| {
        parts
            .headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join(",")
    };
    let amz_date = header("x-amz-date");
    let when = chrono::NaiveDateTime::parse_from_str(&amz_date, "%Y%m%dT%H%M%SZ")
        .map_err(|_| invalid("no valid X-Amz-Date"))?
        .and_utc();
    if (chrono::Utc::now() - when).num_seconds().abs() > MAX_SKEW_SECS {
        return Err(invalid(
            "the signature expired (X-Amz-Date is over 15 minutes away)",
        ));
    }
    if !amz_date.starts_with(&sig.date) {
        return Err(invalid("the credential's date is not X-Amz-Date's"));
    }
    if !sig.signed_headers.iter().any(|h| h == "host") {
        return Err(invalid("the host header is not signed"));
    }
    // The path as sent, encoded once more (as SigV4 does for every service but S3).
    let path = uri_encode(parts.uri.path(), true);
    // Each name and value decoded, then encoded as SigV4 encodes them, sorted.
    let mut query: Vec<(String, String)> = parts
        .uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let encode = |s: &str| uri_encode(&super::percent_decode(s, false), false);
            (encode(k), encode(v))
        })
        .collect();
    query.sort_unstable();
    let query = query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let headers: String = sig
        .signed_headers
        .iter()
        .map(|h| format!("{h}:{}\n", header(h)))
        .collect();
    // The body's own hash, always: a claimed hash that is not the body's (or
    // `UNSIGNED-PAYLOAD`) would let a captured signature carry another body.
    let payload = hex(digest::digest(&digest::SHA256, body).as_ref());
    if let Some(claimed) = parts.headers.get("x-amz-content-sha256") {
        if claimed.as_bytes() != payload.as_bytes() {
            return Err(invalid(
                "X-Amz-Content-Sha256 is not the SHA-256 of the body",
            ));
        }
    }
    let canonical = format!(
        "{}\n{path}\n{query}\n{headers}\n{}\n{payload}",
        parts.method,
        sig.signed_headers.join(";")
    );
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{}\n{}",
        sig.scope,
        hex(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref())
    );
    let mut key = format!("AWS4{}", credential.secret_access_key).into_bytes();
    for part in sig.scope.split('/') {
        let k = hmac::Key::new(hmac::HMAC_SHA256, &key);
        key = hmac::sign(&k, part.as_bytes()).as_ref().to_vec();
    }
    let signing_key = hmac::Key::new(hmac::HMAC_SHA256, &key);
    hmac::verify(&signing_key, to_sign.as_bytes(), &sig.signature)
        .map_err(|_| invalid("check your AWS Secret Access Key and signing method"))
}

/// Reads AWS's shared credentials format (`[profile]` sections with
/// `aws_access_key_id` and `aws_secret_access_key`): every profile's key.
pub fn parse_credentials(text: &str) -> Result<Vec<Credential>, String> {
    let mut out = Vec::new();
    let (mut id, mut secret): (Option<String>, Option<String>) = (None, None);
    let mut flush = |id: &mut Option<String>, secret: &mut Option<String>, at: usize| {
        match (id.take(), secret.take()) {
            (Some(access_key_id), Some(secret_access_key)) => {
                out.push(Credential {
                    access_key_id,
                    secret_access_key,
                });
                Ok(())
            }
            (None, None) => Ok(()),
            _ => Err(format!(
                "the profile ending at line {at} has not both aws_access_key_id and aws_secret_access_key"
            )),
        }
    };
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.starts_with('[') {
            flush(&mut id, &mut secret, i)?;
        } else if let Some((k, v)) = line.split_once('=') {
            match k.trim() {
                "aws_access_key_id" => id = Some(v.trim().to_string()),
                "aws_secret_access_key" => secret = Some(v.trim().to_string()),
                _ => {}
            }
        }
    }
    flush(&mut id, &mut secret, text.lines().count())?;
    if out.is_empty() {
        return Err("no aws_access_key_id / aws_secret_access_key".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn credentials_files_and_tokens() {
        let creds = parse_credentials(
            "[default]\naws_access_key_id = AK\naws_secret_access_key = SK\n[other]\naws_access_key_id=B\naws_secret_access_key=C\n",
        )
        .unwrap();
        assert_eq!(creds.len(), 2);
        assert!(parse_credentials("[x]\naws_access_key_id = A\n").is_err());
        let auth = Auth::new(Vec::new(), vec!["s3cret".into()]);
        let req = |auth_header: Option<&str>| {
            let mut b = http::Request::builder().uri("/v20190125/meshes");
            if let Some(h) = auth_header {
                b = b.header("authorization", h);
            }
            b.body(()).unwrap().into_parts().0
        };
        assert!(auth.check(&req(Some("Bearer s3cret")), b"").is_ok());
        let e = auth.check(&req(Some("Bearer nope")), b"").unwrap_err();
        assert_eq!(e.code, "UnrecognizedClientException");
        let e = auth.check(&req(None), b"").unwrap_err();
        assert_eq!(e.code, "MissingAuthenticationTokenException");
        assert!(Auth::default().check(&req(None), b"").is_ok());
    }
}
