//! Route chains: for each route, its filter plugins in request order, each
//! with the route's slot in it and what the route's handler asked for.

use std::collections::HashMap;
use std::sync::Arc;

use super::Interests;
use super::any::AnyPlugin;
use super::filter::FilterPlugin;
use weir_config::{Config, PluginName, RouteName};

/// Each route's chain, from the plugins at hand. A plugin a route needs
/// but that is not at hand (its file was removed) makes the route answer
/// 503 naming it: a chain is never run with a step missing.
pub fn build_chains(config: &Config, plugins: &HashMap<PluginName, AnyPlugin>) -> HashMap<RouteName, Chain> {
    let mut chains = HashMap::new();
    for route in &config.routes {
        let mut chain = Chain::default();
        for (position, p) in route.plugins.iter().enumerate() {
            // Load refuses a shim in a chain; were one here, the route
            // would answer 503 naming it rather than run without it.
            let Some(plugin) = plugins.get(&p.name).and_then(AnyPlugin::as_filter) else {
                chain.missing.push(p.name.clone());
                continue;
            };
            match plugin.slot_of(&route.name, position) {
                Some(slot) => chain.links.push(ChainLink {
                    interests: plugin.routes[slot].interests,
                    plugin: plugin.clone(),
                    slot,
                }),
                // Configured for another config's routes: not usable here.
                None => chain.missing.push(p.name.clone()),
            }
        }
        chains.insert(route.name.clone(), chain);
    }
    chains
}

/// A route's plugins, in request order.
#[derive(Clone, Default)]
pub struct Chain {
    /// The links, in order.
    pub links: Vec<ChainLink>,
    /// Plugins the route needs that are not loaded; the route answers 503.
    pub missing: Vec<PluginName>,
}

impl Chain {
    /// Whether any link needs the request body buffered.
    pub fn needs_request_body(&self) -> bool {
        self.links.iter().any(|l| l.interests.request_body)
    }
}

/// One plugin in a route's chain.
#[derive(Clone)]
pub struct ChainLink {
    /// The plugin.
    pub plugin: Arc<FilterPlugin>,
    /// The route's slot in the plugin.
    pub slot: usize,
    /// What the route's handler asked for.
    pub interests: Interests,
}
