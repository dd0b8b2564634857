//! Test guest: a provider shim for the emulator's OpenAI endpoint that
//! keeps everything the host gives it — its config, the client's request,
//! the provider's answer, error and stream bytes — and reports all of it,
//! hex-encoded (so nothing in the host can rewrite it on the way out), in
//! what it returns: the answer's content (`seen:<hex>`), an error's
//! message, or a stream's last chunk. A test decodes it and looks for
//! what the shim must never have been given.

use std::cell::RefCell;

use serde_json::{Value, json};
use weir_sdk::ai::{
    ApiError, Completion, Exchange, KeyPlacement, Provider, ProviderRequest, ProviderStream, StreamOutput, TargetConfig,
};

thread_local! {
    /// Everything given to this instance, in order.
    static SEEN: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

fn keep(bytes: &[u8]) {
    SEEN.with(|seen| {
        let mut seen = seen.borrow_mut();
        seen.extend_from_slice(bytes);
        seen.push(b'\n');
    });
}

/// `seen:` and the hex of everything kept.
fn report() -> String {
    SEEN.with(|seen| {
        let mut out = String::from("seen:");
        for b in seen.borrow().iter() {
            out.push_str(&format!("{b:02x}"));
        }
        out
    })
}

fn completion(exchange: &Exchange, content: &str) -> Value {
    json!({
        "id": exchange.id,
        "object": "chat.completion",
        "created": exchange.created,
        "model": "spy",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
    })
}

pub struct Spy {
    model: String,
}

impl Provider for Spy {
    type Stream = SpyStream;

    fn configure(config: TargetConfig) -> Result<Self, String> {
        keep(config.as_json().as_bytes());
        let parsed: Value = serde_json::from_str(config.as_json()).map_err(|e| e.to_string())?;
        Ok(Spy {
            model: parsed["model"].as_str().unwrap_or("spy").to_string(),
        })
    }

    fn translate_request(&self, body: &[u8]) -> Result<ProviderRequest, ApiError> {
        keep(body);
        let mut request: Value =
            serde_json::from_slice(body).map_err(|e| ApiError::invalid_request(None, &e.to_string()))?;
        request["model"] = Value::String(self.model.clone());
        if request["stream"] == Value::Bool(true) {
            request["stream_options"] = json!({"include_usage": true});
        }
        Ok(ProviderRequest {
            method: "POST".into(),
            path: "/v1/chat/completions".into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: serde_json::to_vec(&request).unwrap_or_default(),
            key: KeyPlacement::Header(("authorization".into(), "Bearer ".into())),
        })
    }

    fn translate_response(&self, exchange: &Exchange, body: &[u8]) -> Result<Completion, ApiError> {
        keep(body);
        Ok(Completion {
            body: serde_json::to_vec(&completion(exchange, &report())).unwrap_or_default(),
            usage: None,
        })
    }

    fn translate_error(&self, status: u16, body: &[u8]) -> ApiError {
        keep(body);
        ApiError::for_status(status, &report())
    }

    fn open_stream(&self, exchange: Exchange) -> SpyStream {
        SpyStream { exchange }
    }
}

pub struct SpyStream {
    exchange: Exchange,
}

impl ProviderStream for SpyStream {
    fn push(&mut self, bytes: &[u8]) -> Result<StreamOutput, ApiError> {
        keep(bytes);
        Ok(StreamOutput::empty())
    }

    fn finish(&mut self) -> Result<StreamOutput, ApiError> {
        let chunk = json!({
            "id": self.exchange.id,
            "object": "chat.completion.chunk",
            "created": self.exchange.created,
            "model": "spy",
            "choices": [{"index": 0, "delta": {"content": report()}, "finish_reason": "stop"}],
        });
        Ok(StreamOutput {
            chunks: vec![chunk.to_string()],
            usage: None,
            done: true,
        })
    }
}

weir_sdk::export_provider!(Spy);
