//! Installs the outside programs that the integration tests check probe's output files
//! with, only when they are missing: Go's `pprof` (reads the pprof files), Chromium (opens
//! the SVG flamegraphs and the speedscope app), Prometheus (scrapes `probe watch`'s metrics), py-spy (reads the Python stacks `probe dump` shows), gdb (unwinds the workloads' native stacks
//! for comparison; libc6-dbg gives it and probe the names of libc's internal functions
//! such as `start_thread`), and from npm the speedscope app with its file-format schema and Ajv to
//! validate against it. Everything they print goes to
//! stderr: `cargo xtask test` reads the tests' results from its stdout.

use std::{
    io,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Result};

use crate::{run, setup::is_root, workspace_root};

/// Debian packages with a file that shows each is installed.
const APT_PACKAGES: [(&str, &str); 6] = [
    ("golang-go", "/usr/lib/go/bin/go"),
    // Scrapes `probe watch --listen`'s /metrics (the test starts its own, on loopback).
    ("prometheus", "/usr/bin/prometheus"),
    ("chromium", "/usr/bin/chromium"),
    ("npm", "/usr/bin/npm"),
    ("gdb", "/usr/bin/gdb"),
    // Its files are all under versioned build-id paths but this one.
    ("libc6-dbg", "/usr/share/doc/libc6-dbg/copyright"),
];
/// npm packages, pinned: the schema and the app are what the tests check against, so a
/// new release must be a deliberate change (tests/src/peers.rs reads the same folder).
const NPM_PACKAGES: [(&str, &str); 2] = [("speedscope", "1.25.0"), ("ajv", "8.20.0")];

/// py-spy, from PyPI into a venv of Debian's python3 at `target/peers/py-spy-venv`: `probe
/// dump`'s Python frames are checked against `py-spy dump`. The bench's version.
const PY_SPY_VERSION: &str = crate::bench::PY_SPY_VERSION;

/// Makes sure every peer the integration tests use is installed; idempotent.
pub fn install() -> Result<()> {
    ensure_apt_packages()?;
    ensure_npm_packages()?;
    ensure_py_spy()
}

fn ensure_py_spy() -> Result<()> {
    let venv = peers_dir().join("py-spy-venv");
    let py_spy = venv.join("bin/py-spy");
    let version = || {
        let output = Command::new(&py_spy).arg("--version").output().ok()?;
        let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        text.strip_prefix("py-spy ").map(str::to_owned)
    };
    if version().as_deref() == Some(PY_SPY_VERSION) {
        return Ok(());
    }
    eprintln!(
        "xtask: installing test peer py-spy {PY_SPY_VERSION} from PyPI into {}",
        venv.display()
    );
    std::fs::create_dir_all(peers_dir())?;
    run(to_stderr(
        Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(&venv),
    ))?;
    run(to_stderr(
        Command::new(venv.join("bin/python"))
            .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
            .arg(format!("py-spy=={PY_SPY_VERSION}")),
    ))?;
    match version() {
        Some(found) if found == PY_SPY_VERSION => Ok(()),
        found => bail!(
            "{} is not py-spy {PY_SPY_VERSION} after installing it (it reports {})",
            py_spy.display(),
            found.as_deref().unwrap_or("nothing")
        ),
    }
}

fn ensure_apt_packages() -> Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .filter(|(_, marker)| !Path::new(marker).exists())
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "the integration tests' peers are missing and installing them needs root: \
             run `sudo cargo xtask test`, or `apt-get install {}`",
            missing.join(" ")
        );
    }
    eprintln!("xtask: installing test peers: {}", missing.join(" "));
    run(to_stderr(Command::new("apt-get").args(["update", "-q"])))?;
    run(to_stderr(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    ))
}

fn ensure_npm_packages() -> Result<()> {
    let prefix = peers_dir();
    let missing: Vec<String> = NPM_PACKAGES
        .iter()
        .filter(|(name, version)| installed_npm_version(&prefix, name).as_deref() != Some(version))
        .map(|(name, version)| format!("{name}@{version}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!(
        "xtask: installing test peers from npm into {}: {}",
        prefix.display(),
        missing.join(" ")
    );
    std::fs::create_dir_all(&prefix)?;
    run(to_stderr(
        Command::new("npm")
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--save-exact",
                "--prefix",
            ])
            .arg(&prefix)
            .args(&missing),
    ))?;
    if let Some((name, _)) = NPM_PACKAGES
        .iter()
        .find(|(name, version)| installed_npm_version(&prefix, name).as_deref() != Some(version))
    {
        bail!(
            "npm install finished but {name} is not in {}",
            prefix.display()
        );
    }
    Ok(())
}

/// `target/peers`, where the npm packages live (`node_modules/` below it).
fn peers_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir).join("peers"),
        None => workspace_root().join("target/peers"),
    }
}

/// The `version` field of an installed npm package's `package.json`.
fn installed_npm_version(prefix: &Path, name: &str) -> Option<String> {
    let manifest = prefix.join("node_modules").join(name).join("package.json");
    let text = std::fs::read_to_string(manifest).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["version"].as_str().map(str::to_owned)
}

/// Sends a command's stdout to our stderr.
fn to_stderr(command: &mut Command) -> &mut Command {
    command.stdout(Stdio::from(io::stderr()))
}
