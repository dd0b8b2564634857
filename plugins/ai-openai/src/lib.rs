//! `ai-openai`: the provider shim for OpenAI's chat completions API, for
//! servers that speak it (vLLM, Mistral, DeepSeek, ...) and for Azure
//! OpenAI.
//!
//! The client already speaks this API, so the shim is nearly a
//! pass-through, but a checked one:
//!
//! - the request is parsed, held to OpenAI's fields (plus the target's
//!   `allow` list) and re-serialized with the target's `model`; a stream
//!   always asks for usage so the gateway can account tokens
//!   ([`request`]);
//! - answers and stream chunks keep everything the provider sent except
//!   `id` and `created`, which are the gateway's ([`response`],
//!   [`stream`]);
//! - errors keep OpenAI's fields and the provider's status ([`error`]).
//!
//! The key goes in `authorization: Bearer ...`, or in `api-key` for
//! Azure. See README.md for the target options.

pub mod error;
pub mod request;
pub mod response;
pub mod stream;
pub mod target;

use weir_sdk::ai::{ApiError, Completion, Exchange, Provider, ProviderRequest, TargetConfig};

use stream::ChunkStream;
use target::{Options, Target};

/// `ai-openai` configured for one target.
pub struct OpenAi {
    target: Target,
}

impl Provider for OpenAi {
    type Stream = ChunkStream;

    fn configure(config: TargetConfig) -> Result<Self, String> {
        Ok(OpenAi {
            target: Target::try_from(config.settings::<Options>()?)?,
        })
    }

    fn translate_request(&self, body: &[u8]) -> Result<ProviderRequest, ApiError> {
        request::translate(&self.target, body)
    }

    fn translate_response(&self, exchange: &Exchange, body: &[u8]) -> Result<Completion, ApiError> {
        response::translate(self.target.provider, &self.target.model, exchange, body)
    }

    fn translate_error(&self, status: u16, body: &[u8]) -> ApiError {
        error::from_response(self.target.provider, status, body)
    }

    fn open_stream(&self, exchange: Exchange) -> ChunkStream {
        ChunkStream::new(self.target.provider, &self.target.model, exchange)
    }
}

weir_sdk::export_provider!(OpenAi);

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
