//! The measuring loop: every workload under every observer, round after round, and probe on
//! the idle machine.

use std::{
    fs, io,
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::Duration,
};

use anyhow::{bail, Context as _, Result};

use super::{
    format::si,
    machine::{other_bpf_users, others_note, union},
    observe::{Observed, Observing, STOP_TIMEOUT},
    parse::{parse_raw_samples, parse_record_summary},
    peers::{read_bpftrace_programs, STACK_SAMPLE, SYS_ENTER},
    plan::{round_order, Observer, Paths, Workload, WORKLOADS},
    sample::{KernelPrograms, Observation, OwnCost, ProbeRun, Sample, Written},
    workload::{run_to_end, Held},
    Options, SETTLE,
};

/// The measuring part: options, paths and the Python interpreter, shared by every run.
pub(super) struct Bench<'a> {
    pub(super) options: &'a Options,
    pub(super) paths: Paths,
    /// pyenv's CPython 3.12, which runs the Python workload (see `python::find_python`).
    pub(super) python: PathBuf,
}

impl Bench<'_> {
    /// Every workload under every observer, round after round, in rotating order.
    pub(super) fn rounds(&self) -> Result<Vec<Sample>> {
        let mut samples = Vec::new();
        for round in 0..self.options.rounds {
            for workload in WORKLOADS {
                for observer in round_order(round, workload.observers()) {
                    let sample = self.measure(round, workload, observer)?;
                    eprintln!(
                        "xtask: bench round {}/{}: {} {}: {}/s{}{}",
                        round + 1,
                        self.options.rounds,
                        workload.name(),
                        observer.name(),
                        si(sample.rate.wall),
                        bpftrace_note(sample.bpftrace.as_ref()),
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

    /// One workload run under one observer. The Python workload, and any workload whose
    /// observer needs its PID, is started first and held, then released after the same
    /// settle as the others.
    fn measure(&self, round: usize, workload: Workload, observer: Observer) -> Result<Sample> {
        let mut command = self.workload_command(workload);
        let observation = if workload.is_python() || observer.needs_pid() {
            let held = Held::start(&mut command)?;
            let pid = held.pid()?;
            self.observe(observer, Some(pid), || held.release())?
        } else {
            self.observe(observer, None, || run_to_end(&mut command))?
        };
        Ok(Sample {
            round,
            workload,
            observer,
            rate: observation.value,
            probe: observation.probe,
            own: observation.own,
            written: observation.written,
            bpftrace: observation.bpftrace,
            others: observation.others,
            hung: observation.hung,
        })
    }

    /// probe with nothing else running: what it costs on an idle machine.
    pub(super) fn idle(&self) -> Result<(ProbeRun, Vec<String>)> {
        let secs = Duration::from_secs_f64(self.options.secs);
        let observation = self.observe(Observer::Probe, None, || {
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

    /// Starts the observer (on the workload `pid` when it needs one), gives it SETTLE to
    /// attach, runs `during`, stops the observer.
    fn observe<T>(
        &self,
        observer: Observer,
        pid: Option<libc::pid_t>,
        during: impl FnOnce() -> Result<T>,
    ) -> Result<Observation<T>> {
        let others_before = other_bpf_users(None);
        // A file left by an earlier run must not pass for this one's.
        self.remove_output(observer)?;
        let observed = self.start(observer, pid)?;
        thread::sleep(SETTLE);
        let Some(mut observed) = observed else {
            let value = during()?;
            let others = union(others_before, other_bpf_users(None));
            return Ok(Observation {
                value,
                probe: None,
                own: None,
                written: None,
                bpftrace: None,
                others,
                hung: None,
            });
        };
        observed.ensure_running()?;
        let before = observed.snapshot()?;
        let value = during()?;
        let observing = Observing::between(&before, &observed.snapshot()?);
        let others = union(others_before, other_bpf_users(Some(observed.pid)));
        // Just before it stops: its programs are unloaded when it exits. A failed read costs
        // only these figures (the table says n/a), not the run.
        let bpftrace = (observer == Observer::Bpftrace).then(|| {
            read_bpftrace_programs(observed.pid, observed.running_for())
                .map_err(|err| format!("{err:#}"))
        });
        let Some(exit) = observed.stop()? else {
            let hung = format!(
                "{} did not exit within {STOP_TIMEOUT:?} of SIGINT and was killed",
                observer.name()
            );
            // probe itself hanging is a failure to report, not noise to leave out.
            if observer.is_probe() {
                bail!("{hung}");
            }
            eprintln!("xtask: {hung}; the run is left out");
            return Ok(Observation {
                value,
                probe: None,
                own: None,
                written: None,
                bpftrace,
                others,
                hung: Some(hung),
            });
        };
        let own = Some(OwnCost::new(&exit, &observing));
        let stop_latency = exit.stop_latency;
        // Before take_output, which removes what the observer wrote.
        let probe = match observer {
            Observer::Probe | Observer::ProbeFramePointers => {
                Some(ProbeRun::read(observer, exit, observing, &self.paths)?)
            }
            Observer::ProbeRecord => {
                self.check_record_summary()?;
                Some(ProbeRun::read_record(exit, observing, &self.paths)?)
            }
            Observer::ProbeWatch | Observer::ProbeWatchProfile => {
                Some(ProbeRun::read_watch(exit, observing, &self.paths)?)
            }
            _ => None,
        };
        let written = self.take_output(observer, stop_latency)?;
        Ok(Observation {
            value,
            probe,
            own,
            written,
            bpftrace,
            others,
            hung: None,
        })
    }

    /// The size of the file `observer` wrote, after checking it holds something, and the
    /// time from SIGINT to its being complete (the observer's exit); removes the file, so
    /// the next run cannot pass on this one's. `None` for observers that write none.
    fn take_output(&self, observer: Observer, latency: Duration) -> Result<Option<Written>> {
        let path = match observer {
            Observer::ProbeRecord => self.paths.probe_record_output(),
            Observer::ProbeWatch => self.paths.watch_events(),
            Observer::ProbeWatchProfile => self.watch_profile()?,
            Observer::Strace => self.paths.strace_output(),
            Observer::Perf => self.paths.perf_data()[0].clone(),
            Observer::PySpy | Observer::PySpyNonblocking => {
                self.check_py_spy_output(observer)?;
                self.paths.py_spy_output()
            }
            Observer::Alone
            | Observer::Probe
            | Observer::ProbeFramePointers
            | Observer::Bpftrace => return Ok(None),
        };
        let bytes = fs::metadata(&path)
            .with_context(|| {
                format!(
                    "{} wrote no output: failed to read {}",
                    observer.name(),
                    path.display()
                )
            })?
            .len();
        if bytes == 0 {
            bail!(
                "{} left {} empty; see {}",
                observer.name(),
                path.display(),
                self.paths.stderr(observer).display()
            );
        }
        self.remove_output(observer)?;
        Ok(Some(Written { bytes, latency }))
    }

    /// Fails unless probe record says it wrote samples: an empty flamegraph would mean its
    /// ratio measured nothing.
    fn check_record_summary(&self) -> Result<()> {
        let stderr_path = self.paths.stderr(Observer::ProbeRecord);
        let stderr = fs::read_to_string(&stderr_path)
            .with_context(|| format!("failed to read {}", stderr_path.display()))?;
        match parse_record_summary(&stderr) {
            Some((samples, _)) if samples > 0 => Ok(()),
            Some(_) => bail!(
                "probe record recorded no samples; see {}",
                stderr_path.display()
            ),
            None => bail!(
                "probe record did not say what it wrote; see {}",
                stderr_path.display()
            ),
        }
    }

    /// The one profile `probe watch --profile-dir` wrote: its interval (60 s) is longer than
    /// the run, so it is the one written when it stopped.
    fn watch_profile(&self) -> Result<PathBuf> {
        let dir = self.paths.watch_profiles();
        let mut profiles: Vec<PathBuf> = fs::read_dir(&dir)
            .with_context(|| {
                format!(
                    "probe watch wrote no profile: failed to read {}",
                    dir.display()
                )
            })?
            .filter_map(|entry| Some(entry.ok()?.path()))
            .filter(|path| path.to_string_lossy().ends_with(".pb.gz"))
            .collect();
        match profiles.len() {
            1 => Ok(profiles.remove(0)),
            n => bail!(
                "probe watch --profile-dir wrote {n} profiles into {}, not one; see {}",
                dir.display(),
                self.paths.stderr(Observer::ProbeWatchProfile).display()
            ),
        }
    }

    /// Removes what `observer` writes, if it is there.
    fn remove_output(&self, observer: Observer) -> Result<()> {
        match observer {
            Observer::ProbeRecord => remove_if_there(&self.paths.probe_record_output()),
            Observer::ProbeWatch => remove_if_there(&self.paths.watch_events()),
            Observer::ProbeWatchProfile => {
                remove_if_there(&self.paths.watch_events())?;
                let dir = self.paths.watch_profiles();
                match fs::remove_dir_all(&dir) {
                    Err(err) if err.kind() != io::ErrorKind::NotFound => {
                        Err(err).with_context(|| format!("failed to remove {}", dir.display()))
                    }
                    _ => Ok(()),
                }
            }
            Observer::Strace => remove_if_there(&self.paths.strace_output()),
            Observer::Perf => self
                .paths
                .perf_data()
                .iter()
                .try_for_each(|file| remove_if_there(file)),
            Observer::PySpy | Observer::PySpyNonblocking => {
                remove_if_there(&self.paths.py_spy_output())
            }
            Observer::Alone
            | Observer::Probe
            | Observer::ProbeFramePointers
            | Observer::Bpftrace => Ok(()),
        }
    }

    fn start(&self, observer: Observer, pid: Option<libc::pid_t>) -> Result<Option<Observed>> {
        if observer.needs_pid() && pid.is_none() {
            bail!("{} needs the workload's PID", observer.name());
        }
        observer
            .argv(self.options.secs, pid)
            .map(|argv| Observed::spawn(observer, &argv, &self.paths))
            .transpose()
    }

    /// The workload's command line, run from the workspace root.
    fn workload_command(&self, workload: Workload) -> Command {
        let mut command = if workload.is_python() {
            let mut command = Command::new(&self.python);
            command.arg(workload.source());
            command
        } else {
            Command::new(self.paths.workload(workload))
        };
        command
            .arg(self.options.secs.to_string())
            .current_dir(&self.paths.root);
        command
    }

    /// Fails unless py-spy sampled the workload: without samples its ratio would mean
    /// nothing.
    fn check_py_spy_output(&self, observer: Observer) -> Result<()> {
        let path = self.paths.py_spy_output();
        let raw = fs::read_to_string(&path).with_context(|| {
            format!("py-spy wrote no samples: failed to read {}", path.display())
        })?;
        if parse_raw_samples(&raw) == 0 {
            bail!(
                "py-spy recorded no samples of the workload; see {}",
                self.paths.stderr(observer).display()
            );
        }
        Ok(())
    }
}

fn remove_if_there(file: &Path) -> Result<()> {
    match fs::remove_file(file) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => {
            Err(err).with_context(|| format!("failed to remove {}", file.display()))
        }
        _ => Ok(()),
    }
}

/// bpftrace's programs' cost per run, or why it is missing, for a progress line.
fn bpftrace_note(programs: Option<&Result<KernelPrograms, String>>) -> String {
    match programs {
        None => String::new(),
        Some(Err(why)) => format!(" (its kernel programs: n/a, {why})"),
        Some(Ok(programs)) => {
            let ns = |name| {
                programs
                    .program(name)
                    .and_then(|cost| cost.ns_per_run())
                    .map_or("n/a".into(), |ns| {
                        if ns < 1e3 {
                            format!("{ns:.0} ns")
                        } else {
                            format!("{:.1} µs", ns / 1e3)
                        }
                    })
            };
            format!(
                "; its {STACK_SAMPLE} {} and {SYS_ENTER} {} per run",
                ns(STACK_SAMPLE),
                ns(SYS_ENTER)
            )
        }
    }
}
