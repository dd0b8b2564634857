//! `headers`: edit request and response headers, and rewrite the start of
//! the request path.
//!
//! Each direction's edits apply in a fixed order — rename, remove, set,
//! add — so a config reads the same whatever order its tables are written
//! in. The path prefix is rewritten before the request's header edits.
//! Names and values are checked in `configure`, and each direction's
//! edits go to the host in one call; should the host still refuse one, it
//! applies none of them and the refusal is logged.
//!
//! See README.md for the config fields.

mod edits;
mod path_prefix;
mod settings;

use weir_sdk::{Action, Config, HeaderEdit, Interests, Plugin, Request, Response, export_plugin, log};

use edits::Headers;
use settings::Settings;

/// `headers` configured for one route.
struct HeaderRewrite {
    settings: Settings,
    /// Each direction's edits, built once: a request costs one host call
    /// per direction.
    request_edits: Vec<HeaderEdit>,
    response_edits: Vec<HeaderEdit>,
}

impl Plugin for HeaderRewrite {
    fn configure(config: Config) -> Result<Self, String> {
        let settings: Settings = config.settings()?;
        Ok(HeaderRewrite {
            request_edits: settings.request.to_edits(),
            response_edits: settings.response.to_edits(),
            settings,
        })
    }

    fn interests(&self) -> Interests {
        Interests {
            on_request: !self.settings.request.is_empty() || self.settings.path_prefix.is_some(),
            on_response: !self.settings.response.is_empty(),
            ..Interests::default()
        }
    }

    fn on_request(&self, request: &Request) -> Action {
        if let Some(prefix) = &self.settings.path_prefix
            && let Some(path) = path_prefix::rewrite(&request.path(), &prefix.from, &prefix.to)
            && let Err(e) = request.set_path(&path)
        {
            log::warn(&format!("path_prefix: host refused path {path:?}: {e:?}"));
        }
        if let Err(refused) = edits::apply(&self.request_edits, request) {
            log::warn(&format!("request headers: {refused}"));
        }
        Action::Continue
    }

    fn on_response(&self, response: &Response) {
        if let Err(refused) = edits::apply(&self.response_edits, response) {
            log::warn(&format!("response headers: {refused}"));
        }
    }
}

/// Requests and responses offer the same header methods.
macro_rules! impl_headers {
    ($($handle:ty),*) => {$(
        impl Headers for $handle {
            fn edit(&self, edits: &[HeaderEdit]) -> Result<(), String> {
                self.edit_headers(edits).map_err(|e| format!("{e:?}"))
            }
        }
    )*};
}

impl_headers!(Request, Response);

export_plugin!(HeaderRewrite);

/// Every config the README shows is accepted by `configure`.
#[cfg(test)]
#[test]
fn readme_configs_are_accepted() {
    weir_sdk::testing::check_readme_configs(
        include_str!("../README.md"),
        env!("CARGO_PKG_NAME"),
        HeaderRewrite::configure,
    );
}
