//! The admin API: plugins and routes behind a token, reloads counted, foreign hosts and
//! cross-site state changes refused.

use super::*;
use weir::admin_api::{ErrorBody, PluginList, RouteList};

/// `GET path` on the admin API with the tests' admin token, read as JSON.
async fn admin_json<T: serde::de::DeserializeOwned>(http: &reqwest::Client, gw: &TestGateway, path: &str) -> T {
    http.get(gw.admin_url(path))
        .bearer_auth("admin-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn admin_api_lists_plugins_and_routes_behind_a_token() {
    let upstream = echo_upstream("echo").await;
    let config = format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [admin]
        address = "127.0.0.1:0"
        token = "admin-token"
        [upstreams.echo]
        targets = ["{upstream}"]
        [[routes]]
        name = "api"
        upstream = "echo"
        [[routes.plugins]]
        name = "headers"
        "#
    );
    let gw = TestGateway::start(&config, &[("headers", "headers")]).await;
    let http = client();
    assert_eq!(http.get(gw.admin_url("/plugins")).send().await.unwrap().status(), 401);
    let plugins: PluginList = admin_json(&http, &gw, "/plugins").await;
    let plugin = &plugins.plugins[0].status;
    assert_eq!(plugin.name, "headers");
    assert_eq!(plugin.version.as_ref().unwrap().len(), 64);
    assert_eq!(plugin.routes[0], "api");
    let routes: RouteList = admin_json(&http, &gw, "/routes").await;
    assert_eq!(routes.routes[0].plugins[0], "headers");
    gw.stop().await;
}

/// A plugin whose imports all answer at once is called directly; one that
/// imports outbound HTTP (which waits on the network) is called on a
/// fiber. Both serve, and the admin API says which is which.
#[tokio::test]
async fn plugins_that_cannot_wait_are_called_directly_and_the_rest_on_a_fiber() {
    let upstream = echo_upstream("echo").await;
    let config = format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [admin]
        address = "127.0.0.1:0"
        token = "admin-token"
        [plugin.fetcher]
        kv = true
        outbound_hosts = ["{upstream}"]
        deadline_ms = 50
        [upstreams.echo]
        targets = ["{upstream}"]
        [[routes]]
        name = "direct"
        host = "direct.test"
        upstream = "echo"
        [[routes.plugins]]
        name = "auth"
        config = {{ keys = {{ alice = "k1" }} }}
        [[routes]]
        name = "fiber"
        host = "fiber.test"
        upstream = "echo"
        [[routes.plugins]]
        name = "fetcher"
        "#
    );
    let gw = TestGateway::start(&config, &[("auth", "api-key-auth"), ("fetcher", "guest-echo-config")]).await;
    let http = client();
    let plugins: PluginList = admin_json(&http, &gw, "/plugins").await;
    let calls = |name: &str| {
        let entry = plugins.plugins.iter().find(|p| p.status.name == name).unwrap();
        entry.limits.as_ref().unwrap().calls.clone()
    };
    assert_eq!(calls("auth"), "direct");
    assert_eq!(calls("fetcher"), "fiber");

    let direct = http.get(gw.url("/x")).header("host", "direct.test");
    assert_eq!(direct.try_clone().unwrap().send().await.unwrap().status(), 401);
    let response = direct.header("x-api-key", "k1").send().await.unwrap();
    assert_eq!(response.status(), 200);
    let fetched = http
        .get(gw.url(&format!("/fetch?url=http://{upstream}/hello")))
        .header("host", "fiber.test")
        .send()
        .await
        .unwrap();
    assert_eq!(fetched.status(), 200);
    assert!(fetched.text().await.unwrap().contains("\"/hello\""));
    // kv answers on the fiber path too.
    let counted = http
        .get(gw.url("/kv"))
        .header("host", "fiber.test")
        .send()
        .await
        .unwrap();
    assert_eq!(counted.text().await.unwrap(), "1");
    // The deadline holds on a fiber: a busy call ends as 504 (the direct
    // path's deadline is in faults.rs).
    let spun = http
        .get(gw.url("/spin"))
        .header("host", "fiber.test")
        .send()
        .await
        .unwrap();
    assert_eq!(spun.status(), 504);
    assert_eq!(spun.headers()["x-weir-error"], "plugin-deadline");
    gw.stop().await;
}

/// Config reloads the admin API has counted (ok and failed).
async fn config_reloads(http: &reqwest::Client, admin: &str) -> f64 {
    let text = http
        .get(format!("{admin}/metrics"))
        .bearer_auth("admin-token")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == "weir_config_reloads_total")
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[tokio::test]
async fn admin_api_refuses_foreign_hosts_and_cross_site_state_changes() {
    let upstream = echo_upstream("echo").await;
    for token in [None, Some("admin-token")] {
        let config = format!(
            r#"
            [[listeners]]
            address = "127.0.0.1:0"
            [admin]
            address = "127.0.0.1:0"
            allowed_hosts = ["weir-admin.test"]
            {}
            [upstreams.echo]
            targets = ["{upstream}"]
            [[routes]]
            name = "api"
            upstream = "echo"
            "#,
            token.map(|t| format!("token = {t:?}")).unwrap_or_default()
        );
        let gw = TestGateway::start(&config, &[]).await;
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let admin = gw.admin_url("");
        let port = gw.running.as_ref().unwrap().admin.unwrap().port();
        let with_token = |request: reqwest::RequestBuilder| match token {
            Some(t) => request.bearer_auth(t),
            None => request,
        };
        let case = format!("token {token:?}");

        // DNS rebinding: a page whose name now points at 127.0.0.1 sends its
        // own name as Host. Every endpoint refuses it, naming the host.
        for host in ["attacker.example".to_string(), format!("attacker.example:{port}")] {
            for path in ["/", "/plugins", "/routes", "/metrics", "/usage", "/state", "/healthz"] {
                let response = with_token(http.get(format!("{admin}{path}")).header("host", &host))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 421, "{case}: {host} {path}");
                let body: ErrorBody = response.json().await.unwrap();
                assert!(
                    body.error.contains(&format!("host {host:?}")),
                    "{case}: names the host: {body:?}"
                );
            }
        }
        // The names and addresses of this host answer, with or without port.
        for host in [
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            "localhost".to_string(),
            format!("[::1]:{port}"),
            "127.0.0.2".to_string(),
            format!("weir-admin.test:{port}"),
        ] {
            let response = with_token(http.get(format!("{admin}/plugins")).header("host", &host))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{case}: {host}");
        }

        // A cross-site "simple" POST (no preflight) does not reload.
        let reloads = config_reloads(&http, &admin).await;
        let foreign = [
            vec![("origin", "http://attacker.example".to_string())],
            vec![("origin", "null".to_string())],
            vec![("origin", "http://127.0.0.1:1".to_string())],
            vec![("sec-fetch-site", "cross-site".to_string())],
        ];
        for headers in &foreign {
            let mut request = with_token(http.post(format!("{admin}/reload")))
                .header("content-type", "text/plain")
                .body("x");
            for (name, value) in headers {
                request = request.header(*name, value);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 403, "{case}: {headers:?}");
            let body: ErrorBody = response.json().await.unwrap();
            assert!(body.error.starts_with("POST from origin"), "{case}: {body:?}");
        }
        // Nor does it on an endpoint that does not take POST, or with the
        // dashboard's session cookie.
        let response = with_token(http.post(format!("{admin}/plugins")))
            .header("origin", "http://attacker.example")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{case}");
        if let Some(token) = token {
            let login = http.get(format!("{admin}/?token={token}")).send().await.unwrap();
            assert_eq!(login.status(), 303);
            let cookie = login.headers()["set-cookie"].to_str().unwrap().to_string();
            assert!(
                cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
                "{cookie}"
            );
            let session = cookie.split(';').next().unwrap().to_string();
            let response = http
                .post(format!("{admin}/reload"))
                .header("cookie", &session)
                .header("origin", "http://attacker.example")
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 403, "{case}: cookie");
            let page = http
                .get(format!("{admin}/"))
                .header("cookie", &session)
                .send()
                .await
                .unwrap();
            assert_eq!(page.status(), 200, "{case}: the cookie still opens the dashboard");
        }
        assert_eq!(config_reloads(&http, &admin).await, reloads, "{case}: nothing reloaded");

        // The admin API's own page, and tools that send no Origin, may.
        for origin in [Some(format!("http://127.0.0.1:{port}")), None] {
            let mut request = with_token(http.post(format!("{admin}/reload")));
            if let Some(origin) = &origin {
                request = request.header("origin", origin);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200, "{case}: {origin:?}");
        }
        assert_eq!(config_reloads(&http, &admin).await, reloads + 2.0, "{case}");
        gw.stop().await;
    }
}
