use serde_json::{Value, json};
use weir_sdk::ai::{ApiError, ProviderStream};

use super::{counts, exchange};
use crate::stream::GeminiStream;

/// What a whole stream became: chunks as JSON, the usage, whether done.
#[derive(Debug, PartialEq)]
struct Translated {
    chunks: Vec<Value>,
    usage: Option<(u32, u32)>,
    done: bool,
}

/// Feed `body` in pieces of `size` bytes (all at once for 0).
fn feed(body: &[u8], size: usize, include_usage: bool) -> Result<Translated, ApiError> {
    let mut stream = GeminiStream::new(exchange(include_usage), "gemini-configured");
    let mut translated = Translated {
        chunks: Vec::new(),
        usage: None,
        done: false,
    };
    let pieces: Vec<&[u8]> = if size == 0 {
        vec![body]
    } else {
        body.chunks(size).collect()
    };
    let mut outputs = Vec::new();
    for piece in pieces {
        outputs.push(stream.push(piece)?);
    }
    outputs.push(stream.finish()?);
    for output in outputs {
        translated
            .chunks
            .extend(output.chunks.iter().map(|c| serde_json::from_str::<Value>(c).unwrap()));
        if output.usage.is_some() {
            assert_eq!(translated.usage, None, "usage reported twice");
            translated.usage = counts(output.usage);
        }
        assert!(!(translated.done && output.done), "done reported twice");
        translated.done |= output.done;
    }
    Ok(translated)
}

/// The same translation whole, in every piece size, and with `\n` line
/// ends instead of Gemini's `\r\n`.
fn translate_every_way(body: &[u8], include_usage: bool) -> Translated {
    let whole = feed(body, 0, include_usage).unwrap();
    for size in 1..body.len() {
        assert_eq!(
            feed(body, size, include_usage).unwrap(),
            whole,
            "pieces of {size} bytes"
        );
    }
    let lf = String::from_utf8(body.to_vec()).unwrap().replace("\r\n", "\n");
    assert_eq!(feed(lf.as_bytes(), 0, include_usage).unwrap(), whole, "\\n line ends");
    for size in [1, 2, 3, 5, 7] {
        assert_eq!(
            feed(lf.as_bytes(), size, include_usage).unwrap(),
            whole,
            "\\n, pieces of {size}"
        );
    }
    whole
}

/// Each chunk's choices (delta and finish reason) and usage, without the
/// fields every chunk shares.
fn deltas(translated: &Translated) -> Vec<Value> {
    translated
        .chunks
        .iter()
        .map(|chunk| {
            assert_eq!(chunk["id"], "chatcmpl-gem1");
            assert_eq!(chunk["object"], "chat.completion.chunk");
            assert_eq!(chunk["created"], 1_750_000_000);
            match chunk.get("usage") {
                Some(usage) => json!({"usage": usage}),
                None => {
                    let choice = &chunk["choices"][0];
                    json!([choice["index"], choice["delta"], choice["finish_reason"]])
                }
            }
        })
        .collect()
}

#[test]
fn a_text_stream_translates_the_same_however_it_is_split() {
    let translated = translate_every_way(include_bytes!("../../fixtures/stream_text.sse"), true);
    assert!(translated.done);
    assert_eq!(translated.usage, Some((12, 45)));
    assert!(translated.chunks.iter().all(|c| c["model"] == "gemini-2.5-flash"));
    assert_eq!(
        deltas(&translated),
        vec![
            json!([0, {"role": "assistant", "content": ""}, null]),
            json!([0, {"content": "The capital"}, null]),
            json!([0, {"content": " of France is Paris, a city of café crème — déjà vu. 🇫🇷"}, null]),
            json!([0, {}, "stop"]),
            json!({"usage": {"prompt_tokens": 12, "completion_tokens": 45, "total_tokens": 57}}),
        ]
    );
}

#[test]
fn without_include_usage_there_is_no_usage_chunk_but_usage_is_reported() {
    let translated = feed(include_bytes!("../../fixtures/stream_text.sse"), 0, false).unwrap();
    assert_eq!(translated.chunks.len(), 4);
    assert!(translated.chunks.iter().all(|c| c.get("usage").is_none()));
    assert_eq!(translated.usage, Some((12, 45)));
}

#[test]
fn a_function_call_stream_gives_tool_call_starts_and_arguments() {
    let translated = translate_every_way(include_bytes!("../../fixtures/stream_function_call.sse"), false);
    assert!(translated.done);
    assert_eq!(
        deltas(&translated),
        vec![
            json!([0, {"role": "assistant", "content": ""}, null]),
            json!([0, {"tool_calls": [{"index": 0, "id": "call_0", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}, null]),
            json!([0, {"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":\"Paris\",\"unit\":\"celsius\"}"}}]}, null]),
            json!([0, {"tool_calls": [{"index": 1, "id": "call_1", "type": "function", "function": {"name": "get_time", "arguments": ""}}]}, null]),
            json!([0, {"tool_calls": [{"index": 1, "function": {"arguments": "{\"zone\":\"Europe/Paris\"}"}}]}, null]),
            json!([0, {}, "tool_calls"]),
        ]
    );
    assert_eq!(translated.usage, Some((98, 31)));
}

#[test]
fn several_candidates_stream_as_several_choices() {
    let translated = translate_every_way(include_bytes!("../../fixtures/stream_candidates.sse"), true);
    assert!(translated.done);
    assert_eq!(
        deltas(&translated),
        vec![
            json!([0, {"role": "assistant", "content": ""}, null]),
            json!([0, {"content": "Heads"}, null]),
            json!([1, {"role": "assistant", "content": ""}, null]),
            json!([1, {"content": "Tails"}, null]),
            json!([0, {"content": "."}, null]),
            json!([0, {}, "stop"]),
            json!([1, {"content": ", and"}, null]),
            json!([1, {}, "length"]),
            json!({"usage": {"prompt_tokens": 6, "completion_tokens": 5, "total_tokens": 11}}),
        ]
    );
}

#[test]
fn a_stream_that_ends_early_is_an_error_from_finish() {
    let body = include_str!("../../fixtures/stream_text.sse");
    let cut = body.rfind("data:").unwrap();
    let mut stream = GeminiStream::new(exchange(true), "m");
    let output = stream.push(&body.as_bytes()[..cut]).unwrap();
    assert_eq!(output.chunks.len(), 3);
    assert!(!output.done);
    let error = stream.finish().unwrap_err();
    assert_eq!(error.status, 502);
    assert!(
        error.message.contains("stream ended before the provider finished"),
        "{error:?}"
    );
    // An empty body, too.
    assert_eq!(
        GeminiStream::new(exchange(false), "m").finish().unwrap_err().status,
        502
    );
}

#[test]
fn an_error_event_mid_stream_is_an_error() {
    let body = include_bytes!("../../fixtures/stream_error.sse");
    let mut stream = GeminiStream::new(exchange(false), "m");
    let first_event = body.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let output = stream.push(&body[..first_event]).unwrap();
    assert_eq!(output.chunks.len(), 2);
    let error = stream.push(&body[first_event..]).unwrap_err();
    assert_eq!(error.status, 503);
    assert!(error.message.contains("overloaded"), "{error:?}");
    for size in 1..body.len() {
        let error = feed(body, size, false).unwrap_err();
        assert_eq!(error.status, 503, "pieces of {size}");
    }
}

#[test]
fn a_blocked_prompt_or_a_malformed_event_is_an_error() {
    let blocked = format!(
        "data: {}\r\n\r\n",
        include_str!("../../fixtures/response_blocked.json").replace('\n', "")
    );
    let error = feed(blocked.as_bytes(), 0, false).unwrap_err();
    assert_eq!(error.status, 400);
    assert!(error.message.contains("SAFETY"));
    let malformed = b"data: {\"candidates\": [{\"content\": \n\n";
    assert_eq!(feed(malformed, 0, false).unwrap_err().status, 502);
    assert_eq!(feed(b"data: \xff\xfe\n\n", 0, false).unwrap_err().status, 502);
}
