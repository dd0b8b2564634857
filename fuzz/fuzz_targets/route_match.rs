//! Routes from arbitrary hosts, prefixes and methods, and arbitrary
//! requests, through `router::first_match` (the rule `RouteTable::find`
//! applies). Never a panic, and the route found obeys the rules the
//! config documents: path prefixes match at a segment boundary, hosts
//! match case-insensitively with the port ignored, an earlier route wins.

#![no_main]

use arbitrary::Arbitrary;
use http::Method;
use libfuzzer_sys::fuzz_target;
use weir::proxy::router::{RouteMatch, first_match};

#[derive(Arbitrary, Debug)]
struct RouteSpec {
    host: Option<String>,
    prefix: String,
    methods: Option<Vec<String>>,
}

/// A request part either made up or taken from one of the routes, so
/// that matches are common.
#[derive(Arbitrary, Debug)]
enum Part {
    Raw(String),
    FromRoute { route: u8, before: String, after: String },
}

#[derive(Arbitrary, Debug)]
struct Input {
    routes: Vec<RouteSpec>,
    method: Part,
    host: Option<Part>,
    port: Option<u16>,
    path: Part,
}

fn pick<'a>(routes: &'a [RouteSpec], part: &'a Part, of: impl Fn(&'a RouteSpec) -> Option<&'a str>) -> String {
    match part {
        Part::Raw(text) => text.clone(),
        Part::FromRoute { route, before, after } => {
            let from = routes
                .get(usize::from(*route) % routes.len().max(1))
                .and_then(of)
                .unwrap_or_default();
            format!("{before}{}{after}", from.trim_start_matches('*'))
        }
    }
}

/// The segment-boundary rule, stated independently: `/` matches every
/// path; otherwise the path is the prefix (without trailing `/`) or
/// continues it with `/`.
fn under_prefix(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    let prefix = prefix.trim_end_matches('/');
    path == prefix || path.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/'))
}

fn host_without_port(host: &str) -> &str {
    if let Some(inside) = host.strip_prefix('[') {
        return inside.split_once(']').map_or(host, |(h, _)| h);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

fuzz_target!(|input: Input| {
    let routes = &input.routes[..input.routes.len().min(16)];
    let matchers: Vec<RouteMatch> = routes
        .iter()
        .map(|r| RouteMatch::new(r.host.as_deref(), &r.prefix, r.methods.as_deref()))
        .collect();
    let method_text = pick(routes, &input.method, |r| {
        r.methods.as_ref()?.first().map(String::as_str)
    });
    let Ok(method) = Method::from_bytes(method_text.as_bytes()) else {
        return;
    };
    let mut host = input.host.as_ref().map(|h| pick(routes, h, |r| r.host.as_deref()));
    if let (Some(h), Some(port)) = (&mut host, input.port) {
        h.push_str(&format!(":{port}"));
    }
    let path = pick(routes, &input.path, |r| Some(r.prefix.as_str()));

    let found = first_match(&matchers, &method, host.as_deref(), &path);
    // The root's trailing dot names the same host.
    let bare_host = host.as_deref().map(host_without_port);
    let dotless_host = bare_host.map(|h| h.strip_suffix('.').unwrap_or(h));
    if let Some(i) = found {
        let spec = &routes[i];
        assert!(
            under_prefix(&spec.prefix, &path),
            "route {i} {spec:?} matched path {path:?}"
        );
        if let Some(pattern) = &spec.host {
            let h = dotless_host.unwrap_or_else(|| panic!("route {i} with host {pattern:?} matched no host"));
            let pattern = pattern.strip_suffix('.').unwrap_or(pattern);
            match pattern.strip_prefix('*') {
                Some(suffix) => assert!(
                    h.len() > suffix.len() && h.to_ascii_lowercase().ends_with(&suffix.to_ascii_lowercase()),
                    "route {i} {pattern:?} matched host {h:?}"
                ),
                None => assert!(
                    pattern.eq_ignore_ascii_case(h),
                    "route {i} {pattern:?} matched host {h:?}"
                ),
            }
        }
        match &spec.methods {
            Some(methods) => assert!(
                methods.iter().any(|m| m.as_bytes() == method.as_str().as_bytes()),
                "route {i} {methods:?} matched method {method}"
            ),
            None => assert!(
                method != Method::CONNECT && method != Method::TRACE,
                "route {i} for any method took {method}, which only a route naming it may"
            ),
        }
        // No earlier route matches: each alone does not.
        for (j, earlier) in matchers[..i].iter().enumerate() {
            assert!(
                first_match([earlier], &method, host.as_deref(), &path).is_none(),
                "route {j} matches too but route {i} was found"
            );
        }
    }
    // The port, the case of the host and a trailing `/` on the prefix do
    // not change the route found.
    // (A bare IPv6 address is left out: without brackets its last group
    // reads as a port.)
    if let Some(h) = bare_host.filter(|h| !h.contains(':')) {
        assert_eq!(
            first_match(&matchers, &method, Some(h), &path),
            found,
            "port changed the route"
        );
        let upper = h.to_ascii_uppercase();
        assert_eq!(
            first_match(&matchers, &method, Some(&upper), &path),
            found,
            "case changed the route"
        );
    }
    let slashed: Vec<RouteMatch> = routes
        .iter()
        .map(|r| RouteMatch::new(r.host.as_deref(), &format!("{}/", r.prefix), r.methods.as_deref()))
        .collect();
    let all_rooted = routes
        .iter()
        .all(|r| r.prefix.starts_with('/') && r.prefix != "/" && !r.prefix.ends_with("//"));
    if all_rooted {
        assert_eq!(
            first_match(&slashed, &method, host.as_deref(), &path),
            found,
            "a trailing '/' changed the route"
        );
    }
});
