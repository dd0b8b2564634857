//! JSON Schema (as OpenAI clients send it in tool parameters and
//! `response_format.json_schema`) to Gemini's `Schema`, a subset of the
//! OpenAPI 3.0 schema object.
//!
//! Keywords Gemini has are copied, `type` in Gemini's upper case; a type
//! list with `null` becomes `nullable`; a string `const` becomes a
//! one-value `enum`; numbers in `enum` become strings (Gemini's enums are
//! strings). Annotations that do not constrain anything (`$schema`, `$id`,
//! `$comment`, `examples`, `deprecated`, `readOnly`, `writeOnly`) and
//! `additionalProperties: false` (Gemini never adds undeclared properties)
//! are left out. Any other keyword (`$ref`, `$defs`, `oneOf`, `allOf`,
//! `not`, `additionalProperties` other than `false`, ...) is refused with
//! its path.

use serde_json::{Map, Value};
use weir_sdk::ai::ApiError;

use crate::PROVIDER;

/// Keywords Gemini's `Schema` has with the same meaning and value.
const COPIED: &[&str] = &[
    "format",
    "title",
    "description",
    "nullable",
    "required",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "example",
    "default",
    "propertyOrdering",
];

/// Annotations without a Gemini counterpart that constrain nothing.
const ANNOTATIONS: &[&str] = &[
    "$schema",
    "$id",
    "$comment",
    "examples",
    "deprecated",
    "readOnly",
    "writeOnly",
];

/// Convert the schema at `path` (a request field path, for errors).
pub fn to_gemini(schema: &Value, path: &str) -> Result<Value, ApiError> {
    let Value::Object(schema) = schema else {
        return Err(ApiError::invalid_request(
            Some(path),
            &format!("{path} must be a JSON Schema object"),
        ));
    };
    let mut out = Map::new();
    for (key, value) in schema {
        let at = format!("{path}.{key}");
        match key.as_str() {
            "type" => {
                let (kind, nullable) = gemini_type(value, &at)?;
                out.insert("type".into(), Value::String(kind));
                if nullable {
                    out.insert("nullable".into(), Value::Bool(true));
                }
            }
            "properties" => {
                let Value::Object(properties) = value else {
                    return Err(ApiError::invalid_request(Some(&at), &format!("{at} must be an object")));
                };
                let mut converted = Map::new();
                for (name, property) in properties {
                    converted.insert(name.clone(), to_gemini(property, &format!("{at}.{name}"))?);
                }
                out.insert(key.clone(), Value::Object(converted));
            }
            "items" => {
                out.insert(key.clone(), to_gemini(value, &at)?);
            }
            "anyOf" => {
                let Value::Array(options) = value else {
                    return Err(ApiError::invalid_request(Some(&at), &format!("{at} must be an array")));
                };
                let converted = options
                    .iter()
                    .enumerate()
                    .map(|(i, option)| to_gemini(option, &format!("{at}[{i}]")))
                    .collect::<Result<Vec<_>, _>>()?;
                out.insert(key.clone(), Value::Array(converted));
            }
            "enum" => {
                out.insert(key.clone(), gemini_enum(value, &at)?);
            }
            "const" => match value {
                Value::String(_) if !schema.contains_key("enum") => {
                    out.insert("enum".into(), Value::Array(vec![value.clone()]));
                }
                _ => return Err(refused(&at, "only a string `const` (without `enum`) can be expressed")),
            },
            "additionalProperties" if *value == Value::Bool(false) => {}
            _ if COPIED.contains(&key.as_str()) => {
                out.insert(key.clone(), value.clone());
            }
            _ if ANNOTATIONS.contains(&key.as_str()) => {}
            _ => return Err(ApiError::unsupported(&at, PROVIDER)),
        }
    }
    Ok(Value::Object(out))
}

/// Whether a converted schema is an object without properties: Gemini
/// refuses those as function parameters, and leaving them out means the
/// same (no arguments).
pub fn is_empty_object(schema: &Value) -> bool {
    schema.get("type").and_then(Value::as_str) == Some("OBJECT")
        && schema
            .get("properties")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty)
        && schema.as_object().is_some_and(|s| {
            s.keys()
                .all(|k| matches!(k.as_str(), "type" | "properties" | "required" | "title" | "description"))
        })
}

/// `"string"` → `STRING`; `["string", "null"]` → `STRING` and nullable.
fn gemini_type(value: &Value, at: &str) -> Result<(String, bool), ApiError> {
    match value {
        Value::String(kind) => Ok((kind.to_ascii_uppercase(), false)),
        Value::Array(kinds) => {
            let names = kinds
                .iter()
                .map(|k| k.as_str().ok_or_else(|| refused(at, "type names must be strings")))
                .collect::<Result<Vec<_>, _>>()?;
            let nullable = names.contains(&"null");
            let others: Vec<&str> = names.into_iter().filter(|k| *k != "null").collect();
            match others.as_slice() {
                [] if nullable => Ok(("NULL".into(), false)),
                [kind] => Ok((kind.to_ascii_uppercase(), nullable)),
                _ => Err(refused(
                    at,
                    "a schema has one type (and may be nullable); use anyOf for several",
                )),
            }
        }
        _ => Err(refused(at, "type must be a string or a list of strings")),
    }
}

/// Gemini's enum values are strings; numbers are written as strings.
fn gemini_enum(value: &Value, at: &str) -> Result<Value, ApiError> {
    let Value::Array(values) = value else {
        return Err(ApiError::invalid_request(Some(at), &format!("{at} must be an array")));
    };
    values
        .iter()
        .map(|v| match v {
            Value::String(_) => Ok(v.clone()),
            Value::Number(n) => Ok(Value::String(n.to_string())),
            _ => Err(refused(at, "enum values must be strings or numbers")),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

fn refused(at: &str, why: &str) -> ApiError {
    ApiError {
        message: format!("{at} is not supported by {PROVIDER}: {why}"),
        ..ApiError::unsupported(at, PROVIDER)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_typical_schema_converts() {
        let schema = json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city"},
                "unit": {"type": ["string", "null"], "enum": ["c", "f"]},
                "days": {"type": "integer", "enum": [1, 3], "minimum": 1},
                "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
                "kind": {"const": "weather"},
                "place": {"anyOf": [{"type": "string"}, {"type": "null"}]}
            },
            "required": ["city"],
            "additionalProperties": false
        });
        assert_eq!(
            to_gemini(&schema, "p").unwrap(),
            json!({
                "type": "OBJECT",
                "properties": {
                    "city": {"type": "STRING", "description": "The city"},
                    "unit": {"type": "STRING", "nullable": true, "enum": ["c", "f"]},
                    "days": {"type": "INTEGER", "enum": ["1", "3"], "minimum": 1},
                    "tags": {"type": "ARRAY", "items": {"type": "STRING"}, "maxItems": 3},
                    "kind": {"enum": ["weather"]},
                    "place": {"anyOf": [{"type": "STRING"}, {"type": "NULL"}]}
                },
                "required": ["city"]
            })
        );
    }

    #[test]
    fn what_gemini_cannot_express_is_refused_with_its_path() {
        let cases = [
            (json!({"type": "object", "$defs": {}}), "p.$defs"),
            (json!({"properties": {"a": {"oneOf": []}}}), "p.properties.a.oneOf"),
            (json!({"type": ["string", "integer"]}), "p.type"),
            (json!({"additionalProperties": true}), "p.additionalProperties"),
            (json!({"items": {"$ref": "#/x"}}), "p.items.$ref"),
            (json!({"enum": [true]}), "p.enum"),
            (json!({"const": 3}), "p.const"),
            (json!("string"), "p"),
        ];
        for (schema, field) in cases {
            let error = to_gemini(&schema, "p").unwrap_err();
            assert_eq!(error.status, 400);
            assert_eq!(error.param.as_deref(), Some(field), "{schema}");
        }
    }

    #[test]
    fn only_objects_without_properties_are_empty() {
        let empty = to_gemini(&json!({"type": "object", "properties": {}}), "p").unwrap();
        assert!(is_empty_object(&empty));
        assert!(is_empty_object(&json!({"type": "OBJECT"})));
        assert!(!is_empty_object(&json!({"type": "OBJECT", "properties": {"a": {}}})));
        assert!(!is_empty_object(&json!({"type": "STRING"})));
    }
}
