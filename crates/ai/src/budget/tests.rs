//! The budgets' behaviour, in memory: reservation and settling, windows,
//! refusals and restore, and many threads at once.

use super::*;
use weir_config::budget::{DAY_MS, HOUR_MS, days_from_civil};

/// 2026-02-15T12:00:00Z.
const FEB_15_NOON: i64 = 1_771_156_800_000;

fn ms(year: i64, month: u32, day: u32) -> i64 {
    days_from_civil(year, month, day) * DAY_MS
}

fn budgets(yaml_like: serde_json::Value) -> Arc<Budgets> {
    let config: BudgetConfig = serde_json::from_value(yaml_like).expect("budget config");
    Arc::new(Budgets::new(&config))
}

fn alice_budget(tokens: u64, period: &str) -> Arc<Budgets> {
    budgets(serde_json::json!({ "consumers": { "alice": { "tokens": tokens, "period": period } } }))
}

/// (used, reserved) of the consumer's period budget and rolling minute.
fn counts(budgets: &Budgets, consumer: &str) -> ((u64, u64), (u64, u64)) {
    let accounts = budgets.lock();
    let account = &accounts[consumer];
    (
        account.period.as_ref().map_or((0, 0), |p| (p.used, p.reserved)),
        account.minute.as_ref().map_or((0, 0), |m| (m.used, m.reserved)),
    )
}

#[test]
fn reserve_holds_the_estimate_and_settle_charges_the_actual_count() {
    let budgets = alice_budget(1000, "day");
    let first = budgets.reserve(Some("alice"), 300, FEB_15_NOON).unwrap();
    let second = budgets.reserve(Some("alice"), 500, FEB_15_NOON).unwrap();
    assert_eq!(counts(&budgets, "alice").0, (0, 800));
    first.settle(120, FEB_15_NOON);
    assert_eq!(counts(&budgets, "alice").0, (120, 500));
    second.settle(480, FEB_15_NOON);
    assert_eq!(counts(&budgets, "alice").0, (600, 0));
    // 600 used + 400 = 1000 exactly fits; one more token does not.
    assert!(budgets.reserve(Some("alice"), 401, FEB_15_NOON).is_err());
    budgets
        .reserve(Some("alice"), 400, FEB_15_NOON)
        .unwrap()
        .settle(400, FEB_15_NOON);
    assert_eq!(counts(&budgets, "alice").0, (1000, 0));
}

#[test]
fn refusal_names_the_consumer_the_limit_and_the_numbers() {
    let budgets = alice_budget(10_000, "day");
    budgets.restore("alice", 9_800, FEB_15_NOON);
    let _in_flight = budgets.reserve(Some("alice"), 150, FEB_15_NOON).unwrap();
    let refused = budgets.reserve(Some("alice"), 400, FEB_15_NOON).unwrap_err();
    assert_eq!(
        refused,
        BudgetExceeded {
            consumer: "alice".into(),
            limit: LimitKind::Budget { period: Period::Day },
            limit_tokens: 10_000,
            used_tokens: 9_800,
            reserved_tokens: 150,
            requested_tokens: 400,
            retry_after_secs: 12 * 3600,
        }
    );
    assert_eq!(
        refused.to_string(),
        "consumer alice: token budget of 10000 per day exhausted (9800 used, 150 reserved by requests in \
         flight, this request needs up to 400); retry in 43200 s"
    );
    assert!(!refused.can_never_fit());
}

#[test]
fn a_request_larger_than_the_whole_limit_is_refused_at_once() {
    let budgets = alice_budget(1000, "hour");
    let refused = budgets.reserve(Some("alice"), 1001, FEB_15_NOON).unwrap_err();
    assert!(refused.can_never_fit());
    assert_eq!(
        refused.to_string(),
        "consumer alice: this request needs up to 1001 tokens, more than the whole token budget of 1000 per \
         hour; it can never be admitted (ask for fewer with max_tokens)"
    );
    assert_eq!(counts(&budgets, "alice").0, (0, 0));
}

#[test]
fn listed_consumers_follow_their_rule_and_the_rest_the_default() {
    let budgets = budgets(serde_json::json!({
        "default": { "tokens": 100 },
        "consumers": { "alice": { "tokens": 1000 }, "root": {} }
    }));
    budgets
        .reserve(Some("alice"), 1000, FEB_15_NOON)
        .unwrap()
        .settle(1000, FEB_15_NOON);
    assert_eq!(
        budgets.reserve(Some("bob"), 101, FEB_15_NOON).unwrap_err().limit_tokens,
        100
    );
    budgets
        .reserve(Some("bob"), 100, FEB_15_NOON)
        .unwrap()
        .settle(100, FEB_15_NOON);
    // Each consumer under the default has its own 100, and requests
    // without a consumer share one as `-`.
    budgets
        .reserve(Some("carol"), 100, FEB_15_NOON)
        .unwrap()
        .settle(100, FEB_15_NOON);
    budgets
        .reserve(None, 100, FEB_15_NOON)
        .unwrap()
        .settle(100, FEB_15_NOON);
    let anonymous = budgets.reserve(None, 1, FEB_15_NOON).unwrap_err();
    assert_eq!(anonymous.consumer, "-");
    // An empty rule exempts a consumer from the default.
    let root = budgets.reserve(Some("root"), u64::MAX, FEB_15_NOON).unwrap();
    assert!(!root.is_limited());
    assert_eq!(budgets.period_start_ms("root", FEB_15_NOON), None);
    assert_eq!(budgets.period_start_ms("bob", FEB_15_NOON), Some(ms(2026, 2, 15)));
}

#[test]
fn consumers_without_any_rule_are_unlimited() {
    let budgets = Arc::new(Budgets::new(&BudgetConfig::default()));
    let reservation = budgets.reserve(Some("anyone"), u64::MAX, FEB_15_NOON).unwrap();
    assert!(!reservation.is_limited());
    reservation.settle(u64::MAX, FEB_15_NOON);
    assert!(budgets.lock().is_empty(), "no state is kept for them");
    assert_eq!(budgets.period_start_ms("anyone", FEB_15_NOON), None);
}

#[test]
fn a_day_budget_starts_again_at_midnight_utc() {
    let budgets = alice_budget(1000, "day");
    budgets
        .reserve(Some("alice"), 1000, FEB_15_NOON)
        .unwrap()
        .settle(1000, FEB_15_NOON);
    let refused = budgets.reserve(Some("alice"), 1, ms(2026, 2, 16) - 1).unwrap_err();
    assert_eq!(refused.retry_after_secs, 1);
    budgets
        .reserve(Some("alice"), 1000, ms(2026, 2, 16))
        .unwrap()
        .settle(10, ms(2026, 2, 16));
    assert_eq!(counts(&budgets, "alice").0, (10, 0));
}

#[test]
fn a_month_budget_covers_the_calendar_month() {
    let budgets = alice_budget(1000, "month");
    budgets
        .reserve(Some("alice"), 900, ms(2026, 2, 1))
        .unwrap()
        .settle(900, ms(2026, 2, 1));
    let refused = budgets
        .reserve(Some("alice"), 200, ms(2026, 2, 28) + 23 * HOUR_MS)
        .unwrap_err();
    assert_eq!(refused.retry_after_secs, 3600, "February 2026 ends after the 28th");
    assert_eq!(refused.limit, LimitKind::Budget { period: Period::Month });
    budgets
        .reserve(Some("alice"), 1000, ms(2026, 3, 1))
        .unwrap()
        .settle(1000, ms(2026, 3, 1));
    assert!(budgets.reserve(Some("alice"), 1, ms(2026, 3, 31)).is_err());
    assert!(budgets.reserve(Some("alice"), 1, ms(2026, 4, 1)).is_ok());
}

#[test]
fn a_request_in_flight_over_midnight_is_charged_to_the_new_day() {
    let budgets = alice_budget(1000, "day");
    let late = budgets.reserve(Some("alice"), 600, ms(2026, 2, 16) - 1000).unwrap();
    // The new day starts with nothing used, but the reservation still
    // holds its room.
    assert!(budgets.reserve(Some("alice"), 401, ms(2026, 2, 16)).is_err());
    late.settle(500, ms(2026, 2, 16) + 1000);
    assert_eq!(counts(&budgets, "alice").0, (500, 0));
}

#[test]
fn the_rolling_minute_frees_tokens_sixty_seconds_after_they_were_used() {
    let budgets = budgets(serde_json::json!({ "consumers": { "alice": { "tokens_per_minute": 1000 } } }));
    let start = FEB_15_NOON;
    budgets.reserve(Some("alice"), 600, start).unwrap().settle(600, start);
    budgets
        .reserve(Some("alice"), 400, start + 20_000)
        .unwrap()
        .settle(400, start + 20_000);
    let refused = budgets.reserve(Some("alice"), 500, start + 30_000).unwrap_err();
    assert_eq!(refused.limit, LimitKind::TokensPerMinute);
    assert_eq!(refused.retry_after_secs, 30, "the first 600 expire at +60 s");
    assert_eq!(
        refused.to_string(),
        "consumer alice: limit of 1000 tokens per minute reached (1000 used in the last 60 s, 0 reserved by \
         requests in flight, this request needs up to 500); retry in 30 s"
    );
    assert!(budgets.reserve(Some("alice"), 500, start + 59_999).is_err());
    budgets
        .reserve(Some("alice"), 600, start + 60_000)
        .unwrap()
        .settle(600, start + 60_000);
    assert_eq!(counts(&budgets, "alice").1, (1000, 0));
    let refused = budgets.reserve(Some("alice"), 1000, start + 61_000).unwrap_err();
    assert_eq!(refused.retry_after_secs, 59, "both later charges must expire");
    assert!(budgets.reserve(Some("alice"), 1000, start + 120_000).is_ok());
}

#[test]
fn with_both_limits_the_one_that_frees_last_is_reported() {
    let budgets = budgets(serde_json::json!({
        "consumers": { "alice": { "tokens": 1000, "period": "hour", "tokens_per_minute": 500 } }
    }));
    budgets
        .reserve(Some("alice"), 500, FEB_15_NOON)
        .unwrap()
        .settle(500, FEB_15_NOON);
    let minute = budgets.reserve(Some("alice"), 100, FEB_15_NOON + 1000).unwrap_err();
    assert_eq!(minute.limit, LimitKind::TokensPerMinute);
    budgets
        .reserve(Some("alice"), 500, FEB_15_NOON + 60_000)
        .unwrap()
        .settle(500, FEB_15_NOON + 60_000);
    let both = budgets.reserve(Some("alice"), 100, FEB_15_NOON + 61_000).unwrap_err();
    assert_eq!(both.limit, LimitKind::Budget { period: Period::Hour });
    assert_eq!(both.retry_after_secs, 3600 - 61);
}

#[test]
fn dropping_a_reservation_releases_it_and_charges_nothing() {
    let budgets = budgets(serde_json::json!({
        "consumers": { "alice": { "tokens": 1000, "tokens_per_minute": 1000 } }
    }));
    let failed = budgets.reserve(Some("alice"), 1000, FEB_15_NOON).unwrap();
    assert!(budgets.reserve(Some("alice"), 1, FEB_15_NOON).is_err());
    drop(failed);
    assert_eq!(counts(&budgets, "alice"), ((0, 0), (0, 0)));
    assert!(budgets.reserve(Some("alice"), 1000, FEB_15_NOON).is_ok());
}

#[test]
fn restore_counts_what_the_ledger_says_was_spent() {
    let budgets = alice_budget(1000, "month");
    let now = ms(2026, 2, 20);
    assert_eq!(budgets.period_start_ms("alice", now), Some(ms(2026, 2, 1)));
    budgets.restore("alice", 700, now);
    budgets.restore("alice", 700, now);
    assert_eq!(
        counts(&budgets, "alice").0,
        (700, 0),
        "restoring twice does not count twice"
    );
    assert_eq!(budgets.reserve(Some("alice"), 301, now).unwrap_err().used_tokens, 700);
    assert!(budgets.reserve(Some("alice"), 300, now).is_ok());
    budgets.restore("nobody", 5, now);
    assert!(
        !budgets.lock().contains_key("nobody"),
        "consumers without a rule keep no state"
    );
}

/// 64 threads reserving and settling for one consumer: with estimates
/// that bound the actual count, `used + reserved` never passes the
/// limit, and the budget still fills up.
#[test]
fn sixty_four_threads_never_exceed_the_limit() {
    const LIMIT: u64 = 50_000;
    let budgets = budgets(serde_json::json!({
        "consumers": { "alice": { "tokens": LIMIT, "tokens_per_minute": LIMIT } }
    }));
    std::thread::scope(|scope| {
        for thread in 0..64u64 {
            let budgets = &budgets;
            scope.spawn(move || {
                for i in 0..400u64 {
                    let estimate = 1 + (thread * 7 + i * 13) % 100;
                    let now = FEB_15_NOON + (i % 50) as i64;
                    let Ok(reservation) = budgets.reserve(Some("alice"), estimate, now) else {
                        continue;
                    };
                    match i % 5 {
                        0 => drop(reservation),
                        1 => reservation.settle(estimate / 2, now),
                        _ => reservation.settle(estimate, now),
                    }
                    let ((used, reserved), (minute_used, minute_reserved)) = counts(budgets, "alice");
                    assert!(used + reserved <= LIMIT, "{used} + {reserved}");
                    assert!(
                        minute_used + minute_reserved <= LIMIT,
                        "{minute_used} + {minute_reserved}"
                    );
                }
            });
        }
    });
    let ((used, reserved), _) = counts(&budgets, "alice");
    assert_eq!(reserved, 0, "every reservation was released");
    assert!(used <= LIMIT, "used {used}");
    // Nothing leaked: what is left can still be spent, to the token.
    while let Ok(reservation) = budgets.reserve(Some("alice"), 1, FEB_15_NOON) {
        reservation.settle(1, FEB_15_NOON);
    }
    assert_eq!(counts(&budgets, "alice").0, (LIMIT, 0));
}

/// When actual counts exceed estimates by `OVER`, the overshoot is at
/// most `OVER` per request that was in flight at once (64 here).
#[test]
fn sixty_four_threads_overshoot_by_at_most_the_excess_of_requests_in_flight() {
    const LIMIT: u64 = 50_000;
    const OVER: u64 = 10;
    let budgets = alice_budget(LIMIT, "day");
    std::thread::scope(|scope| {
        for thread in 0..64u64 {
            let budgets = &budgets;
            scope.spawn(move || {
                for i in 0..400u64 {
                    let estimate = 1 + (thread * 7 + i * 13) % 100;
                    if let Ok(reservation) = budgets.reserve(Some("alice"), estimate, FEB_15_NOON) {
                        reservation.settle(estimate + OVER, FEB_15_NOON);
                    }
                }
            });
        }
    });
    let ((used, reserved), _) = counts(&budgets, "alice");
    assert_eq!(reserved, 0);
    assert!(used <= LIMIT + 64 * OVER, "used {used}");
}

#[test]
fn config_refuses_unknown_keys_and_reports_a_period_without_tokens() {
    let unknown = serde_json::from_value::<BudgetConfig>(serde_json::json!({
        "consumers": { "alice": { "token": 5 } }
    }));
    assert!(unknown.unwrap_err().to_string().contains("token"));
    let config: BudgetConfig = serde_json::from_value(serde_json::json!({
        "default": { "period": "hour" },
        "consumers": { "bob": { "tokens_per_minute": 5, "period": "month" }, "alice": { "tokens": 5 } }
    }))
    .unwrap();
    assert_eq!(
        config.validate(),
        [
            "default.period: a period needs `tokens` to say the budget",
            "consumers.bob.period: a period needs `tokens` to say the budget",
        ]
    );
}
