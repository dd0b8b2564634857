//! `weir check`: every bad config and bad plugin file is refused with a
//! message naming the culprit, and the exit status says so.

use std::path::Path;
use std::process::Command;

use crate::common::*;

struct Checked {
    ok: bool,
    output: String,
}

fn weir_check(dir: &Path, config: &str) -> Checked {
    let file = dir.join("weir.toml");
    std::fs::write(&file, with_cache(config)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["check", "--config"])
        .arg(&file)
        .env("WEIR_LOG", "error")
        .output()
        .expect("run weir check");
    Checked {
        ok: out.status.success(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn config_with_plugin(plugin: &str, plugin_config: &str) -> String {
    format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [upstreams.echo]
        targets = ["127.0.0.1:9"]
        [[routes]]
        name = "api"
        upstream = "echo"
        [[routes.plugins]]
        name = "{plugin}"
        config = {plugin_config}
        "#
    )
}

fn assert_refused(checked: &Checked, needles: &[&str]) {
    assert!(!checked.ok, "check should fail:\n{}", checked.output);
    for needle in needles {
        assert!(
            checked.output.contains(needle),
            "missing {needle:?} in:\n{}",
            checked.output
        );
    }
}

#[test]
fn a_good_config_passes() {
    let dir = TestGateway::dir_with_plugins(&[("api-key-auth", "api-key-auth")]);
    let checked = weir_check(
        dir.path(),
        &config_with_plugin("api-key-auth", "{ keys = { a = \"k\" } }"),
    );
    assert!(checked.ok, "{}", checked.output);
    assert!(checked.output.contains("plugin api-key-auth"), "{}", checked.output);
    assert!(checked.output.contains("is valid"), "{}", checked.output);
}

#[test]
fn unknown_plugin_is_named_with_its_file_and_route() {
    let dir = TestGateway::dir_with_plugins(&[]);
    let checked = weir_check(dir.path(), &config_with_plugin("nope", "{}"));
    assert_refused(&checked, &["plugin nope", "nope.wasm", "route api"]);
}

#[test]
fn unknown_upstream_is_named_with_its_path() {
    let dir = TestGateway::dir_with_plugins(&[]);
    let config = r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [[routes]]
        name = "api"
        upstream = "missing"
    "#;
    let checked = weir_check(dir.path(), config);
    assert_refused(&checked, &["routes[0].upstream", "unknown upstream \"missing\""]);
}

#[test]
fn bad_toml_and_unknown_fields_are_named() {
    let dir = TestGateway::dir_with_plugins(&[]);
    // weir_check puts two lines of cache settings first.
    let checked = weir_check(dir.path(), "[[listeners]]\naddress = \n");
    assert_refused(&checked, &["(line 4)", "string values must be quoted"]);
    let checked = weir_check(
        dir.path(),
        "[[listeners]]\naddress = \"127.0.0.1:0\"\nbogus_field = 1\n",
    );
    assert_refused(&checked, &["listeners[0].bogus_field: unknown field"]);
    // A value of the wrong type stops reading: named by its path and line.
    let checked = weir_check(dir.path(), "[[listeners]]\naddress = 8080\n");
    assert_refused(&checked, &["listeners[0].address: invalid type", "(line 4)"]);
}

#[test]
fn one_run_lists_unknown_fields_config_problems_and_plugin_problems_by_path() {
    let dir = TestGateway::dir_with_plugins(&[("echo", "guest-echo-config"), ("api-key-auth", "api-key-auth")]);
    // Route api is valid, so its plugin is configured (and refuses) even
    // though the rest of the file has problems.
    let config = r#"
        [[listeners]]
        address = "127.0.0.1:0"
        bogus_field = 1
        [upstreams.echo]
        targets = ["127.0.0.1:9"]
        [[routes]]
        name = "api"
        upstream = "echo"
        [[routes.plugins]]
        name = "echo"
        config = { reject = "no good" }
        [[routes]]
        name = "b"
        path_prefix = "/b"
        upstream = "nowhere"
        [[routes.plugins]]
        name = "echo"
        typo = true
        [[routes]]
        name = "c"
        path_prefix = "/c"
        upstream = "elsewhere"
        [[routes.plugins]]
        name = "api-key-auth"
        config = { header = "x-key" }
    "#;
    let checked = weir_check(dir.path(), config);
    // Route c's unknown upstream does not keep its plugin from being
    // configured: both its problems are listed.
    assert_refused(
        &checked,
        &[
            "6 problems",
            "  listeners[0].bogus_field: unknown field",
            "  routes[1].plugins[0].typo: unknown field",
            "  routes[1].upstream: unknown upstream \"nowhere\"",
            "  routes[0].plugins[0]: plugin echo on route api: configure failed: rejected: no good",
            "  routes[2].upstream: unknown upstream \"elsewhere\"",
            "  routes[2].plugins[0]: plugin api-key-auth on route c: configure failed",
        ],
    );
}

/// A config with an AI route (shim `ai-openai`) whose usage database is
/// `usage_db`, and an access log file.
fn ai_config(usage_db: &str) -> String {
    format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [access_log]
        to = "access.log"
        [ai]
        usage_db = "{usage_db}"
        [[routes]]
        name = "ai"
        path_prefix = "/ai"
        [routes.ai]
        targets = [{{ name = "openai", shim = "ai-openai", base_url = "http://127.0.0.1:9", model = "m" }}]
        "#
    )
}

#[test]
fn check_creates_no_usage_database_or_access_log_and_refuses_an_unusable_one() {
    let dir = TestGateway::dir_with_plugins(&[("ai-openai", "ai-openai")]);
    let checked = weir_check(dir.path(), &ai_config("usage.db"));
    assert!(checked.ok, "{}", checked.output);
    for file in ["usage.db", "usage.db-wal", "usage.db-shm", "access.log"] {
        assert!(!dir.path().join(file).exists(), "weir check created {file}");
    }

    // A directory that does not exist: named by the setting.
    let checked = weir_check(dir.path(), &ai_config("missing/usage.db"));
    assert_refused(&checked, &["ai.usage_db:", "missing", "does not exist"]);
    assert!(!dir.path().join("missing").exists());

    // A file that is not a database: refused, and left as it was.
    std::fs::write(
        dir.path().join("usage.db"),
        "not a database, but long enough to hold a header".repeat(4),
    )
    .unwrap();
    let checked = weir_check(dir.path(), &ai_config("usage.db"));
    assert_refused(&checked, &["ai.usage_db:", "not a SQLite database"]);
    let kept = std::fs::read_to_string(dir.path().join("usage.db")).unwrap();
    assert!(kept.starts_with("not a database"), "weir check changed the file");
}

#[test]
fn every_problem_is_listed_at_once() {
    let dir = TestGateway::dir_with_plugins(&[]);
    let config = r#"
        [[listeners]]
        address = "not-an-address"
        [upstreams.echo]
        targets = ["127.0.0.1:9"]
        [[routes]]
        name = "a"
        upstream = "nowhere"
        [[routes]]
        name = "b"
        upstream = "echo"
        path_prefix = "relative"
    "#;
    let checked = weir_check(dir.path(), config);
    assert_refused(
        &checked,
        &[
            "3 problems",
            "listeners[0].address",
            "routes[0].upstream",
            "routes[1].path_prefix",
        ],
    );
}

#[test]
fn truncated_wasm_is_refused_naming_the_file() {
    let dir = TestGateway::dir_with_plugins(&[]);
    let bytes = std::fs::read(built_plugin("headers")).unwrap();
    std::fs::write(dir.path().join("plugins/cut.wasm"), &bytes[..bytes.len() / 2]).unwrap();
    let checked = weir_check(dir.path(), &config_with_plugin("cut", "{}"));
    assert_refused(
        &checked,
        &["plugin cut", "cut.wasm", "not a valid WebAssembly component"],
    );
}

#[test]
fn non_wasm_and_core_modules_are_refused_with_the_reason() {
    let dir = TestGateway::dir_with_plugins(&[]);
    std::fs::write(dir.path().join("plugins/text.wasm"), b"hello, not wasm").unwrap();
    let checked = weir_check(dir.path(), &config_with_plugin("text", "{}"));
    assert_refused(&checked, &["text.wasm", "not a WebAssembly file"]);

    // The smallest core module: magic and version 1.
    std::fs::write(dir.path().join("plugins/core.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let checked = weir_check(dir.path(), &config_with_plugin("core", "{}"));
    assert_refused(&checked, &["core.wasm", "core WebAssembly module, not a component"]);

    std::fs::write(dir.path().join("plugins/empty.wasm"), b"").unwrap();
    let checked = weir_check(dir.path(), &config_with_plugin("empty", "{}"));
    assert_refused(&checked, &["empty.wasm", "empty"]);
}

#[test]
fn component_of_the_wrong_world_is_refused() {
    let dir = TestGateway::dir_with_plugins(&[]);
    // A valid component that exports nothing.
    std::fs::write(dir.path().join("plugins/other.wasm"), b"\0asm\x0d\0\x01\0").unwrap();
    let checked = weir_check(dir.path(), &config_with_plugin("other", "{}"));
    assert_refused(&checked, &["plugin other", "other.wasm", "weir:plugin/filter"]);
}

#[test]
fn configure_rejection_names_route_plugin_and_reason() {
    let dir = TestGateway::dir_with_plugins(&[("echo", "guest-echo-config"), ("api-key-auth", "api-key-auth")]);
    let checked = weir_check(dir.path(), &config_with_plugin("echo", "{ reject = \"no good\" }"));
    assert_refused(
        &checked,
        &["plugin echo on route api: configure failed: rejected: no good"],
    );

    // A first-party plugin's own validation.
    let checked = weir_check(
        dir.path(),
        &config_with_plugin("api-key-auth", "{ header = \"x-key\" }"),
    );
    assert_refused(
        &checked,
        &["plugin api-key-auth on route api: configure failed", "keys"],
    );
}

#[test]
fn grants_naming_undefined_secrets_are_refused() {
    let dir = TestGateway::dir_with_plugins(&[("api-key-auth", "api-key-auth")]);
    let config = format!(
        "{}\n[plugin.api-key-auth]\nsecrets = [\"missing\"]\n",
        config_with_plugin("api-key-auth", "{ keys = { a = \"k\" } }")
    );
    let checked = weir_check(dir.path(), &config);
    assert_refused(
        &checked,
        &["plugin.api-key-auth.secrets[0]", "unknown secret \"missing\""],
    );
}

#[test]
fn relative_paths_resolve_against_the_config_files_directory_when_named_bare() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("plugins")).unwrap();
    let config = "[[listeners]]\naddress = \"127.0.0.1:0\"\n[access_log]\nto = \"access.log\"\n\
                  [upstreams.echo]\ntargets = [\"127.0.0.1:9\"]\n[[routes]]\nname = \"api\"\nupstream = \"echo\"\n";
    std::fs::write(dir.path().join("al.toml"), with_cache(config)).unwrap();
    for name in ["al.toml", "./al.toml"] {
        let out = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["check", name])
            .current_dir(dir.path())
            .env("WEIR_LOG", "error")
            .output()
            .expect("run weir check");
        assert!(
            out.status.success(),
            "weir check {name}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// An AI route under `path_prefix` with `prompt-template` configured with
/// `prefix` (a TOML value; `None`: the plugin's default).
fn prompt_template_config(path_prefix: &str, prefix: Option<&str>) -> String {
    let prefix = prefix.map(|p| format!("prefix = {p}\n")).unwrap_or_default();
    format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [ai]
        usage_db = "usage.db"
        [[routes]]
        name = "ai"
        path_prefix = "{path_prefix}"
        [routes.ai]
        targets = [{{ name = "openai", shim = "ai-openai", base_url = "http://127.0.0.1:9", model = "m" }}]
        [[routes.plugins]]
        name = "prompt-template"
        [routes.plugins.config]
        {prefix}
        [[routes.plugins.config.templates]]
        name = "hello"
        version = 1
        model = "m"
        messages = [{{ role = "user", content = "Hello {{{{who}}}}" }}]
        variables = {{ who = {{ type = "string" }} }}
        "#
    )
}

#[test]
fn a_prompt_template_prefix_outside_its_routes_path_prefix_is_refused() {
    let dir = TestGateway::dir_with_plugins(&[("prompt-template", "prompt-template"), ("ai-openai", "ai-openai")]);

    // Under the route: template calls reach it.
    for (path_prefix, prefix) in [
        ("/ai", Some("\"/ai/prompts/\"")),
        ("/", None),
        ("/ai/", Some("\"/ai/t\"")),
    ] {
        let checked = weir_check(dir.path(), &prompt_template_config(path_prefix, prefix));
        assert!(checked.ok, "{path_prefix} {prefix:?}: {}", checked.output);
    }

    // Outside it, written or by default: refused by path, naming both.
    let checked = weir_check(dir.path(), &prompt_template_config("/ai", Some("\"/prompts/\"")));
    assert_refused(
        &checked,
        &[
            "routes[0].plugins[0].config.prefix",
            "prefix \"/prompts/\" lies outside the route's path_prefix \"/ai\"",
        ],
    );
    let checked = weir_check(dir.path(), &prompt_template_config("/ai", None));
    assert_refused(
        &checked,
        &[
            "routes[0].plugins[0].config.prefix",
            "the default prefix \"/prompts/\" lies outside the route's path_prefix \"/ai\"",
        ],
    );
    // Not at a segment boundary.
    let checked = weir_check(dir.path(), &prompt_template_config("/ai", Some("\"/aiprompts/\"")));
    assert_refused(&checked, &["routes[0].plugins[0].config.prefix", "\"/aiprompts/\""]);
}

/// Upstreams in the many-upstreams test: enough that reading the system
/// roots per upstream would show, as it did (5,000 took 15.7 s).
const MANY_UPSTREAMS: usize = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_upstreams_and_ai_targets_load_with_the_system_roots_read_once() {
    use std::fmt::Write as _;
    // In this process only this test makes clients (the others run the
    // binary), so the count is this test's.
    let dir = TestGateway::dir_with_plugins(&[("ai-openai", "ai-openai")]);
    let mut config = String::from("[[listeners]]\naddress = \"127.0.0.1:0\"\n[ai]\nusage_db = \"usage.db\"\n");
    for i in 0..MANY_UPSTREAMS {
        let scheme = if i % 2 == 0 { "http" } else { "https" };
        let _ = write!(
            config,
            "[upstreams.u{i}]\ntargets = [\"{scheme}://127.0.0.1:{}\"]\n",
            1024 + i
        );
    }
    for i in 0..MANY_UPSTREAMS {
        let _ = write!(
            config,
            "[[routes]]\nname = \"r{i}\"\npath_prefix = \"/r{i}\"\nupstream = \"u{i}\"\n"
        );
    }
    config.push_str("[[routes]]\nname = \"ai\"\npath_prefix = \"/ai\"\n[routes.ai]\ntargets = [\n");
    for i in 0..50 {
        let _ = writeln!(
            config,
            "  {{ name = \"t{i}\", shim = \"ai-openai\", base_url = \"https://127.0.0.1:{}\", model = \"m\" }},",
            2000 + i
        );
    }
    config.push_str("]\n");

    let file = dir.path().join("weir.toml");
    std::fs::write(&file, with_cache(&config)).unwrap();
    let gateway = weir::gateway::Gateway::load_file(&file)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(gateway.proxy().load().routes.iter().count(), MANY_UPSTREAMS + 1);
    assert_eq!(
        weir::tls::system_root_loads(),
        1,
        "the system roots are read once per process"
    );
    // A reload builds every client again, from the same roots.
    gateway.reload_config().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(weir::tls::system_root_loads(), 1, "and not again on a reload");
}
