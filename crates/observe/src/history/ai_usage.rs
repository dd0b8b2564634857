//! What one minute of AI usage keeps: calls, tokens and cost in total and
//! by model, by consumer and by target, each table holding the biggest
//! [`AI_TRACKED`] labels apart and the rest under `other`.

use std::collections::HashMap;
use std::sync::Arc;

use weir_admin_api::AiTotals;

use super::AI_TRACKED;

/// AI usage: calls, tokens and cost.
#[derive(Default, Clone, Debug, PartialEq)]
pub(super) struct AiTally {
    pub(super) calls: u64,
    pub(super) prompt_tokens: u64,
    pub(super) completion_tokens: u64,
    pub(super) cost: f64,
    /// Whether any of it had a price (else `cost` means nothing).
    pub(super) priced: bool,
}

impl AiTally {
    pub(super) fn merge(&mut self, other: &AiTally) {
        self.calls += other.calls;
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.cost += other.cost;
        self.priced |= other.priced;
    }

    pub(super) fn tokens(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }

    pub(super) fn totals(&self) -> AiTotals {
        AiTotals {
            calls: self.calls,
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            tokens: self.tokens(),
            cost: self.priced.then_some(self.cost),
        }
    }
}

/// One minute of AI usage.
#[derive(Default)]
pub(super) struct AiMinute {
    pub(super) minute: u64,
    pub(super) used: bool,
    pub(super) models: TopTally,
    pub(super) consumers: TopTally,
    pub(super) targets: TopTally,
    pub(super) total: AiTally,
}

/// AI usage by label, the biggest [`AI_TRACKED`] apart and the rest in
/// `other`.
#[derive(Default)]
pub(super) struct TopTally {
    pub(super) map: HashMap<Arc<str>, AiTally>,
    pub(super) other: AiTally,
}

impl TopTally {
    pub(super) fn add(&mut self, label: &str, usage: &AiTally) {
        if let Some(tally) = self.map.get_mut(label) {
            tally.merge(usage);
            return;
        }
        if self.map.len() >= AI_TRACKED {
            // Full: the new label replaces the smallest, unless it is
            // smaller still.
            let smallest = self
                .map
                .iter()
                .min_by_key(|(_, t)| t.tokens())
                .map(|(label, t)| (label.clone(), t.tokens()));
            match smallest {
                Some((victim, tokens)) if tokens < usage.tokens() => {
                    if let Some(evicted) = self.map.remove(&victim) {
                        self.other.merge(&evicted);
                    }
                }
                _ => {
                    self.other.merge(usage);
                    return;
                }
            }
        }
        self.map.insert(Arc::from(label), usage.clone());
    }
}
