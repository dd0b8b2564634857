//! `cors`: Cross-Origin Resource Sharing at the gateway.
//!
//! Preflights (`OPTIONS` with `origin` and `access-control-request-method`)
//! are answered here and never reach the upstream: 204 with the
//! `access-control-allow-*` headers if the origin, the method and every
//! requested header are allowed, else 403 with a JSON error naming what
//! was refused.
//!
//! Other requests pass through whatever their origin: the browser, not the
//! gateway, keeps a page from reading a response it was not allowed. The
//! request phase records the request's `origin` in the request property
//! `cors-origin`; the response phase checks it against the config again
//! and, for an allowed origin, sets `access-control-allow-origin` (and
//! `-credentials`, `-expose-headers`), or removes them for any other.
//! `vary: origin` is added whenever the answer depends on the origin.
//!
//! See README.md for the config fields.

mod origin;
mod policy;
mod settings;

use weir_sdk::{Action, Config, HeaderEdit, Interests, Plugin, Request, Response, export_plugin, log};

use settings::{Fields, Settings};

/// Carries the request's `origin` to the response phase, which cannot see
/// request headers.
const ORIGIN_PROPERTY: &str = "cors-origin";

/// `cors` configured for one route.
struct Cors {
    settings: Settings,
}

impl Plugin for Cors {
    fn configure(config: Config) -> Result<Self, String> {
        let fields: Fields = config.settings()?;
        Ok(Cors {
            settings: Settings::try_from(fields)?,
        })
    }

    fn interests(&self) -> Interests {
        Interests {
            on_request: true,
            on_response: true,
            ..Interests::default()
        }
    }

    fn on_request(&self, request: &Request) -> Action {
        // Not a cross-origin request: nothing to do until the response.
        let Some(origin) = request.header("origin") else {
            return Action::Continue;
        };
        if let Some(method) = preflight_method(&request.method(), || request.header("access-control-request-method")) {
            let requested = request.header_all("access-control-request-headers");
            return Action::Respond(self.settings.preflight(&origin, &method, &requested));
        }
        request.set_property(ORIGIN_PROPERTY, &origin);
        Action::Continue
    }

    fn on_response(&self, response: &Response) {
        let origin = response.property(ORIGIN_PROPERTY);
        let mut edits: Vec<HeaderEdit> = self
            .settings
            .response_headers(origin.as_deref())
            .into_iter()
            .map(|(name, value)| match value {
                Some(value) => HeaderEdit::Set((name.to_string(), value)),
                None => HeaderEdit::Remove(name.to_string()),
            })
            .collect();
        // With `*` the answer never depends on the origin: skip the read.
        if !self.settings.any_origin() && self.settings.needs_vary_origin(&response.header_all("vary")) {
            edits.push(HeaderEdit::Append(("vary".to_string(), "origin".to_string())));
        }
        if let Err(e) = response.edit_headers(&edits) {
            log::warn(&format!("could not set the CORS headers: {e:?}"));
        }
    }
}

/// The method a preflight asks for, if the request is a preflight: an
/// `OPTIONS` with `access-control-request-method` (read only then). Any
/// other `OPTIONS` is an ordinary request for the upstream.
fn preflight_method(method: &str, requested_method: impl FnOnce() -> Option<String>) -> Option<String> {
    if method == "OPTIONS" { requested_method() } else { None }
}

export_plugin!(Cors);

/// Every config the README shows is accepted by `configure`.
#[cfg(test)]
#[test]
fn readme_configs_are_accepted() {
    weir_sdk::testing::check_readme_configs(include_str!("../README.md"), env!("CARGO_PKG_NAME"), Cors::configure);
}

#[cfg(test)]
mod tests {
    use super::preflight_method;

    #[test]
    fn only_options_with_a_requested_method_is_a_preflight() {
        assert_eq!(preflight_method("OPTIONS", || Some("PUT".into())), Some("PUT".into()));
        assert_eq!(preflight_method("OPTIONS", || None), None);
        assert_eq!(preflight_method("GET", || panic!("read only for OPTIONS")), None);
    }
}
