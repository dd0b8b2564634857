//! Query parameter rules: their config, and checking a request's query
//! string against them.
//!
//! The query is read as a form would write it: pairs split at `&`, name
//! and value at the first `=`, `+` is a space and `%XX` escapes are
//! decoded. A parameter given more than once has every value checked,
//! since the upstream may read any of them.

use std::cmp::Ordering;

use regex_lite::Regex;
use serde::Deserialize;
use serde_json::{Number, Value};

use crate::path_match::hex;
use crate::schema::{compare_numbers, quote};

/// One parameter's rule as written in the config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamSpec {
    /// What the value must be.
    #[serde(rename = "type", default)]
    kind: ParamType,
    /// Refuse requests without the parameter.
    #[serde(default)]
    required: bool,
    /// Smallest value allowed (integer and number only).
    min: Option<Number>,
    /// Largest value allowed (integer and number only).
    max: Option<Number>,
    /// The values allowed (string only).
    #[serde(rename = "enum")]
    allowed: Option<Vec<String>>,
    /// A regular expression the value must contain a match of (string only).
    pattern: Option<String>,
}

/// The `type` of a query parameter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    /// Any text.
    #[default]
    String,
    /// A decimal integer (64-bit).
    Integer,
    /// A decimal number.
    Number,
    /// `true` or `false`.
    Boolean,
}

/// A checked rule for one parameter.
#[derive(Debug)]
pub struct ParamRule {
    name: String,
    kind: ParamType,
    required: bool,
    min: Option<Number>,
    max: Option<Number>,
    allowed: Option<Vec<String>>,
    pattern: Option<Regex>,
}

impl ParamRule {
    /// Check the spec for parameter `name`; `at` is where it is in the
    /// config (`query.page`), and errors start with it.
    pub fn new(name: &str, spec: ParamSpec, at: &str) -> Result<ParamRule, String> {
        if name.is_empty() {
            return Err(format!("{at}: a parameter name must not be empty"));
        }
        let numeric = matches!(spec.kind, ParamType::Integer | ParamType::Number);
        if !numeric && (spec.min.is_some() || spec.max.is_some()) {
            return Err(format!("{at}: min and max apply only to type integer or number"));
        }
        if spec.kind != ParamType::String && (spec.allowed.is_some() || spec.pattern.is_some()) {
            return Err(format!("{at}: enum and pattern apply only to type string"));
        }
        if let (Some(min), Some(max)) = (&spec.min, &spec.max)
            && compare_numbers(min, max) == Some(Ordering::Greater)
        {
            return Err(format!("{at}: min is greater than max"));
        }
        if spec.allowed.as_ref().is_some_and(Vec::is_empty) {
            return Err(format!("{at}.enum: must not be empty"));
        }
        let pattern = spec
            .pattern
            .map(|p| crate::schema::pattern(&Value::from(p), &format!("{at}.pattern")))
            .transpose()?;
        Ok(ParamRule {
            name: name.to_string(),
            kind: spec.kind,
            required: spec.required,
            min: spec.min,
            max: spec.max,
            allowed: spec.allowed,
            pattern,
        })
    }

    /// The parameter's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Check one value of this parameter; the error says what is wrong.
    fn check_value(&self, raw: &[u8]) -> Result<(), String> {
        let Ok(value) = std::str::from_utf8(raw) else {
            return Err(self.problem("is not valid UTF-8"));
        };
        let number = match self.kind {
            ParamType::String => {
                if let Some(allowed) = &self.allowed
                    && !allowed.iter().any(|a| a == value)
                {
                    let listed: Vec<String> = allowed.iter().map(|a| quote(a)).collect();
                    return Err(self.problem(&format!("must be one of {}", listed.join(", "))));
                }
                if let Some(pattern) = &self.pattern
                    && !pattern.is_match(value)
                {
                    return Err(self.problem(&format!("must match the pattern {}", Value::from(pattern.as_str()))));
                }
                return Ok(());
            }
            ParamType::Boolean => {
                return match value {
                    "true" | "false" => Ok(()),
                    _ => Err(self.problem("must be true or false")),
                };
            }
            ParamType::Integer => value
                .parse::<i64>()
                .map(Number::from)
                .map_err(|_| self.problem("must be an integer"))?,
            ParamType::Number => value
                .parse::<f64>()
                .ok()
                .and_then(Number::from_f64)
                .ok_or_else(|| self.problem("must be a number"))?,
        };
        if let Some(min) = &self.min
            && compare_numbers(&number, min) == Some(Ordering::Less)
        {
            return Err(self.problem(&format!("must be at least {min}")));
        }
        if let Some(max) = &self.max
            && compare_numbers(&number, max) == Some(Ordering::Greater)
        {
            return Err(self.problem(&format!("must be at most {max}")));
        }
        Ok(())
    }

    fn problem(&self, what: &str) -> String {
        format!("query parameter {} {what}", quote(&self.name))
    }
}

/// Check the query of `path_and_query` against `rules`; the error names
/// the first parameter at fault.
pub fn check<'a>(rules: impl IntoIterator<Item = &'a ParamRule>, path_and_query: &str) -> Result<(), String> {
    let query = path_and_query.split_once('?').map_or("", |(_, query)| query);
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (form_decode(name), form_decode(value))
        })
        .collect();
    for rule in rules {
        let mut present = false;
        for (_, value) in pairs.iter().filter(|(name, _)| name == rule.name.as_bytes()) {
            present = true;
            rule.check_value(value)?;
        }
        if rule.required && !present {
            return Err(rule.problem("is required"));
        }
    }
    Ok(())
}

/// Decode `+` as a space and `%XX` escapes; a `%` without two hex digits
/// after it stays.
fn form_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) => hex(h).zip(hex(l)).map(|(h, l)| (h << 4) | l),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, b) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(name: &str, spec: Value) -> ParamRule {
        let spec: ParamSpec = serde_json::from_value(spec).unwrap();
        ParamRule::new(name, spec, &format!("query.{name}")).unwrap()
    }

    fn config_error(spec: Value) -> String {
        match serde_json::from_value::<ParamSpec>(spec) {
            Ok(spec) => ParamRule::new("p", spec, "query.p").unwrap_err(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn absent_optional_parameter_passes() {
        let page = rule("page", json!({"type": "integer", "min": 1}));
        assert_eq!(check([&page], "/items"), Ok(()));
        assert_eq!(check([&page], "/items?other=x"), Ok(()));
    }

    #[test]
    fn missing_required_parameter_is_named() {
        let q = rule("q", json!({"required": true}));
        assert_eq!(
            check([&q], "/search?x=1"),
            Err(r#"query parameter "q" is required"#.into())
        );
        assert_eq!(check([&q], "/search?q="), Ok(()));
        assert_eq!(check([&q], "/search?q"), Ok(()));
    }

    #[test]
    fn integer_parameter_must_parse_and_respect_bounds() {
        let page = rule("page", json!({"type": "integer", "min": 1, "max": 100}));
        assert_eq!(check([&page], "/x?page=2"), Ok(()));
        assert_eq!(
            check([&page], "/x?page=abc"),
            Err(r#"query parameter "page" must be an integer"#.into())
        );
        assert_eq!(
            check([&page], "/x?page=1.5"),
            Err(r#"query parameter "page" must be an integer"#.into())
        );
        assert_eq!(
            check([&page], "/x?page="),
            Err(r#"query parameter "page" must be an integer"#.into())
        );
        assert_eq!(
            check([&page], "/x?page=0"),
            Err(r#"query parameter "page" must be at least 1"#.into())
        );
        assert_eq!(
            check([&page], "/x?page=101"),
            Err(r#"query parameter "page" must be at most 100"#.into())
        );
    }

    #[test]
    fn number_parameter_must_be_finite() {
        let price = rule("price", json!({"type": "number", "min": 0.5}));
        assert_eq!(check([&price], "/x?price=0.75"), Ok(()));
        assert_eq!(
            check([&price], "/x?price=0.25"),
            Err(r#"query parameter "price" must be at least 0.5"#.into())
        );
        for bad in ["inf", "NaN", "1e999", "x"] {
            assert_eq!(
                check([&price], &format!("/x?price={bad}")),
                Err(r#"query parameter "price" must be a number"#.into()),
                "{bad}"
            );
        }
    }

    #[test]
    fn boolean_parameter_is_true_or_false() {
        let flag = rule("flag", json!({"type": "boolean"}));
        assert_eq!(check([&flag], "/x?flag=true&flag=false"), Ok(()));
        assert_eq!(
            check([&flag], "/x?flag=1"),
            Err(r#"query parameter "flag" must be true or false"#.into())
        );
    }

    #[test]
    fn string_parameter_enum_and_pattern() {
        let sort = rule("sort", json!({"enum": ["asc", "desc"]}));
        assert_eq!(check([&sort], "/x?sort=asc"), Ok(()));
        assert_eq!(
            check([&sort], "/x?sort=up"),
            Err(r#"query parameter "sort" must be one of "asc", "desc""#.into())
        );
        let id = rule("id", json!({"pattern": "^[0-9a-f]{8}$"}));
        assert_eq!(check([&id], "/x?id=deadbeef"), Ok(()));
        assert_eq!(
            check([&id], "/x?id=nothex00"),
            Err(r#"query parameter "id" must match the pattern "^[0-9a-f]{8}$""#.into())
        );
    }

    #[test]
    fn every_repeated_value_is_checked() {
        let page = rule("page", json!({"type": "integer"}));
        assert_eq!(check([&page], "/x?page=1&page=2"), Ok(()));
        assert_eq!(
            check([&page], "/x?page=1&page=x"),
            Err(r#"query parameter "page" must be an integer"#.into())
        );
    }

    #[test]
    fn names_and_values_are_form_decoded() {
        let q = rule("full name", json!({"enum": ["a b/c"]}));
        assert_eq!(check([&q], "/x?full+name=a%20b%2Fc"), Ok(()));
        assert_eq!(check([&q], "/x?full%20name=a+b/c"), Ok(()));
        let page = rule("page", json!({"type": "integer", "max": 5}));
        assert_eq!(
            check([&page], "/x?p%61ge=9"),
            Err(r#"query parameter "page" must be at most 5"#.into())
        );
    }

    #[test]
    fn value_that_is_not_utf8_is_refused() {
        let q = rule("q", json!({}));
        assert_eq!(
            check([&q], "/x?q=%FF"),
            Err(r#"query parameter "q" is not valid UTF-8"#.into())
        );
    }

    #[test]
    fn the_first_failing_rule_is_reported() {
        let a = rule("a", json!({"required": true}));
        let b = rule("b", json!({"required": true}));
        assert_eq!(check([&a, &b], "/x"), Err(r#"query parameter "a" is required"#.into()));
    }

    #[test]
    fn specs_that_cannot_apply_are_refused() {
        assert_eq!(
            config_error(json!({"min": 1})),
            "query.p: min and max apply only to type integer or number"
        );
        assert_eq!(
            config_error(json!({"type": "integer", "enum": ["1"]})),
            "query.p: enum and pattern apply only to type string"
        );
        assert_eq!(
            config_error(json!({"type": "integer", "min": 5, "max": 1})),
            "query.p: min is greater than max"
        );
        assert_eq!(config_error(json!({"enum": []})), "query.p.enum: must not be empty");
        assert!(config_error(json!({"pattern": "("})).starts_with("query.p.pattern: \"(\" is not a supported"));
        assert!(config_error(json!({"type": "date"})).contains("unknown variant `date`"));
        assert!(config_error(json!({"minimum": 1})).contains("unknown field `minimum`"));
    }
}
