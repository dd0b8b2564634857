//! Used by the per-route chain, config-rejection and capability-grant
//! tests.
//!
//! - `configure` fails with `rejected: REASON` for the config
//!   `{"reject": "REASON"}`, and keeps any other config.
//! - `on_request` capability probes:
//!   - `/spin…`: loops until its deadline ends the call.
//!   - `/kv…`: `kv::increment("hits", 1)`; 200 with the new count, or 500
//!     with the error's `Debug` text.
//!   - `/secret/NAME`: 200 with the secret's value, or 403 with the error's
//!     `Debug` text.
//!   - `/fetch?url=URL` (the raw rest of the query, not decoded): `GET URL`;
//!     the upstream's status and body, or 502 with the error's `Debug` text.
//!   - `/fetch-many?url=URL`: `GET URL` up to 40 times in one call,
//!     stopping at the first error; 200 with `N ok` and that error's
//!     `Debug` text.
//! - `/reply/STATUS` and `/reply/STATUS/HEADER-NAME`: answers at once with
//!   that status (however invalid) and a header of that name (`%20` read
//!   as a space), for the tests of plugin output the host must refuse.
//! - Any other request continues with request header `x-config` set to the
//!   config JSON as received (re-serialized compactly if it held control
//!   characters such as newlines), and `,NAME` appended to the property
//!   `seen-by` (just `NAME` if it was unset). NAME is the config's `name`
//!   string if it has one, else `guest-echo-config`. The new `seen-by` is
//!   also sent as request header `x-seen-by`, and `x-instance-calls` counts
//!   the requests this instance has handled (per-instance state).

use std::sync::atomic::{AtomicU64, Ordering};

use weir_sdk::{Action, Config, Plugin, Reply, Request, export_plugin, http, kv, secrets};

static CALLS: AtomicU64 = AtomicU64::new(0);

struct GuestEchoConfig {
    /// The config JSON, safe to send as a header value.
    json: String,
    /// What this instance appends to `seen-by`.
    name: String,
}

impl Plugin for GuestEchoConfig {
    fn configure(config: Config) -> Result<Self, String> {
        let value: serde_json::Value = config.parse()?;
        if let Some(reason) = value.get("reject") {
            let reason = reason.as_str().map_or_else(|| reason.to_string(), str::to_string);
            return Err(format!("rejected: {reason}"));
        }
        let raw = config.as_json();
        let json = if raw.chars().any(char::is_control) {
            value.to_string()
        } else {
            raw.to_string()
        };
        let name = value
            .get("name")
            .and_then(|n| n.as_str())
            .unwrap_or("guest-echo-config")
            .to_string();
        Ok(GuestEchoConfig { json, name })
    }

    fn on_request(&self, request: &Request) -> Action {
        let path = request.path();
        if path.starts_with("/spin") {
            // Busy until the deadline ends the call (this guest imports
            // outbound HTTP, so it is called on a fiber).
            let mut spins = 0u64;
            loop {
                spins = core::hint::black_box(spins.wrapping_add(1));
            }
        }
        if path.starts_with("/kv") {
            return Action::Respond(match kv::increment("hits", 1, None) {
                Ok(hits) => Reply::new(200).text(&hits.to_string()),
                Err(e) => Reply::new(500).text(&format!("{e:?}")),
            });
        }
        if let Some(name) = path.strip_prefix("/secret/") {
            let name = name.split('?').next().unwrap_or(name);
            return Action::Respond(match secrets::get(name) {
                Ok(value) => Reply::new(200).text(&value),
                Err(e) => Reply::new(403).text(&format!("{e:?}")),
            });
        }
        if let Some(url) = path.strip_prefix("/fetch-many?url=") {
            let mut ok = 0;
            let mut error = String::new();
            for _ in 0..40 {
                match http::send("GET", url, &[], &[], None) {
                    Ok(_) => ok += 1,
                    Err(e) => {
                        error = format!("{e:?}");
                        break;
                    }
                }
            }
            return Action::Respond(Reply::new(200).text(&format!("{ok} ok {error}")));
        }
        if let Some(spec) = path.strip_prefix("/reply/") {
            // An early answer exactly as asked, however wrong:
            // `/reply/STATUS` or `/reply/STATUS/HEADER-NAME` (the name
            // percent-decoded only for `%20`, so it may hold a space).
            let mut parts = spec.splitn(2, '/');
            let status = parts.next().and_then(|s| s.parse().ok()).unwrap_or(200);
            let headers = parts
                .next()
                .map(|name| vec![(name.replace("%20", " "), "x".to_string())])
                .unwrap_or_default();
            return Action::Respond(Reply {
                status,
                headers,
                body: b"as asked".to_vec(),
            });
        }
        if let Some(url) = path.strip_prefix("/fetch?url=") {
            return Action::Respond(match http::send("GET", url, &[], &[], None) {
                Ok(upstream) => Reply {
                    status: upstream.status,
                    headers: Vec::new(),
                    body: upstream.body,
                },
                Err(e) => Reply::new(502).text(&format!("{e:?}")),
            });
        }
        let _ = request.set_header("x-config", &self.json);
        let seen_by = match request.property("seen-by") {
            Some(before) if !before.is_empty() => format!("{before},{}", self.name),
            _ => self.name.clone(),
        };
        request.set_property("seen-by", &seen_by);
        let _ = request.set_header("x-seen-by", &seen_by);
        // How many requests this instance has handled: always 1 for a
        // plugin in `instance = "fresh"` mode.
        let calls = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
        let _ = request.set_header("x-instance-calls", &calls.to_string());
        Action::Continue
    }
}

export_plugin!(GuestEchoConfig);
