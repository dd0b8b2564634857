//! on-response-chunk: passing each chunk of a streamed response body
//! through the plugins that asked for chunks.
//!
//! Each such plugin keeps one instance leased for the whole stream (its
//! handler may hold partial state between chunks). When the upstream body
//! ends, every plugin gets a final call with `end = true` so it can flush
//! what it held back. A stream cut short leaves the instances unfit for
//! reuse, so they are thrown away.
//!
//! Each plugin's calls are timed and added up in the request's record
//! (phase `chunk`).

use std::time::Instant;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body::Frame;
use http_body_util::{BodyExt, BodyStream, StreamBody};

use super::error::GatewayError;
use super::{Body, BoxError};
use weir_observe::{ChunkCalls, PluginOutcome, RequestRecord};
use weir_plugins::{ChainLink, FilterLease, PluginFault};

struct Transformer {
    lease: FilterLease,
    slot: usize,
    fail_open: bool,
    /// This plugin's entry in `calls`.
    index: usize,
    calls: ChunkCalls,
    /// When the request arrived.
    request_started: Instant,
}

impl Transformer {
    async fn apply(&mut self, chunk: Bytes, end: bool) -> Result<Bytes, BoxError> {
        let started = Instant::now();
        let result = self.lease.on_response_chunk(self.slot, &chunk, end).await;
        self.tally(started, result.as_ref().err());
        match result {
            Ok(out) => Ok(Bytes::from(out)),
            Err(fault) if self.fail_open => {
                tracing::warn!("skipping fail-open plugin on a chunk: {fault}");
                Ok(chunk)
            }
            Err(fault) => {
                tracing::warn!("ending the response stream: {fault}");
                Err(BoxError::from(fault))
            }
        }
    }

    /// Add a call that started at `started` to the plugin's entry.
    fn tally(&self, started: Instant, fault: Option<&PluginFault>) {
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        let Some(call) = calls.get_mut(self.index) else {
            return;
        };
        let fault = fault.map(|f| PluginOutcome::fault(f.kind(), self.fail_open));
        call.count(started, self.request_started, fault);
    }
}

/// Wrap `body` so every data frame goes through `links` in order.
/// A plugin that kept its instance from the earlier phases hands it in.
pub(super) async fn transform(
    body: Body,
    links: Vec<(ChainLink, Option<FilterLease>)>,
    record: &mut RequestRecord,
) -> Result<Body, GatewayError> {
    let calls = record.chunk_calls(links.iter().map(|(link, _)| link.plugin.name().clone()));
    let mut transformers = Vec::with_capacity(links.len());
    for (index, (link, kept)) in links.into_iter().enumerate() {
        let mut lease = match kept {
            Some(lease) => lease,
            None => link.plugin.lease(link.slot).await?,
        };
        lease.discard_on_drop();
        transformers.push(Transformer {
            lease,
            slot: link.slot,
            fail_open: link.plugin.limits.fail_open,
            index,
            calls: calls.clone(),
            request_started: record.started,
        });
    }

    struct State {
        frames: BodyStream<Body>,
        transformers: Vec<Transformer>,
        finished: bool,
    }

    let state = State {
        frames: BodyStream::new(body),
        transformers,
        finished: false,
    };
    let stream = futures_util::stream::unfold(state, |mut state| async move {
        if state.finished {
            return None;
        }
        loop {
            match state.frames.next().await {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(mut data) => {
                        for t in &mut state.transformers {
                            match t.apply(data, false).await {
                                Ok(out) => data = out,
                                Err(e) => {
                                    state.finished = true;
                                    return Some((Err(e), state));
                                }
                            }
                        }
                        if data.is_empty() {
                            continue;
                        }
                        return Some((Ok(Frame::data(data)), state));
                    }
                    // Trailers pass through untouched.
                    Err(frame) => return Some((Ok(frame), state)),
                },
                Some(Err(e)) => {
                    state.finished = true;
                    return Some((Err(e), state));
                }
                None => {
                    state.finished = true;
                    let mut data = Bytes::new();
                    for t in &mut state.transformers {
                        match t.apply(data, true).await {
                            Ok(out) => data = out,
                            Err(e) => return Some((Err(e), state)),
                        }
                        t.lease.reuse_on_drop();
                    }
                    if data.is_empty() {
                        return None;
                    }
                    return Some((Ok(Frame::data(data)), state));
                }
            }
        }
    });
    Ok(StreamBody::new(stream).boxed_unsync())
}
