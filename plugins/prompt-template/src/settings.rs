//! The plugin's config: schema, defaults, and the one pass that checks it
//! and builds the [`Catalog`].
//!
//! Templates, their messages and variables are read as raw JSON first and
//! then one at a time, so that every problem is reported — all of them,
//! not just the first — with the template's index, name and version and
//! the field at fault.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::catalog::Catalog;
use crate::placeholder::{self, Segment};
use crate::template::{Message, Template, Variable};
use crate::variables::{self, VarType};

/// The route's config for `prompt-template`, as written; checked while
/// building the catalog ([`Settings::catalog`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Paths under this prefix are template calls.
    #[serde(default = "default_prefix")]
    prefix: String,
    /// The templates, each read on its own (see [`TemplateConfig`]).
    templates: Vec<Value>,
}

fn default_prefix() -> String {
    "/prompts/".to_string()
}

/// One entry of `templates`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateConfig {
    name: String,
    version: u32,
    /// For people reading the config; not used.
    #[serde(default, rename = "description")]
    _description: Option<String>,
    model: String,
    messages: Vec<Value>,
    #[serde(default)]
    variables: BTreeMap<String, Value>,
    #[serde(default)]
    parameters: Map<String, Value>,
}

/// One entry of a template's `messages`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageConfig {
    role: String,
    content: String,
}

/// One entry of a template's `variables`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VariableConfig {
    #[serde(rename = "type")]
    kind: String,
    /// Defaults to true without a `default`, false with one.
    #[serde(default)]
    required: Option<bool>,
    #[serde(default)]
    default: Option<Value>,
    /// For people reading the config; not used.
    #[serde(default, rename = "description")]
    _description: Option<String>,
}

/// The OpenAI chat parameters a template may fix. Typed so that a typo or
/// a wrong type is caught at load; `model`, `messages` and `stream` are
/// not among them because the template and the request decide those.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Parameters {
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop: Option<Stop>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    n: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logit_bias: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_logprobs: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<Vec<Map<String, Value>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parallel_tool_calls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_effort: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<Map<String, Value>>,
}

/// `stop`: one sequence or several.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

/// Roles a template message may have (`tool` needs a call to answer).
const ROLES: [&str; 4] = ["system", "developer", "user", "assistant"];

/// A chat request sent directly must not be mistaken for a template call.
const CHAT_PATH: &str = "/v1/chat/completions";

impl weir_sdk::Settings for Settings {}

impl Settings {
    /// Check the config and build the catalog. The error lists every
    /// problem found, separated by `; `.
    pub fn catalog(&self) -> Result<Catalog, String> {
        let mut problems = Vec::new();

        let prefix = check_prefix(&self.prefix).unwrap_or_else(|problem| {
            problems.push(format!("prefix: {problem}"));
            default_prefix()
        });
        if self.templates.is_empty() {
            problems.push("templates: must not be empty".to_string());
        }

        let mut catalog = Catalog::new(prefix);
        // Where each (name, version) was first defined, to name duplicates.
        let mut seen: BTreeMap<(String, u32), usize> = BTreeMap::new();
        for (index, raw) in self.templates.iter().enumerate() {
            let at = template_label(index, raw);
            match check_template(raw) {
                Ok(template) => {
                    let key = (template.name.clone(), template.version);
                    if let Some(first) = seen.get(&key) {
                        problems.push(format!(
                            "{at}: duplicate of templates[{first}]: name and version must be unique"
                        ));
                    } else {
                        seen.insert(key, index);
                        catalog.insert(template);
                    }
                }
                Err(found) => problems.extend(found.into_iter().map(|p| format!("{at}: {p}"))),
            }
        }

        if problems.is_empty() {
            Ok(catalog)
        } else {
            Err(problems.join("; "))
        }
    }
}

/// What `configure` builds from `json`, for tests.
#[cfg(test)]
pub fn checked(json: &str) -> Result<Catalog, String> {
    weir_sdk::Config::new(json).settings::<Settings>()?.catalog()
}

/// The prefix, with a `/` added at the end if missing.
fn check_prefix(prefix: &str) -> Result<String, String> {
    if !prefix.starts_with('/') {
        return Err(format!("{prefix:?} must start with /"));
    }
    if prefix.contains(['?', '#']) || prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{prefix:?} must be a plain path, without query, fragment or whitespace"
        ));
    }
    let prefix = if prefix.ends_with('/') {
        prefix.to_string()
    } else {
        format!("{prefix}/")
    };
    if CHAT_PATH.starts_with(&prefix) {
        return Err(format!("{prefix:?} would take over {CHAT_PATH}"));
    }
    Ok(prefix)
}

/// `templates[3] (summarize v2)`, or just `templates[3]` when the entry
/// has no readable name and version.
fn template_label(index: usize, raw: &Value) -> String {
    let name = raw.get("name").and_then(Value::as_str);
    let version = raw.get("version").and_then(Value::as_u64);
    match (name, version) {
        (Some(name), Some(version)) => format!("templates[{index}] ({name} v{version})"),
        (Some(name), None) => format!("templates[{index}] ({name})"),
        _ => format!("templates[{index}]"),
    }
}

/// Check one template and compile it; the errors name the field at fault.
fn check_template(raw: &Value) -> Result<Template, Vec<String>> {
    let config = TemplateConfig::deserialize(raw).map_err(|e| vec![e.to_string()])?;
    let mut problems = Vec::new();

    if !is_template_name(&config.name) {
        problems.push(format!(
            "name: {:?} must be letters, digits, '.', '_' or '-' (it is a URL path segment)",
            config.name
        ));
    }
    if config.model.is_empty() {
        problems.push("model: must not be empty".to_string());
    }

    let mut variables = BTreeMap::new();
    for (name, raw) in &config.variables {
        match check_variable(name, raw) {
            Ok(variable) => {
                variables.insert(name.clone(), variable);
            }
            Err(problem) => problems.push(format!("variables.{name}: {problem}")),
        }
    }

    if config.messages.is_empty() {
        problems.push("messages: must not be empty".to_string());
    }
    let mut messages = Vec::new();
    // The placeholders of every message whose content could be read, good
    // or not: what the unused-variable check looks at.
    let mut read_contents: Vec<Vec<Segment>> = Vec::new();
    let mut unreadable = false;
    for (i, raw) in config.messages.iter().enumerate() {
        match check_message(raw, &config.variables) {
            Ok(message) => {
                read_contents.push(message.content.clone());
                messages.push(message);
            }
            Err(found) => {
                match found.content {
                    Some(content) => read_contents.push(content),
                    None => unreadable = true,
                }
                problems.extend(found.problems.into_iter().map(|p| format!("messages[{i}]{p}")));
            }
        }
    }
    // Skipped only when a message's content could not be read at all: its
    // uses are unknown. Other problems in a message (a bad role, an
    // undeclared name) leave its uses known, and both are reported.
    if !unreadable {
        for name in config.variables.keys() {
            let used = read_contents
                .iter()
                .flatten()
                .any(|s| matches!(s, Segment::Variable(v) if v == name));
            if !used {
                problems.push(format!("variables.{name}: declared but used in no message"));
            }
        }
    }

    let parameters = check_parameters(config.parameters).unwrap_or_else(|problem| {
        problems.push(format!("parameters: {problem}"));
        Map::new()
    });

    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Template {
        name: config.name,
        version: config.version,
        model: config.model,
        messages,
        variables,
        parameters,
    })
}

/// What is wrong with a message, and its content if it could be read.
struct MessageProblems {
    /// Each starts with `.field: ` or, when the message as a whole is
    /// wrong, `: `.
    problems: Vec<String>,
    /// The content split at placeholders, when it parsed.
    content: Option<Vec<Segment>>,
}

/// Check one message.
fn check_message(raw: &Value, declared: &BTreeMap<String, Value>) -> Result<Message, MessageProblems> {
    let config = MessageConfig::deserialize(raw).map_err(|e| MessageProblems {
        problems: vec![format!(": {e}")],
        content: None,
    })?;
    let mut problems = Vec::new();
    if !ROLES.contains(&config.role.as_str()) {
        problems.push(format!(".role: {:?} must be one of {}", config.role, ROLES.join(", ")));
    }
    let (content, readable) = match placeholder::parse(&config.content) {
        Ok(content) => (content, true),
        Err(problem) => {
            problems.push(format!(".content: {problem}"));
            (Vec::new(), false)
        }
    };
    for segment in &content {
        if let Segment::Variable(name) = segment
            && !declared.contains_key(name)
        {
            problems.push(format!(".content: {{{{{name}}}}} names no declared variable"));
        }
    }
    if problems.is_empty() {
        Ok(Message {
            role: config.role,
            content,
        })
    } else {
        Err(MessageProblems {
            problems,
            content: readable.then_some(content),
        })
    }
}

/// Check one variable declaration.
fn check_variable(name: &str, raw: &Value) -> Result<Variable, String> {
    if !placeholder::is_variable_name(name) {
        return Err("a name is a letter or _, then letters, digits, _ or -".to_string());
    }
    let config = VariableConfig::deserialize(raw).map_err(|e| e.to_string())?;
    let kind = VarType::parse(&config.kind)
        .ok_or_else(|| format!("type: {:?} must be string, integer, number or boolean", config.kind))?;
    let default = match &config.default {
        Some(value) if !kind.accepts(value) => {
            return Err(format!(
                "default: must be {}, not {}",
                kind.name(),
                variables::type_of(value)
            ));
        }
        Some(value) => Some(variables::as_text(value)),
        None => None,
    };
    if config.required == Some(true) && default.is_some() {
        return Err("a required variable cannot have a default".to_string());
    }
    Ok(Variable {
        kind,
        required: config.required.unwrap_or(default.is_none()),
        default: default.unwrap_or_default(),
    })
}

/// Check chat parameters against [`Parameters`] and return them as sent
/// (nulls dropped).
fn check_parameters(parameters: Map<String, Value>) -> Result<Map<String, Value>, String> {
    let typed = Parameters::deserialize(Value::Object(parameters)).map_err(|e| e.to_string())?;
    match serde_json::to_value(typed).map_err(|e| e.to_string())? {
        Value::Object(map) => Ok(map),
        other => Err(format!("expected an object, got {other}")),
    }
}

/// A template name: it is a URL path segment.
fn is_template_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}
