mod common;

use common::*;
use serde_json::{Value, json};

fn chat(text: &str) -> Value {
    json!({"model": "gpt-4o", "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": text},
    ]})
}

const TOOLS: &str = r#"[{"type":"function","function":{"name":"search","parameters":{"type":"object","properties":{"query":{"type":"string"}}}}}]"#;

/// The data payloads of an SSE body, checking it ends with `[DONE]`.
fn chunks(resp: &Resp) -> Vec<Value> {
    let events = resp.sse();
    assert_eq!(events.last().unwrap().1, "[DONE]");
    events[..events.len() - 1]
        .iter()
        .map(|(name, data)| {
            assert!(name.is_none());
            serde_json::from_str(data).unwrap()
        })
        .collect()
}

#[tokio::test]
async fn non_streamed_completion() {
    let (addr, emulator) = start().await;
    let resp = post(addr, "/v1/chat/completions", OPENAI_AUTH, &chat("hello there world")).await;
    assert_eq!(resp.status, 200);
    assert!(resp.header("content-type").unwrap().starts_with("application/json"));
    let v = resp.json();
    assert_eq!(v["object"], "chat.completion");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert!(v["created"].as_u64().unwrap() > 0);
    assert_eq!(v["model"], "gpt-4o");
    assert_eq!(v["choices"][0]["index"], 0);
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["message"]["content"], "Echo: hello there world");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], 5);
    assert_eq!(v["usage"]["completion_tokens"], 4);
    assert_eq!(v["usage"]["total_tokens"], 9);

    assert_eq!(emulator.count(), 1);
    let received = &emulator.requests()[0];
    assert_eq!(received.provider, "openai");
    assert_eq!(received.path, "/v1/chat/completions");
    assert_eq!(received.header("authorization"), Some("Bearer sk-test"));
    assert_eq!(received.json()["messages"][1]["content"], "hello there world");

    let listed = send(addr, "GET", "/_emulator/requests", &[], "").await.json();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["provider"], "openai");
    assert_eq!(listed[0]["headers"]["authorization"], "Bearer sk-test");
}

#[tokio::test]
async fn content_parts_are_read() {
    let (addr, _) = start().await;
    let body = json!({"model": "gpt-4o", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "from parts"}]}]});
    let v = post(addr, "/v1/chat/completions", OPENAI_AUTH, &body).await.json();
    assert_eq!(v["choices"][0]["message"]["content"], "Echo: from parts");
}

#[tokio::test]
async fn streamed_with_usage() {
    let (addr, _) = start().await;
    let mut body = chat("one two three");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let resp = post(addr, "/v1/chat/completions", OPENAI_AUTH, &body).await;
    assert_eq!(resp.status, 200);
    assert!(resp.header("content-type").unwrap().starts_with("text/event-stream"));
    assert!(!resp.incomplete);
    let chunks = chunks(&resp);
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Echo: one two three");
    // A word at a time: "" + 4 words.
    let content_chunks = chunks
        .iter()
        .filter(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|s| !s.is_empty())
        })
        .count();
    assert_eq!(content_chunks, 4);
    let n = chunks.len();
    assert_eq!(chunks[n - 2]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[n - 1]["choices"], json!([]));
    assert_eq!(chunks[n - 1]["usage"]["completion_tokens"], 4);
    assert_eq!(chunks[n - 1]["usage"]["prompt_tokens"], 5);
    assert_eq!(chunks[n - 1]["usage"]["total_tokens"], 9);
}

#[tokio::test]
async fn streamed_without_usage() {
    let (addr, _) = start().await;
    let mut body = chat("hi");
    body["stream"] = json!(true);
    let resp = post(addr, "/v1/chat/completions", OPENAI_AUTH, &body).await;
    let chunks = chunks(&resp);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert!(chunks.iter().all(|c| c.get("usage").is_none()));
}

#[tokio::test]
async fn errors() {
    let (addr, _) = start().await;
    let resp = post(addr, "/v1/chat/completions", &[], &chat("x")).await;
    assert_eq!(resp.status, 401);
    let e = &resp.json()["error"];
    assert_eq!(e["type"], "invalid_request_error");
    assert!(e["message"].as_str().unwrap().contains("API key"));
    assert!(e.get("param").is_some() && e.get("code").is_some());

    let resp = post(addr, "/v1/chat/completions", OPENAI_AUTH, &json!({"model": "gpt-4o"})).await;
    assert_eq!(resp.status, 400);
    let e = &resp.json()["error"];
    assert_eq!(e["param"], "messages");
    assert_eq!(e["code"], "missing_required_parameter");

    let resp = post(addr, "/v1/chat/completions", OPENAI_AUTH, &json!({"messages": []})).await;
    assert_eq!(resp.status, 400);
    assert_eq!(resp.json()["error"]["message"], "you must provide a model parameter");

    let resp = send(addr, "POST", "/v1/chat/completions", OPENAI_AUTH, "{not json").await;
    assert_eq!(resp.status, 400);
    assert_eq!(resp.json()["error"]["type"], "invalid_request_error");

    let resp = post(
        addr,
        "/v1/chat/completions",
        OPENAI_AUTH,
        &json!({"model": "m", "messages": []}),
    )
    .await;
    assert_eq!(resp.status, 400);
    assert_eq!(resp.json()["error"]["code"], "empty_array");
}

#[tokio::test]
async fn models() {
    let (addr, _) = start().await;
    let v = send(addr, "GET", "/v1/models", OPENAI_AUTH, "").await.json();
    assert_eq!(v["object"], "list");
    assert!(v["data"].as_array().unwrap().iter().all(|m| m["object"] == "model"));
    assert_eq!(send(addr, "GET", "/v1/models", &[], "").await.status, 401);
}

#[tokio::test]
async fn tool_call() {
    let (addr, _) = start().await;
    let mut body = chat("please call search rust async");
    body["tools"] = serde_json::from_str(TOOLS).unwrap();
    let v = post(addr, "/v1/chat/completions", OPENAI_AUTH, &body).await.json();
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], Value::Null);
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert!(call["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(call["function"]["name"], "search");
    let args: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"query": "rust async"}));

    // Undeclared tool: plain echo.
    let v = post(addr, "/v1/chat/completions", OPENAI_AUTH, &chat("call search x"))
        .await
        .json();
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn streamed_tool_call() {
    let (addr, _) = start().await;
    let mut body = chat("call search weir gateway");
    body["tools"] = serde_json::from_str(TOOLS).unwrap();
    body["stream"] = json!(true);
    let chunks = chunks(&post(addr, "/v1/chat/completions", OPENAI_AUTH, &body).await);
    let first = &chunks[0]["choices"][0]["delta"];
    assert_eq!(first["role"], "assistant");
    assert_eq!(first["tool_calls"][0]["function"]["name"], "search");
    assert_eq!(first["tool_calls"][0]["index"], 0);
    let pieces: Vec<&str> = chunks[1..]
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert!(pieces.len() > 1);
    let args: Value = serde_json::from_str(&pieces.concat()).unwrap();
    assert_eq!(args, json!({"query": "weir gateway"}));
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "tool_calls");
}

#[tokio::test]
async fn max_tokens_truncates() {
    let (addr, _) = start().await;
    let mut body = chat("a b c d e");
    body["max_tokens"] = json!(3);
    let v = post(addr, "/v1/chat/completions", OPENAI_AUTH, &body).await.json();
    assert_eq!(v["choices"][0]["message"]["content"], "Echo: a b");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 3);

    let mut body = chat("a b c d e");
    body["max_completion_tokens"] = json!(2);
    body["stream"] = json!(true);
    let chunks = chunks(&post(addr, "/v1/chat/completions", OPENAI_AUTH, &body).await);
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Echo: a");
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "length");
}

#[tokio::test]
async fn azure_path_form() {
    let (addr, emulator) = start().await;
    let path = "/openai/deployments/my-gpt/chat/completions?api-version=2024-10-21";
    let body = json!({"messages": [{"role": "user", "content": "hi azure"}]});
    let resp = post(addr, path, &[("api-key", "k")], &body).await;
    assert_eq!(resp.status, 200);
    let v = resp.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "my-gpt");
    assert_eq!(v["choices"][0]["message"]["content"], "Echo: hi azure");
    assert_eq!(emulator.requests()[0].provider, "azure");

    let resp = post(addr, path, &[], &body).await;
    assert_eq!(resp.status, 401);
    assert_eq!(resp.json()["error"]["code"], "401");

    let resp = post(
        addr,
        "/openai/deployments/my-gpt/chat/completions",
        &[("api-key", "k")],
        &body,
    )
    .await;
    assert_eq!(resp.status, 404);

    let mut body = body;
    body["stream"] = json!(true);
    let resp = post(addr, path, &[("api-key", "k")], &body).await;
    let events = resp.sse();
    assert_eq!(events.last().unwrap().1, "[DONE]");
    let first: Value = serde_json::from_str(&events[0].1).unwrap();
    assert_eq!(first["choices"], json!([]));
    assert!(first["prompt_filter_results"].is_array());
    let text: String = events[1..events.len() - 1]
        .iter()
        .map(|(_, d)| serde_json::from_str::<Value>(d).unwrap())
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_string))
        .collect();
    assert_eq!(text, "Echo: hi azure");
}
