//! Any request path through `proxy::path` (the canonical form the gateway
//! routes on and forwards). Never a panic; and when a path is accepted:
//!
//! - its canonical form is a fixed point (normalising again changes
//!   nothing), so the path routed on, shown to plugins and sent upstream
//!   is one and the same;
//! - it starts with `/` and holds no dot segment, no `//` (when merging),
//!   no escape of an unreserved character and no lower-case escape;
//! - a URI carrying the path keeps its query and gets exactly that path;
//! - a path under a route's prefix only by way of dot segments or escapes
//!   routes as its canonical form does.

#![no_main]

use arbitrary::Arbitrary;
use http::Method;
use libfuzzer_sys::fuzz_target;
use weir::proxy::path::{EscapedSlashes, PathPolicy, normalize, normalize_uri};
use weir::proxy::router::{RouteMatch, first_match};

#[derive(Arbitrary, Debug)]
struct Input {
    path: String,
    query: Option<String>,
    merge_slashes: bool,
    keep_escaped_slashes: bool,
    prefixes: Vec<String>,
}

fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|s| s == "." || s == "..")
}

fuzz_target!(|input: Input| {
    let policy = PathPolicy {
        merge_slashes: input.merge_slashes,
        escaped_slashes: if input.keep_escaped_slashes {
            EscapedSlashes::Keep
        } else {
            EscapedSlashes::Reject
        },
    };
    let Ok(canonical) = normalize(&input.path, policy) else {
        return;
    };
    let canonical = canonical.into_owned();
    if canonical == "*" {
        return;
    }
    assert!(canonical.starts_with('/'), "{canonical:?}");
    assert_eq!(
        normalize(&canonical, policy).map(|c| c.into_owned()),
        Ok(canonical.clone()),
        "not a fixed point"
    );
    assert!(!has_dot_segment(&canonical), "{canonical:?} keeps a dot segment");
    if policy.merge_slashes {
        assert!(!canonical.contains("//"), "{canonical:?}");
    }
    let bytes = canonical.as_bytes();
    for (i, _) in canonical.match_indices('%') {
        let escape = &bytes[i + 1..i + 3];
        assert!(
            escape.iter().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(b)),
            "{canonical:?}: lower-case or bad escape"
        );
        let value = u8::from_str_radix(std::str::from_utf8(escape).unwrap(), 16).unwrap();
        assert!(
            !(value.is_ascii_alphanumeric() || b"-._~".contains(&value)),
            "{canonical:?}: an unreserved character left escaped"
        );
    }

    // What the upstream receives: the same path, the query untouched.
    let text = match &input.query {
        Some(q) => format!("{}?{q}", input.path),
        None => input.path.clone(),
    };
    if let Ok(uri) = text.parse::<http::Uri>()
        && uri.path() == input.path
    {
        let sent = normalize_uri(&uri, policy).expect("accepted once, accepted in a URI");
        let sent = sent.as_ref().unwrap_or(&uri);
        assert_eq!(sent.path(), canonical);
        assert_eq!(sent.query(), uri.query());
    }

    // Routing: the canonical form is what the route table sees; a prefix
    // matching it matches its canonical form again.
    let matchers: Vec<RouteMatch> = input
        .prefixes
        .iter()
        .filter_map(|p| normalize(p, policy).ok().map(|c| c.into_owned()))
        .map(|p| RouteMatch::new(None, &p, None))
        .collect();
    let found = first_match(&matchers, &Method::GET, None, &canonical);
    let again = normalize(&canonical, policy).unwrap();
    assert_eq!(first_match(&matchers, &Method::GET, None, &again), found);
});
