//! An OpenAI chat request as Ollama's `POST /api/chat` body.
//!
//! Ollama's messages are close to OpenAI's: roles `system`, `user`,
//! `assistant` and `tool`, text `content`, and tool calls whose arguments
//! are a JSON object rather than a string. Images go in a message's
//! `images` list as bare base64, so only `data:` URLs can be sent. Sampling
//! settings go in `options`. Ollama has no `n`, `logit_bias`,
//! `tool_choice` (other than letting the model choose), end-user id or
//! message names; those are refused, like any field OpenAI does not define.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::{Map, Value};
use weir_sdk::ai::openai::{ChatRequest, Content, ContentPart, Message, Role, Tool, ToolChoice};
use weir_sdk::ai::{ApiError, ProviderRequest};

use crate::target::{KeepAlive, Target};

/// The name in "... is not supported by Ollama".
pub const PROVIDER: &str = "Ollama";

/// The `/api/chat` body.
#[derive(Debug, Serialize)]
struct ChatBody {
    model: String,
    messages: Vec<OllamaMessage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<Vec<Tool>>,
    /// Always sent: Ollama streams unless told otherwise.
    stream: bool,
    /// `"json"` or a JSON schema.
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<Value>,
    #[serde(skip_serializing_if = "ModelOptions::is_empty")]
    options: ModelOptions,
    #[serde(skip_serializing_if = "Option::is_none")]
    keep_alive: Option<KeepAlive>,
}

/// One message.
#[derive(Debug, Serialize)]
struct OllamaMessage {
    role: &'static str,
    content: String,
    /// Base64 images, without `data:` prefix.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    images: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<OllamaToolCall>,
    /// For a tool result: the function that was called.
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_name: Option<String>,
}

#[derive(Debug, Serialize)]
struct OllamaToolCall {
    function: OllamaFunctionCall,
}

#[derive(Debug, Serialize)]
struct OllamaFunctionCall {
    name: String,
    /// An object, not OpenAI's JSON text.
    arguments: Value,
}

/// `options`: the model parameters of a Modelfile that OpenAI fields map to.
#[derive(Debug, Default, Serialize)]
struct ModelOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    /// The most tokens to generate.
    #[serde(skip_serializing_if = "Option::is_none")]
    num_predict: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<f64>,
}

impl ModelOptions {
    fn is_empty(&self) -> bool {
        self.temperature.is_none()
            && self.top_p.is_none()
            && self.num_predict.is_none()
            && self.stop.is_none()
            && self.seed.is_none()
            && self.presence_penalty.is_none()
            && self.frequency_penalty.is_none()
    }
}

/// The provider request for `body`.
pub fn translate(target: &Target, body: &[u8]) -> Result<ProviderRequest, ApiError> {
    let request = ChatRequest::parse(body)?;
    request.reject_extra(PROVIDER, &[])?;
    refuse_what_ollama_lacks(&request)?;
    let num_predict = request.max_output_tokens();
    let chat = ChatBody {
        model: target.model.clone(),
        messages: messages(&request.messages)?,
        tools: tools(request.tools)?,
        stream: request.stream.unwrap_or(false),
        format: format(request.response_format.as_ref())?,
        options: ModelOptions {
            temperature: request.temperature,
            top_p: request.top_p,
            num_predict,
            stop: request.stop.as_ref().map(|s| s.to_vec()),
            seed: request.seed,
            presence_penalty: request.presence_penalty,
            frequency_penalty: request.frequency_penalty,
        },
        keep_alive: target.keep_alive.clone(),
    };
    let body = serde_json::to_vec(&chat)
        .map_err(|e| ApiError::invalid_request(None, &format!("request cannot be encoded: {e}")))?;
    Ok(ProviderRequest {
        method: "POST".into(),
        path: target.path.clone(),
        headers: vec![("content-type".into(), "application/json".into())],
        body,
        key: target.key.clone(),
    })
}

/// Fields OpenAI defines that Ollama cannot express.
fn refuse_what_ollama_lacks(request: &ChatRequest) -> Result<(), ApiError> {
    if request.n.is_some_and(|n| n != 1) {
        return Err(ApiError::unsupported("n", PROVIDER));
    }
    // Ollama lets the model choose; it cannot forbid or force a call.
    match &request.tool_choice {
        None => {}
        Some(ToolChoice::Mode(mode)) if mode == "auto" => {}
        Some(_) => return Err(ApiError::unsupported("tool_choice", PROVIDER)),
    }
    // Ollama may make several calls in one turn and cannot be held to one.
    if request.parallel_tool_calls == Some(false) {
        return Err(ApiError::unsupported("parallel_tool_calls", PROVIDER));
    }
    if request.user.is_some() {
        return Err(ApiError::unsupported("user", PROVIDER));
    }
    Ok(())
}

fn messages(messages: &[Message]) -> Result<Vec<OllamaMessage>, ApiError> {
    // Tool results name their call by id; Ollama wants the function's
    // name, known from the assistant turn that made the call.
    let mut called: HashMap<&str, &str> = HashMap::new();
    let mut out = Vec::with_capacity(messages.len());
    for (i, message) in messages.iter().enumerate() {
        if message.name.is_some() {
            return Err(ApiError::unsupported(&format!("messages[{i}].name"), PROVIDER));
        }
        if message.tool_calls.is_some() && message.role != Role::Assistant {
            return Err(ApiError::unsupported(&format!("messages[{i}].tool_calls"), PROVIDER));
        }
        if message.tool_call_id.is_some() && message.role != Role::Tool {
            return Err(ApiError::unsupported(&format!("messages[{i}].tool_call_id"), PROVIDER));
        }
        let role = match message.role {
            Role::System | Role::Developer => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        };
        let (content, images) = content(i, message.content.as_ref(), message.role == Role::User)?;
        let mut tool_calls = Vec::new();
        for (j, call) in message.tool_calls.iter().flatten().enumerate() {
            called.insert(&call.id, &call.function.name);
            tool_calls.push(OllamaToolCall {
                function: OllamaFunctionCall {
                    name: call.function.name.clone(),
                    arguments: arguments(&call.function.arguments).ok_or_else(|| {
                        ApiError::invalid_request(
                            Some(&format!("messages[{i}].tool_calls[{j}].function.arguments")),
                            "tool call arguments must be a JSON object",
                        )
                    })?,
                },
            });
        }
        let tool_name = message
            .tool_call_id
            .as_deref()
            .and_then(|id| called.get(id))
            .map(|name| name.to_string());
        out.push(OllamaMessage {
            role,
            content,
            images,
            tool_calls,
            tool_name,
        });
    }
    Ok(out)
}

/// A message's text and, for a user message, its inline images.
fn content(i: usize, content: Option<&Content>, images_allowed: bool) -> Result<(String, Vec<String>), ApiError> {
    let mut text = String::new();
    let mut images = Vec::new();
    let parts = match content {
        None => return Ok((text, images)),
        Some(Content::Text(t)) => return Ok((t.clone(), images)),
        Some(Content::Parts(parts)) => parts,
    };
    for (j, part) in parts.iter().enumerate() {
        match part {
            ContentPart::Text { text: t } => text.push_str(t),
            ContentPart::ImageUrl { image_url } => {
                let field = format!("messages[{i}].content[{j}]");
                if !images_allowed {
                    return Err(ApiError::unsupported(&field, PROVIDER));
                }
                let Some((_, data)) = image_url.inline_data() else {
                    return Err(ApiError {
                        code: Some("unsupported_parameter".into()),
                        ..ApiError::invalid_request(
                            Some(&field),
                            "Ollama takes only inline images: send the image as a data:image/...;base64, URL",
                        )
                    });
                };
                images.push(data.to_string());
            }
        }
    }
    Ok((text, images))
}

/// OpenAI's arguments text as the object Ollama wants; empty text is no
/// arguments.
fn arguments(text: &str) -> Option<Value> {
    if text.trim().is_empty() {
        return Some(Value::Object(Map::new()));
    }
    serde_json::from_str::<Value>(text).ok().filter(Value::is_object)
}

/// Tools pass in OpenAI's shape, which Ollama reads; strict schema
/// adherence is refused because Ollama does not enforce it.
fn tools(tools: Option<Vec<Tool>>) -> Result<Option<Vec<Tool>>, ApiError> {
    let Some(tools) = tools else { return Ok(None) };
    for (i, tool) in tools.iter().enumerate() {
        if tool.kind != "function" {
            return Err(ApiError::unsupported(&format!("tools[{i}].type"), PROVIDER));
        }
        if tool.function.strict == Some(true) {
            return Err(ApiError::unsupported(&format!("tools[{i}].function.strict"), PROVIDER));
        }
    }
    Ok(Some(tools))
}

/// `response_format` as Ollama's `format`: `"json"` for JSON mode, the
/// schema itself for structured output.
fn format(response_format: Option<&Value>) -> Result<Option<Value>, ApiError> {
    let Some(response_format) = response_format else {
        return Ok(None);
    };
    match response_format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(Value::String("json".into()))),
        Some("json_schema") => match response_format.pointer("/json_schema/schema") {
            Some(schema @ Value::Object(_)) => Ok(Some(schema.clone())),
            _ => Err(ApiError::invalid_request(
                Some("response_format.json_schema.schema"),
                "response_format json_schema needs a schema object",
            )),
        },
        _ => Err(ApiError::unsupported("response_format.type", PROVIDER)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use weir_sdk::ai::KeyPlacement;

    use super::*;

    fn target() -> Target {
        crate::target::checked(r#"{"model": "llama3.2"}"#).unwrap()
    }

    fn sent(body: &[u8]) -> Value {
        let request = translate(&target(), body).unwrap();
        serde_json::from_slice(&request.body).unwrap()
    }

    fn refused(body: &str) -> ApiError {
        translate(&target(), body.as_bytes()).unwrap_err()
    }

    #[test]
    fn a_conversation_with_an_image_becomes_ollama_messages_and_options() {
        let request = translate(&target(), include_bytes!("../fixtures/request_conversation.json")).unwrap();
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/api/chat");
        assert!(matches!(request.key, KeyPlacement::None));
        let sent: Value = serde_json::from_slice(&request.body).unwrap();
        let expected: Value = serde_json::from_str(include_str!("../fixtures/sent_conversation.json")).unwrap();
        assert_eq!(sent, expected);
    }

    #[test]
    fn tool_calls_and_results_become_ollama_tool_messages() {
        let sent = sent(include_bytes!("../fixtures/request_tools.json"));
        let expected: Value = serde_json::from_str(include_str!("../fixtures/sent_tools.json")).unwrap();
        assert_eq!(sent, expected);
    }

    #[test]
    fn stream_is_always_explicit() {
        let plain = sent(br#"{"model": "x", "messages": [{"role": "user", "content": "hi"}]}"#);
        assert_eq!(plain["stream"], false);
        let streamed = sent(
            br#"{"model": "x", "messages": [{"role": "user", "content": "hi"}], "stream": true,
                 "stream_options": {"include_usage": true}}"#,
        );
        assert_eq!(streamed["stream"], true);
        assert!(streamed.get("stream_options").is_none());
    }

    #[test]
    fn response_formats_become_format() {
        let json_mode = sent(
            br#"{"model": "x", "messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "json_object"}}"#,
        );
        assert_eq!(json_mode["format"], "json");
        let schema = sent(
            br#"{"model": "x", "messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "json_schema",
                 "json_schema": {"name": "age", "strict": true, "schema": {"type": "object", "properties": {"age": {"type": "integer"}}}}}}"#,
        );
        assert_eq!(
            schema["format"],
            json!({"type": "object", "properties": {"age": {"type": "integer"}}})
        );
        let text = sent(
            br#"{"model": "x", "messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "text"}}"#,
        );
        assert!(text.get("format").is_none());
        let error = refused(
            r#"{"model": "x", "messages": [], "response_format": {"type": "json_schema", "json_schema": {"name": "a"}}}"#,
        );
        assert_eq!(error.param.as_deref(), Some("response_format.json_schema.schema"));
    }

    #[test]
    fn keep_alive_and_a_bearer_key_come_from_the_target() {
        let target = crate::target::checked(
            r#"{"model": "qwen3:8b", "keep-alive": "30m", "key": "bearer", "path": "/ollama/api/chat"}"#,
        )
        .unwrap();
        let request = translate(
            &target,
            br#"{"model": "x", "messages": [{"role": "user", "content": "hi"}]}"#,
        )
        .unwrap();
        assert_eq!(request.path, "/ollama/api/chat");
        assert!(
            matches!(&request.key, KeyPlacement::Header((name, prefix)) if name == "authorization" && prefix == "Bearer ")
        );
        let sent: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(sent["keep_alive"], "30m");
        assert_eq!(sent["model"], "qwen3:8b");
    }

    #[test]
    fn what_ollama_cannot_express_is_refused_by_name() {
        let user = r#"{"role": "user", "content": "hi"}"#;
        for (extra, field) in [
            (r#""n": 2"#, "n"),
            (r#""logit_bias": {"50256": -100}"#, "logit_bias"),
            (r#""tool_choice": "required""#, "tool_choice"),
            (r#""tool_choice": "none""#, "tool_choice"),
            (
                r#""tool_choice": {"type": "function", "function": {"name": "f"}}"#,
                "tool_choice",
            ),
            (r#""parallel_tool_calls": false"#, "parallel_tool_calls"),
            (r#""user": "u-1""#, "user"),
            (r#""reasoning_effort": "low""#, "reasoning_effort"),
            (r#""response_format": {"type": "grammar"}"#, "response_format.type"),
            (
                r#""stream": true, "stream_options": {"include_obfuscation": true}"#,
                "stream_options.include_obfuscation",
            ),
            (
                r#""tools": [{"type": "function", "function": {"name": "f", "strict": true}}]"#,
                "tools[0].function.strict",
            ),
        ] {
            let error = refused(&format!(r#"{{"model": "x", "messages": [{user}], {extra}}}"#));
            assert_eq!((error.status, error.param.as_deref()), (400, Some(field)), "{extra}");
            assert!(error.message.contains(field), "{extra}: {}", error.message);
        }
        assert!(
            translate(
                &target(),
                format!(r#"{{"model": "x", "messages": [{user}], "n": 1}}"#).as_bytes()
            )
            .is_ok()
        );
    }

    #[test]
    fn message_fields_ollama_lacks_are_refused_by_name() {
        for (messages, field) in [
            (
                r#"{"role": "user", "content": "hi", "name": "ann"}"#,
                "messages[0].name",
            ),
            (
                r#"{"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}"#,
                "messages[0].content[1]",
            ),
            (
                r#"{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}"#,
                "messages[0].content[0]",
            ),
            (
                r#"{"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}"#,
                "messages[0].tool_calls[0].function.arguments",
            ),
            (
                r#"{"role": "user", "content": "hi", "audio": {"id": "a"}}"#,
                "messages[0].audio",
            ),
        ] {
            let error = refused(&format!(r#"{{"model": "x", "messages": [{messages}]}}"#));
            assert_eq!((error.status, error.param.as_deref()), (400, Some(field)), "{messages}");
        }
        let error = refused(
            r#"{"model": "x", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]}"#,
        );
        assert!(error.message.contains("inline"), "{}", error.message);
    }

    #[test]
    fn a_malformed_request_names_the_field() {
        let error = refused(r#"{"model": "x", "messages": [{"role": "user", "content": "hi"}], "max_tokens": -1}"#);
        assert_eq!((error.status, error.param.as_deref()), (400, Some("max_tokens")));
    }
}
