//! Unit tests of the spin report on hand-built profiles. The builders below keep each test
//! to the facts it is about; everything else gets a neutral default (1 s window, 99 Hz).

mod analyze;
mod classify;
mod frames;
mod json;
mod text;

use syscalls::Sysno;

use super::{analyze, SpinOptions, SpinReport, ThreadReport};
use crate::model::{
    Frame, FrameKind, Interner, LossCounters, ProcessInfo, Profile, SampleKind, StackSamples,
    ThreadProfile,
};

/// One second in nanoseconds: with the default 1 s window, `SEC / 100` is 1% CPU.
pub(super) const SEC: u64 = 1_000_000_000;

pub(super) struct ProfileBuilder(Profile, Interner);

/// A profile of a full 1 s window with no threads.
pub(super) fn profile() -> ProfileBuilder {
    ProfileBuilder(
        Profile {
            window: crate::model::Window {
                requested_ns: SEC,
                duration_ns: SEC,
                interrupted: false,
                interrupted_by: None,
            },
            frequency_hz: 99,
            online_cpus: 4,
            ..Profile::default()
        },
        Interner::default(),
    )
}

impl ProfileBuilder {
    pub fn window(mut self, requested_ns: u64, duration_ns: u64, interrupted: bool) -> Self {
        self.0.window = crate::model::Window {
            requested_ns,
            duration_ns,
            interrupted,
            interrupted_by: interrupted.then(|| "Ctrl-C".to_owned()),
        };
        self
    }

    pub fn thread(mut self, thread: ThreadBuilder) -> Self {
        let ThreadBuilder(mut profile, stacks) = thread;
        for (frames, truncated, count) in stacks {
            let stack = self.0.intern_stack(&frames, truncated, &mut self.1);
            profile.samples.push(StackSamples {
                stack,
                kind: SampleKind::OnCpu,
                count,
                weight_ns: count * (SEC / self.0.frequency_hz),
                syscall: None,
            });
        }
        // Hottest first, as symbolization lists them.
        profile.samples.sort_by_key(|s| std::cmp::Reverse(s.count));
        self.0.threads.push(profile);
        self
    }

    pub fn process(mut self, pid: u32, name: &str, cmdline: &[&str]) -> Self {
        let info = ProcessInfo {
            pid,
            name: name.to_owned(),
            cmdline: cmdline.iter().map(|arg| (*arg).to_owned()).collect(),
            exited: false,
        };
        self.0.processes.insert(pid, info);
        self
    }

    pub fn process_exited(mut self, pid: u32) -> Self {
        if let Some(process) = self.0.processes.get_mut(&pid) {
            process.exited = true;
        }
        self
    }

    pub fn targets(mut self, pids: &[u32]) -> Self {
        self.0.target_pids = pids.to_vec();
        self
    }

    pub fn loss(mut self, loss: LossCounters) -> Self {
        self.0.loss = loss;
        self
    }

    pub fn notice(mut self, notice: &str) -> Self {
        self.0.notices.push(notice.to_owned());
        self
    }

    pub fn build(self) -> Profile {
        self.0
    }

    /// Analyzes with the default threshold (90%) and top 5.
    pub fn report(self) -> SpinReport {
        analyze(&self.0, &SpinOptions::default())
    }
}

/// A thread and its stacks: (frames, truncated, samples).
pub(super) struct ThreadBuilder(ThreadProfile, Vec<(Vec<Frame>, bool, u64)>);

/// A thread named `t<tid>` that did nothing.
pub(super) fn thread(pid: u32, tid: u32) -> ThreadBuilder {
    ThreadBuilder(
        ThreadProfile {
            tid,
            pid,
            name: format!("t{tid}"),
            ..ThreadProfile::default()
        },
        Vec::new(),
    )
}

impl ThreadBuilder {
    pub fn name(mut self, name: &str) -> Self {
        self.0.name = name.to_owned();
        self
    }

    pub fn on_cpu_ns(mut self, ns: u64) -> Self {
        self.0.on_cpu_ns = ns;
        self
    }

    /// On-CPU time as a whole percentage of the default 1 s window.
    pub fn cpu(self, pct: u64) -> Self {
        self.on_cpu_ns(pct * SEC / 100)
    }

    pub fn samples(mut self, user: u64, kernel: u64) -> Self {
        self.0.user_samples = user;
        self.0.kernel_samples = kernel;
        self
    }

    pub fn syscall(mut self, sysno: Sysno, count: u64) -> Self {
        self.0.syscalls.push((sysno as u32, count));
        self
    }

    pub fn switches(mut self, voluntary: u64, involuntary: u64) -> Self {
        self.0.voluntary_switches = voluntary;
        self.0.involuntary_switches = involuntary;
        self
    }

    pub fn python_name(mut self, name: &str) -> Self {
        self.0.python_name = Some(name.to_owned());
        self
    }

    pub fn exited(mut self) -> Self {
        self.0.exited = true;
        self
    }

    pub fn stack(self, count: u64, frames: Vec<Frame>) -> Self {
        self.push_stack(count, frames, false)
    }

    pub fn truncated_stack(self, count: u64, frames: Vec<Frame>) -> Self {
        self.push_stack(count, frames, true)
    }

    fn push_stack(mut self, count: u64, frames: Vec<Frame>, truncated: bool) -> Self {
        self.1.push((frames, truncated, count));
        self
    }
}

/// A named user frame in `module`.
pub(super) fn user(function: &str, module: &str) -> Frame {
    Frame {
        kind: FrameKind::User,
        function: Some(function.to_owned()),
        module: module.to_owned(),
        module_offset: 0x1000,
        file: None,
        line: None,
        address: 0,
        inlined: false,
    }
}

/// A named frame of the kernel image.
pub(super) fn kernel(function: &str) -> Frame {
    Frame {
        kind: FrameKind::Kernel,
        function: Some(function.to_owned()),
        module: "[kernel]".to_owned(),
        module_offset: 0xffff_0000,
        file: None,
        line: None,
        address: 0,
        inlined: false,
    }
}

/// A Python frame: `function` at `file:line`.
pub(super) fn python(function: &str, file: &str, line: u32) -> Frame {
    Frame {
        kind: FrameKind::Python,
        function: Some(function.to_owned()),
        module: file.to_owned(),
        module_offset: u64::from(line) * 2,
        file: Some(file.to_owned()),
        line: Some(line),
        address: 0,
        inlined: false,
    }
}

/// A user frame without a symbol.
pub(super) fn unnamed(module: &str, offset: u64) -> Frame {
    Frame {
        kind: FrameKind::User,
        function: None,
        module: module.to_owned(),
        module_offset: offset,
        file: None,
        line: None,
        address: 0,
        inlined: false,
    }
}

/// `frame` with a source location and its own offset (another line of the same function).
pub(super) fn at(mut frame: Frame, file: &str, line: u32) -> Frame {
    frame.file = Some(file.to_owned());
    frame.line = Some(line);
    frame.module_offset += u64::from(line);
    frame
}

/// The only spinning thread of a report.
pub(super) fn only_spinning(report: &SpinReport) -> &ThreadReport {
    assert_eq!(report.spinning.len(), 1, "{report:#?}");
    &report.spinning[0]
}

/// A spinning thread (pid 100, tid 101) with `frames` in every sample.
pub(super) fn spinner_with_stack(frames: Vec<Frame>) -> ThreadBuilder {
    thread(100, 101).cpu(100).samples(99, 0).stack(99, frames)
}
