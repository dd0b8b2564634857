//! Loading a config: what is accepted, and every problem `configure`
//! reports.

use serde_json::{Value, json};

use crate::catalog::{Incoming, Outcome};
use crate::settings::checked;

/// A config of the given templates.
fn with_templates(templates: Value) -> String {
    json!({ "templates": templates }).to_string()
}

/// One `summarize v2` template with these messages and variables.
fn one(messages: Value, variables: Value) -> String {
    with_templates(
        json!([{"name": "summarize", "version": 2, "model": "m", "messages": messages, "variables": variables}]),
    )
}

fn user(content: &str) -> Value {
    json!([{"role": "user", "content": content}])
}

/// A `POST` with this body.
struct Post<'a>(&'a str);

impl Incoming for Post<'_> {
    fn method(&self) -> String {
        "POST".into()
    }
    fn accept(&self) -> Option<String> {
        None
    }
    fn body(&self) -> Option<Vec<u8>> {
        Some(self.0.as_bytes().to_vec())
    }
}

fn error(config: &str) -> String {
    match checked(config) {
        Ok(catalog) => panic!("config accepted: {catalog:?}"),
        Err(e) => e,
    }
}

#[test]
fn the_prefix_defaults_to_prompts() {
    let catalog = checked(&one(user("hi"), json!({}))).unwrap();
    let request = json!({}).to_string();
    assert!(catalog.find("summarize", Some(2)).is_ok());
    assert!(matches!(
        catalog.handle("/prompts/summarize", &Post(&request)),
        Outcome::Call(_)
    ));
}

#[test]
fn an_undeclared_placeholder_is_rejected_naming_template_version_and_message() {
    let err = error(&one(user("{{text}} {{ words }}"), json!({"text": {"type": "string"}})));
    assert_eq!(
        err,
        "templates[0] (summarize v2): messages[0].content: {{words}} names no declared variable"
    );
}

#[test]
fn a_declared_variable_no_message_uses_is_rejected() {
    let err = error(&one(
        user("{{text}}"),
        json!({"text": {"type": "string"}, "words": {"type": "integer", "default": 5}}),
    ));
    assert_eq!(
        err,
        "templates[0] (summarize v2): variables.words: declared but used in no message"
    );
}

#[test]
fn an_escaped_placeholder_does_not_count_as_a_use() {
    let err = error(&one(user(r"\{{text}}"), json!({"text": {"type": "string"}})));
    assert!(
        err.ends_with("variables.text: declared but used in no message"),
        "{err}"
    );
}

#[test]
fn a_default_of_the_wrong_type_is_rejected() {
    for (kind, default, given) in [
        ("integer", json!("50"), "string"),
        ("integer", json!(2.5), "number"),
        ("number", json!("x"), "string"),
        ("boolean", json!(1), "integer"),
        ("string", json!(1), "integer"),
        ("string", json!(["a"]), "array"),
    ] {
        let err = error(&one(user("{{v}}"), json!({"v": {"type": kind, "default": default}})));
        assert_eq!(
            err,
            format!("templates[0] (summarize v2): variables.v: default: must be {kind}, not {given}")
        );
    }
}

#[test]
fn an_integer_default_suits_a_number() {
    assert!(checked(&one(user("{{v}}"), json!({"v": {"type": "number", "default": 1}}))).is_ok());
}

#[test]
fn a_required_variable_with_a_default_is_rejected() {
    let err = error(&one(
        user("{{v}}"),
        json!({"v": {"type": "string", "required": true, "default": "x"}}),
    ));
    assert!(
        err.ends_with("variables.v: a required variable cannot have a default"),
        "{err}"
    );
}

#[test]
fn an_unknown_variable_type_is_rejected() {
    let err = error(&one(user("{{v}}"), json!({"v": {"type": "str"}})));
    assert!(
        err.contains("variables.v: type: \"str\" must be string, integer, number or boolean"),
        "{err}"
    );
}

#[test]
fn a_bad_variable_name_is_rejected() {
    let err = error(&one(user("hi"), json!({"a b": {"type": "string"}})));
    assert!(err.contains("variables.a b: a name is"), "{err}");
}

#[test]
fn required_defaults_to_whether_there_is_a_default() {
    let catalog = checked(&one(
        user("{{a}}{{b}}{{c}}"),
        json!({"a": {"type": "string"}, "b": {"type": "string", "default": "x"}, "c": {"type": "string", "required": false}}),
    ))
    .unwrap();
    let template = catalog.find("summarize", None).unwrap();
    let required: Vec<bool> = template.variables.values().map(|v| v.required).collect();
    assert_eq!(required, [true, false, false]);
}

#[test]
fn a_duplicate_name_and_version_is_rejected() {
    let t = json!({"name": "summarize", "version": 2, "model": "m", "messages": user("hi")});
    let other = json!({"name": "summarize", "version": 1, "model": "m", "messages": user("hi")});
    let err = error(&with_templates(json!([t, other, t])));
    assert_eq!(
        err,
        "templates[2] (summarize v2): duplicate of templates[0]: name and version must be unique"
    );
}

#[test]
fn a_bad_role_is_rejected() {
    for role in ["bot", "tool", "System"] {
        let err = error(&one(json!([{"role": role, "content": "hi"}]), json!({})));
        assert_eq!(
            err,
            format!(
                "templates[0] (summarize v2): messages[0].role: {role:?} must be one of system, developer, user, assistant"
            )
        );
    }
}

#[test]
fn an_unclosed_placeholder_is_rejected() {
    let err = error(&one(
        json!([{"role": "system", "content": "ok"}, {"role": "user", "content": "x {{text"}]),
        json!({}),
    ));
    assert!(
        err.starts_with("templates[0] (summarize v2): messages[1].content: unclosed \"{{\" at character 2"),
        "{err}"
    );
}

#[test]
fn a_malformed_placeholder_is_rejected() {
    let err = error(&one(user("{{ two words }}"), json!({})));
    assert!(
        err.contains("messages[0].content: \"{{ two words }}\" at character 0 is not a placeholder"),
        "{err}"
    );
}

#[test]
fn a_broken_message_does_not_also_report_its_variables_unused() {
    let err = error(&one(user("{{text}} {{oops"), json!({"text": {"type": "string"}})));
    assert!(!err.contains("used in no message"), "{err}");
}

#[test]
fn an_undeclared_name_and_an_unused_variable_are_both_reported() {
    // The README's example: a message naming `txt` where `text` was meant.
    let err = error(&one(user("Summarize: {{txt}}"), json!({"text": {"type": "string"}})));
    assert!(
        err.contains("messages[0].content: {{txt}} names no declared variable"),
        "{err}"
    );
    assert!(err.contains("variables.text: declared but used in no message"), "{err}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let config = with_templates(json!([
        {"name": "a", "version": 1, "model": "m", "messages": [{"role": "bot", "content": "{{x}}"}]},
        {"name": "b", "version": 1, "model": "m", "messages": user("hi"), "variables": {"y": {"type": "string"}}}
    ]));
    let err = error(&config);
    let problems: Vec<&str> = err.split("; ").collect();
    assert_eq!(
        problems,
        [
            "templates[0] (a v1): messages[0].role: \"bot\" must be one of system, developer, user, assistant",
            "templates[0] (a v1): messages[0].content: {{x}} names no declared variable",
            "templates[1] (b v1): variables.y: declared but used in no message",
        ]
    );
}

#[test]
fn unknown_fields_are_rejected_at_every_level() {
    let err = error(&json!({"templates": [], "prefx": "/p/"}).to_string());
    assert!(err.contains("unknown field `prefx`"), "{err}");
    let err = error(&with_templates(
        json!([{"name": "a", "version": 1, "model": "m", "messages": user("hi"), "modle": "m"}]),
    ));
    assert!(err.starts_with("templates[0] (a v1): unknown field `modle`"), "{err}");
    let err = error(&with_templates(
        json!([{"name": "a", "version": 1, "model": "m", "messages": [{"role": "user", "content": "hi", "name": "n"}]}]),
    ));
    assert!(
        err.starts_with("templates[0] (a v1): messages[0].unknown field `name`") || err.contains("messages[0]"),
        "{err}"
    );
    let err = error(&one(user("{{v}}"), json!({"v": {"type": "string", "defualt": "x"}})));
    assert!(err.contains("variables.v: unknown field `defualt`"), "{err}");
}

#[test]
fn parameters_are_checked_by_name_and_type() {
    let template = |parameters: Value| {
        with_templates(
            json!([{"name": "a", "version": 1, "model": "m", "messages": user("hi"), "parameters": parameters}]),
        )
    };
    let err = error(&template(json!({"temprature": 0.2})));
    assert!(
        err.starts_with("templates[0] (a v1): parameters: unknown field `temprature`"),
        "{err}"
    );
    let err = error(&template(json!({"temperature": "hot"})));
    assert!(
        err.starts_with("templates[0] (a v1): parameters: invalid type"),
        "{err}"
    );
    let err = error(&template(json!({"stream": true})));
    assert!(
        err.contains("unknown field `stream`"),
        "the request decides streaming: {err}"
    );
    let err = error(&template(json!({"max_tokens": -1})));
    assert!(err.contains("parameters:"), "{err}");
}

#[test]
fn parameters_are_sent_as_written_without_nulls() {
    let config = with_templates(
        json!([{"name": "a", "version": 1, "model": "m", "messages": user("hi"), "parameters": {
            "temperature": 0.2, "top_p": 1, "max_completion_tokens": 10, "stop": "END", "seed": -3,
            "presence_penalty": 0.5, "frequency_penalty": -0.5, "response_format": {"type": "text"}, "user": null
        }}]),
    );
    let catalog = checked(&config).unwrap();
    let parameters = &catalog.find("a", Some(1)).unwrap().parameters;
    assert_eq!(
        Value::Object(parameters.clone()),
        json!({
            "temperature": 0.2, "top_p": 1.0, "max_completion_tokens": 10, "stop": "END", "seed": -3,
            "presence_penalty": 0.5, "frequency_penalty": -0.5, "response_format": {"type": "text"}
        })
    );
}

#[test]
fn templates_and_messages_must_not_be_empty() {
    assert_eq!(error(&with_templates(json!([]))), "templates: must not be empty");
    let err = error(&one(json!([]), json!({})));
    assert_eq!(err, "templates[0] (summarize v2): messages: must not be empty");
}

#[test]
fn a_template_name_must_be_a_path_segment() {
    for name in ["", "a/b", "a b", "..", "ünï"] {
        let err = error(&with_templates(
            json!([{"name": name, "version": 1, "model": "m", "messages": user("hi")}]),
        ));
        assert!(err.contains("name: "), "{name}: {err}");
    }
    assert!(
        checked(&with_templates(
            json!([{"name": "x.y_z-1", "version": 1, "model": "m", "messages": user("hi")}])
        ))
        .is_ok()
    );
}

#[test]
fn missing_fields_are_named() {
    let err = error(&with_templates(
        json!([{"name": "a", "model": "m", "messages": user("hi")}]),
    ));
    assert_eq!(err, "templates[0] (a): missing field `version`");
    let err = error(&with_templates(
        json!([{"name": "a", "version": 1, "messages": user("hi")}]),
    ));
    assert_eq!(err, "templates[0] (a v1): missing field `model`");
    let err = error(&json!({}).to_string());
    assert!(err.contains("missing field `templates`"), "{err}");
}

#[test]
fn an_empty_model_is_rejected() {
    let err = error(&with_templates(
        json!([{"name": "a", "version": 1, "model": "", "messages": user("hi")}]),
    ));
    assert!(err.contains("model: must not be empty"), "{err}");
}

#[test]
fn the_prefix_must_be_a_path_that_leaves_chat_completions_alone() {
    let prefix = |p: &str| {
        json!({"prefix": p, "templates": [{"name": "a", "version": 1, "model": "m", "messages": user("hi")}]})
            .to_string()
    };
    let catalog = checked(&prefix("/p")).unwrap();
    let request = json!({}).to_string();
    assert!(matches!(catalog.handle("/p/a", &Post(&request)), Outcome::Call(_)));
    assert!(error(&prefix("p/")).starts_with("prefix: \"p/\" must start with /"));
    assert!(error(&prefix("/p?x")).starts_with("prefix:"));
    for takes_over in ["/", "/v1", "/v1/chat/"] {
        let err = error(&prefix(takes_over));
        assert!(
            err.contains("would take over /v1/chat/completions"),
            "{takes_over}: {err}"
        );
    }
}
