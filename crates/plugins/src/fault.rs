//! How a plugin call can fail: a trap, its deadline, its memory cap, or no
//! instance to run it in. Each kind maps to one HTTP status (see
//! `proxy::error`) and is named in metrics and the access log.

use weir_config::PluginName;

/// A plugin call that failed. Each maps to one HTTP status (see
/// `proxy::error`).
#[derive(Debug, Clone, thiserror::Error)]
pub enum PluginFault {
    /// The plugin trapped (a panic, `unreachable`, an invalid access).
    #[error("plugin {plugin} trapped: {detail}")]
    Trap {
        /// The plugin.
        plugin: PluginName,
        /// What wasmtime reported.
        detail: String,
    },
    /// The call ran past its deadline.
    #[error("plugin {plugin} exceeded its {deadline_ms} ms deadline")]
    Deadline {
        /// The plugin.
        plugin: PluginName,
        /// The deadline.
        deadline_ms: u64,
    },
    /// The instance tried to grow its memory past the cap.
    #[error("plugin {plugin} exceeded its {limit_mb} MiB memory cap")]
    Memory {
        /// The plugin.
        plugin: PluginName,
        /// The cap.
        limit_mb: u64,
    },
    /// No instance could be made (instantiation failed or the instance
    /// pool is exhausted).
    #[error("plugin {plugin} is unavailable: {detail}")]
    Unavailable {
        /// The plugin.
        plugin: PluginName,
        /// Why.
        detail: String,
    },
}

impl PluginFault {
    /// The fault's kind, as metrics and the access log name it: `trap`,
    /// `deadline`, `memory` or `unavailable`.
    pub fn kind(&self) -> &'static str {
        match self {
            PluginFault::Trap { .. } => "trap",
            PluginFault::Deadline { .. } => "deadline",
            PluginFault::Memory { .. } => "memory",
            PluginFault::Unavailable { .. } => "unavailable",
        }
    }
}
