//! Request paths in one canonical form, made before anything looks at the
//! path: the route table matches it, plugins see it, the upstream receives
//! it. A path that two parties would read differently is how a request
//! slips past the plugins of the route it is really for: `/api/x/../admin`
//! matched as `/api` but served by an upstream that resolves the dots as
//! `/admin`. So the gateway resolves such a path once, itself, and forwards
//! only what it resolved.
//!
//! The canonical form (RFC 3986 §6.2.2), in this order:
//!
//! 1. Percent-encoded unreserved characters (`A–Z a–z 0–9 - . _ ~`) are
//!    decoded, and the hex digits of every other escape are upper-cased.
//!    A `%` not followed by two hex digits is refused.
//! 2. An encoded `/` or `\` (`%2F`, `%5C`) and a raw `\` are refused by
//!    default: some upstreams decode them into separators, others do not,
//!    so no one form is safe to route on. [`EscapedSlashes::Keep`] lets
//!    them through unchanged, as data inside a segment.
//! 3. Runs of `/` are merged into one, unless merging is switched off.
//! 4. Dot segments (`.` and `..`, including those spelled `%2E`) are
//!    removed (RFC 3986 §5.2.4); `..` never climbs above the root.
//!
//! The query is never touched. A path already in canonical form — nearly
//! every request — is recognised in one pass over its bytes and costs no
//! allocation.

use std::borrow::Cow;

/// What to do with `%2F`, `%5C` and a raw `\` in a request path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EscapedSlashes {
    /// Refuse the request with 400 (the default).
    #[default]
    Reject,
    /// Keep them unchanged: data inside a segment, never a separator.
    Keep,
}

/// How request paths are made canonical.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathPolicy {
    /// Merge runs of `/` into one.
    pub merge_slashes: bool,
    /// What to do with encoded slashes and backslashes.
    pub escaped_slashes: EscapedSlashes,
}

impl Default for PathPolicy {
    fn default() -> Self {
        PathPolicy {
            merge_slashes: true,
            escaped_slashes: EscapedSlashes::Reject,
        }
    }
}

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// A `%` without two hex digits after it.
    #[error("the path has a '%' not followed by two hex digits")]
    BadEscape,
    /// An encoded `/` or `\`, or a raw `\`, under [`EscapedSlashes::Reject`].
    #[error("the path has an encoded '/' or a '\\' ({0}); the gateway does not route such paths")]
    EscapedSlash(&'static str),
    /// Not an origin-form path (does not start with `/`).
    #[error("the path does not start with '/'")]
    NotAbsolute,
}

/// The canonical form of `path` (without its query) under `policy`:
/// borrowed when `path` is canonical already.
pub fn normalize(path: &str, policy: PathPolicy) -> Result<Cow<'_, str>, PathError> {
    if path == "*" {
        // `OPTIONS *`: the server itself, not a path.
        return Ok(Cow::Borrowed(path));
    }
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if is_canonical(path.as_bytes(), policy)? {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode_unreserved(path.as_bytes(), policy)?;
    Ok(Cow::Owned(resolve_segments(&decoded, policy.merge_slashes)))
}

/// Whether `path` needs no change: no `%`, no `//` (when merging), no dot
/// segment. Refuses a raw `\` under [`EscapedSlashes::Reject`].
fn is_canonical(path: &[u8], policy: PathPolicy) -> Result<bool, PathError> {
    let mut canonical = true;
    for (i, &byte) in path.iter().enumerate() {
        match byte {
            b'%' => canonical = false,
            b'\\' if policy.escaped_slashes == EscapedSlashes::Reject => return Err(PathError::EscapedSlash("\\")),
            b'/' => {
                let rest = &path[i + 1..];
                let dot_segment = matches!(rest, [b'.'] | [b'.', b'/', ..] | [b'.', b'.'] | [b'.', b'.', b'/', ..]);
                if dot_segment || (policy.merge_slashes && rest.first() == Some(&b'/')) {
                    canonical = false;
                }
            }
            _ => {}
        }
    }
    Ok(canonical)
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// Step 1 and 2: decode unreserved escapes, upper-case the rest, refuse
/// bad escapes and (by policy) encoded slashes. The result is ASCII
/// whenever the input is, and never holds a `%` that starts no escape.
fn decode_unreserved(path: &[u8], policy: PathPolicy) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        let byte = path[i];
        if byte == b'\\' && policy.escaped_slashes == EscapedSlashes::Reject {
            return Err(PathError::EscapedSlash("\\"));
        }
        if byte != b'%' {
            out.push(byte);
            i += 1;
            continue;
        }
        let (Some(high), Some(low)) = (
            path.get(i + 1).copied().and_then(hex_value),
            path.get(i + 2).copied().and_then(hex_value),
        ) else {
            return Err(PathError::BadEscape);
        };
        let value = high << 4 | low;
        if is_unreserved(value) {
            out.push(value);
        } else {
            if policy.escaped_slashes == EscapedSlashes::Reject {
                match value {
                    b'/' => return Err(PathError::EscapedSlash("%2F")),
                    b'\\' => return Err(PathError::EscapedSlash("%5C")),
                    _ => {}
                }
            }
            out.push(b'%');
            out.push(path[i + 1].to_ascii_uppercase());
            out.push(path[i + 2].to_ascii_uppercase());
        }
        i += 3;
    }
    Ok(out)
}

/// Step 3 and 4: merge slashes and remove dot segments. `path` starts
/// with `/`.
fn resolve_segments(path: &[u8], merge_slashes: bool) -> String {
    // Segments after the leading '/'; the last one may be empty (a
    // trailing slash).
    let mut kept: Vec<&[u8]> = Vec::new();
    let mut segments = path[1..].split(|&b| b == b'/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        match segment {
            b"." => {
                if last {
                    kept.push(b"");
                }
            }
            b".." => {
                kept.pop();
                if last {
                    kept.push(b"");
                }
            }
            b"" if merge_slashes && !last => {}
            _ => kept.push(segment),
        }
    }
    let mut out = Vec::with_capacity(path.len());
    for segment in &kept {
        out.push(b'/');
        out.extend_from_slice(segment);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    if merge_slashes {
        // Dropping a segment can leave an empty one before a trailing one
        // ("/a//.." keeps "a", "", "").
        out.dedup_by(|b, a| *a == b'/' && *b == b'/');
    }
    // Only ASCII bytes were decoded and every other byte copied whole, so
    // the UTF-8 of the input is intact.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The request URI with its path in canonical form; `None` when it is
/// canonical already (nothing to replace).
pub fn normalize_uri(uri: &http::Uri, policy: PathPolicy) -> Result<Option<http::Uri>, PathError> {
    let path = uri.path();
    let Cow::Owned(canonical) = normalize(path, policy)? else {
        return Ok(None);
    };
    let path_and_query = match uri.query() {
        Some(query) => format!("{canonical}?{query}"),
        None => canonical,
    };
    let mut parts = uri.clone().into_parts();
    // Every byte came from a URI that parsed, or is an escape of one.
    parts.path_and_query = Some(path_and_query.parse().map_err(|_| PathError::BadEscape)?);
    http::Uri::from_parts(parts).map(Some).map_err(|_| PathError::BadEscape)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(path: &str) -> Result<String, PathError> {
        normalize(path, PathPolicy::default()).map(Cow::into_owned)
    }

    #[test]
    fn dot_segments_encoded_characters_and_double_slashes_resolve() {
        let cases = [
            ("/api/x/../admin/x", "/api/admin/x"),
            ("/api/./admin/x", "/api/admin/x"),
            ("/api//admin/x", "/api/admin/x"),
            ("/api/%61dmin/x", "/api/admin/x"),
            ("/api/x/%2e%2e/admin/x", "/api/admin/x"),
            ("/api/x/%2E./admin/x", "/api/admin/x"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/a/", "/a/"),
            ("/", "/"),
            ("/..", "/"),
            ("//", "/"),
            ("/a//..", "/"),
            ("/a/.../b", "/a/.../b"),
            ("/a/..b/c", "/a/..b/c"),
            ("/a/%7e/%7E", "/a/~/~"),
            ("/a%20b/%c3%a9", "/a%20b/%C3%A9"),
            ("/caf\u{e9}/./x", "/caf\u{e9}/x"),
        ];
        for (path, expected) in cases {
            assert_eq!(canonical(path).as_deref(), Ok(expected), "{path}");
            assert_eq!(canonical(expected).as_deref(), Ok(expected), "{expected} is canonical");
        }
    }

    #[test]
    fn canonical_paths_are_borrowed() {
        for path in ["/", "/api/hello", "/a/.b/c.", "/v1/chat/completions", "/a/"] {
            assert!(
                matches!(normalize(path, PathPolicy::default()), Ok(Cow::Borrowed(_))),
                "{path}"
            );
        }
    }

    #[test]
    fn bad_escapes_and_escaped_slashes_are_refused_unless_kept() {
        assert_eq!(canonical("/a%zz"), Err(PathError::BadEscape));
        assert_eq!(canonical("/a%2"), Err(PathError::BadEscape));
        assert_eq!(canonical("/a/%2fadmin"), Err(PathError::EscapedSlash("%2F")));
        assert_eq!(canonical("/a/%5Cadmin"), Err(PathError::EscapedSlash("%5C")));
        assert_eq!(canonical("/a\\admin"), Err(PathError::EscapedSlash("\\")));
        assert_eq!(canonical("relative"), Err(PathError::NotAbsolute));
        let keep = PathPolicy {
            escaped_slashes: EscapedSlashes::Keep,
            ..PathPolicy::default()
        };
        assert_eq!(normalize("/a/%2fb/../c", keep).as_deref(), Ok("/a/c"));
        assert_eq!(normalize("/a/x%2fb/c", keep).as_deref(), Ok("/a/x%2Fb/c"));
        assert_eq!(normalize("/a\\b", keep).as_deref(), Ok("/a\\b"));
    }

    #[test]
    fn slashes_are_kept_when_merging_is_off() {
        let unmerged = PathPolicy {
            merge_slashes: false,
            ..PathPolicy::default()
        };
        assert!(matches!(normalize("/a//b", unmerged), Ok(Cow::Borrowed("/a//b"))));
        assert_eq!(normalize("/a//../b", unmerged).as_deref(), Ok("/a/b"));
        assert_eq!(normalize("/a/./b//", unmerged).as_deref(), Ok("/a/b//"));
    }

    #[test]
    fn uris_keep_their_query_and_authority() {
        let uri: http::Uri = "http://api.test/a/../b%2e?x=/../y&z=%2e".parse().unwrap();
        let out = normalize_uri(&uri, PathPolicy::default()).unwrap().unwrap();
        assert_eq!(out.to_string(), "http://api.test/b.?x=/../y&z=%2e");
        let plain: http::Uri = "/a/b?q=1".parse().unwrap();
        assert_eq!(normalize_uri(&plain, PathPolicy::default()), Ok(None));
    }

    /// A path made of random segments resolves as a plain model of the
    /// rules does, and its canonical form is a fixed point.
    #[test]
    fn random_paths_resolve_as_the_model_says() {
        let pieces = [
            "a", "b", ".", "..", "", "%2e", "%2E%2e", "%61", "%7E", "x%20y", ".a", "...",
        ];
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..20_000 {
            let count = rng.usize(0..8);
            let raw: Vec<&str> = (0..count).map(|_| pieces[rng.usize(..pieces.len())]).collect();
            let path = format!("/{}", raw.join("/"));
            // The model: decode each segment, then walk it.
            let mut stack: Vec<String> = Vec::new();
            let mut trailing = false;
            for (i, segment) in raw.iter().enumerate() {
                let last = i + 1 == raw.len();
                let decoded = segment
                    .replace("%2e", ".")
                    .replace("%2E", ".")
                    .replace("%61", "a")
                    .replace("%7E", "~");
                trailing = false;
                match decoded.as_str() {
                    "." => trailing = last,
                    ".." => {
                        stack.pop();
                        trailing = last;
                    }
                    "" => trailing = last,
                    other => stack.push(other.to_string()),
                }
            }
            let mut expected = format!("/{}", stack.join("/"));
            if trailing && !expected.ends_with('/') {
                expected.push('/');
            }
            let got = canonical(&path).unwrap();
            assert_eq!(got, expected, "{path}");
            assert_eq!(canonical(&got).unwrap(), got, "{path} → {got} is a fixed point");
        }
    }
}
