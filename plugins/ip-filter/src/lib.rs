//! `ip-filter`: let a request through or refuse it by the client's address.
//!
//! The client is the TCP peer (the request property `client-ip`, set by
//! the gateway) — unless the peer is one of `trusted_proxies`. Then the
//! forwarded header those proxies write (`x-forwarded-for` by default, or
//! `forwarded`) is walked from the right, past every trusted proxy, and
//! the first address that is not one is the client. A header from any
//! other peer is never read, so a client cannot talk its way in by
//! claiming another address.
//!
//! The address judged is published as the request property
//! `client-ip-resolved` (for rate limits and logs), then the rules apply:
//! `deny` wins over `allow`; if `allow` is set, whatever it does not list
//! is refused. A refusal is `403 {"error":"forbidden"}`. A request whose
//! client cannot be determined (no usable `client-ip`, or the walk reaches
//! a hop such as `unknown`) is refused the same way: fail closed.
//!
//! See README.md for the config fields.

mod forwarded;
mod networks;
mod settings;
mod verdict;

use serde_json::json;
use weir_sdk::{Action, Config, Interests, Plugin, Reply, Request, export_plugin, log};

use settings::{Fields, Settings};
use verdict::{Refusal, decide};

/// The property the gateway sets to the TCP peer's address.
const PEER_PROPERTY: &str = "client-ip";
/// The property this plugin sets to the address it judged.
const RESOLVED_PROPERTY: &str = "client-ip-resolved";

/// `ip-filter` configured for one route.
struct IpFilter {
    settings: Settings,
}

impl Plugin for IpFilter {
    fn configure(config: Config) -> Result<Self, String> {
        let fields: Fields = config.settings()?;
        Ok(IpFilter {
            settings: Settings::try_from(fields)?,
        })
    }

    fn interests(&self) -> Interests {
        Interests {
            on_request: true,
            on_response: false,
            ..Interests::default()
        }
    }

    fn on_request(&self, request: &Request) -> Action {
        let peer = request.property(PEER_PROPERTY);
        let verdict = decide(&self.settings, peer.as_deref(), |header| request.header_all(header));
        if let Some(judged) = verdict.judged {
            request.set_property(RESOLVED_PROPERTY, &judged.to_string());
        }
        match verdict.refusal {
            None => Action::Continue,
            Some(refusal) => {
                let client = verdict
                    .judged
                    .map_or_else(|| "unknown".to_string(), |ip| ip.to_string());
                match refusal {
                    // These point at the gateway's or a proxy's setup.
                    Refusal::NoPeerAddress | Refusal::UnreadableChain => {
                        log::warn(&format!("refused (peer {peer:?}): {refusal}"))
                    }
                    Refusal::Denied | Refusal::NotAllowed => log::debug(&format!("refused {client}: {refusal}")),
                }
                Action::Respond(Reply::new(403).json(&json!({ "error": "forbidden" })))
            }
        }
    }
}

export_plugin!(IpFilter);

/// Every config the README shows is accepted by `configure`.
#[cfg(test)]
#[test]
fn readme_configs_are_accepted() {
    weir_sdk::testing::check_readme_configs(
        include_str!("../README.md"),
        env!("CARGO_PKG_NAME"),
        IpFilter::configure,
    );
}
