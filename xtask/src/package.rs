//! `cargo xtask package`: the Debian package of probe, holding the release binary and the
//! probe-watch unit (packaging/probe-watch.service), made with cargo-deb from the
//! `[package.metadata.deb]` section of probe-user/Cargo.toml.
//!
//! cargo-deb runs with `--no-build` on the binary [`build_release_probe`] made, so the
//! package holds exactly what `cargo xtask spin` runs, built with the same settings.
//! cargo-deb itself is pinned and installed into the target directory on first use, so it
//! never replaces one the user installed; dpkg-shlibdeps (Debian's dpkg-dev) derives the
//! package's dependencies from the binary.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _, Result};

use crate::{build_release_probe, cargo, run, run_to_stderr, setup::is_root, workspace_root};

/// Pinned: the package's layout and maintainer scripts are cargo-deb's, so a new release
/// must be a deliberate change. 3.8.0 needs rustc >= 1.85.
const CARGO_DEB_VERSION: &str = "3.8.0";
/// What `dpkg-shlibdeps` comes with.
const SHLIBDEPS: (&str, &str) = ("dpkg-dev", "/usr/bin/dpkg-shlibdeps");

/// Builds probe in release and its Debian package; returns the package's path
/// (`target/debian/probe_<version>_<arch>.deb`).
pub fn build() -> Result<PathBuf> {
    build_release_probe()?;
    ensure_shlibdeps()?;
    let cargo_deb = ensure_cargo_deb()?;
    let out_dir = target_dir().join("debian");
    let mut command = Command::new(&cargo_deb);
    command
        .args(["--package", "probe-user", "--no-build", "--output"])
        .arg(&out_dir);
    let deb = run_for_last_line(&mut command)?;
    let deb = PathBuf::from(deb);
    if !deb.is_file() {
        bail!(
            "cargo-deb reported {} but there is no such file",
            deb.display()
        );
    }
    eprintln!("xtask: built {}", deb.display());
    Ok(deb)
}

/// `$CARGO_TARGET_DIR`, else `<workspace>/target` (where cargo-deb finds the binary too).
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

/// Without dpkg-shlibdeps cargo-deb only warns and writes a package with no `Depends`,
/// which would install anywhere and fail at run time: installs it instead (as root), or
/// says how.
fn ensure_shlibdeps() -> Result<()> {
    let (package, marker) = SHLIBDEPS;
    if Path::new(marker).exists() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "the Debian package's dependencies are derived with {marker}, which is missing \
             and installing it needs root: run `sudo cargo xtask package`, or \
             `apt-get install {package}`"
        );
    }
    eprintln!("xtask: installing {package} (dpkg-shlibdeps) for the package's dependencies");
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends", package])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(std::io::stderr()))
}

/// The pinned cargo-deb, installed under the target directory unless it is already there.
fn ensure_cargo_deb() -> Result<PathBuf> {
    let root = target_dir().join("tools");
    let binary = root.join("bin/cargo-deb");
    if installed_version(&binary).as_deref() == Some(CARGO_DEB_VERSION) {
        return Ok(binary);
    }
    eprintln!(
        "xtask: installing cargo-deb {CARGO_DEB_VERSION} into {} (about a minute)",
        root.display()
    );
    run_to_stderr(
        cargo()
            .args(["install", "cargo-deb", "--locked", "--version"])
            .arg(format!("={CARGO_DEB_VERSION}"))
            .arg("--root")
            .arg(&root)
            // Its own temporary target directory, not ours: nothing of it is reused.
            .env_remove("CARGO_TARGET_DIR"),
    )?;
    match installed_version(&binary) {
        Some(version) if version == CARGO_DEB_VERSION => Ok(binary),
        found => bail!(
            "cargo install finished but {} is {found:?}, not cargo-deb {CARGO_DEB_VERSION}",
            binary.display()
        ),
    }
}

/// The version `cargo-deb --version` prints (`cargo-deb 3.8.0`); `None` if it does not run.
fn installed_version(binary: &Path) -> Option<String> {
    let output = Command::new(binary)
        .arg("--version")
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    text.trim()
        .strip_prefix("cargo-deb ")
        .map(|version| version.trim().to_owned())
}

/// Runs `command` in the workspace root with its stderr shown; returns the last line of its
/// stdout (cargo-deb prints the package's path last), echoing the rest to our stderr.
fn run_for_last_line(command: &mut Command) -> Result<String> {
    let output = command
        .current_dir(workspace_root())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("failed to start {command:?}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        eprint!("{stdout}");
        bail!("{command:?} failed ({})", output.status);
    }
    let mut lines: Vec<&str> = stdout
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    let last = lines
        .pop()
        .with_context(|| format!("{command:?} printed nothing on stdout"))?;
    for line in lines {
        eprintln!("{line}");
    }
    Ok(last.trim().to_owned())
}
