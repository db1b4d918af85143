//! Builds the kernel programs (probe-ebpf) for bpfel-unknown-none so that a plain
//! `cargo build` produces a complete `probe`. The eBPF crate needs a compiler with a BPF
//! `core`; `cargo xtask setup` links Debian's one as the rustup toolchain named below.

use std::env;

/// Rustup toolchain used for the eBPF crate; `cargo xtask setup` creates it.
const DEFAULT_BPF_TOOLCHAIN: &str = "probe-bpf";

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    if env::var_os("AYA_BUILD_SKIP").is_some_and(|skip| skip == "1" || skip == "true") {
        // Unit tests and lints need no kernel programs: leave an empty object, which the
        // loader refuses with a clear error.
        let out_dir = env::var("OUT_DIR")?;
        std::fs::write(format!("{out_dir}/probe"), [])?;
        println!("cargo:warning=AYA_BUILD_SKIP is set: building probe without its eBPF programs");
        return Ok(());
    }
    println!("cargo:rerun-if-env-changed=PROBE_BPF_TOOLCHAIN");
    println!("cargo:rerun-if-changed=../probe-common/src");
    let toolchain =
        env::var("PROBE_BPF_TOOLCHAIN").unwrap_or_else(|_| DEFAULT_BPF_TOOLCHAIN.to_owned());
    // aya-ebpf uses `#![feature(asm_experimental_arch)]`; allow unstable features for that
    // crate alone. Naming a crate (not "1") also keeps aya-build from adding -Z build-std,
    // which needs rust-src that Debian's compiler does not have (and does not need).
    if env::var_os("RUSTC_BOOTSTRAP").is_none() {
        // SAFETY-free in edition 2021: build scripts are single threaded at this point.
        env::set_var("RUSTC_BOOTSTRAP", "aya_ebpf");
    }
    let root_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../probe-ebpf");
    let package = aya_build::Package {
        name: "probe-ebpf",
        root_dir,
        ..Default::default()
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::Custom(&toolchain)).map_err(|err| {
        anyhow::anyhow!(
            "building the eBPF programs with rustup toolchain `{toolchain}` failed \
             (run `cargo xtask setup` to install it): {err:#}"
        )
    })
}
