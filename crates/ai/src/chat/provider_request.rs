//! The HTTP request a provider shim's translation becomes for one target.
//!
//! The shim says the method, the path under the target's base URL, the
//! headers, the body and where the key goes; the host holds the key and
//! the target's address, and makes the request itself.
//!
//! Invariants, whatever the shim returned: the request goes to the
//! target's scheme and authority, under its base path; connection-level
//! fields are the host's (dropped from the shim's headers); there is one
//! `content-length`, the body's; the key is a sensitive header or a query
//! parameter, never in a field the host sets, and never next to a
//! fragment that would carry it off. What cannot be made so is refused
//! with a message.

use http::{HeaderValue, Method, Request, header};

use crate::targets::AiTarget;
use weir_config::Target;
use weir_core::body::{Body, full_body};
use weir_core::forwarding;
use weir_plugins::capabilities::header_list;
use weir_plugins::capabilities::shim::exports::weir::plugin::provider::{KeyPlacement, ProviderRequest};

/// The HTTP request for a target: its base URL plus the shim's path, the
/// shim's headers, and the key where the shim said.
pub(super) fn build_request(target: &AiTarget, request: ProviderRequest) -> Result<Request<Body>, String> {
    let endpoint = Endpoint {
        name: &target.name,
        base: &target.base,
        base_path: &target.base_path,
        key: target.key.as_deref(),
    };
    provider_request(&endpoint, request)
}

/// What [`provider_request`] needs of a target.
pub struct Endpoint<'a> {
    /// The target's name, for messages.
    pub name: &'a str,
    /// Scheme and authority of its base URL.
    pub base: &'a Target,
    /// The base URL's path, without trailing `/`.
    pub base_path: &'a str,
    /// The provider key, if the target has one.
    pub key: Option<&'a str>,
}

/// The HTTP request a shim's [`ProviderRequest`] becomes for `endpoint`.
/// Whatever the shim returned, the result goes to the endpoint's scheme
/// and authority, under its base path, with valid headers and a
/// `content-length` that is the body's; a value it cannot make so is
/// refused with a message.
pub fn provider_request(endpoint: &Endpoint<'_>, request: ProviderRequest) -> Result<Request<Body>, String> {
    let shim_said =
        |what: &str, detail: &dyn std::fmt::Display| format!("the provider shim gave an invalid {what}: {detail}");
    // A fragment is never sent: the key's query parameter would go with it.
    if !request.path.starts_with('/') || request.path.contains('#') {
        return Err(shim_said("path", &format!("{:?}", request.path)));
    }
    let mut path = format!("{}{}", endpoint.base_path, request.path);
    let method = Method::from_bytes(request.method.as_bytes()).map_err(|e| shim_said("method", &e))?;
    let mut headers = header_list(&request.headers).map_err(|e| shim_said("header", &e))?;
    // Connection-level fields are the host's to set, as for any message
    // it forwards.
    forwarding::strip_hop_by_hop(&mut headers);
    if let Some(key) = endpoint.key {
        match &request.key {
            KeyPlacement::None => {}
            KeyPlacement::Header((name, prefix)) => {
                let name = http::HeaderName::from_bytes(name.as_bytes()).map_err(|e| shim_said("key header", &e))?;
                // The host sets these itself: a key there would be lost or
                // would change how the request is framed or routed.
                if name == header::CONTENT_LENGTH || name == header::HOST || forwarding::is_hop_by_hop(&name) {
                    return Err(shim_said("key header", &name));
                }
                let mut value = HeaderValue::from_str(&format!("{prefix}{key}"))
                    .map_err(|_| format!("the key of target {} is not a valid header value", endpoint.name))?;
                value.set_sensitive(true);
                headers
                    .try_insert(name, value)
                    .map_err(|e| shim_said("header list", &e))?;
            }
            KeyPlacement::Query(name) => {
                let pair: String = form_urlencoded::Serializer::new(String::new())
                    .append_pair(name, key)
                    .finish();
                path.push(if path.contains('?') { '&' } else { '?' });
                path.push_str(&pair);
            }
        }
    }
    headers
        .try_insert(header::CONTENT_LENGTH, HeaderValue::from(request.body.len()))
        .map_err(|e| shim_said("header list", &e))?;
    let uri = http::Uri::builder()
        .scheme(endpoint.base.scheme.clone())
        .authority(endpoint.base.authority.clone())
        .path_and_query(path)
        .build()
        .map_err(|e| shim_said("path", &e))?;
    let mut http_request = Request::builder()
        .method(method)
        .uri(uri)
        .body(full_body(request.body))
        .map_err(|e| e.to_string())?;
    *http_request.headers_mut() = headers;
    Ok(http_request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_config::parse_target;

    fn shim_request(path: &str, key: KeyPlacement, headers: &[(&str, &str)]) -> ProviderRequest {
        ProviderRequest {
            method: "POST".into(),
            path: path.into(),
            headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            body: b"{}".to_vec(),
            key,
        }
    }

    fn build(request: ProviderRequest) -> Result<Request<Body>, String> {
        let base = parse_target("https://api.provider.test").unwrap();
        let endpoint = Endpoint {
            name: "t",
            base: &base,
            base_path: "/v1",
            key: Some("sk-secret"),
        };
        provider_request(&endpoint, request)
    }

    #[test]
    fn the_key_goes_where_the_shim_says() {
        let request = build(shim_request("/chat?x=1", KeyPlacement::Query("key".into()), &[])).unwrap();
        assert_eq!(
            request.uri().to_string(),
            "https://api.provider.test:443/v1/chat?x=1&key=sk-secret"
        );
        let header = KeyPlacement::Header(("authorization".into(), "Bearer ".into()));
        let request = build(shim_request("/chat", header, &[])).unwrap();
        assert_eq!(request.headers()["authorization"], "Bearer sk-secret");
        assert!(request.headers()["authorization"].is_sensitive());
        assert_eq!(request.headers()[header::CONTENT_LENGTH], "2");
    }

    #[test]
    fn a_path_with_a_fragment_is_refused_rather_than_losing_the_key() {
        let error = build(shim_request("/chat#x", KeyPlacement::Query("key".into()), &[])).unwrap_err();
        assert!(error.contains("invalid path"), "{error}");
    }

    #[test]
    fn the_key_cannot_go_in_a_header_the_host_sets() {
        for name in ["content-length", "Host", "transfer-encoding", "connection"] {
            let placement = KeyPlacement::Header((name.into(), String::new()));
            let error = build(shim_request("/chat", placement, &[])).unwrap_err();
            assert!(error.contains("key header"), "{name}: {error}");
        }
    }

    #[test]
    fn connection_fields_from_a_shim_are_dropped_and_the_length_is_the_bodys() {
        let headers = [
            ("transfer-encoding", "chunked"),
            ("connection", "x-a"),
            ("x-a", "1"),
            ("content-length", "99"),
        ];
        let request = build(shim_request("/chat", KeyPlacement::None, &headers)).unwrap();
        let names: Vec<&str> = request.headers().keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["content-length"]);
        assert_eq!(request.headers()[header::CONTENT_LENGTH], "2");
    }
}
