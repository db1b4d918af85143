//! What the bench runs: the workloads, the observers that watch them, the order of a round,
//! and where inputs and outputs live.

use std::path::PathBuf;

use super::SETTLE;
use crate::workspace_root;

/// bpftrace's counterpart of probe: 99 Hz stacks plus a per-thread syscall count.
const BPFTRACE_PROGRAM: &str = "profile:hz:99 { @s[kstack, ustack] = count(); } \
                                tracepoint:raw_syscalls:sys_enter { @[tid] = count(); }";

/// A CPU-bound loop and a syscall storm: the cases where sampling and the syscall hook cost most.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Workload {
    CpuLoop,
    GetppidStorm,
}

pub(super) const WORKLOADS: [Workload; 2] = [Workload::CpuLoop, Workload::GetppidStorm];

impl Workload {
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::CpuLoop => "cpu_loop",
            Self::GetppidStorm => "getppid_storm",
        }
    }

    /// What one iteration is, for the rate column.
    pub(super) fn unit(self) -> &'static str {
        match self {
            Self::CpuLoop => "xorshift steps",
            Self::GetppidStorm => "getppid calls",
        }
    }

    pub(super) fn source(self) -> String {
        format!("bench/{}.c", self.name())
    }
}

/// Who watches the workload. `Alone` is the control every ratio is taken against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Observer {
    Alone,
    Probe,
    Bpftrace,
    Perf,
}

pub(super) const OBSERVERS: [Observer; 4] = [
    Observer::Alone,
    Observer::Probe,
    Observer::Bpftrace,
    Observer::Perf,
];

impl Observer {
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Alone => "alone",
            Self::Probe => "probe",
            Self::Bpftrace => "bpftrace",
            Self::Perf => "perf record",
        }
    }

    /// The observer's command line, run from the workspace root; `None` for `alone`.
    pub(super) fn argv(self, secs: f64) -> Option<Vec<String>> {
        let argv: &[&str] = match self {
            Self::Alone => return None,
            Self::Probe => {
                // The window outlasts the run: SIGINT ends it, and probe still reports.
                let window = secs + SETTLE.as_secs_f64() + 30.0;
                let argv = [
                    "target/release/probe",
                    "spin",
                    "-d",
                    &window.to_string(),
                    "--self-stats",
                    "--json",
                ];
                return Some(argv.map(str::to_owned).to_vec());
            }
            Self::Bpftrace => &["bpftrace", "-e", BPFTRACE_PROGRAM],
            Self::Perf => &[
                "perf",
                "record",
                "-F",
                "99",
                "-g",
                "-a",
                "-o",
                "target/bench/perf.data",
            ],
        };
        Some(argv.iter().map(|arg| (*arg).to_owned()).collect())
    }
}

/// The observers in round `round`'s order: rotated each round, so slow drift of the machine
/// does not always favour the same observer.
pub(super) fn round_order(round: usize) -> [Observer; 4] {
    std::array::from_fn(|i| OBSERVERS[(i + round) % OBSERVERS.len()])
}

/// Where the bench's inputs and outputs live.
pub(super) struct Paths {
    pub(super) root: PathBuf,
    pub(super) out: PathBuf,
}

impl Paths {
    pub(super) fn new() -> Self {
        let root = workspace_root();
        Self {
            out: root.join("target/bench"),
            root,
        }
    }

    pub(super) fn workload(&self, workload: Workload) -> PathBuf {
        self.out.join(workload.name())
    }

    /// probe's JSON report, for the length of its window.
    pub(super) fn probe_report(&self) -> PathBuf {
        self.out.join("probe-report.json")
    }

    pub(super) fn stderr(&self, observer: Observer) -> PathBuf {
        self.out
            .join(format!("{}.stderr", observer.name().replace(' ', "-")))
    }

    pub(super) fn perf_data(&self) -> [PathBuf; 2] {
        // perf renames an existing perf.data to perf.data.old.
        [self.out.join("perf.data"), self.out.join("perf.data.old")]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_observer_leads_once_in_four_rounds() {
        let leaders: Vec<Observer> = (0..4).map(|round| round_order(round)[0]).collect();
        assert_eq!(leaders, OBSERVERS);
        assert_eq!(round_order(4), round_order(0));
    }
}
