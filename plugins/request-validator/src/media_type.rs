//! Media types: the `content_types` a rule allows, and what a request's
//! `content-type` says.

use std::fmt;

/// One allowed media type: `type/subtype`, or `type/*` for any subtype.
/// Compared without parameters (`; charset=...`) and ignoring case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRange {
    kind: String,
    /// `None` for `*`.
    subtype: Option<String>,
}

impl MediaRange {
    /// Parse a `content_types` entry; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<MediaRange, String> {
        if text.contains(';') {
            return Err(format!(
                "{text:?} has parameters; list the media type alone (parameters are ignored when matching)"
            ));
        }
        let lower = text.trim().to_ascii_lowercase();
        if lower.starts_with("*/") {
            return Err(format!(
                "{text:?}: the type must be named (type/* is allowed, */* is not)"
            ));
        }
        let (kind, subtype) = lower
            .split_once('/')
            .filter(|(kind, subtype)| is_token(kind) && (is_token(subtype) || *subtype == "*"))
            .ok_or_else(|| format!("{text:?} is not a media type (type/subtype or type/*)"))?;
        Ok(MediaRange {
            kind: kind.to_string(),
            subtype: (subtype != "*").then(|| subtype.to_string()),
        })
    }

    /// Whether `essence` (as from [`essence`]) is in this range.
    pub fn admits(&self, essence: &str) -> bool {
        let Some((kind, subtype)) = essence.split_once('/') else {
            return false;
        };
        kind == self.kind && self.subtype.as_deref().is_none_or(|s| s == subtype)
    }
}

impl fmt::Display for MediaRange {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.subtype.as_deref().unwrap_or("*"))
    }
}

/// The media type of a `content-type` value, lowercase and without
/// parameters; `None` if it is not of the form `type/subtype`.
pub fn essence(content_type: &str) -> Option<String> {
    let media = content_type.split(';').next().unwrap_or_default().trim();
    let lower = media.to_ascii_lowercase();
    let (kind, subtype) = lower.split_once('/')?;
    (is_token(kind) && is_token(subtype)).then_some(lower)
}

/// Whether an essence is JSON: `application/json` or any `+json` type
/// (`application/merge-patch+json`).
pub fn is_json(essence: &str) -> bool {
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// An HTTP token (RFC 9110), without `*` alone.
fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text != "*"
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_types_match_ignoring_case_and_parameters() {
        let json = MediaRange::parse("Application/JSON").unwrap();
        assert_eq!(json.to_string(), "application/json");
        let got = essence("application/json; charset=UTF-8").unwrap();
        assert!(json.admits(&got));
        assert!(json.admits(&essence(" APPLICATION/json ").unwrap()));
        assert!(!json.admits(&essence("application/jsonx").unwrap()));
        assert!(!json.admits(&essence("text/json").unwrap()));
    }

    #[test]
    fn a_wildcard_subtype_matches_the_whole_type() {
        let text = MediaRange::parse("text/*").unwrap();
        assert!(text.admits("text/plain"));
        assert!(text.admits("text/csv"));
        assert!(!text.admits("application/text"));
    }

    #[test]
    fn bad_entries_are_refused() {
        assert!(MediaRange::parse("json").unwrap_err().contains("not a media type"));
        assert!(MediaRange::parse("application/").is_err());
        assert!(MediaRange::parse("text/pl ain").is_err());
        assert!(MediaRange::parse("*/*").unwrap_err().contains("must be named"));
        assert!(
            MediaRange::parse("application/json; charset=utf-8")
                .unwrap_err()
                .contains("parameters")
        );
    }

    #[test]
    fn a_malformed_content_type_has_no_essence() {
        assert_eq!(essence("json"), None);
        assert_eq!(essence(""), None);
        assert_eq!(essence("a/b/c"), None);
        assert_eq!(essence("*/*"), None);
    }

    #[test]
    fn json_includes_plus_json_types() {
        assert!(is_json("application/json"));
        assert!(is_json("application/merge-patch+json"));
        assert!(is_json("application/problem+json"));
        assert!(!is_json("text/json+plain"));
        assert!(!is_json("application/x-www-form-urlencoded"));
    }
}
