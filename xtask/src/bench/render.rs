//! The results: everything measured, and the markdown that shows it. The targets table is in
//! `targets`, the tables of figures in `tables`.

use std::{
    fmt::{self, Write as _},
    time::Duration,
};

use super::{
    format::{shell_join, si},
    machine::Machine,
    parse::Rate,
    plan::{Observer, Workload, OBSERVERS, WORKLOADS},
    python::PY_SPY_VERSION,
    rounds::Bench,
    sample::{KernelPrograms, ProbeRun, Sample},
    unwinding::TableBuild,
    watch::WatchChecks,
    Options, CFLAGS, MIN_ON_CPU, SETTLE,
};

/// Everything measured, and the markdown that shows it.
pub(super) struct Results<'a> {
    pub(super) machine: Machine,
    /// The load average when the bench started: other work on the machine skews the ratios.
    pub(super) load_before: String,
    /// Which probe was measured (see `probe_build`).
    pub(super) build: String,
    pub(super) bench: &'a Bench<'a>,
    pub(super) samples: Vec<Sample>,
    pub(super) idle: ProbeRun,
    pub(super) idle_others: Vec<String>,
    /// Single files' table builds (see `unwinding::measure_table_builds`).
    pub(super) table_builds: Vec<TableBuild>,
    /// `probe watch`'s episode latency and churn (see `watch::measure_checks`).
    pub(super) watch_checks: WatchChecks,
    /// `probe dump` against its peers (see `dump::measure`).
    pub(super) dump_checks: super::dump::DumpChecks,
    pub(super) elapsed: Duration,
}

impl Results<'_> {
    pub(super) fn write(&self, out: &mut String) -> fmt::Result {
        self.write_header(out)?;
        self.write_targets(out)?;
        self.write_throughput(out)?;
        self.write_observer_processes(out)?;
        self.write_programs(out)?;
        self.write_peer_programs(out)?;
        self.write_process(out)?;
        self.write_unwinding(out)?;
        self.write_watch(out)?;
        self.write_dump(out)?;
        self.write_record_programs(out)?;
        self.write_record_process(out)?;
        self.write_outputs(out)?;
        self.write_commands(out)?;
        self.write_left_out(out)
    }

    /// The runs the figures come from: all but the disturbed ones.
    pub(super) fn clean(&self) -> impl Iterator<Item = &Sample> {
        self.samples.iter().filter(|s| s.disturbance().is_none())
    }

    /// A rate under `observer` over the same rate alone in the same round, one per round.
    pub(super) fn ratios(
        &self,
        workload: Workload,
        observer: Observer,
        rate: fn(&Rate) -> f64,
    ) -> Vec<f64> {
        let alone = |round| {
            self.clean()
                .find(|s| {
                    s.round == round && s.workload == workload && s.observer == Observer::Alone
                })
                .map(|s| rate(&s.rate))
        };
        self.clean()
            .filter(|s| s.workload == workload && s.observer == observer)
            .filter_map(|s| Some(rate(&s.rate) / alone(s.round)?))
            .collect()
    }

    pub(super) fn rates(&self, workload: Workload, observer: Observer) -> Vec<Rate> {
        self.clean()
            .filter(|s| s.workload == workload && s.observer == observer)
            .map(|s| s.rate)
            .collect()
    }

    /// probe spin's runs while `workload` ran.
    pub(super) fn workload_runs(&self, workload: Workload) -> Vec<&ProbeRun> {
        self.observer_runs(workload, Observer::Probe)
    }

    /// probe's runs as `observer` (spin or record) while `workload` ran.
    pub(super) fn observer_runs(&self, workload: Workload, observer: Observer) -> Vec<&ProbeRun> {
        self.clean()
            .filter(|s| s.workload == workload && s.observer == observer)
            .filter_map(|s| s.probe.as_ref())
            .collect()
    }

    /// probe record's runs grouped by workload.
    pub(super) fn record_runs(&self) -> Vec<(&'static str, Vec<&ProbeRun>)> {
        WORKLOADS
            .iter()
            .map(|&w| (w.name(), self.observer_runs(w, Observer::ProbeRecord)))
            .collect()
    }

    /// The clean runs of `observer` on `workload`.
    pub(super) fn runs_of(&self, workload: Workload, observer: Observer) -> Vec<&Sample> {
        self.clean()
            .filter(|s| s.workload == workload && s.observer == observer)
            .collect()
    }

    /// probe's kernel programs in its runs while `workload` ran.
    pub(super) fn probe_programs(&self, workload: Workload) -> Vec<&KernelPrograms> {
        self.workload_runs(workload)
            .into_iter()
            .map(|run| &run.kernel)
            .collect()
    }

    /// bpftrace's kernel programs in its runs while `workload` ran, where they could be read.
    pub(super) fn bpftrace_programs(&self, workload: Workload) -> Vec<&KernelPrograms> {
        self.clean()
            .filter(|s| s.workload == workload)
            .filter_map(|s| s.bpftrace.as_ref()?.as_ref().ok())
            .collect()
    }

    /// probe spin's runs grouped by what ran meanwhile: each workload, then the idle machine.
    pub(super) fn probe_runs(&self) -> Vec<(&'static str, Vec<&ProbeRun>)> {
        let mut groups: Vec<_> = WORKLOADS
            .iter()
            .map(|&w| (w.name(), self.workload_runs(w)))
            .collect();
        groups.push(("idle (no workload)", vec![&self.idle]));
        groups
    }

    pub(super) fn all_probe_runs(&self) -> Vec<&ProbeRun> {
        self.probe_runs()
            .into_iter()
            .flat_map(|(_, runs)| runs)
            .collect()
    }

    fn write_header(&self, out: &mut String) -> fmt::Result {
        let Machine {
            date,
            load,
            kernel,
            cpus,
            model,
        } = &self.machine;
        let options = self.bench.options;
        writeln!(out, "# probe overhead bench\n")?;
        writeln!(
            out,
            "`{}` on {date}, {:.1} min in all. Linux {kernel}, {cpus} CPUs ({model}); load average \
             {} at the start, {load} at the end. probe built from {}.\n",
            command_line(options),
            self.elapsed.as_secs_f64() / 60.0,
            self.load_before,
            self.build
        )?;
        writeln!(
            out,
            "Each workload runs for {} s, one at a time and unpinned, {:.1} s after its observer \
             started (time to attach); the observer is then stopped with SIGINT. {} interleaved \
             rounds, the observer order rotated each round. The Python loop, and any workload under \
             an observer that attaches to its PID (strace, py-spy), is started before its \
             observer and waits, blocked on its stdin, until the observer has had the same \
             {:.1} s; it measures its own run from then on.\n",
            options.secs,
            SETTLE.as_secs_f64(),
            options.rounds,
            SETTLE.as_secs_f64()
        )?;
        writeln!(out, "{}\n", self.disturbance())
    }

    /// Which runs were left out, in one line; the list is at the end.
    fn disturbance(&self) -> String {
        let left_out = self.samples.len() - self.clean().count();
        let line = if left_out == 0 {
            format!(
                "All {} workload runs were undisturbed: no other process held tracing BPF \
                 programs, and each workload was on a CPU for at least {:.0}% of its run",
                self.samples.len(),
                100.0 * MIN_ON_CPU
            )
        } else {
            format!(
                "**{left_out} of {} workload runs were disturbed and are left out** (listed at \
                 the end): another process held tracing BPF programs, or other load kept the \
                 workload off a CPU for over {:.0}% of its run",
                self.samples.len(),
                100.0 * (1.0 - MIN_ON_CPU)
            )
        };
        let idle = if self.idle_others.is_empty() {
            String::new()
        } else {
            let others = self.idle_others.join(", ");
            format!("; during the idle run, {others} held tracing BPF programs")
        };
        format!("{line}{idle}.")
    }

    fn write_left_out(&self, out: &mut String) -> fmt::Result {
        let left_out: Vec<(&Sample, String)> = self
            .samples
            .iter()
            .filter_map(|s| Some((s, s.disturbance()?)))
            .collect();
        if left_out.is_empty() {
            return Ok(());
        }
        writeln!(out, "## Runs left out\n")?;
        for (sample, why) in left_out {
            writeln!(
                out,
                "- round {}, {} {}: {}/s; {why}",
                sample.round + 1,
                sample.workload.name(),
                sample.observer.name(),
                si(sample.rate.wall)
            )?;
        }
        writeln!(out)
    }

    fn write_commands(&self, out: &mut String) -> fmt::Result {
        let secs = self.bench.options.secs;
        writeln!(
            out,
            "## Commands\n\nRun from the workspace root.\n\n| | command |\n|---|---|"
        )?;
        for workload in WORKLOADS {
            let name = workload.name();
            if workload.is_python() {
                writeln!(
                    out,
                    "| workload {name} | `{} {} {secs} --start-on-eof` (pyenv's CPython) |",
                    self.bench.python.display(),
                    workload.source()
                )?;
                continue;
            }
            writeln!(
                out,
                "| workload {name} | `target/bench/{name} {secs}`, \
                 built with `cc {} -o target/bench/{name} {}` |",
                CFLAGS
                    .iter()
                    .chain(workload.extra_cflags())
                    .copied()
                    .collect::<Vec<_>>()
                    .join(" "),
                workload.source()
            )?;
        }
        for observer in OBSERVERS {
            let argv = observer
                .argv(secs, None)
                .map_or("(none)".into(), |argv| format!("`{}`", shell_join(&argv)));
            let note = match observer {
                Observer::PySpy | Observer::PySpyNonblocking => format!(
                    " (py-spy {PY_SPY_VERSION} from PyPI, in a venv of that CPython; PID: the \
                     workload's)"
                ),
                Observer::Strace => " (Debian's strace; PID: the workload's)".to_owned(),
                _ => String::new(),
            };
            writeln!(out, "| {} | {argv}{note} |", observer.name())?;
        }
        writeln!(out)
    }
}

/// The bench's own command line, as it would be typed.
fn command_line(options: &Options) -> String {
    format!(
        "cargo xtask bench --rounds {} --secs {}",
        options.rounds, options.secs
    )
}
