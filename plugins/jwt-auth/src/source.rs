//! Where a request carries its token, and taking it off the request.

/// The credentials after `scheme` in an `authorization`-style value
/// (`Bearer TOKEN`); the scheme is case-insensitive. `None` if the value
/// has another scheme or nothing after it.
pub fn after_scheme<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (given, rest) = value.split_once(' ')?;
    let token = rest.trim();
    (given.eq_ignore_ascii_case(scheme) && !token.is_empty()).then_some(token)
}

/// The `name=value` pairs of `cookie` header values (HTTP/2 may send one
/// header per cookie).
fn cookie_pairs(headers: &[String]) -> impl Iterator<Item = (&str, &str)> {
    headers
        .iter()
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
}

/// The value of the first non-empty cookie `name` (surrounding double
/// quotes removed).
pub fn cookie_value(headers: &[String], name: &str) -> Option<String> {
    cookie_pairs(headers)
        .filter(|(n, _)| *n == name)
        .map(|(_, v)| v.trim().trim_matches('"'))
        .find(|v| !v.is_empty())
        .map(str::to_string)
}

/// Whether any cookie is called `name`, empty or not.
pub fn has_cookie(headers: &[String], name: &str) -> bool {
    cookie_pairs(headers).any(|(n, _)| n == name)
}

/// The cookie header without any `name` cookie, as one value; `None` when
/// no cookie is left.
pub fn without_cookie(headers: &[String], name: &str) -> Option<String> {
    let kept: Vec<String> = headers
        .iter()
        .flat_map(|h| h.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty() && pair.split_once('=').map_or(*pair, |(n, _)| n) != name)
        .map(str::to_string)
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| v.to_string()).collect()
    }

    #[test]
    fn the_token_is_what_follows_the_scheme() {
        assert_eq!(after_scheme("Bearer a.b.c", "Bearer"), Some("a.b.c"));
        assert_eq!(after_scheme("bearer  a.b.c ", "Bearer"), Some("a.b.c"));
        assert_eq!(after_scheme("Basic dXNlcg==", "Bearer"), None);
        assert_eq!(after_scheme("Bearer ", "Bearer"), None);
        assert_eq!(after_scheme("a.b.c", "Bearer"), None);
    }

    #[test]
    fn the_cookie_is_found_in_any_cookie_header() {
        let h = headers(&["theme=dark; jwt=a.b.c", "other=1"]);
        assert_eq!(cookie_value(&h, "jwt"), Some("a.b.c".into()));
        let h = headers(&["a=1", "jwt=\"x.y.z\""]);
        assert_eq!(cookie_value(&h, "jwt"), Some("x.y.z".into()));
        assert_eq!(cookie_value(&headers(&["jwtx=1; xjwt=2"]), "jwt"), None);
        assert_eq!(cookie_value(&headers(&["jwt=; jwt=t"]), "jwt"), Some("t".into()));
        assert_eq!(cookie_value(&[], "jwt"), None);
    }

    #[test]
    fn only_the_token_cookie_is_removed() {
        let h = headers(&["theme=dark; jwt=a.b.c", "other=1"]);
        assert_eq!(without_cookie(&h, "jwt"), Some("theme=dark; other=1".into()));
        assert_eq!(without_cookie(&headers(&["jwt=a.b.c"]), "jwt"), None);
        assert!(has_cookie(&headers(&["a=1; jwt="]), "jwt"));
        assert!(!has_cookie(&headers(&["a=1; jwtx=2"]), "jwt"));
    }
}
