//! Summaries of timing samples: median and 90th percentile.
//!
//! Medians rather than means because plugin timings on a shared 2-core machine have a long
//! right tail (other builds, the scheduler); p90 shows that tail without letting one outlier
//! decide. The median of an even count is the mean of the two middle samples; p90 is the
//! nearest-rank percentile (the smallest sample with at least 90 % of samples at or below it).

use std::time::Duration;

/// Median and p90 of a set of samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub n: usize,
    pub median: Duration,
    pub p90: Duration,
}

/// The summary of `samples`, `None` when there are none.
pub fn summarize(samples: &[Duration]) -> Option<Summary> {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let n = sorted.len();
    let median = match n {
        0 => return None,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2,
    };
    let rank = (n * 9).div_ceil(10); // ceil(0.9 n), 1-based
    Some(Summary {
        n,
        median,
        p90: sorted[rank.max(1) - 1],
    })
}

/// `a / b` as a float (how many times slower `a` is than `b`).
pub fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    #[test]
    fn odd_count_median_is_the_middle_sample() {
        let s = summarize(&ms(&[30, 10, 20])).unwrap();
        assert_eq!(
            (s.n, s.median, s.p90),
            (3, Duration::from_millis(20), Duration::from_millis(30))
        );
    }

    #[test]
    fn even_count_median_is_the_mean_of_the_middle_two() {
        let s = summarize(&ms(&[40, 10, 20, 30])).unwrap();
        assert_eq!(s.median, Duration::from_millis(25));
    }

    #[test]
    fn p90_is_nearest_rank() {
        let ten: Vec<u64> = (1..=10).collect();
        assert_eq!(summarize(&ms(&ten)).unwrap().p90, Duration::from_millis(9));
        let thirty: Vec<u64> = (1..=30).collect();
        assert_eq!(
            summarize(&ms(&thirty)).unwrap().p90,
            Duration::from_millis(27)
        );
        assert_eq!(summarize(&ms(&[5])).unwrap().p90, Duration::from_millis(5));
    }

    #[test]
    fn no_samples_no_summary() {
        assert_eq!(summarize(&[]), None);
    }

    #[test]
    fn ratio_divides() {
        assert_eq!(
            ratio(Duration::from_millis(5), Duration::from_millis(20)),
            0.25
        );
    }
}
