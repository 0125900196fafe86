//! Who may do what: the keys producers and subscribers present, compared in constant
//! time, and the browser origins allowed to subscribe.

use axum::http::{header, HeaderMap};
use subtle::ConstantTimeEq;

use super::ApiError;

/// The key a request presents: `X-API-Key`, or `Authorization: Bearer`.
pub(super) fn presented_key(headers: &HeaderMap) -> Option<&[u8]> {
    if let Some(v) = headers.get("x-api-key") {
        return Some(v.as_bytes());
    }
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
}

/// Compares a presented key with the expected one in constant time (for keys of the
/// same length; the length itself is not secret).
pub(super) fn key_matches(expected: &str, presented: Option<&[u8]>) -> bool {
    presented.is_some_and(|p| bool::from(expected.as_bytes().ct_eq(p)))
}

/// True when no producer key is required (`expected` is `None`) or the request
/// presents it in a header (never in the URL, where proxies would log it).
pub(super) fn producer_authorized(expected: Option<&str>, headers: &HeaderMap) -> bool {
    match expected {
        None => true,
        Some(key) => key_matches(key, presented_key(headers)),
    }
}

/// True when no subscriber key is required or the request presents it, in a header or
/// as `?key=` (browsers cannot set WebSocket headers).
pub(super) fn subscriber_authorized(
    expected: Option<&str>,
    headers: &HeaderMap,
    query_key: Option<&str>,
) -> bool {
    match expected {
        None => true,
        Some(key) => key_matches(key, presented_key(headers).or(query_key.map(str::as_bytes))),
    }
}

/// Whether a browser origin may subscribe: any when `ALLOWED_ORIGINS` is unset; else
/// the listed ones and the server's own (the dashboard page it serves): an origin whose
/// host is the request's `Host`, or `forwarded_host`, the host a trusted proxy says
/// the client asked for (`ClientAddr::forwarded_host`).
pub(super) fn origin_allowed(
    allowed: Option<&[String]>,
    headers: &HeaderMap,
    forwarded_host: Option<&str>,
) -> Result<(), ApiError> {
    let (Some(allowed), Some(origin)) = (allowed, headers.get(header::ORIGIN)) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("").trim_end_matches('/');
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let same_origin = [host, forwarded_host].into_iter().flatten().any(|h| {
        origin
            .split_once("://")
            .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(h))
    });
    if same_origin || allowed.iter().any(|a| a == origin) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(origin.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_read_from_either_header_and_compared_exactly() {
        let mut h = HeaderMap::new();
        assert_eq!(presented_key(&h), None);
        h.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert_eq!(presented_key(&h), Some(&b"s3cret"[..]));
        h.insert("x-api-key", "other".parse().unwrap());
        assert_eq!(presented_key(&h), Some(&b"other"[..]));
        assert!(key_matches("other", presented_key(&h)));
        assert!(!key_matches("othe", presented_key(&h)));
        assert!(!key_matches("other2", presented_key(&h)));
        assert!(!key_matches("other", None));
        assert!(producer_authorized(None, &HeaderMap::new()));
        assert!(!producer_authorized(Some("k"), &HeaderMap::new()));
        assert!(subscriber_authorized(
            Some("k"),
            &HeaderMap::new(),
            Some("k")
        ));
    }

    #[test]
    fn origins() {
        let allowed = vec!["https://ok.example".to_owned()];
        let mut h = HeaderMap::new();
        assert!(
            origin_allowed(Some(&allowed), &h, None).is_ok(),
            "no Origin: not a browser"
        );
        h.insert(header::ORIGIN, "https://ok.example".parse().unwrap());
        assert!(origin_allowed(Some(&allowed), &h, None).is_ok());
        h.insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        assert!(origin_allowed(Some(&allowed), &h, None).is_err());
        assert!(origin_allowed(None, &h, None).is_ok());
        // The server's own page is always allowed.
        h.insert(header::HOST, "phasecast.example:8787".parse().unwrap());
        h.insert(
            header::ORIGIN,
            "http://phasecast.example:8787".parse().unwrap(),
        );
        assert!(origin_allowed(Some(&allowed), &h, None).is_ok());
        // Behind a proxy that rewrites Host, the host it forwards is the server's own.
        h.insert(header::HOST, "127.0.0.1:8787".parse().unwrap());
        h.insert(header::ORIGIN, "https://phasecast.example".parse().unwrap());
        assert!(origin_allowed(Some(&allowed), &h, None).is_err());
        assert!(origin_allowed(Some(&allowed), &h, Some("phasecast.example")).is_ok());
        assert!(origin_allowed(Some(&allowed), &h, Some("other.example")).is_err());
    }
}
