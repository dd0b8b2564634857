//! The client's request, checked and re-serialized for the target.
//!
//! OpenAI and compatible servers speak the client's format, so the body
//! changes little: `model` becomes the target's, and a stream always asks
//! for usage (`stream_options.include_usage`) so the gateway can account
//! tokens. What the body may carry is bounded: the fields the SDK's
//! [`ChatRequest`] knows, OpenAI's other request fields, and the target's
//! `allow` list. Anything else is refused by name rather than forwarded
//! to a server that might ignore it.

use weir_sdk::ai::openai::{ChatRequest, StreamOptions};
use weir_sdk::ai::{ApiError, ProviderRequest};

use crate::target::Target;

/// OpenAI's chat completion request fields that [`ChatRequest`] keeps in
/// `extra` (it names the common ones itself), including deprecated ones
/// OpenAI still accepts.
const OPENAI_FIELDS: &[&str] = &[
    "audio",
    "function_call",
    "functions",
    "logit_bias",
    "logprobs",
    "metadata",
    "modalities",
    "prediction",
    "prompt_cache_key",
    "prompt_cache_retention",
    "reasoning_effort",
    "safety_identifier",
    "service_tier",
    "store",
    "top_logprobs",
    "verbosity",
    "web_search_options",
];

/// Message fields OpenAI accepts that [`ChatRequest`]'s messages keep in
/// `extra`: an assistant turn's refusal, its audio reply (by id) and the
/// deprecated `function_call`.
const MESSAGE_FIELDS: &[&str] = &["refusal", "audio", "function_call"];

/// `stream_options` fields besides `include_usage`.
const STREAM_OPTION_FIELDS: &[&str] = &["include_obfuscation"];

/// The provider request for `body`.
pub fn translate(target: &Target, body: &[u8]) -> Result<ProviderRequest, ApiError> {
    let mut request = ChatRequest::parse(body)?;
    check_fields(target, &request)?;
    request.model = target.model.clone();
    if request.is_stream() {
        request
            .stream_options
            .get_or_insert_with(StreamOptions::default)
            .include_usage = Some(true);
    }
    let body = serde_json::to_vec(&request)
        .map_err(|e| ApiError::invalid_request(None, &format!("request cannot be encoded: {e}")))?;
    Ok(ProviderRequest {
        method: "POST".into(),
        path: target.path.clone(),
        headers: vec![("content-type".into(), "application/json".into())],
        body,
        key: target.key.clone(),
    })
}

/// Refuse, naming it, the first field that is neither OpenAI's nor allowed.
fn check_fields(target: &Target, request: &ChatRequest) -> Result<(), ApiError> {
    let allowed = |name: &str| OPENAI_FIELDS.contains(&name) || target.allow.iter().any(|a| a == name);
    if let Some(name) = request.extra.keys().find(|name| !allowed(name)) {
        return Err(ApiError::unsupported(name, target.provider));
    }
    for (i, message) in request.messages.iter().enumerate() {
        if let Some(name) = message
            .extra
            .keys()
            .find(|name| !MESSAGE_FIELDS.contains(&name.as_str()))
        {
            return Err(ApiError::unsupported(&format!("messages[{i}].{name}"), target.provider));
        }
    }
    if let Some(options) = &request.stream_options
        && let Some(name) = options
            .extra
            .keys()
            .find(|name| !STREAM_OPTION_FIELDS.contains(&name.as_str()))
    {
        return Err(ApiError::unsupported(
            &format!("stream_options.{name}"),
            target.provider,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use weir_sdk::ai::KeyPlacement;

    use super::*;

    fn openai() -> Target {
        crate::target::checked(r#"{"model": "gpt-4o-2024-08-06"}"#).unwrap()
    }

    fn sent(target: &Target, body: &[u8]) -> Value {
        let request = translate(target, body).unwrap();
        assert_eq!(request.method, "POST");
        assert_eq!(
            request.headers,
            [("content-type".to_string(), "application/json".to_string())]
        );
        serde_json::from_slice(&request.body).unwrap()
    }

    #[test]
    fn a_conversation_passes_through_with_the_target_model() {
        let body = include_bytes!("../fixtures/request_conversation.json");
        let request = translate(&openai(), body).unwrap();
        assert_eq!(request.path, "/v1/chat/completions");
        assert!(matches!(&request.key, KeyPlacement::Header((name, _)) if name == "authorization"));
        let mut expected: Value = serde_json::from_slice(body).unwrap();
        expected["model"] = json!("gpt-4o-2024-08-06");
        assert_eq!(serde_json::from_slice::<Value>(&request.body).unwrap(), expected);
    }

    #[test]
    fn tools_and_tool_results_pass_through_unchanged() {
        let body = include_bytes!("../fixtures/request_tools.json");
        let mut expected: Value = serde_json::from_slice(body).unwrap();
        expected["model"] = json!("gpt-4o-2024-08-06");
        // An assistant turn's `"content": null` is sent as no content,
        // which OpenAI reads the same.
        expected["messages"][2].as_object_mut().unwrap().remove("content");
        assert_eq!(sent(&openai(), body), expected);
    }

    #[test]
    fn a_stream_always_asks_for_usage() {
        let sent = sent(
            &openai(),
            br#"{"model": "x", "messages": [{"role": "user", "content": "hi"}], "stream": true}"#,
        );
        assert_eq!(sent["stream"], true);
        assert_eq!(sent["stream_options"], json!({"include_usage": true}));
        let sent = super::tests::sent(
            &openai(),
            br#"{"model": "x", "messages": [{"role": "user", "content": "hi"}], "stream": true,
                 "stream_options": {"include_usage": false, "include_obfuscation": false}}"#,
        );
        assert_eq!(
            sent["stream_options"],
            json!({"include_usage": true, "include_obfuscation": false})
        );
    }

    #[test]
    fn openai_fields_and_allowed_fields_pass_unknown_ones_are_refused() {
        let body = br#"{"model": "x", "messages": [{"role": "user", "content": "hi"}],
            "logit_bias": {"50256": -100}, "logprobs": true, "top_logprobs": 2, "store": false,
            "metadata": {"team": "a"}, "service_tier": "auto", "reasoning_effort": "low",
            "verbosity": "low", "max_tokens": 10, "seed": 7, "user": "u1", "n": 2}"#;
        let sent = sent(&openai(), body);
        assert_eq!(sent["logit_bias"], json!({"50256": -100}));
        assert_eq!(sent["reasoning_effort"], "low");
        assert_eq!(sent["max_tokens"], 10);
        assert_eq!(sent["n"], 2);

        let body = br#"{"model": "x", "messages": [{"role": "user", "content": "hi"}], "top_k": 40}"#;
        let error = translate(&openai(), body).unwrap_err();
        assert_eq!((error.status, error.param.as_deref()), (400, Some("top_k")));
        assert!(error.message.contains("top_k") && error.message.contains("OpenAI"));

        let vllm =
            crate::target::checked(r#"{"model": "m", "path": "/chat/completions", "allow": ["top_k"]}"#).unwrap();
        let request = translate(&vllm, body).unwrap();
        assert_eq!(request.path, "/chat/completions");
        let sent: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(sent["top_k"], 40);
    }

    #[test]
    fn unknown_message_and_stream_option_fields_are_refused() {
        let body = br#"{"model": "x", "messages": [{"role": "user", "content": "hi"},
            {"role": "assistant", "content": "yo", "refusal": null, "reasoning_content": "hm"}]}"#;
        let error = translate(&openai(), body).unwrap_err();
        assert_eq!(error.param.as_deref(), Some("messages[1].reasoning_content"));
        let body = br#"{"model": "x", "messages": [{"role": "user", "content": "hi"}], "stream": true,
            "stream_options": {"continuous_usage_stats": true}}"#;
        let error = translate(&openai(), body).unwrap_err();
        assert_eq!(error.param.as_deref(), Some("stream_options.continuous_usage_stats"));
    }

    #[test]
    fn a_malformed_request_names_the_field() {
        let body = br#"{"model": "x", "messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}"#;
        let error = translate(&openai(), body).unwrap_err();
        assert_eq!((error.status, error.param.as_deref()), (400, Some("temperature")));
    }

    #[test]
    fn azure_goes_to_the_deployment_with_an_api_key() {
        let azure = crate::target::checked(
            r#"{"model": "gpt-4o", "azure": {"deployment": "chat", "api-version": "2024-10-21"}}"#,
        )
        .unwrap();
        let request = translate(
            &azure,
            br#"{"model": "x", "messages": [{"role": "user", "content": "hi"}]}"#,
        )
        .unwrap();
        assert_eq!(
            request.path,
            "/openai/deployments/chat/chat/completions?api-version=2024-10-21"
        );
        assert!(matches!(&request.key, KeyPlacement::Header((name, _)) if name == "api-key"));
        let error = translate(&azure, br#"{"model": "x", "messages": [], "top_k": 1}"#).unwrap_err();
        assert!(error.message.contains("Azure OpenAI"));
    }
}
