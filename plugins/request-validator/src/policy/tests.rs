//! `Policy::judge` on requests written as plain structs: one test per
//! check and per answer.

use serde_json::json;

use super::*;
use crate::settings;

/// A request as the tests write it.
#[derive(Clone, Default)]
struct FakeRequest {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    /// `None`: the gateway gave no body.
    body: Option<Vec<u8>>,
}

impl FakeRequest {
    fn new(method: &str, path: &str) -> FakeRequest {
        FakeRequest {
            method: method.into(),
            path: path.into(),
            headers: Vec::new(),
            body: Some(Vec::new()),
        }
    }

    fn header(mut self, name: &str, value: &str) -> FakeRequest {
        self.headers.push((name.into(), value.into()));
        self
    }

    fn json(self, body: &str) -> FakeRequest {
        self.body(body).header("content-type", "application/json")
    }

    fn body(mut self, body: &str) -> FakeRequest {
        self.body = Some(body.as_bytes().to_vec());
        self
    }

    fn path_only(mut self, path: &str) -> FakeRequest {
        self.path = path.into();
        self
    }
}

impl Incoming for FakeRequest {
    fn method(&self) -> String {
        self.method.clone()
    }
    fn path(&self) -> String {
        self.path.clone()
    }
    fn header(&self, name: &str) -> Option<String> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
    }
    fn header_count(&self, name: &str) -> usize {
        self.headers.iter().filter(|(n, _)| n == name).count()
    }
    fn body(&self) -> Option<Vec<u8>> {
        self.body.clone()
    }
}

fn policy(json: &str) -> Policy {
    settings::checked(json).unwrap_or_else(|e| panic!("{json}: {e}"))
}

/// The status and `error` of the refusal, or `None` if let through.
fn refused(policy: &Policy, request: &FakeRequest) -> Option<(u16, String)> {
    policy.judge(request).err().map(|r| (r.status, r.error))
}

fn err(status: u16, error: &str) -> Option<(u16, String)> {
    Some((status, error.to_string()))
}

#[test]
fn disallowed_method_is_answered_405_with_allow() {
    let p = policy(r#"{"methods":["GET","POST"]}"#);
    assert_eq!(p.judge(&FakeRequest::new("GET", "/")), Ok(()));
    let rejection = p.judge(&FakeRequest::new("DELETE", "/")).unwrap_err();
    assert_eq!(rejection.status, 405);
    assert_eq!(rejection.allow.as_deref(), Some("GET, POST"));
    assert_eq!(rejection.body(), json!({"error": "method not allowed"}));
}

#[test]
fn missing_required_header_is_named() {
    let p = policy(r#"{"required_headers":["x-request-id"]}"#);
    let bare = FakeRequest::new("GET", "/");
    assert_eq!(
        refused(&p, &bare),
        err(400, r#"missing required header "x-request-id""#)
    );
    assert_eq!(
        refused(&p, &bare.clone().header("x-request-id", " ")),
        err(400, r#"missing required header "x-request-id""#)
    );
    assert_eq!(refused(&p, &bare.header("x-request-id", "abc")), None);
}

#[test]
fn bad_query_parameter_is_named() {
    let p = policy(r#"{"query":{"page":{"type":"integer","required":false,"min":1}}}"#);
    assert_eq!(refused(&p, &FakeRequest::new("GET", "/items")), None);
    assert_eq!(refused(&p, &FakeRequest::new("GET", "/items?page=3")), None);
    assert_eq!(
        refused(&p, &FakeRequest::new("GET", "/items?page=0")),
        err(400, r#"query parameter "page" must be at least 1"#)
    );
}

#[test]
fn body_over_the_limit_is_answered_413() {
    let p = policy(r#"{"max_body_bytes":4}"#);
    assert_eq!(refused(&p, &FakeRequest::new("POST", "/").body("1234")), None);
    assert_eq!(
        refused(&p, &FakeRequest::new("POST", "/").body("12345")),
        err(413, "request body is larger than 4 bytes")
    );
}

#[test]
fn declared_length_over_the_limit_is_refused_without_reading_the_body() {
    let p = policy(r#"{"max_body_bytes":4}"#);
    let request = FakeRequest {
        body: None,
        ..FakeRequest::new("POST", "/").header("content-length", "5000")
    };
    assert_eq!(refused(&p, &request), err(413, "request body is larger than 4 bytes"));
}

#[test]
fn a_missing_body_is_refused_not_let_through() {
    let p = policy(r#"{"max_body_bytes":4}"#);
    let request = FakeRequest {
        body: None,
        ..FakeRequest::new("POST", "/")
    };
    assert_eq!(refused(&p, &request), err(500, "request body unavailable"));
}

#[test]
fn content_type_not_allowed_is_answered_415() {
    let p = policy(r#"{"content_types":["application/json","text/*"]}"#);
    let post = FakeRequest::new("POST", "/").body("x");
    assert_eq!(refused(&p, &post.clone().header("content-type", "text/csv")), None);
    assert_eq!(
        refused(
            &p,
            &post.clone().header("content-type", "application/JSON; charset=utf-8")
        ),
        None
    );
    assert_eq!(
        refused(&p, &post.clone().header("content-type", "application/xml")),
        err(415, "content type must be one of application/json, text/*")
    );
    assert_eq!(
        refused(&p, &post.clone().header("content-type", "nonsense")),
        err(
            415,
            "request body has no valid content-type (allowed: application/json, text/*)"
        )
    );
    assert_eq!(
        refused(&p, &post),
        err(
            415,
            "request body has no valid content-type (allowed: application/json, text/*)"
        )
    );
}

#[test]
fn content_type_is_not_checked_without_a_body() {
    let p = policy(r#"{"content_types":["application/json"]}"#);
    assert_eq!(
        refused(&p, &FakeRequest::new("GET", "/").header("content-type", "text/plain")),
        None
    );
}

#[test]
fn two_content_type_headers_are_refused() {
    let p = policy(r#"{"content_types":["application/json"]}"#);
    let request = FakeRequest::new("POST", "/")
        .json("{}")
        .header("content-type", "text/plain");
    assert_eq!(refused(&p, &request), err(400, "more than one content-type header"));
}

#[test]
fn schema_problems_are_listed_with_their_paths() {
    let p = policy(
        r#"{"body_schema":{"type":"object","required":["items"],"properties":{"items":{"type":"array",
            "items":{"type":"object","properties":{"price":{"type":"number","minimum":0}}}}}}}"#,
    );
    let request = FakeRequest::new("POST", "/orders").json(r#"{"items":[{"price":1},{"price":2},{"price":-1}]}"#);
    let rejection = p.judge(&request).unwrap_err();
    assert_eq!(rejection.status, 400);
    assert_eq!(
        rejection.body(),
        json!({"error": "invalid request body", "problems": ["$.items[2].price: must be at least 0"]})
    );
    assert_eq!(
        refused(&p, &FakeRequest::new("POST", "/").json(r#"{"items":[]}"#)),
        None
    );
}

#[test]
fn invalid_json_names_line_and_column() {
    let p = policy(r#"{"body_schema":{"type":"object"}}"#);
    let request = FakeRequest::new("POST", "/").json("{\n  \"a\": [1,]\n}");
    assert_eq!(
        refused(&p, &request),
        err(
            400,
            "request body is not valid JSON: trailing comma at line 2 column 11"
        )
    );
}

#[test]
fn duplicate_json_keys_are_refused() {
    let p = policy(r#"{"body_schema":{"properties":{"role":{"enum":["user"]}}}}"#);
    let request = FakeRequest::new("POST", "/").json(r#"{"role":"user","role":"admin"}"#);
    let (status, error) = refused(&p, &request).unwrap();
    assert_eq!(status, 400);
    assert!(
        error.starts_with(r#"request body is not valid JSON: duplicate key "role" at line 1"#),
        "{error}"
    );
}

#[test]
fn schema_requires_a_json_content_type() {
    let p = policy(r#"{"body_schema":{"type":"object"}}"#);
    let body = FakeRequest::new("POST", "/").body("{}");
    let want = err(
        415,
        "content type must be JSON (application/json or application/*+json)",
    );
    assert_eq!(refused(&p, &body.clone().header("content-type", "text/plain")), want);
    assert_eq!(refused(&p, &body.clone()), want);
    assert_eq!(
        refused(&p, &body.header("content-type", "application/merge-patch+json")),
        None
    );
}

#[test]
fn allowed_non_json_types_skip_the_schema() {
    let p = policy(
        r#"{"content_types":["application/json","application/x-www-form-urlencoded"],
            "body_schema":{"type":"object"}}"#,
    );
    let form = FakeRequest::new("POST", "/")
        .body("a=1")
        .header("content-type", "application/x-www-form-urlencoded");
    assert_eq!(refused(&p, &form), None);
    let json = FakeRequest::new("POST", "/").json("[]");
    assert_eq!(refused(&p, &json), err(400, "invalid request body"));
}

#[test]
fn schema_requires_a_body() {
    let p = policy(r#"{"body_schema":{"type":"object"}}"#);
    let rejection = p.judge(&FakeRequest::new("POST", "/")).unwrap_err();
    assert_eq!(
        rejection.body(),
        json!({"error": "invalid request body", "problems": ["$: a JSON body is required"]})
    );
}

const ORDERS: &str = r#"{
    "rules": [
        {"path_prefix": "/orders", "methods": ["POST"],
         "body_schema": {"type": "object", "required": ["sku"]}},
        {"path_prefix": "/orders", "max_body_bytes": 0}
    ]
}"#;

#[test]
fn the_first_matching_rule_applies() {
    let p = policy(ORDERS);
    assert_eq!(
        refused(&p, &FakeRequest::new("POST", "/orders").json(r#"{"sku":"a"}"#)),
        None
    );
    assert_eq!(
        refused(&p, &FakeRequest::new("POST", "/orders/7").json("{}")),
        err(400, "invalid request body")
    );
    // PUT skips the first rule and meets the second.
    assert_eq!(
        refused(&p, &FakeRequest::new("PUT", "/orders").json("{}")),
        err(413, "request body is larger than 0 bytes")
    );
}

#[test]
fn a_request_no_rule_matches_passes_through() {
    let p = policy(ORDERS);
    assert_eq!(refused(&p, &FakeRequest::new("POST", "/users").json("not json")), None);
    assert_eq!(
        refused(&p, &FakeRequest::new("POST", "/ordersx").json("not json")),
        None
    );
}

#[test]
fn rules_cannot_be_dodged_by_spelling_the_path_differently() {
    let p = policy(ORDERS);
    for path in [
        "/%6Frders",
        "/ORDERS",
        "//orders",
        "/orders;x=1",
        "/api%2F..%2F..%2Forders",
    ] {
        let request = FakeRequest::new("POST", path).json("{}");
        assert!(refused(&p, &request).is_some(), "{path} was let through");
    }
}

#[test]
fn dot_segments_are_refused_when_rules_match_paths() {
    let p = policy(ORDERS);
    let request = FakeRequest::new("POST", "/users/../orders").json("{}");
    assert_eq!(
        refused(&p, &request),
        err(400, "request path must not have `.` or `..` segments")
    );
    // Without path rules, the path is not judged.
    let p = policy(r#"{"methods":["POST"]}"#);
    assert_eq!(refused(&p, &request), None);
}

#[test]
fn rule_checks_add_to_the_route_checks() {
    let p = policy(
        r#"{
            "required_headers": ["x-request-id"],
            "query": {"page": {"type": "integer"}, "sort": {"enum": ["asc"]}},
            "max_body_bytes": 100,
            "rules": [{"path_prefix": "/upload", "required_headers": ["x-upload-token"],
                       "query": {"sort": {"enum": ["asc", "desc"]}}, "max_body_bytes": 1000}]
        }"#,
    );
    let upload = FakeRequest::new("POST", "/upload").header("x-request-id", "1");
    // The route's header is still required; the rule's is added.
    assert_eq!(
        refused(&p, &upload),
        err(400, r#"missing required header "x-upload-token""#)
    );
    let upload = upload.header("x-upload-token", "t");
    // The route's parameter still applies; the rule's `sort` replaces the route's.
    assert_eq!(
        refused(
            &p,
            &FakeRequest {
                path: "/upload?page=x".into(),
                ..upload.clone()
            }
        ),
        err(400, r#"query parameter "page" must be an integer"#)
    );
    assert_eq!(
        refused(
            &p,
            &FakeRequest {
                path: "/upload?sort=desc".into(),
                ..upload.clone()
            }
        ),
        None
    );
    // The rule's limit replaces the route's.
    assert_eq!(refused(&p, &upload.clone().body(&"x".repeat(500))), None);
    let other = FakeRequest::new("POST", "/other?sort=desc").header("x-request-id", "1");
    assert_eq!(
        refused(&p, &other),
        err(400, r#"query parameter "sort" must be one of "asc""#)
    );
    assert_eq!(
        refused(&p, &other.body(&"x".repeat(500)).path_only("/other")),
        err(413, "request body is larger than 100 bytes")
    );
}

#[test]
fn checks_run_in_order_and_the_first_failure_answers() {
    let p = policy(
        r#"{"methods":["POST"],"required_headers":["x-id"],"query":{"q":{"required":true}},
            "max_body_bytes":5,"content_types":["application/json"],"body_schema":{"type":"array"}}"#,
    );
    let mut request = FakeRequest::new("PUT", "/").body("{\"a\": 1}");
    assert_eq!(refused(&p, &request).map(|r| r.0), Some(405));
    request.method = "POST".into();
    assert_eq!(refused(&p, &request).map(|r| r.0), Some(400)); // header
    request = request.header("x-id", "1");
    assert_eq!(refused(&p, &request), err(400, r#"query parameter "q" is required"#));
    request.path = "/?q=1".into();
    assert_eq!(refused(&p, &request).map(|r| r.0), Some(413));
    request = request.body("{}");
    assert_eq!(refused(&p, &request).map(|r| r.0), Some(415));
    request = request.header("content-type", "application/json");
    assert_eq!(refused(&p, &request), err(400, "invalid request body"));
    request = request.body("[]");
    assert_eq!(refused(&p, &request), None);
}
