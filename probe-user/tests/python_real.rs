//! The Python frame reader against the real CPython 3.8–3.13 interpreters installed by
//! pyenv (and 2.7/3.7 for the "unsupported" path).
//!
//! Each test process spins a named thread in known nested functions (through a generator
//! and two calls from C, `sorted` and `next`, which push shim frames on 3.12+), prints its pid, the
//! spinner's native thread id and "ready", then blocks on stdin; closing stdin ends it (it
//! is killed by pid as well). Reading another process's memory needs root: without it (and
//! without `CI=true`) the tests skip with a message; with `CI=true` missing interpreters or
//! privileges fail.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use blazesym::inspect::source::{Elf, Source};
use blazesym::inspect::Inspector;
use probe_user::python::code::CodeCache;
use probe_user::python::discover::{discover, DiscoverError};
use probe_user::python::elf;
use probe_user::python::frames::walk;
use probe_user::python::memory::LiveMemory;
use probe_user::python::offsets::PyLayout;
use probe_user::python::threads::find_thread;

mod common;

use common::{interpreter, is_root, require, Helper};

const SCRIPT: &str = r#"import os, sys, threading

entered = threading.Event()

def inner():
    entered.set()
    while True: x = 1  # LINE inner

def middle():
    inner()  # LINE middle

def produce():
    yield middle()  # LINE produce

def by_key(_):
    return next(produce())  # LINE by_key

def outer():
    return sorted([0], key=by_key)  # LINE outer

class Spinner:
    def run(self):
        outer()  # LINE run

t = threading.Thread(target=Spinner().run, name="spinner-X", daemon=True)
t.start()
entered.wait()
print(os.getpid(), t.native_id, "ready", flush=True)
sys.stdin.read()
"#;

fn write_script(dir: &Path) -> PathBuf {
    let path = dir.join("spinner.py");
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(SCRIPT.as_bytes()))
        .expect("write script");
    path
}

fn marker_line(marker: &str) -> u32 {
    let idx = SCRIPT
        .lines()
        .position(|l| l.ends_with(&format!("# LINE {marker}")))
        .unwrap();
    idx as u32 + 1
}

/// A fresh directory per call (tests run in parallel).
fn temp_dir(tag: &str) -> PathBuf {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let n = COUNT.fetch_add(1, Ordering::Relaxed);
    let name = format!("probe-python-{tag}-{}-{n}", std::process::id());
    let dir = std::env::temp_dir().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// (qualname, file, line) of the frames of the spinner of a 3.`minor` helper running
/// `script`.
///
/// With `lib_dir`, the interpreter loads its libpython from there (`LD_LIBRARY_PATH`), and
/// the directory is deleted once the helper is ready: discovery must then read the image
/// through `/proc/PID/map_files`.
fn spinner_frames(
    python: &Path,
    minor: u8,
    script: &Path,
    lib_dir: Option<&Path>,
) -> Vec<(String, String, Option<u32>)> {
    let mut cmd = Command::new(python);
    cmd.arg(script);
    if let Some(dir) = lib_dir {
        cmd.env("LD_LIBRARY_PATH", dir);
    }
    let helper = Helper::spawn(&mut cmd);
    if let Some(dir) = lib_dir {
        std::fs::remove_dir_all(dir).unwrap();
        let maps = std::fs::read_to_string(format!("/proc/{}/maps", helper.child.id())).unwrap();
        let deleted = format!("{}/libpython3.{minor}.so.1.0 (deleted)", dir.display());
        assert!(
            maps.contains(&deleted),
            "the copy in {dir:?} is not mapped: {maps}"
        );
    }
    let fields: Vec<&str> = helper.first_line.split_whitespace().collect();
    assert_eq!(
        fields.get(2),
        Some(&"ready"),
        "helper said {:?}",
        helper.first_line
    );
    let pid: u32 = fields[0].parse().unwrap();
    let tid: u32 = fields[1].parse().unwrap();
    assert_eq!(pid, helper.child.id());

    let proc = discover(pid).unwrap_or_else(|e| panic!("discover 3.{minor}: {e:?}"));
    assert_eq!(proc.version, (3, minor));
    if minor >= 13 {
        // Runtime-read _Py_DebugOffsets must agree with the headers.
        assert_eq!(Some(proc.layout), PyLayout::table_row(3, minor));
    }
    let mem = LiveMemory::new(pid);
    let threads = proc.threads(&mem).unwrap();
    assert!(threads.len() >= 2, "3.{minor}: threads {threads:?}");
    assert!(
        threads.iter().any(|t| t.tid == Some(pid)),
        "3.{minor}: main thread {threads:?}"
    );
    let thread = find_thread(&proc.layout, &mem, pid, proc.runtime_addr, tid)
        .unwrap()
        .unwrap_or_else(|| panic!("3.{minor}: no thread state for tid {tid}: {threads:?}"));
    let walk = walk(&proc.layout, &mem, thread.tstate).unwrap();
    assert_eq!(walk.truncated, None, "3.{minor}: {walk:?}");
    // One shim per eval-loop entry on 3.12+: thread bootstrap, `self._target(*args,
    // **kwargs)` (a bound method through CALL_FUNCTION_EX), `sorted` → key, `next` → generator.
    let shims = if minor >= 12 { 4 } else { 0 };
    assert_eq!(walk.shims_skipped, shims, "3.{minor}: {walk:?}");
    let mut cache = CodeCache::new();
    let named = walk
        .frames
        .iter()
        .map(|f| {
            let info = cache.get(pid, &proc.layout, &mem, f.code).unwrap();
            (
                info.qualname.clone(),
                info.filename.clone(),
                info.line_for(f.offset),
            )
        })
        .collect();
    // The thread keeps running while it is read: every walk must agree.
    for _ in 0..50 {
        let again = probe_user::python::frames::walk(&proc.layout, &mem, thread.tstate).unwrap();
        assert_eq!(again.frames.len(), walk.frames.len(), "3.{minor}");
        for (a, b) in again.frames.iter().zip(&walk.frames) {
            let info = cache.get(pid, &proc.layout, &mem, a.code).unwrap();
            assert_eq!(a.code, b.code, "3.{minor}");
            let (la, lb) = (info.line_for(a.offset), info.line_for(b.offset));
            assert_eq!(
                la, lb,
                "3.{minor}: {} offsets {} {}",
                info.qualname, a.offset, b.offset
            );
        }
    }
    // The cache hands back the same (re-validated) entries.
    let again = cache
        .get(pid, &proc.layout, &mem, walk.frames[0].code)
        .unwrap();
    assert_eq!(again.name, "inner");
    named
}

fn check_spinner(minor: u8) {
    let python = interpreter(3, minor);
    if !require(python.is_some(), &format!("no pyenv CPython 3.{minor}")) {
        return;
    }
    if !require(is_root(), "not root: cannot read other processes' memory") {
        return;
    }
    check_spinner_with(&python.unwrap(), minor, None);
}

fn check_spinner_with(python: &Path, minor: u8, lib_dir: Option<&Path>) {
    let dir = temp_dir(&format!("3{minor}"));
    let script = write_script(&dir);
    let frames = spinner_frames(python, minor, &script, lib_dir);
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("3.{minor}: {frames:?}");
    let file = script.to_string_lossy().into_owned();
    let run = if minor >= 11 { "Spinner.run" } else { "run" };
    let expected = [
        ("inner", "inner"),
        ("middle", "middle"),
        ("produce", "produce"),
        ("by_key", "by_key"),
        ("outer", "outer"),
        (run, "run"),
    ];
    assert!(frames.len() >= expected.len(), "3.{minor}: {frames:?}");
    for ((qualname, marker), got) in expected.iter().zip(&frames) {
        let want = (
            qualname.to_string(),
            file.clone(),
            Some(marker_line(marker)),
        );
        assert_eq!(*got, want, "3.{minor}: all frames {frames:#?}");
    }
    // Lines in the standard library, checked against its source text.
    let stdlib_call = |name: &str, text: &str| {
        let (_, file, line) = frames
            .iter()
            .find(|f| f.1.ends_with("/threading.py") && f.0.ends_with(name))
            .unwrap_or_else(|| panic!("3.{minor}: no threading.py {name} in {frames:#?}"));
        let source = std::fs::read_to_string(file).unwrap();
        let got = source.lines().nth(line.unwrap() as usize - 1).unwrap();
        assert!(got.contains(text), "3.{minor}: {file}:{line:?} is {got:?}");
    };
    stdlib_call("run", "self._target(");
    stdlib_call("_bootstrap_inner", "self.run()");
    stdlib_call("_bootstrap", "self._bootstrap_inner()");
}

#[test]
fn spinner_3_8() {
    check_spinner(8);
}

#[test]
fn spinner_3_9() {
    check_spinner(9);
}

#[test]
fn spinner_3_10() {
    check_spinner(10);
}

#[test]
fn spinner_3_11() {
    check_spinner(11);
}

#[test]
fn spinner_3_12() {
    check_spinner(12);
}

#[test]
fn spinner_3_13() {
    check_spinner(13);
}

/// Debian's /usr/bin/python3 has libpython linked into a non-PIE executable: discovery
/// takes the executable path and a zero load bias. Skipped where it is absent.
#[test]
fn system_python_executable() {
    let python = Path::new("/usr/bin/python3");
    let minor = Command::new(python)
        .args(["-c", "import sys; print(sys.version_info[1])"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse::<u8>().ok());
    let Some(minor) = minor.filter(|m| (8..=13).contains(m)) else {
        eprintln!("skipping: no /usr/bin/python3 of version 3.8-3.13");
        return;
    };
    if require(is_root(), "not root") {
        check_spinner_with(python, minor, None);
    }
}

/// The libpython the process mapped was deleted (as in an upgrade while it runs).
#[test]
fn deleted_libpython() {
    let minor = 12;
    let python = interpreter(3, minor);
    if !require(python.is_some(), "no pyenv CPython 3.12") || !require(is_root(), "not root") {
        return;
    }
    let python = python.unwrap();
    let lib_name = format!("libpython3.{minor}.so.1.0");
    let lib = python.parent().unwrap().join("../lib").join(&lib_name);
    let lib_dir = temp_dir("lib");
    std::fs::copy(&lib, lib_dir.join(&lib_name)).unwrap();
    check_spinner_with(&python, minor, Some(&lib_dir));
}

/// 3.12+ put `_PyRuntime` in its own `.PyRuntime` section: the fallback used when the
/// symbol is missing must find the same address.
#[test]
fn pyruntime_section_matches_symbol() {
    for minor in [12, 13] {
        let Some(python) = interpreter(3, minor) else {
            require(false, &format!("no pyenv CPython 3.{minor}"));
            continue;
        };
        let lib = python
            .parent()
            .unwrap()
            .join(format!("../lib/libpython3.{minor}.so.1.0"));
        let file = std::fs::File::open(&lib).unwrap();
        let section = elf::section_addr(&file, ".PyRuntime").unwrap();
        let src = Source::Elf(Elf::new(&lib));
        let inspector = Inspector::new();
        let found = inspector.lookup(&src, &["_PyRuntime"]).unwrap();
        assert_eq!(section, Some(found[0][0].addr), "3.{minor}");
    }
}

#[test]
fn non_python_process_is_not_python() {
    if !require(is_root(), "not root") {
        return;
    }
    let helper = Helper::spawn(Command::new("sh").args(["-c", "echo ready; exec cat"]));
    assert_eq!(helper.first_line.trim(), "ready");
    let err = discover(helper.child.id()).unwrap_err();
    assert!(matches!(err, DiscoverError::NotPython { .. }), "{err:?}");
}

fn check_unsupported(major: u8, minor: u8) {
    let python = interpreter(major, minor);
    if !require(
        python.is_some(),
        &format!("no pyenv CPython {major}.{minor}"),
    ) {
        return;
    }
    if !require(is_root(), "not root") {
        return;
    }
    let code = "import sys; sys.stdout.write('ready\\n'); sys.stdout.flush(); sys.stdin.read()";
    let helper = Helper::spawn(Command::new(python.unwrap()).args(["-c", code]));
    assert_eq!(helper.first_line.trim(), "ready");
    let err = discover(helper.child.id()).unwrap_err();
    match err {
        DiscoverError::Unsupported { version, .. } => assert_eq!(version, (major, minor)),
        other => panic!("{major}.{minor}: {other:?}"),
    }
}

#[test]
fn python_3_7_is_unsupported() {
    check_unsupported(3, 7);
}

#[test]
fn python_2_7_is_unsupported() {
    check_unsupported(2, 7);
}
