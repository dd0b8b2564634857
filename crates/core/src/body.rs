//! The body type of the request path: one boxed body for requests and
//! responses alike, whatever produced it (a client, an upstream, a plugin,
//! the gateway itself).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

/// Errors a body can fail with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type used everywhere on the request path.
pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// Box a body error (a named function: closures here trip up the
/// compiler's `Send` inference for the whole request future).
pub fn box_error<E: std::error::Error + Send + Sync + 'static>(e: E) -> BoxError {
    Box::new(e)
}

/// A body holding `bytes`.
pub fn full_body(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

/// An empty body (no allocation).
pub fn empty_body() -> Body {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}
