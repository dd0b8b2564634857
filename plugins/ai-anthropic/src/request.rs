//! OpenAI chat request → Anthropic Messages request.

mod conversation;
#[cfg(test)]
mod tests;
mod wire;

use serde_json::{Value, json};
use weir_sdk::ai::ApiError;
use weir_sdk::ai::openai::{ChatRequest, Tool, ToolChoice as OpenAiToolChoice};

pub use wire::{Block, ImageSource, MessagesRequest, Metadata, ToolChoice, ToolDef, ToolResultContent, Turn, TurnRole};

use crate::{PROVIDER, Target};
use conversation::conversation;

/// Translate an OpenAI chat request body for `target`.
pub fn translate(target: &Target, body: &[u8]) -> Result<MessagesRequest, ApiError> {
    let request = ChatRequest::parse(body)?;
    refuse_unsupported(&request)?;
    let (system, messages) = conversation(&request.messages)?;
    let tools = tools(request.tools.as_deref().unwrap_or_default())?;
    let tool_choice = tool_choice(&request, !tools.is_empty())?;
    Ok(MessagesRequest {
        model: target.model.clone(),
        max_tokens: request.max_output_tokens().unwrap_or(target.default_max_tokens),
        system,
        messages,
        tools: (!tools.is_empty()).then_some(tools),
        tool_choice,
        stop_sequences: request.stop.as_ref().map(|s| s.to_vec()).filter(|s| !s.is_empty()),
        temperature: request.temperature,
        top_p: request.top_p,
        metadata: request.user.clone().map(|user_id| Metadata { user_id }),
        stream: request.is_stream().then_some(true),
    })
}

/// Refuse the request-level fields Anthropic has no equivalent for. A
/// field set to OpenAI's default (`n: 1`, a penalty of 0, a `text`
/// response format) asks for nothing and passes.
fn refuse_unsupported(request: &ChatRequest) -> Result<(), ApiError> {
    request.reject_extra(PROVIDER, &[])?;
    if request.n.is_some_and(|n| n != 1) {
        return Err(ApiError::unsupported("n", PROVIDER));
    }
    if request.seed.is_some() {
        return Err(ApiError::unsupported("seed", PROVIDER));
    }
    if request.presence_penalty.is_some_and(|p| p != 0.0) {
        return Err(ApiError::unsupported("presence_penalty", PROVIDER));
    }
    if request.frequency_penalty.is_some_and(|p| p != 0.0) {
        return Err(ApiError::unsupported("frequency_penalty", PROVIDER));
    }
    if let Some(format) = &request.response_format
        && format.get("type").and_then(Value::as_str) != Some("text")
    {
        return Err(ApiError::unsupported("response_format", PROVIDER));
    }
    if request.temperature.is_some_and(|t| t > 1.0) {
        return Err(ApiError::invalid_request(
            Some("temperature"),
            "temperature above 1 is not supported by Anthropic (its range is 0 to 1)",
        ));
    }
    Ok(())
}

fn tools(tools: &[Tool]) -> Result<Vec<ToolDef>, ApiError> {
    tools
        .iter()
        .enumerate()
        .map(|(k, tool)| {
            if tool.kind != "function" {
                return Err(ApiError::unsupported(&format!("tools[{k}].type"), PROVIDER));
            }
            if tool.function.strict == Some(true) {
                return Err(ApiError::unsupported(&format!("tools[{k}].function.strict"), PROVIDER));
            }
            Ok(ToolDef {
                name: tool.function.name.clone(),
                description: tool.function.description.clone(),
                // Anthropic requires a schema; OpenAI's absent one means "no
                // parameters".
                input_schema: tool
                    .function
                    .parameters
                    .clone()
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            })
        })
        .collect()
}

/// `tool_choice` and `parallel_tool_calls`, which Anthropic expresses as
/// one object. Without tools there is nothing to choose: `none` and `auto`
/// are then moot, a forced call is an error.
fn tool_choice(request: &ChatRequest, has_tools: bool) -> Result<Option<ToolChoice>, ApiError> {
    let disable_parallel = (request.parallel_tool_calls == Some(false)).then_some(true);
    let choice = match &request.tool_choice {
        None => {
            return Ok((has_tools && disable_parallel.is_some()).then_some(ToolChoice::Auto {
                disable_parallel_tool_use: disable_parallel,
            }));
        }
        Some(OpenAiToolChoice::Mode(mode)) => match mode.as_str() {
            "none" => ToolChoice::None,
            "auto" => ToolChoice::Auto {
                disable_parallel_tool_use: disable_parallel,
            },
            "required" => ToolChoice::Any {
                disable_parallel_tool_use: disable_parallel,
            },
            other => {
                return Err(ApiError::invalid_request(
                    Some("tool_choice"),
                    &format!("tool_choice must be none, auto, required or a function, not {other:?}"),
                ));
            }
        },
        Some(OpenAiToolChoice::Function { kind, function }) => {
            if kind != "function" {
                return Err(ApiError::unsupported("tool_choice.type", PROVIDER));
            }
            ToolChoice::Tool {
                name: function.name.clone(),
                disable_parallel_tool_use: disable_parallel,
            }
        }
    };
    if has_tools {
        return Ok(Some(choice));
    }
    match choice {
        ToolChoice::None | ToolChoice::Auto { .. } => Ok(None),
        _ => Err(ApiError::invalid_request(
            Some("tool_choice"),
            "tool_choice requires tools",
        )),
    }
}
