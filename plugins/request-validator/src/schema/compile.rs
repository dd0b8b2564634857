//! Turning a schema from the config into a [`Schema`], refusing anything
//! outside the supported subset.

use std::cmp::Ordering;

use regex_lite::{Regex, RegexBuilder};
use serde_json::{Map, Number, Value};

use super::{JsonType, Node, Rules, Schema, compare_numbers, push_key};

/// Keywords that describe a schema and constrain nothing.
const ANNOTATIONS: [&str; 3] = ["title", "description", "$comment"];

/// Every keyword a schema may use, for the "unsupported keyword" message.
const SUPPORTED: &str = "type, properties, required, additionalProperties, items, enum, minLength, maxLength, \
                         minimum, maximum, minItems, maxItems, pattern, title, description, $comment";

/// Largest compiled `pattern`, in bytes of the regex engine's program.
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

impl Schema {
    /// Compile a schema written in the config. `at` is where it is in the
    /// config (`rules[0].body_schema`); errors start with the full path of
    /// the keyword at fault.
    pub fn compile(schema: &Value, at: &str) -> Result<Schema, String> {
        Ok(Schema {
            root: node(schema, at)?,
        })
    }
}

fn node(schema: &Value, at: &str) -> Result<Node, String> {
    match schema {
        Value::Bool(true) => Ok(Node::Any),
        Value::Bool(false) => Ok(Node::Nothing),
        Value::Object(keywords) => {
            let rules = rules(keywords, at)?;
            check_consistent(&rules, keywords, at)?;
            Ok(Node::Rules(Box::new(rules)))
        }
        _ => Err(format!(
            "{at}: must be a schema (a table of keywords, or true or false)"
        )),
    }
}

fn rules(keywords: &Map<String, Value>, at: &str) -> Result<Rules, String> {
    let mut rules = Rules::default();
    for (keyword, value) in keywords {
        let here = format!("{at}.{keyword}");
        match keyword.as_str() {
            "type" => rules.types = Some(types(value, &here)?),
            "properties" => rules.properties = properties(value, &here)?,
            "required" => rules.required = required(value, &here)?,
            "additionalProperties" => rules.additional_properties = Some(node(value, &here)?),
            "items" => {
                if value.is_array() {
                    return Err(format!(
                        "{here}: must be one schema for every item; a list of schemas (tuple form) is not supported"
                    ));
                }
                rules.items = Some(node(value, &here)?);
            }
            "enum" => match value {
                Value::Array(values) if !values.is_empty() => rules.enumeration = Some(values.clone()),
                _ => return Err(format!("{here}: must be a non-empty list of values")),
            },
            "minLength" => rules.min_length = Some(count(value, &here)?),
            "maxLength" => rules.max_length = Some(count(value, &here)?),
            "minItems" => rules.min_items = Some(count(value, &here)?),
            "maxItems" => rules.max_items = Some(count(value, &here)?),
            "minimum" => rules.minimum = Some(number(value, &here)?),
            "maximum" => rules.maximum = Some(number(value, &here)?),
            "pattern" => rules.pattern = Some(pattern(value, &here)?),
            other if ANNOTATIONS.contains(&other) => {}
            other => {
                return Err(format!(
                    "{at}: unsupported keyword {} (supported: {SUPPORTED})",
                    super::quote(other)
                ));
            }
        }
    }
    Ok(rules)
}

fn types(value: &Value, at: &str) -> Result<Vec<JsonType>, String> {
    let names: Vec<&Value> = match value {
        Value::Array(names) if !names.is_empty() => names.iter().collect(),
        Value::Array(_) => return Err(format!("{at}: must not be empty")),
        one => vec![one],
    };
    let mut types = Vec::with_capacity(names.len());
    for name in names {
        let found = name.as_str().and_then(JsonType::from_name).ok_or_else(|| {
            format!("{at}: {name} is not a type (object, array, string, integer, number, boolean or null)")
        })?;
        if types.contains(&found) {
            return Err(format!("{at}: {name} is listed twice"));
        }
        types.push(found);
    }
    Ok(types)
}

fn properties(value: &Value, at: &str) -> Result<Vec<(String, Node)>, String> {
    let Value::Object(properties) = value else {
        return Err(format!("{at}: must be a table of property name to schema"));
    };
    properties
        .iter()
        .map(|(name, schema)| {
            let mut here = at.to_string();
            push_key(&mut here, name);
            Ok((name.clone(), node(schema, &here)?))
        })
        .collect()
}

fn required(value: &Value, at: &str) -> Result<Vec<String>, String> {
    let not_names = || format!("{at}: must be a list of property names");
    let Value::Array(names) = value else {
        return Err(not_names());
    };
    let mut required: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        let name = name.as_str().ok_or_else(not_names)?;
        if required.iter().any(|r| r == name) {
            return Err(format!("{at}: {} is listed twice", super::quote(name)));
        }
        required.push(name.to_string());
    }
    Ok(required)
}

/// A non-negative integer: a length or a count.
fn count(value: &Value, at: &str) -> Result<u64, String> {
    value
        .as_u64()
        .or_else(|| {
            // `3.0` is an integer too.
            let f = value.as_f64()?;
            (f >= 0.0 && f.fract() == 0.0 && f <= u64::MAX as f64).then_some(f as u64)
        })
        .ok_or_else(|| format!("{at}: must be a non-negative integer"))
}

fn number(value: &Value, at: &str) -> Result<Number, String> {
    match value {
        Value::Number(n) => Ok(n.clone()),
        _ => Err(format!("{at}: must be a number")),
    }
}

/// Compile a `pattern`; also used for query parameters.
pub fn pattern(value: &Value, at: &str) -> Result<Regex, String> {
    let Some(source) = value.as_str() else {
        return Err(format!("{at}: must be a string (a regular expression)"));
    };
    RegexBuilder::new(source)
        .size_limit(PATTERN_SIZE_LIMIT)
        .build()
        .map_err(|e| {
            format!(
                "{at}: {} is not a supported regular expression: {e}",
                Value::from(source)
            )
        })
}

/// Refuse schemas that can never mean what they say: bounds the wrong way
/// round, keywords for a type that `type` excludes, required properties
/// that `additionalProperties = false` forbids.
fn check_consistent(rules: &Rules, keywords: &Map<String, Value>, at: &str) -> Result<(), String> {
    let backwards = |low: &str, high: &str| format!("{at}: {low} is greater than {high}");
    if let (Some(low), Some(high)) = (rules.min_length, rules.max_length)
        && low > high
    {
        return Err(backwards("minLength", "maxLength"));
    }
    if let (Some(low), Some(high)) = (rules.min_items, rules.max_items)
        && low > high
    {
        return Err(backwards("minItems", "maxItems"));
    }
    if let (Some(low), Some(high)) = (&rules.minimum, &rules.maximum)
        && compare_numbers(low, high) == Some(Ordering::Greater)
    {
        return Err(backwards("minimum", "maximum"));
    }

    if let Some(types) = &rules.types {
        let allows = |kinds: &[JsonType]| kinds.iter().any(|k| types.contains(k));
        let groups: [(&[&str], &[JsonType], &str); 4] = [
            (&["minLength", "maxLength", "pattern"], &[JsonType::String], "strings"),
            (
                &["minimum", "maximum"],
                &[JsonType::Number, JsonType::Integer],
                "numbers",
            ),
            (&["minItems", "maxItems", "items"], &[JsonType::Array], "arrays"),
            (
                &["properties", "required", "additionalProperties"],
                &[JsonType::Object],
                "objects",
            ),
        ];
        for (names, kinds, plural) in groups {
            if allows(kinds) {
                continue;
            }
            if let Some(name) = names.iter().find(|n| keywords.contains_key(**n)) {
                return Err(format!(
                    "{at}.{name}: applies only to {plural}, and type does not allow {plural}"
                ));
            }
        }
    }

    if matches!(rules.additional_properties, Some(super::Node::Nothing)) {
        let listed = |name: &String| rules.properties.iter().any(|(p, _)| p == name);
        if let Some(name) = rules.required.iter().find(|name| !listed(name)) {
            return Err(format!(
                "{at}.required: {} can never be present: additionalProperties is false and properties does not list it",
                super::quote(name)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn compile(schema: Value) -> Result<Schema, String> {
        Schema::compile(&schema, "body_schema")
    }

    #[test]
    fn every_supported_keyword_compiles() {
        let schema = json!({
            "title": "order", "description": "an order", "$comment": "v2",
            "type": "object",
            "required": ["items"],
            "additionalProperties": false,
            "properties": {
                "items": {
                    "type": "array", "minItems": 1, "maxItems": 50,
                    "items": {
                        "type": "object",
                        "properties": {
                            "sku": {"type": "string", "minLength": 3, "maxLength": 12, "pattern": "^[A-Z0-9-]+$"},
                            "price": {"type": "number", "minimum": 0, "maximum": 1e6},
                            "quantity": {"type": "integer", "minimum": 1}
                        },
                        "additionalProperties": {"type": "string"}
                    }
                },
                "status": {"enum": ["new", "paid"]},
                "note": {"type": ["string", "null"]},
                "gift": {"type": "boolean"},
                "anything": true,
                "never": false
            }
        });
        assert!(compile(schema).is_ok());
        assert!(compile(json!(true)).is_ok());
        assert!(compile(json!({})).is_ok());
    }

    #[test]
    fn unsupported_keyword_is_named_with_its_path() {
        let err = compile(json!({"properties": {"price": {"type": "number", "exclusiveMinimum": 0}}})).unwrap_err();
        assert!(
            err.starts_with(r#"body_schema.properties.price: unsupported keyword "exclusiveMinimum""#),
            "{err}"
        );
        let err = compile(json!({"oneOf": [{"type": "string"}]})).unwrap_err();
        assert!(err.starts_with(r#"body_schema: unsupported keyword "oneOf""#), "{err}");
        let err = compile(json!({"items": {"$ref": "#/defs/x"}})).unwrap_err();
        assert!(
            err.starts_with(r#"body_schema.items: unsupported keyword "$ref""#),
            "{err}"
        );
    }

    #[test]
    fn keywords_that_look_supported_but_are_not_are_refused() {
        for keyword in [
            "format",
            "default",
            "const",
            "minProperties",
            "uniqueItems",
            "$schema",
            "nullable",
        ] {
            let err = compile(json!({ keyword: "x" })).unwrap_err();
            assert!(err.contains(&format!("unsupported keyword \"{keyword}\"")), "{err}");
        }
    }

    #[test]
    fn unknown_type_name_is_refused() {
        let err = compile(json!({"type": "float"})).unwrap_err();
        assert!(err.starts_with(r#"body_schema.type: "float" is not a type"#), "{err}");
        let err = compile(json!({"type": []})).unwrap_err();
        assert_eq!(err, "body_schema.type: must not be empty");
        let err = compile(json!({"type": ["string", "string"]})).unwrap_err();
        assert_eq!(err, r#"body_schema.type: "string" is listed twice"#);
        let err = compile(json!({"type": 5})).unwrap_err();
        assert!(err.starts_with("body_schema.type: 5 is not a type"), "{err}");
    }

    #[test]
    fn a_schema_must_be_a_table_or_boolean() {
        let err = compile(json!("string")).unwrap_err();
        assert!(err.starts_with("body_schema: must be a schema"), "{err}");
        let err = compile(json!({"properties": {"a": 5}})).unwrap_err();
        assert!(err.starts_with("body_schema.properties.a: must be a schema"), "{err}");
        let err = compile(json!({"properties": ["a"]})).unwrap_err();
        assert!(err.starts_with("body_schema.properties: must be a table"), "{err}");
    }

    #[test]
    fn tuple_items_are_refused() {
        let err = compile(json!({"items": [{"type": "string"}]})).unwrap_err();
        assert!(err.starts_with("body_schema.items: must be one schema"), "{err}");
    }

    #[test]
    fn keyword_values_are_checked() {
        let cases = [
            (
                json!({"minLength": -1}),
                "body_schema.minLength: must be a non-negative integer",
            ),
            (
                json!({"maxItems": 1.5}),
                "body_schema.maxItems: must be a non-negative integer",
            ),
            (json!({"minimum": "0"}), "body_schema.minimum: must be a number"),
            (
                json!({"enum": []}),
                "body_schema.enum: must be a non-empty list of values",
            ),
            (
                json!({"required": "a"}),
                "body_schema.required: must be a list of property names",
            ),
            (
                json!({"required": ["a", 1]}),
                "body_schema.required: must be a list of property names",
            ),
            (
                json!({"required": ["a", "a"]}),
                r#"body_schema.required: "a" is listed twice"#,
            ),
            (
                json!({"pattern": 5}),
                "body_schema.pattern: must be a string (a regular expression)",
            ),
            (
                json!({"additionalProperties": "no"}),
                "body_schema.additionalProperties: must be a schema",
            ),
        ];
        for (schema, want) in cases {
            let err = compile(schema.clone()).unwrap_err();
            assert!(err.starts_with(want), "{schema}: {err}");
        }
        assert!(compile(json!({"minLength": 3.0})).is_ok());
    }

    #[test]
    fn a_pattern_the_engine_cannot_run_is_refused() {
        // Look-around and back-references are not supported by regex-lite.
        let err = compile(json!({"pattern": "^(?=a)"})).unwrap_err();
        assert!(
            err.starts_with(r#"body_schema.pattern: "^(?=a)" is not a supported regular expression"#),
            "{err}"
        );
        assert!(compile(json!({"pattern": "(a)\\1"})).is_err());
        assert!(compile(json!({"pattern": "["})).is_err());
    }

    #[test]
    fn bounds_the_wrong_way_round_are_refused() {
        let err = compile(json!({"minLength": 5, "maxLength": 2})).unwrap_err();
        assert_eq!(err, "body_schema: minLength is greater than maxLength");
        let err = compile(json!({"minItems": 5, "maxItems": 2})).unwrap_err();
        assert_eq!(err, "body_schema: minItems is greater than maxItems");
        let err = compile(json!({"minimum": 1.5, "maximum": 1})).unwrap_err();
        assert_eq!(err, "body_schema: minimum is greater than maximum");
        assert!(compile(json!({"minimum": 1, "maximum": 1.0})).is_ok());
    }

    #[test]
    fn keywords_for_another_type_are_refused() {
        let err = compile(json!({"type": "integer", "minLength": 1})).unwrap_err();
        assert_eq!(
            err,
            "body_schema.minLength: applies only to strings, and type does not allow strings"
        );
        let err = compile(json!({"type": "string", "properties": {}})).unwrap_err();
        assert!(
            err.starts_with("body_schema.properties: applies only to objects"),
            "{err}"
        );
        let err = compile(json!({"type": "object", "items": true})).unwrap_err();
        assert!(err.starts_with("body_schema.items: applies only to arrays"), "{err}");
        let err = compile(json!({"type": "boolean", "maximum": 1})).unwrap_err();
        assert!(err.starts_with("body_schema.maximum: applies only to numbers"), "{err}");
        // Integer admits number keywords; a type list admits each type's.
        assert!(compile(json!({"type": "integer", "minimum": 1})).is_ok());
        assert!(compile(json!({"type": ["string", "null"], "maxLength": 3})).is_ok());
    }

    #[test]
    fn required_property_that_additional_properties_forbids_is_refused() {
        let err = compile(json!({
            "properties": {"a": true},
            "required": ["a", "b"],
            "additionalProperties": false
        }))
        .unwrap_err();
        assert!(
            err.starts_with(r#"body_schema.required: "b" can never be present"#),
            "{err}"
        );
    }

    #[test]
    fn the_readme_documents_every_supported_keyword() {
        let readme = include_str!("../../README.md");
        for keyword in SUPPORTED.split(", ") {
            assert!(
                readme.contains(&format!("`{keyword}`")),
                "README.md does not list `{keyword}`"
            );
        }
    }

    #[test]
    fn odd_property_names_are_quoted_in_paths() {
        let err = compile(json!({"properties": {"first name": {"type": "text"}}})).unwrap_err();
        assert!(
            err.starts_with(r#"body_schema.properties["first name"].type:"#),
            "{err}"
        );
    }
}
