//! Which template a path asks for, and whether the answer is streamed.

use crate::error::PromptError;

/// What a request's path means to this plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch<'a> {
    /// Not under the prefix: not ours.
    Outside,
    /// `{prefix}NAME` or `{prefix}NAME/vN`, and the query after `?`.
    Template {
        /// The template's name.
        name: &'a str,
        /// The version asked for; `None` for the highest.
        version: Option<u32>,
        /// The query string, without `?` (empty if none).
        query: &'a str,
    },
    /// Under the prefix, but not of either shape.
    Malformed,
}

/// Match a request path (with its query) against the prefix, which starts
/// and ends with `/`.
pub fn match_path<'a>(prefix: &str, path_and_query: &'a str) -> PathMatch<'a> {
    let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
    let Some(rest) = path.strip_prefix(prefix) else {
        return PathMatch::Outside;
    };
    let (name, version) = match rest.split_once('/') {
        None => (rest, None),
        Some((name, tail)) => match parse_version(tail) {
            Some(version) => (name, Some(version)),
            None => return PathMatch::Malformed,
        },
    };
    if name.is_empty() {
        return PathMatch::Malformed;
    }
    PathMatch::Template { name, version, query }
}

/// `v` and decimal digits.
fn parse_version(segment: &str) -> Option<u32> {
    let digits = segment.strip_prefix('v')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Whether the client asked for a streamed answer: `stream=true` or
/// `stream=false` in the query decides; without it, an `accept` header
/// listing `text/event-stream` asks for a stream. Never the body, whose
/// keys are all variables.
pub fn wants_stream(query: &str, accept: Option<&str>) -> Result<bool, PromptError> {
    let mut asked = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != "stream" {
            continue;
        }
        asked = Some(match value {
            "true" => true,
            "false" => false,
            other => {
                return Err(PromptError::invalid(
                    "invalid_stream",
                    Some("stream"),
                    format!("query parameter stream must be true or false, not \"{other}\""),
                ));
            }
        });
    }
    Ok(asked.unwrap_or_else(|| accept.is_some_and(accepts_event_stream)))
}

/// Whether an `accept` value lists `text/event-stream` (parameters and
/// case ignored).
fn accepts_event_stream(accept: &str) -> bool {
    accept.split(',').any(|range| {
        let media = range.split(';').next().unwrap_or_default();
        media.trim().eq_ignore_ascii_case("text/event-stream")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFIX: &str = "/prompts/";

    fn template(name: &str, version: Option<u32>, query: &str) -> PathMatch<'static> {
        PathMatch::Template {
            name: name.to_string().leak(),
            version,
            query: query.to_string().leak(),
        }
    }

    #[test]
    fn a_bare_name_asks_for_the_highest_version() {
        assert_eq!(
            match_path(PREFIX, "/prompts/summarize"),
            template("summarize", None, "")
        );
    }

    #[test]
    fn a_version_segment_asks_for_that_version() {
        assert_eq!(
            match_path(PREFIX, "/prompts/summarize/v2"),
            template("summarize", Some(2), "")
        );
        assert_eq!(
            match_path(PREFIX, "/prompts/summarize/v10?stream=true"),
            template("summarize", Some(10), "stream=true")
        );
    }

    #[test]
    fn the_query_is_split_off() {
        assert_eq!(
            match_path(PREFIX, "/prompts/summarize?stream=true&x=1"),
            template("summarize", None, "stream=true&x=1")
        );
    }

    #[test]
    fn paths_outside_the_prefix_are_not_ours() {
        for path in [
            "/v1/chat/completions",
            "/prompts",
            "/promptsx/a",
            "/",
            "/other/prompts/a",
        ] {
            assert_eq!(match_path(PREFIX, path), PathMatch::Outside, "{path}");
        }
    }

    #[test]
    fn other_shapes_under_the_prefix_are_malformed() {
        for path in [
            "/prompts/",
            "/prompts/?stream=true",
            "/prompts/summarize/",
            "/prompts/summarize/2",
            "/prompts/summarize/v",
            "/prompts/summarize/v+2",
            "/prompts/summarize/v-1",
            "/prompts/summarize/v2/x",
            "/prompts/summarize/v99999999999",
            "/prompts//v2",
        ] {
            assert_eq!(match_path(PREFIX, path), PathMatch::Malformed, "{path}");
        }
    }

    #[test]
    fn stream_is_off_by_default() {
        assert_eq!(wants_stream("", None), Ok(false));
        assert_eq!(wants_stream("x=1", Some("application/json")), Ok(false));
    }

    #[test]
    fn stream_true_in_the_query_asks_for_a_stream() {
        assert_eq!(wants_stream("stream=true", None), Ok(true));
        assert_eq!(wants_stream("a=b&stream=true", None), Ok(true));
    }

    #[test]
    fn an_event_stream_accept_header_asks_for_a_stream() {
        assert_eq!(wants_stream("", Some("text/event-stream")), Ok(true));
        assert_eq!(
            wants_stream("", Some("application/json, Text/Event-Stream;q=0.9")),
            Ok(true)
        );
    }

    #[test]
    fn the_query_wins_over_the_accept_header() {
        assert_eq!(wants_stream("stream=false", Some("text/event-stream")), Ok(false));
    }

    #[test]
    fn a_bad_stream_value_is_a_400_naming_the_parameter() {
        let err = wants_stream("stream=yes", None).unwrap_err();
        assert_eq!(err.status, 400);
        assert_eq!(err.param.as_deref(), Some("stream"));
        assert!(err.message.contains("\"yes\""), "{}", err.message);
    }
}
