//! Translation tests against Gemini's wire format (bodies in `fixtures/`).

mod error;
mod request;
mod response;
mod stream;

use serde_json::Value;
use weir_sdk::Settings as _;
use weir_sdk::ai::{Exchange, TokenUsage};

use crate::settings::Settings;

fn settings() -> Settings {
    Settings::from_json(r#"{"model": "gemini-2.5-flash"}"#).unwrap()
}

fn exchange(include_usage: bool) -> Exchange {
    Exchange {
        id: "chatcmpl-gem1".into(),
        created: 1_750_000_000,
        include_usage,
    }
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

/// Token counts as a comparable pair (the generated type has no `PartialEq`).
fn counts(usage: Option<TokenUsage>) -> Option<(u32, u32)> {
    usage.map(|u| (u.prompt_tokens, u.completion_tokens))
}
