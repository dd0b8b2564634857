//! The client behind the `outbound-http` capability: requests from plugins
//! to the hosts they were granted, with a timeout and a cap on the response
//! size.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::capabilities::Grants;
use crate::capabilities::weir::plugin::outbound_http::{IncomingResponse, OutgoingRequest};
use crate::capabilities::weir::plugin::types::Error as CapError;
use weir_config::PluginName;

/// Largest response body a plugin may receive.
pub const MAX_RESPONSE_BYTES: usize = 8 << 20;

/// Most outbound calls one plugin call (one phase of one request) may make.
pub const MAX_CALLS_PER_PLUGIN_CALL: u32 = 16;

type HttpsConnector = hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector<GuardedResolver>>;

/// DNS for plugins' outbound calls, refusing the addresses a plugin must
/// never reach through a host name: link-local addresses (where clouds
/// serve instance metadata and credentials) and the metadata services'
/// other well-known addresses. A plugin that truly needs one must be
/// granted the address itself (`outbound_hosts = ["169.254.169.254:80"]`),
/// which connects without DNS.
#[derive(Clone, Copy, Debug, Default)]
pub struct GuardedResolver;

impl tower_service::Service<hyper_util::client::legacy::connect::dns::Name> for GuardedResolver {
    type Response = std::vec::IntoIter<std::net::SocketAddr>;
    type Error = std::io::Error;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: hyper_util::client::legacy::connect::dns::Name) -> Self::Future {
        Box::pin(async move {
            let found: Vec<std::net::SocketAddr> = tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let reachable = reachable(found);
            if reachable.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!(
                        "{name} resolves only to link-local or cloud metadata addresses; grant the address itself to reach it"
                    ),
                ));
            }
            Ok(reachable.into_iter())
        })
    }
}

/// The addresses a host name may lead a plugin to.
fn reachable(addresses: Vec<std::net::SocketAddr>) -> Vec<std::net::SocketAddr> {
    addresses
        .into_iter()
        .filter(|a| !metadata_or_link_local(a.ip()))
        .collect()
}

/// Link-local (IPv4 169.254/16, IPv6 fe80::/10, and IPv4 mapped into
/// IPv6) and the cloud metadata addresses outside it.
fn metadata_or_link_local(ip: std::net::IpAddr) -> bool {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    const ALIBABA_METADATA: Ipv4Addr = Ipv4Addr::new(100, 100, 100, 200);
    const AWS_METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);
    match ip {
        IpAddr::V4(v4) => v4.is_link_local() || v4 == ALIBABA_METADATA,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => metadata_or_link_local(IpAddr::V4(v4)),
            None => (v6.segments()[0] & 0xffc0) == 0xfe80 || v6 == AWS_METADATA_V6,
        },
    }
}

/// A pooled HTTP client shared by every plugin.
#[derive(Clone)]
pub struct OutboundClient {
    client: Client<HttpsConnector, Full<Bytes>>,
}

impl OutboundClient {
    /// A client that trusts the system's root certificates (read once per
    /// process, shared with every other client: see `weir_core::tls`).
    pub fn new() -> Result<Self, String> {
        let mut http = hyper_util::client::legacy::connect::HttpConnector::new_with_resolver(GuardedResolver);
        http.enforce_http(false);
        let tls = weir_core::tls::client_config(None).map_err(|e| format!("outbound HTTP client: {e}"))?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
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
    use super::*;

    #[test]
    fn host_names_never_lead_to_link_local_or_metadata_addresses() {
        let addresses = [
            "169.254.169.254:80",
            "169.254.1.1:80",
            "100.100.100.200:80",
            "[fe80::1]:80",
            "[fd00:ec2::254]:80",
            "[::ffff:169.254.169.254]:80",
            "127.0.0.1:80",
            "10.0.0.8:80",
            "[::1]:80",
        ]
        .map(|a| a.parse::<std::net::SocketAddr>().unwrap());
        let kept = reachable(addresses.to_vec());
        assert_eq!(kept, addresses[6..].to_vec());
    }

    #[tokio::test]
    async fn a_name_resolving_only_to_forbidden_addresses_is_refused_and_others_resolve() {
        use tower_service::Service;
        let name: hyper_util::client::legacy::connect::dns::Name = "localhost".parse().unwrap();
        let found: Vec<_> = GuardedResolver.call(name).await.unwrap().collect();
        assert!(
            !found.is_empty() && found.iter().all(|a| a.ip().is_loopback()),
            "{found:?}"
        );
        let name: hyper_util::client::legacy::connect::dns::Name = "169.254.169.254".parse().unwrap();
        let error = GuardedResolver.call(name).await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::PermissionDenied);
        assert!(error.to_string().contains("link-local"), "{error}");
    }

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
