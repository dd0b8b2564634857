//! Warm instance pools: one idle list per worker thread, capped together
//! by `max_idle_instances`, and reused from any thread.

use crate::common::*;
use weir::admin_api::PluginList;

async fn idle_instances(gw: &TestGateway) -> u64 {
    let all: PluginList = gw.admin_answer("/plugins").await;
    let entry = all.get("headers").expect("the plugin is listed");
    entry.limits.as_ref().expect("a version serves").idle_instances
}

/// `count` requests at once; each must have gone through the plugin.
async fn burst(gw: &TestGateway, count: usize) {
    let http = client();
    let requests = (0..count).map(|_| {
        let (http, url) = (http.clone(), gw.url("/"));
        tokio::spawn(async move { http.get(url).send().await })
    });
    for request in futures_util::future::join_all(requests).await {
        let response = request.expect("task").expect("request");
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-pooled"], "1");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_instances_stay_under_the_cap_across_worker_threads_and_are_reused() {
    let upstream = echo_upstream("echo").await;
    let config = format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [admin]
        address = "127.0.0.1:0"
        [plugins]
        max_idle_instances = 3
        [upstreams.echo]
        targets = ["{upstream}"]
        [[routes]]
        name = "pooled"
        upstream = "echo"
        [[routes.plugins]]
        name = "headers"
        config = {{ response = {{ add = {{ x-pooled = "1" }} }} }}
        "#
    );
    let gw = TestGateway::start(&config, &[("headers", "headers")]).await;

    // Bursts on both worker threads make more instances than the cap and
    // give them back on either thread: never more than 3 are kept.
    for _ in 0..5 {
        burst(&gw, 24).await;
        let idle = idle_instances(&gw).await;
        assert!((1..=3).contains(&idle), "{idle} idle instances, the cap is 3");
    }

    // One request at a time takes an idle instance, whichever thread put
    // it back, and returns it: the count holds instead of growing or
    // falling as instances are made and dropped.
    let before = idle_instances(&gw).await;
    for _ in 0..20 {
        burst(&gw, 1).await;
        assert_eq!(idle_instances(&gw).await, before);
    }
    gw.stop().await;
}

/// A plugin's pool, driven from two threads, each with its own runtime as
/// each of the gateway's workers has: an instance put back on one thread
/// is taken on the other instead of a new one being made, and the cap
/// counts both threads' lists.
#[test]
fn a_thread_with_no_idle_instance_takes_another_threads() {
    let dir = TestGateway::dir_with_plugins(&[("noop", "guest-noop")]);
    let file = write_config(
        dir.path(),
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [plugins]
        dir = "plugins"
        max_idle_instances = 1
        [upstreams.up]
        targets = ["127.0.0.1:9"]
        [[routes]]
        name = "r"
        upstream = "up"
        plugins = [{ name = "noop" }]
        "#,
    );
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    };
    let gateway = runtime()
        .block_on(weir::gateway::Gateway::load_file(&file))
        .unwrap_or_else(|e| panic!("{e}"));
    let proxy = gateway.proxy().load_full();
    let plugin = proxy
        .plugins
        .iter()
        .find_map(|p| p.as_filter())
        .expect("the noop filter")
        .clone();
    let lease = |plugin: &std::sync::Arc<weir::plugins::FilterPlugin>| {
        runtime().block_on(plugin.lease(0)).unwrap_or_else(|e| panic!("{e}"))
    };

    // Thread A: two instances at once; only one is kept (the cap).
    std::thread::scope(|s| {
        s.spawn(|| {
            let (first, second) = (lease(&plugin), lease(&plugin));
            drop((first, second));
        });
    });
    assert_eq!(plugin.idle_instances(), 1);

    // Thread B has none of its own: it takes A's, leaving none idle while
    // it holds it, and keeps it after.
    std::thread::scope(|s| {
        s.spawn(|| {
            let taken = lease(&plugin);
            assert_eq!(plugin.idle_instances(), 0, "thread B made a new instance");
            drop(taken);
        });
    });
    assert_eq!(plugin.idle_instances(), 1);
}
