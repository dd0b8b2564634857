//! The configs in `examples/` load, and the quickstart answers as the
//! README says it does.

mod common;

use std::path::PathBuf;

use common::*;
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
        .targets = vec![upstream.to_string()];
    config.plugins.dir = dir.path().join("plugins");
    config.plugins.cache_dir = Some(cache_dir());
    let running = Gateway::load(config)
        .await
        .expect("loads")
        .start()
        .await
        .expect("starts");
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
