//! Several gateways as one: three Weir instances sharing a real
//! `redis-server` enforce one rate limit, one token budget and one answer
//! cache between them; when Redis stops, each route follows its policy
//! (fail closed, or a local limit) and service recovers by itself when
//! Redis returns.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::certs::TestCa;
use crate::common::redis::RedisServer;
use crate::common::{Scraped, TestGateway, client, echo_upstream, emulator, wait_for};
use serde_json::{Value, json};

mod secured;

const PLUGINS: &[(&str, &str)] = &[
    ("api-key-auth", "api-key-auth"),
    ("rate-limit", "rate-limit"),
    ("ai-anthropic", "ai-anthropic"),
];

/// A gateway config sharing state in `redis`: route `api` (`/api`, echo
/// upstream) behind a rate limit of `capacity` (almost no refill), route
/// `local` (`/local`) the same but falling back to a local limit while
/// Redis is away, and an AI route (`/v1`) with `ai_route` settings and
/// `budgets`.
fn config(
    redis: &str,
    upstream: SocketAddr,
    provider: SocketAddr,
    capacity: u32,
    ai_route: &str,
    budgets: &str,
) -> String {
    let limit = format!("config = {{ capacity = {capacity}, refill_per_second = 0.001, key = \"client-ip\" }}");
    format!(
        r#"
[state]
store = "{redis}"
# Generous for a busy test machine; a stopped Redis fails at once anyway.
timeout_ms = 2000

[[listeners]]
address = "127.0.0.1:0"

[admin]
address = "127.0.0.1:0"

[plugin.rate-limit]
kv = true

[upstreams.echo]
targets = ["{upstream}"]

[secrets.provider-key]
value = "sk-provider-secret"

[ai]
usage_db = "usage.db"
{budgets}

[[routes]]
name = "api"
path_prefix = "/api"
upstream = "echo"
[[routes.plugins]]
name = "rate-limit"
{limit}

[[routes]]
name = "local"
path_prefix = "/local"
upstream = "echo"
state_unavailable = "local"
[[routes.plugins]]
name = "rate-limit"
{limit}

[[routes]]
name = "ai"
path_prefix = "/v1"
[[routes.plugins]]
name = "api-key-auth"
config = {{ keys = {{ alice = "alice-key", bob = "bob-key" }} }}
[routes.ai]
{ai_route}
[[routes.ai.targets]]
name = "anthropic"
shim = "ai-anthropic"
base_url = "http://{provider}"
model = "claude-test"
alias = "chat"
key_secret = "provider-key"
response_timeout_ms = 5000
"#
    )
}

async fn three_gateways(config: &str) -> Vec<TestGateway> {
    let mut gateways = Vec::new();
    for _ in 0..3 {
        gateways.push(TestGateway::start(config, PLUGINS).await);
    }
    gateways
}

/// A client that gives up after 5 s: a request waiting on Redis longer
/// than that fails the test.
fn impatient() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

async fn chat(gw: &TestGateway, who: &str, body: Value) -> reqwest::Response {
    impatient()
        .post(gw.url("/v1/chat/completions"))
        .header("x-api-key", format!("{who}-key"))
        .json(&body)
        .send()
        .await
        .expect("chat request")
}

#[tokio::test]
async fn a_rate_limit_of_n_admits_exactly_n_across_three_gateways() {
    let redis = RedisServer::start().await;
    let upstream = echo_upstream("echo").await;
    let (_emu, provider) = emulator().await;
    let gateways = three_gateways(&config(&redis.url(), upstream, provider, 25, "", "")).await;
    let urls: Vec<String> = gateways.iter().map(|gw| gw.url("/api/hello")).collect();
    let mut tasks = Vec::new();
    for i in 0..90 {
        let url = urls[i % 3].clone();
        tasks.push(tokio::spawn(async move {
            let response = impatient().get(url).send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }));
    }
    let mut by_gateway = [[0u32; 2]; 3];
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await.unwrap() {
            (200, _) => by_gateway[i % 3][0] += 1,
            (429, _) => by_gateway[i % 3][1] += 1,
            (other, body) => panic!("unexpected status {other}: {body}"),
        }
    }
    let admitted: u32 = by_gateway.iter().map(|g| g[0]).sum();
    assert_eq!(admitted, 25, "admitted per gateway: {by_gateway:?}");
    // The bucket is shared, and now empty for all three: one more request
    // to each is refused, however many that gateway admitted itself (a
    // gateway counting on its own would still have room).
    for url in &urls {
        let response = impatient().get(url).send().await.unwrap();
        assert_eq!(response.status(), 429, "{url}: admitted per gateway {by_gateway:?}");
    }
    for gw in gateways {
        gw.stop().await;
    }
}

#[tokio::test]
async fn a_token_budget_holds_across_gateways_under_concurrent_streams() {
    let redis = RedisServer::start().await;
    let upstream = echo_upstream("echo").await;
    let (emu, provider) = emulator().await;
    // Each request reserves about 37 tokens (its body at four bytes a
    // token, plus 10 output tokens) and uses 7. Two fit in the budget of
    // 100 at once; each gateway counting alone would admit two each.
    let budget = "[ai.budgets.consumers.alice]\ntokens = 100\nperiod = \"day\"\n";
    let gateways = three_gateways(&config(&redis.url(), upstream, provider, 1000, "", budget)).await;
    // Every admitted request is held at the provider until all 30 are
    // decided: admitted (at the provider) or refused.
    emu.set_faults(Some("hold"));
    let refused = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..30 {
        let url = gateways[i % 3].url("/v1/chat/completions");
        let refused = refused.clone();
        tasks.push(tokio::spawn(async move {
            let response = client()
                .post(url)
                .header("x-api-key", "alice-key")
                .json(&json!({"model": "chat", "messages": [{"role": "user", "content": format!("budget test {i}")}], "stream": true, "max_tokens": 10}))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            if status != 200 {
                refused.fetch_add(1, Ordering::SeqCst);
            }
            (status, response.text().await.unwrap())
        }));
    }
    wait_for(
        "every request to be admitted or refused",
        Duration::from_secs(30),
        || async { (emu.count() + refused.load(Ordering::SeqCst) == 30).then_some(()) },
    )
    .await;
    emu.release();
    let mut admitted = 0;
    for task in tasks {
        let (status, text) = task.await.unwrap();
        match status {
            200 => admitted += 1,
            429 => assert!(text.contains("budget"), "{text}"),
            other => panic!("unexpected {other}: {text}"),
        }
    }
    assert!(
        (1..=2).contains(&admitted),
        "{admitted} admitted: the gateways did not share one budget"
    );
    let mut spent = 0;
    let (mut requests, mut served) = (0, 0);
    for gw in &gateways {
        let report = gw.admin_json("/usage?consumer=alice").await;
        requests += report["totals"]["requests"].as_u64().unwrap();
        served += report["rows"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["status"] == 200)
            .count() as u64;
        spent += report["totals"]["prompt_tokens"].as_u64().unwrap()
            + report["totals"]["completion_tokens"].as_u64().unwrap();
    }
    // Every request is a row in one ledger; the refused ones too.
    assert_eq!(requests, 30, "each request is in a ledger once");
    assert_eq!(served, admitted, "each admitted request is in a ledger once");
    assert!(spent <= 100, "spent {spent} of a 100-token budget");
    for gw in gateways {
        gw.stop().await;
    }
}

#[tokio::test]
async fn an_answer_cached_by_one_gateway_is_served_by_another() {
    let redis = RedisServer::start().await;
    let upstream = echo_upstream("echo").await;
    let (emu, provider) = emulator().await;
    let gateways = three_gateways(&config(
        &redis.url(),
        upstream,
        provider,
        1000,
        "cache = { ttl_secs = 60 }",
        "",
    ))
    .await;
    let body = json!({"model": "chat", "messages": [{"role": "user", "content": "cache me"}], "temperature": 0});
    let first = chat(&gateways[0], "alice", body.clone()).await;
    assert_eq!(first.headers()["x-weir-cache"], "miss");
    let first: Value = first.json().await.unwrap();
    for gw in &gateways[1..] {
        let again = chat(gw, "alice", body.clone()).await;
        assert_eq!(again.headers()["x-weir-cache"], "hit");
        assert_eq!(again.headers()["x-weir-target"], "anthropic");
        let again: Value = again.json().await.unwrap();
        assert_eq!(again["choices"], first["choices"]);
    }
    // Streamed from the third, replayed from what the first stored.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let replay = chat(&gateways[2], "alice", streamed).await;
    assert_eq!(replay.headers()["x-weir-cache"], "hit");
    assert!(replay.text().await.unwrap().ends_with("data: [DONE]\n\n"));
    assert_eq!(emu.count(), 1, "only the first request reached the provider");
    // Still scoped by consumer.
    let bob = chat(&gateways[1], "bob", body).await;
    assert_eq!(bob.headers()["x-weir-cache"], "miss");
    for gw in gateways {
        gw.stop().await;
    }
}

#[tokio::test]
async fn when_redis_stops_routes_follow_their_policy_and_recover_when_it_returns() {
    let mut redis = RedisServer::start().await;
    let upstream = echo_upstream("echo").await;
    let (_emu, provider) = emulator().await;
    let budget = "[ai.budgets.consumers.alice]\ntokens = 100000\n";
    let gw = TestGateway::start(&config(&redis.url(), upstream, provider, 3, "", budget), PLUGINS).await;
    let http = impatient();
    let get = |path: &str| {
        let request = http.get(gw.url(path));
        async move { request.send().await.expect("no request may hang") }
    };
    assert_eq!(get("/api/a").await.status(), 200);
    assert_eq!(get("/local/a").await.status(), 200);
    let hi = json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10});
    assert_eq!(chat(&gw, "alice", hi.clone()).await.status(), 200);
    let m = Scraped::from(&gw).await;
    assert_eq!(m.value("weir_state_store_up", &[]), 1.0);

    // Traffic runs while Redis goes away: every request is answered (none
    // hangs or breaks), first from Redis, then by the route's policy.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Result<u16, String>>::new()));
    let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let traffic = {
        let (seen, running, url, http) = (seen.clone(), running.clone(), gw.url("/api/traffic"), http.clone());
        tokio::spawn(async move {
            while running.load(std::sync::atomic::Ordering::Relaxed) {
                let answer = http.get(&url).send().await.map(|r| r.status().as_u16());
                seen.lock().unwrap().push(answer.map_err(|e| e.to_string()));
            }
        })
    };
    wait_for("traffic before the outage", Duration::from_secs(10), || async {
        (seen.lock().unwrap().len() >= 5).then_some(())
    })
    .await;
    redis.stop();
    wait_for("traffic to meet the outage", Duration::from_secs(10), || async {
        seen.lock().unwrap().iter().any(|s| s == &Ok(503)).then_some(())
    })
    .await;
    running.store(false, std::sync::atomic::Ordering::Relaxed);
    traffic.await.unwrap();
    for answer in seen.lock().unwrap().iter() {
        assert!(matches!(answer, Ok(200 | 429 | 503)), "{answer:?}");
    }
    // Fail closed: the rate limiter cannot count, so it refuses, naming why.
    let refused = get("/api/a").await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    let text = refused.text().await.unwrap();
    assert!(text.contains("rate limiter unavailable"), "{text}");
    assert!(
        text.contains(&format!("state store {} is unavailable", redis.url())),
        "{text}"
    );
    // Local: this gateway's own bucket of 3, counted from full.
    let statuses: Vec<u16> = {
        let mut statuses = Vec::new();
        for _ in 0..4 {
            statuses.push(get("/local/a").await.status().as_u16());
        }
        statuses
    };
    assert_eq!(statuses, [200, 200, 200, 429]);
    // A budget that cannot be checked refuses too (the AI route fails closed).
    let budget_refused = chat(&gw, "alice", hi.clone()).await;
    assert_eq!(budget_refused.status(), 503);
    let error: Value = budget_refused.json().await.unwrap();
    assert_eq!(error["error"]["code"], "budget_store_unavailable", "{error}");
    // The state is visible to operators.
    let state = gw.admin_json("/state").await;
    assert_eq!(state["store"], redis.url());
    assert_eq!(state["up"], false, "{state}");
    assert!(state["error"].as_str().is_some_and(|e| !e.is_empty()), "{state}");
    let m = Scraped::from(&gw).await;
    assert_eq!(m.value("weir_state_store_up", &[]), 0.0);
    assert_eq!(m.value("weir_state_outages_total", &[]), 1.0);
    assert!(m.value("weir_state_unavailable_operations_total", &[]) >= 5.0);

    // Redis returns (empty: it kept nothing); the gateway reconnects by
    // itself and the fail-closed route serves again.
    redis.resume().await;
    wait_for("the gateway to reconnect to Redis", Duration::from_secs(15), || async {
        (gw.admin_json("/state").await["up"] == true).then_some(())
    })
    .await;
    assert_eq!(get("/api/a").await.status(), 200);
    assert_eq!(chat(&gw, "alice", hi).await.status(), 200);
    let m = Scraped::from(&gw).await;
    assert_eq!(m.value("weir_state_store_up", &[]), 1.0);
    gw.stop().await;
}

#[tokio::test]
async fn kv_operations_mean_the_same_in_redis_as_in_memory() {
    use weir::config::{OnUnavailable, StateConfig};
    use weir::state::bucket::Bucket;
    use weir::state::{SharedState, StateError};

    let redis = RedisServer::start().await;
    let config = StateConfig {
        store: redis.url(),
        ..StateConfig::default()
    };
    let shared = SharedState::start(&config).await.unwrap();
    assert!(shared.status().unwrap().up);
    let memory = SharedState::memory();
    let p = OnUnavailable::FailClosed;
    let mut takes = Vec::new();
    for state in [&memory, &shared] {
        let v = |s: &str| s.as_bytes().to_vec();
        assert_eq!(state.get("p", "k", p).await.unwrap(), None);
        state.set("p", "k", v("v"), None, p).await.unwrap();
        assert_eq!(state.get("p", "k", p).await.unwrap(), Some(v("v")));
        // Keys are private to their plugin.
        assert_eq!(state.get("q", "k", p).await.unwrap(), None);
        assert!(
            !state
                .compare_and_swap("p", "k", Some(v("x")), v("y"), None, p)
                .await
                .unwrap()
        );
        assert!(
            state
                .compare_and_swap("p", "k", Some(v("v")), v("y"), None, p)
                .await
                .unwrap()
        );
        assert!(state.compare_and_swap("p", "new", None, v("1"), None, p).await.unwrap());
        assert!(!state.compare_and_swap("p", "new", None, v("2"), None, p).await.unwrap());
        assert_eq!(state.increment("p", "n", 5, Some(60_000), p).await.unwrap(), 5);
        assert_eq!(state.increment("p", "n", -2, None, p).await.unwrap(), 3);
        let not_integer = state.increment("p", "k", 1, None, p).await;
        assert!(
            matches!(&not_integer, Err(StateError::Invalid(m)) if m.contains("not an integer")),
            "{not_integer:?}"
        );
        state.set("p", "max", v(&i64::MAX.to_string()), None, p).await.unwrap();
        let overflow = state.increment("p", "max", 1, None, p).await;
        assert!(
            matches!(&overflow, Err(StateError::Invalid(m)) if m.contains("overflows")),
            "{overflow:?}"
        );
        assert!(state.delete("p", "k", p).await.unwrap());
        assert!(!state.delete("p", "k", p).await.unwrap());
        state.set("p", "short", v("v"), Some(30), p).await.unwrap();
        wait_for("a 30 ms key to expire", Duration::from_secs(5), || async {
            state.get("p", "short", p).await.unwrap().is_none().then_some(())
        })
        .await;
        let bucket = Bucket {
            capacity: 3,
            refill_per_second: 0.001,
        };
        let mut taken = Vec::new();
        for _ in 0..4 {
            let t = state.take_tokens("p", "bucket", bucket, 1, p).await.unwrap();
            taken.push((t.allowed, t.remaining, t.retry_after_secs, t.reset_secs));
        }
        takes.push(taken);
        let too_much = state.take_tokens("p", "bucket", bucket, 4, p).await;
        assert!(matches!(too_much, Err(StateError::Invalid(_))), "{too_much:?}");
    }
    // Same arithmetic in the Redis script as in memory: 3 allowed, then
    // refused until a token is back 1000 s later.
    assert_eq!(takes[0], takes[1]);
    assert_eq!(
        takes[0].iter().map(|t| (t.0, t.1)).collect::<Vec<_>>(),
        [(true, 2), (true, 1), (true, 0), (false, 0)]
    );
    assert_eq!(takes[0][3].2, 1000);
}
