//! The `probe` command line: parse, check, load, observe, symbolize, report.

use std::{io::Write, process::ExitCode, time::Instant};

use anyhow::Context as _;
use clap::Parser as _;
use probe_user::{
    cli::{Cli, Command, SpinOptions},
    collect, diag,
    loader::{LoadOptions, Probe},
    model::Recording,
    preflight, python, report, symbolize,
};

fn main() -> ExitCode {
    let started = Instant::now();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Spin(args) => spin(&SpinOptions::from(args), started),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line: the context chain joined, so scripts and people both get the cause.
            diag!("probe: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn spin(options: &SpinOptions, started: Instant) -> anyhow::Result<()> {
    preflight::check(&options.pids)?;
    let report_options = report::SpinOptions {
        threshold_pct: options.threshold_pct,
        top: options.top,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    let (recording, attached, kernel_names) = runtime.block_on(async {
        // Registered before loading: a Ctrl-C while attaching ends the window at once and
        // still prints a (partial, marked) report.
        let stop = stop_signal();
        let mut probe = Probe::load(&LoadOptions {
            pids: options.pids.clone(),
            frequency_hz: options.frequency_hz,
        })?;
        let attached = started.elapsed();
        let recording = collect::record(
            &mut probe,
            options.duration,
            options.frequency_hz,
            &options.pids,
            stop,
        )
        .await?;
        if let Some(path) = &options.dump_python_frames {
            dump_python_frames(&recording, path)?;
        }
        let recording = keep_stacks_of_shown_threads(recording, &report_options);
        // Before the programs go: a sample can land inside one of them (`sys_enter` runs
        // in every syscall), and the kernel names a BPF program only while it is loaded.
        let kernel_names =
            symbolize::KernelNames::look_up(&recording, |addrs| probe.name_kernel_addresses(addrs));
        drop(probe);
        anyhow::Ok((recording, attached, kernel_names))
    })?;
    if options.self_stats {
        let stats = serde_json::json!({
            "attach_secs": attached.as_secs_f64(),
            "programs": recording.program_stats,
            "kernel_names": kernel_names.describe(),
        });
        diag!("{stats}");
    }
    let profile = symbolize::symbolize_with(recording, kernel_names);
    let report = report::analyze(&profile, &report_options);
    let text = if options.json {
        report::render_json(&report)
    } else {
        report::render_text(&report)
    };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .context("failed to write the report to stdout")
}

/// Writes the dump next to `path` and renames it into place: never a half-written file.
fn dump_python_frames(recording: &Recording, path: &std::path::Path) -> anyhow::Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(format!(".partial.{}", std::process::id()));
    let partial = std::path::PathBuf::from(partial);
    let written = std::fs::File::create(&partial)
        .and_then(|file| python::dump::write(recording, &mut std::io::BufWriter::new(file)))
        .and_then(|()| std::fs::rename(&partial, path));
    if let Err(err) = written {
        // Nothing useful is left behind; the error below says what happened.
        let _ = std::fs::remove_file(&partial);
        return Err(err).with_context(|| format!("failed to write {}", path.display()));
    }
    Ok(())
}

/// Drops the stacks of threads the report will not describe, so only those get symbolized.
fn keep_stacks_of_shown_threads(
    mut recording: Recording,
    options: &report::SpinOptions,
) -> Recording {
    let on_cpu = recording.threads.values().map(|t| (t.tid, t.on_cpu_ns));
    let shown = report::shown_tids(on_cpu, recording.window.duration_ns, options);
    for thread in recording.threads.values_mut() {
        if !shown.contains(&thread.tid) {
            thread.stacks.clear();
        }
    }
    recording
}

/// Registers for Ctrl-C and SIGTERM now; the returned future resolves on either: the window
/// ends early and the report still prints.
fn stop_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let terminate = signal(SignalKind::terminate());
    let interrupt = signal(SignalKind::interrupt());
    async move {
        match (terminate, interrupt) {
            (Ok(mut terminate), Ok(mut interrupt)) => {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = interrupt.recv() => {}
                }
            }
            // Without handlers the default action (exit) applies; the kernel closes the
            // program links with the process, so nothing stays attached.
            _ => std::future::pending().await,
        }
    }
}
