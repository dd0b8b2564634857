//! The bottom of the gateway: what every other crate shares and nothing
//! here depends on another Weir crate.
//!
//! - [`body`]: the one body type of the request path;
//! - [`clock`]: the wall clock in Unix milliseconds;
//! - [`path`]: request paths in one canonical form, made before routing;
//! - [`forwarding`]: hop-by-hop fields and who the client was;
//! - [`files`]: reading files someone else may have put in place;
//! - [`tls`]: the certificates every outbound client trusts;
//! - [`error`]: an error and its causes as one line.

pub mod body;
pub mod clock;
pub mod error;
pub mod files;
pub mod forwarding;
pub mod path;
pub mod tls;
