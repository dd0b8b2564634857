//! A small, strict subset of JSON Schema for request bodies.
//!
//! Supported keywords: `type` (one name or a list of `object`, `array`,
//! `string`, `integer`, `number`, `boolean`, `null`), `properties`,
//! `required`, `additionalProperties` (`false`, `true` or a schema),
//! `items` (one schema for every item), `enum`, `minLength`/`maxLength`
//! (counted in characters), `minimum`/`maximum` (inclusive),
//! `minItems`/`maxItems` and `pattern` (an unanchored search, in the
//! syntax of the `regex-lite` crate). `true` and `false` are schemas too
//! (anything, nothing). `title`, `description` and `$comment` are accepted
//! and do nothing.
//!
//! Anything else is refused when the schema is compiled, naming the
//! keyword and where it is: a validator that quietly skipped
//! `exclusiveMinimum` or `oneOf` would let through what the author meant
//! to stop. A keyword that cannot apply to the schema's own `type`
//! (`minLength` on an integer) is refused for the same reason.
//!
//! As in JSON Schema, a keyword constrains only values of its kind:
//! `minLength` says nothing about a number unless `type` rules numbers out.
//! `1.0` is an integer, and `enum` compares numbers by value.
//!
//! [`Schema::compile`] is in `compile.rs`, [`Schema::validate`] in
//! `validate.rs`.

mod compile;
pub use compile::pattern;
mod validate;

use std::cmp::Ordering;

use regex_lite::Regex;
use serde_json::{Number, Value};

/// Most problems reported for one body; validation stops there.
pub const MAX_PROBLEMS: usize = 10;

/// A compiled body schema.
#[derive(Debug)]
pub struct Schema {
    root: Node,
}

/// One (sub)schema.
#[derive(Debug)]
enum Node {
    /// `true` or `{}`: every value.
    Any,
    /// `false`: no value.
    Nothing,
    /// An object schema with at least one keyword.
    Rules(Box<Rules>),
}

/// The keywords of one object schema; `None` where the keyword is absent.
#[derive(Debug, Default)]
struct Rules {
    types: Option<Vec<JsonType>>,
    properties: Vec<(String, Node)>,
    required: Vec<String>,
    additional_properties: Option<Node>,
    items: Option<Node>,
    enumeration: Option<Vec<Value>>,
    min_length: Option<u64>,
    max_length: Option<u64>,
    minimum: Option<Number>,
    maximum: Option<Number>,
    min_items: Option<u64>,
    max_items: Option<u64>,
    pattern: Option<Regex>,
}

/// The names `type` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JsonType {
    Object,
    Array,
    String,
    Integer,
    Number,
    Boolean,
    Null,
}

impl JsonType {
    const ALL: [(&'static str, JsonType); 7] = [
        ("object", JsonType::Object),
        ("array", JsonType::Array),
        ("string", JsonType::String),
        ("integer", JsonType::Integer),
        ("number", JsonType::Number),
        ("boolean", JsonType::Boolean),
        ("null", JsonType::Null),
    ];

    fn from_name(name: &str) -> Option<JsonType> {
        JsonType::ALL.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
    }

    /// How a message names a value of this type: "must be {article}".
    fn with_article(self) -> &'static str {
        match self {
            JsonType::Object => "an object",
            JsonType::Array => "an array",
            JsonType::String => "a string",
            JsonType::Integer => "an integer",
            JsonType::Number => "a number",
            JsonType::Boolean => "a boolean",
            JsonType::Null => "null",
        }
    }

    /// Whether `value` is of this type (`1.0` is an integer; every integer
    /// is a number).
    fn admits(self, value: &Value) -> bool {
        match (self, value) {
            (JsonType::Object, Value::Object(_))
            | (JsonType::Array, Value::Array(_))
            | (JsonType::String, Value::String(_))
            | (JsonType::Number, Value::Number(_))
            | (JsonType::Boolean, Value::Bool(_))
            | (JsonType::Null, Value::Null) => true,
            (JsonType::Integer, Value::Number(n)) => is_integer(n),
            _ => false,
        }
    }
}

/// Whether a JSON number has no fractional part.
fn is_integer(n: &Number) -> bool {
    n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.is_finite() && f.fract() == 0.0)
}

/// Compare two JSON numbers by value: exactly when both are integers,
/// as floating point otherwise. `None` only for NaN, which JSON cannot
/// hold.
pub fn compare_numbers(a: &Number, b: &Number) -> Option<Ordering> {
    fn exact(n: &Number) -> Option<i128> {
        n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from))
    }
    match (exact(a), exact(b)) {
        (Some(a), Some(b)) => Some(a.cmp(&b)),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

/// JSON Schema equality: numbers by value, objects regardless of key
/// order, everything else structurally.
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => compare_numbers(a, b) == Some(Ordering::Equal),
        (Value::Array(a), Value::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(a, b)| json_equal(a, b)),
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

/// Longest object key quoted in a path or message; longer keys are cut,
/// so a client cannot make an error response arbitrarily large.
const MAX_KEY_IN_PATH: usize = 64;

/// Append `.key` to a JSON path, or `["key"]` when the key is not a plain
/// identifier.
pub fn push_key(path: &mut String, key: &str) {
    let plain = key.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain && key.len() <= MAX_KEY_IN_PATH {
        path.push('.');
        path.push_str(key);
    } else {
        path.push('[');
        path.push_str(&quote(key));
        path.push(']');
    }
}

/// A key as a JSON string, cut to [`MAX_KEY_IN_PATH`] characters.
pub fn quote(key: &str) -> String {
    match key.char_indices().nth(MAX_KEY_IN_PATH) {
        Some((cut, _)) => Value::from(format!("{}...", &key[..cut])).to_string(),
        None => Value::from(key).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn number(v: Value) -> Number {
        match v {
            Value::Number(n) => n,
            other => panic!("not a number: {other}"),
        }
    }

    #[test]
    fn numbers_compare_by_value() {
        assert_eq!(
            compare_numbers(&number(json!(1)), &number(json!(1.0))),
            Some(Ordering::Equal)
        );
        assert_eq!(
            compare_numbers(&number(json!(-1)), &number(json!(0))),
            Some(Ordering::Less)
        );
        assert_eq!(
            compare_numbers(&number(json!(0.5)), &number(json!(0))),
            Some(Ordering::Greater)
        );
        // Beyond f64 precision, integers still compare exactly.
        assert_eq!(
            compare_numbers(&number(json!(u64::MAX)), &number(json!(u64::MAX - 1))),
            Some(Ordering::Greater)
        );
        assert_eq!(
            compare_numbers(&number(json!(i64::MIN)), &number(json!(u64::MAX))),
            Some(Ordering::Less)
        );
    }

    #[test]
    fn integers_include_whole_floats() {
        assert!(is_integer(&number(json!(3))));
        assert!(is_integer(&number(json!(-3))));
        assert!(is_integer(&number(json!(3.0))));
        assert!(!is_integer(&number(json!(3.5))));
    }

    #[test]
    fn equality_ignores_number_form_and_key_order() {
        assert!(json_equal(&json!(1), &json!(1.0)));
        assert!(json_equal(&json!({"a": 1, "b": [2]}), &json!({"b": [2.0], "a": 1})));
        assert!(!json_equal(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
        assert!(!json_equal(&json!([1, 2]), &json!([2, 1])));
        assert!(!json_equal(&json!("1"), &json!(1)));
    }

    #[test]
    fn paths_quote_keys_that_are_not_identifiers() {
        let mut path = "$".to_string();
        push_key(&mut path, "items");
        push_key(&mut path, "first name");
        push_key(&mut path, "a\"b");
        assert_eq!(path, r#"$.items["first name"]["a\"b"]"#);
    }

    #[test]
    fn long_keys_are_cut_in_paths() {
        let mut path = "$".to_string();
        push_key(&mut path, &"k".repeat(1000));
        assert!(path.len() < 80, "{path}");
        assert!(path.ends_with(r#"..."]"#), "{path}");
        // A multi-byte character at the cut does not split.
        assert!(quote(&"é".repeat(100)).ends_with("é...\""));
    }
}
