//! The targets table: each goal probe must meet, and whether this run met it.

use std::fmt::{self, Write as _};

use super::{
    format::{fmt_summary, mib},
    peers::{STACK_SAMPLE, SYS_ENTER},
    plan::{Observer, Workload, SAMPLE_HZ, WORKLOADS},
    render::Results,
    sample::{KernelPrograms, ProbeRun},
    stats::{median_ns_per_run, median_of, worst, Summary},
};

/// probe's stack sampler, which also walks Python frames.
const SAMPLER: &str = "sample_stack";
/// The Python loop's slowdown target: at most 1%.
const PYTHON_MIN_RATIO: f64 = 0.99;
/// The Python walk's cost per sample, in ns.
const PYTHON_WALK_MAX_NS: f64 = 2_000.0;

/// One row of the targets table.
pub(super) struct Target {
    pub(super) what: &'static str,
    pub(super) goal: &'static str,
    pub(super) measured: String,
    pub(super) met: bool,
}

impl Results<'_> {
    pub(super) fn write_targets(&self, out: &mut String) -> fmt::Result {
        writeln!(
            out,
            "## Targets\n\n| target | goal | measured | met |\n|---|---|---|---|"
        )?;
        for Target {
            what,
            goal,
            measured,
            met,
        } in self.targets()
        {
            writeln!(
                out,
                "| {what} | {goal} | {measured} | {} |",
                if met { "yes" } else { "**no**" }
            )?;
        }
        writeln!(out)?;
        self.write_python_reading(out)
    }

    /// What the Python rows can and cannot show.
    fn write_python_reading(&self, out: &mut String) -> fmt::Result {
        let ratios = self.ratios(Workload::PyLoop, Observer::Probe, |r| r.wall);
        let rounds = ratios.len();
        let ratio = Summary::of(ratios).map_or(
            "the ratio would say little even from clean rounds, and this run has none".into(),
            |s| {
                format!(
                    "the median of {:.3} over {rounds} rounds mixes probe's cost with that noise \
                     and cannot show 1% either way; the row is judged on it as measured all the \
                     same",
                    s.median
                )
            },
        );
        let walk = self
            .python_walk_cost()
            .map_or("no clean run measured it".into(), |walk| walk.describe());
        writeln!(
            out,
            "Reading the Python rows: a throughput ratio cannot resolve a 1% slowdown on this \
             machine. Back-to-back runs with no observer vary by ±10% and more \
             (../shared/benchmarking.md), so {ratio}. The direct cost resolves it: {walk}, plus \
             what probe's own process takes (tables below).\n"
        )
    }

    fn targets(&self) -> Vec<Target> {
        let [cpu_sampling, cpu_lifetime] = self.cpu_targets();
        let mut targets = vec![
            self.storm_ratio_target(),
            self.syscall_cost_target(),
            self.sample_cost_target(),
            cpu_sampling,
            cpu_lifetime,
            self.rss_target(),
            self.attach_target(),
            self.python_ratio_target(),
            self.python_sample_cost_target(),
        ];
        targets.extend(self.unwinding_targets());
        targets.extend(self.record_targets());
        targets.extend(self.watch_targets());
        targets.extend(self.dump_targets());
        targets
    }

    fn storm_ratio_target(&self) -> Target {
        let ratio = Summary::of(self.ratios(Workload::GetppidStorm, Observer::Probe, |r| r.wall));
        Target {
            what: "getppid storm throughput under probe (ratio to alone, median)",
            goal: "≥ 0.45",
            measured: fmt_summary(ratio, 2),
            met: ratio.is_some_and(|s| s.median >= 0.45),
        }
    }

    /// Judged on probe's figure; bpftrace's from the same rounds is shown for context.
    fn syscall_cost_target(&self) -> Target {
        let ns = median_ns_per_run(&self.probe_programs(Workload::GetppidStorm), "sys_enter");
        let peer = median_ns_per_run(&self.bpftrace_programs(Workload::GetppidStorm), SYS_ENTER);
        let ns_text = |ns: Option<f64>| ns.map_or("n/a".into(), |ns| format!("{ns:.0} ns"));
        Target {
            what: "sys_enter program, cost per run (getppid storm, median)",
            goal: "≤ 60 ns",
            measured: format!(
                "{}; bpftrace's `@[tid] = count()` in the same rounds: {}",
                ns_text(ns),
                ns_text(peer)
            ),
            met: ns.is_some_and(|ns| ns <= 60.0),
        }
    }

    /// Judged on probe's figure; bpftrace's from the same rounds is shown for context.
    fn sample_cost_target(&self) -> Target {
        let worst_of = |programs: fn(&Self, Workload) -> Vec<&KernelPrograms>, name: &str| {
            worst(
                WORKLOADS
                    .iter()
                    .map(|&w| (w.name(), median_ns_per_run(&programs(self, w), name))),
            )
        };
        let probe = worst_of(Self::probe_programs, SAMPLER);
        let peer = worst_of(Self::bpftrace_programs, STACK_SAMPLE);
        let us_text = |worst: Option<(&str, f64)>| {
            worst.map_or("n/a".into(), |(name, ns)| {
                format!("{:.1} µs ({name})", ns / 1e3)
            })
        };
        Target {
            what: "stack sample program, cost per run (median; worst workload)",
            goal: "≤ 10 µs",
            measured: format!(
                "{}; bpftrace's `profile:hz:99` with kstack and ustack in the same rounds: {}",
                us_text(probe),
                us_text(peer)
            ),
            met: probe.is_some_and(|(_, ns)| ns <= 10_000.0),
        }
    }

    /// Two rows for one goal: the recurring cost while sampling, which is what the rate
    /// (99 Hz) sets and what continuous use pays, and the whole life of one short run,
    /// where fixed costs (loading, the report) dominate.
    fn cpu_targets(&self) -> [Target; 2] {
        let groups = self.probe_runs();
        let median =
            |runs: &[&ProbeRun], pct: fn(&ProbeRun) -> f64| median_of(runs, |run| Some(pct(run)));
        let lifetime = worst(
            groups
                .iter()
                .map(|(name, runs)| (*name, median(runs, ProbeRun::cpu_pct))),
        );
        let steady = worst(
            groups
                .iter()
                .map(|(name, runs)| (*name, median(runs, |run| run.observing.cpu_pct()))),
        );
        let text = |worst: Option<(&str, f64)>| {
            worst.map_or("n/a".into(), |(name, pct)| format!("{pct:.2}% ({name})"))
        };
        [
            Target {
                what: "probe's own CPU while sampling at 99 Hz (median; worst of the workloads and idle)",
                goal: "≤ 2% of one core",
                measured: text(steady),
                met: steady.is_some_and(|(_, pct)| pct <= 2.0),
            },
            Target {
                what: "probe's own CPU from start to exit of one run (median; worst), loading and the report included",
                goal: "≤ 2% of one core",
                measured: text(lifetime),
                met: lifetime.is_some_and(|(_, pct)| pct <= 2.0),
            },
        ]
    }

    fn rss_target(&self) -> Target {
        let runs = self.all_probe_runs();
        let lifetime = Summary::of(runs.iter().map(|run| run.peak_rss_mib()));
        let observing = Summary::of(runs.iter().map(|run| mib(run.observing.peak_rss_kib)));
        Target {
            what: "probe's peak RSS (max over all runs)",
            goal: "≤ 64 MiB",
            measured: match (lifetime, observing) {
                (Some(l), Some(o)) => {
                    format!("{:.1} MiB; {:.1} MiB before the report", l.max, o.max)
                }
                _ => "n/a".into(),
            },
            met: lifetime.is_some_and(|s| s.max <= 64.0),
        }
    }

    fn attach_target(&self) -> Target {
        let attach = Summary::of(
            self.all_probe_runs()
                .iter()
                .filter_map(|run| run.attach_secs),
        );
        Target {
            what: "attached and sampling after start (max over all runs)",
            goal: "≤ 0.1 s",
            measured: attach.map_or("n/a".into(), |s| {
                format!("{:.3} s (median {:.3} s)", s.max, s.median)
            }),
            met: attach.is_some_and(|s| s.max <= 0.1),
        }
    }

    /// Judged on the median ratio per wall-clock second against both py-spy modes' medians;
    /// the per-on-CPU-second figure is shown next to it.
    fn python_ratio_target(&self) -> Target {
        let ratio = |observer, rate: fn(&_) -> f64| {
            Summary::of(self.ratios(Workload::PyLoop, observer, rate))
        };
        let probe = ratio(Observer::Probe, |r| r.wall);
        let probe_cpu = ratio(Observer::Probe, |r| r.cpu);
        let py_spy = [Observer::PySpy, Observer::PySpyNonblocking].map(|o| ratio(o, |r| r.wall));
        let median = |s: Option<Summary>| s.map_or("n/a".into(), |s| format!("{:.3}", s.median));
        Target {
            what: "pure-Python loop throughput under probe (ratio to alone, median)",
            goal: "≥ 0.99 (≤ 1% slower), and above py-spy's (both modes) in the same run",
            measured: format!(
                "{}; per on-CPU second {}; py-spy record {}, --nonblocking {}",
                fmt_summary(probe, 3),
                fmt_summary(probe_cpu, 3),
                median(py_spy[0]),
                median(py_spy[1])
            ),
            met: probe.is_some_and(|p| {
                p.median >= PYTHON_MIN_RATIO
                    && py_spy
                        .iter()
                        .all(|s| s.is_some_and(|s| p.median > s.median))
            }),
        }
    }

    fn python_sample_cost_target(&self) -> Target {
        let walk = self.python_walk_cost();
        let measured = walk.as_ref().map_or("n/a".into(), |w| {
            let increment = w.native_ns.map_or("n/a".into(), |native| {
                format!(
                    "{:+.1} µs per run over cpu_loop's {:.1} µs",
                    (w.python_ns - native) / 1e3,
                    native / 1e3
                )
            });
            let per_sample = w.per_loop_sample_ns.map_or(String::new(), |ns| {
                format!(
                    " (≈ {:+.1} µs per sample of the Python loop, extrapolated)",
                    ns / 1e3
                )
            });
            format!("{:.1} µs; {increment}{per_sample}", w.python_ns / 1e3)
        });
        Target {
            what: "the Python walk's kernel cost per sample (sampler on py_loop over cpu_loop)",
            goal: "≤ 2 µs",
            measured,
            // The walk's own cost: the sampler's increment over the C loop, per sample of the
            // Python loop (the whole sample, native stacks included, has the 10 µs target).
            met: walk
                .and_then(|w| w.per_loop_sample_ns)
                .is_some_and(|ns| ns <= PYTHON_WALK_MAX_NS),
        }
    }

    /// The sampler's cost per run while the Python loop ran, next to the C loop's.
    fn python_walk_cost(&self) -> Option<WalkCost> {
        let python_ns = median_ns_per_run(&self.probe_programs(Workload::PyLoop), SAMPLER)?;
        let native_ns = median_ns_per_run(&self.probe_programs(Workload::CpuLoop), SAMPLER);
        // The sampler runs systemwide over probe's whole window (the settle included), so the
        // increment per run is spread over more runs than the loop's own samples.
        let spread = Summary::of(self.clean().filter_map(|s| {
            if s.workload != Workload::PyLoop {
                return None;
            }
            let runs = s.probe.as_ref()?.kernel.program(SAMPLER)?.run_count as f64;
            let loop_samples =
                f64::from(SAMPLE_HZ) * self.bench.options.secs * s.rate.on_cpu.max(1e-9);
            Some(runs / loop_samples)
        }));
        let per_loop_sample_ns = native_ns
            .zip(spread)
            .map(|(native, spread)| (python_ns - native) * spread.median);
        Some(WalkCost {
            python_ns,
            native_ns,
            per_loop_sample_ns,
        })
    }
}

/// The sampler's cost with the Python walk (see `python_walk_cost`).
struct WalkCost {
    /// ns per run while the Python loop ran (median).
    python_ns: f64,
    /// ns per run while the C loop ran (median), if it has figures.
    native_ns: Option<f64>,
    /// The increment over the C loop per sample of the Python loop itself: the per-run
    /// increment times runs per sample of the loop. Rough: it assumes the other samples
    /// cost the same in both.
    per_loop_sample_ns: Option<f64>,
}

impl WalkCost {
    /// The cost per sample of the loop itself (the C loop's per run plus the increment), and
    /// its share of the loop's CPU at the sampling rate.
    fn describe(&self) -> String {
        let (per_sample, how) = match (self.native_ns, self.per_loop_sample_ns) {
            (Some(native), Some(increment)) => (
                native + increment,
                format!(
                    "cpu_loop's {:.1} µs per run plus the walk's ≈ {:+.1} µs, a rough \
                     extrapolation: the per-run increment times the sampler's runs per sample of \
                     the loop, as the runs are systemwide over probe's whole window and include \
                     other processes' samples, which it assumes cost the same with either loop",
                    native / 1e3,
                    increment / 1e3
                ),
            ),
            _ => (self.python_ns, "the median per run".into()),
        };
        format!(
            "the sampler takes ≈ {:.1} µs per sample of the Python loop ({how}), at {SAMPLE_HZ} \
             samples a second about {:.2}% of the loop's CPU",
            per_sample / 1e3,
            100.0 * per_sample * f64::from(SAMPLE_HZ) / 1e9
        )
    }
}
