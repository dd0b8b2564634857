//! Relaying a provider's stream to the client through its shim.
//!
//! The provider's body is fed to the shim's stream translator piece by
//! piece; the OpenAI chunks it returns are framed as server-sent events
//! (`data: {...}`), and the stream ends with `data: [DONE]` once the
//! provider's stream is complete. Before the response is committed the
//! relay is *primed*: it reads until the shim produced its first chunk, so
//! a provider that fails before that can still be failed over. A stream
//! that breaks later — the provider stops, sends an error or garbage, or
//! goes quiet past the timeout — ends with an OpenAI-style error event and
//! no `[DONE]`, never as a clean-looking truncated answer. The target's
//! key is redacted from the provider's bytes before the shim sees them,
//! and each call to the shim is counted as the route's plugin calls are.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body::Frame;
use http_body_util::BodyExt;
use wasmtime::component::ResourceAny;

use super::accounting::Accounting;
use crate::cache::CompletionBuilder;
use crate::redact::StreamRedactor;
use crate::wire::{api_error, error_json, push_event};
use weir_config::PluginName;
use weir_core::body::{Body, BoxError};
use weir_observe::{Phase, ShimCalls};
use weir_plugins::capabilities::shim::exports::weir::plugin::provider::{ApiError, Usage};
use weir_plugins::{PluginFault, ShimLease};

/// The shim a stream goes through: where its calls are counted, and the
/// redaction of the target's key from what it is given.
pub(super) struct Shim {
    /// The shim plugin.
    pub plugin: PluginName,
    /// The request's shim calls.
    pub calls: ShimCalls,
    /// The target's key, taken out of the provider's bytes.
    pub redactor: StreamRedactor,
}

/// A provider stream being translated.
pub(super) struct Relay {
    lease: ShimLease,
    slot: usize,
    shim: Shim,
    translator: Option<ResourceAny>,
    upstream: Body,
    idle: Duration,
    ready: VecDeque<String>,
    usage: Option<Usage>,
    done: bool,
    ended: bool,
}

impl Relay {
    /// A relay of `upstream` through the shim stream `translator`, which
    /// lives in `lease`'s instance.
    pub(super) fn new(
        mut lease: ShimLease,
        slot: usize,
        translator: ResourceAny,
        upstream: Body,
        idle: Duration,
        shim: Shim,
    ) -> Self {
        // Reused only after the translator is closed cleanly.
        lease.discard_on_drop();
        Relay {
            lease,
            slot,
            shim,
            translator: Some(translator),
            upstream,
            idle,
            ready: VecDeque::new(),
            usage: None,
            done: false,
            ended: false,
        }
    }

    /// Read until the first chunk is ready or the stream completed. An
    /// error means nothing was produced: the target may be failed over.
    pub(super) async fn prime(&mut self) -> Result<(), ApiError> {
        while self.ready.is_empty() && !self.ended {
            self.step().await?;
        }
        Ok(())
    }

    /// The client-facing body. `accounting` is settled when the stream
    /// ends, breaks, or the client goes away; `cache` receives the whole
    /// answer if the stream completed.
    pub(super) fn into_body(
        self,
        accounting: Accounting,
        cache: Option<Box<dyn FnOnce(serde_json::Value) + Send>>,
    ) -> Body {
        let state = Streaming {
            relay: self,
            accounting: Some(accounting),
            builder: cache.as_ref().map(|_| CompletionBuilder::default()),
            cache,
            finished: false,
        };
        let frames = futures_util::stream::unfold(state, |mut state| async move {
            let bytes = state.next().await?;
            Some((Ok::<_, BoxError>(Frame::data(bytes)), state))
        });
        http_body_util::StreamBody::new(frames).boxed_unsync()
    }

    async fn step(&mut self) -> Result<(), ApiError> {
        let Some(translator) = self.translator else {
            self.ended = true;
            return Ok(());
        };
        let next = match tokio::time::timeout(self.idle, self.upstream.frame()).await {
            Err(_) => {
                return Err(api_error(
                    504,
                    "api_error",
                    &format!("the provider sent nothing for {} ms", self.idle.as_millis()),
                ));
            }
            Ok(next) => next,
        };
        let data = match next {
            None => None,
            Some(Err(e)) => {
                return Err(api_error(
                    502,
                    "api_error",
                    &format!("the provider's stream failed: {e}"),
                ));
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => Some(data),
                // Trailers carry nothing a shim needs.
                Err(_) => return Ok(()),
            },
        };
        let end = data.is_none();
        let bytes = match data {
            Some(data) => self.shim.redactor.push(data),
            None => self.shim.redactor.finish(),
        };
        // A piece held back whole (it may begin the key) waits for the next.
        if !bytes.is_empty() {
            self.feed(translator, &bytes, false).await?;
        }
        if end {
            self.ended = true;
            self.feed(translator, &[], true).await?;
        }
        Ok(())
    }

    /// One call to the stream translator: the next bytes, or the end.
    async fn feed(&mut self, translator: ResourceAny, bytes: &[u8], end: bool) -> Result<(), ApiError> {
        let started = Instant::now();
        let output = self.lease.stream_step(self.slot, translator, bytes, end).await;
        self.shim.calls.add(
            &self.shim.plugin,
            Phase::Chunk,
            started,
            output.as_ref().err().map(PluginFault::kind),
        );
        match output {
            Err(fault) => Err(api_error(
                500,
                "api_error",
                &format!("the provider shim failed: {fault}"),
            )),
            Ok(Err(error)) => Err(error),
            Ok(Ok(out)) => {
                self.ready.extend(out.chunks);
                if out.usage.is_some() {
                    self.usage = out.usage;
                }
                self.done |= out.done;
                if self.ended && !self.done {
                    return Err(api_error(
                        502,
                        "api_error",
                        "the provider's stream ended before the answer was complete",
                    ));
                }
                Ok(())
            }
        }
    }

    /// Close the translator after a clean end, so the instance is reused.
    async fn close(&mut self) {
        if let Some(translator) = self.translator.take()
            && self.lease.close_stream(translator).await.is_ok()
        {
            self.lease.reuse_on_drop();
        }
    }
}

/// The client-facing stream's state.
struct Streaming {
    relay: Relay,
    accounting: Option<Accounting>,
    builder: Option<CompletionBuilder>,
    cache: Option<Box<dyn FnOnce(serde_json::Value) + Send>>,
    finished: bool,
}

impl Streaming {
    /// The next bytes for the client; `None` when the stream is over.
    async fn next(&mut self) -> Option<Bytes> {
        if self.finished {
            return None;
        }
        loop {
            if !self.relay.ready.is_empty() {
                let mut out = BytesMut::new();
                while let Some(chunk) = self.relay.ready.pop_front() {
                    if let Some(builder) = &mut self.builder
                        && !builder.add(&chunk)
                    {
                        self.builder = None;
                    }
                    push_event(&mut out, &chunk);
                }
                if let Some(accounting) = &mut self.accounting {
                    accounting.first_token();
                }
                return Some(out.freeze());
            }
            if self.relay.ended {
                self.finished = true;
                self.relay.close().await;
                if let Some(accounting) = self.accounting.take() {
                    accounting.complete(self.relay.usage.as_ref(), 200);
                }
                if let (Some(builder), Some(store)) = (self.builder.take(), self.cache.take()) {
                    store(builder.finish());
                }
                return Some(Bytes::from_static(b"data: [DONE]\n\n"));
            }
            if let Err(error) = self.relay.step().await {
                self.finished = true;
                tracing::warn!("AI stream broken after it started: {}", error.message);
                if let Some(accounting) = self.accounting.take() {
                    accounting.broken(self.relay.usage.as_ref(), error.status);
                }
                let event = format!("data: {}\n\n", error_json(&error));
                return Some(Bytes::from(event));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_with_line_breaks_stays_one_event() {
        let mut out = BytesMut::new();
        push_event(&mut out, "{\"a\":1}");
        push_event(&mut out, "{\n \"b\": 2\r\n}\r\n\ndata: [DONE]");
        assert_eq!(
            &out[..],
            b"data: {\"a\":1}\n\ndata: {\ndata:  \"b\": 2\ndata: }\ndata: \ndata: data: [DONE]\n\n"
        );
    }
}
