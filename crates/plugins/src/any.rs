//! A configured plugin of either world, for the places that keep both:
//! the gateway's plugin set, its status and its metrics. Calls are made on
//! the typed plugins it holds, never through it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use super::capabilities::PluginIdentity;
use super::filter::FilterPlugin;
use super::instance::PluginLimits;
use super::shim::ShimPlugin;
use weir_config::PluginName;

/// A configured plugin of either world, where the gateway keeps both
/// (its plugin set, its status and metrics).
#[derive(Clone)]
pub enum AnyPlugin {
    /// A filter, for route chains.
    Filter(Arc<FilterPlugin>),
    /// A provider shim, for AI targets.
    Shim(Arc<ShimPlugin>),
}

macro_rules! either {
    ($value:expr, $plugin:ident => $body:expr) => {
        match $value {
            AnyPlugin::Filter($plugin) => $body,
            AnyPlugin::Shim($plugin) => $body,
        }
    };
}

impl AnyPlugin {
    /// The plugin's name.
    pub fn name(&self) -> &PluginName {
        either!(self, p => p.name())
    }

    /// Name and grants.
    pub fn identity(&self) -> &Arc<PluginIdentity> {
        either!(self, p => &p.identity)
    }

    /// The file it came from.
    pub fn file(&self) -> &PathBuf {
        either!(self, p => &p.file)
    }

    /// When it was loaded.
    pub fn loaded_at(&self) -> SystemTime {
        either!(self, p => p.loaded_at)
    }

    /// Limits and fault behaviour.
    pub fn limits(&self) -> &PluginLimits {
        either!(self, p => &p.limits)
    }

    /// Idle warm instances right now.
    pub fn idle_instances(&self) -> usize {
        either!(self, p => p.idle_instances())
    }

    /// `direct` or `fiber`: how its calls are made.
    pub fn calls(&self) -> &'static str {
        either!(self, p => p.calls())
    }

    /// The filter, if it is one.
    pub fn as_filter(&self) -> Option<&Arc<FilterPlugin>> {
        match self {
            AnyPlugin::Filter(p) => Some(p),
            AnyPlugin::Shim(_) => None,
        }
    }

    /// The provider shim, if it is one.
    pub fn as_shim(&self) -> Option<&Arc<ShimPlugin>> {
        match self {
            AnyPlugin::Shim(p) => Some(p),
            AnyPlugin::Filter(_) => None,
        }
    }
}
