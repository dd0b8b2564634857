//! Redis over TLS with a password: shared limits over `rediss://`, and a wrong password or an
//! untrusted CA reported by its setting, never by its secret.

use super::*;

/// The ACL user and password of the TLS Redis.
const REDIS_USER: &str = "weir-gw";

const REDIS_PASSWORD: &str = "redis-pw-7f3a9c";

/// `config` for a store at `url`, with `extra` lines added to `[state]`.
fn config_with_state(url: &str, extra: &str, upstream: SocketAddr, provider: SocketAddr, capacity: u32) -> String {
    config(url, upstream, provider, capacity, "", "").replacen(
        "timeout_ms = 2000",
        &format!("timeout_ms = 2000\n{extra}"),
        1,
    )
}

/// A TLS-only Redis with one ACL user, its CA, and a file holding the
/// user's password.
async fn tls_redis() -> (RedisServer, TestCa, std::path::PathBuf) {
    let ca = TestCa::new("weir test redis CA");
    let server = ca.server("redis");
    let redis = RedisServer::start_tls(&server.cert, &server.key, &ca.ca(), REDIS_USER, REDIS_PASSWORD).await;
    let password_file = ca.dir().join("redis-password");
    std::fs::write(&password_file, format!("{REDIS_PASSWORD}\n")).unwrap();
    (redis, ca, password_file)
}

/// What a plaintext client hears from `port`: nothing a Redis would say.
async fn plaintext_answer(port: u16) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let _ = stream.write_all(b"PING\r\n").await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    answer
}

#[tokio::test]
async fn a_rate_limit_shared_over_rediss_with_a_password_admits_exactly_n_across_two_gateways() {
    let (redis, ca, password_file) = tls_redis().await;
    // The server speaks only TLS: a plaintext PING gets no answer.
    let heard = plaintext_answer(redis.port()).await;
    assert!(!heard.starts_with(b"+PONG") && !heard.starts_with(b"-"), "{heard:?}");

    let upstream = echo_upstream("echo").await;
    let (_emu, provider) = emulator().await;
    // One gateway reads the password from a file, the other from the URL.
    let from_file = format!(
        "ca = \"{}\"\nusername = \"{REDIS_USER}\"\npassword_file = \"{}\"",
        ca.ca().display(),
        password_file.display()
    );
    let in_url = redis
        .url()
        .replacen("rediss://", &format!("rediss://{REDIS_USER}:{REDIS_PASSWORD}@"), 1);
    let gateways = [
        TestGateway::start(
            &config_with_state(&redis.url(), &from_file, upstream, provider, 15),
            PLUGINS,
        )
        .await,
        TestGateway::start(
            &config_with_state(
                &in_url,
                &format!("ca = \"{}\"", ca.ca().display()),
                upstream,
                provider,
                15,
            ),
            PLUGINS,
        )
        .await,
    ];
    for gw in &gateways {
        let state = gw.admin_json("/state").await;
        assert_eq!(state["up"], true, "{state}");
        let shown = state["store"].as_str().unwrap();
        assert!(shown.starts_with("rediss://"), "{state}");
        assert!(!shown.contains(REDIS_PASSWORD), "{state}");
    }
    assert!(
        gateways[1].admin_json("/state").await["store"]
            .as_str()
            .unwrap()
            .contains(":***@")
    );

    let mut tasks = Vec::new();
    for i in 0..40 {
        let url = gateways[i % 2].url("/api/hello");
        tasks.push(tokio::spawn(async move {
            impatient().get(url).send().await.unwrap().status().as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    let admitted = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((admitted, limited), (15, 25), "{statuses:?}");
    for gw in gateways {
        gw.stop().await;
    }
}

#[tokio::test]
async fn a_wrong_redis_password_or_an_untrusted_ca_is_reported_by_setting_never_by_secret() {
    let (redis, ca, _password_file) = tls_redis().await;
    let upstream = echo_upstream("echo").await;
    let (_emu, provider) = emulator().await;
    let wrong_file = ca.dir().join("wrong-password");
    std::fs::write(&wrong_file, "not-the-password-41\n").unwrap();
    let other_ca = TestCa::new("some other CA");
    for (extra, names, says) in [
        (
            format!(
                "ca = \"{}\"\nusername = \"{REDIS_USER}\"\npassword_file = \"{}\"",
                ca.ca().display(),
                wrong_file.display()
            ),
            "state.password_file",
            "authentication failed",
        ),
        (
            format!(
                "ca = \"{}\"\nusername = \"{REDIS_USER}\"\npassword_file = \"{}\"",
                other_ca.ca().display(),
                _password_file.display()
            ),
            "state.ca",
            "certificate",
        ),
    ] {
        let gw = TestGateway::start(&config_with_state(&redis.url(), &extra, upstream, provider, 5), PLUGINS).await;
        let state = gw.admin_json("/state").await;
        assert_eq!(state["up"], false, "{state}");
        assert_eq!(state["outages"], 1, "down since start-up is an outage: {state}");
        let error = state["error"].as_str().unwrap_or_default();
        assert!(error.contains(names) && error.contains(says), "{error}");
        assert!(
            !error.contains(REDIS_PASSWORD) && !error.contains("not-the-password-41"),
            "{error}"
        );
        // Fail closed: the limiter cannot count, so it refuses.
        let response = impatient().get(gw.url("/api/x")).send().await.unwrap();
        assert_eq!(response.status(), 503);
        let body = response.text().await.unwrap();
        assert!(
            !body.contains(REDIS_PASSWORD) && !body.contains("not-the-password-41"),
            "{body}"
        );
        gw.stop().await;
    }
}
