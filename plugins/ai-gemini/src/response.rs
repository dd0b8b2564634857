//! Gemini `GenerateContentResponse` → OpenAI `chat.completion`, and what
//! the stream translation shares with it: parts, finish reasons, usage,
//! tool-call ids.

use weir_sdk::ai::openai::{AssistantMessage, ChatCompletion, Choice, FunctionCall, Role, ToolCall, Usage};
use weir_sdk::ai::{ApiError, Completion, Exchange, TokenUsage};

use crate::PROVIDER;
use crate::wire::{GenerateContentResponse, PromptFeedback, ResponsePart, UsageMetadata};

/// Translate a whole (2xx) answer; `model` is reported when Gemini does
/// not name the model version.
pub fn translate(exchange: &Exchange, body: &[u8], model: &str) -> Result<Completion, ApiError> {
    let response: GenerateContentResponse = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_upstream(&format!(
            "{PROVIDER} answered with a body that is not a GenerateContentResponse: {e}"
        ))
    })?;
    if response.candidates.is_empty() {
        return Err(no_candidates(response.prompt_feedback.as_ref()));
    }
    let mut choices = Vec::new();
    for (position, candidate) in response.candidates.iter().enumerate() {
        let parts = candidate
            .content
            .as_ref()
            .map(|c| c.parts.as_slice())
            .unwrap_or_default();
        let mut text = String::new();
        let mut calls = Vec::new();
        for piece in pieces(parts)? {
            match piece {
                Piece::Text(more) => text.push_str(&more),
                Piece::Call { id, name, arguments } => calls.push(ToolCall {
                    id: tool_call_id(id, calls.len()),
                    kind: "function".into(),
                    function: FunctionCall { name, arguments },
                }),
            }
        }
        let finish = candidate.finish_reason.as_deref().unwrap_or("STOP");
        choices.push(Choice {
            index: candidate.index.unwrap_or(position as u32),
            finish_reason: Some(finish_reason(finish, !calls.is_empty()).to_string()),
            message: AssistantMessage {
                role: Role::Assistant,
                content: (calls.is_empty() || !text.is_empty()).then_some(text),
                tool_calls: (!calls.is_empty()).then_some(calls),
            },
            logprobs: None,
        });
    }
    choices.sort_by_key(|c| c.index);
    let usage = response.usage_metadata.as_ref().map(usage);
    let completion = ChatCompletion {
        id: exchange.id.clone(),
        object: "chat.completion".into(),
        created: exchange.created,
        model: response.model_version.unwrap_or_else(|| model.to_string()),
        choices,
        usage,
    };
    let body = serde_json::to_vec(&completion)
        .map_err(|e| ApiError::for_status(500, &format!("the answer could not be written: {e}")))?;
    Ok(Completion {
        body,
        usage: usage.map(token_usage),
    })
}

/// What a candidate's part says, in the order the parts came.
#[derive(Debug, PartialEq)]
pub enum Piece {
    /// Answer text.
    Text(String),
    /// A function call; `arguments` is the JSON text of its `args`.
    Call {
        id: Option<String>,
        name: String,
        arguments: String,
    },
}

/// The text and function calls of some parts. Thoughts (sent only if
/// asked for, which this shim never does) and empty parts (a part may
/// carry only a `thoughtSignature`) are skipped; output OpenAI's format
/// has no place for (images, code execution) is refused with a 502.
pub fn pieces(parts: &[ResponsePart]) -> Result<Vec<Piece>, ApiError> {
    let mut pieces = Vec::new();
    for part in parts {
        if let Some(call) = &part.function_call {
            let arguments = match &call.args {
                Some(args) => args.to_string(),
                None => "{}".to_string(),
            };
            pieces.push(Piece::Call {
                id: call.id.clone(),
                name: call.name.clone(),
                arguments,
            });
        } else if let Some(text) = &part.text {
            if part.thought != Some(true) && !text.is_empty() {
                pieces.push(Piece::Text(text.clone()));
            }
        } else if part.inline_data.is_some()
            || part.file_data.is_some()
            || part.executable_code.is_some()
            || part.code_execution_result.is_some()
        {
            return Err(ApiError::bad_upstream(&format!(
                "{PROVIDER} answered with a part that is neither text nor a function call"
            )));
        }
    }
    Ok(pieces)
}

/// The id of a candidate's `index`th function call. Gemini rarely gives
/// call ids, so they are `call_0`, `call_1`, ... in each answer; a tool
/// result is matched to the nearest earlier call with its id.
pub fn tool_call_id(given: Option<String>, index: usize) -> String {
    given.unwrap_or_else(|| format!("call_{index}"))
}

/// Gemini's `finishReason` as OpenAI's `finish_reason`. `STOP` after
/// function calls is `tool_calls`; reasons with no OpenAI counterpart
/// (`LANGUAGE`, `OTHER`, `MALFORMED_FUNCTION_CALL`, ...) are `stop`.
pub fn finish_reason(gemini: &str, made_calls: bool) -> &'static str {
    match gemini {
        "MAX_TOKENS" => "length",
        "SAFETY"
        | "RECITATION"
        | "BLOCKLIST"
        | "PROHIBITED_CONTENT"
        | "SPII"
        | "IMAGE_SAFETY"
        | "IMAGE_PROHIBITED_CONTENT"
        | "IMAGE_RECITATION" => "content_filter",
        _ if made_calls => "tool_calls",
        _ => "stop",
    }
}

/// Token counts: thinking and tool-use prompt tokens count too.
pub fn usage(metadata: &UsageMetadata) -> Usage {
    Usage::new(
        metadata
            .prompt_token_count
            .saturating_add(metadata.tool_use_prompt_token_count),
        metadata
            .candidates_token_count
            .saturating_add(metadata.thoughts_token_count),
    )
}

/// The counts the host accounts.
pub fn token_usage(usage: Usage) -> TokenUsage {
    TokenUsage {
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
    }
}

/// An answer without candidates: a blocked prompt (400, naming the
/// reason), or else a broken answer.
pub fn no_candidates(feedback: Option<&PromptFeedback>) -> ApiError {
    match feedback.and_then(|f| f.block_reason.as_deref()) {
        Some(reason) => ApiError {
            code: Some("content_filter".into()),
            ..ApiError::invalid_request(None, &format!("{PROVIDER} blocked the prompt (block reason {reason})"))
        },
        None => ApiError::bad_upstream(&format!("{PROVIDER} answered without candidates")),
    }
}
