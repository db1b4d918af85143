//! Brendan Gregg's folded stacks: one line per distinct stack, frames outermost first and
//! separated by `;`, then a space and the stack's weight. flamegraph.pl, inferno and
//! speedscope read it.
//!
//! Weights are in sampling periods (1 s / frequency), so that on-CPU and off-CPU towers
//! of one flame graph are both widths of time: an on-CPU stack weighs its sample count;
//! an off-CPU stack weighs its blocked time divided by the period, rounded to the
//! nearest, and at least 1, so that no blocked stack disappears (which overstates one that
//! blocked for less than half a period by at most one period).

use std::collections::BTreeMap;
use std::io::{self, Write};

use super::{frame_labels, period_ns, sample_path, samples, thread_label, OutputOptions};
use crate::model::{Profile, SampleKind, StackSamples};

/// Writes `profile` as folded stacks, sorted, one line per distinct stack.
pub fn write_folded(
    profile: &Profile,
    options: &OutputOptions,
    out: &mut dyn Write,
) -> io::Result<()> {
    for (path, weight) in folded_lines(profile, options) {
        writeln!(out, "{path} {weight}")?;
    }
    Ok(())
}

/// Folded paths with their weights. Distinct stacks can share a path (two addresses in
/// one function are two frames with one label), so weights are summed by path.
pub(super) fn folded_lines(profile: &Profile, options: &OutputOptions) -> BTreeMap<String, u64> {
    let labels = frame_labels(profile);
    let period = period_ns(profile);
    let mut lines = BTreeMap::new();
    for (thread, sample) in samples(profile) {
        let weight = weight(sample, period);
        if weight == 0 {
            continue;
        }
        let root = options.per_thread.then(|| thread_label(thread));
        let path = sample_path(profile, &labels, root.as_deref(), sample).join(";");
        *lines.entry(path).or_insert(0) += weight;
    }
    lines
}

/// A sample's weight in sampling periods (see the module's doc).
fn weight(sample: &StackSamples, period_ns: u64) -> u64 {
    match sample.kind {
        SampleKind::OnCpu => sample.count,
        SampleKind::OffCpu if sample.weight_ns == 0 => 0,
        SampleKind::OffCpu => (sample.weight_ns.saturating_add(period_ns / 2) / period_ns).max(1),
    }
}

#[cfg(test)]
mod tests {
    use super::write_folded;
    use crate::output::{fixture, OutputOptions};

    fn folded(per_thread: bool) -> Vec<(String, u64)> {
        let options = OutputOptions {
            per_thread,
            title: "test".into(),
        };
        let mut out = Vec::new();
        write_folded(&fixture::profile(), &options, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        text.lines()
            .map(|line| {
                let (path, count) = line.rsplit_once(' ').unwrap();
                (path.to_owned(), count.parse().unwrap())
            })
            .collect()
    }

    #[test]
    fn stacks_are_outermost_first_with_markers() {
        let lines = folded(false);
        let expected = [
            (
                "<module> (find_zip.py)_[py];find_zip (find_zip.py)_[py];\
                 is_zipfile (zipfile/__init__.py)_[py];__open64;\
                 entry_SYSCALL_64_[k];do_syscall_64_[k]",
                30,
            ),
            ("[off-cpu];start_thread;futex_wait;schedule_[k]", 25),
            (
                "[truncated];<module> (find_zip.py)_[py];find_zip (find_zip.py)_[py];\
                 is_zipfile (zipfile/__init__.py)_[py]",
                10,
            ),
            ("start_thread;hash_all;hash_step", 15),
            ("start_thread;libwork.so+0x1000", 5),
        ];
        let expected: Vec<(String, u64)> = expected
            .iter()
            .map(|(path, count)| (path.to_string(), *count))
            .collect();
        assert_eq!(lines, expected);
    }

    #[test]
    fn per_thread_adds_one_root_per_thread() {
        let lines = folded(true);
        assert_eq!(lines.len(), 5);
        let main = lines
            .iter()
            .filter(|(path, _)| path.starts_with("python3 [py \"MainThread\"] tid 1000;<module>"));
        assert_eq!(main.count(), 1);
        assert!(lines.iter().any(|(path, n)| path
            == "worker tid 1001;[off-cpu];start_thread;futex_wait;schedule_[k]"
            && *n == 25));
    }

    #[test]
    fn off_cpu_time_is_in_sampling_periods() {
        use super::weight;
        use crate::model::{SampleKind, StackSamples};
        let off = |weight_ns| StackSamples {
            stack: 0,
            kind: SampleKind::OffCpu,
            count: 1,
            weight_ns,
            syscall: None,
        };
        assert_eq!(weight(&off(0), 10), 0);
        assert_eq!(weight(&off(1), 10), 1);
        assert_eq!(weight(&off(14), 10), 1);
        assert_eq!(weight(&off(15), 10), 2);
    }
}
