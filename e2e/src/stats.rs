//! Summaries of samples: median and 90th percentile of timings, and the median of ratios with
//! a confidence interval.
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

/// The median of `values` (mean of the middle two for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// A distribution-free 95 % confidence interval for the median of `values`: the order
/// statistics `x(j)` and `x(k)` (1-based) with `j = floor(n/2 - 0.98 sqrt(n))` and
/// `k = ceil(1 + n/2 + 0.98 sqrt(n))`, the normal approximation of the binomial interval.
/// It assumes nothing about the shape of the noise, which on a shared machine is anything but
/// normal. `None` below 6 samples, where no such interval reaches 95 %.
pub fn median_ci95(values: &[f64]) -> Option<(f64, f64)> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n < 6 {
        return None;
    }
    let half = n as f64 / 2.0;
    let spread = 0.98 * (n as f64).sqrt();
    let j = ((half - spread).floor() as usize).max(1);
    let k = ((1.0 + half + spread).ceil() as usize).min(n);
    Some((v[j - 1], v[k - 1]))
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
    fn median_of_floats() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn median_ci95_uses_the_binomial_order_statistics() {
        // n = 60: j = floor(30 - 7.59) = 22, k = ceil(31 + 7.59) = 39.
        let v: Vec<f64> = (1..=60).rev().map(f64::from).collect();
        assert_eq!(median_ci95(&v), Some((22.0, 39.0)));
        // n = 9: j = floor(4.5 - 2.94) = 1, k = ceil(5.5 + 2.94) = 9: the whole range.
        let v: Vec<f64> = (1..=9).map(f64::from).collect();
        assert_eq!(median_ci95(&v), Some((1.0, 9.0)));
        assert_eq!(median_ci95(&[1.0, 2.0, 3.0, 4.0, 5.0]), None);
    }

    #[test]
    fn ratio_divides() {
        assert_eq!(
            ratio(Duration::from_millis(5), Duration::from_millis(20)),
            0.25
        );
    }
}
