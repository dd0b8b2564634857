//! A streamed answer: Ollama's newline-delimited JSON objects, each a
//! piece of the message, the last with `done: true`, the counts and the
//! done reason.
//!
//! The first object opens the answer (the role chunk, with the model it
//! names). Text pieces become text chunks. Ollama sends each tool call
//! whole, so each becomes a start chunk and one arguments chunk, numbered
//! across the answer (`call_0`, `call_1`, ... as ids). The last object
//! becomes the finish chunk and, if the client asked, the usage chunk.

use weir_sdk::ai::openai::ChunkWriter;
use weir_sdk::ai::stream::LineDecoder;
use weir_sdk::ai::{ApiError, Exchange, ProviderStream, StreamOutput};

use crate::response::{ChatResponse, finish_reason, token_usage, tool_call_id};

/// One streamed answer being translated.
pub struct LineStream {
    model: String,
    exchange: Exchange,
    lines: LineDecoder,
    /// Made from the first object, which names the model.
    writer: Option<ChunkWriter>,
    /// Tool calls so far.
    tool_calls: u32,
    /// The `done: true` object arrived.
    done: bool,
}

impl LineStream {
    /// A stream for one exchange; `model` stands in if Ollama names none.
    pub fn new(model: &str, exchange: Exchange) -> Self {
        LineStream {
            model: model.to_string(),
            exchange,
            lines: LineDecoder::new(),
            writer: None,
            tool_calls: 0,
            done: false,
        }
    }

    fn translate(&mut self, lines: Vec<Vec<u8>>) -> Result<StreamOutput, ApiError> {
        let mut output = StreamOutput::empty();
        for line in lines {
            // Nothing follows the last object; blank lines carry nothing.
            if self.done || line.trim_ascii().is_empty() {
                continue;
            }
            let response = ChatResponse::parse(&line)?;
            self.object(response, &mut output);
        }
        Ok(output)
    }

    fn object(&mut self, response: ChatResponse, output: &mut StreamOutput) {
        let writer = match &self.writer {
            Some(writer) => writer,
            None => {
                let model = response.model.clone().filter(|m| !m.is_empty());
                let writer = ChunkWriter::new(
                    self.exchange.id.clone(),
                    self.exchange.created,
                    model.unwrap_or_else(|| self.model.clone()),
                );
                output.chunks.push(writer.role());
                self.writer.insert(writer)
            }
        };
        let usage = response.usage();
        let message = response.message.unwrap_or_default();
        if let Some(text) = message.content.filter(|t| !t.is_empty()) {
            output.chunks.push(writer.text(&text));
        }
        for call in message.tool_calls.into_iter().flatten() {
            let index = self.tool_calls;
            self.tool_calls += 1;
            output
                .chunks
                .push(writer.tool_call_start(index, &tool_call_id(index), &call.function.name));
            output
                .chunks
                .push(writer.tool_call_arguments(index, &call.function.arguments_text()));
        }
        if response.done {
            self.done = true;
            output.done = true;
            let reason = finish_reason(response.done_reason.as_deref(), self.tool_calls > 0);
            output.chunks.push(writer.finish(reason));
            output.usage = usage.map(token_usage);
            if self.exchange.include_usage {
                output.chunks.push(writer.usage(usage.unwrap_or_default()));
            }
        }
    }
}

impl ProviderStream for LineStream {
    fn push(&mut self, bytes: &[u8]) -> Result<StreamOutput, ApiError> {
        let mut lines = Vec::new();
        self.lines.push(bytes, |line| lines.push(line.to_vec()));
        self.translate(lines)
    }

    fn finish(&mut self) -> Result<StreamOutput, ApiError> {
        let last = self.lines.finish();
        let output = self.translate(last.into_iter().collect())?;
        if !self.done {
            return Err(ApiError::bad_upstream(
                "stream ended before the provider finished: Ollama sent no done object",
            ));
        }
        Ok(output)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use weir_sdk::ai::testing::translate_in_pieces;

    use super::*;

    fn open(include_usage: bool) -> LineStream {
        LineStream::new(
            "llama3.2",
            Exchange {
                id: "chatcmpl-gw7".into(),
                created: 1_700_000_007,
                include_usage,
            },
        )
    }

    fn counts(output: &StreamOutput) -> Option<(u32, u32)> {
        output.usage.map(|u| (u.prompt_tokens, u.completion_tokens))
    }

    /// Translate `body` fed whole, byte by byte, in every piece size and
    /// with `\r\n` line ends; every way must give the same output.
    fn translated(body: &str, include_usage: bool) -> (Vec<Value>, Option<(u32, u32)>) {
        let whole = translate_in_pieces(&mut open(include_usage), body.as_bytes(), body.len()).unwrap();
        let crlf = body.replace('\n', "\r\n");
        for (variant, bytes) in [("lf", body.as_bytes()), ("crlf", crlf.as_bytes())] {
            for size in 1..=bytes.len() {
                let output = translate_in_pieces(&mut open(include_usage), bytes, size).unwrap();
                assert_eq!(output.chunks, whole.chunks, "{variant}, pieces of {size}");
                assert_eq!(counts(&output), counts(&whole), "{variant}, pieces of {size}");
                assert!(output.done);
            }
        }
        let chunks = whole.chunks.iter().map(|c| serde_json::from_str(c).unwrap()).collect();
        (chunks, counts(&whole))
    }

    /// The chunk fields that vary: delta and finish reason, or usage.
    fn deltas(chunks: &[Value]) -> Vec<Value> {
        chunks
            .iter()
            .map(|c| {
                assert_eq!(
                    (&c["id"], &c["created"], &c["object"]),
                    (
                        &json!("chatcmpl-gw7"),
                        &json!(1_700_000_007),
                        &json!("chat.completion.chunk")
                    )
                );
                match c["choices"].as_array().unwrap().first() {
                    Some(choice) => json!([choice["delta"], choice["finish_reason"]]),
                    None => c["usage"].clone(),
                }
            })
            .collect()
    }

    #[test]
    fn a_text_stream_becomes_chunks() {
        let (chunks, usage) = translated(include_str!("../fixtures/stream_text.ndjson"), true);
        assert_eq!(chunks[0]["model"], "llama3.2");
        assert_eq!(
            deltas(&chunks),
            [
                json!([{"role": "assistant", "content": ""}, null]),
                json!([{"content": "The"}, null]),
                json!([{"content": " sky"}, null]),
                json!([{"content": " is"}, null]),
                json!([{"content": " blue."}, null]),
                json!([{}, "stop"]),
                json!({"prompt_tokens": 26, "completion_tokens": 5, "total_tokens": 31}),
            ]
        );
        assert_eq!(usage, Some((26, 5)));
    }

    #[test]
    fn without_include_usage_there_is_no_usage_chunk_but_usage_is_reported() {
        let (chunks, usage) = translated(include_str!("../fixtures/stream_text.ndjson"), false);
        assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "stop");
        assert_eq!(chunks.len(), 6);
        assert_eq!(usage, Some((26, 5)));
    }

    #[test]
    fn a_tool_call_stream_becomes_openai_tool_call_chunks() {
        let (chunks, usage) = translated(include_str!("../fixtures/stream_tool_calls.ndjson"), false);
        assert_eq!(
            deltas(&chunks),
            [
                json!([{"role": "assistant", "content": ""}, null]),
                json!([{"tool_calls": [{"index": 0, "id": "call_0", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}, null]),
                json!([{"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":\"Tokyo\"}"}}]}, null]),
                json!([{"tool_calls": [{"index": 1, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}, null]),
                json!([{"tool_calls": [{"index": 1, "function": {"arguments": "{\"city\":\"Osaka\"}"}}]}, null]),
                json!([{}, "tool_calls"]),
            ]
        );
        assert_eq!(usage, Some((169, 32)));
    }

    #[test]
    fn a_length_stop_finishes_with_length() {
        let body = include_str!("../fixtures/stream_text.ndjson")
            .replace(r#""done_reason":"stop""#, r#""done_reason":"length""#);
        let (chunks, _) = translated(&body, false);
        assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "length");
    }

    #[test]
    fn a_stream_without_the_done_object_is_an_error() {
        let body = include_str!("../fixtures/stream_text.ndjson");
        let cut = &body[..body.rfind("{\"model\"").unwrap()];
        let mut stream = open(false);
        let output = stream.push(cut.as_bytes()).unwrap();
        assert_eq!(output.chunks.len(), 5);
        assert!(!output.done);
        let error = stream.finish().unwrap_err();
        assert_eq!(error.status, 502);
        assert!(error.message.contains("stream ended before the provider finished"));
    }

    #[test]
    fn a_last_line_without_newline_still_counts() {
        let body = include_str!("../fixtures/stream_text.ndjson").trim_end();
        let output = translate_in_pieces(&mut open(false), body.as_bytes(), 7).unwrap();
        assert!(output.done);
        assert_eq!(output.chunks.len(), 6);
    }

    #[test]
    fn an_error_line_mid_stream_is_an_error() {
        let body = include_str!("../fixtures/stream_error.ndjson");
        let mut stream = open(false);
        let error = stream.push(body.as_bytes()).unwrap_err();
        assert_eq!(error.status, 502);
        assert_eq!(
            error.message,
            "Ollama: an error was encountered while running the model: unexpected EOF"
        );
    }

    #[test]
    fn a_line_that_is_not_json_is_an_error() {
        let error = open(false)
            .push(b"{\"model\": \"malformed\", \"message\": {\"role\": \n")
            .unwrap_err();
        assert_eq!(error.status, 502);
        assert!(error.message.contains("not JSON"));
    }
}
