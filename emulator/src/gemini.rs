//! Gemini `POST /v1beta/models/{model}:generateContent` and
//! `:streamGenerateContent` (`?alt=sse` for SSE, a JSON array otherwise).

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{self, Chat, Faults, Finish, body_answer, faults_for, sse_data};
use crate::{Answer, Req, json_response};

fn error(status: StatusCode, state: &str, message: &str) -> Answer {
    let body = json!({"error": {"code": status.as_u16(), "message": message, "status": state}});
    Answer::Done(json_response(status, &body))
}

pub(crate) fn handle(req: &Req) -> (Answer, Faults) {
    let none = Faults::default();
    let rest = req
        .path
        .strip_prefix("/v1beta/models/")
        .or_else(|| req.path.strip_prefix("/v1/models/"));
    let Some((model, method)) = rest.and_then(|r| r.rsplit_once(':')) else {
        return (
            error(StatusCode::NOT_FOUND, "NOT_FOUND", "Requested entity was not found."),
            none,
        );
    };
    let stream = match method {
        "generateContent" => false,
        "streamGenerateContent" => true,
        _ => {
            return (
                error(StatusCode::NOT_FOUND, "NOT_FOUND", "Requested entity was not found."),
                none,
            );
        }
    };
    if req.method != Method::POST {
        return (
            error(StatusCode::METHOD_NOT_ALLOWED, "UNIMPLEMENTED", "Method not allowed."),
            none,
        );
    }
    let has_key = req.header("x-goog-api-key").is_some_and(|k| !k.trim().is_empty())
        || req.query_param("key").is_some_and(|k| !k.is_empty());
    if !has_key {
        return (
            error(
                StatusCode::FORBIDDEN,
                "PERMISSION_DENIED",
                "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
            ),
            none,
        );
    }
    let body: Value = match serde_json::from_slice(&req.body) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return (
                error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_ARGUMENT",
                    "Invalid JSON payload received.",
                ),
                none,
            );
        }
    };
    let Some(contents) = body.get("contents").and_then(Value::as_array).filter(|c| !c.is_empty()) else {
        return (
            error(
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                "* GenerateContentRequest.contents: contents is not specified\n",
            ),
            none,
        );
    };
    let model = model.to_string();
    let mut chat = Chat {
        max_tokens: body
            .pointer("/generationConfig/maxOutputTokens")
            .and_then(Value::as_u64),
        ..Chat::default()
    };
    if let Some(system) = body.get("systemInstruction").or_else(|| body.get("system_instruction")) {
        chat.texts
            .push(system.get("parts").map(common::content_text).unwrap_or_default());
    }
    for (i, content) in contents.iter().enumerate() {
        let role = content.get("role").and_then(Value::as_str).unwrap_or("user");
        if !matches!(role, "user" | "model" | "function") {
            let message = format!("Please use a valid role: user, model. (contents[{i}].role: {role})");
            return (error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", &message), none);
        }
        let text = content.get("parts").map(common::content_text).unwrap_or_default();
        if role == "user"
            && content
                .get("parts")
                .is_some_and(|p| p.as_array().is_some_and(|a| a.iter().any(|p| p.get("text").is_some())))
        {
            chat.last_user = text.clone();
        }
        chat.texts.push(text);
    }
    if let Some(tools) = body.get("tools").and_then(Value::as_array) {
        for tool in tools {
            let decls = tool
                .get("functionDeclarations")
                .or_else(|| tool.get("function_declarations"))
                .and_then(Value::as_array);
            for decl in decls.into_iter().flatten() {
                if let Some(name) = decl.get("name").and_then(Value::as_str) {
                    chat.tools.push(name.to_string());
                }
            }
        }
    }
    if let Some(stops) = body
        .pointer("/generationConfig/stopSequences")
        .and_then(Value::as_array)
    {
        chat.stop = stops.iter().filter_map(Value::as_str).map(str::to_string).collect();
    }
    let faults = faults_for(req, &chat.last_user);
    if let Some(retry) = faults.rate_limit {
        let Answer::Done(mut response) = error(
            StatusCode::TOO_MANY_REQUESTS,
            "RESOURCE_EXHAUSTED",
            "Resource has been exhausted (e.g. check quota).",
        ) else {
            unreachable!()
        };
        response.headers_mut().insert("retry-after", retry.into());
        return (Answer::Done(response), faults);
    }
    if faults.server_error {
        return (
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
            ),
            faults,
        );
    }
    let reply = common::reply(&chat);
    let finish = match reply.finish {
        Finish::Length => "MAX_TOKENS",
        _ => "STOP",
    };
    let usage = json!({
        "promptTokenCount": reply.prompt_tokens,
        "candidatesTokenCount": reply.completion_tokens,
        "totalTokenCount": reply.total_tokens(),
    });
    let response_id = format!("emu{:012}", req.seq);
    let response = |parts: Value, finish: Option<&str>, usage: Value| {
        let mut candidate = json!({"content": {"parts": parts, "role": "model"}, "index": 0});
        if let Some(f) = finish {
            candidate["finishReason"] = json!(f);
        }
        json!({"candidates": [candidate], "usageMetadata": usage, "modelVersion": model, "responseId": response_id})
    };
    let tool_part = reply
        .tool
        .as_ref()
        .map(|(name, args)| json!([{"functionCall": {"name": name, "args": args}}]));
    if !stream {
        let parts = tool_part.clone().unwrap_or_else(|| json!([{"text": reply.text()}]));
        let body = response(parts, Some(finish), usage);
        return (
            body_answer(&faults, StatusCode::OK, &body, "{\"candidates\": ["),
            faults,
        );
    }
    let partial_usage = json!({"promptTokenCount": reply.prompt_tokens, "totalTokenCount": reply.prompt_tokens});
    let mut chunks = Vec::new();
    match &tool_part {
        Some(parts) => chunks.push(response(parts.clone(), Some(finish), usage)),
        None => {
            let n = reply.pieces.len();
            for (i, piece) in reply.pieces.iter().enumerate() {
                if i + 1 == n {
                    chunks.push(response(json!([{"text": piece}]), Some(finish), usage.clone()));
                } else {
                    chunks.push(response(json!([{"text": piece}]), None, partial_usage.clone()));
                }
            }
            if n == 0 {
                chunks.push(response(json!([{"text": ""}]), Some(finish), usage));
            }
        }
    }
    let sse = req.query_param("alt") == Some("sse");
    let (events, content_type, malformed) = if sse {
        (
            chunks.iter().map(sse_data).collect::<Vec<_>>(),
            "text/event-stream",
            "data: {\"candidates\": [{\"content\": \n\n".to_string(),
        )
    } else {
        let mut events: Vec<String> = chunks
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{}{c:#}", if i == 0 { "[" } else { "\n,\r\n" }))
            .collect();
        events.push("\n]".to_string());
        (
            events,
            "application/json; charset=UTF-8",
            "\n,\r\n{\"candidates\": [".to_string(),
        )
    };
    let answer = Answer::Events {
        status: StatusCode::OK,
        content_type,
        headers: Vec::new(),
        events,
        malformed,
        sse,
    };
    (answer, faults)
}
