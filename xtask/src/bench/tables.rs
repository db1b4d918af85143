//! The tables of figures: throughput under each observer, and what probe's kernel programs
//! and its own process cost.

use std::fmt::{self, Write as _};

use super::{
    format::{fmt_pct, fmt_summary, mib, si},
    parse::Rate,
    plan::{Observer, Workload, NATIVE_OBSERVERS, PYTHON_OBSERVERS, WORKLOADS},
    render::Results,
    sample::ProbeRun,
    stats::{median_ns_per_run, median_of, Summary},
    SETTLE,
};

/// probe's kernel programs, in the order its `--self-stats` line lists them.
const PROGRAMS: [&str; 4] = [
    "sched_switch",
    "sched_process_exit",
    "sys_enter",
    "sample_stack",
];

impl Results<'_> {
    pub(super) fn write_throughput(&self, out: &mut String) -> fmt::Result {
        let rounds = self.bench.options.rounds;
        writeln!(out, "## Throughput under each observer\n")?;
        writeln!(
            out,
            "Ratio = the workload's rate under the observer ÷ its rate alone in the same round; \
             median (min–max) over {rounds} rounds. \"Per second\" is the figure that counts; \
             \"per on-CPU second\" leaves out CPU time that other load on the machine took from \
             the workload (the observer's kernel programs run on the workload's time, so they \
             still count; the time py-spy record holds the Python loop stopped to read it does \
             not), and \"on a CPU\" is the share of the run the workload was on one.\n"
        )?;
        for observers in [&NATIVE_OBSERVERS, &PYTHON_OBSERVERS] {
            let workloads = WORKLOADS.into_iter().filter(|w| w.observers() == observers);
            self.write_throughput_table(out, observers, workloads)?;
        }
        Ok(())
    }

    /// One table: the workloads that share a set of observers, one column per observer.
    fn write_throughput_table(
        &self,
        out: &mut String,
        observers: &[Observer],
        workloads: impl Iterator<Item = Workload>,
    ) -> fmt::Result {
        write!(out, "| workload | figure |")?;
        for observer in observers {
            write!(out, " {} |", observer.name())?;
        }
        writeln!(out, "\n|---|---|{}", "---|".repeat(observers.len()))?;
        for workload in workloads {
            self.write_rate_row(out, workload, "per second", |r| r.wall)?;
            self.write_rate_row(out, workload, "per on-CPU second", |r| r.cpu)?;
            write!(out, "| {} | on a CPU (median) |", workload.name())?;
            for &observer in observers {
                let on_cpu = Summary::of(self.rates(workload, observer).iter().map(|r| r.on_cpu));
                write!(
                    out,
                    " {} |",
                    on_cpu.map_or("n/a".into(), |s| format!("{:.0}%", 100.0 * s.median))
                )?;
            }
            writeln!(out)?;
        }
        writeln!(out)
    }

    /// One rate: absolute alone, then as ratios under each of the workload's observers.
    fn write_rate_row(
        &self,
        out: &mut String,
        workload: Workload,
        figure: &str,
        rate: fn(&Rate) -> f64,
    ) -> fmt::Result {
        let alone = Summary::of(self.rates(workload, Observer::Alone).iter().map(rate));
        let alone = alone.map_or("n/a".into(), |s| {
            format!(
                "{} ({}–{}) {}",
                si(s.median),
                si(s.min),
                si(s.max),
                workload.unit()
            )
        });
        write!(out, "| {} | {figure} | {alone} |", workload.name())?;
        for observer in &workload.observers()[1..] {
            let ratios = self.ratios(workload, *observer, rate);
            // Say how many rounds a ratio rests on when disturbed runs were left out.
            let count = if ratios.len() < self.bench.options.rounds {
                format!(", {} rounds", ratios.len())
            } else {
                String::new()
            };
            write!(out, " {}{count} |", fmt_summary(Summary::of(ratios), 2))?;
        }
        writeln!(out)
    }

    pub(super) fn write_programs(&self, out: &mut String) -> fmt::Result {
        writeln!(out, "## probe's kernel programs\n")?;
        writeln!(
            out,
            "From the kernel's BPF statistics (`kernel.bpf_stats_enabled=1` during the bench) over \
             probe's whole window, systemwide; median over the runs. CPU = run time ÷ window, in % \
             of one core.\n"
        )?;
        writeln!(
            out,
            "| while running | program | ns per run | runs/s | CPU, % of one core |\n\
             |---|---|---:|---:|---:|"
        )?;
        for (name, runs) in self.probe_runs() {
            for program in PROGRAMS {
                let ns =
                    median_ns_per_run(&runs, program).map_or("n/a".into(), |ns| format!("{ns:.0}"));
                let per_sec = median_of(&runs, |run| {
                    Some(run.program(program)?.run_count as f64 / run.window_secs)
                });
                let pct = median_of(&runs, |run| Some(run.kernel_pct(run.program(program))));
                writeln!(
                    out,
                    "| {name} | {program} | {ns} | {} | {} |",
                    per_sec.map_or("n/a".into(), si),
                    fmt_pct(pct)
                )?;
            }
            let total = median_of(&runs, |run| Some(run.kernel_pct(&run.programs)));
            writeln!(out, "| {name} | **all** | | | **{}** |", fmt_pct(total))?;
        }
        writeln!(out)
    }

    pub(super) fn write_process(&self, out: &mut String) -> fmt::Result {
        writeln!(out, "## probe's own process\n")?;
        writeln!(
            out,
            "Start to exit: wait4's rusage (user + system CPU over probe's wall time, so \
             loading, attaching and the final report are included; peak RSS). While observing: \
             while the workload ran, from /proc (CPU of all threads from schedstat; VmHWM, i.e. \
             peak RSS before the report). \"Before the workload\" is loading, attaching and the \
             {:.1} s settle; \"after\" is the report. The parts are medians, so they need not add \
             up exactly. Attach = start to attached and sampling, from `--self-stats`. Medians \
             (min–max) over the runs.\n",
            SETTLE.as_secs_f64()
        )?;
        writeln!(
            out,
            "| while running | runs | CPU % of one core, start to exit | CPU % while observing | \
             CPU s (medians): start to exit = before the workload + during + after (report) | \
             peak RSS MiB (max): start to exit / before the report | attach s: median / max |\n\
             |---|---:|---|---|---|---|---|"
        )?;
        for (name, runs) in self.probe_runs() {
            writeln!(out, "| {name} | {} | {} |", runs.len(), process_row(&runs))?;
        }
        writeln!(out)
    }
}

/// The figure columns of one row of the process table.
fn process_row(runs: &[&ProbeRun]) -> String {
    let summary = |figure: fn(&ProbeRun) -> f64| Summary::of(runs.iter().map(|run| figure(run)));
    let lifetime = summary(ProbeRun::cpu_pct);
    let observing = summary(|run| run.observing.cpu_pct());
    let cpu_secs = summary(|run| run.exit.cpu.as_secs_f64());
    let before = summary(|run| run.observing.cpu_before.as_secs_f64());
    let during = summary(|run| run.observing.cpu.as_secs_f64());
    // rusage and schedstat both come from the scheduler's runtime, so they subtract.
    let after = summary(|run| {
        let observed = run.observing.cpu_before + run.observing.cpu;
        run.exit.cpu.saturating_sub(observed).as_secs_f64()
    });
    let rss = summary(ProbeRun::peak_rss_mib);
    let rss_observing = summary(|run| mib(run.observing.peak_rss_kib));
    let attach = summary(|run| run.attach_secs);
    let (Some(cpu_secs), Some(before), Some(during), Some(after)) =
        (cpu_secs, before, during, after)
    else {
        return "n/a | n/a | n/a | n/a | n/a".into();
    };
    let (Some(rss), Some(rss_observing), Some(attach)) = (rss, rss_observing, attach) else {
        return "n/a | n/a | n/a | n/a | n/a".into();
    };
    format!(
        "{} | {} | {:.3} = {:.3} + {:.3} + {:.3} | {:.1} / {:.1} | {:.3} / {:.3}",
        fmt_summary(lifetime, 2),
        fmt_summary(observing, 2),
        cpu_secs.median,
        before.median,
        during.median,
        after.median,
        rss.max,
        rss_observing.max,
        attach.median,
        attach.max
    )
}
