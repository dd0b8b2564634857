//! The plugin's config: schema and validation, compiled into a [`Policy`].

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::media_type::MediaRange;
use crate::path_match;
use crate::policy::{Checks, Policy, Rule};
use crate::query::{ParamRule, ParamSpec};
use crate::schema::Schema;

/// The route's config for `request-validator`, as written in the gateway
/// config. The checks at the top apply to every request on the route;
/// `rules` add checks for some paths and methods.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Methods allowed on the route; others are answered 405.
    methods: Option<Vec<String>>,
    /// Media types a request with a body may have.
    content_types: Option<Vec<String>>,
    /// Largest request body, in bytes.
    max_body_bytes: Option<u64>,
    /// Headers every request must carry (lowercase names).
    #[serde(default)]
    required_headers: Vec<String>,
    /// Rules for query parameters, by name.
    #[serde(default)]
    query: BTreeMap<String, ParamSpec>,
    /// A JSON Schema (subset) the body must satisfy when it is JSON.
    body_schema: Option<Value>,
    /// Checks for some paths and methods; the first rule that matches a
    /// request applies, on top of the checks above.
    #[serde(default)]
    rules: Vec<RuleSettings>,
}

/// One entry of `rules`: which requests it is for, and the same checks as
/// at the top (each documented there).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSettings {
    /// The rule applies under this path (at a segment boundary).
    path_prefix: Option<String>,
    /// The rule applies to these methods.
    methods: Option<Vec<String>>,
    content_types: Option<Vec<String>>,
    max_body_bytes: Option<u64>,
    #[serde(default)]
    required_headers: Vec<String>,
    #[serde(default)]
    query: BTreeMap<String, ParamSpec>,
    body_schema: Option<Value>,
}

/// The checks a route or a rule makes, as written.
struct CheckSettings {
    content_types: Option<Vec<String>>,
    max_body_bytes: Option<u64>,
    required_headers: Vec<String>,
    query: BTreeMap<String, ParamSpec>,
    body_schema: Option<Value>,
}

/// Names of the check fields, for messages.
const CHECK_FIELDS: &str = "content_types, max_body_bytes, required_headers, query, body_schema";

/// Checked while compiling: see [`Settings::compile`].
impl weir_sdk::Settings for Settings {}

impl Settings {
    /// Check and compile the config; the error names the field at fault
    /// (`rules[1].body_schema.properties.price.minimum: ...`).
    pub fn compile(self) -> Result<Policy, String> {
        let allowed_methods = self.methods.map(|m| methods(m, "methods")).transpose()?;
        let route = CheckSettings {
            content_types: self.content_types,
            max_body_bytes: self.max_body_bytes,
            required_headers: self.required_headers,
            query: self.query,
            body_schema: self.body_schema,
        }
        .compile("")?;
        let mut rules = Vec::with_capacity(self.rules.len());
        for (i, rule) in self.rules.into_iter().enumerate() {
            rules.push(rule.compile(&format!("rules[{i}]"), allowed_methods.as_deref())?);
        }
        if allowed_methods.is_none() && route.is_empty() && rules.is_empty() {
            return Err(format!(
                "the config checks nothing: give at least one of methods, {CHECK_FIELDS}, rules"
            ));
        }
        Ok(Policy {
            allowed_methods,
            route,
            rules,
        })
    }
}

impl RuleSettings {
    fn compile(self, at: &str, allowed_methods: Option<&[String]>) -> Result<Rule, String> {
        let path_prefix = self
            .path_prefix
            .map(|p| prefix(&p, &format!("{at}.path_prefix")))
            .transpose()?;
        let methods = self.methods.map(|m| methods(m, &format!("{at}.methods"))).transpose()?;
        if let (Some(methods), Some(allowed)) = (&methods, allowed_methods)
            && let Some(never) = methods.iter().find(|m| !allowed.contains(m))
        {
            return Err(format!(
                "{at}.methods: {never} is not in the route's methods, so it never reaches this rule"
            ));
        }
        let checks = CheckSettings {
            content_types: self.content_types,
            max_body_bytes: self.max_body_bytes,
            required_headers: self.required_headers,
            query: self.query,
            body_schema: self.body_schema,
        }
        .compile(&format!("{at}."))?;
        if checks.is_empty() {
            return Err(format!("{at}: checks nothing; give it at least one of {CHECK_FIELDS}"));
        }
        Ok(Rule {
            path_prefix,
            methods,
            checks,
        })
    }
}

impl CheckSettings {
    /// `at` is the field prefix: empty at the top, `rules[0].` in a rule.
    fn compile(self, at: &str) -> Result<Checks, String> {
        let content_types = self
            .content_types
            .map(|types| {
                if types.is_empty() {
                    return Err(format!("{at}content_types: must not be empty"));
                }
                types
                    .iter()
                    .enumerate()
                    .map(|(i, t)| MediaRange::parse(t).map_err(|e| format!("{at}content_types[{i}]: {e}")))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        for (i, name) in self.required_headers.iter().enumerate() {
            if !is_header_name(name) {
                return Err(format!(
                    "{at}required_headers[{i}]: {name:?} is not a lowercase header name"
                ));
            }
        }
        let query = self
            .query
            .into_iter()
            .map(|(name, spec)| {
                let mut here = format!("{at}query");
                crate::schema::push_key(&mut here, &name);
                ParamRule::new(&name, spec, &here)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let body_schema = self
            .body_schema
            .map(|schema| Schema::compile(&schema, &format!("{at}body_schema")))
            .transpose()?;
        Ok(Checks {
            content_types,
            max_body_bytes: self.max_body_bytes,
            required_headers: self.required_headers,
            query,
            body_schema,
        })
    }
}

/// A non-empty list of uppercase method names.
fn methods(methods: Vec<String>, at: &str) -> Result<Vec<String>, String> {
    if methods.is_empty() {
        return Err(format!("{at}: must not be empty"));
    }
    for (i, method) in methods.iter().enumerate() {
        let token = !method.is_empty()
            && method
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            return Err(format!("{at}[{i}]: {method:?} is not an uppercase method name"));
        }
    }
    Ok(methods)
}

/// A `path_prefix`, as normalized segments.
fn prefix(prefix: &str, at: &str) -> Result<Vec<String>, String> {
    if !prefix.starts_with('/') || prefix.contains(['?', '#']) || prefix.chars().any(char::is_whitespace) {
        return Err(format!(
            "{at}: {prefix:?} must start with `/` and hold no query, fragment or whitespace"
        ));
    }
    path_match::segments(prefix).map_err(|_| format!("{at}: {prefix:?} must not have `.` or `..` segments"))
}

/// A lowercase HTTP token: what the host accepts as a header name.
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// What `configure` compiles from `json`, for tests.
#[cfg(test)]
pub fn checked(json: &str) -> Result<Policy, String> {
    weir_sdk::Config::new(json).settings::<Settings>()?.compile()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(json: &str) -> String {
        checked(json).unwrap_err()
    }

    #[test]
    fn each_check_alone_is_a_config() {
        for json in [
            r#"{"methods":["GET"]}"#,
            r#"{"content_types":["application/json"]}"#,
            r#"{"max_body_bytes":0}"#,
            r#"{"required_headers":["x-request-id"]}"#,
            r#"{"query":{"page":{"type":"integer"}}}"#,
            r#"{"body_schema":{"type":"object"}}"#,
            r#"{"rules":[{"path_prefix":"/orders","max_body_bytes":10}]}"#,
        ] {
            assert!(checked(json).is_ok(), "{json}");
        }
    }

    #[test]
    fn a_config_that_checks_nothing_is_refused() {
        assert!(error("{}").starts_with("the config checks nothing"));
    }

    #[test]
    fn a_rule_that_checks_nothing_is_refused() {
        let err = error(r#"{"rules":[{"path_prefix":"/health"}]}"#);
        assert!(err.starts_with("rules[0]: checks nothing"), "{err}");
    }

    #[test]
    fn unknown_fields_are_refused_at_the_top_and_in_rules() {
        let err = error(r#"{"methods":["GET"],"max_body":1}"#);
        assert!(err.starts_with("max_body: unknown field `max_body`"), "{err}");
        let err = error(r#"{"rules":[{"path":"/x","max_body_bytes":1}]}"#);
        assert!(err.starts_with("rules[0].path: unknown field `path`"), "{err}");
        let err = error(r#"{"rules":[{"max_body_bytes":1,"body_schema":{},"rules":[]}]}"#);
        assert!(err.starts_with("rules[0].rules: unknown field `rules`"), "{err}");
        let err = error(r#"{"query":{"page":{"minimum":1}}}"#);
        assert!(err.starts_with("query.page.minimum: unknown field `minimum`"), "{err}");
    }

    #[test]
    fn wrong_types_name_the_field() {
        let err = error(r#"{"max_body_bytes":-1}"#);
        assert!(err.starts_with("max_body_bytes: invalid value"), "{err}");
        let err = error(r#"{"rules":[{"methods":"POST","max_body_bytes":1}]}"#);
        assert!(err.starts_with("rules[0].methods: invalid type"), "{err}");
        let err = error(r#"{"query":{"page":{"type":"date"}}}"#);
        assert!(err.starts_with("query.page.type: unknown variant `date`"), "{err}");
    }

    #[test]
    fn methods_must_be_uppercase_and_non_empty() {
        assert_eq!(
            error(r#"{"methods":["GET","post"]}"#),
            r#"methods[1]: "post" is not an uppercase method name"#
        );
        assert_eq!(error(r#"{"methods":[]}"#), "methods: must not be empty");
        assert_eq!(
            error(r#"{"rules":[{"methods":[],"max_body_bytes":1}]}"#),
            "rules[0].methods: must not be empty"
        );
    }

    #[test]
    fn a_rule_for_a_method_the_route_refuses_is_refused() {
        let err = error(r#"{"methods":["GET"],"rules":[{"methods":["POST"],"max_body_bytes":1}]}"#);
        assert!(
            err.starts_with("rules[0].methods: POST is not in the route's methods"),
            "{err}"
        );
    }

    #[test]
    fn path_prefix_must_be_a_plain_path() {
        for bad in ["orders", "/orders?x", "/a b", "/orders/../admin", "/orders#x"] {
            let json = format!(r#"{{"rules":[{{"path_prefix":{bad:?},"max_body_bytes":1}}]}}"#);
            let err = error(&json);
            assert!(err.starts_with("rules[0].path_prefix:"), "{bad}: {err}");
        }
    }

    #[test]
    fn bad_content_types_are_named() {
        assert_eq!(error(r#"{"content_types":[]}"#), "content_types: must not be empty");
        let err = error(r#"{"rules":[{"content_types":["application/json","json"]}]}"#);
        assert!(err.starts_with("rules[0].content_types[1]:"), "{err}");
    }

    #[test]
    fn bad_required_header_is_named() {
        let err = error(r#"{"required_headers":["X-Request-Id"]}"#);
        assert_eq!(
            err,
            r#"required_headers[0]: "X-Request-Id" is not a lowercase header name"#
        );
    }

    #[test]
    fn query_errors_name_the_parameter() {
        let err = error(r#"{"query":{"page":{"type":"string","min":1}}}"#);
        assert_eq!(err, "query.page: min and max apply only to type integer or number");
        let err = error(r#"{"rules":[{"query":{"page size":{"type":"string","max":1}}}]}"#);
        assert!(err.starts_with(r#"rules[0].query["page size"]:"#), "{err}");
    }

    #[test]
    fn schema_errors_name_the_keyword_and_its_path() {
        let err = error(r#"{"rules":[{"body_schema":{"properties":{"price":{"exclusiveMinimum":0}}}}]}"#);
        assert!(
            err.starts_with(r#"rules[0].body_schema.properties.price: unsupported keyword "exclusiveMinimum""#),
            "{err}"
        );
    }

    #[test]
    fn body_interest_follows_the_body_checks() {
        let reads = |json: &str| checked(json).unwrap().reads_body();
        assert!(!reads(
            r#"{"methods":["GET"],"required_headers":["x-id"],"query":{"q":{}}}"#
        ));
        assert!(reads(r#"{"max_body_bytes":10}"#));
        assert!(reads(r#"{"content_types":["text/plain"]}"#));
        assert!(reads(r#"{"body_schema":true}"#));
        assert!(reads(
            r#"{"methods":["GET","POST"],"rules":[{"methods":["POST"],"body_schema":true}]}"#
        ));
    }
}
