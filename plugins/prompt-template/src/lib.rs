//! `prompt-template`: publish named, versioned prompt templates as REST
//! endpoints on an AI route.
//!
//! `POST /prompts/NAME` (or `/prompts/NAME/vN`) with a JSON object of
//! variables becomes an OpenAI chat completion request: the template's
//! messages with the variables filled in, its model and parameters. The
//! plugin rewrites the request to `POST /v1/chat/completions` with that
//! body, and the AI route serves it like any chat request. Other paths
//! pass through untouched.
//!
//! The work is in plain functions, tested natively: `settings` checks
//! the config and builds the `Catalog`, which matches the path
//! (`routing`), binds the variables and renders the request
//! (`template`). The [`Plugin`] impl below only reads from and writes to
//! the host.
//!
//! See README.md for the config fields, the errors and the escape rule.

mod catalog;
mod error;
mod placeholder;
mod routing;
mod settings;
mod template;
#[cfg(test)]
mod tests;
mod variables;

use weir_sdk::{Action, Config, Interests, Plugin, Request, export_plugin, log};

use catalog::{Catalog, ChatCall, Incoming, Outcome};
use error::PromptError;

/// Where the AI route serves chat completions.
const CHAT_COMPLETIONS: &str = "/v1/chat/completions";

/// `prompt-template` configured for one route.
struct PromptTemplates {
    catalog: Catalog,
}

impl Plugin for PromptTemplates {
    fn configure(config: Config) -> Result<Self, String> {
        let settings: settings::Settings = config.settings()?;
        Ok(PromptTemplates {
            catalog: settings.catalog()?,
        })
    }

    fn interests(&self) -> Interests {
        Interests {
            on_request: true,
            request_body: true,
            on_response: false,
            response_body: false,
            response_chunks: false,
        }
    }

    fn on_request(&self, request: &Request) -> Action {
        match self.catalog.handle(&request.path(), request) {
            Outcome::PassThrough => Action::Continue,
            Outcome::Reject(error) => Action::Respond(error.to_reply()),
            Outcome::Call(call) => match rewrite(request, &call) {
                Ok(()) => Action::Continue,
                Err(error) => Action::Respond(error.to_reply()),
            },
        }
    }
}

impl Incoming for Request {
    fn method(&self) -> String {
        Request::method(self)
    }

    fn accept(&self) -> Option<String> {
        self.header("accept")
    }

    fn body(&self) -> Option<Vec<u8>> {
        Request::body(self)
    }
}

/// Turn the request into the rendered chat completion call. The method is
/// already `POST` (nothing else gets here), and `set_body` has the host fix
/// `content-length`.
fn rewrite(request: &Request, call: &ChatCall) -> Result<(), PromptError> {
    request.set_body(call.body.as_bytes());
    let refused = |what: &str, e: weir_sdk::Error| {
        log::error(&format!("host refused {what}: {e:?}"));
        PromptError::internal(format!("could not rewrite the request for template {}", call.template))
    };
    request.set_path(CHAT_COMPLETIONS).map_err(|e| refused("the path", e))?;
    request
        .set_header("content-type", "application/json")
        .map_err(|e| refused("content-type", e))?;
    request.set_property("prompt-template", &call.template);
    request.set_property("prompt-version", &call.version.to_string());
    Ok(())
}

export_plugin!(PromptTemplates);
