mod common;

use common::*;
use serde_json::{Value, json};

fn messages(text: &str) -> Value {
    json!({"model": "claude-sonnet-4-5", "max_tokens": 100, "system": "be brief",
        "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}]})
}

fn tools() -> Value {
    json!([{"name": "lookup", "description": "look up", "input_schema": {"type": "object",
        "properties": {"query": {"type": "string"}}}}])
}

/// SSE events as (name, data JSON); checks the name matches the data's type.
fn events(resp: &Resp) -> Vec<(String, Value)> {
    resp.sse()
        .into_iter()
        .map(|(name, data)| {
            let name = name.expect("named event");
            let v: Value = serde_json::from_str(&data).unwrap();
            assert_eq!(v["type"], name.as_str());
            (name, v)
        })
        .collect()
}

#[tokio::test]
async fn non_streamed_message() {
    let (addr, emulator) = start().await;
    let resp = post(addr, "/v1/messages", ANTHROPIC_AUTH, &messages("hello claude")).await;
    assert_eq!(resp.status, 200);
    let v = resp.json();
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert!(v["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(v["model"], "claude-sonnet-4-5");
    assert_eq!(v["content"], json!([{"type": "text", "text": "Echo: hello claude"}]));
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["stop_sequence"], Value::Null);
    assert_eq!(v["usage"]["input_tokens"], 4);
    assert_eq!(v["usage"]["output_tokens"], 3);
    assert_eq!(emulator.requests()[0].provider, "anthropic");
    assert_eq!(emulator.requests()[0].header("anthropic-version"), Some("2023-06-01"));
}

#[tokio::test]
async fn streamed_message() {
    let (addr, _) = start().await;
    let mut body = messages("stream me please");
    body["stream"] = json!(true);
    let resp = post(addr, "/v1/messages", ANTHROPIC_AUTH, &body).await;
    assert!(resp.header("content-type").unwrap().starts_with("text/event-stream"));
    let events = events(&resp);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(events[0].1["message"]["usage"]["input_tokens"], 5);
    assert_eq!(events[0].1["message"]["content"], json!([]));
    assert_eq!(events[1].1["content_block"], json!({"type": "text", "text": ""}));
    let text: String = events
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, v)| {
            assert_eq!(v["delta"]["type"], "text_delta");
            v["delta"]["text"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(text, "Echo: stream me please");
    assert_eq!(events[8].1["delta"]["stop_reason"], "end_turn");
    assert_eq!(events[8].1["usage"]["output_tokens"], 4);
}

#[tokio::test]
async fn errors() {
    let (addr, _) = start().await;
    let check = |resp: Resp, status: u16, kind: &str, message: &str| {
        assert_eq!(resp.status, status);
        let v = resp.json();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], kind);
        assert!(v["error"]["message"].as_str().unwrap().contains(message), "{v}");
    };
    let resp = post(
        addr,
        "/v1/messages",
        &[("anthropic-version", "2023-06-01")],
        &messages("x"),
    )
    .await;
    check(resp, 401, "authentication_error", "x-api-key");
    let resp = post(addr, "/v1/messages", &[("x-api-key", "k")], &messages("x")).await;
    check(resp, 400, "invalid_request_error", "anthropic-version");
    let mut body = messages("x");
    body.as_object_mut().unwrap().remove("max_tokens");
    let resp = post(addr, "/v1/messages", ANTHROPIC_AUTH, &body).await;
    check(resp, 400, "invalid_request_error", "max_tokens: Field required");
    let resp = post(
        addr,
        "/v1/messages",
        ANTHROPIC_AUTH,
        &json!({"model": "m", "max_tokens": 5}),
    )
    .await;
    check(resp, 400, "invalid_request_error", "messages: Field required");
}

#[tokio::test]
async fn tool_use() {
    let (addr, _) = start().await;
    let mut body = messages("call lookup the weather in Paris");
    body["tools"] = tools();
    let v = post(addr, "/v1/messages", ANTHROPIC_AUTH, &body).await.json();
    assert_eq!(v["stop_reason"], "tool_use");
    let block = &v["content"][0];
    assert_eq!(block["type"], "tool_use");
    assert!(block["id"].as_str().unwrap().starts_with("toolu_"));
    assert_eq!(block["name"], "lookup");
    assert_eq!(block["input"], json!({"query": "the weather in Paris"}));
}

#[tokio::test]
async fn streamed_tool_use() {
    let (addr, _) = start().await;
    let mut body = messages("call lookup the weather in Paris");
    body["tools"] = tools();
    body["stream"] = json!(true);
    let events = events(&post(addr, "/v1/messages", ANTHROPIC_AUTH, &body).await);
    let start = events.iter().find(|(n, _)| n == "content_block_start").unwrap();
    assert_eq!(start.1["content_block"]["type"], "tool_use");
    assert_eq!(start.1["content_block"]["name"], "lookup");
    assert_eq!(start.1["content_block"]["input"], json!({}));
    let pieces: Vec<String> = events
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, v)| {
            assert_eq!(v["delta"]["type"], "input_json_delta");
            v["delta"]["partial_json"].as_str().unwrap().to_string()
        })
        .collect();
    assert!(pieces.len() > 1);
    let input: Value = serde_json::from_str(&pieces.concat()).unwrap();
    assert_eq!(input, json!({"query": "the weather in Paris"}));
    let delta = events.iter().find(|(n, _)| n == "message_delta").unwrap();
    assert_eq!(delta.1["delta"]["stop_reason"], "tool_use");
    assert_eq!(events.last().unwrap().0, "message_stop");
}

#[tokio::test]
async fn max_tokens_and_stop_sequence() {
    let (addr, _) = start().await;
    let mut body = messages("one two three four");
    body["max_tokens"] = json!(2);
    let v = post(addr, "/v1/messages", ANTHROPIC_AUTH, &body).await.json();
    assert_eq!(v["content"][0]["text"], "Echo: one");
    assert_eq!(v["stop_reason"], "max_tokens");
    assert_eq!(v["usage"]["output_tokens"], 2);

    body["stream"] = json!(true);
    let events = events(&post(addr, "/v1/messages", ANTHROPIC_AUTH, &body).await);
    let delta = events.iter().find(|(n, _)| n == "message_delta").unwrap();
    assert_eq!(delta.1["delta"]["stop_reason"], "max_tokens");
    assert_eq!(delta.1["usage"]["output_tokens"], 2);

    let mut body = messages("one two STOP three");
    body["stop_sequences"] = json!(["STOP"]);
    let v = post(addr, "/v1/messages", ANTHROPIC_AUTH, &body).await.json();
    assert_eq!(v["content"][0]["text"], "Echo: one two");
    assert_eq!(v["stop_reason"], "stop_sequence");
    assert_eq!(v["stop_sequence"], "STOP");
}
