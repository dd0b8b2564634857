//! `ai-ollama`: the provider shim for Ollama's native chat API
//! (`POST /api/chat`).
//!
//! Clients speak OpenAI chat completions; this shim turns each request into
//! an Ollama chat request for the target's model, and each answer — whole,
//! or streamed as newline-delimited JSON — back into a `chat.completion`
//! or `chat.completion.chunk`s.
//!
//! - [`request`]: messages keep their roles (developer becomes system);
//!   inline images move to the message's `images`; tool calls carry their
//!   arguments as objects and tool results name the function called;
//!   sampling settings go in `options`; `response_format` becomes
//!   `format`. What Ollama cannot express is refused with a 400 naming the
//!   field.
//! - [`response`] and [`stream`]: the message becomes the answer; Ollama's
//!   tool calls have no ids, so the shim numbers them `call_0`, `call_1`,
//!   ... within each answer; `done_reason` becomes the finish reason and
//!   `prompt_eval_count`/`eval_count` the usage.
//! - [`error`]: `{"error": "..."}` keeps Ollama's status.
//!
//! Ollama takes no key; behind an authenticating proxy the target can send
//! one as a bearer token. See README.md for the target options.

pub mod error;
pub mod request;
pub mod response;
pub mod stream;
pub mod target;

use weir_sdk::ai::{ApiError, Completion, Exchange, Provider, ProviderRequest, TargetConfig};

use stream::LineStream;
use target::{Options, Target};

/// `ai-ollama` configured for one target.
pub struct Ollama {
    target: Target,
}

impl Provider for Ollama {
    type Stream = LineStream;

    fn configure(config: TargetConfig) -> Result<Self, String> {
        Ok(Ollama {
            target: Target::try_from(config.settings::<Options>()?)?,
        })
    }

    fn translate_request(&self, body: &[u8]) -> Result<ProviderRequest, ApiError> {
        request::translate(&self.target, body)
    }

    fn translate_response(&self, exchange: &Exchange, body: &[u8]) -> Result<Completion, ApiError> {
        response::translate(&self.target.model, exchange, body)
    }

    fn translate_error(&self, status: u16, body: &[u8]) -> ApiError {
        error::from_response(status, body)
    }

    fn open_stream(&self, exchange: Exchange) -> LineStream {
        LineStream::new(&self.target.model, exchange)
    }
}

weir_sdk::export_provider!(Ollama);

#[cfg(test)]
mod tests {
    use super::*;

    /// Every target config shown in README.md (its `json` blocks).
    #[test]
    fn readme_configs_are_valid() {
        let configs = weir_sdk::ai::testing::json_blocks(include_str!("../README.md"));
        assert!(configs.len() >= 2, "expected config examples in README.md");
        for json in configs {
            if let Err(e) = target::checked(json) {
                panic!("README config {json} refused: {e}");
            }
        }
    }
}
