//! `headers`: edit request and response headers, and rewrite the start of
//! the request path.
//!
//! Each direction's edits apply in a fixed order — rename, remove, set,
//! add — so a config reads the same whatever order its tables are written
//! in. The path prefix is rewritten before the request's header edits.
//! Names and values are checked in `configure`; an edit the host still
//! refuses is logged and the rest go ahead.
//!
//! See README.md for the config fields.

mod edits;
mod path_prefix;
#[cfg(test)]
#[path = "../../readme_examples.rs"]
mod readme_examples;
mod settings;

use weir_sdk::{Action, Config, Interests, Plugin, Request, Response, export_plugin, log};

use edits::Headers;
use settings::Settings;

/// `headers` configured for one route.
struct HeaderRewrite {
    settings: Settings,
}

impl Plugin for HeaderRewrite {
    fn configure(config: Config) -> Result<Self, String> {
        Ok(HeaderRewrite {
            settings: Settings::from_json(config.as_json())?,
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
        for refused in self.settings.request.apply(request) {
            log::warn(&format!("request header {refused}"));
        }
        Action::Continue
    }

    fn on_response(&self, response: &Response) {
        for refused in self.settings.response.apply(response) {
            log::warn(&format!("response header {refused}"));
        }
    }
}

/// Requests and responses offer the same header methods.
macro_rules! impl_headers {
    ($($handle:ty),*) => {$(
        impl Headers for $handle {
            fn values(&self, name: &str) -> Vec<String> {
                self.header_all(name)
            }
            fn set(&self, name: &str, value: &str) -> Result<(), String> {
                self.set_header(name, value).map_err(|e| format!("{e:?}"))
            }
            fn append(&self, name: &str, value: &str) -> Result<(), String> {
                self.append_header(name, value).map_err(|e| format!("{e:?}"))
            }
            fn remove(&self, name: &str) {
                self.remove_header(name)
            }
        }
    )*};
}

impl_headers!(Request, Response);

export_plugin!(HeaderRewrite);
