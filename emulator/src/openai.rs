//! OpenAI `POST /v1/chat/completions`, `GET /v1/models`, and the Azure
//! OpenAI form `POST /openai/deployments/{deployment}/chat/completions`.

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{self, Chat, Faults, Finish, body_answer, faults_for, sse_data};
use crate::{Answer, Req, json_response};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    OpenAi,
    Azure,
}

const MODELS: &[&str] = &["gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "o3-mini"];

fn error(
    flavor: Flavor,
    status: StatusCode,
    message: &str,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Answer {
    let body = match flavor {
        Flavor::OpenAi => json!({"error": {"message": message, "type": kind, "param": param, "code": code}}),
        // Azure's own (non model) errors: code is the status as a string.
        Flavor::Azure if matches!(status.as_u16(), 401 | 404 | 429) => {
            json!({"error": {"code": status.as_u16().to_string(), "message": message}})
        }
        Flavor::Azure => json!({"error": {"message": message, "type": kind, "param": param, "code": code}}),
    };
    Answer::Done(json_response(status, &body))
}

pub(crate) fn handle(req: &Req, flavor: Flavor) -> (Answer, Faults) {
    let no_faults = Faults::default();
    // Routing.
    let deployment = match flavor {
        Flavor::OpenAi => {
            if req.path == "/v1/models" && req.method == Method::GET {
                if let Some(answer) = check_auth(req, flavor) {
                    return (answer, no_faults);
                }
                let data: Vec<Value> = MODELS
                    .iter()
                    .map(|m| json!({"id": m, "object": "model", "created": 1_715_367_049, "owned_by": "system"}))
                    .collect();
                let body = json!({"object": "list", "data": data});
                return (Answer::Done(json_response(StatusCode::OK, &body)), no_faults);
            }
            if req.path != "/v1/chat/completions" {
                let message = format!("Invalid URL ({} {})", req.method, req.path);
                return (
                    error(
                        flavor,
                        StatusCode::NOT_FOUND,
                        &message,
                        "invalid_request_error",
                        None,
                        None,
                    ),
                    no_faults,
                );
            }
            None
        }
        Flavor::Azure => {
            let deployment = req
                .path
                .strip_prefix("/openai/deployments/")
                .and_then(|rest| rest.strip_suffix("/chat/completions"))
                .filter(|d| !d.is_empty() && !d.contains('/'));
            match deployment {
                Some(d) if req.query_param("api-version").is_some_and(|v| !v.is_empty()) => Some(d.to_string()),
                _ => {
                    return (
                        error(flavor, StatusCode::NOT_FOUND, "Resource not found", "", None, None),
                        no_faults,
                    );
                }
            }
        }
    };
    if req.method != Method::POST {
        let message = format!("Invalid method for URL ({} {})", req.method, req.path);
        return (
            error(
                flavor,
                StatusCode::METHOD_NOT_ALLOWED,
                &message,
                "invalid_request_error",
                None,
                None,
            ),
            no_faults,
        );
    }
    if let Some(answer) = check_auth(req, flavor) {
        return (answer, no_faults);
    }
    let body: Value = match serde_json::from_slice(&req.body) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            let message = "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you have trouble figuring out how to fix this, please contact us through our help center at help.openai.com.)";
            return (
                error(
                    flavor,
                    StatusCode::BAD_REQUEST,
                    message,
                    "invalid_request_error",
                    None,
                    None,
                ),
                no_faults,
            );
        }
    };
    let model = match (body.get("model").and_then(Value::as_str), &deployment) {
        (Some(m), _) => m.to_string(),
        (None, Some(d)) => d.clone(),
        (None, None) => {
            return (
                error(
                    flavor,
                    StatusCode::BAD_REQUEST,
                    "you must provide a model parameter",
                    "invalid_request_error",
                    None,
                    None,
                ),
                no_faults,
            );
        }
    };
    let Some(messages) = body.get("messages") else {
        return (
            error(
                flavor,
                StatusCode::BAD_REQUEST,
                "Missing required parameter: 'messages'.",
                "invalid_request_error",
                Some("messages"),
                Some("missing_required_parameter"),
            ),
            no_faults,
        );
    };
    let Some(messages) = messages.as_array() else {
        return (
            error(
                flavor,
                StatusCode::BAD_REQUEST,
                "Invalid type for 'messages': expected an array of objects.",
                "invalid_request_error",
                Some("messages"),
                Some("invalid_type"),
            ),
            no_faults,
        );
    };
    if messages.is_empty() {
        return (
            error(
                flavor,
                StatusCode::BAD_REQUEST,
                "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
                "invalid_request_error",
                Some("messages"),
                Some("empty_array"),
            ),
            no_faults,
        );
    }
    for (i, m) in messages.iter().enumerate() {
        if m.get("role").and_then(Value::as_str).is_none() {
            let message = format!("Missing required parameter: 'messages[{i}].role'.");
            let param = format!("messages[{i}].role");
            return (
                error(
                    flavor,
                    StatusCode::BAD_REQUEST,
                    &message,
                    "invalid_request_error",
                    Some(&param),
                    Some("missing_required_parameter"),
                ),
                no_faults,
            );
        }
    }
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    if body.get("stream_options").is_some_and(|v| !v.is_null()) && !stream {
        return (
            error(
                flavor,
                StatusCode::BAD_REQUEST,
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                "invalid_request_error",
                Some("stream_options"),
                None,
            ),
            no_faults,
        );
    }
    let include_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);

    let mut chat = Chat { ..Chat::default() };
    chat.read_openai_style(messages, &body);
    chat.max_tokens = body
        .get("max_completion_tokens")
        .and_then(Value::as_u64)
        .or_else(|| body.get("max_tokens").and_then(Value::as_u64));
    chat.stop = match body.get("stop") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        _ => Vec::new(),
    };

    let faults = faults_for(req, &chat.last_user);
    if let Some(retry) = faults.rate_limit {
        let message = match flavor {
            Flavor::OpenAi => format!(
                "Rate limit reached for {model} on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in {retry}s."
            ),
            Flavor::Azure => format!(
                "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version {} have exceeded call rate limit of your current OpenAI S0 pricing tier. Please retry after {retry} seconds.",
                req.query_param("api-version").unwrap_or("")
            ),
        };
        let Answer::Done(mut response) = error(
            flavor,
            StatusCode::TOO_MANY_REQUESTS,
            &message,
            "requests",
            None,
            Some("rate_limit_exceeded"),
        ) else {
            unreachable!()
        };
        response.headers_mut().insert("retry-after", retry.into());
        response
            .headers_mut()
            .insert("x-ratelimit-remaining-requests", 0.into());
        return (Answer::Done(response), faults);
    }
    if faults.server_error {
        let message = "The server had an error while processing your request. Sorry about that!";
        return (
            error(
                flavor,
                StatusCode::INTERNAL_SERVER_ERROR,
                message,
                "server_error",
                None,
                None,
            ),
            faults,
        );
    }

    let reply = common::reply(&chat);
    let id = format!("chatcmpl-emu{:012}", req.seq);
    let created = common::now_secs();
    let finish_reason = match &reply.finish {
        Finish::Stop | Finish::StopSequence(_) => "stop",
        Finish::Length => "length",
        Finish::Tool => "tool_calls",
    };
    let usage = json!({
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.total_tokens(),
    });
    let call_id = format!("call_emu{:012}", req.seq);
    let filter = json!({
        "hate": {"filtered": false, "severity": "safe"},
        "self_harm": {"filtered": false, "severity": "safe"},
        "sexual": {"filtered": false, "severity": "safe"},
        "violence": {"filtered": false, "severity": "safe"},
    });

    if !stream {
        let mut message = json!({"role": "assistant", "content": null, "refusal": null});
        match &reply.tool {
            Some((name, args)) => {
                message["tool_calls"] = json!([{
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": args.to_string()},
                }]);
            }
            None => message["content"] = json!(reply.text()),
        }
        let mut choice = json!({"index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason});
        let mut body = json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [],
            "usage": usage,
            "system_fingerprint": "fp_emulator",
        });
        if flavor == Flavor::Azure {
            choice["content_filter_results"] = filter.clone();
            body["prompt_filter_results"] = json!([{"prompt_index": 0, "content_filter_results": filter}]);
        }
        body["choices"] = json!([choice]);
        let answer = body_answer(
            &faults,
            StatusCode::OK,
            &body,
            "{\"id\": \"chatcmpl-malformed\", \"choices\": [",
        );
        return (answer, faults);
    }

    let chunk = |choices: Value, usage_value: Value| {
        let mut c = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_emulator",
            "choices": choices,
        });
        if include_usage {
            c["usage"] = usage_value;
        }
        sse_data(&c)
    };
    let choice =
        |delta: Value, finish: Value| json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]);
    let mut events = Vec::new();
    if flavor == Flavor::Azure {
        events.push(sse_data(&json!({
            "choices": [], "created": 0, "id": "", "model": "", "object": "",
            "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": filter}],
        })));
    }
    match &reply.tool {
        Some((name, args)) => {
            events.push(chunk(
                choice(
                    json!({"role": "assistant", "content": null, "tool_calls": [{
                        "index": 0, "id": call_id, "type": "function",
                        "function": {"name": name, "arguments": ""},
                    }], "refusal": null}),
                    Value::Null,
                ),
                Value::Null,
            ));
            for piece in common::split_pieces(&args.to_string(), 4) {
                events.push(chunk(
                    choice(
                        json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
                        Value::Null,
                    ),
                    Value::Null,
                ));
            }
        }
        None => {
            events.push(chunk(
                choice(
                    json!({"role": "assistant", "content": "", "refusal": null}),
                    Value::Null,
                ),
                Value::Null,
            ));
            for piece in &reply.pieces {
                events.push(chunk(choice(json!({"content": piece}), Value::Null), Value::Null));
            }
        }
    }
    events.push(chunk(choice(json!({}), json!(finish_reason)), Value::Null));
    if include_usage {
        events.push(chunk(json!([]), usage));
    }
    events.push("data: [DONE]\n\n".to_string());
    let answer = Answer::Events {
        status: StatusCode::OK,
        content_type: "text/event-stream; charset=utf-8",
        headers: Vec::new(),
        events,
        malformed: "data: {\"id\": \"chatcmpl-malformed\", \"choices\": [{\"delta\": \n\n".to_string(),
        sse: true,
    };
    (answer, faults)
}

fn check_auth(req: &Req, flavor: Flavor) -> Option<Answer> {
    let key = req
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    let bearer = key.is_some_and(|k| !k.trim().is_empty());
    // Keys starting `sk-bad` are refused, quoted back as OpenAI does.
    if let Some(bad) = key.filter(|k| k.starts_with("sk-bad")) {
        return Some(error(
            flavor,
            StatusCode::UNAUTHORIZED,
            &format!(
                "Incorrect API key provided: {bad}. You can find your API key at https://platform.openai.com/account/api-keys."
            ),
            "invalid_request_error",
            None,
            Some("invalid_api_key"),
        ));
    }
    match flavor {
        Flavor::OpenAi if !bearer => Some(error(
            flavor,
            StatusCode::UNAUTHORIZED,
            "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username. You can obtain an API key from https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            None,
            None,
        )),
        Flavor::Azure if !bearer && req.header("api-key").is_none_or(|k| k.trim().is_empty()) => Some(error(
            flavor,
            StatusCode::UNAUTHORIZED,
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.",
            "",
            None,
            None,
        )),
        _ => None,
    }
}
