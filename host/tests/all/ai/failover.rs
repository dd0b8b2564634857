//! Failover over a route's targets: 429 and 5xx answers, refused connections and slow first
//! bytes move the request on; a 429 rests its target; repeated failures open its circuit.

use super::*;

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
