//! Variable types, and how a JSON value becomes text in a prompt.

use serde_json::Value;

/// The type a template declares for a variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarType {
    /// A JSON string.
    String,
    /// A JSON number without fraction or exponent.
    Integer,
    /// Any JSON number.
    Number,
    /// `true` or `false`.
    Boolean,
}

impl VarType {
    /// The type named in the config, if it is one.
    pub fn parse(name: &str) -> Option<VarType> {
        match name {
            "string" => Some(VarType::String),
            "integer" => Some(VarType::Integer),
            "number" => Some(VarType::Number),
            "boolean" => Some(VarType::Boolean),
            _ => None,
        }
    }

    /// Its name in the config and in errors.
    pub fn name(self) -> &'static str {
        match self {
            VarType::String => "string",
            VarType::Integer => "integer",
            VarType::Number => "number",
            VarType::Boolean => "boolean",
        }
    }

    /// Whether `value` is of this type.
    pub fn accepts(self, value: &Value) -> bool {
        match (self, value) {
            (VarType::String, Value::String(_)) | (VarType::Boolean, Value::Bool(_)) => true,
            (VarType::Integer, Value::Number(n)) => n.is_i64() || n.is_u64(),
            (VarType::Number, Value::Number(_)) => true,
            _ => false,
        }
    }
}

/// The type of a JSON value, as errors name it (`integer` for a number
/// without fraction or exponent).
pub fn type_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A scalar value as the text inserted into a prompt: strings as they
/// are, numbers as JSON writes them (`50`, `0.5`, `1e300`), booleans as
/// `true` or `false`.
pub fn as_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_type_accepts_its_values_only() {
        let values = [
            json!("s"),
            json!(3),
            json!(-3),
            json!(2.5),
            json!(true),
            json!(null),
            json!([1]),
            json!({}),
        ];
        let accepted = |t: VarType| values.iter().filter(|v| t.accepts(v)).cloned().collect::<Vec<_>>();
        assert_eq!(accepted(VarType::String), vec![json!("s")]);
        assert_eq!(accepted(VarType::Integer), vec![json!(3), json!(-3)]);
        assert_eq!(accepted(VarType::Number), vec![json!(3), json!(-3), json!(2.5)]);
        assert_eq!(accepted(VarType::Boolean), vec![json!(true)]);
    }

    #[test]
    fn a_number_with_a_fraction_is_not_an_integer() {
        let two: Value = serde_json::from_str("2.0").unwrap();
        assert!(!VarType::Integer.accepts(&two));
        assert_eq!(type_of(&two), "number");
    }

    #[test]
    fn type_names_round_trip() {
        for t in [VarType::String, VarType::Integer, VarType::Number, VarType::Boolean] {
            assert_eq!(VarType::parse(t.name()), Some(t));
        }
        assert_eq!(VarType::parse("str"), None);
    }

    #[test]
    fn values_become_plain_text() {
        assert_eq!(as_text(&json!("a \"quoted\"\nline")), "a \"quoted\"\nline");
        assert_eq!(as_text(&json!(50)), "50");
        assert_eq!(as_text(&json!(-7)), "-7");
        assert_eq!(as_text(&json!(0.25)), "0.25");
        assert_eq!(as_text(&json!(u64::MAX)), "18446744073709551615");
        assert_eq!(as_text(&json!(false)), "false");
    }

    #[test]
    fn json_types_are_named() {
        assert_eq!(type_of(&json!(null)), "null");
        assert_eq!(type_of(&json!("x")), "string");
        assert_eq!(type_of(&json!(1)), "integer");
        assert_eq!(type_of(&json!(1.5)), "number");
        assert_eq!(type_of(&json!(true)), "boolean");
        assert_eq!(type_of(&json!([])), "array");
        assert_eq!(type_of(&json!({})), "object");
    }
}
