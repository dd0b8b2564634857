//! Version "a" of a plugin whose two builds differ; see plugin.rs.

const VERSION: &str = "a";

include!("plugin.rs");
