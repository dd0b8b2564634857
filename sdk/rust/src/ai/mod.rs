//! Write provider shims: the plugins that translate between the OpenAI
//! chat completions API clients speak and one provider's API.
//!
//! A shim is a type that implements [`Provider`], exported with
//! [`export_provider!`](crate::export_provider). The gateway configures it
//! once per target of an AI route ([`Provider::configure`], with the
//! target's model and options, read with [`TargetConfig::settings`] into a
//! type implementing [`Settings`](crate::Settings)), then asks it to translate each request,
//! each whole response or each streamed response ([`ProviderStream`]), and
//! each provider error. The gateway itself picks targets, inserts keys
//! where [`ProviderRequest::key`] says (a shim never sees keys), fails
//! over, and accounts the [`TokenUsage`] a shim reports.
//!
//! [`openai`] has the OpenAI wire types; [`stream`] the decoders for
//! server-sent events and newline-delimited JSON fed bytes split anywhere.

pub mod openai;
pub mod stream;
pub mod testing;

use std::cell::RefCell;

use crate::shim_bindings::exports::weir::plugin::provider as exports;

/// An OpenAI-shaped error with the status the client gets.
pub use exports::ApiError;
/// A translated whole response.
pub use exports::Completion;
/// Facts the answer carries: id, time, whether to add a usage chunk.
pub use exports::Exchange;
/// Where the gateway puts the key.
pub use exports::KeyPlacement;
/// The request to send to the provider.
pub use exports::ProviderRequest;
/// What one piece of a stream became.
pub use exports::StreamOutput;
/// Token counts.
pub use exports::Usage as TokenUsage;

impl ApiError {
    /// A 400 `invalid_request_error`, naming the field at fault if given.
    pub fn invalid_request(param: Option<&str>, message: &str) -> Self {
        ApiError {
            status: 400,
            kind: "invalid_request_error".into(),
            message: message.to_string(),
            param: param.map(str::to_string),
            code: None,
        }
    }

    /// A 400 for a field `provider` cannot express.
    pub fn unsupported(field: &str, provider: &str) -> Self {
        ApiError {
            code: Some("unsupported_parameter".into()),
            ..Self::invalid_request(Some(field), &format!("{field} is not supported by {provider}"))
        }
    }

    /// An error with `status` and the OpenAI error type that goes with it.
    pub fn for_status(status: u16, message: &str) -> Self {
        let kind = match status {
            400 | 404 | 409 | 413 | 422 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            429 => "rate_limit_error",
            _ => "api_error",
        };
        ApiError {
            status,
            kind: kind.into(),
            message: message.to_string(),
            param: None,
            code: None,
        }
    }

    /// A 502 for a provider answer that could not be understood.
    pub fn bad_upstream(message: &str) -> Self {
        Self::for_status(502, message)
    }
}

/// How much of an unreadable provider body an error message quotes.
const EXCERPT_CHARS: usize = 300;

/// The start of a provider's body as text, for an error message about a
/// body that is not in the provider's format (an HTML error page, plain
/// text from a proxy): lossy UTF-8, trimmed, cut after a few hundred
/// characters with `…`.
pub fn body_excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(EXCERPT_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

impl StreamOutput {
    /// Nothing yet.
    pub fn empty() -> Self {
        StreamOutput {
            chunks: Vec::new(),
            usage: None,
            done: false,
        }
    }
}

/// A target's config: its `model` and its `options` table, as JSON.
pub struct TargetConfig {
    json: String,
}

impl TargetConfig {
    /// A config from its JSON, as the gateway hands it to
    /// [`Provider::configure`]: for driving a shim natively (tests,
    /// fuzzing).
    pub fn new(json: impl Into<String>) -> Self {
        TargetConfig { json: json.into() }
    }

    /// The config as JSON.
    pub fn as_json(&self) -> &str {
        &self.json
    }

    /// Read and check it as `T` ([`Settings::from_json`](crate::Settings::from_json));
    /// the error names the field at fault. Return it from `configure` as it is.
    pub fn settings<T: crate::Settings>(&self) -> Result<T, String> {
        T::from_json(&self.json)
    }

    /// Deserialize it into any serde type, unchecked; the error is serde's.
    /// Prefer [`TargetConfig::settings`].
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_str(&self.json).map_err(|e| e.to_string())
    }
}

/// A provider shim configured for one target.
///
/// Methods take `&self`: one value serves every request to its target, one
/// at a time per instance.
pub trait Provider: Sized + 'static {
    /// The state of one streamed response.
    type Stream: ProviderStream;

    /// Build the shim for one target; an error names what is wrong with
    /// its config, and the gateway refuses the config with it.
    fn configure(config: TargetConfig) -> Result<Self, String>;

    /// Translate an OpenAI chat request body into the provider's request
    /// for this target's model. Refuse (400, naming it) whatever the
    /// provider cannot express.
    fn translate_request(&self, body: &[u8]) -> Result<ProviderRequest, ApiError>;

    /// Translate a successful whole response into a `chat.completion`.
    fn translate_response(&self, exchange: &Exchange, body: &[u8]) -> Result<Completion, ApiError>;

    /// Map the provider's error response (status 400 and up).
    fn translate_error(&self, status: u16, body: &[u8]) -> ApiError;

    /// Start translating a streamed response.
    fn open_stream(&self, exchange: Exchange) -> Self::Stream;
}

/// One streamed response being translated into `chat.completion.chunk`s.
pub trait ProviderStream: 'static {
    /// The next bytes of the provider's body, split anywhere.
    fn push(&mut self, bytes: &[u8]) -> Result<StreamOutput, ApiError>;
    /// The body ended: what was held back, or an error if the provider
    /// had not said the answer was complete.
    fn finish(&mut self) -> Result<StreamOutput, ApiError>;
}

/// Glue between a [`Provider`] and the generated `adapter` resource.
#[doc(hidden)]
pub struct Adapter<P: Provider> {
    provider: P,
}

/// Glue between a [`ProviderStream`] and the generated `stream` resource.
#[doc(hidden)]
pub struct Stream<S: ProviderStream> {
    stream: RefCell<S>,
}

impl<S: ProviderStream> exports::GuestStreamTranslator for Stream<S> {
    fn push(&self, bytes: Vec<u8>) -> Result<StreamOutput, ApiError> {
        self.stream.borrow_mut().push(&bytes)
    }

    fn finish(&self) -> Result<StreamOutput, ApiError> {
        self.stream.borrow_mut().finish()
    }
}

impl<P: Provider> exports::GuestAdapter for Adapter<P> {
    fn configure(config: String) -> Result<exports::Adapter, String> {
        let provider = P::configure(TargetConfig { json: config })?;
        Ok(exports::Adapter::new(Adapter { provider }))
    }

    fn translate_request(&self, body: Vec<u8>) -> Result<ProviderRequest, ApiError> {
        self.provider.translate_request(&body)
    }

    fn translate_response(&self, exchange: Exchange, body: Vec<u8>) -> Result<Completion, ApiError> {
        self.provider.translate_response(&exchange, &body)
    }

    fn translate_error(&self, status: u16, body: Vec<u8>) -> ApiError {
        self.provider.translate_error(status, &body)
    }

    fn open_stream(&self, exchange: Exchange) -> exports::StreamTranslator {
        exports::StreamTranslator::new(Stream {
            stream: RefCell::new(self.provider.open_stream(exchange)),
        })
    }
}

/// Export a [`Provider`] type as the component's `provider` implementation.
///
/// Call it once, at the crate root of a `cdylib` crate.
///
/// The exports exist only when building for WebAssembly: a native build
/// (`cargo test` of a crate that is also an `rlib`) type-checks the
/// provider but links no component exports, whose names native linkers
/// refuse.
#[macro_export]
macro_rules! export_provider {
    ($provider:ty) => {
        #[doc(hidden)]
        #[allow(dead_code)]
        struct __WeirProviderExports;

        impl $crate::shim_bindings::exports::weir::plugin::provider::Guest for __WeirProviderExports {
            type Adapter = $crate::ai::Adapter<$provider>;
            type StreamTranslator = $crate::ai::Stream<<$provider as $crate::ai::Provider>::Stream>;
        }

        #[cfg(target_arch = "wasm32")]
        $crate::shim_bindings::__export_weir_shim!(__WeirProviderExports with_types_in $crate::shim_bindings);
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_excerpt_is_short_text() {
        assert_eq!(
            body_excerpt(b"  <html>bad gateway</html>\n"),
            "<html>bad gateway</html>"
        );
        assert_eq!(body_excerpt(b"ok \xff"), "ok \u{fffd}");
        let long = "é".repeat(1000);
        let excerpt = body_excerpt(long.as_bytes());
        assert_eq!(excerpt.chars().count(), EXCERPT_CHARS + 1);
        assert!(excerpt.ends_with('…'));
    }
}
