//! The `outbound-http` capability: requests from plugins to the hosts they
//! were granted, with a timeout and a cap on the response size.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::capabilities::Grants;
use super::capabilities::weir::plugin::outbound_http::{IncomingResponse, OutgoingRequest};
use super::capabilities::weir::plugin::types::Error as CapError;
use crate::config::PluginName;

/// Largest response body a plugin may receive.
pub const MAX_RESPONSE_BYTES: usize = 8 << 20;

type HttpsConnector = hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;

/// A pooled HTTP client shared by every plugin.
#[derive(Clone)]
pub struct OutboundClient {
    client: Client<HttpsConnector, Full<Bytes>>,
}

impl OutboundClient {
    /// A client that trusts the system's root certificates.
    pub fn new() -> Result<Self, String> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| format!("cannot load system root certificates: {e}"))?
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .build();
        Ok(OutboundClient {
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// Send `request` for `plugin`, if its grants allow the host.
    pub async fn send(
        &self,
        plugin: &PluginName,
        grants: &Grants,
        request: OutgoingRequest,
    ) -> Result<IncomingResponse, CapError> {
        let uri: http::Uri = request
            .url
            .parse()
            .map_err(|e| CapError::Invalid(format!("url {:?}: {e}", request.url)))?;
        let scheme = uri.scheme_str().unwrap_or_default();
        if scheme != "http" && scheme != "https" {
            return Err(CapError::Invalid(format!(
                "url {:?}: scheme must be http or https",
                request.url
            )));
        }
        let host = uri
            .host()
            .ok_or_else(|| CapError::Invalid(format!("url {:?} has no host", request.url)))?;
        let port = uri.port_u16().unwrap_or(if scheme == "https" { 443 } else { 80 });
        if !host_allowed(&grants.outbound_hosts, host, port) {
            return Err(CapError::NotGranted(format!(
                "outbound host {host}:{port} (grant it with [plugin.{plugin}] outbound_hosts = [\"{host}:{port}\"])"
            )));
        }
        let method = http::Method::from_bytes(request.method.as_bytes())
            .map_err(|_| CapError::Invalid(format!("{:?} is not an HTTP method", request.method)))?;
        let mut builder = http::Request::builder().method(method).uri(uri);
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let outgoing = builder
            .body(Full::new(Bytes::from(request.body)))
            .map_err(|e| CapError::Invalid(format!("request: {e}")))?;

        let timeout = request
            .timeout_ms
            .map(|ms| Duration::from_millis(ms.into()))
            .unwrap_or(grants.outbound_timeout)
            .min(grants.outbound_timeout);
        let exchange = async {
            let response = self
                .client
                .request(outgoing)
                .await
                .map_err(|e| CapError::Failed(format!("{e:#}")))?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| CapError::Failed(format!("reading response: {e}")))?
                .to_bytes();
            let headers = parts
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            Ok(IncomingResponse {
                status: parts.status.as_u16(),
                headers,
                body: body.to_vec(),
            })
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(CapError::Failed(format!("timed out after {} ms", timeout.as_millis()))),
        }
    }
}

/// Whether `host:port` matches an entry of the grant (`host:port`, or
/// `host` for any port; case-insensitive).
pub fn host_allowed(allowed: &[String], host: &str, port: u16) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    allowed.iter().any(|entry| {
        let (h, p) = match entry.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() && !h.ends_with(':') => {
                (h, p.parse::<u16>().ok())
            }
            _ => (entry.as_str(), None),
        };
        let h = h.trim_start_matches('[').trim_end_matches(']');
        h.eq_ignore_ascii_case(host) && p.is_none_or(|p| p == port)
    })
}

#[cfg(test)]
mod tests {
    use super::host_allowed;

    #[test]
    fn grants_match_host_and_port() {
        let allowed = vec!["api.test:8443".to_string(), "127.0.0.1".to_string()];
        assert!(host_allowed(&allowed, "api.test", 8443));
        assert!(host_allowed(&allowed, "API.test", 8443));
        assert!(!host_allowed(&allowed, "api.test", 443));
        assert!(host_allowed(&allowed, "127.0.0.1", 1234));
        assert!(!host_allowed(&allowed, "evil.test", 80));
    }
}
