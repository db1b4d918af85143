//! Installs the outside programs that the integration tests check probe's output files
//! with, only when they are missing: Go's `pprof` (reads the pprof files), Chromium (opens
//! the SVG flamegraphs and the speedscope app), Prometheus (scrapes `probe watch`'s metrics), gdb (unwinds the workloads' native stacks
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

/// Makes sure every peer the integration tests use is installed; idempotent.
pub fn install() -> Result<()> {
    ensure_apt_packages()?;
    ensure_npm_packages()
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
