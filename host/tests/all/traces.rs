//! Tracing: a client's `traceparent` is continued, sent on to the upstream,
//! and the request's span tree — the request, each plugin call, each
//! upstream attempt — reaches an OTLP collector (a stand-in in this test).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// An OTLP/HTTP receiver on loopback keeping every span it is sent.
async fn collector() -> (std::net::SocketAddr, Arc<Mutex<Vec<Span>>>) {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
    let kept = spans.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let kept = kept.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let kept = kept.clone();
                    async move {
                        assert_eq!(request.uri().path(), "/v1/traces");
                        assert_eq!(request.headers()["content-type"], "application/x-protobuf");
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        let export = ExportTraceServiceRequest::decode(body).expect("an OTLP export");
                        for resource in export.resource_spans {
                            let service = resource
                                .resource
                                .iter()
                                .flat_map(|r| &r.attributes)
                                .find(|a| a.key == "service.name")
                                .map(|a| format!("{:?}", a.value));
                            assert!(service.unwrap_or_default().contains("weir-test"));
                            for scope in resource.scope_spans {
                                kept.lock().unwrap().extend(scope.spans);
                            }
                        }
                        Ok::<_, std::convert::Infallible>(
                            hyper::Response::builder()
                                .header("content-type", "application/x-protobuf")
                                .body(http_body_util::Full::new(bytes::Bytes::new()))
                                .unwrap(),
                        )
                    }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    (addr, spans)
}

fn attribute(span: &Span, key: &str) -> String {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref()?.value.as_ref())
        .map(|v| match v {
            Value::StringValue(s) => s.clone(),
            Value::IntValue(i) => i.to_string(),
            other => format!("{other:?}"),
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_two_plugins_and_a_retried_upstream_is_one_span_tree() {
    let (otlp, spans) = collector().await;
    let echo = echo_upstream("echo").await;
    let dead = dead_address().await;
    let config = format!(
        r#"
        [tracing]
        otlp_endpoint = "http://{otlp}/v1/traces"
        service_name = "weir-test"
        batch_delay_ms = 50
        [[listeners]]
        address = "127.0.0.1:0"
        [upstreams.pair]
        targets = ["{dead}", "{echo}"]
        [[routes]]
        name = "api"
        upstream = "pair"
        [[routes.plugins]]
        name = "api-key-auth"
        config = {{ keys = {{ alice = "alice-key" }} }}
        [[routes.plugins]]
        name = "headers"
        config = {{ request = {{ set = {{ x-via = "weir" }} }}, response = {{ set = {{ x-traced = "yes" }} }} }}
        "#
    );
    let gw = TestGateway::start(&config, &[("api-key-auth", "api-key-auth"), ("headers", "headers")]).await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let response = client()
        .get(gw.url("/items"))
        .header("x-api-key", "alice-key")
        .header("traceparent", format!("00-{trace}-{client_span}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-traced"], "yes");
    let echoed = echoed(response).await;
    let sent = echoed["headers"]["traceparent"]
        .as_str()
        .expect("traceparent sent upstream")
        .to_string();

    let spans = wait_for("the request's spans at the collector", Duration::from_secs(20), || {
        let spans = spans.clone();
        async move {
            let spans = spans.lock().unwrap().clone();
            (spans.len() >= 6).then_some(spans)
        }
    })
    .await;
    assert_eq!(spans.len(), 6, "{spans:#?}");
    let hex = hex::encode;
    for span in &spans {
        assert_eq!(hex(&span.trace_id), trace, "every span is in the client's trace");
    }
    let server: Vec<_> = spans.iter().filter(|s| s.name == "GET api").collect();
    assert_eq!(server.len(), 1, "{spans:#?}");
    let server = server[0];
    assert_eq!(
        hex(&server.parent_span_id),
        client_span,
        "the client's span is the parent"
    );
    assert_eq!(attribute(server, "http.response.status_code"), "200");
    assert_eq!(attribute(server, "http.route"), "api");

    let children: Vec<_> = spans.iter().filter(|s| s.parent_span_id == server.span_id).collect();
    let mut names: Vec<_> = children.iter().map(|s| s.name.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "plugin api-key-auth request",
            "plugin headers request",
            "plugin headers response",
            "upstream GET",
            "upstream GET",
        ]
    );
    let mut attempts: Vec<_> = children.iter().filter(|s| s.name == "upstream GET").collect();
    attempts.sort_by_key(|s| s.start_time_unix_nano);
    assert_eq!(attribute(attempts[0], "server.address"), dead.to_string());
    assert_eq!(attribute(attempts[0], "weir.upstream.result"), "connect-error");
    assert_eq!(attribute(attempts[1], "server.address"), echo.to_string());
    assert_eq!(attribute(attempts[1], "http.response.status_code"), "200");
    // The upstream continues the trace from the attempt that reached it.
    assert_eq!(sent, format!("00-{trace}-{}-01", hex(&attempts[1].span_id)));
    for child in &children {
        assert!(
            child.start_time_unix_nano >= server.start_time_unix_nano
                && child.end_time_unix_nano <= server.end_time_unix_nano,
            "{} lies within the request",
            child.name
        );
    }
    gw.stop().await;
}

#[tokio::test]
async fn without_a_traceparent_a_trace_is_started_and_sent_upstream() {
    let echo = echo_upstream("echo").await;
    let config = format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [upstreams.echo]
        targets = ["{echo}"]
        [[routes]]
        name = "all"
        upstream = "echo"
        "#
    );
    let gw = TestGateway::start(&config, &[]).await;
    let mut seen = std::collections::HashSet::new();
    for traceparent in [
        None,
        Some("garbage"),
        Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
    ] {
        let mut request = client().get(gw.url("/x"));
        if let Some(value) = traceparent {
            request = request.header("traceparent", value);
        }
        let echoed = echoed(request.send().await.unwrap()).await;
        let sent = echoed["headers"]["traceparent"].as_str().unwrap().to_string();
        let fields: Vec<_> = sent.split('-').collect();
        assert_eq!(fields.len(), 4, "{sent}");
        assert_eq!((fields[0], fields[3]), ("00", "01"), "{sent}");
        assert!(fields[1].len() == 32 && fields[1] != "0".repeat(32), "{sent}");
        assert!(seen.insert(fields[1].to_string()), "a new trace each time: {sent}");
    }
    gw.stop().await;
}
