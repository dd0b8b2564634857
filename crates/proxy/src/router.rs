//! The route table: the first route whose host, path prefix and method
//! match a request.

use std::sync::Arc;

use http::Method;

use super::ai_backend::AiBackend;
use super::upstream::UpstreamPool;
use weir_config::{RouteConfig, RouteName};
use weir_plugins::Chain;

/// How a route matches the request's host.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    Any,
    Exact(String),
    /// `*.example.com`: stored as `.example.com`.
    Suffix(String),
}

impl HostMatch {
    fn new(pattern: Option<&str>) -> Self {
        match pattern {
            None => HostMatch::Any,
            // The root's trailing dot names the same host, in a pattern as
            // in a request.
            Some(p) => {
                let p = p.strip_suffix('.').unwrap_or(p);
                match p.strip_prefix('*') {
                    Some(suffix) => HostMatch::Suffix(suffix.to_ascii_lowercase()),
                    None => HostMatch::Exact(p.to_ascii_lowercase()),
                }
            }
        }
    }

    fn matches(&self, host: Option<&str>) -> bool {
        match (self, host) {
            (HostMatch::Any, _) => true,
            (_, None) => false,
            (HostMatch::Exact(h), Some(host)) => h.eq_ignore_ascii_case(host),
            (HostMatch::Suffix(s), Some(host)) => {
                host.len() > s.len() && host.to_ascii_lowercase().ends_with(s.as_str())
            }
        }
    }
}

/// Where a route sends what its plugins let through.
pub enum Backend {
    /// An upstream pool.
    Upstream(Arc<UpstreamPool>),
    /// AI targets behind the OpenAI chat completions API, served by the
    /// AI gateway.
    Ai(Arc<dyn AiBackend>),
}

/// What a route matches: a host, a path prefix and methods.
#[derive(Debug, Clone)]
pub struct RouteMatch {
    host: HostMatch,
    prefix: String,
    methods: Option<Vec<Method>>,
}

impl RouteMatch {
    /// The match of a route with these (validated) settings: `host` is
    /// `None` for any host or `*.example.com` for subdomains, `methods`
    /// `None` for any method; method names that do not parse are left out.
    pub fn new(host: Option<&str>, path_prefix: &str, methods: Option<&[String]>) -> Self {
        RouteMatch {
            host: HostMatch::new(host),
            prefix: path_prefix.to_string(),
            methods: methods.map(|ms| {
                ms.iter()
                    .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
                    .collect()
            }),
        }
    }

    /// Whether a request matches; `host` without its port.
    pub fn matches(&self, method: &Method, host: Option<&str>, path: &str) -> bool {
        self.host.matches(host)
            && prefix_matches(&self.prefix, path)
            && match &self.methods {
                Some(methods) => methods.contains(method),
                None => !needs_explicit_route(method),
            }
    }
}

/// CONNECT (a tunnel through the gateway) and TRACE (which echoes the
/// request, credentials included) reach only a route that names them in
/// its `methods`; a route for any method does not take them.
pub fn needs_explicit_route(method: &Method) -> bool {
    method == Method::CONNECT || method == Method::TRACE
}

/// The index of the first of `matches` that a request matches: the rule
/// [`RouteTable::find`] applies. `host` may carry a port, and end in the
/// root's dot (`api.example.com.`); both are ignored.
pub fn first_match<'a>(
    matches: impl IntoIterator<Item = &'a RouteMatch>,
    method: &Method,
    host: Option<&str>,
    path: &str,
) -> Option<usize> {
    let host = host.map(|h| {
        let h = strip_port(h);
        h.strip_suffix('.').unwrap_or(h)
    });
    matches.into_iter().position(|m| m.matches(method, host, path))
}

/// One compiled route.
pub struct Route {
    /// Its name.
    pub name: RouteName,
    /// What it matches.
    pub matcher: RouteMatch,
    /// Where it sends requests.
    pub backend: Backend,
    /// Send the client's host upstream.
    pub preserve_host: bool,
    /// Its plugin chain.
    pub chain: Arc<Chain>,
    /// Its limit on requests in flight, if it has one.
    pub in_flight: Option<InFlightLimit>,
}

/// A limit on requests in flight: a request takes a permit or is shed.
#[derive(Clone)]
pub struct InFlightLimit {
    permits: Arc<tokio::sync::Semaphore>,
    limit: usize,
}

impl InFlightLimit {
    /// A limit of `limit` requests.
    pub fn new(limit: usize) -> Self {
        InFlightLimit {
            permits: Arc::new(tokio::sync::Semaphore::new(limit)),
            limit,
        }
    }

    /// A permit, held until the response body ends; `None` when `limit`
    /// requests are in flight already.
    pub fn try_enter(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }

    /// The limit.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

impl Route {
    /// Compile a validated route.
    pub fn new(config: &RouteConfig, backend: Backend, chain: Arc<Chain>) -> Self {
        Route {
            name: config.name.clone(),
            matcher: RouteMatch::new(config.host.as_deref(), &config.path_prefix, config.methods.as_deref()),
            backend,
            preserve_host: config.preserve_host,
            chain,
            in_flight: config.max_concurrent_requests.map(InFlightLimit::new),
        }
    }
}

/// `prefix` matches `path` at a segment boundary.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    let prefix = prefix.trim_end_matches('/');
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// Routes in config order.
#[derive(Default)]
pub struct RouteTable {
    routes: Vec<Arc<Route>>,
}

impl RouteTable {
    /// A table of `routes`, matched in order.
    pub fn new(routes: Vec<Route>) -> Self {
        RouteTable {
            routes: routes.into_iter().map(Arc::new).collect(),
        }
    }

    /// The first route matching. `host` may carry a port; it is ignored.
    pub fn find(&self, method: &Method, host: Option<&str>, path: &str) -> Option<&Arc<Route>> {
        first_match(self.routes.iter().map(|r| &r.matcher), method, host, path).and_then(|i| self.routes.get(i))
    }

    /// Every route, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.routes.iter()
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_once(']').map_or(host, |(h, _)| &h[1..]);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_at_segment_boundaries() {
        assert!(prefix_matches("/", "/anything"));
        assert!(prefix_matches("/api", "/api"));
        assert!(prefix_matches("/api", "/api/x"));
        assert!(prefix_matches("/api/", "/api/x"));
        assert!(!prefix_matches("/api", "/apix"));
        assert!(!prefix_matches("/api", "/"));
    }

    #[test]
    fn hosts_match_exactly_or_by_wildcard_ignoring_port() {
        let exact = HostMatch::new(Some("Api.Test"));
        assert!(exact.matches(Some(strip_port("api.test:8080"))));
        assert!(!exact.matches(Some("other.test")));
        assert!(!exact.matches(None));
        let wild = HostMatch::new(Some("*.example.com"));
        assert!(wild.matches(Some("a.example.com")));
        assert!(!wild.matches(Some("example.com")));
        assert_eq!(strip_port("[::1]:80"), "::1");
    }

    #[test]
    fn a_trailing_dot_names_the_same_host() {
        let routes = [RouteMatch::new(Some("api.test"), "/", None)];
        let get = Method::GET;
        assert_eq!(first_match(&routes, &get, Some("api.test."), "/"), Some(0));
        assert_eq!(first_match(&routes, &get, Some("API.test.:8080"), "/"), Some(0));
        assert_eq!(first_match(&routes, &get, Some("api.test.."), "/"), None);
        // Written with the dot in the config, the same.
        let dotted = [RouteMatch::new(Some("api.test."), "/", None)];
        assert_eq!(first_match(&dotted, &get, Some("api.test"), "/"), Some(0));
        assert_eq!(first_match(&dotted, &get, Some("api.test."), "/"), Some(0));
        assert_eq!(first_match(&dotted, &get, Some("api.test.."), "/"), None);
        let root = [RouteMatch::new(Some("."), "/", None)];
        assert_eq!(first_match(&root, &get, Some(".."), "/"), None);
    }

    #[test]
    fn connect_and_trace_need_a_route_that_names_them() {
        let any = [RouteMatch::new(None, "/", None)];
        assert_eq!(first_match(&any, &Method::CONNECT, None, "/"), None);
        assert_eq!(first_match(&any, &Method::TRACE, None, "/"), None);
        assert_eq!(first_match(&any, &Method::DELETE, None, "/"), Some(0));
        let named = [RouteMatch::new(None, "/", Some(&["TRACE".to_string()]))];
        assert_eq!(first_match(&named, &Method::TRACE, None, "/"), Some(0));
    }
}
