//! The gateway end to end: real HTTP over HTTP/1.1, HTTP/2 and TLS through
//! chains of plugins built from `plugins/`, to a real upstream.

use crate::common::*;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

mod admin;
mod listeners;
mod pools;
mod upstreams;

const AUTH_RATE_HEADERS: &[(&str, &str)] = &[
    ("api-key-auth", "api-key-auth"),
    ("rate-limit", "rate-limit"),
    ("headers", "headers"),
];

fn three_plugin_config(upstream: std::net::SocketAddr, capacity: u32) -> String {
    format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"

        [plugin.rate-limit]
        kv = true

        [upstreams.echo]
        targets = ["{upstream}"]

        [[routes]]
        name = "api"
        path_prefix = "/api"
        upstream = "echo"

        [[routes.plugins]]
        name = "api-key-auth"
        config = {{ keys = {{ alice = "alice-key", bob = "bob-key" }} }}

        [[routes.plugins]]
        name = "rate-limit"
        config = {{ capacity = {capacity}, refill_per_second = 0.001 }}

        [[routes.plugins]]
        name = "headers"
        config = {{ request = {{ set = {{ x-team = "platform" }}, remove = ["x-drop-me"] }}, response = {{ add = {{ x-served-by = "weir" }} }}, path_prefix = {{ from = "/api", to = "/v1" }} }}
        "#
    )
}

#[tokio::test]
async fn chain_of_three_plugins_authenticates_rewrites_and_limits() {
    let upstream = echo_upstream("echo").await;
    let gw = TestGateway::start(&three_plugin_config(upstream, 3), AUTH_RATE_HEADERS).await;
    let http = client();

    // No key: 401 with a challenge, and the upstream is never reached.
    let response = http.get(gw.url("/api/items")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let challenge = response.headers()["www-authenticate"].to_str().unwrap().to_string();
    assert!(challenge.starts_with("ApiKey"), "{challenge}");
    assert!(response.headers().get("x-upstream").is_none());

    // Wrong key: 401 too.
    let response = http
        .get(gw.url("/api/items"))
        .header("x-api-key", "nope")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(response.text().await.unwrap().contains("invalid API key"));

    // Right key: 200; rewrites visible at the upstream and to the client.
    for expected_remaining in ["2", "1", "0"] {
        let response = http
            .get(gw.url("/api/items?page=2"))
            .header("x-api-key", "alice-key")
            .header("x-drop-me", "secret")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-served-by"], "weir");
        assert_eq!(response.headers()["ratelimit-limit"], "3");
        assert_eq!(response.headers()["ratelimit-remaining"], expected_remaining);
        let seen = echoed(response).await;
        assert_eq!(seen["path"], "/v1/items?page=2");
        assert_eq!(seen["headers"]["x-team"], "platform");
        assert!(seen["headers"].get("x-drop-me").is_none(), "{seen}");
        assert!(
            seen["headers"].get("x-api-key").is_none(),
            "key must not reach the upstream: {seen}"
        );
    }

    // Bucket empty: 429 with retry-after and ratelimit-* headers.
    let response = http
        .get(gw.url("/api/items"))
        .header("x-api-key", "alice-key")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after >= 1, "retry-after {retry_after}");
    assert_eq!(response.headers()["ratelimit-remaining"], "0");
    assert_eq!(response.headers()["ratelimit-limit"], "3");
    assert!(response.headers().contains_key("ratelimit-reset"));
    // Only plugins that ran before the answer see the response: headers
    // comes after rate-limit in the chain.
    assert!(response.headers().get("x-served-by").is_none());

    // Another consumer has its own bucket.
    let response = http
        .get(gw.url("/api/items"))
        .header("x-api-key", "bob-key")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    gw.stop().await;
}

#[tokio::test]
async fn routes_have_their_own_chains() {
    let upstream = echo_upstream("echo").await;
    let config = format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [upstreams.echo]
        targets = ["{upstream}"]

        [[routes]]
        name = "first"
        path_prefix = "/first"
        upstream = "echo"
        [[routes.plugins]]
        name = "echo-config"
        config = {{ name = "one", route = "first" }}
        [[routes.plugins]]
        name = "headers"
        config = {{ request = {{ add = {{ x-only-first = "yes" }} }} }}

        [[routes]]
        name = "second"
        path_prefix = "/second"
        methods = ["POST"]
        upstream = "echo"
        [[routes.plugins]]
        name = "echo-config"
        config = {{ name = "two", route = "second" }}
        [[routes.plugins]]
        name = "echo-config-fresh"
        config = {{ name = "three", route = "second" }}

        [[routes]]
        name = "twice"
        path_prefix = "/twice"
        upstream = "echo"
        [[routes.plugins]]
        name = "headers"
        config = {{ request = {{ set = {{ x-step = "one", x-first = "yes" }} }} }}
        [[routes.plugins]]
        name = "headers"
        config = {{ request = {{ set = {{ x-step = "two" }} }} }}

        [plugin.echo-config-fresh]
        instance = "fresh"
        "#
    );
    let gw = TestGateway::start(
        &config,
        &[
            ("echo-config", "guest-echo-config"),
            ("echo-config-fresh", "guest-echo-config"),
            ("headers", "headers"),
        ],
    )
    .await;
    let http = client();

    let seen = echoed(http.get(gw.url("/first/a")).send().await.unwrap()).await;
    let config_seen: Value = serde_json::from_str(seen["headers"]["x-config"].as_str().unwrap()).unwrap();
    assert_eq!(config_seen["route"], "first");
    assert_eq!(seen["headers"]["x-only-first"], "yes");

    let seen = echoed(http.post(gw.url("/second/b")).body("hi").send().await.unwrap()).await;
    let config_seen: Value = serde_json::from_str(seen["headers"]["x-config"].as_str().unwrap()).unwrap();
    assert_eq!(config_seen["route"], "second");
    assert!(seen["headers"].get("x-only-first").is_none());
    assert_eq!(seen["body"], "hi");
    // Properties travel along the chain: each plugin appended its name.
    assert_eq!(seen["headers"]["x-seen-by"], "two,three");
    // The fresh-instance plugin never sees a second request; the pooled
    // one reuses its warm instance.
    let seen = echoed(http.post(gw.url("/second/b")).send().await.unwrap()).await;
    assert_eq!(
        seen["headers"]["x-instance-calls"], "1",
        "fresh instance per request: {seen}"
    );
    let first = echoed(http.get(gw.url("/first/a")).send().await.unwrap()).await;
    let calls: u64 = first["headers"]["x-instance-calls"].as_str().unwrap().parse().unwrap();
    assert!(calls >= 2, "pooled instance is reused: {first}");

    // One plugin twice in a chain: each place keeps its own config.
    let seen = echoed(http.get(gw.url("/twice")).send().await.unwrap()).await;
    assert_eq!(seen["headers"]["x-first"], "yes");
    assert_eq!(seen["headers"]["x-step"], "two");

    // Method and prefix matching: GET /second matches no route.
    let response = http.get(gw.url("/second/b")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()["x-weir-error"], "no-route");
    let response = http.get(gw.url("/firstly")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    gw.stop().await;
}

/// One listener and one route, with no plugins, to the echo upstream.
fn plain_config(upstream: std::net::SocketAddr) -> String {
    format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [upstreams.echo]
        targets = ["{upstream}"]
        [[routes]]
        name = "plain"
        upstream = "echo"
        "#
    )
}

#[tokio::test]
async fn streamed_response_chunks_are_transformed_by_plugins() {
    let upstream = echo_upstream("echo").await;
    let config = format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [upstreams.echo]
        targets = ["{upstream}"]
        [[routes]]
        name = "stream"
        upstream = "echo"
        [[routes.plugins]]
        name = "upper"
        "#
    );
    let gw = TestGateway::start(&config, &[("upper", "guest-chunks")]).await;
    for _ in 0..3 {
        let response = client().get(gw.url("/stream/50")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        let expected: String = (0..50).map(|i| format!("CHUNK {i}\n")).collect();
        assert_eq!(text, expected);
    }
    gw.stop().await;
}

#[tokio::test]
async fn capabilities_need_grants() {
    let upstream = echo_upstream("echo").await;
    let config = format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [secrets.token]
        value = "s3cret"
        [secrets.other]
        value = "not-yours"
        [plugin.granted]
        kv = true
        secrets = ["token"]
        outbound_hosts = ["{upstream}"]
        [upstreams.echo]
        targets = ["{upstream}"]
        [[routes]]
        name = "granted"
        host = "granted.test"
        upstream = "echo"
        [[routes.plugins]]
        name = "granted"
        [[routes]]
        name = "bare"
        host = "bare.test"
        upstream = "echo"
        [[routes.plugins]]
        name = "bare"
        "#
    );
    let gw = TestGateway::start(
        &config,
        &[("granted", "guest-echo-config"), ("bare", "guest-echo-config")],
    )
    .await;
    let http = client();
    // The first path segment picks the route by host; the plugin sees the rest.
    let get = |path: &str| {
        let (host, rest) = path.trim_start_matches('/').split_once('/').unwrap();
        http.get(gw.url(&format!("/{rest}")))
            .header("host", format!("{host}.test"))
            .send()
    };

    // kv: granted counts; not granted gets a clear error value.
    assert_eq!(get("/granted/kv").await.unwrap().text().await.unwrap(), "1");
    assert_eq!(get("/granted/kv").await.unwrap().text().await.unwrap(), "2");
    let response = get("/bare/kv").await.unwrap();
    assert_eq!(response.status(), 500);
    let text = response.text().await.unwrap();
    assert!(text.contains("NotGranted") && text.contains("kv"), "{text}");

    // Secrets: only the granted one.
    assert_eq!(
        get("/granted/secret/token").await.unwrap().text().await.unwrap(),
        "s3cret"
    );
    let text = get("/granted/secret/other").await.unwrap().text().await.unwrap();
    assert!(text.contains("NotGranted") && text.contains("other"), "{text}");

    // Outbound HTTP: only to granted hosts.
    let response = get(&format!("/granted/fetch?url=http://{upstream}/hello"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("\"/hello\""));
    let response = get(&format!("/bare/fetch?url=http://{upstream}/hello")).await.unwrap();
    assert_eq!(response.status(), 502);
    assert!(response.text().await.unwrap().contains("NotGranted"));
    // Nor to a cloud metadata address it was not granted.
    let response = get("/granted/fetch?url=http://169.254.169.254/latest/meta-data/")
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    assert!(response.text().await.unwrap().contains("NotGranted"));
    // One plugin call cannot fan out into unbounded outbound calls.
    let text = get(&format!("/granted/fetch-many?url=http://{upstream}/hello"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.starts_with("16 ok ") && text.contains("more than 16 outbound calls"),
        "{text}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_plugins_unsendable_answer_is_refused_with_500_and_the_gateway_keeps_serving() {
    let upstream = echo_upstream("echo").await;
    let config = format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [upstreams.echo]
        targets = ["{upstream}"]
        [[routes]]
        name = "all"
        upstream = "echo"
        [[routes.plugins]]
        name = "echo-config"
        "#
    );
    let gw = TestGateway::start(&config, &[("echo-config", "guest-echo-config")]).await;
    // The plugin answers as asked: a fine answer first, to show the probe.
    let fine = client().get(gw.url("/reply/201/x-fine")).send().await.unwrap();
    assert_eq!(fine.status(), 201);
    assert_eq!(fine.headers()["x-fine"], "x");
    for (path, what) in [
        ("/reply/42", "status"),
        ("/reply/1000", "status"),
        ("/reply/200/bad%20name", "headers"),
        ("/reply/200/x:y", "headers"),
    ] {
        let response = client().get(gw.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 500, "{path}");
        assert_eq!(response.headers()["x-weir-error"], "plugin-output", "{path}");
        let body = response.text().await.unwrap();
        assert!(
            body.contains(&format!("plugin echo-config produced an invalid {what}")),
            "{path}: {body}"
        );
    }
    let after = client().get(gw.url("/anything")).send().await.unwrap();
    assert_eq!(after.status(), 200, "the gateway keeps serving");
    gw.stop().await;
}
