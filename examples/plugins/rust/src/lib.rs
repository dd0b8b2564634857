//! Request-signature check: the client signs `METHOD\nPATH\nBODY` with
//! HMAC-SHA256 under a shared key and sends the hex digest in a header.
//! A good signature names the consumer (property `consumer`, header
//! `x-consumer`); a missing or wrong one is answered with 401.
//!
//! The same plugin exists in JavaScript, Python and C beside this one.

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use weir_sdk::{Action, Config, Interests, Plugin, Reply, Request, export_plugin, log, secrets};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// Name of the secret holding the signing key.
    secret: String,
    /// Who a correctly signed request comes from.
    consumer: String,
    /// Header carrying the signature.
    #[serde(default = "default_header")]
    header: String,
}

fn default_header() -> String {
    "x-signature".into()
}

struct SignatureCheck {
    settings: Settings,
}

impl Plugin for SignatureCheck {
    fn configure(config: Config) -> Result<Self, String> {
        Ok(SignatureCheck {
            settings: config.parse()?,
        })
    }

    fn interests(&self) -> Interests {
        Interests {
            on_request: true,
            request_body: true,
            on_response: false,
            response_body: false,
            response_chunks: false,
        }
    }

    fn on_request(&self, request: &Request) -> Action {
        let Some(presented) = request.header(&self.settings.header) else {
            return Action::Respond(unauthorized("missing signature"));
        };
        let key = match secrets::get(&self.settings.secret) {
            Ok(key) => key,
            Err(e) => {
                log::error(&format!("secret {:?}: {e:?}", self.settings.secret));
                return Action::Respond(Reply::new(500).json(&serde_json::json!({ "error": "signing key unavailable" })));
            }
        };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key.as_bytes()) else {
            return Action::Respond(Reply::new(500).json(&serde_json::json!({ "error": "signing key unavailable" })));
        };
        mac.update(request.method().as_bytes());
        mac.update(b"\n");
        mac.update(request.path().as_bytes());
        mac.update(b"\n");
        mac.update(&request.body().unwrap_or_default());
        // `verify_slice` compares in constant time.
        let valid = decode_hex(presented.trim()).is_some_and(|sig| mac.verify_slice(&sig).is_ok());
        if !valid {
            return Action::Respond(unauthorized("invalid signature"));
        }
        request.set_property("consumer", &self.settings.consumer);
        let _ = request.set_header("x-consumer", &self.settings.consumer);
        Action::Continue
    }
}

fn unauthorized(error: &str) -> Reply {
    Reply::new(401).json(&serde_json::json!({ "error": error }))
}

/// Hex digits (either case) to bytes; `None` for anything else.
fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

export_plugin!(SignatureCheck);
