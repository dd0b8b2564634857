//! Which requests the admin API answers at all, before any token is
//! checked: the defence against DNS rebinding and cross-site requests.
//!
//! The admin API listens on loopback, but a browser on the same host is a
//! way in from any web page:
//!
//! - **DNS rebinding**: a page at `attacker.example` re-points that name at
//!   127.0.0.1 and reads the admin API as its own origin. The browser still
//!   sends `Host: attacker.example`. So a request is answered only when its
//!   `Host` (and HTTP/2 `:authority`) is a loopback name or address
//!   (`localhost`, 127.0.0.0/8, `[::1]`), the listener's own address, or a
//!   name listed in `[admin] allowed_hosts`; any port. Anything else gets
//!   421 naming the host.
//! - **Cross-site requests**: any page may send a "simple" `POST` (say,
//!   `content-type: text/plain`) to 127.0.0.1 without a preflight. So a
//!   state-changing request (`POST`, `PUT`, `PATCH`, `DELETE`) is refused
//!   with 403 when its `Origin` is not the admin API's own origin (the
//!   scheme and the very host and port the request was sent to), or, with
//!   no `Origin`, when `Sec-Fetch-Site` says another origin sent it. Tools
//!   (curl, `weir status`) send neither header and are not affected.
//!
//! Both checks hold with or without a token: a token in a browser's cookie
//! is exactly what a cross-site request would ride on.

use std::net::{IpAddr, SocketAddr};

use http::{HeaderMap, Method, Request, StatusCode, header};

/// Longest host shown in a refusal; the rest is cut (the header is the
/// client's, and a message should stay one line).
const MAX_HOST_SHOWN: usize = 100;

/// The names, besides loopback, the admin API answers to, and its own
/// address.
#[derive(Debug, Clone)]
pub struct AllowedHosts {
    own: SocketAddr,
    extra: Vec<String>,
}

/// Why a request was refused before it reached an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The `Host` is not one the admin API answers to (DNS rebinding).
    #[error(
        "host {0:?} is not this admin API's: it answers to localhost, loopback addresses and [admin] allowed_hosts \
         (a page on another site may have re-pointed its name at this host)"
    )]
    ForeignHost(String),
    /// No `Host` and no `:authority`.
    #[error("the request names no host; the admin API answers only requests addressed to it")]
    NoHost,
    /// A state-changing request from another origin (cross-site request).
    #[error("{method} from origin {origin:?} refused: only the admin API's own pages may change state")]
    ForeignOrigin {
        /// The request's method.
        method: Method,
        /// Its `Origin`, or `Sec-Fetch-Site: VALUE` when it had none.
        origin: String,
    },
}

impl Refusal {
    /// 421 for a foreign host (the request reached the wrong server), 403
    /// for a foreign origin.
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::ForeignHost(_) | Refusal::NoHost => StatusCode::MISDIRECTED_REQUEST,
            Refusal::ForeignOrigin { .. } => StatusCode::FORBIDDEN,
        }
    }
}

impl AllowedHosts {
    /// Loopback names and addresses, `own` (the listener's address) and
    /// the names in `extra` (`[admin] allowed_hosts`, compared without
    /// case).
    pub fn new(own: SocketAddr, extra: &[String]) -> Self {
        AllowedHosts {
            own,
            extra: extra
                .iter()
                .map(|h| {
                    let bare = h.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(h);
                    bare.trim_end_matches('.').to_ascii_lowercase()
                })
                .collect(),
        }
    }

    /// Refuse `request` if it is addressed to another host, or changes
    /// state on behalf of another origin.
    pub fn check<B>(&self, request: &Request<B>) -> Result<(), Refusal> {
        let headers = request.headers();
        let from_header = headers.get(header::HOST).map(|v| String::from_utf8_lossy(v.as_bytes()));
        let from_uri = request.uri().authority().map(|a| a.as_str());
        if from_header.is_none() && from_uri.is_none() {
            return Err(Refusal::NoHost);
        }
        for host in from_header.as_deref().into_iter().chain(from_uri) {
            if !self.allows(host) {
                return Err(Refusal::ForeignHost(shown(host)));
            }
        }
        if changes_state(request.method()) {
            let authority = from_uri.or(from_header.as_deref()).unwrap_or_default();
            check_origin(request.method(), headers, authority)?;
        }
        Ok(())
    }

    /// Whether `authority` (`host` or `host:port`) is one of ours.
    fn allows(&self, authority: &str) -> bool {
        let Some((host, port)) = split_authority(authority) else {
            return false;
        };
        if let Ok(ip) = host.parse::<IpAddr>() {
            return ip.is_loopback()
                || (ip == self.own.ip() && port.is_none_or(|p| p == self.own.port()))
                || self.extra.iter().any(|name| name.parse::<IpAddr>() == Ok(ip));
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        host == "localhost" || self.extra.contains(&host)
    }
}

/// `POST`, `PUT`, `PATCH`, `DELETE`: every method that is not safe.
fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE)
}

/// A state-changing request must come from the admin API's own origin:
/// `Origin` is `http(s)://` the authority the request was sent to. Without
/// `Origin`, `Sec-Fetch-Site` (sent by browsers) must not name another
/// origin; a request with neither header did not come from a web page.
fn check_origin(method: &Method, headers: &HeaderMap, authority: &str) -> Result<(), Refusal> {
    let refuse = |origin: String| Refusal::ForeignOrigin {
        method: method.clone(),
        origin,
    };
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = String::from_utf8_lossy(origin.as_bytes());
        let own = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .is_some_and(|rest| rest.eq_ignore_ascii_case(authority));
        return if own { Ok(()) } else { Err(refuse(shown(&origin))) };
    }
    match headers.get("sec-fetch-site").map(|v| v.as_bytes()) {
        None | Some(b"same-origin" | b"none") => Ok(()),
        Some(other) => Err(refuse(format!(
            "(none; sec-fetch-site: {})",
            shown(&String::from_utf8_lossy(other))
        ))),
    }
}

/// `host[:port]` split; the host without brackets. `None` when malformed.
fn split_authority(authority: &str) -> Option<(&str, Option<u16>)> {
    let parse_port = |p: &str| p.parse::<u16>().ok();
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after {
            "" => Some((host, None)),
            _ => Some((host, Some(parse_port(after.strip_prefix(':')?)?))),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => Some((host, Some(parse_port(port)?))),
        Some(_) => None,
        None if authority.is_empty() => None,
        None => Some((authority, None)),
    }
}

/// A client's header value, cut for a message.
fn shown(value: &str) -> String {
    value.chars().take(MAX_HOST_SHOWN).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> AllowedHosts {
        AllowedHosts::new("127.0.0.1:9901".parse().unwrap(), &["Weir-Admin.internal".to_string()])
    }

    fn request(method: Method, headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::builder().method(method).uri("/reload");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn loopback_names_and_addresses_are_answered_any_other_host_is_not() {
        let hosts = allowed();
        for host in [
            "localhost",
            "LOCALHOST:9901",
            "localhost.",
            "127.0.0.1",
            "127.0.0.1:9901",
            "127.1.2.3:80",
            "[::1]",
            "[::1]:9901",
            "weir-admin.internal",
            "weir-admin.internal:9901",
        ] {
            assert_eq!(hosts.check(&request(Method::GET, &[("host", host)])), Ok(()), "{host}");
        }
        for host in [
            "attacker.example",
            "attacker.example:9901",
            "localhost.attacker.example",
            "127.0.0.1.nip.io",
            "10.0.0.1:9901",
            "[::2]:9901",
            "[::1",
            "localhost:99999",
            "",
        ] {
            let refused = hosts.check(&request(Method::GET, &[("host", host)])).unwrap_err();
            assert_eq!(refused, Refusal::ForeignHost(host.to_string()), "{host}");
            assert_eq!(refused.status(), StatusCode::MISDIRECTED_REQUEST);
        }
        assert_eq!(hosts.check(&request(Method::GET, &[])), Err(Refusal::NoHost));
    }

    #[test]
    fn state_changes_need_the_admin_apis_own_origin() {
        let hosts = allowed();
        let host = ("host", "127.0.0.1:9901");
        for headers in [
            vec![host],
            vec![host, ("origin", "http://127.0.0.1:9901")],
            vec![host, ("sec-fetch-site", "same-origin")],
            vec![host, ("sec-fetch-site", "none")],
        ] {
            assert_eq!(hosts.check(&request(Method::POST, &headers)), Ok(()), "{headers:?}");
        }
        for headers in [
            vec![host, ("origin", "http://attacker.example")],
            vec![host, ("origin", "null")],
            vec![host, ("origin", "http://127.0.0.1:8080")],
            vec![host, ("origin", "http://localhost:9901")],
            vec![host, ("sec-fetch-site", "cross-site")],
            vec![host, ("sec-fetch-site", "same-site")],
        ] {
            for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
                let refused = hosts.check(&request(method.clone(), &headers)).unwrap_err();
                assert!(matches!(refused, Refusal::ForeignOrigin { .. }), "{method} {headers:?}");
                assert_eq!(refused.status(), StatusCode::FORBIDDEN);
            }
        }
        // Reading is not a state change: CORS keeps the answer from the page.
        let read = request(Method::GET, &[host, ("origin", "http://attacker.example")]);
        assert_eq!(hosts.check(&read), Ok(()));
    }
}
