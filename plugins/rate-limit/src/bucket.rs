//! The shape of a route's buckets. The arithmetic (refill, take, when to
//! retry) is the gateway's: `kv::take_tokens` does it atomically in the
//! store, so every instance and every gateway takes from one bucket.

/// Slack for float rounding: 2.9999999999 s count as 3.
const EPSILON: f64 = 1e-9;

/// The shape of every bucket on one route.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// Most tokens a bucket holds: the burst size.
    pub capacity: u32,
    /// Tokens added per second.
    pub refill_per_second: f64,
}

impl Bucket {
    /// Seconds to refill an empty bucket: the `w` of `ratelimit-policy`.
    pub fn window_secs(&self) -> u64 {
        let secs = f64::from(self.capacity) / self.refill_per_second;
        ((secs - EPSILON).ceil().max(0.0) as u64).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_is_the_time_to_fill_an_empty_bucket() {
        let bucket = |capacity, refill_per_second| Bucket {
            capacity,
            refill_per_second,
        };
        assert_eq!(bucket(60, 1.0).window_secs(), 60);
        assert_eq!(bucket(10, 3.0).window_secs(), 4);
        assert_eq!(bucket(1, 100.0).window_secs(), 1);
    }
}
