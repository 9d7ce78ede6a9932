//! Summaries of repeated measurements: median, min, max and percentiles (nearest rank).

/// Sorted samples of one measurement.
#[derive(Debug, Clone, Default)]
pub struct Samples(Vec<f64>);

impl Samples {
    pub fn new(mut values: Vec<f64>) -> Samples {
        values.sort_by(f64::total_cmp);
        Samples(values)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Nearest-rank percentile (`p` in 0..=100); `None` without samples.
    pub fn pct(&self, p: f64) -> Option<f64> {
        if self.0.is_empty() {
            return None;
        }
        let rank = ((p / 100.0) * self.0.len() as f64).ceil() as usize;
        Some(self.0[rank.clamp(1, self.0.len()) - 1])
    }

    pub fn median(&self) -> Option<f64> {
        self.pct(50.0)
    }

    pub fn min(&self) -> Option<f64> {
        self.0.first().copied()
    }

    pub fn max(&self) -> Option<f64> {
        self.0.last().copied()
    }

    /// `median (min–max, n=N)` with `unit`, or `None` without samples.
    pub fn describe(&self, unit: &str, decimals: usize) -> Option<String> {
        Some(format!(
            "{:.d$} {unit} (min {:.d$}, max {:.d$}, n={})",
            self.median()?,
            self.min()?,
            self.max()?,
            self.len(),
            d = decimals
        ))
    }
}
