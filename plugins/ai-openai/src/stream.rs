//! A streamed answer: OpenAI's server-sent `chat.completion.chunk`s,
//! passed through with the gateway's id and time.
//!
//! The request always asked for usage, so the provider ends with a chunk
//! that has no choices and the token counts. Its counts are reported to
//! the gateway either way; the chunk itself reaches the client only if
//! the client asked for it, and otherwise the `usage` field the provider
//! then puts in every chunk (null until the end) is removed too. Azure's
//! prompt-filter chunk (no choices, no usage) passes through.

use std::collections::BTreeMap;

use serde_json::value::RawValue;
use serde_json::{Map, Value};
use weir_sdk::ai::stream::{SseDecoder, SseEvent};
use weir_sdk::ai::{ApiError, Exchange, ProviderStream, StreamOutput, body_excerpt};

use crate::{error, response};

/// One streamed answer being passed through.
pub struct ChunkStream {
    provider: &'static str,
    model: String,
    exchange: Exchange,
    events: SseDecoder,
    /// `data: [DONE]` arrived.
    done: bool,
}

impl ChunkStream {
    /// A stream for one exchange; `model` fills chunks that name none.
    pub fn new(provider: &'static str, model: &str, exchange: Exchange) -> Self {
        ChunkStream {
            provider,
            model: model.to_string(),
            exchange,
            events: SseDecoder::new(),
            done: false,
        }
    }

    fn translate(&mut self, events: Vec<SseEvent>) -> Result<StreamOutput, ApiError> {
        let mut output = StreamOutput::empty();
        for event in events {
            // Nothing follows `[DONE]`; should a server send more, it is
            // not part of this answer.
            if self.done {
                break;
            }
            if event.data.trim() == "[DONE]" {
                self.done = true;
                output.done = true;
                continue;
            }
            if self.pass_through(&event.data, &mut output) {
                continue;
            }
            let value: Value = serde_json::from_str(&event.data).map_err(|e| {
                ApiError::bad_upstream(&format!(
                    "{} sent a stream event that is not JSON ({e}): {}",
                    self.provider,
                    body_excerpt(event.data.as_bytes())
                ))
            })?;
            if let Some(error) = error::from_value(self.provider, 502, &value) {
                return Err(error);
            }
            let Value::Object(mut chunk) = value else {
                return Err(ApiError::bad_upstream(&format!(
                    "{} sent a stream event that is not a chunk: {}",
                    self.provider,
                    body_excerpt(event.data.as_bytes())
                )));
            };
            if let Some(usage) = response::read_usage(chunk.get("usage")) {
                output.usage = Some(usage);
            }
            if let Some(chunk) = self.client_chunk(&mut chunk) {
                output.chunks.push(chunk);
            }
        }
        Ok(output)
    }

    /// The chunk for the client, or `None` for a usage chunk it did not
    /// ask for.
    /// The common case, without building a JSON tree: a chunk whose keys
    /// carry no escapes and that is not an error is copied field by field,
    /// each value as the provider wrote it, with `id` and `created` (and an
    /// empty `model` or `object`) replaced. False when the chunk needs the
    /// general path (`translate` then reports what is wrong with it).
    fn pass_through(&self, data: &str, output: &mut StreamOutput) -> bool {
        let Ok(fields) = serde_json::from_str::<BTreeMap<&str, &RawValue>>(data) else {
            return false;
        };
        if fields.contains_key("error") {
            return false;
        }
        let usage = fields.get("usage").map(|u| u.get()).filter(|u| *u != "null");
        if let Some(usage) = usage {
            match serde_json::from_str::<Value>(usage) {
                Ok(value) => {
                    if let Some(counts) = response::read_usage(Some(&value)) {
                        output.usage = Some(counts);
                    }
                }
                Err(_) => return false,
            }
        }
        let no_choices = fields.get("choices").is_none_or(|c| is_empty_array(c.get()));
        if !self.exchange.include_usage && no_choices && usage.is_some() {
            return true;
        }
        let mut chunk = String::with_capacity(data.len() + 48);
        chunk.push('{');
        let mut field = |name: &str, value: &str| {
            if chunk.len() > 1 {
                chunk.push(',');
            }
            chunk.push('"');
            chunk.push_str(name);
            chunk.push_str("\":");
            chunk.push_str(value);
        };
        let id = Value::from(self.exchange.id.as_str()).to_string();
        field("id", &id);
        field("created", &self.exchange.created.to_string());
        for (name, default) in [("model", self.model.as_str()), ("object", "chat.completion.chunk")] {
            match fields.get(name).map(|v| v.get()) {
                Some(value) if value.starts_with('"') && value != "\"\"" => field(name, value),
                _ => field(name, &Value::from(default).to_string()),
            }
        }
        for (name, value) in &fields {
            let replaced = matches!(*name, "id" | "created" | "model" | "object");
            let dropped = *name == "usage" && !self.exchange.include_usage;
            if !replaced && !dropped {
                field(name, value.get());
            }
        }
        chunk.push('}');
        output.chunks.push(chunk);
        true
    }

    fn client_chunk(&self, chunk: &mut Map<String, Value>) -> Option<String> {
        let no_choices = chunk.get("choices").and_then(Value::as_array).is_none_or(Vec::is_empty);
        let has_usage = chunk.get("usage").is_some_and(|u| !u.is_null());
        if !self.exchange.include_usage {
            if no_choices && has_usage {
                return None;
            }
            chunk.remove("usage");
        }
        response::stamp(chunk, &self.exchange, &self.model, "chat.completion.chunk");
        Some(Value::Object(std::mem::take(chunk)).to_string())
    }
}

/// `[]`, allowing whitespace inside.
fn is_empty_array(raw: &str) -> bool {
    raw.strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .is_some_and(|inside| inside.trim().is_empty())
}

impl ProviderStream for ChunkStream {
    fn push(&mut self, bytes: &[u8]) -> Result<StreamOutput, ApiError> {
        let events = self.events.push(bytes).map_err(|e| ApiError::bad_upstream(&e))?;
        self.translate(events)
    }

    fn finish(&mut self) -> Result<StreamOutput, ApiError> {
        let events = self.events.finish().map_err(|e| ApiError::bad_upstream(&e))?;
        let output = self.translate(events)?;
        if !self.done {
            return Err(ApiError::bad_upstream(&format!(
                "stream ended before the provider finished: {} sent no [DONE]",
                self.provider
            )));
        }
        Ok(output)
    }
}

#[cfg(test)]
mod tests {
    use weir_sdk::ai::testing::translate_in_pieces;

    use super::*;

    fn exchange(include_usage: bool) -> Exchange {
        Exchange {
            id: "chatcmpl-gw7".into(),
            created: 1_700_000_007,
            include_usage,
        }
    }

    fn open(include_usage: bool) -> ChunkStream {
        ChunkStream::new("OpenAI", "gpt-4o", exchange(include_usage))
    }

    /// Translate `body` fed whole, byte by byte, in every piece size and
    /// with `\r\n` line ends; every way must give the same output.
    fn translated(body: &[u8], include_usage: bool) -> StreamOutput {
        let whole = translate_in_pieces(&mut open(include_usage), body, body.len()).unwrap();
        let crlf = String::from_utf8(body.to_vec()).unwrap().replace('\n', "\r\n");
        for (variant, bytes) in [("lf", body), ("crlf", crlf.as_bytes())] {
            for size in 1..=bytes.len() {
                let output = translate_in_pieces(&mut open(include_usage), bytes, size).unwrap();
                assert_eq!(output.chunks, whole.chunks, "{variant}, pieces of {size}");
                assert_eq!(counts(&output), counts(&whole), "{variant}, pieces of {size}");
                assert!(output.done);
            }
        }
        whole
    }

    fn counts(output: &StreamOutput) -> Option<(u32, u32)> {
        output.usage.map(|u| (u.prompt_tokens, u.completion_tokens))
    }

    fn chunks(output: &StreamOutput) -> Vec<Value> {
        output.chunks.iter().map(|c| serde_json::from_str(c).unwrap()).collect()
    }

    /// The provider's chunks (its `data:` lines before `[DONE]`) as JSON.
    fn provider_chunks(body: &str) -> Vec<Value> {
        body.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    /// The pass-through and the general path give the same chunks (as
    /// JSON values) for every event of every fixture, with and without
    /// usage asked for.
    #[test]
    fn the_pass_through_agrees_with_the_general_path() {
        let fixtures = [
            include_str!("../fixtures/stream_text.sse"),
            include_str!("../fixtures/stream_tool_calls.sse"),
            include_str!("../fixtures/stream_azure.sse"),
        ];
        let mut compared = 0;
        for include_usage in [false, true] {
            let stream = open(include_usage);
            for fixture in fixtures {
                for data in fixture.lines().filter_map(|l| l.strip_prefix("data: ")) {
                    if data == "[DONE]" {
                        continue;
                    }
                    let mut fast = StreamOutput::empty();
                    assert!(stream.pass_through(data, &mut fast), "not passed through: {data}");
                    let Value::Object(mut map) = serde_json::from_str(data).unwrap() else {
                        panic!("not an object: {data}")
                    };
                    let general = stream.client_chunk(&mut map);
                    let parse = |c: &String| serde_json::from_str::<Value>(c).unwrap();
                    assert_eq!(
                        fast.chunks.first().map(parse),
                        general.as_ref().map(parse),
                        "include_usage {include_usage}: {data}"
                    );
                    compared += 1;
                }
            }
        }
        assert!(compared > 10);
        // Errors and escaped keys take the general path.
        let mut out = StreamOutput::empty();
        assert!(!open(false).pass_through(r#"{"error":{"message":"x"}}"#, &mut out));
        assert!(!open(false).pass_through(r#"{"i\u0064":"x"}"#, &mut out));
        assert!(is_empty_array("[ ]") && !is_empty_array("[{}]"));
    }

    #[test]
    fn a_text_stream_passes_through_with_the_gateway_id() {
        let body = include_str!("../fixtures/stream_text.sse");
        let output = translated(body.as_bytes(), true);
        let usage = output.usage.unwrap();
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (19, 10));
        let mut expected = provider_chunks(body);
        for chunk in &mut expected {
            chunk["id"] = "chatcmpl-gw7".into();
            chunk["created"] = 1_700_000_007.into();
        }
        assert_eq!(chunks(&output), expected);
        let text: String = chunks(&output)
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_string))
            .collect();
        assert_eq!(text, "Hello! How can I assist you today?");
    }

    #[test]
    fn the_usage_chunk_the_client_did_not_ask_for_is_dropped_but_reported() {
        let body = include_str!("../fixtures/stream_text.sse");
        let output = translated(body.as_bytes(), false);
        assert_eq!(output.usage.map(|u| u.completion_tokens), Some(10));
        let chunks = chunks(&output);
        assert_eq!(chunks.len(), provider_chunks(body).len() - 1);
        assert!(chunks.iter().all(|c| c.get("usage").is_none()));
        assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "stop");
    }

    #[test]
    fn a_tool_call_stream_passes_through() {
        let body = include_str!("../fixtures/stream_tool_calls.sse");
        let output = translated(body.as_bytes(), false);
        let chunks = chunks(&output);
        assert_eq!(
            chunks[0]["choices"][0]["delta"]["tool_calls"][0]["id"],
            "call_DdmO9pD3xa9XTPNJ32zg2hcA"
        );
        let arguments: String = chunks
            .iter()
            .filter_map(|c| {
                c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect();
        assert_eq!(arguments, "{\"location\":\"Paris, France\"}");
        assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "tool_calls");
        assert!(chunks.iter().all(|c| c["id"] == "chatcmpl-gw7"));
        assert_eq!(output.usage.map(|u| u.prompt_tokens), Some(74));
    }

    #[test]
    fn azure_filter_chunks_pass_through() {
        let body = include_str!("../fixtures/stream_azure.sse");
        let output = translated(body.as_bytes(), false);
        let chunks = chunks(&output);
        assert_eq!(chunks[0]["choices"], serde_json::json!([]));
        assert_eq!(
            chunks[0]["prompt_filter_results"][0]["content_filter_results"]["hate"]["severity"],
            "safe"
        );
        assert_eq!(chunks[0]["model"], "gpt-4o");
        assert_eq!(chunks[0]["object"], "chat.completion.chunk");
        assert_eq!(chunks[0]["id"], "chatcmpl-gw7");
        let last = chunks.last().unwrap();
        assert_eq!(last["choices"][0]["finish_reason"], "stop");
        assert_eq!(
            last["choices"][0]["content_filter_results"]["violence"]["filtered"],
            false
        );
        assert_eq!(output.usage.map(|u| u.prompt_tokens), Some(13));
    }

    #[test]
    fn a_stream_without_done_is_an_error() {
        let body = include_str!("../fixtures/stream_text.sse");
        let cut = &body[..body.find("data: [DONE]").unwrap()];
        let mut stream = open(false);
        let output = stream.push(cut.as_bytes()).unwrap();
        assert!(!output.done && !output.chunks.is_empty());
        let error = stream.finish().unwrap_err();
        assert_eq!(error.status, 502);
        assert!(error.message.contains("stream ended before the provider finished"));
    }

    #[test]
    fn an_error_event_mid_stream_is_an_error() {
        let body = include_str!("../fixtures/stream_error.sse");
        let mut stream = open(false);
        let error = stream.push(body.as_bytes()).unwrap_err();
        assert_eq!((error.status, error.kind.as_str()), (502, "server_error"));
        assert_eq!(
            error.message,
            "The server had an error while processing your request. Sorry about that!"
        );
        // The chunks before the error reached the client in earlier pushes.
        let first_event = &body[..body.find("\n\n").unwrap() + 2];
        assert_eq!(open(false).push(first_event.as_bytes()).unwrap().chunks.len(), 1);
    }

    #[test]
    fn an_event_that_is_not_json_is_an_error() {
        let error = open(false)
            .push(b"data: {\"id\": \"chatcmpl-malformed\", \"choices\": [{\"delta\": \n\n")
            .unwrap_err();
        assert_eq!(error.status, 502);
        assert!(error.message.contains("not JSON"));
    }
}
