//! Reading and editing an HTTP header map on a plugin's behalf: what the
//! `request` and `response` handles' header methods do, and how a header
//! list a plugin hands over (a reply's, a provider shim's request) is
//! checked before the proxy or the AI layer uses it ([`header_list`]).
//!
//! Invariants:
//! - every name and value a plugin gives is checked; a bad one is
//!   `error.invalid` naming it, never a panic;
//! - a map never gets more names than `HeaderMap` holds (its `insert` and
//!   `append` panic past 32768): the plugin gets `error.invalid` instead;
//! - `edit-headers` applies all its edits or none, so a plugin never sees
//!   half its changes.

use http::{HeaderMap, HeaderName, HeaderValue};

use super::weir::plugin::types::{Error as CapError, Header, HeaderEdit};

fn header_name(name: &str) -> Result<HeaderName, CapError> {
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| CapError::Invalid(format!("{name:?} is not a header name")))
}

fn header_value(name: &str, value: &str) -> Result<HeaderValue, CapError> {
    HeaderValue::from_str(value)
        .map_err(|_| CapError::Invalid(format!("value of {name:?} is not a valid header value")))
}

pub(super) fn first_header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

pub(super) fn all_headers(headers: &HeaderMap) -> Vec<Header> {
    headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// A `HeaderMap` holds at most 32768 distinct names (its `insert` and
/// `append` panic past that); a plugin that adds more gets this error.
fn too_many_headers(name: &HeaderName) -> CapError {
    CapError::Invalid(format!("{name:?}: too many header names"))
}

// The name is kept for the error (a clone shares its bytes); the message
// is written only if the map refuses.
fn insert_checked(headers: &mut HeaderMap, name: HeaderName, value: HeaderValue) -> Result<(), CapError> {
    let kept = name.clone();
    headers
        .try_insert(name, value)
        .map(drop)
        .map_err(|_| too_many_headers(&kept))
}

fn append_checked(headers: &mut HeaderMap, name: HeaderName, value: HeaderValue) -> Result<(), CapError> {
    let kept = name.clone();
    headers
        .try_append(name, value)
        .map(drop)
        .map_err(|_| too_many_headers(&kept))
}

pub(super) fn set_header(headers: &mut HeaderMap, name: &str, value: &str) -> Result<(), CapError> {
    insert_checked(headers, header_name(name)?, header_value(name, value)?)
}

pub(super) fn append_header(headers: &mut HeaderMap, name: &str, value: &str) -> Result<(), CapError> {
    append_checked(headers, header_name(name)?, header_value(name, value)?)
}

/// Headers a plugin hands over as a list (a reply's, a provider shim's
/// request), checked: every name and value valid, and no more names than
/// a `HeaderMap` holds.
pub fn header_list(pairs: &[Header]) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        append_header(&mut headers, name, value).map_err(|e| match e {
            CapError::NotGranted(m) | CapError::Invalid(m) | CapError::Failed(m) => m,
        })?;
    }
    Ok(headers)
}

pub(super) fn remove_header(headers: &mut HeaderMap, name: &str) {
    if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
        headers.remove(name);
    }
}

/// Remove every value of `name`, returning the first.
pub(super) fn take_header(headers: &mut HeaderMap, name: &str) -> Option<String> {
    let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
    headers
        .remove(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// A header edit with its name and value checked.
enum CheckedEdit {
    Set(HeaderName, HeaderValue),
    Append(HeaderName, HeaderValue),
    Remove(HeaderName),
    Rename(Vec<(HeaderName, HeaderName)>),
}

impl CheckedEdit {
    /// How many names the edit may add to a map, at most.
    fn names_added(&self) -> usize {
        match self {
            CheckedEdit::Set(..) | CheckedEdit::Append(..) => 1,
            CheckedEdit::Remove(_) => 0,
            CheckedEdit::Rename(pairs) => pairs.len(),
        }
    }
}

/// A map with at most this many names, even under the hash-collision
/// defence that grows it early, stays far from `HeaderMap`'s limit.
const NAMES_WITHOUT_UNDO: usize = 4096;

/// Apply `edits` in order, after checking every name and value: one
/// invalid edit refuses them all, so a plugin never sees half its changes.
pub(super) fn edit_headers(headers: &mut HeaderMap, edits: &[HeaderEdit]) -> Result<(), CapError> {
    let checked = edits
        .iter()
        .map(|edit| {
            Ok(match edit {
                HeaderEdit::Set((name, value)) => CheckedEdit::Set(header_name(name)?, header_value(name, value)?),
                HeaderEdit::Append((name, value)) => {
                    CheckedEdit::Append(header_name(name)?, header_value(name, value)?)
                }
                HeaderEdit::Remove(name) => CheckedEdit::Remove(header_name(name)?),
                HeaderEdit::Rename(pairs) => CheckedEdit::Rename(
                    pairs
                        .iter()
                        .map(|(old, new)| Ok((header_name(old)?, header_name(new)?)))
                        .collect::<Result<_, CapError>>()?,
                ),
            })
        })
        .collect::<Result<Vec<_>, CapError>>()?;
    // Only the map's size limit can refuse an edit now. A map that may
    // reach it is copied first, so the edits can be undone and a plugin
    // still never sees half its changes; a small one (nearly every map)
    // cannot, and is not copied.
    let added: usize = checked.iter().map(CheckedEdit::names_added).sum();
    let undo = (headers.keys_len().saturating_add(added) > NAMES_WITHOUT_UNDO).then(|| headers.clone());
    for edit in checked {
        let applied = match edit {
            CheckedEdit::Set(name, value) => insert_checked(headers, name, value),
            CheckedEdit::Append(name, value) => append_checked(headers, name, value),
            CheckedEdit::Remove(name) => {
                headers.remove(name);
                Ok(())
            }
            CheckedEdit::Rename(pairs) => rename_headers(headers, &pairs),
        };
        if let Err(error) = applied {
            if let Some(before) = undo {
                *headers = before;
            }
            return Err(error);
        }
    }
    Ok(())
}

/// Move the values of each `old` to its `new`, all pairs at once. A `new`
/// keeps its own values when its `old` has none.
fn rename_headers(headers: &mut HeaderMap, pairs: &[(HeaderName, HeaderName)]) -> Result<(), CapError> {
    let moved: Vec<(&HeaderName, Vec<HeaderValue>)> = pairs
        .iter()
        .map(|(old, new)| (new, headers.get_all(old).iter().cloned().collect::<Vec<_>>()))
        .filter(|(_, values)| !values.is_empty())
        .collect();
    for (old, _) in pairs {
        headers.remove(old);
    }
    for (new, _) in &moved {
        headers.remove(*new);
    }
    for (new, values) in moved {
        for value in values {
            append_checked(headers, new.clone(), value)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    fn list(headers: &HeaderMap) -> Vec<(String, String)> {
        let mut pairs: Vec<_> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        pairs.sort();
        pairs
    }

    fn pair(name: &str, value: &str) -> (String, String) {
        (name.to_string(), value.to_string())
    }

    #[test]
    fn edits_apply_in_order() {
        let mut headers = map(&[("x-a", "1"), ("x-a", "2"), ("x-gone", "g")]);
        let edits = [
            HeaderEdit::Remove("x-gone".into()),
            HeaderEdit::Set(pair("x-a", "3")),
            HeaderEdit::Append(pair("x-a", "4")),
            HeaderEdit::Set(pair("x-b", "b")),
        ];
        edit_headers(&mut headers, &edits).unwrap();
        assert_eq!(
            list(&headers),
            vec![pair("x-a", "3"), pair("x-a", "4"), pair("x-b", "b")]
        );
    }

    #[test]
    fn renames_move_every_value_at_once() {
        let mut headers = map(&[("a", "1"), ("a", "2"), ("b", "3"), ("c", "kept")]);
        let swap = vec![pair("a", "b"), pair("b", "a"), pair("absent", "c")];
        edit_headers(&mut headers, &[HeaderEdit::Rename(swap)]).unwrap();
        assert_eq!(
            list(&headers),
            vec![pair("a", "3"), pair("b", "1"), pair("b", "2"), pair("c", "kept")]
        );
    }

    #[test]
    fn one_invalid_edit_refuses_them_all_naming_it() {
        let mut headers = map(&[("x-a", "1")]);
        let edits = [
            HeaderEdit::Remove("x-a".into()),
            HeaderEdit::Set(pair("x-ok", "fine")),
            HeaderEdit::Append(pair("x-bad", "line\nbreak")),
        ];
        let error = edit_headers(&mut headers, &edits).unwrap_err();
        assert!(
            matches!(&error, CapError::Invalid(m) if m.contains("x-bad")),
            "{error:?}"
        );
        assert_eq!(list(&headers), vec![pair("x-a", "1")], "nothing applied");
        let error = edit_headers(&mut headers, &[HeaderEdit::Remove("bad name".into())]).unwrap_err();
        assert!(
            matches!(&error, CapError::Invalid(m) if m.contains("bad name")),
            "{error:?}"
        );
    }

    #[test]
    fn more_header_names_than_a_map_holds_are_refused_not_a_panic() {
        let mut headers = HeaderMap::new();
        let refused = (0..40_000).find(|i| set_header(&mut headers, &format!("x-{i}"), "v").is_err());
        let full = headers.clone();
        assert!(refused.is_some(), "40000 names accepted");
        match append_header(&mut headers, "x-one-more", "v") {
            Err(CapError::Invalid(message)) => {
                assert_eq!(message, "\"x-one-more\": too many header names");
            }
            other => panic!("a name past the limit was not refused as invalid: {other:?}"),
        }
        let edits: Vec<HeaderEdit> = (0..40_000)
            .map(|i| HeaderEdit::Set(pair(&format!("y-{i}"), "v")))
            .collect();
        assert!(edit_headers(&mut headers, &edits).is_err());
        assert!(headers == full, "a refused edit list changed the headers");
        let pairs: Vec<Header> = (0..40_000).map(|i| pair(&format!("z-{i}"), "v")).collect();
        assert!(header_list(&pairs).is_err());
    }

    #[test]
    fn take_header_returns_the_first_value_and_removes_all() {
        let mut headers = map(&[("x-key", "first"), ("x-key", "second"), ("x-other", "o")]);
        assert_eq!(take_header(&mut headers, "X-Key").as_deref(), Some("first"));
        assert_eq!(list(&headers), vec![pair("x-other", "o")]);
        assert_eq!(take_header(&mut headers, "x-key"), None);
        assert_eq!(take_header(&mut headers, "not a name"), None);
    }
}
