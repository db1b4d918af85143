//! The measuring loop: every workload under every observer, round after round, and probe on
//! the idle machine.

use std::{
    fs, io,
    process::{Command, Stdio},
    thread,
    time::Duration,
};

use anyhow::{bail, Context as _, Result};

use super::{
    format::si,
    machine::{other_bpf_users, others_note, union},
    observe::{Observed, Observing},
    parse::{parse_rate, Rate},
    plan::{round_order, Observer, Paths, Workload, WORKLOADS},
    sample::{Observation, ProbeRun, Sample},
    Options, SETTLE,
};

/// The measuring part: options and paths, shared by every run.
pub(super) struct Bench<'a> {
    pub(super) options: &'a Options,
    pub(super) paths: Paths,
}

impl Bench<'_> {
    /// Every workload under every observer, round after round, in rotating order.
    pub(super) fn rounds(&self) -> Result<Vec<Sample>> {
        let mut samples = Vec::new();
        for round in 0..self.options.rounds {
            for workload in WORKLOADS {
                for observer in round_order(round) {
                    let sample = self.measure(round, workload, observer)?;
                    eprintln!(
                        "xtask: bench round {}/{}: {} {}: {}/s{}",
                        round + 1,
                        self.options.rounds,
                        workload.name(),
                        observer.name(),
                        si(sample.rate.wall),
                        sample
                            .disturbance()
                            .map_or(String::new(), |why| format!(" (left out: {why})"))
                    );
                    samples.push(sample);
                }
            }
        }
        Ok(samples)
    }

    /// One workload run under one observer.
    fn measure(&self, round: usize, workload: Workload, observer: Observer) -> Result<Sample> {
        let observation = self.observe(observer, || self.run_workload(workload))?;
        Ok(Sample {
            round,
            workload,
            observer,
            rate: observation.value,
            probe: observation.probe,
            others: observation.others,
        })
    }

    /// probe with nothing else running: what it costs on an idle machine.
    pub(super) fn idle(&self) -> Result<(ProbeRun, Vec<String>)> {
        let secs = Duration::from_secs_f64(self.options.secs);
        let observation = self.observe(Observer::Probe, || {
            thread::sleep(secs);
            Ok(())
        })?;
        let run = observation.probe.context("probe's run was not recorded")?;
        eprintln!(
            "xtask: bench idle: probe used {:.2}% of one core{}",
            run.cpu_pct(),
            others_note(&observation.others)
        );
        Ok((run, observation.others))
    }

    /// Starts the observer, gives it SETTLE to attach, runs `during`, stops the observer.
    fn observe<T>(
        &self,
        observer: Observer,
        during: impl FnOnce() -> Result<T>,
    ) -> Result<Observation<T>> {
        let others_before = other_bpf_users(None);
        let observed = self.start(observer)?;
        thread::sleep(SETTLE);
        let Some(mut observed) = observed else {
            let value = during()?;
            let others = union(others_before, other_bpf_users(None));
            return Ok(Observation {
                value,
                probe: None,
                others,
            });
        };
        observed.ensure_running()?;
        let before = observed.snapshot()?;
        let value = during()?;
        let observing = Observing::between(&before, &observed.snapshot()?);
        let others = union(others_before, other_bpf_users(Some(observed.pid)));
        let exit = observed.stop()?;
        let probe = match observer {
            Observer::Probe => Some(ProbeRun::read(exit, observing, &self.paths)?),
            Observer::Perf => {
                self.remove_perf_data()?;
                None
            }
            _ => None,
        };
        Ok(Observation {
            value,
            probe,
            others,
        })
    }

    fn start(&self, observer: Observer) -> Result<Option<Observed>> {
        observer
            .argv(self.options.secs)
            .map(|argv| Observed::spawn(observer, &argv, &self.paths))
            .transpose()
    }

    /// Runs one workload to completion; returns its iterations per second.
    fn run_workload(&self, workload: Workload) -> Result<Rate> {
        let binary = self.paths.workload(workload);
        let output = Command::new(&binary)
            .arg(self.options.secs.to_string())
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("failed to run {}", binary.display()))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!(
                "{} failed ({}): {}",
                binary.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        parse_rate(&stdout).with_context(|| {
            format!(
                "unexpected output from {}: {:?}",
                binary.display(),
                stdout.trim()
            )
        })
    }

    fn remove_perf_data(&self) -> Result<()> {
        for file in self.paths.perf_data() {
            match fs::remove_file(&file) {
                Err(err) if err.kind() != io::ErrorKind::NotFound => {
                    return Err(err)
                        .with_context(|| format!("failed to remove {}", file.display()));
                }
                _ => {}
            }
        }
        Ok(())
    }
}
