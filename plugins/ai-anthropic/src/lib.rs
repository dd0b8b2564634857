//! `ai-anthropic`: the provider shim for Anthropic's Messages API
//! (`POST /v1/messages`).
//!
//! Clients speak OpenAI chat completions; this shim turns each request into
//! a Messages request for the target's model, and each answer — whole, or
//! streamed as Anthropic's named server-sent events — back into a
//! `chat.completion` or `chat.completion.chunk`s.
//!
//! - [`request`]: the conversation becomes Anthropic's shape. System and
//!   developer messages move to the top-level `system`; tool calls become
//!   `tool_use` blocks and tool messages `tool_result` blocks in a user
//!   turn; consecutive turns of one role merge, as Anthropic wants roles
//!   to alternate. What Anthropic cannot express is refused with a 400
//!   naming the field.
//! - [`response`]: content blocks become the message text and tool calls;
//!   `stop_reason` becomes the finish reason; cache token counts are part
//!   of the prompt tokens.
//! - [`stream`]: `message_start` … `message_stop` become OpenAI chunks.
//!   Tool calls are numbered 0, 1, … among tool calls, not by Anthropic's
//!   block index (which also counts text blocks).
//! - [`error`]: Anthropic's `{"type": "error", "error": {...}}` bodies and
//!   statuses become OpenAI errors; 529 (overloaded) becomes 503.
//!
//! The key goes in the `x-api-key` header (the host puts it there). See
//! README.md for the target options.

pub mod error;
pub mod request;
pub mod response;
pub mod stream;

use serde::Deserialize;
use weir_sdk::ai::{ApiError, Completion, Exchange, KeyPlacement, Provider, ProviderRequest, TargetConfig};

use stream::MessageStream;

/// The provider's name, in error messages.
pub const PROVIDER: &str = "Anthropic";

/// The target's config: the model and the target's options.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Target {
    /// The Anthropic model every request to this target uses.
    pub model: String,
    /// The `anthropic-version` header.
    #[serde(default = "default_version")]
    pub anthropic_version: String,
    /// `max_tokens` when the client set no limit (Anthropic requires one).
    #[serde(default = "default_max_tokens")]
    pub default_max_tokens: u32,
    /// The path appended to the target's base URL.
    #[serde(default = "default_path")]
    pub path: String,
}

fn default_version() -> String {
    "2023-06-01".into()
}

fn default_max_tokens() -> u32 {
    4096
}

fn default_path() -> String {
    "/v1/messages".into()
}

impl weir_sdk::Settings for Target {
    /// Every problem, separated by `; `.
    fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if self.model.trim().is_empty() {
            problems.push("model must not be empty");
        }
        if self.anthropic_version.trim().is_empty() {
            problems.push("anthropic-version must not be empty");
        }
        if self.default_max_tokens == 0 {
            problems.push("default-max-tokens must be at least 1");
        }
        if !self.path.starts_with('/') {
            problems.push("path must start with '/'");
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

/// The shim configured for one target.
pub struct Anthropic {
    target: Target,
}

impl Anthropic {
    /// The shim for a parsed target.
    pub fn new(target: Target) -> Self {
        Anthropic { target }
    }
}

impl Provider for Anthropic {
    type Stream = MessageStream;

    fn configure(config: TargetConfig) -> Result<Self, String> {
        config.settings().map(Anthropic::new)
    }

    fn translate_request(&self, body: &[u8]) -> Result<ProviderRequest, ApiError> {
        let request = request::translate(&self.target, body)?;
        let body = serde_json::to_vec(&request)
            .map_err(|e| ApiError::for_status(500, &format!("could not encode the Anthropic request: {e}")))?;
        Ok(ProviderRequest {
            method: "POST".into(),
            path: self.target.path.clone(),
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("anthropic-version".into(), self.target.anthropic_version.clone()),
            ],
            body,
            key: KeyPlacement::Header(("x-api-key".into(), String::new())),
        })
    }

    fn translate_response(&self, exchange: &Exchange, body: &[u8]) -> Result<Completion, ApiError> {
        response::translate(exchange, &self.target.model, body)
    }

    fn translate_error(&self, status: u16, body: &[u8]) -> ApiError {
        error::translate(status, body)
    }

    fn open_stream(&self, exchange: Exchange) -> MessageStream {
        MessageStream::new(exchange, &self.target.model)
    }
}

weir_sdk::export_provider!(Anthropic);

#[cfg(test)]
mod tests {
    use weir_sdk::Settings as _;

    use super::*;

    #[test]
    fn options_have_defaults() {
        let target = Target::from_json(r#"{"model": "claude-sonnet-4-5"}"#).unwrap();
        assert_eq!(target.anthropic_version, "2023-06-01");
        assert_eq!(target.default_max_tokens, 4096);
        assert_eq!(target.path, "/v1/messages");
    }

    #[test]
    fn options_are_read_in_kebab_case() {
        let target = Target::from_json(
            r#"{"model": "m", "anthropic-version": "2024-01-01", "default-max-tokens": 256, "path": "/anthropic/v1/messages"}"#,
        )
        .unwrap();
        assert_eq!(target.anthropic_version, "2024-01-01");
        assert_eq!(target.default_max_tokens, 256);
        assert_eq!(target.path, "/anthropic/v1/messages");
    }

    #[test]
    fn an_unknown_option_is_named() {
        let error = Target::from_json(r#"{"model": "m", "max-tokens": 5}"#).unwrap_err();
        assert!(error.contains("max-tokens"), "{error}");
    }

    #[test]
    fn bad_options_are_all_reported() {
        let error = Target::from_json(r#"{"model": " ", "default-max-tokens": 0, "path": "v1"}"#).unwrap_err();
        assert!(error.contains("model"), "{error}");
        assert!(error.contains("default-max-tokens"), "{error}");
        assert!(error.contains("path"), "{error}");
    }

    #[test]
    fn the_request_goes_to_the_messages_path_with_version_and_key_header() {
        let shim = Anthropic::new(Target::from_json(r#"{"model": "claude-sonnet-4-5"}"#).unwrap());
        let request = shim
            .translate_request(br#"{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}"#)
            .unwrap();
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/v1/messages");
        assert_eq!(
            request.headers,
            vec![
                ("content-type".to_string(), "application/json".to_string()),
                ("anthropic-version".to_string(), "2023-06-01".to_string()),
            ]
        );
        assert!(
            matches!(&request.key, KeyPlacement::Header((name, prefix)) if name == "x-api-key" && prefix.is_empty())
        );
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body["model"], "claude-sonnet-4-5");
        assert_eq!(body["max_tokens"], 4096);
    }
}
