//! The `weir:plugin/types` interface: the `request` and `response`
//! handles a plugin gets in each phase, over the host's
//! [`RequestState`] / [`ResponseState`] lent to the instance for one call
//! ([`crate::exchange::Lent`]).
//!
//! Invariants:
//! - the host owns the handles and takes them back after each call; the
//!   guest only borrows them, so dropping one does nothing;
//! - a handle used outside its call traps (the instance is thrown away);
//! - what a plugin sets is checked (method, path, status, header names and
//!   values: see [`super::headers`]) and a bad value is `error.invalid`
//!   naming it, leaving the message unchanged;
//! - `body` is `none` unless the plugin being called may read it (its
//!   route asked for the body) or a plugin replaced it;
//! - a property the request's properties refuse is logged, not returned
//!   to the plugin.

use bytes::Bytes;
use wasmtime::Result;
use wasmtime::component::Resource;

use super::HostState;
use super::headers::{all_headers, append_header, edit_headers, first_header, remove_header, set_header, take_header};
use super::weir::plugin::types::{self, Error as CapError, Header, HeaderEdit};
use crate::exchange::{RequestState, ResponseState};

/// The methods `request` and `response` handles share: headers, body and
/// properties, over the state behind the handle.
macro_rules! handle_methods {
    ($state:ty) => {
        fn header(&mut self, r: Resource<$state>, name: String) -> Result<Option<String>> {
            Ok(first_header(&self.lent.get(&r)?.parts.headers, &name))
        }

        fn header_all(&mut self, r: Resource<$state>, name: String) -> Result<Vec<String>> {
            let headers = &self.lent.get(&r)?.parts.headers;
            Ok(headers.get_all(name.as_str()).iter().map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).collect())
        }

        fn headers(&mut self, r: Resource<$state>) -> Result<Vec<Header>> {
            Ok(all_headers(&self.lent.get(&r)?.parts.headers))
        }

        fn set_header(&mut self, r: Resource<$state>, name: String, value: String) -> Result<Result<(), CapError>> {
            Ok(set_header(&mut self.lent.get_mut(&r)?.parts.headers, &name, &value))
        }

        fn append_header(&mut self, r: Resource<$state>, name: String, value: String) -> Result<Result<(), CapError>> {
            Ok(append_header(&mut self.lent.get_mut(&r)?.parts.headers, &name, &value))
        }

        fn remove_header(&mut self, r: Resource<$state>, name: String) -> Result<()> {
            remove_header(&mut self.lent.get_mut(&r)?.parts.headers, &name);
            Ok(())
        }

        fn take_header(&mut self, r: Resource<$state>, name: String) -> Result<Option<String>> {
            Ok(take_header(&mut self.lent.get_mut(&r)?.parts.headers, &name))
        }

        fn edit_headers(&mut self, r: Resource<$state>, edits: Vec<HeaderEdit>) -> Result<Result<(), CapError>> {
            Ok(edit_headers(&mut self.lent.get_mut(&r)?.parts.headers, &edits))
        }

        fn body(&mut self, r: Resource<$state>) -> Result<Option<Vec<u8>>> {
            let state = self.lent.get(&r)?;
            Ok(if state.body_visible || state.body_replaced {
                Some(state.body.as_deref().unwrap_or_default().to_vec())
            } else {
                None
            })
        }

        fn set_body(&mut self, r: Resource<$state>, body: Vec<u8>) -> Result<()> {
            let state = self.lent.get_mut(&r)?;
            state.body = Some(Bytes::from(body));
            state.body_replaced = true;
            Ok(())
        }

        fn property(&mut self, r: Resource<$state>, name: String) -> Result<Option<String>> {
            Ok(self.lent.get(&r)?.properties.get(&name).map(str::to_string))
        }

        fn set_property(&mut self, r: Resource<$state>, name: String, value: String) -> Result<()> {
            if let Err(reason) = self.lent.get_mut(&r)?.properties.set(&name, &value) {
                tracing::warn!(plugin = %self.identity.name, route = self.route_name(), "set-property refused: {reason}");
            }
            Ok(())
        }

        fn drop(&mut self, _r: Resource<$state>) -> Result<()> {
            // The host owns these handles and takes them back after each
            // call; the guest only ever borrows them.
            Ok(())
        }
    };
}

impl types::Host for HostState {}

impl types::HostRequest for HostState {
    fn method(&mut self, r: Resource<RequestState>) -> Result<String> {
        Ok(self.lent.get(&r)?.parts.method.to_string())
    }

    fn set_method(&mut self, r: Resource<RequestState>, method: String) -> Result<Result<(), CapError>> {
        let parsed = match http::Method::from_bytes(method.as_bytes()) {
            Ok(m) => m,
            Err(_) => return Ok(Err(CapError::Invalid(format!("{method:?} is not an HTTP method")))),
        };
        self.lent.get_mut(&r)?.parts.method = parsed;
        Ok(Ok(()))
    }

    fn path(&mut self, r: Resource<RequestState>) -> Result<String> {
        let uri = &self.lent.get(&r)?.parts.uri;
        Ok(uri
            .path_and_query()
            .map_or_else(|| uri.path().to_string(), |pq| pq.as_str().to_string()))
    }

    fn set_path(&mut self, r: Resource<RequestState>, path: String) -> Result<Result<(), CapError>> {
        if !path.starts_with('/') {
            return Ok(Err(CapError::Invalid(format!("path {path:?} must start with '/'"))));
        }
        let parsed = match http::uri::PathAndQuery::from_maybe_shared(Bytes::from(path.clone())) {
            Ok(pq) => pq,
            Err(_) => return Ok(Err(CapError::Invalid(format!("{path:?} is not a valid path")))),
        };
        let state = self.lent.get_mut(&r)?;
        let mut parts = std::mem::take(&mut state.parts.uri).into_parts();
        parts.path_and_query = Some(parsed);
        match http::Uri::from_parts(parts) {
            Ok(uri) => {
                state.parts.uri = uri;
                Ok(Ok(()))
            }
            Err(e) => Ok(Err(CapError::Invalid(format!("{path:?}: {e}")))),
        }
    }

    fn authority(&mut self, r: Resource<RequestState>) -> Result<Option<String>> {
        let parts = &self.lent.get(&r)?.parts;
        Ok(weir_core::forwarding::request_authority(&parts.uri, &parts.headers).map(str::to_string))
    }

    handle_methods!(RequestState);
}

impl types::HostResponse for HostState {
    fn status(&mut self, r: Resource<ResponseState>) -> Result<u16> {
        Ok(self.lent.get(&r)?.parts.status.as_u16())
    }

    fn set_status(&mut self, r: Resource<ResponseState>, status: u16) -> Result<Result<(), CapError>> {
        match http::StatusCode::from_u16(status) {
            Ok(code) => {
                self.lent.get_mut(&r)?.parts.status = code;
                Ok(Ok(()))
            }
            Err(_) => Ok(Err(CapError::Invalid(format!("{status} is not a status code")))),
        }
    }

    handle_methods!(ResponseState);
}
