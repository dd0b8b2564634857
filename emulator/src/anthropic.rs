//! Anthropic `POST /v1/messages`.

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{self, Chat, Faults, Finish, body_answer, faults_for, sse_event};
use crate::{Answer, Req, json_response};

fn error(req: &Req, status: StatusCode, kind: &str, message: &str) -> Answer {
    let body = json!({
        "type": "error",
        "error": {"type": kind, "message": message},
        "request_id": format!("req_emu{:012}", req.seq),
    });
    let mut response = json_response(status, &body);
    if let Ok(v) = http::HeaderValue::from_str(&format!("req_emu{:012}", req.seq)) {
        response.headers_mut().insert("request-id", v);
    }
    Answer::Done(response)
}

pub(crate) fn handle(req: &Req) -> (Answer, Faults) {
    let none = Faults::default();
    if req.path != "/v1/messages" {
        return (error(req, StatusCode::NOT_FOUND, "not_found_error", "Not found"), none);
    }
    if req.method != Method::POST {
        return (
            error(
                req,
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request_error",
                "Method not allowed",
            ),
            none,
        );
    }
    if req.header("x-api-key").is_none_or(|k| k.trim().is_empty()) {
        return (
            error(
                req,
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "x-api-key header is required",
            ),
            none,
        );
    }
    if req.header("anthropic-version").is_none_or(|k| k.trim().is_empty()) {
        return (
            error(
                req,
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "anthropic-version: header is required",
            ),
            none,
        );
    }
    let body: Value = match serde_json::from_slice(&req.body) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return (
                error(
                    req,
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "There was an issue with your request body: invalid JSON",
                ),
                none,
            );
        }
    };
    for field in ["model", "messages", "max_tokens"] {
        if body.get(field).is_none_or(Value::is_null) {
            let message = format!("{field}: Field required");
            return (
                error(req, StatusCode::BAD_REQUEST, "invalid_request_error", &message),
                none,
            );
        }
    }
    let model = body["model"].as_str().unwrap_or_default().to_string();
    let Some(max_tokens) = body["max_tokens"].as_u64().filter(|&n| n >= 1) else {
        return (
            error(
                req,
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "max_tokens: Input should be greater than or equal to 1",
            ),
            none,
        );
    };
    let Some(messages) = body["messages"].as_array().filter(|m| !m.is_empty()) else {
        return (
            error(
                req,
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "messages: at least one message is required",
            ),
            none,
        );
    };
    let mut chat = Chat {
        max_tokens: Some(max_tokens),
        ..Chat::default()
    };
    if let Some(system) = body.get("system") {
        chat.texts.push(common::content_text(system));
    }
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str);
        if !matches!(role, Some("user" | "assistant")) {
            let message = format!("messages.{i}.role: Input should be 'user' or 'assistant'");
            return (
                error(req, StatusCode::BAD_REQUEST, "invalid_request_error", &message),
                none,
            );
        }
        let text = m.get("content").map(common::content_text).unwrap_or_default();
        if role == Some("user") {
            chat.last_user = text.clone();
        }
        chat.texts.push(text);
    }
    if let Some(tools) = body.get("tools").and_then(Value::as_array) {
        chat.tools = tools
            .iter()
            .filter_map(|t| t.get("name").and_then(Value::as_str))
            .map(str::to_string)
            .collect();
    }
    if let Some(stops) = body.get("stop_sequences").and_then(Value::as_array) {
        chat.stop = stops.iter().filter_map(Value::as_str).map(str::to_string).collect();
    }
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);

    let faults = faults_for(req, &chat.last_user);
    if let Some(retry) = faults.rate_limit {
        let Answer::Done(mut response) = error(
            req,
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            "This request would exceed your organization's rate limit. Please try again later.",
        ) else {
            unreachable!()
        };
        response.headers_mut().insert("retry-after", retry.into());
        return (Answer::Done(response), faults);
    }
    if faults.server_error {
        return (
            error(
                req,
                StatusCode::INTERNAL_SERVER_ERROR,
                "api_error",
                "Internal server error",
            ),
            faults,
        );
    }

    let reply = common::reply(&chat);
    let id = format!("msg_emu{:016}", req.seq);
    let tool_id = format!("toolu_emu{:014}", req.seq);
    let (stop_reason, stop_sequence) = match &reply.finish {
        Finish::Stop => ("end_turn", Value::Null),
        Finish::Length => ("max_tokens", Value::Null),
        Finish::StopSequence(s) => ("stop_sequence", json!(s)),
        Finish::Tool => ("tool_use", Value::Null),
    };

    if !stream {
        let content = match &reply.tool {
            Some((name, args)) => json!([{"type": "tool_use", "id": tool_id, "name": name, "input": args}]),
            None => json!([{"type": "text", "text": reply.text()}]),
        };
        let body = json!({
            "id": id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": stop_sequence,
            "usage": {"input_tokens": reply.prompt_tokens, "output_tokens": reply.completion_tokens},
        });
        let answer = body_answer(&faults, StatusCode::OK, &body, "{\"type\": \"message\", \"content\": [");
        return (answer, faults);
    }

    let mut events = vec![sse_event(
        "message_start",
        &json!({"type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": reply.prompt_tokens, "output_tokens": 1},
        }}),
    )];
    match &reply.tool {
        Some((name, args)) => {
            events.push(sse_event(
                "content_block_start",
                &json!({"type": "content_block_start", "index": 0,
                    "content_block": {"type": "tool_use", "id": tool_id, "name": name, "input": {}}}),
            ));
            events.push(sse_event("ping", &json!({"type": "ping"})));
            for piece in common::split_pieces(&args.to_string(), 4) {
                events.push(sse_event(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": 0,
                        "delta": {"type": "input_json_delta", "partial_json": piece}}),
                ));
            }
        }
        None => {
            events.push(sse_event(
                "content_block_start",
                &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ));
            events.push(sse_event("ping", &json!({"type": "ping"})));
            for piece in &reply.pieces {
                events.push(sse_event(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}),
                ));
            }
        }
    }
    events.push(sse_event(
        "content_block_stop",
        &json!({"type": "content_block_stop", "index": 0}),
    ));
    events.push(sse_event(
        "message_delta",
        &json!({"type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
            "usage": {"output_tokens": reply.completion_tokens}}),
    ));
    events.push(sse_event("message_stop", &json!({"type": "message_stop"})));
    let answer = Answer::Events {
        status: StatusCode::OK,
        content_type: "text/event-stream; charset=utf-8",
        headers: vec![("request-id", format!("req_emu{:012}", req.seq))],
        events,
        malformed:
            "event: content_block_delta\ndata: {\"type\": \"content_block_delta\", \"index\": 0, \"delta\": {\n\n"
                .to_string(),
        sse: true,
    };
    (answer, faults)
}
