//! The floor under a plugin call: the no-op plugin's `interests` export
//! (no arguments but its handler, five booleans back, no host call) called
//! through a minimal wasmtime embedding — Weir's engine settings, every
//! import defined as a trap, none of Weir's call machinery — once
//! synchronously (as Weir calls a plugin whose imports all answer at once)
//! and once with `call_async` (on a fiber, as Weir calls a plugin that
//! imports something that waits). The `plugins` bench's warm no-op call is
//! the same guest through Weir; the difference between them is Weir's own
//! cost.

// The allocator the gateway's binary uses (host/src/allocator.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use wasmtime::Store;
use wasmtime::component::{Component, ComponentType, Lift, Linker, ResourceAny, TypedFunc, Val};
use weir_testing::built_plugin;

/// `weir:plugin/types.interests`.
#[derive(ComponentType, Lift, Clone, Copy, Debug)]
#[component(record)]
struct Interests {
    #[component(name = "on-request")]
    on_request: bool,
    #[component(name = "request-body")]
    request_body: bool,
    #[component(name = "on-response")]
    on_response: bool,
    #[component(name = "response-body")]
    response_body: bool,
    #[component(name = "response-chunks")]
    response_chunks: bool,
}

/// A configured handler of the no-op plugin and its `interests` export.
struct Embedded {
    store: Store<()>,
    handler: ResourceAny,
    interests: TypedFunc<(ResourceAny,), (Interests,)>,
}

fn embed() -> Embedded {
    let engine = weir::plugins::engine::shared_engine().expect("engine");
    let component = Component::from_file(&engine, built_plugin("guest-noop")).expect("component");
    let mut linker = Linker::<()>::new(&engine);
    linker
        .define_unknown_imports_as_traps(&component)
        .expect("trap imports");
    let mut store = Store::new(&engine, ());
    // Weir's engine interrupts on the epoch: no deadline in reach here.
    store.set_epoch_deadline(u64::MAX / 2);
    let instance = linker.instantiate(&mut store, &component).expect("instance");
    let filter = instance
        .get_export_index(&mut store, None, "weir:plugin/filter@0.1.0")
        .expect("filter export");
    let export = |store: &mut Store<()>, name: &str| {
        let index = instance
            .get_export_index(&mut *store, Some(&filter), name)
            .unwrap_or_else(|| panic!("no export {name}"));
        instance.get_func(&mut *store, index).expect("func")
    };
    let configure = export(&mut store, "[static]handler.configure");
    let mut result = [Val::Bool(false)];
    configure
        .call(&mut store, &[Val::String("{}".into())], &mut result)
        .expect("configure");
    let handler = match &result[0] {
        Val::Result(Ok(Some(value))) => match **value {
            Val::Resource(handler) => handler,
            ref other => panic!("configure returned {other:?}"),
        },
        other => panic!("configure returned {other:?}"),
    };
    let interests = export(&mut store, "[method]handler.interests")
        .typed::<(ResourceAny,), (Interests,)>(&store)
        .expect("typed interests");
    let (first,) = interests.call(&mut store, (handler,)).expect("interests");
    assert!(
        first.on_request && first.on_response && !first.request_body && !first.response_body && !first.response_chunks,
        "the no-op plugin takes part in on-request and on-response only: {first:?}"
    );
    Embedded {
        store,
        handler,
        interests,
    }
}

fn floor(c: &mut Criterion) {
    let mut group = c.benchmark_group("minimal embedding, no-op export");
    let mut embedded = embed();
    // Timed per call, as the `plugins` bench times its warm calls.
    group.bench_function("sync call", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let started = Instant::now();
                let (interests,) = embedded
                    .interests
                    .call(&mut embedded.store, (embedded.handler,))
                    .expect("call");
                total += started.elapsed();
                black_box(interests);
            }
            total
        })
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    group.bench_function("call_async (on a fiber)", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let started = Instant::now();
                    let (interests,) = embedded
                        .interests
                        .call_async(&mut embedded.store, (embedded.handler,))
                        .await
                        .expect("call");
                    total += started.elapsed();
                    black_box(interests);
                }
                total
            })
        })
    });
    group.finish();
}

criterion_group!(benches, floor);
criterion_main!(benches);
