//! The loaded templates, and what one request becomes: pass-through, an
//! error answer, or a chat completion call.

use std::collections::BTreeMap;

use crate::error::PromptError;
use crate::routing::{self, PathMatch};
use crate::template::Template;

/// Every template of one route, by name and version.
#[derive(Debug)]
pub struct Catalog {
    /// Starts and ends with `/`.
    prefix: String,
    templates: BTreeMap<String, BTreeMap<u32, Template>>,
}

/// What [`Catalog::handle`] reads of a request beyond its path, asked for
/// only once the path turns out to be a template call: each read is a
/// host call, and the body is a copy.
pub trait Incoming {
    /// The method, e.g. `POST`.
    fn method(&self) -> String;
    /// The `accept` header, if any.
    fn accept(&self) -> Option<String>;
    /// The buffered body, if any.
    fn body(&self) -> Option<Vec<u8>>;
}

/// What to do with one request.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Not under the prefix: leave it alone.
    PassThrough,
    /// Answer with this error.
    Reject(PromptError),
    /// Send this chat completion request instead.
    Call(ChatCall),
}

/// A rendered template call.
#[derive(Debug, PartialEq, Eq)]
pub struct ChatCall {
    /// The chat completion request, JSON.
    pub body: String,
    /// The template's name.
    pub template: String,
    /// The version used.
    pub version: u32,
}

impl Catalog {
    /// An empty catalog serving under `prefix` (already checked).
    pub fn new(prefix: String) -> Self {
        Catalog {
            prefix,
            templates: BTreeMap::new(),
        }
    }

    /// Add a template; a same name and version replaces the earlier one
    /// (loading rejects duplicates before this).
    pub fn insert(&mut self, template: Template) {
        self.templates
            .entry(template.name.clone())
            .or_default()
            .insert(template.version, template);
    }

    /// A template by name: the given version, or the highest.
    pub fn find(&self, name: &str, version: Option<u32>) -> Result<&Template, PromptError> {
        let Some(versions) = self.templates.get(name) else {
            return Err(PromptError::not_found(format!("no prompt template named \"{name}\"")));
        };
        let found = match version {
            Some(version) => versions.get(&version),
            None => versions.values().next_back(),
        };
        found.ok_or_else(|| {
            let listed: Vec<String> = versions.keys().map(|v| format!("v{v}")).collect();
            PromptError::not_found(format!(
                "prompt template \"{name}\" has no version {} (it has {})",
                version.unwrap_or_default(),
                listed.join(", ")
            ))
        })
    }

    /// Decide what `request`, at `path` (with query), becomes.
    pub fn handle(&self, path: &str, request: &impl Incoming) -> Outcome {
        match routing::match_path(&self.prefix, path) {
            PathMatch::Outside => Outcome::PassThrough,
            PathMatch::Malformed => Outcome::Reject(PromptError::not_found(format!(
                "no prompt template at this path; call {0}NAME or {0}NAME/vN",
                self.prefix
            ))),
            PathMatch::Template { name, version, query } => match self.call(name, version, query, request) {
                Ok(call) => Outcome::Call(call),
                Err(error) => Outcome::Reject(error),
            },
        }
    }

    fn call(
        &self,
        name: &str,
        version: Option<u32>,
        query: &str,
        request: &impl Incoming,
    ) -> Result<ChatCall, PromptError> {
        let template = self.find(name, version)?;
        let method = request.method();
        if method != "POST" {
            return Err(PromptError::method_not_allowed(&method));
        }
        let stream = routing::wants_stream(query, request.accept().as_deref())?;
        let body = request.body().unwrap_or_default();
        let values = template.bind(&body)?;
        Ok(ChatCall {
            body: template.render(&values, stream),
            template: template.name.clone(),
            version: template.version,
        })
    }
}
