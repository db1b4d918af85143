//! A hand-built profile for the format tests: a Python process with two threads whose
//! stacks have kernel, native and Python frames, an inlined call, an unnamed frame, a
//! truncated stack and an off-CPU sample.

use crate::model::{
    Frame, FrameKind, Interner, LossCounters, ModuleInfo, ProcessInfo, Profile, SampleKind,
    StackSamples, ThreadProfile, Window,
};

/// A frame of `kind` named `function` in `module`, at an address derived from its name.
pub fn frame(kind: FrameKind, function: Option<&str>, module: &str) -> Frame {
    let seed = function.map_or(0, |f| f.bytes().map(u64::from).sum::<u64>());
    Frame {
        kind,
        function: function.map(str::to_owned),
        module: module.to_owned(),
        module_offset: 0x1000 + seed,
        file: None,
        line: None,
        address: 0x5555_0000_0000 + seed,
        inlined: false,
    }
}

/// A thread of process 1000 with no samples.
pub fn thread(tid: u32, name: &str) -> ThreadProfile {
    ThreadProfile {
        tid,
        pid: 1000,
        name: name.to_owned(),
        ..ThreadProfile::default()
    }
}

fn python(function: &str, file: &str, line: u32) -> Frame {
    let mut frame = frame(FrameKind::Python, Some(function), file);
    frame.file = Some(file.to_owned());
    frame.line = Some(line);
    frame
}

fn with_line(mut frame: Frame, file: &str, line: u32) -> Frame {
    frame.file = Some(file.to_owned());
    frame.line = Some(line);
    frame
}

/// Stacks (innermost first) of the main thread: a syscall from Python code, and the same
/// Python code in the interpreter's own loop (truncated).
fn main_stacks() -> Vec<(Vec<Frame>, bool)> {
    let script = "/work/app/find_zip.py";
    let zipfile = "/usr/lib/python3.12/zipfile/__init__.py";
    let syscall = vec![
        frame(FrameKind::Kernel, Some("do_syscall_64"), "[kernel]"),
        frame(FrameKind::Kernel, Some("entry_SYSCALL_64"), "[kernel]"),
        frame(FrameKind::User, Some("__open64"), "libc.so.6"),
        python("is_zipfile", zipfile, 232),
        python("find_zip", script, 13),
        python("<module>", script, 19),
    ];
    let loop_ = vec![
        python("is_zipfile", zipfile, 230),
        python("find_zip", script, 13),
        python("<module>", script, 19),
    ];
    vec![(syscall, false), (loop_, true)]
}

/// Stacks of the worker thread: an inlined helper in a native library with lines, an
/// unnamed frame, and the stack it blocks with.
fn worker_stacks() -> Vec<(Vec<Frame>, bool)> {
    let mut inlined = with_line(
        frame(FrameKind::User, Some("hash_step"), "libwork.so"),
        "work.c",
        10,
    );
    inlined.inlined = true;
    let outer = Frame {
        address: inlined.address,
        module_offset: inlined.module_offset,
        ..with_line(
            frame(FrameKind::User, Some("hash_all"), "libwork.so"),
            "work.c",
            42,
        )
    };
    let start = frame(FrameKind::User, Some("start_thread"), "libc.so.6");
    let unnamed = frame(FrameKind::User, None, "libwork.so");
    let blocked = vec![
        frame(FrameKind::Kernel, Some("schedule"), "[kernel]"),
        frame(FrameKind::User, Some("futex_wait"), "libc.so.6"),
        start.clone(),
    ];
    vec![
        (vec![inlined, outer, start.clone()], false),
        (vec![unnamed, start], false),
        (blocked, false),
    ]
}

fn samples(stack: u32, kind: SampleKind, count: u64, weight_ns: u64) -> StackSamples {
    StackSamples {
        stack,
        kind,
        count,
        weight_ns,
        syscall: None,
    }
}

fn modules() -> Vec<ModuleInfo> {
    let module = |name: &str, path: Option<&str>, build_id: Option<&str>| ModuleInfo {
        name: name.to_owned(),
        path: path.map(str::to_owned),
        build_id: build_id.map(str::to_owned),
    };
    vec![
        module("[kernel]", None, None),
        module(
            "libc.so.6",
            Some("/usr/lib/x86_64-linux-gnu/libc.so.6"),
            Some("c0ffee"),
        ),
        module("libwork.so", Some("/opt/work/libwork.so"), Some("beef01")),
    ]
}

/// The test profile: 100 Hz, 1 s, 40 + 20 on-CPU samples, one off-CPU stack.
pub fn profile() -> Profile {
    let mut profile = Profile {
        window: Window {
            requested_ns: 1_000_000_000,
            duration_ns: 1_000_000_000,
            ..Window::default()
        },
        frequency_hz: 100,
        online_cpus: 2,
        target_pids: vec![1000],
        loss: LossCounters {
            samples: 60,
            samples_lost: 3,
            ..LossCounters::default()
        },
        ..Profile::default()
    };
    let mut interner = Interner::default();
    let mut intern = |stacks: Vec<(Vec<Frame>, bool)>, profile: &mut Profile| -> Vec<u32> {
        let ids = stacks.iter();
        ids.map(|(frames, truncated)| profile.intern_stack(frames, *truncated, &mut interner))
            .collect()
    };
    let main_ids = intern(main_stacks(), &mut profile);
    let worker_ids = intern(worker_stacks(), &mut profile);
    let period = 10_000_000;
    let mut main = thread(1000, "python3");
    main.python_name = Some("MainThread".into());
    main.samples = vec![
        samples(main_ids[0], SampleKind::OnCpu, 30, 30 * period),
        samples(main_ids[1], SampleKind::OnCpu, 10, 10 * period),
    ];
    let mut worker = thread(1001, "worker");
    worker.samples = vec![
        samples(worker_ids[0], SampleKind::OnCpu, 15, 15 * period),
        samples(worker_ids[1], SampleKind::OnCpu, 5, 5 * period),
        StackSamples {
            syscall: Some("futex".into()),
            ..samples(worker_ids[2], SampleKind::OffCpu, 4, 250_000_000)
        },
    ];
    profile.threads = vec![main, worker];
    profile.processes.insert(
        1000,
        ProcessInfo {
            pid: 1000,
            name: "python3".into(),
            cmdline: vec!["python3".into(), "find_zip.py".into()],
            exited: false,
        },
    );
    profile.modules = modules().into_iter().map(|m| (m.name.clone(), m)).collect();
    profile
}
