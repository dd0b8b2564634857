//! Special files dropped into the plugin directory: refused by name, while reload, SIGHUP and
//! SIGTERM keep working.

use super::*;

#[allow(unsafe_code)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn special_files_in_the_plugin_directory_are_refused_and_reload_sighup_and_sigterm_still_work() {
    let echo = echo_upstream("echo").await;
    let dir = TestGateway::dir_with_plugins(&[("version", "guest-version-a")]);
    let config = dir.path().join("weir.toml");
    std::fs::write(
        &config,
        with_cache(&format!(
            r#"
            [[listeners]]
            address = "127.0.0.1:0"
            [admin]
            address = "127.0.0.1:0"
            [access_log]
            to = "off"
            [limits]
            shutdown_grace_ms = 2000
            [plugins]
            dir = "plugins"
            max_file_mb = 1
            [upstreams.echo]
            targets = ["{echo}"]
            [[routes]]
            name = "all"
            upstream = "echo"
            [[routes.plugins]]
            name = "version"
            "#
        )),
    )
    .unwrap();
    let child = WeirProcess::start(&config);
    let url = format!("http://{}/", child.logged("listening on ").await);
    let admin = format!("http://{}", child.logged("admin API on ").await);
    let version = || async {
        let answer = client().get(&url).send().await.ok()?;
        answer.headers().get("x-version")?.to_str().ok().map(str::to_string)
    };
    assert_eq!(version().await.as_deref(), Some("a"));
    let status = || async {
        let all: serde_json::Value = client()
            .get(format!("{admin}/plugins"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        all["plugins"]
            .as_array()?
            .iter()
            .find(|p| p["name"] == "version")
            .cloned()
    };

    let plugins = dir.path().join("plugins");
    let file = plugins.join("version.wasm");
    let fifo = plugins.join(".fifo");
    let name = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
    let large = plugins.join(".large");
    std::fs::File::create(&large).unwrap().set_len(3 << 20).unwrap();
    let zero = plugins.join(".zero");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let rss_before = child.rss_kib();

    for (special, reason) in [
        (&fifo, "is not a regular file (it is a FIFO)"),
        (&large, "is 3145728 bytes, over the limit of 1048576 bytes"),
        (&zero, "is not a regular file (it is a character device)"),
    ] {
        std::fs::rename(special, &file).unwrap();
        let seen = wait_for(reason, Duration::from_secs(20), || async {
            let status = status().await?;
            status["last_error"].as_str()?.contains(reason).then_some(status)
        })
        .await;
        assert!(seen["last_error"].as_str().unwrap().contains("version.wasm"), "{seen}");
        assert_eq!(version().await.as_deref(), Some("a"), "the old version keeps serving");

        // POST /reload still answers, and so does SIGHUP.
        let reloads = child.count("config reloaded");
        let answer = tokio::time::timeout(Duration::from_secs(20), client().post(format!("{admin}/reload")).send())
            .await
            .expect("POST /reload answers")
            .unwrap();
        assert_eq!(answer.status(), 200);
        child.signal("HUP");
        wait_for("a reload on SIGHUP", Duration::from_secs(20), || async {
            (child.count("config reloaded") >= reloads + 2).then_some(())
        })
        .await;
    }
    let grown = child.rss_kib().saturating_sub(rss_before);
    assert!(grown < 64 << 10, "memory grew by {grown} KiB reading special files");

    // A good file brings a new version; then SIGTERM ends the process.
    replace_by_rename(&built_plugin("guest-version-b"), &file);
    wait_for("version b", Duration::from_secs(20), || async {
        (version().await.as_deref() == Some("b")).then_some(())
    })
    .await;
    let mut child = child;
    child.signal("TERM");
    let started = Instant::now();
    let exit = loop {
        if let Some(exit) = child.process.try_wait().unwrap() {
            break exit;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no exit 20 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "{exit:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
}
