//! Used by the body-buffering tests: declared request and response bodies
//! must reach the plugin whole, and its rewrites must reach the other side
//! with `content-length` fixed up.
//!
//! `on_request` reverses the request body's bytes and sets `x-body-len` to
//! its length (`none` if the host gave no body); `on_response` appends `!`
//! to the response body (and sets `x-body: none` if the host gave none).

use weir_sdk::{Action, Config, Interests, Plugin, Request, Response, export_plugin};

struct GuestBody;

impl Plugin for GuestBody {
    fn configure(_config: Config) -> Result<Self, String> {
        Ok(GuestBody)
    }

    fn interests(&self) -> Interests {
        Interests {
            on_request: true,
            request_body: true,
            on_response: true,
            response_body: true,
            response_chunks: false,
        }
    }

    fn on_request(&self, request: &Request) -> Action {
        match request.body() {
            Some(mut body) => {
                let _ = request.set_header("x-body-len", &body.len().to_string());
                body.reverse();
                request.set_body(&body);
            }
            None => {
                let _ = request.set_header("x-body-len", "none");
            }
        }
        Action::Continue
    }

    fn on_response(&self, response: &Response) {
        match response.body() {
            Some(mut body) => {
                body.push(b'!');
                response.set_body(&body);
            }
            None => {
                let _ = response.set_header("x-body", "none");
            }
        }
    }
}

export_plugin!(GuestBody);
