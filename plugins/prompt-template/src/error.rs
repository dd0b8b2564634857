//! Errors answered to the client, in OpenAI's error shape.

use serde_json::json;
use weir_sdk::Reply;

/// A request the plugin answers itself instead of calling the model:
/// `{"error": {"message", "type", "param", "code"}}` with `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptError {
    /// The HTTP status.
    pub status: u16,
    /// What went wrong, for a person.
    pub message: String,
    /// The variable (or query parameter) at fault, if any.
    pub param: Option<String>,
    /// A machine-readable code.
    pub code: &'static str,
}

impl PromptError {
    /// A 400 `invalid_request_error`.
    pub fn invalid(code: &'static str, param: Option<&str>, message: String) -> Self {
        PromptError {
            status: 400,
            message,
            param: param.map(str::to_string),
            code,
        }
    }

    /// A 404: the path is under the prefix but names no template.
    pub fn not_found(message: String) -> Self {
        PromptError {
            status: 404,
            message,
            param: None,
            code: "template_not_found",
        }
    }

    /// A 405: templates are only served to `POST`.
    pub fn method_not_allowed(method: &str) -> Self {
        PromptError {
            status: 405,
            message: format!("method {method} is not allowed: prompt templates accept POST"),
            param: None,
            code: "method_not_allowed",
        }
    }

    /// A 500: the host refused a rewrite the plugin made.
    pub fn internal(message: String) -> Self {
        PromptError {
            status: 500,
            message,
            param: None,
            code: "internal_error",
        }
    }

    /// The response to send.
    pub fn to_reply(&self) -> Reply {
        let kind = if self.status >= 500 {
            "api_error"
        } else {
            "invalid_request_error"
        };
        let reply = Reply::new(self.status).json(&json!({
            "error": {
                "message": self.message,
                "type": kind,
                "param": self.param,
                "code": self.code,
            }
        }));
        if self.status == 405 {
            reply.header("allow", "POST")
        } else {
            reply
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(reply: &Reply) -> serde_json::Value {
        serde_json::from_slice(&reply.body).expect("reply body is JSON")
    }

    #[test]
    fn a_400_has_openais_error_shape() {
        let reply = PromptError::invalid("missing_variable", Some("text"), "missing text".into()).to_reply();
        assert_eq!(reply.status, 400);
        assert!(
            reply
                .headers
                .contains(&("content-type".into(), "application/json".into()))
        );
        assert_eq!(
            body(&reply),
            json!({"error": {"message": "missing text", "type": "invalid_request_error", "param": "text", "code": "missing_variable"}})
        );
    }

    #[test]
    fn a_405_names_the_allowed_method() {
        let reply = PromptError::method_not_allowed("GET").to_reply();
        assert_eq!(reply.status, 405);
        assert!(reply.headers.contains(&("allow".into(), "POST".into())));
        assert_eq!(body(&reply)["error"]["param"], serde_json::Value::Null);
        assert_eq!(body(&reply)["error"]["code"], "method_not_allowed");
    }

    #[test]
    fn a_500_is_an_api_error() {
        let reply = PromptError::internal("host refused".into()).to_reply();
        assert_eq!(reply.status, 500);
        assert_eq!(body(&reply)["error"]["type"], "api_error");
    }
}
