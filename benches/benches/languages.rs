//! The same plugin in every language: the request-signature check of
//! `examples/plugins/{rust,js,python,c}`, built with `weir plugin build`,
//! measured for component size, compile time, memory per instance, cold
//! start (a fresh instance, its `configure` and the first call) and a warm
//! call — each through the gateway's own request pipeline, with a signed
//! 10-byte body the plugin reads and checks.
//!
//! Needs each language's tools (`make setup`). Prints a table of the
//! figures criterion does not measure before the criterion groups run.

// The allocator the gateway's binary uses (host/src/allocator.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use hmac::{Hmac, Mac};
use http::Request;
use sha2::Sha256;
use weir::gateway::Gateway;
use weir::observe::RequestRecord;
use weir::proxy::{Body, Flow, Peer, full_body};
use weir::toolchain::Lang;

const LANGS: [Lang; 4] = [Lang::Rust, Lang::Js, Lang::Python, Lang::C];
const KEY: &str = "bench-key";
const BODY: &str = r#"{"item":1}"#;
const PEER: Peer = Peer {
    addr: SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 40000),
    tls: false,
};
/// Instances created to measure memory per instance.
const INSTANCES: usize = 20;

struct Setup {
    _dir: tempfile::TempDir,
    gateway: Gateway,
    plugins: PathBuf,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Build the four examples into one plugin directory, each also as
/// `NAME-fresh` for a fresh-instance route, and load a gateway with a
/// route `/NAME` and `/NAME-fresh` for each.
fn setup(rt: &tokio::runtime::Runtime) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let plugins = dir.path().join("plugins");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/plugins");
    let mut config = format!(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\n[plugins]\ndir = \"plugins\"\ncache_dir = \"cache\"\n\
         [secrets.signing-key]\nvalue = \"{KEY}\"\n[upstreams.up]\ntargets = [\"127.0.0.1:9\"]\n"
    );
    for lang in LANGS {
        let name = lang.name();
        let built = rt
            .block_on(weir::toolchain::build(&examples.join(name), Some(&plugins)))
            .unwrap_or_else(|e| panic!("building the {name} example (run `make setup` first): {e}"));
        std::fs::copy(&built.wasm, plugins.join(format!("{name}-fresh.wasm"))).expect("copy");
        for (plugin, mode) in [(name.to_string(), "pooled"), (format!("{name}-fresh"), "fresh")] {
            config.push_str(&format!(
                "[plugin.{plugin}]\nsecrets = [\"signing-key\"]\ninstance = \"{mode}\"\n\
                 [[routes]]\nname = \"{plugin}\"\npath_prefix = \"/{plugin}\"\nupstream = \"up\"\n\
                 plugins = [{{ name = \"{plugin}\", config = {{ secret = \"signing-key\", consumer = \"bench\" }} }}]\n"
            ));
        }
    }
    let file = dir.path().join("weir.toml");
    std::fs::write(&file, config).expect("write config");
    let gateway = rt.block_on(Gateway::load_file(&file)).unwrap_or_else(|e| panic!("{e}"));
    Setup {
        _dir: dir,
        gateway,
        plugins,
    }
}

fn signed_request(path: &str) -> Request<Body> {
    let mut mac = Hmac::<Sha256>::new_from_slice(KEY.as_bytes()).expect("key");
    mac.update(format!("POST\n{path}\n{BODY}").as_bytes());
    let signature: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    Request::builder()
        .method("POST")
        .uri(path)
        .header("host", "api.example.com")
        .header("content-type", "application/json")
        .header("content-length", BODY.len())
        .header("x-signature", signature)
        .body(full_body(Bytes::from_static(BODY.as_bytes())))
        .expect("request")
}

/// The request phase of a signed request; its time.
async fn through_pipeline(gateway: &Gateway, path: &str) -> Duration {
    let proxy = gateway.proxy().load_full();
    let request = signed_request(path);
    let started = Instant::now();
    let route = proxy.route_for(&request).expect("route");
    let mut record = RequestRecord::new(request.method().clone(), path, PEER.addr.ip());
    let flow = proxy
        .request_phase(&route, request, PEER, &mut record)
        .await
        .expect("request phase");
    let elapsed = started.elapsed();
    match flow {
        Flow::Forward(forward) => black_box(forward),
        Flow::Answered(response) => panic!("{path}: the plugin answered {}", response.status()),
    };
    elapsed
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Size, compile time and memory per instance, printed as a table.
fn report(rt: &tokio::runtime::Runtime, setup: &Setup) {
    println!("\n| language | component size | compile (uncached, median of 3) | memory per instance |");
    println!("|---|---:|---:|---:|");
    let proxy = setup.gateway.proxy().load_full();
    for lang in LANGS {
        let name = lang.name();
        let wasm = setup.plugins.join(format!("{name}.wasm"));
        let size = std::fs::metadata(&wasm).map(|m| m.len()).unwrap_or(0);
        let compile = median(
            (0..3)
                .map(|_| {
                    let started = Instant::now();
                    rt.block_on(weir::toolchain::validate(&wasm, name, None))
                        .expect("compiles");
                    started.elapsed().as_secs_f64() * 1000.0
                })
                .collect(),
        );
        let plugin = proxy
            .plugins
            .iter()
            .find(|p| p.name().as_str() == name)
            .and_then(|p| p.as_filter())
            .expect("filter plugin loaded")
            .clone();
        let before = rss_kib();
        let instances: Vec<_> = (0..INSTANCES)
            .map(|_| {
                rt.block_on(plugin.instantiate(&[0], false))
                    .map_err(|_| ())
                    .expect("instance")
            })
            .collect();
        // Configured for its route: what a warm instance holds before its
        // first request.
        let per_instance = (rss_kib().saturating_sub(before)) as f64 / INSTANCES as f64;
        drop(instances);
        println!(
            "| {name} | {:.0} KiB | {compile:.0} ms | {:.0} KiB |",
            size as f64 / 1024.0,
            per_instance
        );
    }
    println!();
}

fn languages(c: &mut Criterion) {
    let rt = runtime();
    let setup = setup(&rt);
    report(&rt, &setup);
    for (group_name, suffix) in [
        ("warm call", ""),
        ("cold start (fresh instance + first call)", "-fresh"),
    ] {
        let mut group = c.benchmark_group(format!("signature check, {group_name}"));
        for lang in LANGS {
            let path = format!("/{}{suffix}/orders?id=7", lang.name());
            group.bench_function(lang.name(), |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            total += through_pipeline(&setup.gateway, &path).await;
                        }
                        total
                    })
                })
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = languages
}
criterion_main!(benches);
