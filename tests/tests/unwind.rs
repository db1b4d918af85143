//! Native stacks of code built without frame pointers, which only the `.eh_frame` tables
//! describe: C workloads built with [`NO_FRAME_POINTERS`] (`workloads/deep_omit_fp.c`,
//! `deep30_omit_fp.c`), glibc's `syscall()` under `workloads/syscall_storm.c`, and pyenv's
//! CPython (built without frame pointers) running `workloads/py_zlib.py` (libz below the
//! zlib module) and `workloads/py_ctypes_spin.py` (libffi and a library of our own below
//! ctypes).
//!
//! gdb, which unwinds with the same tables, is the reference: the `gdb_*` tests check the
//! workloads and the gdb peer themselves (no probe), the others check probe's kernel
//! table unwinding against the chain the workloads are built to have and against gdb.
//!
//! Each test starts its own workloads and ends them by PID; probe is scoped to them with
//! `-p`. gdb and the interpreters skip their tests when missing, except under `CI=true`,
//! where they fail.

use std::process::Command;

use probe_tests::{
    check_stack_order, check_thread, gdb_backtrace, gdb_frames, hottest_stack, marker_line,
    per_version, python_functions, require_bpf, require_interpreter, shared_library, spin_json,
    spinning_thread, start_python, workload_path, workload_path_with, GdbFrame, ScratchDir,
    Workload, NO_FRAME_POINTERS,
};
use serde_json::Value;

/// Window of each probe run: ~300 samples of a spinner.
const WINDOW: &str = "3";
/// `deep_omit_fp.c` built with [`NO_FRAME_POINTERS`].
const DEEP_NOFP: &str = "deep_omit_fp_nofp";
/// `deep30_omit_fp.c` built with [`NO_FRAME_POINTERS`].
const DEEP30_NOFP: &str = "deep30_omit_fp_nofp";
/// deep_omit_fp's thread, innermost first, from the spinning leaf to the thread function.
const DEEP_CHAIN: [&str; 6] = [
    "level5",
    "level4",
    "level3",
    "level2",
    "level1",
    "deep_thread",
];
/// Where the name of glibc's `start_thread` comes from: it is not a dynamic symbol, and
/// Debian's libc.so.6 has no symbol table of its own.
const NAMES_LIBC: &str = "gdb and probe name it from libc6-dbg's /usr/lib/debug/.build-id";
/// The zlib module's function for `zlib.compress` in every CPython 3.8–3.13: the argument
/// clinic's wrapper, with `zlib_compress_impl` inlined into it (debug info shows both).
const ZLIB_COMPRESS: &str = "zlib_compress";
const ZLIB_COMPRESS_IMPL: &str = "zlib_compress_impl";

/// The `deep_omit_fp` workload, with frame pointers or without.
fn start_deep(frame_pointers: bool) -> Workload {
    if frame_pointers {
        Workload::start("deep_omit_fp", &[])
    } else {
        Workload::start_with("deep_omit_fp", DEEP_NOFP, NO_FRAME_POINTERS, &[])
    }
}

/// `levelN ... level1` then the thread function `thread`, innermost first.
fn level_chain(levels: u32, thread: &str) -> Vec<String> {
    (1..=levels)
        .rev()
        .map(|n| format!("level{n}"))
        .chain([thread.to_owned()])
        .collect()
}

/// `probe spin --json -d WINDOW -p pid`: the thread `tid`, which must be spinning.
fn observe_thread(pid: u32, tid: u32) -> Value {
    let pid = pid.to_string();
    let report = spin_json(&["-d", WINDOW, "-p", &pid]);
    let thread = spinning_thread(&report, tid).clone();
    check_thread(&thread);
    thread
}

/// Function names of a stack's user frames, innermost first (`??` when unnamed, as gdb
/// has it).
fn user_functions(stack: &Value) -> Vec<&str> {
    user_frames(stack)
        .into_iter()
        .map(|frame| frame["function"].as_str().unwrap_or("??"))
        .collect()
}

fn user_frames(stack: &Value) -> Vec<&Value> {
    frames(stack)
        .iter()
        .filter(|frame| frame["kind"] == "user")
        .collect()
}

fn frames(stack: &Value) -> &[Value] {
    stack["frames"].as_array().expect("frames is an array")
}

fn stacks(thread: &Value) -> &[Value] {
    thread["stacks"].as_array().expect("stacks is an array")
}

/// Asserts the stack reached the thread's entry: not marked truncated, and `start_thread`
/// among its user frames (glibc's thread entry; `clone3` may follow it).
fn assert_complete(stack: &Value, context: &str) {
    assert_eq!(
        stack["truncated"], false,
        "{context}: stack marked truncated:\n{stack:#}"
    );
    let functions = user_functions(stack);
    assert!(
        functions.contains(&"start_thread"),
        "{context}: stack does not reach start_thread: {functions:?}\n{stack:#}"
    );
}

/// Index of the first frame of `frames` that `test` accepts.
fn position(frames: &[Value], test: impl Fn(&Value) -> bool) -> Option<usize> {
    frames.iter().position(test)
}

fn is_python(frame: &Value, function: &str) -> bool {
    frame["kind"] == "python" && frame["function"] == function
}

fn is_user_in(frame: &Value, module: &str) -> bool {
    frame["kind"] == "user" && frame["module"].as_str().is_some_and(|m| m.contains(module))
}

fn is_user_function(frame: &Value, names: &[&str]) -> bool {
    frame["kind"] == "user"
        && frame["function"]
            .as_str()
            .is_some_and(|f| names.contains(&f))
}

// ---- The workloads' builds --------------------------------------------------------------

/// Names of the first instructions of `symbol` in `objdump -d` of `path`.
fn prologue(path: &std::path::Path, symbol: &str) -> Vec<String> {
    let output = Command::new("objdump")
        .args(["-d", "--no-show-raw-insn"])
        .arg(format!("--disassemble={symbol}"))
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("failed to run objdump (binutils): {e}"));
    assert!(output.status.success(), "objdump failed: {output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .skip_while(|line| !line.ends_with(&format!("<{symbol}>:")))
        .skip(1)
        .take(2)
        .map(|line| {
            let instruction = line.split_once(":\t").map_or(line, |(_, i)| i);
            instruction.split_whitespace().collect::<Vec<_>>().join(" ")
        })
        .collect()
}

/// The no-frame-pointer builds really lack them: no level sets up `%rbp` (the flags after
/// the usual ones win), while the usual build's levels all do.
#[test]
fn omit_fp_builds_have_no_frame_pointers() {
    let frame_setup = ["push %rbp", "mov %rsp,%rbp"];
    let with = workload_path("deep_omit_fp");
    let without = workload_path_with("deep_omit_fp", DEEP_NOFP, NO_FRAME_POINTERS);
    for level in 1..=5 {
        let symbol = format!("level{level}");
        assert_eq!(prologue(&with, &symbol), frame_setup, "{symbol} with");
        let start = prologue(&without, &symbol);
        assert!(
            !start.is_empty() && start[0] != frame_setup[0],
            "{symbol} without frame pointers starts {start:?}"
        );
    }
    let deep30 = workload_path_with("deep30_omit_fp", DEEP30_NOFP, NO_FRAME_POINTERS);
    for level in 1..=30 {
        let symbol = format!("level{level}");
        let start = prologue(&deep30, &symbol);
        assert!(
            !start.is_empty() && start[0] != frame_setup[0],
            "deep30 {symbol} starts {start:?}"
        );
    }
    let lib = shared_library("ctypes_spin_lib", "ctypes_spin", NO_FRAME_POINTERS);
    for symbol in ["native_spin", "native_inner"] {
        let start = prologue(&lib, symbol);
        assert!(
            !start.is_empty() && start[..] != frame_setup[..],
            "{symbol} starts {start:?}"
        );
    }
}

// ---- gdb's view: the reference (runs now) -----------------------------------------------

/// gdb's function names of `workload`'s thread; `None` when gdb is skipped.
fn gdb_chain(workload: &Workload) -> Option<Vec<String>> {
    gdb_backtrace(workload.pid, workload.tid)
}

/// Asserts `chain` (innermost first) starts with `want` and reaches `start_thread` after.
fn assert_gdb_chain(chain: &[String], want: &[String], context: &str) {
    assert!(
        chain.starts_with(want),
        "{context}: gdb's backtrace {chain:?} does not start with {want:?}"
    );
    assert!(
        chain[want.len()..].iter().any(|f| f == "start_thread"),
        "{context}: gdb's backtrace {chain:?} does not reach start_thread ({NAMES_LIBC})"
    );
}

/// gdb unwinds the frame-pointer-less chain through the `.eh_frame` tables: every level,
/// the thread function and glibc's thread entry.
#[test]
fn gdb_sees_the_omit_fp_chain() {
    let deep = start_deep(false);
    let Some(chain) = gdb_chain(&deep) else {
        return;
    };
    assert_gdb_chain(&chain, &level_chain(5, "deep_thread"), "omit-fp");
}

/// The same with frame pointers, the build the probe tests compare against.
#[test]
fn gdb_sees_the_fp_chain() {
    let deep = start_deep(true);
    let Some(chain) = gdb_chain(&deep) else {
        return;
    };
    assert_gdb_chain(&chain, &level_chain(5, "deep_thread"), "fp");
}

/// All 30 levels of the benchmarks' deep workload.
#[test]
fn gdb_sees_the_deep30_chain() {
    let deep = Workload::start_with("deep30_omit_fp", DEEP30_NOFP, NO_FRAME_POINTERS, &[]);
    let Some(chain) = gdb_chain(&deep) else {
        return;
    };
    assert_gdb_chain(&chain, &level_chain(30, "deep30_thread"), "deep30");
}

/// Index of the first of `frames` at or after `from` that `test` accepts, or a panic
/// naming `what` with the whole backtrace.
fn gdb_find(
    frames: &[GdbFrame],
    from: usize,
    what: &str,
    context: &str,
    test: impl Fn(&GdbFrame) -> bool,
) -> usize {
    frames[from..]
        .iter()
        .position(test)
        .map(|i| from + i)
        .unwrap_or_else(|| panic!("{context}: no {what} at or after frame #{from}:\n{frames:#?}"))
}

/// py_zlib's thread in gdb, innermost first: libz (its static functions unnamed: Debian's
/// libz.so.1 is stripped to its dynamic symbols, `deflate` the first named one), the zlib
/// module's compress function, the eval loop running `compress_loop`, the thread's entry.
/// Frames inside libz's are allowed (libc's calloc, called by `deflateInit2_`), though
/// gdb all but always finds the thread in libz itself.
fn gdb_py_zlib(minor: u8) {
    let Some(python) = require_interpreter(minor) else {
        return;
    };
    let zlib = start_python(&python, "py_zlib.py", &[]);
    let Some(frames) = gdb_frames(zlib.pid, zlib.tid) else {
        return;
    };
    let context = format!("3.{minor}");
    let in_libz = |f: &GdbFrame| f.library.as_deref().is_some_and(|l| l.contains("libz.so"));
    let libz = gdb_find(&frames, 0, "libz frame", &context, in_libz);
    let compress = gdb_find(&frames, libz, ZLIB_COMPRESS, &context, |f| {
        f.function == ZLIB_COMPRESS
    });
    let inside = &frames[libz..compress];
    let libz_end = inside
        .iter()
        .position(|f| !in_libz(f))
        .unwrap_or(inside.len());
    assert!(
        inside[libz_end..]
            .iter()
            .all(|f| f.function == ZLIB_COMPRESS_IMPL),
        "{context}: more than libz inside {ZLIB_COMPRESS}:\n{frames:#?}"
    );
    assert!(
        inside[..libz_end]
            .iter()
            .any(|f| f.function.starts_with("deflate")),
        "{context}: no libz entry point (deflate...) named:\n{frames:#?}"
    );
    let eval = gdb_find(&frames, compress, "eval loop", &context, |f| {
        f.function == "_PyEval_EvalFrameDefault"
    });
    let what = format!("start_thread ({NAMES_LIBC})");
    gdb_find(&frames, eval, &what, &context, |f| {
        f.function == "start_thread"
    });
}

per_version!(gdb_py_zlib:
    gdb_py_zlib_3_8 = 8,
    gdb_py_zlib_3_9 = 9,
    gdb_py_zlib_3_10 = 10,
    gdb_py_zlib_3_11 = 11,
    gdb_py_zlib_3_12 = 12,
    gdb_py_zlib_3_13 = 13,
);

/// The ctypes spinner, started with its library built without frame pointers.
fn start_ctypes_spin(python: &std::path::Path) -> Workload {
    let lib = shared_library("ctypes_spin_lib", "ctypes_spin", NO_FRAME_POINTERS);
    start_python(
        python,
        "py_ctypes_spin.py",
        &[lib.to_str().expect("UTF-8 path")],
    )
}

/// py_ctypes_spin's thread in gdb, innermost first: native_inner, native_spin, libffi
/// (`ffi_call` the outermost of its frames, the only one named: libffi.so.8 is stripped
/// too), then _ctypes and the eval loop running `call_native`, the thread's entry.
fn gdb_py_ctypes(minor: u8) {
    let Some(python) = require_interpreter(minor) else {
        return;
    };
    let spin = start_ctypes_spin(&python);
    let Some(frames) = gdb_frames(spin.pid, spin.tid) else {
        return;
    };
    let context = format!("3.{minor}");
    let names: Vec<&str> = frames.iter().map(|f| f.function.as_str()).collect();
    assert!(
        names.starts_with(&["native_inner", "native_spin"]),
        "{context}:\n{frames:#?}"
    );
    let in_libffi = |f: &GdbFrame| f.library.as_deref().is_some_and(|l| l.contains("libffi"));
    assert!(in_libffi(&frames[2]), "{context}:\n{frames:#?}");
    let ffi_call = gdb_find(&frames, 2, "ffi_call", &context, |f| {
        f.function == "ffi_call" && in_libffi(f)
    });
    assert!(
        frames[2..ffi_call].iter().all(in_libffi),
        "{context}:\n{frames:#?}"
    );
    let eval = gdb_find(&frames, ffi_call, "eval loop", &context, |f| {
        f.function == "_PyEval_EvalFrameDefault"
    });
    let what = format!("start_thread ({NAMES_LIBC})");
    gdb_find(&frames, eval, &what, &context, |f| {
        f.function == "start_thread"
    });
}

per_version!(gdb_py_ctypes:
    gdb_py_ctypes_3_8 = 8,
    gdb_py_ctypes_3_9 = 9,
    gdb_py_ctypes_3_10 = 10,
    gdb_py_ctypes_3_11 = 11,
    gdb_py_ctypes_3_12 = 12,
    gdb_py_ctypes_3_13 = 13,
);

// ---- probe's view (waits for table unwinding) -------------------------------------------

/// The deep thread's hottest stack: the whole chain from the spinning leaf, untruncated,
/// to glibc's thread entry.
fn deep_chain(frame_pointers: bool) {
    if !require_bpf() {
        return;
    }
    let deep = start_deep(frame_pointers);
    let thread = observe_thread(deep.pid, deep.tid);
    let context = if frame_pointers { "fp" } else { "omit-fp" };
    assert_eq!(
        thread["classification"]["kind"], "user_loop",
        "{context}:\n{thread:#}"
    );
    assert_eq!(
        thread["loop_in"]["function"], "level5",
        "{context}:\n{thread:#}"
    );
    let hottest = hottest_stack(&thread);
    check_stack_order(hottest);
    let functions = user_functions(hottest);
    assert!(
        functions.starts_with(&DEEP_CHAIN),
        "{context}: hottest stack's user frames {functions:?}\n{thread:#}"
    );
    assert_complete(hottest, context);
}

#[test]
fn deep_chain_without_frame_pointers() {
    deep_chain(false);
}

/// The same workload with frame pointers: table unwinding must not lose what the
/// frame-pointer walk gets (which passes this already).
#[test]
fn deep_chain_with_frame_pointers() {
    deep_chain(true);
}

/// The 30 levels without frame pointers, whole.
#[test]
fn deep30_chain_without_frame_pointers() {
    if !require_bpf() {
        return;
    }
    let deep = Workload::start_with("deep30_omit_fp", DEEP30_NOFP, NO_FRAME_POINTERS, &[]);
    let thread = observe_thread(deep.pid, deep.tid);
    let hottest = hottest_stack(&thread);
    let functions = user_functions(hottest);
    let want = level_chain(30, "deep30_thread");
    assert!(
        functions
            .iter()
            .copied()
            .take(want.len())
            .eq(want.iter().map(String::as_str)),
        "hottest stack's user frames {functions:?}\n{thread:#}"
    );
    assert_complete(hottest, "deep30");
}

/// glibc's `syscall()` keeps no frame pointer, so a frame-pointer walk from inside it
/// skips its caller: storm_loop. Every listed stack of the storm has it, right inside
/// `storm`, and samples in the kernel are among them.
#[test]
fn syscall_storm_shows_storm_loop() {
    if !require_bpf() {
        return;
    }
    let storm = Workload::start("syscall_storm", &[]);
    let thread = observe_thread(storm.pid, storm.tid);
    assert_eq!(
        thread["classification"]["kind"], "syscall_storm",
        "{thread:#}"
    );
    let mut in_kernel = 0;
    for stack in stacks(&thread) {
        check_stack_order(stack);
        let functions = user_functions(stack);
        let storm_at = functions.iter().position(|f| *f == "storm");
        assert!(
            storm_at.is_some_and(|i| i > 0 && functions[i - 1] == "storm_loop"),
            "a stack's user frames {functions:?} lack storm_loop inside storm\n{thread:#}"
        );
        assert_complete(stack, "storm");
        if frames(stack).iter().any(|frame| frame["kind"] == "kernel") {
            in_kernel += 1;
        }
    }
    assert!(
        in_kernel > 0,
        "no listed stack is in a syscall:\n{thread:#}"
    );
}

/// py_zlib's hottest stack, innermost first: libz frames (named or not), the zlib module's
/// compress function, the Python frame of `compress_loop`, untruncated to the thread's
/// entry. Every listed stack in libz has the same order.
fn py_zlib(minor: u8) {
    if !require_bpf() {
        return;
    }
    let Some(python) = require_interpreter(minor) else {
        return;
    };
    let zlib = start_python(&python, "py_zlib.py", &[]);
    let thread = observe_thread(zlib.pid, zlib.tid);
    let context = format!("3.{minor}");
    assert_eq!(
        thread["python_thread_name"], "py-zlib",
        "{context}:\n{thread:#}"
    );
    // The loop is libz's (a stripped function, named by where it starts), called from
    // compress_loop at its marked line; the evidence says it is native code.
    let loop_in = &thread["loop_in"];
    assert_eq!(loop_in["kind"], "user", "{context}:\n{thread:#}");
    assert!(
        loop_in["module"]
            .as_str()
            .is_some_and(|m| m.starts_with("libz.so")),
        "{context}:\n{thread:#}"
    );
    assert_eq!(
        loop_in["called_from"]["function"], "compress_loop",
        "{context}:\n{thread:#}"
    );
    assert_eq!(
        loop_in["called_from"]["line"],
        marker_line("py_zlib.py", "compress_loop"),
        "{context}:\n{thread:#}"
    );
    let evidence = thread["classification"]["evidence"].as_str().unwrap();
    assert!(
        evidence.contains("in native code called from it"),
        "{context}:\n{thread:#}"
    );
    let hottest = hottest_stack(&thread);
    let mut checked = 0;
    for stack in stacks(&thread) {
        let frames = frames(stack);
        let Some(libz) = position(frames, |f| is_user_in(f, "libz.so")) else {
            assert!(
                !std::ptr::eq(stack, hottest),
                "{context}: hottest stack not in libz:\n{thread:#}"
            );
            continue;
        };
        check_stack_order(stack);
        let compress = position(frames, |f| is_user_function(f, &[ZLIB_COMPRESS]));
        let compress = compress.unwrap_or_else(|| {
            panic!("{context}: a stack in libz without {ZLIB_COMPRESS}:\n{stack:#}")
        });
        assert!(
            frames[libz..compress]
                .iter()
                .all(|f| is_user_in(f, "libz.so") || is_user_function(f, &[ZLIB_COMPRESS_IMPL])),
            "{context}: more than libz inside {ZLIB_COMPRESS}:\n{stack:#}"
        );
        assert!(
            is_user_in(&frames[compress], "zlib.cpython"),
            "{context}: {ZLIB_COMPRESS} is not the zlib module's:\n{stack:#}"
        );
        let loop_at = position(frames, |f| is_python(f, "compress_loop"));
        assert!(
            loop_at.is_some_and(|i| i > compress),
            "{context}: compress_loop not outside {ZLIB_COMPRESS}:\n{stack:#}"
        );
        assert_eq!(
            python_functions(stack).first(),
            Some(&"compress_loop"),
            "{context}: innermost Python frame:\n{stack:#}"
        );
        assert_complete(stack, &context);
        checked += 1;
    }
    assert!(checked > 0, "{context}:\n{thread:#}");
}

per_version!(py_zlib:
    py_zlib_3_8 = 8,
    py_zlib_3_9 = 9,
    py_zlib_3_10 = 10,
    py_zlib_3_11 = 11,
    py_zlib_3_12 = 12,
    py_zlib_3_13 = 13,
);

/// py_ctypes_spin's hottest stack, innermost first: native_inner, native_spin (the
/// library has no frame pointers), libffi's frames, then the Python frame of `call_native`,
/// untruncated to the thread's entry.
fn py_ctypes(minor: u8) {
    if !require_bpf() {
        return;
    }
    let Some(python) = require_interpreter(minor) else {
        return;
    };
    let spin = start_ctypes_spin(&python);
    let thread = observe_thread(spin.pid, spin.tid);
    let context = format!("3.{minor}");
    // The loop is in the C library, called from call_native.
    let loop_in = &thread["loop_in"];
    assert_eq!(
        loop_in["function"], "native_inner",
        "{context}:\n{thread:#}"
    );
    assert_eq!(
        loop_in["called_from"]["function"], "call_native",
        "{context}:\n{thread:#}"
    );
    let hottest = hottest_stack(&thread);
    check_stack_order(hottest);
    let frames = frames(hottest);
    let user = user_functions(hottest);
    assert!(
        user.starts_with(&["native_inner", "native_spin"]),
        "{context}: hottest stack's user frames {user:?}\n{thread:#}"
    );
    let spin_at = position(frames, |f| is_user_function(f, &["native_spin"])).unwrap();
    let ffi = position(frames, |f| is_user_in(f, "libffi"));
    let ffi = ffi.unwrap_or_else(|| panic!("{context}: no libffi frame:\n{hottest:#}"));
    let ffi_last = frames
        .iter()
        .rposition(|f| is_user_in(f, "libffi"))
        .unwrap();
    assert_eq!(
        ffi,
        spin_at + 1,
        "{context}: libffi right outside native_spin:\n{hottest:#}"
    );
    let call_native = position(frames, |f| is_python(f, "call_native"));
    assert!(
        call_native.is_some_and(|i| i > ffi_last),
        "{context}: call_native not outside libffi:\n{hottest:#}"
    );
    assert_eq!(
        python_functions(hottest).first(),
        Some(&"call_native"),
        "{context}: innermost Python frame:\n{hottest:#}"
    );
    assert_complete(hottest, &context);
}

per_version!(py_ctypes:
    py_ctypes_3_8 = 8,
    py_ctypes_3_9 = 9,
    py_ctypes_3_10 = 10,
    py_ctypes_3_11 = 11,
    py_ctypes_3_12 = 12,
    py_ctypes_3_13 = 13,
);

/// probe's native chain of the omit-fp thread is gdb's, name for name: the same tables,
/// the same symbols. gdb attaches first (it stops the process while it reads the stack),
/// then probe watches; both catch the thread in level5's loop.
#[test]
fn omit_fp_chain_matches_gdb() {
    if !require_bpf() {
        return;
    }
    let deep = start_deep(false);
    let Some(gdb) = gdb_chain(&deep) else {
        return;
    };
    let thread = observe_thread(deep.pid, deep.tid);
    let hottest = hottest_stack(&thread);
    // glibc names some functions twice at one address (`__clone3` and `clone3`): gdb
    // picks one, probe's symbolizer the other.
    let alias = |name: &str| name.trim_start_matches('_').to_owned();
    let probe: Vec<String> = user_functions(hottest).into_iter().map(alias).collect();
    let gdb: Vec<String> = gdb.iter().map(|name| alias(name)).collect();
    assert_eq!(
        probe, gdb,
        "probe's user frames (left) vs gdb's backtrace (right), leading underscores \
         dropped\n{thread:#}"
    );
}

/// The chain of the omit-fp thread, whole and untruncated, in `thread`'s hottest stack.
fn assert_deep_chain(thread: &Value, context: &str) {
    let hottest = hottest_stack(thread);
    let want = level_chain(5, "deep_thread");
    let user = user_functions(hottest);
    assert!(
        user.starts_with(&want.iter().map(String::as_str).collect::<Vec<_>>()),
        "{context}: user frames {user:?}\n{thread:#}"
    );
    assert_complete(hottest, context);
}

/// A frame-pointer-less binary deleted while it runs: its tables come from the mapped
/// file itself (through /proc/PID/map_files), not from the path, which names nothing.
#[test]
fn deleted_binary_still_unwinds() {
    if !require_bpf() {
        return;
    }
    let scratch = ScratchDir::new("unwind-deleted");
    let copy = scratch.0.join("deep_deleted");
    std::fs::copy(
        workload_path_with("deep_omit_fp", DEEP_NOFP, NO_FRAME_POINTERS),
        &copy,
    )
    .expect("copy workload");
    let deep = Workload::start_command("deep_deleted", Command::new(&copy), copy.clone());
    std::fs::remove_file(&copy).expect("delete the running binary");
    let thread = observe_thread(deep.pid, deep.tid);
    assert_deep_chain(&thread, "deleted binary");
}

/// The same binary on a tmpfs mounted only in the workload's own mount namespace.
#[test]
fn binary_in_another_mount_namespace_still_unwinds() {
    if !require_bpf() {
        return;
    }
    let scratch = ScratchDir::new("unwind-mntns");
    let source = workload_path_with("deep_omit_fp", DEEP_NOFP, NO_FRAME_POINTERS);
    let inner = scratch.0.join("hidden");
    let script = format!(
        "mkdir -p {inner} && mount -t tmpfs tmpfs {inner} && cp {source} {inner}/deep_ns && exec {inner}/deep_ns",
        inner = inner.display(),
        source = source.display()
    );
    let mut command = Command::new("unshare");
    command.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
    let deep = Workload::start_command("deep_ns", command, inner.join("deep_ns"));
    assert!(
        !inner.join("deep_ns").exists(),
        "the binary is visible outside the namespace"
    );
    let thread = observe_thread(deep.pid, deep.tid);
    assert_deep_chain(&thread, "other mount namespace");
}

/// Systemwide, a process started after probe: it gets its tables at its first sample, so
/// its hottest stack is whole; the samples taken before are counted in a notice (or there
/// were none).
#[test]
fn process_started_mid_run_gets_tables() {
    if !require_bpf() {
        return;
    }
    // Built before probe starts, so that the workload starts right on time.
    workload_path_with("deep_omit_fp", DEEP_NOFP, NO_FRAME_POINTERS);
    let observer = std::thread::spawn(|| spin_json(&["-d", "4", "--threshold", "50"]));
    std::thread::sleep(std::time::Duration::from_millis(1000));
    let deep = start_deep(false);
    let report = observer.join().expect("probe run");
    let thread = spinning_thread(&report, deep.tid).clone();
    assert_deep_chain(&thread, "started mid-run");
    let notices: Vec<&str> = report["notices"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let before = notices
        .iter()
        .find(|n| n.contains("before their process's unwind tables were built"));
    if let Some(before) = before {
        let count: u64 = before.split(' ').next().unwrap().parse().unwrap();
        // The first drain after its first sample builds them: a few samples, not seconds.
        assert!(count < 100, "{notices:?}");
    }
}

/// `--frame-pointers-only` leaves the tables out: the frame-pointer-less chain is cut
/// short and says so, with no frame beyond what the walk found.
#[test]
fn frame_pointers_only_marks_the_cut_stack_truncated() {
    if !require_bpf() {
        return;
    }
    let deep = start_deep(false);
    let pid = deep.pid.to_string();
    let report = spin_json(&["-d", WINDOW, "-p", &pid, "--frame-pointers-only"]);
    let thread = spinning_thread(&report, deep.tid).clone();
    let hottest = hottest_stack(&thread);
    assert_eq!(hottest["truncated"], true, "{thread:#}");
    let user = user_functions(hottest);
    assert_eq!(user.first(), Some(&"level5"), "{thread:#}");
    assert!(!user.contains(&"start_thread"), "{thread:#}");
}
