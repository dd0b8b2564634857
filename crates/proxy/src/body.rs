//! The body type of the request path, and what the proxy does to whole
//! bodies: read one up to a limit, hold a request's place until its
//! answer's body ends.

use bytes::Bytes;
use http::Response;
use http_body::Body as _;
use http_body_util::BodyExt;

use super::error::GatewayError;

pub use weir_core::body::{Body, BoxError, box_error, empty_body, full_body};

/// Keep `permit` (a request's place under an in-flight limit) until the
/// response body is done or dropped: a streamed answer counts as in flight
/// for as long as it streams.
pub(super) fn hold_until_body_ends(
    response: Response<Body>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
) -> Response<Body> {
    match permit {
        None => response,
        Some(permit) => response.map(|body| {
            body.map_frame(move |frame| {
                let _held = &permit;
                frame
            })
            .boxed_unsync()
        }),
    }
}

/// Read a whole body, refusing more than `limit` bytes.
pub(super) async fn read_limited(body: Option<Body>, limit: usize, request: bool) -> Result<Bytes, GatewayError> {
    let Some(mut body) = body else { return Ok(Bytes::new()) };
    if body.size_hint().lower() > limit as u64 {
        return Err(too_large(limit, request));
    }
    let mut buffer = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) if request => {
                return Err(match super::client_body::client_fault(&*e) {
                    Some(fault) => fault.clone().into(),
                    None => GatewayError::RequestBody(e.to_string()),
                });
            }
            Err(e) => {
                return Err(GatewayError::UpstreamFailed {
                    upstream: weir_config::UpstreamName("-".into()),
                    target: "-".into(),
                    detail: format!("reading response body: {e}"),
                });
            }
        };
        if let Ok(data) = frame.into_data() {
            if buffer.len() + data.len() > limit {
                return Err(too_large(limit, request));
            }
            buffer.extend_from_slice(&data);
        }
    }
    Ok(buffer.freeze())
}

fn too_large(limit: usize, request: bool) -> GatewayError {
    if request {
        GatewayError::RequestBodyTooLarge { limit }
    } else {
        GatewayError::ResponseBodyTooLarge { limit }
    }
}
