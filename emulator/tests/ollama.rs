mod common;

use common::*;
use serde_json::{Value, json};

fn chat(text: &str) -> Value {
    json!({"model": "llama3.2", "messages": [{"role": "user", "content": text}]})
}

#[tokio::test]
async fn streamed_by_default() {
    let (addr, emulator) = start().await;
    let resp = post(addr, "/api/chat", &[], &chat("hi there llama")).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("application/x-ndjson"));
    let lines = resp.ndjson();
    assert_eq!(lines.len(), 5);
    for line in &lines[..4] {
        assert_eq!(line["done"], false);
        assert_eq!(line["model"], "llama3.2");
        assert_eq!(line["message"]["role"], "assistant");
        assert!(line["created_at"].as_str().unwrap().ends_with('Z'));
    }
    let text: String = lines
        .iter()
        .map(|l| l["message"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(text, "Echo: hi there llama");
    let last = lines.last().unwrap();
    assert_eq!(last["done"], true);
    assert_eq!(last["done_reason"], "stop");
    assert_eq!(last["prompt_eval_count"], 3);
    assert_eq!(last["eval_count"], 4);
    assert!(last["total_duration"].as_u64().unwrap() > 0);
    assert_eq!(emulator.requests()[0].provider, "ollama");
}

#[tokio::test]
async fn non_streamed() {
    let (addr, _) = start().await;
    let mut body = chat("hello");
    body["stream"] = json!(false);
    let v = post(addr, "/api/chat", &[], &body).await.json();
    assert_eq!(v["message"], json!({"role": "assistant", "content": "Echo: hello"}));
    assert_eq!(v["done"], true);
    assert_eq!(v["done_reason"], "stop");
    assert_eq!(v["eval_count"], 2);
}

#[tokio::test]
async fn num_predict_truncates() {
    let (addr, _) = start().await;
    let mut body = chat("a b c d");
    body["options"] = json!({"num_predict": 2});
    let lines = post(addr, "/api/chat", &[], &body).await.ndjson();
    let text: String = lines
        .iter()
        .map(|l| l["message"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(text, "Echo: a");
    assert_eq!(lines.last().unwrap()["done_reason"], "length");
    assert_eq!(lines.last().unwrap()["eval_count"], 2);
}

#[tokio::test]
async fn tool_call() {
    let (addr, _) = start().await;
    let mut body = chat("call get_weather Berlin today");
    body["tools"] = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]);
    body["stream"] = json!(false);
    let v = post(addr, "/api/chat", &[], &body).await.json();
    let call = &v["message"]["tool_calls"][0]["function"];
    assert_eq!(call["name"], "get_weather");
    assert_eq!(call["arguments"], json!({"query": "Berlin today"}));

    body["stream"] = json!(true);
    let lines = post(addr, "/api/chat", &[], &body).await.ndjson();
    assert_eq!(lines[0]["message"]["tool_calls"][0]["function"]["name"], "get_weather");
    assert_eq!(lines.last().unwrap()["done"], true);
}

#[tokio::test]
async fn errors_and_faults() {
    let (addr, _) = start().await;
    let resp = post(addr, "/api/chat", &[], &json!({"messages": []})).await;
    assert_eq!(resp.status, 400);
    assert_eq!(resp.json(), json!({"error": "model is required"}));

    let resp = post(addr, "/api/chat", &[], &chat("x [fault:429:3]")).await;
    assert_eq!(resp.status, 429);
    assert_eq!(resp.header("retry-after"), Some("3"));
    assert!(resp.json()["error"].is_string());

    let resp = post(addr, "/api/chat", &[("x-emulator-fault", "cut:2")], &chat("a b c d")).await;
    assert!(resp.incomplete);
    assert_eq!(resp.ndjson().len(), 2);

    let resp = post(
        addr,
        "/api/chat",
        &[("x-emulator-fault", "malformed,split")],
        &chat("a b c"),
    )
    .await;
    assert!(resp.frames > 10);
    let bad = resp
        .text()
        .lines()
        .filter(|l| serde_json::from_str::<Value>(l).is_err())
        .count();
    assert_eq!(bad, 1);
}
