//! Several gateways sharing one PostgreSQL usage store: the real gateways
//! in-process, the OpenAI shim in front of the provider emulator, and a
//! real PostgreSQL server (see `common/postgres.rs`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::common::certs::TestCa;
use crate::common::postgres::PostgresServer;
use crate::common::{TestGateway, client, wait_for};
use serde_json::{Value, json};

const PLUGINS: &[(&str, &str)] = &[("ai-openai", "ai-openai"), ("api-key-auth", "api-key-auth")];
const CONSUMERS: [&str; 3] = ["alice", "bob", "carol"];

/// A million tokens cost 1e6/1024, so a request's cost is its tokens / 1024:
/// exact in binary, so sums over any order are exact too.
const PRICE_PER_MILLION: f64 = 976.5625;

/// An AI route to the emulator behind api-key-auth, recording usage where
/// `usage` (lines of `[ai]`) says.
fn config(emulator: SocketAddr, usage: &str) -> String {
    format!(
        r#"
[[listeners]]
address = "127.0.0.1:0"

[admin]
address = "127.0.0.1:0"

[ai]
{usage}

[ai.prices.gpt-test]
input_per_million = {PRICE_PER_MILLION}
output_per_million = {PRICE_PER_MILLION}

[secrets.provider-key]
value = "sk-provider-secret"

[[routes]]
name = "ai"
path_prefix = "/v1"

[[routes.plugins]]
name = "api-key-auth"
config = {{ keys = {{ alice = "alice-key", bob = "bob-key", carol = "carol-key" }} }}

[routes.ai]
[[routes.ai.targets]]
name = "openai"
shim = "ai-openai"
base_url = "http://{emulator}"
model = "gpt-test"
key_secret = "provider-key"
response_timeout_ms = 5000
"#
    )
}

/// What one answered request used, as the client saw it.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Used {
    requests: u64,
    prompt_tokens: u64,
    completion_tokens: u64,
}

impl Used {
    fn add(&mut self, other: Used) {
        self.requests += other.requests;
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
    }

    fn cost(&self) -> f64 {
        (self.prompt_tokens + self.completion_tokens) as f64 * PRICE_PER_MILLION / 1e6
    }

    /// Whether `totals` (a `/usage` report's) says exactly this.
    fn check(&self, totals: &Value, what: &str) {
        assert_eq!(totals["requests"], self.requests, "{what}: {totals}");
        assert_eq!(totals["prompt_tokens"], self.prompt_tokens, "{what}: {totals}");
        assert_eq!(totals["completion_tokens"], self.completion_tokens, "{what}: {totals}");
        assert_eq!(totals["cost"].as_f64(), Some(self.cost()), "{what}: {totals}");
    }
}

/// Ask `gw` for a chat completion as `consumer`, whole or streamed, and
/// return the usage its answer reported.
async fn chat(gw: &TestGateway, consumer: &str, words: usize, stream: bool) -> Used {
    let text = vec!["word"; words].join(" ");
    let mut body = json!({"model": "gpt-test", "messages": [{"role": "user", "content": text}]});
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    let response = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-api-key", format!("{consumer}-key"))
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let answer = response.text().await.expect("body");
    let usage = if stream {
        let events: Vec<&str> = answer
            .split("\n\n")
            .filter_map(|event| event.strip_prefix("data: "))
            .collect();
        assert_eq!(events.last(), Some(&"[DONE]"), "{answer}");
        let chunk: Value = serde_json::from_str(events[events.len() - 2]).expect("usage chunk");
        chunk["usage"].clone()
    } else {
        serde_json::from_str::<Value>(&answer).expect("json")["usage"].clone()
    };
    let count = |field: &str| usage[field].as_u64().unwrap_or_else(|| panic!("no {field}: {answer}"));
    Used {
        requests: 1,
        prompt_tokens: count("prompt_tokens"),
        completion_tokens: count("completion_tokens"),
    }
}

async fn usage(gw: &TestGateway, query: &str) -> Value {
    gw.admin_json(&format!("/usage{query}")).await
}

#[allow(unsafe_code)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_gateways_sharing_postgres_report_the_exact_sum_of_what_each_served() {
    let server = PostgresServer::start().await;
    let url = server.create_database("usage").await;
    let (_, emulator) = crate::common::emulator().await;

    // The third gateway reads the URL from the environment.
    let var = "WEIR_TEST_SHARED_USAGE_DB";
    // SAFETY: only this test reads or writes this variable, and it is set
    // before the gateway that reads it starts. Other tests run beside it in
    // this binary; std's environment functions share one lock, and the
    // gateway reads the environment only through them.
    unsafe { std::env::set_var(var, &url) };
    let settings = [
        format!("usage_db = {url:?}\nusage_instance = \"gateway-0\""),
        format!("usage_db = {url:?}\nusage_instance = \"gateway-1\""),
        format!("usage_db_env = {var:?}\nusage_instance = \"gateway-2\""),
    ];
    let mut gateways = Vec::new();
    for usage in &settings {
        gateways.push(TestGateway::start(&config(emulator, usage), PLUGINS).await);
    }

    // 36 requests spread across the gateways and consumers, half streamed,
    // of different lengths, all at once.
    let requests = (0..36).map(|i| {
        let gw = &gateways[i % 3];
        let consumer = CONSUMERS[(i / 3) % 3];
        let stream = (i / 9) % 2 == 0;
        async move { (i % 3, consumer, chat(gw, consumer, 1 + i % 7, stream).await) }
    });
    let served = futures_util::future::join_all(requests).await;

    let mut total = Used::default();
    let mut per_consumer: BTreeMap<&str, Used> = BTreeMap::new();
    let mut per_gateway = [0u64; 3];
    for (gateway, consumer, used) in &served {
        total.add(*used);
        per_consumer.entry(consumer).or_default().add(*used);
        per_gateway[*gateway] += 1;
    }
    assert_eq!(per_gateway, [12, 12, 12]);

    // Each gateway writes its rows on its own schedule, just after the
    // answer ends: wait until all 36 are in the shared store.
    let report = wait_for("every gateway's rows in the store", Duration::from_secs(10), || async {
        let report = usage(&gateways[0], "?group_by=consumer").await;
        (report["totals"]["requests"] == json!(36)).then_some(report)
    })
    .await;
    total.check(&report["totals"], "totals on gateway 0");

    let groups = report["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 3, "{report}");
    let mut summed = Used::default();
    for group in groups {
        let consumer = group[0].as_str().expect("key");
        let totals = &group[1];
        per_consumer[consumer].check(totals, consumer);
        summed.add(Used {
            requests: totals["requests"].as_u64().unwrap(),
            prompt_tokens: totals["prompt_tokens"].as_u64().unwrap(),
            completion_tokens: totals["completion_tokens"].as_u64().unwrap(),
        });
    }
    assert_eq!(summed, total, "the groups add up to the totals");

    // Any gateway answers the same, and filters cover the other gateways' rows.
    for gw in &gateways[1..] {
        total.check(&usage(gw, "").await["totals"], "totals on another gateway");
    }
    let bob = usage(&gateways[2], "?consumer=bob&limit=1000").await;
    per_consumer["bob"].check(&bob["totals"], "bob");
    assert_eq!(bob["rows"].as_array().unwrap().len(), 12);
    let streamed = bob["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["streamed"] == true)
        .count();
    assert!(
        streamed > 0 && streamed < 12,
        "bob has streamed and whole requests: {bob}"
    );

    // Each row names the gateway that served it.
    let rows = server
        .client("usage")
        .await
        .query(
            "SELECT instance, COUNT(*) FROM usage GROUP BY instance ORDER BY instance",
            &[],
        )
        .await
        .expect("count per instance");
    let per_instance: Vec<(String, i64)> = rows.iter().map(|row| (row.get(0), row.get(1))).collect();
    assert_eq!(
        per_instance,
        [
            ("gateway-0".to_owned(), 12),
            ("gateway-1".to_owned(), 12),
            ("gateway-2".to_owned(), 12)
        ]
    );

    for gw in gateways {
        gw.stop().await;
    }
}

#[tokio::test]
async fn a_gateway_with_an_unreachable_postgres_fails_at_startup_naming_the_field_without_the_password() {
    let (_, emulator) = crate::common::emulator().await;
    let port = crate::common::dead_address().await.port();
    let url = format!("postgres://weir:topsecret@127.0.0.1:{port}/weir");
    let dir = TestGateway::dir_with_plugins(PLUGINS);
    // Fails rather than waits: the start-up ends with an error (the bound
    // only catches a start-up that would retry for ever; it includes
    // compiling the plugins on a loaded machine).
    let error = tokio::time::timeout(
        Duration::from_secs(60),
        crate::common::start_in(dir.path(), &config(emulator, &format!("usage_db = {url:?}"))),
    )
    .await
    .expect("start-up ends instead of waiting for the store")
    .err()
    .expect("a gateway started without its usage store");
    assert!(
        error.contains(&format!(
            "ai.usage_db: usage ledger postgres://weir:***@127.0.0.1:{port}/weir"
        )),
        "{error}"
    );
    assert!(error.contains("refused"), "{error}");
    assert!(!error.contains("topsecret"), "{error}");
}

/// A PostgreSQL server that admits TCP logins only over TLS, with a
/// certificate from its own CA, and a `usage` database on it.
async fn tls_postgres() -> (PostgresServer, TestCa, String) {
    let ca = TestCa::new("weir test postgres CA");
    let cert = ca.server("postgres");
    let server = PostgresServer::start_with_tls(&cert.cert, &cert.key).await;
    let url = server.create_database("usage").await;
    (server, ca, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_rows_land_in_postgres_over_tls_and_a_plaintext_client_is_refused() {
    let (server, ca, url) = tls_postgres().await;
    // The server refuses a login without TLS: what lands there came over TLS.
    let plain = tokio_postgres::connect(&format!("{url}?sslmode=disable"), tokio_postgres::NoTls)
        .await
        .err()
        .expect("a plaintext login was admitted");
    let plain = plain.as_db_error().map(|e| e.message().to_owned()).unwrap_or_default();
    assert!(plain.contains("no encryption"), "{plain}");

    let (_, emulator) = crate::common::emulator().await;
    // verify-full against the private CA; `require` without one encrypts
    // without checking the certificate, as libpq does.
    let settings = [
        format!(
            "usage_db = \"{url}?sslmode=verify-full\"\nusage_db_ca = \"{}\"\nusage_instance = \"verified\"",
            ca.ca().display()
        ),
        format!("usage_db = \"{url}?sslmode=require\"\nusage_instance = \"encrypted\""),
    ];
    let mut gateways = Vec::new();
    for usage in &settings {
        gateways.push(TestGateway::start(&config(emulator, usage), PLUGINS).await);
    }
    for i in 0..6 {
        chat(&gateways[i % 2], CONSUMERS[i % 3], 3, i % 3 == 0).await;
    }
    wait_for("six rows in the store", Duration::from_secs(10), || async {
        (usage(&gateways[0], "").await["totals"]["requests"] == json!(6)).then_some(())
    })
    .await;
    let client = server.client("usage").await;
    let rows = client
        .query(
            "SELECT instance, COUNT(*) FROM usage GROUP BY instance ORDER BY instance",
            &[],
        )
        .await
        .unwrap();
    let per_instance: Vec<(String, i64)> = rows.iter().map(|row| (row.get(0), row.get(1))).collect();
    assert_eq!(per_instance, [("encrypted".to_owned(), 3), ("verified".to_owned(), 3)]);
    // And the server says the gateways' sessions are encrypted.
    let row = client
        .query_one(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.application_name = 'weir'",
            &[],
        )
        .await
        .unwrap();
    let (sessions, encrypted): (i64, i64) = (row.get(0), row.get(1));
    assert!(
        sessions >= 2 && encrypted == sessions,
        "{encrypted} of {sessions} sessions over TLS"
    );
    for gw in gateways {
        gw.stop().await;
    }
}

#[tokio::test]
async fn an_untrusted_ca_or_a_wrong_password_over_tls_fails_at_startup_naming_the_setting_not_the_secret() {
    let (server, ca, url) = tls_postgres().await;
    let (_, emulator) = crate::common::emulator().await;
    let other = TestCa::new("some other CA");
    let wrong = url.replace(PostgresServer::PASSWORD, "wrong-pw-5521");
    for (usage, says) in [
        (
            format!(
                "usage_db = \"{url}?sslmode=verify-full\"\nusage_db_ca = \"{}\"",
                other.ca().display()
            ),
            "not trusted by the CA in ai.usage_db_ca",
        ),
        (
            format!("usage_db = \"{url}?sslmode=verify-ca\""),
            "set ai.usage_db_ca for a private CA",
        ),
        (
            format!(
                "usage_db = \"{wrong}?sslmode=verify-full\"\nusage_db_ca = \"{}\"",
                ca.ca().display()
            ),
            "password authentication failed",
        ),
    ] {
        let dir = TestGateway::dir_with_plugins(PLUGINS);
        let error = crate::common::start_in(dir.path(), &config(emulator, &usage))
            .await
            .err()
            .unwrap_or_else(|| panic!("a gateway started with {usage}"));
        assert!(
            error.contains("ai.usage_db: usage ledger postgres://weir:***@127.0.0.1"),
            "{error}"
        );
        assert!(error.contains(says), "{error}");
        assert!(
            !error.contains(PostgresServer::PASSWORD) && !error.contains("wrong-pw-5521"),
            "{error}"
        );
    }
    drop(server);
}
