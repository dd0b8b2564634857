//! A bounded soak: steady load for 75 s while a plugin is replaced every
//! half second. No request fails, and resident memory and open file
//! descriptors stay flat (within the tolerances below) once warmed up.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;

const SOAK: Duration = Duration::from_secs(75);
const WARM_UP: Duration = Duration::from_secs(15);
/// Growth allowed after warm-up, fitted to what was measured (RSS grew
/// about 1 MiB, descriptors not at all) with room for a loaded machine.
/// About 100 confirmed swaps follow warm-up: keeping one old version per
/// swap (a few MiB, one descriptor for its compiled code) would fail both
/// bounds. The engine keeps at most 32 idle instance slots warm with an
/// old version's image (`max_unused_warm_slots`), and client and upstream
/// connections vary by a few.
const RSS_TOLERANCE_KIB: u64 = 16 << 10;
const FD_TOLERANCE: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_load_with_plugin_swaps_fails_nothing_and_keeps_memory_and_descriptors_flat() {
    let upstream = echo_upstream("echo").await;
    let config = format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [upstreams.echo]
        targets = ["{upstream}"]
        [[routes]]
        name = "versioned"
        upstream = "echo"
        [[routes.plugins]]
        name = "version"
        [[routes.plugins]]
        name = "headers"
        config = {{ response = {{ add = {{ x-soak = "1" }} }} }}
        "#
    );
    // The gateway runs as the `weir` binary: its memory and descriptors are
    // measured apart from the other tests in this process.
    let gw = SpawnedGateway::start(&config, &[("version", "guest-version-a"), ("headers", "headers")]).await;
    let plugin = gw.dir.path().join("plugins/version.wasm");
    let versions = [built_plugin("guest-version-a"), built_plugin("guest-version-b")];

    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (url, stop, served) = (gw.url("/soak"), stop.clone(), served.clone());
        clients.push(tokio::spawn(async move {
            let http = client();
            let mut failures = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                match http.get(&url).send().await {
                    Ok(r) if r.status() == 200 && r.headers().contains_key("x-version") => {
                        let _ = r.bytes().await;
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => failures.push(format!("status {}", r.status())),
                    Err(e) => failures.push(e.to_string()),
                }
            }
            failures
        }));
    }

    let started = Instant::now();
    let mut swaps = 0;
    let mut warm: Option<(u64, usize)> = None;
    let probe = client();
    while started.elapsed() < SOAK {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let next = (swaps + 1) % 2;
        replace_by_rename(&versions[next], &plugin);
        swaps += 1;
        // Each swap takes effect: the new version serves before the next.
        let want = ["a", "b"][next];
        wait_for(
            &format!("swap {swaps} (version {want}) to serve"),
            Duration::from_secs(10),
            || async {
                let response = probe.get(gw.url("/soak")).send().await.ok()?;
                (response.headers().get("x-version")?.to_str().ok()? == want).then_some(())
            },
        )
        .await;
        if warm.is_none() && started.elapsed() >= WARM_UP {
            warm = Some((gw.process.rss_kib(), gw.process.open_fds()));
            eprintln!("soak: descriptors after warm-up {:?}", gw.process.fd_kinds());
        }
    }
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        let failures = client.await.unwrap();
        assert!(
            failures.is_empty(),
            "{} failed requests, e.g. {:?}",
            failures.len(),
            &failures[..1]
        );
    }
    let (warm_rss, warm_fds) = warm.expect("warmed up");
    let (end_rss, end_fds) = (gw.process.rss_kib(), gw.process.open_fds());
    let total = served.load(Ordering::Relaxed);
    eprintln!(
        "soak: {total} requests, {swaps} plugin swaps; RSS {warm_rss} -> {end_rss} KiB, fds {warm_fds} -> {end_fds}"
    );
    assert!(total > 1_000, "too little load: {total}");
    assert!(swaps >= 50, "only {swaps} swaps, each confirmed serving");
    assert!(
        end_rss <= warm_rss + RSS_TOLERANCE_KIB,
        "RSS grew from {warm_rss} to {end_rss} KiB"
    );
    assert!(
        end_fds <= warm_fds + FD_TOLERANCE,
        "open fds grew from {warm_fds} to {end_fds}: {:?}",
        gw.process.fd_kinds()
    );
    eprintln!("soak: descriptors at the end {:?}", gw.process.fd_kinds());
    assert!(gw.stop(Duration::from_secs(10)).await.success());
}
