//! What a request may carry and what a shim may see: prompt-template variables, and provider
//! keys never shown to shims or quoted back to clients.

use super::*;

#[tokio::test]
async fn template_endpoints_take_good_variables_and_refuse_bad_ones_with_400() {
    let (emu, addr) = emulator().await;
    let targets = target("anthropic", "ai-anthropic", addr, "claude-test", "chat", "");
    let cfg = config(&targets, "", "").replace(
        "[routes.ai]",
        r#"[[routes.plugins]]
name = "prompt-template"

[[routes.plugins.config.templates]]
name = "summarize"
version = 1
model = "chat"
messages = [{ role = "user", content = "Old: {{text}}" }]
variables = { text = { type = "string" } }

[[routes.plugins.config.templates]]
name = "summarize"
version = 2
model = "chat"
messages = [{ role = "system", content = "Answer in {{words}} words." }, { role = "user", content = "Summarize: {{text}}" }]
variables = { text = { type = "string" }, words = { type = "integer", default = 5 } }
parameters = { temperature = 0, max_tokens = 50 }

[routes.ai]"#,
    )
    .replace("path_prefix = \"/v1\"", "path_prefix = \"/\"");
    let mut shims = SHIMS.to_vec();
    shims.push(("prompt-template", "prompt-template"));
    let gw = TestGateway::start(&cfg, &shims).await;
    let post = |path: &str, body: Value| {
        client()
            .post(gw.url(path))
            .header("x-api-key", "alice-key")
            .json(&body)
            .send()
    };

    // The newest version, a value that looks like structure staying text.
    let tricky = "a \"quote\", {{words}} and {\"role\": \"system\"}";
    let response = post("/prompts/summarize", json!({"text": tricky, "words": 3}))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        format!("Echo: Summarize: {tricky}")
    );
    let sent = emu.requests().last().unwrap().json();
    assert_eq!(sent["system"], "Answer in 3 words.");
    assert_eq!(sent["messages"].as_array().unwrap().len(), 1, "{sent}");
    assert_eq!(sent["max_tokens"], 50);

    // A pinned version, streamed.
    let response = post("/prompts/summarize/v1?stream=true", json!({"text": "x"}))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert_eq!(streamed_text(&events(&text)), "Echo: Old: x");

    // Bad variables: 400 naming them, and nothing reaches the provider.
    let before = emu.count();
    for (body, named) in [
        (json!({}), "text"),
        (json!({"text": 5}), "text"),
        (json!({"text": "x", "words": "three"}), "words"),
        (json!({"text": "x", "colour": "red"}), "colour"),
    ] {
        let response = post("/prompts/summarize", body.clone()).await.unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["param"], named, "{body}: {error}");
        assert!(error["error"]["message"].as_str().unwrap().contains(named), "{error}");
    }
    let response = post("/prompts/nothing-here", json!({})).await.unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(emu.count(), before);

    // The route still serves chat completions directly.
    let response = chat(&gw, "alice", json!({"model": "chat", "messages": user("direct")})).await;
    assert_eq!(response.status(), 200);
    gw.stop().await;
}

#[tokio::test]
async fn a_rejected_provider_key_is_answered_not_failed_over_and_never_quoted_back() {
    let (first, first_addr) = emulator().await;
    let (second, second_addr) = emulator().await;
    let targets = [
        target("first", "ai-openai", first_addr, "gpt-test", "chat", "priority = 0")
            .replace("key_secret = \"provider-key\"", "key_secret = \"bad-key\""),
        target("second", "ai-openai", second_addr, "gpt-test", "chat", "priority = 1"),
    ]
    .concat();
    let cfg = config(&targets, "", "").replace(
        "[secrets.provider-key]",
        "[secrets.bad-key]\nvalue = \"sk-bad-0123456789\"\n\n[secrets.provider-key]",
    );
    let gw = TestGateway::start(&cfg, SHIMS).await;
    let response = chat(&gw, "alice", json!({"model": "chat", "messages": user("hi")})).await;
    assert_eq!(response.status(), 401);
    let text = response.text().await.unwrap();
    assert!(
        !text.contains("sk-bad-0123456789"),
        "the provider key reached the client: {text}"
    );
    assert!(text.contains("[redacted]"), "{text}");
    assert_eq!((first.count(), second.count()), (1, 0), "a 401 is not failed over");
    gw.stop().await;
}

/// What the spy shim (`guest-shim-spy`) reported it was given: the hex
/// after `seen:` in `text`, decoded.
fn spy_saw(text: &str) -> String {
    let hex: String = text
        .split_once("seen:")
        .map(|(_, rest)| rest.chars().take_while(char::is_ascii_hexdigit).collect())
        .unwrap_or_default();
    let bytes: Vec<u8> = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[tokio::test]
async fn a_shim_is_never_given_the_provider_key_even_when_the_provider_quotes_it() {
    let (emu, addr) = emulator().await;
    // The provider quotes the key back in its answer (`{key}` in the
    // prompt), and writes its stream in pieces of a few bytes.
    emu.set_faults(Some("quote-key,split"));
    let targets = [
        target("spy", "spy", addr, "gpt-test", "chat", ""),
        target("spy-bad", "spy", addr, "gpt-test", "rejected", "")
            .replace("key_secret = \"provider-key\"", "key_secret = \"bad-key\""),
    ]
    .concat();
    let cfg = config(&targets, "", "").replace(
        "[secrets.provider-key]",
        "[secrets.bad-key]\nvalue = \"sk-bad-0123456789\"\n\n[secrets.provider-key]",
    );
    let shims = [SHIMS, &[("spy", "guest-shim-spy")]].concat();
    let gw = TestGateway::start(&cfg, &shims).await;
    let keys = ["sk-provider-secret", "sk-bad-0123456789"];

    let mut answers = Vec::new();
    for stream in [false, true] {
        let text = answered_by(&gw, "spy", "say {key}", stream).await;
        let seen = spy_saw(&text);
        // The shim got the client's request and the provider's answer,
        // with the key the provider quoted taken out.
        assert!(seen.contains("say {key}"), "stream {stream}: {seen}");
        assert!(seen.contains("[redacted]"), "stream {stream}: {seen}");
        answers.push(text);
    }
    // A rejected key, which the provider's error quotes.
    let response = chat(&gw, "alice", json!({"model": "rejected", "messages": user("hi")})).await;
    assert_eq!(response.status(), 401);
    let text = response.text().await.unwrap();
    let seen = spy_saw(&text);
    assert!(seen.contains("Incorrect API key provided: [redacted]"), "{seen}");
    answers.push(text);

    // The provider got each key, from the host.
    let sent: Vec<String> = emu
        .requests()
        .iter()
        .filter_map(|r| r.headers.get("authorization").cloned())
        .collect();
    for key in keys {
        assert!(sent.contains(&format!("Bearer {key}")), "{key} was not sent: {sent:?}");
    }
    // The shim never held one, and the client never got one.
    for text in &answers {
        for key in keys {
            assert!(
                !spy_saw(text).contains(key),
                "the shim was given {key}: {}",
                spy_saw(text)
            );
            assert!(!text.contains(key), "the client got {key}: {text}");
        }
    }
    gw.stop().await;
}
