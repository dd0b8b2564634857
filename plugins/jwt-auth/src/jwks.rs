//! The remote JWKS (`jwks_url`): fetched when first needed, kept for
//! `jwks_cache_secs`, fetched again early when a token names a key it
//! lacks — but never more than once per `jwks_min_refresh_secs`, so a
//! flood of tokens with made-up kids cannot hammer the issuer.
//!
//! The fetch is behind [`JwksFetcher`] and time is passed in, so the cache
//! is tested natively with a fake fetcher and clock.

use std::rc::Rc;

use crate::keys::{KeySet, parse_jwks_text};

/// Gets a JWKS document's text.
pub trait JwksFetcher {
    /// Fetch `url`; the error says why, for the log.
    fn fetch(&self, url: &str) -> Result<String, String>;
}

/// The cached keys of one `jwks_url` (one per plugin instance).
#[derive(Debug)]
pub struct JwksCache {
    url: String,
    cache_secs: u64,
    min_refresh_secs: u64,
    keys: Option<Rc<KeySet>>,
    /// When `keys` were fetched.
    fetched_at: u64,
    /// When a fetch was last tried, successful or not.
    last_attempt: Option<u64>,
    /// Problems since the caller last took them, for the log.
    problems: Vec<String>,
}

impl JwksCache {
    /// An empty cache for `url`.
    pub fn new(url: String, cache_secs: u64, min_refresh_secs: u64) -> JwksCache {
        JwksCache {
            url,
            cache_secs,
            min_refresh_secs,
            keys: None,
            fetched_at: 0,
            last_attempt: None,
            problems: Vec::new(),
        }
    }

    /// The keys to check tokens with at `now`, fetched first if there are
    /// none yet or they are older than `jwks_cache_secs`. When a fetch
    /// fails the old keys are kept; `None` only if no fetch ever worked.
    pub fn keys(&mut self, now: u64, fetcher: &dyn JwksFetcher) -> Option<Rc<KeySet>> {
        let stale = self.keys.is_none() || now.saturating_sub(self.fetched_at) >= self.cache_secs;
        if stale {
            self.try_fetch(now, fetcher);
        }
        self.keys.clone()
    }

    /// A token named a key the cached set lacks: fetch again, unless a
    /// fetch was tried less than `jwks_min_refresh_secs` ago. The new keys
    /// if a fetch happened and worked.
    pub fn refresh_for_unknown_key(&mut self, now: u64, fetcher: &dyn JwksFetcher) -> Option<Rc<KeySet>> {
        self.try_fetch(now, fetcher).then(|| self.keys.clone()).flatten()
    }

    /// What went wrong since the last call, for the log.
    pub fn take_problems(&mut self) -> Vec<String> {
        std::mem::take(&mut self.problems)
    }

    /// Fetch and parse, if the rate limit allows; true if new keys came.
    fn try_fetch(&mut self, now: u64, fetcher: &dyn JwksFetcher) -> bool {
        if let Some(last) = self.last_attempt
            && now.saturating_sub(last) < self.min_refresh_secs
        {
            return false;
        }
        self.last_attempt = Some(now);
        let parsed = fetcher.fetch(&self.url).and_then(|text| parse_jwks_text(&text));
        match parsed {
            Ok(jwks) => {
                self.problems.extend(
                    jwks.problems
                        .into_iter()
                        .map(|p| format!("jwks_url {}: skipped {p}", self.url)),
                );
                self.keys = Some(Rc::new(KeySet::new(jwks.keys)));
                self.fetched_at = now;
                true
            }
            Err(e) => {
                let kept = if self.keys.is_some() {
                    "; keeping the keys fetched before"
                } else {
                    ""
                };
                self.problems.push(format!("jwks_url {}: {e}{kept}", self.url));
                false
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::cell::{Cell, RefCell};

    use super::*;
    use crate::keys::tests::fixture;

    /// Serves queued answers (the last one again when the queue runs
    /// out) and counts fetches.
    pub struct FakeFetcher {
        answers: RefCell<Vec<Result<String, String>>>,
        pub calls: Cell<usize>,
    }

    impl FakeFetcher {
        pub fn new(answers: Vec<Result<String, String>>) -> FakeFetcher {
            FakeFetcher {
                answers: RefCell::new(answers),
                calls: Cell::new(0),
            }
        }

        pub fn serving_fixture() -> FakeFetcher {
            FakeFetcher::new(vec![Ok(fixture("jwks.json"))])
        }
    }

    impl JwksFetcher for FakeFetcher {
        fn fetch(&self, url: &str) -> Result<String, String> {
            assert_eq!(url, "https://idp.example/jwks");
            self.calls.set(self.calls.get() + 1);
            let mut answers = self.answers.borrow_mut();
            if answers.len() > 1 {
                answers.remove(0)
            } else {
                answers[0].clone()
            }
        }
    }

    pub fn cache() -> JwksCache {
        JwksCache::new("https://idp.example/jwks".to_string(), 300, 30)
    }

    #[test]
    fn keys_are_fetched_once_and_cached() {
        let fetcher = FakeFetcher::serving_fixture();
        let mut cache = cache();
        assert!(cache.keys(1000, &fetcher).is_some());
        assert!(cache.keys(1100, &fetcher).is_some());
        assert!(cache.keys(1299, &fetcher).is_some());
        assert_eq!(fetcher.calls.get(), 1);
    }

    #[test]
    fn keys_are_fetched_again_after_the_cache_time() {
        let fetcher = FakeFetcher::serving_fixture();
        let mut cache = cache();
        cache.keys(1000, &fetcher);
        cache.keys(1300, &fetcher);
        assert_eq!(fetcher.calls.get(), 2);
    }

    #[test]
    fn unknown_kid_refreshes_at_most_once_per_min_refresh() {
        let fetcher = FakeFetcher::serving_fixture();
        let mut cache = cache();
        cache.keys(1000, &fetcher);
        // Within 30 s of the last fetch: no fetch, however many tries.
        for t in 1000..1030 {
            assert!(cache.refresh_for_unknown_key(t, &fetcher).is_none());
        }
        assert_eq!(fetcher.calls.get(), 1);
        assert!(cache.refresh_for_unknown_key(1030, &fetcher).is_some());
        assert_eq!(fetcher.calls.get(), 2);
        assert!(cache.refresh_for_unknown_key(1031, &fetcher).is_none());
        assert_eq!(fetcher.calls.get(), 2);
    }

    #[test]
    fn a_failed_fetch_keeps_the_old_keys_and_is_reported() {
        let fetcher = FakeFetcher::new(vec![Ok(fixture("jwks.json")), Err("status 502".into())]);
        let mut cache = cache();
        cache.keys(1000, &fetcher);
        assert!(cache.take_problems().is_empty());
        assert!(cache.keys(1400, &fetcher).is_some());
        assert_eq!(fetcher.calls.get(), 2);
        let problems = cache.take_problems();
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].contains("status 502") && problems[0].contains("keeping"),
            "{problems:?}"
        );
    }

    #[test]
    fn failures_are_retried_no_faster_than_min_refresh() {
        let fetcher = FakeFetcher::new(vec![Err("connection refused".into())]);
        let mut cache = cache();
        for t in 1000..1030 {
            assert!(cache.keys(t, &fetcher).is_none());
        }
        assert_eq!(fetcher.calls.get(), 1);
        cache.keys(1030, &fetcher);
        assert_eq!(fetcher.calls.get(), 2);
    }

    #[test]
    fn a_document_that_is_no_jwks_counts_as_a_failure() {
        let fetcher = FakeFetcher::new(vec![Ok("<html>".into())]);
        let mut cache = cache();
        assert!(cache.keys(1000, &fetcher).is_none());
        assert!(cache.take_problems()[0].contains("not JSON"));
    }
}
