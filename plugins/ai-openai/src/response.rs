//! A whole answer: the provider's `chat.completion`, passed through with
//! the gateway's id and time.

use serde_json::{Map, Value};
use weir_sdk::ai::{ApiError, Completion, Exchange, TokenUsage};

use crate::error;

/// The client's `chat.completion` for the provider's: `id` and `created`
/// from the exchange, everything else (`model`, `system_fingerprint`,
/// choices, usage, Azure's filter results) as the provider sent it.
pub fn translate(provider: &str, model: &str, exchange: &Exchange, body: &[u8]) -> Result<Completion, ApiError> {
    let mut value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_upstream(&format!("{provider} answered with a body that is not JSON: {e}")))?;
    // Some compatible servers answer errors with a 2xx status.
    if value.get("choices").is_none()
        && let Some(error) = error::from_value(provider, 502, &value)
    {
        return Err(error);
    }
    let Some(object) = value.as_object_mut() else {
        return Err(ApiError::bad_upstream(&format!(
            "{provider} answered with JSON that is not an object"
        )));
    };
    if !object.get("choices").is_some_and(Value::is_array) {
        return Err(ApiError::bad_upstream(&format!("{provider} answered without choices")));
    }
    stamp(object, exchange, model, "chat.completion");
    let usage = read_usage(object.get("usage"));
    let body = serde_json::to_vec(&value)
        .map_err(|e| ApiError::bad_upstream(&format!("{provider} answer cannot be encoded: {e}")))?;
    Ok(Completion { body, usage })
}

/// Set the gateway's `id` and `created`; fill `model` and `object` only
/// where the provider left them empty (Azure's prompt-filter chunk).
pub fn stamp(object: &mut Map<String, Value>, exchange: &Exchange, model: &str, kind: &str) {
    object.insert("id".into(), exchange.id.clone().into());
    object.insert("created".into(), exchange.created.into());
    for (field, default) in [("model", model), ("object", kind)] {
        if object.get(field).and_then(Value::as_str).is_none_or(str::is_empty) {
            object.insert(field.into(), default.into());
        }
    }
}

/// The token counts of an OpenAI `usage` object, if it is one.
pub fn read_usage(usage: Option<&Value>) -> Option<TokenUsage> {
    let usage = usage?.as_object()?;
    let count = |field: &str| {
        usage
            .get(field)
            .and_then(Value::as_u64)
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
    };
    let (prompt_tokens, completion_tokens) = (count("prompt_tokens"), count("completion_tokens"));
    if prompt_tokens.is_none() && completion_tokens.is_none() {
        return None;
    }
    Some(TokenUsage {
        prompt_tokens: prompt_tokens.unwrap_or(0),
        completion_tokens: completion_tokens.unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn exchange() -> Exchange {
        Exchange {
            id: "chatcmpl-gw1".into(),
            created: 1_700_000_000,
            include_usage: false,
        }
    }

    fn answer(body: &[u8]) -> (Value, Option<TokenUsage>) {
        let completion = translate("OpenAI", "gpt-4o", &exchange(), body).unwrap();
        (serde_json::from_slice(&completion.body).unwrap(), completion.usage)
    }

    /// The provider's body with the gateway's id and time.
    fn stamped(body: &[u8]) -> Value {
        let mut expected: Value = serde_json::from_slice(body).unwrap();
        expected["id"] = json!("chatcmpl-gw1");
        expected["created"] = json!(1_700_000_000);
        expected
    }

    #[test]
    fn a_text_answer_keeps_everything_but_id_and_created() {
        let body = include_bytes!("../fixtures/response_text.json");
        let (answer, usage) = answer(body);
        assert_eq!(answer, stamped(body));
        assert_eq!(answer["model"], "gpt-4.1-2025-04-14");
        assert_eq!(answer["choices"][0]["finish_reason"], "stop");
        let usage = usage.unwrap();
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (19, 10));
    }

    #[test]
    fn a_tool_call_answer_passes_through() {
        let body = include_bytes!("../fixtures/response_tool_calls.json");
        let (answer, usage) = answer(body);
        assert_eq!(answer, stamped(body));
        assert_eq!(answer["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(answer["choices"][0]["message"]["content"], Value::Null);
        assert_eq!(
            answer["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{\"location\":\"Boston, MA\"}"
        );
        assert_eq!(usage.unwrap().prompt_tokens, 82);
    }

    #[test]
    fn every_finish_reason_passes_through() {
        for reason in ["stop", "length", "tool_calls", "content_filter"] {
            let mut body: Value = serde_json::from_slice(include_bytes!("../fixtures/response_text.json")).unwrap();
            body["choices"][0]["finish_reason"] = json!(reason);
            let (answer, _) = answer(body.to_string().as_bytes());
            assert_eq!(answer["choices"][0]["finish_reason"], reason);
        }
    }

    #[test]
    fn azure_filter_results_pass_through() {
        let body = include_bytes!("../fixtures/response_azure_content_filter.json");
        let (answer, usage) = answer(body);
        assert_eq!(answer, stamped(body));
        assert_eq!(answer["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(
            answer["choices"][0]["content_filter_results"]["violence"]["filtered"],
            true
        );
        assert_eq!(answer["prompt_filter_results"][0]["prompt_index"], 0);
        assert!(usage.is_some());
    }

    #[test]
    fn a_missing_model_becomes_the_configured_one() {
        let (answer, usage) = answer(br#"{"choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]}"#);
        assert_eq!(answer["model"], "gpt-4o");
        assert_eq!(answer["object"], "chat.completion");
        assert!(usage.is_none());
    }

    #[test]
    fn an_unreadable_answer_is_a_bad_gateway() {
        for body in [
            &b"{\"id\": \"chatcmpl-malformed\", \"choices\": ["[..],
            b"[]",
            b"{\"id\": \"x\"}",
        ] {
            let error = translate("OpenAI", "gpt-4o", &exchange(), body).unwrap_err();
            assert_eq!(error.status, 502, "{}", String::from_utf8_lossy(body));
        }
        let error = translate(
            "OpenAI",
            "gpt-4o",
            &exchange(),
            br#"{"error": {"message": "model overloaded", "type": "server_error"}}"#,
        )
        .unwrap_err();
        assert_eq!((error.status, error.message.as_str()), (502, "model overloaded"));
    }
}
