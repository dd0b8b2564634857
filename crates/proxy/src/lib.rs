//! The request path: listener → router → route plugins (on-request) →
//! upstream → route plugins in reverse (on-response, on-response-chunk) →
//! client.
//!
//! Bodies stream through untouched unless a plugin on the route asked for
//! the whole body (then it is buffered up to a limit: 413 for requests,
//! 502 for responses) or for response chunks.

pub mod ai_backend;
mod body;
mod client_body;
pub mod error;
pub use weir_core::forwarding;
pub use weir_select::health;
pub mod listener;
pub use weir_core::path;
pub mod router;
mod streaming;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;

pub use ai_backend::{AiBackend, AiCall, TargetAttempt};
pub use body::{Body, BoxError, box_error, empty_body, full_body};
use body::{hold_until_body_ends, read_limited};
use error::GatewayError;
use router::{Backend, InFlightLimit, Route, RouteTable};
use upstream::UpstreamBody;
use weir_config::InstanceMode;
use weir_config::Limits;
use weir_observe::{Observer, Phase, PluginOutcome, Reported, RequestRecord, TraceContext};
use weir_plugins::exchange::{Properties, RequestState, ResponseState};
use weir_plugins::{ChainLink, FilterLease, PluginFault, Reply, RequestAction};

/// Everything needed to serve requests under one config: routes (with
/// their plugin chains and upstreams) and limits. Replaced whole on reload.
pub struct Proxy {
    /// The route table.
    pub routes: RouteTable,
    /// Size limits.
    pub limits: Limits,
    /// The loaded plugins, for the admin API.
    pub plugins: Vec<weir_plugins::AnyPlugin>,
    /// The gateway's limit on requests in flight, if any.
    pub in_flight: Option<InFlightLimit>,
    /// Where finished requests are reported.
    pub observer: Arc<Observer>,
    /// How request paths are made canonical.
    pub paths: path::PathPolicy,
}

/// What the request phase decided.
pub enum Flow {
    /// Send the request to the upstream, then run the response phase.
    Forward(Forward),
    /// A plugin answered; its answer went through the response phase.
    Answered(Response<Body>),
}

/// A request ready for the upstream, and what the response phase needs.
pub struct Forward {
    /// Method, URI and headers as the plugins left them.
    pub parts: http::request::Parts,
    /// The body to send.
    pub body: UpstreamBody,
    /// The plugins whose request phase ran, in chain order.
    pub ran: Vec<Ran>,
    /// The request's properties.
    pub properties: Properties,
}

/// A plugin whose request phase ran, with the instance it ran on when that
/// instance must also serve the response phase (a plugin in fresh-instance
/// mode gets one instance per request, not one per phase).
pub struct Ran {
    /// The plugin and its place in the chain.
    pub link: ChainLink,
    lease: Option<FilterLease>,
}

/// How the client reached us.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    /// The client's address.
    pub addr: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
}

impl Proxy {
    /// Serve one request; every failure becomes the mapped error response.
    ///
    /// Boxed so the compiler checks the future is `Send` here, with
    /// concrete lifetimes, rather than inside hyper's generic service.
    pub fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
        peer: Peer,
    ) -> futures_util::future::BoxFuture<'static, Response<Body>> {
        Box::pin(async move { self.handle_inner(request, peer).await })
    }

    async fn handle_inner(&self, mut request: Request<Incoming>, peer: Peer) -> Response<Body> {
        // Before anything looks at the request: one canonical path for the
        // route table, the plugins, the record and the upstream.
        let checked = self.check_request(&mut request);
        let mut record = Box::new(RequestRecord::new(
            request.method().clone(),
            request.uri().path(),
            peer.addr.ip(),
        ));
        record.trace = TraceContext::new(request.headers().get("traceparent"));
        self.observer.metrics.in_flight.inc();
        let bytes_in = record.bytes_in.clone();
        let pace = client_body::BodyPace::new(&self.limits);
        let request = request.map(|b| client_body::ClientBody::new(b, bytes_in, pace).boxed_unsync());
        // Refuse what no route should see; shed load at once rather than
        // queue it.
        let permit = checked.and_then(|()| match &self.in_flight {
            None => Ok(None),
            Some(limit) => limit.try_enter().map(Some).ok_or_else(|| GatewayError::Overloaded {
                scope: "the gateway".into(),
                limit: limit.limit(),
            }),
        });
        let response = match permit {
            Ok(permit) => {
                let response = match self.serve(request, peer, &mut record).await {
                    Ok(response) => response,
                    Err(error) => self.error_response(error, &mut record),
                };
                hold_until_body_ends(response, permit)
            }
            Err(error) => self.error_response(error, &mut record),
        };
        record.status = response.status().as_u16();
        let observer = self.observer.clone();
        response.map(|body| Reported::new(body, record, observer).boxed_unsync())
    }

    /// The response for a request the gateway failed, logged when it is
    /// the gateway's or an upstream's fault.
    fn error_response(&self, error: GatewayError, record: &mut RequestRecord) -> Response<Body> {
        if error.status().is_server_error() {
            tracing::warn!(
                route = record.route.as_ref().map(|r| r.as_str()),
                "{}: {error}",
                record.method
            );
        }
        record.error = Some(error.kind());
        error.to_response()
    }

    /// Refuse what no route should see, and put the path in canonical
    /// form (see [`path`]):
    ///
    /// - an HTTP/1.1 request without `host`, or any request with two
    ///   (RFC 9112 §3.2: a server must answer 400);
    /// - a path the canonical form refuses.
    fn check_request<B>(&self, request: &mut Request<B>) -> Result<(), GatewayError> {
        let mut hosts = request.headers().get_all(header::HOST).iter();
        match (hosts.next(), hosts.next()) {
            (_, Some(_)) => {
                return Err(GatewayError::BadRequest(
                    "the request has more than one host header".into(),
                ));
            }
            (None, None) if request.version() == http::Version::HTTP_11 && request.uri().authority().is_none() => {
                return Err(GatewayError::BadRequest(
                    "an HTTP/1.1 request must have a host header".into(),
                ));
            }
            _ => {}
        }
        if request.uri().path_and_query().is_none() {
            // Authority form (CONNECT): no path to route on.
            return Ok(());
        }
        match path::normalize_uri(request.uri(), self.paths) {
            Ok(None) => Ok(()),
            Ok(Some(uri)) => {
                *request.uri_mut() = uri;
                Ok(())
            }
            Err(e) => Err(GatewayError::BadRequest(format!("{e}"))),
        }
    }

    /// The route for a request: the first whose host, path prefix and
    /// method match. CONNECT and TRACE only reach a route that names them
    /// in its methods; otherwise they are answered 405.
    pub fn route_for<B>(&self, request: &Request<B>) -> Result<Arc<Route>, GatewayError> {
        let authority = forwarding::request_authority(request.uri(), request.headers());
        self.routes
            .find(request.method(), authority, request.uri().path())
            .cloned()
            .ok_or_else(|| {
                if router::needs_explicit_route(request.method()) {
                    GatewayError::MethodNotAllowed {
                        method: request.method().to_string(),
                    }
                } else {
                    GatewayError::NoRoute {
                        method: request.method().to_string(),
                        path: request.uri().path().to_string(),
                    }
                }
            })
    }

    async fn serve(
        &self,
        request: Request<Body>,
        peer: Peer,
        record: &mut RequestRecord,
    ) -> Result<Response<Body>, GatewayError> {
        let route = self.route_for(&request)?;
        record.route = Some(route.name.clone());
        let permit = match &route.in_flight {
            None => None,
            Some(limit) => Some(limit.try_enter().ok_or_else(|| GatewayError::Overloaded {
                scope: format!("route {}", route.name),
                limit: limit.limit(),
            })?),
        };
        let forward = match self.request_phase(&route, request, peer, record).await? {
            Flow::Answered(response) => return Ok(response),
            Flow::Forward(forward) => forward,
        };
        record.consumer = forward.properties.get("consumer").map(str::to_string);
        let response = match &route.backend {
            Backend::Upstream(pool) => {
                record.upstream = Some(pool.name.clone());
                pool.send(forward.parts, forward.body, record).await?
            }
            Backend::Ai(ai) => {
                let body = match forward.body {
                    UpstreamBody::Replayable(bytes) => bytes,
                    UpstreamBody::Streaming(body) => {
                        read_limited(Some(body), self.limits.max_request_body_bytes, true).await?
                    }
                };
                let account = weir_observe::AiSlot::default();
                record.ai = Some(account.clone());
                let mut attempts = Vec::new();
                let response = ai
                    .serve(AiCall {
                        parts: forward.parts,
                        body,
                        properties: &forward.properties,
                        max_response_bytes: self.limits.max_response_body_bytes,
                        account,
                        attempts: &mut attempts,
                        shim_calls: record.shim_calls(),
                    })
                    .await;
                // Each target asked is an attempt of the request, as an
                // upstream's are: in the access log and the trace.
                for tried in attempts {
                    record.attempt(
                        tried.target.into(),
                        weir_observe::record::new_span_id(),
                        tried.started,
                        weir_observe::AttemptOutcome::Answered(tried.status),
                    );
                }
                response
            }
        };
        let response = self
            .response_phase(forward.ran, response, forward.properties, record)
            .await?;
        Ok(hold_until_body_ends(response, permit))
    }

    /// The request phase: run the route's plugins in chain order
    /// (on-request), then prepare the request for the upstream — or, if a
    /// plugin answered, run the response phase on its answer.
    pub async fn request_phase(
        &self,
        route: &Route,
        request: Request<Body>,
        peer: Peer,
        record: &mut RequestRecord,
    ) -> Result<Flow, GatewayError> {
        let (mut parts, body) = request.into_parts();
        let authority = forwarding::request_authority(&parts.uri, &parts.headers).map(str::to_string);

        let chain = &route.chain;
        // Only plugins read properties; a route without any skips the work.
        let properties = if chain.links.is_empty() {
            Properties::default()
        } else {
            let mut properties = Properties::with_capacity(4);
            let _ = properties.set_static("client-ip", forwarding::IpText::new(peer.addr.ip()).as_str());
            let _ = properties.set_static("route", route.name.as_str());
            properties
        };

        // The client's connection-level headers stop here, and so does
        // what it claims in the fields that are the gateway's to say.
        forwarding::strip_from_client(&mut parts.headers);

        // Fail closed: a route never runs with a step of its chain missing.
        if let Some(missing) = chain.missing.first() {
            return Err(GatewayError::PluginMissing(missing.clone()));
        }
        let mut client_body = Some(body);
        let buffered = if chain.needs_request_body() {
            Some(read_limited(client_body.take(), self.limits.max_request_body_bytes, true).await?)
        } else {
            None
        };
        // Boxed once, so that lending it to each plugin moves a pointer.
        let mut state = Box::new(RequestState {
            parts,
            body: buffered,
            body_replaced: false,
            body_visible: false,
            properties,
        });

        let mut ran: Vec<Ran> = Vec::with_capacity(chain.links.len());
        for link in &chain.links {
            let mut kept = None;
            if link.interests.on_request {
                let started = std::time::Instant::now();
                let mut lease = match link.plugin.lease(link.slot).await {
                    Ok(lease) => lease,
                    Err(fault) => {
                        skip_if_fail_open(link, fault, Phase::Request, started, record)?;
                        continue;
                    }
                };
                state.body_visible = link.interests.request_body;
                let (back, outcome) = lease.on_request(link.slot, state).await;
                state = back;
                match outcome {
                    Ok(RequestAction::Continue) => {
                        record.plugin_call(link.plugin.name(), Phase::Request, started, PluginOutcome::Continue);
                    }
                    Ok(RequestAction::Respond(reply)) => {
                        record.plugin_call(
                            link.plugin.name(),
                            Phase::Request,
                            started,
                            PluginOutcome::Responded(reply.status),
                        );
                        record.consumer = state.properties.get("consumer").map(str::to_string);
                        let response = reply_response(reply, link)?;
                        let response = self.response_phase(ran, response, state.properties, record).await?;
                        return Ok(Flow::Answered(response));
                    }
                    Err(fault) => {
                        skip_if_fail_open(link, fault, Phase::Request, started, record)?;
                        continue;
                    }
                }
                if link.plugin.limits.mode == InstanceMode::Fresh {
                    kept = Some(lease);
                }
            }
            ran.push(Ran {
                link: link.clone(),
                lease: kept,
            });
        }

        let RequestState {
            mut parts,
            body,
            properties,
            ..
        } = *state;
        let proto = if peer.tls { "https" } else { "http" };
        forwarding::add_forwarded(&mut parts.headers, peer.addr.ip(), proto, authority.as_deref());
        if route.preserve_host {
            if let Some(host) = authority.as_deref().and_then(|a| HeaderValue::from_str(a).ok()) {
                parts.headers.insert(header::HOST, host);
            }
        } else {
            parts.headers.remove(header::HOST);
        }
        let body = match (body, client_body) {
            (Some(bytes), _) => {
                parts.headers.remove(header::TRANSFER_ENCODING);
                parts
                    .headers
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
                UpstreamBody::Replayable(bytes)
            }
            (None, Some(body)) if body.is_end_stream() => UpstreamBody::Replayable(Bytes::new()),
            (None, Some(body)) => UpstreamBody::Streaming(body),
            (None, None) => UpstreamBody::Replayable(Bytes::new()),
        };
        Ok(Flow::Forward(Forward {
            parts,
            body,
            ran,
            properties,
        }))
    }

    /// The response phase: run on-response (and set up on-response-chunk)
    /// for `ran` — the plugins whose request phase ran — in reverse order.
    pub async fn response_phase(
        &self,
        mut ran: Vec<Ran>,
        response: Response<Body>,
        properties: Properties,
        record: &mut RequestRecord,
    ) -> Result<Response<Body>, GatewayError> {
        let (mut parts, body) = response.into_parts();
        forwarding::strip_hop_by_hop(&mut parts.headers);
        if ran.is_empty() {
            return Ok(Response::from_parts(parts, body));
        }
        let mut body = Some(body);
        let buffered = if ran.iter().any(|r| r.link.interests.response_body) {
            Some(read_limited(body.take(), self.limits.max_response_body_bytes, false).await?)
        } else {
            None
        };
        let mut state = Box::new(ResponseState {
            parts,
            body: buffered,
            body_replaced: false,
            body_visible: false,
            properties,
        });
        for index in (0..ran.len()).rev() {
            let Ran { link, lease: kept } = &mut ran[index];
            if !link.interests.on_response {
                continue;
            }
            let started = std::time::Instant::now();
            let leased = match kept.take() {
                Some(lease) => Ok(lease),
                None => link.plugin.lease(link.slot).await,
            };
            let mut lease = match leased {
                Ok(lease) => lease,
                Err(fault) => {
                    skip_if_fail_open(link, fault, Phase::Response, started, record)?;
                    continue;
                }
            };
            state.body_visible = link.interests.response_body;
            let (back, outcome) = lease.on_response(link.slot, state).await;
            state = back;
            if link.plugin.limits.mode == InstanceMode::Fresh {
                *kept = Some(lease);
            }
            match outcome {
                Ok(()) => record.plugin_call(link.plugin.name(), Phase::Response, started, PluginOutcome::Continue),
                Err(fault) => skip_if_fail_open(link, fault, Phase::Response, started, record)?,
            }
        }

        let ResponseState {
            mut parts,
            body: new_body,
            ..
        } = *state;
        let body = match (new_body, body) {
            (Some(bytes), _) => {
                parts.headers.remove(header::TRANSFER_ENCODING);
                parts
                    .headers
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
                full_body(bytes)
            }
            (None, Some(body)) => body,
            (None, None) => full_body(Bytes::new()),
        };

        let chunk_links: Vec<(ChainLink, Option<FilterLease>)> = ran
            .into_iter()
            .rev()
            .filter(|r| r.link.interests.response_chunks)
            .map(|r| (r.link, r.lease))
            .collect();
        if chunk_links.is_empty() {
            return Ok(Response::from_parts(parts, body));
        }
        // Transformed chunks change the length.
        parts.headers.remove(header::CONTENT_LENGTH);
        let body = streaming::transform(body, chunk_links, record).await?;
        Ok(Response::from_parts(parts, body))
    }
}

/// A plugin's fault: skipped, with a warning, if the plugin is fail-open;
/// the request's error otherwise. Either way the call is recorded.
fn skip_if_fail_open(
    link: &ChainLink,
    fault: PluginFault,
    phase: Phase,
    started: std::time::Instant,
    record: &mut RequestRecord,
) -> Result<(), GatewayError> {
    let skipped = link.plugin.limits.fail_open;
    record.plugin_call(
        link.plugin.name(),
        phase,
        started,
        PluginOutcome::fault(fault.kind(), skipped),
    );
    if skipped {
        tracing::warn!("skipping fail-open plugin: {fault}");
        Ok(())
    } else {
        Err(fault.into())
    }
}

/// A plugin's early answer as a response.
fn reply_response(reply: Reply, link: &ChainLink) -> Result<Response<Body>, GatewayError> {
    let invalid = |what: &'static str, detail: String| GatewayError::PluginOutput {
        plugin: link.plugin.name().clone(),
        what,
        detail,
    };
    let status = StatusCode::from_u16(reply.status).map_err(|_| invalid("status", reply.status.to_string()))?;
    let mut response = Response::new(full_body(reply.body));
    *response.status_mut() = status;
    // Checked like every header list a plugin hands over: bad names and
    // values, and more names than a header map holds, are refused.
    *response.headers_mut() =
        weir_plugins::capabilities::header_list(&reply.headers).map_err(|detail| invalid("headers", detail))?;
    Ok(response)
}

/// The gateway's live state, swapped whole when the config changes.
pub type SharedProxy = Arc<arc_swap::ArcSwap<Proxy>>;
