//! What the plugin decides about one request: the compiled checks, which
//! of them apply, and the refusal when one fails.
//!
//! The checks run in a fixed order and the first that fails answers:
//! method (405), path (400, only when rules match on it), required
//! headers (400), query parameters (400), body size (413), content type
//! (415), JSON syntax and shape (400).

use serde_json::json;

use crate::media_type::{self, MediaRange};
use crate::query::ParamRule;
use crate::schema::Schema;
use crate::{json_body, path_match};

/// Everything configured for one route.
#[derive(Debug)]
pub struct Policy {
    /// Methods allowed on the route; `None` allows any.
    pub allowed_methods: Option<Vec<String>>,
    /// Checks for every request.
    pub route: Checks,
    /// Checks for some requests; the first matching rule adds its own.
    pub rules: Vec<Rule>,
}

/// Checks for the requests that some path prefix and methods select.
#[derive(Debug)]
pub struct Rule {
    /// Normalized segments of `path_prefix`; `None` for any path.
    pub path_prefix: Option<Vec<String>>,
    /// `None` for any method.
    pub methods: Option<Vec<String>>,
    pub checks: Checks,
}

/// The checks of a route or a rule; `None` or empty where not configured.
#[derive(Debug, Default)]
pub struct Checks {
    pub content_types: Option<Vec<MediaRange>>,
    pub max_body_bytes: Option<u64>,
    pub required_headers: Vec<String>,
    pub query: Vec<ParamRule>,
    pub body_schema: Option<Schema>,
}

impl Checks {
    /// Whether nothing is configured.
    pub fn is_empty(&self) -> bool {
        !self.reads_body() && self.required_headers.is_empty() && self.query.is_empty()
    }

    /// Whether some check needs the body. Content types count: a chunked
    /// body has no `content-length` (and the gateway drops
    /// `transfer-encoding`), so only the body itself says whether there is
    /// one.
    fn reads_body(&self) -> bool {
        self.content_types.is_some() || self.max_body_bytes.is_some() || self.body_schema.is_some()
    }
}

/// What the plugin reads of a request; the SDK's `Request` in the plugin,
/// a plain struct in tests.
pub trait Incoming {
    /// The method.
    fn method(&self) -> String;
    /// Path and query.
    fn path(&self) -> String;
    /// The first value of a header.
    fn header(&self, name: &str) -> Option<String>;
    /// How many values a header has.
    fn header_count(&self, name: &str) -> usize;
    /// The whole body, if the plugin asked for bodies.
    fn body(&self) -> Option<Vec<u8>>;
}

/// Why a request is refused: the status and the JSON body's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    /// The `error` field: what is wrong.
    pub error: String,
    /// The `problems` field (body shape only): one line per problem.
    pub problems: Vec<String>,
    /// The `allow` header (405 only).
    pub allow: Option<String>,
}

impl Rejection {
    fn new(status: u16, error: impl Into<String>) -> Rejection {
        Rejection {
            status,
            error: error.into(),
            problems: Vec::new(),
            allow: None,
        }
    }

    /// The JSON body of the answer.
    pub fn body(&self) -> serde_json::Value {
        if self.problems.is_empty() {
            json!({ "error": self.error })
        } else {
            json!({ "error": self.error, "problems": self.problems })
        }
    }
}

/// The checks that apply to one request: the route's, with the matching
/// rule's on top.
struct Applicable<'a> {
    content_types: Option<&'a [MediaRange]>,
    max_body_bytes: Option<u64>,
    required_headers: Vec<&'a str>,
    query: Vec<&'a ParamRule>,
    body_schema: Option<&'a Schema>,
}

impl<'a> Applicable<'a> {
    /// Lists add up (a rule's parameter replaces the route's of the same
    /// name); a rule's single-valued check replaces the route's.
    fn new(route: &'a Checks, rule: Option<&'a Checks>) -> Applicable<'a> {
        let mut applicable = Applicable {
            content_types: route.content_types.as_deref(),
            max_body_bytes: route.max_body_bytes,
            required_headers: route.required_headers.iter().map(String::as_str).collect(),
            query: route.query.iter().collect(),
            body_schema: route.body_schema.as_ref(),
        };
        if let Some(rule) = rule {
            if rule.content_types.is_some() {
                applicable.content_types = rule.content_types.as_deref();
            }
            if rule.max_body_bytes.is_some() {
                applicable.max_body_bytes = rule.max_body_bytes;
            }
            if rule.body_schema.is_some() {
                applicable.body_schema = rule.body_schema.as_ref();
            }
            applicable
                .required_headers
                .extend(rule.required_headers.iter().map(String::as_str));
            applicable
                .query
                .retain(|p| !rule.query.iter().any(|r| r.name() == p.name()));
            applicable.query.extend(rule.query.iter());
        }
        applicable
    }

    fn reads_body(&self) -> bool {
        self.content_types.is_some() || self.max_body_bytes.is_some() || self.body_schema.is_some()
    }
}

impl Policy {
    /// Whether the plugin must ask the gateway for request bodies.
    pub fn reads_body(&self) -> bool {
        self.route.reads_body() || self.rules.iter().any(|r| r.checks.reads_body())
    }

    /// Let the request through, or say why not.
    pub fn judge(&self, request: &impl Incoming) -> Result<(), Rejection> {
        let method = request.method();
        if let Some(allowed) = &self.allowed_methods
            && !allowed.contains(&method)
        {
            return Err(Rejection {
                allow: Some(allowed.join(", ")),
                ..Rejection::new(405, "method not allowed")
            });
        }

        // Rules match on the path and may check the query; read it once.
        let path = if !self.rules.is_empty() || !self.route.query.is_empty() {
            request.path()
        } else {
            String::new()
        };
        let rule = self.rule_for(&method, &path)?;
        let applicable = Applicable::new(&self.route, rule.map(|r| &r.checks));

        for name in &applicable.required_headers {
            if request.header(name).is_none_or(|v| v.trim().is_empty()) {
                return Err(Rejection::new(
                    400,
                    format!("missing required header {}", crate::schema::quote(name)),
                ));
            }
        }
        crate::query::check(applicable.query.iter().copied(), &path).map_err(|e| Rejection::new(400, e))?;
        if applicable.reads_body() {
            check_body(&applicable, request)?;
        }
        Ok(())
    }

    /// The first rule for this method and path.
    fn rule_for(&self, method: &str, path: &str) -> Result<Option<&Rule>, Rejection> {
        if self.rules.is_empty() {
            return Ok(None);
        }
        let mut segments = None;
        for rule in &self.rules {
            if rule.methods.as_ref().is_some_and(|m| !m.iter().any(|m| m == method)) {
                continue;
            }
            if let Some(prefix) = &rule.path_prefix {
                if segments.is_none() {
                    segments = Some(
                        path_match::segments(path)
                            .map_err(|_| Rejection::new(400, "request path must not have `.` or `..` segments"))?,
                    );
                }
                if !segments.as_deref().is_some_and(|s| path_match::is_under(s, prefix)) {
                    continue;
                }
            }
            return Ok(Some(rule));
        }
        Ok(None)
    }
}

/// Size, content type and shape of the body.
fn check_body(applicable: &Applicable, request: &impl Incoming) -> Result<(), Rejection> {
    let too_large = |max: u64| Rejection::new(413, format!("request body is larger than {max} bytes"));
    // A declared length over the limit is refused without copying the body.
    if let Some(max) = applicable.max_body_bytes
        && let Some(length) = request
            .header("content-length")
            .and_then(|l| l.trim().parse::<u64>().ok())
        && length > max
    {
        return Err(too_large(max));
    }
    // Asked for in `interests`; a gateway that did not give it leaves the
    // request unjudgeable, so it is refused.
    let body = request
        .body()
        .ok_or_else(|| Rejection::new(500, "request body unavailable"))?;
    if let Some(max) = applicable.max_body_bytes
        && body.len() as u64 > max
    {
        return Err(too_large(max));
    }

    let mut schema = applicable.body_schema;
    if !body.is_empty() && (applicable.content_types.is_some() || schema.is_some()) {
        if request.header_count("content-type") > 1 {
            return Err(Rejection::new(400, "more than one content-type header"));
        }
        let essence = request.header("content-type").and_then(|t| media_type::essence(&t));
        if let Some(allowed) = applicable.content_types {
            let listed = || allowed.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
            let Some(essence) = &essence else {
                return Err(Rejection::new(
                    415,
                    format!("request body has no valid content-type (allowed: {})", listed()),
                ));
            };
            if !allowed.iter().any(|a| a.admits(essence)) {
                return Err(Rejection::new(415, format!("content type must be one of {}", listed())));
            }
            // An allowed type that is not JSON has no shape to check.
            if !media_type::is_json(essence) {
                schema = None;
            }
        } else if schema.is_some() && !essence.as_deref().is_some_and(media_type::is_json) {
            return Err(Rejection::new(
                415,
                "content type must be JSON (application/json or application/*+json)",
            ));
        }
    }

    let Some(schema) = schema else { return Ok(()) };
    if body.is_empty() {
        return Err(invalid_body(vec!["$: a JSON body is required".to_string()]));
    }
    let value =
        json_body::parse(&body).map_err(|e| Rejection::new(400, format!("request body is not valid JSON: {e}")))?;
    let problems = schema.validate(&value);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(invalid_body(problems))
    }
}

fn invalid_body(problems: Vec<String>) -> Rejection {
    Rejection {
        problems,
        ..Rejection::new(400, "invalid request body")
    }
}

#[cfg(test)]
mod tests;
