//! The history's unit tests: buckets, the window, the error ring, labels
//! past their caps and AI usage, at injected times.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use http::Method;
use serde_json::{Value, json};

use super::*;
use crate::record::Phase;
use weir_config::{PluginName, RouteName};

/// A moment well after the epoch, on a minute's start.
const T0: i64 = 1_700_000_040_000;

fn request(route: Option<&str>, status: u16, error: Option<&'static str>) -> RequestRecord {
    let mut record = RequestRecord::new(Method::GET, "/items", IpAddr::V4(Ipv4Addr::LOCALHOST));
    record.route = route.map(|r| RouteName(r.into()));
    record.status = status;
    record.error = error;
    record
}

fn history() -> History {
    History::starting_at(T0)
}

impl History {
    /// A snapshot as the admin API writes it: the tests read the wire
    /// format the dashboard reads.
    fn snapshot_json(&self, minutes: u64, now_ms: i64) -> Value {
        serde_json::to_value(self.snapshot_at(minutes, now_ms)).expect("a snapshot is JSON")
    }
}

fn route<'a>(snapshot: &'a Value, name: &str) -> &'a Value {
    snapshot["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == name)
        .unwrap_or_else(|| panic!("no route {name} in {snapshot:#}"))
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn requests_fall_into_five_second_buckets() {
    let h = history();
    // Three in the first bucket, one at its last millisecond, one in
    // the next bucket.
    for at in [0, 1_000, 4_999] {
        h.record_at(&request(Some("api"), 200, None), ms(1), T0 + at);
    }
    h.record_at(&request(Some("api"), 502, Some("upstream-connect")), ms(1), T0 + 5_000);
    let snap = h.snapshot_json(1, T0 + 9_000);
    let api = route(&snap, "api");
    let points = api["points"].as_array().unwrap();
    assert_eq!(points.len(), 2, "{api:#}");
    assert_eq!(points[0]["t"], T0);
    assert_eq!(points[0]["requests"], 3);
    assert_eq!(points[0]["errors"], 0);
    assert_eq!(points[0]["rps"], 3.0 / 5.0);
    assert_eq!(points[1]["t"], T0 + 5_000);
    assert_eq!(points[1]["errors"], 1);
    // The current bucket covers only the 4 s up to now.
    assert_eq!(points[1]["secs"], 4.0);
    assert_eq!(api["requests"], 4);
    assert_eq!(api["errors"], 1);
    assert_eq!(api["error_rate"], 0.25);
    assert_eq!(snap["totals"]["requests"], 4);
}

#[test]
fn errors_are_server_errors_and_gateway_errors() {
    assert!(!is_error(200, None));
    assert!(!is_error(401, None), "a plugin's refusal is an answer, not an error");
    assert!(is_error(404, Some("no-route")));
    assert!(is_error(500, None));
    assert!(is_error(503, Some("plugin-missing")));
    assert!(!attempt_failed(AttemptOutcome::Answered(404)));
    assert!(attempt_failed(AttemptOutcome::Answered(503)));
    assert!(attempt_failed(AttemptOutcome::ConnectError));
    assert!(attempt_failed(AttemptOutcome::Timeout));
}

#[test]
fn the_window_and_the_last_minute_leave_older_buckets_out() {
    let h = history();
    h.record_at(&request(Some("api"), 200, None), ms(1), T0);
    h.record_at(&request(Some("api"), 200, None), ms(1), T0 + 70_000);
    h.record_at(&request(Some("api"), 500, None), ms(1), T0 + 100_000);
    let now = T0 + 119_000;
    let one = h.snapshot_json(1, now);
    assert_eq!(route(&one, "api")["requests"], 2, "the last minute only");
    let two = h.snapshot_json(2, now);
    let api = route(&two, "api");
    assert_eq!(api["requests"], 3);
    assert_eq!(api["last_minute"]["requests"], 2);
    assert_eq!(api["last_minute"]["errors"], 1);
    // The last minute covers the buckets from T0+60s to now: 59 s.
    assert_eq!(api["last_minute"]["rps"], 2.0 / 59.0);
    // Out of range asks are clamped to 1..=15 minutes.
    assert_eq!(h.snapshot_json(0, now)["minutes"], 1);
    assert_eq!(h.snapshot_json(60, now)["minutes"], 15);
}

#[test]
fn a_bucket_is_reused_once_the_window_has_passed_it() {
    let h = history();
    h.record_at(&request(Some("old"), 200, None), ms(1), T0);
    // Exactly one window later: the same slot, a new bucket.
    let later = T0 + (WINDOW_MINUTES * 60_000) as i64;
    h.record_at(&request(Some("new"), 200, None), ms(1), later);
    let snap = h.snapshot_json(15, later);
    assert_eq!(snap["routes"].as_array().unwrap().len(), 1, "{snap:#}");
    assert_eq!(route(&snap, "new")["requests"], 1);
    let inner = h.inner.lock().unwrap();
    assert_eq!(inner.slots.len(), SLOTS);
    assert_eq!(inner.slots.iter().filter(|s| !s.routes.map.is_empty()).count(), 1);
}

#[test]
fn plugins_and_targets_are_tallied() {
    let h = history();
    let mut record = request(Some("api"), 200, None);
    record.upstream = Some(weir_config::UpstreamName("echo".into()));
    let auth = PluginName("auth".into());
    record.plugin_call(&auth, Phase::Request, Instant::now(), PluginOutcome::Continue);
    record.plugins[0].duration = ms(2);
    record.plugin_call(&auth, Phase::Response, Instant::now(), PluginOutcome::Continue);
    record.plugins[1].duration = ms(3);
    record.attempt(
        "127.0.0.1:1".into(),
        [1; 8],
        Instant::now(),
        AttemptOutcome::ConnectError,
    );
    record.attempt(
        "127.0.0.1:2".into(),
        [2; 8],
        Instant::now(),
        AttemptOutcome::Answered(200),
    );
    h.record_at(&record, ms(10), T0);
    h.record_at(&record, ms(10), T0 + 1);
    let snap = h.snapshot_json(5, T0 + 2_000);
    let plugin = &snap["plugins"][0];
    assert_eq!(plugin["plugin"], "auth");
    assert_eq!(plugin["calls"], 4);
    assert_eq!(plugin["total_ms"], 10.0);
    assert_eq!(plugin["mean_ms"], 2.5);
    let targets = snap["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 2);
    assert_eq!(targets[0]["upstream"], "echo");
    assert_eq!(targets[0]["target"], "127.0.0.1:1");
    assert_eq!(targets[0]["attempts"], 2);
    assert_eq!(targets[0]["failures"], 2);
    assert_eq!(targets[1]["failures"], 0);
}

#[test]
fn labels_past_the_cap_count_as_other() {
    let h = history();
    for i in 0..MAX_LABELS + 50 {
        let name = format!("r{i}");
        h.record_at(&request(Some(&name), 200, None), ms(1), T0);
    }
    let snap = h.snapshot_json(1, T0);
    let routes = snap["routes"].as_array().unwrap();
    assert_eq!(routes.len(), MAX_LABELS);
    assert_eq!(route(&snap, OTHER)["requests"], 51);
    assert_eq!(snap["totals"]["requests"], (MAX_LABELS + 50) as u64);
    // A label already kept keeps counting apart.
    h.record_at(&request(Some("r0"), 200, None), ms(1), T0);
    assert_eq!(route(&h.snapshot_json(1, T0), "r0")["requests"], 2);
}

#[test]
fn the_error_ring_keeps_the_last_fifty_newest_first() {
    let h = history();
    for i in 0..RECENT_ERRORS as i64 + 10 {
        let mut record = request(Some("api"), 500, Some("plugin-trap"));
        record.unix_ms = T0 + i;
        record.path = format!("/e/{i}");
        h.record_at(&record, ms(1), T0 + i);
    }
    h.record_at(&request(Some("api"), 200, None), ms(1), T0 + 100);
    let long = "x".repeat(10_000);
    let snap = h.snapshot_json(1, T0 + 1_000);
    let errors = snap["errors"].as_array().unwrap();
    assert_eq!(errors.len(), RECENT_ERRORS);
    assert_eq!(errors[0]["path"], "/e/59");
    assert_eq!(errors[0]["status"], 500);
    assert_eq!(errors[0]["error"], "plugin-trap");
    assert_eq!(errors[0]["route"], "api");
    assert_eq!(errors[0]["method"], "GET");
    assert_eq!(errors[RECENT_ERRORS - 1]["path"], "/e/10");
    let mut record = request(None, 404, Some("no-route"));
    record.path = long;
    h.record_at(&record, ms(1), T0 + 2_000);
    let snap = h.snapshot_json(1, T0 + 2_000);
    let path = snap["errors"][0]["path"].as_str().unwrap();
    assert_eq!(path.chars().count(), MAX_PATH + 1);
    assert!(snap["errors"][0]["route"].is_null());
}

fn usage(prompt: u64, completion: u64, cost: Option<f64>) -> AiTally {
    AiTally {
        calls: 1,
        prompt_tokens: prompt,
        completion_tokens: completion,
        cost: cost.unwrap_or(0.0),
        priced: cost.is_some(),
    }
}

#[test]
fn ai_usage_is_kept_per_minute_by_model_and_consumer() {
    let h = history();
    h.ai_usage_at("chat", "openai", "gpt-4o", Some("alice"), usage(10, 5, Some(0.5)), T0);
    h.ai_usage_at(
        "chat",
        "openai",
        "gpt-4o",
        Some("bob"),
        usage(20, 10, Some(1.0)),
        T0 + 30_000,
    );
    h.ai_usage_at("chat", "local", "llama", None, usage(100, 50, None), T0 + 61_000);
    let snap = h.snapshot_json(15, T0 + 61_000);
    let ai = &snap["ai"];
    assert_eq!(ai["calls"], 3);
    assert_eq!(ai["tokens"], 195);
    assert_eq!(ai["cost"], 1.5);
    let minutes = ai["minutes"].as_array().unwrap();
    assert_eq!(minutes.len(), 2);
    assert_eq!(minutes[0]["t"], T0);
    assert_eq!(minutes[0]["tokens"], 45);
    assert_eq!(minutes[1]["cost"], Value::Null, "no priced usage in that minute");
    let models = ai["models"].as_array().unwrap();
    assert_eq!(models[0]["name"], "llama", "biggest first");
    assert_eq!(models[0]["cost"], Value::Null);
    assert_eq!(models[1]["name"], "gpt-4o");
    assert_eq!(models[1]["prompt_tokens"], 30);
    assert_eq!(models[1]["completion_tokens"], 15);
    assert_eq!(models[1]["points"].as_array().unwrap().len(), 1);
    let consumers = ai["consumers"].as_array().unwrap();
    let names: Vec<&str> = consumers.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, [ANONYMOUS, "bob", "alice"]);
    assert_eq!(ai["targets"][0]["name"], "chat/local");
    // The last minute only.
    let recent = h.snapshot_json(1, T0 + 61_000);
    assert_eq!(recent["ai"]["calls"], 1);
    // No AI traffic: empty lists, not an error.
    let empty = history().snapshot_json(15, T0);
    assert_eq!(empty["ai"]["calls"], 0);
    assert_eq!(empty["ai"]["models"], json!([]));
}

#[test]
fn the_twenty_biggest_consumers_are_listed_and_the_rest_is_other() {
    let h = history();
    for i in 0..30u64 {
        let name = format!("c{i:02}");
        h.ai_usage_at("chat", "t", "m", Some(&name), usage(100 + i, 0, None), T0);
    }
    let snap = h.snapshot_json(1, T0);
    let consumers = snap["ai"]["consumers"].as_array().unwrap();
    assert_eq!(consumers.len(), AI_TOP + 1);
    assert_eq!(consumers[0]["name"], "c29");
    assert_eq!(consumers[AI_TOP - 1]["name"], "c10");
    let other = &consumers[AI_TOP];
    assert_eq!(other["name"], OTHER);
    assert_eq!(other["calls"], 10);
    assert_eq!(other["tokens"], (100..110).sum::<u64>());
    assert_eq!(other["points"].as_array().unwrap().len(), 1);
}

#[test]
fn ai_labels_past_the_cap_push_the_smallest_into_other() {
    let h = history();
    for i in 0..AI_TRACKED as u64 * 3 {
        let name = format!("c{i}");
        // Growing usage: each new consumer is bigger than any before.
        h.ai_usage_at("chat", "t", "m", Some(&name), usage(i + 1, 0, None), T0);
    }
    {
        let inner = h.inner.lock().unwrap();
        let slot = inner.ai.iter().find(|s| s.used).unwrap();
        assert_eq!(slot.consumers.map.len(), AI_TRACKED);
        assert!(slot.consumers.map.contains_key("c299"), "the biggest are kept");
        assert!(!slot.consumers.map.contains_key("c0"));
        assert_eq!(slot.consumers.other.calls, AI_TRACKED as u64 * 2);
    }
    // A newcomer smaller than every one kept goes straight to other.
    h.ai_usage_at("chat", "t", "m", Some("tiny"), usage(1, 0, None), T0);
    let inner = h.inner.lock().unwrap();
    let slot = inner.ai.iter().find(|s| s.used).unwrap();
    assert!(!slot.consumers.map.contains_key("tiny"));
    assert_eq!(slot.consumers.other.calls, AI_TRACKED as u64 * 2 + 1);
    // Nothing is lost: the total counts every call.
    assert_eq!(slot.total.calls, AI_TRACKED as u64 * 3 + 1);
}

#[test]
fn ai_minutes_older_than_the_window_are_dropped() {
    let h = history();
    h.ai_usage_at("chat", "t", "old", None, usage(1, 1, None), T0);
    let later = T0 + (AI_SLOTS as i64) * 60_000;
    h.ai_usage_at("chat", "t", "new", None, usage(1, 1, None), later);
    let snap = h.snapshot_json(15, later);
    assert_eq!(snap["ai"]["calls"], 1);
    assert_eq!(snap["ai"]["models"][0]["name"], "new");
    assert_eq!(h.inner.lock().unwrap().ai.len(), AI_SLOTS);
}
