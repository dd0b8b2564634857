//! Plugins in every supported language. The same request-signature plugin
//! is written in Rust, JavaScript, Python and C under `examples/plugins/`:
//! each is built with `weir plugin build`, all four serve one gateway, and
//! they must behave alike. `weir plugin new` must give, in each language, a
//! project that builds and loads as generated.
//!
//! These builds need each language's tools (`make setup` installs them);
//! a missing tool fails the test with the tool's name and install command.

use std::path::{Path, PathBuf};

use crate::common::*;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use weir::toolchain::Lang;

const LANGS: [Lang; 4] = [Lang::Rust, Lang::Js, Lang::Python, Lang::C];
const KEY: &str = "test-key";

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/plugins")
}

fn sign(method: &str, path: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(KEY.as_bytes()).unwrap();
    mac.update(format!("{method}\n{path}\n{body}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// A gateway config with one route per plugin name, `/NAME...` to `NAME`.
fn config(upstream: std::net::SocketAddr, routes: &[(String, String)], secret: bool) -> String {
    // The compile cache `weir plugin build` filled: each plugin compiles once.
    let cache = weir::plugins::engine::CompileCache::default_dir().expect("a home directory");
    let mut config = format!(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\n[plugins]\ndir = \"plugins\"\ncache_dir = {:?}\n\
         [upstreams.echo]\ntargets = [\"{upstream}\"]\n",
        cache.display().to_string()
    );
    if secret {
        config.push_str(&format!("[secrets.signing-key]\nvalue = \"{KEY}\"\n"));
    }
    for (name, plugin_config) in routes {
        config.push_str(&format!("[plugin.{name}]\n"));
        if secret {
            config.push_str("secrets = [\"signing-key\"]\n");
        }
        config.push_str(&format!(
            "[[routes]]\nname = \"{name}\"\npath_prefix = \"/{name}\"\nupstream = \"echo\"\n\
             plugins = [{{ name = \"{name}\", config = {plugin_config} }}]\n"
        ));
    }
    config
}

/// A gateway in `dir` (its plugins already in `dir/plugins`) in front of
/// an echo upstream.
async fn start_gateway(dir: tempfile::TempDir, routes: &[(String, String)], secret: bool) -> TestGateway {
    let upstream = echo_upstream("echo").await;
    let running = start_in(dir.path(), &config(upstream, routes, secret))
        .await
        .unwrap_or_else(|e| panic!("gateway failed to start:\n{e}"));
    TestGateway {
        dir,
        running: Some(running),
    }
}

async fn build_into(project: &Path, plugins: &Path) {
    let built = weir::toolchain::build(project, Some(plugins))
        .await
        .unwrap_or_else(|e| panic!("weir plugin build {}: {e}", project.display()));
    assert!(built.installed.is_some_and(|p| p.is_file()));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_signature_example_behaves_alike_in_every_language() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    let mut routes = Vec::new();
    for lang in LANGS {
        let name = lang.name();
        build_into(&examples().join(name), &plugins).await;
        let plugin_config = format!("{{ secret = \"signing-key\", consumer = \"{name}-client\" }}");
        routes.push((name.to_string(), plugin_config));
    }
    let gw = start_gateway(dir, &routes, true).await;
    let client = client();
    let body = r#"{"item":1}"#;
    for lang in LANGS {
        let name = lang.name();
        let path = format!("/{name}/orders?id=7");
        let post = |signature: Option<String>, body: &'static str| {
            let mut request = client.post(gw.url(&path)).body(body);
            if let Some(signature) = signature {
                request = request.header("x-signature", signature);
            }
            request.send()
        };

        let response = post(Some(sign("POST", &path, body)), r#"{"item":1}"#).await.unwrap();
        assert_eq!(response.status(), 200, "{name}: a good signature passes");
        let seen = echoed(response).await;
        assert_eq!(
            seen["headers"]["x-consumer"],
            format!("{name}-client"),
            "{name}: {seen}"
        );
        assert_eq!(seen["body"], body, "{name}");

        // Upper-case hex is the same signature.
        let upper = sign("POST", &path, body).to_uppercase();
        assert_eq!(
            post(Some(upper), r#"{"item":1}"#).await.unwrap().status(),
            200,
            "{name}"
        );

        for (signature, sent, error) in [
            (Some(sign("POST", &path, body)), r#"{"item":2}"#, "invalid signature"),
            (Some(sign("GET", &path, body)), r#"{"item":1}"#, "invalid signature"),
            (Some("not hex".to_string()), r#"{"item":1}"#, "invalid signature"),
            (None, r#"{"item":1}"#, "missing signature"),
        ] {
            let response = post(signature, sent).await.unwrap();
            assert_eq!(response.status(), 401, "{name}: {error} for body {sent}");
            let answer: serde_json::Value = response.json().await.unwrap();
            assert_eq!(answer["error"], error, "{name}");
        }
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn new_projects_build_and_load_in_every_language() {
    let dir = tempfile::tempdir().unwrap();
    let projects = dir.path().join("projects");
    let plugins = dir.path().join("plugins");
    let mut routes = Vec::new();
    for lang in LANGS {
        let name = format!("new-{}", lang.name());
        let project = weir::toolchain::new_project(&name, lang, &projects)
            .unwrap_or_else(|e| panic!("weir plugin new {name} --lang {}: {e}", lang.name()));
        build_into(&project, &plugins).await;
        routes.push((name, "{}".to_string()));
    }
    let gw = start_gateway(dir, &routes, false).await;
    for (name, _) in &routes {
        let seen = echoed(client().get(gw.url(&format!("/{name}/x"))).send().await.unwrap()).await;
        assert_eq!(seen["headers"][format!("x-{name}")], "on", "{name}: {seen}");
    }
    gw.stop().await;
}

#[test]
fn a_missing_toolchain_is_named_with_its_install_command() {
    let dir = tempfile::tempdir().unwrap();
    for lang in LANGS {
        let name = format!("bare-{}", lang.name());
        let project = weir::toolchain::new_project(&name, lang, dir.path()).unwrap();
        // No tools at all on the PATH.
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["plugin", "build"])
            .arg(&project)
            .env("PATH", dir.path().join("empty"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{name}: {stderr}");
        assert!(
            stderr.contains("was not found; install it with"),
            "{name}: the message names the tool and how to install it: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_gateway_picks_up_what_plugin_build_installs() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    // C builds in about a second: the quickest language to watch arrive.
    let project = weir::toolchain::new_project("late", Lang::C, &dir.path().join("projects")).unwrap();
    build_into(&project, &plugins).await;
    let gw = start_gateway(dir, &[("late".to_string(), "{}".to_string())], false).await;
    let seen = echoed(client().get(gw.url("/late/x")).send().await.unwrap()).await;
    assert_eq!(seen["headers"]["x-late"], "on", "{seen}");

    // A new version of the source, built and installed while the gateway runs.
    let source = project.join("src").join("filter.c");
    let text = std::fs::read_to_string(&source).unwrap();
    assert!(
        text.contains(r#"plugin_string_set(&value, "on");"#),
        "the template sets the header to on"
    );
    std::fs::write(
        &source,
        text.replace(
            r#"plugin_string_set(&value, "on");"#,
            r#"plugin_string_set(&value, "v2");"#,
        ),
    )
    .unwrap();
    build_into(&project, &plugins).await;
    wait_for("the new build to serve", std::time::Duration::from_secs(20), || async {
        let seen = echoed(client().get(gw.url("/late/x")).send().await.ok()?).await;
        (seen["headers"]["x-late"] == "v2").then_some(())
    })
    .await;
    gw.stop().await;
}
