//! Python workloads: pyenv's interpreters, the scripts in `workloads/py_*.py`, the Python
//! frames of probe's report, and py-spy as an outside reference for them.
//!
//! Interpreters come from pyenv (`$PYENV_ROOT` or `~/.pyenv`, `versions/3.X.*`). A missing
//! one skips its test, except under `CI=true`, where it fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

use crate::workload::Workload;

/// The py-spy release the tests install and compare against.
pub const PY_SPY_VERSION: &str = "0.4.3";

fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// `$PYENV_ROOT`, else `~/.pyenv`.
pub fn pyenv_root() -> PathBuf {
    match std::env::var_os("PYENV_ROOT") {
        Some(root) => PathBuf::from(root),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".pyenv"),
    }
}

/// `versions/3.<minor>.*/bin/python3.<minor>` under the pyenv root, newest patch first.
pub fn interpreter(minor: u8) -> Option<PathBuf> {
    let prefix = format!("3.{minor}.");
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(pyenv_root().join("versions"))
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let patch = name.strip_prefix(&prefix)?.parse().ok()?;
            let bin = entry.path().join(format!("bin/python3.{minor}"));
            bin.exists().then_some((patch, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// The interpreter for 3.`minor`; `None` (after saying why) when the test should skip.
pub fn require_interpreter(minor: u8) -> Option<PathBuf> {
    let python = interpreter(minor);
    if python.is_none() {
        assert!(
            !ci(),
            "CI=true but no pyenv CPython 3.{minor} under {}",
            pyenv_root().display()
        );
        eprintln!("skipping: no pyenv CPython 3.{minor}");
    }
    python
}

/// The path of the script `workloads/<name>`.
pub fn script_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("workloads")
        .join(name)
}

/// The 1-based line of script `name` ending with `# LINE <marker>`.
pub fn marker_line(name: &str, marker: &str) -> u64 {
    let path = script_path(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("failed to read {}: {e}", path.display()));
    let suffix = format!("# LINE {marker}");
    let index = text
        .lines()
        .position(|line| line.ends_with(&suffix))
        .unwrap_or_else(|| panic!("no {suffix:?} in {}", path.display()));
    index as u64 + 1
}

/// Starts `python workloads/<script> <args>` (which prints the ready line like the C
/// workloads); returns once it is ready.
pub fn start_python(python: &Path, script: &str, args: &[&str]) -> Workload {
    let mut command = Command::new(python);
    command.arg(script_path(script)).args(args);
    Workload::start_command(script, command, python.to_path_buf())
}

/// A stack's Python frames, innermost first.
pub fn python_frames(stack: &Value) -> Vec<&Value> {
    stack["frames"]
        .as_array()
        .expect("frames is an array")
        .iter()
        .filter(|frame| frame["kind"] == "python")
        .collect()
}

/// Function names of a stack's Python frames, innermost first (`?` when unnamed).
pub fn python_functions(stack: &Value) -> Vec<&str> {
    python_frames(stack)
        .into_iter()
        .map(|frame| frame["function"].as_str().unwrap_or("?"))
        .collect()
}

/// Asserts a Python frame (or a Python `loop_in`) has the documented fields: a function
/// name, the code object's file as both `module` and `file`, the bytecode offset as
/// `module_offset`, and a line or null.
pub fn check_python_frame(frame: &Value) {
    assert_eq!(frame["kind"], "python", "{frame:#}");
    assert!(frame["function"].is_string(), "function: {frame:#}");
    assert!(frame["file"].is_string(), "file: {frame:#}");
    assert_eq!(
        frame["module"], frame["file"],
        "module is the file: {frame:#}"
    );
    assert!(frame["module_offset"].is_u64(), "module_offset: {frame:#}");
    assert!(
        frame["line"].is_u64() || frame["line"].is_null(),
        "line: {frame:#}"
    );
}

/// Asserts the documented order of a stack's frames, innermost first: kernel frames, then
/// user and Python frames (never a kernel frame below a user or Python one); each frame has
/// a known kind and each Python frame the documented fields.
pub fn check_stack_order(stack: &Value) {
    let frames = stack["frames"].as_array().expect("frames is an array");
    let mut left_kernel = false;
    for frame in frames {
        match frame["kind"].as_str() {
            Some("kernel") => assert!(!left_kernel, "kernel frame below user code: {stack:#}"),
            Some("user") => left_kernel = true,
            Some("python") => {
                left_kernel = true;
                check_python_frame(frame);
            }
            _ => panic!("frame of unknown kind {frame} in {stack:#}"),
        }
    }
}

/// py-spy [`PY_SPY_VERSION`], installed from PyPI into `target/py-spy-venv` (a venv of
/// pyenv's 3.12) when it is not there yet. `None`, after saying why, when it cannot be had;
/// under `CI=true` that panics instead. Installed once per test process.
pub fn py_spy() -> Option<PathBuf> {
    static PY_SPY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match PY_SPY.get_or_init(install_py_spy) {
        Ok(bin) => Some(bin.clone()),
        Err(why) => {
            assert!(
                !ci(),
                "CI=true but py-spy {PY_SPY_VERSION} is unavailable: {why}"
            );
            eprintln!("skipping: py-spy {PY_SPY_VERSION} is unavailable: {why}");
            None
        }
    }
}

/// The workspace's target directory (`$CARGO_TARGET_DIR` or `<workspace>/target`).
pub(crate) fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("tests crate lives inside the workspace")
            .join("target"),
    }
}

/// Whether `bin` runs and says it is py-spy [`PY_SPY_VERSION`].
fn is_wanted_py_spy(bin: &Path) -> bool {
    Command::new(bin)
        .arg("--version")
        .output()
        .is_ok_and(|out| {
            out.status.success()
                && String::from_utf8_lossy(&out.stdout).trim() == format!("py-spy {PY_SPY_VERSION}")
        })
}

fn install_py_spy() -> Result<PathBuf, String> {
    let venv = target_dir().join("py-spy-venv");
    let bin = venv.join("bin/py-spy");
    if is_wanted_py_spy(&bin) {
        return Ok(bin);
    }
    let python = interpreter(12).ok_or("no pyenv CPython 3.12 to create its venv with")?;
    // A venv left half-made by an interrupted run is made again.
    if venv.exists() {
        std::fs::remove_dir_all(&venv)
            .map_err(|e| format!("cannot remove {}: {e}", venv.display()))?;
    }
    let mut create = Command::new(&python);
    create.args(["-m", "venv"]).arg(&venv);
    run_setup(create)?;
    let mut pip = Command::new(venv.join("bin/python"));
    pip.args([
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--quiet",
    ])
    .arg(format!("py-spy=={PY_SPY_VERSION}"));
    run_setup(pip)?;
    if is_wanted_py_spy(&bin) {
        Ok(bin)
    } else {
        Err(format!(
            "{} is not py-spy {PY_SPY_VERSION} after installing it",
            bin.display()
        ))
    }
}

fn run_setup(mut command: Command) -> Result<(), String> {
    let out = command
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
