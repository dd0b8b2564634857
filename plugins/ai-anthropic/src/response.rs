//! Anthropic message → OpenAI `chat.completion`.

use serde::Deserialize;
use serde_json::Value;
use weir_sdk::ai::openai::{
    AssistantMessage, ChatCompletion, Choice, FunctionCall, Role, ToolCall, Usage as OpenAiUsage,
};
use weir_sdk::ai::{ApiError, Completion, Exchange, TokenUsage};

/// A whole Messages response (the fields the translation reads).
#[derive(Debug, Deserialize)]
struct Message {
    #[serde(default)]
    model: Option<String>,
    content: Vec<ContentBlock>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<Usage>,
}

/// A content block of a response.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ContentBlock {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    /// Thinking and blocks of server tools: nothing a chat completion
    /// carries (and nothing this shim's requests ask for).
    #[serde(other)]
    Other,
}

/// Anthropic's token counts. Each may be absent or null; a stream's
/// `message_delta` repeats only some of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct Usage {
    /// Prompt tokens not read from or written to the cache.
    #[serde(default)]
    pub input_tokens: Option<u32>,
    /// Tokens generated.
    #[serde(default)]
    pub output_tokens: Option<u32>,
    /// Prompt tokens written to the cache.
    #[serde(default)]
    pub cache_creation_input_tokens: Option<u32>,
    /// Prompt tokens read from the cache.
    #[serde(default)]
    pub cache_read_input_tokens: Option<u32>,
}

impl Usage {
    /// Counts in `later` replace these; counts it lacks stay.
    pub fn update(&mut self, later: &Usage) {
        self.input_tokens = later.input_tokens.or(self.input_tokens);
        self.output_tokens = later.output_tokens.or(self.output_tokens);
        self.cache_creation_input_tokens = later.cache_creation_input_tokens.or(self.cache_creation_input_tokens);
        self.cache_read_input_tokens = later.cache_read_input_tokens.or(self.cache_read_input_tokens);
    }

    /// Every prompt token, cached or not.
    pub fn prompt_tokens(&self) -> u32 {
        [
            self.input_tokens,
            self.cache_creation_input_tokens,
            self.cache_read_input_tokens,
        ]
        .into_iter()
        .flatten()
        .fold(0, u32::saturating_add)
    }

    /// In the host's shape.
    pub fn tokens(&self) -> TokenUsage {
        TokenUsage {
            prompt_tokens: self.prompt_tokens(),
            completion_tokens: self.output_tokens.unwrap_or(0),
        }
    }

    /// In OpenAI's shape.
    pub fn openai(&self) -> OpenAiUsage {
        OpenAiUsage::new(self.prompt_tokens(), self.output_tokens.unwrap_or(0))
    }
}

/// OpenAI's finish reason for Anthropic's `stop_reason`.
pub fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        // `end_turn`, `stop_sequence`, `pause_turn` (a server tool paused
        // a long turn; what came so far is a complete answer).
        _ => "stop",
    }
}

/// Translate a whole (2xx) Messages response.
pub fn translate(exchange: &Exchange, configured_model: &str, body: &[u8]) -> Result<Completion, ApiError> {
    let message: Message = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_upstream(&format!("Anthropic sent a response that does not parse: {e}")))?;
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for block in message.content {
        match block {
            ContentBlock::Text { text: piece } => text.push_str(&piece),
            ContentBlock::ToolUse { id, name, input } => tool_calls.push(ToolCall {
                id,
                kind: "function".into(),
                function: FunctionCall {
                    name,
                    arguments: input.to_string(),
                },
            }),
            ContentBlock::Other => {}
        }
    }
    let usage = message.usage.unwrap_or_default();
    let completion = ChatCompletion {
        id: exchange.id.clone(),
        object: "chat.completion".into(),
        created: exchange.created,
        model: message.model.unwrap_or_else(|| configured_model.to_string()),
        choices: vec![Choice {
            index: 0,
            message: AssistantMessage {
                role: Role::Assistant,
                content: (!text.is_empty() || tool_calls.is_empty()).then_some(text),
                tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
            },
            finish_reason: Some(finish_reason(message.stop_reason.as_deref()).into()),
            logprobs: None,
        }],
        usage: message.usage.map(|u| u.openai()),
    };
    let body = serde_json::to_vec(&completion)
        .map_err(|e| ApiError::for_status(500, &format!("could not encode the completion: {e}")))?;
    Ok(Completion {
        body,
        usage: message.usage.map(|_| usage.tokens()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn exchange() -> Exchange {
        Exchange {
            id: "chatcmpl-test".into(),
            created: 1_700_000_000,
            include_usage: false,
        }
    }

    fn completion(body: &[u8]) -> (Value, Option<TokenUsage>) {
        let completion = translate(&exchange(), "claude-configured", body).unwrap();
        (serde_json::from_slice(&completion.body).unwrap(), completion.usage)
    }

    #[test]
    fn a_text_answer_becomes_a_chat_completion() {
        let (body, usage) = completion(include_bytes!("../fixtures/message_text.json"));
        assert_eq!(
            body,
            json!({
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": "claude-sonnet-4-5-20250929",
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello! How can I help you today?"},
                    "finish_reason": "stop",
                    "logprobs": null
                }],
                "usage": {"prompt_tokens": 12, "completion_tokens": 12, "total_tokens": 24}
            })
        );
        let usage = usage.unwrap();
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (12, 12));
    }

    #[test]
    fn tool_use_blocks_become_tool_calls_with_string_arguments() {
        let (body, usage) = completion(include_bytes!("../fixtures/message_tool_use.json"));
        let message = &body["choices"][0]["message"];
        assert_eq!(message["content"], "I'll check the weather in both cities.");
        assert_eq!(
            message["tool_calls"],
            json!([
                {"id": "toolu_01A09q90qw90lq917835lq9", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"location\":\"San Francisco, CA\"}"}},
                {"id": "toolu_01B8Tq2Lw2ZWpZ8yd3sa1Xnb", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris, France\"}"}}
            ])
        );
        assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
        // Cache writes and reads are prompt tokens too.
        assert_eq!(
            body["usage"],
            json!({"prompt_tokens": 1472, "completion_tokens": 98, "total_tokens": 1570})
        );
        assert_eq!(usage.unwrap().prompt_tokens, 1472);
    }

    #[test]
    fn only_tool_calls_give_null_content() {
        let (body, _) = completion(
            br#"{"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
                "content": [{"type": "tool_use", "id": "toolu_1", "name": "now", "input": {}}],
                "stop_reason": "tool_use", "stop_sequence": null,
                "usage": {"input_tokens": 5, "output_tokens": 3}}"#,
        );
        assert_eq!(body["choices"][0]["message"]["content"], Value::Null);
        assert_eq!(
            body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{}"
        );
    }

    #[test]
    fn each_stop_reason_has_its_finish_reason() {
        for (stop_reason, finish) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("max_tokens", "length"),
            ("tool_use", "tool_calls"),
            ("refusal", "content_filter"),
            ("pause_turn", "stop"),
            ("model_context_window_exceeded", "length"),
        ] {
            let body = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
                "content": [{"type": "text", "text": "a"}], "stop_reason": stop_reason,
                "stop_sequence": null, "usage": {"input_tokens": 1, "output_tokens": 1}});
            let (body, _) = completion(body.to_string().as_bytes());
            assert_eq!(body["choices"][0]["finish_reason"], finish, "{stop_reason}");
        }
    }

    #[test]
    fn thinking_blocks_are_skipped_and_a_missing_model_is_the_configured_one() {
        let (body, usage) = completion(
            br#"{"id": "msg_1", "type": "message", "role": "assistant",
                "content": [{"type": "thinking", "thinking": "hmm", "signature": "sig"},
                            {"type": "text", "text": "42"}],
                "stop_reason": "end_turn"}"#,
        );
        assert_eq!(body["model"], "claude-configured");
        assert_eq!(body["choices"][0]["message"]["content"], "42");
        assert!(body.get("usage").is_none());
        assert!(usage.is_none());
    }

    #[test]
    fn a_body_that_does_not_parse_is_a_bad_gateway() {
        let error = translate(&exchange(), "m", b"<html>oops</html>").unwrap_err();
        assert_eq!(error.status, 502);
        let error = translate(&exchange(), "m", br#"{"type": "message"}"#).unwrap_err();
        assert_eq!(error.status, 502);
    }
}
