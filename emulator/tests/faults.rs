mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

fn openai(text: &str, stream: bool) -> Value {
    json!({"model": "gpt-4o", "stream": stream, "messages": [{"role": "user", "content": text}]})
}

fn anthropic(text: &str, stream: bool) -> Value {
    json!({"model": "claude", "max_tokens": 50, "stream": stream,
        "messages": [{"role": "user", "content": text}]})
}

fn with(auth: &[(&'static str, &'static str)], fault: &'static str) -> Vec<(&'static str, &'static str)> {
    let mut h = auth.to_vec();
    h.push(("x-emulator-fault", fault));
    h
}

#[tokio::test]
async fn rate_limit_by_header_and_marker() {
    let (addr, _) = start().await;
    let resp = post(
        addr,
        "/v1/chat/completions",
        &with(OPENAI_AUTH, "429:7"),
        &openai("hi", false),
    )
    .await;
    assert_eq!(resp.status, 429);
    assert_eq!(resp.header("retry-after"), Some("7"));
    let v = resp.json();
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert!(v["error"].get("type").is_some() && v["error"].get("param").is_some());

    let resp = post(addr, "/v1/messages", ANTHROPIC_AUTH, &anthropic("hi [fault:429]", true)).await;
    assert_eq!(resp.status, 429);
    assert_eq!(resp.header("retry-after"), Some("1"));
    let v = resp.json();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "rate_limit_error");
}

#[tokio::test]
async fn server_error() {
    let (addr, _) = start().await;
    let resp = post(
        addr,
        "/v1/chat/completions",
        &with(OPENAI_AUTH, "500"),
        &openai("hi", true),
    )
    .await;
    assert_eq!(resp.status, 500);
    assert_eq!(resp.json()["error"]["type"], "server_error");
    let resp = post(addr, "/v1/messages", ANTHROPIC_AUTH, &anthropic("x [fault:500]", false)).await;
    assert_eq!(resp.status, 500);
    assert_eq!(resp.json()["error"]["type"], "api_error");
}

#[tokio::test]
async fn faults_apply_after_validation() {
    let (addr, _) = start().await;
    let resp = post(
        addr,
        "/v1/chat/completions",
        &[("x-emulator-fault", "429")],
        &openai("hi", false),
    )
    .await;
    assert_eq!(resp.status, 401);
}

#[tokio::test]
async fn slow() {
    let (addr, _) = start().await;
    let started = Instant::now();
    let resp = post(
        addr,
        "/v1/chat/completions",
        OPENAI_AUTH,
        &openai("hi [fault:slow:150]", false),
    )
    .await;
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["choices"][0]["message"]["content"], "Echo: hi");
}

#[tokio::test]
async fn cut() {
    let (addr, _) = start().await;
    let resp = post(
        addr,
        "/v1/chat/completions",
        &with(OPENAI_AUTH, "cut:2"),
        &openai("a b c d", true),
    )
    .await;
    assert_eq!(resp.status, 200);
    assert!(resp.incomplete, "the connection must close without the end of the body");
    let events = resp.sse();
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|(_, d)| d != "[DONE]"));

    let resp = post(
        addr,
        "/v1/messages",
        ANTHROPIC_AUTH,
        &anthropic("a b c [fault:cut:3]", true),
    )
    .await;
    assert!(resp.incomplete);
    let names: Vec<_> = resp.sse().into_iter().map(|(n, _)| n.unwrap()).collect();
    assert_eq!(names, ["message_start", "content_block_start", "ping"]);

    // A cut larger than the stream changes nothing.
    let resp = post(
        addr,
        "/v1/chat/completions",
        &with(OPENAI_AUTH, "cut:100"),
        &openai("a", true),
    )
    .await;
    assert!(!resp.incomplete);
    assert_eq!(resp.sse().last().unwrap().1, "[DONE]");
}

#[tokio::test]
async fn malformed() {
    let (addr, _) = start().await;
    let resp = post(
        addr,
        "/v1/chat/completions",
        &with(OPENAI_AUTH, "malformed"),
        &openai("a b c", true),
    )
    .await;
    let events = resp.sse();
    assert_eq!(events.last().unwrap().1, "[DONE]");
    let bad = events[..events.len() - 1]
        .iter()
        .filter(|(_, d)| serde_json::from_str::<Value>(d).is_err())
        .count();
    assert_eq!(bad, 1);
    // The bad event is mid-stream.
    assert!(serde_json::from_str::<Value>(&events[0].1).is_ok());

    let resp = post(
        addr,
        "/v1/messages",
        ANTHROPIC_AUTH,
        &anthropic("a b [fault:malformed]", true),
    )
    .await;
    let events = resp.sse();
    let bad = events
        .iter()
        .filter(|(_, d)| serde_json::from_str::<Value>(d).is_err())
        .count();
    assert_eq!(bad, 1);
    assert_eq!(events.last().unwrap().0.as_deref(), Some("message_stop"));
}

#[tokio::test]
async fn split() {
    let (addr, _) = start().await;
    let plain = post(addr, "/v1/messages", ANTHROPIC_AUTH, &anthropic("split me up", true)).await;
    let split = post(
        addr,
        "/v1/messages",
        ANTHROPIC_AUTH,
        &anthropic("split me up [fault:split]", true),
    )
    .await;
    assert!(!split.incomplete);
    let names = |r: &Resp| r.sse().into_iter().map(|(n, _)| n).collect::<Vec<_>>();
    assert_eq!(names(&plain), names(&split));
    assert!(split.frames > split.sse().len() * 3, "frames: {}", split.frames);
    let text: String = split
        .sse()
        .iter()
        .filter(|(n, _)| n.as_deref() == Some("content_block_delta"))
        .map(|(_, d)| {
            serde_json::from_str::<Value>(d).unwrap()["delta"]["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(text, "Echo: split me up");

    // A non-streamed body can be split too.
    let resp = post(
        addr,
        "/v1/chat/completions",
        &with(OPENAI_AUTH, "split"),
        &openai("x", false),
    )
    .await;
    assert!(resp.frames > 10);
    assert_eq!(resp.json()["choices"][0]["message"]["content"], "Echo: x");
}

#[tokio::test]
async fn crlf() {
    let (addr, _) = start().await;
    let resp = post(
        addr,
        "/v1/chat/completions",
        &with(OPENAI_AUTH, "crlf"),
        &openai("a b", true),
    )
    .await;
    let text = resp.text();
    assert!(text.ends_with("data: [DONE]\r\n\r\n"));
    assert_eq!(text.matches('\n').count(), text.matches("\r\n").count());
    assert_eq!(resp.sse().last().unwrap().1, "[DONE]");
}

#[tokio::test]
async fn combined() {
    let (addr, _) = start().await;
    let resp = post(
        addr,
        "/v1/messages",
        &with(ANTHROPIC_AUTH, "split, crlf, cut:4"),
        &anthropic("a b c d", true),
    )
    .await;
    assert!(resp.incomplete);
    assert!(resp.frames > 4);
    let text = resp.text();
    assert_eq!(text.matches('\n').count(), text.matches("\r\n").count());
    assert_eq!(resp.sse().len(), 4);
}
