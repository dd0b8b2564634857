//! The AI gateway end to end: the real gateway, the provider shims built
//! from `plugins/`, and the provider emulator standing in for Anthropic,
//! Gemini, OpenAI and Ollama.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::{Scraped, TestGateway, access_lines, client, emulator, wait_for};
use serde_json::{Value, json};
use weir_emulator::Emulator;

mod accounting;
mod failover;
mod observed;
mod providers;
mod requests;

/// Every shim, under its plugin name.
const SHIMS: &[(&str, &str)] = &[
    ("ai-openai", "ai-openai"),
    ("ai-anthropic", "ai-anthropic"),
    ("ai-gemini", "ai-gemini"),
    ("ai-ollama", "ai-ollama"),
    ("api-key-auth", "api-key-auth"),
];

/// One target per provider, each under its own model name, all on one
/// emulator.
fn target(name: &str, shim: &str, addr: SocketAddr, model: &str, alias: &str, extra: &str) -> String {
    let timeout = if extra.contains("response_timeout_ms") {
        ""
    } else {
        "response_timeout_ms = 5000"
    };
    format!(
        r#"
[[routes.ai.targets]]
name = "{name}"
shim = "{shim}"
base_url = "http://{addr}"
model = "{model}"
alias = "{alias}"
key_secret = "provider-key"
{timeout}
{extra}
"#
    )
}

fn config(targets: &str, ai_extra: &str, route_extra: &str) -> String {
    format!(
        r#"
[[listeners]]
address = "127.0.0.1:0"

[admin]
address = "127.0.0.1:0"

[ai]
usage_db = "usage.db"
{ai_extra}

[secrets.provider-key]
value = "sk-provider-secret"

[[routes]]
name = "ai"
path_prefix = "/v1"

[[routes.plugins]]
name = "api-key-auth"
config = {{ keys = {{ alice = "alice-key", bob = "bob-key" }} }}

[routes.ai]
{route_extra}
{targets}
"#
    )
}

fn all_providers(addr: SocketAddr) -> String {
    [
        target("openai", "ai-openai", addr, "gpt-test", "openai", ""),
        target("anthropic", "ai-anthropic", addr, "claude-test", "anthropic", ""),
        target("gemini", "ai-gemini", addr, "gemini-test", "gemini", ""),
        target("ollama", "ai-ollama", addr, "llama-test", "ollama", ""),
    ]
    .concat()
}

async fn chat(gw: &TestGateway, who: &str, body: Value) -> reqwest::Response {
    client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-api-key", format!("{who}-key"))
        .json(&body)
        .send()
        .await
        .expect("request")
}

/// The `data:` payloads of an event stream.
fn events(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .map(str::to_string)
        .collect()
}

/// The text a stream of chunks adds up to.
fn streamed_text(events: &[String]) -> String {
    events
        .iter()
        .filter(|e| *e != "[DONE]")
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_string))
        .collect()
}

fn user(text: &str) -> Value {
    json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}])
}

/// Ask for `text` whole or streamed, expecting 200 from `target`; the
/// answer's text.
async fn answered_by(gw: &TestGateway, target: &str, text: &str, stream: bool) -> String {
    let response = chat(
        gw,
        "alice",
        json!({"model": "chat", "messages": user(text), "stream": stream}),
    )
    .await;
    assert_eq!(response.status(), 200, "stream {stream}");
    assert_eq!(response.headers()["x-weir-target"], target, "stream {stream}");
    let body = response.text().await.unwrap();
    if stream {
        streamed_text(&events(&body))
    } else {
        let answer: Value = serde_json::from_str(&body).unwrap();
        answer["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}
