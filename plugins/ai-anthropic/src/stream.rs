//! Anthropic's streamed message → OpenAI `chat.completion.chunk`s.
//!
//! Anthropic names each server-sent event and repeats the name as the
//! data's `type`:
//!
//! - `message_start`: the message's model and the prompt token count →
//!   the role chunk.
//! - `content_block_start` / `content_block_delta` / `content_block_stop`,
//!   per block `index`: `text` blocks grow by `text_delta`s → text chunks;
//!   `tool_use` blocks (id, name) grow by `input_json_delta`s (pieces of the
//!   arguments' JSON) → tool-call chunks. OpenAI numbers tool calls among
//!   themselves, so the n-th `tool_use` block is tool call n whatever its
//!   block index.
//! - `message_delta`: `stop_reason` and the (cumulative) token counts.
//! - `message_stop`: the end → the finish chunk, the usage chunk if asked
//!   for, and `done`.
//! - `ping` and event types added later are ignored, as Anthropic asks of
//!   clients; `error` ends the stream with an error.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;
use weir_sdk::ai::openai::ChunkWriter;
use weir_sdk::ai::stream::{SseDecoder, SseEvent};
use weir_sdk::ai::{ApiError, Exchange, ProviderStream, StreamOutput};

use crate::error::{self, ErrorDetail};
use crate::response::{Usage, finish_reason};

/// One event's data.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event {
    MessageStart {
        message: StartedMessage,
    },
    ContentBlockStart {
        index: u32,
        content_block: StartedBlock,
    },
    ContentBlockDelta {
        index: u32,
        delta: BlockDelta,
    },
    ContentBlockStop {
        index: u32,
    },
    MessageDelta {
        delta: MessageDelta,
        #[serde(default)]
        usage: Option<Usage>,
    },
    MessageStop,
    Error {
        error: ErrorDetail,
    },
    /// `ping`, and event types Anthropic may add.
    #[serde(other)]
    Ignored,
}

#[derive(Debug, Deserialize)]
struct StartedMessage {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StartedBlock {
    Text {
        #[serde(default)]
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    /// Thinking blocks and blocks of server tools.
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockDelta {
    TextDelta {
        text: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    /// Thinking, signatures, citations.
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
struct MessageDelta {
    #[serde(default)]
    stop_reason: Option<String>,
}

/// What an open content block becomes.
#[derive(Debug, Clone, Copy)]
enum OpenBlock {
    Text,
    ToolCall {
        /// Its OpenAI tool-call index.
        index: u32,
        /// Some arguments text was sent.
        has_arguments: bool,
    },
    Skipped,
}

/// One streamed message being translated.
pub struct MessageStream {
    exchange: Exchange,
    decoder: SseDecoder,
    /// Names the configured model until `message_start` names Anthropic's.
    writer: ChunkWriter,
    /// The role chunk was sent.
    started: bool,
    /// Blocks by Anthropic's block index.
    blocks: HashMap<u32, OpenBlock>,
    tool_calls: u32,
    stop_reason: Option<String>,
    usage: Usage,
    done: bool,
    /// An error met after chunks of the same piece: those chunks go out
    /// first, the error with the next call.
    held_error: Option<ApiError>,
}

impl MessageStream {
    /// A stream for `exchange`; `configured_model` is reported unless
    /// Anthropic names the model.
    pub fn new(exchange: Exchange, configured_model: &str) -> Self {
        MessageStream {
            writer: ChunkWriter::new(exchange.id.clone(), exchange.created, configured_model),
            exchange,
            decoder: SseDecoder::new(),
            started: false,
            blocks: HashMap::new(),
            tool_calls: 0,
            stop_reason: None,
            usage: Usage::default(),
            done: false,
            held_error: None,
        }
    }

    /// Translate decoded events. An error (an `error` event, data that does
    /// not parse) ends the translation; if this piece already made chunks,
    /// they are returned and the error is held for the next call.
    fn translate(&mut self, events: Result<Vec<SseEvent>, String>) -> Result<StreamOutput, ApiError> {
        if let Some(error) = self.held_error.take() {
            return Err(error);
        }
        let mut out = StreamOutput::empty();
        let result = events
            .map_err(|e| ApiError::bad_upstream(&e))
            .and_then(|events| self.events(events, &mut out));
        match result {
            Ok(()) => Ok(out),
            Err(error) if out.chunks.is_empty() => Err(error),
            Err(error) => {
                self.held_error = Some(error);
                Ok(out)
            }
        }
    }

    fn events(&mut self, events: Vec<SseEvent>, out: &mut StreamOutput) -> Result<(), ApiError> {
        for event in events {
            if self.done {
                break;
            }
            let data: Event = serde_json::from_str(&event.data).map_err(|e| {
                ApiError::bad_upstream(&format!("Anthropic sent a stream event that does not parse: {e}"))
            })?;
            self.event(data, out)?;
        }
        Ok(())
    }

    fn event(&mut self, event: Event, out: &mut StreamOutput) -> Result<(), ApiError> {
        match event {
            Event::MessageStart { message } => {
                if let Some(usage) = &message.usage {
                    self.usage.update(usage);
                }
                self.start(message.model, out);
            }
            Event::ContentBlockStart { index, content_block } => {
                self.start(None, out);
                let block = match content_block {
                    StartedBlock::Text { text } => {
                        if !text.is_empty() {
                            out.chunks.push(self.writer.text(&text));
                        }
                        OpenBlock::Text
                    }
                    StartedBlock::ToolUse { id, name, input } => {
                        let call = self.tool_calls;
                        self.tool_calls += 1;
                        out.chunks.push(self.writer.tool_call_start(call, &id, &name));
                        // The input normally arrives as deltas; a block that
                        // starts with it whole sends it now.
                        let has_arguments = matches!(&input, Value::Object(fields) if !fields.is_empty());
                        if has_arguments {
                            out.chunks
                                .push(self.writer.tool_call_arguments(call, &input.to_string()));
                        }
                        OpenBlock::ToolCall {
                            index: call,
                            has_arguments,
                        }
                    }
                    StartedBlock::Other => OpenBlock::Skipped,
                };
                self.blocks.insert(index, block);
            }
            Event::ContentBlockDelta { index, delta } => {
                self.start(None, out);
                match (self.blocks.get_mut(&index), delta) {
                    (Some(OpenBlock::Text), BlockDelta::TextDelta { text }) if !text.is_empty() => {
                        out.chunks.push(self.writer.text(&text));
                    }
                    (
                        Some(OpenBlock::ToolCall { index, has_arguments }),
                        BlockDelta::InputJsonDelta { partial_json },
                    ) if !partial_json.is_empty() => {
                        out.chunks.push(self.writer.tool_call_arguments(*index, &partial_json));
                        *has_arguments = true;
                    }
                    (None, _) => {
                        return Err(ApiError::bad_upstream(&format!(
                            "Anthropic sent a delta for content block {index}, which it had not started"
                        )));
                    }
                    _ => {}
                }
            }
            Event::ContentBlockStop { index } => {
                // A call without arguments streams none; OpenAI's has `{}`.
                if let Some(OpenBlock::ToolCall {
                    index: call,
                    has_arguments: false,
                }) = self.blocks.remove(&index)
                {
                    out.chunks.push(self.writer.tool_call_arguments(call, "{}"));
                }
            }
            Event::MessageDelta { delta, usage } => {
                if delta.stop_reason.is_some() {
                    self.stop_reason = delta.stop_reason;
                }
                if let Some(usage) = &usage {
                    self.usage.update(usage);
                }
            }
            Event::MessageStop => {
                self.start(None, out);
                out.chunks
                    .push(self.writer.finish(finish_reason(self.stop_reason.as_deref())));
                if self.exchange.include_usage {
                    out.chunks.push(self.writer.usage(self.usage.openai()));
                }
                out.usage = Some(self.usage.tokens());
                out.done = true;
                self.done = true;
            }
            Event::Error { error } => return Err(error::from_event(&error)),
            Event::Ignored => {}
        }
        Ok(())
    }

    /// Send the role chunk, once, before anything else; `model` is the
    /// model Anthropic reported, named in every chunk.
    fn start(&mut self, model: Option<String>, out: &mut StreamOutput) {
        if self.started {
            return;
        }
        if let Some(model) = model {
            self.writer.model = model;
        }
        out.chunks.push(self.writer.role());
        self.started = true;
    }
}

impl ProviderStream for MessageStream {
    fn push(&mut self, bytes: &[u8]) -> Result<StreamOutput, ApiError> {
        let events = self.decoder.push(bytes);
        self.translate(events)
    }

    fn finish(&mut self) -> Result<StreamOutput, ApiError> {
        let events = self.decoder.finish();
        let out = self.translate(events)?;
        if let Some(error) = self.held_error.take() {
            return Err(error);
        }
        if !self.done {
            return Err(ApiError::bad_upstream("stream ended before the provider finished"));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
