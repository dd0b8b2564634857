//! Reading and removing one parameter of a request's query string, as a
//! plugin that accepts a credential in the query does
//! (`?api_key=...`): find it in [`Request::path`](crate::Request::path),
//! then remove it before the upstream sees it.
//!
//! Names and values are percent-decoded (`%XX`) before use; `+` is kept
//! as is, since keys are compared byte for byte and are never form text.
//!
//! ```
//! use weir_sdk::query::{find_param, remove_param};
//!
//! let path = "/v1/items?api_key=k%2F1&page=2";
//! assert_eq!(find_param(path, "api_key"), Some(b"k/1".to_vec()));
//! assert_eq!(remove_param(path, "api_key"), "/v1/items?page=2");
//! ```

/// The value of the first `name` parameter in `path_and_query`, decoded.
/// A parameter with an empty value counts as absent.
pub fn find_param(path_and_query: &str, name: &str) -> Option<Vec<u8>> {
    let (_, query) = path_and_query.split_once('?')?;
    query
        .split('&')
        .filter_map(|pair| {
            let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(n) == name.as_bytes()).then(|| percent_decode(v))
        })
        .find(|v| !v.is_empty())
}

/// `path_and_query` without any `name` parameter; the `?` goes too when
/// nothing is left of the query.
pub fn remove_param(path_and_query: &str, name: &str) -> String {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return path_and_query.to_string();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let n = pair.split_once('=').map_or(*pair, |(n, _)| n);
            percent_decode(n) != name.as_bytes()
        })
        .collect();
    let query = kept.join("&");
    if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{query}")
    }
}

/// Decode `%XX` escapes; a `%` not followed by two hex digits stays as is.
pub fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) => hex(h).zip(hex(l)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match escaped {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

fn hex(digit: u8) -> Option<u8> {
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

    #[test]
    fn finds_and_decodes_the_parameter() {
        assert_eq!(find_param("/x?a=1&api_key=k%2F1&b", "api_key"), Some(b"k/1".to_vec()));
        assert_eq!(find_param("/x?api%5Fkey=k", "api_key"), Some(b"k".to_vec()));
        assert_eq!(find_param("/x?api_key=a+b", "api_key"), Some(b"a+b".to_vec()));
    }

    #[test]
    fn absent_or_empty_parameter_is_none() {
        assert_eq!(find_param("/x", "api_key"), None);
        assert_eq!(find_param("/x?other=1", "api_key"), None);
        assert_eq!(find_param("/x?api_key=", "api_key"), None);
        assert_eq!(find_param("/x?api_key", "api_key"), None);
        assert_eq!(find_param("/x?api_key=&api_key=k", "api_key"), Some(b"k".to_vec()));
    }

    #[test]
    fn bad_escapes_are_kept() {
        assert_eq!(percent_decode("100%"), b"100%");
        assert_eq!(percent_decode("%zz%4"), b"%zz%4");
        assert_eq!(percent_decode("%41%62"), b"Ab");
    }

    #[test]
    fn removes_every_occurrence() {
        assert_eq!(remove_param("/x?a=1&api_key=k&b=2&api_key=j", "api_key"), "/x?a=1&b=2");
        assert_eq!(remove_param("/x?api_key=k", "api_key"), "/x");
        assert_eq!(remove_param("/x?api_key", "api_key"), "/x");
        assert_eq!(remove_param("/x", "api_key"), "/x");
        assert_eq!(remove_param("/x?a=1", "api_key"), "/x?a=1");
    }
}
