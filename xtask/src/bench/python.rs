//! The Python side of the bench's setup: pyenv's CPython 3.12, which runs the Python workload,
//! and py-spy, installed from PyPI into a venv of that interpreter when it is missing.

use std::{
    ffi::OsString,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};

use super::plan::Paths;
use crate::run as run_command;

/// The CPython minor version that runs `bench/py_loop.py`; pyenv has 3.8–3.13 on every
/// machine of this project's kind.
const PYTHON_MINOR: &str = "3.12";
/// The py-spy the Python workload is compared against.
pub const PY_SPY_VERSION: &str = "0.4.3";

/// The newest pyenv CPython 3.12 (`$PYENV_ROOT`, else `~/.pyenv`): its `python3.12`.
pub(super) fn find_python() -> Result<PathBuf> {
    let versions = pyenv_root()?.join("versions");
    let newest = fs::read_dir(&versions)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter_map(|name| Some((patch_of(&name)?, name)))
        .map(|(patch, name)| {
            let bin = versions
                .join(name)
                .join(format!("bin/python{PYTHON_MINOR}"));
            (patch, bin)
        })
        .filter(|(_, bin)| bin.is_file())
        .max_by_key(|(patch, _)| *patch);
    match newest {
        Some((_, bin)) => Ok(bin),
        None => bail!(
            "the Python workload needs pyenv's CPython {PYTHON_MINOR}, and there is no \
             {}/{PYTHON_MINOR}.*/bin/python{PYTHON_MINOR} (set PYENV_ROOT, or `pyenv install \
             {PYTHON_MINOR}`)",
            versions.display()
        ),
    }
}

fn pyenv_root() -> Result<PathBuf> {
    let non_empty =
        |name: &str| std::env::var_os(name).filter(|value: &OsString| !value.is_empty());
    if let Some(root) = non_empty("PYENV_ROOT") {
        return Ok(PathBuf::from(root));
    }
    let home = non_empty("HOME").context(
        "neither PYENV_ROOT nor HOME is set: cannot find pyenv's CPython for the Python workload",
    )?;
    Ok(PathBuf::from(home).join(".pyenv"))
}

/// The patch number of a pyenv version directory named `3.12.<patch>`.
fn patch_of(version: &str) -> Option<u32> {
    version
        .strip_prefix(PYTHON_MINOR)?
        .strip_prefix('.')?
        .parse()
        .ok()
}

/// Installs py-spy into the bench's venv unless that version is there already.
pub(super) fn ensure_py_spy(python: &Path, paths: &Paths) -> Result<()> {
    let py_spy = paths.py_spy();
    if installed_version(&py_spy).as_deref() == Some(PY_SPY_VERSION) {
        return Ok(());
    }
    let venv = paths.py_spy_venv();
    eprintln!(
        "xtask: installing py-spy {PY_SPY_VERSION} from PyPI into {}",
        venv.display()
    );
    // --clear: a venv left by another interpreter or an older py-spy is replaced whole.
    run_command(
        Command::new(python)
            .args(["-m", "venv", "--clear"])
            .arg(&venv),
    )?;
    run_command(
        Command::new(venv.join("bin/python"))
            .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
            .arg(format!("py-spy=={PY_SPY_VERSION}")),
    )?;
    match installed_version(&py_spy) {
        Some(version) if version == PY_SPY_VERSION => Ok(()),
        found => bail!(
            "{} is not py-spy {PY_SPY_VERSION} after installing it (it reports {})",
            py_spy.display(),
            found.as_deref().unwrap_or("nothing")
        ),
    }
}

/// What `py-spy --version` says (`py-spy 0.4.3`), without the name; `None` when it won't run.
fn installed_version(py_spy: &Path) -> Option<String> {
    let output = Command::new(py_spy).arg("--version").output().ok()?;
    if !output.status.success() {
        return None;
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    Some(stdout.trim().strip_prefix("py-spy ")?.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_3_12_patch_releases_count() {
        assert_eq!(patch_of("3.12.1"), Some(1));
        assert_eq!(patch_of("3.12.10"), Some(10));
        assert_eq!(patch_of("3.12"), None);
        assert_eq!(patch_of("3.12.0a1"), None);
        assert_eq!(patch_of("3.1.2"), None);
        assert_eq!(patch_of("3.13.0"), None);
    }
}
