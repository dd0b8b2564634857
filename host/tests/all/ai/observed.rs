//! What AI traffic leaves behind: metrics and access-log lines.

use super::*;

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
