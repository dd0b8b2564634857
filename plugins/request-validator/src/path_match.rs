//! Matching a request path against a rule's `path_prefix`, in a way a
//! client cannot dodge by spelling the path differently.
//!
//! Upstream servers disagree on what a path means: some decode `%6F`
//! before routing, some treat `\` as `/`, merge `//`, drop `;params`
//! (Tomcat) or ignore case. A rule that matched only the raw text would
//! skip `/%6Frders` while the upstream serves it as `/orders`. So both the
//! prefix and the path are compared in a normalized form that matches
//! every such spelling: percent-decoded, `\` read as `/`, empty segments
//! dropped, each segment cut at `;`, ASCII case folded. Erring this way
//! means a rule may also apply to a path the upstream tells apart, never
//! that it misses one the upstream treats as the same.
//!
//! Dot segments (`.`, `..`, also encoded) are resolved differently by
//! different servers, so a path that has them cannot be judged: it is an
//! error, and the caller refuses the request.

use weir_sdk::query::percent_decode;

/// The path has a `.` or `..` segment.
#[derive(Debug, PartialEq, Eq)]
pub struct DotSegment;

/// The normalized segments of a path (the query, after `?`, is ignored).
pub fn segments(path_and_query: &str) -> Result<Vec<String>, DotSegment> {
    let path = path_and_query.split_once('?').map_or(path_and_query, |(path, _)| path);
    let decoded = percent_decode(path);
    let decoded = String::from_utf8_lossy(&decoded);
    let mut segments = Vec::new();
    for segment in decoded.split(['/', '\\']) {
        let name = segment.split_once(';').map_or(segment, |(name, _)| name);
        match name {
            "" => {}
            "." | ".." => return Err(DotSegment),
            name => segments.push(name.to_ascii_lowercase()),
        }
    }
    Ok(segments)
}

/// Whether `path` (normalized segments) is under `prefix`: equal to it or
/// below it, at a segment boundary.
pub fn is_under(path: &[String], prefix: &[String]) -> bool {
    path.starts_with(prefix)
}

/// The value of one hex digit.
pub fn hex(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn under(path: &str, prefix: &str) -> bool {
        is_under(&segments(path).unwrap(), &segments(prefix).unwrap())
    }

    #[test]
    fn matches_at_segment_boundaries() {
        assert!(under("/orders", "/orders"));
        assert!(under("/orders/12", "/orders"));
        assert!(under("/orders?x=1", "/orders"));
        assert!(under("/orders/", "/orders/"));
        assert!(!under("/ordersx", "/orders"));
        assert!(!under("/api/orders", "/orders"));
        assert!(!under("/", "/orders"));
    }

    #[test]
    fn root_prefix_matches_every_path() {
        assert!(under("/", "/"));
        assert!(under("/anything/at/all", "/"));
    }

    #[test]
    fn the_query_is_not_part_of_the_path() {
        assert!(!under("/x?/orders", "/orders"));
    }

    #[test]
    fn encoded_spellings_still_match() {
        assert!(under("/%6Frders/1", "/orders"));
        assert!(under("/api%2Forders", "/api/orders"));
        assert!(under("/ORDERS", "/orders"));
        assert!(under("//orders", "/orders"));
        assert!(under("/orders;jsessionid=1/2", "/orders"));
        assert!(under("/orders%3Bx", "/orders"));
        assert!(under("\\orders", "/orders"));
        assert!(under("/a%20b", "/a b"));
    }

    #[test]
    fn dot_segments_cannot_be_judged() {
        for path in [
            "/orders/../admin",
            "/./orders",
            "/orders/%2e%2E/x",
            "/orders/.;x",
            "/orders\\..\\x",
        ] {
            assert_eq!(segments(path), Err(DotSegment), "{path}");
        }
        // Dots inside a segment are ordinary.
        assert_eq!(segments("/v1.2/..x"), Ok(vec!["v1.2".to_string(), "..x".to_string()]));
    }

    #[test]
    fn bad_escapes_are_kept() {
        assert_eq!(percent_decode("100%"), b"100%");
        assert_eq!(percent_decode("%zz%4"), b"%zz%4");
        assert_eq!(percent_decode("%41%62"), b"Ab");
    }
}
