use serde_json::{Value, json};
use weir_sdk::ai::{ApiError, Completion};

use super::{counts, exchange, json};
use crate::response::translate;

fn completion(body: &[u8]) -> (Value, Completion) {
    let completion = translate(&exchange(false), body, "gemini-configured").unwrap();
    (json(&completion.body), completion)
}

fn with_finish_reason(reason: &str) -> Vec<u8> {
    let mut body = json(include_bytes!("../../fixtures/response_text.json"));
    body["candidates"][0]["finishReason"] = json!(reason);
    body.to_string().into_bytes()
}

#[test]
fn a_text_answer_becomes_a_chat_completion() {
    let (body, completion) = completion(include_bytes!("../../fixtures/response_text.json"));
    assert_eq!(
        body,
        json!({
            "id": "chatcmpl-gem1",
            "object": "chat.completion",
            "created": 1_750_000_000,
            "model": "gemini-2.5-flash",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": "The capital of France is Paris."},
                "finish_reason": "stop",
                "logprobs": null
            }],
            "usage": {"prompt_tokens": 12, "completion_tokens": 33, "total_tokens": 45}
        })
    );
    assert_eq!(counts(completion.usage), Some((12, 33)));
}

#[test]
fn function_calls_become_tool_calls_with_generated_ids() {
    let (body, _) = completion(include_bytes!("../../fixtures/response_function_calls.json"));
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], "Let me look that up.");
    let calls = &choice["message"]["tool_calls"];
    assert_eq!(
        calls,
        &json!([
            {"id": "call_0", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\",\"unit\":\"celsius\"}"}},
            {"id": "call_1", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
        ])
    );
    let arguments: Value = serde_json::from_str(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments, json!({"city": "Paris", "unit": "celsius"}));
}

#[test]
fn only_tool_calls_means_null_content() {
    let mut body = json(include_bytes!("../../fixtures/response_function_calls.json"));
    body["candidates"][0]["content"]["parts"]
        .as_array_mut()
        .unwrap()
        .remove(0);
    let (body, _) = completion(body.to_string().as_bytes());
    assert_eq!(body["choices"][0]["message"]["content"], Value::Null);
    assert_eq!(body["choices"][0]["message"]["tool_calls"][0]["id"], "call_0");
}

#[test]
fn every_finish_reason_maps() {
    for (gemini, openai) in [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("LANGUAGE", "stop"),
        ("OTHER", "stop"),
        ("MALFORMED_FUNCTION_CALL", "stop"),
    ] {
        let (body, _) = completion(&with_finish_reason(gemini));
        assert_eq!(body["choices"][0]["finish_reason"], openai, "{gemini}");
    }
    let mut calls = json(include_bytes!("../../fixtures/response_function_calls.json"));
    calls["candidates"][0]["finishReason"] = json!("MAX_TOKENS");
    let (body, _) = completion(calls.to_string().as_bytes());
    assert_eq!(body["choices"][0]["finish_reason"], "length");
}

#[test]
fn a_candidate_blocked_for_safety_is_a_content_filter_stop() {
    let (body, completion) = completion(include_bytes!("../../fixtures/response_safety.json"));
    assert_eq!(body["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(body["choices"][0]["message"]["content"], "");
    assert_eq!(completion.usage.unwrap().prompt_tokens, 14);
}

#[test]
fn every_candidate_becomes_a_choice() {
    let (body, _) = completion(include_bytes!("../../fixtures/response_candidates.json"));
    assert_eq!(body["model"], "gemini-2.0-flash");
    let choices = body["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2);
    assert_eq!(choices[0]["message"]["content"], "Heads.");
    assert_eq!(choices[0]["finish_reason"], "stop");
    assert_eq!(choices[1]["index"], 1);
    assert_eq!(choices[1]["message"]["content"], "Tails, and");
    assert_eq!(choices[1]["finish_reason"], "length");
}

#[test]
fn a_blocked_prompt_is_a_400_naming_the_reason() {
    let error = translate(
        &exchange(false),
        include_bytes!("../../fixtures/response_blocked.json"),
        "m",
    )
    .unwrap_err();
    assert_eq!(error.status, 400);
    assert_eq!(error.kind, "invalid_request_error");
    assert!(error.message.contains("SAFETY"), "{}", error.message);
    assert_eq!(error.code.as_deref(), Some("content_filter"));
}

#[test]
fn the_configured_model_is_reported_when_gemini_names_none_and_thoughts_are_skipped() {
    let body = json!({
        "candidates": [{"content": {"parts": [
            {"text": "Thinking about it...", "thought": true},
            {"text": "Hi."},
            {"text": "", "thoughtSignature": "Cg=="}
        ], "role": "model"}, "finishReason": "STOP"}]
    });
    let (body, completion) = completion(body.to_string().as_bytes());
    assert_eq!(body["model"], "gemini-configured");
    assert_eq!(body["choices"][0]["message"]["content"], "Hi.");
    assert_eq!(body.get("usage"), None);
    assert_eq!(counts(completion.usage), None);
}

#[test]
fn unreadable_or_untranslatable_answers_are_502() {
    let image = json!({"candidates": [{"content": {"parts": [{"inlineData": {"mimeType": "image/png", "data": "AA=="}}]}, "finishReason": "STOP"}]});
    let bodies = [
        b"<html>oops</html>".to_vec(),
        b"{\"candidates\": 3}".to_vec(),
        b"{}".to_vec(),
        image.to_string().into_bytes(),
    ];
    for body in bodies {
        let error: ApiError = translate(&exchange(false), &body, "m").unwrap_err();
        assert_eq!(error.status, 502, "{error:?}");
        assert_eq!(error.kind, "api_error");
    }
}
