//! What a proxy must do to headers on the way through (RFC 9110 §7.6):
//! drop hop-by-hop fields, and say who the client was with
//! `x-forwarded-*` and `forwarded`.

use std::net::IpAddr;

use http::header::Entry;
use http::{HeaderMap, HeaderName, HeaderValue, header};
use smallvec::SmallVec;

const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

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
        claims |= is_client_field(name);
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
    // `connection: keep-alive` is the usual case: a name removed below
    // anyway is not parsed into a name of its own first.
    let named: SmallVec<[HeaderName; 2]> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|name| !is_hop_by_hop_text(name))
        .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
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
    is_hop_by_hop_lower(name.as_str())
}

/// [`is_hop_by_hop`] for a name as written in `connection`, in any case.
fn is_hop_by_hop_text(name: &str) -> bool {
    // Room for the longest hop-by-hop name; anything longer is not one.
    let mut lower = [0u8; "proxy-authorization".len()];
    match lower.get_mut(..name.len()) {
        Some(buf) => {
            buf.copy_from_slice(name.as_bytes());
            buf.make_ascii_lowercase();
            std::str::from_utf8(buf).is_ok_and(is_hop_by_hop_lower)
        }
        None => false,
    }
}

/// Whether a lowercase name is a hop-by-hop field.
fn is_hop_by_hop_lower(name: &str) -> bool {
    // The names of HOP_BY_HOP and `upgrade`, matched as text: one length
    // switch and a compare, where comparing against each name in turn
    // builds and drops the list every time.
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
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
const CLIENT_FIELDS: [HeaderName; 3] = [X_FORWARDED_PROTO, X_FORWARDED_HOST, X_REAL_IP];

/// Whether `name` is one of [`CLIENT_FIELDS`], matched as text.
fn is_client_field(name: &HeaderName) -> bool {
    matches!(name.as_str(), "x-forwarded-proto" | "x-forwarded-host" | "x-real-ip")
}

/// Add `x-forwarded-for` (appended), `x-forwarded-proto`,
/// `x-forwarded-host`, `x-real-ip` and `forwarded` (appended). The three
/// fields naming one client are set unless a plugin set them: after
/// [`strip_from_client`], a value there is a plugin's explicit one,
/// and it wins (say, `x-forwarded-proto = "https"` behind a load balancer
/// that ended TLS).
pub fn add_forwarded(headers: &mut HeaderMap, client: IpAddr, proto: &str, host: Option<&str>) {
    // Five fields are added: grow the map once, not field by field.
    headers.reserve(5);
    let ip = IpText::new(client);
    let ip = ip.as_str();
    // The client's own address, as a value: shared by `x-real-ip` and,
    // when the client sent no chain, `x-forwarded-for`.
    let alone = HeaderValue::from_str(ip).ok();
    // Each field is found once (an entry), not looked up and then written.
    if let Some(alone) = &alone
        && let Entry::Vacant(field) = headers.entry(X_REAL_IP)
    {
        field.insert(alone.clone());
    }
    match headers.entry(X_FORWARDED_FOR) {
        Entry::Occupied(mut field) => {
            let chain = match field.get().to_str().ok().filter(|v| !v.trim().is_empty()) {
                Some(existing) => HeaderValue::from_str(&[existing, ", ", ip].concat()).ok(),
                None => alone,
            };
            if let Some(chain) = chain {
                field.insert(chain);
            }
        }
        Entry::Vacant(field) => {
            if let Some(alone) = alone {
                field.insert(alone);
            }
        }
    }
    headers
        .entry(X_FORWARDED_PROTO)
        .or_insert_with(|| HeaderValue::from_static(if proto == "https" { "https" } else { "http" }));
    if let Some(host) = host
        && let Entry::Vacant(field) = headers.entry(X_FORWARDED_HOST)
        && let Ok(host) = HeaderValue::from_str(host)
    {
        field.insert(host);
    }
    let mut text = String::with_capacity(64);
    match client {
        IpAddr::V4(_) => text.extend(["for=", ip]),
        IpAddr::V6(_) => text.extend(["for=\"[", ip, "]\""]),
    }
    text.extend([";proto=", proto]);
    if let Some(host) = host.filter(|h| h.bytes().all(|b| b.is_ascii_graphic() && b != b'"')) {
        text.extend([";host=\"", host, "\""]);
    }
    // The text becomes the value as it is, without a copy.
    if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(text)) {
        headers.append(header::FORWARDED, v);
    }
}

/// An IP address as text, written into a buffer of its own: no
/// allocation, and IPv4's four numbers without the formatting machinery.
pub struct IpText {
    buf: [u8; 48],
    len: usize,
}

impl IpText {
    /// `ip` in its usual text form (as `Display` writes it).
    pub fn new(ip: IpAddr) -> IpText {
        let mut text = IpText { buf: [0; 48], len: 0 };
        match ip {
            IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        text.push(b'.');
                    }
                    if octet >= 100 {
                        text.push(b'0' + octet / 100);
                    }
                    if octet >= 10 {
                        text.push(b'0' + octet / 10 % 10);
                    }
                    text.push(b'0' + octet % 10);
                }
            }
            IpAddr::V6(v6) => {
                use std::io::Write;
                let mut rest = &mut text.buf[..];
                // At most 45 characters (an IPv4-mapped form): it fits.
                let _ = write!(rest, "{v6}");
                text.len = 48 - rest.len();
            }
        }
        text
    }

    fn push(&mut self, byte: u8) {
        self.buf[self.len] = byte;
        self.len += 1;
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits, dots, colons and hex letters were written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
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
    fn connection_tokens_are_matched_in_any_case() {
        for token in ["Keep-Alive", "UPGRADE", "te", "Transfer-Encoding"] {
            assert!(is_hop_by_hop_text(token), "{token}");
        }
        for token in [
            "x-secret-hop",
            "close",
            "",
            "a-name-longer-than-the-longest-hop-by-hop-name",
        ] {
            assert!(!is_hop_by_hop_text(token), "{token}");
        }
        // A token in another case still names its field for removal.
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Keep-Alive, X-Secret-Hop"));
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("x-kept", HeaderValue::from_static("yes"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
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

    #[test]
    fn the_names_matched_as_text_are_the_lists() {
        for name in HOP_BY_HOP.iter().chain([&header::UPGRADE]) {
            assert!(is_hop_by_hop(name), "{name}");
        }
        for name in &CLIENT_FIELDS {
            assert!(is_client_field(name), "{name}");
            assert!(!is_hop_by_hop(name), "{name}");
        }
        for name in [header::HOST, header::CONTENT_LENGTH, header::FORWARDED, X_FORWARDED_FOR] {
            assert!(!is_hop_by_hop(&name) && !is_client_field(&name), "{name}");
        }
    }

    #[test]
    fn an_address_is_written_as_its_display_form() {
        for ip in [
            "0.0.0.0",
            "9.10.99.100",
            "255.255.255.255",
            "127.0.0.1",
            "203.0.113.9",
            "::",
            "::1",
            "2001:db8::ff00:42:8329",
            "::ffff:192.0.2.128",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(IpText::new(ip).as_str(), ip.to_string());
        }
        for n in 0..=255u8 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::new(n, 0, n, n));
            assert_eq!(IpText::new(ip).as_str(), ip.to_string());
        }
    }
}
