//! What the plugin answers: preflights at the gateway, and the CORS
//! headers on actual responses.

use serde_json::json;
use weir_sdk::Reply;

use crate::settings::Settings;

/// Response headers this plugin owns on actual responses: it sets them for
/// allowed origins and removes them otherwise, whatever the upstream said.
pub const OWNED: [&str; 3] = [
    "access-control-allow-origin",
    "access-control-allow-credentials",
    "access-control-expose-headers",
];

/// What a preflight answer depends on, for caches.
const PREFLIGHT_VARY: &str = "origin, access-control-request-method, access-control-request-headers";

impl Settings {
    /// Whether a request from `origin` is allowed.
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.origins.iter().any(|rule| rule.matches(origin))
    }

    /// The `access-control-allow-origin` value for a request from `origin`,
    /// or `None` if that origin is not allowed. With `*` configured (never
    /// together with credentials) every response gets `*`.
    pub fn allow_origin_value(&self, origin: Option<&str>) -> Option<String> {
        if self.any_origin() {
            return Some("*".into());
        }
        origin.filter(|o| self.allows_origin(o)).map(str::to_string)
    }

    /// The answer to a preflight: 204 with the `access-control-allow-*`
    /// headers if the origin, the method and every requested header are
    /// allowed; else 403 naming the first thing refused.
    /// `requested_headers` are the lines of
    /// `access-control-request-headers`.
    pub fn preflight(&self, origin: &str, method: &str, requested_headers: &[String]) -> Reply {
        let Some(allow_origin) = self.allow_origin_value(Some(origin)) else {
            return refused("origin not allowed");
        };
        // Methods are case-sensitive (RFC 9110 §9.1); browsers send the
        // standard ones in uppercase.
        if !self.methods.iter().any(|m| m == method) {
            return refused(&format!("method not allowed: {method}"));
        }
        let requested = requested_headers
            .iter()
            .flat_map(|line| line.split(','))
            .map(str::trim)
            .filter(|name| !name.is_empty());
        for name in requested {
            if !self.headers.iter().any(|h| h.eq_ignore_ascii_case(name)) {
                return refused(&format!("header not allowed: {}", name.to_ascii_lowercase()));
            }
        }
        let mut reply = Reply::new(204)
            .header("access-control-allow-origin", &allow_origin)
            .header("access-control-allow-methods", &self.methods.join(", "));
        if !self.headers.is_empty() {
            reply = reply.header("access-control-allow-headers", &self.headers.join(", "));
        }
        if self.credentials {
            reply = reply.header("access-control-allow-credentials", "true");
        }
        if let Some(secs) = self.max_age_secs {
            reply = reply.header("access-control-max-age", &secs.to_string());
        }
        reply.header("vary", PREFLIGHT_VARY)
    }

    /// The value each [`OWNED`] header gets on an actual response to a
    /// request from `origin` (`None`: remove it).
    pub fn response_headers(&self, origin: Option<&str>) -> [(&'static str, Option<String>); 3] {
        let allow_origin = self.allow_origin_value(origin);
        let allowed = allow_origin.is_some();
        let credentials = (allowed && self.credentials).then(|| "true".to_string());
        let expose = (allowed && !self.expose_headers.is_empty()).then(|| self.expose_headers.join(", "));
        [(OWNED[0], allow_origin), (OWNED[1], credentials), (OWNED[2], expose)]
    }

    /// Whether an actual response needs `vary: origin` added, given the
    /// `vary` lines it has: yes whenever the answer depends on the origin
    /// (anything but `*`), for every response, so a cache never hands one
    /// origin's answer to another — unless `vary` already covers it.
    pub fn needs_vary_origin(&self, vary_lines: &[String]) -> bool {
        let covered = vary_lines
            .iter()
            .flat_map(|line| line.split(','))
            .map(str::trim)
            .any(|field| field == "*" || field.eq_ignore_ascii_case("origin"));
        !self.any_origin() && !covered
    }
}

/// A refused preflight: 403 naming what was refused.
fn refused(error: &str) -> Reply {
    Reply::new(403)
        .header("vary", PREFLIGHT_VARY)
        .json(&json!({ "error": error }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(json: &str) -> Settings {
        crate::settings::checked(json).unwrap()
    }

    fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
        reply.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn error(reply: &Reply) -> String {
        let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        body["error"].as_str().unwrap().to_string()
    }

    fn lines(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|l| l.to_string()).collect()
    }

    const APP: &str = r#"{"origins":["https://app.example.com","https://*.example.net"],
        "methods":["GET","POST","PUT"],"headers":["Content-Type","x-request-id"],
        "expose_headers":["x-request-id","ratelimit-remaining"],"max_age_secs":600}"#;

    #[test]
    fn allowed_preflight_is_answered_204_with_the_allow_headers() {
        let s = settings(APP);
        let reply = s.preflight(
            "https://app.example.com",
            "PUT",
            &lines(&["content-type, X-Request-Id"]),
        );
        assert_eq!(reply.status, 204);
        assert!(reply.body.is_empty());
        assert_eq!(
            header(&reply, "access-control-allow-origin"),
            Some("https://app.example.com")
        );
        assert_eq!(header(&reply, "access-control-allow-methods"), Some("GET, POST, PUT"));
        assert_eq!(
            header(&reply, "access-control-allow-headers"),
            Some("content-type, x-request-id")
        );
        assert_eq!(header(&reply, "access-control-max-age"), Some("600"));
        assert_eq!(header(&reply, "access-control-allow-credentials"), None);
        assert_eq!(header(&reply, "vary"), Some(PREFLIGHT_VARY));
    }

    #[test]
    fn preflight_without_requested_headers_is_allowed() {
        let reply = settings(APP).preflight("https://app.example.com", "GET", &[]);
        assert_eq!(reply.status, 204);
    }

    #[test]
    fn preflight_from_a_disallowed_origin_is_refused() {
        let reply = settings(APP).preflight("https://evil.example.org", "GET", &[]);
        assert_eq!(reply.status, 403);
        assert_eq!(error(&reply), "origin not allowed");
        assert_eq!(header(&reply, "access-control-allow-origin"), None);
        assert_eq!(header(&reply, "content-type"), Some("application/json"));
    }

    #[test]
    fn preflight_for_a_disallowed_method_is_refused() {
        let s = settings(APP);
        let reply = s.preflight("https://app.example.com", "DELETE", &[]);
        assert_eq!(reply.status, 403);
        assert_eq!(error(&reply), "method not allowed: DELETE");
        // Methods are case-sensitive.
        assert_eq!(s.preflight("https://app.example.com", "put", &[]).status, 403);
    }

    #[test]
    fn preflight_for_a_disallowed_header_is_refused() {
        let reply = settings(APP).preflight(
            "https://app.example.com",
            "POST",
            &lines(&["content-type", "X-Secret, x-request-id"]),
        );
        assert_eq!(reply.status, 403);
        assert_eq!(error(&reply), "header not allowed: x-secret");
        assert_eq!(header(&reply, "access-control-allow-origin"), None);
    }

    #[test]
    fn preflight_from_a_wildcard_subdomain_is_allowed_and_echoed() {
        let s = settings(APP);
        let reply = s.preflight("https://eu.api.example.net", "GET", &[]);
        assert_eq!(reply.status, 204);
        assert_eq!(
            header(&reply, "access-control-allow-origin"),
            Some("https://eu.api.example.net")
        );
        assert_eq!(s.preflight("https://example.net", "GET", &[]).status, 403);
        assert_eq!(s.preflight("https://example.net.evil.org", "GET", &[]).status, 403);
    }

    #[test]
    fn preflight_with_star_origin_answers_star() {
        let s = settings(r#"{"origins":["*"]}"#);
        let reply = s.preflight("https://anyone.test", "GET", &[]);
        assert_eq!(reply.status, 204);
        assert_eq!(header(&reply, "access-control-allow-origin"), Some("*"));
        assert_eq!(header(&reply, "access-control-allow-headers"), None);
        assert_eq!(header(&reply, "access-control-max-age"), None);
    }

    #[test]
    fn preflight_with_credentials_echoes_the_origin_and_allows_credentials() {
        let s = settings(r#"{"origins":["https://*.example.com"],"credentials":true}"#);
        let reply = s.preflight("https://app.example.com", "POST", &[]);
        assert_eq!(reply.status, 204);
        assert_eq!(
            header(&reply, "access-control-allow-origin"),
            Some("https://app.example.com")
        );
        assert_eq!(header(&reply, "access-control-allow-credentials"), Some("true"));
    }

    #[test]
    fn actual_response_from_an_allowed_origin_gets_the_cors_headers() {
        let s = settings(APP);
        assert_eq!(
            s.response_headers(Some("https://app.example.com")),
            [
                ("access-control-allow-origin", Some("https://app.example.com".into())),
                ("access-control-allow-credentials", None),
                (
                    "access-control-expose-headers",
                    Some("x-request-id, ratelimit-remaining".into())
                ),
            ]
        );
    }

    #[test]
    fn actual_response_with_credentials_allows_credentials() {
        let s = settings(r#"{"origins":["https://app.example.com"],"credentials":true}"#);
        let [origin, credentials, expose] = s.response_headers(Some("https://app.example.com"));
        assert_eq!(origin.1.as_deref(), Some("https://app.example.com"));
        assert_eq!(credentials.1.as_deref(), Some("true"));
        assert_eq!(expose.1, None);
    }

    #[test]
    fn actual_response_from_a_disallowed_or_missing_origin_gets_no_cors_headers() {
        let s = settings(r#"{"origins":["https://app.example.com"],"credentials":true,"expose_headers":["x-id"]}"#);
        for origin in [Some("https://evil.example.org"), None] {
            assert!(
                s.response_headers(origin).iter().all(|(_, value)| value.is_none()),
                "{origin:?}"
            );
        }
    }

    #[test]
    fn actual_response_with_star_origin_gets_star_even_without_origin() {
        let s = settings(r#"{"origins":["*"]}"#);
        for origin in [Some("https://anyone.test"), None] {
            assert_eq!(s.response_headers(origin)[0].1.as_deref(), Some("*"));
        }
    }

    #[test]
    fn vary_origin_is_added_when_the_answer_depends_on_the_origin() {
        let s = settings(APP);
        assert!(s.needs_vary_origin(&[]));
        assert!(s.needs_vary_origin(&lines(&["accept-encoding"])));
        assert!(!s.needs_vary_origin(&lines(&["accept-encoding, Origin"])));
        assert!(!s.needs_vary_origin(&lines(&["accept", "origin"])));
        assert!(!s.needs_vary_origin(&lines(&["*"])));
        // A constant `*` does not depend on the origin.
        assert!(!settings(r#"{"origins":["*"]}"#).needs_vary_origin(&[]));
    }
}
