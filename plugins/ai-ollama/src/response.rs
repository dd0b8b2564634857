//! Ollama's answer — whole, or one line of a stream — and the OpenAI
//! pieces made from it.

use serde::Deserialize;
use serde_json::Value;
use weir_sdk::ai::openai::{AssistantMessage, ChatCompletion, Choice, FunctionCall, Role, ToolCall, Usage};
use weir_sdk::ai::{ApiError, Completion, Exchange, TokenUsage, body_excerpt};

use crate::error;

/// A `/api/chat` response object: the whole answer, or one line of a
/// stream (a piece of the message; the last has `done: true` and counts).
#[derive(Debug, Deserialize)]
pub struct ChatResponse {
    /// The model that answered.
    #[serde(default)]
    pub model: Option<String>,
    /// The message, or the piece of it this line adds.
    #[serde(default)]
    pub message: Option<ResponseMessage>,
    /// The last object of the answer.
    #[serde(default)]
    pub done: bool,
    /// `stop`, `length`, `load`, `unload`.
    #[serde(default)]
    pub done_reason: Option<String>,
    /// Prompt tokens.
    #[serde(default)]
    pub prompt_eval_count: Option<u64>,
    /// Generated tokens.
    #[serde(default)]
    pub eval_count: Option<u64>,
}

/// The assistant's message (or a piece of it).
#[derive(Debug, Default, Deserialize)]
pub struct ResponseMessage {
    /// Text.
    #[serde(default)]
    pub content: Option<String>,
    /// Tool calls, each whole.
    #[serde(default)]
    pub tool_calls: Option<Vec<ResponseToolCall>>,
}

/// A tool call: Ollama gives no id.
#[derive(Debug, Deserialize)]
pub struct ResponseToolCall {
    /// The function and its arguments.
    pub function: ResponseFunction,
}

/// A called function.
#[derive(Debug, Deserialize)]
pub struct ResponseFunction {
    /// Its name.
    pub name: String,
    /// Its arguments, an object.
    #[serde(default)]
    pub arguments: Value,
}

impl ResponseFunction {
    /// The arguments as OpenAI's JSON text.
    pub fn arguments_text(&self) -> String {
        match &self.arguments {
            Value::Null => "{}".into(),
            Value::String(text) => text.clone(),
            arguments => arguments.to_string(),
        }
    }
}

/// The id of the answer's tool call number `index` (counting from 0):
/// Ollama has none, and OpenAI clients need one to answer the call.
pub fn tool_call_id(index: u32) -> String {
    format!("call_{index}")
}

impl ChatResponse {
    /// Read one response object; an `{"error": ...}` object is the
    /// provider's error.
    pub fn parse(body: &[u8]) -> Result<ChatResponse, ApiError> {
        let value: Value = serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_upstream(&format!(
                "Ollama sent a body that is not JSON ({e}): {}",
                body_excerpt(body)
            ))
        })?;
        if let Some(error) = error::from_value(502, &value) {
            return Err(error);
        }
        serde_json::from_value(value).map_err(|e| {
            ApiError::bad_upstream(&format!(
                "Ollama sent an unexpected answer ({e}): {}",
                body_excerpt(body)
            ))
        })
    }

    /// The token counts, if Ollama gave any (only the last object has them).
    pub fn usage(&self) -> Option<Usage> {
        if self.prompt_eval_count.is_none() && self.eval_count.is_none() {
            return None;
        }
        let count = |n: Option<u64>| u32::try_from(n.unwrap_or(0)).unwrap_or(u32::MAX);
        Some(Usage::new(count(self.prompt_eval_count), count(self.eval_count)))
    }
}

/// OpenAI's finish reason for Ollama's `done_reason`, given whether the
/// answer called tools (Ollama says `stop` then too).
pub fn finish_reason(done_reason: Option<&str>, called_tools: bool) -> &'static str {
    match done_reason {
        Some("length") => "length",
        _ if called_tools => "tool_calls",
        _ => "stop",
    }
}

/// The gateway's token counts for OpenAI-shaped ones.
pub fn token_usage(usage: Usage) -> TokenUsage {
    TokenUsage {
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
    }
}

/// The `chat.completion` for a whole answer.
pub fn translate(model: &str, exchange: &Exchange, body: &[u8]) -> Result<Completion, ApiError> {
    let response = ChatResponse::parse(body)?;
    let message = response.message.as_ref();
    let calls: Vec<ToolCall> = message
        .and_then(|m| m.tool_calls.as_ref())
        .into_iter()
        .flatten()
        .zip(0..)
        .map(|(call, i)| ToolCall {
            id: tool_call_id(i),
            kind: "function".into(),
            function: FunctionCall {
                name: call.function.name.clone(),
                arguments: call.function.arguments_text(),
            },
        })
        .collect();
    let called_tools = !calls.is_empty();
    let text = message.and_then(|m| m.content.clone()).unwrap_or_default();
    let usage = response.usage();
    let completion = ChatCompletion {
        id: exchange.id.clone(),
        object: "chat.completion".into(),
        created: exchange.created,
        model: response
            .model
            .clone()
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| model.to_string()),
        choices: vec![Choice {
            index: 0,
            message: AssistantMessage {
                role: Role::Assistant,
                // Only tool calls: no content, as OpenAI answers.
                content: (!(text.is_empty() && called_tools)).then_some(text),
                tool_calls: called_tools.then_some(calls),
            },
            finish_reason: Some(finish_reason(response.done_reason.as_deref(), called_tools).into()),
            logprobs: None,
        }],
        usage,
    };
    let body = serde_json::to_vec(&completion)
        .map_err(|e| ApiError::bad_upstream(&format!("answer cannot be encoded: {e}")))?;
    Ok(Completion {
        body,
        usage: usage.map(token_usage),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn exchange() -> Exchange {
        Exchange {
            id: "chatcmpl-gw1".into(),
            created: 1_700_000_000,
            include_usage: false,
        }
    }

    fn answer(body: &[u8]) -> (Value, Option<TokenUsage>) {
        let completion = translate("llama3.2", &exchange(), body).unwrap();
        (serde_json::from_slice(&completion.body).unwrap(), completion.usage)
    }

    #[test]
    fn a_text_answer_becomes_a_chat_completion() {
        let (answer, usage) = answer(include_bytes!("../fixtures/response_text.json"));
        assert_eq!(
            answer,
            json!({
                "id": "chatcmpl-gw1",
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": "llama3.2",
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello! How are you today?"},
                    "finish_reason": "stop",
                    "logprobs": null
                }],
                "usage": {"prompt_tokens": 26, "completion_tokens": 298, "total_tokens": 324}
            })
        );
        let usage = usage.unwrap();
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (26, 298));
    }

    #[test]
    fn tool_calls_get_ids_and_string_arguments() {
        let (answer, _) = answer(include_bytes!("../fixtures/response_tool_calls.json"));
        let choice = &answer["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(choice["message"]["content"], Value::Null);
        assert_eq!(
            choice["message"]["tool_calls"],
            json!([
                {"id": "call_0", "type": "function", "function": {"name": "get_current_weather", "arguments": "{\"format\":\"celsius\",\"location\":\"Paris, FR\"}"}},
                {"id": "call_1", "type": "function", "function": {"name": "get_current_weather", "arguments": "{\"format\":\"celsius\",\"location\":\"Lyon, FR\"}"}}
            ])
        );
    }

    #[test]
    fn a_length_stop_is_length() {
        let (answer, usage) = answer(include_bytes!("../fixtures/response_length.json"));
        assert_eq!(answer["choices"][0]["finish_reason"], "length");
        assert_eq!(usage.unwrap().completion_tokens, 10);
    }

    #[test]
    fn done_reasons_map_to_finish_reasons() {
        assert_eq!(finish_reason(Some("stop"), false), "stop");
        assert_eq!(finish_reason(Some("stop"), true), "tool_calls");
        assert_eq!(finish_reason(Some("length"), true), "length");
        assert_eq!(finish_reason(Some("load"), false), "stop");
        assert_eq!(finish_reason(None, false), "stop");
    }

    #[test]
    fn no_counts_means_no_usage_and_no_model_means_the_configured_one() {
        let (answer, usage) =
            answer(br#"{"created_at": "2024-09-12T21:17:29.110811Z", "message": {"role": "assistant", "content": ""}, "done_reason": "load", "done": true}"#);
        assert!(usage.is_none());
        assert!(answer.get("usage").is_none());
        assert_eq!(answer["model"], "llama3.2");
        assert_eq!(answer["choices"][0]["message"]["content"], "");
    }

    #[test]
    fn an_unreadable_answer_is_a_bad_gateway() {
        for body in [&b"{\"model\": "[..], b"[1]", b"{\"message\": {\"content\": 5}}"] {
            let error = translate("llama3.2", &exchange(), body).unwrap_err();
            assert_eq!(error.status, 502, "{}", String::from_utf8_lossy(body));
        }
    }
}
