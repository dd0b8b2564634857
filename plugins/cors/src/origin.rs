//! Allowed origins as configured (`https://app.example.com`,
//! `https://*.example.com`, `*`) and how a request's `origin` is matched.
//!
//! An origin is `scheme://host[:port]`, compared case-insensitively (a
//! browser sends it in lowercase, without a default port and without a
//! path).

/// One entry of `origins`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginRule {
    /// `*`: every origin.
    Any,
    /// One origin, lowercase.
    Exact(String),
    /// `scheme://*.suffix[:port]`: any host one or more labels below
    /// `suffix` (not `suffix` itself), with exactly this scheme and port.
    Subdomains {
        scheme: String,
        suffix: String,
        port: Option<String>,
    },
}

impl OriginRule {
    /// Parse one `origins` entry; the error says what is wrong with it.
    pub fn parse(entry: &str) -> Result<OriginRule, String> {
        if entry == "*" {
            return Ok(OriginRule::Any);
        }
        if entry.eq_ignore_ascii_case("null") {
            return Err(
                "cannot be allowed: sandboxed documents and local files send it, and any site can make one".into(),
            );
        }
        let text = entry.to_ascii_lowercase();
        let Some((scheme, host, port)) = split(&text) else {
            return Err("is not an origin: write scheme://host[:port], with no path or trailing slash".into());
        };
        if let Some(port) = port
            && ((scheme == "https" && port == "443") || (scheme == "http" && port == "80"))
        {
            return Err(format!(
                "names the default port, which browsers leave out of the origin: write {:?}",
                format!("{scheme}://{host}")
            ));
        }
        if let Some(suffix) = host.strip_prefix("*.") {
            if !is_dns_name(suffix) || !suffix.contains('.') {
                return Err(
                    "is too wide or not a pattern: `*.` must be followed by a domain of two or more labels".into(),
                );
            }
            return Ok(OriginRule::Subdomains {
                scheme: scheme.to_string(),
                suffix: suffix.to_string(),
                port: port.map(str::to_string),
            });
        }
        if host.contains('*') {
            return Err("has a `*` where only a leftmost `*.` is allowed, as in https://*.example.com".into());
        }
        if !is_dns_name(host) && !is_ipv6_literal(host) {
            return Err("is not an origin: the host is not a domain name or IP address".into());
        }
        Ok(OriginRule::Exact(text))
    }

    /// Whether the request's `origin` value matches this rule.
    pub fn matches(&self, origin: &str) -> bool {
        match self {
            OriginRule::Any => true,
            OriginRule::Exact(allowed) => origin.eq_ignore_ascii_case(allowed),
            OriginRule::Subdomains { scheme, suffix, port } => {
                let origin = origin.to_ascii_lowercase();
                let Some((s, host, p)) = split(&origin) else {
                    return false;
                };
                let below = host
                    .strip_suffix(suffix.as_str())
                    .and_then(|rest| rest.strip_suffix('.'));
                s == scheme && p == port.as_deref() && below.is_some_and(is_dns_name)
            }
        }
    }
}

/// `scheme://host[:port]` into its parts; `None` if it has anything more
/// (a path, a query, user info) or lacks a part.
fn split(origin: &str) -> Option<(&str, &str, Option<&str>)> {
    let (scheme, authority) = origin.split_once("://")?;
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c));
    if !scheme_ok || authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
        return None;
    }
    // A bracketed IPv6 host has colons of its own.
    let host_end = if authority.starts_with('[') {
        authority.find(']')? + 1
    } else {
        authority.find(':').unwrap_or(authority.len())
    };
    let (host, rest) = authority.split_at(host_end);
    let port = match rest.strip_prefix(':') {
        Some(port) if is_port(port) => Some(port),
        Some(_) => return None,
        None if rest.is_empty() => None,
        None => return None,
    };
    (!host.is_empty()).then_some((scheme, host, port))
}

/// A port number 0..=65535 without a sign or leading `+`.
fn is_port(text: &str) -> bool {
    !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit()) && text.parse::<u16>().is_ok()
}

/// Lowercase labels of letters, digits, `-` and `_`, separated by dots.
/// (IPv4 addresses pass too, which is what an origin may hold.)
fn is_dns_name(text: &str) -> bool {
    !text.is_empty()
        && text.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        })
}

/// `[2001:db8::1]`.
fn is_ipv6_literal(text: &str) -> bool {
    text.strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .is_some_and(|inner| inner.parse::<std::net::Ipv6Addr>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(entry: &str) -> OriginRule {
        OriginRule::parse(entry).unwrap()
    }

    #[test]
    fn exact_origin_matches_itself_in_any_case() {
        let r = rule("https://App.example.com");
        assert!(r.matches("https://app.example.com"));
        assert!(r.matches("HTTPS://APP.EXAMPLE.COM"));
        assert!(!r.matches("http://app.example.com"));
        assert!(!r.matches("https://app.example.com:8443"));
        assert!(!r.matches("https://app.example.com.evil.net"));
        assert!(!r.matches("https://evilapp.example.com"));
    }

    #[test]
    fn exact_origin_with_port_or_ip_host() {
        assert!(rule("http://localhost:3000").matches("http://localhost:3000"));
        assert!(!rule("http://localhost:3000").matches("http://localhost:3001"));
        assert!(rule("http://[::1]:8080").matches("http://[::1]:8080"));
        assert!(rule("http://127.0.0.1:8080").matches("http://127.0.0.1:8080"));
    }

    #[test]
    fn wildcard_subdomain_pattern_matches_subdomains_only() {
        let r = rule("https://*.example.com");
        assert!(r.matches("https://app.example.com"));
        assert!(r.matches("https://a.b.example.com"));
        assert!(r.matches("https://APP.Example.COM"));
        assert!(!r.matches("https://example.com"), "the apex is not a subdomain");
        assert!(!r.matches("https://.example.com"));
        assert!(!r.matches("https://a..example.com"));
        assert!(!r.matches("https://evilexample.com"));
        assert!(!r.matches("https://app.example.com.evil.net"));
        assert!(!r.matches("http://app.example.com"), "the scheme must match");
        assert!(!r.matches("https://app.example.com:8443"), "the port must match");
        assert!(!r.matches("https://app.example.com/"));
        assert!(!r.matches("https://user@app.example.com"));
        assert!(!r.matches("null"));
    }

    #[test]
    fn wildcard_subdomain_pattern_with_port() {
        let r = rule("https://*.example.com:8443");
        assert!(r.matches("https://app.example.com:8443"));
        assert!(!r.matches("https://app.example.com"));
    }

    #[test]
    fn star_matches_every_origin() {
        assert_eq!(rule("*"), OriginRule::Any);
        assert!(rule("*").matches("https://anything.test"));
    }

    #[test]
    fn bad_entries_are_refused_with_a_reason() {
        let bad = |entry: &str| OriginRule::parse(entry).unwrap_err();
        assert!(bad("https://example.com/").contains("no path or trailing slash"));
        assert!(bad("example.com").contains("is not an origin"));
        assert!(bad("https://").contains("is not an origin"));
        assert!(bad("https://example.com:99999").contains("is not an origin"));
        assert!(bad("https://exa mple.com").contains("is not an origin"));
        assert!(bad("null").contains("cannot be allowed"));
        assert!(bad("https://*.com").contains("too wide"));
        assert!(bad("https://*").contains("leftmost"));
        assert!(bad("https://app.*.example.com").contains("leftmost"));
        assert!(bad("https://app*.example.com").contains("leftmost"));
        assert!(bad("*://example.com").contains("is not an origin"));
        assert!(bad("https://example.com:443").contains("default port"));
        assert!(bad("http://example.com:80").contains("default port"));
    }
}
