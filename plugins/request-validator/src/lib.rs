//! `request-validator`: check requests before they reach the upstream, and
//! answer 4xx naming the problem.
//!
//! The checks — allowed methods (405), required headers and query
//! parameters (400), body size (413), content type (415), and the body's
//! JSON syntax and shape against a small JSON Schema subset (400) — are
//! compiled in `configure`, where anything the plugin cannot enforce
//! (an unsupported schema keyword, a bad pattern, a contradiction) is an
//! error naming the field. Checks at the top of the config apply to every
//! request; `rules` add checks for some paths and methods, the first
//! matching rule winning.
//!
//! The plugin asks the gateway for request bodies only when some check
//! reads one, and runs only in the request phase.
//!
//! See README.md for the config fields and every supported keyword.

mod json_body;
mod media_type;
mod path_match;
mod policy;
mod query;
mod schema;
mod settings;

use weir_sdk::{Action, Config, Interests, Plugin, Reply, Request, export_plugin};

use policy::{Incoming, Policy, Rejection};
use settings::Settings;

/// `request-validator` configured for one route.
struct RequestValidator {
    policy: Policy,
}

impl Plugin for RequestValidator {
    fn configure(config: Config) -> Result<Self, String> {
        let settings: Settings = config.settings()?;
        Ok(RequestValidator {
            policy: settings.compile()?,
        })
    }

    fn interests(&self) -> Interests {
        Interests {
            on_request: true,
            request_body: self.policy.reads_body(),
            on_response: false,
            ..Interests::default()
        }
    }

    fn on_request(&self, request: &Request) -> Action {
        match self.policy.judge(request) {
            Ok(()) => Action::Continue,
            Err(rejection) => Action::Respond(reply(&rejection)),
        }
    }
}

impl Incoming for Request {
    fn method(&self) -> String {
        Request::method(self)
    }
    fn path(&self) -> String {
        Request::path(self)
    }
    fn header(&self, name: &str) -> Option<String> {
        Request::header(self, name)
    }
    fn header_count(&self, name: &str) -> usize {
        self.header_all(name).len()
    }
    fn body(&self) -> Option<Vec<u8>> {
        Request::body(self)
    }
}

/// The refusal as a JSON answer, with `allow` on a 405.
fn reply(rejection: &Rejection) -> Reply {
    let mut reply = Reply::new(rejection.status);
    if let Some(allow) = &rejection.allow {
        reply = reply.header("allow", allow);
    }
    reply.json(&rejection.body())
}

export_plugin!(RequestValidator);

/// Every config the README shows is accepted by `configure`.
#[cfg(test)]
#[test]
fn readme_configs_are_accepted() {
    weir_sdk::testing::check_readme_configs(
        include_str!("../README.md"),
        env!("CARGO_PKG_NAME"),
        RequestValidator::configure,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_json_with_allow_on_405() {
        let rejection = Rejection {
            status: 405,
            error: "method not allowed".into(),
            problems: Vec::new(),
            allow: Some("GET, POST".into()),
        };
        let reply = reply(&rejection);
        assert_eq!(reply.status, 405);
        assert!(reply.headers.contains(&("allow".into(), "GET, POST".into())));
        assert!(
            reply
                .headers
                .contains(&("content-type".into(), "application/json".into()))
        );
        assert_eq!(reply.body, br#"{"error":"method not allowed"}"#);
    }
}
