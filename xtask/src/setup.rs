//! Installs what building the kernel programs needs, only when it is missing. See
//! ../shared/toolchain.md for why this path: rustup cannot fetch `rust-src` here, so the
//! eBPF crate is built with Debian's rustc-web and its prebuilt BPF `core`, linked by a
//! bpf-linker built against the same LLVM major (22).

use std::{
    env,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _, Result};

// Every step's stdout goes to stderr: `cargo xtask spin -- --json | jq` must see only the
// report, even on the run that installs the toolchain.
use crate::run_to_stderr as run;

/// Debian packages: the compiler pair with a BPF `core`, and what bpf-linker builds against.
const APT_PACKAGES: [&str; 6] = [
    "rustc-web",
    "cargo-web",
    "libstd-rust-web-dev-bpf",
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
];
/// Files whose presence shows the packages above are installed.
const APT_MARKERS: [&str; 3] = [
    "/usr/bin/rustc",
    "/usr/lib/rustlib/bpfel-unknown-none",
    "/usr/lib/llvm-22/bin/llvm-config",
];
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
const BPF_LINKER_VERSION: &str = "0.13.0";
/// Rustup toolchain name that probe-user/build.rs builds the eBPF crate with.
const BPF_TOOLCHAIN: &str = "probe-bpf";

/// Makes sure `cargo build` can build the eBPF programs; prints what it installs.
pub fn ensure_toolchain() -> Result<()> {
    if let Ok(custom) = env::var("PROBE_BPF_TOOLCHAIN") {
        // The user brings their own (e.g. nightly with rust-src); only the linker is ours.
        eprintln!("xtask: using the eBPF toolchain PROBE_BPF_TOOLCHAIN={custom}");
        return ensure_bpf_linker();
    }
    ensure_apt_packages()?;
    ensure_bpf_linker()?;
    ensure_rustup_toolchain()
}

fn ensure_apt_packages() -> Result<()> {
    if APT_MARKERS.iter().all(|marker| Path::new(marker).exists()) {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "the eBPF toolchain is missing and installing it needs root: run `sudo cargo xtask setup`, \
             or `apt-get install {}`",
            APT_PACKAGES.join(" ")
        );
    }
    eprintln!(
        "xtask: installing the eBPF toolchain: {}",
        APT_PACKAGES.join(" ")
    );
    run(Command::new("apt-get").args(["update", "-q"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(APT_PACKAGES)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn ensure_bpf_linker() -> Result<()> {
    if succeeds(Command::new("bpf-linker").arg("--version")) {
        return Ok(());
    }
    eprintln!("xtask: building bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (about a minute)");
    // bpf-linker is a build tool: use the default toolchain, never this workspace's target dir.
    run(Command::new("cargo")
        .args([
            "install",
            "bpf-linker",
            "--locked",
            "--version",
            BPF_LINKER_VERSION,
        ])
        .args(["--no-default-features", "--features", "llvm-22"])
        .env("LLVM_PREFIX", LLVM_PREFIX)
        .env("LLVM_SYS_221_PREFIX", LLVM_PREFIX)
        .env_remove("CARGO_TARGET_DIR"))?;
    if !succeeds(Command::new("bpf-linker").arg("--version")) {
        bail!("bpf-linker was installed but is not on PATH: add ~/.cargo/bin to PATH");
    }
    Ok(())
}

/// Links Debian's compiler as a rustup toolchain, the form aya-build needs (`rustup run
/// NAME cargo build ...`).
fn ensure_rustup_toolchain() -> Result<()> {
    if succeeds(Command::new("rustup").args(["run", BPF_TOOLCHAIN, "rustc", "--version"])) {
        return Ok(());
    }
    let dir = toolchain_dir()?;
    eprintln!(
        "xtask: linking Debian's rustc as rustup toolchain `{BPF_TOOLCHAIN}` ({})",
        dir.display()
    );
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).with_context(|| format!("failed to create {}", bin.display()))?;
    for (link, target) in [
        (bin.join("rustc"), "/usr/bin/rustc"),
        (bin.join("cargo"), "/usr/bin/cargo"),
        (dir.join("lib"), "/usr/lib"),
    ] {
        replace_symlink(Path::new(target), &link)?;
    }
    run(Command::new("rustup")
        .args(["toolchain", "link", BPF_TOOLCHAIN])
        .arg(&dir))
}

fn toolchain_dir() -> Result<PathBuf> {
    let home = env::var_os("HOME").context("HOME is not set")?;
    Ok(PathBuf::from(home).join(".local/share/probe-bpf-toolchain"))
}

fn replace_symlink(target: &Path, link: &Path) -> Result<()> {
    if link.symlink_metadata().is_ok() {
        std::fs::remove_file(link)
            .with_context(|| format!("failed to replace {}", link.display()))?;
    }
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("failed to link {} -> {}", link.display(), target.display()))
}

fn succeeds(command: &mut Command) -> bool {
    command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Whether we run as root (apt needs it).
pub fn is_root() -> bool {
    // `id -u` avoids a libc dependency in xtask.
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.starts_with(b"0\n"))
}
