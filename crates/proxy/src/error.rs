//! Every way the gateway itself answers a request with an error, and the
//! one place that maps each to an HTTP status.

use bytes::Bytes;
use http::{Response, StatusCode, header};

use super::Body;
use weir_config::{PluginName, UpstreamName};
use weir_plugins::PluginFault;

/// An error answered by the gateway rather than the upstream.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No route matches.
    #[error("no route matches {method} {path}")]
    NoRoute {
        /// Request method.
        method: String,
        /// Request path.
        path: String,
    },
    /// A plugin of the route's chain is not loaded (its file was removed).
    #[error("plugin {0} is not loaded (its file is missing)")]
    PluginMissing(PluginName),
    /// A plugin faulted.
    #[error(transparent)]
    Plugin(#[from] PluginFault),
    /// The request body is larger than the buffering limit.
    #[error("request body larger than {limit} bytes")]
    RequestBodyTooLarge {
        /// The limit.
        limit: usize,
    },
    /// The request body could not be read.
    #[error("reading request body: {0}")]
    RequestBody(String),
    /// The client sent its request body too slowly, or stopped sending it.
    #[error("request body too slow: {0}")]
    RequestBodyTimeout(String),
    /// The request itself is malformed: a path or `host` the gateway will
    /// not route.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// CONNECT and TRACE, unless a route names the method.
    #[error("method {method} is not allowed")]
    MethodNotAllowed {
        /// The method.
        method: String,
    },
    /// A plugin produced something that cannot be sent.
    #[error("plugin {plugin} produced an invalid {what}: {detail}")]
    PluginOutput {
        /// The plugin.
        plugin: PluginName,
        /// Which part.
        what: &'static str,
        /// Why.
        detail: String,
    },
    /// No connection to any target of the upstream.
    #[error("upstream {upstream}: cannot connect to {target}: {detail}")]
    UpstreamConnect {
        /// The upstream pool.
        upstream: UpstreamName,
        /// The last target tried.
        target: String,
        /// Why.
        detail: String,
    },
    /// The upstream did not answer in time.
    #[error("upstream {upstream}: no response from {target} within {timeout_ms} ms")]
    UpstreamTimeout {
        /// The upstream pool.
        upstream: UpstreamName,
        /// The target.
        target: String,
        /// The response timeout.
        timeout_ms: u64,
    },
    /// The upstream connection failed after connecting.
    #[error("upstream {upstream}: {target} failed: {detail}")]
    UpstreamFailed {
        /// The upstream pool.
        upstream: UpstreamName,
        /// The target.
        target: String,
        /// Why.
        detail: String,
    },
    /// The upstream's body is larger than the buffering limit.
    #[error("upstream response body larger than {limit} bytes")]
    ResponseBodyTooLarge {
        /// The limit.
        limit: usize,
    },
    /// Too many requests in flight: shed rather than queued.
    #[error("overloaded: {scope} is at its limit of {limit} requests in flight; retry shortly")]
    Overloaded {
        /// `the gateway` or `route NAME`.
        scope: String,
        /// The limit.
        limit: usize,
    },
}

impl GatewayError {
    /// The status the client receives.
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::NoRoute { .. } => StatusCode::NOT_FOUND,
            GatewayError::PluginMissing(_) => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::Plugin(PluginFault::Trap { .. }) => StatusCode::INTERNAL_SERVER_ERROR,
            GatewayError::Plugin(PluginFault::Memory { .. }) => StatusCode::INTERNAL_SERVER_ERROR,
            GatewayError::Plugin(PluginFault::Deadline { .. }) => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::Plugin(PluginFault::Unavailable { .. }) => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::PluginOutput { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            GatewayError::RequestBodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::RequestBody(_) => StatusCode::BAD_REQUEST,
            GatewayError::RequestBodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            GatewayError::BadRequest(_) => StatusCode::BAD_REQUEST,
            GatewayError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::UpstreamConnect { .. } => StatusCode::BAD_GATEWAY,
            GatewayError::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::UpstreamFailed { .. } => StatusCode::BAD_GATEWAY,
            GatewayError::ResponseBodyTooLarge { .. } => StatusCode::BAD_GATEWAY,
            GatewayError::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A short machine-readable name, sent as `x-weir-error`.
    pub fn kind(&self) -> &'static str {
        match self {
            GatewayError::NoRoute { .. } => "no-route",
            GatewayError::PluginMissing(_) => "plugin-missing",
            GatewayError::Plugin(PluginFault::Trap { .. }) => "plugin-trap",
            GatewayError::Plugin(PluginFault::Memory { .. }) => "plugin-memory",
            GatewayError::Plugin(PluginFault::Deadline { .. }) => "plugin-deadline",
            GatewayError::Plugin(PluginFault::Unavailable { .. }) => "plugin-unavailable",
            GatewayError::PluginOutput { .. } => "plugin-output",
            GatewayError::RequestBodyTooLarge { .. } => "request-body-too-large",
            GatewayError::RequestBody(_) => "request-body",
            GatewayError::RequestBodyTimeout(_) => "request-body-timeout",
            GatewayError::BadRequest(_) => "bad-request",
            GatewayError::MethodNotAllowed { .. } => "method-not-allowed",
            GatewayError::UpstreamConnect { .. } => "upstream-connect",
            GatewayError::UpstreamTimeout { .. } => "upstream-timeout",
            GatewayError::UpstreamFailed { .. } => "upstream-failed",
            GatewayError::ResponseBodyTooLarge { .. } => "response-body-too-large",
            GatewayError::Overloaded { .. } => "overloaded",
        }
    }

    /// What the client is told: the failure, named, without the gateway's
    /// internals (trap details, target addresses, the upstream client's
    /// error chain), which stay in the log.
    pub fn public_message(&self) -> String {
        match self {
            GatewayError::Plugin(PluginFault::Trap { plugin, .. }) => format!("plugin {plugin} failed"),
            GatewayError::UpstreamConnect { upstream, .. } => format!("upstream {upstream}: cannot connect"),
            GatewayError::UpstreamTimeout {
                upstream, timeout_ms, ..
            } => format!("upstream {upstream}: no response within {timeout_ms} ms"),
            GatewayError::UpstreamFailed { upstream, .. } => format!("upstream {upstream} failed"),
            other => other.to_string(),
        }
    }

    /// The response sent to the client: the status and a one-line body
    /// naming the cause ([`GatewayError::public_message`]).
    pub fn to_response(&self) -> Response<Body> {
        let message = self.public_message();
        let mut response = Response::new(super::full_body(Bytes::from(format!("weir: {message}\n"))));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert("x-weir-error", http::HeaderValue::from_static(self.kind()));
        match self {
            GatewayError::Overloaded { .. } => {
                headers.insert(header::RETRY_AFTER, http::HeaderValue::from_static("1"));
            }
            GatewayError::MethodNotAllowed { .. } => {
                headers.insert(
                    header::ALLOW,
                    http::HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS"),
                );
            }
            // The client broke its side of the exchange: the connection is
            // not worth keeping.
            GatewayError::RequestBody(_) | GatewayError::RequestBodyTimeout(_) | GatewayError::BadRequest(_) => {
                headers.insert(header::CONNECTION, http::HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin() -> PluginName {
        PluginName("p".into())
    }

    #[test]
    fn statuses_follow_the_documented_mapping() {
        let cases = [
            (
                GatewayError::Plugin(PluginFault::Trap {
                    plugin: plugin(),
                    detail: "x".into(),
                }),
                500,
            ),
            (
                GatewayError::Plugin(PluginFault::Deadline {
                    plugin: plugin(),
                    deadline_ms: 1,
                }),
                504,
            ),
            (
                GatewayError::Plugin(PluginFault::Memory {
                    plugin: plugin(),
                    limit_mb: 1,
                }),
                500,
            ),
            (GatewayError::PluginMissing(plugin()), 503),
            (GatewayError::RequestBodyTooLarge { limit: 1 }, 413),
            (GatewayError::RequestBody("x".into()), 400),
            (GatewayError::RequestBodyTimeout("x".into()), 408),
            (GatewayError::BadRequest("x".into()), 400),
            (GatewayError::MethodNotAllowed { method: "TRACE".into() }, 405),
            (
                GatewayError::UpstreamConnect {
                    upstream: UpstreamName("u".into()),
                    target: "t".into(),
                    detail: "d".into(),
                },
                502,
            ),
            (
                GatewayError::UpstreamTimeout {
                    upstream: UpstreamName("u".into()),
                    target: "t".into(),
                    timeout_ms: 1,
                },
                504,
            ),
            (GatewayError::ResponseBodyTooLarge { limit: 1 }, 502),
            (
                GatewayError::Overloaded {
                    scope: "the gateway".into(),
                    limit: 1,
                },
                503,
            ),
            (
                GatewayError::NoRoute {
                    method: "GET".into(),
                    path: "/".into(),
                },
                404,
            ),
        ];
        for (error, status) in cases {
            assert_eq!(error.status().as_u16(), status, "{error}");
            assert_eq!(error.to_response().status().as_u16(), status);
        }
    }
}
