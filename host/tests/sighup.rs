//! SIGHUP reloads the config. In its own test binary: the signal goes to
//! the whole process.

#[path = "all/common/mod.rs"]
mod common;

use std::time::Duration;

use common::*;

#[allow(unsafe_code)]
#[tokio::test]
async fn sighup_reloads_the_config() {
    // The secret comes from the environment, which no file watch sees: only
    // a reload picks up a new value.
    // SAFETY: this test binary runs this one test; nothing else reads the
    // environment concurrently.
    unsafe { std::env::set_var("WEIR_SIGHUP_TEST_SECRET", "before") };
    let upstream = echo_upstream("echo").await;
    let config = format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [secrets.token]
        env = "WEIR_SIGHUP_TEST_SECRET"
        [plugin.probe]
        secrets = ["token"]
        [upstreams.echo]
        targets = ["{upstream}"]
        [[routes]]
        name = "probe"
        upstream = "echo"
        [[routes.plugins]]
        name = "probe"
        "#
    );
    let gw = TestGateway::start(&config, &[("probe", "guest-echo-config")]).await;
    let secret = || async {
        client()
            .get(gw.url("/secret/token"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()
    };
    assert_eq!(secret().await.as_deref(), Some("before"));

    unsafe { std::env::set_var("WEIR_SIGHUP_TEST_SECRET", "after") };
    // The shell's own `kill`: no separate binary needed.
    let status = std::process::Command::new("sh")
        .args(["-c", &format!("kill -HUP {}", std::process::id())])
        .status()
        .expect("run sh");
    assert!(status.success());
    wait_for("the reloaded secret", Duration::from_secs(10), || async {
        (secret().await.as_deref() == Some("after")).then_some(())
    })
    .await;
    gw.stop().await;
}
