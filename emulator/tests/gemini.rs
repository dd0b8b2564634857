mod common;

use common::*;
use serde_json::{Value, json};

const KEY: &[(&str, &str)] = &[("x-goog-api-key", "AIza-test")];

fn request(text: &str) -> Value {
    json!({
        "systemInstruction": {"parts": [{"text": "be brief"}]},
        "contents": [{"role": "user", "parts": [{"text": text}]}],
        "generationConfig": {"temperature": 0.2},
    })
}

#[tokio::test]
async fn generate_content() {
    let (addr, emulator) = start().await;
    let resp = post(
        addr,
        "/v1beta/models/gemini-2.5-flash:generateContent",
        KEY,
        &request("hi gemini"),
    )
    .await;
    assert_eq!(resp.status, 200);
    let v = resp.json();
    let candidate = &v["candidates"][0];
    assert_eq!(candidate["content"]["role"], "model");
    assert_eq!(candidate["content"]["parts"], json!([{"text": "Echo: hi gemini"}]));
    assert_eq!(candidate["finishReason"], "STOP");
    assert_eq!(candidate["index"], 0);
    assert_eq!(v["usageMetadata"]["promptTokenCount"], 4);
    assert_eq!(v["usageMetadata"]["candidatesTokenCount"], 3);
    assert_eq!(v["usageMetadata"]["totalTokenCount"], 7);
    assert_eq!(v["modelVersion"], "gemini-2.5-flash");
    assert_eq!(emulator.requests()[0].provider, "gemini");

    // Key in the query.
    let resp = post(
        addr,
        "/v1beta/models/gemini-2.5-flash:generateContent?key=AIza",
        &[],
        &request("q"),
    )
    .await;
    assert_eq!(resp.status, 200);
}

#[tokio::test]
async fn stream_generate_content_sse() {
    let (addr, _) = start().await;
    let path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse";
    let resp = post(addr, path, KEY, &request("one two three")).await;
    assert!(resp.header("content-type").unwrap().starts_with("text/event-stream"));
    let events = resp.sse();
    assert_eq!(events.len(), 4);
    let chunks: Vec<Value> = events
        .iter()
        .map(|(n, d)| {
            assert!(n.is_none());
            serde_json::from_str(d).unwrap()
        })
        .collect();
    let text: String = chunks
        .iter()
        .map(|c| c["candidates"][0]["content"]["parts"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, "Echo: one two three");
    let last = chunks.last().unwrap();
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    assert_eq!(last["usageMetadata"]["candidatesTokenCount"], 4);

    // Without alt=sse: a JSON array.
    let path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent";
    let v = post(addr, path, KEY, &request("one two")).await.json();
    assert_eq!(v.as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn max_output_tokens() {
    let (addr, _) = start().await;
    let mut body = request("a b c");
    body["generationConfig"]["maxOutputTokens"] = json!(2);
    let v = post(addr, "/v1beta/models/g:generateContent", KEY, &body).await.json();
    assert_eq!(v["candidates"][0]["content"]["parts"][0]["text"], "Echo: a");
    assert_eq!(v["candidates"][0]["finishReason"], "MAX_TOKENS");
}

#[tokio::test]
async fn function_call() {
    let (addr, _) = start().await;
    let mut body = request("call find_docs rust traits");
    body["tools"] = json!([{"functionDeclarations": [{"name": "find_docs", "parameters": {"type": "object"}}]}]);
    let v = post(addr, "/v1beta/models/g:generateContent", KEY, &body).await.json();
    let part = &v["candidates"][0]["content"]["parts"][0];
    assert_eq!(
        part["functionCall"],
        json!({"name": "find_docs", "args": {"query": "rust traits"}})
    );

    let resp = post(addr, "/v1beta/models/g:streamGenerateContent?alt=sse", KEY, &body).await;
    let events = resp.sse();
    let chunk: Value = serde_json::from_str(&events[0].1).unwrap();
    assert_eq!(
        chunk["candidates"][0]["content"]["parts"][0]["functionCall"]["name"],
        "find_docs"
    );
}

#[tokio::test]
async fn errors_and_faults() {
    let (addr, _) = start().await;
    let resp = post(addr, "/v1beta/models/g:generateContent", &[], &request("x")).await;
    assert_eq!(resp.status, 403);
    assert_eq!(resp.json()["error"]["status"], "PERMISSION_DENIED");
    assert_eq!(resp.json()["error"]["code"], 403);

    let resp = post(addr, "/v1beta/models/g:generateContent", KEY, &json!({})).await;
    assert_eq!(resp.status, 400);
    assert_eq!(resp.json()["error"]["status"], "INVALID_ARGUMENT");

    let resp = post(
        addr,
        "/v1beta/models/g:generateContent",
        KEY,
        &request("x [fault:429:2]"),
    )
    .await;
    assert_eq!(resp.status, 429);
    assert_eq!(resp.header("retry-after"), Some("2"));
    assert_eq!(resp.json()["error"]["status"], "RESOURCE_EXHAUSTED");

    let resp = post(addr, "/v1beta/models/g:generateContent", KEY, &request("x [fault:500]")).await;
    assert_eq!(resp.status, 500);
    assert_eq!(resp.json()["error"]["status"], "INTERNAL");

    let path = "/v1beta/models/g:streamGenerateContent?alt=sse";
    let resp = post(addr, path, KEY, &request("a b c [fault:crlf,cut:2]")).await;
    assert!(resp.incomplete);
    assert!(resp.text().contains("\r\n\r\n"));
    assert_eq!(resp.sse().len(), 2);
}
