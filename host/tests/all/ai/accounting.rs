//! Usage, budgets and the answer cache: usage recorded with its cost and kept across a restart,
//! budgets held under concurrent streams, cache hits served without the provider.

use super::*;

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
