//! One checked template: binding a request's variables and rendering the
//! chat completion request.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::error::PromptError;
use crate::placeholder::Segment;
use crate::variables::{self, VarType};

/// A template as loaded from the config, every placeholder known to name
/// a declared variable.
#[derive(Debug, Clone)]
pub struct Template {
    /// The name in the URL.
    pub name: String,
    /// Its version; the highest is served by default.
    pub version: u32,
    /// The model to ask the AI route for (a target's `alias` or `model`).
    pub model: String,
    /// The conversation, with placeholders.
    pub messages: Vec<Message>,
    /// Declared variables by name.
    pub variables: BTreeMap<String, Variable>,
    /// Chat parameters (`temperature`, `max_tokens`, ...), checked.
    pub parameters: Map<String, Value>,
}

/// One message of a template.
#[derive(Debug, Clone)]
pub struct Message {
    /// `system`, `developer`, `user` or `assistant`.
    pub role: String,
    /// The content, split at placeholders.
    pub content: Vec<Segment>,
}

/// A declared variable.
#[derive(Debug, Clone)]
pub struct Variable {
    /// Its type.
    pub kind: VarType,
    /// Whether a request must give it.
    pub required: bool,
    /// The text used when a request leaves it out (empty if no default).
    pub default: String,
}

impl Template {
    /// `name vN`, for messages.
    pub fn label(&self) -> String {
        format!("{} v{}", self.name, self.version)
    }

    /// Check a request body — a JSON object of variables — and return the
    /// text of every declared variable. An empty body counts as `{}`.
    pub fn bind(&self, body: &[u8]) -> Result<BTreeMap<&str, String>, PromptError> {
        let given = if body.iter().all(u8::is_ascii_whitespace) {
            Map::new()
        } else {
            match serde_json::from_slice::<Value>(body) {
                Ok(Value::Object(object)) => object,
                Ok(other) => {
                    return Err(invalid_body(format!(
                        "the request body must be a JSON object of variables, not {}",
                        variables::type_of(&other)
                    )));
                }
                Err(e) => {
                    return Err(invalid_body(format!(
                        "the request body is not JSON ({e}); send a JSON object of variables"
                    )));
                }
            }
        };
        for (name, value) in &given {
            let Some(variable) = self.variables.get(name) else {
                return Err(PromptError::invalid(
                    "unknown_variable",
                    Some(name),
                    format!(
                        "unknown variable \"{name}\": template {} {}",
                        self.label(),
                        self.takes()
                    ),
                ));
            };
            if !variable.kind.accepts(value) {
                return Err(PromptError::invalid(
                    "invalid_type",
                    Some(name),
                    format!(
                        "variable \"{name}\" must be {}, not {}",
                        variable.kind.name(),
                        variables::type_of(value)
                    ),
                ));
            }
        }
        let mut values = BTreeMap::new();
        for (name, variable) in &self.variables {
            let text = match given.get(name) {
                Some(value) => variables::as_text(value),
                None if variable.required => {
                    return Err(PromptError::invalid(
                        "missing_variable",
                        Some(name),
                        format!("missing required variable \"{name}\" of template {}", self.label()),
                    ));
                }
                None => variable.default.clone(),
            };
            values.insert(name.as_str(), text);
        }
        Ok(values)
    }

    /// The chat completion request, as JSON text. Values are only ever
    /// text inside a content string: the request is built as a value and
    /// serialized, and inserted text is not scanned for placeholders
    /// again, so no value can change the request's structure.
    pub fn render(&self, values: &BTreeMap<&str, String>, stream: bool) -> String {
        let messages = self
            .messages
            .iter()
            .map(|message| {
                let content: String = message
                    .content
                    .iter()
                    .map(|segment| match segment {
                        Segment::Text(text) => text.as_str(),
                        // `bind` gave every declared variable a value, and
                        // loading checked every placeholder is declared.
                        Segment::Variable(name) => values.get(name.as_str()).map_or("", String::as_str),
                    })
                    .collect();
                json!({ "role": message.role, "content": content })
            })
            .collect();
        let mut request = Map::new();
        request.insert("model".into(), Value::String(self.model.clone()));
        request.insert("messages".into(), Value::Array(messages));
        request.extend(self.parameters.clone());
        if stream {
            request.insert("stream".into(), Value::Bool(true));
        }
        Value::Object(request).to_string()
    }

    /// `takes text, words` or `takes no variables`.
    fn takes(&self) -> String {
        if self.variables.is_empty() {
            "takes no variables".to_string()
        } else {
            let names: Vec<&str> = self.variables.keys().map(String::as_str).collect();
            format!("takes {}", names.join(", "))
        }
    }
}

fn invalid_body(message: String) -> PromptError {
    PromptError::invalid("invalid_body", None, message)
}
