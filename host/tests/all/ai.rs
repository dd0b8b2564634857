//! The AI gateway end to end: the real gateway, the provider shims built
//! from `plugins/`, and the provider emulator standing in for Anthropic,
//! Gemini, OpenAI and Ollama.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::{Scraped, TestGateway, access_lines, client, emulator, wait_for};
use serde_json::{Value, json};
use weir_emulator::Emulator;

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

#[tokio::test]
async fn every_provider_answers_whole_and_streamed_in_openai_shape() {
    let (emu, addr) = emulator().await;
    let gw = TestGateway::start(&config(&all_providers(addr), "", ""), SHIMS).await;
    for model in ["openai", "anthropic", "gemini", "ollama"] {
        let response = chat(&gw, "alice", json!({"model": model, "messages": user("hello there")})).await;
        assert_eq!(response.status(), 200, "{model}");
        assert_eq!(response.headers()["x-weir-target"], model);
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["object"], "chat.completion", "{model}: {body}");
        assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"), "{model}: {body}");
        assert_eq!(body["choices"][0]["message"]["role"], "assistant", "{model}: {body}");
        assert_eq!(
            body["choices"][0]["message"]["content"], "Echo: hello there",
            "{model}: {body}"
        );
        assert_eq!(body["choices"][0]["finish_reason"], "stop", "{model}: {body}");
        // Prompt: "Be brief." and "hello there" are four words.
        assert_eq!(body["usage"]["prompt_tokens"], 4, "{model}: {body}");
        assert_eq!(body["usage"]["completion_tokens"], 3, "{model}: {body}");

        let response = chat(
            &gw,
            "alice",
            json!({"model": model, "messages": user("stream me please"), "stream": true, "stream_options": {"include_usage": true}}),
        )
        .await;
        assert_eq!(response.status(), 200, "{model}");
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let text = response.text().await.expect("body");
        let events = events(&text);
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{model}: {text}");
        assert_eq!(streamed_text(&events), "Echo: stream me please", "{model}: {text}");
        let usage: Value = serde_json::from_str(&events[events.len() - 2]).expect("usage chunk");
        assert_eq!(usage["usage"]["completion_tokens"], 4, "{model}: {text}");
    }
    // The provider key went to the emulator, in each provider's own place,
    // and never to the client.
    let requests = emu.requests();
    let key_of = |provider: &str| {
        let r = requests.iter().find(|r| r.provider == provider).expect("request seen");
        ["authorization", "x-api-key", "x-goog-api-key"]
            .iter()
            .find_map(|h| r.header(h).map(str::to_string))
    };
    assert_eq!(key_of("openai").as_deref(), Some("Bearer sk-provider-secret"));
    assert_eq!(key_of("anthropic").as_deref(), Some("sk-provider-secret"));
    assert_eq!(key_of("gemini").as_deref(), Some("sk-provider-secret"));
    assert!(
        requests.iter().all(|r| !r.body.contains("alice-key")),
        "the client's key leaked upstream"
    );
    gw.stop().await;
}

#[tokio::test]
async fn tool_calls_round_trip_through_every_provider() {
    let (_emu, addr) = emulator().await;
    let gw = TestGateway::start(&config(&all_providers(addr), "", ""), SHIMS).await;
    let tools = json!([{"type": "function", "function": {"name": "lookup", "description": "Look up", "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}}]);
    for model in ["openai", "anthropic", "gemini", "ollama"] {
        let response = chat(
            &gw,
            "alice",
            json!({"model": model, "messages": user("please call lookup weather in Oslo"), "tools": tools}),
        )
        .await;
        assert_eq!(response.status(), 200, "{model}");
        let body: Value = response.json().await.expect("json");
        let call = &body["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(body["choices"][0]["finish_reason"], "tool_calls", "{model}: {body}");
        assert_eq!(call["function"]["name"], "lookup", "{model}: {body}");
        let arguments: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(arguments["query"], "weather in Oslo", "{model}: {body}");

        // Streamed: the pieces add up to the same call.
        let response = chat(
            &gw,
            "alice",
            json!({"model": model, "messages": user("please call lookup weather in Oslo"), "tools": tools, "stream": true}),
        )
        .await;
        let text = response.text().await.unwrap();
        let mut name = String::new();
        let mut args = String::new();
        let mut finish = None;
        for event in events(&text).iter().filter(|e| *e != "[DONE]") {
            let chunk: Value = serde_json::from_str(event).unwrap();
            let choice = &chunk["choices"][0];
            if let Some(calls) = choice["delta"]["tool_calls"].as_array() {
                name.push_str(calls[0]["function"]["name"].as_str().unwrap_or_default());
                args.push_str(calls[0]["function"]["arguments"].as_str().unwrap_or_default());
            }
            if let Some(reason) = choice["finish_reason"].as_str() {
                finish = Some(reason.to_string());
            }
        }
        assert_eq!(name, "lookup", "{model}: {text}");
        assert_eq!(
            serde_json::from_str::<Value>(&args).unwrap()["query"],
            "weather in Oslo",
            "{model}: {text}"
        );
        assert_eq!(finish.as_deref(), Some("tool_calls"), "{model}: {text}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn models_are_listed_and_an_unknown_model_or_field_is_refused_clearly() {
    let (_emu, addr) = emulator().await;
    let gw = TestGateway::start(&config(&all_providers(addr), "", ""), SHIMS).await;
    let models: Value = client()
        .get(gw.url("/v1/models"))
        .header("x-api-key", "alice-key")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["openai", "anthropic", "gemini", "ollama"]);

    let response = chat(&gw, "alice", json!({"model": "nope", "messages": user("hi")})).await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "model_not_found");

    // Anthropic has no logit_bias: refused naming it, not dropped.
    let response = chat(
        &gw,
        "alice",
        json!({"model": "anthropic", "messages": user("hi"), "logit_bias": {"1": 5}}),
    )
    .await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"].as_str().unwrap().contains("logit_bias"),
        "{body}"
    );

    let response = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-api-key", "alice-key")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    // Without a key the auth plugin answers before any provider is asked.
    let response = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    gw.stop().await;
}

/// Two targets for one model: a faulty first (priority 0) and a healthy
/// second (priority 1).
async fn failover_gateway(first: &str) -> (TestGateway, Emulator, Emulator) {
    let (bad, bad_addr) = emulator().await;
    let (good, good_addr) = emulator().await;
    bad.set_faults(Some(first));
    let targets = [
        target("first", "ai-anthropic", bad_addr, "claude-test", "chat", "priority = 0"),
        target("second", "ai-gemini", good_addr, "gemini-test", "chat", "priority = 1"),
    ]
    .concat();
    let gw = TestGateway::start(&config(&targets, "", ""), SHIMS).await;
    (gw, bad, good)
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

#[tokio::test]
async fn a_target_answering_429_or_500_is_failed_over_whole_and_streamed() {
    for fault in ["429:30", "500"] {
        for stream in [false, true] {
            // A fresh gateway, so the faulty first target is asked first.
            let (gw, bad, good) = failover_gateway(fault).await;
            assert_eq!(answered_by(&gw, "second", "hi", stream).await, "Echo: hi");
            assert_eq!(
                (bad.count(), good.count()),
                (1, 1),
                "{fault}, stream {stream}: the failing target was asked first, then the next"
            );
            gw.stop().await;
        }
    }
}

/// A target's cool-down as the admin API shows it.
async fn cooling_ms(gw: &TestGateway) -> Option<i64> {
    let routes: Value = gw.admin_json("/routes").await;
    routes["routes"][0]["ai_targets"][0]["cooling_ms"].as_i64()
}

#[tokio::test]
async fn a_target_answering_429_rests_for_its_retry_after_and_is_asked_again_after_it() {
    let (gw, bad, good) = failover_gateway("429:2").await;
    assert_eq!(answered_by(&gw, "second", "hi", false).await, "Echo: hi");
    assert_eq!(bad.count(), 1);
    let rest = cooling_ms(&gw).await.expect("the 429 target is cooling down");
    assert!(rest > 0 && rest <= 2_000, "rests for its retry-after of 2 s: {rest} ms");

    // While it rests, whole and streamed requests go to the next target.
    bad.set_faults(None);
    for stream in [false, true] {
        assert_eq!(answered_by(&gw, "second", "hi", stream).await, "Echo: hi");
    }
    assert!(
        cooling_ms(&gw).await.is_some(),
        "the rest ended before the requests that should fall in it were answered"
    );
    assert_eq!((bad.count(), good.count()), (1, 3), "the resting target was asked");

    // Once the rest is over, it is first again.
    wait_for("the rest to end", Duration::from_secs(10), || async {
        cooling_ms(&gw).await.is_none().then_some(())
    })
    .await;
    assert_eq!(answered_by(&gw, "first", "hi", true).await, "Echo: hi");
    assert_eq!((bad.count(), good.count()), (2, 3));
    gw.stop().await;
}

#[tokio::test]
async fn a_target_failing_five_times_in_a_row_has_its_circuit_opened_and_is_asked_last() {
    let (gw, bad, good) = failover_gateway("500").await;
    for i in 0..8 {
        let response = chat(&gw, "alice", json!({"model": "chat", "messages": user("hi")})).await;
        assert_eq!(response.status(), 200, "request {i}");
        assert_eq!(response.headers()["x-weir-target"], "second", "request {i}");
    }
    assert_eq!(
        (bad.count(), good.count()),
        (5, 8),
        "after five failures the first-priority target is asked only after the others"
    );
    let routes: Value = gw.admin_json("/routes").await;
    assert_eq!(routes["routes"][0]["ai_targets"][0]["circuit"], "open");
    assert_eq!(routes["routes"][0]["ai_targets"][1]["circuit"], "closed");
    gw.stop().await;
}

#[tokio::test]
async fn ai_traffic_shows_in_the_metrics() {
    let (bad, bad_addr) = emulator().await;
    bad.set_faults(Some("500"));
    let (_good, good_addr) = emulator().await;
    let targets = [
        target("first", "ai-gemini", bad_addr, "gemini-test", "chat", "priority = 0"),
        target(
            "anthropic",
            "ai-anthropic",
            good_addr,
            "claude-test",
            "chat",
            "priority = 1",
        ),
    ]
    .concat();
    let prices = "[ai.prices.claude-test]\ninput_per_million = 3.0\noutput_per_million = 15.0\n\
                  [ai.budgets.consumers.bob]\ntokens = 1\nperiod = \"day\"\n";
    let gw = TestGateway::start(&config(&targets, prices, "cache = { ttl_secs = 60 }"), SHIMS).await;
    let refused = chat(&gw, "bob", json!({"model": "chat", "messages": user("over budget")})).await;
    // More than bob's whole budget: no wait helps, so no 429 to retry.
    assert_eq!(refused.status(), 400);
    assert!(refused.headers().get("retry-after").is_none());
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["code"], "request_exceeds_budget", "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("can never be admitted")
    );
    // The refusal is a usage row of its own: status, no target, no tokens.
    let usage = crate::common::wait_for(
        "bob's refused request in the ledger",
        Duration::from_secs(10),
        || async {
            let usage = gw.admin_json("/usage?consumer=bob").await;
            (usage["totals"]["requests"] == 1).then_some(usage)
        },
    )
    .await;
    let row = &usage["rows"][0];
    assert_eq!(
        (row["status"].as_u64(), row["target"].as_str()),
        (Some(400), Some("-")),
        "{usage}"
    );
    assert_eq!(
        (row["prompt_tokens"].as_u64(), row["completion_tokens"].as_u64()),
        (Some(0), Some(0))
    );
    let body = json!({"model": "chat", "messages": user("one two three"), "temperature": 0});
    for expected in ["miss", "hit"] {
        let response = chat(&gw, "alice", body.clone()).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-weir-cache"], expected);
        response.text().await.unwrap();
    }
    let m = Scraped::from(&gw).await;
    let claude = [("route", "ai"), ("target", "anthropic"), ("model", "claude-test")];
    let tokens = |kind: &str| {
        let mut labels = claude.to_vec();
        labels.push(("kind", kind));
        m.value("weir_ai_tokens_total", &labels)
    };
    // Prompt "one two three" plus the emulator's 2: 5; "Echo: one two three": 4.
    // The cache hit spent nothing.
    assert_eq!((tokens("prompt"), tokens("completion")), (5.0, 4.0));
    let cost = m.value("weir_ai_cost_total", &claude);
    assert!((cost - (5.0 * 3.0 + 4.0 * 15.0) / 1e6).abs() < 1e-12, "{cost}");
    // Misses: alice's first request, and bob's (looked up before his
    // budget refused it).
    assert_eq!(
        m.value("weir_ai_cache_total", &[("route", "ai"), ("result", "miss")]),
        2.0
    );
    assert_eq!(
        m.value("weir_ai_cache_total", &[("route", "ai"), ("result", "hit")]),
        1.0
    );
    assert_eq!(
        m.value(
            "weir_ai_failovers_total",
            &[("route", "ai"), ("target", "first"), ("model", "gemini-test")]
        ),
        1.0,
        "the failing target was passed over once; the hit never reached a target"
    );
    assert_eq!(
        m.value(
            "weir_requests_total",
            &[("route", "ai"), ("method", "POST"), ("status", "2xx")]
        ),
        2.0
    );
    assert_eq!(m.value("weir_ai_budget_rejections_total", &[("route", "ai")]), 1.0);
    // The miss asked the failing target, then the good one: two attempts
    // of the route's AI targets, the second a retry.
    let attempts = |target: &str, result: &str| {
        m.value(
            "weir_upstream_attempts_total",
            &[("upstream", "ai"), ("target", target), ("result", result)],
        )
    };
    assert_eq!((attempts("first", "5xx"), attempts("anthropic", "2xx")), (1.0, 1.0));
    assert_eq!(
        m.value(
            "weir_upstream_retries_total",
            &[("upstream", "ai"), ("target", "anthropic")]
        ),
        1.0
    );
    // The shims' calls are plugin calls: the failing target's translated
    // the request and the error, the next one the request and the answer.
    let calls = |plugin: &str, phase: &str| {
        m.value(
            "weir_plugin_calls_total",
            &[("plugin", plugin), ("phase", phase), ("result", "continue")],
        )
    };
    assert_eq!(
        (calls("ai-gemini", "request"), calls("ai-gemini", "response")),
        (1.0, 1.0)
    );
    assert_eq!(
        (calls("ai-anthropic", "request"), calls("ai-anthropic", "response")),
        (1.0, 1.0)
    );
    // And so they are on the dashboard.
    let data = gw.admin_json("/dashboard/data?minutes=1").await;
    let shim_calls = |name: &str| {
        data["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["plugin"] == name)
            .map(|p| p["calls"].clone())
    };
    assert_eq!(shim_calls("ai-anthropic"), Some(json!(2)), "{data}");
    assert_eq!(shim_calls("ai-gemini"), Some(json!(2)), "{data}");
    gw.stop().await;
}

#[tokio::test]
async fn ai_requests_are_logged_with_target_model_cache_and_tokens() {
    let (_emu, addr) = emulator().await;
    let targets = target("anthropic", "ai-anthropic", addr, "claude-test", "chat", "");
    let prices = "[ai.prices.claude-test]\ninput_per_million = 3.0\noutput_per_million = 15.0\n";
    let cfg = format!(
        "[access_log]\nto = \"access.log\"\n{}",
        config(&targets, prices, "cache = { ttl_secs = 60 }")
    );
    let gw = TestGateway::start(&cfg, SHIMS).await;
    let body = json!({"model": "chat", "messages": user("one two three"), "temperature": 0});
    for expected in ["miss", "hit"] {
        let response = chat(&gw, "alice", body.clone()).await;
        assert_eq!(response.headers()["x-weir-cache"], expected);
        response.text().await.unwrap();
    }
    // Not cacheable (temperature above 0), streamed.
    let warm = json!({"model": "chat", "messages": user("one two three"), "temperature": 0.5, "stream": true});
    let response = chat(&gw, "bob", warm).await;
    assert_eq!(response.headers()["x-weir-cache"], "bypass");
    assert!(response.text().await.unwrap().ends_with("data: [DONE]\n\n"));

    let lines = access_lines(gw.dir.path(), 3).await;
    let ai: Vec<&Value> = lines.iter().map(|line| &line["ai"]).collect();
    let cost = (5.0 * 3.0 + 4.0 * 15.0) / 1e6;
    for (line, (consumer, cache, tokens)) in lines.iter().zip([
        ("alice", "miss", (5, 4)),
        ("alice", "hit", (0, 0)),
        ("bob", "bypass", (5, 4)),
    ]) {
        assert_eq!(line["route"], "ai");
        assert_eq!(line["status"], 200);
        assert_eq!(line["consumer"], consumer);
        assert_eq!(line["target"], "anthropic", "{line}");
        let ai = &line["ai"];
        assert_eq!(ai["target"], "anthropic");
        assert_eq!(ai["model"], "claude-test");
        assert_eq!(ai["cache"], cache, "{line}");
        assert_eq!(
            (ai["prompt_tokens"].as_u64(), ai["completion_tokens"].as_u64()),
            (Some(tokens.0), Some(tokens.1)),
            "{line}"
        );
        let expected_cost = if tokens.0 > 0 { cost } else { 0.0 };
        assert!((ai["cost"].as_f64().unwrap() - expected_cost).abs() < 1e-12, "{line}");
    }
    // Each target asked is an attempt, as for an upstream route; a cache
    // hit asked none.
    for (line, asked) in lines.iter().zip([true, false, true]) {
        let attempts = line["attempts"].as_array().cloned().unwrap_or_default();
        if asked {
            assert_eq!(attempts.len(), 1, "{line}");
            assert_eq!(
                (&attempts[0]["target"], &attempts[0]["result"]),
                (&json!("anthropic"), &json!("200"))
            );
            assert!(line["upstream_ms"].as_f64().is_some(), "{line}");
        } else {
            assert!(attempts.is_empty() && line["upstream_ms"].is_null(), "{line}");
        }
    }
    assert!(ai[0].get("ttft_ms").is_none(), "a whole answer has no first-token time");
    assert!(ai[2]["ttft_ms"].as_u64().is_some(), "a streamed one has");
    let text = serde_json::to_string(&lines).unwrap();
    for secret in ["alice-key", "bob-key", "sk-provider-secret"] {
        assert!(!text.contains(secret), "{secret} was logged");
    }
    gw.stop().await;
}

#[tokio::test]
async fn a_target_refusing_connections_is_failed_over() {
    let (good, good_addr) = emulator().await;
    let dead = crate::common::dead_address().await;
    let targets = [
        target("dead", "ai-openai", dead, "gpt-test", "chat", "priority = 0"),
        target("alive", "ai-ollama", good_addr, "llama-test", "chat", "priority = 1"),
    ]
    .concat();
    let gw = TestGateway::start(&config(&targets, "", ""), SHIMS).await;
    for (asked, stream) in [false, true].into_iter().enumerate() {
        assert_eq!(answered_by(&gw, "alive", "hi", stream).await, "Echo: hi");
        assert_eq!(good.count(), asked + 1);
    }
    // Both tries reached the dead target first: its circuit is still closed.
    let routes: Value = gw.admin_json("/routes").await;
    assert_eq!(routes["routes"][0]["ai_targets"][0]["circuit"], "closed");
    gw.stop().await;
}

#[tokio::test]
async fn when_every_target_fails_the_client_gets_an_openai_error_naming_them() {
    let (bad, bad_addr) = emulator().await;
    bad.set_faults(Some("500"));
    let dead = crate::common::dead_address().await;
    let targets = [
        target("one", "ai-anthropic", bad_addr, "claude-test", "chat", ""),
        target("two", "ai-openai", dead, "gpt-test", "chat", ""),
    ]
    .concat();
    let gw = TestGateway::start(&config(&targets, "", ""), SHIMS).await;
    let response = chat(&gw, "alice", json!({"model": "chat", "messages": user("hi")})).await;
    assert!(response.status().is_server_error(), "{}", response.status());
    let body: Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("one") && message.contains("two"), "{message}");
    gw.stop().await;
}

#[tokio::test]
async fn a_stream_cut_midway_ends_with_an_error_event_not_a_clean_finish() {
    for shim in ["ai-anthropic", "ai-openai", "ai-gemini", "ai-ollama"] {
        let (emu, addr) = emulator().await;
        emu.set_faults(Some("cut:3"));
        let targets = target("only", shim, addr, "m-test", "chat", "");
        let gw = TestGateway::start(&config(&targets, "", ""), SHIMS).await;
        let response = chat(
            &gw,
            "alice",
            json!({"model": "chat", "messages": user("a long answer with many words in it"), "stream": true}),
        )
        .await;
        assert_eq!(response.status(), 200, "{shim}");
        let text = response.text().await.unwrap();
        let events = events(&text);
        assert_ne!(events.last().map(String::as_str), Some("[DONE]"), "{shim}: {text}");
        let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
        assert!(last["error"]["message"].is_string(), "{shim}: {text}");
        gw.stop().await;
    }
}

#[tokio::test]
async fn split_and_crlf_provider_streams_arrive_whole() {
    for shim in ["ai-anthropic", "ai-openai", "ai-gemini", "ai-ollama"] {
        let (emu, addr) = emulator().await;
        emu.set_faults(Some("split,crlf"));
        let gw = TestGateway::start(
            &config(&target("only", shim, addr, "m-test", "chat", ""), "", ""),
            SHIMS,
        )
        .await;
        let response = chat(
            &gw,
            "alice",
            json!({"model": "chat", "messages": user("split into tiny pieces ü €"), "stream": true}),
        )
        .await;
        let text = response.text().await.unwrap();
        assert_eq!(
            streamed_text(&events(&text)),
            "Echo: split into tiny pieces ü €",
            "{shim}: {text}"
        );
        gw.stop().await;
    }
}

#[tokio::test]
async fn usage_is_recorded_with_cost_and_survives_a_restart() {
    let (_emu, addr) = emulator().await;
    let prices = "[ai.prices.claude-test]\ninput_per_million = 3.0\noutput_per_million = 15.0\n";
    let cfg = config(
        &target("anthropic", "ai-anthropic", addr, "claude-test", "chat", ""),
        prices,
        "",
    );
    let gw = TestGateway::start(&cfg, SHIMS).await;
    chat(
        &gw,
        "alice",
        json!({"model": "chat", "messages": user("one two three")}),
    )
    .await
    .text()
    .await
    .unwrap();
    chat(
        &gw,
        "bob",
        json!({"model": "chat", "messages": user("four"), "stream": true}),
    )
    .await
    .text()
    .await
    .unwrap();
    let usage = |gw: &TestGateway, query: &str| {
        let url = gw.admin_url(&format!("/usage{query}"));
        async move { client().get(url).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let report = usage(&gw, "").await;
    assert_eq!(report["totals"]["requests"], 2, "{report}");
    // alice: prompt 2 + 3 words, answer "Echo: one two three" 4 words.
    let alice = usage(&gw, "?consumer=alice").await;
    let row = &alice["rows"][0];
    assert_eq!(row["prompt_tokens"], 5, "{alice}");
    assert_eq!(row["completion_tokens"], 4, "{alice}");
    assert_eq!(row["target"], "anthropic");
    assert_eq!(row["model"], "claude-test");
    assert_eq!(row["route"], "ai");
    let cost = row["cost"].as_f64().unwrap();
    assert!((cost - (5.0 * 3.0 + 4.0 * 15.0) / 1e6).abs() < 1e-12, "{cost}");
    let bob = usage(&gw, "?consumer=bob").await;
    assert_eq!(bob["rows"][0]["streamed"], true);
    assert!(bob["rows"][0]["ttft_ms"].is_u64(), "{bob}");

    // A clean restart keeps every row.
    let dir = gw.dir.path().to_path_buf();
    let TestGateway { dir: tempdir, running } = gw;
    running.unwrap().shutdown().await;
    let running = crate::common::start_in(&dir, &cfg).await.expect("restart");
    let gw = TestGateway {
        dir: tempdir,
        running: Some(running),
    };
    let report = usage(&gw, "?group_by=consumer").await;
    assert_eq!(report["totals"]["requests"], 2, "{report}");
    assert_eq!(report["groups"].as_array().unwrap().len(), 2, "{report}");
    gw.stop().await;
}

#[tokio::test]
async fn concurrent_streams_never_overshoot_a_budget_by_more_than_one_reservation() {
    let (emu, addr) = emulator().await;
    // Each request reserves about 37 tokens (its ~108-byte body at four
    // bytes a token, plus 10 output tokens) and uses 7 (3 prompt words, 4
    // answer words). Admitting on spent tokens alone would let all 24
    // concurrent requests in (168 tokens); reservations keep the total
    // within the budget.
    let budget = "[ai.budgets.consumers.alice]\ntokens = 100\nperiod = \"day\"\n";
    let cfg = config(
        &target("anthropic", "ai-anthropic", addr, "claude-test", "chat", ""),
        budget,
        "",
    );
    let gw = TestGateway::start(&cfg, SHIMS).await;
    emu.set_faults(Some("slow:200"));
    let mut tasks = Vec::new();
    for i in 0..24 {
        let url = gw.url("/v1/chat/completions");
        tasks.push(tokio::spawn(async move {
            let response = client()
                .post(url)
                .header("x-api-key", "alice-key")
                .json(&json!({"model": "chat", "messages": [{"role": "user", "content": format!("budget test {i}")}], "stream": true, "max_tokens": 10}))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let text = response.text().await.unwrap();
            (status, text)
        }));
    }
    let mut admitted = 0;
    let mut refused = 0;
    for task in tasks {
        let (status, text) = task.await.unwrap();
        match status {
            200 => admitted += 1,
            429 => {
                assert!(text.contains("budget"), "{text}");
                refused += 1;
            }
            other => panic!("unexpected {other}: {text}"),
        }
    }
    assert!(admitted > 0 && refused > 0, "admitted {admitted}, refused {refused}");
    let report: Value = client()
        .get(gw.admin_url("/usage?consumer=alice"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let spent =
        report["totals"]["prompt_tokens"].as_u64().unwrap() + report["totals"]["completion_tokens"].as_u64().unwrap();
    // Every request is a row; the refused ones spent nothing.
    assert_eq!(report["totals"]["requests"], admitted + refused, "{report}");
    let rows = report["rows"].as_array().unwrap();
    let served = rows.iter().filter(|r| r["status"] == 200).count();
    assert_eq!(served, admitted, "{report}");
    assert!(
        rows.iter()
            .filter(|r| r["status"] == 429)
            .all(|r| r["prompt_tokens"] == 0 && r["completion_tokens"] == 0 && r["target"] == "-"),
        "{report}"
    );
    assert!(spent <= 100, "spent {spent} of a 100-token budget");
    // Bob has no budget.
    let response = chat(
        &gw,
        "bob",
        json!({"model": "chat", "messages": user("hi"), "max_tokens": 10}),
    )
    .await;
    assert_eq!(response.status(), 200);
    gw.stop().await;
}

#[tokio::test]
async fn a_cache_hit_is_served_without_asking_the_provider_whole_and_streamed() {
    let (emu, addr) = emulator().await;
    let cfg = config(
        &target("anthropic", "ai-anthropic", addr, "claude-test", "chat", ""),
        "",
        "cache = { ttl_secs = 60 }",
    );
    let gw = TestGateway::start(&cfg, SHIMS).await;
    let body = json!({"model": "chat", "messages": user("cache me"), "temperature": 0});
    let first = chat(&gw, "alice", body.clone()).await;
    assert_eq!(first.headers()["x-weir-cache"], "miss");
    let first: Value = first.json().await.unwrap();
    assert_eq!(emu.count(), 1);

    let second = chat(&gw, "alice", body.clone()).await;
    assert_eq!(second.headers()["x-weir-cache"], "hit");
    let second: Value = second.json().await.unwrap();
    assert_eq!(second["choices"], first["choices"]);
    assert_ne!(second["id"], first["id"]);
    assert_eq!(emu.count(), 1, "a hit went to the provider");

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let third = chat(&gw, "alice", streamed.clone()).await;
    assert_eq!(third.headers()["x-weir-cache"], "hit");
    let text = third.text().await.unwrap();
    assert_eq!(streamed_text(&events(&text)), "Echo: cache me");
    assert!(text.ends_with("data: [DONE]\n\n"));
    assert_eq!(emu.count(), 1);

    // Scoped by consumer; and a streamed miss fills the cache too.
    let bob = chat(&gw, "bob", streamed.clone()).await;
    assert_eq!(bob.headers()["x-weir-cache"], "miss");
    bob.text().await.unwrap();
    assert_eq!(emu.count(), 2);
    let bob_again = chat(&gw, "bob", body.clone()).await;
    assert_eq!(bob_again.headers()["x-weir-cache"], "hit");
    assert_eq!(emu.count(), 2);

    // A temperature above 0 is not cached.
    let warm = json!({"model": "chat", "messages": user("cache me"), "temperature": 0.8});
    let response = chat(&gw, "alice", warm.clone()).await;
    assert_eq!(response.headers()["x-weir-cache"], "bypass");
    response.text().await.unwrap();
    chat(&gw, "alice", warm).await.text().await.unwrap();
    assert_eq!(emu.count(), 4);
    gw.stop().await;
}

#[tokio::test]
async fn a_slow_first_byte_past_the_timeout_fails_over() {
    let (slow, slow_addr) = emulator().await;
    let (good, good_addr) = emulator().await;
    slow.set_faults(Some("slow:3000"));
    let targets = [
        target(
            "slow",
            "ai-openai",
            slow_addr,
            "gpt-test",
            "chat",
            "priority = 0\nresponse_timeout_ms = 300",
        ),
        target("fast", "ai-openai", good_addr, "gpt-test", "chat", "priority = 1"),
    ]
    .concat();
    let gw = TestGateway::start(&config(&targets, "", ""), SHIMS).await;
    for (asked, stream) in [false, true].into_iter().enumerate() {
        assert_eq!(answered_by(&gw, "fast", "hi", stream).await, "Echo: hi");
        assert_eq!(
            (slow.count(), good.count()),
            (asked + 1, asked + 1),
            "stream {stream}: the slow target was asked first"
        );
    }
    gw.stop().await;
}

#[tokio::test]
async fn template_endpoints_take_good_variables_and_refuse_bad_ones_with_400() {
    let (emu, addr) = emulator().await;
    let targets = target("anthropic", "ai-anthropic", addr, "claude-test", "chat", "");
    let cfg = config(&targets, "", "").replace(
        "[routes.ai]",
        r#"[[routes.plugins]]
name = "prompt-template"

[[routes.plugins.config.templates]]
name = "summarize"
version = 1
model = "chat"
messages = [{ role = "user", content = "Old: {{text}}" }]
variables = { text = { type = "string" } }

[[routes.plugins.config.templates]]
name = "summarize"
version = 2
model = "chat"
messages = [{ role = "system", content = "Answer in {{words}} words." }, { role = "user", content = "Summarize: {{text}}" }]
variables = { text = { type = "string" }, words = { type = "integer", default = 5 } }
parameters = { temperature = 0, max_tokens = 50 }

[routes.ai]"#,
    )
    .replace("path_prefix = \"/v1\"", "path_prefix = \"/\"");
    let mut shims = SHIMS.to_vec();
    shims.push(("prompt-template", "prompt-template"));
    let gw = TestGateway::start(&cfg, &shims).await;
    let post = |path: &str, body: Value| {
        client()
            .post(gw.url(path))
            .header("x-api-key", "alice-key")
            .json(&body)
            .send()
    };

    // The newest version, a value that looks like structure staying text.
    let tricky = "a \"quote\", {{words}} and {\"role\": \"system\"}";
    let response = post("/prompts/summarize", json!({"text": tricky, "words": 3}))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        format!("Echo: Summarize: {tricky}")
    );
    let sent = emu.requests().last().unwrap().json();
    assert_eq!(sent["system"], "Answer in 3 words.");
    assert_eq!(sent["messages"].as_array().unwrap().len(), 1, "{sent}");
    assert_eq!(sent["max_tokens"], 50);

    // A pinned version, streamed.
    let response = post("/prompts/summarize/v1?stream=true", json!({"text": "x"}))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert_eq!(streamed_text(&events(&text)), "Echo: Old: x");

    // Bad variables: 400 naming them, and nothing reaches the provider.
    let before = emu.count();
    for (body, named) in [
        (json!({}), "text"),
        (json!({"text": 5}), "text"),
        (json!({"text": "x", "words": "three"}), "words"),
        (json!({"text": "x", "colour": "red"}), "colour"),
    ] {
        let response = post("/prompts/summarize", body.clone()).await.unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["param"], named, "{body}: {error}");
        assert!(error["error"]["message"].as_str().unwrap().contains(named), "{error}");
    }
    let response = post("/prompts/nothing-here", json!({})).await.unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(emu.count(), before);

    // The route still serves chat completions directly.
    let response = chat(&gw, "alice", json!({"model": "chat", "messages": user("direct")})).await;
    assert_eq!(response.status(), 200);
    gw.stop().await;
}

#[tokio::test]
async fn a_rejected_provider_key_is_answered_not_failed_over_and_never_quoted_back() {
    let (first, first_addr) = emulator().await;
    let (second, second_addr) = emulator().await;
    let targets = [
        target("first", "ai-openai", first_addr, "gpt-test", "chat", "priority = 0")
            .replace("key_secret = \"provider-key\"", "key_secret = \"bad-key\""),
        target("second", "ai-openai", second_addr, "gpt-test", "chat", "priority = 1"),
    ]
    .concat();
    let cfg = config(&targets, "", "").replace(
        "[secrets.provider-key]",
        "[secrets.bad-key]\nvalue = \"sk-bad-0123456789\"\n\n[secrets.provider-key]",
    );
    let gw = TestGateway::start(&cfg, SHIMS).await;
    let response = chat(&gw, "alice", json!({"model": "chat", "messages": user("hi")})).await;
    assert_eq!(response.status(), 401);
    let text = response.text().await.unwrap();
    assert!(
        !text.contains("sk-bad-0123456789"),
        "the provider key reached the client: {text}"
    );
    assert!(text.contains("[redacted]"), "{text}");
    assert_eq!((first.count(), second.count()), (1, 0), "a 401 is not failed over");
    gw.stop().await;
}

/// What the spy shim (`guest-shim-spy`) reported it was given: the hex
/// after `seen:` in `text`, decoded.
fn spy_saw(text: &str) -> String {
    let hex: String = text
        .split_once("seen:")
        .map(|(_, rest)| rest.chars().take_while(char::is_ascii_hexdigit).collect())
        .unwrap_or_default();
    let bytes: Vec<u8> = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[tokio::test]
async fn a_shim_is_never_given_the_provider_key_even_when_the_provider_quotes_it() {
    let (emu, addr) = emulator().await;
    // The provider quotes the key back in its answer (`{key}` in the
    // prompt), and writes its stream in pieces of a few bytes.
    emu.set_faults(Some("quote-key,split"));
    let targets = [
        target("spy", "spy", addr, "gpt-test", "chat", ""),
        target("spy-bad", "spy", addr, "gpt-test", "rejected", "")
            .replace("key_secret = \"provider-key\"", "key_secret = \"bad-key\""),
    ]
    .concat();
    let cfg = config(&targets, "", "").replace(
        "[secrets.provider-key]",
        "[secrets.bad-key]\nvalue = \"sk-bad-0123456789\"\n\n[secrets.provider-key]",
    );
    let shims = [SHIMS, &[("spy", "guest-shim-spy")]].concat();
    let gw = TestGateway::start(&cfg, &shims).await;
    let keys = ["sk-provider-secret", "sk-bad-0123456789"];

    let mut answers = Vec::new();
    for stream in [false, true] {
        let text = answered_by(&gw, "spy", "say {key}", stream).await;
        let seen = spy_saw(&text);
        // The shim got the client's request and the provider's answer,
        // with the key the provider quoted taken out.
        assert!(seen.contains("say {key}"), "stream {stream}: {seen}");
        assert!(seen.contains("[redacted]"), "stream {stream}: {seen}");
        answers.push(text);
    }
    // A rejected key, which the provider's error quotes.
    let response = chat(&gw, "alice", json!({"model": "rejected", "messages": user("hi")})).await;
    assert_eq!(response.status(), 401);
    let text = response.text().await.unwrap();
    let seen = spy_saw(&text);
    assert!(seen.contains("Incorrect API key provided: [redacted]"), "{seen}");
    answers.push(text);

    // The provider got each key, from the host.
    let sent: Vec<String> = emu
        .requests()
        .iter()
        .filter_map(|r| r.headers.get("authorization").cloned())
        .collect();
    for key in keys {
        assert!(sent.contains(&format!("Bearer {key}")), "{key} was not sent: {sent:?}");
    }
    // The shim never held one, and the client never got one.
    for text in &answers {
        for key in keys {
            assert!(
                !spy_saw(text).contains(key),
                "the shim was given {key}: {}",
                spy_saw(text)
            );
            assert!(!text.contains(key), "the client got {key}: {text}");
        }
    }
    gw.stop().await;
}
