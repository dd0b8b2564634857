//! Ollama `POST /api/chat` (NDJSON streaming by default).

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{self, Chat, Faults, Finish, body_answer, faults_for};
use crate::{Answer, Req, json_response};

fn error(status: StatusCode, message: &str) -> Answer {
    Answer::Done(json_response(status, &json!({ "error": message })))
}

pub(crate) fn handle(req: &Req) -> (Answer, Faults) {
    let none = Faults::default();
    if req.path == "/api/tags" && req.method == Method::GET {
        let body = json!({"models": [{"name": "llama3.2:latest", "model": "llama3.2:latest",
            "modified_at": "2025-01-01T00:00:00Z", "size": 2_019_393_189u64, "digest": "a80c4f17acd5",
            "details": {"format": "gguf", "family": "llama", "parameter_size": "3.2B", "quantization_level": "Q4_K_M"}}]});
        return (Answer::Done(json_response(StatusCode::OK, &body)), none);
    }
    if req.path != "/api/chat" {
        return (
            Answer::Done(crate::full(StatusCode::NOT_FOUND, "text/plain", "404 page not found")),
            none,
        );
    }
    if req.method != Method::POST {
        return (error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"), none);
    }
    let body: Value = match serde_json::from_slice(&req.body) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return (
                error(StatusCode::BAD_REQUEST, "invalid character in request body"),
                none,
            );
        }
    };
    let Some(model) = body.get("model").and_then(Value::as_str).filter(|m| !m.is_empty()) else {
        return (error(StatusCode::BAD_REQUEST, "model is required"), none);
    };
    let model = model.to_string();
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(true);
    let mut chat = Chat {
        max_tokens: body
            .pointer("/options/num_predict")
            .and_then(Value::as_i64)
            .filter(|&n| n >= 0)
            .map(|n| n as u64),
        ..Chat::default()
    };
    chat.read_openai_style(&messages, &body);
    if let Some(stops) = body.pointer("/options/stop").and_then(Value::as_array) {
        chat.stop = stops.iter().filter_map(Value::as_str).map(str::to_string).collect();
    }
    let faults = faults_for(req, &chat.last_user);
    if let Some(retry) = faults.rate_limit {
        let Answer::Done(mut response) = error(StatusCode::TOO_MANY_REQUESTS, "too many requests, please retry later")
        else {
            unreachable!()
        };
        response.headers_mut().insert("retry-after", retry.into());
        return (Answer::Done(response), faults);
    }
    if faults.server_error {
        return (
            error(StatusCode::INTERNAL_SERVER_ERROR, "an internal error occurred"),
            faults,
        );
    }
    let created_at = common::rfc3339_now();
    if messages.is_empty() {
        let body = json!({"model": model, "created_at": created_at,
            "message": {"role": "assistant", "content": ""}, "done_reason": "load", "done": true});
        return (body_answer(&faults, StatusCode::OK, &body, "{\"model\": "), faults);
    }
    let reply = common::reply(&chat);
    let done_reason = match reply.finish {
        Finish::Length => "length",
        _ => "stop",
    };
    let final_fields = |mut v: Value| {
        v["done_reason"] = json!(done_reason);
        v["done"] = json!(true);
        v["total_duration"] = json!(1_000_000 + 100_000 * reply.completion_tokens);
        v["load_duration"] = json!(100_000);
        v["prompt_eval_count"] = json!(reply.prompt_tokens);
        v["prompt_eval_duration"] = json!(200_000);
        v["eval_count"] = json!(reply.completion_tokens);
        v["eval_duration"] = json!(100_000 * reply.completion_tokens);
        v
    };
    let tool_calls = reply
        .tool
        .as_ref()
        .map(|(name, args)| json!([{"function": {"name": name, "arguments": args}}]));
    if !stream {
        let mut message = json!({"role": "assistant", "content": reply.text()});
        if let Some(calls) = &tool_calls {
            message["tool_calls"] = calls.clone();
        }
        let body = final_fields(json!({"model": model, "created_at": created_at, "message": message}));
        return (body_answer(&faults, StatusCode::OK, &body, "{\"model\": "), faults);
    }
    let line = |v: Value| format!("{v}\n");
    let mut events = Vec::new();
    match &tool_calls {
        Some(calls) => events.push(line(json!({"model": model, "created_at": created_at,
            "message": {"role": "assistant", "content": "", "tool_calls": calls}, "done": false}))),
        None => {
            for piece in &reply.pieces {
                events.push(line(json!({"model": model, "created_at": created_at,
                    "message": {"role": "assistant", "content": piece}, "done": false})));
            }
        }
    }
    events.push(line(final_fields(json!({"model": model, "created_at": created_at,
        "message": {"role": "assistant", "content": ""}}))));
    let answer = Answer::Events {
        status: StatusCode::OK,
        content_type: "application/x-ndjson",
        headers: Vec::new(),
        events,
        malformed: "{\"model\": \"malformed\", \"message\": {\"role\": \n".to_string(),
        sse: false,
    };
    (answer, faults)
}
