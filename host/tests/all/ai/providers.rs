//! Every provider through its shim: whole and streamed answers in OpenAI's shape, tool calls,
//! the model list, and provider streams split or cut midway.

use super::*;

#[tokio::test]
async fn every_provider_answers_whole_and_streamed_in_openai_shape() {
    let (emu, addr) = emulator().await;
    let gw = TestGateway::start(&config(&all_providers(addr), "", ""), SHIMS).await;
    for model in ["openai", "anthropic", "gemini", "ollama"] {
        let response = chat(&gw, "alice", json!({"model": model, "messages": user("hello there")})).await;
        assert_eq!(response.status(), 200, "{model}");
        assert_eq!(response.headers()["x-weir-target"], model);
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["object"], "chat.completion", "{model}: {body}");
        assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"), "{model}: {body}");
        assert_eq!(body["choices"][0]["message"]["role"], "assistant", "{model}: {body}");
        assert_eq!(
            body["choices"][0]["message"]["content"], "Echo: hello there",
            "{model}: {body}"
        );
        assert_eq!(body["choices"][0]["finish_reason"], "stop", "{model}: {body}");
        // Prompt: "Be brief." and "hello there" are four words.
        assert_eq!(body["usage"]["prompt_tokens"], 4, "{model}: {body}");
        assert_eq!(body["usage"]["completion_tokens"], 3, "{model}: {body}");

        let response = chat(
            &gw,
            "alice",
            json!({"model": model, "messages": user("stream me please"), "stream": true, "stream_options": {"include_usage": true}}),
        )
        .await;
        assert_eq!(response.status(), 200, "{model}");
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let text = response.text().await.expect("body");
        let events = events(&text);
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{model}: {text}");
        assert_eq!(streamed_text(&events), "Echo: stream me please", "{model}: {text}");
        let usage: Value = serde_json::from_str(&events[events.len() - 2]).expect("usage chunk");
        assert_eq!(usage["usage"]["completion_tokens"], 4, "{model}: {text}");
    }
    // The provider key went to the emulator, in each provider's own place,
    // and never to the client.
    let requests = emu.requests();
    let key_of = |provider: &str| {
        let r = requests.iter().find(|r| r.provider == provider).expect("request seen");
        ["authorization", "x-api-key", "x-goog-api-key"]
            .iter()
            .find_map(|h| r.header(h).map(str::to_string))
    };
    assert_eq!(key_of("openai").as_deref(), Some("Bearer sk-provider-secret"));
    assert_eq!(key_of("anthropic").as_deref(), Some("sk-provider-secret"));
    assert_eq!(key_of("gemini").as_deref(), Some("sk-provider-secret"));
    assert!(
        requests.iter().all(|r| !r.body.contains("alice-key")),
        "the client's key leaked upstream"
    );
    gw.stop().await;
}

#[tokio::test]
async fn tool_calls_round_trip_through_every_provider() {
    let (_emu, addr) = emulator().await;
    let gw = TestGateway::start(&config(&all_providers(addr), "", ""), SHIMS).await;
    let tools = json!([{"type": "function", "function": {"name": "lookup", "description": "Look up", "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}}]);
    for model in ["openai", "anthropic", "gemini", "ollama"] {
        let response = chat(
            &gw,
            "alice",
            json!({"model": model, "messages": user("please call lookup weather in Oslo"), "tools": tools}),
        )
        .await;
        assert_eq!(response.status(), 200, "{model}");
        let body: Value = response.json().await.expect("json");
        let call = &body["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(body["choices"][0]["finish_reason"], "tool_calls", "{model}: {body}");
        assert_eq!(call["function"]["name"], "lookup", "{model}: {body}");
        let arguments: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(arguments["query"], "weather in Oslo", "{model}: {body}");

        // Streamed: the pieces add up to the same call.
        let response = chat(
            &gw,
            "alice",
            json!({"model": model, "messages": user("please call lookup weather in Oslo"), "tools": tools, "stream": true}),
        )
        .await;
        let text = response.text().await.unwrap();
        let mut name = String::new();
        let mut args = String::new();
        let mut finish = None;
        for event in events(&text).iter().filter(|e| *e != "[DONE]") {
            let chunk: Value = serde_json::from_str(event).unwrap();
            let choice = &chunk["choices"][0];
            if let Some(calls) = choice["delta"]["tool_calls"].as_array() {
                name.push_str(calls[0]["function"]["name"].as_str().unwrap_or_default());
                args.push_str(calls[0]["function"]["arguments"].as_str().unwrap_or_default());
            }
            if let Some(reason) = choice["finish_reason"].as_str() {
                finish = Some(reason.to_string());
            }
        }
        assert_eq!(name, "lookup", "{model}: {text}");
        assert_eq!(
            serde_json::from_str::<Value>(&args).unwrap()["query"],
            "weather in Oslo",
            "{model}: {text}"
        );
        assert_eq!(finish.as_deref(), Some("tool_calls"), "{model}: {text}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn models_are_listed_and_an_unknown_model_or_field_is_refused_clearly() {
    let (_emu, addr) = emulator().await;
    let gw = TestGateway::start(&config(&all_providers(addr), "", ""), SHIMS).await;
    let models: Value = client()
        .get(gw.url("/v1/models"))
        .header("x-api-key", "alice-key")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["openai", "anthropic", "gemini", "ollama"]);

    let response = chat(&gw, "alice", json!({"model": "nope", "messages": user("hi")})).await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "model_not_found");

    // Anthropic has no logit_bias: refused naming it, not dropped.
    let response = chat(
        &gw,
        "alice",
        json!({"model": "anthropic", "messages": user("hi"), "logit_bias": {"1": 5}}),
    )
    .await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"].as_str().unwrap().contains("logit_bias"),
        "{body}"
    );

    let response = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-api-key", "alice-key")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    // Without a key the auth plugin answers before any provider is asked.
    let response = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    gw.stop().await;
}

#[tokio::test]
async fn a_stream_cut_midway_ends_with_an_error_event_not_a_clean_finish() {
    for shim in ["ai-anthropic", "ai-openai", "ai-gemini", "ai-ollama"] {
        let (emu, addr) = emulator().await;
        emu.set_faults(Some("cut:3"));
        let targets = target("only", shim, addr, "m-test", "chat", "");
        let gw = TestGateway::start(&config(&targets, "", ""), SHIMS).await;
        let response = chat(
            &gw,
            "alice",
            json!({"model": "chat", "messages": user("a long answer with many words in it"), "stream": true}),
        )
        .await;
        assert_eq!(response.status(), 200, "{shim}");
        let text = response.text().await.unwrap();
        let events = events(&text);
        assert_ne!(events.last().map(String::as_str), Some("[DONE]"), "{shim}: {text}");
        let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
        assert!(last["error"]["message"].is_string(), "{shim}: {text}");
        gw.stop().await;
    }
}

#[tokio::test]
async fn split_and_crlf_provider_streams_arrive_whole() {
    for shim in ["ai-anthropic", "ai-openai", "ai-gemini", "ai-ollama"] {
        let (emu, addr) = emulator().await;
        emu.set_faults(Some("split,crlf"));
        let gw = TestGateway::start(
            &config(&target("only", shim, addr, "m-test", "chat", ""), "", ""),
            SHIMS,
        )
        .await;
        let response = chat(
            &gw,
            "alice",
            json!({"model": "chat", "messages": user("split into tiny pieces ü €"), "stream": true}),
        )
        .await;
        let text = response.text().await.unwrap();
        assert_eq!(
            streamed_text(&events(&text)),
            "Echo: split into tiny pieces ü €",
            "{shim}: {text}"
        );
        gw.stop().await;
    }
}
