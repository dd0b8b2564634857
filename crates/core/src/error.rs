//! Errors as one line of text.

/// The error and its causes on one line: hyper's top-level messages alone
/// ("client error (Connect)") do not say what happened.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
