//! Plugin faults: each one answers its documented status within its limit,
//! and every other request keeps being served.

use std::time::{Duration, Instant};

use crate::common::*;

/// Guest programs by plugin name.
const GUESTS: &[(&str, &str)] = &[("loop", "guest-loop"), ("trap", "guest-trap"), ("alloc", "guest-alloc")];

fn fault_config(upstream: std::net::SocketAddr) -> String {
    format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [plugin.loop]
        deadline_ms = 50
        [plugin.alloc]
        memory_mb = 16
        [plugin.trap-open]
        fail_open = true
        [upstreams.echo]
        targets = ["{upstream}"]

        [[routes]]
        name = "faulty"
        path_prefix = "/f"
        upstream = "echo"
        [[routes.plugins]]
        name = "loop"
        [[routes.plugins]]
        name = "trap"
        [[routes.plugins]]
        name = "alloc"

        [[routes]]
        name = "open"
        path_prefix = "/open"
        upstream = "echo"
        [[routes.plugins]]
        name = "trap-open"

        [[routes]]
        name = "healthy"
        upstream = "echo"
        "#
    )
}

async fn start() -> TestGateway {
    let upstream = echo_upstream("echo").await;
    let mut plugins = GUESTS.to_vec();
    plugins.push(("trap-open", "guest-trap"));
    TestGateway::start(&fault_config(upstream), &plugins).await
}

/// Send `count` normal requests on each of `streams` connections, through
/// the faulty route's plugins (which pass normal paths) and a plain route;
/// return how many did not answer 200.
fn normal_traffic(gw: &TestGateway, streams: usize, count: usize) -> tokio::task::JoinHandle<usize> {
    let urls = [gw.url("/f/ok"), gw.url("/ok")];
    tokio::spawn(async move {
        let mut tasks = Vec::new();
        for s in 0..streams {
            let url = urls[s % 2].clone();
            tasks.push(tokio::spawn(async move {
                let http = client();
                let mut failures = 0;
                for _ in 0..count {
                    match http.get(&url).send().await {
                        Ok(r) if r.status() == 200 => {}
                        _ => failures += 1,
                    }
                }
                failures
            }));
        }
        let mut failures = 0;
        for t in tasks {
            failures += t.await.unwrap_or(count);
        }
        failures
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_loop_plugin_answers_504_within_deadline() {
    let gw = start().await;
    let traffic = normal_traffic(&gw, 4, 40);
    for _ in 0..3 {
        let started = Instant::now();
        let response = client().get(gw.url("/f/loop")).send().await.unwrap();
        assert_eq!(response.status(), 504);
        assert_eq!(response.headers()["x-weir-error"], "plugin-deadline");
        assert!(
            response
                .text()
                .await
                .unwrap()
                .contains("plugin loop exceeded its 50 ms deadline")
        );
        // The deadline ended it: not sooner, and within a small multiple
        // of it (a margin for a loaded 2-core machine, not a timer).
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(50),
            "answered before the deadline: {took:?}"
        );
        assert!(
            took < Duration::from_millis(50 * 20),
            "not ended near its deadline: {took:?}"
        );
    }
    assert_eq!(traffic.await.unwrap(), 0, "normal requests failed during the loop");
    // The looping instance was thrown away; the plugin still serves.
    let response = client().get(gw.url("/f/ok")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-guest"], "loop");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trapping_plugin_answers_500_and_others_carry_on() {
    let gw = start().await;
    let traffic = normal_traffic(&gw, 4, 40);
    for _ in 0..5 {
        let response = client().get(gw.url("/f/trap")).send().await.unwrap();
        assert_eq!(response.status(), 500);
        assert_eq!(response.headers()["x-weir-error"], "plugin-trap");
        assert!(response.text().await.unwrap().contains("plugin trap failed"));
    }
    assert_eq!(traffic.await.unwrap(), 0);
    assert_eq!(client().get(gw.url("/f/ok")).send().await.unwrap().status(), 200);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_allocation_stops_at_the_memory_cap() {
    let gw = start().await;
    let traffic = normal_traffic(&gw, 4, 40);
    for _ in 0..3 {
        let response = client().get(gw.url("/f/alloc")).send().await.unwrap();
        assert_eq!(response.status(), 500);
        assert_eq!(response.headers()["x-weir-error"], "plugin-memory");
        assert!(
            response
                .text()
                .await
                .unwrap()
                .contains("plugin alloc exceeded its 16 MiB memory cap")
        );
    }
    assert_eq!(traffic.await.unwrap(), 0);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_plugin_fault_is_skipped() {
    let gw = start().await;
    let traffic = normal_traffic(&gw, 2, 20);
    for _ in 0..3 {
        let response = client().get(gw.url("/open/trap")).send().await.unwrap();
        assert_eq!(response.status(), 200, "a fail-open plugin's trap is skipped");
        let seen = echoed(response).await;
        assert_eq!(seen["path"], "/open/trap");
    }
    assert_eq!(traffic.await.unwrap(), 0);
    gw.stop().await;
}
