//! The configs in `examples/` load, and the quickstart answers as the
//! README says it does.

use std::path::PathBuf;

use crate::common::*;
use weir::config::{Config, UpstreamName};
use weir::gateway::Gateway;

fn example(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples").join(path)
}

#[tokio::test]
async fn quickstart_answers_as_documented() {
    let mut config = Config::load(&example("quickstart/weir.toml")).expect("quickstart config is valid");
    // Same config, but on free ports, with plugins built from this tree and
    // a fresh echo upstream standing in for `weir demo-upstream`.
    let upstream = echo_upstream("demo").await;
    let dir = TestGateway::dir_with_plugins(&[
        ("api-key-auth", "api-key-auth"),
        ("rate-limit", "rate-limit"),
        ("headers", "headers"),
    ]);
    config.listeners[0].address = "127.0.0.1:0".into();
    config.admin.as_mut().expect("admin").address = "127.0.0.1:0".into();
    config
        .upstreams
        .get_mut(&UpstreamName("demo".into()))
        .expect("demo upstream")
        .targets = vec![weir::config::UpstreamTarget::Address(upstream.to_string())];
    config.plugins.dir = dir.path().join("plugins");
    config.plugins.cache_dir = Some(cache_dir());
    let gateway = Gateway::load(config).await.expect("loads");
    let running = weir::running::start(gateway).await.expect("starts");
    let url = format!("http://{}/api/hello", running.listeners[0]);
    let http = client();

    // curl -i http://127.0.0.1:8080/api/hello
    let response = http.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.text().await.unwrap(), r#"{"error":"missing API key"}"#);

    // curl -i -H 'x-api-key: alice-key' http://127.0.0.1:8080/api/hello
    for remaining in (0..5).rev() {
        let response = http.get(&url).header("x-api-key", "alice-key").send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-powered-by"], "weir");
        assert_eq!(
            response.headers()["ratelimit-remaining"],
            remaining.to_string().as_str()
        );
        let seen = echoed(response).await;
        assert_eq!(seen["path"], "/hello");
        assert_eq!(seen["headers"]["x-gateway"], "weir");
    }
    // The sixth request in the same second is limited.
    let response = http.get(&url).header("x-api-key", "alice-key").send().await.unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "1");

    let health = http
        .get(format!("http://{}/healthz", running.admin.unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    running.shutdown().await;
}

#[tokio::test]
async fn ai_gateway_example_answers_curl_and_the_openai_python_library() {
    let mut config = Config::load(&example("ai-gateway/weir.toml")).expect("ai-gateway config is valid");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let emulator_addr = listener.local_addr().unwrap();
    let emulator = weir_emulator::Emulator::new();
    tokio::spawn(weir_emulator::serve(listener, emulator.clone()));
    let dir = TestGateway::dir_with_plugins(&[
        ("api-key-auth", "api-key-auth"),
        ("prompt-template", "prompt-template"),
        ("ai-anthropic", "ai-anthropic"),
        ("ai-gemini", "ai-gemini"),
        ("ai-ollama", "ai-ollama"),
    ]);
    config.listeners[0].address = "127.0.0.1:0".into();
    config.admin.as_mut().expect("admin").address = "127.0.0.1:0".into();
    config.plugins.dir = dir.path().join("plugins");
    config.plugins.cache_dir = Some(cache_dir());
    config.ai.usage_db = dir.path().join("usage.db");
    for target in config.routes[0].ai.as_mut().expect("ai route").targets.iter_mut() {
        assert_eq!(target.base_url, "http://127.0.0.1:9100");
        target.base_url = format!("http://{emulator_addr}");
    }
    let gateway = Gateway::load(config).await.expect("loads");
    let running = weir::running::start(gateway).await.expect("starts");
    let base = format!("http://{}", running.listeners[0]);
    let admin = format!("http://{}", running.admin.unwrap());
    let http = client();
    let chat = |body: serde_json::Value| {
        http.post(format!("{base}/v1/chat/completions"))
            .header("authorization", "Bearer alice-key")
            .json(&body)
            .send()
    };

    // curl .../v1/models
    let models: serde_json::Value = http
        .get(format!("{base}/v1/models"))
        .header("authorization", "Bearer alice-key")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["id"], "smart");
    assert_eq!(models["data"][1]["id"], "local");

    // A whole answer from Anthropic, then the same from the cache.
    let hello = serde_json::json!({"model": "smart", "messages": [{"role": "user", "content": "Hello"}]});
    let response = chat(hello.clone()).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-weir-target"], "anthropic");
    assert_eq!(response.headers()["x-weir-cache"], "miss");
    let response = chat(hello).await.unwrap();
    assert_eq!(response.headers()["x-weir-cache"], "hit");
    assert_eq!(emulator.count(), 1);

    // The template, and a missing variable refused.
    let response = http
        .post(format!("{base}/prompts/summarize"))
        .header("authorization", "Bearer alice-key")
        .body(r#"{"text": "A weir is a low dam across a river.", "words": 10}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = http
        .post(format!("{base}/prompts/summarize"))
        .header("authorization", "Bearer alice-key")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);

    // The OpenAI Python library, unchanged (installed by `make setup`).
    let script = example("ai-gateway/client.py");
    let url = format!("{base}/v1");
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(&script)
            .env("WEIR_URL", url)
            .env("WEIR_KEY", "alice-key")
            .output()
            .expect("python3 runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "client.py failed (is the openai package installed? `make setup` installs it):\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let calls: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(calls[0]["ids"], serde_json::json!(["smart", "local"]));
    assert_eq!(calls[1]["text"], "Echo: What is a weir?");
    assert_eq!(calls[1]["finish"], "stop");
    assert_eq!(calls[1]["usage"]["total_tokens"], 11);
    assert_eq!(calls[2]["text"], "Echo: Stream a short answer.");
    assert_eq!(calls[2]["usage"]["completion_tokens"], 5);
    assert_eq!(calls[3]["name"], "lookup");
    assert_eq!(calls[3]["arguments"]["query"], "tides in Bergen");
    assert_eq!(calls[3]["finish"], "tool_calls");
    assert_eq!(calls[4]["name"], "lookup");
    assert_eq!(calls[4]["arguments"]["query"], "tides in Bergen");

    // Usage, per consumer.
    let usage: serde_json::Value = http
        .get(format!("{admin}/usage?group_by=consumer"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(usage["groups"][0][0], "alice", "{usage}");
    running.shutdown().await;
}
