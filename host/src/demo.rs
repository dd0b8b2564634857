//! A small echo upstream for the quickstart and the tests: it answers
//! every request with a JSON description of what it received, so what the
//! gateway and its plugins did to a request can be seen.
//!
//! Paths with special behaviour: `/status/CODE` answers with that status;
//! `/stream/N` streams N chunks; `/slow/MS` waits before answering.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::json;
use tokio::net::TcpListener;

use weir_core::body::{Body, full_body};

/// Serve the echo upstream on `listener` forever.
pub async fn serve(listener: TcpListener, name: String) {
    serve_with(listener, name, None).await
}

/// Serve the echo upstream over TLS on `listener` forever.
pub async fn serve_tls(listener: TcpListener, name: String, tls: tokio_rustls::TlsAcceptor) {
    serve_with(listener, name, Some(tls)).await
}

async fn serve_with(listener: TcpListener, name: String, tls: Option<tokio_rustls::TlsAcceptor>) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let name = name.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let name = name.clone();
                async move { Ok::<_, Infallible>(echo(request, peer, &name).await) }
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            let _ = match tls {
                Some(tls) => match tls.accept(stream).await {
                    Ok(stream) => builder.serve_connection(TokioIo::new(stream), service).await,
                    Err(_) => return,
                },
                None => builder.serve_connection(TokioIo::new(stream), service).await,
            };
        });
    }
}

async fn echo(request: Request<Incoming>, peer: SocketAddr, name: &str) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    if let Some(code) = path.strip_prefix("/status/").and_then(|c| c.parse::<u16>().ok()) {
        let mut response = Response::new(full_body(format!("status {code}\n")));
        *response.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
        return response;
    }
    if let Some(ms) = path.strip_prefix("/slow/").and_then(|c| c.parse::<u64>().ok()) {
        tokio::time::sleep(Duration::from_millis(ms.min(60_000))).await;
    }
    if let Some(n) = path.strip_prefix("/stream/").and_then(|c| c.parse::<usize>().ok()) {
        let chunks = (0..n.min(10_000))
            .map(|i| Ok::<_, weir_core::body::BoxError>(hyper::body::Frame::data(Bytes::from(format!("chunk {i}\n")))));
        let stream = futures_util::stream::iter(chunks);
        let mut response = Response::new(StreamBody::new(stream).boxed_unsync());
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain"));
        return response;
    }
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let headers: serde_json::Map<String, serde_json::Value> = parts
        .headers
        .keys()
        .map(|k| {
            let values: Vec<_> = parts
                .headers
                .get_all(k)
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect();
            (k.as_str().to_string(), json!(values.join(", ")))
        })
        .collect();
    let description = json!({
        "upstream": name,
        "method": parts.method.as_str(),
        "path": parts.uri.path_and_query().map_or("/", |pq| pq.as_str()),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
        "peer": peer.to_string(),
    });
    let mut response = Response::new(full_body(format!("{description:#}\n")));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    response.headers_mut().insert(
        "x-upstream",
        http::HeaderValue::from_str(name).unwrap_or(http::HeaderValue::from_static("echo")),
    );
    response
}
