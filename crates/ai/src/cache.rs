//! The AI answer cache: exact match on the normalized request, scoped by
//! route and consumer, with a TTL and a bound on memory (moka).
//!
//! The key is a SHA-256 of the route, the consumer and the request body
//! with its keys sorted and the fields that only shape delivery
//! (`stream`, `stream_options`) removed — so a streamed and a whole
//! request for the same thing share an entry. Answers are stored as whole
//! `chat.completion` objects; a streamed request that hits is answered
//! with a stream replayed from it, and a streamed request that misses
//! builds the whole answer from its chunks ([`CompletionBuilder`]) as they
//! pass.
//!
//! With Redis as the gateway's `state`, answers are kept there instead (as
//! JSON under `{prefix}cache:{key}`, with the TTL), so an answer one
//! gateway stored is served by every other. While Redis is unavailable the
//! cache falls back to this gateway's memory: a cache is not a limit, so
//! neither policy refuses a request over it.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::wire::push_event;
use weir_config::AiCacheConfig;
use weir_state::redis::RedisStore;

/// A cached answer.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CachedAnswer {
    /// The `chat.completion` object.
    pub completion: Value,
    /// The target that produced it.
    pub target: String,
    /// The target's model.
    pub model: String,
}

impl CachedAnswer {
    /// The answer to keep for a shim's whole `chat.completion` body from
    /// `target` and its `model`; `None` unless the body is a JSON object.
    pub fn from_completion(body: &[u8], target: &str, model: &str) -> Option<CachedAnswer> {
        match serde_json::from_slice::<Value>(body) {
            Ok(completion @ Value::Object(_)) => Some(CachedAnswer {
                completion,
                target: target.to_string(),
                model: model.to_string(),
            }),
            _ => None,
        }
    }

    /// The answer under a new `id` and `created` time: the
    /// `chat.completion` object, or with `stream` its replayed chunks as
    /// server-sent events ending in `[DONE]`.
    pub fn replay(&self, id: &str, created: i64, stream: bool, include_usage: bool) -> Bytes {
        let mut completion = self.completion.clone();
        if let Some(fields) = completion.as_object_mut() {
            fields.insert("id".into(), json!(id));
            fields.insert("created".into(), json!(created.max(0)));
        }
        if !stream {
            return Bytes::from(completion.to_string());
        }
        let mut events = BytesMut::new();
        for chunk in replay_chunks(&completion, include_usage) {
            push_event(&mut events, &chunk);
        }
        push_event(&mut events, "[DONE]");
        events.freeze()
    }
}

/// One route's cache; clones share the entries.
#[derive(Clone)]
pub struct AnswerCache {
    entries: moka::sync::Cache<String, Arc<CachedAnswer>>,
    include_nonzero_temperature: bool,
    /// Where gateways sharing the cache keep it.
    shared: Option<Arc<RedisStore>>,
    ttl_ms: u64,
}

impl AnswerCache {
    /// A cache with the route's settings, in `shared` Redis if given (and
    /// in memory while it is unavailable).
    pub fn with_store(config: &AiCacheConfig, shared: Option<Arc<RedisStore>>) -> Self {
        AnswerCache {
            shared,
            ..AnswerCache::new(config)
        }
    }

    /// A cache with the route's settings, in this gateway's memory.
    pub fn new(config: &AiCacheConfig) -> Self {
        let entries = moka::sync::Cache::builder()
            .max_capacity(config.max_mb.saturating_mul(1 << 20))
            .weigher(|key: &String, value: &Arc<CachedAnswer>| {
                let size = key.len() + value.completion.to_string().len() + value.target.len();
                u32::try_from(size).unwrap_or(u32::MAX)
            })
            .time_to_live(Duration::from_secs(config.ttl_secs))
            .build();
        AnswerCache {
            entries,
            include_nonzero_temperature: config.include_nonzero_temperature,
            shared: None,
            ttl_ms: config.ttl_secs.saturating_mul(1000),
        }
    }

    /// The key for `request` (the parsed body), or `None` when the request
    /// may not be cached (temperature above 0 and the route does not
    /// allow it).
    pub fn key(&self, route: &str, consumer: Option<&str>, request: &Value) -> Option<String> {
        let temperature = request.get("temperature").and_then(Value::as_f64).unwrap_or(0.0);
        if temperature > 0.0 && !self.include_nonzero_temperature {
            return None;
        }
        let mut normalized = canonical(request);
        if let Value::Object(fields) = &mut normalized {
            fields.remove("stream");
            fields.remove("stream_options");
        }
        let mut hasher = Sha256::new();
        for part in [route, "\0", consumer.unwrap_or("-"), "\0"] {
            hasher.update(part.as_bytes());
        }
        hasher.update(normalized.to_string().as_bytes());
        Some(hex::encode(hasher.finalize()))
    }

    /// The answer stored under `key`, if fresh.
    pub async fn get(&self, key: &str) -> Option<Arc<CachedAnswer>> {
        let Some(redis) = self.shared.as_ref().filter(|r| r.is_up()) else {
            return self.entries.get(key);
        };
        match redis.get(redis.key(&["cache", key])).await {
            Ok(Some(bytes)) => match serde_json::from_slice::<CachedAnswer>(&bytes) {
                Ok(answer) => Some(Arc::new(answer)),
                Err(e) => {
                    tracing::warn!("ignoring an unreadable cached answer in {}: {e}", redis.url());
                    None
                }
            },
            Ok(None) => None,
            Err(_) => self.entries.get(key),
        }
    }

    /// Store an answer: in Redis when shared and reachable, else in
    /// memory.
    pub async fn put(&self, key: String, answer: CachedAnswer) {
        if let Some(redis) = self.shared.as_ref().filter(|r| r.is_up())
            && let Ok(json) = serde_json::to_vec(&answer)
            && redis
                .set(redis.key(&["cache", &key]), json, Some(self.ttl_ms))
                .await
                .is_ok()
        {
            return;
        }
        self.entries.insert(key, Arc::new(answer));
    }

    /// [`AnswerCache::put`] without waiting (from a body being polled).
    pub fn put_later(&self, key: String, answer: CachedAnswer) {
        match (&self.shared, tokio::runtime::Handle::try_current()) {
            (Some(_), Ok(runtime)) => {
                let cache = self.clone();
                runtime.spawn(async move { cache.put(key, answer).await });
            }
            _ => {
                self.entries.insert(key, Arc::new(answer));
            }
        }
    }
}

/// `value` with every object's keys in sorted order.
fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(fields) => {
            let mut keys: Vec<&String> = fields.keys().collect();
            keys.sort();
            let mut sorted = Map::new();
            for key in keys {
                sorted.insert(key.clone(), canonical(&fields[key]));
            }
            Value::Object(sorted)
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// Builds a whole `chat.completion` from the chunks of a stream.
#[derive(Debug, Default)]
pub struct CompletionBuilder {
    id: String,
    created: u64,
    model: String,
    choices: Vec<ChoiceParts>,
    usage: Option<Value>,
}

#[derive(Debug, Default, Clone)]
struct ChoiceParts {
    content: Option<String>,
    tool_calls: Vec<(String, String, String)>,
    finish_reason: Option<String>,
}

impl CompletionBuilder {
    /// Add one `chat.completion.chunk` (as JSON text); false if it does
    /// not parse (the answer is then not cached).
    pub fn add(&mut self, chunk: &str) -> bool {
        let Ok(chunk) = serde_json::from_str::<Value>(chunk) else {
            return false;
        };
        if let Some(id) = chunk.get("id").and_then(Value::as_str) {
            self.id = id.to_string();
        }
        if let Some(created) = chunk.get("created").and_then(Value::as_u64) {
            self.created = created;
        }
        if let Some(model) = chunk.get("model").and_then(Value::as_str) {
            self.model = model.to_string();
        }
        if let Some(usage) = chunk.get("usage").filter(|u| !u.is_null()) {
            self.usage = Some(usage.clone());
        }
        for choice in chunk.get("choices").and_then(Value::as_array).into_iter().flatten() {
            let index = choice.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
            if index >= 128 {
                return false;
            }
            if self.choices.len() <= index {
                self.choices.resize(index + 1, ChoiceParts::default());
            }
            let parts = &mut self.choices[index];
            let delta = choice.get("delta").unwrap_or(&Value::Null);
            if let Some(text) = delta.get("content").and_then(Value::as_str) {
                parts.content.get_or_insert_with(String::new).push_str(text);
            }
            for call in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                let at = call.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
                if at >= 128 {
                    return false;
                }
                if parts.tool_calls.len() <= at {
                    parts.tool_calls.resize(at + 1, Default::default());
                }
                let entry = &mut parts.tool_calls[at];
                if let Some(id) = call.get("id").and_then(Value::as_str) {
                    entry.0 = id.to_string();
                }
                let function = call.get("function").unwrap_or(&Value::Null);
                if let Some(name) = function.get("name").and_then(Value::as_str) {
                    entry.1.push_str(name);
                }
                if let Some(arguments) = function.get("arguments").and_then(Value::as_str) {
                    entry.2.push_str(arguments);
                }
            }
            if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                parts.finish_reason = Some(reason.to_string());
            }
        }
        true
    }

    /// The whole answer.
    pub fn finish(self) -> Value {
        let choices: Vec<Value> = self
            .choices
            .into_iter()
            .enumerate()
            .map(|(index, parts)| {
                let mut message = json!({"role": "assistant", "content": parts.content});
                if !parts.tool_calls.is_empty() {
                    message["tool_calls"] = parts
                        .tool_calls
                        .into_iter()
                        .map(|(id, name, arguments)| {
                            json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}})
                        })
                        .collect();
                }
                json!({"index": index, "message": message, "finish_reason": parts.finish_reason, "logprobs": null})
            })
            .collect();
        let mut completion = json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        });
        if let Some(usage) = self.usage {
            completion["usage"] = usage;
        }
        completion
    }
}

/// The chunks that replay `completion` as a stream (without `[DONE]`):
/// for each choice a role chunk, its content, its tool calls and its
/// finish reason; then the usage if `include_usage`.
pub fn replay_chunks(completion: &Value, include_usage: bool) -> Vec<String> {
    let head = |choices: Value| {
        json!({
            "id": completion["id"],
            "object": "chat.completion.chunk",
            "created": completion["created"],
            "model": completion["model"],
            "choices": choices,
        })
    };
    let mut chunks = Vec::new();
    for (i, choice) in completion["choices"].as_array().into_iter().flatten().enumerate() {
        let index = choice.get("index").cloned().unwrap_or(json!(i));
        let message = &choice["message"];
        let delta = |delta: Value, finish: Value| json!([{"index": index, "delta": delta, "finish_reason": finish, "logprobs": null}]);
        chunks.push(head(delta(json!({"role": "assistant", "content": ""}), Value::Null)));
        if let Some(text) = message["content"].as_str().filter(|t| !t.is_empty()) {
            chunks.push(head(delta(json!({"content": text}), Value::Null)));
        }
        for (at, call) in message["tool_calls"].as_array().into_iter().flatten().enumerate() {
            let piece = json!({"tool_calls": [{
                "index": at,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["function"]["name"], "arguments": call["function"]["arguments"]},
            }]});
            chunks.push(head(delta(piece, Value::Null)));
        }
        chunks.push(head(delta(json!({}), choice["finish_reason"].clone())));
    }
    if include_usage && let Some(usage) = completion.get("usage") {
        let mut last = head(json!([]));
        last["usage"] = usage.clone();
        chunks.push(last);
    }
    chunks.into_iter().map(|c| c.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(include_nonzero_temperature: bool) -> AnswerCache {
        AnswerCache::new(&AiCacheConfig {
            ttl_secs: 60,
            max_mb: 1,
            include_nonzero_temperature,
        })
    }

    #[test]
    fn keys_ignore_delivery_and_key_order_but_not_consumer_or_content() {
        let cache = cache(false);
        let a = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": true});
        let b = json!({"messages": [{"content": "hi", "role": "user"}], "model": "m"});
        let c = json!({"model": "m", "messages": [{"role": "user", "content": "hi!"}]});
        let key = |v: &Value, who| cache.key("r", who, v).unwrap();
        assert_eq!(key(&a, Some("alice")), key(&b, Some("alice")));
        assert_ne!(key(&a, Some("alice")), key(&a, Some("bob")));
        assert_ne!(key(&a, Some("alice")), key(&c, Some("alice")));
        assert_ne!(key(&a, None), cache.key("other-route", None, &a).unwrap());
    }

    #[test]
    fn nonzero_temperature_is_not_cached_unless_allowed() {
        let hot = json!({"model": "m", "messages": [], "temperature": 0.7});
        let cold = json!({"model": "m", "messages": [], "temperature": 0});
        assert!(cache(false).key("r", None, &hot).is_none());
        assert!(cache(false).key("r", None, &cold).is_some());
        assert!(cache(true).key("r", None, &hot).is_some());
    }

    #[test]
    fn a_stream_built_into_a_completion_replays_as_the_same_stream() {
        let chunks = [
            r#"{"id":"c1","object":"chat.completion.chunk","created":5,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
            r#"{"id":"c1","object":"chat.completion.chunk","created":5,"model":"m","choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}"#,
            r#"{"id":"c1","object":"chat.completion.chunk","created":5,"model":"m","choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":null}]}"#,
            r#"{"id":"c1","object":"chat.completion.chunk","created":5,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"look","arguments":""}}]},"finish_reason":null}]}"#,
            r#"{"id":"c1","object":"chat.completion.chunk","created":5,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"x\":"}}]},"finish_reason":null}]}"#,
            r#"{"id":"c1","object":"chat.completion.chunk","created":5,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"1}"}}]},"finish_reason":null}]}"#,
            r#"{"id":"c1","object":"chat.completion.chunk","created":5,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
            r#"{"id":"c1","object":"chat.completion.chunk","created":5,"model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#,
        ];
        let mut builder = CompletionBuilder::default();
        for chunk in chunks {
            assert!(builder.add(chunk));
        }
        let completion = builder.finish();
        assert_eq!(completion["object"], "chat.completion");
        assert_eq!(completion["choices"][0]["message"]["content"], "Hello");
        assert_eq!(
            completion["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{\"x\":1}"
        );
        assert_eq!(completion["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(completion["usage"]["total_tokens"], 7);

        let mut again = CompletionBuilder::default();
        for chunk in replay_chunks(&completion, true) {
            assert!(again.add(&chunk));
        }
        assert_eq!(again.finish(), completion);
        let without_usage = replay_chunks(&completion, false);
        assert!(without_usage.iter().all(|c| !c.contains("\"usage\"")));
    }

    #[test]
    fn only_an_object_is_cached_and_it_replays_under_the_new_id() {
        for body in [&b"[1]"[..], b"\"text\"", b"7", b"null", b"not json"] {
            assert!(CachedAnswer::from_completion(body, "t", "m").is_none(), "{body:?}");
        }
        let answer = CachedAnswer::from_completion(br#"{"id": "old", "choices": []}"#, "t", "m").unwrap();
        let whole: Value = serde_json::from_slice(&answer.replay("new", 5, false, false)).unwrap();
        assert_eq!(
            (whole["id"].as_str(), whole["created"].as_i64()),
            (Some("new"), Some(5))
        );
        let stream = answer.replay("new", 5, true, false);
        assert!(stream.ends_with(b"data: [DONE]\n\n"), "{stream:?}");
    }

    #[tokio::test]
    async fn entries_are_found_until_they_expire() {
        let cache = cache(false);
        cache
            .put(
                "k".into(),
                CachedAnswer {
                    completion: json!({"id": "x"}),
                    target: "t".into(),
                    model: "m".into(),
                },
            )
            .await;
        assert_eq!(cache.get("k").await.unwrap().target, "t");
        assert!(cache.get("other").await.is_none());
    }
}
