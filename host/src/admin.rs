//! The admin API, served on loopback: health, loaded plugins, routes.
//! Every request needs `authorization: Bearer TOKEN` when a token is set.

use std::convert::Infallible;
use std::time::UNIX_EPOCH;

use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::proxy::{Body, SharedProxy, full_body};

/// Serve the admin API until `shutdown` flips.
pub async fn serve(listener: TcpListener, token: Option<String>, proxy: SharedProxy, mut shutdown: watch::Receiver<bool>) {
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!("admin accept failed: {e}");
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let proxy = proxy.clone();
        let token = token.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let response = handle(&request, token.as_deref(), &proxy);
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

fn json_response(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    let mut response = Response::new(full_body(format!("{value:#}\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    response
}

fn handle(request: &Request<Incoming>, token: Option<&str>, proxy: &SharedProxy) -> Response<Body> {
    if let Some(token) = token {
        let expected = format!("Bearer {token}");
        let given = request.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes()).unwrap_or_default();
        if !constant_time_eq(given, expected.as_bytes()) {
            return json_response(StatusCode::UNAUTHORIZED, json!({"error": "missing or wrong bearer token"}));
        }
    }
    let proxy = proxy.load();
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/healthz") => json_response(StatusCode::OK, json!({"status": "ok"})),
        (&Method::GET, "/plugins") => {
            let plugins: Vec<_> = proxy
                .plugins
                .iter()
                .map(|p| {
                    json!({
                        "name": p.name().as_str(),
                        "file": p.file.display().to_string(),
                        "version": p.content_hash,
                        "loaded_at": p.loaded_at.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
                        "compiled_from_cache": p.from_cache,
                        "routes": p.routes.iter().map(|r| r.route.as_str()).collect::<Vec<_>>(),
                        "idle_instances": p.idle_instances(),
                        "deadline_ms": p.limits.deadline.as_millis() as u64,
                        "memory_mb": p.limits.memory_bytes >> 20,
                        "fail_open": p.limits.fail_open,
                    })
                })
                .collect();
            json_response(StatusCode::OK, json!({ "plugins": plugins }))
        }
        (&Method::GET, "/routes") => {
            let routes: Vec<_> = proxy
                .routes
                .iter()
                .map(|r| {
                    json!({
                        "name": r.name.as_str(),
                        "upstream": r.upstream.name.as_str(),
                        "targets": r.upstream.targets().iter().map(|t| format!("{}://{}", t.scheme, t.authority)).collect::<Vec<_>>(),
                        "plugins": r.chain.links.iter().map(|l| l.plugin.name().as_str()).collect::<Vec<_>>(),
                    })
                })
                .collect();
            json_response(StatusCode::OK, json!({ "routes": routes }))
        }
        _ => json_response(StatusCode::NOT_FOUND, json!({"error": "no such admin endpoint"})),
    }
}

/// Compare secrets without leaking where they differ through timing.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
