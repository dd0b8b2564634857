//! Placeholders in message content: `{{name}}`, and the escape for a
//! literal `{{`.
//!
//! The rules, scanning left to right:
//!
//! - `{{ name }}` is a placeholder; spaces inside the braces are ignored.
//!   A name is a letter or `_`, then letters, digits, `_` or `-`.
//! - In a run of three or more `{`, the placeholder opens at the last two:
//!   `{{{x}}}` is `{`, the value of `x`, `}`.
//! - `\{{` is a literal `{{`. Before `{{`, `\\` is one literal `\`, so
//!   `\\{{x}}` is `\` then the value of `x`, and `\\\{{` is `\{{`.
//!   Backslashes anywhere else are ordinary text.
//! - `}}` outside a placeholder is ordinary text.
//!
//! Anything else that opens with `{{` — no closing `}}`, an empty or
//! malformed name — is an error, reported when the config is loaded.

/// One piece of a parsed content string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Text copied as is (escapes already resolved).
    Text(String),
    /// The value of this variable.
    Variable(String),
}

/// Split `content` into text and placeholders; the error says what is
/// wrong and where.
pub fn parse(content: &str) -> Result<Vec<Segment>, String> {
    let bytes = content.as_bytes();
    let mut segments = Vec::new();
    let mut text = String::new();
    let mut i = 0;
    // Every index below sits on an ASCII byte (`\`, `{`, `}`) or the end,
    // so slicing `content` there is always on a character boundary.
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => {
                let after = i + run_length(bytes, i, b'\\');
                if content[after..].starts_with("{{") {
                    let run = after - i;
                    text.extend(std::iter::repeat_n('\\', run / 2));
                    if run % 2 == 1 {
                        text.push_str("{{");
                        i = after + 2;
                    } else {
                        i = after;
                    }
                } else {
                    text.push_str(&content[i..after]);
                    i = after;
                }
            }
            b'{' => {
                let run = run_length(bytes, i, b'{');
                if run < 2 {
                    text.push('{');
                    i += 1;
                    continue;
                }
                let open = i + run - 2;
                text.push_str(&content[i..open]);
                let inner = open + 2;
                let Some(len) = content[inner..].find("}}") else {
                    return Err(format!(
                        "unclosed \"{{{{\" at character {}; write \\{{{{ for a literal \"{{{{\"",
                        char_index(content, open)
                    ));
                };
                let raw = &content[inner..inner + len];
                let name = raw.trim();
                if !is_variable_name(name) {
                    return Err(format!(
                        "\"{{{{{raw}}}}}\" at character {} is not a placeholder: a name is a letter or _, then \
                         letters, digits, _ or -; write \\{{{{ for a literal \"{{{{\"",
                        char_index(content, open)
                    ));
                }
                if !text.is_empty() {
                    segments.push(Segment::Text(std::mem::take(&mut text)));
                }
                segments.push(Segment::Variable(name.to_string()));
                i = inner + len + 2;
            }
            _ => {
                let next = bytes[i..]
                    .iter()
                    .position(|&b| b == b'\\' || b == b'{')
                    .map_or(bytes.len(), |n| i + n);
                text.push_str(&content[i..next]);
                i = next;
            }
        }
    }
    if !text.is_empty() {
        segments.push(Segment::Text(text));
    }
    Ok(segments)
}

/// A name a placeholder can use: a letter or `_`, then letters, digits,
/// `_` or `-`.
pub fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// How many `byte`s in a row start at `from`.
fn run_length(bytes: &[u8], from: usize, byte: u8) -> usize {
    bytes[from..].iter().take_while(|&&b| b == byte).count()
}

/// The character (not byte) position of a byte offset, for messages.
fn char_index(content: &str, byte: usize) -> usize {
    content[..byte].chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Segment {
        Segment::Text(s.into())
    }

    fn var(s: &str) -> Segment {
        Segment::Variable(s.into())
    }

    #[test]
    fn text_without_braces_is_one_segment() {
        assert_eq!(parse("plain text").unwrap(), vec![text("plain text")]);
        assert_eq!(parse("").unwrap(), vec![]);
    }

    #[test]
    fn placeholders_split_the_text() {
        assert_eq!(
            parse("Summarize in {{words}} words:\n{{text}}").unwrap(),
            vec![text("Summarize in "), var("words"), text(" words:\n"), var("text")]
        );
    }

    #[test]
    fn spaces_inside_the_braces_are_ignored() {
        assert_eq!(
            parse("{{ text }}|{{\ttext}}").unwrap(),
            vec![var("text"), text("|"), var("text")]
        );
    }

    #[test]
    fn backslash_escapes_a_literal_pair_of_braces() {
        assert_eq!(parse(r"use \{{name}} here").unwrap(), vec![text("use {{name}} here")]);
    }

    #[test]
    fn doubled_backslash_before_braces_is_one_backslash_then_a_placeholder() {
        assert_eq!(parse(r"C:\\{{dir}}").unwrap(), vec![text(r"C:\"), var("dir")]);
        assert_eq!(parse(r"\\\{{x}}").unwrap(), vec![text(r"\{{x}}")]);
    }

    #[test]
    fn backslashes_elsewhere_are_text() {
        assert_eq!(parse(r"a\nb \\ c\{ d\}}").unwrap(), vec![text(r"a\nb \\ c\{ d\}}")]);
    }

    #[test]
    fn single_braces_and_stray_closers_are_text() {
        assert_eq!(parse(r#"{"a": 1} }} {x}"#).unwrap(), vec![text(r#"{"a": 1} }} {x}"#)]);
    }

    #[test]
    fn a_run_of_braces_opens_at_the_last_two() {
        assert_eq!(parse("{{{x}}}").unwrap(), vec![text("{"), var("x"), text("}")]);
        assert_eq!(
            parse(r#"{"q": "{{q}}"}"#).unwrap(),
            vec![text(r#"{"q": ""#), var("q"), text(r#""}"#)]
        );
    }

    #[test]
    fn an_unclosed_placeholder_is_an_error_with_its_position() {
        let err = parse("héllo {{text").unwrap_err();
        assert!(err.starts_with("unclosed \"{{\" at character 6"), "{err}");
        assert!(err.contains(r"\{{"), "the error teaches the escape: {err}");
    }

    #[test]
    fn a_malformed_name_is_an_error() {
        for bad in ["{{}}", "{{ }}", "{{a b}}", "{{1x}}", "{{a.b}}", "{{ {{x}} }}"] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains("is not a placeholder"), "{bad}: {err}");
        }
    }

    #[test]
    fn variable_names() {
        assert!(is_variable_name("text"));
        assert!(is_variable_name("_x-2"));
        assert!(!is_variable_name(""));
        assert!(!is_variable_name("2x"));
        assert!(!is_variable_name("a b"));
        assert!(!is_variable_name("ä"));
    }
}
