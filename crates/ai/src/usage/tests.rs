//! What every usage store must answer alike. Each check in [`checks`] takes
//! an empty store and opens its own ledger on it; `sqlite.rs` and
//! `postgres.rs` run them against their store.

use std::collections::HashMap;

use super::*;

/// A served request: `consumer` may be `None`. Costs are multiples of
/// 1/1024 so that sums are exact.
pub(super) fn request(time_ms: i64, consumer: Option<&str>, route: &str, model: &str, tokens: u64) -> UsageRecord {
    UsageRecord {
        time_ms,
        request_id: format!("req-{time_ms}"),
        consumer: consumer.map(str::to_owned),
        route: route.to_owned(),
        target: format!("{model}-provider"),
        model: model.to_owned(),
        prompt_tokens: tokens,
        completion_tokens: tokens * 2,
        cost: (tokens * 3) as f64 / 1024.0,
        latency_ms: 120,
        ttft_ms: Some(30),
        status: 200,
        streamed: true,
        cached: false,
    }
}

fn ids(report: &UsageReport) -> Vec<i64> {
    report.rows.iter().map(|row| row.time_ms).collect()
}

/// Five requests: alice ×2, bob ×2, one without a consumer.
fn record_five(ledger: &UsageLedger) {
    ledger.record(request(1, Some("alice"), "chat", "gpt", 100));
    ledger.record(request(2, Some("bob"), "chat", "claude", 200));
    ledger.record(request(3, Some("alice"), "embed", "gpt", 300));
    ledger.record(request(4, None, "chat", "gpt", 400));
    ledger.record(request(5, Some("bob"), "embed", "claude", 500));
}

async fn open(store: &UsageStore) -> UsageLedger {
    UsageLedger::open_store(store).await.expect("open ledger")
}

pub(super) mod checks {
    use std::sync::Arc;

    use super::*;

    pub async fn each_filter_narrows_the_rows_and_totals(store: &UsageStore) {
        let ledger = open(store).await;
        record_five(&ledger);
        let query = |filter: UsageFilter| ledger.query(filter);

        let all = query(UsageFilter::default()).await.unwrap();
        assert_eq!(ids(&all), [5, 4, 3, 2, 1], "newest first");
        assert_eq!(
            all.totals,
            UsageTotals {
                requests: 5,
                prompt_tokens: 1500,
                completion_tokens: 3000,
                cost: 4500.0 / 1024.0
            }
        );
        assert_eq!(
            all.rows[1],
            request(4, None, "chat", "gpt", 400),
            "every field round-trips"
        );

        let by = |f: fn(&mut UsageFilter)| {
            let mut filter = UsageFilter::default();
            f(&mut filter);
            filter
        };
        let alice = query(by(|f| f.consumer = Some("alice".into()))).await.unwrap();
        assert_eq!(ids(&alice), [3, 1]);
        assert_eq!(alice.totals.prompt_tokens, 400);
        let anonymous = query(by(|f| f.consumer = Some("-".into()))).await.unwrap();
        assert_eq!(ids(&anonymous), [4]);
        let embed = query(by(|f| f.route = Some("embed".into()))).await.unwrap();
        assert_eq!(ids(&embed), [5, 3]);
        let claude_target = query(by(|f| f.target = Some("claude-provider".into()))).await.unwrap();
        assert_eq!(ids(&claude_target), [5, 2]);
        let gpt = query(by(|f| f.model = Some("gpt".into()))).await.unwrap();
        assert_eq!(ids(&gpt), [4, 3, 1]);
        let window = query(by(|f| {
            f.since_ms = Some(2);
            f.until_ms = Some(4)
        }))
        .await
        .unwrap();
        assert_eq!(ids(&window), [3, 2], "since is inclusive, until exclusive");
        assert_eq!(window.totals.requests, 2);
        let combined = query(by(|f| {
            f.consumer = Some("bob".into());
            f.route = Some("chat".into())
        }))
        .await
        .unwrap();
        assert_eq!(ids(&combined), [2]);
        let anonymous_chat = query(by(|f| {
            f.consumer = Some("-".into());
            f.route = Some("chat".into());
            f.since_ms = Some(1)
        }))
        .await
        .unwrap();
        assert_eq!(ids(&anonymous_chat), [4]);
        let nothing = query(by(|f| f.model = Some("none".into()))).await.unwrap();
        assert!(nothing.rows.is_empty());
        assert_eq!(nothing.totals, UsageTotals::default());
        ledger.close().await.unwrap();
    }

    pub async fn group_by_sums_per_key_largest_cost_first(store: &UsageStore) {
        let ledger = open(store).await;
        record_five(&ledger);
        let grouped = |group_by| {
            ledger.query(UsageFilter {
                group_by: Some(group_by),
                ..UsageFilter::default()
            })
        };
        let keys = |report: &UsageReport| report.groups.iter().map(|(key, _)| key.clone()).collect::<Vec<_>>();

        let consumers = grouped(GroupBy::Consumer).await.unwrap();
        // alice and the anonymous requests tie on cost; ties go by key.
        assert_eq!(keys(&consumers), ["bob", "-", "alice"]);
        assert_eq!(
            consumers.groups[0].1,
            UsageTotals {
                requests: 2,
                prompt_tokens: 700,
                completion_tokens: 1400,
                cost: 2100.0 / 1024.0
            }
        );
        assert_eq!(consumers.groups[1].1.requests, 1);
        assert_eq!(keys(&grouped(GroupBy::Route).await.unwrap()), ["embed", "chat"]);
        assert_eq!(
            keys(&grouped(GroupBy::Target).await.unwrap()),
            ["gpt-provider", "claude-provider"]
        );
        let models = grouped(GroupBy::Model).await.unwrap();
        assert_eq!(keys(&models), ["gpt", "claude"]);
        assert_eq!(models.groups[0].1.requests, 3);
        assert!(ledger.query(UsageFilter::default()).await.unwrap().groups.is_empty());
        ledger.close().await.unwrap();
    }

    pub async fn limit_caps_rows_but_totals_cover_every_match(store: &UsageStore) {
        let ledger = open(store).await;
        for time in 0..250 {
            ledger.record(request(time, Some("alice"), "chat", "gpt", 10));
        }
        let default = ledger.query(UsageFilter::default()).await.unwrap();
        assert_eq!(default.rows.len(), DEFAULT_LIMIT);
        assert_eq!(default.rows[0].time_ms, 249);
        assert_eq!(default.totals.requests, 250);
        assert_eq!(default.totals.prompt_tokens, 2500);
        let three = ledger
            .query(UsageFilter {
                limit: Some(3),
                group_by: Some(GroupBy::Consumer),
                ..UsageFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(ids(&three), [249, 248, 247]);
        assert_eq!(three.totals.requests, 250);
        assert_eq!(three.groups[0].1.requests, 250);
        let huge = ledger
            .query(UsageFilter {
                limit: Some(usize::MAX),
                ..UsageFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(huge.rows.len(), 250, "a huge limit is clamped, not an error");
        ledger.close().await.unwrap();
    }

    pub async fn rows_survive_close_and_reopen(store: &UsageStore) {
        let first = open(store).await;
        record_five(&first);
        first.close().await.unwrap();
        first.close().await.unwrap();
        first.record(request(6, Some("alice"), "chat", "gpt", 1));
        assert!(matches!(first.flush().await, Err(UsageError::Closed { .. })));
        drop(first);

        let second = open(store).await;
        let report = second.query(UsageFilter::default()).await.unwrap();
        assert_eq!(
            ids(&report),
            [5, 4, 3, 2, 1],
            "the row recorded after close is not there"
        );
        second.record(request(7, Some("alice"), "chat", "gpt", 1));
        assert_eq!(second.query(UsageFilter::default()).await.unwrap().totals.requests, 6);
        second.close().await.unwrap();
    }

    pub async fn ten_thousand_records_from_eight_threads_all_land(store: &UsageStore) {
        let ledger = Arc::new(open(store).await);
        std::thread::scope(|scope| {
            for thread in 0..8 {
                let ledger = &ledger;
                scope.spawn(move || {
                    for i in 0..1_250 {
                        let consumer = format!("consumer-{thread}");
                        ledger.record(request(thread * 10_000 + i, Some(&consumer), "chat", "gpt", 1));
                    }
                });
            }
        });
        ledger.flush().await.unwrap();
        let report = ledger
            .query(UsageFilter {
                limit: Some(MAX_LIMIT),
                group_by: Some(GroupBy::Consumer),
                ..UsageFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(report.totals.requests, 10_000);
        assert_eq!(report.rows.len(), 10_000);
        assert_eq!(report.groups.len(), 8);
        assert!(report.groups.iter().all(|(_, totals)| totals.requests == 1_250));
        ledger.close().await.unwrap();
    }

    pub async fn a_query_while_recording_sees_every_row_recorded_before_it(store: &UsageStore) {
        let ledger = Arc::new(open(store).await);
        let writer = {
            let ledger = ledger.clone();
            std::thread::spawn(move || {
                for time in 0..20_000 {
                    ledger.record(request(time, Some("alice"), "chat", "gpt", 1));
                }
            })
        };
        let mut seen = 0;
        while !writer.is_finished() {
            let report = ledger.query(UsageFilter::default()).await.unwrap();
            assert!(report.totals.requests >= seen, "counts only grow");
            seen = report.totals.requests;
        }
        writer.join().unwrap();
        // Recorded before this call, so this query must see all of them.
        let report = ledger.query(UsageFilter::default()).await.unwrap();
        assert_eq!(report.totals.requests, 20_000);
        ledger.close().await.unwrap();
    }

    pub async fn tokens_by_consumer_since_sums_prompt_and_completion(store: &UsageStore) {
        let ledger = open(store).await;
        record_five(&ledger);
        let spent = ledger.tokens_by_consumer_since(2).await.unwrap();
        assert_eq!(
            spent,
            HashMap::from([("bob".into(), 2100), ("alice".into(), 900), ("-".into(), 1200)])
        );
        assert!(ledger.tokens_by_consumer_since(100).await.unwrap().is_empty());
        ledger.close().await.unwrap();
    }

    pub async fn report_serializes_as_json(store: &UsageStore) {
        let ledger = open(store).await;
        ledger.record(request(1, None, "chat", "gpt", 10));
        let report = ledger
            .query(UsageFilter {
                group_by: Some(GroupBy::Consumer),
                ..UsageFilter::default()
            })
            .await
            .unwrap();
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["rows"][0]["consumer"], serde_json::Value::Null);
        assert_eq!(json["totals"]["requests"], 1);
        assert_eq!(json["groups"][0][0], "-");
        ledger.close().await.unwrap();
    }
}

#[test]
fn filter_reads_query_keys_and_refuses_unknown_ones() {
    let filter: UsageFilter = serde_json::from_value(serde_json::json!({
        "consumer": "alice", "route": "chat", "target": "openai", "model": "gpt",
        "since_ms": 1, "until_ms": 2, "limit": 10, "group_by": "model"
    }))
    .unwrap();
    assert_eq!(filter.group_by, Some(GroupBy::Model));
    assert_eq!(filter.limit, Some(10));
    let unknown = serde_json::from_value::<UsageFilter>(serde_json::json!({ "customer": "alice" }));
    assert!(unknown.unwrap_err().to_string().contains("customer"));
    assert!(serde_json::from_value::<UsageFilter>(serde_json::json!({ "group_by": "colour" })).is_err());
}

#[test]
fn where_clause_numbers_parameters_in_each_dialect() {
    let filter = UsageFilter {
        consumer: Some("-".into()),
        route: Some("chat".into()),
        since_ms: Some(7),
        ..UsageFilter::default()
    };
    let (sqlite, args) = filter.where_clause(|_| "?".into());
    assert_eq!(sqlite, "WHERE consumer IS NULL AND route = ? AND time_ms >= ?");
    assert_eq!(args, [Arg::Text("chat".into()), Arg::Integer(7)]);
    let (postgres, _) = filter.where_clause(|n| format!("${n}"));
    assert_eq!(postgres, "WHERE consumer IS NULL AND route = $1 AND time_ms >= $2");
    assert_eq!(UsageFilter::default().where_clause(|_| "?".into()).0, "");
}
