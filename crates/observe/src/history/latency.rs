//! The latency histogram one route's bucket keeps: 40 log-scale bins
//! (160 bytes) that cover 100 µs to 52 s, and the p50 and p99 a snapshot
//! reads from them.

use std::time::Duration;

/// Latency bins: bin 0 up to 100 µs, then each bound √2 times the last,
/// up to 52 s; the last bin holds the rest. A quantile is interpolated
/// within its bin, so it is off by at most the bin's width (41%), and
/// usually far less.
const LATENCY_BINS: usize = 40;
const FIRST_BOUND_US: f64 = 100.0;

/// A small log-scale latency histogram.
#[derive(Clone)]
pub(super) struct Latency {
    bins: [u32; LATENCY_BINS],
    count: u64,
    max_us: u64,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            bins: [0; LATENCY_BINS],
            count: 0,
            max_us: 0,
        }
    }
}

/// The upper bound of bin `i` (not the last), in µs.
fn bin_bound_us(i: usize) -> f64 {
    FIRST_BOUND_US * 2f64.powf(i as f64 / 2.0)
}

fn bin_of(us: u64) -> usize {
    if us as f64 <= FIRST_BOUND_US {
        return 0;
    }
    let mut i = (2.0 * (us as f64 / FIRST_BOUND_US).log2()).ceil() as usize;
    // Rounding may put a value on a bound one bin off; settle it exactly.
    while i > 0 && (us as f64) <= bin_bound_us(i - 1) {
        i -= 1;
    }
    while i < LATENCY_BINS - 1 && (us as f64) > bin_bound_us(i) {
        i += 1;
    }
    i.min(LATENCY_BINS - 1)
}

impl Latency {
    pub(super) fn add(&mut self, latency: Duration) {
        let us = latency.as_micros() as u64;
        let bin = &mut self.bins[bin_of(us)];
        *bin = bin.saturating_add(1);
        self.count += 1;
        self.max_us = self.max_us.max(us);
    }

    pub(super) fn merge(&mut self, other: &Latency) {
        for (a, b) in self.bins.iter_mut().zip(&other.bins) {
            *a = a.saturating_add(*b);
        }
        self.count += other.count;
        self.max_us = self.max_us.max(other.max_us);
    }

    /// The `q` quantile in milliseconds, or `None` with no data.
    pub(super) fn quantile_ms(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut below = 0u64;
        for (i, &n) in self.bins.iter().enumerate() {
            let n = u64::from(n);
            if n == 0 || below + n < rank {
                below += n;
                continue;
            }
            let lower = if i == 0 { 0.0 } else { bin_bound_us(i - 1) };
            let upper = if i == LATENCY_BINS - 1 {
                self.max_us as f64
            } else {
                bin_bound_us(i)
            };
            let fraction = (rank - below) as f64 / n as f64;
            let us = (lower + (upper - lower) * fraction).min(self.max_us as f64);
            return Some(us.round() / 1000.0);
        }
        Some(self.max_us as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn quantiles_come_from_the_log_histogram_within_a_bin() {
        let mut latency = Latency::default();
        assert_eq!(latency.quantile_ms(0.5), None);
        for n in 1..=100 {
            latency.add(ms(n));
        }
        let p50 = latency.quantile_ms(0.5).unwrap();
        let p99 = latency.quantile_ms(0.99).unwrap();
        assert!((35.0..=71.0).contains(&p50), "p50 {p50}");
        assert!((70.0..=100.0).contains(&p99), "p99 {p99}");
        // Never past the largest value seen.
        assert!(latency.quantile_ms(1.0).unwrap() <= 100.0);

        let mut one = Latency::default();
        one.add(Duration::from_micros(50));
        assert_eq!(one.quantile_ms(0.99), Some(0.05));

        // Beyond the last bound: the maximum.
        let mut slow = Latency::default();
        slow.add(Duration::from_secs(120));
        assert_eq!(slow.quantile_ms(0.5), Some(120_000.0));
    }

    #[test]
    fn bins_follow_the_bounds() {
        assert_eq!(bin_of(0), 0);
        assert_eq!(bin_of(100), 0);
        assert_eq!(bin_of(101), 1);
        assert_eq!(bin_of(141), 1);
        assert_eq!(bin_of(142), 2);
        assert_eq!(bin_of(200), 2);
        assert_eq!(bin_of(201), 3);
        assert_eq!(bin_of(u64::MAX), LATENCY_BINS - 1);
        for us in [1u64, 99, 150, 1_000, 12_345, 1_000_000, 52_000_000] {
            let i = bin_of(us);
            let lower = if i == 0 { 0.0 } else { bin_bound_us(i - 1) };
            assert!(lower < us as f64 && us as f64 <= bin_bound_us(i), "{us} in bin {i}");
        }
    }
}
