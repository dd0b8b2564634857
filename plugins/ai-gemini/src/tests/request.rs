use serde_json::{Value, json};
use weir_sdk::ai::{ApiError, KeyPlacement};

use super::{json, settings};
use crate::request::translate;

/// The Gemini body for an OpenAI body, or the refusal.
fn gemini(openai: &Value) -> Result<Value, ApiError> {
    translate(&settings(), openai.to_string().as_bytes()).map(|r| json(&r.body))
}

fn refused(openai: Value) -> ApiError {
    let error = gemini(&openai).unwrap_err();
    assert_eq!(error.status, 400, "{error:?}");
    error
}

fn with_messages(messages: Value) -> Value {
    json!({"model": "m", "messages": messages})
}

#[test]
fn a_conversation_maps_system_turns_images_tool_calls_and_results() {
    let request = translate(&settings(), include_bytes!("../../fixtures/openai_conversation.json")).unwrap();
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(
        request.headers,
        vec![("content-type".to_string(), "application/json".to_string())]
    );
    assert!(
        matches!(&request.key, KeyPlacement::Header((name, prefix)) if name == "x-goog-api-key" && prefix.is_empty())
    );
    assert_eq!(
        json(&request.body),
        json(include_bytes!("../../fixtures/gemini_conversation.json"))
    );
}

#[test]
fn tools_and_a_named_tool_choice_map_to_declarations_and_any_mode() {
    let request = translate(&settings(), include_bytes!("../../fixtures/openai_tools.json")).unwrap();
    assert_eq!(
        request.path,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    );
    assert_eq!(
        json(&request.body),
        json(include_bytes!("../../fixtures/gemini_tools.json"))
    );
}

#[test]
fn tool_choice_modes_map_to_function_calling_modes() {
    let tool = json!({"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "string"}}}}});
    let strict = json!({"type": "function", "function": {"name": "f", "strict": true}});
    let cases = [
        (json!("auto"), tool.clone(), json!({"mode": "AUTO"})),
        (json!("required"), tool.clone(), json!({"mode": "ANY"})),
        (json!("none"), tool.clone(), json!({"mode": "NONE"})),
        (Value::Null, strict.clone(), json!({"mode": "VALIDATED"})),
        (json!("auto"), strict.clone(), json!({"mode": "VALIDATED"})),
        (json!("required"), strict, json!({"mode": "ANY"})),
    ];
    for (choice, tool, expected) in cases {
        let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": [tool]});
        if !choice.is_null() {
            body["tool_choice"] = choice.clone();
        }
        let gemini = gemini(&body).unwrap();
        assert_eq!(gemini["toolConfig"]["functionCallingConfig"], expected, "{choice}");
    }
    let without_tools =
        gemini(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tool_choice": "none"})).unwrap();
    assert_eq!(without_tools.get("toolConfig"), None);
    assert_eq!(without_tools.get("tools"), None);
    assert_eq!(without_tools.get("generationConfig"), None);
}

#[test]
fn a_json_schema_response_format_becomes_a_response_schema() {
    let body = json!({
        "model": "m",
        "messages": [{"role": "user", "content": "A city, please."}],
        "response_format": {"type": "json_schema", "json_schema": {
            "name": "city",
            "description": "A city and its country.",
            "strict": true,
            "schema": {"type": "object", "properties": {"name": {"type": "string"}, "country": {"type": "string"}}, "required": ["name"], "additionalProperties": false}
        }}
    });
    let config = &gemini(&body).unwrap()["generationConfig"];
    assert_eq!(config["responseMimeType"], "application/json");
    assert_eq!(
        config["responseSchema"],
        json!({
            "type": "OBJECT",
            "properties": {"name": {"type": "STRING"}, "country": {"type": "STRING"}},
            "required": ["name"],
            "description": "A city and its country."
        })
    );
    let text =
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "text"}});
    assert_eq!(gemini(&text).unwrap().get("generationConfig"), None);
}

#[test]
fn a_tool_result_answers_the_nearest_earlier_call_with_its_id() {
    let call = |name: &str| json!({"role": "assistant", "tool_calls": [{"id": "call_0", "type": "function", "function": {"name": name, "arguments": "{}"}}]});
    let body = with_messages(json!([
        {"role": "user", "content": "first"},
        call("first_tool"),
        {"role": "tool", "tool_call_id": "call_0", "content": "[1, 2]"},
        {"role": "user", "content": "second"},
        call("second_tool"),
        {"role": "tool", "tool_call_id": "call_0", "content": "42"}
    ]));
    let contents = &gemini(&body).unwrap()["contents"];
    assert_eq!(
        contents[2]["parts"][0]["functionResponse"],
        json!({"name": "first_tool", "response": {"content": "[1, 2]"}})
    );
    assert_eq!(
        contents[5]["parts"][0]["functionResponse"],
        json!({"name": "second_tool", "response": {"content": "42"}})
    );
    assert_eq!(contents.as_array().unwrap().len(), 6);
}

#[test]
fn fields_gemini_cannot_express_are_refused_by_name() {
    let hi = json!([{"role": "user", "content": "hi"}]);
    let cases = [
        (
            json!({"model": "m", "messages": hi, "logit_bias": {"50256": -100}}),
            "logit_bias",
        ),
        (json!({"model": "m", "messages": hi, "logprobs": true}), "logprobs"),
        (json!({"model": "m", "messages": hi, "user": "u-1"}), "user"),
        (
            json!({"model": "m", "messages": hi, "parallel_tool_calls": false}),
            "parallel_tool_calls",
        ),
        (
            json!({"model": "m", "messages": hi, "stream_options": {"include_obfuscation": false}}),
            "stream_options.include_obfuscation",
        ),
        (
            json!({"model": "m", "messages": hi, "response_format": {"type": "grammar"}}),
            "response_format.type",
        ),
        (
            json!({"model": "m", "messages": hi, "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"$ref": "#/$defs/a"}}}}),
            "response_format.json_schema.schema.$ref",
        ),
        (
            json!({"model": "m", "messages": hi, "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"a": {"oneOf": []}}}}}]}),
            "tools[0].function.parameters.properties.a.oneOf",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "hi", "name": "ann"}]}),
            "messages[0].name",
        ),
        (
            json!({"model": "m", "messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]}, {"role": "user", "content": "hi"}]}),
            "messages[0].content[0]",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "https://x/a.png", "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "https://x/b.png", "detail": "high"}}
            ]}]}),
            "messages[0].content[1].image_url.detail",
        ),
    ];
    for (body, field) in cases {
        let error = refused(body);
        assert_eq!(error.param.as_deref(), Some(field), "{error:?}");
        assert!(error.message.contains(field), "{error:?}");
        assert_eq!(error.kind, "invalid_request_error");
    }
}

#[test]
fn invalid_messages_are_refused_naming_the_field() {
    let cases = [
        (
            json!([{"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}]),
            "messages[0].tool_calls[0].function.arguments",
        ),
        (
            json!([{"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{"}}]}]),
            "messages[0].tool_calls[0].function.arguments",
        ),
        (
            json!([{"role": "tool", "tool_call_id": "nope", "content": "x"}]),
            "messages[0].tool_call_id",
        ),
        (json!([{"role": "tool", "content": "x"}]), "messages[0].tool_call_id"),
        (
            json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/picture"}}]}]),
            "messages[0].content[0].image_url.url",
        ),
        (
            json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://example.com/a.png"}}]}]),
            "messages[0].content[0].image_url.url",
        ),
        (
            json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png,AAAA"}}]}]),
            "messages[0].content[0].image_url.url",
        ),
        (json!([{"role": "assistant", "content": null}]), "messages[0].content"),
        (json!([{"role": "user", "content": null}]), "messages[0].content"),
        (json!([{"role": "robot", "content": "x"}]), "messages[0].role"),
    ];
    for (messages, field) in cases {
        let error = refused(with_messages(messages));
        assert_eq!(error.param.as_deref(), Some(field), "{error:?}");
    }
    let hi = json!([{"role": "user", "content": "hi"}]);
    let error = refused(json!({"model": "m", "messages": hi, "seed": 1_i64 << 40}));
    assert_eq!(error.param.as_deref(), Some("seed"));
    let error = refused(json!({"model": "m", "messages": hi, "tool_choice": "required"}));
    assert_eq!(error.param.as_deref(), Some("tool_choice"));
    let error = refused(
        json!({"model": "m", "messages": hi, "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": {"type": "function", "function": {"name": "g"}}}),
    );
    assert_eq!(error.param.as_deref(), Some("tool_choice.function.name"));
}

#[test]
fn image_media_types_come_from_the_extension() {
    for (url, mime_type) in [
        ("https://x/a.png", "image/png"),
        ("https://x/a.jpeg#top", "image/jpeg"),
        ("http://x/dir.v2/a.WEBP", "image/webp"),
        ("https://x/a.heic?x=1.png", "image/heic"),
        ("https://x/a.heif", "image/heif"),
    ] {
        let body =
            with_messages(json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]));
        let part = &gemini(&body).unwrap()["contents"][0]["parts"][0];
        assert_eq!(part["fileData"], json!({"mimeType": mime_type, "fileUri": url}));
    }
    let error = refused(with_messages(
        json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/a.gif"}}]}]),
    ));
    assert!(error.message.contains(".png"), "{}", error.message);
}
