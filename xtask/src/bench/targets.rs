//! The targets table: each goal probe must meet, and whether this run met it.

use std::fmt::{self, Write as _};

use super::{
    format::{fmt_summary, mib},
    plan::{Observer, Workload, WORKLOADS},
    render::Results,
    sample::ProbeRun,
    stats::{median_ns_per_run, median_of, worst, Summary},
};

/// One row of the targets table.
struct Target {
    what: &'static str,
    goal: &'static str,
    measured: String,
    met: bool,
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
        writeln!(out)
    }

    fn targets(&self) -> Vec<Target> {
        vec![
            self.storm_ratio_target(),
            self.syscall_cost_target(),
            self.sample_cost_target(),
            self.cpu_target(),
            self.rss_target(),
            self.attach_target(),
        ]
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

    fn syscall_cost_target(&self) -> Target {
        let runs = self.workload_runs(Workload::GetppidStorm);
        let ns = median_ns_per_run(&runs, "sys_enter");
        Target {
            what: "sys_enter program, cost per run (getppid storm, median)",
            goal: "≤ 60 ns",
            measured: ns.map_or("n/a".into(), |ns| format!("{ns:.0} ns")),
            met: ns.is_some_and(|ns| ns <= 60.0),
        }
    }

    fn sample_cost_target(&self) -> Target {
        let worst = worst(WORKLOADS.iter().map(|&w| {
            let runs = self.workload_runs(w);
            (w.name(), median_ns_per_run(&runs, "sample_stack"))
        }));
        Target {
            what: "stack sample program, cost per run (median; worst workload)",
            goal: "≤ 10 µs",
            measured: worst.map_or("n/a".into(), |(name, ns)| {
                format!("{:.1} µs ({name})", ns / 1e3)
            }),
            met: worst.is_some_and(|(_, ns)| ns <= 10_000.0),
        }
    }

    /// Judged on the lifetime figure (start to exit); the steady figure while observing is
    /// shown next to it because fixed start and report costs dominate a short run.
    fn cpu_target(&self) -> Target {
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
        Target {
            what: "probe's own CPU at 99 Hz (median; worst of the workloads and idle)",
            goal: "≤ 2% of one core",
            measured: match (lifetime, steady) {
                (Some((l_name, l)), Some((s_name, s))) => {
                    format!("{l:.2}% start to exit ({l_name}); {s:.2}% while observing ({s_name})")
                }
                _ => "n/a".into(),
            },
            met: lifetime.is_some_and(|(_, pct)| pct <= 2.0),
        }
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
        let attach = Summary::of(self.all_probe_runs().iter().map(|run| run.attach_secs));
        Target {
            what: "attached and sampling after start (max over all runs)",
            goal: "≤ 0.1 s",
            measured: attach.map_or("n/a".into(), |s| {
                format!("{:.3} s (median {:.3} s)", s.max, s.median)
            }),
            met: attach.is_some_and(|s| s.max <= 0.1),
        }
    }
}
