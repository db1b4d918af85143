//! One module per command: each picks its kernel programs, how the observation ends, its
//! analysis and its output, and runs them on the shared pipeline
//! (observe -> collect -> symbolize -> analysis -> output).

pub mod dump;
pub mod record;
pub mod spin;
pub mod watch;

use anyhow::Context as _;

use crate::collect::EndReason;
use crate::loader::Probe;
use crate::model::Recording;
use crate::symbolize::{self, KernelNames};

/// A single-threaded async runtime: the pipeline is one task plus timers and signals.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")
}

/// Registers for Ctrl-C and SIGTERM now; the returned future resolves on either, with its
/// name: the observation ends early and what was collected is still reported.
pub(crate) fn stop_signal() -> impl std::future::Future<Output = EndReason> {
    use tokio::signal::unix::{signal, SignalKind};
    let terminate = signal(SignalKind::terminate());
    let interrupt = signal(SignalKind::interrupt());
    async move {
        match (terminate, interrupt) {
            (Ok(mut terminate), Ok(mut interrupt)) => {
                tokio::select! {
                    _ = terminate.recv() => Some("SIGTERM".to_owned()),
                    _ = interrupt.recv() => Some("Ctrl-C".to_owned()),
                }
            }
            // Without handlers the default action (exit) applies; the kernel closes the
            // program links with the process, so nothing stays attached.
            _ => std::future::pending().await,
        }
    }
}

/// Names the kernel frames of `recording` while `probe`'s programs are still loaded (a
/// sample can land inside one, and the kernel names a BPF program only while it is
/// loaded), then unloads them.
pub(crate) fn name_kernel_frames(recording: &Recording, mut probe: Probe) -> KernelNames {
    let names =
        symbolize::KernelNames::look_up(recording, |addrs| probe.name_kernel_addresses(addrs));
    drop(probe);
    names
}
