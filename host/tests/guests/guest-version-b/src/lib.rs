//! Version "b" of a plugin whose two builds differ; see
//! ../guest-version-a/src/plugin.rs.

const VERSION: &str = "b";

include!("../../guest-version-a/src/plugin.rs");
