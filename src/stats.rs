//! Fixed-bucket histograms (Prometheus style: cumulative buckets, sum, count), shared
//! by the engine's scheduler figures and the server's request metrics.

use std::fmt::Write;

#[derive(Clone, Debug)]
pub struct Histogram {
    /// Upper bounds, ascending.
    bounds: &'static [f64],
    /// Observations at or below each bound.
    buckets: Vec<u64>,
    pub count: u64,
    pub sum: f64,
}

/// Bounds (seconds) of latency histograms.
pub const SECONDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Bounds of the decode batch size histogram.
pub const BATCH: &[f64] = &[1.0, 2.0, 4.0, 8.0, 12.0, 16.0, 24.0, 32.0, 64.0];

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            buckets: vec![0; bounds.len()],
            count: 0,
            sum: 0.0,
        }
    }

    pub fn observe(&mut self, x: f64) {
        for (b, n) in self.bounds.iter().zip(&mut self.buckets) {
            if x <= *b {
                *n += 1;
            }
        }
        self.count += 1;
        self.sum += x;
    }

    /// Mean of the observations (0 before any).
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum / self.count as f64
        }
    }

    /// Append the exposition of this histogram as `name` to `s`.
    pub fn render(&self, s: &mut String, name: &str, help: &str) {
        let _ = writeln!(s, "# HELP {name} {help}");
        let _ = writeln!(s, "# TYPE {name} histogram");
        for (b, n) in self.bounds.iter().zip(&self.buckets) {
            let _ = writeln!(s, "{name}_bucket{{le=\"{b}\"}} {n}");
        }
        let _ = writeln!(s, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(s, "{name}_sum {}", self.sum);
        let _ = writeln!(s, "{name}_count {}", self.count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative() {
        let mut h = Histogram::new(BATCH);
        for x in [1.0, 3.0, 3.0, 100.0] {
            h.observe(x);
        }
        let mut s = String::new();
        h.render(&mut s, "b", "batch");
        assert!(s.contains("b_bucket{le=\"1\"} 1\n"), "{s}");
        assert!(s.contains("b_bucket{le=\"4\"} 3\n"), "{s}");
        assert!(s.contains("b_bucket{le=\"64\"} 3\n"), "{s}");
        assert!(s.contains("b_bucket{le=\"+Inf\"} 4\n"), "{s}");
        assert_eq!(h.mean(), 26.75);
    }
}
