//! `ai-gemini`: the provider shim for Google's Gemini API (the Generative
//! Language API, `v1beta` by default).
//!
//! A chat completion request becomes `POST /{version}/models/{model}:generateContent`,
//! or `:streamGenerateContent?alt=sse` when the client streams. The gateway
//! puts the target's key in the `x-goog-api-key` header.
//!
//! - [`request`]: sampling options become `generationConfig`; `tools` and
//!   `tool_choice` become function declarations and a
//!   `functionCallingConfig`. What Gemini cannot express is refused with a
//!   400 naming the field.
//! - [`messages`]: messages become `contents` (`user` and `model` turns,
//!   tool results as `functionResponse` parts in a `user` turn) and a
//!   `systemInstruction`.
//! - [`schema`]: JSON Schema (tool parameters, `json_schema` response
//!   formats) to Gemini's OpenAPI-subset `Schema`.
//! - [`response`]: candidates become choices; function calls become tool
//!   calls with ids `call_0`, `call_1`, ... per answer, since Gemini does
//!   not give ids; a tool result is matched back to its call's function
//!   name by the nearest earlier call with the result's id.
//! - [`stream`]: each server-sent event is a whole response fragment.
//! - [`error`]: Gemini's `{"error": {...}}` bodies.
//!
//! See README.md for the target options and the full mapping.

pub mod error;
pub mod messages;
pub mod request;
pub mod response;
pub mod schema;
pub mod settings;
pub mod stream;
pub mod wire;

#[cfg(test)]
mod tests;

use weir_sdk::ai::{ApiError, Completion, Exchange, Provider, ProviderRequest, TargetConfig};

use settings::Settings;
use stream::GeminiStream;

/// The provider's name in error messages.
pub const PROVIDER: &str = "Gemini";

/// The shim, configured for one target.
pub struct Gemini {
    settings: Settings,
}

impl Provider for Gemini {
    type Stream = GeminiStream;

    fn configure(config: TargetConfig) -> Result<Self, String> {
        let settings: Settings = config.settings()?;
        Ok(Gemini { settings })
    }

    fn translate_request(&self, body: &[u8]) -> Result<ProviderRequest, ApiError> {
        request::translate(&self.settings, body)
    }

    fn translate_response(&self, exchange: &Exchange, body: &[u8]) -> Result<Completion, ApiError> {
        response::translate(exchange, body, self.settings.reported_model())
    }

    fn translate_error(&self, status: u16, body: &[u8]) -> ApiError {
        error::translate(status, body)
    }

    fn open_stream(&self, exchange: Exchange) -> GeminiStream {
        GeminiStream::new(exchange, self.settings.reported_model())
    }
}

weir_sdk::export_provider!(Gemini);
