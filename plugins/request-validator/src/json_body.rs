//! Parsing a request body as JSON, strictly.
//!
//! Besides what any JSON parser refuses, an object with the same key twice
//! is refused: parsers disagree on which value wins, so the validator
//! could check one value while the upstream reads the other. Nesting
//! deeper than serde_json's limit (128) is refused too, which also bounds
//! how deep validation recurses.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::schema::quote;

/// Parse `body` as one JSON value. The error says what is wrong and where
/// (`expected value at line 1 column 9`).
pub fn parse(body: &[u8]) -> Result<Value, String> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let Strict(value) = Strict::deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(value)
}

/// A JSON value whose objects have no repeated keys.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Strict, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // serde_json never yields NaN or infinity; `from` would make null.
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key {}", quote(&key))));
            }
            let Strict(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_any_json_value() {
        assert_eq!(
            parse(br#" {"a": [1, -2, 3.5, "x", null, true]} "#),
            Ok(json!({"a": [1, -2, 3.5, "x", null, true]}))
        );
        assert_eq!(parse(b"18446744073709551615"), Ok(json!(u64::MAX)));
        assert_eq!(parse(b"\"\\u00e9\""), Ok(json!("é")));
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        assert_eq!(
            parse(b"{\n  \"a\": 1,\n}").unwrap_err(),
            "trailing comma at line 3 column 1"
        );
        assert_eq!(parse(b"{\"a\" 1}").unwrap_err(), "expected `:` at line 1 column 6");
        assert_eq!(parse(b"").unwrap_err(), "EOF while parsing a value at line 1 column 0");
        assert_eq!(
            parse(b"nul").unwrap_err(),
            "EOF while parsing a value at line 1 column 3"
        );
    }

    #[test]
    fn trailing_data_is_refused() {
        assert_eq!(parse(b"{} {}").unwrap_err(), "trailing characters at line 1 column 4");
    }

    #[test]
    fn duplicate_keys_are_refused_with_their_position() {
        let err = parse(b"{\"a\": 1,\n \"b\": {\"c\": 1, \"c\": 2}}").unwrap_err();
        assert!(err.starts_with(r#"duplicate key "c" at line 2"#), "{err}");
        // The same key in different objects is fine.
        assert!(parse(br#"[{"a": 1}, {"a": 2}]"#).is_ok());
    }

    #[test]
    fn invalid_utf8_is_refused() {
        assert!(parse(b"\"\xff\"").unwrap_err().contains("line 1"));
    }

    #[test]
    fn deep_nesting_is_refused() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let err = parse(deep.as_bytes()).unwrap_err();
        assert!(err.starts_with("recursion limit exceeded"), "{err}");
    }
}
