//! What the AI gateway costs: translating a chat request inside a provider
//! shim, translating one streamed event, and the time to first token a
//! client sees through Weir against the provider emulator directly.
//!
//! The shim benches call warm instances of the real shims through
//! [`Lease`], as `crates/ai/src/chat/` and `relay.rs` do; each times only
//! the call, with its input built before the clock starts and its output
//! dropped after it stops. The time-to-first-token benches use sockets: the
//! emulator and a started gateway on `127.0.0.1:0`, and one keep-alive
//! HTTP/1.1 connection per destination. After them the bench prints the
//! medians of 200 interleaved requests to each destination and their
//! differences: what Weir adds to the time to first token.

// The allocator the gateway's binary uses (host/src/allocator.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use weir::gateway::Gateway;
use weir::plugins::capabilities::shim::exports::weir::plugin::provider::Exchange;
use weir::plugins::{ShimLease, ShimPlugin};
use weir::proxy::full_body;
use weir::proxy::router::Backend;
use weir::running::RunningGateway;
use weir_emulator::Emulator;
use weir_testing::built_plugin;

mod ttft;

/// The four shims, each the only target of its alias.
const SHIMS: [&str; 4] = ["ai-openai", "ai-anthropic", "ai-gemini", "ai-ollama"];

/// A gateway with one AI route at `/v1` whose targets are the four shims,
/// all pointing at `provider` under the aliases `openai`, `anthropic`,
/// `gemini` and `ollama`.
struct Loaded {
    _dir: tempfile::TempDir,
    gateway: Gateway,
}

fn load(rt: &tokio::runtime::Runtime, provider: SocketAddr) -> Loaded {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("plugins")).expect("mkdir");
    for shim in SHIMS {
        std::fs::copy(
            built_plugin(shim),
            dir.path().join("plugins").join(format!("{shim}.wasm")),
        )
        .unwrap_or_else(|e| panic!("{shim} not built ({e}); run `cargo build` first"));
    }
    let targets: String = SHIMS
        .iter()
        .map(|shim| {
            let alias = shim.trim_start_matches("ai-");
            format!(
                r#"
                [[routes.ai.targets]]
                name = "{alias}"
                shim = "{shim}"
                base_url = "http://{provider}"
                model = "{alias}-bench-model"
                alias = "{alias}"
                key_secret = "provider-key"
                "#
            )
        })
        .collect();
    // A compile cache that outlives the run: compiling four shims takes
    // seconds, and loading is not what is measured.
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("weir-bench-compile-cache");
    let config = format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [plugins]
        dir = "plugins"
        cache_dir = {cache:?}
        [ai]
        usage_db = "usage.db"
        [secrets.provider-key]
        value = "sk-bench"
        [[routes]]
        name = "ai"
        path_prefix = "/v1"
        [routes.ai]
        {targets}
        "#
    );
    let file = dir.path().join("weir.toml");
    std::fs::write(&file, config).expect("write config");
    let gateway = rt.block_on(Gateway::load_file(&file)).unwrap_or_else(|e| panic!("{e}"));
    Loaded { _dir: dir, gateway }
}

/// The shim serving `alias` and the target's slot in it.
fn shim_for(gateway: &Gateway, alias: &str) -> (Arc<ShimPlugin>, usize) {
    let proxy = gateway.proxy().load_full();
    let request = Request::post("/v1/chat/completions")
        .body(full_body(Bytes::new()))
        .expect("request");
    let route = proxy.route_for(&request).expect("route");
    let Backend::Ai(backend) = &route.backend else {
        panic!("/v1 is not an AI route");
    };
    let ai = &backend
        .as_any()
        .downcast_ref::<weir::ai::chat::AiRouteBackend>()
        .expect("an AI route's backend")
        .route;
    let target = ai.targets.iter().find(|t| t.alias == alias).expect("target");
    target
        .shim
        .clone()
        .unwrap_or_else(|name| panic!("shim {name} not loaded"))
}

/// A ~2 KB OpenAI chat request: a system prompt, a five-turn conversation
/// and one tool definition.
fn chat_request() -> Value {
    json!({
        "model": "anthropic",
        "messages": [
            {"role": "system", "content": "You are the on-call assistant for the platform team. Answer in plain English, \
                in short paragraphs, and cite the runbook section you rely on. If you are unsure, say so and suggest \
                who to ask. Never invent metrics or timestamps; use the search_runbooks tool when a question needs a \
                runbook you have not seen in this conversation. Keep answers under two hundred words unless asked \
                for detail, and end with the next concrete step the engineer should take."},
            {"role": "user", "content": "The checkout service started returning 502s about ten minutes ago. \
                What should I look at first?"},
            {"role": "assistant", "content": "Start with the load balancer's upstream health: a burst of 502s \
                usually means the checkout pods are failing their readiness probes or being restarted. Check the \
                deployment's recent rollouts and the pod restart counts (runbook: Checkout, section 2.1)."},
            {"role": "user", "content": "There was a rollout 12 minutes ago, and three of eight pods restarted \
                with OOMKilled. Memory limits were not changed in that release."},
            {"role": "assistant", "content": "Then the new build likely uses more memory under load. Roll back to \
                the previous release first to stop the errors, then compare heap profiles of the two builds in \
                staging (runbook: Checkout, section 4.3, Rollback)."},
            {"role": "user", "content": "Rolled back and the errors stopped. How do we write this up?"}
        ],
        "tools": [{
            "type": "function",
            "function": {
                "name": "search_runbooks",
                "description": "Search the team's runbooks and return the best matching sections with their titles.",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "query": {"type": "string", "description": "What to look for, in a few words."},
                        "service": {"type": "string", "description": "Limit the search to one service's runbook."},
                        "limit": {"type": "integer", "description": "Most sections to return.", "minimum": 1, "maximum": 10}
                    },
                    "required": ["query"]
                }
            }
        }],
        "tool_choice": "auto",
        "temperature": 0.3,
        "max_tokens": 512
    })
}

/// Anthropic's whole answer to a chat.
const ANTHROPIC_MESSAGE: &str = r#"{"id":"msg_013Zva2CMHLNnXjNJJKqJ2EF","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"Write a short incident report: what users saw (502s on checkout for about 12 minutes), the cause (a release that raised memory use until pods were OOMKilled), how it was mitigated (rollback), and follow-ups: a heap comparison in staging and a load test gate for memory before rollout."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":431,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":64,"service_tier":"standard"}}"#;

fn exchange() -> Exchange {
    Exchange {
        id: "chatcmpl-bench".into(),
        created: 1_764_000_000,
        include_usage: false,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// An address for targets the shim benches never contact.
fn nowhere() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9))
}

/// Time `iters` request translations on a warm instance.
async fn timed_requests(lease: &mut ShimLease, slot: usize, body: &[u8], iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let started = Instant::now();
        let result = lease.translate_request(slot, black_box(body)).await;
        total += started.elapsed();
        assert!(matches!(result, Ok(Ok(_))));
        drop(result);
    }
    total
}

fn translate(c: &mut Criterion) {
    let rt = runtime();
    let loaded = load(&rt, nowhere());
    let body = serde_json::to_vec(&chat_request()).expect("json");
    eprintln!("translate: the OpenAI chat request is {} bytes", body.len());
    let mut group = c.benchmark_group("translate");
    // Anthropic is the target; the other shims give the same request's
    // cost where little or nothing changes shape (OpenAI passes it on).
    for alias in ["anthropic", "openai", "gemini", "ollama"] {
        let (plugin, slot) = shim_for(&loaded.gateway, alias);
        let mut lease = rt.block_on(plugin.lease(slot)).expect("lease");
        let translated = match rt.block_on(lease.translate_request(slot, &body)) {
            Ok(Ok(request)) => request,
            _ => panic!("the {alias} shim refused the request"),
        };
        eprintln!(
            "translate: {alias}'s request is {} bytes: {} {}",
            translated.body.len(),
            translated.method,
            translated.path
        );
        group.bench_function(format!("openai_to_{alias}_2kb"), |b| {
            b.iter_custom(|iters| rt.block_on(timed_requests(&mut lease, slot, &body, iters)))
        });
    }
    let (plugin, slot) = shim_for(&loaded.gateway, "anthropic");
    let mut lease = rt.block_on(plugin.lease(slot)).expect("lease");
    let exchange = exchange();
    group.bench_function("anthropic_response_to_openai", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let started = Instant::now();
                    let result = lease
                        .translate_response(slot, &exchange, black_box(ANTHROPIC_MESSAGE.as_bytes()))
                        .await;
                    total += started.elapsed();
                    assert!(matches!(result, Ok(Ok(_))));
                    drop(result);
                }
                total
            })
        })
    });
    group.finish();
}

/// One provider's stream: the events up to the first text (pushed untimed
/// after opening, as the first push of a stream also yields the role
/// chunk) and one text event (pushed over and over).
struct StreamCase {
    bench: &'static str,
    alias: &'static str,
    prologue: &'static str,
    event: &'static str,
}

const STREAMS: [StreamCase; 4] = [
    StreamCase {
        bench: "anthropic_chunk",
        alias: "anthropic",
        prologue: concat!(
            "event: message_start\n",
            r#"data: {"type":"message_start","message":{"id":"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5-20250929","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"output_tokens":1}}}"#,
            "\n\nevent: content_block_start\n",
            r#"data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            "\n\n",
        ),
        event: concat!(
            "event: content_block_delta\n",
            r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" the rollback"}}"#,
            "\n\n",
        ),
    },
    StreamCase {
        bench: "openai_chunk",
        alias: "openai",
        prologue: concat!(
            r#"data: {"id":"chatcmpl-BDBeVdtbsmi4Oq6WlXcH8x8ffUTzh","object":"chat.completion.chunk","created":1742469375,"model":"gpt-4.1-2025-04-14","service_tier":"default","system_fingerprint":"fp_b376dfbbd5","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}"#,
            "\n\n",
        ),
        event: concat!(
            r#"data: {"id":"chatcmpl-BDBeVdtbsmi4Oq6WlXcH8x8ffUTzh","object":"chat.completion.chunk","created":1742469375,"model":"gpt-4.1-2025-04-14","service_tier":"default","system_fingerprint":"fp_b376dfbbd5","choices":[{"index":0,"delta":{"content":" the rollback"},"logprobs":null,"finish_reason":null}],"usage":null}"#,
            "\n\n",
        ),
    },
    StreamCase {
        bench: "gemini_chunk",
        alias: "gemini",
        prologue: concat!(
            r#"data: {"candidates": [{"content": {"parts": [{"text": "Write"}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 12,"totalTokenCount": 12,"promptTokensDetails": [{"modality": "TEXT","tokenCount": 12}]},"modelVersion": "gemini-2.5-flash","responseId": "Ug3aaK-hNPi8qtsPrZzp0Qs"}"#,
            "\n\n",
        ),
        event: concat!(
            r#"data: {"candidates": [{"content": {"parts": [{"text": " the rollback"}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 12,"totalTokenCount": 12,"promptTokensDetails": [{"modality": "TEXT","tokenCount": 12}]},"modelVersion": "gemini-2.5-flash","responseId": "Ug3aaK-hNPi8qtsPrZzp0Qs"}"#,
            "\n\n",
        ),
    },
    StreamCase {
        bench: "ollama_chunk",
        alias: "ollama",
        prologue: concat!(
            r#"{"model":"llama3.2","created_at":"2023-08-04T08:52:19.335406455-07:00","message":{"role":"assistant","content":"Write"},"done":false}"#,
            "\n",
        ),
        event: concat!(
            r#"{"model":"llama3.2","created_at":"2023-08-04T08:52:19.385406455-07:00","message":{"role":"assistant","content":" the rollback"},"done":false}"#,
            "\n",
        ),
    },
];

/// Events fed to one stream before it is closed and another opened: a long
/// answer, without letting a stream grow without bound.
const EVENTS_PER_STREAM: u64 = 1000;

/// Open a stream, feed it the prologue, then `events` copies of the
/// event; the time of those pushes alone.
async fn timed_stream(lease: &mut ShimLease, slot: usize, case: &StreamCase, events: u64) -> Duration {
    let stream = lease.open_stream(slot, &exchange()).await.expect("open stream");
    let out = lease.stream_step(slot, stream, case.prologue.as_bytes(), false).await;
    assert!(matches!(out, Ok(Ok(_))), "{}: prologue refused", case.bench);
    let mut total = Duration::ZERO;
    for _ in 0..events {
        let started = Instant::now();
        let out = lease
            .stream_step(slot, stream, black_box(case.event.as_bytes()), false)
            .await;
        total += started.elapsed();
        match out {
            Ok(Ok(out)) => assert_eq!(out.chunks.len(), 1, "{}: one chunk per event", case.bench),
            _ => panic!("{}: push failed", case.bench),
        }
    }
    lease.close_stream(stream).await.expect("close stream");
    total
}

fn stream(c: &mut Criterion) {
    let rt = runtime();
    let loaded = load(&rt, nowhere());
    let mut group = c.benchmark_group("stream");
    for case in &STREAMS {
        let (plugin, slot) = shim_for(&loaded.gateway, case.alias);
        let mut lease = rt.block_on(plugin.lease(slot)).expect("lease");
        eprintln!("stream/{}: one event is {} bytes", case.bench, case.event.len());
        group.bench_function(case.bench, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    let mut left = iters;
                    while left > 0 {
                        let events = left.min(EVENTS_PER_STREAM);
                        total += timed_stream(&mut lease, slot, case, events).await;
                        left -= events;
                    }
                    total
                })
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = translate, stream, ttft::ttft
}
criterion_main!(benches);
