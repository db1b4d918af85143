//! `probe watch`'s metrics, in the Prometheus text format (`GET /metrics` on `--listen`).
//! Labels are process names (`comm`), classes and program names only: command lines can
//! hold secrets, and pids or tids would make a new series for every process over weeks.

use std::collections::BTreeMap;

use prometheus_client::{
    encoding::{text::encode, EncodeLabelSet},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::model::{LossCounters, ProgramStats};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProcessLabel {
    process: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabel {
    class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProgramLabel {
    program: String,
}

/// Totals the kernel or the event log keep, mirrored into counters (which only go up).
#[derive(Default)]
struct Mirrored {
    last: BTreeMap<&'static str, u64>,
}

impl Mirrored {
    /// Adds to `counter` what `total` gained since the last call for `name`.
    fn update(&mut self, name: &'static str, counter: &Counter, total: u64) {
        let last = self.last.entry(name).or_insert(0);
        counter.inc_by(total.saturating_sub(*last));
        *last = (*last).max(total);
    }
}

/// The metrics, updated by the watch loop and encoded on request.
pub struct Metrics {
    registry: Registry,
    hot_threads: Family<ProcessLabel, Gauge>,
    episodes: Family<ClassLabel, Counter>,
    events: Counter,
    events_lost: Counter,
    samples: Counter,
    samples_lost: Counter,
    threads_dropped: Counter,
    syscalls_dropped: Counter,
    thread_map_entries: Gauge,
    sampling: Gauge,
    cpu_seconds: Counter<f64, std::sync::atomic::AtomicU64>,
    last_cpu_seconds: f64,
    resident_bytes: Gauge,
    program_seconds: Family<ProgramLabel, Counter<f64, std::sync::atomic::AtomicU64>>,
    program_runs: Family<ProgramLabel, Counter>,
    program_last: BTreeMap<String, (u64, u64)>,
    mirrored: Mirrored,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("probe");
        let metrics = Self {
            hot_threads: Family::default(),
            episodes: Family::default(),
            events: Counter::default(),
            events_lost: Counter::default(),
            samples: Counter::default(),
            samples_lost: Counter::default(),
            threads_dropped: Counter::default(),
            syscalls_dropped: Counter::default(),
            thread_map_entries: Gauge::default(),
            sampling: Gauge::default(),
            cpu_seconds: Counter::default(),
            last_cpu_seconds: 0.0,
            resident_bytes: Gauge::default(),
            program_seconds: Family::default(),
            program_runs: Family::default(),
            program_last: BTreeMap::new(),
            mirrored: Mirrored::default(),
            registry: Registry::default(),
        };
        registry.register(
            "hot_threads",
            "Threads in an open spin episode, by process name",
            metrics.hot_threads.clone(),
        );
        registry.register(
            "episodes",
            "Spin episodes reported, by the class of the spinning thread",
            metrics.episodes.clone(),
        );
        registry.register("events", "Events written", metrics.events.clone());
        registry.register(
            "events_lost",
            "Events that could not be written (full disk, unwritable output)",
            metrics.events_lost.clone(),
        );
        registry.register(
            "samples",
            "Stack samples taken by the kernel",
            metrics.samples.clone(),
        );
        registry.register(
            "samples_lost",
            "Stack samples lost (ring buffer full)",
            metrics.samples_lost.clone(),
        );
        registry.register(
            "threads_dropped",
            "Threads whose run time could not be accounted (thread map full)",
            metrics.threads_dropped.clone(),
        );
        registry.register(
            "syscalls_dropped",
            "Syscalls that could not be counted (syscall map full)",
            metrics.syscalls_dropped.clone(),
        );
        registry.register(
            "thread_map_entries",
            "Threads in the kernel's run-time map",
            metrics.thread_map_entries.clone(),
        );
        registry.register(
            "sampling",
            "1 while the stack sampler is attached",
            metrics.sampling.clone(),
        );
        registry.register(
            "cpu_seconds",
            "CPU time probe's own process used (user + system)",
            metrics.cpu_seconds.clone(),
        );
        registry.register(
            "resident_memory_bytes",
            "probe's resident set size",
            metrics.resident_bytes.clone(),
        );
        registry.register(
            "bpf_program_run_seconds",
            "Run time of probe's kernel programs (since probe started)",
            metrics.program_seconds.clone(),
        );
        registry.register(
            "bpf_program_runs",
            "Runs of probe's kernel programs (since probe started)",
            metrics.program_runs.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }

    /// The threads in an open episode now, by process name.
    pub fn set_hot_threads<'a>(&mut self, process_names: impl Iterator<Item = &'a str>) {
        self.hot_threads.clear();
        for process in process_names {
            self.hot_threads
                .get_or_create(&ProcessLabel {
                    process: process.to_owned(),
                })
                .inc();
        }
    }

    /// One episode reported, its thread classified as `class`.
    pub fn episode(&self, class: &str) {
        self.episodes
            .get_or_create(&ClassLabel {
                class: class.to_owned(),
            })
            .inc();
    }

    /// The kernel's loss counters and map use, as read at the latest tick.
    pub fn kernel(&mut self, loss: &LossCounters, thread_entries: usize, sampling: bool) {
        let mirrored = &mut self.mirrored;
        mirrored.update("samples", &self.samples, loss.samples);
        mirrored.update("samples_lost", &self.samples_lost, loss.samples_lost);
        mirrored.update(
            "threads_dropped",
            &self.threads_dropped,
            loss.threads_dropped,
        );
        mirrored.update(
            "syscalls_dropped",
            &self.syscalls_dropped,
            loss.syscalls_dropped,
        );
        self.thread_map_entries.set(thread_entries as i64);
        self.sampling.set(i64::from(sampling));
    }

    /// The event log's totals.
    pub fn events(&mut self, written: u64, lost: u64) {
        let mirrored = &mut self.mirrored;
        mirrored.update("events", &self.events, written);
        mirrored.update("events_lost", &self.events_lost, lost);
    }

    /// probe's own CPU seconds so far and resident set now.
    pub fn own_usage(&mut self, cpu_seconds: f64, resident_bytes: u64) {
        let gained = cpu_seconds - self.last_cpu_seconds;
        if gained > 0.0 {
            self.cpu_seconds.inc_by(gained);
            self.last_cpu_seconds = cpu_seconds;
        }
        self.resident_bytes
            .set(i64::try_from(resident_bytes).unwrap_or(i64::MAX));
    }

    /// The kernel programs' statistics (totals since they were loaded).
    pub fn programs(&mut self, stats: &[ProgramStats]) {
        for program in stats {
            let label = ProgramLabel {
                program: program.program.clone(),
            };
            let last = self
                .program_last
                .entry(program.program.clone())
                .or_insert((0, 0));
            let time = program.run_time_ns.saturating_sub(last.0);
            let runs = program.run_count.saturating_sub(last.1);
            self.program_seconds
                .get_or_create(&label)
                .inc_by(time as f64 / 1e9);
            self.program_runs.get_or_create(&label).inc_by(runs);
            *last = (
                last.0.max(program.run_time_ns),
                last.1.max(program.run_count),
            );
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_mirror_totals_and_labels_are_names_only() {
        let mut metrics = Metrics::new();
        metrics.kernel(
            &LossCounters {
                samples: 10,
                samples_lost: 1,
                ..LossCounters::default()
            },
            7,
            true,
        );
        metrics.kernel(
            &LossCounters {
                samples: 25,
                samples_lost: 1,
                ..LossCounters::default()
            },
            9,
            false,
        );
        metrics.set_hot_threads(["grpc-server", "grpc-server", "agent"].into_iter());
        metrics.episode("syscall_storm");
        metrics.programs(&[ProgramStats {
            program: "sched_switch".into(),
            run_time_ns: 2_500_000_000,
            run_count: 40,
        }]);
        let text = metrics.encode();
        for line in [
            "probe_samples_total 25",
            "probe_samples_lost_total 1",
            "probe_thread_map_entries 9",
            "probe_sampling 0",
            "probe_hot_threads{process=\"grpc-server\"} 2",
            "probe_hot_threads{process=\"agent\"} 1",
            "probe_episodes_total{class=\"syscall_storm\"} 1",
            "probe_bpf_program_run_seconds_total{program=\"sched_switch\"} 2.5",
            "probe_bpf_program_runs_total{program=\"sched_switch\"} 40",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
