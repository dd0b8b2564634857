//! What plugins cost: instantiation, warm calls, and whole chains through
//! the gateway's own request pipeline — on the real runtime with the real
//! plugins, in process, no sockets.
//!
//! Each measurement times only the operation itself: requests are built
//! before the clock starts, and instances are dropped after it stops.

// The allocator the gateway's binary uses (host/src/allocator.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use weir::config::{PluginName, RouteName, UpstreamName};
use weir::gateway::Gateway;
use weir::observe::{AttemptOutcome, Observer, Phase, PluginOutcome, RequestRecord};
use weir::plugins::ChainLink;
use weir::plugins::exchange::{Properties, RequestState};
use weir::proxy::{Body, Flow, Peer, full_body};
use weir_testing::built_plugin;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// A gateway loaded from `routes` (appended to a common head), with the
/// plugins copied into a temporary plugin directory.
struct Loaded {
    _dir: tempfile::TempDir,
    gateway: Gateway,
}

fn load(rt: &tokio::runtime::Runtime, extra: &str, routes: &str) -> Loaded {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("plugins")).expect("mkdir");
    for (name, krate) in [
        ("api-key-auth", "api-key-auth"),
        ("rate-limit", "rate-limit"),
        ("headers", "headers"),
        ("noop", "guest-noop"),
    ] {
        std::fs::copy(
            built_plugin(krate),
            dir.path().join("plugins").join(format!("{name}.wasm")),
        )
        .unwrap_or_else(|e| panic!("{krate} not built ({e}); run `cargo build` first"));
    }
    let config = format!(
        r#"
        [[listeners]]
        address = "127.0.0.1:0"
        [plugins]
        dir = "plugins"
        cache_dir = "cache"
        [plugin.rate-limit]
        kv = true
        {extra}
        [upstreams.up]
        targets = ["127.0.0.1:9"]
        {routes}
        "#
    );
    let file = dir.path().join("weir.toml");
    std::fs::write(&file, config).expect("write config");
    let gateway = rt.block_on(Gateway::load_file(&file)).unwrap_or_else(|e| panic!("{e}"));
    Loaded { _dir: dir, gateway }
}

const AUTH: &str = r#"{ name = "api-key-auth", config = { keys = { bench = "bench-key" }, strip = false } }"#;
const RATE: &str = r#"{ name = "rate-limit", config = { capacity = 1000000000, refill_per_second = 1000000000 } }"#;
/// Four rewrites: set two, remove one, rename one.
const HEADERS: &str = r#"{ name = "headers", config = { request = { set = { x-team = "platform", x-env = "bench" }, remove = ["x-debug"], rename = { x-old-name = "x-new-name" } } } }"#;
const NOOP: &str = r#"{ name = "noop" }"#;

fn route(name: &str, plugins: &[&str]) -> String {
    format!(
        "[[routes]]\nname = \"{name}\"\npath_prefix = \"/{name}\"\nupstream = \"up\"\nplugins = [{}]\n",
        plugins.join(", ")
    )
}

/// A request with 20 headers such as a browser or an API client sends.
fn request(path: &str) -> Request<Body> {
    let headers = [
        ("host", "api.example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
        ),
        ("accept", "application/json, text/plain, */*"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("accept-language", "en-GB,en;q=0.9,de;q=0.8"),
        ("content-type", "application/json"),
        ("x-api-key", "bench-key"),
        ("x-request-id", "4f9d1c2e-8a7b-4c3d-9e0f-1a2b3c4d5e6f"),
        ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        (
            "cookie",
            "session=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJiZW5jaCJ9.c2lnbmF0dXJl; theme=dark",
        ),
        ("cache-control", "no-cache"),
        ("pragma", "no-cache"),
        ("referer", "https://app.example.com/dashboard/items?page=2"),
        ("origin", "https://app.example.com"),
        ("sec-fetch-site", "same-site"),
        ("sec-fetch-mode", "cors"),
        ("sec-fetch-dest", "empty"),
        ("if-none-match", "W/\"5e1f-1a2b3c4d\""),
        ("x-debug", "1"),
        ("x-old-name", "value"),
    ];
    let mut builder = Request::builder()
        .method("GET")
        .uri(format!("{path}/items?page=2&sort=desc"));
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    builder.body(full_body(Bytes::new())).expect("request")
}

fn request_state(path: &str) -> Box<RequestState> {
    let (parts, _) = request(path).into_parts();
    let mut properties = Properties::default();
    let _ = properties.set("client-ip", "127.0.0.1");
    let _ = properties.set("route", "bench");
    Box::new(RequestState {
        parts,
        body: None,
        body_replaced: false,
        body_visible: false,
        properties,
    })
}

fn upstream_response() -> Response<Body> {
    Response::builder()
        .status(200)
        .header("content-type", "text/plain")
        .header("content-length", "3")
        .body(full_body("ok\n"))
        .expect("response")
}

const PEER: Peer = Peer {
    addr: SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 40000),
    tls: false,
};

fn first_link(loaded: &Loaded, path: &str) -> ChainLink {
    let proxy = loaded.gateway.proxy().load_full();
    let route = proxy.route_for(&request(path)).expect("route");
    route.chain.links[0].clone()
}

fn instantiate(c: &mut Criterion) {
    let rt = runtime();
    let routes = [
        route("auth", &[AUTH]),
        route("rate", &[RATE]),
        route("headers", &[HEADERS]),
    ]
    .concat();
    let loaded = load(&rt, "", &routes);
    let mut group = c.benchmark_group("instantiate");
    for (plugin, path) in [
        ("api-key-auth", "/auth"),
        ("rate-limit", "/rate"),
        ("headers", "/headers"),
    ] {
        let link = first_link(&loaded, path);
        for (what, slots) in [("bare", vec![]), ("with configure", vec![link.slot])] {
            group.bench_function(format!("{plugin} ({what})"), |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            let started = Instant::now();
                            let instance = link
                                .plugin
                                .instantiate(&slots, false)
                                .await
                                .map_err(|_| ())
                                .expect("instance");
                            total += started.elapsed();
                            drop(instance);
                        }
                        total
                    })
                })
            });
        }
    }
    group.finish();
}

fn warm_call(c: &mut Criterion) {
    let rt = runtime();
    let routes = [
        route("noop", &[NOOP]),
        route("auth", &[AUTH]),
        route("rate", &[RATE]),
        route("headers", &[HEADERS]),
    ]
    .concat();
    let loaded = load(&rt, "", &routes);
    let mut group = c.benchmark_group("warm on-request call, 20 headers");
    for (plugin, path) in [
        ("noop", "/noop"),
        ("api-key-auth", "/auth"),
        ("rate-limit", "/rate"),
        ("headers (4 rewrites)", "/headers"),
    ] {
        let link = first_link(&loaded, path);
        let mut lease = rt.block_on(link.plugin.lease(link.slot)).expect("lease");
        group.bench_function(plugin, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let state = request_state(path);
                        let started = Instant::now();
                        let (state, outcome) = lease.on_request(link.slot, state).await;
                        total += started.elapsed();
                        black_box(outcome.map_err(|_| ()).expect("call"));
                        drop(state);
                    }
                    total
                })
            })
        });
    }
    group.finish();
}

/// Request phase, a stand-in upstream response, response phase.
async fn through_pipeline(loaded: &Loaded, path: &str) -> Duration {
    let proxy = loaded.gateway.proxy().load_full();
    let request = request(path);
    let response = upstream_response();
    let started = Instant::now();
    let route = proxy.route_for(&request).expect("route");
    // The record the gateway keeps of every request is part of the cost.
    let mut record = RequestRecord::new(request.method().clone(), path, PEER.addr.ip());
    let response = match proxy
        .request_phase(&route, request, PEER, &mut record)
        .await
        .expect("request phase")
    {
        Flow::Forward(forward) => proxy
            .response_phase(forward.ran, response, forward.properties, &mut record)
            .await
            .expect("response phase"),
        Flow::Answered(response) => response,
    };
    let elapsed = started.elapsed();
    assert_eq!(response.status(), 200);
    elapsed
}

fn chains(c: &mut Criterion) {
    let rt = runtime();
    let routes = [
        route("none", &[]),
        route("chain1", &[AUTH]),
        route("chain3", &[AUTH, RATE, HEADERS]),
        route("chain5", &[AUTH, RATE, HEADERS, NOOP, HEADERS]),
    ]
    .concat();
    let warm = load(&rt, "", &routes);
    let fresh = load(
        &rt,
        "instance = \"fresh\"\n[plugin.api-key-auth]\ninstance = \"fresh\"\n[plugin.headers]\ninstance = \"fresh\"\n[plugin.noop]\ninstance = \"fresh\"\n",
        &routes,
    );
    let mut group = c.benchmark_group("pipeline");
    for (mode, loaded) in [("warm", &warm), ("fresh", &fresh)] {
        for (name, path) in [
            ("0 plugins", "/none"),
            ("1 plugin", "/chain1"),
            ("3 plugins", "/chain3"),
            ("5 plugins", "/chain5"),
        ] {
            if mode == "fresh" && path == "/none" {
                continue;
            }
            group.bench_function(format!("{name}, {mode} instances"), |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            total += through_pipeline(loaded, path).await;
                        }
                        total
                    })
                })
            });
        }
    }
    group.finish();
}

/// The pipeline without plugins, with 3 and with 2 (the 3 without
/// `rate-limit`, whose requests here all take from one client's bucket),
/// warm instances, on one thread and on two at once, all sharing one
/// gateway: its instance pools, shared state and config. Each thread has
/// its own single-threaded runtime and runs its share of the requests;
/// the figure is wall time per request (building each request included),
/// so two threads that never wait on each other show half of one
/// thread's (on a machine with two free cores).
fn threads(c: &mut Criterion) {
    let rt = runtime();
    let routes = [
        route("none", &[]),
        route("chain3", &[AUTH, RATE, HEADERS]),
        route("chain2", &[AUTH, HEADERS]),
    ]
    .concat();
    let loaded = load(&rt, "", &routes);
    let mut group = c.benchmark_group("pipeline on threads");
    for ((plugins, path), threads) in [
        ("0 plugins", "/none"),
        ("3 plugins", "/chain3"),
        ("2 plugins", "/chain2"),
    ]
    .into_iter()
    .flat_map(|chain| [(chain, 1u64), (chain, 2)])
    {
        let name = format!("{plugins}, {threads} thread{}", if threads == 1 { "" } else { "s" });
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let started = Instant::now();
                std::thread::scope(|scope| {
                    for thread in 0..threads {
                        let share = iters / threads + u64::from(thread < iters % threads);
                        let loaded = &loaded;
                        scope.spawn(move || {
                            runtime().block_on(async {
                                for _ in 0..share {
                                    through_pipeline(loaded, path).await;
                                }
                            })
                        });
                    }
                });
                started.elapsed()
            })
        });
    }
    group.finish();
}

/// What the gateway does with a request's record once its response ended
/// (metrics, the dashboard's history; the access log is off, as in the
/// load harness): for a request without plugins and for one through the
/// harness's chain (five plugin calls), each with one upstream attempt.
fn report(c: &mut Criterion) {
    let observer = Observer::default();
    let record = |calls: &[(&str, Phase)]| {
        let mut record = RequestRecord::new(http::Method::GET, "/bench/items", PEER.addr.ip());
        record.route = Some(RouteName("bench".into()));
        record.upstream = Some(UpstreamName("up".into()));
        record.status = 200;
        for (plugin, phase) in calls {
            record.plugin_call(
                &PluginName((*plugin).into()),
                *phase,
                Instant::now(),
                PluginOutcome::Continue,
            );
        }
        record.attempt(
            "127.0.0.1:8080".into(),
            [1; 8],
            Instant::now(),
            AttemptOutcome::Answered(200),
        );
        record
    };
    let chain = [
        ("api-key-auth", Phase::Request),
        ("rate-limit", Phase::Request),
        ("headers", Phase::Request),
        ("headers", Phase::Response),
        ("rate-limit", Phase::Response),
    ];
    let mut group = c.benchmark_group("report a finished request");
    for (name, record) in [("no plugins", record(&[])), ("5 plugin calls", record(&chain))] {
        group.bench_function(name, |b| b.iter(|| observer.finish(black_box(&record))));
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = instantiate, warm_call, chains, threads, report
}
criterion_main!(benches);
