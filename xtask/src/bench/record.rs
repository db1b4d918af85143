//! probe record's part of the results: its targets, its kernel programs and own process, and
//! the files it and its peers wrote.

use std::fmt::{self, Write as _};

use super::{
    format::{fmt_bytes, fmt_summary, mib},
    plan::{Observer, Workload, WORKLOADS},
    render::Results,
    sample::{KernelPrograms, ProbeRun},
    stats::{median_of, worst, Summary},
    tables::{process_row, write_program_header, write_program_rows},
    targets::Target,
};

/// The getppid storm's throughput under probe record, at least: it has no syscall hook.
const STORM_MIN_RATIO: f64 = 0.97;
/// probe record's own CPU while recording at 99 Hz, in % of one core.
const CPU_MAX_PCT: f64 = 1.0;
/// Peak RSS, MiB.
pub(super) const RSS_MAX_MIB: f64 = 64.0;
/// From the end of the recording (SIGINT) to a complete file (probe's exit), seconds.
pub(super) const COMPLETE_MAX_SECS: f64 = 1.0;
/// The syscall hook, which probe record must not load.
const SYS_ENTER: &str = "sys_enter";

/// The observers that write a file, in table order.
const WRITERS: [Observer; 4] = [
    Observer::ProbeRecord,
    Observer::Perf,
    Observer::PySpy,
    Observer::PySpyNonblocking,
];

impl Results<'_> {
    pub(super) fn record_targets(&self) -> Vec<Target> {
        vec![
            self.record_vs_perf_target(),
            self.record_storm_target(),
            self.record_cpu_target(),
            self.record_rss_target(),
            self.record_complete_target(),
        ]
    }

    /// Head to head in the same rounds: probe record's rate over perf record's, per round.
    fn record_vs_perf_target(&self) -> Target {
        let mut parts = Vec::new();
        let mut met = true;
        for workload in WORKLOADS {
            if !workload.observers().contains(&Observer::Perf) {
                let py_spy = Summary::of(self.ratios(workload, Observer::PySpy, |r| r.wall));
                parts.push(format!(
                    "{}: not watched by perf record (ratio to alone {}; py-spy record {})",
                    workload.name(),
                    self.ratio_text(workload, Observer::ProbeRecord),
                    fmt_summary(py_spy, 2)
                ));
                continue;
            }
            let pairs = Summary::of(paired_ratios(
                &self.round_rates(workload, Observer::ProbeRecord),
                &self.round_rates(workload, Observer::Perf),
            ));
            met &= pairs.is_some_and(|s| s.median >= 1.0);
            parts.push(format!(
                "{} {} (ratio to alone {}; perf record {})",
                workload.name(),
                fmt_summary(pairs, 3),
                self.ratio_text(workload, Observer::ProbeRecord),
                self.ratio_text(workload, Observer::Perf)
            ));
        }
        Target {
            what: "no workload slower under probe record than under perf record -F 99 -g -a \
                   (probe record's rate ÷ perf record's in the same round, median)",
            goal: "≥ 1.00 on every workload perf record watches",
            measured: parts.join("; "),
            met,
        }
    }

    fn record_storm_target(&self) -> Target {
        let ratio =
            Summary::of(self.ratios(Workload::GetppidStorm, Observer::ProbeRecord, |r| r.wall));
        let hooked = self
            .record_runs()
            .iter()
            .flat_map(|(_, runs)| runs)
            .any(|run| run.kernel.program(SYS_ENTER).is_some());
        let hook = if hooked {
            "**a sys_enter program was loaded**"
        } else {
            "no sys_enter program loaded"
        };
        Target {
            what: "getppid storm throughput under probe record (ratio to alone, median)",
            goal: "≥ 0.97: no syscall hook",
            measured: format!(
                "{}; perf record {}; {hook}",
                fmt_summary(ratio, 2),
                self.ratio_text(Workload::GetppidStorm, Observer::Perf)
            ),
            met: ratio.is_some_and(|s| s.median >= STORM_MIN_RATIO) && !hooked,
        }
    }

    /// Judged on the recurring cost while recording; start to exit of the bench's short runs
    /// (loading and writing the file included) is shown next to it.
    fn record_cpu_target(&self) -> Target {
        let groups = self.record_runs();
        let worst_median = |pct: fn(&ProbeRun) -> f64| {
            worst(
                groups
                    .iter()
                    .map(|(name, runs)| (*name, median_of(runs, |run| Some(pct(run))))),
            )
        };
        let steady = worst_median(|run| run.observing.cpu_pct());
        let lifetime = worst_median(ProbeRun::cpu_pct);
        let text = |worst: Option<(&str, f64)>| {
            worst.map_or("n/a".into(), |(name, pct)| format!("{pct:.2}% ({name})"))
        };
        Target {
            what: "probe record's own CPU while recording at 99 Hz (median; worst workload)",
            goal: "≤ 1% of one core",
            measured: format!(
                "{}; start to exit of a {:.1} s run, loading and writing the file included: {}",
                text(steady),
                self.bench.options.secs + super::SETTLE.as_secs_f64(),
                text(lifetime)
            ),
            met: steady.is_some_and(|(_, pct)| pct <= CPU_MAX_PCT),
        }
    }

    fn record_rss_target(&self) -> Target {
        let runs: Vec<&ProbeRun> = self
            .record_runs()
            .into_iter()
            .flat_map(|(_, runs)| runs)
            .collect();
        let lifetime = Summary::of(runs.iter().map(|run| run.peak_rss_mib()));
        let observing = Summary::of(runs.iter().map(|run| mib(run.observing.peak_rss_kib)));
        Target {
            what: "probe record's peak RSS in these short runs (max); the 10-minute figure is \
                   `cargo xtask bench --record-soak 10`'s",
            goal: "≤ 64 MiB",
            measured: match (lifetime, observing) {
                (Some(l), Some(o)) => {
                    format!("{:.1} MiB; {:.1} MiB before writing the file", l.max, o.max)
                }
                _ => "n/a".into(),
            },
            met: lifetime.is_some_and(|s| s.max <= RSS_MAX_MIB),
        }
    }

    fn record_complete_target(&self) -> Target {
        let latency = |observer| {
            Summary::of(
                WORKLOADS
                    .iter()
                    .flat_map(|&w| self.runs_of(w, observer))
                    .filter_map(|s| Some(s.written?.latency.as_secs_f64())),
            )
        };
        let text = |s: Option<Summary>| {
            s.map_or("n/a".into(), |s| {
                format!("{:.3} s (median {:.3} s)", s.max, s.median)
            })
        };
        let probe = latency(Observer::ProbeRecord);
        Target {
            what: "probe record's file complete after the recording ends (SIGINT to exit, max \
                   over all runs; the file checked non-empty)",
            goal: "≤ 1 s",
            measured: format!(
                "{}; perf record's perf.data: {}",
                text(probe),
                text(latency(Observer::Perf))
            ),
            met: probe.is_some_and(|s| s.max <= COMPLETE_MAX_SECS),
        }
    }

    /// The median ratio to alone and its range.
    fn ratio_text(&self, workload: Workload, observer: Observer) -> String {
        fmt_summary(Summary::of(self.ratios(workload, observer, |r| r.wall)), 2)
    }

    /// (round, rate per second) of each clean run of `observer` on `workload`.
    fn round_rates(&self, workload: Workload, observer: Observer) -> Vec<(usize, f64)> {
        self.runs_of(workload, observer)
            .iter()
            .map(|s| (s.round, s.rate.wall))
            .collect()
    }

    pub(super) fn write_record_programs(&self, out: &mut String) -> fmt::Result {
        writeln!(out, "## probe record's kernel programs\n")?;
        writeln!(
            out,
            "As for probe spin above, from its `--self-stats` line: over its whole window, \
             systemwide; median over the runs. Every program it loaded is listed; it loads no \
             syscall hook.\n"
        )?;
        write_program_header(out)?;
        for (name, runs) in self.record_runs() {
            let kernels: Vec<&KernelPrograms> = runs.iter().map(|run| &run.kernel).collect();
            write_program_rows(out, name, &kernels)?;
        }
        writeln!(out)
    }

    pub(super) fn write_record_process(&self, out: &mut String) -> fmt::Result {
        writeln!(out, "## probe record's own process\n")?;
        writeln!(
            out,
            "The same figures as for probe spin above; \"after\" is writing the flamegraph \
             (symbolizing and rendering included), i.e. SIGINT to exit.\n"
        )?;
        writeln!(
            out,
            "| while running | runs | CPU % of one core, start to exit | CPU % while recording | \
             CPU s (medians): start to exit = before the workload + during + after (the file) | \
             peak RSS MiB (max): start to exit / before the file | attach s: median / max |\n\
             |---|---:|---|---|---|---|---|"
        )?;
        for (name, runs) in self.record_runs() {
            writeln!(out, "| {name} | {} | {} |", runs.len(), process_row(&runs))?;
        }
        writeln!(out)
    }

    pub(super) fn write_outputs(&self, out: &mut String) -> fmt::Result {
        writeln!(out, "## Output files\n")?;
        writeln!(
            out,
            "What each recording observer wrote in one run: probe record an SVG flamegraph of \
             the whole machine, perf record its perf.data (samples of the whole machine, \
             unsymbolized), py-spy its raw folded stacks of the Python loop. Each run's file is \
             checked non-empty, then removed. Complete = from the SIGINT that ended the \
             observer to its exit (polled every 10 ms); py-spy exits by itself when the loop \
             does, so its figure is mostly 0. Median (min–max) over the runs.\n"
        )?;
        writeln!(
            out,
            "| workload | observer | runs | size | complete after SIGINT, s: median / max |\n\
             |---|---|---:|---|---|"
        )?;
        for workload in WORKLOADS {
            for observer in WRITERS {
                if !workload.observers().contains(&observer) {
                    continue;
                }
                let written: Vec<_> = self
                    .runs_of(workload, observer)
                    .iter()
                    .filter_map(|s| s.written)
                    .collect();
                let size = Summary::of(written.iter().map(|w| w.bytes as f64));
                let latency = Summary::of(written.iter().map(|w| w.latency.as_secs_f64()));
                writeln!(
                    out,
                    "| {} | {} | {} | {} | {} |",
                    workload.name(),
                    observer.name(),
                    written.len(),
                    size.map_or("n/a".into(), |s| format!(
                        "{} ({}–{})",
                        fmt_bytes(s.median),
                        fmt_bytes(s.min),
                        fmt_bytes(s.max)
                    )),
                    latency.map_or("n/a".into(), |s| format!("{:.3} / {:.3}", s.median, s.max))
                )?;
            }
        }
        writeln!(out)
    }
}

/// Per round with a rate of both, `a`'s rate over `b`'s: (round, rate) pairs in, ratios out.
fn paired_ratios(a: &[(usize, f64)], b: &[(usize, f64)]) -> Vec<f64> {
    a.iter()
        .filter_map(|&(round, rate)| {
            let (_, other) = b.iter().find(|&&(r, _)| r == round)?;
            (*other > 0.0).then(|| rate / other)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_pair_runs_of_the_same_round() {
        let record = [(0, 90.0), (1, 120.0), (2, 50.0)];
        // Round 1 has no perf run (left out, say), round 2 a zero rate.
        let perf = [(2, 0.0), (0, 100.0), (3, 10.0)];
        assert_eq!(paired_ratios(&record, &perf), [0.9]);
        assert_eq!(paired_ratios(&[], &perf), Vec::<f64>::new());
    }
}
