//! The tables of figures: throughput under each observer, what probe's kernel programs cost,
//! alone and next to bpftrace's, and what its own process costs.

use std::fmt::{self, Write as _};

use super::{
    format::{fmt_pct, fmt_summary, mib, si},
    parse::Rate,
    peers::{STACK_SAMPLE, SYS_ENTER},
    plan::{Observer, Workload, OBSERVER_SETS, WORKLOADS},
    render::Results,
    sample::{KernelPrograms, ProbeRun},
    stats::{median_ns_per_run, median_of, Summary},
    SETTLE,
};

/// The rows of the side-by-side table: the program, probe's name for it and bpftrace's label
/// (`None`: that side has no such program). Counterparts first, then probe's others, then any
/// other program bpftrace ran.
fn rows(bpftrace: &[&KernelPrograms]) -> Vec<(String, Option<&'static str>, Option<String>)> {
    let mut rows = vec![
        (
            STACK_SAMPLE.to_owned(),
            Some("sample_stack"),
            Some(STACK_SAMPLE.to_owned()),
        ),
        (
            SYS_ENTER.to_owned(),
            Some("sys_enter"),
            Some(SYS_ENTER.to_owned()),
        ),
    ];
    for program in ["sched_switch", "sched_process_exit"] {
        rows.push((format!("{program} (probe only)"), Some(program), None));
    }
    let mut others: Vec<&str> = bpftrace
        .iter()
        .flat_map(|k| &k.programs)
        .map(|cost| cost.program.as_str())
        .filter(|&label| label != STACK_SAMPLE && label != SYS_ENTER)
        .collect();
    others.sort_unstable();
    others.dedup();
    for label in others {
        rows.push((
            format!("{label} (bpftrace only)"),
            None,
            Some(label.to_owned()),
        ));
    }
    rows
}

/// ns per run, runs/s and CPU % of one program over runs (medians); — when `program` is
/// `None`.
pub(super) fn program_cells(kernels: &[&KernelPrograms], program: Option<&str>) -> [String; 3] {
    let Some(program) = program else {
        return ["—", "—", "—"].map(String::from);
    };
    let ns = median_ns_per_run(kernels, program).map_or("n/a".into(), |ns| format!("{ns:.0}"));
    let per_sec = median_of(kernels, |k| k.runs_per_sec(program));
    let pct = median_of(kernels, |k| Some(k.pct(program)));
    [ns, per_sec.map_or("n/a".into(), si), fmt_pct(pct)]
}

/// The header of a table of [`write_program_rows`].
pub(super) fn write_program_header(out: &mut String) -> fmt::Result {
    writeln!(
        out,
        "| while running | program | ns per run | runs/s | CPU, % of one core |\n\
         |---|---|---:|---:|---:|"
    )
}

/// One row per program that ran in any of `kernels` (in the order the runs list them), and
/// their total, for the workload `name`.
pub(super) fn write_program_rows(
    out: &mut String,
    name: &str,
    kernels: &[&KernelPrograms],
) -> fmt::Result {
    for program in program_names(kernels) {
        let [ns, per_sec, pct] = program_cells(kernels, Some(program));
        writeln!(out, "| {name} | {program} | {ns} | {per_sec} | {pct} |")?;
    }
    let total = median_of(kernels, |k| Some(k.total_pct()));
    writeln!(out, "| {name} | **all** | | | **{}** |", fmt_pct(total))
}

/// Every program that ran in any of the runs, each once, in the order the runs list them.
pub(super) fn program_names<'a>(kernels: &[&'a KernelPrograms]) -> Vec<&'a str> {
    let mut names: Vec<&str> = Vec::new();
    for cost in kernels.iter().flat_map(|k| &k.programs) {
        if !names.contains(&cost.program.as_str()) {
            names.push(&cost.program);
        }
    }
    names
}

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
             not), and \"on a CPU\" is the share of the run the workload was on one. strace \
             stops the workload at every syscall, so under it a low share is strace's doing \
             and its runs are kept whatever the share.\n"
        )?;
        for observers in OBSERVER_SETS {
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
            let summary = Summary::of(ratios);
            // strace's storm ratio is thousandths: two decimals would print 0.00.
            let decimals = if summary.is_some_and(|s| s.median < 0.095) {
                4
            } else {
                2
            };
            write!(out, " {}{count} |", fmt_summary(summary, decimals))?;
        }
        writeln!(out)
    }

    /// Every observer's own CPU and memory, peers included: what each costs apart from the
    /// slowdown of the workload.
    pub(super) fn write_observer_processes(&self, out: &mut String) -> fmt::Result {
        writeln!(
            out,
            "## Each observer's own process
"
        )?;
        writeln!(
            out,
            "What the observer's process itself used: CPU while the workload ran (its CPU-time \
             clock, all threads) in % of one core, CPU seconds from start to exit (wait4's \
             rusage: loading and writing the output included) and peak RSS. Its kernel \
             programs, perf's sampling in the kernel and ptrace stops run on the workload's time \
             and show in the ratios above, not here. Medians (min–max) over the runs; RSS the \
             max.\n"
        )?;
        writeln!(
            out,
            "| workload | observer | runs | CPU % of one core while the workload ran | CPU s, \
             start to exit | peak RSS MiB |\n|---|---|---:|---|---:|---:|"
        )?;
        for workload in WORKLOADS {
            for &observer in &workload.observers()[1..] {
                let costs: Vec<_> = self
                    .runs_of(workload, observer)
                    .iter()
                    .filter_map(|s| s.own)
                    .collect();
                let observing = Summary::of(costs.iter().map(|c| c.observing_pct));
                let lifetime = Summary::of(costs.iter().map(|c| c.lifetime_secs));
                let rss = Summary::of(costs.iter().map(|c| mib(c.peak_rss_kib)));
                writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} |",
                    workload.name(),
                    observer.name(),
                    costs.len(),
                    fmt_summary(observing, 3),
                    lifetime.map_or("n/a".into(), |s| format!("{:.2}", s.median)),
                    rss.map_or("n/a".into(), |s| format!("{:.1}", s.max))
                )?;
            }
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
        write_program_header(out)?;
        for (name, runs) in self.probe_runs() {
            let kernels: Vec<&KernelPrograms> = runs.iter().map(|run| &run.kernel).collect();
            write_program_rows(out, name, &kernels)?;
        }
        writeln!(out)
    }

    /// probe's kernel programs next to bpftrace's, from the same rounds of each workload
    /// bpftrace watched.
    pub(super) fn write_peer_programs(&self, out: &mut String) -> fmt::Result {
        writeln!(
            out,
            "## Kernel programs: probe next to bpftrace
"
        )?;
        writeln!(
            out,
            "The same statistics for bpftrace's programs in the same rounds, read from \
             /proc/PID/fdinfo of every BPF program bpftrace held, just before the bench stopped \
             it: totals since it loaded them, over its window from its start to that read (its \
             start-up included, so its runs/s and CPU are slightly low). Its `profile:hz:99` \
             program (prog_type 7, perf_event: one program on every CPU's event) is the stack \
             sample, its `tracepoint:raw_syscalls:sys_enter` program (prog_type 5) sys_enter; \
             programs that never ran are left out, and any other is named by its type. probe's \
             figures are those of the table above (stack sample = its `sample_stack`). Median \
             over the runs; CPU = run time ÷ window, in % of one core; — = no such program. \
             perf record and py-spy load no BPF programs: their cost shows in the throughput \
             ratios only.\n"
        )?;
        writeln!(
            out,
            "| while running | program | ns per run: probe | ns per run: bpftrace | runs/s: probe \
             | runs/s: bpftrace | CPU %: probe | CPU %: bpftrace |\n\
             |---|---|---:|---:|---:|---:|---:|---:|"
        )?;
        let watched = WORKLOADS
            .into_iter()
            .filter(|w| w.observers().contains(&Observer::Bpftrace));
        for workload in watched {
            let probe = self.probe_programs(workload);
            let bpftrace = self.bpftrace_programs(workload);
            for (program, probe_name, bpftrace_name) in rows(&bpftrace) {
                let probe = program_cells(&probe, probe_name);
                let bpftrace = program_cells(&bpftrace, bpftrace_name.as_deref());
                writeln!(
                    out,
                    "| {} | {program} | {} | {} | {} | {} | {} | {} |",
                    workload.name(),
                    probe[0],
                    bpftrace[0],
                    probe[1],
                    bpftrace[1],
                    probe[2],
                    bpftrace[2]
                )?;
            }
            let total =
                |kernels: &[&KernelPrograms]| fmt_pct(median_of(kernels, |k| Some(k.total_pct())));
            writeln!(
                out,
                "| {} | **all** | | | | | **{}** | **{}** |",
                workload.name(),
                total(&probe),
                total(&bpftrace)
            )?;
        }
        writeln!(out)?;
        self.write_peer_failures(out)
    }

    /// The bpftrace runs whose programs could not be read, and why.
    fn write_peer_failures(&self, out: &mut String) -> fmt::Result {
        let failures: Vec<_> = self
            .clean()
            .filter_map(|s| Some((s, s.bpftrace.as_ref()?.as_ref().err()?)))
            .collect();
        if failures.is_empty() {
            return Ok(());
        }
        writeln!(
            out,
            "bpftrace's programs could not be read in {} of its runs, left out of its medians:\n",
            failures.len()
        )?;
        for (sample, why) in failures {
            writeln!(
                out,
                "- round {}, {}: {why}",
                sample.round + 1,
                sample.workload.name()
            )?;
        }
        writeln!(out)
    }

    pub(super) fn write_process(&self, out: &mut String) -> fmt::Result {
        writeln!(out, "## probe's own process\n")?;
        writeln!(
            out,
            "Start to exit: wait4's rusage (user + system CPU over probe's wall time, so \
             loading, attaching and the final report are included; peak RSS). While observing: \
             while the workload ran: the process's CPU-time clock (all threads, exited ones \
             included) and VmHWM from /proc, i.e. peak RSS before the report. \"Before the workload\" is loading, attaching and the \
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
pub(super) fn process_row(runs: &[&ProbeRun]) -> String {
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
    let attach = Summary::of(runs.iter().filter_map(|run| run.attach_secs));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::parse::ProgramCost;

    #[test]
    fn program_names_are_the_union_in_order() {
        let kernel = |names: &[&str]| KernelPrograms {
            window_secs: 1.0,
            programs: names
                .iter()
                .map(|&program| ProgramCost {
                    program: program.into(),
                    run_time_ns: 1,
                    run_count: 1,
                })
                .collect(),
        };
        let a = kernel(&["sample_stack", "sched_switch"]);
        let b = kernel(&["sample_stack", "sched_process_exec", "sched_switch"]);
        assert_eq!(
            program_names(&[&a, &b]),
            ["sample_stack", "sched_switch", "sched_process_exec"]
        );
        assert_eq!(program_names(&[]), Vec::<&str>::new());
    }

    fn kernel(window_secs: f64, programs: &[(&str, u64, u64)]) -> KernelPrograms {
        KernelPrograms {
            window_secs,
            programs: programs
                .iter()
                .map(|&(program, run_time_ns, run_count)| ProgramCost {
                    program: program.into(),
                    run_time_ns,
                    run_count,
                })
                .collect(),
        }
    }

    #[test]
    fn bpftrace_only_programs_get_their_own_rows() {
        let a = kernel(2.0, &[(SYS_ENTER, 400, 4), ("prog_type 2", 9, 1)]);
        let b = kernel(2.0, &[(SYS_ENTER, 400, 4)]);
        let rows = rows(&[&a, &b]);
        let names: Vec<&str> = rows.iter().map(|(name, _, _)| name.as_str()).collect();
        assert_eq!(
            names,
            [
                STACK_SAMPLE,
                SYS_ENTER,
                "sched_switch (probe only)",
                "sched_process_exit (probe only)",
                "prog_type 2 (bpftrace only)"
            ]
        );
        assert_eq!(rows[2].2, None);
        assert_eq!(rows[4].1, None);
    }

    #[test]
    fn cells_are_medians_and_dashes_mean_no_such_program() {
        let a = kernel(2.0, &[(SYS_ENTER, 2_000_000, 10_000)]);
        let b = kernel(2.0, &[(SYS_ENTER, 6_000_000, 10_000)]);
        let c = kernel(2.0, &[(SYS_ENTER, 4_000_000, 10_000)]);
        assert_eq!(
            program_cells(&[&a, &b, &c], Some(SYS_ENTER)),
            ["400", "5.00 k", "0.200"]
        );
        assert_eq!(program_cells(&[&a], None), ["—", "—", "—"]);
        assert_eq!(
            program_cells(&[], Some(STACK_SAMPLE)),
            ["n/a", "n/a", "n/a"]
        );
    }
}
