//! Token-bucket arithmetic and the bucket's stored form, for the `kv`
//! capability's `take-tokens`. Pure: the caller brings the clock and the
//! store. The Redis store runs the same arithmetic in a server-side script
//! (`redis.rs`); the tests there check the two agree.
//!
//! A bucket holds up to `capacity` tokens and gains `refill_per_second`
//! tokens a second, continuously. A request takes `cost` tokens if that
//! many are there; otherwise it is limited and told when they will be.

/// Slack for float rounding: 2.9999999999 tokens count as 3.
const EPSILON: f64 = 1e-9;

/// How long a stored bucket outlives the moment it would be full again.
/// A missing key reads as a full bucket, so expiry only saves memory.
const TTL_MARGIN_MS: u64 = 1_000;

/// The shape of every bucket on one route.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// Most tokens a bucket holds: the burst size.
    pub capacity: u32,
    /// Tokens added per second.
    pub refill_per_second: f64,
}

/// One bucket's stored state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct State {
    /// Tokens left at `updated_ms` (fractional while refilling).
    pub tokens: f64,
    /// When `tokens` was computed, in milliseconds since the Unix epoch.
    pub updated_ms: u64,
}

impl State {
    /// The stored form: `tokens,updated_ms` in ASCII.
    pub fn encode(&self) -> String {
        format!("{},{}", self.tokens, self.updated_ms)
    }

    /// Read the stored form; `None` if it is not one (treated as absent).
    pub fn decode(bytes: &[u8]) -> Option<State> {
        let text = std::str::from_utf8(bytes).ok()?;
        let (tokens, updated) = text.split_once(',')?;
        let tokens: f64 = tokens.parse().ok()?;
        if !tokens.is_finite() || tokens < 0.0 {
            return None;
        }
        Some(State {
            tokens,
            updated_ms: updated.parse().ok()?,
        })
    }
}

/// What taking tokens from a bucket decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// The request may go on; store `state` with a TTL of `ttl_ms`.
    Allowed {
        /// The bucket after the take.
        state: State,
        /// Whole tokens left.
        remaining: u32,
        /// Seconds until the bucket is full again.
        reset_secs: u64,
        /// How long to keep the stored state.
        ttl_ms: u64,
    },
    /// Not enough tokens; nothing needs storing.
    Limited {
        /// Whole seconds until `cost` tokens are there (at least 1).
        retry_after_secs: u64,
        /// Seconds until the bucket is full again.
        reset_secs: u64,
    },
}

/// What a take decided, as the `kv` capability reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    /// Whether the tokens were taken.
    pub allowed: bool,
    /// Whole tokens left.
    pub remaining: u32,
    /// When refused: whole seconds until `cost` tokens are there (at
    /// least 1); 0 when allowed.
    pub retry_after_secs: u64,
    /// Seconds until the bucket is full again.
    pub reset_secs: u64,
}

impl Outcome {
    /// The decision without the state to store.
    pub fn taken(&self) -> Taken {
        match *self {
            Outcome::Allowed {
                remaining, reset_secs, ..
            } => Taken {
                allowed: true,
                remaining,
                retry_after_secs: 0,
                reset_secs,
            },
            Outcome::Limited {
                retry_after_secs,
                reset_secs,
            } => Taken {
                allowed: false,
                remaining: 0,
                retry_after_secs,
                reset_secs,
            },
        }
    }
}

impl Bucket {
    /// Why taking `cost` from this bucket makes no sense, if it does not.
    pub fn check(&self, cost: u32) -> Result<(), String> {
        if self.capacity == 0 {
            return Err("capacity must be at least 1".into());
        }
        if !(self.refill_per_second.is_finite() && self.refill_per_second > 0.0) {
            return Err(format!(
                "refill-per-second must be a positive number, not {}",
                self.refill_per_second
            ));
        }
        if cost == 0 || cost > self.capacity {
            return Err(format!(
                "cost must be between 1 and the capacity ({}), not {cost}",
                self.capacity
            ));
        }
        Ok(())
    }

    /// Take `cost` tokens at `now_ms` from a bucket last stored as `prior`
    /// (`None`: never used or expired, so full).
    pub fn take(&self, prior: Option<State>, now_ms: u64, cost: u32) -> Outcome {
        let capacity = f64::from(self.capacity);
        let (tokens, updated_ms) = match prior {
            None => (capacity, now_ms),
            Some(state) => {
                // A clock behind the stored one (another gateway's skew)
                // refills nothing rather than going backwards.
                let elapsed_ms = now_ms.saturating_sub(state.updated_ms);
                let refilled = state.tokens + elapsed_ms as f64 * self.per_ms();
                (refilled.min(capacity), now_ms.max(state.updated_ms))
            }
        };
        let cost = f64::from(cost);
        if tokens + EPSILON >= cost {
            let left = (tokens - cost).max(0.0);
            let full_in_ms = self.ms_to_gain(capacity - left);
            Outcome::Allowed {
                state: State {
                    tokens: left,
                    updated_ms,
                },
                remaining: whole_tokens(left),
                reset_secs: ceil_secs(full_in_ms),
                ttl_ms: (full_in_ms.ceil() as u64).saturating_add(TTL_MARGIN_MS),
            }
        } else {
            Outcome::Limited {
                retry_after_secs: ceil_secs(self.ms_to_gain(cost - tokens)).max(1),
                reset_secs: ceil_secs(self.ms_to_gain(capacity - tokens)),
            }
        }
    }

    fn per_ms(&self) -> f64 {
        self.refill_per_second / 1000.0
    }

    fn ms_to_gain(&self, tokens: f64) -> f64 {
        tokens.max(0.0) / self.per_ms()
    }
}

/// Milliseconds to whole seconds, rounded up (float noise forgiven).
fn ceil_secs(ms: f64) -> u64 {
    ((ms / 1000.0) - EPSILON).ceil().max(0.0) as u64
}

fn whole_tokens(tokens: f64) -> u32 {
    (tokens + EPSILON).floor() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000_000;

    fn bucket(capacity: u32, refill_per_second: f64) -> Bucket {
        Bucket {
            capacity,
            refill_per_second,
        }
    }

    fn allowed(outcome: Outcome) -> (State, u32, u64) {
        match outcome {
            Outcome::Allowed {
                state,
                remaining,
                reset_secs,
                ..
            } => (state, remaining, reset_secs),
            other => panic!("expected Allowed, got {other:?}"),
        }
    }

    fn limited(outcome: Outcome) -> (u64, u64) {
        match outcome {
            Outcome::Limited {
                retry_after_secs,
                reset_secs,
            } => (retry_after_secs, reset_secs),
            other => panic!("expected Limited, got {other:?}"),
        }
    }

    #[test]
    fn a_new_bucket_starts_full() {
        let (state, remaining, reset) = allowed(bucket(10, 1.0).take(None, T0, 1));
        assert_eq!(
            state,
            State {
                tokens: 9.0,
                updated_ms: T0
            }
        );
        assert_eq!(remaining, 9);
        assert_eq!(reset, 1);
    }

    #[test]
    fn a_burst_of_capacity_then_limited() {
        let b = bucket(3, 1.0);
        let mut state = None;
        for expected in [2, 1, 0] {
            let (s, remaining, _) = allowed(b.take(state, T0, 1));
            assert_eq!(remaining, expected);
            state = Some(s);
        }
        let (retry_after, reset) = limited(b.take(state, T0, 1));
        assert_eq!(retry_after, 1);
        assert_eq!(reset, 3);
    }

    #[test]
    fn tokens_refill_with_time_up_to_capacity() {
        let b = bucket(10, 2.0);
        let empty = Some(State {
            tokens: 0.0,
            updated_ms: T0,
        });
        let (state, remaining, _) = allowed(b.take(empty, T0 + 1_500, 1));
        assert_eq!(state.tokens, 2.0);
        assert_eq!(remaining, 2);
        // An hour later the bucket is full, not overflowing.
        let (state, remaining, reset) = allowed(b.take(empty, T0 + 3_600_000, 1));
        assert_eq!(state.tokens, 9.0);
        assert_eq!(remaining, 9);
        assert_eq!(reset, 1);
    }

    #[test]
    fn fractional_tokens_are_not_enough() {
        let b = bucket(5, 1.0);
        let state = Some(State {
            tokens: 0.0,
            updated_ms: T0,
        });
        let (retry_after, _) = limited(b.take(state, T0 + 999, 1));
        assert_eq!(retry_after, 1);
        allowed(b.take(state, T0 + 1_000, 1));
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        // 0.2 tokens a second: one token takes 5 s.
        let b = bucket(1, 0.2);
        let state = Some(State {
            tokens: 0.0,
            updated_ms: T0,
        });
        assert_eq!(limited(b.take(state, T0, 1)).0, 5);
        assert_eq!(limited(b.take(state, T0 + 1, 1)).0, 5);
        assert_eq!(limited(b.take(state, T0 + 1_001, 1)).0, 4);
        assert_eq!(limited(b.take(state, T0 + 4_999, 1)).0, 1);
    }

    #[test]
    fn retry_after_is_at_least_one_second() {
        // 1000 tokens a second: the next token is 1 ms away.
        let b = bucket(1, 1000.0);
        let state = Some(State {
            tokens: 0.0,
            updated_ms: T0,
        });
        assert_eq!(limited(b.take(state, T0, 1)).0, 1);
    }

    #[test]
    fn retry_after_counts_the_cost() {
        let b = bucket(10, 1.0);
        let state = Some(State {
            tokens: 1.5,
            updated_ms: T0,
        });
        // Needs 3.5 more tokens for a cost of 5.
        assert_eq!(limited(b.take(state, T0, 5)), (4, 9));
    }

    #[test]
    fn clock_going_backwards_refills_nothing() {
        let b = bucket(10, 1.0);
        let state = Some(State {
            tokens: 2.0,
            updated_ms: T0,
        });
        let (state, remaining, _) = allowed(b.take(state, T0 - 5_000, 1));
        assert_eq!(
            state,
            State {
                tokens: 1.0,
                updated_ms: T0
            }
        );
        assert_eq!(remaining, 1);
    }

    #[test]
    fn stored_tokens_above_a_lowered_capacity_are_capped() {
        let b = bucket(2, 1.0);
        let state = Some(State {
            tokens: 50.0,
            updated_ms: T0,
        });
        assert_eq!(allowed(b.take(state, T0, 1)).1, 1);
    }

    #[test]
    fn ttl_covers_the_time_to_full_plus_margin() {
        let b = bucket(10, 2.0);
        match b.take(None, T0, 4) {
            Outcome::Allowed { ttl_ms, reset_secs, .. } => {
                assert_eq!(reset_secs, 2);
                assert_eq!(ttl_ms, 2_000 + TTL_MARGIN_MS);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn nonsense_buckets_are_refused() {
        assert!(bucket(10, 1.0).check(10).is_ok());
        assert!(bucket(0, 1.0).check(1).is_err());
        assert!(bucket(10, 0.0).check(1).is_err());
        assert!(bucket(10, f64::NAN).check(1).is_err());
        assert!(bucket(10, f64::INFINITY).check(1).is_err());
        assert!(bucket(10, 1.0).check(0).is_err());
        assert!(bucket(10, 1.0).check(11).is_err());
    }

    #[test]
    fn state_round_trips_and_rejects_garbage() {
        let state = State {
            tokens: 0.1 + 0.2,
            updated_ms: T0,
        };
        assert_eq!(State::decode(state.encode().as_bytes()), Some(state));
        assert_eq!(State::decode(b"nope"), None);
        assert_eq!(State::decode(b"NaN,1"), None);
        assert_eq!(State::decode(b"-1,1"), None);
        assert_eq!(State::decode(b"1,x"), None);
        assert_eq!(State::decode(&[0xff, b',', b'1']), None);
    }
}
