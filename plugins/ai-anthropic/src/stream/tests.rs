use serde_json::{Value, json};
use weir_sdk::ai::openai::{ChunkWriter, Usage as OpenAiUsage};
use weir_sdk::ai::{ApiError, Exchange, ProviderStream};

use super::MessageStream;

const TEXT: &str = include_str!("../../fixtures/stream_text.sse");
const TOOL_USE: &str = include_str!("../../fixtures/stream_tool_use.sse");
const ERROR: &str = include_str!("../../fixtures/stream_error.sse");

/// What a whole stream became.
#[derive(Debug, PartialEq)]
struct Translated {
    chunks: Vec<String>,
    /// Every usage the stream reported, in order.
    usages: Vec<(u32, u32)>,
    done: bool,
}

fn stream(include_usage: bool) -> MessageStream {
    let exchange = Exchange {
        id: "chatcmpl-test".into(),
        created: 1_700_000_000,
        include_usage,
    };
    MessageStream::new(exchange, "claude-configured")
}

/// Feed `body` in pieces of `size` bytes, then finish.
fn translate(body: &[u8], size: usize, include_usage: bool) -> Result<Translated, ApiError> {
    let mut stream = stream(include_usage);
    let mut translated = Translated {
        chunks: Vec::new(),
        usages: Vec::new(),
        done: false,
    };
    let pieces = body.chunks(size).map(|piece| stream.push(piece)).collect::<Vec<_>>();
    for out in pieces.into_iter().chain([stream.finish()]) {
        let out = out?;
        translated.chunks.extend(out.chunks);
        translated
            .usages
            .extend(out.usage.map(|u| (u.prompt_tokens, u.completion_tokens)));
        translated.done |= out.done;
    }
    Ok(translated)
}

/// Translate `body` whole, in pieces of every size, and with `\r\n` line
/// ends: all must agree.
fn translate_every_way(body: &str, include_usage: bool) -> Translated {
    let whole = translate(body.as_bytes(), body.len(), include_usage).unwrap();
    let crlf = body.replace('\n', "\r\n");
    for variant in [body, crlf.as_str()] {
        for size in 1..=variant.len() {
            let pieces = translate(variant.as_bytes(), size, include_usage).unwrap();
            assert_eq!(
                pieces,
                whole,
                "pieces of {size} bytes, crlf: {}",
                variant.contains('\r')
            );
        }
    }
    whole
}

fn writer(model: &str) -> ChunkWriter {
    ChunkWriter::new("chatcmpl-test", 1_700_000_000, model)
}

#[test]
fn a_text_stream_becomes_role_text_finish_and_usage_chunks() {
    let translated = translate_every_way(TEXT, true);
    let w = writer("claude-sonnet-4-5-20250929");
    assert_eq!(
        translated.chunks,
        vec![
            w.role(),
            w.text("Hello"),
            w.text(", café 🌍!"),
            w.finish("stop"),
            w.usage(OpenAiUsage::new(25, 15)),
        ]
    );
    assert_eq!(translated.usages, vec![(25, 15)]);
    assert!(translated.done);
}

#[test]
fn a_tool_use_stream_numbers_tool_calls_among_themselves() {
    let translated = translate_every_way(TOOL_USE, false);
    let w = writer("claude-sonnet-4-5-20250929");
    assert_eq!(
        translated.chunks,
        vec![
            w.role(),
            w.text("Okay, let's check the weather for San Francisco, CA:"),
            w.tool_call_start(0, "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather"),
            w.tool_call_arguments(0, "{\"location\":"),
            w.tool_call_arguments(0, " \"San Francisc"),
            w.tool_call_arguments(0, "o, CA\"}"),
            // Block 2 is the second tool call; it streamed no arguments.
            w.tool_call_start(1, "toolu_01VHHYHf1MnmsvmmqaGhcNW4", "get_time"),
            w.tool_call_arguments(1, "{}"),
            w.finish("tool_calls"),
        ]
    );
    // Cache reads count as prompt tokens; no usage chunk was asked for,
    // but the host still learns the counts.
    assert_eq!(translated.usages, vec![(572, 89)]);
    assert!(translated.done);
}

#[test]
fn tool_call_chunks_have_openai_shape() {
    let translated = translate(TOOL_USE.as_bytes(), TOOL_USE.len(), false).unwrap();
    let start: Value = serde_json::from_str(&translated.chunks[6]).unwrap();
    assert_eq!(
        start["choices"][0]["delta"]["tool_calls"],
        json!([{"index": 1, "id": "toolu_01VHHYHf1MnmsvmmqaGhcNW4", "type": "function",
                "function": {"name": "get_time", "arguments": ""}}])
    );
    assert_eq!(start["object"], "chat.completion.chunk");
    assert_eq!(start["id"], "chatcmpl-test");
}

#[test]
fn a_stream_that_ends_early_is_an_error() {
    let cut = TEXT.split("event: message_stop").next().unwrap();
    let error = translate(cut.as_bytes(), 7, false).unwrap_err();
    assert_eq!(error.status, 502);
    assert!(error.message.contains("stream ended before the provider finished"));
    let mid_event = &TEXT[..TEXT.find("text_delta").unwrap()];
    assert_eq!(translate(mid_event.as_bytes(), 5, false).unwrap_err().status, 502);
    assert_eq!(translate(b"", 1, false).unwrap_err().status, 502);
}

#[test]
fn an_error_event_mid_stream_is_an_error_after_what_came_before() {
    let w = writer("claude-sonnet-4-5-20250929");
    for size in 1..=ERROR.len() {
        let mut stream = stream(true);
        let mut chunks = Vec::new();
        let mut outs = ERROR
            .as_bytes()
            .chunks(size)
            .map(|piece| stream.push(piece))
            .collect::<Vec<_>>();
        outs.push(stream.finish());
        let error = outs
            .into_iter()
            .find_map(|out| match out {
                Ok(out) => {
                    chunks.extend(out.chunks);
                    None
                }
                Err(error) => Some(error),
            })
            .expect("the error event ends the stream");
        assert_eq!(error.status, 503, "pieces of {size}");
        assert_eq!(error.code.as_deref(), Some("overloaded_error"));
        assert_eq!(error.message, "Anthropic: Overloaded");
        // Chunks that came in the same piece as the error are not lost.
        assert_eq!(chunks, vec![w.role(), w.text("Hel")], "pieces of {size}");
    }
}

#[test]
fn data_that_does_not_parse_is_an_error() {
    let body = "event: message_start\ndata: {\"type\": \"message_start\", \"message\": {\"model\": \"m\"}}\n\n\
                event: content_block_delta\ndata: {\"type\": \"content_block_delta\", \"index\": 0, \"delta\": {\n\n";
    let error = translate(body.as_bytes(), body.len(), false).unwrap_err();
    assert_eq!(error.status, 502);
    assert!(error.message.contains("does not parse"), "{}", error.message);
}

#[test]
fn a_delta_for_a_block_never_started_is_an_error() {
    let body = "event: content_block_delta\ndata: {\"type\": \"content_block_delta\", \"index\": 3, \
                \"delta\": {\"type\": \"text_delta\", \"text\": \"x\"}}\n\n";
    assert_eq!(translate(body.as_bytes(), body.len(), false).unwrap_err().status, 502);
}

#[test]
fn thinking_and_unknown_events_are_skipped() {
    let body = r#"event: message_start
data: {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": "claude-x", "usage": {"input_tokens": 3, "output_tokens": 1}}}

event: content_block_start
data: {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Let me see"}}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "EqQB"}}

event: content_block_stop
data: {"type": "content_block_stop", "index": 0}

event: something_new
data: {"type": "something_new", "detail": 1}

event: content_block_start
data: {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}

event: content_block_delta
data: {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "4"}}

event: content_block_stop
data: {"type": "content_block_stop", "index": 1}

event: message_delta
data: {"type": "message_delta", "delta": {"stop_reason": "max_tokens", "stop_sequence": null}, "usage": {"input_tokens": 3, "cache_read_input_tokens": 10, "output_tokens": 7}}

event: message_stop
data: {"type": "message_stop"}

event: message_stop
data: {"type": "message_stop"}
"#;
    let translated = translate_every_way(body, false);
    let w = writer("claude-x");
    assert_eq!(translated.chunks, vec![w.role(), w.text("4"), w.finish("length")]);
    // `message_delta` may repeat the prompt counts, with cache counts.
    assert_eq!(translated.usages, vec![(13, 7)]);
}

#[test]
fn without_message_start_the_configured_model_is_reported() {
    let body = "event: message_delta\ndata: {\"type\": \"message_delta\", \"delta\": {\"stop_reason\": \"refusal\"}, \
                \"usage\": {\"output_tokens\": 0}}\n\nevent: message_stop\ndata: {\"type\": \"message_stop\"}\n\n";
    let translated = translate(body.as_bytes(), 3, false).unwrap();
    let w = writer("claude-configured");
    assert_eq!(translated.chunks, vec![w.role(), w.finish("content_filter")]);
}
