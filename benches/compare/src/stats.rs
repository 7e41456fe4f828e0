//! Repeated measurements and their median and range.

#[derive(Debug, Clone, Default)]
pub struct Samples(Vec<f64>);

impl Samples {
    pub fn push(&mut self, value: f64) {
        self.0.push(value);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    fn sorted(&self) -> Vec<f64> {
        let mut values = self.0.clone();
        values.sort_by(f64::total_cmp);
        values
    }

    /// The median (the mean of the two middle values for an even count); NaN if empty.
    pub fn median(&self) -> f64 {
        let values = self.sorted();
        let n = values.len();
        match n {
            0 => f64::NAN,
            _ if n % 2 == 1 => values[n / 2],
            _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
        }
    }

    pub fn min(&self) -> f64 {
        self.sorted().first().copied().unwrap_or(f64::NAN)
    }

    pub fn max(&self) -> f64 {
        self.sorted().last().copied().unwrap_or(f64::NAN)
    }
}

/// The `q` quantile (0 < q ≤ 1) of `values` by the nearest-rank method: the smallest of
/// them that at least a share `q` of them do not exceed. Sorts `values`; NaN if empty.
pub fn percentile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let rank = (q * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::{percentile, Samples};

    #[test]
    fn median_min_max() {
        let mut samples = Samples::default();
        assert!(samples.median().is_nan());
        for value in [5.0, 1.0, 3.0] {
            samples.push(value);
        }
        assert_eq!((samples.median(), samples.min(), samples.max()), (3.0, 1.0, 5.0));
        samples.push(4.0);
        assert_eq!(samples.median(), 3.5);
    }

    #[test]
    fn percentile_is_the_nearest_rank() {
        let mut values: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(percentile(&mut values, 0.5), 50.0);
        assert_eq!(percentile(&mut values, 0.99), 99.0);
        assert_eq!(percentile(&mut values, 1.0), 100.0);
        assert!(percentile(&mut [], 0.5).is_nan());
    }
}
