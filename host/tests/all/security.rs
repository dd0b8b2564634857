//! The security plugins in a running gateway: what each lets through and
//! what it refuses, with the requests an attacker would send.

use crate::common::*;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};

const PLUGINS: &[(&str, &str)] = &[
    ("jwt-auth", "jwt-auth"),
    ("ip-filter", "ip-filter"),
    ("cors", "cors"),
    ("request-validator", "request-validator"),
];

const SECRET: &str = "9f2c1e7a4b8d0f3e6a5c2b1d8e7f4a3c";

fn config(upstream: std::net::SocketAddr) -> String {
    format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [upstreams.echo]
        targets = ["{upstream}"]

        [[routes]]
        name = "jwt"
        path_prefix = "/jwt"
        upstream = "echo"
        [[routes.plugins]]
        name = "jwt-auth"
        config = {{ keys = [{{ alg = "HS256", secret = "{SECRET}" }}], audiences = ["weir-tests"], claims_to_headers = {{ x-user-email = "email" }} }}

        [[routes]]
        name = "office-only"
        path_prefix = "/office"
        upstream = "echo"
        [[routes.plugins]]
        name = "ip-filter"
        config = {{ allow = ["10.0.0.0/8"] }}

        [[routes]]
        name = "behind-proxy"
        path_prefix = "/proxied"
        upstream = "echo"
        [[routes.plugins]]
        name = "ip-filter"
        config = {{ allow = ["10.0.0.0/8"], trusted_proxies = ["127.0.0.0/8"] }}

        [[routes]]
        name = "api"
        path_prefix = "/api"
        upstream = "echo"
        [[routes.plugins]]
        name = "cors"
        config = {{ origins = ["https://app.example.com"], methods = ["GET", "POST"], headers = ["content-type"] }}
        [[routes.plugins]]
        name = "request-validator"
        [routes.plugins.config]
        methods = ["GET", "POST", "OPTIONS"]
        [[routes.plugins.config.rules]]
        path_prefix = "/api/orders"
        methods = ["POST"]
        body_schema = {{ type = "object", required = ["sku", "quantity"], properties = {{ sku = {{ type = "string" }}, quantity = {{ type = "integer", minimum = 1 }} }} }}
        "#
    )
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// A token signed with `secret` by the HMAC its header's `alg` names, so
/// that a token naming another algorithm is validly signed for it.
fn token(header: Value, claims: Value, secret: &str) -> String {
    let signing_input = format!(
        "{}.{}",
        base64url(header.to_string().as_bytes()),
        base64url(claims.to_string().as_bytes())
    );
    let signature = match header["alg"].as_str() {
        Some("HS512") => {
            let mut mac = Hmac::<sha2::Sha512>::new_from_slice(secret.as_bytes()).unwrap();
            mac.update(signing_input.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        _ => {
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
            mac.update(signing_input.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
    };
    format!("{signing_input}.{}", base64url(&signature))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn jwt_auth_admits_good_tokens_and_refuses_expired_early_foreign_and_unsigned_ones() {
    let upstream = echo_upstream("echo").await;
    let gw = TestGateway::start(&config(upstream), PLUGINS).await;
    let hs256 = json!({"alg": "HS256", "typ": "JWT"});
    let claims = |extra: Value| {
        let mut c = json!({"sub": "alice", "aud": "weir-tests", "email": "alice@example.com", "exp": now() + 600});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let call = |token: String| {
        client()
            .get(gw.url("/jwt/x"))
            .header("authorization", format!("Bearer {token}"))
            .send()
    };

    let response = call(token(hs256.clone(), claims(json!({})), SECRET)).await.unwrap();
    assert_eq!(response.status(), 200);
    let seen = echoed(response).await;
    assert_eq!(seen["headers"]["x-user-email"], "alice@example.com");
    assert!(
        seen["headers"].get("authorization").is_none(),
        "the token went upstream"
    );

    let refused = [
        (
            "expired",
            token(hs256.clone(), claims(json!({"exp": now() - 3600})), SECRET),
        ),
        (
            "not yet valid",
            token(hs256.clone(), claims(json!({"nbf": now() + 3600})), SECRET),
        ),
        (
            "wrong audience",
            token(hs256.clone(), claims(json!({"aud": "someone-else"})), SECRET),
        ),
        (
            "wrong key",
            token(hs256.clone(), claims(json!({})), "another-secret-of-32-bytes-length"),
        ),
        (
            // Signed with the route's secret, by the algorithm it names:
            // only the key's algorithm (HS256) refuses it.
            "wrong algorithm",
            token(json!({"alg": "HS512"}), claims(json!({})), SECRET),
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                base64url(br#"{"alg":"none"}"#),
                base64url(claims(json!({})).to_string().as_bytes())
            ),
        ),
        ("garbage", "not.a.token".to_string()),
    ];
    for (what, token) in refused {
        let response = call(token).await.unwrap();
        assert_eq!(response.status(), 401, "{what}");
        assert!(
            response.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer"),
            "{what}"
        );
    }
    let response = client().get(gw.url("/jwt/x")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    gw.stop().await;
}

#[tokio::test]
async fn ip_filter_ignores_a_spoofed_forwarded_for_from_an_untrusted_client() {
    let upstream = echo_upstream("echo").await;
    let gw = TestGateway::start(&config(upstream), PLUGINS).await;
    // The client is 127.0.0.1, outside the allowed range; claiming to
    // forward for 10.1.2.3 changes nothing when it is not a trusted proxy.
    for spoof in [None, Some("10.1.2.3")] {
        let mut request = client().get(gw.url("/office/x"));
        if let Some(ip) = spoof {
            request = request.header("x-forwarded-for", ip);
        }
        assert_eq!(request.send().await.unwrap().status(), 403, "{spoof:?}");
    }
    // Behind a trusted proxy (loopback here), the forwarded client counts.
    let response = client()
        .get(gw.url("/proxied/x"))
        .header("x-forwarded-for", "10.1.2.3")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = client()
        .get(gw.url("/proxied/x"))
        .header("x-forwarded-for", "192.0.2.7")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    gw.stop().await;
}

#[tokio::test]
async fn cors_answers_preflights_at_the_gateway_and_the_validator_names_what_is_wrong() {
    let upstream = echo_upstream("echo").await;
    let gw = TestGateway::start(&config(upstream), PLUGINS).await;
    let preflight = |origin: &str, method: &str| {
        client()
            .request(reqwest::Method::OPTIONS, gw.url("/api/orders"))
            .header("origin", origin)
            .header("access-control-request-method", method)
            .send()
    };
    let response = preflight("https://app.example.com", "POST").await.unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(
        preflight("https://evil.example.net", "POST").await.unwrap().status(),
        403
    );
    assert_eq!(
        preflight("https://app.example.com", "DELETE").await.unwrap().status(),
        403
    );

    let order = |body: Value| {
        client()
            .post(gw.url("/api/orders"))
            .header("origin", "https://app.example.com")
            .json(&body)
            .send()
    };
    let response = order(json!({"sku": "A-1", "quantity": 2})).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let response = order(json!({"sku": "A-1", "quantity": 0})).await.unwrap();
    assert_eq!(response.status(), 400);
    let text = response.text().await.unwrap();
    assert!(text.contains("quantity"), "{text}");
    let response = client().delete(gw.url("/api/orders")).send().await.unwrap();
    assert_eq!(response.status(), 405);
    gw.stop().await;
}
