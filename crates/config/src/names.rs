//! The names a config gives its routes, plugins and upstream pools:
//! newtypes over the name as written, so one kind of name is never taken
//! for another. A name is shared, not copied: every request's record names
//! its route, upstream and plugins, and a clone is a reference count.

use std::fmt;
use std::sync::Arc;

use serde::Deserialize;

/// A route's name, unique within a config.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(from = "String")]
pub struct RouteName(pub Arc<str>);

/// A plugin's name: the file stem of `NAME.wasm` in the plugin directory.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(from = "String")]
pub struct PluginName(pub Arc<str>);

/// An upstream pool's name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(from = "String")]
pub struct UpstreamName(pub Arc<str>);

macro_rules! display_name {
    ($($t:ty),*) => {$(
        impl From<String> for $t {
            fn from(name: String) -> Self {
                Self(Arc::from(name))
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl $t {
            /// The name as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
    )*};
}
display_name!(RouteName, PluginName, UpstreamName);
