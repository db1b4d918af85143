//! Figures over many runs: median and range, and the worst of several.

use super::sample::KernelPrograms;

/// Median and range of one figure over rounds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Summary {
    pub(super) median: f64,
    pub(super) min: f64,
    pub(super) max: f64,
}

impl Summary {
    pub(super) fn of(values: impl IntoIterator<Item = f64>) -> Option<Self> {
        let mut values: Vec<f64> = values.into_iter().collect();
        values.sort_by(f64::total_cmp);
        let (min, max) = (*values.first()?, *values.last()?);
        let mid = values.len() / 2;
        let median = if values.len().is_multiple_of(2) {
            (values[mid - 1] + values[mid]) / 2.0
        } else {
            values[mid]
        };
        Some(Self { median, min, max })
    }
}

/// The largest of the named figures that exist.
pub(super) fn worst<'a>(
    figures: impl Iterator<Item = (&'a str, Option<f64>)>,
) -> Option<(&'a str, f64)> {
    figures
        .filter_map(|(name, v)| Some((name, v?)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

pub(super) fn median_of<T>(runs: &[&T], figure: impl Fn(&T) -> Option<f64>) -> Option<f64> {
    Summary::of(runs.iter().filter_map(|run| figure(run))).map(|s| s.median)
}

pub(super) fn median_ns_per_run(runs: &[&KernelPrograms], program: &str) -> Option<f64> {
    median_of(runs, |run| run.program(program)?.ns_per_run())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_takes_the_middle() {
        assert_eq!(
            Summary::of([3.0, 1.0, 2.0]),
            Some(Summary {
                median: 2.0,
                min: 1.0,
                max: 3.0
            })
        );
        assert_eq!(
            Summary::of([4.0, 1.0, 2.0, 3.0]).map(|s| s.median),
            Some(2.5)
        );
        assert_eq!(Summary::of([]), None);
    }
}
