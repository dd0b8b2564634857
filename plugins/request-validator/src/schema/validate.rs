//! Checking a parsed body against a [`Schema`].
//!
//! Each problem is one line, `<JSON path>: <what is wrong>`, as in
//! `$.items[2].price: must be at least 0`. Validation stops after
//! [`MAX_PROBLEMS`]; a value of the wrong type gets that one problem and
//! none about its contents. Messages name what was expected, never echo
//! the client's values (object keys in paths are cut short).

use std::cmp::Ordering;

use serde_json::{Map, Value};

use super::{JsonType, MAX_PROBLEMS, Node, Rules, Schema, compare_numbers, json_equal, push_key};

/// Most `enum` values listed in a message.
const MAX_LISTED: usize = 10;

impl Schema {
    /// The problems with `body`, at most [`MAX_PROBLEMS`]; empty if it is
    /// valid.
    pub fn validate(&self, body: &Value) -> Vec<String> {
        let mut problems = Vec::new();
        let mut path = "$".to_string();
        check(&self.root, body, &mut path, &mut problems);
        problems
    }
}

/// Append one problem unless the list is full.
fn report(problems: &mut Vec<String>, path: &str, message: impl std::fmt::Display) {
    if problems.len() < MAX_PROBLEMS {
        problems.push(format!("{path}: {message}"));
    }
}

fn full(problems: &[String]) -> bool {
    problems.len() >= MAX_PROBLEMS
}

fn check(node: &Node, value: &Value, path: &mut String, problems: &mut Vec<String>) {
    match node {
        Node::Any => {}
        Node::Nothing => report(problems, path, "is not allowed"),
        Node::Rules(rules) => check_rules(rules, value, path, problems),
    }
}

fn check_rules(rules: &Rules, value: &Value, path: &mut String, problems: &mut Vec<String>) {
    if let Some(types) = &rules.types
        && !types.iter().any(|t| t.admits(value))
    {
        report(problems, path, format!("must be {}", type_list(types)));
        return;
    }
    if let Some(allowed) = &rules.enumeration
        && !allowed.iter().any(|a| json_equal(a, value))
    {
        report(problems, path, format!("must be one of {}", value_list(allowed)));
        return;
    }
    match value {
        Value::String(s) => check_string(rules, s, path, problems),
        Value::Number(n) => {
            if let Some(min) = &rules.minimum
                && compare_numbers(n, min) == Some(Ordering::Less)
            {
                report(problems, path, format!("must be at least {min}"));
            }
            if let Some(max) = &rules.maximum
                && compare_numbers(n, max) == Some(Ordering::Greater)
            {
                report(problems, path, format!("must be at most {max}"));
            }
        }
        Value::Array(items) => check_array(rules, items, path, problems),
        Value::Object(object) => check_object(rules, object, path, problems),
        Value::Bool(_) | Value::Null => {}
    }
}

fn check_string(rules: &Rules, s: &str, path: &str, problems: &mut Vec<String>) {
    if rules.min_length.is_some() || rules.max_length.is_some() {
        let length = s.chars().count() as u64;
        if let Some(min) = rules.min_length
            && length < min
        {
            report(
                problems,
                path,
                format!("must be at least {min} {} long", plural(min, "character")),
            );
        }
        if let Some(max) = rules.max_length
            && length > max
        {
            report(
                problems,
                path,
                format!("must be at most {max} {} long", plural(max, "character")),
            );
        }
    }
    if let Some(pattern) = &rules.pattern
        && !pattern.is_match(s)
    {
        report(
            problems,
            path,
            format!("must match the pattern {}", Value::from(pattern.as_str())),
        );
    }
}

fn check_array(rules: &Rules, items: &[Value], path: &mut String, problems: &mut Vec<String>) {
    let count = items.len() as u64;
    if let Some(min) = rules.min_items
        && count < min
    {
        report(
            problems,
            path,
            format!("must have at least {min} {}", plural(min, "item")),
        );
    }
    if let Some(max) = rules.max_items
        && count > max
    {
        report(
            problems,
            path,
            format!("must have at most {max} {}", plural(max, "item")),
        );
    }
    let Some(schema) = &rules.items else { return };
    for (index, item) in items.iter().enumerate() {
        if full(problems) {
            return;
        }
        let depth = path.len();
        path.push_str(&format!("[{index}]"));
        check(schema, item, path, problems);
        path.truncate(depth);
    }
}

fn check_object(rules: &Rules, object: &Map<String, Value>, path: &mut String, problems: &mut Vec<String>) {
    for name in &rules.required {
        if !object.contains_key(name) {
            let depth = path.len();
            push_key(path, name);
            report(problems, path, "is required");
            path.truncate(depth);
        }
    }
    for (key, value) in object {
        if full(problems) {
            return;
        }
        let schema = match rules.properties.iter().find(|(name, _)| name == key) {
            Some((_, schema)) => schema,
            None => match &rules.additional_properties {
                Some(schema) => schema,
                None => continue,
            },
        };
        let depth = path.len();
        push_key(path, key);
        check(schema, value, path, problems);
        path.truncate(depth);
    }
}

/// "a string", "a string or null", "an object, an array or null".
fn type_list(types: &[JsonType]) -> String {
    let names: Vec<&str> = types.iter().map(|t| t.with_article()).collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => names.concat(),
    }
}

/// `"new", "paid"` (JSON text), cut after [`MAX_LISTED`] values.
fn value_list(values: &[Value]) -> String {
    let mut listed: Vec<String> = values.iter().take(MAX_LISTED).map(Value::to_string).collect();
    if values.len() > MAX_LISTED {
        listed.push("...".to_string());
    }
    listed.join(", ")
}

fn plural(n: u64, word: &str) -> String {
    if n == 1 { word.to_string() } else { format!("{word}s") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problems(schema: Value, body: Value) -> Vec<String> {
        Schema::compile(&schema, "body_schema").unwrap().validate(&body)
    }

    #[test]
    fn valid_body_has_no_problems() {
        let schema = json!({
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}}
        });
        assert!(problems(schema, json!({"name": "a", "tags": ["x"], "extra": 1})).is_empty());
    }

    #[test]
    fn wrong_type_is_named() {
        assert_eq!(problems(json!({"type": "object"}), json!([])), ["$: must be an object"]);
        assert_eq!(problems(json!({"type": "array"}), json!({})), ["$: must be an array"]);
        assert_eq!(problems(json!({"type": "string"}), json!(1)), ["$: must be a string"]);
        assert_eq!(
            problems(json!({"type": "integer"}), json!(1.5)),
            ["$: must be an integer"]
        );
        assert_eq!(problems(json!({"type": "number"}), json!("1")), ["$: must be a number"]);
        assert_eq!(problems(json!({"type": "boolean"}), json!(0)), ["$: must be a boolean"]);
        assert_eq!(problems(json!({"type": "null"}), json!(false)), ["$: must be null"]);
        assert_eq!(
            problems(json!({"type": ["string", "integer", "null"]}), json!(true)),
            ["$: must be a string, an integer or null"]
        );
    }

    #[test]
    fn whole_floats_are_integers_and_integers_are_numbers() {
        assert!(problems(json!({"type": "integer"}), json!(2.0)).is_empty());
        assert!(problems(json!({"type": "number"}), json!(2)).is_empty());
    }

    #[test]
    fn wrong_type_stops_checks_on_that_value() {
        let schema = json!({"type": "string", "minLength": 5});
        assert_eq!(problems(schema, json!(3)), ["$: must be a string"]);
    }

    #[test]
    fn keywords_ignore_values_of_other_types() {
        // No `type`: minLength says nothing about numbers.
        assert!(problems(json!({"minLength": 5, "minimum": 3}), json!(10)).is_empty());
        assert!(problems(json!({"minLength": 5, "minimum": 3}), json!("hello")).is_empty());
    }

    #[test]
    fn missing_required_property_is_named() {
        let schema = json!({"type": "object", "required": ["customer", "items"]});
        assert_eq!(problems(schema, json!({"items": []})), ["$.customer: is required"]);
    }

    #[test]
    fn unknown_property_is_refused_when_additional_properties_is_false() {
        let schema = json!({"properties": {"a": true}, "additionalProperties": false});
        assert_eq!(problems(schema, json!({"a": 1, "b": 2})), ["$.b: is not allowed"]);
    }

    #[test]
    fn additional_properties_schema_checks_unlisted_values() {
        let schema = json!({"properties": {"a": true}, "additionalProperties": {"type": "string"}});
        assert_eq!(
            problems(schema, json!({"a": 1, "b": "x", "c d": 2})),
            [r#"$["c d"]: must be a string"#]
        );
    }

    #[test]
    fn false_schema_allows_nothing() {
        let schema = json!({"properties": {"secret": false}});
        assert_eq!(
            problems(schema.clone(), json!({"secret": null})),
            ["$.secret: is not allowed"]
        );
        assert!(problems(schema, json!({})).is_empty());
    }

    #[test]
    fn nested_paths_name_the_item() {
        let schema = json!({
            "type": "object",
            "properties": {"items": {"type": "array", "items": {
                "type": "object",
                "properties": {"price": {"type": "number", "minimum": 0}}
            }}}
        });
        let body = json!({"items": [{"price": 1}, {"price": 0}, {"price": -5}]});
        assert_eq!(problems(schema, body), ["$.items[2].price: must be at least 0"]);
    }

    #[test]
    fn enum_lists_the_allowed_values() {
        let schema = json!({"enum": ["new", "paid", 3]});
        assert_eq!(
            problems(schema.clone(), json!("lost")),
            [r#"$: must be one of "new", "paid", 3"#]
        );
        assert!(problems(schema.clone(), json!("paid")).is_empty());
        assert!(problems(schema, json!(3.0)).is_empty());
    }

    #[test]
    fn long_enum_lists_are_cut() {
        let values: Vec<u32> = (0..30).collect();
        let got = problems(json!({ "enum": values }), json!(99));
        assert_eq!(got, ["$: must be one of 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ..."]);
    }

    #[test]
    fn string_length_counts_characters() {
        let schema = json!({"type": "string", "minLength": 2, "maxLength": 3});
        assert_eq!(
            problems(schema.clone(), json!("a")),
            ["$: must be at least 2 characters long"]
        );
        assert_eq!(
            problems(schema.clone(), json!("abcd")),
            ["$: must be at most 3 characters long"]
        );
        // Three characters, six bytes.
        assert!(problems(schema, json!("ééé")).is_empty());
        assert_eq!(
            problems(json!({"minLength": 1}), json!("")),
            ["$: must be at least 1 character long"]
        );
    }

    #[test]
    fn numbers_are_bounded_inclusively() {
        let schema = json!({"type": "number", "minimum": 0, "maximum": 9.5});
        assert!(problems(schema.clone(), json!(0)).is_empty());
        assert!(problems(schema.clone(), json!(9.5)).is_empty());
        assert_eq!(problems(schema.clone(), json!(-0.1)), ["$: must be at least 0"]);
        assert_eq!(problems(schema, json!(10)), ["$: must be at most 9.5"]);
    }

    #[test]
    fn array_sizes_are_bounded() {
        let schema = json!({"type": "array", "minItems": 1, "maxItems": 2});
        assert_eq!(problems(schema.clone(), json!([])), ["$: must have at least 1 item"]);
        assert_eq!(
            problems(schema.clone(), json!([1, 2, 3])),
            ["$: must have at most 2 items"]
        );
        assert!(problems(schema, json!([1, 2])).is_empty());
    }

    #[test]
    fn pattern_searches_the_string() {
        let schema = json!({"type": "string", "pattern": "^[a-z]+-[0-9]+$"});
        assert!(problems(schema.clone(), json!("order-12")).is_empty());
        assert_eq!(
            problems(schema, json!("Order-12")),
            [r#"$: must match the pattern "^[a-z]+-[0-9]+$""#]
        );
        // Unanchored, as in JSON Schema.
        assert!(problems(json!({"pattern": "[0-9]"}), json!("abc1def")).is_empty());
    }

    #[test]
    fn several_problems_are_reported_together() {
        let schema = json!({
            "type": "object",
            "required": ["id"],
            "properties": {"id": true, "name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
            "additionalProperties": false
        });
        let got = problems(schema, json!({"age": -1, "name": 5, "x": 0}));
        // Required first, then the body's keys in order.
        assert_eq!(
            got,
            [
                "$.id: is required",
                "$.age: must be at least 0",
                "$.name: must be a string",
                "$.x: is not allowed"
            ]
        );
    }

    #[test]
    fn at_most_ten_problems_are_reported() {
        let schema = json!({"type": "array", "items": {"type": "string"}});
        let body = json!((0..100).collect::<Vec<u32>>());
        let got = problems(schema, body);
        assert_eq!(got.len(), MAX_PROBLEMS);
        assert_eq!(got[0], "$[0]: must be a string");
        assert_eq!(got[9], "$[9]: must be a string");
    }

    #[test]
    fn problems_do_not_echo_long_keys() {
        let schema = json!({"additionalProperties": false});
        let key = "x".repeat(10_000);
        let got = problems(schema, json!({ key: 1 }));
        assert_eq!(got.len(), 1);
        assert!(got[0].len() < 100, "{}", got[0]);
    }
}
