//! Rewriting the start of a request path.

/// Replace `from` at the start of `path_and_query` with `to`, if it matches
/// at a segment boundary; `None` if it does not match.
///
/// Trailing slashes of `from` and `to` are ignored, and the result never
/// gains a double slash or loses its leading one: with `from = "/api"`,
/// `to = "/"`, `/api/x` becomes `/x`, `/api` becomes `/`, and `/api?q=1`
/// becomes `/?q=1`. Matching is on the raw (percent-encoded) path.
pub fn rewrite(path_and_query: &str, from: &str, to: &str) -> Option<String> {
    let (path, query) = match path_and_query.find('?') {
        Some(at) => path_and_query.split_at(at),
        None => (path_and_query, ""),
    };
    let from = from.trim_end_matches('/');
    let rest = path.strip_prefix(from)?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    let to = to.trim_end_matches('/');
    let mut rewritten = format!("{to}{rest}");
    if rewritten.is_empty() {
        rewritten.push('/');
    }
    rewritten.push_str(query);
    Some(rewritten)
}

#[cfg(test)]
mod tests {
    use super::rewrite;

    #[test]
    fn matches_at_segment_boundaries_only() {
        assert_eq!(rewrite("/api", "/api", "/v1").as_deref(), Some("/v1"));
        assert_eq!(rewrite("/api/x", "/api", "/v1").as_deref(), Some("/v1/x"));
        assert_eq!(rewrite("/api?q=1", "/api", "/v1").as_deref(), Some("/v1?q=1"));
        assert_eq!(rewrite("/apix", "/api", "/v1"), None);
        assert_eq!(rewrite("/other/api", "/api", "/v1"), None);
    }

    #[test]
    fn root_target_does_not_double_slashes() {
        assert_eq!(rewrite("/api/x", "/api", "/").as_deref(), Some("/x"));
        assert_eq!(rewrite("/api", "/api", "/").as_deref(), Some("/"));
        assert_eq!(rewrite("/api/", "/api", "/").as_deref(), Some("/"));
        assert_eq!(rewrite("/api?q", "/api", "/").as_deref(), Some("/?q"));
        assert_eq!(rewrite("/api/x?q=/api", "/api", "/").as_deref(), Some("/x?q=/api"));
    }

    #[test]
    fn trailing_slashes_in_config_are_ignored() {
        assert_eq!(rewrite("/api/x", "/api/", "/v1/").as_deref(), Some("/v1/x"));
        assert_eq!(rewrite("/api", "/api/", "/v1/").as_deref(), Some("/v1"));
    }

    #[test]
    fn root_source_prefixes_every_path() {
        assert_eq!(rewrite("/x", "/", "/v1").as_deref(), Some("/v1/x"));
        assert_eq!(rewrite("/", "/", "/v1").as_deref(), Some("/v1/"));
    }

    #[test]
    fn longer_prefixes_work() {
        assert_eq!(rewrite("/a/b/c", "/a/b", "/z").as_deref(), Some("/z/c"));
        assert_eq!(rewrite("/a/bc", "/a/b", "/z"), None);
    }
}
