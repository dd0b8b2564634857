//! Observability: known traffic — successes, refused keys, a plugin fault,
//! a failover — shows up in `GET /metrics` with exact values and in the
//! access log with every field, and never with a credential.

use crate::common::*;

const PLUGINS: &[(&str, &str)] = &[("api-key-auth", "api-key-auth"), ("trap", "guest-trap")];

/// The gateway, the live target and the dead one.
async fn start() -> (TestGateway, std::net::SocketAddr, std::net::SocketAddr) {
    start_with("").await
}

/// The same, with `extra` config (e.g. an `[access_log]` table).
async fn start_with(extra: &str) -> (TestGateway, std::net::SocketAddr, std::net::SocketAddr) {
    let echo = echo_upstream("echo").await;
    let dead = dead_address().await;
    let config = format!(
        r#"
        {extra}
        [[listeners]]
        address = "127.0.0.1:0"
        [admin]
        address = "127.0.0.1:0"
        [upstreams.echo]
        targets = ["{echo}"]
        [upstreams.pair]
        targets = ["{dead}", "{echo}"]

        [[routes]]
        name = "api"
        path_prefix = "/api"
        upstream = "echo"
        [[routes.plugins]]
        name = "api-key-auth"
        config = {{ keys = {{ alice = "alice-key" }}, query_param = "api_key" }}

        [[routes]]
        name = "faulty"
        path_prefix = "/faulty"
        upstream = "echo"
        [[routes.plugins]]
        name = "trap"

        [[routes]]
        name = "failover"
        path_prefix = "/failover"
        upstream = "pair"
        "#
    );
    (TestGateway::start(&config, PLUGINS).await, echo, dead)
}

#[tokio::test]
async fn known_traffic_gives_exact_metric_values() {
    let (gw, echo, dead) = start().await;
    let http = client();
    for _ in 0..3 {
        let response = http
            .get(gw.url("/api/items"))
            .header("x-api-key", "alice-key")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    for _ in 0..2 {
        assert_eq!(http.get(gw.url("/api/items")).send().await.unwrap().status(), 401);
    }
    assert_eq!(http.get(gw.url("/faulty/trap")).send().await.unwrap().status(), 500);
    assert_eq!(http.get(gw.url("/faulty/fine")).send().await.unwrap().status(), 200);
    // Round robin starts at the dead target: a connect error, then the
    // live one.
    assert_eq!(http.get(gw.url("/failover/x")).send().await.unwrap().status(), 200);
    assert_eq!(http.get(gw.url("/nowhere")).send().await.unwrap().status(), 404);

    let m = Scraped::from(&gw).await;
    let requests = |route: &str, status: &str| {
        m.value(
            "weir_requests_total",
            &[("route", route), ("method", "GET"), ("status", status)],
        )
    };
    assert_eq!(requests("api", "2xx"), 3.0);
    assert_eq!(requests("api", "4xx"), 2.0);
    assert_eq!(requests("faulty", "5xx"), 1.0);
    assert_eq!(requests("faulty", "2xx"), 1.0);
    assert_eq!(requests("failover", "2xx"), 1.0);
    // No route matched: counted under "-", never the raw path.
    assert_eq!(requests("-", "4xx"), 1.0);
    assert_eq!(m.value("weir_requests_in_flight", &[]), 0.0);

    let calls = |plugin: &str, phase: &str, result: &str| {
        m.value(
            "weir_plugin_calls_total",
            &[("plugin", plugin), ("phase", phase), ("result", result)],
        )
    };
    assert_eq!(calls("api-key-auth", "request", "continue"), 3.0);
    assert_eq!(calls("api-key-auth", "request", "responded"), 2.0);
    // api-key-auth has no response phase; the test plugin does.
    assert_eq!(calls("api-key-auth", "response", "continue"), 0.0);
    assert_eq!(calls("trap", "request", "trap"), 1.0);
    assert_eq!(calls("trap", "request", "continue"), 1.0);
    assert_eq!(calls("trap", "response", "continue"), 1.0);
    assert_eq!(
        m.value(
            "weir_plugin_answers_total",
            &[("plugin", "api-key-auth"), ("status", "401")]
        ),
        2.0
    );
    assert_eq!(
        m.value("weir_errors_total", &[("route", "faulty"), ("kind", "plugin-trap")]),
        1.0
    );
    assert_eq!(
        m.value("weir_errors_total", &[("route", "-"), ("kind", "no-route")]),
        1.0
    );
    assert_eq!(
        m.value(
            "weir_plugin_call_duration_seconds",
            &[("plugin", "api-key-auth"), ("phase", "request")]
        ),
        5.0,
        "five calls observed"
    );

    let attempts = |target: String, result: &str| {
        m.value(
            "weir_upstream_attempts_total",
            &[("upstream", "pair"), ("target", &target), ("result", result)],
        )
    };
    assert_eq!(attempts(dead.to_string(), "connect-error"), 1.0);
    let echo_target = echo.to_string();
    assert_eq!(attempts(echo_target.clone(), "2xx"), 1.0);
    assert_eq!(
        m.value(
            "weir_upstream_retries_total",
            &[("upstream", "pair"), ("target", &echo_target)]
        ),
        1.0
    );
    assert_eq!(
        m.value(
            "weir_upstream_target_state",
            &[("upstream", "pair"), ("target", &dead.to_string()), ("state", "closed")]
        ),
        1.0,
        "one failure does not open the circuit"
    );
    assert_eq!(m.value("weir_request_duration_seconds", &[("route", "api")]), 5.0);

    // A config reload counts; so does a refused one.
    let response = client().post(gw.admin_url("/reload")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let m = Scraped::from(&gw).await;
    assert_eq!(m.value("weir_config_reloads_total", &[("result", "ok")]), 1.0);
    assert_eq!(requests_after_reload(&m), 3.0, "counters survive a reload");
    gw.stop().await;
}

fn requests_after_reload(m: &Scraped) -> f64 {
    m.value(
        "weir_requests_total",
        &[("route", "api"), ("method", "GET"), ("status", "2xx")],
    )
}

#[tokio::test]
async fn every_request_gets_an_access_log_line_with_its_fields_and_no_credentials() {
    let (gw, echo, dead) = start_with("[access_log]\nto = \"access.log\"").await;
    let http = client();
    let mut sizes = Vec::new();
    for _ in 0..2 {
        let response = http
            .get(gw.url("/api/items"))
            .header("x-api-key", "alice-key")
            .header("authorization", "Bearer sk-never-logged")
            .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        sizes.push(response.bytes().await.unwrap().len());
    }
    let response = http.get(gw.url("/api/items?api_key=alice-key")).send().await.unwrap();
    assert_eq!(response.status(), 200, "the key in the query string");
    assert_eq!(http.get(gw.url("/api/items")).send().await.unwrap().status(), 401);
    assert_eq!(http.get(gw.url("/faulty/trap")).send().await.unwrap().status(), 500);
    let response = http
        .post(gw.url("/faulty/upload"))
        .body("0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(http.get(gw.url("/failover/x")).send().await.unwrap().status(), 200);

    let lines = access_lines(gw.dir.path(), 7).await;
    assert_eq!(lines.len(), 7);
    let text = lines.iter().map(|l| l.to_string()).collect::<String>();
    for secret in ["alice-key", "sk-never-logged", "api_key"] {
        assert!(!text.contains(secret), "{secret} was logged: {text}");
    }
    for (line, size) in lines.iter().zip(&sizes) {
        assert_eq!(line["method"], "GET");
        assert_eq!(line["path"], "/api/items");
        assert_eq!(line["route"], "api");
        assert_eq!(line["status"], 200);
        assert_eq!(line["client"], "127.0.0.1");
        assert_eq!(line["consumer"], "alice");
        assert_eq!(line["upstream"], "echo");
        assert_eq!(line["target"], echo.to_string());
        assert_eq!(line["bytes_out"], *size as u64);
        assert_eq!(line["completed"], true);
        assert_eq!(line["plugins"][0]["plugin"], "api-key-auth");
        assert_eq!(line["plugins"][0]["outcome"], "continue");
        assert!(line["duration_ms"].as_f64().unwrap() > 0.0);
        assert!(line["upstream_ms"].as_f64().unwrap() > 0.0);
        assert!(line["time"].as_str().unwrap().ends_with('Z'), "{}", line["time"]);
        assert_eq!(line["trace_id"].as_str().unwrap().len(), 32);
    }
    assert_eq!(
        lines[0]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736",
        "the client's trace"
    );
    assert_ne!(
        lines[2]["trace_id"], lines[3]["trace_id"],
        "a trace started per request"
    );
    assert_eq!(lines[2]["consumer"], "alice", "a key from the query string");
    let refused = &lines[3];
    assert_eq!(refused["status"], 401);
    assert_eq!(refused["consumer"], serde_json::Value::Null);
    assert_eq!(refused["plugins"][0]["outcome"], "responded");
    assert_eq!(refused["plugins"][0]["status"], 401);
    assert_eq!(refused["attempts"], serde_json::json!([]));
    let trapped = &lines[4];
    assert_eq!(trapped["status"], 500);
    assert_eq!(trapped["error"], "plugin-trap");
    assert_eq!(trapped["plugins"][0]["outcome"], "fault");
    assert_eq!(trapped["plugins"][0]["fault"], "trap");
    assert_eq!(trapped["plugins"][0]["skipped"], false);
    let upload = &lines[5];
    assert_eq!(
        (upload["method"].as_str(), upload["bytes_in"].as_u64()),
        (Some("POST"), Some(10))
    );
    let failover = &lines[6];
    assert_eq!(failover["upstream"], "pair");
    let attempts = failover["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0]["target"], dead.to_string());
    assert_eq!(attempts[0]["result"], "connect-error");
    assert_eq!(attempts[1]["target"], echo.to_string());
    assert_eq!(attempts[1]["result"], "200");
    assert_eq!(failover["target"], echo.to_string());
    gw.stop().await;
}

#[tokio::test]
async fn the_access_log_file_is_rotated_by_size_and_loses_no_line() {
    let (gw, _, _) = start_with("[access_log]\nto = \"access.log\"\nmax_size_kb = 2\nkeep = 100").await;
    let http = client();
    for i in 0..40 {
        let response = http.get(gw.url(&format!("/faulty/item/{i}"))).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    let lines = access_lines(gw.dir.path(), 40).await;
    let paths: Vec<_> = lines.iter().map(|l| l["path"].as_str().unwrap().to_string()).collect();
    let expected: Vec<_> = (0..40).map(|i| format!("/faulty/item/{i}")).collect();
    assert_eq!(paths, expected, "every line, in order, across the rotated files");
    assert!(
        gw.dir.path().join("access.log.1").is_file(),
        "40 lines of about 300 bytes passed 2 KiB"
    );
    gw.stop().await;
}

#[tokio::test]
async fn chunk_plugin_calls_are_timed_in_the_access_log_and_metrics() {
    let echo = echo_upstream("echo").await;
    let config = format!(
        r#"
        [access_log]
        to = "access.log"
        [[listeners]]
        address = "127.0.0.1:0"
        [admin]
        address = "127.0.0.1:0"
        [upstreams.echo]
        targets = ["{echo}"]
        [[routes]]
        name = "stream"
        upstream = "echo"
        [[routes.plugins]]
        name = "upper"
        "#
    );
    let gw = TestGateway::start(&config, &[("upper", "guest-chunks")]).await;
    for _ in 0..2 {
        let response = client().get(gw.url("/stream/20")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.text().await.unwrap().starts_with("CHUNK 0\n"));
    }
    let lines = access_lines(gw.dir.path(), 2).await;
    assert_eq!(lines.len(), 2);
    for line in &lines {
        let plugins = line["plugins"].as_array().unwrap();
        assert_eq!(plugins.len(), 1, "{line}");
        let call = &plugins[0];
        assert_eq!(call["plugin"], "upper");
        assert_eq!(call["phase"], "chunk");
        assert_eq!(call["outcome"], "continue");
        // At least one data chunk and the final call.
        assert!(call["calls"].as_u64().unwrap() >= 2, "{line}");
        assert!(call["ms"].as_f64().unwrap() > 0.0, "{line}");
        assert_eq!(line["completed"], true);
    }
    let m = Scraped::from(&gw).await;
    let chunk = [("plugin", "upper"), ("phase", "chunk")];
    let mut continued = chunk.to_vec();
    continued.push(("result", "continue"));
    assert_eq!(m.value("weir_plugin_calls_total", &continued), 2.0);
    assert_eq!(m.value("weir_plugin_call_duration_seconds", &chunk), 2.0);
    gw.stop().await;
}
