//! `streamGenerateContent?alt=sse` → `chat.completion.chunk`s.
//!
//! Every event's `data` is a whole `GenerateContentResponse` holding the
//! next parts of each candidate. Text parts become content deltas; a
//! function call arrives whole, so it becomes a tool-call start and then
//! all its arguments. A candidate's `finishReason` ends its choice; the
//! answer is done when every candidate seen has finished (Gemini then
//! ends the body), and the usage in that last event is the final count.
//! An event `{"error": {...}}` is the provider failing mid-stream.

use std::collections::BTreeMap;

use weir_sdk::ai::openai::{ChunkWriter, Usage};
use weir_sdk::ai::stream::{SseDecoder, SseEvent};
use weir_sdk::ai::{ApiError, Exchange, ProviderStream, StreamOutput};

use crate::PROVIDER;
use crate::error;
use crate::response::{self, Piece};
use crate::wire::GenerateContentResponse;

/// One streamed answer being translated.
pub struct GeminiStream {
    exchange: Exchange,
    /// The model to report until Gemini names its version.
    configured_model: String,
    decoder: SseDecoder,
    /// Made at the first event, with the model it names.
    writer: Option<ChunkWriter>,
    /// Each candidate seen, by index.
    choices: BTreeMap<u32, ChoiceState>,
    /// The latest counts Gemini reported.
    usage: Option<Usage>,
    done: bool,
}

#[derive(Default)]
struct ChoiceState {
    /// Function calls so far: the next call's tool-call index.
    calls: usize,
    finished: bool,
}

impl GeminiStream {
    /// A translator for one answer to `exchange`.
    pub fn new(exchange: Exchange, model: &str) -> Self {
        GeminiStream {
            exchange,
            configured_model: model.to_string(),
            decoder: SseDecoder::new(),
            writer: None,
            choices: BTreeMap::new(),
            usage: None,
            done: false,
        }
    }

    fn translate(&mut self, events: Vec<SseEvent>) -> Result<StreamOutput, ApiError> {
        let mut out = StreamOutput::empty();
        for event in events {
            self.event(&event.data, &mut out)?;
        }
        Ok(out)
    }

    fn event(&mut self, data: &str, out: &mut StreamOutput) -> Result<(), ApiError> {
        // One pass: an error event parses as a response with `error` set.
        let response: GenerateContentResponse = serde_json::from_str(data).map_err(|e| unreadable(&e))?;
        if let Some(error) = &response.error {
            return Err(error::from_event(error));
        }
        if let Some(metadata) = &response.usage_metadata {
            self.usage = Some(response::usage(metadata));
        }
        if response.candidates.is_empty() {
            if response
                .prompt_feedback
                .as_ref()
                .is_some_and(|f| f.block_reason.is_some())
            {
                return Err(response::no_candidates(response.prompt_feedback.as_ref()));
            }
            // An event with only usage, say.
            return Ok(());
        }
        let writer = self.writer.get_or_insert_with(|| {
            let model = response.model_version.as_deref().unwrap_or(&self.configured_model);
            ChunkWriter::new(self.exchange.id.clone(), self.exchange.created, model)
        });
        let mut finished_now = false;
        for (position, candidate) in response.candidates.iter().enumerate() {
            let index = candidate.index.unwrap_or(position as u32);
            let writer = writer.for_choice(index);
            let choice = self.choices.entry(index).or_insert_with(|| {
                out.chunks.push(writer.role());
                ChoiceState::default()
            });
            let parts = candidate
                .content
                .as_ref()
                .map(|c| c.parts.as_slice())
                .unwrap_or_default();
            for piece in response::pieces(parts)? {
                match piece {
                    Piece::Text(text) => out.chunks.push(writer.text(&text)),
                    Piece::Call { id, name, arguments } => {
                        let call = choice.calls as u32;
                        let id = response::tool_call_id(id, choice.calls);
                        out.chunks.push(writer.tool_call_start(call, &id, &name));
                        out.chunks.push(writer.tool_call_arguments(call, &arguments));
                        choice.calls += 1;
                    }
                }
            }
            if let Some(reason) = &candidate.finish_reason
                && !choice.finished
            {
                choice.finished = true;
                finished_now = true;
                out.chunks
                    .push(writer.finish(response::finish_reason(reason, choice.calls > 0)));
            }
        }
        if finished_now && self.choices.values().all(|c| c.finished) {
            self.done = true;
            out.done = true;
            out.usage = self.usage.map(response::token_usage);
            if let Some(usage) = self.usage.filter(|_| self.exchange.include_usage) {
                out.chunks.push(writer.usage(usage));
            }
        }
        Ok(())
    }
}

impl ProviderStream for GeminiStream {
    fn push(&mut self, bytes: &[u8]) -> Result<StreamOutput, ApiError> {
        let events = self.decoder.push(bytes).map_err(|e| unreadable(&e))?;
        self.translate(events)
    }

    fn finish(&mut self) -> Result<StreamOutput, ApiError> {
        let events = self.decoder.finish().map_err(|e| unreadable(&e))?;
        let out = self.translate(events)?;
        if !self.done {
            return Err(ApiError::bad_upstream(&format!(
                "{PROVIDER}: stream ended before the provider finished"
            )));
        }
        Ok(out)
    }
}

fn unreadable(error: &dyn std::fmt::Display) -> ApiError {
    ApiError::bad_upstream(&format!(
        "{PROVIDER} sent a stream event that could not be read: {error}"
    ))
}
