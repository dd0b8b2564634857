use serde_json::{Value, json};
use weir_sdk::Settings as _;
use weir_sdk::ai::ApiError;

use super::translate;
use crate::Target;

fn target() -> Target {
    Target::from_json(r#"{"model": "claude-sonnet-4-5"}"#).unwrap()
}

fn translated(body: &str) -> Value {
    serde_json::to_value(translate(&target(), body.as_bytes()).unwrap()).unwrap()
}

fn refused(body: &str) -> ApiError {
    translate(&target(), body.as_bytes()).unwrap_err()
}

fn fixture(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

#[test]
fn a_conversation_with_system_prompt_and_image_is_translated() {
    assert_eq!(
        translated(include_str!("../../fixtures/chat_conversation.json")),
        fixture(include_str!("../../fixtures/messages_conversation.json"))
    );
}

#[test]
fn tools_tool_calls_and_tool_results_are_translated() {
    assert_eq!(
        translated(include_str!("../../fixtures/chat_tools.json")),
        fixture(include_str!("../../fixtures/messages_tools.json"))
    );
}

#[test]
fn the_configured_model_and_default_max_tokens_are_used() {
    let body = translated(r#"{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}"#);
    assert_eq!(
        body,
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 4096,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
        })
    );
}

#[test]
fn max_completion_tokens_wins_over_max_tokens() {
    let body = translated(
        r#"{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10, "max_completion_tokens": 20}"#,
    );
    assert_eq!(body["max_tokens"], 20);
}

#[test]
fn several_system_messages_are_joined() {
    let body = translated(
        r#"{"messages": [
            {"role": "system", "content": "One."},
            {"role": "developer", "content": [{"type": "text", "text": "Two."}]},
            {"role": "user", "content": "hi"}
        ]}"#,
    );
    assert_eq!(body["system"], "One.\n\nTwo.");
}

#[test]
fn consecutive_turns_of_one_role_merge() {
    let body = translated(
        r#"{"messages": [
            {"role": "user", "content": "a"},
            {"role": "user", "content": "b"},
            {"role": "assistant", "content": "c"},
            {"role": "assistant", "content": "d"}
        ]}"#,
    );
    assert_eq!(
        body["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "c"}, {"type": "text", "text": "d"}]}
        ])
    );
}

#[test]
fn tool_results_come_before_text_in_their_user_turn() {
    let body = translated(
        r#"{"messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "w", "arguments": ""}}]},
            {"role": "user", "content": "quick please"},
            {"role": "tool", "tool_call_id": "t1", "content": "sunny"}
        ]}"#,
    );
    assert_eq!(
        body["messages"][1]["content"],
        json!([{"type": "tool_use", "id": "t1", "name": "w", "input": {}}])
    );
    assert_eq!(
        body["messages"][2]["content"],
        json!([
            {"type": "tool_result", "tool_use_id": "t1", "content": "sunny"},
            {"type": "text", "text": "quick please"}
        ])
    );
}

#[test]
fn stop_sampling_user_and_stream_are_mapped() {
    let body = translated(
        r#"{"messages": [{"role": "user", "content": "hi"}], "stop": "END", "temperature": 0.5,
            "top_p": 0.9, "user": "u-42", "stream": true, "stream_options": {"include_usage": true},
            "n": 1, "presence_penalty": 0, "response_format": {"type": "text"}, "parallel_tool_calls": false}"#,
    );
    assert_eq!(body["stop_sequences"], json!(["END"]));
    assert_eq!(body["temperature"], 0.5);
    assert_eq!(body["top_p"], 0.9);
    assert_eq!(body["metadata"], json!({"user_id": "u-42"}));
    assert_eq!(body["stream"], true);
    assert!(body.get("tool_choice").is_none());
}

#[test]
fn tool_choice_modes_are_mapped() {
    let with = |choice: &str, parallel: &str| {
        translated(&format!(
            r#"{{"messages": [{{"role": "user", "content": "hi"}}],
                "tools": [{{"type": "function", "function": {{"name": "w"}}}}],
                "tool_choice": {choice}, "parallel_tool_calls": {parallel}}}"#
        ))["tool_choice"]
            .clone()
    };
    assert_eq!(with(r#""auto""#, "true"), json!({"type": "auto"}));
    assert_eq!(with(r#""required""#, "true"), json!({"type": "any"}));
    assert_eq!(with(r#""none""#, "true"), json!({"type": "none"}));
    assert_eq!(
        with(r#"{"type": "function", "function": {"name": "w"}}"#, "false"),
        json!({"type": "tool", "name": "w", "disable_parallel_tool_use": true})
    );
    assert_eq!(
        with(r#""required""#, "false"),
        json!({"type": "any", "disable_parallel_tool_use": true})
    );
    assert_eq!(
        with("null", "false"),
        json!({"type": "auto", "disable_parallel_tool_use": true})
    );
}

#[test]
fn a_tool_without_parameters_gets_an_empty_object_schema() {
    let body = translated(
        r#"{"messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "now"}}]}"#,
    );
    assert_eq!(
        body["tools"],
        json!([{"name": "now", "input_schema": {"type": "object", "properties": {}}}])
    );
}

#[test]
fn an_http_image_is_sent_by_url() {
    let body = translated(
        r#"{"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}}]}]}"#,
    );
    assert_eq!(
        body["messages"][0]["content"],
        json!([{"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}])
    );
}

#[test]
fn fields_anthropic_cannot_express_are_refused_by_name() {
    let user = r#""messages": [{"role": "user", "content": "hi"}]"#;
    for (extra, field) in [
        (r#""n": 2"#, "n"),
        (r#""logit_bias": {"50256": -100}"#, "logit_bias"),
        (r#""presence_penalty": 0.5"#, "presence_penalty"),
        (r#""frequency_penalty": 1"#, "frequency_penalty"),
        (r#""seed": 7"#, "seed"),
        (r#""response_format": {"type": "json_object"}"#, "response_format"),
        (r#""logprobs": true"#, "logprobs"),
        (r#""temperature": 1.5"#, "temperature"),
        (
            r#""stream_options": {"include_usage": true, "x": 1}"#,
            "stream_options.x",
        ),
        (
            r#""tools": [{"type": "function", "function": {"name": "w", "strict": true}}]"#,
            "tools[0].function.strict",
        ),
        (r#""tool_choice": "required""#, "tool_choice"),
    ] {
        let error = refused(&format!("{{{user}, {extra}}}"));
        assert_eq!(error.status, 400, "{field}");
        assert_eq!(error.kind, "invalid_request_error", "{field}");
        assert_eq!(error.param.as_deref(), Some(field), "{extra}");
        assert!(error.message.contains(field), "{}", error.message);
    }
}

#[test]
fn message_parts_anthropic_cannot_express_are_refused_by_name() {
    for (messages, field) in [
        (
            r#"[{"role": "system", "content": [{"type": "text", "text": "a"},
                {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]"#,
            "messages[0].content[1]",
        ),
        (
            r#"[{"role": "user", "content": "hi"}, {"role": "assistant", "content": [
                {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]"#,
            "messages[1].content[0]",
        ),
        (
            r#"[{"role": "user", "content": [{"type": "text", "text": "see"},
                {"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}}]}]"#,
            "messages[0].content[1].image_url.url",
        ),
        (
            r#"[{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}]"#,
            "messages[0].content[0].image_url.url",
        ),
        (
            r#"[{"role": "user", "content": "hi", "name": "ann"}]"#,
            "messages[0].name",
        ),
        (
            r#"[{"role": "user", "content": "hi", "audio": {}}]"#,
            "messages[0].audio",
        ),
        (r#"[{"role": "user", "content": ""}]"#, "messages[0].content"),
        (
            r#"[{"role": "user", "content": "hi"}, {"role": "assistant"}]"#,
            "messages[1].content",
        ),
        (r#"[{"role": "tool", "content": "x"}]"#, "messages[0].tool_call_id"),
    ] {
        let error = refused(&format!(r#"{{"messages": {messages}}}"#));
        assert_eq!(error.status, 400, "{field}");
        assert_eq!(error.param.as_deref(), Some(field), "{messages}");
    }
}

#[test]
fn tool_call_arguments_that_are_not_a_json_object_are_refused() {
    for arguments in [r#"{\"city\": "#, "[1, 2]"] {
        let error = refused(&format!(
            r#"{{"messages": [{{"role": "user", "content": "hi"}}, {{"role": "assistant", "tool_calls": [
                {{"id": "t1", "type": "function", "function": {{"name": "w", "arguments": "{arguments}"}}}}]}}]}}"#
        ));
        assert_eq!(error.status, 400);
        assert_eq!(
            error.param.as_deref(),
            Some("messages[1].tool_calls[0].function.arguments")
        );
    }
}

#[test]
fn a_malformed_request_names_the_field() {
    let error = refused(r#"{"messages": [{"role": "user", "content": 5}]}"#);
    assert_eq!(error.status, 400);
    assert_eq!(error.param.as_deref(), Some("messages[0].content"));
}

#[test]
fn a_tool_result_may_carry_an_image_and_its_function_name() {
    let body = translated(
        r#"{"messages": [
            {"role": "user", "content": "draw"},
            {"role": "assistant", "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "render", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "t1", "name": "render", "content": [
                {"type": "text", "text": "done"},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}}]}
        ]}"#,
    );
    assert_eq!(
        body["messages"][2],
        json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [
            {"type": "text", "text": "done"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}}
        ]}]})
    );
}
