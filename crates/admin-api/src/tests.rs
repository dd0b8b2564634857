//! Every answer round-trips, and the answers of a running gateway (the
//! fixtures, pasted from one) read as these types and write back as the
//! same JSON, field for field: nothing added, nothing dropped, `null`
//! still `null`.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::*;

/// `value` written as JSON and read back is `value`.
fn round_trips<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(value: &T) {
    let text = serde_json::to_string(value).expect("serializes");
    let back: T = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(&back, value, "{text}");
}

/// `fixture` reads as a `T` that writes back the same JSON; the `T`.
fn reads_and_writes_back<T: Serialize + DeserializeOwned>(fixture: &str) -> T {
    let answer: T = serde_json::from_str(fixture).unwrap_or_else(|e| panic!("{e}: {fixture}"));
    let written = serde_json::to_value(&answer).expect("serializes");
    let expected: Value = serde_json::from_str(fixture).expect("the fixture is JSON");
    assert_eq!(written, expected, "written back differently");
    answer
}

fn plugin(name: &str, state: PluginState) -> PluginStatus {
    PluginStatus {
        name: name.into(),
        file: format!("/plugins/{name}.wasm"),
        state,
        version: Some("ab".repeat(32)),
        loaded_at: Some(1_700_000_000),
        compiled_from_cache: Some(false),
        compile_ms: Some(12),
        routes: vec!["api".into()],
        grants: vec![
            Grant {
                grant: "kv".into(),
                name: None,
                source: GrantSource::Config,
            },
            Grant {
                grant: "secret".into(),
                name: Some("token".into()),
                source: GrantSource::Manifest,
            },
        ],
        manifest: Some(format!("/plugins/{name}.toml")),
        last_error: Some("not a component".into()),
        last_error_at: Some(1_700_000_100),
    }
}

#[test]
fn every_answer_round_trips() {
    round_trips(&Health::ok());
    round_trips(&ErrorBody::new("no such admin endpoint"));
    round_trips(&ReloadAnswer {
        reloaded: true,
        problems: None,
    });
    round_trips(&ReloadAnswer {
        reloaded: false,
        problems: Some(vec!["routes[0].upstream: no upstream \"x\"".into()]),
    });
    round_trips(&SharedState {
        store: "memory".into(),
        up: true,
        redis: None,
    });
    for (up, error) in [(true, None), (false, Some("connection refused".to_string()))] {
        round_trips(&SharedState {
            store: "redis://:***@127.0.0.1:6379".into(),
            up,
            redis: Some(RedisState {
                error,
                since_ms: 1_700_000_000_000,
                on_unavailable: OnUnavailable::Local,
                unavailable_operations: 3,
                outages: 1,
            }),
        });
    }
    round_trips(&PluginList {
        plugins: vec![
            PluginEntry {
                status: plugin("auth", PluginState::Loaded),
                limits: Some(PluginLimits {
                    idle_instances: 2,
                    deadline_ms: 100,
                    memory_mb: 64,
                    fail_open: true,
                    outbound_timeout_ms: 5000,
                    calls: "direct".into(),
                }),
            },
            PluginEntry {
                status: plugin("gone", PluginState::Missing),
                limits: None,
            },
            PluginEntry {
                status: plugin("broken", PluginState::Failed),
                limits: None,
            },
        ],
    });
    round_trips(&RouteList {
        routes: vec![
            RouteEntry {
                name: "api".into(),
                plugins: vec!["auth".into()],
                missing_plugins: vec!["gone".into()],
                backend: Some(RouteBackend::Upstream(UpstreamBackend {
                    upstream: "echo".into(),
                    targets: vec!["http://a:80".into(), "https://b:443".into()],
                    ejected: vec!["https://b:443".into()],
                    target_status: vec![
                        TargetStatus {
                            target: "http://a:80".into(),
                            weight: 3,
                            circuit: CircuitState::HalfOpen,
                            in_flight: 1,
                        },
                        TargetStatus {
                            target: "https://b:443".into(),
                            weight: 1,
                            circuit: CircuitState::Down,
                            in_flight: 0,
                        },
                    ],
                })),
            },
            RouteEntry {
                name: "chat".into(),
                plugins: vec![],
                missing_plugins: vec![],
                backend: Some(RouteBackend::Ai(AiBackend {
                    models: vec!["fast".into()],
                    ai_targets: vec![AiTarget {
                        name: "openai".into(),
                        model: "gpt-4o-mini".into(),
                        alias: "fast".into(),
                        url: "https://api.openai.com/v1".into(),
                        shim: "ai-openai".into(),
                        shim_loaded: false,
                        weight: 1,
                        priority: 2,
                        cooling_ms: Some(1500),
                        circuit: CircuitState::Open,
                    }],
                })),
            },
            RouteEntry {
                name: "unknown".into(),
                plugins: vec![],
                missing_plugins: vec![],
                backend: None,
            },
        ],
    });
    let totals = AiTotals {
        calls: 2,
        prompt_tokens: 10,
        completion_tokens: 5,
        tokens: 15,
        cost: Some(0.25),
    };
    let minute = LastMinuteTraffic {
        requests: 4,
        errors: 1,
        error_rate: 0.25,
        p50_ms: Some(1.5),
        p99_ms: None,
        rps: 0.5,
    };
    round_trips(&DashboardData {
        now_ms: 1_700_000_059_000,
        from_ms: 1_700_000_000_000,
        started_ms: 1_699_999_000_000,
        minutes: 1,
        bucket_secs: 5,
        totals: RouteTraffic {
            route: "*".into(),
            requests: 4,
            errors: 1,
            error_rate: 0.25,
            p50_ms: Some(1.5),
            p99_ms: Some(8.0),
            last_minute: minute.clone(),
            points: None,
        },
        routes: vec![RouteTraffic {
            route: "api".into(),
            requests: 4,
            errors: 1,
            error_rate: 0.25,
            p50_ms: None,
            p99_ms: None,
            last_minute: minute,
            points: Some(vec![TrafficPoint {
                t: 1_700_000_000_000,
                secs: 5.0,
                requests: 4,
                errors: 1,
                rps: 0.8,
                p50_ms: Some(1.5),
                p99_ms: Some(8.0),
            }]),
        }],
        plugins: vec![PluginTime {
            plugin: "auth".into(),
            calls: 4,
            faults: 1,
            total_ms: 2.0,
            mean_ms: 0.5,
            last_minute: PluginMinute {
                calls: 4,
                faults: 1,
                total_ms: 2.0,
            },
        }],
        targets: vec![TargetAttempts {
            upstream: "echo".into(),
            target: "a:80".into(),
            attempts: 4,
            failures: 0,
            last_minute: TargetMinute {
                attempts: 4,
                failures: 0,
            },
        }],
        errors: vec![RecentError {
            time_ms: 1_700_000_050_000,
            route: None,
            method: "GET".into(),
            path: "/nowhere".into(),
            status: 404,
            error: Some("no-route".into()),
        }],
        ai: AiUsage {
            totals: totals.clone(),
            minutes: vec![AiPoint {
                t: 1_700_000_040_000,
                totals: totals.clone(),
            }],
            models: vec![AiRow {
                name: "gpt-4o-mini".into(),
                totals: totals.clone(),
                points: vec![AiPoint {
                    t: 1_700_000_040_000,
                    totals,
                }],
            }],
            consumers: vec![],
            targets: vec![],
        },
    });
}

#[test]
fn absent_fields_stay_absent_and_null_ones_null() {
    assert_eq!(
        serde_json::to_value(SharedState {
            store: "memory".into(),
            up: true,
            redis: None
        })
        .unwrap(),
        json!({"store": "memory", "up": true})
    );
    assert_eq!(
        serde_json::to_value(ReloadAnswer {
            reloaded: true,
            problems: None
        })
        .unwrap(),
        json!({"reloaded": true})
    );
    let kv = Grant {
        grant: "kv".into(),
        name: None,
        source: GrantSource::Config,
    };
    assert_eq!(
        serde_json::to_value(kv).unwrap(),
        json!({"grant": "kv", "source": "config"})
    );
    let missing = serde_json::to_value(PluginEntry {
        status: PluginStatus {
            version: None,
            ..plugin("gone", PluginState::Missing)
        },
        limits: None,
    })
    .unwrap();
    assert_eq!(missing["version"], Value::Null, "{missing}");
    assert!(missing.get("deadline_ms").is_none(), "{missing}");
}

#[test]
fn a_running_gateways_answers_read_and_write_back_unchanged() {
    let health: Health = reads_and_writes_back(include_str!("fixtures/healthz.json"));
    assert!(health.is_ok());

    let plugins: PluginList = reads_and_writes_back(include_str!("fixtures/plugins.json"));
    let trap = plugins.get("trap").expect("trap listed");
    assert_eq!(trap.status.state, PluginState::Loaded);
    assert_eq!(trap.status.grants[0].source, GrantSource::Config);
    assert!(trap.status.last_error.as_deref().unwrap().contains("trap.wasm"));
    assert_eq!(trap.limits.as_ref().map(|l| l.deadline_ms), Some(100));
    let noop = plugins.get("noop").expect("noop listed");
    assert_eq!((noop.status.state, &noop.limits), (PluginState::Missing, &None));

    let routes: RouteList = reads_and_writes_back(include_str!("fixtures/routes.json"));
    let Some(RouteBackend::Upstream(upstream)) = &routes.get("api").expect("api listed").backend else {
        panic!("api has an upstream: {routes:?}");
    };
    assert_eq!(upstream.upstream, "echo");
    assert_eq!(upstream.target_status[0].circuit, CircuitState::Closed);
    assert_eq!(routes.get("gone").unwrap().missing_plugins, ["noop"]);
    let Some(RouteBackend::Ai(ai)) = &routes.get("chat").expect("chat listed").backend else {
        panic!("chat is an AI route: {routes:?}");
    };
    assert_eq!(ai.models, ["fast"]);
    assert_eq!(ai.ai_targets[0].cooling_ms, None);

    let state: SharedState = reads_and_writes_back(include_str!("fixtures/state.json"));
    assert_eq!((state.store.as_str(), state.up, &state.redis), ("memory", true, &None));

    let reload: ReloadAnswer = reads_and_writes_back(include_str!("fixtures/reload.json"));
    assert!(!reload.reloaded);
    assert_eq!(reload.problems.map(|p| p.len()), Some(4));

    let error: ErrorBody = reads_and_writes_back(include_str!("fixtures/error.json"));
    assert_eq!(error.error, "no such admin endpoint");

    let data: DashboardData = reads_and_writes_back(include_str!("fixtures/dashboard.json"));
    assert_eq!(data.totals.route, "*");
    assert_eq!(data.totals.points, None);
    assert!(data.routes.iter().all(|r| r.points.is_some()));
    assert_eq!(data.errors[0].error.as_deref(), Some("plugin-trap"));
    assert_eq!(data.ai.models[0].name, "gpt-4o-mini");
}
