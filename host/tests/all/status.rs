//! `weir status`: the built binary, run against a gateway with an admin
//! token, names its routes, targets, plugins, the plugin's load error and
//! the latest request error; and fails clearly when it cannot get in.

use std::time::Duration;

use crate::common::*;
use weir::admin_api::{DashboardData, PluginList};

const TOKEN: &str = "status-admin-token";

async fn start() -> TestGateway {
    api_and_faulty_gateway(Some(TOKEN)).await
}

/// Run `weir status` with `args` (and `WEIR_ADMIN_TOKEN` if given); its
/// exit status, stdout and stderr.
async fn weir_status(args: Vec<String>, env_token: Option<&str>) -> (bool, String, String) {
    let env_token = env_token.map(str::to_string);
    tokio::task::spawn_blocking(move || {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_weir"));
        command.arg("status").args(args).env_remove("WEIR_ADMIN_TOKEN");
        if let Some(token) = env_token {
            command.env("WEIR_ADMIN_TOKEN", token);
        }
        let output = command.output().expect("run weir status");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_names_routes_plugins_the_load_error_and_the_last_request_error() {
    let gw = start().await;
    let http = client();
    for _ in 0..3 {
        let ok = http
            .get(gw.url("/api/items"))
            .header("x-api-key", "alice-key")
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
    }
    assert_eq!(http.get(gw.url("/faulty/trap")).send().await.unwrap().status(), 500);

    // A new version of the auth plugin that does not load.
    let scratch = tempfile::tempdir().unwrap();
    let garbage = scratch.path().join("garbage.wasm");
    std::fs::write(&garbage, b"not a component").unwrap();
    replace_by_rename(&garbage, &gw.dir.path().join("plugins/api-key-auth.wasm"));
    let admin = gw.admin_url("");
    wait_for("the load error in the admin API", Duration::from_secs(20), || async {
        let plugins: PluginList = http
            .get(format!("{admin}/plugins"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        plugins.get("api-key-auth")?.status.last_error.is_some().then_some(())
    })
    .await;

    // Each request is recorded as its response ends: wait for all four.
    wait_for("four requests recorded", Duration::from_secs(10), || async {
        let data: DashboardData = http
            .get(format!("{admin}/dashboard/data?minutes=1"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (data.totals.requests == 4).then_some(())
    })
    .await;

    let (ok, out, err) = weir_status(
        vec!["--admin".into(), admin.clone(), "--token".into(), TOKEN.into()],
        None,
    )
    .await;
    assert!(ok, "weir status failed: {err}\n{out}");
    println!("{out}");
    assert!(out.contains(&format!("weir at {admin}: up")), "{out}");
    assert!(out.contains("api → upstream echo"), "{out}");
    assert!(out.contains("faulty → upstream echo"), "{out}");
    assert!(out.contains("circuit closed"), "{out}");
    assert!(out.contains("api-key-auth  loaded"), "{out}");
    assert!(out.contains("trap  loaded"), "{out}");
    assert!(
        out.contains("    grants: kv (config)"),
        "the trap plugin's grant: {out}"
    );
    assert!(out.contains("    grants: none"), "api-key-auth has none: {out}");
    assert!(out.contains("LAST ERROR"), "{out}");
    assert!(out.contains("api-key-auth.wasm"), "the error names the file: {out}");
    assert!(out.contains("500 plugin-trap  GET /faulty/trap  route faulty"), "{out}");
    assert!(out.contains("last minute:"), "{out}");
    assert!(out.contains("(1 of 4)"), "one error in four requests: {out}");

    // The token from the environment works too.
    let (ok, out, err) = weir_status(vec!["--admin".into(), admin.clone()], Some(TOKEN)).await;
    assert!(ok && out.contains("api-key-auth"), "{err}\n{out}");

    // A wrong token, and none: refused, clearly.
    let (ok, _, err) = weir_status(
        vec!["--admin".into(), admin.clone(), "--token".into(), "wrong".into()],
        None,
    )
    .await;
    assert!(!ok);
    assert!(err.contains("refused the token"), "{err}");
    let (ok, _, err) = weir_status(vec!["--admin".into(), admin.clone()], None).await;
    assert!(!ok);
    assert!(
        err.contains("needs a token") && err.contains("WEIR_ADMIN_TOKEN"),
        "{err}"
    );
    gw.stop().await;

    // Nothing listening: a clear message, not a hang.
    let dead = dead_address().await;
    let (ok, _, err) = weir_status(vec!["--admin".into(), format!("http://{dead}")], None).await;
    assert!(!ok);
    assert!(err.contains("cannot reach the admin API"), "{err}");
}
