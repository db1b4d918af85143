//! Harness for probe's integration tests: build and run the C workloads in `workloads/`
//! (and the Python ones, with pyenv's interpreters: see [`start_python`]), run the real
//! `probe` binary against them, and pick threads out of its JSON report; check the profile
//! files it writes with outside readers of each format ([`pprof_top`], [`speedscope_validate`],
//! [`svg_rendered_text`], ...), and its native stacks against gdb's ([`gdb_backtrace`]).
//!
//! The tests load real eBPF programs, so they need root: [`require_bpf`] skips them for a
//! plain `cargo test` and fails them under CI (`CI=true`), where skipping would hide a
//! broken setup. `cargo xtask test` builds `probe` and runs them as root, one at a time.
//!
//! Workloads print `ready pid=<pid> tid=<tid>` once their interesting thread runs and live
//! until their stdin reaches EOF, so nothing here sleeps and retries: the ready line is the
//! readiness signal and the probe window is the only wait.
//!
//! Workloads and probe run at top priority in sessions of their own (see
//! [`workload::prioritize`]): the tests are about probe's accounting, not about how much CPU
//! a shared machine happens to leave a workload.

mod gdb;
mod http;
mod peers;
mod probe;
mod python;
mod report;
mod terminal;
mod workload;

pub use gdb::{gdb_backtrace, gdb_frames, GdbFrame};
pub use http::{free_port, http_get, HttpResponse};
pub use peers::{
    pprof_lines, pprof_tags, pprof_top, pprof_top_source, prometheus, py_spy_dump,
    speedscope_opens_in_chromium, speedscope_validate, svg_rendered_text,
};
pub use probe::{probe_bin, probe_output, probe_output_with, run_probe, spin_json};
pub use python::{
    check_python_frame, check_stack_order, interpreter, marker_line, py_spy, pyenv_root,
    python_frames, python_functions, require_interpreter, script_path, start_python,
    PY_SPY_VERSION,
};
pub use report::{
    all_threads, assert_field, assert_open_fstat_close_loop, check_thread, find_thread,
    hottest_stack, number, spinning_thread, syscall_names, threads,
};
pub use terminal::{ProbeOnTerminal, TerminalExit};
pub use workload::{
    shared_library, workload_path, workload_path_with, ScratchDir, Workload, NO_FRAME_POINTERS,
};

/// Returns whether BPF tests can run here. Without root: panics under CI (a test that
/// cannot load BPF must fail there), otherwise prints why and returns `false` so the test
/// returns early.
pub fn require_bpf() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("these tests load eBPF programs and need root; run them with `cargo xtask test`");
    }
    eprintln!("skipping: needs root (run with `cargo xtask test`)");
    false
}

/// Defines one test per CPython 3.8–3.13 calling `check(minor)`:
/// `per_version!(check: check_3_8 = 8, check_3_9 = 9, ...);`. An attribute before `check`
/// goes on every test: `per_version!(#[ignore = "why"] check: ...);`.
#[macro_export]
macro_rules! per_version {
    ($check:ident: $($name:ident = $minor:literal),+ $(,)?) => {
        $(
            #[test]
            fn $name() {
                $check($minor);
            }
        )+
    };
    (#[$attr:meta] $check:ident: $($name:ident = $minor:literal),+ $(,)?) => {
        $(
            #[test]
            #[$attr]
            fn $name() {
                $check($minor);
            }
        )+
    };
}
