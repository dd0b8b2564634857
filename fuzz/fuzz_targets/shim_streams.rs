//! Each AI shim (Anthropic, OpenAI, Gemini, Ollama) driven natively
//! through its `Provider` implementation, as the host drives the
//! component: a stream translator fed arbitrary bytes cut at arbitrary
//! points, and `translate-request`, `translate-response` and
//! `translate-error` on arbitrary bodies.
//!
//! Never a panic. A stream gives the same chunks (or fails the same way)
//! however it is cut; every chunk, and every whole answer, is a JSON
//! object; every error has a message.
//!
//! Input: byte 0 picks the shim (the fifth is OpenAI's Azure flavour), byte 1 the operation (bit 7: include
//! usage), bytes 2..10 the piece lengths (or a status), then the body.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use weir_fuzz::{pieces, split_input};
use weir_sdk::ai::{ApiError, Exchange, Provider, ProviderStream, StreamOutput, TargetConfig};

/// The merged output of a stream, or the status of its first error.
fn run<S: ProviderStream>(mut stream: S, pieces: &[&[u8]]) -> Result<StreamOutput, u16> {
    let mut merged = StreamOutput::empty();
    let mut add = |out: Result<StreamOutput, ApiError>| -> Result<(), u16> {
        let out = out.map_err(|e| checked_error(&e))?;
        for chunk in &out.chunks {
            json_object(chunk.as_bytes(), "a chunk");
        }
        merged.chunks.extend(out.chunks);
        if out.usage.is_some() {
            merged.usage = out.usage;
        }
        merged.done |= out.done;
        Ok(())
    };
    for piece in pieces {
        add(stream.push(piece))?;
    }
    add(stream.finish())?;
    Ok(merged)
}

fn checked_error(error: &ApiError) -> u16 {
    assert!(!error.message.is_empty(), "an error without a message: {error:?}");
    assert!(!error.kind.is_empty(), "an error without a type: {error:?}");
    error.status
}

fn json_object(text: &[u8], what: &str) {
    match serde_json::from_slice::<Value>(text) {
        Ok(value) => assert!(value.is_object(), "{what} is not an object: {value}"),
        // A number past f64 is valid JSON that serde_json will not hold;
        // shims pass the provider's numbers through as written.
        Err(e) if e.to_string().starts_with("number out of range") => {
            assert_eq!(text.first(), Some(&b'{'), "{what} is not an object");
        }
        Err(e) => panic!("{what} is not JSON ({e}): {:?}", String::from_utf8_lossy(text)),
    }
}

fn drive<P: Provider>(config: &str, op: u8, settings: &[u8; 8], body: &[u8]) {
    let shim = match P::configure(TargetConfig::new(config)) {
        Ok(shim) => shim,
        Err(e) => panic!("the fuzz target's config {config} is refused: {e}"),
    };
    let exchange = Exchange {
        id: "chatcmpl-fuzz".into(),
        created: 1_700_000_000,
        include_usage: op & 0x80 != 0,
    };
    match op & 0x7f {
        0..=63 => {
            let whole = run(shim.open_stream(exchange.clone()), &[body]);
            let cut = run(shim.open_stream(exchange), &pieces(body, settings));
            match (&whole, &cut) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(b.chunks, a.chunks, "cutting changed the chunks");
                    let tokens = |o: &StreamOutput| o.usage.map(|u| (u.prompt_tokens, u.completion_tokens));
                    assert_eq!(tokens(b), tokens(a), "cutting changed the usage");
                    assert_eq!(b.done, a.done);
                }
                (Err(a), Err(b)) => assert_eq!(a, b, "cutting changed the error"),
                _ => panic!("cutting changed the outcome: whole {whole:?}, cut {cut:?}"),
            }
        }
        64..=95 => match shim.translate_response(&exchange, body) {
            Ok(completion) => json_object(&completion.body, "a completion"),
            Err(e) => {
                checked_error(&e);
            }
        },
        96..=111 => {
            let status = u16::from_le_bytes([settings[0], settings[1]]);
            checked_error(&shim.translate_error(status, body));
        }
        _ => match shim.translate_request(body) {
            Ok(request) => {
                assert!(request.path.starts_with('/'), "path {:?}", request.path);
            }
            Err(e) => {
                checked_error(&e);
            }
        },
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(([shim, op, settings @ ..], body)) = split_input::<10>(data) else {
        return;
    };
    match shim % 5 {
        0 => drive::<ai_anthropic::Anthropic>(r#"{"model": "claude-fuzz"}"#, op, &settings, body),
        1 => drive::<ai_openai::OpenAi>(r#"{"model": "gpt-fuzz"}"#, op, &settings, body),
        2 => drive::<ai_gemini::Gemini>(r#"{"model": "gemini-fuzz"}"#, op, &settings, body),
        3 => drive::<ai_ollama::Ollama>(r#"{"model": "llama-fuzz"}"#, op, &settings, body),
        _ => drive::<ai_openai::OpenAi>(
            r#"{"model": "gpt-fuzz", "azure": {"deployment": "d", "api-version": "2024-10-21"}}"#,
            op,
            &settings,
            body,
        ),
    }
});
