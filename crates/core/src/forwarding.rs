//! What a proxy must do to headers on the way through (RFC 9110 §7.6):
//! drop hop-by-hop fields, and say who the client was with
//! `x-forwarded-*` and `forwarded`.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue, header};

const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Fields that describe one connection, never forwarded.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Remove hop-by-hop fields, including those named in `connection`.
/// `upgrade` goes too: the gateway does not tunnel upgraded connections.
///
/// Most messages carry none of these, so one pass over the names finds out
/// before anything is looked up or removed.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.keys().any(is_hop_by_hop) {
        remove_hop_by_hop(headers);
    }
}

/// What a client's request brings that stops at the gateway: its
/// hop-by-hop fields ([`strip_hop_by_hop`]) and what it claims in the
/// fields that are the gateway's to say ([`CLIENT_FIELDS`]). One pass over
/// the names finds out whether either is there.
pub fn strip_from_client(headers: &mut HeaderMap) {
    let (mut hop_by_hop, mut claims) = (false, false);
    for name in headers.keys() {
        hop_by_hop |= is_hop_by_hop(name);
        claims |= CLIENT_FIELDS.contains(name);
    }
    if hop_by_hop {
        remove_hop_by_hop(headers);
    }
    if claims {
        for name in CLIENT_FIELDS {
            headers.remove(name);
        }
    }
}

fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
}

/// Whether `name` is a hop-by-hop field (one [`strip_hop_by_hop`] removes
/// by name).
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name) || name == header::UPGRADE
}

/// The host the client asked for: the URI's authority (HTTP/2) or `host`.
pub fn request_authority<'a>(uri: &'a http::Uri, headers: &'a HeaderMap) -> Option<&'a str> {
    uri.authority()
        .map(|a| a.as_str())
        .or_else(|| headers.get(header::HOST).and_then(|h| h.to_str().ok()))
}

/// The fields that say who the one client was: the gateway's to say, so
/// what a client sends in them is dropped before the route's plugins run
/// ([`strip_from_client`]); a plugin may set them, and [`add_forwarded`]
/// fills in those it left unset. (`x-forwarded-for` and `forwarded` are
/// chains: the gateway appends to them.)
const CLIENT_FIELDS: [HeaderName; 3] = [
    HeaderName::from_static("x-forwarded-proto"),
    HeaderName::from_static("x-forwarded-host"),
    X_REAL_IP,
];

/// Add `x-forwarded-for` (appended), `x-forwarded-proto`,
/// `x-forwarded-host`, `x-real-ip` and `forwarded` (appended). The three
/// fields naming one client are set unless a plugin set them: after
/// [`strip_from_client`], a value there is a plugin's explicit one,
/// and it wins (say, `x-forwarded-proto = "https"` behind a load balancer
/// that ended TLS).
pub fn add_forwarded(headers: &mut HeaderMap, client: IpAddr, proto: &str, host: Option<&str>) {
    use std::fmt::Write;
    // Five fields are added: grow the map once, not field by field.
    headers.reserve(5);
    let mut text = String::with_capacity(64);
    if let Some(existing) = headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty())
    {
        text.push_str(existing);
        text.push_str(", ");
    }
    let start = text.len();
    let _ = write!(text, "{client}");
    if !headers.contains_key(X_REAL_IP)
        && let Ok(v) = HeaderValue::from_str(&text[start..])
    {
        headers.insert(X_REAL_IP, v);
    }
    if let Ok(v) = HeaderValue::from_str(&text) {
        headers.insert("x-forwarded-for", v);
    }
    headers
        .entry("x-forwarded-proto")
        .or_insert_with(|| HeaderValue::from_static(if proto == "https" { "https" } else { "http" }));
    if !headers.contains_key("x-forwarded-host")
        && let Some(host) = host.and_then(|h| HeaderValue::from_str(h).ok())
    {
        headers.insert("x-forwarded-host", host);
    }
    text.clear();
    let _ = match client {
        IpAddr::V4(ip) => write!(text, "for={ip};proto={proto}"),
        IpAddr::V6(ip) => write!(text, "for=\"[{ip}]\";proto={proto}"),
    };
    if let Some(host) = host.filter(|h| h.bytes().all(|b| b.is_ascii_graphic() && b != b'"')) {
        let _ = write!(text, ";host=\"{host}\"");
    }
    if let Ok(v) = HeaderValue::from_str(&text) {
        headers.append(header::FORWARDED, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_fields_and_connection_tokens_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, x-secret-hop"));
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x-kept", HeaderValue::from_static("yes"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn forwarded_headers_append_to_existing_chain() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
        h.insert("x-real-ip", HeaderValue::from_static("203.0.113.9"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        strip_from_client(&mut h);
        add_forwarded(&mut h, "127.0.0.1".parse().unwrap(), "http", Some("api.test"));
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
        assert_eq!(h["x-real-ip"], "127.0.0.1", "a client's x-real-ip is replaced");
        assert_eq!(
            h["x-forwarded-proto"], "http",
            "a client's x-forwarded-proto is replaced"
        );
        // What a plugin set after the client's were dropped is kept.
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        add_forwarded(&mut h, "127.0.0.1".parse().unwrap(), "http", Some("api.test"));
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "api.test");
        assert_eq!(h["x-forwarded-host"], "api.test");
        assert_eq!(h[header::FORWARDED], "for=127.0.0.1;proto=http;host=\"api.test\"");
        let mut h = HeaderMap::new();
        add_forwarded(&mut h, "::1".parse().unwrap(), "https", None);
        assert_eq!(h[header::FORWARDED], "for=\"[::1]\";proto=https");
    }
}
